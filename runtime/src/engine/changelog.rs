//! State changelogs (`state.per_partition` with a sink that `writes_changelogs`): at
//! each checkpoint, every task table's frozen changes and the task's metadata become
//! records of the topic `connectd-<pipeline>-<transform>-changelog`, committed in the
//! sink's transaction with its records and the source offsets, as Kafka Streams logs
//! each task's store. A worker taking a partition over can rebuild its state from them.
//!
//! Record keys name their task, so a topic with another partition count stays exact:
//! - `0x00`, task (4 bytes, big-endian): the task's metadata, JSON
//!   `{"checkpoint", "lane", "state", "bound"}` (its snapshot, and the hex of the key
//!   below which its table forgets: keys below it are not state even if logged);
//! - `0x01`, task, then the table's key: the key's value, or a tombstone when deleted
//!   or forgotten (a key the bound passed: a closed window, a dedup key past its
//!   retention), so that compaction removes it and a restore does not read it.
//!
//! The records of an epoch are also kept beside its write-ahead log
//! (`<epoch>.changelog`), so a recovery that redoes the epoch's commit writes them again.

use std::collections::BTreeMap;

use connectd_sdk::{Changelog, ChangelogRecord};
use serde_json::Value;

use super::state_store::StateStore;
use super::PipelineError;

/// The first byte of a task's metadata record.
pub const META: u8 = 0;
/// The first byte of a task table's key.
pub const DATA: u8 = 1;

/// The changelog topic of a pipeline's transform.
pub fn topic(pipeline: &str, transform: &str) -> String {
    format!("connectd-{pipeline}-{transform}-changelog")
}

/// A task's partition of the changelog: its input partition (see
/// `partition_tasks::task_of`: the low 16 bits).
pub fn partition_of(task: u32) -> u32 {
    task & 0xffff
}

fn key(tag: u8, task: u32, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(5 + rest.len());
    k.push(tag);
    k.extend_from_slice(&task.to_be_bytes());
    k.extend_from_slice(rest);
    k
}

/// Builds the changelog records of a checkpoint from the state store: a task's changes,
/// a tombstone for each key its bound's rise forgot (else compaction would keep them
/// for good), and its metadata.
#[derive(Clone)]
pub struct ChangelogWriter {
    pub pipeline: String,
    pub store: StateStore,
}

impl ChangelogWriter {
    /// Checkpoint `id`'s records, by transform: each task table's changes of the epoch,
    /// then its metadata. `snapshots`: every transform's snapshot of `id` (a transform
    /// run per partition keeps its tasks' under `per_partition`).
    pub fn changelogs(
        &self,
        id: u64,
        snapshots: &BTreeMap<String, Value>,
    ) -> Result<Vec<Changelog>, PipelineError> {
        let mut by_transform: BTreeMap<String, Changelog> = BTreeMap::new();
        for delta in self.store.task_deltas(id)? {
            let log = by_transform
                .entry(delta.transform.clone())
                .or_insert_with(|| Changelog {
                    topic: topic(&self.pipeline, &delta.transform),
                    partitions: 1,
                    records: Vec::new(),
                });
            let partition = partition_of(delta.task);
            log.partitions = log.partitions.max(partition + 1);
            for k in &delta.forgotten {
                log.records.push(ChangelogRecord {
                    partition,
                    key: key(DATA, delta.task, k),
                    value: None,
                });
            }
            for (k, v) in delta.changes.iter().flat_map(|d| d.iter()) {
                log.records.push(ChangelogRecord {
                    partition,
                    key: key(DATA, delta.task, k),
                    value: v.as_ref().map(|v| v.to_vec()),
                });
            }
            let saved = &snapshots
                .get(&delta.transform)
                .and_then(|s| s.get(super::partition_tasks::SNAPSHOT_KEY))
                .and_then(|tasks| tasks.get(delta.task.to_string()));
            let meta = serde_json::json!({
                "checkpoint": id,
                "lane": saved.and_then(|s| s.get("lane")).cloned().unwrap_or(Value::Null),
                "state": saved.and_then(|s| s.get("state")).cloned().unwrap_or(Value::Null),
                "bound": hex(&delta.bound),
            });
            log.records.push(ChangelogRecord {
                partition,
                key: key(META, delta.task, &[]),
                value: Some(meta.to_string().into_bytes()),
            });
        }
        Ok(by_transform.into_values().collect())
    }
}

/// Whether a changelog holds a table's changes, not only its tasks' metadata.
pub fn holds_changes(log: &Changelog) -> bool {
    log.records.iter().any(|r| r.key.first() == Some(&DATA))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The file form of an epoch's changelogs: a magic, the logs, then a CRC-32 of all
/// before it, so a damaged file is an error rather than other state.
const MAGIC: &[u8; 8] = b"CDCLOG01";

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

pub fn encode(logs: &[Changelog]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&(logs.len() as u32).to_le_bytes());
    for log in logs {
        put_bytes(&mut out, log.topic.as_bytes());
        out.extend_from_slice(&log.partitions.to_le_bytes());
        out.extend_from_slice(&(log.records.len() as u64).to_le_bytes());
        for r in &log.records {
            out.extend_from_slice(&r.partition.to_le_bytes());
            put_bytes(&mut out, &r.key);
            match &r.value {
                Some(v) => {
                    out.push(1);
                    put_bytes(&mut out, v);
                }
                None => out.push(0),
            }
        }
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Reads what `encode` wrote; the error says what is wrong.
pub fn decode(bytes: &[u8]) -> Result<Vec<Changelog>, String> {
    let body_len = bytes
        .len()
        .checked_sub(4)
        .filter(|&n| n >= MAGIC.len())
        .ok_or("too short to be a changelog file")?;
    let (body, crc) = bytes.split_at(body_len);
    let crc = u32::from_le_bytes(crc.try_into().map_err(|_| "no checksum")?);
    if crc32fast::hash(body) != crc || !body.starts_with(MAGIC) {
        return Err("the checksum does not match (the file is damaged)".into());
    }
    let mut r = Reader(&body[MAGIC.len()..]);
    let n = r.u32()?;
    let mut logs = Vec::new();
    for _ in 0..n {
        let topic = String::from_utf8(r.bytes()?.to_vec()).map_err(|e| e.to_string())?;
        let partitions = r.u32()?;
        let count = r.u64()?;
        let mut records = Vec::new();
        for _ in 0..count {
            let partition = r.u32()?;
            let key = r.bytes()?.to_vec();
            let value = match r.take(1)?[0] {
                0 => None,
                _ => Some(r.bytes()?.to_vec()),
            };
            records.push(ChangelogRecord {
                partition,
                key,
                value,
            });
        }
        logs.push(Changelog {
            topic,
            partitions,
            records,
        });
    }
    Ok(logs)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("cut short".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().map_err(|_| "cut short")?,
        ))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().map_err(|_| "cut short")?,
        ))
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changelogs_survive_their_file_form_and_damage_is_an_error() {
        let logs = vec![Changelog {
            topic: "connectd-p-once-changelog".into(),
            partitions: 4,
            records: vec![
                ChangelogRecord {
                    partition: 3,
                    key: key(DATA, 3, b"k[1]"),
                    value: Some(b"v".to_vec()),
                },
                ChangelogRecord {
                    partition: 3,
                    key: key(DATA, 3, b"k[2]"),
                    value: None,
                },
            ],
        }];
        let bytes = encode(&logs);
        assert_eq!(decode(&bytes).unwrap(), logs);
        let mut damaged = bytes.clone();
        damaged[12] ^= 1;
        assert!(decode(&damaged).unwrap_err().contains("checksum"));
        assert!(decode(&bytes[..bytes.len() - 3]).is_err());
    }
}
