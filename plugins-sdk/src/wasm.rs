//! The guest side of WASM transform plugins (built for `wasm32-wasip2`).
//!
//! ```ignore
//! use connectd_sdk::wasm::{Event, Failure, Transform};
//!
//! struct Upper;
//!
//! impl Transform for Upper {
//!     fn init(_config: serde_json::Value) -> Result<Self, String> {
//!         Ok(Upper)
//!     }
//!     fn process(&mut self, batch: Vec<Event>) -> Result<Vec<Event>, Failure> {
//!         batch
//!             .into_iter()
//!             .map(|mut e| {
//!                 let mut v = connectd_sdk::wasm::json(&e)?;
//!                 if let Some(s) = v["name"].as_str() {
//!                     v["name"] = s.to_uppercase().into();
//!                 }
//!                 connectd_sdk::wasm::set_json(&mut e, &v);
//!                 Ok(e)
//!             })
//!             .collect()
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
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "transform",
        pub_export_macro: true,
        export_macro_name: "export_transform_world",
        default_bindings_module: "connectd_sdk::wasm::bindings",
    });
}

pub use bindings::connectd::plugin::host::log;
pub use bindings::connectd::plugin::types::{BadRecord, Event, Failure, Header, Level};

/// What a plugin author implements.
pub trait Transform: Sized + 'static {
    /// Builds the plugin from the component's `config:` block.
    fn init(config: serde_json::Value) -> Result<Self, String>;

    /// Transforms one batch. Return `Failure::BadRecord` for a record that cannot be
    /// processed (it goes to the dead-letter queue; the rest is processed again).
    fn process(&mut self, batch: Vec<Event>) -> Result<Vec<Event>, Failure>;

    /// State for a checkpoint; stateless plugins keep the default.
    fn snapshot(&self) -> Vec<u8> {
        Vec::new()
    }

    /// Restores `snapshot` output after a restart.
    fn restore(&mut self, _state: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

/// An event's value as JSON; a value that is not JSON is a `plugin` failure.
pub fn json(e: &Event) -> Result<serde_json::Value, Failure> {
    serde_json::from_slice(&e.value)
        .map_err(|err| Failure::Plugin(format!("the event value is not JSON: {err}")))
}

/// Replaces an event's value with this JSON.
pub fn set_json(e: &mut Event, v: &serde_json::Value) {
    e.value = serde_json::to_vec(v).unwrap_or_default();
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

    pub fn process<T: Transform>(batch: Vec<Event>) -> Result<Vec<Event>, Failure> {
        with::<T, _>(|t| t.process(batch)).map_err(Failure::Plugin)?
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
            fn process(batch: Vec<$crate::wasm::Event>) -> Result<Vec<$crate::wasm::Event>, $crate::wasm::Failure> {
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
