//! The `mongodb` sink with transactions, on the emulator (or `MONGODB_URL`): documents
//! the server rejects inside a transaction go to the DLQ, and the rest commit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use mongodb::bson::doc;

/// `mode: insert` with transactions: one id already in the collection (written by
/// someone else) and one id twice in the input. Inside a transaction neither can be a
/// replay of the sink's own write, so both are conflicts: the two records go to the
/// DLQ with the server's duplicate-key error, every other record commits once, and the
/// document that was there is left as it was.
#[test]
fn documents_rejected_inside_a_transaction_go_to_the_dlq_and_the_rest_commit() {
    let database = format!("rejections_{}", std::process::id());
    let url = common::mongo::url();
    common::mysql::rt().block_on(async {
        let client = mongodb::Client::with_uri_str(&url).await.unwrap();
        let coll = client
            .database(&database)
            .collection::<mongodb::bson::Document>("quotes");
        coll.drop().await.unwrap();
        coll.insert_one(doc! {"_id": "q57", "id": "q57", "origin": "already there"})
            .await
            .unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::new();
    for i in 0..300 {
        input.push_str(&format!("{{\"id\":\"q{i}\",\"n\":{i}}}\n"));
    }
    input.push_str("{\"id\":\"q123\",\"n\":-1}\n");
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            r#"
name: rejections
checkpoint: {{interval: 50ms}}
errors:
  tolerance: all
  dlq: {{path: dlq.jsonl}}
sources:
  lines: {{type: file, path: in.jsonl}}
sinks:
  quotes:
    type: mongodb
    inputs: [lines]
    uri: {url}
    database: {database}
    collection: quotes
    id: [id]
    mode: insert
    transactions: "on"
    batch_size: 40
"#
        ),
    );
    let out = run_to_end(dir.path(), &cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");

    let docs = common::mongo::collection(&database, "quotes");
    // Expected from the input: q0..q299 once each; q57 the document that was there.
    assert_eq!(docs.len(), 300, "{:?}", docs.keys().collect::<Vec<_>>());
    for i in 0..300 {
        let d = &docs[&format!("q{i}")];
        if i == 57 {
            assert_eq!(d["origin"], "already there", "{d}");
            assert!(d.get("n").is_none(), "{d}");
        } else {
            assert_eq!(d["n"].as_i64(), Some(i), "{d}");
        }
    }
    let dlq: Vec<serde_json::Value> = read(dir.path().join("dlq.jsonl"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dlq.len(), 2, "{dlq:?}");
    let text = serde_json::to_string(&dlq).unwrap();
    assert!(
        text.contains("q57") && text.contains("\"n\":-1") && text.contains("11000"),
        "both conflicts, with the server's error: {text}"
    );
    common::mysql::rt().block_on(async {
        let client = mongodb::Client::with_uri_str(&url).await.unwrap();
        client.database(&database).drop().await.unwrap();
    });
}

/// MongoDB takes no document over 16 MiB of BSON: such a document failed its whole
/// batch (or the epoch's transaction) at every retry, until the pipeline stopped. It is
/// now that record's error, measured before it is sent; the documents around it go in.
#[test]
fn a_document_over_16_mib_goes_to_the_dlq() {
    let database = format!("big_docs_{}", std::process::id());
    let url = common::mongo::url();
    let dir = tempfile::tempdir().unwrap();
    // 16 MiB of text alone is over the limit once the document's framing is added.
    let line =
        |id: usize, len: usize| format!("{{\"id\":\"d{id}\",\"t\":\"{}\"}}\n", "y".repeat(len));
    let input = [line(1, 5), line(2, 16 << 20), line(3, 15 << 20), line(4, 5)].concat();
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            r#"
name: big_docs
errors: {{tolerance: all, dlq: {{path: dlq.jsonl}}, retry_timeout: 10s}}
sources:
  lines: {{type: file, path: in.jsonl, max_line_bytes: 64MiB}}
sinks:
  docs: {{type: mongodb, inputs: [lines], uri: {url}, database: {database}, collection: docs, id: [id]}}
"#
        ),
    );
    let out = run_to_end(dir.path(), &cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = common::mongo::collection(&database, "docs");
    let mut ids: Vec<&String> = docs.keys().collect();
    ids.sort();
    assert_eq!(ids, ["d1", "d3", "d4"]);
    assert_eq!(docs["d3"]["t"].as_str().map(str::len), Some(15 << 20));
    let dlq = json_lines(&dir.path().join("dlq.jsonl"));
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0]["record"]["value"]["id"], "d2");
    let why = dlq[0]["reason"].as_str().unwrap();
    assert!(
        why.contains("bytes of BSON, over MongoDB's limit of 16777216 bytes"),
        "{why}"
    );
}
