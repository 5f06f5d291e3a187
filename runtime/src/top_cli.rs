//! `connectd top`: a running worker's pipelines and components — records in and out,
//! the rate out, errors, dead letters, source lag and checkpoint age — refreshed in
//! place in the terminal, from its admin API (`/connectors?expand=status`,
//! `/api/dashboard`, `/metrics`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::admin_client::{base_url, client, get_json, get_text};

/// Where to look, how often, and how many times (`None`: until interrupted).
#[derive(Debug)]
pub struct TopRequest<'a> {
    pub addr: &'a str,
    pub token: Option<&'a str>,
    pub ca_pem: Option<&'a [u8]>,
    pub interval: Duration,
    pub iterations: Option<u64>,
}

/// (pipeline, component) → value of one metric family.
type ByComponent = BTreeMap<(String, String), f64>;

/// (pipeline, component) → value, of one metric family in Prometheus text.
fn by_component(metrics: &str, name: &str) -> ByComponent {
    let label = |line: &str, key: &str| -> Option<String> {
        let start = line.find(&format!("{key}=\""))? + key.len() + 2;
        let end = start + line[start..].find('"')?;
        Some(line[start..end].to_string())
    };
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| {
            let value: f64 = l.rsplit(' ').next()?.parse().ok()?;
            Some(((label(l, "pipeline")?, label(l, "component")?), value))
        })
        .collect()
}

/// One screen, from the answers of the API; `before`: the counters of the previous
/// screen and when they were read (for rates).
fn screen(
    base: &str,
    status: &serde_json::Value,
    dashboard: &serde_json::Value,
    metrics: &str,
    before: &mut Option<(Instant, ByComponent)>,
) -> String {
    let now = Instant::now();
    let unix_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let lag = by_component(metrics, "connectd_source_lag_seconds");
    let checkpoints = by_component(metrics, "connectd_last_checkpoint_timestamp_seconds");
    let mut out = String::new();
    let _ = writeln!(
        out,
        "connectd top  {base}  (Ctrl-C to quit)\n\n{:<20} {:<9} {:>9}  {:<18} {:<20} {:>10} {:>10} {:>9} {:>6} {:>6} {:>8}",
        "PIPELINE", "STATE", "CKPT AGE", "COMPONENT", "KIND", "IN", "OUT", "OUT/s", "ERR", "DLQ", "LAG"
    );
    let mut outs = BTreeMap::new();
    for p in dashboard["pipelines"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or_default();
        let state = status[name]["status"]["state"]
            .as_str()
            .or_else(|| p["state"].as_str())
            .unwrap_or_default();
        let newest = checkpoints
            .iter()
            .filter(|((pl, _), _)| pl == name)
            .map(|(_, t)| *t)
            .fold(0.0, f64::max);
        let age = if newest > 0.0 {
            format!("{:.1}s", (unix_now - newest).max(0.0))
        } else {
            "-".into()
        };
        for (i, c) in p["components"].as_array().into_iter().flatten().enumerate() {
            let component = c["name"].as_str().unwrap_or_default();
            let n = |k: &str| c[k].as_f64().unwrap_or(0.0);
            let key = (name.to_string(), component.to_string());
            let rate = match before {
                Some((then, prev)) => prev.get(&key).map_or("-".into(), |p| {
                    let dt = now.duration_since(*then).as_secs_f64().max(1e-3);
                    format!("{:.0}", (n("records_out") - p).max(0.0) / dt)
                }),
                None => "-".into(),
            };
            outs.insert(key.clone(), n("records_out"));
            let lag = lag.get(&key).map_or("-".into(), |l| format!("{l:.1}s"));
            let (pname, pstate, page) = if i == 0 {
                (name, state, age.as_str())
            } else {
                ("", "", "")
            };
            let kind = format!(
                "{} ({})",
                c["kind"].as_str().unwrap_or_default(),
                c["type"].as_str().unwrap_or_default()
            );
            let _ = writeln!(
                out,
                "{pname:<20} {pstate:<9} {page:>9}  {component:<18} {kind:<20} {:>10} {:>10} {rate:>9} {:>6} {:>6} {lag:>8}",
                n("records_in"),
                n("records_out"),
                n("errors"),
                n("dlq"),
            );
        }
    }
    *before = Some((now, outs));
    out
}

pub async fn run(req: &TopRequest<'_>, out: &mut impl std::io::Write) -> Result<(), String> {
    let client = client(req.ca_pem)?;
    let base = base_url(req.addr);
    let mut before = None;
    let mut shown = 0u64;
    loop {
        let status = get_json(&client, &base, "/connectors?expand=status", req.token).await?;
        let dashboard = get_json(&client, &base, "/api/dashboard", req.token).await?;
        let metrics = get_text(&client, &base, "/metrics", req.token).await?;
        let text = screen(&base, &status, &dashboard, &metrics, &mut before);
        // Clear the screen and start at its top: the table is redrawn in place.
        write!(out, "\x1b[2J\x1b[H{text}")
            .and_then(|()| out.flush())
            .map_err(|e| format!("cannot write: {e}"))?;
        shown += 1;
        if req.iterations.is_some_and(|n| shown >= n) {
            return Ok(());
        }
        tokio::time::sleep(req.interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::by_component;

    #[test]
    fn reads_a_metric_family_by_pipeline_and_component() {
        let text = "# HELP x\nconnectd_source_lag_seconds{pipeline=\"p\",component=\"s\"} 1.5\nconnectd_source_lag_seconds_other{pipeline=\"p\",component=\"t\"} 9\n";
        let m = by_component(text, "connectd_source_lag_seconds");
        assert_eq!(m.len(), 1);
        assert_eq!(m[&("p".to_string(), "s".to_string())], 1.5);
    }
}
