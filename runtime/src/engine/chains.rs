//! Operator chaining, as Flink does it: a transform whose only input is a source that
//! feeds nothing else runs inside that source's task (`source_task::Chained`). A batch
//! then goes from the source's parser straight into the transform: no channel, no task
//! wake-up, no other core (measured on the file → window path: the hand-over between
//! tasks cost about a fifth of its CPU). Barriers and lanes reach it in order with the
//! data, as through a channel with one input.

use std::collections::HashMap;

/// A consumer in the pipeline graph: its name, its inputs, and whether it may run in
/// its source's task (transforms may; sinks keep their own task, they wait on I/O).
pub struct Node<'a> {
    pub name: &'a str,
    pub inputs: &'a [String],
    pub chainable: bool,
}

/// Source name → the transform that runs in its task.
pub fn into_sources(sources: &[&str], nodes: &[Node<'_>]) -> HashMap<String, String> {
    let mut fan_out: HashMap<&str, usize> = HashMap::new();
    for n in nodes {
        for i in n.inputs {
            *fan_out.entry(i.as_str()).or_default() += 1;
        }
    }
    nodes
        .iter()
        .filter_map(|n| match n.inputs {
            [only]
                if n.chainable
                    && sources.contains(&only.as_str())
                    && fan_out.get(only.as_str()) == Some(&1) =>
            {
                Some((only.clone(), n.name.to_string()))
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_transform_that_alone_reads_a_source_runs_in_its_task() {
        let (a, b, c) = (names(&["src"]), names(&["w"]), names(&["src"]));
        let nodes = [
            Node {
                name: "w",
                inputs: &a,
                chainable: true,
            },
            Node {
                name: "csv",
                inputs: &b,
                chainable: false,
            },
        ];
        let chained = into_sources(&["src"], &nodes);
        assert_eq!(chained.get("src").map(String::as_str), Some("w"));
        assert_eq!(chained.len(), 1, "a sink keeps its own task");
        let sink_only = [Node {
            name: "csv",
            inputs: &c,
            chainable: false,
        }];
        assert!(into_sources(&["src"], &sink_only).is_empty());
    }

    #[test]
    fn fan_out_fan_in_and_transform_inputs_break_a_chain() {
        let (one, two, both, after) = (
            names(&["src"]),
            names(&["src"]),
            names(&["a", "other"]),
            names(&["a"]),
        );
        let nodes = [
            Node {
                name: "a",
                inputs: &one,
                chainable: true,
            },
            Node {
                name: "b",
                inputs: &two,
                chainable: true,
            },
            Node {
                name: "join",
                inputs: &both,
                chainable: true,
            },
            Node {
                name: "next",
                inputs: &after,
                chainable: true,
            },
        ];
        assert!(
            into_sources(&["src", "other"], &nodes).is_empty(),
            "src feeds two; join reads two; next reads a transform"
        );
    }
}
