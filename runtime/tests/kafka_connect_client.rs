//! A Kafka Connect client that users already use (`kafka-connect-py` from PyPI,
//! installed by `scripts/test.sh`) drives a running worker (issue 19).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;

#[test]
fn kafka_connect_py_lists_reads_status_pauses_resumes_restarts_stops_and_resets_a_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    write_pipeline(
        dir.path(),
        "p.yaml",
        "name: ticks\ncheckpoint: {interval: 200ms}\nsources:\n  gen: {type: trades, seed: 5, rate: 200, count: 1000000}\nsinks:\n  out: {type: csv, inputs: [gen], path: out/ticks.csv, columns: [id]}\n",
    );
    let (mut worker, port) = start_worker(dir.path(), &["--config", "p.yaml"]);
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/kafka_connect_py.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(format!("http://127.0.0.1:{port}"))
        .arg("ticks")
        .arg(dir.path().join("out/ticks.csv"))
        .output()
        .expect("python3");
    signal(&worker, libc::SIGTERM);
    let _ = wait_with_deadline(&mut worker, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "kafka-connect-py (pip install kafka-connect-py) failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// With `--pipelines-dir`, kafka-connect-py creates, changes and deletes pipelines; they
/// are files in that folder, and one created over the API runs again after a restart.
#[test]
fn kafka_connect_py_creates_changes_and_deletes_pipelines_kept_as_files() {
    let dir = tempfile::tempdir().unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients/kafka_connect_py_manage.py");
    let (mut worker, port) = start_worker(dir.path(), &["--pipelines-dir", "pipes"]);
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(format!("http://127.0.0.1:{port}"))
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "kafka-connect-py failed:\n{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        stderr_tail(&worker, 3000)
    );
    signal(&worker, libc::SIGTERM);
    assert!(wait_with_deadline(&mut worker, Duration::from_secs(60)).success());
    let mut files: Vec<String> = std::fs::read_dir(dir.path().join("pipes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["kept.yaml"],
        "deleted, invalid and staged files are gone"
    );
    // After a restart, the pipeline created over the API runs again.
    let (mut worker, port) = start_worker(dir.path(), &["--pipelines-dir", "pipes"]);
    let started = std::time::Instant::now();
    loop {
        let (code, body) = http("GET", port, "/connectors/kept/status", None);
        if code == 200 && body.contains("RUNNING") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "kept is not running after a restart: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(&worker, libc::SIGTERM);
    assert!(wait_with_deadline(&mut worker, Duration::from_secs(60)).success());
}

/// Without `--pipelines-dir` the API cannot create pipelines, and says why.
#[test]
fn without_a_pipelines_dir_creating_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_pipeline(
        dir.path(),
        "p.yaml",
        "name: ticks\nsources:\n  gen: {type: trades, seed: 5, rate: 50, count: 1000000}\nsinks:\n  out: {type: csv, inputs: [gen], path: out/t.csv, columns: [id]}\n",
    );
    let (mut worker, port) = start_worker(dir.path(), &["--config", "p.yaml"]);
    let (code, body) = http_with_body(
        "PUT",
        port,
        "/connectors/other/config",
        None,
        r#"{"sources": {}, "sinks": {}}"#,
    );
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("--pipelines-dir"), "{body}");
    let (code, _) = http("DELETE", port, "/connectors/ticks", None);
    assert_eq!(code, 409);
    signal(&worker, libc::SIGTERM);
    let _ = wait_with_deadline(&mut worker, Duration::from_secs(60));
}

/// `kafka-connect-healthcheck` (PyPI), the health check Kafka Connect users put in
/// front of a worker, reads connectd's status: unhealthy while a pipeline has failed
/// (naming it), healthy when the failures stay under its threshold.
#[test]
fn kafka_connect_healthcheck_reports_a_failed_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    write_pipeline(
        dir.path(),
        "ticks.yaml",
        "name: ticks\nsources:\n  gen: {type: trades, seed: 5, rate: 200, count: 1000000}\nsinks:\n  out: {type: csv, inputs: [gen], path: out/ticks.csv, columns: [id]}\n",
    );
    // Its file's folder is a file: the sink cannot write, the pipeline fails.
    write_pipeline(
        dir.path(),
        "broken.yaml",
        "name: broken\nerrors: {retry_timeout: 1s}\nsources:\n  gen: {type: trades, seed: 1, rate: 0, count: 10}\nsinks:\n  out: {type: csv, inputs: [gen], path: ticks.yaml/cannot.csv, columns: [id]}\n",
    );
    let (mut worker, port) = start_worker(dir.path(), &["--config", "ticks.yaml", "broken.yaml"]);
    let started = std::time::Instant::now();
    while !http("GET", port, "/connectors/broken/status", None)
        .1
        .contains("FAILED")
    {
        assert!(started.elapsed() < Duration::from_secs(30), "never failed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let check = |threshold: Option<&str>| {
        let health_port = free_port();
        let mut cmd = std::process::Command::new("python3");
        cmd.args(["-m", "kafka_connect_healthcheck.main", "--port"])
            .arg(health_port.to_string())
            .arg("--connect-url")
            .arg(format!("http://127.0.0.1:{port}"))
            .arg("--connect-worker-id")
            .arg(format!("127.0.0.1:{port}"))
            .args(
                threshold
                    .map(|t| ["--failure-threshold-percentage", t])
                    .iter()
                    .flatten(),
            );
        let mut tool = spawn_captured(&mut cmd);
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", health_port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "kafka-connect-healthcheck (pip install kafka-connect-healthcheck) never listened: {}",
                stderr_tail(&tool, 3000)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let answer = http("GET", health_port, "/", None);
        signal(&tool, libc::SIGTERM);
        let _ = wait_with_deadline(&mut tool, Duration::from_secs(10));
        (
            answer.0,
            serde_json::from_str::<serde_json::Value>(&answer.1).unwrap(),
        )
    };
    let (code, body) = check(None);
    assert_eq!(code, 503, "{body}");
    let failed: Vec<(&str, &str)> = body["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["type"].as_str().unwrap(),
                f["connector"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        failed,
        [("connector", "broken"), ("task", "broken")],
        "{body}"
    );
    // One of two pipelines (its connector and its task: 2 of 4) is under 60 %.
    let (code, body) = check(Some("60"));
    assert_eq!(
        (code, body["healthy"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    signal(&worker, libc::SIGTERM);
    let _ = wait_with_deadline(&mut worker, Duration::from_secs(60));
}

/// With `--admin-tls-cert/--admin-tls-key` the API is served over HTTPS only: a client
/// verifies the certificate (kafka-connect-py with the CA file), fails without it, and
/// plain HTTP gets no answer. A missing key file is a startup error naming it.
#[test]
fn the_admin_api_is_served_over_tls_and_verified_by_a_client() {
    let dir = tempfile::tempdir().unwrap();
    // A CA, and a certificate for localhost signed by it (rustls, unlike OpenSSL, does
    // not take a self-signed CA certificate as a server's own).
    let openssl = |args: &[&str]| {
        let made = std::process::Command::new("openssl")
            .current_dir(dir.path())
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            made.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&made.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=connectd test CA",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "key.pem",
                "-out",
                "leaf.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.path().join("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ]);
    write_pipeline(
        dir.path(),
        "p.yaml",
        "name: ticks\nsources:\n  gen: {type: trades, seed: 5, rate: 50, count: 1000000}\nsinks:\n  out: {type: csv, inputs: [gen], path: out/ticks.csv, columns: [id]}\n",
    );
    let refused = connectd()
        .current_dir(dir.path())
        .args([
            "--admin-tls-cert",
            "cert.pem",
            "--admin-tls-key",
            "nope.pem",
        ])
        .args(["--config", "p.yaml"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && said.contains("--admin-tls-key nope.pem"),
        "{said}"
    );
    let port = free_port();
    let mut worker = spawn_captured(
        connectd()
            .current_dir(dir.path())
            .args(["--admin-addr", &format!("127.0.0.1:{port}")])
            .args(["--admin-tls-cert", "cert.pem", "--admin-tls-key", "key.pem"])
            .args(["--config", "p.yaml"]),
    );
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never listened: {}",
            stderr_tail(&worker, 3000)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/tls_client.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(format!("https://localhost:{port}"))
        .arg(dir.path().join("ca.pem"))
        .arg("ticks")
        .output()
        .expect("python3");
    // `connectd status` over HTTPS: verified against the CA file, refused without it.
    let status = |ca: Option<&str>| {
        let mut c = connectd();
        c.current_dir(dir.path()).args([
            "status",
            "--admin-addr",
            &format!("https://localhost:{port}"),
        ]);
        if let Some(ca) = ca {
            c.args(["--ca-cert", ca]);
        }
        c.output().unwrap()
    };
    let trusted = status(Some("ca.pem"));
    let untrusted = status(None);
    // Plain HTTP on the TLS port: no HTTP answer.
    let plain = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        write!(
            s,
            "GET /connectors HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut bytes = Vec::new();
        let _ = s.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    };
    signal(&worker, libc::SIGTERM);
    let _ = wait_with_deadline(&mut worker, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let table = String::from_utf8_lossy(&trusted.stdout);
    assert!(
        trusted.status.success() && table.contains("ticks") && table.contains("RUNNING"),
        "connectd status over HTTPS: {table}\n{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    let refusal = String::from_utf8_lossy(&untrusted.stderr);
    assert!(
        !untrusted.status.success() && refusal.contains("https://localhost"),
        "a certificate nobody vouches for must be refused: {refusal}"
    );
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "HTTPS with kafka-connect-py failed:\n{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        stderr_tail(&worker, 3000)
    );
    assert!(
        !plain.contains("HTTP/1.1") && !plain.contains("ticks"),
        "{plain}"
    );
}
