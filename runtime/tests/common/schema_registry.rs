//! A schema registry for the tests: the Confluent REST endpoints connectd uses
//! (register under a subject, schema by id, a subject's latest version), in memory.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Json;
use serde_json::{json, Value};

#[derive(Default)]
struct Schemas {
    /// Schema texts; id = index + 1.
    texts: Vec<String>,
    /// Subject → ids of its versions, oldest first.
    subjects: BTreeMap<String, Vec<usize>>,
}

type Shared = Arc<Mutex<Schemas>>;

fn not_found(code: u32, message: String) -> (StatusCode, Json<Value>) {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error_code": code, "message": message})),
    )
}

async fn register(
    State(s): State<Shared>,
    Path(subject): Path<String>,
    body: String,
) -> (StatusCode, Json<Value>) {
    let Some(text) = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|b| b["schema"].as_str().map(str::to_string))
    else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error_code": 42201, "message": "Invalid schema"})),
        );
    };
    let mut s = s.lock().unwrap();
    let id = match s.texts.iter().position(|t| *t == text) {
        Some(i) => i + 1,
        None => {
            s.texts.push(text);
            s.texts.len()
        }
    };
    let versions = s.subjects.entry(subject).or_default();
    if !versions.contains(&id) {
        versions.push(id);
    }
    (StatusCode::OK, Json(json!({"id": id})))
}

async fn by_id(State(s): State<Shared>, Path(id): Path<usize>) -> (StatusCode, Json<Value>) {
    let s = s.lock().unwrap();
    match id.checked_sub(1).and_then(|i| s.texts.get(i)) {
        Some(text) => (StatusCode::OK, Json(json!({"schema": text}))),
        None => not_found(40403, "Schema not found".into()),
    }
}

async fn latest(State(s): State<Shared>, Path(subject): Path<String>) -> (StatusCode, Json<Value>) {
    let s = s.lock().unwrap();
    match s
        .subjects
        .get(&subject)
        .and_then(|v| v.last().map(|id| (v.len(), *id)))
    {
        Some((version, id)) => (
            StatusCode::OK,
            Json(
                json!({"subject": subject, "version": version, "id": id, "schema": s.texts[id - 1]}),
            ),
        ),
        None => not_found(40401, format!("Subject '{subject}' not found.")),
    }
}

/// Starts a registry; returns its base URL.
pub fn start() -> String {
    let app = axum::Router::new()
        .route("/subjects/{subject}/versions", post(register))
        .route("/subjects/{subject}/versions/latest", get(latest))
        .route("/schemas/ids/{id}", get(by_id))
        .with_state(Shared::default());
    super::serve(app)
}
