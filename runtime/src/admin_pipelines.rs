//! Pipelines created, changed and deleted over the API, as Kafka Connect's
//! `POST /connectors`, `PUT /connectors/{name}/config` and `DELETE /connectors/{name}`.
//!
//! The API only writes files: a pipeline is `<pipelines-dir>/<name>.yaml`, validated
//! first (a 400 lists every problem with its field), then written atomically (a
//! temporary file renamed). The worker watches that folder like every `--config`
//! folder, so it starts, restarts (from its checkpoint) or stops the pipeline, and the
//! files and the API never disagree.
//!
//! A body may use `${env:…}` / `${file:…}` only when the API has a token: without one,
//! any local process could otherwise have connectd read a file into a sink of its
//! choosing.

use std::path::{Path as FsPath, PathBuf};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::admin::{problem, AdminState};

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn no_dir() -> Response {
    problem(
        StatusCode::CONFLICT,
        "this worker has no --pipelines-dir: pipelines are defined by its --config files only",
    )
}

/// `PUT /connectors/{name}/config`: the body is the pipeline (as in a file, in JSON);
/// 201 when created, 200 when changed.
pub async fn put_config(
    State(s): State<AdminState>,
    Path(name): Path<String>,
    body: String,
) -> Response {
    let config: Value = match serde_json::from_str(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return problem(
                StatusCode::BAD_REQUEST,
                "the body must be a JSON object: the pipeline, as in a pipeline file",
            )
        }
    };
    write_pipeline(&s, &name, config, false)
}

/// `POST /connectors` with `{name, config}`: 409 if the name is taken.
pub async fn create(State(s): State<AdminState>, body: String) -> Response {
    let request: Value = serde_json::from_str(&body).unwrap_or_default();
    let (Some(name), Some(config @ Value::Object(_))) =
        (request["name"].as_str(), request.get("config").cloned())
    else {
        return problem(
            StatusCode::BAD_REQUEST,
            "the body must be {\"name\": ..., \"config\": {...the pipeline...}}",
        );
    };
    write_pipeline(&s, name, config, true)
}

fn write_pipeline(s: &AdminState, name: &str, mut config: Value, only_new: bool) -> Response {
    let Some(dir) = s.pipelines_dir.as_deref() else {
        return no_dir();
    };
    if !valid_name(name) {
        return problem(
            StatusCode::BAD_REQUEST,
            format!("`{name}` is not a pipeline name: letters, digits, `_` and `-` only"),
        );
    }
    if config.get("name").is_some_and(|n| n.as_str() != Some(name)) {
        return problem(
            StatusCode::BAD_REQUEST,
            format!("the body's `name` differs from `{name}` in the path"),
        );
    }
    config["name"] = name.into();
    let path = dir.join(format!("{name}.yaml"));
    let existing = s.worker.status(name);
    if let Some(p) = &existing {
        if only_new {
            return problem(StatusCode::CONFLICT, format!("pipeline `{name}` exists"));
        }
        if !same_file(&p.file, &path) {
            return problem(
                StatusCode::CONFLICT,
                format!(
                    "pipeline `{name}` is defined in {}, not in the pipelines directory: change that file",
                    p.file.display()
                ),
            );
        }
    }
    // JSON is YAML: the file is the body as it came.
    let text = serde_json::to_string_pretty(&config).unwrap_or_default();
    if s.token.is_none() && text.contains("${") {
        return problem(
            StatusCode::BAD_REQUEST,
            "`${...}` (environment and file values) is accepted over the API only when it has a token (CONNECTD_ADMIN_TOKEN)",
        );
    }
    // Validated as a file of its own, under a name the folder's `*.yaml` misses.
    let staged = dir.join(format!(".{name}.yaml.new"));
    if let Err(e) = std::fs::write(&staged, &text) {
        return problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot write {}: {e}", staged.display()),
        );
    }
    let v = &s.validator;
    if let Err(problems) = crate::config::load(
        std::slice::from_ref(&staged),
        &v.registry,
        &v.state_dir,
        &v.worker,
    ) {
        let _ = std::fs::remove_file(&staged);
        let errors: Vec<Value> = problems
            .0
            .iter()
            .map(|e| json!({"field": e.field, "message": e.message}))
            .collect();
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "error_code": 400,
                "message": format!("pipeline `{name}` is not valid: {} problem(s)", errors.len()),
                "errors": errors,
            })),
        )
            .into_response();
    }
    if let Err(e) = std::fs::rename(&staged, &path) {
        let _ = std::fs::remove_file(&staged);
        return problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot write {}: {e}", path.display()),
        );
    }
    let code = if existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let body = json!({
        "name": name,
        "config": {"name": name, "file": path.display().to_string()},
        "tasks": [{"connector": name, "task": 0}],
        "type": "source",
    });
    (code, Json(body)).into_response()
}

/// `DELETE /connectors/{name}`: removes the pipeline's file from the pipelines
/// directory; the worker stops it after a final checkpoint. 204.
pub async fn delete(State(s): State<AdminState>, Path(name): Path<String>) -> Response {
    let Some(dir) = s.pipelines_dir.as_deref() else {
        return no_dir();
    };
    let Some(p) = s.worker.status(&name) else {
        return problem(StatusCode::NOT_FOUND, format!("no pipeline named `{name}`"));
    };
    let path = dir.join(format!("{name}.yaml"));
    if !same_file(&p.file, &path) {
        return problem(
            StatusCode::CONFLICT,
            format!(
                "pipeline `{name}` is defined in {}, not in the pipelines directory: remove it there",
                p.file.display()
            ),
        );
    }
    match std::fs::remove_file(&path) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot remove {}: {e}", path.display()),
        ),
    }
}

fn same_file(a: &FsPath, b: &FsPath) -> bool {
    let canon = |p: &FsPath| std::fs::canonicalize(p).unwrap_or_else(|_| PathBuf::from(p));
    canon(a) == canon(b)
}
