//! `mysql`: writes rows to MySQL / MariaDB (mysql_async), exactly once.
//!
//! The rows of a checkpoint and the checkpoint row (`connectd_checkpoints`: pipeline,
//! sink, checkpoint id, state) commit in one transaction, so after a crash the table
//! holds exactly the rows of the last committed checkpoint; `open` reads that checkpoint
//! back. Rows go in as prepared multi-row INSERTs (`mode: upsert` adds
//! `ON DUPLICATE KEY UPDATE` on the `key` columns). A lost connection, deadlock or lock
//! timeout fails the transaction: the rows since the last commit are kept and replayed
//! on a new connection (and a commit whose answer was lost is recognised by its
//! checkpoint row, not repeated). A row the server rejects (too long, wrong type, NULL
//! into NOT NULL) goes to the dead-letter queue with the server's message.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{Datelike, TimeZone, Timelike, Utc};
use connectd_sdk::config::{ConfigMap, Invalid};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::columns::{ColumnTypes, ColumnsOption, MissingFields};
use connectd_sdk::time::event_time_ms;
use connectd_sdk::{
    BadRecord, BuildContext, Checkpoint, Committed, ConnectorError, FieldPath, Record, Sink, Value,
};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Params, Pool, PoolConstraints, PoolOpts};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnKind {
    /// By the value's own type.
    Auto,
    /// Epoch ms or RFC 3339 → DATETIME(6) (UTC).
    Datetime,
    /// Any value as JSON text.
    Json,
}

#[derive(Debug, Clone)]
struct Column {
    name: String,
    field: FieldPath,
    kind: ColumnKind,
}

type Row = Vec<mysql_async::Value>;

pub struct MysqlSink {
    url: String,
    pool_size: usize,
    pool: Option<Pool>,
    conn: Option<Conn>,
    table: String,
    columns: Vec<Column>,
    missing: MissingFields,
    units: super::time_columns::UnitWarnings,
    /// The server's max_allowed_packet, read at open.
    packet: super::mysql_packet::PacketLimit,
    upsert: bool,
    key: Vec<String>,
    create_table: Option<Vec<(String, String)>>,
    batch_size: usize,
    pipeline: String,
    sink: String,
    /// Rows written since the last commit: replayed if the transaction is lost.
    buffer: Vec<Row>,
    tx_open: bool,
    stats: std::sync::Arc<connectd_sdk::stats::SinkStats>,
}

impl std::fmt::Debug for MysqlSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never shown.
        f.debug_struct("MysqlSink")
            .field("table", &self.table)
            .finish()
    }
}

fn valid_ident(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

fn quote_ident(s: &str) -> String {
    s.split('.')
        .map(|p| format!("`{p}`"))
        .collect::<Vec<_>>()
        .join(".")
}

/// Writes rows into a MySQL/MariaDB table, exactly once: each checkpoint's rows and
/// the checkpoint id in one transaction.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct MysqlOptions {
    /// `mysql://user:password@host:port/database`.
    pub url: String,
    /// The table (`table` or `database.table`).
    pub table: String,
    /// `insert` (plain INSERT) or `upsert` (INSERT ... ON DUPLICATE KEY UPDATE, needs `key`).
    #[serde(default)]
    pub mode: WriteMode,
    /// The columns of the table's primary or unique key (for `upsert`).
    #[serde(default)]
    #[schemars(schema_with = "connectd_sdk::config::scalar_text_list")]
    pub key: Vec<String>,
    pub columns: ColumnsOption,
    /// Create the table if it is missing: column name to SQL type.
    #[serde(default)]
    pub create_table: Option<ColumnTypes>,
    /// Rows per INSERT statement.
    #[serde(default = "default_batch_size")]
    pub batch_size: u64,
    /// Connections in the pool.
    #[serde(default = "default_pool_size")]
    pub pool_size: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    #[default]
    Insert,
    Upsert,
}

fn default_batch_size() -> u64 {
    1000
}

fn default_pool_size() -> u64 {
    2
}

pub fn build(cfg: &mut ConfigMap<'_>, ctx: &BuildContext) -> Result<Box<dyn Sink>, Invalid> {
    let o: MysqlOptions = cfg.typed().ok_or(Invalid)?;
    let url = o.url;
    if !url.is_empty() {
        if let Err(e) = Opts::from_url(&url) {
            // The error text can contain the URL: say only what kind of problem it is.
            let _ = e;
            cfg.error("url", "expected mysql://user:password@host:port/database");
        }
    }
    let table = o.table;
    if !table.is_empty() && !valid_ident(&table) {
        cfg.error(
            "table",
            "table names may use letters, digits and `_` (optionally `database.table`)",
        );
    }
    let upsert = o.mode == WriteMode::Upsert;
    let key = o.key;
    if upsert && key.is_empty() {
        cfg.error(
            "key",
            "`mode: upsert` needs `key`: the columns of the table's primary or unique key",
        );
    }
    let columns: Vec<Column> = super::columns::read(cfg, o.columns, &["auto", "datetime", "json"])
        .into_iter()
        .map(|c| Column {
            name: c.name,
            field: c.field,
            kind: match c.kind {
                Some("datetime") => ColumnKind::Datetime,
                Some("json") => ColumnKind::Json,
                _ => ColumnKind::Auto,
            },
        })
        .collect();
    for k in &key {
        if !columns.iter().any(|c| &c.name == k) {
            cfg.error("key", format!("key column `{k}` is not among `columns`"));
        }
    }
    let create_table = o.create_table.map(|t| t.0);
    if let Some(defs) = &create_table {
        for c in &columns {
            if !defs.iter().any(|(n, _)| n == &c.name) {
                cfg.error(
                    "create_table",
                    format!("no type given for column `{}`", c.name),
                );
            }
        }
    }
    let batch_size = o.batch_size.clamp(1, 10_000) as usize;
    let pool_size = o.pool_size.clamp(1, 64) as usize;
    cfg.finish()?;
    // The server allows at most 65 535 placeholders in one statement.
    let batch_size = batch_size.min(65_535 / columns.len().max(1));
    Ok(Box::new(MysqlSink {
        url,
        pool_size,
        pool: None,
        conn: None,
        table,
        missing: MissingFields::new(columns.len()),
        units: super::time_columns::UnitWarnings::new(columns.len()),
        packet: Default::default(),
        columns,
        upsert,
        key,
        create_table,
        batch_size,
        pipeline: ctx.pipeline.clone(),
        sink: ctx.component.clone(),
        buffer: Vec::new(),
        tx_open: false,
        stats: Default::default(),
    }))
}

/// How long a connection (TCP, TLS and the handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How a server error is to be treated.
enum Failure {
    /// This row is wrong: to the dead-letter queue.
    Row(String),
    /// Retry the transaction (connection lost, deadlock, lock timeout).
    Transient(String),
    /// Retrying cannot help (missing table, bad credentials, syntax).
    Permanent(String),
}

fn classify(e: &mysql_async::Error) -> Failure {
    match e {
        mysql_async::Error::Server(s) => {
            let text = format!("MySQL error {} ({}): {}", s.code, s.state, s.message);
            match s.code {
                // data too long, incorrect value, NULL into NOT NULL, out of range,
                // truncated, invalid JSON, duplicate key, foreign key
                1406 | 1366 | 1048 | 1264 | 1292 | 1265 | 3140 | 1062 | 1452 | 1411 | 4025 => {
                    Failure::Row(text)
                }
                // deadlock, lock wait timeout, server shutting down, connection killed
                1213 | 1205 | 1053 | 1927 | 2006 | 2013 | 1040 => Failure::Transient(text),
                1049 => Failure::Permanent(format!(
                    "{text} (create the database first, e.g. CREATE DATABASE ...)"
                )),
                _ => Failure::Permanent(text),
            }
        }
        mysql_async::Error::Io(e) => Failure::Transient(format!("connection: {e}")),
        mysql_async::Error::Driver(e) => Failure::Transient(format!("driver: {e}")),
        other => Failure::Permanent(other.to_string()),
    }
}

fn to_error(f: Failure, context: &str) -> ConnectorError {
    match f {
        Failure::Transient(m) => ConnectorError::transient(format!("mysql: {context}: {m}")),
        Failure::Permanent(m) | Failure::Row(m) => {
            ConnectorError::permanent(format!("mysql: {context}: {m}"))
        }
    }
}

fn mysql_value(v: &Value, kind: ColumnKind) -> Result<mysql_async::Value, String> {
    use mysql_async::Value as M;
    if v.is_null() {
        return Ok(M::NULL);
    }
    Ok(match kind {
        ColumnKind::Datetime => {
            let ms = event_time_ms(v)?;
            let t = Utc
                .timestamp_millis_opt(ms)
                .single()
                .ok_or_else(|| format!("{ms} is out of range for a DATETIME"))?;
            M::Date(
                u16::try_from(t.year())
                    .map_err(|_| format!("year {} is out of range for a DATETIME", t.year()))?,
                t.month() as u8,
                t.day() as u8,
                t.hour() as u8,
                t.minute() as u8,
                t.second() as u8,
                t.nanosecond() / 1000,
            )
        }
        ColumnKind::Json => M::Bytes(serde_json::to_vec(v).map_err(|e| e.to_string())?),
        ColumnKind::Auto => match v {
            Value::Null => M::NULL,
            Value::Bool(b) => M::Int(i64::from(*b)),
            Value::Int(i) => M::Int(*i),
            Value::Float(f) if f.is_finite() => M::Double(*f),
            Value::Float(f) => {
                return Err(format!(
                    "{f} cannot be stored (MySQL has no NaN or infinity)"
                ))
            }
            Value::Str(s) => M::Bytes(s.as_bytes().to_vec()),
            Value::List(_) | Value::Object(_) => {
                M::Bytes(serde_json::to_vec(v).map_err(|e| e.to_string())?)
            }
        },
    })
}

/// The bytes of the column values of `rows` as sent (text and blobs by length,
/// numbers and times by their binary size): what `connectd_sink_bytes_total` counts.
fn rows_bytes(rows: &[Row]) -> u64 {
    use mysql_async::Value as M;
    rows.iter()
        .flatten()
        .map(|v| match v {
            M::NULL => 0,
            M::Bytes(b) => b.len() as u64,
            M::Float(_) => 4,
            M::Date(..) | M::Time(..) => 12,
            M::Int(_) | M::UInt(_) | M::Double(_) => 8,
        })
        .sum()
}

impl MysqlSink {
    fn row(&self, r: &Record) -> Result<Row, String> {
        self.columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let v = r.value.get_path(&c.field).unwrap_or_else(|| {
                    self.missing.column("mysql", i, &c.name, &c.field, &r.value);
                    &Value::Null
                });
                if c.kind == ColumnKind::Datetime {
                    self.units.note("mysql", i, &c.name, &c.field, v);
                }
                mysql_value(v, c.kind)
                    .map_err(|e| format!("column `{}` (field `{}`): {e}", c.name, c.field))
            })
            .collect::<Result<Row, String>>()
            .and_then(
                |row| match self.packet.refuses(&row, |i| &self.columns[i].name) {
                    Some(why) => Err(why),
                    None => Ok(row),
                },
            )
    }

    fn insert_sql(&self, rows: usize) -> String {
        let cols: Vec<String> = self.columns.iter().map(|c| quote_ident(&c.name)).collect();
        let one = format!("({})", vec!["?"; cols.len()].join(","));
        let mut sql = format!(
            "INSERT INTO {} ({}) VALUES {}",
            quote_ident(&self.table),
            cols.join(","),
            vec![one; rows].join(",")
        );
        if self.upsert {
            let updates: Vec<String> = self
                .columns
                .iter()
                .filter(|c| !self.key.contains(&c.name))
                .map(|c| format!("{0}=VALUES({0})", quote_ident(&c.name)))
                .collect();
            let updates = if updates.is_empty() {
                let k = quote_ident(&self.key[0]);
                format!("{k}={k}")
            } else {
                updates.join(",")
            };
            sql.push_str(" ON DUPLICATE KEY UPDATE ");
            sql.push_str(&updates);
        }
        sql
    }

    async fn conn(&mut self) -> Result<&mut Conn, Failure> {
        if self.conn.is_none() {
            let pool = self
                .pool
                .as_ref()
                .ok_or_else(|| Failure::Permanent("used before open".into()))?;
            // A server that accepts the connection and never answers (overloaded, or not
            // a MySQL server at all) would hold the pipeline here for good.
            let conn = tokio::time::timeout(CONNECT_TIMEOUT, pool.get_conn())
                .await
                .map_err(|_| {
                    Failure::Transient(format!(
                        "connecting: no answer within {}s",
                        CONNECT_TIMEOUT.as_secs()
                    ))
                })?
                .map_err(|e| classify(&e))?;
            self.conn = Some(conn);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| Failure::Permanent("no connection".into()))
    }

    /// Forgets the connection after a failure: the server rolls its transaction back.
    fn lose_connection(&mut self) {
        self.conn = None;
        self.tx_open = false;
    }

    /// Runs a statement, forgetting the connection on transient failure.
    async fn exec(&mut self, sql: String, params: Params, context: &str) -> Result<(), Failure> {
        let conn = self.conn().await?;
        let result = match params {
            Params::Empty => conn.query_drop(sql).await,
            p => conn.exec_drop(sql, p).await,
        };
        result.map_err(|e| {
            let f = classify(&e);
            if let Failure::Transient(_) = f {
                tracing::warn!(sink = %self.sink, error = %e, "{context} failed; the transaction will be retried");
            }
            f
        })
        .inspect_err(|f| {
            if matches!(f, Failure::Transient(_)) {
                self.lose_connection();
            }
        })
    }

    /// Inserts rows: multi-row statements; a chunk the server rejects is retried row by
    /// row so only the bad rows are set aside. Returns the rows that went in.
    async fn insert(
        &mut self,
        rows: Vec<(Row, Option<&Record>)>,
        bad: &mut Vec<BadRecord>,
    ) -> Result<Vec<Row>, ConnectorError> {
        let mut accepted = Vec::with_capacity(rows.len());
        let mut rest = rows.into_iter().peekable();
        while rest.peek().is_some() {
            // Up to batch_size rows, in a statement the server's packet can carry.
            let budget = self.packet.statement_budget();
            let (mut chunk, mut bytes): (Vec<(Row, Option<&Record>)>, usize) = (Vec::new(), 0);
            while let Some((row, _)) = rest.peek() {
                let size = super::mysql_packet::row_bytes(row);
                if chunk.len() == self.batch_size || (!chunk.is_empty() && bytes + size > budget) {
                    break;
                }
                bytes += size;
                chunk.extend(rest.next());
            }
            let params: Vec<mysql_async::Value> =
                chunk.iter().flat_map(|(r, _)| r.iter().cloned()).collect();
            match self
                .exec(
                    self.insert_sql(chunk.len()),
                    Params::Positional(params),
                    "insert",
                )
                .await
            {
                Ok(()) => accepted.extend(chunk.into_iter().map(|(r, _)| r)),
                Err(Failure::Row(_)) => {
                    for (row, record) in chunk {
                        match self
                            .exec(
                                self.insert_sql(1),
                                Params::Positional(row.clone()),
                                "insert",
                            )
                            .await
                        {
                            Ok(()) => accepted.push(row),
                            Err(Failure::Row(why)) => {
                                let mut b = match record {
                                    Some(r) => BadRecord::record(
                                        r.clone(),
                                        format!(
                                            "mysql rejected the row for `{}`: {why}",
                                            self.table
                                        ),
                                    ),
                                    None => BadRecord::raw(format!("{row:?}"), "", why),
                                };
                                b.position = format!("table {}", self.table);
                                bad.push(b);
                            }
                            Err(f) => return Err(to_error(f, "insert")),
                        }
                    }
                }
                Err(f) => return Err(to_error(f, "insert")),
            }
        }
        Ok(accepted)
    }

    /// Opens a transaction; after a lost one, first replays the rows written since the
    /// last commit.
    async fn ensure_transaction(&mut self) -> Result<(), ConnectorError> {
        if self.tx_open {
            return Ok(());
        }
        self.exec(
            "START TRANSACTION".into(),
            Params::Empty,
            "start transaction",
        )
        .await
        .map_err(|f| to_error(f, "start transaction"))?;
        self.tx_open = true;
        if !self.buffer.is_empty() {
            let replay: Vec<(Row, Option<&Record>)> = std::mem::take(&mut self.buffer)
                .into_iter()
                .map(|r| (r, None))
                .collect();
            let n = replay.len();
            let mut ignored = Vec::new();
            let accepted = self.insert(replay, &mut ignored).await;
            match accepted {
                Ok(rows) => {
                    tracing::info!(sink = %self.sink, rows = n, "replayed the rows of the interrupted transaction");
                    self.buffer = rows;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn stored_checkpoint(&mut self) -> Result<Option<Committed>, ConnectorError> {
        let (pipeline, sink) = (self.pipeline.clone(), self.sink.clone());
        let conn = self.conn().await.map_err(|f| to_error(f, "connecting"))?;
        let row: Option<(u64, String)> = conn
            .exec_first("SELECT checkpoint_id, state FROM connectd_checkpoints WHERE pipeline = ? AND sink = ?", (pipeline, sink))
            .await
            .map_err(|e| to_error(classify(&e), "reading the checkpoint"))?;
        match row {
            None => Ok(None),
            Some((id, state)) => {
                let state = serde_json::from_str(&state).map_err(|e| {
                    ConnectorError::permanent("mysql: the stored checkpoint state is not JSON")
                        .with_source(e)
                })?;
                Ok(Some(Checkpoint { id, state }))
            }
        }
    }
}

#[async_trait]
impl Sink for MysqlSink {
    async fn open(&mut self) -> Result<Option<Committed>, ConnectorError> {
        let opts = Opts::from_url(&self.url)
            .map_err(|_| ConnectorError::permanent("mysql: invalid url"))?;
        let constraints = PoolConstraints::new(1, self.pool_size).unwrap_or_default();
        let opts = OptsBuilder::from_opts(opts)
            .pool_opts(PoolOpts::default().with_constraints(constraints))
            .wait_timeout(Some(28_800));
        self.pool = Some(Pool::new(opts));
        self.lose_connection();
        let checkpoints = "CREATE TABLE IF NOT EXISTS connectd_checkpoints (\
            pipeline VARCHAR(190) NOT NULL, sink VARCHAR(190) NOT NULL, checkpoint_id BIGINT UNSIGNED NOT NULL, \
            state LONGTEXT NOT NULL, committed_at DATETIME(6) NOT NULL, PRIMARY KEY (pipeline, sink)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
        self.exec(
            checkpoints.into(),
            Params::Empty,
            "create connectd_checkpoints",
        )
        .await
        .map_err(|f| to_error(f, "creating connectd_checkpoints"))?;
        if let Some(defs) = self.create_table.clone() {
            let mut cols: Vec<String> = defs
                .iter()
                .map(|(n, t)| format!("{} {t}", quote_ident(n)))
                .collect();
            if !self.key.is_empty() {
                cols.push(format!(
                    "PRIMARY KEY ({})",
                    self.key
                        .iter()
                        .map(|k| quote_ident(k))
                        .collect::<Vec<_>>()
                        .join(",")
                ));
            }
            // utf8mb4 whatever the server's default: MariaDB before 11.6 (and any
            // server started without a configuration) makes latin1 tables, which
            // reject 東京 or an emoji as an "incorrect string value".
            let ddl = format!(
                "CREATE TABLE IF NOT EXISTS {} ({}) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
                quote_ident(&self.table),
                cols.join(", ")
            );
            self.exec(ddl, Params::Empty, "create table")
                .await
                .map_err(|f| to_error(f, &format!("creating {}", self.table)))?;
        }
        let max: Option<u64> = self
            .conn()
            .await
            .map_err(|f| to_error(f, "reading max_allowed_packet"))?
            .query_first("SELECT @@max_allowed_packet")
            .await
            .map_err(|e| to_error(classify(&e), "reading max_allowed_packet"))?;
        if let Some(max) = max {
            self.packet.max = usize::try_from(max).unwrap_or(usize::MAX);
        }
        self.buffer.clear();
        self.stored_checkpoint().await
    }

    async fn write(
        &mut self,
        batch: &[Record],
        bad: &mut Vec<BadRecord>,
    ) -> Result<(), ConnectorError> {
        let mut rejected = Vec::new();
        let mut rows = Vec::with_capacity(batch.len());
        for r in batch {
            match self.row(r) {
                Ok(row) => rows.push((row, Some(r))),
                Err(why) => rejected.push(BadRecord::record(
                    r.clone(),
                    format!("mysql `{}`: {why}", self.table),
                )),
            }
        }
        self.ensure_transaction().await?;
        let accepted = self.insert(rows, &mut rejected).await?;
        self.buffer.extend(accepted);
        // Only now: a retried write must not report the same bad rows twice.
        bad.append(&mut rejected);
        Ok(())
    }

    async fn commit(&mut self, checkpoint: &Checkpoint) -> Result<(), ConnectorError> {
        if !self.tx_open {
            // A previous attempt may have committed before its answer was lost.
            if self
                .stored_checkpoint()
                .await?
                .is_some_and(|c| c.id >= checkpoint.id)
            {
                self.stats.written(rows_bytes(&self.buffer));
                self.buffer.clear();
                return Ok(());
            }
            self.ensure_transaction().await?;
        }
        let state = serde_json::to_string(&checkpoint.state).map_err(|e| {
            ConnectorError::permanent("mysql: cannot encode the checkpoint").with_source(e)
        })?;
        let sql = "INSERT INTO connectd_checkpoints (pipeline, sink, checkpoint_id, state, committed_at) VALUES (?, ?, ?, ?, NOW(6)) \
                   ON DUPLICATE KEY UPDATE checkpoint_id = VALUES(checkpoint_id), state = VALUES(state), committed_at = VALUES(committed_at)";
        let params = Params::Positional(vec![
            self.pipeline.clone().into(),
            self.sink.clone().into(),
            checkpoint.id.into(),
            state.into(),
        ]);
        self.exec(sql.into(), params, "checkpoint")
            .await
            .map_err(|f| to_error(f, "writing the checkpoint"))?;
        self.exec("COMMIT".into(), Params::Empty, "commit")
            .await
            .map_err(|f| to_error(f, "commit"))?;
        self.tx_open = false;
        self.stats.written(rows_bytes(&self.buffer));
        self.buffer.clear();
        Ok(())
    }

    fn stats(&self) -> Option<std::sync::Arc<connectd_sdk::stats::SinkStats>> {
        Some(self.stats.clone())
    }

    /// Deletes this sink's checkpoint row (none yet, or no table yet: nothing to do).
    async fn reset(&mut self) -> Result<(), ConnectorError> {
        let opts = Opts::from_url(&self.url)
            .map_err(|_| ConnectorError::permanent("mysql: invalid url"))?;
        let mut conn = Conn::new(opts)
            .await
            .map_err(|e| to_error(classify(&e), "connecting to reset the checkpoint"))?;
        let deleted = conn
            .exec_drop(
                "DELETE FROM connectd_checkpoints WHERE pipeline = ? AND sink = ?",
                (self.pipeline.as_str(), self.sink.as_str()),
            )
            .await;
        let _ = conn.disconnect().await;
        match deleted {
            Ok(()) => Ok(()),
            // ER_NO_SUCH_TABLE: this sink never ran against this database.
            Err(mysql_async::Error::Server(e)) if e.code == 1146 => Ok(()),
            Err(e) => Err(to_error(classify(&e), "deleting the checkpoint row")),
        }
    }

    async fn close(&mut self) -> Result<(), ConnectorError> {
        self.conn = None;
        if let Some(pool) = self.pool.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), pool.disconnect()).await;
        }
        Ok(())
    }
}
