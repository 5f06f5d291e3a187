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
            let mut cache_config = wasmtime::CacheConfig::new();
            cache_config.with_directory(cache_dir());
            match wasmtime::Cache::new(cache_config) {
                Ok(cache) => {
                    config.cache(Some(cache));
                }
                Err(e) => tracing::warn!(error = %e, "wasm compile cache unavailable; plugins are compiled at every start"),
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
/// `~/.cache/connectd/wasm`, else a directory under the system temp dir.
fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CONNECTD_WASM_CACHE") {
        return dir.into();
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("connectd").join("wasm")
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
