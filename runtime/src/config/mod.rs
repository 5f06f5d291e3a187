//! Loading pipeline files: globbing, YAML with positions, interpolation, building every
//! component through the registry, and checking the graph. All problems of all files
//! are reported together.

mod copartition;
mod graph;
mod instantiate;
mod interpolate;
mod pipeline;
mod worker_file;
mod yaml;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use connectd_sdk::config::{ConfigError, ConfigErrors, ConfigMap, Span};
use connectd_sdk::{BuildContext, Registry, WorkerSettings};

pub use pipeline::{
    BackfillParts, ComponentPlan, ComponentSpec, ErrorPolicy, PipelinePlan, PipelineSpec, Rebuild,
    Tolerance,
};
pub use worker_file::load_worker;

/// Every problem found in the given config files.
#[derive(Debug)]
pub struct ConfigProblems(pub Vec<ConfigError>);

impl fmt::Display for ConfigProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.0 {
            writeln!(f, "error: {e}")?;
        }
        write!(f, "{} problem(s) found", self.0.len())
    }
}

impl std::error::Error for ConfigProblems {}

/// Expands the `--config` arguments (files or quoted globs) into files, sorted.
pub fn expand_paths(patterns: &[String]) -> Result<Vec<PathBuf>, ConfigProblems> {
    expand(patterns, true)
}

/// The files the `--config` arguments stand for now (a hot reload): a glob that
/// matches nothing and a missing file are no error (their pipelines were removed).
pub fn current_paths(patterns: &[String]) -> Result<Vec<PathBuf>, ConfigProblems> {
    let mut files = expand(patterns, false)?;
    files.retain(|f| f.is_file());
    Ok(files)
}

fn expand(patterns: &[String], require: bool) -> Result<Vec<PathBuf>, ConfigProblems> {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    let at = |p: &str| Span {
        file: p.into(),
        line: 0,
        column: 0,
    };
    for pattern in patterns {
        if pattern.contains(['*', '?', '[']) {
            match glob::glob(pattern) {
                Ok(paths) => {
                    let mut found: Vec<PathBuf> = paths
                        .filter_map(Result::ok)
                        .filter(|p| p.is_file())
                        .collect();
                    if found.is_empty() && require {
                        problems.push(ConfigError {
                            span: at(pattern),
                            field: String::new(),
                            message: "no file matches this pattern".into(),
                        });
                    }
                    found.sort();
                    files.extend(found);
                }
                Err(e) => problems.push(ConfigError {
                    span: at(pattern),
                    field: String::new(),
                    message: format!("invalid glob pattern: {e}"),
                }),
            }
        } else {
            files.push(PathBuf::from(pattern));
        }
    }
    if files.is_empty() && problems.is_empty() && require {
        problems.push(ConfigError {
            span: at("--config"),
            field: String::new(),
            message: "no pipeline files given".into(),
        });
    }
    files.dedup();
    if problems.is_empty() {
        Ok(files)
    } else {
        Err(ConfigProblems(problems))
    }
}

/// A pipeline file as JSON, as written (no `${...}` expanded; scalars typed as YAML's
/// core schema types them): what an editor checks against `connectd schema`.
pub fn file_as_json(path: &Path) -> Result<serde_json::Value, ConfigProblems> {
    let name: Arc<str> = path.display().to_string().into();
    let errors = ConfigErrors::default();
    let node = match std::fs::read_to_string(path) {
        Ok(text) => yaml::parse_with(&name, &text, &errors, yaml::Interpolation::Keep),
        Err(e) => {
            let at = Span {
                file: name.clone(),
                line: 0,
                column: 0,
            };
            errors.push(&at, "", format!("cannot read the file: {e}"));
            None
        }
    };
    match node {
        Some(n) if errors.is_empty() => Ok(n.to_json()),
        _ => Err(ConfigProblems(errors.take())),
    }
}

/// Loads and builds every pipeline of the given files (each plan keeps the spec it
/// was built from, [`PipelinePlan::spec`], for later runs).
pub fn load(
    files: &[PathBuf],
    registry: &Registry,
    state_dir: &Path,
    worker: &WorkerSettings,
) -> Result<Vec<PipelinePlan>, ConfigProblems> {
    let mut plans: Vec<PipelinePlan> = Vec::new();
    let mut problems = Vec::new();
    for path in files {
        let name: Arc<str> = path.display().to_string().into();
        let errors = ConfigErrors::default();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                if let Some(root) = yaml::parse(&name, &text, &errors) {
                    // Parsed once; instantiated here to check every component's options
                    // (a worker instantiates the spec again for each later run).
                    let spec = Arc::new(pipeline::parse(&root, path, registry, &errors));
                    let plan = spec.instantiate_into(registry, state_dir, worker, &errors);
                    if errors.is_empty() {
                        if let Some(other) = plans.iter().find(|p| p.name == plan.name) {
                            errors.push(
                                &plan.name_span,
                                "name",
                                format!(
                                    "pipeline name `{}` is already used by {}",
                                    plan.name,
                                    other.file.display()
                                ),
                            );
                        } else {
                            plans.push(plan);
                        }
                    }
                }
            }
            Err(e) => errors.push(
                &Span {
                    file: name.clone(),
                    line: 0,
                    column: 0,
                },
                "",
                format!("cannot read the file: {e}"),
            ),
        }
        problems.extend(errors.take());
    }
    if problems.is_empty() {
        Ok(plans)
    } else {
        Err(ConfigProblems(problems))
    }
}

/// One component's configuration checked without running anything (the admin API's
/// validate): every problem, each with its field. `kind` is source, transform or sink;
/// the caller has checked that `type_name` is one.
pub fn validate_component(
    kind: &str,
    type_name: &str,
    config: &serde_json::Value,
    registry: &Registry,
    state_dir: &Path,
    worker: &WorkerSettings,
) -> Vec<ConfigError> {
    let errors = ConfigErrors::default();
    let file: Arc<str> = "request body".into();
    // JSON is YAML: the same parser gives the same checks and messages.
    if let Some(node) = yaml::parse_with(
        &file,
        &config.to_string(),
        &errors,
        yaml::Interpolation::Refuse,
    ) {
        let mut cfg = ConfigMap::new(&node, "", &errors);
        // As in a pipeline file; not the component's own settings.
        let _ = cfg.opt_str("type");
        let inputs = cfg.opt_str_list("inputs").unwrap_or_default();
        let ctx = BuildContext {
            pipeline: "validate".into(),
            component: type_name.into(),
            state_dir: state_dir.to_path_buf(),
            inputs,
            worker: worker.clone(),
        };
        // Built and dropped: nothing is opened before `open`.
        match kind {
            "source" => {
                if let Some(b) = registry.get_source(type_name) {
                    let _ = b(&mut cfg, &ctx);
                }
            }
            "transform" => {
                if let Some(b) = registry.get_transform(type_name) {
                    let _ = b(&mut cfg, &ctx);
                }
            }
            _ => {
                // Read by the runtime, not by the sink.
                let _ = cfg.one_of("start", &["checkpoint", "beginning"], "checkpoint");
                if let Some(b) = registry.get_sink(type_name) {
                    let _ = b(&mut cfg, &ctx);
                }
            }
        }
    }
    errors.take()
}
