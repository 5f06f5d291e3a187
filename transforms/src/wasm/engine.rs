//! One wasmtime engine per worker, compiled components cached by path, and the epoch
//! ticker that interrupts runaway guests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use wasmtime::component::Component;
use wasmtime::{Config, Engine};

use super::INTERFACE;

/// How often the epoch advances: the granularity of `limits.timeout`.
const TICK: Duration = Duration::from_millis(10);

pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        // Compiling a plugin takes a sizeable fraction of a second of CPU; wasmtime's
        // on-disk cache (keyed by module and engine settings) makes a restart skip it.
        if std::env::var("CONNECTD_WASM_CACHE").as_deref() != Ok("off") {
            match cache_dir().and_then(|dir| safe_cache_dir(&dir).map(|()| dir)) {
                Ok(dir) => {
                    let mut cache_config = wasmtime::CacheConfig::new();
                    cache_config.with_directory(dir);
                    match wasmtime::Cache::new(cache_config) {
                        Ok(cache) => {
                            config.cache(Some(cache));
                        }
                        Err(e) => tracing::warn!(error = %e, "wasm compile cache unavailable; plugins are compiled at every start"),
                    }
                }
                Err(why) => tracing::warn!(reason = %why, "wasm compile cache off; plugins are compiled at every start"),
            }
        }
        let engine = Engine::new(&config).unwrap_or_else(|_| Engine::default());
        let ticker = engine.clone();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || loop {
                std::thread::sleep(TICK);
                ticker.increment_epoch();
            })
            .ok();
        engine
    })
}

/// `$CONNECTD_WASM_CACHE`, else `$XDG_CACHE_HOME/connectd/wasm`, else
/// `~/.cache/connectd/wasm`; none without a home (never a shared temp directory).
fn cache_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("CONNECTD_WASM_CACHE") {
        return Ok(dir.into());
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .ok_or("neither XDG_CACHE_HOME nor HOME is set (set CONNECTD_WASM_CACHE)")?;
    Ok(base.join("connectd").join("wasm"))
}

/// The cache holds compiled native code that wasmtime loads and runs: anyone who can
/// write into it, or replace it, could run code in connectd. So no directory on its
/// path may be writable by others.
pub fn safe_cache_dir(dir: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for d in dir.ancestors() {
            if let Ok(meta) = std::fs::metadata(d) {
                if meta.permissions().mode() & 0o002 != 0 {
                    return Err(format!(
                        "{} is writable by every user: the compiled-code cache under it could be replaced (set CONNECTD_WASM_CACHE to a private directory)",
                        d.display()
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Runs a guest call off the async runtime. wasmtime-wasi's synchronous WASI blocks on
/// a Tokio handle for every call a guest makes (a print, a clock read), which panics on
/// a runtime worker thread.
pub fn off_runtime<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Err(_) => f(),
        // The worker hands its other tasks to another thread while the guest runs.
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        // A current-thread runtime cannot give its thread up: a scoped thread, outside
        // any runtime, makes the call.
        Ok(_) => std::thread::scope(|s| match s.spawn(f).join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }),
    }
}

/// Epoch ticks for a timeout (at least one).
pub fn ticks(timeout: Duration) -> u64 {
    (timeout.as_millis() / TICK.as_millis()).max(1) as u64
}

/// Compiles a component once per worker.
pub fn load(path: &Path) -> Result<Component, String> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Component>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = path.to_path_buf();
    if let Some(c) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return Ok(c.clone());
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let component = Component::new(engine(), &bytes).map_err(|e| {
        format!("{} is not a WebAssembly component (build plugins with `cargo build --target wasm32-wasip2`): {e}", path.display())
    })?;
    check_interface(&component)?;
    cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, component.clone());
    Ok(component)
}

/// Refuses a component built against another version of the plugin interface.
fn check_interface(component: &Component) -> Result<(), String> {
    let ty = component.component_type();
    for (name, _) in ty.imports(engine()) {
        if let Some(rest) = name.strip_prefix("connectd:plugin/") {
            let version = rest.split_once('@').map_or("unversioned", |(_, v)| v);
            if format!("connectd:plugin@{version}") != INTERFACE {
                return Err(format!(
                    "the plugin was built against connectd:plugin@{version}; this connectd speaks {INTERFACE} (rebuild it with a matching connectd-sdk)"
                ));
            }
        }
    }
    Ok(())
}

pub fn explain_instantiation(_component: &Component, e: wasmtime::Error) -> String {
    format!("cannot instantiate (does it import something outside {INTERFACE} and WASI?): {e:#}")
}

pub fn explain_trap(e: &wasmtime::Error, timeout: Duration) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => {
            format!("ran longer than the {timeout:?} timeout on one batch")
        }
        Some(t) => format!("{t}"),
        None => format!("{e:#}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_cache_under_a_directory_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let base = tempfile_dir();
        let open = base.join("open");
        std::fs::create_dir_all(open.join("wasm")).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(safe_cache_dir(&open.join("wasm"))
            .unwrap_err()
            .contains("writable by every user"));
        let private = base.join("private");
        std::fs::create_dir_all(private.join("wasm")).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).unwrap();
        // The system temp dir above `base` is world-writable: a private dir under it is
        // still refused, as a cache must be.
        let verdict = safe_cache_dir(&private.join("wasm"));
        let tmp_open = std::fs::metadata(std::env::temp_dir())
            .map(|m| m.permissions().mode() & 0o002 != 0)
            .unwrap_or(false);
        assert_eq!(verdict.is_err(), tmp_open);
        let _ = std::fs::remove_dir_all(&base);
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("connectd-cache-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
