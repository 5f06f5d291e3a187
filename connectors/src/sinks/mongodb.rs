//! `mongodb`: writes documents to MongoDB, exactly once.
//!
//! Each record's value becomes a document whose `_id` comes from the `id` field(s), so a
//! write is idempotent: `mode: upsert` replaces the document with that `_id`,
//! `mode: insert` inserts it and treats "duplicate key" on a replay as already written.
//! A batch is one `update` (or `insert`) command: one round trip. When the server
//! supports transactions (replica set or sharded cluster; `transactions: auto`), the
//! documents of a checkpoint and the checkpoint document commit in one transaction.
//! The documents go into it at pre-commit, so a document the server rejects (in insert
//! mode also a duplicate `_id`: inside a transaction it is a conflict, never a replay)
//! reaches the dead-letter queue before the checkpoint completes; since a real server
//! aborts a transaction at a write error, the transaction is started again without
//! the rejected documents. Otherwise the runtime hands the sink an epoch's documents
//! only once its checkpoint is complete (`Sink::writes_at_commit`), and the checkpoint document is written once
//! every write of it is acknowledged: an epoch given up after a crash never reaches
//! the collection, one interrupted mid-commit is rewritten by `_id`.

use std::time::Duration;

use async_trait::async_trait;
use connectd_sdk::config::{ConfigMap, Invalid};
use connectd_sdk::{
    BadRecord, BuildContext, Checkpoint, Committed, ConnectorError, FieldPath, Record, Sink, Value,
};
use mongodb::bson::{doc, Bson, Document};
use mongodb::{Client, ClientSession, Database};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transactions {
    Auto,
    On,
    Off,
}

pub struct MongoSink {
    uri: String,
    database: String,
    collection: String,
    id: Vec<FieldPath>,
    upsert: bool,
    transactions: Transactions,
    batch_size: usize,
    pipeline: String,
    sink: String,
    db: Option<Database>,
    client: Option<Client>,
    use_transactions: bool,
    /// A commit of this checkpoint was tried and failed: before trying again, the
    /// checkpoint document shows whether it went through after all.
    attempted: Option<u64>,
    /// With transactions: the documents since the last commit, written at pre-commit.
    pending: Vec<(Document, Record)>,
    /// With transactions: the open transaction holding the pending documents, made by
    /// `pre_commit` of this checkpoint; `commit` adds the checkpoint document and commits.
    prepared: Option<Prepared>,
    stats: std::sync::Arc<connectd_sdk::stats::SinkStats>,
}

/// An open transaction with an epoch's documents in it.
struct Prepared {
    checkpoint: u64,
    session: ClientSession,
    /// BSON bytes of the documents in it.
    bytes: u64,
}

/// A document's size in BSON, as sent: what `connectd_sink_bytes_total` counts.
fn bson_bytes(d: &Document) -> u64 {
    let mut buf = Vec::new();
    d.to_writer(&mut buf).map_or(0, |()| buf.len() as u64)
}

/// MongoDB's largest document (`maxBsonObjectSize`, the same on every server since 1.8).
/// A larger one fails its whole batch, or the epoch's transaction, at every retry.
const MAX_DOCUMENT_BYTES: u64 = 16 * 1024 * 1024;

/// At least the BSON size of `v` as an element named by `key_len` bytes: the type byte,
/// the name and its NUL, the value. Cheap, so only documents that may be too large are
/// encoded to be measured.
fn bson_upper_bound(v: &Value, key_len: usize) -> usize {
    2 + key_len
        + match v {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Int(_) | Value::Float(_) => 8,
            Value::Str(s) => 5 + s.len(),
            // An array's element names are its indexes, up to 20 digits.
            Value::List(items) => 5 + items.iter().map(|i| bson_upper_bound(i, 20)).sum::<usize>(),
            Value::Object(o) => {
                5 + o
                    .iter()
                    .map(|(k, v)| bson_upper_bound(v, k.len()))
                    .sum::<usize>()
            }
        }
}

impl std::fmt::Debug for MongoSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URI may hold a password: never shown.
        f.debug_struct("MongoSink")
            .field("database", &self.database)
            .field("collection", &self.collection)
            .finish()
    }
}

/// Writes documents into a MongoDB collection, exactly once: by `_id` made from the
/// record (upserts), inside transactions where the server has them.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct MongoOptions {
    /// `mongodb://...` or `mongodb+srv://...`.
    pub uri: String,
    pub database: String,
    pub collection: String,
    /// The field(s) that make the document's `_id`.
    #[serde(default)]
    #[schemars(schema_with = "connectd_sdk::config::scalar_text_list")]
    pub id: Vec<String>,
    /// `upsert` (replace by `_id`, needs `id`) or `insert`.
    #[serde(default)]
    pub mode: MongoMode,
    /// Multi-document transactions: `auto` (when the server has them), `on`, `off`.
    #[serde(default)]
    pub transactions: TransactionsWord,
    /// Documents per bulk write.
    #[serde(default = "default_batch_size")]
    pub batch_size: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MongoMode {
    #[default]
    Upsert,
    Insert,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransactionsWord {
    #[default]
    Auto,
    On,
    Off,
}

fn default_batch_size() -> u64 {
    1000
}

pub fn build(cfg: &mut ConfigMap<'_>, ctx: &BuildContext) -> Result<Box<dyn Sink>, Invalid> {
    let o: MongoOptions = cfg.typed().ok_or(Invalid)?;
    let uri = o.uri;
    if !uri.is_empty() && !uri.starts_with("mongodb://") && !uri.starts_with("mongodb+srv://") {
        cfg.error("uri", "expected a mongodb:// or mongodb+srv:// URI");
    }
    let database = o.database;
    let collection = o.collection;
    let id: Vec<FieldPath> = o.id.iter().map(|p| FieldPath::parse(p)).collect();
    let upsert = o.mode == MongoMode::Upsert;
    let transactions = match o.transactions {
        TransactionsWord::On => Transactions::On,
        TransactionsWord::Off => Transactions::Off,
        TransactionsWord::Auto => Transactions::Auto,
    };
    if id.is_empty() && transactions == Transactions::Off {
        cfg.error(
            "id",
            "exactly-once needs either `id` (the field(s) that make `_id`) or transactions",
        );
    }
    if upsert && id.is_empty() {
        cfg.error(
            "id",
            "`mode: upsert` needs `id`: the field(s) that make the document's `_id`",
        );
    }
    let batch_size = o.batch_size.clamp(1, 100_000) as usize;
    cfg.finish()?;
    Ok(Box::new(MongoSink {
        uri,
        database,
        collection,
        id,
        upsert,
        transactions,
        batch_size,
        pipeline: ctx.pipeline.clone(),
        sink: ctx.component.clone(),
        db: None,
        client: None,
        use_transactions: false,
        attempted: None,
        pending: Vec::new(),
        prepared: None,
        stats: Default::default(),
    }))
}

fn bson(v: &Value) -> Bson {
    match v {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Int(i) => Bson::Int64(*i),
        Value::Float(f) => Bson::Double(*f),
        Value::Str(s) => Bson::String(s.to_string()),
        Value::List(items) => Bson::Array(items.iter().map(bson).collect()),
        Value::Object(o) => {
            Bson::Document(o.iter().map(|(k, v)| (k.to_string(), bson(v))).collect())
        }
    }
}

/// The checkpoint id of a stored checkpoint document.
fn stored_id(d: &Document) -> i64 {
    d.get_i64("checkpoint_id")
        .or_else(|_| d.get_i32("checkpoint_id").map(i64::from))
        .unwrap_or(0)
}

fn is_transient(e: &mongodb::error::Error) -> bool {
    use mongodb::error::ErrorKind;
    e.contains_label(mongodb::error::TRANSIENT_TRANSACTION_ERROR)
        || e.contains_label(mongodb::error::UNKNOWN_TRANSACTION_COMMIT_RESULT)
        || matches!(
            *e.kind,
            ErrorKind::Io(_)
                | ErrorKind::ConnectionPoolCleared { .. }
                | ErrorKind::ServerSelection { .. }
        )
}

fn to_error(e: mongodb::error::Error, context: &str) -> ConnectorError {
    let text = format!("mongodb: {context}: {e}");
    if is_transient(&e) {
        ConnectorError::transient(text)
    } else {
        ConnectorError::permanent(text)
    }
}

impl MongoSink {
    fn db(&self) -> Result<&Database, ConnectorError> {
        self.db
            .as_ref()
            .ok_or_else(|| ConnectorError::permanent("mongodb: used before open"))
    }

    fn document(&self, r: &Record) -> Result<Document, String> {
        let mut d = match bson(&r.value) {
            Bson::Document(d) => d,
            other => {
                return Err(format!(
                    "the record value is a {}, not an object",
                    other.element_type() as u8
                ))
            }
        };
        if !self.id.is_empty() {
            let parts: Vec<Bson> = self
                .id
                .iter()
                .map(|p| r.value.get_path(p).map_or(Bson::Null, bson))
                .collect();
            if parts.iter().any(|p| matches!(p, Bson::Null)) {
                return Err(format!(
                    "an `id` field is missing ({})",
                    self.id
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            let id = if parts.len() == 1 {
                parts.into_iter().next().unwrap_or(Bson::Null)
            } else {
                Bson::Document(
                    self.id
                        .iter()
                        .zip(parts)
                        .map(|(p, v)| (p.to_string(), v))
                        .collect(),
                )
            };
            d.insert("_id", id);
        }
        // `_id` is among the fields or at most as large as they are together.
        if bson_upper_bound(&r.value, 0) * 2 > MAX_DOCUMENT_BYTES as usize {
            let size = bson_bytes(&d);
            if size > MAX_DOCUMENT_BYTES {
                return Err(format!(
                    "the document is {size} bytes of BSON, over MongoDB's limit of {MAX_DOCUMENT_BYTES} bytes"
                ));
            }
        }
        Ok(d)
    }

    /// One command for a batch; returns the indexes the server rejected, with reasons.
    async fn write_batch(
        &self,
        docs: &[Document],
        session: Option<&mut ClientSession>,
    ) -> Result<Vec<(usize, String)>, ConnectorError> {
        // With transactions a duplicate `_id` cannot be this sink's own earlier write
        // (an epoch commits whole, with its checkpoint): it is a conflict, rejected.
        let duplicates_are_replays = !self.upsert && !self.use_transactions;
        let db = self.db()?;
        let command = if self.upsert {
            let updates: Vec<Document> = docs
                .iter()
                .map(|d| doc! {"q": {"_id": d.get("_id").cloned().unwrap_or(Bson::Null)}, "u": d.clone(), "upsert": true})
                .collect();
            doc! {"update": &self.collection, "updates": updates, "ordered": false}
        } else {
            doc! {"insert": &self.collection, "documents": docs.to_vec(), "ordered": false}
        };
        let action = db.run_command(command);
        let reply = match session {
            Some(s) => action.session(s).await,
            None => action.await,
        }
        .map_err(|e| to_error(e, "write"))?;
        let mut rejected = Vec::new();
        if let Ok(errors) = reply.get_array("writeErrors") {
            for e in errors {
                let Some(e) = e.as_document() else { continue };
                let index = e.get_i32("index").unwrap_or(-1);
                let code = e.get_i32("code").unwrap_or(0);
                // On a replay in insert mode the document is already there: that is fine.
                if code == 11000 && duplicates_are_replays {
                    continue;
                }
                let msg = e.get_str("errmsg").unwrap_or("");
                rejected.push((
                    index.max(0) as usize,
                    format!("MongoDB error {code}: {msg}"),
                ));
            }
        }
        if let Ok(wc) = reply.get_document("writeConcernError") {
            return Err(ConnectorError::transient(format!(
                "mongodb: write concern error: {wc}"
            )));
        }
        Ok(rejected)
    }

    /// Writes every document; returns the BSON bytes of those the server took.
    async fn write_all(
        &self,
        docs: Vec<(Document, Record)>,
        mut session: Option<&mut ClientSession>,
        bad: &mut Vec<BadRecord>,
    ) -> Result<u64, ConnectorError> {
        let mut taken = 0;
        for chunk in docs.chunks(self.batch_size) {
            let plain: Vec<Document> = chunk.iter().map(|(d, _)| d.clone()).collect();
            let rejected = self.write_batch(&plain, session.as_deref_mut()).await?;
            taken += plain
                .iter()
                .enumerate()
                .filter(|(i, _)| !rejected.iter().any(|(r, _)| r == i))
                .map(|(_, d)| bson_bytes(d))
                .sum::<u64>();
            for (i, why) in rejected {
                if let Some((_, r)) = chunk.get(i) {
                    bad.push(self.rejection(r, &why));
                }
            }
        }
        Ok(taken)
    }

    fn rejection(&self, r: &Record, why: &str) -> BadRecord {
        let mut b = BadRecord::record(r.clone(), format!("mongodb rejected the document: {why}"));
        b.position = format!("{}.{}", self.database, self.collection);
        b
    }

    /// Writes the pending documents inside a new transaction and leaves it open. On a
    /// real server a rejected document aborts the whole transaction, so the rejected
    /// ones are taken out (to `bad`) and the transaction starts again without them:
    /// what commits is exactly the documents the server takes. Each rejection found
    /// costs one more attempt from the start (a real server reports only the first).
    async fn write_in_transaction(
        &mut self,
        bad: &mut Vec<BadRecord>,
    ) -> Result<(ClientSession, u64), ConnectorError> {
        let client = self
            .client
            .clone()
            .ok_or_else(|| ConnectorError::permanent("mongodb: used before open"))?;
        loop {
            let mut session = client
                .start_session()
                .await
                .map_err(|e| to_error(e, "starting a session"))?;
            session
                .start_transaction()
                .await
                .map_err(|e| to_error(e, "starting a transaction"))?;
            let mut bytes = 0;
            let mut rejected_at = None;
            for (c, chunk) in self.pending.chunks(self.batch_size).enumerate() {
                let plain: Vec<Document> = chunk.iter().map(|(d, _)| d.clone()).collect();
                let rejected = self.write_batch(&plain, Some(&mut session)).await?;
                if !rejected.is_empty() {
                    rejected_at = Some((c * self.batch_size, rejected));
                    break;
                }
                bytes += plain.iter().map(bson_bytes).sum::<u64>();
            }
            let Some((base, rejected)) = rejected_at else {
                return Ok((session, bytes));
            };
            // The server may have aborted it already; either way it is gone.
            let _ = session.abort_transaction().await;
            let mut out = std::collections::BTreeMap::new();
            for (i, why) in rejected {
                out.entry(base + i).or_insert(why);
            }
            for (i, why) in &out {
                if let Some((_, r)) = self.pending.get(*i) {
                    bad.push(self.rejection(r, why));
                }
            }
            let mut i = 0;
            self.pending.retain(|_| {
                i += 1;
                !out.contains_key(&(i - 1))
            });
        }
    }

    async fn stored_checkpoint(&self, db: &Database) -> Result<Option<Document>, ConnectorError> {
        let id = format!("{}/{}", self.pipeline, self.sink);
        db.collection::<Document>("connectd_checkpoints")
            .find_one(doc! {"_id": &id})
            .await
            .map_err(|e| to_error(e, "reading the checkpoint"))
    }

    async fn write_checkpoint(
        &self,
        checkpoint: &Checkpoint,
        session: Option<&mut ClientSession>,
    ) -> Result<(), ConnectorError> {
        let state = serde_json::to_string(&checkpoint.state).map_err(|e| {
            ConnectorError::permanent("mongodb: cannot encode the checkpoint").with_source(e)
        })?;
        let id = format!("{}/{}", self.pipeline, self.sink);
        let replacement = doc! {"_id": &id, "pipeline": &self.pipeline, "sink": &self.sink, "checkpoint_id": checkpoint.id as i64, "state": state};
        let command = doc! {"update": "connectd_checkpoints", "updates": [{"q": {"_id": &id}, "u": replacement, "upsert": true}]};
        let action = self.db()?.run_command(command);
        match session {
            Some(s) => action.session(s).await,
            None => action.await,
        }
        .map_err(|e| to_error(e, "writing the checkpoint"))?;
        Ok(())
    }
}

#[async_trait]
impl Sink for MongoSink {
    /// Without transactions writes cannot be taken back: an epoch's documents are
    /// written once it is complete.
    fn writes_at_commit(&self) -> bool {
        !self.use_transactions
    }

    async fn open(&mut self) -> Result<Option<Committed>, ConnectorError> {
        let client = Client::with_uri_str(&self.uri)
            .await
            .map_err(|e| to_error(e, "invalid URI or options"))?;
        let db = client.database(&self.database);
        let hello = db.run_command(doc! {"hello": 1}).await.map_err(|e| {
            ConnectorError::transient(format!("mongodb: cannot reach the server: {e}"))
        })?;
        let supports = hello.get_str("setName").is_ok() || hello.get_str("msg") == Ok("isdbgrid");
        self.use_transactions = match self.transactions {
            Transactions::On => true,
            Transactions::Off => false,
            Transactions::Auto => supports,
        };
        if !self.use_transactions && self.id.is_empty() {
            return Err(ConnectorError::permanent(
                "mongodb: this server has no transactions (not a replica set), so exactly-once needs `id` (the field(s) that make `_id`)",
            ));
        }
        tracing::info!(sink = %self.sink, transactions = self.use_transactions, "mongodb sink ready");
        let stored = self.stored_checkpoint(&db).await?;
        self.db = Some(db);
        self.client = Some(client);
        self.pending.clear();
        match stored {
            None => Ok(None),
            Some(d) => {
                let checkpoint_id = stored_id(&d);
                let state = d.get_str("state").unwrap_or("null");
                let state = serde_json::from_str(state).map_err(|e| {
                    ConnectorError::permanent("mongodb: the stored checkpoint state is not JSON")
                        .with_source(e)
                })?;
                Ok(Some(Checkpoint {
                    id: checkpoint_id as u64,
                    state,
                }))
            }
        }
    }

    async fn write(
        &mut self,
        batch: &[Record],
        bad: &mut Vec<BadRecord>,
    ) -> Result<(), ConnectorError> {
        let mut docs = Vec::with_capacity(batch.len());
        let mut rejected = Vec::new();
        for r in batch {
            match self.document(r) {
                Ok(d) => docs.push((d, r.clone())),
                Err(why) => rejected.push(BadRecord::record(
                    r.clone(),
                    format!("mongodb `{}`: {why}", self.collection),
                )),
            }
        }
        if self.use_transactions {
            self.pending.extend(docs);
        } else {
            // Idempotent upserts by `_id`: what the server took stays.
            let taken = self.write_all(docs, None, &mut rejected).await?;
            self.stats.written(taken);
        }
        bad.append(&mut rejected);
        Ok(())
    }

    /// With transactions: the epoch's documents go into an open transaction now, so
    /// that what the server rejects reaches the DLQ before the checkpoint completes.
    async fn pre_commit(
        &mut self,
        id: u64,
        bad: &mut Vec<BadRecord>,
    ) -> Result<(), ConnectorError> {
        if !self.use_transactions {
            return Ok(());
        }
        if let Some(mut old) = self.prepared.take() {
            let _ = old.session.abort_transaction().await;
        }
        let (session, bytes) = self.write_in_transaction(bad).await?;
        self.prepared = Some(Prepared {
            checkpoint: id,
            session,
            bytes,
        });
        Ok(())
    }

    async fn commit(&mut self, checkpoint: &Checkpoint) -> Result<(), ConnectorError> {
        if !self.use_transactions {
            return self.write_checkpoint(checkpoint, None).await;
        }
        if self.attempted == Some(checkpoint.id) {
            // The last attempt failed, maybe after the server committed it (the reply
            // was lost): the checkpoint document says. Never insert an epoch twice.
            let stored = self.stored_checkpoint(self.db()?).await?;
            if stored.is_some_and(|d| stored_id(&d) == checkpoint.id as i64) {
                tracing::info!(sink = %self.sink, checkpoint = checkpoint.id, "the interrupted commit had succeeded");
                self.pending.clear();
                self.attempted = None;
                return Ok(());
            }
        }
        let (mut session, bytes) = match self.prepared.take() {
            Some(p) if p.checkpoint == checkpoint.id => (p.session, p.bytes),
            other => {
                // A retry after a failed commit (the transaction is gone): write again.
                if let Some(mut old) = other {
                    let _ = old.session.abort_transaction().await;
                }
                let mut late = Vec::new();
                let written = self.write_in_transaction(&mut late).await?;
                if let Some(first) = late.first() {
                    // Too late for the DLQ (synced at pre-commit), and never dropped: the
                    // pipeline stops, and its restart redoes the epoch from the
                    // write-ahead log, whose pre-commit sends these to the DLQ.
                    return Err(ConnectorError::permanent(format!(
                        "mongodb: {} document(s) rejected while retrying the commit of checkpoint {} (first: {}); a restart redoes the checkpoint and sends them to the dead-letter queue",
                        late.len(),
                        checkpoint.id,
                        first.reason
                    )));
                }
                written
            }
        };
        self.attempted = Some(checkpoint.id);
        self.write_checkpoint(checkpoint, Some(&mut session))
            .await?;
        session
            .commit_transaction()
            .await
            .map_err(|e| to_error(e, "commit"))?;
        self.stats.written(bytes);
        self.pending.clear();
        self.attempted = None;
        Ok(())
    }

    fn stats(&self) -> Option<std::sync::Arc<connectd_sdk::stats::SinkStats>> {
        Some(self.stats.clone())
    }

    /// Deletes this sink's checkpoint document.
    async fn reset(&mut self) -> Result<(), ConnectorError> {
        let client = Client::with_uri_str(&self.uri)
            .await
            .map_err(|e| to_error(e, "invalid URI or options"))?;
        let id = format!("{}/{}", self.pipeline, self.sink);
        let deleted = client
            .database(&self.database)
            .collection::<Document>("connectd_checkpoints")
            .delete_one(doc! {"_id": &id})
            .await
            .map(|_| ())
            .map_err(|e| to_error(e, "deleting the checkpoint"));
        let _ = tokio::time::timeout(Duration::from_secs(5), client.shutdown()).await;
        deleted
    }

    async fn close(&mut self) -> Result<(), ConnectorError> {
        if let Some(client) = self.client.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), client.shutdown()).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cheap bound never says less than the document's BSON size.
    #[test]
    fn the_bound_is_at_least_the_bson_size() {
        let values = [
            serde_json::json!({}),
            serde_json::json!({"a": null, "b": true, "c": 1, "d": 2.5, "e": "text"}),
            serde_json::json!({"list": [1, "two", [3, {"four": 4}], null], "nested": {"x": {"y": "z"}}}),
            serde_json::json!({"long": (0..1000).collect::<Vec<_>>(), "ünïcode key": "välue"}),
        ];
        for json in values {
            let v = Value::from_json(&json);
            let Bson::Document(d) = bson(&v) else {
                panic!("{json}")
            };
            assert!(bson_upper_bound(&v, 0) as u64 >= bson_bytes(&d), "{json}");
        }
    }
}
