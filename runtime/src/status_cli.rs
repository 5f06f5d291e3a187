//! `connectd status`: a running worker's pipelines as a table, read from its admin API
//! (`GET /connectors?expand=status`).

use std::fmt::Write;

/// Fetches the statuses and lays them out; the error says what went wrong and where.
pub async fn table(addr: &str, token: Option<&str>) -> Result<String, String> {
    let url = format!("http://{addr}/connectors?expand=status");
    let mut request = reqwest::Client::new().get(&url);
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("cannot reach the admin API at {url}: {e}"))?;
    let code = response.status();
    let body = response
        .text()
        .await
        .map_err(|e| format!("{url}: reading the answer: {e}"))?;
    if !code.is_success() {
        return Err(format!("{url} answered {code}: {body}"));
    }
    let all: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&body)
        .map_err(|e| format!("{url} did not answer a JSON object ({e}): {body}"))?;
    let rows: Vec<[String; 4]> = all
        .iter()
        .map(|(name, v)| {
            let s = &v["status"];
            let text = |k: &str| s[k].as_str().unwrap_or("").to_string();
            [name.clone(), text("state"), text("since"), text("error")]
        })
        .collect();
    let header = ["PIPELINE", "STATE", "SINCE", "ERROR"].map(String::from);
    let widths: Vec<usize> = (0..3)
        .map(|i| {
            std::iter::once(&header)
                .chain(&rows)
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in std::iter::once(&header).chain(&rows) {
        let _ = writeln!(
            out,
            "{:w0$}  {:w1$}  {:w2$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
    }
    Ok(out)
}
