//! What every admin request passes before a handler sees it.
//!
//! - **Host allow-list**: loopback names, the `--admin-addr` host and
//!   `CONNECTD_ADMIN_HOSTS` (comma-separated). A web page that rebinds its own DNS name
//!   to 127.0.0.1 sends its name as `Host` and is refused. On an unspecified address
//!   (`0.0.0.0`, `::`) any IP literal is allowed too: an IP has no DNS to rebind.
//! - **Origin** on mutating requests (PUT, POST, PATCH, DELETE): a browser's cross-site
//!   request carries one, and it must name an allowed host. Clients that are not
//!   browsers send none and are let through (the token guards them).
//! - **Token**: `Authorization: Bearer <token>`, compared in constant time. `?token=`
//!   only on the dashboard's event stream (`EventSource` cannot send headers). A
//!   separate read-only `CONNECTD_METRICS_TOKEN` opens `/metrics` and nothing else.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use crate::admin::{problem, AdminState};

/// The hosts the API answers to.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts {
    names: Vec<String>,
    any_ip: bool,
}

impl AllowedHosts {
    /// From the address the server listens on (as given and as bound) and the extra
    /// names of `CONNECTD_ADMIN_HOSTS`.
    pub fn new(addr_arg: &str, bound: IpAddr, extra: Option<&str>) -> Self {
        let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        names.push(bound.to_string());
        if let Some((host, _)) = addr_arg.rsplit_once(':') {
            names.push(host.trim_matches(['[', ']']).to_ascii_lowercase());
        }
        names.extend(
            extra
                .unwrap_or("")
                .split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty()),
        );
        Self {
            names,
            any_ip: bound.is_unspecified(),
        }
    }

    /// Whether a `Host` (or Origin's host) value, with or without port, is allowed.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        let name = match host.strip_prefix('[') {
            // [v6]:port
            Some(rest) => rest.split(']').next().unwrap_or_default().to_string(),
            None => match host.rsplit_once(':') {
                Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h.to_string(),
                _ => host.clone(),
            },
        };
        self.names.contains(&name) || (self.any_ip && name.parse::<IpAddr>().is_ok())
    }
}

fn is_mutating(m: &Method) -> bool {
    matches!(
        *m,
        Method::PUT | Method::POST | Method::PATCH | Method::DELETE
    )
}

/// The host part of an Origin header (`scheme://host[:port]`).
fn origin_host(origin: &str) -> Option<&str> {
    let rest = origin.split_once("://")?.1;
    Some(rest.split('/').next().unwrap_or(rest))
}

/// Host and Origin checks, on every route.
pub async fn check_host(State(s): State<AdminState>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    if !host.is_some_and(|h| s.hosts.allows(h)) {
        return problem(
            StatusCode::FORBIDDEN,
            "this Host is not one the admin API answers to (add it to CONNECTD_ADMIN_HOSTS)",
        );
    }
    if is_mutating(req.method()) {
        if let Some(origin) = req.headers().get(header::ORIGIN) {
            let allowed = origin
                .to_str()
                .ok()
                .and_then(origin_host)
                .is_some_and(|h| s.hosts.allows(h));
            if !allowed {
                return problem(
                    StatusCode::FORBIDDEN,
                    "a change requested from another site's page is refused (Origin not allowed)",
                );
            }
        }
    }
    next.run(req).await
}

fn same(given: &str, token: &str) -> bool {
    given.as_bytes().ct_eq(token.as_bytes()).into()
}

/// The dashboard's event stream: the one place a token may come in the query.
const EVENT_STREAM: &str = "/api/windows";

/// The admin token (or, on `/metrics`, the metrics token).
pub async fn require_token(State(s): State<AdminState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let on_metrics = path == "/metrics";
    let tokens: Vec<&Arc<str>> = s
        .token
        .iter()
        .chain(s.metrics_token.iter().filter(|_| on_metrics))
        .collect();
    if s.token.is_none() && !(on_metrics && s.metrics_token.is_some()) {
        return next.run(req).await;
    }
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let given = bearer.or_else(|| {
        (path == EVENT_STREAM)
            .then(|| {
                axum::extract::Query::<std::collections::HashMap<String, String>>::try_from_uri(
                    req.uri(),
                )
                .ok()
                .and_then(|q| q.0.get("token").cloned())
            })
            .flatten()
    });
    // Every token is compared, so the time taken says nothing about which matched.
    let matched = given
        .as_deref()
        .is_some_and(|g| tokens.iter().fold(false, |ok, t| same(g, t) | ok));
    if matched {
        next.run(req).await
    } else {
        problem(
            StatusCode::UNAUTHORIZED,
            "this admin API wants `Authorization: Bearer <token>` (CONNECTD_ADMIN_TOKEN; for /metrics also CONNECTD_METRICS_TOKEN); `?token=` is accepted only on the dashboard's event stream",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_matched_with_or_without_port() {
        let h = AllowedHosts::new(
            "127.0.0.1:8083",
            "127.0.0.1".parse().unwrap_or(IpAddr::from([127, 0, 0, 1])),
            Some("connectd.internal"),
        );
        for ok in [
            "localhost",
            "localhost:8083",
            "127.0.0.1:8083",
            "[::1]:8083",
            "CONNECTD.internal:80",
        ] {
            assert!(h.allows(ok), "{ok}");
        }
        for no in [
            "evil.example",
            "evil.example:8083",
            "10.0.0.5:8083",
            "localhost.evil.example",
        ] {
            assert!(!h.allows(no), "{no}");
        }
        let any = AllowedHosts::new("0.0.0.0:8083", IpAddr::from([0, 0, 0, 0]), None);
        assert!(any.allows("10.0.0.5:8083") && !any.allows("evil.example"));
    }

    #[test]
    fn origins_are_reduced_to_their_host() {
        assert_eq!(origin_host("http://localhost:8083"), Some("localhost:8083"));
        assert_eq!(origin_host("https://evil.example"), Some("evil.example"));
        assert_eq!(origin_host("null"), None);
    }
}
