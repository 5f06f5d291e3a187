//! `wasm`: transforms written by third parties as WebAssembly components
//! (`plugins-sdk/wit/connectd.wit`), run by wasmtime in a sandbox.
//!
//! - The module is compiled once per worker; an instance is reused across batches and
//!   called once per batch.
//! - Sandbox: no filesystem, network or environment (WASI with nothing granted); memory
//!   capped (`limits.memory`); a guest running past `limits.timeout` on one batch is
//!   interrupted (epoch deadline).
//! - Guest calls run off the async runtime (wasmtime-wasi's synchronous WASI blocks on
//!   a Tokio handle); guest stdout and stderr go to the log (`guest_output`).
//! - A trap or a bad record rolls the plugin back: a fresh instance restores the last
//!   snapshot and replays the batches processed since, so its state is as if the failed
//!   call never happened. After a trap the batch is retried one record at a time, and
//!   only the record that traps goes to the DLQ (or stops the pipeline, per
//!   `errors.tolerance`).
//! - A module built against another interface version is refused at load, naming both.
//! - Keyed state (`state.get/put/delete`) lives in the pipeline's state store and is
//!   rolled back with the plugin (`keyed`).

mod engine;
mod guest_output;
mod keyed;
mod sandbox;

use std::path::PathBuf;
use std::time::Duration;

use connectd_sdk::config::{parse_size, ConfigMap, HumanDuration, Invalid};
use connectd_sdk::record::take_records;
use connectd_sdk::state::{KeyedState, MemoryState};
use connectd_sdk::{BadRecord, Batch, BuildContext, ConnectorError, Emitter, Record, Value};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../plugins-sdk/wit",
        world: "transform",
    });
}

use bindings::connectd;
use bindings::connectd::plugin::types::{
    Batch as WitBatch, Event, Failure, Header, Level, Output, Processed, Span,
};
use bindings::Transform as TransformWorld;

/// The interface version this connectd speaks.
pub const INTERFACE: &str = "connectd:plugin@0.1.0";

#[allow(missing_debug_implementations)]
pub struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    component: String,
    keyed: keyed::PluginState,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl connectd::plugin::types::Host for State {}

impl connectd::plugin::state::Host for State {
    fn get(&mut self, key: Vec<u8>) -> Result<Option<Vec<u8>>, String> {
        self.keyed.get(&key)
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.keyed.put(key, value);
    }

    fn delete(&mut self, key: Vec<u8>) {
        self.keyed.delete(key);
    }
}

impl connectd::plugin::host::Host for State {
    fn log(&mut self, level: Level, message: String) {
        let c = &self.component;
        match level {
            Level::Trace => tracing::trace!(component = %c, "{message}"),
            Level::Debug => tracing::debug!(component = %c, "{message}"),
            Level::Info => tracing::info!(component = %c, "{message}"),
            Level::Warn => tracing::warn!(component = %c, "{message}"),
            Level::Error => tracing::error!(component = %c, "{message}"),
        }
    }
}

pub struct WasmTransform {
    component_name: String,
    module: PathBuf,
    component: Component,
    config: String,
    memory: usize,
    timeout: Duration,
    /// `allow: [clock]`: the real clocks (else frozen at 0: replays stay identical).
    allow_clock: bool,
    /// `allow: [random]`: real randomness (else a fixed sequence).
    allow_random: bool,
    instance: Option<(Store<State>, TransformWorld)>,
    /// The interface buffers, kept between batches for their allocations.
    buffers: WitBatch,
    /// State to hand to the next instance (after `restore`, or kept across a trap).
    restored: Option<Vec<u8>>,
    /// The batches the live instance processed since `restored` was taken, replayed
    /// into a fresh instance after a trap.
    replay: Vec<WitBatch>,
    replay_bytes: usize,
    /// Emptied replay buffers, reused for their allocations.
    spare: Vec<WitBatch>,
    output: guest_output::GuestOutput,
    stats: std::sync::Arc<connectd_sdk::stats::PluginStats>,
    /// The plugin's keyed state: the pipeline's store once attached, else in memory
    /// (and then in the snapshot).
    keyed: keyed::Shared,
}

/// Past this much replay log, the live instance is snapshotted and the log dropped:
/// it bounds both the memory held and the work of a rollback.
const REPLAY_LIMIT: usize = 16 << 20;

impl std::fmt::Debug for WasmTransform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmTransform")
            .field("module", &self.module)
            .finish()
    }
}

/// A WebAssembly component plugin (the `connectd:plugin` WIT world), sandboxed.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct WasmOptions {
    /// The plugin: a WebAssembly component (.wasm).
    pub module: String,
    /// The plugin's own configuration, handed to its `init` as JSON.
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    /// What one call of the plugin may use.
    #[serde(default)]
    pub limits: Limits,
    /// What the plugin may read besides its input: `clock`, `random`.
    #[serde(default)]
    #[schemars(schema_with = "connectd_sdk::config::scalar_text_list")]
    pub allow: Vec<String>,
}

/// A plugin's limits.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Linear memory at most, such as 64MiB (default 64MiB).
    #[serde(default)]
    pub memory: Option<String>,
    /// Time one batch may take (default 1s).
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
}

pub fn build(
    cfg: &mut ConfigMap<'_>,
    ctx: &BuildContext,
) -> Result<Box<dyn connectd_sdk::Transform>, Invalid> {
    let o: WasmOptions = cfg.typed().ok_or(Invalid)?;
    let module = PathBuf::from(&o.module);
    let config = o.config.unwrap_or_else(|| serde_json::json!({}));
    let (mut memory, mut timeout) = (64usize << 20, Duration::from_secs(1));
    if let Some(m) = &o.limits.memory {
        match parse_size(m) {
            Ok(bytes) => memory = bytes as usize,
            Err(e) => cfg.error("limits.memory", e),
        }
    }
    if let Some(t) = o.limits.timeout {
        timeout = t.0;
    }
    let allow = o.allow;
    for a in &allow {
        if !matches!(a.as_str(), "clock" | "random") {
            cfg.error(
                "allow",
                format!("`{a}` cannot be granted: `allow` takes `clock` and `random`"),
            );
        }
    }
    cfg.finish()?;
    let component = match engine::load(&module) {
        Ok(c) => c,
        Err(why) => {
            cfg.error("module", why);
            return Err(Invalid);
        }
    };
    let component_name = format!("{}/{}", ctx.pipeline, ctx.component);
    let mut transform = WasmTransform {
        output: guest_output::GuestOutput::new(component_name.clone()),
        component_name,
        module,
        component,
        config: config.to_string(),
        memory,
        timeout,
        allow_clock: allow.iter().any(|a| a == "clock"),
        allow_random: allow.iter().any(|a| a == "random"),
        instance: None,
        buffers: empty_batch(),
        restored: None,
        replay: Vec::new(),
        replay_bytes: 0,
        spare: Vec::new(),
        stats: Default::default(),
        keyed: std::sync::Arc::new(std::sync::Mutex::new(Box::new(MemoryState::default()))),
    };
    // Instantiated and `init` called now, so `validate` reports a config the plugin
    // refuses before anything runs.
    match transform.instantiate() {
        Ok(instance) => transform.instance = Some(instance),
        Err(e) => {
            cfg.error("config", e.to_string());
            return Err(Invalid);
        }
    }
    Ok(Box::new(transform))
}

fn empty_batch() -> WitBatch {
    WitBatch {
        data: Vec::new(),
        key_starts: Vec::new(),
        value_starts: Vec::new(),
        value_ends: Vec::new(),
        timestamps: Vec::new(),
        header_ends: Vec::new(),
        headers: Vec::new(),
    }
}

/// Writes a batch of records into the interface's columns, reusing their allocations.
fn encode(records: &[Record], batch: &mut WitBatch) {
    batch.data.clear();
    batch.key_starts.clear();
    batch.value_starts.clear();
    batch.value_ends.clear();
    batch.timestamps.clear();
    batch.header_ends.clear();
    batch.headers.clear();
    for r in records {
        batch.key_starts.push(batch.data.len() as u32);
        if !r.key.is_null() {
            connectd_sdk::json::write(&r.key, &mut batch.data);
        }
        batch.value_starts.push(batch.data.len() as u32);
        connectd_sdk::json::write(&r.value, &mut batch.data);
        batch.value_ends.push(batch.data.len() as u32);
        batch.timestamps.push(r.timestamp.unwrap_or(i64::MIN));
        for (n, v) in &r.headers {
            let name = put(&mut batch.data, n.as_bytes());
            let value = put(&mut batch.data, v.as_bytes());
            batch.headers.push(Header { name, value });
        }
        batch.header_ends.push(batch.headers.len() as u32);
    }
}

fn span(start: usize, len: usize) -> Span {
    Span {
        start: start as u32,
        len: len as u32,
    }
}

fn put(data: &mut Vec<u8>, bytes: &[u8]) -> Span {
    let start = data.len();
    data.extend_from_slice(bytes);
    span(start, bytes.len())
}

/// The records of a `process` result: `keep`s move the input records, `emit`s are
/// parsed from the returned buffers.
fn decode(records: Vec<Record>, processed: Processed) -> Result<Vec<Record>, String> {
    let mut uses = vec![0u32; records.len()];
    for o in &processed.outputs {
        if let Output::Keep(i) = o {
            let slot = uses
                .get_mut(*i as usize)
                .ok_or_else(|| format!("kept record {i} of a batch of {}", records.len()))?;
            *slot += 1;
        }
    }
    let lane = records.first().map_or(0, |r| r.lane);
    let mut inputs: Vec<Option<Record>> = records.into_iter().map(Some).collect();
    let mut out = Vec::with_capacity(processed.outputs.len());
    for o in &processed.outputs {
        match o {
            Output::Keep(i) => {
                let i = *i as usize;
                uses[i] -= 1;
                // The last use moves the record; earlier ones (a plugin may keep a record
                // twice) copy it.
                let r = if uses[i] == 0 {
                    inputs[i].take()
                } else {
                    inputs[i].clone()
                };
                out.extend(r);
            }
            Output::Emit(e) => out.push(emitted(&processed, e, lane)?),
        }
    }
    Ok(out)
}

/// A record the plugin emitted; it takes the lane of its batch (one lane per batch).
fn emitted(p: &Processed, e: &Event, lane: u64) -> Result<Record, String> {
    let bytes = |s: Span, what: &str| {
        let start = s.start as usize;
        p.data
            .get(start..start + s.len as usize)
            .ok_or_else(|| format!("returned a {what} outside its buffer"))
    };
    let text = |s: Span, what: &str| {
        std::str::from_utf8(bytes(s, what)?)
            .map_err(|err| format!("returned a {what} that is not UTF-8: {err}"))
    };
    let value = connectd_sdk::json::parse(text(e.value, "value")?)
        .map_err(|err| format!("returned a value that is not JSON: {err}"))?;
    let key = match e.key {
        // JSON, or else taken as text; bytes that are not UTF-8 would be changed.
        Some(k) => {
            let k = text(k, "key")?;
            serde_json::from_str::<Value>(k).unwrap_or_else(|_| Value::str(k))
        }
        None => Value::Null,
    };
    let start = e.headers.start as usize;
    let headers = p
        .headers
        .get(start..start + e.headers.len as usize)
        .ok_or("returned headers outside its header list")?
        .iter()
        .map(|h| {
            Ok((
                text(h.name, "header")?.into(),
                text(h.value, "header")?.into(),
            ))
        })
        .collect::<Result<_, String>>()?;
    Ok(Record {
        key,
        value,
        timestamp: e.timestamp,
        headers,
        lane,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err("odd length".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

/// How a guest call ended.
enum Called<T> {
    Done(T),
    /// A trap, with its reason (and the end of what the guest wrote to stderr). The
    /// instance is gone: the next call rolls back to the last snapshot.
    Trapped(String),
}

impl WasmTransform {
    fn err(&self, what: impl std::fmt::Display) -> ConnectorError {
        ConnectorError::permanent(format!("wasm plugin {}: {what}", self.module.display()))
    }

    /// A new instance with `init` called and the last snapshot restored.
    fn instantiate(&mut self) -> Result<(Store<State>, TransformWorld), ConnectorError> {
        let engine = engine::engine();
        let mut linker: Linker<State> = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| self.err(e))?;
        TransformWorld::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)
            .map_err(|e| self.err(e))?;
        // Nothing granted: no preopened directories, no environment, no sockets; clocks
        // and randomness only when the pipeline allows them.
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(self.output.stdout.clone())
            .stderr(self.output.stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if !self.allow_clock {
            wasi.wall_clock(sandbox::FrozenClock)
                .monotonic_clock(sandbox::FrozenClock);
        }
        if !self.allow_random {
            wasi.secure_random(sandbox::fixed_random())
                .insecure_random(sandbox::fixed_random())
                .insecure_random_seed(0);
        }
        let wasi = wasi.build();
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.memory)
            .table_elements(TABLE_ELEMENTS)
            .instances(CORE_INSTANCES)
            .build();
        let state = State {
            wasi,
            table: ResourceTable::new(),
            limits,
            component: self.component_name.clone(),
            keyed: keyed::PluginState::new(self.keyed.clone()),
        };
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limits);
        let ticks = engine::ticks(self.timeout);
        let (component, config, restored) = (&self.component, &self.config, &self.restored);
        let started = engine::off_runtime(|| {
            store.set_epoch_deadline(ticks);
            let world = TransformWorld::instantiate(&mut store, component, &linker)
                .map_err(|e| engine::explain_instantiation(component, e))?;
            world
                .call_init(&mut store, config)
                .map_err(|e| format!("init trapped: {e}"))?
                .map_err(|e| format!("init refused the config: {e}"))?;
            if let Some(state) = restored {
                store.set_epoch_deadline(ticks);
                world
                    .call_restore(&mut store, state)
                    .map_err(|e| format!("restore trapped: {e}"))?
                    .map_err(|e| format!("restore refused the state: {e}"))?;
            }
            Ok::<_, String>(world)
        });
        let stderr = self.output.forward();
        match started {
            Ok(world) => Ok((store, world)),
            Err(why) if stderr.is_empty() => Err(self.err(why)),
            Err(why) => Err(self.err(format!("{why}; its stderr ends with: {stderr}"))),
        }
    }

    /// Makes sure there is a live instance: a fresh one replays the batches processed
    /// since the snapshot it restored, then becomes the new snapshot.
    fn ensure_instance(&mut self) -> Result<(), ConnectorError> {
        if self.instance.is_some() {
            return Ok(());
        }
        let (mut store, world) = self.instantiate()?;
        let ticks = engine::ticks(self.timeout);
        let timeout = self.timeout;
        let replay = &self.replay;
        let replayed = engine::off_runtime(|| {
            for b in replay {
                store.set_epoch_deadline(ticks);
                match world.call_process(&mut store, b) {
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) => return Err("a batch it had accepted was refused".to_string()),
                    Err(e) => return Err(engine::explain_trap(&e, timeout)),
                }
            }
            Ok(())
        });
        // What the guest printed the first time round was logged then.
        self.output.discard();
        if let Err(why) = replayed {
            return Err(self.err(format!(
                "replaying the batches since the last snapshot after a trap failed ({why}): the plugin does not process the same input the same way twice"
            )));
        }
        self.instance = Some((store, world));
        if !self.replay.is_empty() {
            self.snapshot_live()?;
        }
        Ok(())
    }

    /// Runs one guest call on the live instance, off the async runtime and within the
    /// timeout, and forwards what the guest printed to the log.
    fn call<R: Send>(
        &mut self,
        f: impl FnOnce(&mut Store<State>, &TransformWorld) -> wasmtime::Result<R> + Send,
    ) -> Result<Called<R>, ConnectorError> {
        self.ensure_instance()?;
        let timeout = self.timeout;
        let Some((store, world)) = self.instance.as_mut() else {
            return Err(self.err("no instance"));
        };
        store.set_epoch_deadline(engine::ticks(timeout));
        let world = &*world;
        let result = engine::off_runtime(|| f(store, world));
        let stderr = self.output.forward();
        Ok(match result {
            Ok(r) => Called::Done(r),
            Err(trap) => {
                self.stats.trap();
                self.instance = None;
                let why = engine::explain_trap(&trap, timeout);
                Called::Trapped(if stderr.is_empty() {
                    why
                } else {
                    format!("{why}; its stderr ends with: {stderr}")
                })
            }
        })
    }

    /// Snapshots the live instance as the state a fresh one starts from, and drops the
    /// replay log that led to it.
    fn snapshot_live(&mut self) -> Result<(), ConnectorError> {
        match self.call(|store, world| world.call_snapshot(store))? {
            Called::Done(state) => {
                if let Some((store, _)) = self.instance.as_mut() {
                    store.data_mut().keyed.flush();
                }
                self.restored = Some(state);
                self.forget_replay();
                Ok(())
            }
            Called::Trapped(why) => Err(self.err(format!("snapshot trapped: {why}"))),
        }
    }

    fn forget_replay(&mut self) {
        self.replay_bytes = 0;
        for b in self.replay.drain(..) {
            if self.spare.len() < 4 {
                self.spare.push(b);
            }
        }
    }

    /// Keeps a processed batch for a replay after a trap.
    fn remember(&mut self, processed: WitBatch) -> Result<(), ConnectorError> {
        self.replay_bytes += processed.data.len() + 16 * processed.key_starts.len();
        self.replay.push(processed);
        self.buffers = self.spare.pop().unwrap_or_else(empty_batch);
        let changed = self
            .instance
            .as_ref()
            .map_or(0, |(store, _)| store.data().keyed.bytes());
        if self.replay_bytes > REPLAY_LIMIT || changed > REPLAY_LIMIT {
            self.snapshot_live()?;
        }
        Ok(())
    }

    /// Processes records, diverting the ones the plugin refuses or traps on.
    fn run(&mut self, mut records: Vec<Record>, out: &mut Emitter) -> Result<(), ConnectorError> {
        loop {
            if records.is_empty() {
                return Ok(());
            }
            let mut buffers = std::mem::replace(&mut self.buffers, empty_batch());
            encode(&records, &mut buffers);
            let started = std::time::Instant::now();
            let called = self.call(|store, world| world.call_process(store, &buffers));
            self.stats.batch(started.elapsed());
            let called = match called {
                Ok(c) => c,
                Err(e) => {
                    self.buffers = buffers;
                    return Err(e);
                }
            };
            match called {
                Called::Done(Ok(processed)) => {
                    let emitted = decode(records, processed).map_err(|why| self.err(why))?;
                    self.remember(buffers)?;
                    for r in emitted {
                        out.emit(r);
                    }
                    return Ok(());
                }
                Called::Done(Err(Failure::BadRecord(b))) => {
                    self.buffers = buffers;
                    let i = b.index as usize;
                    if i >= records.len() {
                        return Err(self.err(format!(
                            "reported bad record {i} of a batch of {}",
                            records.len()
                        )));
                    }
                    let r = records.remove(i);
                    out.bad
                        .push(BadRecord::record(r, format!("wasm plugin: {}", b.reason)));
                    // The call may have changed the plugin's state before it refused the
                    // record: the retry starts from the state before the call.
                    self.instance = None;
                }
                Called::Done(Err(Failure::Plugin(msg))) => {
                    self.buffers = buffers;
                    return Err(self.err(msg));
                }
                Called::Trapped(why) => {
                    self.buffers = buffers;
                    if records.len() == 1 {
                        tracing::warn!(plugin = %self.component_name, module = %self.module.display(), reason = %why, "wasm plugin trapped on a record; it goes to the dead-letter queue");
                        for r in records {
                            out.bad.push(BadRecord::record(
                                r,
                                format!("wasm plugin {} trapped: {why}", self.module.display()),
                            ));
                        }
                        return Ok(());
                    }
                    // Find the record that traps: the rest of the batch goes through.
                    for r in records {
                        self.run(vec![r], out)?;
                    }
                    return Ok(());
                }
            }
        }
    }
}

/// Table elements an instance may hold: enough for any plugin's function tables, and
/// a bound on what a hostile one can make the host allocate.
const TABLE_ELEMENTS: usize = 1 << 20;

/// Core module instances a component may make: a Rust plugin makes 4; a Python
/// (componentize-py) or JavaScript (componentize-js) one carries an interpreter, a libc
/// and adapters as modules of their own.
const CORE_INSTANCES: usize = 32;

impl connectd_sdk::Transform for WasmTransform {
    fn process(
        &mut self,
        _input: usize,
        batch: Batch,
        out: &mut Emitter,
    ) -> Result<(), ConnectorError> {
        self.run(take_records(batch), out)
    }

    /// The plugin's own state (hex), and its keyed state when it is not in a store.
    fn snapshot(&mut self) -> Result<serde_json::Value, ConnectorError> {
        // Without an instance (none yet, or one that trapped) the state is `restored`
        // plus whatever the replay log holds.
        if self.instance.is_some() || !self.replay.is_empty() {
            self.snapshot_live()?;
        }
        let guest = match &self.restored {
            Some(s) if !s.is_empty() => serde_json::Value::String(hex(s)),
            _ => serde_json::Value::Null,
        };
        Ok(match keyed::lock(&self.keyed).export() {
            Some(entries) if !entries.is_empty() => {
                let keyed: Vec<[String; 2]> =
                    entries.iter().map(|(k, v)| [hex(k), hex(v)]).collect();
                serde_json::json!({ "guest": guest, "keyed": keyed })
            }
            _ => guest,
        })
    }

    /// Keyed state in the pipeline's store. Swapped in place: the instance made at
    /// build time already holds the shared handle.
    fn attach_state(&mut self, state: Box<dyn KeyedState>) -> bool {
        *keyed::lock(&self.keyed) = state;
        true
    }

    fn plugin_stats(&self) -> Option<std::sync::Arc<connectd_sdk::stats::PluginStats>> {
        Some(self.stats.clone())
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), ConnectorError> {
        let corrupt = |e: String| self.err(format!("corrupt checkpointed state: {e}"));
        let (guest, entries) = match state {
            serde_json::Value::Object(mut o) => (
                o.remove("guest").unwrap_or_default(),
                o.remove("keyed").unwrap_or_default(),
            ),
            guest => (guest, serde_json::Value::Null),
        };
        // Keyed state checkpointed in memory (no store): into the state it is kept in.
        for entry in entries.as_array().into_iter().flatten() {
            let hex_at = |i: usize| {
                entry[i]
                    .as_str()
                    .ok_or_else(|| "a keyed entry is not [key, value]".to_string())
                    .and_then(unhex)
            };
            let (k, v) = (hex_at(0).map_err(corrupt)?, hex_at(1).map_err(corrupt)?);
            keyed::lock(&self.keyed).put(&k, &v);
        }
        if let serde_json::Value::String(s) = guest {
            self.restored = Some(unhex(&s).map_err(corrupt)?);
        }
        // The instance made at build time started from nothing.
        self.instance = None;
        self.forget_replay();
        Ok(())
    }
}

#[cfg(test)]
mod emitted_tests {
    use super::*;

    fn processed(key: &[u8]) -> (Processed, Event) {
        let mut data = key.to_vec();
        let value = span(data.len(), 2);
        data.extend_from_slice(b"{}");
        let event = Event {
            key: Some(span(0, key.len())),
            value,
            timestamp: None,
            headers: span(0, 0),
        };
        let p = Processed {
            data,
            headers: Vec::new(),
            outputs: Vec::new(),
        };
        (p, event)
    }

    #[test]
    fn a_key_is_json_or_text_and_never_changed_bytes() {
        let (p, e) = processed(b"[1,\"a\"]");
        let key = emitted(&p, &e, 0).unwrap().key;
        assert_eq!(key, Value::List(vec![Value::Int(1), Value::str("a")]));
        let (p, e) = processed("café".as_bytes());
        assert_eq!(emitted(&p, &e, 0).unwrap().key, Value::str("café"));
        let (p, e) = processed(b"caf\xe9");
        let err = emitted(&p, &e, 0).unwrap_err();
        assert!(err.contains("returned a key that is not UTF-8"), "{err}");
    }
}
