//! Kafka Connect's logger routes: `GET /admin/loggers` lists the levels set,
//! `GET /admin/loggers/{logger}` one of them, `PUT /admin/loggers/{logger}` with
//! `{"level": "DEBUG"}` changes one at runtime (see `log_levels`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::admin::{problem, AdminState};

pub async fn list(State(s): State<AdminState>) -> Response {
    let Some(levels) = &s.log_levels else {
        return unavailable();
    };
    let body: serde_json::Map<String, serde_json::Value> = levels
        .levels()
        .into_iter()
        .map(|(logger, level)| (logger, serde_json::json!({ "level": level })))
        .collect();
    Json(body).into_response()
}

pub async fn get_one(State(s): State<AdminState>, Path(logger): Path<String>) -> Response {
    let Some(levels) = &s.log_levels else {
        return unavailable();
    };
    match levels.levels().get(&logger) {
        Some(level) => Json(serde_json::json!({ "level": level })).into_response(),
        None => problem(
            StatusCode::NOT_FOUND,
            format!("logger `{logger}` has no level of its own (it follows root)"),
        ),
    }
}

pub async fn put(
    State(s): State<AdminState>,
    Path(logger): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let Some(levels) = &s.log_levels else {
        return unavailable();
    };
    let level = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("level").and_then(|l| l.as_str()).map(str::to_string));
    let Some(level) = level else {
        return problem(
            StatusCode::BAD_REQUEST,
            r#"the body must be {"level": "<TRACE|DEBUG|INFO|WARN|ERROR|OFF>"}"#,
        );
    };
    match levels.set(&logger, &level) {
        Ok(changed) => Json(changed).into_response(),
        Err(e) => problem(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

fn unavailable() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "this worker's log levels cannot be changed at runtime",
    )
}
