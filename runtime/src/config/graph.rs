//! Checks of the pipeline graph: unique names, known inputs, no cycles, nothing unused.

use std::collections::{BTreeMap, BTreeSet};

use connectd_sdk::config::{closest, ConfigErrors, Span};

/// `to` reads from `from`, as written at `span`.
#[derive(Debug, Clone)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub span: Span,
    pub field: String,
}

pub fn check(
    sources: &[(String, Span)],
    transforms: &[(String, Span)],
    sinks: &[(String, Span)],
    edges: &[Edge],
    errors: &ConfigErrors,
) {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for (section, list) in [
        ("sources", sources),
        ("transforms", transforms),
        ("sinks", sinks),
    ] {
        for (name, span) in list {
            if let Some(prev) = seen.insert(name, section) {
                errors.push(span, format!("{section}.{name}"), format!("the name `{name}` is already used under `{prev}`; component names must be unique"));
            }
        }
    }
    let producers: BTreeSet<&str> = sources
        .iter()
        .chain(transforms)
        .map(|(n, _)| n.as_str())
        .collect();
    let sink_names: BTreeSet<&str> = sinks.iter().map(|(n, _)| n.as_str()).collect();
    for e in edges {
        if sink_names.contains(e.from.as_str()) {
            errors.push(
                &e.span,
                &e.field,
                format!(
                    "`{}` is a sink; inputs must be sources or transforms",
                    e.from
                ),
            );
        } else if !producers.contains(e.from.as_str()) {
            let known: Vec<&str> = producers.iter().copied().collect();
            let hint = closest(&e.from, &known)
                .map(|c| format!("; did you mean `{c}`?"))
                .unwrap_or_default();
            errors.push(
                &e.span,
                &e.field,
                format!(
                    "unknown input `{}` (sources and transforms: {}){hint}",
                    e.from,
                    known.join(", ")
                ),
            );
        } else if e.from == e.to {
            errors.push(
                &e.span,
                &e.field,
                format!("`{}` cannot read its own output", e.to),
            );
        }
    }
    // Cycles among transforms: depth-first search over transform → transform edges.
    let transform_names: BTreeSet<&str> = transforms.iter().map(|(n, _)| n.as_str()).collect();
    let mut next: BTreeMap<&str, Vec<&Edge>> = BTreeMap::new();
    for e in edges.iter().filter(|e| {
        transform_names.contains(e.from.as_str())
            && transform_names.contains(e.to.as_str())
            && e.from != e.to
    }) {
        next.entry(e.from.as_str()).or_default().push(e);
    }
    let mut state: BTreeMap<&str, u8> = BTreeMap::new(); // 1 = on the stack, 2 = done
    fn visit<'a>(
        n: &'a str,
        next: &BTreeMap<&'a str, Vec<&'a Edge>>,
        state: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
        errors: &ConfigErrors,
    ) {
        state.insert(n, 1);
        path.push(n);
        for e in next.get(n).into_iter().flatten() {
            match state.get(e.to.as_str()) {
                Some(1) => {
                    let start = path.iter().position(|p| *p == e.to).unwrap_or(0);
                    let mut cycle: Vec<&str> = path[start..].to_vec();
                    cycle.push(&e.to);
                    errors.push(&e.span, &e.field, format!("cycle: {}", cycle.join(" → ")));
                }
                Some(_) => {}
                None => visit(&e.to, next, state, path, errors),
            }
        }
        path.pop();
        state.insert(n, 2);
    }
    for (name, _) in transforms {
        if !state.contains_key(name.as_str()) {
            visit(name, &next, &mut state, &mut Vec::new(), errors);
        }
    }
    let consumed: BTreeSet<&str> = edges.iter().map(|e| e.from.as_str()).collect();
    for (section, list) in [("sources", sources), ("transforms", transforms)] {
        for (name, span) in list {
            if !consumed.contains(name.as_str()) {
                errors.push(
                    span,
                    format!("{section}.{name}"),
                    format!("`{name}` is not used: no transform or sink lists it in `inputs`"),
                );
            }
        }
    }
}
