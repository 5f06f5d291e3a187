//! One pipeline file → a [`PipelineSpec`]: its settings, components and graph, checked.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use connectd_sdk::config::{parse_size, ConfigErrors, ConfigMap, ConfigNode, ConfigValue, Span};
use connectd_sdk::state::DEFAULT_CACHE_SIZE;
use connectd_sdk::{Registry, Sink, Source, Transform};

use super::graph;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tolerance {
    /// A bad record stops the pipeline, naming the record and the reason.
    None,
    /// Bad records go to the dead-letter queue (or the log) and processing continues.
    All,
}

#[derive(Clone, Debug)]
pub struct ErrorPolicy {
    pub tolerance: Tolerance,
    pub dlq_path: Option<PathBuf>,
    /// How long transient errors are retried before the pipeline fails.
    pub retry_timeout: Duration,
}

/// A component with its name, type and inputs.
#[derive(Debug)]
pub struct ComponentPlan<T: ?Sized> {
    pub name: String,
    pub type_name: String,
    pub inputs: Vec<String>,
    pub component: Box<T>,
    /// Builds another instance from the same options (a transform run once per input
    /// partition, `state.per_partition`); `None` where the component was not built
    /// from options.
    pub rebuild: Option<Rebuild<T>>,
}

/// Builds a fresh instance of a component from its options, checked once already.
pub struct Rebuild<T: ?Sized>(pub Arc<dyn Fn() -> Option<Box<T>> + Send + Sync>);

impl<T: ?Sized> Rebuild<T> {
    pub fn build(&self) -> Option<Box<T>> {
        (self.0)()
    }
}

impl<T: ?Sized> Clone for Rebuild<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T: ?Sized> std::fmt::Debug for Rebuild<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rebuild")
    }
}

/// One component as its file describes it: checked, not built.
#[derive(Clone, Debug)]
pub struct ComponentSpec {
    pub name: String,
    pub type_name: String,
    pub inputs: Vec<String>,
    /// Its options (with `type` and `inputs`), interpolated, with their positions.
    pub node: ConfigNode,
    /// A sink's `start: beginning`: new to a pipeline that has a checkpoint, it is first
    /// backfilled with what the pipeline produced before (`engine::backfill`).
    pub start_beginning: bool,
}

/// A pipeline file parsed once: a plain value, instantiated into a [`PipelinePlan`]
/// for every run (start, resume, restart) without reading the file again.
#[derive(Clone, Debug)]
pub struct PipelineSpec {
    pub name: String,
    pub name_span: Span,
    pub file: PathBuf,
    pub checkpoint_interval: Duration,
    pub batch_size: usize,
    pub errors: ErrorPolicy,
    /// `state.cache_size`: memory for keyed state in front of the state store.
    pub state_cache_bytes: u64,
    /// `state.per_partition`: keyed state owned by the input partition (lane) it came
    /// from, one transform instance per lane (`engine::partition_tasks`).
    pub state_per_partition: bool,
    pub sources: Vec<ComponentSpec>,
    pub transforms: Vec<ComponentSpec>,
    pub sinks: Vec<ComponentSpec>,
    /// Values that came from `${env:...}` / `${file:...}`: kept out of what the admin
    /// API and the exit report show.
    pub secrets: Vec<String>,
    /// The file's `tests:` (run by `connectd test`, never by a worker).
    pub tests: Vec<crate::pipeline_test::PipelineTest>,
}

/// What each `${...}` of `raw` became in `value`: the value with the literal text
/// around the references taken out, piece by piece.
fn substituted(raw: &str, value: &str) -> Vec<String> {
    let mut literals = Vec::new();
    let mut rest = raw;
    while let Some(start) = rest.find("${") {
        literals.push(&rest[..start]);
        rest = rest[start..]
            .find('}')
            .map_or("", |end| &rest[start + end + 1..]);
    }
    literals.push(rest);
    let Some(mut left) = value.strip_prefix(literals[0]) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, lit) in literals.iter().enumerate().skip(1) {
        let end = if lit.is_empty() {
            if i + 1 == literals.len() {
                left.len()
            } else {
                continue;
            }
        } else {
            match left.find(lit) {
                Some(e) => e,
                None => break,
            }
        };
        out.push(left[..end].to_string());
        left = &left[end + lit.len()..];
    }
    out
}

/// Below this the store's own tables would not fit.
const MIN_CACHE_SIZE: u64 = 4 << 20;

/// A pipeline ready to run: its spec (name, settings; through `Deref`) and its built
/// components.
#[derive(Debug)]
pub struct PipelinePlan {
    /// What it was built from: the next run is built from this, not from the file.
    pub spec: Arc<PipelineSpec>,
    pub sources: Vec<ComponentPlan<dyn Source>>,
    pub transforms: Vec<ComponentPlan<dyn Transform>>,
    pub sinks: Vec<ComponentPlan<dyn Sink>>,
    /// The pipeline's own state directory (`<state dir>/<name>`): its checkpoint log and
    /// its sinks' write-ahead logs.
    pub state_dir: PathBuf,
    /// A second, unopened set of sources and transforms, built when a sink says
    /// `start: beginning`: what a backfill runs.
    pub backfill: Option<BackfillParts>,
}

/// The components a backfill runs: fresh instances of the pipeline's sources and
/// transforms.
#[derive(Debug)]
pub struct BackfillParts {
    pub sources: Vec<ComponentPlan<dyn Source>>,
    pub transforms: Vec<ComponentPlan<dyn Transform>>,
}

impl PipelineSpec {
    /// Whether sink `name` says `start: beginning`.
    pub fn starts_at_beginning(&self, name: &str) -> bool {
        self.sinks
            .iter()
            .any(|s| s.name == name && s.start_beginning)
    }
}

impl std::ops::Deref for PipelinePlan {
    type Target = PipelineSpec;

    fn deref(&self) -> &PipelineSpec {
        &self.spec
    }
}

/// The substituted parts of every interpolated scalar under `node` (the text written
/// around a `${...}` is not secret; what it stood for is).
fn secrets_of(node: &ConfigNode, out: &mut Vec<String>) {
    match &node.value {
        ConfigValue::Scalar(s) if node.secret => {
            out.push(s.clone());
            if let Some(raw) = &node.raw {
                out.extend(substituted(raw, s));
            }
        }
        ConfigValue::List(items) => items.iter().for_each(|n| secrets_of(n, out)),
        ConfigValue::Map(entries) => entries.iter().for_each(|(_, n)| secrets_of(n, out)),
        _ => {}
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The components of one section (`sources:`, ...), each as (name, key span, node).
fn section<'a>(
    top: &mut ConfigMap<'a>,
    key: &'a str,
    required: bool,
) -> Vec<(&'a str, &'a Span, &'a ConfigNode)> {
    match top.opt_entries(key) {
        Some(entries) => {
            if entries.is_empty() && required {
                top.error(
                    key,
                    format!("a pipeline needs at least one entry under `{key}`"),
                );
            }
            entries
                .into_iter()
                .map(|(k, v)| {
                    if !valid_name(&k.name) {
                        top.errors().push(
                            &k.span,
                            format!("{key}.{}", k.name),
                            "component names may use letters, digits, `_` and `-` only",
                        );
                    }
                    (k.name.as_str(), &k.span, v)
                })
                .collect()
        }
        None => {
            if required {
                top.error(key, format!("missing required section `{key}`"));
            }
            Vec::new()
        }
    }
}

/// Reads `type` and checks it against the registry; returns the builder's type name.
fn component_type(cfg: &mut ConfigMap<'_>, what: &str, known: Vec<&'static str>) -> Option<String> {
    let t = cfg.str("type");
    if t.is_empty() {
        return None;
    }
    if !known.contains(&t.as_str()) {
        let hint = connectd_sdk::config::closest(&t, &known)
            .map(|c| format!("; did you mean `{c}`?"))
            .unwrap_or_default();
        cfg.error(
            "type",
            format!(
                "unknown {what} type `{t}` (known: {}){hint}",
                known.join(", ")
            ),
        );
        return None;
    }
    Some(t)
}

/// Parses one pipeline file's root into a spec: the pipeline's settings, each
/// component's type (checked against the registry) and inputs, and the graph. The
/// components' own options are checked when the spec is instantiated.
pub fn parse(
    root: &ConfigNode,
    file: &Path,
    registry: &Registry,
    errors: &ConfigErrors,
) -> PipelineSpec {
    let mut top = ConfigMap::new(root, "", errors);
    let name_span = root
        .get("name")
        .map(|n| n.span.clone())
        .unwrap_or_else(|| root.span.clone());
    let name = top.str("name");
    if !name.is_empty() && !valid_name(&name) {
        top.error("name", "pipeline names may use letters, digits, `_` and `-` only (they name state directories)");
    }
    let checkpoint_interval = match top.opt_map("checkpoint") {
        Some(mut c) => {
            let d = c.duration_or("interval", Duration::from_secs(1));
            if d.is_zero() {
                c.error("interval", "the checkpoint interval must be greater than 0");
            }
            let _ = c.finish();
            d
        }
        None => Duration::from_secs(1),
    };
    // 128 records (~70 KB as values) is still in the cache when the next component
    // reads them: 11–26 % less CPU than 1024 on the file → window path (README).
    let batch_size = top.u64_or("batch_size", 128).clamp(1, 1 << 20) as usize;
    let (state_cache_bytes, state_per_partition) = match top.opt_map("state") {
        Some(mut st) => {
            let mut bytes = DEFAULT_CACHE_SIZE;
            if let Some(text) = st.opt_str("cache_size") {
                match parse_size(&text) {
                    Ok(b) if b >= MIN_CACHE_SIZE => bytes = b,
                    Ok(_) => st.error("cache_size", "the state cache must be at least 4MiB"),
                    Err(e) => st.error("cache_size", e),
                }
            }
            let per_partition = st.bool_or("per_partition", false);
            let _ = st.finish();
            (bytes, per_partition)
        }
        None => (DEFAULT_CACHE_SIZE, false),
    };
    let policy = match top.opt_map("errors") {
        Some(mut e) => {
            let tolerance = if e.one_of("tolerance", &["none", "all"], "none") == "all" {
                Tolerance::All
            } else {
                Tolerance::None
            };
            let dlq_path = e.opt_map("dlq").and_then(|mut d| {
                let p = d.str("path");
                let _ = d.finish();
                (!p.is_empty()).then(|| PathBuf::from(p))
            });
            let retry_timeout = e.duration_or("retry_timeout", Duration::from_secs(300));
            let _ = e.finish();
            ErrorPolicy {
                tolerance,
                dlq_path,
                retry_timeout,
            }
        }
        None => ErrorPolicy {
            tolerance: Tolerance::None,
            dlq_path: None,
            retry_timeout: Duration::from_secs(300),
        },
    };

    top.allow(&["tests"]);
    let tests = root
        .get("tests")
        .and_then(|n| connectd_sdk::config::typed_node(n, "tests", errors))
        .unwrap_or_default();
    let source_nodes = section(&mut top, "sources", true);
    let transform_nodes = section(&mut top, "transforms", false);
    let sink_nodes = section(&mut top, "sinks", true);
    let _ = top.finish();

    let mut edges = Vec::new();
    let sources = components(
        &source_nodes,
        Section::Sources,
        registry,
        &mut edges,
        errors,
    );
    let transforms = components(
        &transform_nodes,
        Section::Transforms,
        registry,
        &mut edges,
        errors,
    );
    let sinks = components(&sink_nodes, Section::Sinks, registry, &mut edges, errors);
    let names = |nodes: &[(&str, &Span, &ConfigNode)]| {
        nodes
            .iter()
            .map(|(n, s, _)| (n.to_string(), (*s).clone()))
            .collect::<Vec<_>>()
    };
    graph::check(
        &names(&source_nodes),
        &names(&transform_nodes),
        &names(&sink_nodes),
        &edges,
        errors,
    );

    let mut secrets = Vec::new();
    secrets_of(root, &mut secrets);
    PipelineSpec {
        secrets,
        name,
        name_span,
        file: file.to_path_buf(),
        checkpoint_interval,
        batch_size,
        state_cache_bytes,
        state_per_partition,
        errors: policy,
        sources,
        transforms,
        sinks,
        tests,
    }
}

/// The three sections of components.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Section {
    Sources,
    Transforms,
    Sinks,
}

impl Section {
    /// The section's key in a pipeline file.
    pub(super) fn key(self) -> &'static str {
        match self {
            Section::Sources => "sources",
            Section::Transforms => "transforms",
            Section::Sinks => "sinks",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Section::Sources => "source",
            Section::Transforms => "transform",
            Section::Sinks => "sink",
        }
    }

    fn types(self, registry: &Registry) -> Vec<&'static str> {
        match self {
            Section::Sources => registry.source_types(),
            Section::Transforms => registry.transform_types(),
            Section::Sinks => registry.sink_types(),
        }
    }
}

/// The components of one section whose type is known and whose inputs are readable;
/// the others have been reported.
fn components(
    nodes: &[(&str, &Span, &ConfigNode)],
    section: Section,
    registry: &Registry,
    edges: &mut Vec<graph::Edge>,
    errors: &ConfigErrors,
) -> Vec<ComponentSpec> {
    let mut out = Vec::new();
    for (name, _, node) in nodes {
        let errors_before = errors.len();
        let mut cfg = ConfigMap::new(node, format!("{}.{name}", section.key()), errors);
        let inputs = if section == Section::Sources {
            Vec::new()
        } else {
            read_inputs(&mut cfg, edges, name)
        };
        let type_name = component_type(&mut cfg, section.kind(), section.types(registry));
        let start_beginning = section == Section::Sinks
            && cfg.one_of("start", &["checkpoint", "beginning"], "checkpoint") == "beginning";
        // Options are the builder's to check (when the spec is instantiated).
        match type_name {
            Some(type_name) if errors.len() == errors_before => out.push(ComponentSpec {
                name: name.to_string(),
                type_name,
                inputs,
                node: (*node).clone(),
                start_beginning,
            }),
            _ => {}
        }
    }
    out
}

/// Reads `inputs` and records each edge with its position for the graph check.
fn read_inputs(
    cfg: &mut ConfigMap<'_>,
    edges: &mut Vec<graph::Edge>,
    component: &str,
) -> Vec<String> {
    let field = cfg.field_path("inputs");
    let node = cfg.node("inputs");
    let Some(node) = node else {
        cfg.error(
            "inputs",
            "missing required field (expected a list of source or transform names)",
        );
        return Vec::new();
    };
    let items: Vec<&ConfigNode> = match &node.value {
        ConfigValue::List(items) => items.iter().collect(),
        ConfigValue::Scalar(_) => vec![node],
        _ => {
            cfg.error_at(
                node,
                "inputs",
                format!("expected a list of names, found {}", node.kind()),
            );
            return Vec::new();
        }
    };
    if items.is_empty() {
        cfg.error_at(node, "inputs", "expected at least one input");
    }
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match &item.value {
            ConfigValue::Scalar(s) => {
                if out.contains(s) {
                    cfg.errors().push(
                        &item.span,
                        format!("{field}[{i}]"),
                        format!("`{s}` is listed twice"),
                    );
                    continue;
                }
                edges.push(graph::Edge {
                    from: s.clone(),
                    to: component.to_string(),
                    span: item.span.clone(),
                    field: format!("{field}[{i}]"),
                });
                out.push(s.clone());
            }
            _ => cfg.errors().push(
                &item.span,
                format!("{field}[{i}]"),
                format!("expected a component name, found {}", item.kind()),
            ),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::substituted;

    #[test]
    fn finds_what_references_stood_for() {
        assert_eq!(substituted("${env:A}", "s3cret"), vec!["s3cret"]);
        assert_eq!(
            substituted("mysql://u:${env:P}@h/${env:D}", "mysql://u:pw9@h/db"),
            vec!["pw9", "db"]
        );
        assert_eq!(substituted("${env:H}/x/c.csv", "dir/x/c.csv"), vec!["dir"]);
        assert!(substituted("a${env:B}", "zzz").is_empty());
    }
}
