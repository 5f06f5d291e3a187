//! Access to the test MariaDB/MySQL server (`MYSQL_URL`, default the one
//! `scripts/mariadb.sh` starts), with a fresh database per test.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mysql_async::prelude::Queryable;

pub fn server_url() -> String {
    std::env::var("MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs statements against the server (no database selected); returns the first
/// column of the first row of the last one, as text.
pub fn query(sql: &[&str]) -> Option<String> {
    rt().block_on(async {
        let mut conn = mysql_async::Conn::from_url(server_url()).await.unwrap_or_else(|e| {
            panic!("cannot reach the test MySQL server at {} (start it with scripts/mariadb.sh start): {e}", server_url())
        });
        let mut last = None;
        for s in sql {
            let row: Option<mysql_async::Row> = conn.query_first(*s).await.unwrap_or_else(|e| panic!("{s}: {e}"));
            last = row.and_then(|r| r.get_opt::<Option<String>, _>(0).and_then(Result::ok).flatten());
        }
        conn.disconnect().await.unwrap();
        last
    })
}

/// Creates a fresh database and returns (name, URL with it selected).
pub fn fresh_database(prefix: &str) -> (String, String) {
    let name = format!("{prefix}_{}_{}", std::process::id(), rand::random::<u32>());
    query(&[
        &format!("DROP DATABASE IF EXISTS {name}"),
        &format!("CREATE DATABASE {name}"),
    ]);
    let url = format!("{}/{name}", server_url().trim_end_matches('/'));
    (name, url)
}
