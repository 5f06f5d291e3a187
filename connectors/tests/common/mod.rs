//! A scripted HTTP server for the REST source tests: each path answers from its queue of
//! replies (the last one repeats), and every request is recorded.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use connectd_sdk::config::{ConfigErrors, ConfigKey, ConfigMap, ConfigNode, ConfigValue};
use connectd_sdk::{BadRecord, BuildContext, Record, Source, SourcePoll};

#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(body: impl Into<String>) -> Self {
        Reply {
            status: 200,
            headers: vec![("content-type", "application/json".into())],
            body: body.into(),
        }
    }
    pub fn status(status: u16, body: impl Into<String>) -> Self {
        Reply {
            status,
            headers: vec![],
            body: body.into(),
        }
    }
    pub fn header(mut self, k: &'static str, v: impl Into<String>) -> Self {
        self.headers.push((k, v.into()));
        self
    }
}

#[derive(Clone, Debug)]
pub struct Seen {
    pub path_and_query: String,
    pub headers: HeaderMap,
}

#[derive(Clone, Default)]
pub struct Server {
    replies: Arc<Mutex<HashMap<String, VecDeque<Reply>>>>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    /// Starts on an ephemeral loopback port; returns the base URL.
    pub async fn start(&self) -> String {
        let me = self.clone();
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let me = me.clone();
            async move { me.answer(uri, headers) }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    /// Queues replies for a path (without query).
    pub fn script(&self, path: &str, replies: Vec<Reply>) {
        self.replies
            .lock()
            .unwrap()
            .entry(path.to_string())
            .or_default()
            .extend(replies);
    }

    pub fn requests_to(&self, path: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path_and_query.split('?').next() == Some(path))
            .cloned()
            .collect()
    }

    fn answer(&self, uri: Uri, headers: HeaderMap) -> Response {
        self.seen.lock().unwrap().push(Seen {
            path_and_query: uri.to_string(),
            headers,
        });
        let mut replies = self.replies.lock().unwrap();
        let reply = match replies.get_mut(uri.path()) {
            Some(q) if q.len() > 1 => q.pop_front(),
            Some(q) => q.front().cloned(),
            None => None,
        };
        match reply {
            Some(r) => {
                let mut resp = (StatusCode::from_u16(r.status).unwrap(), r.body).into_response();
                for (k, v) in r.headers {
                    resp.headers_mut().insert(k, v.parse().unwrap());
                }
                resp
            }
            None => (StatusCode::NOT_FOUND, "no such path").into_response(),
        }
    }
}

fn plain(value: ConfigValue) -> ConfigNode {
    ConfigNode {
        value,
        span: Default::default(),
        secret: false,
        raw: None,
        quoted: false,
    }
}

/// A component's config mapping from `key: value` pairs (a pair whose key is `special.0`
/// takes the given node instead, e.g. an interpolated secret).
fn mapping(pairs: &[(&str, ConfigValue)], special: Option<(&str, ConfigNode)>) -> ConfigNode {
    plain(ConfigValue::Map(
        pairs
            .iter()
            .map(|(k, v)| {
                let node = match &special {
                    Some((key, n)) if key == k => n.clone(),
                    _ => plain(v.clone()),
                };
                (
                    ConfigKey {
                        name: k.to_string(),
                        span: Default::default(),
                    },
                    node,
                )
            })
            .collect(),
    ))
}

fn build_from(
    build: connectd_sdk::registry::SourceBuilder,
    node: &ConfigNode,
) -> Result<Box<dyn Source>, Vec<connectd_sdk::config::ConfigError>> {
    let errors = ConfigErrors::default();
    let mut cfg = ConfigMap::new(node, "sources.s", &errors);
    let ctx = BuildContext {
        pipeline: "p".into(),
        component: "s".into(),
        state_dir: ".".into(),
        inputs: vec![],
        ..Default::default()
    };
    build(&mut cfg, &ctx).map_err(|_| errors.take())
}

/// Builds a source from `key: value` pairs as a pipeline file would give them.
pub fn build_source(
    build: connectd_sdk::registry::SourceBuilder,
    pairs: &[(&str, ConfigValue)],
) -> Result<Box<dyn Source>, Vec<connectd_sdk::config::ConfigError>> {
    build_from(build, &mapping(pairs, None))
}

pub fn s(v: &str) -> ConfigValue {
    ConfigValue::Scalar(v.to_string())
}

pub fn list(items: &[&str]) -> ConfigValue {
    ConfigValue::List(
        items
            .iter()
            .map(|i| ConfigNode {
                value: s(i),
                span: Default::default(),
                secret: false,
                raw: None,
                quoted: false,
            })
            .collect(),
    )
}

/// Polls until `n` records arrived (or `limit` passed), honouring Idle waits.
pub async fn collect(
    src: &mut Box<dyn Source>,
    n: usize,
    limit: Duration,
) -> (Vec<Record>, Vec<BadRecord>) {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut bad = Vec::new();
    while out.len() < n && started.elapsed() < limit {
        match src.poll(1000, &mut bad).await {
            Ok(SourcePoll::Batch(b)) => out.extend(b),
            Ok(SourcePoll::Idle(d)) => tokio::time::sleep(d.min(Duration::from_millis(20))).await,
            Ok(SourcePoll::End) => break,
            Err(e) => panic!("source failed: {e}"),
        }
    }
    (out, bad)
}

pub fn field<'r>(r: &'r Record, name: &str) -> &'r connectd_sdk::Value {
    r.value
        .get_path(&connectd_sdk::FieldPath::parse(name))
        .unwrap_or_else(|| panic!("no field {name} in {:?}", r.value))
}

/// Like `build_source`, with one key given as a full node (e.g. an interpolated secret).
pub fn build_with_node(
    pairs: &[(&str, ConfigValue)],
    key: &str,
    special: ConfigNode,
) -> Box<dyn Source> {
    build_from(
        connectd_connectors::sources::goapi::build,
        &mapping(pairs, Some((key, special))),
    )
    .unwrap_or_else(|e| panic!("{e:?}"))
}
