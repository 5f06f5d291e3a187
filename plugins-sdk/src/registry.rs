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

/// The JSON Schema of a component's options, made from its typed options struct.
pub type OptionsSchema = fn() -> schemars::Schema;

/// The JSON Schema of `T`, every type inlined (one self-contained object per
/// component, for `describe`, the admin API and the pipeline schema).
pub fn options_schema<T: schemars::JsonSchema>() -> schemars::Schema {
    schemars::generate::SchemaSettings::draft07()
        .with(|s| s.inline_subschemas = true)
        .into_generator()
        .into_root_schema_for::<T>()
}

/// What kind of component a type name is registered as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Source,
    Transform,
    Sink,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Source => "source",
            Kind::Transform => "transform",
            Kind::Sink => "sink",
        }
    }
}

/// Component builders by type name, with the schema of each one's options.
#[derive(Debug, Default)]
pub struct Registry {
    sources: BTreeMap<&'static str, SourceBuilder>,
    transforms: BTreeMap<&'static str, TransformBuilder>,
    sinks: BTreeMap<&'static str, SinkBuilder>,
    schemas: BTreeMap<(Kind, &'static str), OptionsSchema>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a source whose options `build` reads as `O`.
    pub fn source<O: schemars::JsonSchema>(
        &mut self,
        type_name: &'static str,
        build: SourceBuilder,
    ) {
        self.sources.insert(type_name, build);
        self.schemas
            .insert((Kind::Source, type_name), options_schema::<O>);
    }

    pub fn transform<O: schemars::JsonSchema>(
        &mut self,
        type_name: &'static str,
        build: TransformBuilder,
    ) {
        self.transforms.insert(type_name, build);
        self.schemas
            .insert((Kind::Transform, type_name), options_schema::<O>);
    }

    pub fn sink<O: schemars::JsonSchema>(&mut self, type_name: &'static str, build: SinkBuilder) {
        self.sinks.insert(type_name, build);
        self.schemas
            .insert((Kind::Sink, type_name), options_schema::<O>);
    }

    /// The schema of a component's options.
    pub fn options(&self, kind: Kind, type_name: &str) -> Option<schemars::Schema> {
        self.schemas
            .iter()
            .find(|((k, t), _)| *k == kind && *t == type_name)
            .map(|(_, schema)| schema())
    }

    /// Every registered component, by kind and type name.
    pub fn components(&self) -> Vec<(Kind, &'static str)> {
        self.schemas.keys().copied().collect()
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
