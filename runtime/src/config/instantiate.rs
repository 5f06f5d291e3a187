//! A [`PipelineSpec`] → a [`PipelinePlan`]: every component built by its registered
//! builder from its options. Done for each run; the file is not read again.

use std::path::Path;
use std::sync::Arc;

use connectd_sdk::config::{ConfigErrors, ConfigMap, Invalid};
use connectd_sdk::{BuildContext, Registry, WorkerSettings};

use super::pipeline::{ComponentPlan, ComponentSpec, PipelinePlan, PipelineSpec, Section};
use super::ConfigProblems;

/// A component builder of the registry (source, transform or sink).
type Builder<T> = fn(&mut ConfigMap<'_>, &BuildContext) -> Result<Box<T>, Invalid>;

impl PipelineSpec {
    /// Builds every component for a run whose state lives under `state_dir/<name>`.
    pub fn instantiate(
        self: &Arc<Self>,
        registry: &Registry,
        state_dir: &Path,
        worker: &WorkerSettings,
    ) -> Result<PipelinePlan, ConfigProblems> {
        let errors = ConfigErrors::default();
        let plan = self.instantiate_into(registry, state_dir, worker, &errors);
        if errors.is_empty() {
            Ok(plan)
        } else {
            Err(ConfigProblems(errors.take()))
        }
    }

    /// As [`Self::instantiate`], reporting into `errors` (with the file's other problems).
    pub(super) fn instantiate_into(
        self: &Arc<Self>,
        registry: &Registry,
        state_dir: &Path,
        worker: &WorkerSettings,
        errors: &ConfigErrors,
    ) -> PipelinePlan {
        let at = Place {
            pipeline: &self.name,
            state_dir,
            worker,
            errors,
        };
        PipelinePlan {
            sources: at.built(Section::Sources, &self.sources, |t| registry.get_source(t)),
            transforms: at.built(Section::Transforms, &self.transforms, |t| {
                registry.get_transform(t)
            }),
            sinks: at.built(Section::Sinks, &self.sinks, |t| registry.get_sink(t)),
            state_dir: state_dir.join(&self.name),
            spec: Arc::clone(self),
        }
    }
}

/// Where components are built: their pipeline, its state and settings, and where
/// problems are reported.
struct Place<'a> {
    pipeline: &'a str,
    state_dir: &'a Path,
    worker: &'a WorkerSettings,
    errors: &'a ConfigErrors,
}

impl<'a> Place<'a> {
    /// The components of one section, each built by the builder of its type; those
    /// whose options are invalid are left out (their problems are reported).
    fn built<T: ?Sized>(
        &self,
        section: Section,
        specs: &'a [ComponentSpec],
        builder: impl Fn(&str) -> Option<Builder<T>>,
    ) -> Vec<ComponentPlan<T>> {
        specs
            .iter()
            .filter_map(|spec| {
                let build = builder(&spec.type_name)?;
                let mut cfg = ConfigMap::new(
                    &spec.node,
                    format!("{}.{}", section.key(), spec.name),
                    self.errors,
                );
                // Read when the spec was parsed.
                cfg.allow(&["type", "inputs"]);
                let ctx = BuildContext {
                    pipeline: self.pipeline.to_string(),
                    component: spec.name.clone(),
                    state_dir: self.state_dir.to_path_buf(),
                    inputs: spec.inputs.clone(),
                    worker: self.worker.clone(),
                };
                let component = build(&mut cfg, &ctx).ok()?;
                Some(ComponentPlan {
                    name: spec.name.clone(),
                    type_name: spec.type_name.clone(),
                    inputs: spec.inputs.clone(),
                    component,
                })
            })
            .collect()
    }
}
