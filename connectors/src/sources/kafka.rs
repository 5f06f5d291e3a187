//! `kafka`: reads topics as a member of a consumer group.
//!
//! Offsets are part of the pipeline's checkpoint and come back from the sink's committed
//! checkpoint on restart (auto-commit is off). Partitions are split between the workers
//! running the same pipeline with the same `group` by Kafka's group protocol. A
//! partition assigned to this worker resumes from the later of the position this worker
//! holds for it (its checkpoint, or how far it got) and the group's committed offset —
//! which a downstream kafka sink commits in its transaction —, else per `start`.
//!
//! Not done yet: when a partition moves to a worker that joins, the worker giving it up
//! does not first commit what it has read of it, so records in flight there can be
//! written twice (a worker that dies or leaves is handled).
//! Records carry `kafka.topic`, `kafka.partition` and `kafka.offset` headers and the
//! message timestamp.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use connectd_sdk::config::{ConfigMap, Invalid};
use connectd_sdk::{BadRecord, BuildContext, ConnectorError, Record, Source, SourcePoll, Value};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::kafka::offsets::{self, Positions};
use crate::kafka::{client_config, client_properties, error, groups};

pub struct KafkaSource {
    props: std::collections::BTreeMap<String, String>,
    topics: Vec<String>,
    raw: bool,
    pipeline: String,
    name: String,
    positions: Arc<Mutex<Positions>>,
    consumer: Option<BaseConsumer<Rebalancer>>,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("topics", &self.topics)
            .finish()
    }
}

pub fn build(cfg: &mut ConfigMap<'_>, ctx: &BuildContext) -> Result<Box<dyn Source>, Invalid> {
    let mut props = client_properties(cfg, ctx);
    let topics = cfg.str_list("topics");
    if cfg.has("topics") && topics.is_empty() {
        cfg.error("topics", "name at least one topic");
    }
    let group = cfg.str("group");
    let isolation = cfg.one_of(
        "isolation",
        &["read_committed", "read_uncommitted"],
        "read_committed",
    );
    let start = cfg.one_of("start", &["earliest", "latest"], "earliest");
    let raw = cfg.one_of("format", &["json", "raw"], "json") == "raw";
    cfg.finish()?;
    props.insert("group.id".into(), group);
    props.insert("isolation.level".into(), isolation.into());
    props.insert("auto.offset.reset".into(), start.into());
    // Offsets live in checkpoints (and in the sink's transaction), never auto-committed.
    props.insert("enable.auto.commit".into(), "false".into());
    props.insert("enable.auto.offset.store".into(), "false".into());
    Ok(Box::new(KafkaSource {
        props,
        topics,
        raw,
        pipeline: ctx.pipeline.clone(),
        name: ctx.component.clone(),
        positions: Default::default(),
        consumer: None,
    }))
}

/// Starts each newly assigned partition at the later of this worker's position and the
/// group's committed offset.
struct Rebalancer {
    positions: Arc<Mutex<Positions>>,
    source: String,
}

impl ClientContext for Rebalancer {}

impl ConsumerContext for Rebalancer {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let positions = self.positions.lock().unwrap_or_else(|p| p.into_inner());
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                // What the group has committed (a kafka sink commits it in its
                // transaction). A partition this worker still holds records of resumes
                // after those; one that another worker moved on resumes after its commit.
                let committed = consumer
                    .committed_offsets(tpl.clone(), Duration::from_secs(10))
                    .unwrap_or_else(|e| {
                        tracing::warn!(source = %self.source, error = %e, "kafka: cannot read the group's committed offsets; using this worker's positions");
                        TopicPartitionList::new()
                    });
                let starts: Vec<(String, i32, i64)> = tpl
                    .elements()
                    .iter()
                    .filter_map(|e| {
                        let key = (e.topic().to_string(), e.partition());
                        let group = committed.find_partition(&key.0, key.1).and_then(|c| {
                            match c.offset() {
                                Offset::Offset(o) => Some(o),
                                _ => None,
                            }
                        });
                        let start = match (positions.get(&key).copied(), group) {
                            (Some(mine), Some(theirs)) => Some(mine.max(theirs)),
                            (mine, theirs) => mine.or(theirs),
                        }?;
                        Some((key.0, key.1, start))
                    })
                    .collect();
                for (topic, partition, offset) in starts {
                    // Cannot fail: the partition is in the list.
                    let _ = tpl.set_partition_offset(&topic, partition, Offset::Offset(offset));
                }
                tracing::info!(source = %self.source, partitions = tpl.count(), "kafka partitions assigned");
                if let Err(e) = consumer.assign(tpl) {
                    tracing::error!(source = %self.source, error = %e, "kafka: cannot take the assigned partitions");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // Positions are kept: if a partition comes back, the later of this
                // worker's position and the group's commit wins.
                tracing::info!(source = %self.source, partitions = tpl.count(), "kafka partitions revoked");
                let _ = consumer.unassign();
            }
            other => {
                tracing::error!(source = %self.source, error = ?other, "kafka rebalance failed");
                let _ = consumer.unassign();
            }
        }
    }
}

fn message_record(
    m: &rdkafka::message::BorrowedMessage<'_>,
    raw: bool,
) -> Result<Record, (String, String)> {
    let payload = m.payload().unwrap_or_default();
    let text = std::str::from_utf8(payload).map_err(|e| {
        (
            String::from_utf8_lossy(payload).into_owned(),
            format!("the value is not UTF-8: {e}"),
        )
    })?;
    let value = if raw {
        Value::str(text)
    } else {
        connectd_sdk::json::parse(text)
            .map_err(|e| (text.to_string(), format!("the value is not JSON: {e}")))?
    };
    let key = match m.key() {
        None => Value::Null,
        Some(k) => {
            let k = String::from_utf8_lossy(k);
            connectd_sdk::json::parse(&k).unwrap_or_else(|_| Value::str(k.as_ref()))
        }
    };
    let mut headers = vec![
        ("kafka.topic".into(), m.topic().into()),
        ("kafka.partition".into(), m.partition().to_string().into()),
        ("kafka.offset".into(), m.offset().to_string().into()),
    ];
    if let Some(hs) = m.headers() {
        for h in hs.iter() {
            let v = h.value.map(String::from_utf8_lossy).unwrap_or_default();
            headers.push((h.key.into(), v.as_ref().into()));
        }
    }
    Ok(Record {
        key,
        value,
        timestamp: m.timestamp().to_millis(),
        headers,
    })
}

#[async_trait]
impl Source for KafkaSource {
    async fn open(&mut self, offset: Option<serde_json::Value>) -> Result<(), ConnectorError> {
        let start = match &offset {
            Some(v) if !v.is_null() => offsets::from_json(v).map_err(|e| {
                ConnectorError::permanent(format!(
                    "kafka source {}: checkpointed offsets: {e}",
                    self.name
                ))
            })?,
            _ => Positions::new(),
        };
        *self.positions.lock().unwrap_or_else(|p| p.into_inner()) = start;
        let context = Rebalancer {
            positions: self.positions.clone(),
            source: self.name.clone(),
        };
        let consumer: BaseConsumer<Rebalancer> = client_config(&self.props)
            .create_with_context(context)
            .map_err(|e| error("cannot create the consumer", e))?;
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| error("cannot subscribe", e))?;
        self.consumer = Some(consumer);
        Ok(())
    }

    async fn poll(
        &mut self,
        max: usize,
        bad: &mut Vec<BadRecord>,
    ) -> Result<SourcePoll, ConnectorError> {
        let consumer = self
            .consumer
            .as_ref()
            .ok_or_else(|| ConnectorError::permanent("kafka source polled before open"))?;
        let mut out = Vec::new();
        while out.len() < max {
            match consumer.poll(Duration::ZERO) {
                None => break,
                Some(Err(KafkaError::PartitionEOF(_))) => continue,
                Some(Err(e)) => return Err(error("consume", e)),
                Some(Ok(m)) => {
                    let key = (m.topic().to_string(), m.partition());
                    match message_record(&m, self.raw) {
                        Ok(r) => out.push(r),
                        Err((raw, reason)) => bad.push(BadRecord::raw(
                            raw,
                            format!("offset {} of {} partition {}", m.offset(), key.0, key.1),
                            reason,
                        )),
                    }
                    self.positions
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(key, m.offset() + 1);
                }
            }
        }
        if !out.is_empty() {
            // Current group generation and member id: a kafka sink commits these offsets
            // in its transaction, fenced against a consumer that has lost its partitions.
            if let Some(md) = consumer.group_metadata() {
                groups::register(&self.pipeline, &self.name, md);
            }
        }
        Ok(if out.is_empty() && bad.is_empty() {
            SourcePoll::Idle(Duration::from_millis(20))
        } else {
            SourcePoll::Batch(out)
        })
    }

    fn offset(&self) -> serde_json::Value {
        offsets::to_json(&self.positions.lock().unwrap_or_else(|p| p.into_inner()))
    }

    async fn close(&mut self) -> Result<(), ConnectorError> {
        groups::unregister(&self.pipeline, &self.name);
        if let Some(c) = self.consumer.take() {
            // Leave the group now rather than after the session timeout.
            tokio::task::spawn_blocking(move || drop(c)).await.ok();
        }
        Ok(())
    }
}
