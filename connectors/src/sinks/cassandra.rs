//! `cassandra`: writes rows to Apache Cassandra / ScyllaDB (scylla driver).
//!
//! Writes are idempotent upserts keyed by the table's primary key (a CQL INSERT
//! overwrites), sent as prepared statements with bounded concurrency across partitions
//! and in record order within one (the last write to a key wins). At a checkpoint,
//! once every write of it is acknowledged, the checkpoint row goes to
//! `connectd_checkpoints` in the same keyspace. Writes cannot be taken back, so the
//! runtime hands the sink an epoch's rows only once its checkpoint is complete (from
//! the write-ahead log; see `Sink::writes_at_commit`): an epoch given up after a crash
//! never reaches the table, and one interrupted mid-commit is written again, its rows
//! overwriting themselves. Values are converted to each column's CQL type as the
//! prepared statement reports it (timestamps, UUIDs, decimals, dates, collections).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use connectd_sdk::config::{ConfigMap, Invalid};
use connectd_sdk::{
    BadRecord, BuildContext, Checkpoint, Committed, ConnectorError, Record, Sink, Value,
};
use futures::stream::{self, StreamExt};
use schemars::JsonSchema;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::ExecutionError;
use scylla::frame::response::result::{ColumnType, NativeType};
use scylla::frame::types::Consistency;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlValue;
use serde::{Deserialize, Serialize};

use super::columns::{self, ColumnSpec, ColumnTypes, ColumnsOption};
use super::cql_value::convert;

#[derive(Debug, Clone)]
struct Schema {
    replication: String,
    columns: Vec<(String, String)>,
    primary_key: String,
}

pub struct CassandraSink {
    contact_points: Vec<String>,
    credentials: Option<(String, String)>,
    keyspace: String,
    table: String,
    columns: Vec<ColumnSpec>,
    missing: columns::MissingFields,
    units: super::time_columns::UnitWarnings,
    consistency: Consistency,
    concurrency: usize,
    /// Positions of the partition key among the INSERT's bound values.
    partition_key: Vec<usize>,
    schema: Option<Schema>,
    pipeline: String,
    sink: String,
    session: Option<Arc<Session>>,
    insert: Option<PreparedStatement>,
    /// CQL type of each column, from the prepared statement.
    types: Vec<ColumnType<'static>>,
    stats: Arc<connectd_sdk::stats::SinkStats>,
}

impl std::fmt::Debug for CassandraSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CassandraSink")
            .field("keyspace", &self.keyspace)
            .field("table", &self.table)
            .finish()
    }
}

fn ident_ok(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Writes rows into a Cassandra table; an epoch is written only once its checkpoint is
/// complete (from the write-ahead log), and rows are idempotent upserts by primary key.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct CassandraOptions {
    /// `host:port` of the nodes to contact first.
    #[serde(default = "default_contact_points")]
    #[schemars(schema_with = "connectd_sdk::config::scalar_text_list")]
    pub contact_points: Vec<String>,
    /// The keyspace.
    pub keyspace: String,
    /// The table.
    pub table: String,
    pub columns: ColumnsOption,
    /// The consistency level of the writes.
    #[serde(default)]
    pub consistency: ConsistencyWord,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// Writes in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: u64,
    /// Create the keyspace and table if they are missing.
    #[serde(default)]
    pub create_schema: Option<CreateSchema>,
}

/// What `create_schema` creates.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSchema {
    /// The keyspace's replication, in CQL.
    #[serde(default = "default_replication")]
    pub replication: String,
    /// The table's PRIMARY KEY clause, e.g. `(ticker, id)`.
    pub primary_key: String,
    /// The table's columns with their CQL types.
    pub columns: ColumnTypes,
}

#[derive(Debug, Default, Clone, Copy, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsistencyWord {
    Any,
    One,
    Two,
    Three,
    Quorum,
    All,
    #[default]
    LocalQuorum,
    EachQuorum,
    LocalOne,
}

fn default_contact_points() -> Vec<String> {
    vec!["127.0.0.1:9042".into()]
}

fn default_concurrency() -> u64 {
    64
}

fn default_replication() -> String {
    "{'class': 'SimpleStrategy', 'replication_factor': 1}".into()
}

pub fn build(cfg: &mut ConfigMap<'_>, ctx: &BuildContext) -> Result<Box<dyn Sink>, Invalid> {
    let o: CassandraOptions = cfg.typed().ok_or(Invalid)?;
    let contact_points = o.contact_points;
    let keyspace = o.keyspace;
    let table = o.table;
    for (key, v) in [("keyspace", &keyspace), ("table", &table)] {
        if !v.is_empty() && !ident_ok(v) {
            cfg.error(key, "expected a CQL name: letters, digits and `_`");
        }
    }
    let columns = columns::read(cfg, o.columns, &[]);
    let consistency = match o.consistency {
        ConsistencyWord::Any => Consistency::Any,
        ConsistencyWord::One => Consistency::One,
        ConsistencyWord::Two => Consistency::Two,
        ConsistencyWord::Three => Consistency::Three,
        ConsistencyWord::Quorum => Consistency::Quorum,
        ConsistencyWord::All => Consistency::All,
        ConsistencyWord::EachQuorum => Consistency::EachQuorum,
        ConsistencyWord::LocalOne => Consistency::LocalOne,
        ConsistencyWord::LocalQuorum => Consistency::LocalQuorum,
    };
    let credentials = match (o.username, o.password) {
        (Some(u), Some(p)) => Some((u, p)),
        (None, None) => None,
        _ => {
            cfg.error("username", "give both username and password, or neither");
            None
        }
    };
    let concurrency = o.concurrency.clamp(1, 4096) as usize;
    let schema = o.create_schema.and_then(|s| {
        if s.columns.0.is_empty() {
            cfg.error(
                "create_schema.columns",
                "expected the table's columns with their CQL types",
            );
            return None;
        }
        Some(Schema {
            replication: s.replication,
            columns: s.columns.0,
            primary_key: s.primary_key,
        })
    });
    cfg.finish()?;
    Ok(Box::new(CassandraSink {
        contact_points,
        credentials,
        keyspace,
        table,
        missing: columns::MissingFields::new(columns.len()),
        units: super::time_columns::UnitWarnings::new(columns.len()),
        columns,
        consistency,
        concurrency,
        partition_key: Vec::new(),
        schema,
        pipeline: ctx.pipeline.clone(),
        sink: ctx.component.clone(),
        session: None,
        insert: None,
        types: Vec::new(),
        stats: Default::default(),
    }))
}

fn classify(e: &ExecutionError, context: &str) -> ConnectorError {
    use scylla::errors::{DbError, RequestAttemptError};
    let text = format!("cassandra: {context}: {e}");
    let permanent = match e {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, _)) => matches!(
            db,
            DbError::SyntaxError
                | DbError::Invalid
                | DbError::AlreadyExists { .. }
                | DbError::Unauthorized
                | DbError::AuthenticationError
                | DbError::ConfigError
        ),
        ExecutionError::BadQuery(_) | ExecutionError::PrepareError(_) => true,
        _ => false,
    };
    if permanent {
        ConnectorError::permanent(text)
    } else {
        ConnectorError::transient(text)
    }
}

fn already_exists(e: &ExecutionError) -> bool {
    use scylla::errors::{DbError, RequestAttemptError};
    matches!(
        e,
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::AlreadyExists { .. },
            _
        ))
    ) || e.to_string().contains("already exist")
}

impl CassandraSink {
    fn session(&self) -> Result<Arc<Session>, ConnectorError> {
        self.session
            .clone()
            .ok_or_else(|| ConnectorError::permanent("cassandra: used before open"))
    }

    async fn ddl(&self, session: &Session, cql: String) -> Result<(), ConnectorError> {
        match session.query_unpaged(cql.as_str(), ()).await {
            Ok(_) => Ok(()),
            Err(e) if already_exists(&e) => Ok(()),
            Err(e) => Err(classify(&e, &format!("running `{cql}`"))),
        }
    }

    async fn connect(&self) -> Result<Session, ConnectorError> {
        let mut builder = SessionBuilder::new()
            .known_nodes(&self.contact_points)
            .connection_timeout(Duration::from_secs(10))
            // Emulators and single nodes report no peers to agree with; DDL waits are
            // done explicitly where needed.
            .auto_await_schema_agreement(false);
        if let Some((u, p)) = &self.credentials {
            builder = builder.user(u, p);
        }
        builder.build().await.map_err(|e| {
            ConnectorError::transient(format!(
                "cassandra: cannot connect to {}: {e}",
                self.contact_points.join(", ")
            ))
        })
    }

    fn row(&self, r: &Record) -> Result<Vec<Option<CqlValue>>, String> {
        self.columns
            .iter()
            .zip(&self.types)
            .enumerate()
            .map(|(i, (c, t))| {
                let v = r.value.get_path(&c.field).unwrap_or_else(|| {
                    self.missing
                        .column("cassandra", i, &c.name, &c.field, &r.value);
                    &Value::Null
                });
                if matches!(t, ColumnType::Native(NativeType::Timestamp)) {
                    self.units.note("cassandra", i, &c.name, &c.field, v);
                }
                convert(v, t).map_err(|e| format!("column `{}` (field `{}`): {e}", c.name, c.field))
            })
            .collect()
    }
}

/// A row's bound values.
type Row = Vec<Option<CqlValue>>;

/// A value's size as bound in a statement (text and blobs by length, the rest by
/// their fixed binary size): what `connectd_sink_bytes_total` counts.
fn cql_bytes(v: &CqlValue) -> u64 {
    match v {
        CqlValue::Text(s) | CqlValue::Ascii(s) => s.len() as u64,
        CqlValue::Blob(b) => b.len() as u64,
        CqlValue::Boolean(_) | CqlValue::TinyInt(_) => 1,
        CqlValue::SmallInt(_) => 2,
        CqlValue::Int(_) | CqlValue::Float(_) | CqlValue::Date(_) => 4,
        CqlValue::Uuid(_) | CqlValue::Timeuuid(_) => 16,
        CqlValue::List(items) | CqlValue::Set(items) => items.iter().map(cql_bytes).sum(),
        CqlValue::Map(entries) => entries
            .iter()
            .map(|(k, v)| cql_bytes(k) + cql_bytes(v))
            .sum(),
        _ => 8,
    }
}

/// Splits rows into chains by partition key, each in record order, chains in order of
/// first appearance. Without a known partition key, one chain: in order, one at a time.
fn by_partition(rows: Vec<(Row, usize)>, key: &[usize]) -> Vec<Vec<(Row, usize)>> {
    let mut chains: Vec<Vec<(Row, usize)>> = Vec::new();
    // CqlValue has no Hash: its debug form identifies a key's values.
    let mut index: std::collections::HashMap<String, usize> = Default::default();
    for (row, i) in rows {
        let id = format!("{:?}", key.iter().map(|k| row.get(*k)).collect::<Vec<_>>());
        let at = *index.entry(id).or_insert_with(|| {
            chains.push(Vec::new());
            chains.len() - 1
        });
        chains[at].push((row, i));
    }
    chains
}

#[async_trait]
impl Sink for CassandraSink {
    /// Upserts cannot be taken back: an epoch's rows are written once it is complete.
    fn writes_at_commit(&self) -> bool {
        true
    }

    /// Deletes this sink's checkpoint row.
    async fn reset(&mut self) -> Result<(), ConnectorError> {
        let session = self.connect().await?;
        session
            .query_unpaged(
                format!(
                    "DELETE FROM {}.connectd_checkpoints WHERE pipeline = ? AND sink = ?",
                    self.keyspace
                )
                .as_str(),
                (self.pipeline.as_str(), self.sink.as_str()),
            )
            .await
            .map(|_| ())
            .map_err(|e| classify(&e, "deleting the checkpoint"))
    }

    async fn open(&mut self) -> Result<Option<Committed>, ConnectorError> {
        let session = self.connect().await?;
        if let Some(schema) = self.schema.clone() {
            self.ddl(
                &session,
                format!(
                    "CREATE KEYSPACE IF NOT EXISTS {} WITH replication = {}",
                    self.keyspace, schema.replication
                ),
            )
            .await?;
            let cols: Vec<String> = schema
                .columns
                .iter()
                .map(|(n, t)| format!("{n} {t}"))
                .collect();
            self.ddl(
                &session,
                format!(
                    "CREATE TABLE IF NOT EXISTS {}.{} ({}, PRIMARY KEY ({}))",
                    self.keyspace,
                    self.table,
                    cols.join(", "),
                    schema.primary_key
                ),
            )
            .await?;
        }
        self.ddl(
            &session,
            format!(
                "CREATE TABLE IF NOT EXISTS {}.connectd_checkpoints (pipeline text, sink text, checkpoint_id bigint, state text, PRIMARY KEY ((pipeline, sink)))",
                self.keyspace
            ),
        )
        .await?;
        let names: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
        let cql = format!(
            "INSERT INTO {}.{} ({}) VALUES ({})",
            self.keyspace,
            self.table,
            names.join(", "),
            vec!["?"; names.len()].join(", ")
        );
        let mut insert = session.prepare(cql.as_str()).await.map_err(|e| {
            ConnectorError::permanent(format!("cassandra: cannot prepare `{cql}`: {e}"))
        })?;
        insert.set_consistency(self.consistency);
        insert.set_is_idempotent(true);
        self.partition_key = insert
            .get_variable_pk_indexes()
            .iter()
            .map(|k| usize::from(k.index))
            .collect();
        self.types = insert
            .get_variable_col_specs()
            .iter()
            .map(|s| s.typ().clone().into_owned())
            .collect();
        self.insert = Some(insert);
        let rows = session
            .query_unpaged(
                format!("SELECT checkpoint_id, state FROM {}.connectd_checkpoints WHERE pipeline = ? AND sink = ?", self.keyspace).as_str(),
                (self.pipeline.as_str(), self.sink.as_str()),
            )
            .await
            .map_err(|e| classify(&e, "reading the checkpoint"))?;
        let committed = match rows.into_rows_result() {
            Ok(rows) => match rows.maybe_first_row::<(i64, String)>() {
                Ok(Some((id, state))) => Some(Checkpoint {
                    id: id as u64,
                    state: serde_json::from_str(&state).map_err(|e| {
                        ConnectorError::permanent(
                            "cassandra: the stored checkpoint state is not JSON",
                        )
                        .with_source(e)
                    })?,
                }),
                Ok(None) => None,
                Err(e) => {
                    return Err(ConnectorError::permanent(format!(
                        "cassandra: unreadable checkpoint row: {e}"
                    )))
                }
            },
            Err(_) => None,
        };
        self.session = Some(Arc::new(session));
        Ok(committed)
    }

    async fn write(
        &mut self,
        batch: &[Record],
        bad: &mut Vec<BadRecord>,
    ) -> Result<(), ConnectorError> {
        let session = self.session()?;
        let insert = self
            .insert
            .clone()
            .ok_or_else(|| ConnectorError::permanent("cassandra: used before open"))?;
        let mut rows = Vec::with_capacity(batch.len());
        let mut rejected = Vec::new();
        let mut sizes = vec![0u64; batch.len()];
        for (i, r) in batch.iter().enumerate() {
            match self.row(r) {
                Ok(row) => {
                    sizes[i] = row.iter().flatten().map(cql_bytes).sum();
                    rows.push((row, i));
                }
                Err(why) => rejected.push(BadRecord::record(
                    r.clone(),
                    format!("cassandra `{}.{}`: {why}", self.keyspace, self.table),
                )),
            }
        }
        // Writes to one partition go one after another, in record order (so the last
        // write to a key wins, as it would have written alone); partitions in parallel.
        let results: Vec<_> = stream::iter(by_partition(rows, &self.partition_key))
            .map(|chain: Vec<(Row, usize)>| {
                let (session, insert) = (session.clone(), insert.clone());
                async move {
                    let mut done = Vec::with_capacity(chain.len());
                    for (row, i) in chain {
                        done.push((session.execute_unpaged(&insert, row).await.map(|_| ()), i));
                    }
                    done
                }
            })
            .buffer_unordered(self.concurrency)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .flatten()
            .collect();
        let mut written = 0;
        for (result, i) in results {
            let r = &batch[i];
            if result.is_ok() {
                written += sizes[i];
            }
            if let Err(e) = result {
                let err = classify(&e, "insert");
                if err.is_transient() {
                    // Upserts are idempotent: the whole batch is simply written again.
                    return Err(err);
                }
                rejected.push(BadRecord::record(r.clone(), err.message));
            }
        }
        // Written only when the epoch's checkpoint is complete (from the WAL), and
        // upserts are idempotent: what was acknowledged stays.
        self.stats.written(written);
        bad.append(&mut rejected);
        Ok(())
    }

    fn stats(&self) -> Option<Arc<connectd_sdk::stats::SinkStats>> {
        Some(self.stats.clone())
    }

    async fn commit(&mut self, checkpoint: &Checkpoint) -> Result<(), ConnectorError> {
        let session = self.session()?;
        let state = serde_json::to_string(&checkpoint.state).map_err(|e| {
            ConnectorError::permanent("cassandra: cannot encode the checkpoint").with_source(e)
        })?;
        let mut stmt = scylla::statement::Statement::new(format!(
            "INSERT INTO {}.connectd_checkpoints (pipeline, sink, checkpoint_id, state) VALUES (?, ?, ?, ?)",
            self.keyspace
        ));
        stmt.set_consistency(self.consistency);
        session
            .query_unpaged(
                stmt,
                (
                    self.pipeline.as_str(),
                    self.sink.as_str(),
                    checkpoint.id as i64,
                    state,
                ),
            )
            .await
            .map_err(|e| classify(&e, "writing the checkpoint"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_to_one_partition_stay_in_record_order() {
        let row = |k: i64, v: i64| vec![Some(CqlValue::BigInt(k)), Some(CqlValue::BigInt(v))];
        let rows: Vec<(Row, usize)> = (0..30).map(|i| (row(i % 3, i), i as usize)).collect();
        let chains = by_partition(rows.clone(), &[0]);
        assert_eq!(chains.len(), 3);
        for (k, chain) in chains.iter().enumerate() {
            let order: Vec<usize> = chain.iter().map(|(_, i)| *i).collect();
            let want: Vec<usize> = (0..30).filter(|i| i % 3 == k).collect();
            assert_eq!(order, want, "partition {k}");
        }
        // No known partition key: one chain, the whole batch in order.
        let one = by_partition(rows, &[]);
        assert_eq!(one.len(), 1);
        assert!(one[0].iter().map(|(_, i)| *i).eq(0..30));
    }
}
