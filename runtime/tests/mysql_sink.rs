//! The `mysql` sink's behaviour on a real MariaDB/MySQL: upserts, rejected rows to the
//! DLQ with the server's message, and the transaction of rows + checkpoint.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::mysql::*;
use common::*;

#[test]
fn upserts_keep_the_latest_row_per_key_and_rejected_rows_go_to_the_dlq() {
    let (db, url) = fresh_database("sink");
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::new();
    for i in 0..300 {
        let ticker = ["BBCA", "TLKM", "ASII"][i % 3];
        input.push_str(&format!("{{\"ticker\":\"{ticker}\",\"price\":{i},\"day\":\"2024-01-0{}\",\"at\":1700000000{:03}}}\n", 1 + i % 3, i));
    }
    // Too long for VARCHAR(8): the server rejects it; the other rows still go in.
    input.push_str(
        "{\"ticker\":\"WAYTOOLONGTICKER\",\"price\":1,\"day\":\"2024-01-01\",\"at\":1}\n",
    );
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            r#"
name: upsert
checkpoint: {{interval: 50ms}}
errors:
  tolerance: all
  dlq: {{path: dlq.jsonl}}
sources:
  lines: {{type: file, path: in.jsonl}}
sinks:
  latest:
    type: mysql
    inputs: [lines]
    url: {url}
    table: latest_price
    mode: upsert
    key: [ticker, day]
    batch_size: 7
    columns:
      ticker: ticker
      day: day
      price: price
      seen_at: {{field: at, type: datetime}}
    create_table:
      ticker: VARCHAR(8) NOT NULL
      day: DATE NOT NULL
      price: BIGINT NOT NULL
      seen_at: DATETIME(3) NOT NULL
"#
        ),
    );
    let out = run_to_end(dir.path(), &cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = query(&[&format!(
        "SELECT GROUP_CONCAT(CONCAT(ticker, ' ', day, ' ', price, ' ', seen_at) ORDER BY ticker SEPARATOR '; ') FROM {db}.latest_price"
    )])
    .unwrap();
    // The last of each (ticker, day): i = 297 (BBCA), 298 (TLKM), 299 (ASII).
    assert_eq!(
        rows,
        "ASII 2024-01-03 299 2023-11-14 22:13:20.299; BBCA 2024-01-01 297 2023-11-14 22:13:20.297; TLKM 2024-01-02 298 2023-11-14 22:13:20.298"
    );
    let dlq = read(dir.path().join("dlq.jsonl"));
    assert_eq!(dlq.lines().count(), 1, "{dlq}");
    assert!(
        dlq.contains("WAYTOOLONGTICKER") && dlq.contains("MySQL error 1406"),
        "{dlq}"
    );
    let checkpoint = query(&[&format!("SELECT checkpoint_id FROM {db}.connectd_checkpoints WHERE pipeline = 'upsert' AND sink = 'latest'")]);
    assert!(
        checkpoint.is_some(),
        "the checkpoint row is written with the data"
    );
    query(&[&format!("DROP DATABASE {db}")]);
}

#[test]
fn a_missing_database_is_a_clear_permanent_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.jsonl"), "{\"a\":1}\n").unwrap();
    let url = format!(
        "{}/connectd_surely_missing_db",
        server_url().trim_end_matches('/')
    );
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        &format!("name: nodb\nsources:\n  l: {{type: file, path: in.jsonl}}\nsinks:\n  m: {{type: mysql, inputs: [l], url: '{url}', table: t, columns: [a]}}\n"),
    );
    let out = run_to_end(dir.path(), &cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("1049") && stderr.contains("CREATE DATABASE"),
        "{stderr}"
    );
}

/// Rows go in as SQL text: every string (quotes, backslashes, control characters,
/// NUL, multi-byte UTF-8), every double (the smallest and largest, subnormals) and
/// every integer extreme reads back exactly as it was in the input.
/// Through a table made by `create_table` without a character set, on a server whose
/// default is latin1 (the test server's, as MariaDB's before 11.6).
#[test]
fn every_value_reads_back_exactly_as_written() {
    use mysql_async::prelude::Queryable;
    let (db, url) = fresh_database("literals");
    let dir = tempfile::tempdir().unwrap();
    let strings = [
        "plain",
        "it's",
        r"back\slash",
        r#"double "quote""#,
        "new\nline\r\ttab",
        "nul\u{0}byte and \u{1a} ctrl-z",
        "ünïcødé 株式 🚀",
        "%_ like wildcards",
        "'); DROP TABLE t; --",
        "",
    ];
    let doubles = [
        0.1,
        -2.5,
        1e-300,
        5e-324,
        f64::MAX,
        f64::MIN_POSITIVE,
        -0.0,
        123_456_789.123_456_79,
        1.0 / 3.0,
        6.02214076e23,
    ];
    let ints = [
        0,
        1,
        -1,
        i64::MAX,
        i64::MIN,
        42,
        1 << 53,
        -(1 << 53) - 1,
        7,
        9,
    ];
    let mut input = String::new();
    for i in 0..strings.len() {
        input.push_str(
            &serde_json::json!({"id": i, "s": strings[i], "d": doubles[i], "n": ints[i]})
                .to_string(),
        );
        input.push('\n');
    }
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            r#"
name: literals
sources:
  lines: {{type: file, path: in.jsonl}}
sinks:
  t:
    type: mysql
    inputs: [lines]
    url: {url}
    table: t
    batch_size: 4
    columns: [id, s, d, n]
    create_table:
      id: INT NOT NULL PRIMARY KEY
      s: TEXT NOT NULL
      d: DOUBLE NOT NULL
      n: BIGINT NOT NULL
"#
        ),
    );
    let out = run_to_end(dir.path(), &cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<(usize, Vec<u8>, f64, i64)> = rt().block_on(async {
        let mut conn = mysql_async::Conn::from_url(url.clone()).await.unwrap();
        let rows = conn
            .query("SELECT id, s, d, n FROM t ORDER BY id")
            .await
            .unwrap();
        conn.disconnect().await.unwrap();
        rows
    });
    assert_eq!(rows.len(), strings.len());
    for (id, s, d, n) in rows {
        assert_eq!(String::from_utf8_lossy(&s), strings[id], "row {id}");
        // Exact (`==`; a negative zero is stored as zero, which compares equal).
        assert!(
            d == doubles[id],
            "row {id}: {d:e} read back, {:e} written",
            doubles[id]
        );
        assert_eq!(n, ints[id], "row {id}");
    }
    query(&[&format!("DROP DATABASE {db}")]);
}

/// A `datetime` column reads a number as epoch milliseconds. Epoch seconds (Unix time)
/// then land in January 1970: the first such number of the column is named in a
/// warning with the conversion to write, once; milliseconds and text are not.
#[test]
fn epoch_seconds_in_a_datetime_column_are_named_once() {
    let (db, url) = fresh_database("units");
    let dir = tempfile::tempdir().unwrap();
    let input: String = (0..50)
        .map(|i| {
            format!(
                "{{\"id\":{i},\"at_s\":{},\"at_ms\":{},\"at_text\":\"2023-11-14T22:13:20Z\"}}\n",
                1_700_000_000 + i,
                1_700_000_000_000_i64 + i
            )
        })
        .collect();
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            r#"
name: units
sources:
  lines: {{type: file, path: in.jsonl}}
sinks:
  out:
    type: mysql
    inputs: [lines]
    url: {url}
    table: times
    columns:
      id: id
      at_s: {{field: at_s, type: datetime}}
      at_ms: {{field: at_ms, type: datetime}}
      at_text: {{field: at_text, type: datetime}}
    create_table:
      id: BIGINT NOT NULL
      at_s: DATETIME(3) NOT NULL
      at_ms: DATETIME(3) NOT NULL
      at_text: DATETIME(3) NOT NULL
"#
        ),
    );
    let out = run_to_end(dir.path(), &cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let said = "mysql: column `at_s` (field `at_s`): 1700000000 read as epoch milliseconds is 1970-01-20T16:13:20.000Z; if the field is in another unit (s), convert it in a `map` first: `at_s * 1000`";
    assert_eq!(stderr.matches(said).count(), 1, "{stderr}");
    assert_eq!(
        stderr.matches("read as epoch milliseconds").count(),
        1,
        "{stderr}"
    );
    // Written as read: the warning changes nothing.
    let rows = query(&[&format!(
        "SELECT CONCAT(COUNT(*), ' ', MIN(at_s), ' ', MIN(at_ms), ' ', MIN(at_text)) FROM {db}.times"
    )])
    .unwrap();
    assert_eq!(
        rows,
        "50 1970-01-20 16:13:20.000 2023-11-14 22:13:20.000 2023-11-14 22:13:20.000"
    );
}

/// A value over the server's max_allowed_packet made the server drop the connection:
/// the sink took it for an outage, sent the same rows again until the retry timeout,
/// and the pipeline stopped with "broken pipe". It is now that record's error, sized
/// against the limit the server reports: the largest value that fits goes in, one
/// byte more goes to the DLQ, and the rows around them go in.
#[test]
fn a_value_over_max_allowed_packet_goes_to_the_dlq() {
    let (db, url) = fresh_database("packet");
    let max: usize = query(&["SELECT @@max_allowed_packet"])
        .unwrap()
        .parse()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let line = |id: usize, len: usize| format!("{{\"id\":{id},\"t\":\"{}\"}}\n", "y".repeat(len));
    let input = [line(1, 5), line(2, max - 7), line(3, max - 8), line(4, 5)].concat();
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            r#"
name: packet
errors: {{tolerance: all, dlq: {{path: dlq.jsonl}}, retry_timeout: 10s}}
sources:
  lines: {{type: file, path: in.jsonl, max_line_bytes: 1GiB}}
sinks:
  out:
    type: mysql
    inputs: [lines]
    url: {url}
    table: big
    columns: [id, t]
    create_table: {{id: BIGINT NOT NULL, t: LONGTEXT}}
"#
        ),
    );
    let out = run_to_end(dir.path(), &cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = query(&[&format!(
        "SELECT GROUP_CONCAT(CONCAT(id, ':', LENGTH(t)) ORDER BY id) FROM {db}.big"
    )])
    .unwrap();
    assert_eq!(rows, format!("1:5,3:{},4:5", max - 8));
    let dlq = json_lines(&dir.path().join("dlq.jsonl"));
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0]["record"]["value"]["id"], 2);
    let why = dlq[0]["reason"].as_str().unwrap();
    assert!(
        why.contains(&format!(
            "column `t`: the value is {} bytes, more than the server's max_allowed_packet ({max}) allows",
            max - 7
        )),
        "{why}"
    );
}
