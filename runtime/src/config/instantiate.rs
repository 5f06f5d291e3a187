//! A [`PipelineSpec`] → a [`PipelinePlan`]: every component built by its registered
//! builder from its options. Done for each run; the file is not read again.

use std::path::Path;
use std::sync::Arc;

use connectd_sdk::config::{ConfigErrors, ConfigMap, ConfigNode, Invalid};
use connectd_sdk::{BuildContext, Registry, Sink, Source, WorkerSettings};

use super::pipeline::{
    BackfillParts, ComponentPlan, ComponentSpec, PipelinePlan, PipelineSpec, Rebuild, Section,
};
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
        let sources = at.built(Section::Sources, &self.sources, |t| registry.get_source(t));
        let sinks = at.built(Section::Sinks, &self.sinks, |t| registry.get_sink(t));
        let backfill = self.sinks.iter().any(|s| s.start_beginning).then(|| {
            self.check_backfill(&sources, &sinks, errors);
            // Problems of these options were reported by the first build.
            let again = Place {
                errors: &ConfigErrors::default(),
                ..at
            };
            BackfillParts {
                sources: again.built(Section::Sources, &self.sources, |t| registry.get_source(t)),
                transforms: again.built(Section::Transforms, &self.transforms, |t| {
                    registry.get_transform(t)
                }),
            }
        });
        let transforms = at.built(Section::Transforms, &self.transforms, |t| {
            registry.get_transform(t)
        });
        if self.state_per_partition {
            super::copartition::check(self, &sources, &transforms, errors);
        }
        PipelinePlan {
            sources,
            transforms,
            sinks,
            state_dir: state_dir.join(&self.name),
            spec: Arc::clone(self),
            backfill,
        }
    }

    /// `start: beginning` needs a sink that keeps a checkpoint (else it cannot be known
    /// to be new) and sources that can be replayed up to a checkpoint's position.
    fn check_backfill(
        &self,
        sources: &[ComponentPlan<dyn Source>],
        sinks: &[ComponentPlan<dyn Sink>],
        errors: &ConfigErrors,
    ) {
        for spec in self.sinks.iter().filter(|s| s.start_beginning) {
            let Some(node) = spec.node.get("start") else {
                continue;
            };
            let field = format!("sinks.{}.start", spec.name);
            let sink = sinks.iter().find(|s| s.name == spec.name);
            if sink.is_some_and(|s| !s.component.exactly_once()) {
                errors.push(
                    &node.span,
                    &field,
                    format!("`start: beginning` needs an exactly-once sink: a `{}` sink keeps no checkpoint, so connectd cannot tell when it is new", spec.type_name),
                );
            }
            for source in sources {
                if let Some(why) = source.component.backfill_blocker() {
                    errors.push(
                        &node.span,
                        &field,
                        format!("`start: beginning` needs every source to replay what it produced before, and source `{}` cannot: {why}. Remove `start` (the sink then starts at the pipeline's current checkpoint)", source.name),
                    );
                }
            }
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
    fn built<T: ?Sized + 'static>(
        &self,
        section: Section,
        specs: &'a [ComponentSpec],
        builder: impl Fn(&str) -> Option<Builder<T>>,
    ) -> Vec<ComponentPlan<T>> {
        specs
            .iter()
            .filter_map(|spec| {
                let build = builder(&spec.type_name)?;
                let ctx = BuildContext {
                    pipeline: self.pipeline.to_string(),
                    component: spec.name.clone(),
                    state_dir: self.state_dir.to_path_buf(),
                    inputs: spec.inputs.clone(),
                    worker: self.worker.clone(),
                };
                let component =
                    build_one(build, &spec.node, section, &spec.name, &ctx, self.errors)?;
                let (node, name) = (spec.node.clone(), spec.name.clone());
                let again = move || {
                    // Its options were checked by the build above: problems are not
                    // reported twice.
                    build_one(build, &node, section, &name, &ctx, &ConfigErrors::default())
                };
                Some(ComponentPlan {
                    name: spec.name.clone(),
                    type_name: spec.type_name.clone(),
                    inputs: spec.inputs.clone(),
                    component,
                    rebuild: Some(Rebuild(Arc::new(again))),
                })
            })
            .collect()
    }
}

/// Builds one component from its options, reporting their problems into `errors`.
fn build_one<T: ?Sized>(
    build: Builder<T>,
    node: &ConfigNode,
    section: Section,
    name: &str,
    ctx: &BuildContext,
    errors: &ConfigErrors,
) -> Option<Box<T>> {
    let mut cfg = ConfigMap::new(node, format!("{}.{}", section.key(), name), errors);
    // Read when the spec was parsed.
    cfg.allow(&["type", "inputs"]);
    if section == Section::Sinks {
        cfg.allow(&["start"]);
    }
    build(&mut cfg, ctx).ok()
}
