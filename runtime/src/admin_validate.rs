//! `PUT /connector-plugins/{type}/config/validate`: one component's configuration
//! checked, 200 with every problem (Kafka Connect answers validation problems with 200
//! too). The answer has Kafka Connect's `ConfigInfos` shape, which Kafka Connect tools
//! read (`name`, `error_count`, `groups`, and `configs`: each option's definition, the
//! value given and its errors), and connectd's own `errors` by field. Kafka Connect's
//! common keys, which such tools send, are taken for what they are: `connector.class`
//! must name the type validated, `tasks.max` is one, `name` is the connector's.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::admin::{kind_of, problem, AdminState, KindQuery};

pub(crate) async fn validate(
    State(s): State<AdminState>,
    Path(type_name): Path<String>,
    Query(q): Query<KindQuery>,
    body: String,
) -> Response {
    let mut config = match serde_json::from_str(&body) {
        Ok(Value::Object(map)) => map,
        _ => return problem(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object: the component's configuration, as in a pipeline file",
        ),
    };
    let kind = match kind_of(&s, &type_name, q.kind.as_deref()) {
        Ok(k) => k,
        Err((code, why)) => return problem(code, why),
    };
    let v = &s.validator;
    let doc = crate::component_docs::find(&v.registry, &type_name)
        .into_iter()
        .find(|c| c.kind.as_str() == kind);
    let definitions = doc
        .as_ref()
        .map(crate::component_docs::kafka_connect_config)
        .unwrap_or_default();
    let is_option = |name: &str| definitions.iter().any(|d| d["name"] == name);
    let as_sent = Value::Object(config.clone());
    let mut errors = connect_keys(&mut config, &type_name, is_option("name"));
    let given = Value::Object(config);
    errors.extend(
        crate::config::validate_component(
            &kind,
            &type_name,
            &given,
            &v.registry,
            &v.state_dir,
            &v.worker,
        )
        .into_iter()
        .map(|e| (e.field, e.message)),
    );
    let list: Vec<Value> = errors
        .iter()
        .map(|(field, message)| json!({"field": field, "message": message}))
        .collect();
    Json(json!({
        "name": type_name,
        "error_count": errors.len(),
        "groups": [type_name],
        "configs": configs(&definitions, &as_sent, &errors),
        "type": type_name,
        "kind": kind,
        "errors": list,
    }))
    .into_response()
}

/// Takes Kafka Connect's common keys out of `config`; the problems with them by field.
fn connect_keys(
    config: &mut Map<String, Value>,
    type_name: &str,
    name_is_an_option: bool,
) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    if let Some(class) = config.remove("connector.class") {
        if class.as_str() != Some(type_name) {
            errors.push((
                "connector.class".into(),
                format!("is {class}, but this endpoint validates `{type_name}`: the class of a connectd component is its type"),
            ));
        }
    }
    if let Some(tasks) = config.remove("tasks.max") {
        let one = tasks.as_u64() == Some(1) || tasks.as_str().map(str::trim) == Some("1");
        if !one {
            errors.push((
                "tasks.max".into(),
                format!("is {tasks}: a connectd component runs as one task (workers split a Kafka source's partitions instead)"),
            ));
        }
    }
    if !name_is_an_option {
        config.remove("name");
    }
    errors
}

/// Kafka Connect's `configs`: each option's definition with the value given (as text,
/// as Kafka Connect gives values) and the errors on it or inside it; then the keys given
/// that are no option, with theirs.
fn configs(definitions: &[Value], given: &Value, errors: &[(String, String)]) -> Vec<Value> {
    let defined = |name: &str| definitions.iter().any(|d| d["name"] == name);
    // The definition an error belongs to: its field's own (`csv.delimiter`), else the
    // option it is inside of (`columns` for `columns[2]`).
    let target = |field: &str| -> String {
        if defined(field) || is_connect_key(field) {
            return field.to_string();
        }
        let end = field.find(['.', '[']).unwrap_or(field.len());
        field[..end].to_string()
    };
    let on = |name: &str| -> Vec<&str> {
        errors
            .iter()
            .filter(|(field, _)| target(field) == name)
            .map(|(_, message)| message.as_str())
            .collect()
    };
    let entry = |definition: Value, name: &str| {
        // `csv.delimiter` is `delimiter` inside `csv`, unless a key has the whole name.
        let found = given.get(name).or_else(|| {
            name.split('.')
                .try_fold(given, |at, part| at.get(part))
                .filter(|_| name.contains('.'))
        });
        let value = match found {
            None | Some(Value::Null) => Value::Null,
            Some(Value::String(text)) => Value::String(text.clone()),
            // A list as Kafka Connect writes one: `a,b`.
            Some(Value::Array(items)) if items.iter().all(|i| !i.is_array() && !i.is_object()) => {
                let texts: Vec<String> = items
                    .iter()
                    .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                    .collect();
                Value::String(texts.join(","))
            }
            Some(other) => Value::String(other.to_string()),
        };
        json!({
            "definition": definition,
            "value": {
                "name": name,
                "value": value,
                "recommended_values": [],
                "errors": on(name),
                "visible": true,
            },
        })
    };
    let mut out: Vec<Value> = definitions
        .iter()
        .map(|d| entry(d.clone(), d["name"].as_str().unwrap_or_default()))
        .collect();
    let mut others: Vec<String> = errors
        .iter()
        .map(|(field, _)| target(field))
        .filter(|name| !defined(name))
        .collect();
    others.sort();
    others.dedup();
    for name in others {
        let definition = json!({
            "name": name, "type": "STRING", "required": false, "default_value": null,
            "importance": "LOW", "documentation": "", "group": null, "width": "NONE",
            "display_name": name, "dependents": [], "order_in_group": out.len() + 1,
        });
        out.push(entry(definition, &name));
    }
    out
}

fn is_connect_key(field: &str) -> bool {
    matches!(field, "connector.class" | "tasks.max")
}
