//! `GET /connectors/{name}/tap/{component}[?limit=N&sample=R]`: the records leaving a
//! component of a running pipeline (a sink: reaching it), as JSON lines, streamed as
//! they pass; `connectd tap` reads it. Nothing is buffered for a slow reader: batches
//! it cannot keep up with are skipped, and a `{"missed_batches": n}` line says so.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast::error::RecvError;

use crate::admin::{problem, AdminState};
use crate::tap::{line, Sampler, Tapped};

#[derive(Debug, serde::Deserialize)]
pub struct TapQuery {
    /// Records to send before the stream ends (default 100; 0: until the client leaves).
    limit: Option<u64>,
    /// The share of records to show, 0 < sample ≤ 1 (default 1).
    sample: Option<f64>,
}

struct Stream {
    rx: tokio::sync::broadcast::Receiver<Tapped>,
    pipeline: String,
    component: String,
    sampler: Sampler,
    left: Option<u64>,
}

impl Stream {
    /// The next chunk of lines, or `None` when the limit is reached or the worker ends.
    async fn next(&mut self) -> Option<String> {
        loop {
            if self.left == Some(0) {
                return None;
            }
            match self.rx.recv().await {
                Ok(t) if *t.pipeline == *self.pipeline && *t.component == *self.component => {
                    let mut chunk = String::new();
                    for r in t.records.iter() {
                        if self.left == Some(0) {
                            break;
                        }
                        if self.sampler.keep() {
                            chunk.push_str(&line(r));
                            self.left = self.left.map(|n| n - 1);
                        }
                    }
                    if !chunk.is_empty() {
                        return Some(chunk);
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => {
                    return Some(format!("{{\"missed_batches\":{n}}}\n"));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

pub async fn tap(
    State(s): State<AdminState>,
    Path((name, component)): Path<(String, String)>,
    Query(q): Query<TapQuery>,
) -> Response {
    let Some(status) = s.worker.status(&name) else {
        return problem(StatusCode::NOT_FOUND, format!("no pipeline named `{name}`"));
    };
    if !status.components.iter().any(|c| c.name == component) {
        let known: Vec<&str> = status.components.iter().map(|c| c.name.as_str()).collect();
        return problem(
            StatusCode::NOT_FOUND,
            format!(
                "pipeline `{name}` has no component `{component}` (its components: {})",
                known.join(", ")
            ),
        );
    }
    let sample = q.sample.unwrap_or(1.0);
    if !(sample > 0.0 && sample <= 1.0) {
        return problem(
            StatusCode::BAD_REQUEST,
            format!("sample must be above 0 and at most 1, not {sample}"),
        );
    }
    let stream = Stream {
        rx: s.metrics.taps().subscribe(),
        pipeline: name,
        component,
        sampler: Sampler::new(sample),
        left: match q.limit.unwrap_or(100) {
            0 => None,
            n => Some(n),
        },
    };
    let body = futures_util::stream::unfold(stream, |mut st| async move {
        st.next()
            .await
            .map(|chunk| (Ok::<_, std::convert::Infallible>(chunk), st))
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(body),
    )
        .into_response()
}
