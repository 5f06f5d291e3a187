//! The guest side of WASM transform plugins (built for `wasm32-wasip2`).
//!
//! A plugin reads the records of a [`Batch`] and writes its output to an [`Output`]:
//! [`Output::keep`] passes a record on unchanged (nothing is copied back to the host),
//! [`Output::emit_json`] passes it on with a new value, [`Output::emit`] adds a new
//! record.
//!
//! ```ignore
//! use connectd_sdk::wasm::{Batch, Failure, Output, Transform};
//!
//! struct Upper;
//!
//! impl Transform for Upper {
//!     fn init(_config: serde_json::Value) -> Result<Self, String> {
//!         Ok(Upper)
//!     }
//!     fn process(&mut self, batch: &Batch, out: &mut Output) -> Result<(), Failure> {
//!         for e in batch.iter() {
//!             let mut v = e.json()?;
//!             match v["name"].as_str() {
//!                 Some(s) => {
//!                     v["name"] = s.to_uppercase().into();
//!                     out.emit_json(&e, &v);
//!                 }
//!                 None => out.keep(&e),
//!             }
//!         }
//!         Ok(())
//!     }
//! }
//!
//! connectd_sdk::export_transform!(Upper);
//! ```
//! Build with `cargo build --release --target wasm32-wasip2` (crate type `cdylib`) and
//! point a pipeline at the `.wasm`: `type: wasm`, `module: path/to/plugin.wasm`.

use std::any::Any;
use std::cell::RefCell;

#[doc(hidden)]
// Generated; natively (for plugins' own tests) it includes import stubs clippy flags.
#[allow(clippy::too_many_arguments)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "transform",
        pub_export_macro: true,
        export_macro_name: "export_transform_world",
        default_bindings_module: "connectd_sdk::wasm::bindings",
    });
}

use bindings::connectd::plugin::types as wit;

#[cfg(target_family = "wasm")]
pub use bindings::connectd::plugin::host::log;
pub use wit::{BadRecord, Failure, Level};

/// Outside WebAssembly (a plugin's own `cargo test`): the log goes to stderr.
#[cfg(not(target_family = "wasm"))]
pub fn log(level: Level, message: &str) {
    eprintln!("[{level:?}] {message}");
}

/// Keyed state the host keeps for the plugin, in the pipeline's state store: only
/// what changed is written with each checkpoint, it is restored after a crash, and it
/// is rolled back with the plugin after a trap. Keys and values are bytes; a plugin
/// keeps any number of keys without holding them in memory or in its snapshot.
///
/// Outside WebAssembly (a plugin's own `cargo test`) the state is a map in memory, one
/// per thread, which [`testing::clear_state`] empties.
pub mod state {
    #[cfg(target_family = "wasm")]
    use super::bindings::connectd::plugin::state as host;
    #[cfg(not(target_family = "wasm"))]
    use super::testing::state_host as host;
    use super::Failure;

    /// The value stored under `key`. A store that cannot be read fails the batch
    /// (`Failure::Plugin`: the pipeline's error policy decides).
    pub fn get(key: &[u8]) -> Result<Option<Vec<u8>>, Failure> {
        host::get(key).map_err(|e| Failure::Plugin(format!("keyed state: {e}")))
    }

    pub fn put(key: &[u8], value: &[u8]) {
        host::put(key, value);
    }

    pub fn delete(key: &[u8]) {
        host::delete(key);
    }
}

/// The records of one `process` call.
#[derive(Debug)]
pub struct Batch {
    raw: wit::Batch,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.raw.value_starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.raw.value_starts.is_empty()
    }

    /// The record at `index`.
    pub fn get(&self, index: usize) -> Option<Event<'_>> {
        (index < self.len()).then_some(Event { batch: self, index })
    }

    pub fn iter(&self) -> impl Iterator<Item = Event<'_>> {
        (0..self.len()).map(|index| Event { batch: self, index })
    }

    fn range(&self, start: Option<&u32>, end: Option<&u32>) -> &[u8] {
        let (start, end) = (
            start.copied().unwrap_or(0) as usize,
            end.copied().unwrap_or(0) as usize,
        );
        self.raw.data.get(start..end).unwrap_or_default()
    }

    fn bytes(&self, s: wit::Span) -> &[u8] {
        let start = s.start as usize;
        self.raw
            .data
            .get(start..start + s.len as usize)
            .unwrap_or_default()
    }
}

/// One input record: a view into its batch.
#[derive(Clone, Copy, Debug)]
pub struct Event<'a> {
    batch: &'a Batch,
    index: usize,
}

impl<'a> Event<'a> {
    /// Position in the batch (what [`bad_record`] takes).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The value's JSON text.
    pub fn value(&self) -> &'a [u8] {
        let raw = &self.batch.raw;
        self.batch.range(
            raw.value_starts.get(self.index),
            raw.value_ends.get(self.index),
        )
    }

    /// The key's JSON text, if the record has a key.
    pub fn key(&self) -> Option<&'a [u8]> {
        let raw = &self.batch.raw;
        let key = self.batch.range(
            raw.key_starts.get(self.index),
            raw.value_starts.get(self.index),
        );
        (!key.is_empty()).then_some(key)
    }

    /// Event time, epoch milliseconds.
    pub fn timestamp(&self) -> Option<i64> {
        self.batch
            .raw
            .timestamps
            .get(self.index)
            .copied()
            .filter(|&t| t != i64::MIN)
    }

    /// The headers as (name, value).
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        let batch = self.batch;
        let ends = &batch.raw.header_ends;
        let start = match self.index {
            0 => 0,
            i => ends.get(i - 1).copied().unwrap_or(0) as usize,
        };
        let end = ends.get(self.index).copied().unwrap_or(0) as usize;
        batch
            .raw
            .headers
            .get(start..end)
            .unwrap_or_default()
            .iter()
            .map(move |h| {
                let text = |s| std::str::from_utf8(batch.bytes(s)).unwrap_or_default();
                (text(h.name), text(h.value))
            })
    }

    /// The value parsed as JSON; a value that is not JSON is a bad record.
    pub fn json(&self) -> Result<serde_json::Value, Failure> {
        serde_json::from_slice(self.value())
            .map_err(|err| bad_record(self.index, format!("the value is not JSON: {err}")))
    }
}

/// A record the plugin creates (see [`Output::emit`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NewEvent {
    /// The key as JSON text.
    pub key: Option<Vec<u8>>,
    /// The value as JSON text.
    pub value: Vec<u8>,
    /// Event time, epoch milliseconds.
    pub timestamp: Option<i64>,
    pub headers: Vec<(String, String)>,
}

/// Where a plugin writes its output records, in order.
#[derive(Debug)]
pub struct Output {
    raw: wit::Processed,
}

impl Default for Output {
    fn default() -> Self {
        Self::new(0)
    }
}

impl Output {
    fn new(capacity: usize) -> Self {
        Output {
            raw: wit::Processed {
                data: Vec::new(),
                headers: Vec::new(),
                outputs: Vec::with_capacity(capacity),
            },
        }
    }

    /// Passes an input record on unchanged.
    pub fn keep(&mut self, e: &Event<'_>) {
        self.raw.outputs.push(wit::Output::Keep(e.index as u32));
    }

    /// Passes an input record on with its value replaced by this JSON.
    pub fn emit_json(&mut self, e: &Event<'_>, value: &serde_json::Value) {
        let key = e.key().map(|k| self.put(k));
        let start = self.raw.data.len();
        // Writing a serde_json::Value into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.raw.data, value);
        let value = span(start, self.raw.data.len() - start);
        let headers = self.put_headers(e.headers());
        self.raw.outputs.push(wit::Output::Emit(wit::Event {
            key,
            value,
            timestamp: e.timestamp(),
            headers,
        }));
    }

    /// Adds a new record.
    pub fn emit(&mut self, e: &NewEvent) {
        let key = e.key.as_deref().map(|k| self.put(k));
        let value = self.put(&e.value);
        let headers = self.put_headers(e.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        self.raw.outputs.push(wit::Output::Emit(wit::Event {
            key,
            value,
            timestamp: e.timestamp,
            headers,
        }));
    }

    fn put(&mut self, bytes: &[u8]) -> wit::Span {
        let start = self.raw.data.len();
        self.raw.data.extend_from_slice(bytes);
        span(start, bytes.len())
    }

    fn put_headers<'h>(&mut self, headers: impl Iterator<Item = (&'h str, &'h str)>) -> wit::Span {
        let start = self.raw.headers.len();
        for (n, v) in headers {
            let name = self.put(n.as_bytes());
            let value = self.put(v.as_bytes());
            self.raw.headers.push(wit::Header { name, value });
        }
        span(start, self.raw.headers.len() - start)
    }
}

fn span(start: usize, len: usize) -> wit::Span {
    wit::Span {
        start: start as u32,
        len: len as u32,
    }
}

/// What a plugin author implements.
pub trait Transform: Sized + 'static {
    /// Builds the plugin from the component's `config:` block.
    fn init(config: serde_json::Value) -> Result<Self, String>;

    /// Transforms one batch into `out`. Return `Failure::BadRecord` (see [`bad_record`])
    /// for a record that cannot be processed: it goes to the dead-letter queue and the
    /// rest of the batch is passed to `process` again.
    fn process(&mut self, batch: &Batch, out: &mut Output) -> Result<(), Failure>;

    /// State for a checkpoint; stateless plugins keep the default.
    fn snapshot(&self) -> Vec<u8> {
        Vec::new()
    }

    /// Restores `snapshot` output after a restart.
    fn restore(&mut self, _state: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

/// A `bad-record` failure for record `index` of the batch.
pub fn bad_record(index: usize, reason: impl Into<String>) -> Failure {
    Failure::BadRecord(BadRecord {
        index: index as u32,
        reason: reason.into(),
    })
}

thread_local! {
    static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

#[doc(hidden)]
pub mod glue {
    use super::*;

    fn with<T: Transform, R>(f: impl FnOnce(&mut T) -> R) -> Result<R, String> {
        INSTANCE.with(|cell| {
            let mut slot = cell.borrow_mut();
            let t = slot
                .as_mut()
                .and_then(|b| b.downcast_mut::<T>())
                .ok_or_else(|| "the plugin was not initialised".to_string())?;
            Ok(f(t))
        })
    }

    pub fn init<T: Transform>(config: String) -> Result<(), String> {
        let config: serde_json::Value =
            serde_json::from_str(&config).map_err(|e| format!("config is not JSON: {e}"))?;
        let t = T::init(config)?;
        INSTANCE.with(|cell| *cell.borrow_mut() = Some(Box::new(t)));
        Ok(())
    }

    pub fn process<T: Transform>(batch: wit::Batch) -> Result<wit::Processed, Failure> {
        let batch = Batch { raw: batch };
        let mut out = Output::new(batch.len());
        with::<T, _>(|t| t.process(&batch, &mut out)).map_err(Failure::Plugin)??;
        Ok(out.raw)
    }

    pub fn snapshot<T: Transform>() -> Vec<u8> {
        with::<T, _>(|t| t.snapshot()).unwrap_or_default()
    }

    pub fn restore<T: Transform>(state: Vec<u8>) -> Result<(), String> {
        with::<T, _>(|t| t.restore(&state))?
    }
}

/// Exports a [`Transform`] implementation as the plugin's component interface.
#[macro_export]
macro_rules! export_transform {
    ($t:ty) => {
        struct __ConnectdTransformExport;

        impl $crate::wasm::bindings::Guest for __ConnectdTransformExport {
            fn init(config: String) -> Result<(), String> {
                $crate::wasm::glue::init::<$t>(config)
            }
            fn process(
                batch: $crate::wasm::bindings::connectd::plugin::types::Batch,
            ) -> Result<
                $crate::wasm::bindings::connectd::plugin::types::Processed,
                $crate::wasm::Failure,
            > {
                $crate::wasm::glue::process::<$t>(batch)
            }
            fn snapshot() -> Vec<u8> {
                $crate::wasm::glue::snapshot::<$t>()
            }
            fn restore(state: Vec<u8>) -> Result<(), String> {
                $crate::wasm::glue::restore::<$t>(state)
            }
        }

        $crate::wasm::bindings::export_transform_world!(__ConnectdTransformExport with_types_in $crate::wasm::bindings);
    };
}

/// Plugins tested natively, in plain `cargo test`: batches built from records, the
/// output read back as records, and keyed state in memory.
///
/// ```ignore
/// let batch = Batch::from_json(&[json!({"name": "ada"})]);
/// let mut out = Output::default();
/// MyPlugin::init(json!({}))?.process(&batch, &mut out)?;
/// assert_eq!(out.events(&batch)[0].json()["name"], "ADA");
/// ```
pub mod testing {
    use super::*;

    thread_local! {
        static STATE: RefCell<std::collections::BTreeMap<Vec<u8>, Vec<u8>>> =
            const { RefCell::new(std::collections::BTreeMap::new()) };
    }

    /// Empties this thread's keyed state.
    pub fn clear_state() {
        STATE.with(|s| s.borrow_mut().clear());
    }

    /// The keyed state outside WebAssembly: this thread's map.
    #[cfg(not(target_family = "wasm"))]
    pub(super) mod state_host {
        use super::STATE;

        pub fn get(key: &[u8]) -> Result<Option<Vec<u8>>, String> {
            Ok(STATE.with(|s| s.borrow().get(key).cloned()))
        }

        pub fn put(key: &[u8], value: &[u8]) {
            STATE.with(|s| s.borrow_mut().insert(key.to_vec(), value.to_vec()));
        }

        pub fn delete(key: &[u8]) {
            STATE.with(|s| s.borrow_mut().remove(key));
        }
    }

    impl Batch {
        /// A batch of records with these values (no key, time or headers).
        pub fn from_json(values: &[serde_json::Value]) -> Batch {
            let events: Vec<NewEvent> = values
                .iter()
                .map(|v| NewEvent {
                    value: v.to_string().into_bytes(),
                    ..NewEvent::default()
                })
                .collect();
            Batch::from_events(&events)
        }

        /// A batch of these records, as the host would hand them over.
        pub fn from_events(events: &[NewEvent]) -> Batch {
            let mut raw = wit::Batch {
                data: Vec::new(),
                key_starts: Vec::new(),
                value_starts: Vec::new(),
                value_ends: Vec::new(),
                timestamps: Vec::new(),
                header_ends: Vec::new(),
                headers: Vec::new(),
            };
            for e in events {
                raw.key_starts.push(raw.data.len() as u32);
                raw.data
                    .extend_from_slice(e.key.as_deref().unwrap_or_default());
                raw.value_starts.push(raw.data.len() as u32);
                raw.data.extend_from_slice(&e.value);
                raw.value_ends.push(raw.data.len() as u32);
                raw.timestamps.push(e.timestamp.unwrap_or(i64::MIN));
                for (n, v) in &e.headers {
                    let mut put = |bytes: &[u8]| {
                        let start = raw.data.len();
                        raw.data.extend_from_slice(bytes);
                        span(start, bytes.len())
                    };
                    let header = wit::Header {
                        name: put(n.as_bytes()),
                        value: put(v.as_bytes()),
                    };
                    raw.headers.push(header);
                }
                raw.header_ends.push(raw.headers.len() as u32);
            }
            Batch { raw }
        }
    }

    impl Event<'_> {
        /// This input record as a [`NewEvent`].
        pub fn to_event(&self) -> NewEvent {
            NewEvent {
                key: self.key().map(<[u8]>::to_vec),
                value: self.value().to_vec(),
                timestamp: self.timestamp(),
                headers: self
                    .headers()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
            }
        }
    }

    impl Output {
        /// The output records, in order, as the host would read them (a kept record is
        /// the input record of `batch`).
        pub fn events(&self, batch: &Batch) -> Vec<NewEvent> {
            let bytes = |s: wit::Span| {
                let start = s.start as usize;
                self.raw.data[start..start + s.len as usize].to_vec()
            };
            let text = |s: wit::Span| String::from_utf8_lossy(&bytes(s)).into_owned();
            self.raw
                .outputs
                .iter()
                .map(|o| match o {
                    wit::Output::Keep(i) => batch
                        .get(*i as usize)
                        .map(|e| e.to_event())
                        .unwrap_or_default(),
                    wit::Output::Emit(e) => {
                        let start = e.headers.start as usize;
                        NewEvent {
                            key: e.key.map(bytes),
                            value: bytes(e.value),
                            timestamp: e.timestamp,
                            headers: self.raw.headers[start..start + e.headers.len as usize]
                                .iter()
                                .map(|h| (text(h.name), text(h.value)))
                                .collect(),
                        }
                    }
                })
                .collect()
        }
    }

    impl NewEvent {
        /// The value parsed as JSON (`Null` if it is not JSON).
        pub fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.value).unwrap_or_default()
        }
    }

    #[cfg(test)]
    mod tests {
        use super::super::state;
        use super::*;

        /// Upper-cases `name`, counting the records per name in keyed state.
        struct Shout;

        impl Transform for Shout {
            fn init(_config: serde_json::Value) -> Result<Self, String> {
                Ok(Shout)
            }

            fn process(&mut self, batch: &Batch, out: &mut Output) -> Result<(), Failure> {
                for e in batch.iter() {
                    let mut v = e.json()?;
                    let Some(name) = v["name"].as_str().map(str::to_uppercase) else {
                        out.keep(&e);
                        continue;
                    };
                    let seen = state::get(name.as_bytes())?.map_or(0, |b| b[0]) + 1;
                    state::put(name.as_bytes(), &[seen]);
                    v["name"] = name.into();
                    v["seen"] = seen.into();
                    out.emit_json(&e, &v);
                }
                Ok(())
            }
        }

        #[test]
        fn a_plugin_runs_in_plain_cargo_test() {
            clear_state();
            let input = [
                NewEvent {
                    key: Some(b"{\"id\":1}".to_vec()),
                    value: b"{\"name\":\"ada\"}".to_vec(),
                    timestamp: Some(7),
                    headers: vec![("h".into(), "v".into())],
                },
                NewEvent {
                    value: b"[1]".to_vec(),
                    ..NewEvent::default()
                },
            ];
            let batch = Batch::from_events(&input);
            let mut plugin = Shout::init(serde_json::json!({})).unwrap();
            let mut out = Output::default();
            plugin.process(&batch, &mut out).unwrap();
            plugin.process(&batch, &mut out).unwrap();
            let events = out.events(&batch);
            assert_eq!(events.len(), 4);
            assert_eq!(
                events[0].json(),
                serde_json::json!({"name": "ADA", "seen": 1})
            );
            assert_eq!(events[0].key.as_deref(), Some(&b"{\"id\":1}"[..]));
            assert_eq!(
                (events[0].timestamp, events[0].headers.clone()),
                (Some(7), input[0].headers.clone())
            );
            assert_eq!(events[1], input[1], "kept as it came");
            assert_eq!(
                events[2].json()["seen"],
                2,
                "keyed state kept between calls"
            );
            let bad = plugin.process(&Batch::from_json(&[serde_json::json!(1)]), &mut out);
            assert!(bad.is_ok(), "a number has no name: kept");
            let not_json = Batch::from_events(&[NewEvent {
                value: b"{".to_vec(),
                ..NewEvent::default()
            }]);
            assert!(matches!(
                plugin.process(&not_json, &mut Output::default()),
                Err(Failure::BadRecord(_))
            ));
        }
    }
}
