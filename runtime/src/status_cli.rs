//! `connectd status`: a running worker's pipelines as tables, read from its admin API:
//! each pipeline's state (`GET /connectors?expand=status`), then each component's
//! counters, as the dashboard shows them (`GET /api/dashboard`).

use std::fmt::Write;

/// The API's base URL: `addr` as given when it has a scheme, else `http://addr`.
fn base_url(addr: &str) -> String {
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.trim_end_matches('/').to_string()
    } else {
        format!("http://{addr}")
    }
}

/// Fetches the statuses and counters and lays them out; the error says what went
/// wrong and where. `ca_pem`: CA certificates to trust for an https:// address.
pub async fn table(
    addr: &str,
    token: Option<&str>,
    ca_pem: Option<&[u8]>,
) -> Result<String, String> {
    let mut builder = reqwest::Client::builder();
    if let Some(pem) = ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| format!("--ca-cert: not PEM certificates: {e}"))?;
        if certs.is_empty() {
            return Err("--ca-cert: no certificate in the file".into());
        }
        for c in certs {
            builder = builder.add_root_certificate(c);
        }
    }
    let client = builder
        .build()
        .map_err(|e| format!("cannot make the HTTP client: {e}"))?;
    let addr = &base_url(addr);
    let all = get(&client, addr, "/connectors?expand=status", token).await?;
    let all = all
        .as_object()
        .ok_or_else(|| format!("{addr}/connectors?expand=status: not a JSON object"))?;
    let mut out = String::new();
    let pipelines: Vec<Vec<String>> = all
        .iter()
        .map(|(name, v)| {
            let s = &v["status"];
            let text = |k: &str| s[k].as_str().unwrap_or("").to_string();
            vec![name.clone(), text("state"), text("since"), text("error")]
        })
        .collect();
    lay_out(
        &mut out,
        &["PIPELINE", "STATE", "SINCE", "ERROR"],
        &pipelines,
    );
    let dashboard = get(&client, addr, "/api/dashboard", token).await?;
    let mut components = Vec::new();
    for p in dashboard["pipelines"].as_array().into_iter().flatten() {
        for c in p["components"].as_array().into_iter().flatten() {
            let n = |k: &str| c[k].as_f64().map_or(String::new(), |v| v.to_string());
            components.push(vec![
                p["name"].as_str().unwrap_or("").to_string(),
                c["name"].as_str().unwrap_or("").to_string(),
                format!(
                    "{} ({})",
                    c["kind"].as_str().unwrap_or(""),
                    c["type"].as_str().unwrap_or("")
                ),
                n("records_in"),
                n("records_out"),
                n("errors"),
                n("dlq"),
            ]);
        }
    }
    out.push('\n');
    lay_out(
        &mut out,
        &[
            "PIPELINE",
            "COMPONENT",
            "KIND",
            "IN",
            "OUT",
            "ERRORS",
            "DLQ",
        ],
        &components,
    );
    Ok(out)
}

async fn get(
    client: &reqwest::Client,
    addr: &str,
    path: &str,
    token: Option<&str>,
) -> Result<serde_json::Value, String> {
    let url = format!("{addr}{path}");
    let mut request = client.get(&url);
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("cannot reach the admin API at {url}: {}", chain(&e)))?;
    let code = response.status();
    let body = response
        .text()
        .await
        .map_err(|e| format!("{url}: reading the answer: {e}"))?;
    if !code.is_success() {
        return Err(format!("{url} answered {code}: {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("{url} did not answer JSON ({e}): {body}"))
}

/// An error with its causes (reqwest's own text leaves out why a TLS handshake failed).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// Columns padded to their widest cell; the last one is not padded.
fn lay_out(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            std::iter::once(&header)
                .chain(rows)
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in std::iter::once(&header).chain(rows) {
        let last = r.len().saturating_sub(1);
        for (i, cell) in r.iter().enumerate() {
            if i == last {
                let _ = writeln!(out, "{cell}");
            } else {
                let _ = write!(out, "{cell:w$}  ", w = widths[i]);
            }
        }
    }
}
