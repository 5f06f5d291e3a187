//! The registry connectors and transforms register into, by type name. The runtime
//! only drives what is registered; it names no connector itself.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::config::{ConfigMap, Invalid};
use crate::traits::{Sink, Source, Transform};

/// Settings of the worker process (`--worker worker.yaml`) that connectors may use.
#[derive(Clone, Default)]
pub struct WorkerSettings {
    /// The worker's name (default: the host name): the Kafka clients' `client.id`.
    pub name: String,
    /// librdkafka properties for every Kafka client of this worker
    /// (`bootstrap.servers`, SASL/SSL, ...); a connector's own `properties` win.
    pub kafka: BTreeMap<String, String>,
}

impl std::fmt::Debug for WorkerSettings {
    // Kafka properties may hold passwords: only their names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerSettings")
            .field("name", &self.name)
            .field("kafka", &self.kafka.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// What a builder knows about the component it builds.
#[derive(Clone, Debug, Default)]
pub struct BuildContext {
    pub pipeline: String,
    pub component: String,
    /// The worker's state directory (`--state-dir`): where file sinks keep checkpoints.
    pub state_dir: PathBuf,
    /// Names of the component's inputs, in order (empty for sources).
    pub inputs: Vec<String>,
    pub worker: WorkerSettings,
}

pub type SourceBuilder = fn(&mut ConfigMap<'_>, &BuildContext) -> Result<Box<dyn Source>, Invalid>;
pub type TransformBuilder =
    fn(&mut ConfigMap<'_>, &BuildContext) -> Result<Box<dyn Transform>, Invalid>;
pub type SinkBuilder = fn(&mut ConfigMap<'_>, &BuildContext) -> Result<Box<dyn Sink>, Invalid>;

/// Component builders by type name.
#[derive(Debug, Default)]
pub struct Registry {
    sources: BTreeMap<&'static str, SourceBuilder>,
    transforms: BTreeMap<&'static str, TransformBuilder>,
    sinks: BTreeMap<&'static str, SinkBuilder>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn source(&mut self, type_name: &'static str, build: SourceBuilder) {
        self.sources.insert(type_name, build);
    }

    pub fn transform(&mut self, type_name: &'static str, build: TransformBuilder) {
        self.transforms.insert(type_name, build);
    }

    pub fn sink(&mut self, type_name: &'static str, build: SinkBuilder) {
        self.sinks.insert(type_name, build);
    }

    pub fn get_source(&self, type_name: &str) -> Option<SourceBuilder> {
        self.sources.get(type_name).copied()
    }

    pub fn get_transform(&self, type_name: &str) -> Option<TransformBuilder> {
        self.transforms.get(type_name).copied()
    }

    pub fn get_sink(&self, type_name: &str) -> Option<SinkBuilder> {
        self.sinks.get(type_name).copied()
    }

    pub fn source_types(&self) -> Vec<&'static str> {
        self.sources.keys().copied().collect()
    }

    pub fn transform_types(&self) -> Vec<&'static str> {
        self.transforms.keys().copied().collect()
    }

    pub fn sink_types(&self) -> Vec<&'static str> {
        self.sinks.keys().copied().collect()
    }
}
