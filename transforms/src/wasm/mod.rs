//! `wasm`: transforms written by third parties as WebAssembly components
//! (`plugins-sdk/wit/connectd.wit`), run by wasmtime in a sandbox.
//!
//! - The module is compiled once per worker; an instance is reused across batches and
//!   called once per batch.
//! - Sandbox: no filesystem, network or environment (WASI with nothing granted); memory
//!   capped (`limits.memory`); a guest running past `limits.timeout` on one batch is
//!   interrupted (epoch deadline). A trap sends that batch to the DLQ (or stops the
//!   pipeline, per `errors.tolerance`) and the instance is recreated.
//! - A module built against another interface version is refused at load, naming both.

mod engine;

use std::path::PathBuf;
use std::time::Duration;

use connectd_sdk::config::{parse_size, ConfigMap, Invalid};
use connectd_sdk::record::take_records;
use connectd_sdk::{BadRecord, Batch, BuildContext, ConnectorError, Emitter, Record, Value};
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
    instance: Option<(Store<State>, TransformWorld)>,
    /// The interface buffers, kept between batches for their allocations.
    buffers: WitBatch,
    /// State to hand to the next instance (after `restore`, or kept across a trap).
    restored: Option<Vec<u8>>,
    stats: std::sync::Arc<connectd_sdk::stats::PluginStats>,
}

impl std::fmt::Debug for WasmTransform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmTransform")
            .field("module", &self.module)
            .finish()
    }
}

pub fn build(
    cfg: &mut ConfigMap<'_>,
    ctx: &BuildContext,
) -> Result<Box<dyn connectd_sdk::Transform>, Invalid> {
    let module = PathBuf::from(cfg.str("module"));
    let config = cfg
        .opt_json("config")
        .unwrap_or_else(|| serde_json::json!({}));
    let (mut memory, mut timeout) = (64usize << 20, Duration::from_secs(1));
    if let Some(mut limits) = cfg.opt_map("limits") {
        if let Some(m) = limits.opt_str("memory") {
            match parse_size(&m) {
                Ok(bytes) => memory = bytes as usize,
                Err(e) => limits.error("memory", e),
            }
        }
        timeout = limits.duration_or("timeout", timeout);
        let _ = limits.finish();
    }
    cfg.finish()?;
    let component = match engine::load(&module) {
        Ok(c) => c,
        Err(why) => {
            cfg.error("module", why);
            return Err(Invalid);
        }
    };
    Ok(Box::new(WasmTransform {
        component_name: format!("{}/{}", ctx.pipeline, ctx.component),
        module,
        component,
        config: config.to_string(),
        memory,
        timeout,
        instance: None,
        buffers: empty_batch(),
        restored: None,
        stats: Default::default(),
    }))
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
            Output::Emit(e) => out.push(emitted(&processed, e)?),
        }
    }
    Ok(out)
}

fn emitted(p: &Processed, e: &Event) -> Result<Record, String> {
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
        Some(k) => {
            let k = bytes(k, "key")?;
            serde_json::from_slice::<Value>(k)
                .unwrap_or_else(|_| Value::str(String::from_utf8_lossy(k)))
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

impl WasmTransform {
    fn err(&self, what: impl std::fmt::Display) -> ConnectorError {
        ConnectorError::permanent(format!("wasm plugin {}: {what}", self.module.display()))
    }

    fn instance(&mut self) -> Result<&mut (Store<State>, TransformWorld), ConnectorError> {
        if self.instance.is_none() {
            let engine = engine::engine();
            let mut linker: Linker<State> = Linker::new(engine);
            wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| self.err(e))?;
            TransformWorld::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)
                .map_err(|e| self.err(e))?;
            // Nothing granted: no preopened directories, no environment, no sockets.
            let wasi = WasiCtxBuilder::new()
                .allow_tcp(false)
                .allow_udp(false)
                .allow_ip_name_lookup(false)
                .build();
            let limits = StoreLimitsBuilder::new()
                .memory_size(self.memory)
                .instances(4)
                .build();
            let state = State {
                wasi,
                table: ResourceTable::new(),
                limits,
                component: self.component_name.clone(),
            };
            let mut store = Store::new(engine, state);
            store.limiter(|s| &mut s.limits);
            store.set_epoch_deadline(engine::ticks(self.timeout));
            let world = TransformWorld::instantiate(&mut store, &self.component, &linker)
                .map_err(|e| self.err(engine::explain_instantiation(&self.component, e)))?;
            world
                .call_init(&mut store, &self.config)
                .map_err(|e| self.err(format!("init trapped: {e}")))?
                .map_err(|e| self.err(format!("init refused the config: {e}")))?;
            if let Some(state) = &self.restored {
                store.set_epoch_deadline(engine::ticks(self.timeout));
                world
                    .call_restore(&mut store, state)
                    .map_err(|e| self.err(format!("restore trapped: {e}")))?
                    .map_err(|e| self.err(format!("restore refused the state: {e}")))?;
            }
            self.instance = Some((store, world));
        }
        self.instance
            .as_mut()
            .ok_or_else(|| ConnectorError::permanent("wasm: no instance"))
    }
}

impl connectd_sdk::Transform for WasmTransform {
    fn process(
        &mut self,
        _input: usize,
        batch: Batch,
        out: &mut Emitter,
    ) -> Result<(), ConnectorError> {
        let mut records = take_records(batch);
        let timeout = self.timeout;
        loop {
            if records.is_empty() {
                return Ok(());
            }
            let mut buffers = std::mem::replace(&mut self.buffers, empty_batch());
            encode(&records, &mut buffers);
            let (store, world) = self.instance()?;
            store.set_epoch_deadline(engine::ticks(timeout));
            let started = std::time::Instant::now();
            let called = world.call_process(&mut *store, &buffers);
            self.stats.batch(started.elapsed());
            self.buffers = buffers;
            match called {
                Ok(Ok(processed)) => {
                    for r in decode(records, processed).map_err(|why| self.err(why))? {
                        out.emit(r);
                    }
                    return Ok(());
                }
                Ok(Err(Failure::BadRecord(b))) => {
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
                }
                Ok(Err(Failure::Plugin(msg))) => return Err(self.err(msg)),
                Err(trap) => {
                    self.stats.trap();
                    // Keep the last good state; the next batch gets a fresh instance.
                    self.instance = None;
                    let why = engine::explain_trap(&trap, timeout);
                    tracing::warn!(module = %self.module.display(), reason = %why, "wasm plugin trapped; the batch goes to the dead-letter queue and the instance is recreated");
                    for r in records {
                        out.bad
                            .push(BadRecord::record(r, format!("wasm plugin trapped: {why}")));
                    }
                    return Ok(());
                }
            }
        }
    }

    fn snapshot(&mut self) -> Result<serde_json::Value, ConnectorError> {
        let timeout = self.timeout;
        if let Some((store, world)) = self.instance.as_mut() {
            store.set_epoch_deadline(engine::ticks(timeout));
            let state = world.call_snapshot(&mut *store).map_err(|e| {
                ConnectorError::permanent(format!("wasm plugin snapshot trapped: {e}"))
            })?;
            // A trap later recreates the instance from this state.
            self.restored = Some(state);
        }
        Ok(match &self.restored {
            Some(s) if !s.is_empty() => serde_json::Value::String(hex(s)),
            _ => serde_json::Value::Null,
        })
    }

    fn plugin_stats(&self) -> Option<std::sync::Arc<connectd_sdk::stats::PluginStats>> {
        Some(self.stats.clone())
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), ConnectorError> {
        if let serde_json::Value::String(s) = state {
            self.restored =
                Some(unhex(&s).map_err(|e| self.err(format!("corrupt checkpointed state: {e}")))?);
            self.instance = None;
        }
        Ok(())
    }
}
