//! Kafka Connect's response bodies, so its clients, health checks and UIs can read
//! connectd: a pipeline is a connector with one task (id 0) that runs the whole
//! pipeline on this worker.
//!
//! Deviations (listed in the README): a pipeline's `type` is `source` (it pulls from
//! outside systems and writes them out itself); `FINISHED` (bounded sources done) shows
//! as Kafka Connect's `STOPPED` in `connector` and `tasks`.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::admin::{problem, AdminState};
use crate::worker::{PipelineState, PipelineStatus};

/// Kafka Connect's name for a pipeline's state.
fn connect_state(s: PipelineState) -> &'static str {
    match s {
        PipelineState::Running => "RUNNING",
        PipelineState::Paused => "PAUSED",
        PipelineState::Failed => "FAILED",
        PipelineState::Finished | PipelineState::Stopped => "STOPPED",
    }
}

/// The task of a pipeline: `{id, state, worker_id[, trace]}`.
fn task(p: &PipelineStatus, worker_id: &str) -> Value {
    let mut t = json!({"id": 0, "state": connect_state(p.state), "worker_id": worker_id});
    if let Some(e) = &p.error {
        t["trace"] = e.clone().into();
    }
    t
}

/// `GET /connectors/{name}/status`: connectd's own fields and Kafka Connect's
/// (`connector`, `tasks`, `type`).
pub fn status_body(p: &PipelineStatus, worker_id: &str) -> Value {
    json!({
        "name": p.name,
        "state": p.state,
        "error": p.error,
        "since": p.since,
        "config_error": p.config_error,
        "connector": {"state": connect_state(p.state), "worker_id": worker_id},
        "tasks": [task(p, worker_id)],
        "type": "source",
    })
}

/// `GET /connectors?expand=info`'s `info`, and `GET /connectors/{name}`'s Kafka Connect
/// fields: name, config, tasks, type. The config is where the pipeline is defined (its
/// file), never its contents: those may hold secrets.
pub fn info_body(p: &PipelineStatus) -> Value {
    json!({
        "name": p.name,
        "config": {"name": p.name, "file": p.file.display().to_string()},
        "tasks": [{"connector": p.name, "task": 0}],
        "type": "source",
    })
}

/// `GET /`: a JSON client gets Kafka Connect's cluster information; a browser the
/// dashboard.
pub async fn root(headers: HeaderMap) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if wants_html {
        return crate::admin::dashboard().await.into_response();
    }
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "commit": option_env!("CONNECTD_COMMIT").unwrap_or("unknown"),
        "kafka_cluster_id": null,
    }))
    .into_response()
}

/// `GET /connectors/{name}/config`: where the pipeline is defined.
pub async fn config(State(s): State<AdminState>, Path(name): Path<String>) -> Response {
    match s.worker.status(&name) {
        Some(p) => Json(info_body(&p)["config"].clone()).into_response(),
        None => problem(StatusCode::NOT_FOUND, format!("no pipeline named `{name}`")),
    }
}

/// `GET /connectors/{name}/tasks`: the one task, with the pipeline's config.
pub async fn tasks(State(s): State<AdminState>, Path(name): Path<String>) -> Response {
    match s.worker.status(&name) {
        Some(p) => Json(json!([{
            "id": {"connector": p.name, "task": 0},
            "config": info_body(&p)["config"],
        }]))
        .into_response(),
        None => problem(StatusCode::NOT_FOUND, format!("no pipeline named `{name}`")),
    }
}

/// `GET /connectors/{name}/topics`: the topics the pipeline's sources read and its
/// sinks wrote to since it started on this worker or since the last reset (KIP-558).
pub async fn topics(State(s): State<AdminState>, Path(name): Path<String>) -> Response {
    match s.worker.status(&name) {
        Some(_) => {
            Json(json!({ name.clone(): {"topics": s.metrics.topics_of(&name)} })).into_response()
        }
        None => problem(StatusCode::NOT_FOUND, format!("no pipeline named `{name}`")),
    }
}

/// `PUT /connectors/{name}/topics/reset`: forgets the topics used; 200 without a body,
/// as Kafka Connect answers.
pub async fn reset_topics(State(s): State<AdminState>, Path(name): Path<String>) -> Response {
    match s.worker.status(&name) {
        Some(_) => {
            s.metrics.forget_topics(&name);
            StatusCode::OK.into_response()
        }
        None => problem(StatusCode::NOT_FOUND, format!("no pipeline named `{name}`")),
    }
}

/// `GET /connectors/{name}/tasks/{id}/status`.
pub async fn task_status(
    State(s): State<AdminState>,
    Path((name, id)): Path<(String, u32)>,
) -> Response {
    match (s.worker.status(&name), id) {
        (Some(p), 0) => Json(task(&p, &s.worker_id)).into_response(),
        (Some(_), _) => problem(
            StatusCode::NOT_FOUND,
            format!("pipeline `{name}` has one task, 0"),
        ),
        (None, _) => problem(StatusCode::NOT_FOUND, format!("no pipeline named `{name}`")),
    }
}
