//! What the components' typed options say about themselves: `connectd describe`,
//! `connectd schema` (a JSON Schema for pipeline files, for editors) and
//! `GET /connector-plugins/{type}/config`. All of it comes from the options structs the
//! builders read, so it cannot drift from what a pipeline file may hold.

use connectd_sdk::registry::Kind;
use connectd_sdk::Registry;
use serde_json::{json, Map, Value};

/// One option of a component.
#[derive(Clone, Debug, PartialEq)]
pub struct OptionDoc {
    pub name: String,
    /// As a person reads it: `string`, `duration`, `list of string`, `one of a | b`.
    pub type_text: String,
    pub required: bool,
    pub default: Option<Value>,
    pub doc: String,
}

/// A component's description and options, from its schema.
#[derive(Clone, Debug)]
pub struct ComponentDoc {
    pub kind: Kind,
    pub type_name: &'static str,
    pub description: String,
    /// `None` when the component's options are not typed yet.
    pub options: Option<Vec<OptionDoc>>,
}

fn type_text(s: &Value) -> String {
    if let Some(choices) = s.get("enum").and_then(Value::as_array) {
        let words: Vec<String> = choices
            .iter()
            .map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_string))
            .collect();
        return format!("one of {}", words.join(" | "));
    }
    if let Some(any) = s
        .get("anyOf")
        .or_else(|| s.get("oneOf"))
        .and_then(Value::as_array)
    {
        let parts: Vec<&Value> = any
            .iter()
            .filter(|p| p.get("type") != Some(&json!("null")))
            .collect();
        // An enum whose words carry their own docs is a `oneOf` of constants.
        let words: Option<Vec<String>> = parts
            .iter()
            .map(|p| {
                p.get("const")
                    .map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_string))
            })
            .collect();
        if let Some(words) = words.filter(|w| !w.is_empty()) {
            return format!("one of {}", words.join(" | "));
        }
        let parts: Vec<String> = parts.into_iter().map(type_text).collect();
        return parts.join(" or ");
    }
    if let Some(format) = s.get("x-kind").and_then(Value::as_str) {
        return format.to_string();
    }
    match s.get("type") {
        Some(Value::String(t)) if t == "array" => {
            format!("list of {}", s.get("items").map_or("any".into(), type_text))
        }
        Some(Value::String(t)) if t == "object" => match s.get("additionalProperties") {
            Some(v @ Value::Object(_)) => format!("mapping of name to {}", type_text(v)),
            _ => "mapping".into(),
        },
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => {
            let ts: Vec<&str> = ts
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null")
                .collect();
            if ts.len() > 1 {
                "scalar".into()
            } else {
                ts.first().copied().unwrap_or("any").to_string()
            }
        }
        _ => "any".into(),
    }
}

/// The options of an options schema (the root object of `options_schema`).
pub fn options_of(schema: &Value) -> Option<Vec<OptionDoc>> {
    let props = schema.get("properties")?.as_object()?;
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let doc_of = |name: String, s: &Value, required: bool| OptionDoc {
        name,
        type_text: type_text(s),
        required,
        default: s.get("default").filter(|d| !d.is_null()).cloned(),
        doc: s
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .replace('\n', " "),
    };
    let mut out = Vec::new();
    for (name, s) in props {
        out.push(doc_of(name.clone(), s, required.contains(&name.as_str())));
        // A block of settings (`csv:`, `schema_registry:`) shows its own, one level down,
        // as `block.option`: Kafka Connect's dotted names.
        if let Some(inner) = block_properties(s) {
            for (sub, t) in inner {
                out.push(doc_of(format!("{name}.{sub}"), t, false));
            }
        }
    }
    Some(out)
}

/// The properties of an option that is a block of named settings (an object with
/// `properties`, possibly as the non-null branch of an `anyOf`).
fn block_properties(s: &Value) -> Option<&serde_json::Map<String, Value>> {
    if let Some(p) = s.get("properties").and_then(Value::as_object) {
        return Some(p);
    }
    s.get("anyOf")
        .or_else(|| s.get("oneOf"))
        .and_then(Value::as_array)?
        .iter()
        .find_map(|branch| branch.get("properties").and_then(Value::as_object))
}

fn doc_of(registry: &Registry, kind: Kind, type_name: &'static str) -> Option<ComponentDoc> {
    let schema = registry.options(kind, type_name)?.to_value();
    Some(ComponentDoc {
        kind,
        type_name,
        description: schema
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .replace('\n', " "),
        options: options_of(&schema),
    })
}

/// Every component with its options.
pub fn components(registry: &Registry) -> Vec<ComponentDoc> {
    registry
        .components()
        .into_iter()
        .filter_map(|(kind, t)| doc_of(registry, kind, t))
        .collect()
}

/// The components of a type name (a name may be both a source and a sink).
pub fn find(registry: &Registry, type_name: &str) -> Vec<ComponentDoc> {
    components(registry)
        .into_iter()
        .filter(|c| c.type_name == type_name)
        .collect()
}

/// What a sink's `start` (read by the runtime, not by the sink) means.
const SINK_START: &str = "where a sink new to a pipeline that has a checkpoint begins: at that checkpoint, or (beginning) backfilled first with what the pipeline produced before it, replayed from the sources' start";

/// `connectd describe <type>`.
pub fn describe_text(doc: &ComponentDoc) -> String {
    use std::fmt::Write as _;
    let mut out = format!("{} {}", doc.kind.as_str(), doc.type_name);
    if !doc.description.is_empty() {
        let _ = write!(out, ": {}", doc.description);
    }
    out.push('\n');
    let Some(options) = &doc.options else {
        out.push_str("  (its options are not described yet)\n");
        return out;
    };
    let mut common = vec![("type", format!("`{}`", doc.type_name))];
    if doc.kind != Kind::Source {
        common.push(("inputs", "list of the component names it reads".into()));
    }
    for (name, text) in common {
        let _ = writeln!(out, "  {name:<22} required  {text}");
    }
    if doc.kind == Kind::Sink {
        let _ = writeln!(
            out,
            "  {:<22} optional  checkpoint | beginning (default checkpoint): {SINK_START}",
            "start"
        );
    }
    for o in options {
        let need = if o.required { "required" } else { "optional" };
        let _ = write!(out, "  {:<22} {need}  {}", o.name, o.type_text);
        if let Some(d) = &o.default {
            let _ = write!(out, " (default {d})");
        }
        out.push('\n');
        if !o.doc.is_empty() {
            let _ = writeln!(out, "  {:<22}           {}", "", o.doc);
        }
    }
    out
}

/// Kafka Connect's `ConfigKeyInfo` list for `GET /connector-plugins/{type}/config`.
pub fn kafka_connect_config(doc: &ComponentDoc) -> Vec<Value> {
    let connect_type = |t: &str| match t {
        "integer" => "LONG",
        "number" => "DOUBLE",
        "boolean" => "BOOLEAN",
        t if t.starts_with("list of") => "LIST",
        _ => "STRING",
    };
    doc.options
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, o)| {
            json!({
                "name": o.name,
                "type": connect_type(&o.type_text),
                "required": o.required,
                "default_value": o.default.as_ref().map(|d| match d {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                }),
                "importance": if o.required { "HIGH" } else { "MEDIUM" },
                "documentation": if o.doc.is_empty() { o.type_text.clone() } else { format!("{} ({})", o.doc, o.type_text) },
                "group": doc.type_name,
                "width": "NONE",
                "display_name": o.name,
                "dependents": [],
                "order_in_group": i + 1,
            })
        })
        .collect()
}

/// Lets a `${env:...}` / `${file:...}` reference stand where a number, a truth value or
/// a word is expected: the file holds the reference, the value comes at load time.
fn allow_references(schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    for key in ["properties"] {
        if let Some(Value::Object(props)) = obj.get_mut(key) {
            props.values_mut().for_each(allow_references);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(v @ Value::Object(_)) = obj.get_mut(key) {
            allow_references(v);
        }
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(items)) = obj.get_mut(key) {
            items.iter_mut().for_each(allow_references);
        }
    }
    let typed_scalar = match obj.get("type") {
        Some(Value::String(t)) => t != "string" && t != "object" && t != "array",
        Some(Value::Array(ts)) => !ts.contains(&json!("string")),
        _ => false,
    };
    let constrained = obj.contains_key("pattern") || obj.contains_key("enum");
    if typed_scalar || constrained {
        let description = obj.get("description").cloned();
        let inner = std::mem::take(schema);
        let mut wrapped = json!({"anyOf": [inner, {"type": "string", "pattern": "\\$\\{"}]});
        if let Some(d) = description {
            wrapped["description"] = d;
        }
        *schema = wrapped;
    }
}

/// A component's schema as it stands in a pipeline file: its options plus `type`
/// (and `inputs`), nothing else.
fn component_schema(registry: &Registry, kind: Kind, type_name: &str) -> Value {
    let mut s = registry
        .options(kind, type_name)
        .map(|s| s.to_value())
        .unwrap_or_else(|| json!({"type": "object"}));
    let Some(obj) = s.as_object_mut() else {
        return s;
    };
    obj.remove("$schema");
    obj.remove("title");
    let typed = obj.contains_key("properties");
    let mut props = match obj.remove("properties") {
        Some(Value::Object(p)) => p,
        _ => Map::new(),
    };
    props.insert("type".into(), json!({"const": type_name}));
    if kind != Kind::Source {
        props.insert("inputs".into(), json!({
            "description": "the names of the sources or transforms it reads",
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]
        }));
    }
    if kind == Kind::Sink {
        props.insert(
            "start".into(),
            json!({"description": SINK_START, "enum": ["checkpoint", "beginning"], "default": "checkpoint"}),
        );
    }
    for (name, p) in props.iter_mut() {
        if name != "type" {
            allow_references(p);
        }
    }
    obj.insert("properties".into(), Value::Object(props));
    let mut required = vec![json!("type")];
    if kind != Kind::Source {
        required.push(json!("inputs"));
    }
    if let Some(Value::Array(r)) = obj.get("required") {
        required.extend(r.iter().cloned());
    }
    obj.insert("required".into(), Value::Array(required));
    if typed {
        obj.insert("additionalProperties".into(), json!(false));
    }
    s
}

/// The components of one section, by `type`.
fn section(registry: &Registry, kind: Kind) -> Value {
    let branches: Vec<Value> = registry
        .components()
        .into_iter()
        .filter(|(k, _)| *k == kind)
        .map(|(_, t)| {
            json!({
                "if": {"properties": {"type": {"const": t}}, "required": ["type"]},
                "then": component_schema(registry, kind, t),
            })
        })
        .collect();
    let types: Vec<&str> = registry
        .components()
        .into_iter()
        .filter(|(k, _)| *k == kind)
        .map(|(_, t)| t)
        .collect();
    json!({
        "type": "object",
        "minProperties": 1,
        "propertyNames": {"pattern": "^[A-Za-z0-9_-]+$"},
        "additionalProperties": {
            "type": "object",
            "required": ["type"],
            "properties": {"type": {"enum": types}},
            "allOf": branches,
        }
    })
}

/// A type's schema without the root's `$schema` and `title`.
fn registry_free_schema<T: schemars::JsonSchema>() -> Value {
    let mut v = connectd_sdk::registry::options_schema::<T>().to_value();
    if let Some(o) = v.as_object_mut() {
        o.remove("$schema");
        o.remove("title");
    }
    v
}

/// The JSON Schema of a pipeline file.
pub fn pipeline_schema(registry: &Registry) -> Value {
    let mut duration = registry_free_schema::<connectd_sdk::config::HumanDuration>();
    allow_references(&mut duration);
    let mut top = Map::new();
    top.insert(
        "$schema".into(),
        json!("http://json-schema.org/draft-07/schema#"),
    );
    top.insert("title".into(), json!("connectd pipeline"));
    top.insert("type".into(), json!("object"));
    top.insert("required".into(), json!(["name", "sources", "sinks"]));
    top.insert("additionalProperties".into(), json!(false));
    top.insert(
        "properties".into(),
        json!({
            "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$", "description": "the pipeline's name: it names its state directory"},
            "checkpoint": {"type": "object", "additionalProperties": false, "properties": {
                // A zero interval is refused by the loader too.
                "interval": {"allOf": [duration, {"not": {"anyOf": [
                    {"const": 0},
                    {"type": "string", "pattern": "^\\s*(0+\\s*[a-zA-Z]*\\s*)+$"}
                ]}}], "description": "how often a checkpoint is taken, greater than 0 (default 1s)"}
            }},
            "batch_size": {"type": "integer", "minimum": 1, "description": "records per batch (default 128)"},
            "state": {"type": "object", "additionalProperties": false, "properties": {
                "cache_size": {"type": ["string", "integer"], "description": "memory for keyed state, such as 64MiB (at least 4MiB)"},
                "per_partition": {"type": "boolean", "description": "keyed state owned by the input partition it came from: one instance of each stateful transform per partition, with its own state and watermark (default false)"}
            }},
            "errors": {"type": "object", "additionalProperties": false, "properties": {
                "tolerance": {"enum": ["none", "all"]},
                "dlq": {"type": "object", "additionalProperties": false, "required": ["path"], "properties": {"path": {"type": "string"}}},
                "retry_timeout": duration
            }},
            "tests": {
                "description": "tests `connectd test` runs: records per source, expected records and conditions per sink",
                "type": "array",
                "items": registry_free_schema::<crate::pipeline_test::PipelineTest>(),
            },
            "sources": section(registry, Kind::Source),
            "transforms": section(registry, Kind::Transform),
            "sinks": section(registry, Kind::Sink),
        }),
    );
    Value::Object(top)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An enum whose words have docs comes from schemars as a `oneOf` of constants;
    /// `describe` printed it as "string or string or string or string".
    #[test]
    fn an_enum_of_documented_words_reads_as_its_words() {
        let schema = json!({"default": "ms", "oneOf": [
            {"type": "string", "const": "ms", "description": "Milliseconds."},
            {"type": "string", "const": "s", "description": "Seconds."},
        ]});
        assert_eq!(type_text(&schema), "one of ms | s");
        let plain = json!({"enum": ["json", "avro"]});
        assert_eq!(type_text(&plain), "one of json | avro");
        let either =
            json!({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]});
        assert_eq!(type_text(&either), "string or list of string");
    }
}
