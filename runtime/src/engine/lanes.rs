//! Which origins of lanes (see `connectd_sdk::lanes`) reach each transform: an
//! event-time transform holds its watermark until every one of them has said which
//! lanes it has, so a source that starts a moment later is not made late by one that
//! started first.

use std::collections::{BTreeSet, HashMap};

use connectd_sdk::lanes as sdk_lanes;

/// A transform's inputs and whether its output keeps its inputs' lanes.
pub struct Node<'a> {
    pub name: &'a str,
    pub inputs: &'a [String],
    pub keeps_lanes: bool,
}

/// For each transform, the origins of the lanes on its inputs: the sources upstream,
/// seen through transforms that keep lanes; a transform that does not is an origin.
pub fn upstream_origins(nodes: &[Node<'_>]) -> HashMap<String, Vec<u32>> {
    let by_name: HashMap<&str, &Node<'_>> = nodes.iter().map(|n| (n.name, n)).collect();
    let mut out = HashMap::new();
    for n in nodes {
        let mut found = BTreeSet::new();
        for input in n.inputs {
            origins_of(input, &by_name, &mut found, 0);
        }
        out.insert(n.name.to_string(), found.into_iter().collect());
    }
    out
}

/// The origins of the lanes `component` emits. The pipeline is acyclic (validated);
/// the depth bound only guards against a bug looping forever.
fn origins_of(
    component: &str,
    nodes: &HashMap<&str, &Node<'_>>,
    found: &mut BTreeSet<u32>,
    depth: usize,
) {
    match nodes.get(component) {
        Some(n) if n.keeps_lanes && depth < 64 => {
            for input in n.inputs {
                origins_of(input, nodes, found, depth + 1);
            }
        }
        // A source, or a transform whose output is a new stream.
        _ => {
            found.insert(sdk_lanes::origin(component));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_seen_through_lane_keeping_transforms_only() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let (f_in, w_in, j_in) = (s(&["a", "b"]), s(&["f"]), s(&["w", "c"]));
        let nodes = [
            Node {
                name: "f",
                inputs: &f_in,
                keeps_lanes: true,
            },
            Node {
                name: "w",
                inputs: &w_in,
                keeps_lanes: false,
            },
            Node {
                name: "j",
                inputs: &j_in,
                keeps_lanes: false,
            },
        ];
        let o = upstream_origins(&nodes);
        let set = |v: &[&str]| {
            let mut x: Vec<u32> = v.iter().map(|n| sdk_lanes::origin(n)).collect();
            x.sort_unstable();
            x
        };
        assert_eq!(o["w"], set(&["a", "b"]));
        assert_eq!(o["j"], set(&["w", "c"]));
    }
}
