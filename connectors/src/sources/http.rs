//! What the REST pollers share: one GET with the answer classified the way a poller
//! must treat it, and a backoff for runs of transient failures.

use std::time::Duration;

pub use super::backoff::Backoff;
use connectd_sdk::stats::{ErrorKind, SourceStats};

/// The outcome of one request, classified.
#[derive(Debug)]
pub enum Fetched {
    Body(Vec<u8>),
    /// 429: wait this long (from `Retry-After`, else the backoff's next delay).
    RateLimited(Option<Duration>),
    /// 5xx, timeouts, refused connections: retry later with backoff.
    Transient(String),
    /// 4xx other than 429: retrying the same request cannot help.
    Permanent {
        status: u16,
        body: String,
    },
}

pub fn client(user_agent: &str, timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .user_agent(user_agent)
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

pub async fn get(client: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> Fetched {
    let mut req = client.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return Fetched::Transient(describe(&e)),
    };
    let status = resp.status();
    if status.as_u16() == 429 {
        let wait = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        return Fetched::RateLimited(wait);
    }
    let body = match resp.bytes().await {
        Ok(b) => b.to_vec(),
        Err(e) => return Fetched::Transient(format!("reading the body: {}", describe(&e))),
    };
    if status.is_success() {
        Fetched::Body(body)
    } else if status.is_server_error() {
        Fetched::Transient(format!("HTTP {status}: {}", excerpt(&body)))
    } else {
        Fetched::Permanent {
            status: status.as_u16(),
            body: excerpt(&body),
        }
    }
}

fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    // reqwest's Display includes the URL, which holds no secret here (keys go in headers).
    format!("{kind}: {e}")
}

/// At most 300 characters of a body, for error messages and dead letters.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.chars().take(300).collect();
    if text.chars().count() > 300 {
        out.push('…');
    }
    out
}

/// Counts one request and its outcome.
pub fn record(stats: &SourceStats, fetched: &Fetched) {
    stats.request();
    match fetched {
        Fetched::Body(body) => {
            stats.success();
            stats.read_bytes(body.len() as u64);
        }
        Fetched::RateLimited(_) => stats.error(ErrorKind::RateLimited),
        Fetched::Transient(why) if why.starts_with("HTTP") => stats.error(ErrorKind::Server),
        Fetched::Transient(_) => stats.error(ErrorKind::Network),
        Fetched::Permanent { .. } => stats.error(ErrorKind::Rejected),
    }
}
