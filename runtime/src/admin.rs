//! The admin HTTP server: a REST API shaped after Kafka Connect's (`/connectors`,
//! `/connector-plugins`), `/metrics`, `/healthz`, `/readyz`.
//!
//! With a token (`CONNECTD_ADMIN_TOKEN`), every route but the health checks wants
//! `Authorization: Bearer <token>`. Without one, it only listens on loopback.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
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
    /// A read-only token that opens `/metrics` only (`CONNECTD_METRICS_TOKEN`).
    pub metrics_token: Option<Arc<str>>,
    /// The `Host` values the API answers to (set by `serve` once bound).
    pub hosts: crate::admin_guard::AllowedHosts,
    pub validator: Arc<Validator>,
    /// This worker as Kafka Connect names workers: the API's `host:port` (set by
    /// `serve` once bound).
    pub worker_id: Arc<str>,
    /// Where pipelines created over the API live (`--pipelines-dir`), if anywhere.
    pub pipelines_dir: Option<std::path::PathBuf>,
    /// The log filter, changed at runtime by `/admin/loggers`.
    pub log_levels: Option<Arc<crate::log_levels::LogLevels>>,
}

/// What `PUT /connector-plugins/{type}/config/validate` builds components with.
#[derive(Debug)]
pub struct Validator {
    pub registry: Registry,
    pub state_dir: std::path::PathBuf,
    pub worker: connectd_sdk::WorkerSettings,
}

const OPENAPI: &str = include_str!("../assets/openapi.json");
/// The dashboard: one self-contained page (no build step, nothing fetched from outside).
const DASHBOARD: &str = include_str!("../assets/dashboard.html");

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
pub(crate) fn problem(code: StatusCode, message: impl Into<String>) -> Response {
    (
        code,
        Json(serde_json::json!({"error_code": code.as_u16(), "message": message.into()})),
    )
        .into_response()
}

/// The names; with `?expand=status` and/or `?expand=info` (repeatable, as in Kafka
/// Connect), `{name: {status: {...}, info: {...}}}`.
async fn connectors(
    State(s): State<AdminState>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    // Hand-parsed: the values are plain words, and a repeated key is what
    // axum's typed `Query` cannot take.
    let expand: Vec<String> = query
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.strip_prefix("expand="))
        .map(str::to_string)
        .collect();
    if let Some(bad) = expand.iter().find(|e| *e != "status" && *e != "info") {
        return problem(
            StatusCode::BAD_REQUEST,
            format!("expand={bad}: expected status or info"),
        );
    }
    let all = s.worker.statuses();
    if !expand.is_empty() {
        let map: serde_json::Map<String, serde_json::Value> = all
            .into_iter()
            .map(|p| {
                let mut v = serde_json::json!({});
                if expand.iter().any(|e| e == "status") {
                    v["status"] = crate::admin_connect::status_body(&p, &s.worker_id);
                }
                if expand.iter().any(|e| e == "info") {
                    v["info"] = crate::admin_connect::info_body(&p);
                }
                (p.name, v)
            })
            .collect();
        return Json(map).into_response();
    }
    Json(all.into_iter().map(|p| p.name).collect::<Vec<_>>()).into_response()
}

async fn connector(State(s): State<AdminState>, Path(name): Path<String>) -> Response {
    match s.worker.status(&name) {
        Some(p) => {
            let mut body = crate::admin_connect::info_body(&p);
            body["file"] = serde_json::json!(p.file);
            body["components"] = serde_json::json!(p.components);
            Json(body).into_response()
        }
        None => problem(StatusCode::NOT_FOUND, format!("no pipeline named `{name}`")),
    }
}

async fn status(State(s): State<AdminState>, Path(name): Path<String>) -> Response {
    match s.worker.status(&name) {
        Some(p) => {
            let mut body = crate::admin_connect::status_body(&p, &s.worker_id);
            // Beyond Kafka Connect's fields: what this worker holds of the pipeline.
            body["owned"] = s.metrics.ownership(&name);
            Json(body).into_response()
        }
        None => problem(StatusCode::NOT_FOUND, format!("no pipeline named `{name}`")),
    }
}

fn control_problem(e: &ControlError) -> Response {
    let code = match e {
        ControlError::NotFound(_) => StatusCode::NOT_FOUND,
        ControlError::Conflict(_) => StatusCode::CONFLICT,
        ControlError::Invalid(_) => StatusCode::BAD_REQUEST,
    };
    problem(code, e.to_string())
}

async fn control(s: &AdminState, name: &str, what: Control) -> Response {
    match s.worker.control(name, what).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(e) => control_problem(&e),
    }
}

async fn pause(State(s): State<AdminState>, Path(name): Path<String>) -> Response {
    control(&s, &name, Control::Pause).await
}

async fn resume(State(s): State<AdminState>, Path(name): Path<String>) -> Response {
    control(&s, &name, Control::Resume).await
}

/// Kafka Connect's stop (KIP-875): as pause, and the state offsets are reset in.
async fn stop(State(s): State<AdminState>, Path(name): Path<String>) -> Response {
    control(&s, &name, Control::Stop).await
}

/// As Kafka Connect: 204 when done; with `?includeTasks=true` (or `onlyFailed`), 202
/// and the status.
async fn restart(
    State(s): State<AdminState>,
    Path(name): Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    if let Err(e) = s.worker.control(&name, Control::Restart).await {
        return control_problem(&e);
    }
    // Python clients send `True`.
    let q = query.unwrap_or_default().to_ascii_lowercase();
    if q.contains("includetasks=true") || q.contains("onlyfailed=true") {
        if let Some(p) = s.worker.status(&name) {
            let body = crate::admin_connect::status_body(&p, &s.worker_id);
            return (StatusCode::ACCEPTED, Json(body)).into_response();
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

/// The one task (0) is the whole pipeline: restarting it restarts the pipeline.
async fn restart_task(
    State(s): State<AdminState>,
    Path((name, id)): Path<(String, u32)>,
) -> Response {
    if id != 0 {
        return problem(
            StatusCode::NOT_FOUND,
            format!("pipeline `{name}` has one task, 0"),
        );
    }
    match s.worker.control(&name, Control::Restart).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => control_problem(&e),
    }
}

/// Forgets the committed checkpoint of a stopped pipeline (200, as Kafka Connect).
async fn reset_offsets(State(s): State<AdminState>, Path(name): Path<String>) -> Response {
    match s.worker.control(&name, Control::ResetOffsets).await {
        Ok(()) => Json(serde_json::json!({
            "message": format!("The offsets for `{name}` have been reset successfully: its next run starts from the beginning")
        }))
        .into_response(),
        Err(e) => control_problem(&e),
    }
}

/// KIP-875's alter, for a stopped pipeline: `{"offsets": [{"partition": {"source":
/// name}, "offset": {...} | null}]}`. Each named source checks its new position; null
/// forgets it (the source starts as configured). An offset shown as `{"position": v}`
/// (a source whose offsets are not objects) is taken back as `v`.
async fn alter_offsets(
    State(s): State<AdminState>,
    Path(name): Path<String>,
    body: String,
) -> Response {
    let bad = |why: String| problem(StatusCode::BAD_REQUEST, why);
    let v: serde_json::Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(e) => return bad(format!("the body is not JSON: {e}")),
    };
    let Some(entries) = v["offsets"].as_array() else {
        return bad(
            r#"expected {"offsets": [{"partition": {"source": <name>}, "offset": {...}}]}"#.into(),
        );
    };
    let mut changes = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let Some(source) = e["partition"]["source"].as_str() else {
            return bad(format!(
                "offsets[{i}].partition.source: expected the source's name"
            ));
        };
        let offset = match &e["offset"] {
            serde_json::Value::Null => None,
            serde_json::Value::Object(o) if o.len() == 1 && o.contains_key("position") => {
                Some(o["position"].clone())
            }
            other => Some(other.clone()),
        };
        changes.push((source.to_string(), offset));
    }
    if changes.is_empty() {
        return bad("no offsets given".into());
    }
    match s.worker.alter_offsets(&name, changes).await {
        Ok(()) => Json(serde_json::json!({
            "message": "The offsets for this connector have been altered successfully"
        }))
        .into_response(),
        Err(e) => control_problem(&e),
    }
}

/// The newest committed checkpoint's source positions: Kafka Connect's (KIP-875)
/// `{"offsets": [{"partition": {"source": name}, "offset": {...}}]}`, plus connectd's
/// `{"checkpoint": id, "sources": {name: offset}}`.
async fn offsets(State(s): State<AdminState>, Path(name): Path<String>) -> Response {
    match s.worker.offsets(&name) {
        Ok(Some(v)) => Json(with_connect_offsets(v)).into_response(),
        Ok(None) => Json(serde_json::json!({"checkpoint": null, "sources": {}, "offsets": []}))
            .into_response(),
        Err(e) => problem(StatusCode::NOT_FOUND, e.to_string()),
    }
}

fn with_connect_offsets(mut v: serde_json::Value) -> serde_json::Value {
    let offsets: Vec<serde_json::Value> = v["sources"]
        .as_object()
        .map(|sources| {
            sources
                .iter()
                .map(|(source, offset)| {
                    // Kafka Connect's offsets are objects.
                    let offset = match offset {
                        serde_json::Value::Object(_) => offset.clone(),
                        other => serde_json::json!({ "position": other }),
                    };
                    serde_json::json!({"partition": {"source": source}, "offset": offset})
                })
                .collect()
        })
        .unwrap_or_default();
    v["offsets"] = serde_json::Value::Array(offsets);
    v
}

async fn plugins(State(s): State<AdminState>) -> Json<Vec<Plugin>> {
    Json(s.plugins.as_ref().clone())
}

pub(crate) async fn dashboard() -> impl IntoResponse {
    axum::response::Html(DASHBOARD)
}

/// Every pipeline with its state and each component's counters.
async fn dashboard_data(State(s): State<AdminState>) -> Json<serde_json::Value> {
    let pipelines: Vec<serde_json::Value> = s
        .worker
        .statuses()
        .into_iter()
        .map(|p| {
            let components: Vec<serde_json::Value> = p
                .components
                .iter()
                .map(|c| {
                    let mut v = s.metrics.counters(&p.name, &c.name, c.kind);
                    v["name"] = c.name.clone().into();
                    v["kind"] = c.kind.into();
                    v["type"] = c.type_name.clone().into();
                    v
                })
                .collect();
            serde_json::json!({
                "name": p.name,
                "state": p.state,
                "error": p.error,
                "components": components,
            })
        })
        .collect();
    Json(serde_json::json!({ "pipelines": pipelines }))
}

/// Server-sent events, one `window` event per record a window transform emits:
/// `{pipeline, component, key, time, value}`.
async fn windows(State(s): State<AdminState>) -> impl IntoResponse {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures_util::StreamExt;
    let receiver = s.metrics.live().subscribe();
    let batches = futures_util::stream::unfold(receiver, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(batch) => return Some((batch, rx)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let events = batches.flat_map(|w| {
        let events: Vec<Result<Event, std::convert::Infallible>> = w
            .records
            .iter()
            .map(|r| {
                let mut value = Vec::new();
                connectd_sdk::json::write(&r.value, &mut value);
                let mut key = Vec::new();
                connectd_sdk::json::write(&r.key, &mut key);
                let data = format!(
                    r#"{{"pipeline":{},"component":{},"key":{},"time":{},"value":{}}}"#,
                    serde_json::Value::from(w.pipeline.as_ref()),
                    serde_json::Value::from(w.component.as_ref()),
                    String::from_utf8_lossy(&key),
                    r.timestamp.map_or("null".to_string(), |t| t.to_string()),
                    String::from_utf8_lossy(&value)
                );
                Ok(Event::default().event("window").data(data))
            })
            .collect();
        futures_util::stream::iter(events)
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct KindQuery {
    pub kind: Option<String>,
}

/// Which kind of component `type_name` is: the one it is, or the one `?kind=` names.
pub(crate) fn kind_of(
    s: &AdminState,
    type_name: &str,
    asked: Option<&str>,
) -> Result<String, (StatusCode, String)> {
    let kinds: Vec<&str> = s
        .plugins
        .iter()
        .filter(|p| p.class == type_name)
        .map(|p| p.kind)
        .collect();
    match (asked, kinds.as_slice()) {
        (_, []) => Err((
            StatusCode::NOT_FOUND,
            format!("no component type `{type_name}` (GET /connector-plugins lists them)"),
        )),
        (Some(k), ks) if ks.contains(&k) => Ok(k.to_string()),
        (Some(k), ks) => Err((
            StatusCode::NOT_FOUND,
            format!("`{type_name}` is a {}, not a {k}", ks.join(" and a ")),
        )),
        (None, [one]) => Ok(one.to_string()),
        (None, many) => Err((
            StatusCode::BAD_REQUEST,
            format!(
                "`{type_name}` is a {}: say which with ?kind=",
                many.join(" and a ")
            ),
        )),
    }
}

/// A component type's options in Kafka Connect's `ConfigKeyInfo` shape (name, type,
/// required, default_value, documentation, ...), from its typed options.
async fn plugin_config(
    State(s): State<AdminState>,
    Path(type_name): Path<String>,
    axum::extract::Query(q): axum::extract::Query<KindQuery>,
) -> Response {
    let kind = match kind_of(&s, &type_name, q.kind.as_deref()) {
        Ok(k) => k,
        Err((code, why)) => return problem(code, why),
    };
    let registry = &s.validator.registry;
    match crate::component_docs::find(registry, &type_name)
        .into_iter()
        .find(|c| c.kind.as_str() == kind)
    {
        Some(doc) => Json(crate::component_docs::kafka_connect_config(&doc)).into_response(),
        None => problem(StatusCode::NOT_FOUND, format!("no {kind} `{type_name}`")),
    }
}

/// The registry's metrics, then what is read from the worker at scrape time: each
/// pipeline's state (a removed pipeline's series are gone with it) and the build.
async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    use std::fmt::Write as _;
    let mut text = s.metrics.render();
    text.push_str("# HELP connectd_pipeline_state 1 for the state each pipeline is in, 0 for the others.\n# TYPE connectd_pipeline_state gauge\n");
    for p in s.worker.statuses() {
        let now = serde_json::to_value(p.state).unwrap_or_default();
        for state in ["RUNNING", "PAUSED", "STOPPED", "FAILED", "FINISHED"] {
            let on = u8::from(now.as_str() == Some(state));
            let _ = writeln!(
                text,
                "connectd_pipeline_state{{pipeline=\"{}\",state=\"{state}\"}} {on}",
                p.name
            );
        }
    }
    let _ = write!(
        text,
        "# HELP connectd_build_info The running build.\n# TYPE connectd_build_info gauge\nconnectd_build_info{{version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
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
        .route(
            "/connectors",
            get(connectors).post(crate::admin_pipelines::create),
        )
        .route(
            "/connectors/{name}",
            get(connector).delete(crate::admin_pipelines::delete),
        )
        .route(
            "/connectors/{name}/config",
            get(crate::admin_connect::config).put(crate::admin_pipelines::put_config),
        )
        .route("/connectors/{name}/status", get(status))
        .route("/connectors/{name}/pause", put(pause))
        .route("/connectors/{name}/resume", put(resume))
        .route("/connectors/{name}/stop", put(stop))
        .route("/connectors/{name}/restart", post(restart))
        .route("/connectors/{name}/tasks", get(crate::admin_connect::tasks))
        .route(
            "/connectors/{name}/topics",
            get(crate::admin_connect::topics),
        )
        .route(
            "/connectors/{name}/topics/reset",
            put(crate::admin_connect::reset_topics),
        )
        .route(
            "/connectors/{name}/tasks/{id}/status",
            get(crate::admin_connect::task_status),
        )
        .route("/connectors/{name}/tasks/{id}/restart", post(restart_task))
        .route(
            "/connectors/{name}/offsets",
            get(offsets).delete(reset_offsets).patch(alter_offsets),
        )
        .route("/admin/loggers", get(crate::admin_loggers::list))
        .route(
            "/admin/loggers/{name}",
            get(crate::admin_loggers::get_one).put(crate::admin_loggers::put),
        )
        .route(
            "/connectors/{name}/tap/{component}",
            get(crate::admin_tap::tap),
        )
        .route("/connector-plugins", get(plugins))
        .route("/connector-plugins/{type}/config", get(plugin_config))
        .route(
            "/connector-plugins/{type}/config/validate",
            put(crate::admin_validate::validate),
        )
        .route("/openapi.json", get(openapi))
        .route("/api/dashboard", get(dashboard_data))
        .route("/api/windows", get(windows))
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::admin_guard::require_token,
        ));
    Router::new()
        .merge(api)
        // The page holds no data: it asks the API with the token the user gives it.
        .route("/", get(crate::admin_connect::root))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        // Kafka Connect answers an unknown path or method with its error body too.
        .fallback(|| async { problem(StatusCode::NOT_FOUND, "HTTP 404 Not Found") })
        .method_not_allowed_fallback(|| async {
            problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "HTTP 405 Method Not Allowed",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::admin_guard::check_host,
        ))
        .with_state(state)
}

/// Binds now (so a taken port is reported at startup) and serves in the background,
/// over TLS when given an acceptor. Refuses a non-loopback address without a token:
/// the API can stop pipelines.
pub async fn serve(
    addr: &str,
    mut state: AdminState,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Result<SocketAddr, String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on --admin-addr {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    if !local.ip().is_loopback() && state.token.is_none() {
        return Err(format!(
            "refusing to serve the admin API on {local} without a token: anyone who can reach it could pause or restart pipelines. Set CONNECTD_ADMIN_TOKEN, or use a loopback --admin-addr such as 127.0.0.1:8083"
        ));
    }
    state.worker_id = local.to_string().into();
    state.hosts = crate::admin_guard::AllowedHosts::new(
        addr,
        local.ip(),
        std::env::var("CONNECTD_ADMIN_HOSTS").ok().as_deref(),
    );
    let app = router(state);
    match tls {
        Some(acceptor) => spawn_server(
            crate::admin_tls::TlsListener::new(listener, acceptor)
                .map_err(|e| format!("--admin-addr {addr}: {e}"))?,
            app,
        ),
        None => spawn_server(listener, app),
    }
    Ok(local)
}

fn spawn_server<L>(listener: L, app: Router)
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "admin server stopped");
        }
    });
}
