//! The admin HTTP server: a REST API shaped after Kafka Connect's (`/connectors`,
//! `/connector-plugins`), `/metrics`, `/healthz`, `/readyz`.
//!
//! With a token (`CONNECTD_ADMIN_TOKEN`), every route but the health checks wants
//! `Authorization: Bearer <token>`. Without one, it only listens on loopback.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use connectd_sdk::Registry;
use serde::Serialize;

use crate::metrics::Metrics;
use crate::worker::{Control, ControlError, WorkerHandle};

#[derive(Debug, Clone)]
pub struct AdminState {
    pub metrics: Metrics,
    pub ready: Arc<AtomicBool>,
    pub worker: WorkerHandle,
    pub plugins: Arc<Vec<Plugin>>,
    /// The bearer token every API call must carry, if any.
    pub token: Option<Arc<str>>,
}

/// A component type this worker can build, as `GET /connector-plugins` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Plugin {
    pub class: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// Every type the registry can build.
pub fn plugins_of(registry: &Registry) -> Arc<Vec<Plugin>> {
    let of = |kind: &'static str, types: Vec<&'static str>| {
        types.into_iter().map(move |class| Plugin { class, kind })
    };
    Arc::new(
        of("source", registry.source_types())
            .chain(of("transform", registry.transform_types()))
            .chain(of("sink", registry.sink_types()))
            .collect(),
    )
}

/// An error body as Kafka Connect writes it.
fn problem(code: StatusCode, message: impl Into<String>) -> Response {
    (
        code,
        Json(serde_json::json!({"error_code": code.as_u16(), "message": message.into()})),
    )
        .into_response()
}

#[derive(Debug, serde::Deserialize)]
struct ListQuery {
    expand: Option<String>,
}

/// The names; with `?expand=status`, `{name: {status: {...}}}` as Kafka Connect does.
async fn connectors(
    State(s): State<AdminState>,
    axum::extract::Query(q): axum::extract::Query<ListQuery>,
) -> Response {
    let all = s.worker.statuses();
    if q.expand.as_deref() == Some("status") {
        let map: serde_json::Map<String, serde_json::Value> = all
            .into_iter()
            .map(|p| {
                let status = status_json(&p);
                (p.name, serde_json::json!({ "status": status }))
            })
            .collect();
        return Json(map).into_response();
    }
    Json(all.into_iter().map(|p| p.name).collect::<Vec<_>>()).into_response()
}

fn status_json(p: &crate::worker::PipelineStatus) -> serde_json::Value {
    serde_json::json!({
        "name": p.name,
        "state": p.state,
        "error": p.error,
        "since": p.since,
        "config_error": p.config_error,
    })
}

async fn connector(State(s): State<AdminState>, Path(name): Path<String>) -> Response {
    match s.worker.status(&name) {
        Some(p) => Json(serde_json::json!({
            "name": p.name,
            "file": p.file,
            "components": p.components,
        }))
        .into_response(),
        None => problem(StatusCode::NOT_FOUND, format!("no pipeline named `{name}`")),
    }
}

async fn status(State(s): State<AdminState>, Path(name): Path<String>) -> Response {
    match s.worker.status(&name) {
        Some(p) => Json(status_json(&p)).into_response(),
        None => problem(StatusCode::NOT_FOUND, format!("no pipeline named `{name}`")),
    }
}

async fn control(s: &AdminState, name: &str, what: Control) -> Response {
    match s.worker.control(name, what).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(e @ ControlError::NotFound(_)) => problem(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ ControlError::Conflict(_)) => problem(StatusCode::CONFLICT, e.to_string()),
    }
}

async fn pause(State(s): State<AdminState>, Path(name): Path<String>) -> Response {
    control(&s, &name, Control::Pause).await
}

async fn resume(State(s): State<AdminState>, Path(name): Path<String>) -> Response {
    control(&s, &name, Control::Resume).await
}

async fn restart(State(s): State<AdminState>, Path(name): Path<String>) -> Response {
    control(&s, &name, Control::Restart).await
}

/// `{"checkpoint": id, "sources": {name: offset}}` of the newest committed checkpoint.
async fn offsets(State(s): State<AdminState>, Path(name): Path<String>) -> Response {
    match s.worker.offsets(&name) {
        Ok(Some(v)) => Json(v).into_response(),
        Ok(None) => Json(serde_json::json!({"checkpoint": null, "sources": {}})).into_response(),
        Err(e) => problem(StatusCode::NOT_FOUND, e.to_string()),
    }
}

async fn plugins(State(s): State<AdminState>) -> Json<Vec<Plugin>> {
    Json(s.plugins.as_ref().clone())
}

async fn require_token(State(s): State<AdminState>, req: Request, next: Next) -> Response {
    let Some(token) = &s.token else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given == Some(token.as_ref()) {
        next.run(req).await
    } else {
        problem(
            StatusCode::UNAUTHORIZED,
            "this admin API wants `Authorization: Bearer <token>` (CONNECTD_ADMIN_TOKEN)",
        )
    }
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

pub fn router(state: AdminState) -> Router {
    let api = Router::new()
        .route("/connectors", get(connectors))
        .route("/connectors/{name}", get(connector))
        .route("/connectors/{name}/status", get(status))
        .route("/connectors/{name}/pause", put(pause))
        .route("/connectors/{name}/resume", put(resume))
        .route("/connectors/{name}/restart", post(restart))
        .route("/connectors/{name}/offsets", get(offsets))
        .route("/connector-plugins", get(plugins))
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ));
    Router::new()
        .merge(api)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Binds now (so a taken port is reported at startup) and serves in the background.
/// Refuses a non-loopback address without a token: the API can stop pipelines.
pub async fn serve(addr: &str, state: AdminState) -> Result<SocketAddr, String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on --admin-addr {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    if !local.ip().is_loopback() && state.token.is_none() {
        return Err(format!(
            "refusing to serve the admin API on {local} without a token: anyone who can reach it could pause or restart pipelines. Set CONNECTD_ADMIN_TOKEN, or use a loopback --admin-addr such as 127.0.0.1:8083"
        ));
    }
    let app = router(state);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "admin server stopped");
        }
    });
    Ok(local)
}
