//! A real Prometheus server (Debian's `prometheus`, installed by `scripts/prometheus.sh`)
//! scrapes connectd's `/metrics`; a metric is read back through Prometheus's query API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn prometheus_scrapes_connectd_and_answers_queries_about_it() {
    let dir = tempfile::tempdir().unwrap();
    write_pipeline(
        dir.path(),
        "p.yaml",
        "name: scraped\nsources:\n  gen: {type: trades, seed: 4, rate: 200, count: 1000000}\nsinks:\n  out: {type: csv, inputs: [gen], path: out.csv, columns: [id]}\n",
    );
    let port = free_port();
    // The admin API wants a token; Prometheus scrapes with the read-only metrics token.
    let mut worker = spawn_captured(
        connectd()
            .current_dir(dir.path())
            .env("CONNECTD_ADMIN_TOKEN", "admin-secret")
            .env("CONNECTD_METRICS_TOKEN", "scrape-only")
            .args(["--admin-addr", &format!("127.0.0.1:{port}")])
            .args(["--config", "p.yaml"]),
    );
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: connectd\n    authorization: {{credentials: scrape-only}}\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
        ),
    )
    .unwrap();
    let prom_port = free_port();
    let bin = std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "prometheus".into());
    let mut prometheus = spawn_captured(
        std::process::Command::new(&bin)
            .current_dir(dir.path())
            .arg("--config.file=prometheus.yml")
            .arg("--storage.tsdb.path=tsdb")
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}")),
    );
    let query = "/api/v1/query?query=connectd_records_out_total%7Bpipeline%3D%22scraped%22%2Ccomponent%3D%22out%22%7D";
    let started = Instant::now();
    let value = loop {
        if let Some(v) = std::net::TcpStream::connect(("127.0.0.1", prom_port))
            .ok()
            .and_then(|_| {
                let (code, body) = http("GET", prom_port, query, None);
                (code == 200).then_some(body)
            })
            .and_then(|body| {
                let v: serde_json::Value = serde_json::from_str(&body).ok()?;
                let sample = v["data"]["result"][0]["value"][1].as_str()?.to_string();
                sample.parse::<f64>().ok()
            })
            .filter(|v| *v > 0.0)
        {
            break v;
        }
        assert!(
            prometheus.try_wait().unwrap().is_none(),
            "prometheus ({bin}) exited: {} (scripts/prometheus.sh installs it)",
            stderr_of(&prometheus)
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "prometheus never had the metric: {}",
            stderr_tail(&prometheus, 3000)
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(value > 0.0);
    // The metrics token opens /metrics and nothing else.
    assert_eq!(http("GET", port, "/metrics", None).0, 401);
    assert_eq!(http("GET", port, "/connectors", Some("scrape-only")).0, 401);
    assert_eq!(
        http("GET", port, "/connectors", Some("admin-secret")).0,
        200
    );
    // Process metrics too.
    let metrics = http("GET", port, "/metrics", Some("scrape-only")).1;
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(metrics.contains(name), "no {name} in /metrics");
    }
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    signal(&worker, libc::SIGTERM);
    assert!(wait_with_deadline(&mut worker, Duration::from_secs(30)).success());
}
