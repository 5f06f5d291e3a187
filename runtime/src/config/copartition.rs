//! `state.per_partition` splits a transform's keyed state by input partition. That is
//! exact only when every record of a key comes through one partition: the transform's
//! key must include the field its inputs are partitioned by (co-partitioning, as Kafka
//! Streams requires). Checked when the pipeline is built, so `validate` reports it;
//! never silently split windows.

use connectd_sdk::config::ConfigErrors;
use connectd_sdk::{Partitioning, Source, Transform};

use super::pipeline::{ComponentPlan, PipelineSpec};

/// Reports every stateful transform whose key is not whole in one partition of each
/// source upstream of it.
pub(super) fn check(
    spec: &PipelineSpec,
    sources: &[ComponentPlan<dyn Source>],
    transforms: &[ComponentPlan<dyn Transform>],
    errors: &ConfigErrors,
) {
    for t in transforms {
        let Some(at) = spec.transforms.iter().find(|s| s.name == t.name) else {
            continue;
        };
        for (i, input) in t.inputs.iter().enumerate() {
            let Some(key) = t.component.state_key(i) else {
                continue;
            };
            let shown: Vec<String> = key.iter().map(ToString::to_string).collect();
            for s in upstream_sources(input, sources, transforms) {
                let problem = match s.component.partitioning() {
                    Partitioning::Single => continue,
                    Partitioning::ByField(f) if key.contains(&f) => continue,
                    Partitioning::ByField(f) => format!(
                        "source `{}`'s partitions are keyed by `{f}`, which is not part of the key. Add `{f}` to the key, or first write the records to a topic keyed by [{}] (a repartition step) and read that",
                        s.name,
                        shown.join(", ")
                    ),
                    Partitioning::Undeclared => format!(
                        "source `{}` does not say what its partitions are keyed by. Set its `key_field` to the field its message key holds (checked for every message), and have that field in the key",
                        s.name
                    ),
                };
                errors.push(
                    &at.node.span,
                    format!("transforms.{}", t.name),
                    format!(
                        "`state.per_partition` keeps each input partition's state apart, so `{}` must find every record of a key in one partition, but its key is [{}] and {problem}; or turn `state.per_partition` off",
                        t.name,
                        shown.join(", ")
                    ),
                );
            }
        }
    }
}

/// The sources whose records reach component `name`, through any transforms.
fn upstream_sources<'a>(
    name: &str,
    sources: &'a [ComponentPlan<dyn Source>],
    transforms: &[ComponentPlan<dyn Transform>],
) -> Vec<&'a ComponentPlan<dyn Source>> {
    let mut found: Vec<&ComponentPlan<dyn Source>> = Vec::new();
    let mut todo = vec![name.to_string()];
    let mut seen = std::collections::BTreeSet::new();
    while let Some(n) = todo.pop() {
        if !seen.insert(n.clone()) {
            continue;
        }
        if let Some(s) = sources.iter().find(|s| s.name == n) {
            found.push(s);
        } else if let Some(t) = transforms.iter().find(|t| t.name == n) {
            todo.extend(t.inputs.iter().cloned());
        }
    }
    found
}
