//! The shipped trading example (trades → Cassandra for OLTP, per-minute sector volume →
//! MySQL for OLAP) fills both tables; the aggregate is recomputed here from the
//! Cassandra rows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::cql_server;
use common::mysql::*;
use common::*;

#[test]
fn trading_oltp_olap_example_fills_both_tables() {
    use std::collections::BTreeMap;
    let addr = cql_server::start();
    let (db, url) = fresh_database("trading");
    let dir = tempfile::tempdir().unwrap();
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/pipelines/trading-oltp-olap.yaml");
    let out = connectd()
        .current_dir(dir.path())
        .env("TRADES_RATE", "0")
        .env("TRADES_COUNT", "30000")
        .env("TRADES_START", "2024-01-01T00:00:00Z")
        .env("TRADES_STEP", "10ms")
        .env("CASSANDRA_CONTACT_POINT", &addr)
        .env("TRADING_MYSQL_URL", &url)
        .args(["--admin-addr", "off", "--config"])
        .arg(&example)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = rt().block_on(async {
        use futures_util::StreamExt;
        let session = common::cql_server::session(&addr).await;
        let pager = session
            .query_iter(
                "SELECT created_at, sector, volume FROM trading.real_time_data",
                (),
            )
            .await
            .unwrap();
        let mut rows = pager
            .rows_stream::<(scylla::value::CqlTimestamp, String, i64)>()
            .unwrap();
        let mut out = Vec::new();
        while let Some(r) = rows.next().await {
            out.push(r.unwrap());
        }
        out
    });
    assert_eq!(raw.len(), 30_000, "every trade is in Cassandra once");
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for (t, sector, volume) in &raw {
        let minute = t.0.div_euclid(60_000) * 60_000;
        *expected.entry(format!("{sector}_{minute}")).or_default() += volume;
    }
    let got = query(&[&format!("SELECT GROUP_CONCAT(CONCAT(processing_id, '=', total_volume) ORDER BY processing_id SEPARATOR ',') FROM {db}.aggregated_data")]).unwrap();
    let want: Vec<String> = expected.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut got_sorted: Vec<&str> = got.split(',').collect();
    got_sorted.sort();
    assert_eq!(
        got_sorted,
        want.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(want.len(), 5 * 5, "5 minutes × 5 sectors");
    query(&[&format!("DROP DATABASE {db}")]);
}
