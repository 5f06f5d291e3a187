//! `kafka`: writes records to a topic in Kafka transactions, exactly once.
//!
//! One transactional producer per sink instance; its `transactional.id` is
//! `connectd-<pipeline>-<sink>-<instance>`, so a restarted instance fences its
//! predecessor and aborts whatever it left open. `<instance>` is the id kept in the
//! worker's state directory (see `kafka::instance`), never the host name. The records
//! of a checkpoint, the checkpoint record (compacted topic `connectd-checkpoints`, key
//! `<pipeline>/<sink>/<instance>`) and — when
//! the pipeline reads from kafka sources — those sources' consumer offsets
//! (`send_offsets_to_transaction`) commit in one transaction.
//!
//! In a pipeline with `state.per_partition`, the records of the state changelogs
//! (`write_changelogs`, topics `connectd-<pipeline>-<transform>-changelog`) join that
//! transaction too; `changelog_reader` reads them back for a worker without local state.
//!
//! Records are held until the checkpoint (or until `max_buffered` of them wait) and then
//! produced, so a transaction is open only briefly. While one is open the file
//! `<state-dir>/<pipeline>/sinks/<sink>.in-transaction` exists.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use connectd_sdk::config::{ConfigMap, Invalid};
use connectd_sdk::{
    BadRecord, BuildContext, Changelog, ChangelogReader, Checkpoint, Committed, ConnectorError,
    FieldPath, Record, Sink, Value,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kafka::checkpoint_record;
use crate::kafka::format::{self, text_of, Encoder, FormatOptions, ValueFormat};
use crate::kafka::topic_exists::{self, KnownTopics};
use crate::kafka::{client_config, client_properties, error, groups, offsets, ClientOptions};

const TIMEOUT: Duration = Duration::from_secs(30);

enum Route {
    Topic(Arc<str>),
    Field(FieldPath),
}

struct Outgoing {
    /// Shared with the route when it is one topic: no copy per record.
    topic: Arc<str>,
    /// `None`: the producer's partitioner decides.
    partition: Option<i32>,
    key: Option<Vec<u8>>,
    /// `None`: a tombstone (a state changelog's deleted key).
    payload: Option<Vec<u8>>,
    headers: Vec<(String, String)>,
    /// A state changelog record: not the sink's output, so not in its byte counter.
    changelog: bool,
}

type TxProducer = ThreadedProducer<crate::kafka::client_errors::QuietProducer>;

pub struct KafkaSink {
    props: BTreeMap<String, String>,
    route: Route,
    key: Vec<FieldPath>,
    missing: super::columns::MissingFields,
    format: ValueFormat,
    /// Made ready (Avro schema registered) by `open`.
    encoder: Encoder,
    checkpoint_topic: String,
    /// Set by `identify` (open, reset): `<pipeline>/<sink>/<instance>`.
    checkpoint_key: String,
    /// Where the instance id is kept (the worker's state directory).
    state_dir: PathBuf,
    /// The `transactional.id` comes from `properties` rather than the instance id.
    explicit_transactional_id: bool,
    component: String,
    max_buffered: usize,
    marker: PathBuf,
    pipeline: String,
    producer: Option<Arc<TxProducer>>,
    /// Everything written since the last commit: produced again if a transaction fails.
    /// Shared with the producing thread (`produce_pending`), never copied.
    pending: Vec<Arc<Outgoing>>,
    /// Bytes of keys and values committed, for `/metrics`.
    stats: std::sync::Arc<connectd_sdk::stats::SinkStats>,
    /// How many of `pending` the open transaction holds.
    produced: usize,
    /// The partition count of each state changelog topic made ready.
    changelog_partitions: std::collections::HashMap<String, u32>,
    /// The routed topics found to exist or not (`topic_field`).
    known_topics: KnownTopics,
    in_transaction: bool,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("checkpoint_key", &self.checkpoint_key)
            .finish()
    }
}

/// Writes records to Kafka in transactions, with the pipeline's source offsets in the
/// same transaction: exactly once.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct KafkaSinkOptions {
    #[serde(skip)]
    #[schemars(flatten, !skip)]
    pub client: ClientOptions,
    /// The topic to write to.
    #[serde(default)]
    #[schemars(extend("pattern" = "^[A-Za-z0-9._-]{1,249}$"))]
    pub topic: Option<String>,
    /// Or the record field that names each record's topic.
    #[serde(default)]
    pub topic_field: Option<String>,
    /// The field(s) that make the message key (default: the record's key).
    #[serde(default)]
    #[schemars(schema_with = "connectd_sdk::config::scalar_text_list")]
    pub key: Vec<String>,
    #[serde(skip)]
    #[schemars(flatten, !skip)]
    pub format: FormatOptions,
    /// The compacted topic of the sink's checkpoint records.
    #[serde(default = "default_checkpoint_topic")]
    #[schemars(extend("pattern" = "^[A-Za-z0-9._-]{1,249}$"))]
    pub checkpoint_topic: String,
    /// Records held for a transaction at most; more wait for the checkpoint.
    #[serde(default = "default_max_buffered")]
    pub max_buffered: u64,
}

fn default_checkpoint_topic() -> String {
    "connectd-checkpoints".into()
}

fn default_max_buffered() -> u64 {
    100_000
}

pub fn build(cfg: &mut ConfigMap<'_>, ctx: &BuildContext) -> Result<Box<dyn Sink>, Invalid> {
    let client: Option<ClientOptions> = cfg.typed_part();
    let format: Option<FormatOptions> = cfg.typed_part();
    let o: KafkaSinkOptions = cfg.typed().ok_or(Invalid)?;
    let (Some(client), Some(format)) = (client, format) else {
        return Err(Invalid);
    };
    let mut props = client_properties(cfg, ctx, client);
    let route = match (o.topic, o.topic_field) {
        (Some(t), None) => Route::Topic(t.into()),
        (None, Some(f)) => Route::Field(FieldPath::parse(&f)),
        (Some(_), Some(_)) => {
            cfg.error(
                "topic_field",
                "give either `topic` or `topic_field`, not both",
            );
            Route::Topic("".into())
        }
        (None, None) => {
            cfg.error(
                "topic",
                "missing: the topic to write to (or `topic_field`, the field that names it)",
            );
            Route::Topic("".into())
        }
    };
    let key: Vec<FieldPath> = o.key.iter().map(|k| FieldPath::parse(k)).collect();
    let format = format::read(cfg, format);
    if let (ValueFormat::Avro(a), Route::Field(_)) = (&format, &route) {
        if a.registry.as_ref().is_some_and(|r| r.subject.is_none()) {
            cfg.error(
                "schema_registry",
                "with `topic_field`, name the subject: `schema_registry: {url: ..., subject: ...}`",
            );
        }
    }
    let checkpoint_topic = o.checkpoint_topic;
    // A name Kafka refuses would fail every checkpoint's transaction, not the config.
    let fixed = match &route {
        Route::Topic(t) if !t.is_empty() => Some(("topic", t.to_string())),
        _ => None,
    };
    for (key, name) in fixed
        .into_iter()
        .chain([("checkpoint_topic", checkpoint_topic.clone())])
    {
        if let Some(why) = crate::kafka::topic_name::fault(&name) {
            cfg.error(key, format!("`{name}` is no Kafka topic name: {why}"));
        }
    }
    let max_buffered = o.max_buffered.max(1) as usize;
    cfg.finish()?;
    let explicit_transactional_id = props.contains_key("transactional.id");
    props.insert("enable.idempotence".into(), "true".into());
    Ok(Box::new(KafkaSink {
        props,
        route,
        missing: super::columns::MissingFields::new(key.len()),
        key,
        format,
        encoder: Encoder::Json(None),
        checkpoint_topic,
        checkpoint_key: String::new(),
        state_dir: ctx.state_dir.clone(),
        explicit_transactional_id,
        component: ctx.component.clone(),
        max_buffered,
        marker: ctx
            .state_dir
            .join(&ctx.pipeline)
            .join("sinks")
            .join(format!("{}.in-transaction", ctx.component)),
        pipeline: ctx.pipeline.clone(),
        producer: None,
        pending: Vec::new(),
        stats: Default::default(),
        produced: 0,
        changelog_partitions: Default::default(),
        known_topics: KnownTopics::default(),
        in_transaction: false,
    }))
}

/// A value as key/payload text: strings as they are, anything else as JSON.
/// Runs a blocking librdkafka call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ConnectorError> + Send + 'static,
) -> Result<T, ConnectorError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ConnectorError::permanent(format!("kafka: a blocking call failed: {e}")))?
}

impl KafkaSink {
    /// The instance's transactional id and checkpoint key (see `kafka::instance`).
    fn identify(&mut self) -> Result<(), ConnectorError> {
        let instance = crate::kafka::instance::instance_id(&self.state_dir)
            .map_err(|e| ConnectorError::permanent(format!("kafka sink: {e}")))?;
        if !self.explicit_transactional_id {
            self.props.insert(
                "transactional.id".into(),
                format!("connectd-{}-{}-{instance}", self.pipeline, self.component),
            );
        }
        self.checkpoint_key = format!("{}/{}/{instance}", self.pipeline, self.component);
        Ok(())
    }

    fn producer(&self) -> Result<Arc<TxProducer>, ConnectorError> {
        self.producer
            .clone()
            .ok_or_else(|| ConnectorError::permanent("kafka sink used before open"))
    }

    fn outgoing(&self, r: &Record) -> Result<Outgoing, String> {
        let topic = match &self.route {
            Route::Topic(t) => t.clone(),
            Route::Field(f) => match r.value.get_path(f) {
                Some(Value::Str(s)) => match crate::kafka::topic_name::fault(s) {
                    None => Arc::from(s.as_str()),
                    Some(why) => return Err(format!("the topic field `{f}` is `{s}`: {why}")),
                },
                Some(other) => {
                    return Err(format!(
                        "the topic field `{f}` is {} ({other}), not a topic name",
                        other.type_with_article()
                    ))
                }
                None => return Err(format!("the record has no topic field `{f}`")),
            },
        };
        let field = |i: usize, f: &FieldPath| {
            r.value.get_path(f).unwrap_or_else(|| {
                self.missing.note("kafka", i, f, &r.value, || {
                    "it is `null` in the message key (every such message goes to one partition)"
                        .into()
                });
                &Value::Null
            })
        };
        let key = match self.key.as_slice() {
            [] => (!r.key.is_null()).then(|| text_of(&r.key)),
            [one] => Some(text_of(field(0, one))),
            many => {
                let mut o = connectd_sdk::Object::with_capacity(many.len());
                for (i, f) in many.iter().enumerate() {
                    o.insert(f.to_string(), field(i, f).clone());
                }
                Some(text_of(&Value::Object(o)))
            }
        };
        let payload = self.encoder.encode(&r.value)?;
        let headers = r
            .headers
            .iter()
            // Where a record came from in its source topic is not carried to the next.
            .filter(|(n, _)| !n.starts_with("kafka."))
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        Ok(Outgoing {
            topic,
            partition: None,
            key,
            payload: Some(payload),
            headers,
            changelog: false,
        })
    }

    /// Whether `topic` exists on the cluster, asked once per topic (a missing one again
    /// after a while).
    async fn topic_exists(&mut self, topic: Arc<str>) -> Result<bool, ConnectorError> {
        if let Some(known) = self.known_topics.lookup(&topic, Instant::now) {
            return Ok(known);
        }
        let now = Instant::now();
        let p = self.producer()?;
        let t = topic.clone();
        let exists = blocking(move || topic_exists::exists(p.client(), &t, TIMEOUT)).await?;
        self.known_topics.record(&topic, exists, now);
        Ok(exists)
    }

    /// Opens a transaction if none is open.
    async fn begin(&mut self) -> Result<(), ConnectorError> {
        if self.in_transaction {
            return Ok(());
        }
        if let Some(dir) = self.marker.parent() {
            std::fs::create_dir_all(dir).map_err(|e| ConnectorError::io("kafka sink state", e))?;
        }
        std::fs::write(&self.marker, b"").map_err(|e| ConnectorError::io("kafka sink state", e))?;
        let p = self.producer()?;
        // A failure of an earlier, aborted transaction is not this one's.
        p.context().take_failed_delivery();
        p.begin_transaction()
            .map_err(|e| error("begin transaction", e))?;
        self.in_transaction = true;
        self.produced = 0;
        Ok(())
    }

    /// The pending records are committed: counted (`/metrics`), their topics noted,
    /// and dropped.
    fn committed_pending(&mut self) {
        let mut topics: Vec<&str> = Vec::new();
        let mut last: Option<&Arc<str>> = None;
        for o in self.pending.iter().filter(|o| !o.changelog) {
            if last.is_none_or(|l| !Arc::ptr_eq(l, &o.topic)) {
                last = Some(&o.topic);
                if !topics.contains(&&*o.topic) {
                    topics.push(&o.topic);
                }
            }
        }
        self.stats.topics.used(topics);
        let bytes: usize = self
            .pending
            .iter()
            .filter(|o| !o.changelog)
            .map(|o| o.payload.as_ref().map_or(0, Vec::len) + o.key.as_ref().map_or(0, Vec::len))
            .sum();
        self.stats.written(bytes as u64);
        self.pending.clear();
    }

    /// Produces the pending records the open transaction does not hold yet.
    async fn produce_pending(&mut self) -> Result<(), ConnectorError> {
        let p = self.producer()?;
        let from = self.produced;
        let batch: Vec<Arc<Outgoing>> = self.pending[from..].to_vec();
        let n = batch.len();
        blocking(move || {
            for o in &batch {
                let to = Destination {
                    topic: &o.topic,
                    partition: o.partition,
                };
                produce(&p, to, o.key.as_deref(), o.payload.as_deref(), &o.headers)?;
            }
            Ok(())
        })
        .await?;
        self.produced = from + n;
        Ok(())
    }

    /// Aborts the open transaction (after a failure); its records are produced again in
    /// the next one.
    async fn abort(&mut self) {
        if !self.in_transaction {
            return;
        }
        if let Ok(p) = self.producer() {
            let _ =
                blocking(move || p.abort_transaction(TIMEOUT).map_err(|e| error("abort", e))).await;
        }
        self.in_transaction = false;
        self.produced = 0;
        let _ = std::fs::remove_file(&self.marker);
    }

    /// The partition count of changelog `log`'s topic, created compacted unless it
    /// exists: with as many partitions as the pipeline's kafka source topics have (so
    /// partition p's state is in partition p), or as `log` asks when it reads none.
    async fn changelog_topic(&mut self, log: &Changelog) -> Result<u32, ConnectorError> {
        if let Some(&n) = self.changelog_partitions.get(&log.topic) {
            return Ok(n);
        }
        let p = self.producer()?;
        let (topic, sources) = (log.topic.clone(), groups::of(&self.pipeline));
        let partitions_of = move |p: &TxProducer, topic: &str| {
            let md = p
                .client()
                .fetch_metadata(Some(topic), TIMEOUT)
                .map_err(|e| error(&format!("read the partitions of `{topic}`"), e))?;
            Ok::<_, ConnectorError>(md.topics().first().map_or(0, |t| t.partitions().len()) as u32)
        };
        let source_topics: Vec<String> = sources.iter().flat_map(|g| g.topics.clone()).collect();
        let widest = {
            let p = p.clone();
            blocking(move || {
                let mut widest = 0;
                for t in &source_topics {
                    widest = widest.max(partitions_of(&p, t)?);
                }
                Ok(widest)
            })
            .await?
        };
        let wanted = widest.max(log.partitions).max(1);
        crate::kafka::compacted_topic::ensure(&self.props, &topic, wanted as i32).await?;
        let found = {
            let topic = topic.clone();
            blocking(move || partitions_of(&p, &topic)).await?
        };
        if found == 0 {
            return Err(ConnectorError::transient(format!(
                "kafka: the state changelog topic `{topic}` has no partitions yet"
            )));
        }
        if found != wanted {
            tracing::warn!(topic = %topic, partitions = found, expected = wanted, "kafka: the state changelog topic exists with another partition count; records name their partition in their key, so it stays exact, but a restore reads more");
        }
        self.changelog_partitions.insert(topic, found);
        Ok(found)
    }

    async fn commit_once(&mut self, checkpoint: &Checkpoint) -> Result<(), CommitFailed> {
        self.begin().await?;
        self.produce_pending().await?;
        let p = self.producer()?;
        let record =
            serde_json::json!({"id": checkpoint.id, "state": checkpoint.state}).to_string();
        let (topic, key) = (self.checkpoint_topic.clone(), self.checkpoint_key.clone());
        let sources = groups::of(&self.pipeline);
        let mut commits = Vec::new();
        for g in sources {
            let offset = &checkpoint.state["sources"][&g.source]["offset"];
            if offset.is_null() {
                continue;
            }
            let mut positions = offsets::from_json(offset).map_err(|e| {
                ConnectorError::permanent(format!(
                    "kafka sink: offsets of source `{}`: {e}",
                    g.source
                ))
            })?;
            // Checkpoints keep every partition ever read; another worker's progress on
            // the ones held elsewhere now must not be set back.
            positions.retain(|(topic, partition), _| g.holds(topic, *partition));
            commits.push((offsets::to_list(&positions), g.metadata.clone()));
        }
        let committed = blocking(move || {
            produce(
                &p,
                topic.as_str(),
                Some(key.as_bytes()),
                Some(record.as_bytes()),
                &[],
            )?;
            for (tpl, md) in &commits {
                p.send_offsets_to_transaction(tpl, md, TIMEOUT)
                    .map_err(|e| error("commit the source offsets", e))?;
            }
            Ok(p.commit_transaction(TIMEOUT))
        })
        .await?;
        if let Err(e) = committed {
            // A transaction that must be aborted (a message in it failed) or a fenced
            // producer did not commit; one whose answer did not come may have.
            let maybe_committed =
                !matches!(&e, KafkaError::Transaction(t) if t.txn_requires_abort() || t.is_fatal());
            let failed_delivery = self.producer()?.context().take_failed_delivery();
            let what = match failed_delivery {
                Some(why) => format!("commit transaction ({why})"),
                None => "commit transaction".to_string(),
            };
            return Err(CommitFailed {
                error: error(&what, e),
                maybe_committed,
            });
        }
        self.in_transaction = false;
        self.produced = 0;
        self.committed_pending();
        let _ = std::fs::remove_file(&self.marker);
        Ok(())
    }
}

/// Why a commit failed, and whether it may have succeeded all the same (its answer
/// lost): only then is the checkpoint topic read to know. A failure known not to have
/// committed must not be: a broker that shows aborted records to read_committed readers
/// (Tansu) made a failed transaction look committed, and its records were lost.
struct CommitFailed {
    error: ConnectorError,
    maybe_committed: bool,
}

impl From<ConnectorError> for CommitFailed {
    fn from(error: ConnectorError) -> Self {
        Self {
            error,
            maybe_committed: false,
        }
    }
}

/// A topic, and a partition when the record's is not the partitioner's choice.
#[derive(Clone, Copy)]
struct Destination<'a> {
    topic: &'a str,
    partition: Option<i32>,
}

impl<'a> From<&'a str> for Destination<'a> {
    fn from(topic: &'a str) -> Self {
        Self {
            topic,
            partition: None,
        }
    }
}

fn produce<'a>(
    p: &TxProducer,
    to: impl Into<Destination<'a>>,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    headers: &[(String, String)],
) -> Result<(), ConnectorError> {
    let Destination { topic, partition } = to.into();
    let mut record = BaseRecord::<[u8], [u8]>::to(topic);
    if let Some(payload) = payload {
        record = record.payload(payload);
    }
    if let Some(partition) = partition {
        record = record.partition(partition);
    }
    if let Some(k) = key {
        record = record.key(k);
    }
    if !headers.is_empty() {
        let mut h = OwnedHeaders::new_with_capacity(headers.len());
        for (n, v) in headers {
            h = h.insert(Header {
                key: n,
                value: Some(v.as_bytes()),
            });
        }
        record = record.headers(h);
    }
    let started = Instant::now();
    loop {
        match p.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                if started.elapsed() > TIMEOUT {
                    return Err(ConnectorError::transient(
                        "kafka: the producer queue stayed full for 30 s (broker unreachable?)",
                    ));
                }
                record = r;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(error(&format!("produce to `{topic}`"), e)),
        }
    }
}

#[async_trait]
impl Sink for KafkaSink {
    /// `send_offsets_to_transaction`: the sources' group offsets commit with the records.
    fn commits_group_offsets(&self) -> bool {
        true
    }

    fn stats(&self) -> Option<std::sync::Arc<connectd_sdk::stats::SinkStats>> {
        Some(self.stats.clone())
    }

    async fn open(&mut self) -> Result<Option<Committed>, ConnectorError> {
        self.identify()?;
        self.pending.clear();
        self.produced = 0;
        self.in_transaction = false;
        checkpoint_record::ensure_topic(&self.props, &self.checkpoint_topic).await?;
        let subject = match &self.route {
            Route::Topic(t) => format!("{t}-value"),
            Route::Field(_) => String::new(),
        };
        self.encoder = Encoder::ready(&self.format, &subject).await?;
        let producer: TxProducer = client_config(&self.props)
            .create_with_context(Default::default())
            .map_err(|e| error("cannot create the producer", e))?;
        let producer = Arc::new(producer);
        let p = producer.clone();
        // Fences an earlier instance with the same transactional id and aborts what it
        // left open.
        blocking(move || {
            p.init_transactions(TIMEOUT)
                .map_err(|e| error("init transactions", e))
        })
        .await?;
        self.producer = Some(producer);
        if let Route::Topic(t) = &self.route {
            let t = t.clone();
            if !self.topic_exists(t.clone()).await? {
                return Err(ConnectorError::permanent(format!(
                    "kafka sink: {}",
                    topic_exists::missing(&t)
                )));
            }
        }
        let _ = std::fs::remove_file(&self.marker);
        let (props, topic, key) = (
            self.props.clone(),
            self.checkpoint_topic.clone(),
            self.checkpoint_key.clone(),
        );
        blocking(move || checkpoint_record::read(&props, &topic, &key)).await
    }

    /// Writes a reset record under this sink's checkpoint key, in a transaction like
    /// every checkpoint (a plain write between transactional ones is what some brokers
    /// mishandle): the next `open` finds no checkpoint.
    async fn reset(&mut self) -> Result<(), ConnectorError> {
        self.identify()?;
        checkpoint_record::ensure_topic(&self.props, &self.checkpoint_topic).await?;
        let producer: TxProducer = client_config(&self.props)
            .create_with_context(Default::default())
            .map_err(|e| error("cannot create the producer", e))?;
        let (topic, key) = (self.checkpoint_topic.clone(), self.checkpoint_key.clone());
        blocking(move || {
            let p = producer;
            p.init_transactions(TIMEOUT)
                .map_err(|e| error("init transactions", e))?;
            p.begin_transaction()
                .map_err(|e| error("begin transaction", e))?;
            produce(
                &p,
                topic.as_str(),
                Some(key.as_bytes()),
                Some(checkpoint_record::RESET.as_bytes()),
                &[],
            )?;
            p.commit_transaction(TIMEOUT)
                .map_err(|e| error("commit the reset", e))
        })
        .await
    }

    async fn write(
        &mut self,
        batch: &[Record],
        bad: &mut Vec<BadRecord>,
    ) -> Result<(), ConnectorError> {
        let limit = crate::kafka::message_size::limit(&self.props);
        for r in batch {
            let sized = self.outgoing(r).and_then(|o| {
                let size = crate::kafka::message_size::wire_size(
                    o.key.as_deref(),
                    o.payload.as_deref(),
                    &o.headers,
                );
                crate::kafka::message_size::too_large(size, limit).map_or(Ok(o), Err)
            });
            let routed = match sized {
                Ok(o) if matches!(self.route, Route::Field(_)) => {
                    if self.topic_exists(o.topic.clone()).await? {
                        Ok(o)
                    } else {
                        Err(topic_exists::missing(&o.topic))
                    }
                }
                other => other,
            };
            match routed {
                Ok(o) => self.pending.push(Arc::new(o)),
                Err(why) => bad.push(BadRecord::record(r.clone(), format!("kafka sink: {why}"))),
            }
        }
        if self.pending.len() - self.produced >= self.max_buffered {
            let result = async {
                self.begin().await?;
                self.produce_pending().await
            }
            .await;
            if let Err(e) = result {
                self.abort().await;
                return Err(e);
            }
        }
        Ok(())
    }

    fn writes_changelogs(&self) -> bool {
        true
    }

    /// The changelog records join the epoch's pending records: produced and committed
    /// with them, the checkpoint record and the source offsets, in one transaction.
    async fn write_changelogs(
        &mut self,
        _id: u64,
        changelogs: &[Changelog],
    ) -> Result<(), ConnectorError> {
        let mut counts = Vec::with_capacity(changelogs.len());
        for log in changelogs {
            counts.push(self.changelog_topic(log).await?);
        }
        for (log, count) in changelogs.iter().zip(counts) {
            let topic: Arc<str> = Arc::from(log.topic.as_str());
            for r in &log.records {
                self.pending.push(Arc::new(Outgoing {
                    topic: topic.clone(),
                    partition: Some((r.partition % count) as i32),
                    key: Some(r.key.clone()),
                    payload: r.value.clone(),
                    headers: Vec::new(),
                    changelog: true,
                }));
            }
        }
        Ok(())
    }

    fn changelog_reader(&self) -> Option<Arc<dyn ChangelogReader>> {
        Some(Arc::new(
            crate::kafka::changelog::KafkaChangelogReader::new(self.props.clone()),
        ))
    }

    async fn commit(&mut self, checkpoint: &Checkpoint) -> Result<(), ConnectorError> {
        match self.commit_once(checkpoint).await {
            Ok(()) => Ok(()),
            Err(CommitFailed {
                error,
                maybe_committed: false,
            }) => {
                self.abort().await;
                Err(error)
            }
            Err(CommitFailed { error: e, .. }) => {
                self.abort().await;
                // The commit may have succeeded before its answer was lost.
                let (props, topic, key) = (
                    self.props.clone(),
                    self.checkpoint_topic.clone(),
                    self.checkpoint_key.clone(),
                );
                if let Ok(Some(c)) =
                    blocking(move || checkpoint_record::read(&props, &topic, &key)).await
                {
                    if c.id >= checkpoint.id {
                        self.committed_pending();
                        return Ok(());
                    }
                }
                Err(e)
            }
        }
    }

    async fn close(&mut self) -> Result<(), ConnectorError> {
        if let Some(p) = self.producer.take() {
            let _ = blocking(move || p.flush(TIMEOUT).map_err(|e| error("flush", e))).await;
        }
        Ok(())
    }
}
