//! `connectd status`: a running worker's pipelines as tables, read from its admin API:
//! each pipeline's state (`GET /connectors?expand=status`), then each component's
//! counters, as the dashboard shows them (`GET /api/dashboard`).

use std::fmt::Write;

use crate::admin_client::{base_url, client, get_json};

/// Fetches the statuses and counters and lays them out; the error says what went
/// wrong and where. `ca_pem`: CA certificates to trust for an https:// address.
pub async fn table(
    addr: &str,
    token: Option<&str>,
    ca_pem: Option<&[u8]>,
) -> Result<String, String> {
    let client = client(ca_pem)?;
    let addr = &base_url(addr);
    let all = get_json(&client, addr, "/connectors?expand=status", token).await?;
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
    let dashboard = get_json(&client, addr, "/api/dashboard", token).await?;
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
