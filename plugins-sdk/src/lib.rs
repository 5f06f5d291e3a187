//! The connectd plugin SDK: what a connector or transform author depends on.
//!
//! - [`Record`] and [`Value`]: the data that flows through a pipeline.
//! - [`Source`], [`Transform`], [`Sink`]: the component traits.
//! - [`config::ConfigMap`]: typed, position-aware access to a component's YAML block.
//! - [`Registry`]: where connectors register their builders by type name.
//! - [`expr`]: the expression language used by `filter`, `map` and routing options.

pub mod checkpoints;
pub mod config;
pub mod error;
pub mod expr;
pub mod json;
mod json_out;
pub mod lanes;
pub mod ordered;
pub mod record;
pub mod registry;
pub mod state;
pub mod stats;
pub mod time;
pub mod traits;
pub mod value;
#[cfg(target_family = "wasm")]
pub mod wasm;

pub use checkpoints::CheckpointControl;
pub use error::{BadRecord, ConnectorError};
pub use record::{Batch, Record};
pub use registry::{BuildContext, Registry, WorkerSettings};
pub use traits::{Checkpoint, Committed, Emitter, Sink, Source, SourcePoll, Transform};
pub use value::{FieldPath, Object, Value};
