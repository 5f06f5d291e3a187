//! The connectd plugin SDK: what a connector or transform author depends on.
//!
//! - [`Record`] and [`Value`]: the data that flows through a pipeline.
//! - [`Source`], [`Transform`], [`Sink`]: the component traits.
//! - [`config::ConfigMap`]: typed, position-aware access to a component's YAML block.
//! - [`Registry`]: where connectors register their builders by type name.
//! - [`expr`]: the expression language used by `filter`, `map` and routing options.
//! - [`wasm`]: the guest side of WASM transform plugins. A plugin depends on this crate
//!   with `default-features = false`: without the `host` feature it builds only that
//!   module, with `serde_json` and `wit-bindgen`.

#[cfg(feature = "host")]
pub mod bloom;
#[cfg(feature = "host")]
pub mod changelog;
#[cfg(feature = "host")]
pub mod checkpoints;
#[cfg(feature = "host")]
pub mod config;
#[cfg(feature = "host")]
pub mod error;
#[cfg(feature = "host")]
pub mod expr;
#[cfg(feature = "host")]
pub mod json;
#[cfg(feature = "host")]
mod json_out;
#[cfg(feature = "host")]
pub mod lanes;
#[cfg(feature = "host")]
pub mod ordered;
#[cfg(feature = "host")]
pub mod record;
#[cfg(feature = "host")]
pub mod record_codec;
#[cfg(feature = "host")]
pub mod registry;
#[cfg(feature = "host")]
pub mod state;
#[cfg(feature = "host")]
pub mod stats;
#[cfg(feature = "host")]
pub mod time;
#[cfg(feature = "host")]
pub mod traits;
#[cfg(feature = "host")]
pub mod value;
/// The guest side of WASM plugins; natively too, so plugins test in plain `cargo test`.
pub mod wasm;

#[cfg(feature = "host")]
pub use changelog::{Changelog, ChangelogReader, ChangelogRecord};
#[cfg(feature = "host")]
pub use checkpoints::CheckpointControl;
#[cfg(feature = "host")]
pub use error::{BadRecord, ConnectorError};
#[cfg(feature = "host")]
pub use record::{Batch, Record};
#[cfg(feature = "host")]
pub use registry::{BuildContext, Registry, WorkerSettings};
#[cfg(feature = "host")]
pub use traits::{
    Checkpoint, Committed, Emitter, Partitioning, Sink, Source, SourcePoll, Transform,
};
#[cfg(feature = "host")]
pub use value::{FieldPath, Object, Value};
