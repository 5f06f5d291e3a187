//! Rebuilding a transform's partitions from its changelog (see `engine::changelog`):
//! when the state store is gone but the sink that carries the changelogs has a
//! committed checkpoint (the recovery restores that checkpoint, `Restore::Sink`), each
//! task's table and snapshot come back from the changelog, compacted as Kafka compacts
//! it: the last record of each key.

use std::collections::BTreeMap;

use connectd_sdk::ChangelogRecord;
use fjall::Slice;
use serde_json::Value;

use super::changelog::{DATA, META};
use super::state_store::StateStore;

/// What a changelog gave back.
#[derive(Debug)]
pub struct Rebuilt {
    /// The transform's snapshot of the checkpoint, per partition.
    pub snapshot: Value,
    pub tasks: usize,
    pub keys: usize,
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Writes the tables of `transform`'s tasks as changelog `records` (every committed
/// record, in order per partition) leave them at checkpoint `checkpoint`, and returns
/// the snapshot to restore it with; `None` when the changelog holds nothing.
pub fn rebuild(
    store: &StateStore,
    transform: &str,
    checkpoint: u64,
    records: Vec<ChangelogRecord>,
) -> Result<Option<Rebuilt>, String> {
    let mut latest: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
    for r in records {
        if r.key.len() < 5 || ![META, DATA].contains(&r.key[0]) {
            return Err(format!(
                "a record in partition {} is not a connectd changelog record (key {:?})",
                r.partition,
                String::from_utf8_lossy(&r.key)
            ));
        }
        latest.insert(r.key, r.value);
    }
    let mut metas: BTreeMap<u32, Value> = BTreeMap::new();
    let mut tables: BTreeMap<u32, Vec<(Slice, Option<Slice>)>> = BTreeMap::new();
    for (key, value) in latest {
        let task = u32::from_be_bytes([key[1], key[2], key[3], key[4]]);
        match (key[0], value) {
            (META, Some(v)) => {
                let meta = serde_json::from_slice(&v)
                    .map_err(|e| format!("partition {task}'s metadata is not JSON: {e}"))?;
                metas.insert(task, meta);
            }
            (DATA, Some(v)) => tables
                .entry(task)
                .or_default()
                .push((Slice::from(&key[5..]), Some(Slice::from(v)))),
            _ => {} // a deleted key
        }
    }
    if metas.is_empty() && tables.is_empty() {
        return Ok(None);
    }
    if let Some(task) = tables.keys().find(|t| !metas.contains_key(t)) {
        return Err(format!("partition {task} has state but no metadata record"));
    }
    let (mut per_task, mut keys) = (serde_json::Map::new(), 0);
    for (task, meta) in &metas {
        if meta["checkpoint"].as_u64() != Some(checkpoint) {
            return Err(format!(
                "partition {task} is at checkpoint {}, the sink committed checkpoint {checkpoint}",
                meta["checkpoint"]
            ));
        }
        let bound = meta["bound"]
            .as_str()
            .and_then(unhex)
            .ok_or_else(|| format!("partition {task}'s bound is not hex: {}", meta["bound"]))?;
        let mut entries = tables.remove(task).unwrap_or_default();
        // Keys below the bound are forgotten: the log keeps them until compaction.
        entries.retain(|(k, _)| **k >= *bound);
        keys += entries.len();
        store
            .rebuild_task_table(transform, *task, &entries, &bound)
            .map_err(|e| e.message)?;
        per_task.insert(
            task.to_string(),
            serde_json::json!({"lane": meta["lane"], "state": meta["state"]}),
        );
    }
    Ok(Some(Rebuilt {
        snapshot: serde_json::json!({ super::partition_tasks::SNAPSHOT_KEY: per_task }),
        tasks: metas.len(),
        keys,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(tag: u8, task: u32, rest: &[u8], value: Option<&[u8]>) -> ChangelogRecord {
        let mut key = vec![tag];
        key.extend_from_slice(&task.to_be_bytes());
        key.extend_from_slice(rest);
        ChangelogRecord {
            partition: task,
            key,
            value: value.map(<[u8]>::to_vec),
        }
    }

    fn meta(checkpoint: u64, bound: &str) -> Vec<u8> {
        serde_json::json!({"checkpoint": checkpoint, "lane": 7, "state": {"n": 1}, "bound": bound})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn the_last_value_of_each_key_above_the_bound_comes_back_with_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path(), 1 << 20).unwrap();
        let records = vec![
            record(DATA, 2, b"a", Some(b"1")),
            record(DATA, 2, b"b", Some(b"1")),
            record(DATA, 2, b"a", Some(b"2")),
            record(DATA, 2, b"b", None),
            // The bound is "0" (hex 30): a key at it stays, one below it is forgotten.
            record(DATA, 2, b"0", Some(b"old")),
            record(DATA, 2, b"\x01", Some(b"forgotten")),
            record(META, 2, b"", Some(&meta(4, "30"))),
        ];
        let rebuilt = rebuild(&store, "w", 4, records).unwrap().unwrap();
        assert_eq!((rebuilt.tasks, rebuilt.keys), (1, 2));
        assert_eq!(
            rebuilt.snapshot,
            serde_json::json!({"per_partition": {"2": {"lane": 7, "state": {"n": 1}}}})
        );
        let (table, _) = store.task_table("w", 2, None, 1).unwrap();
        use connectd_sdk::state::KeyedState;
        assert_eq!(table.get(b"a").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(table.get(b"b").unwrap(), None);
        assert_eq!(table.get(b"0").unwrap().as_deref(), Some(&b"old"[..]));
        assert_eq!(table.get(b"\x01").unwrap(), None);

        let stale = vec![record(META, 1, b"", Some(&meta(3, "")))];
        let e = rebuild(&store, "w", 4, stale).unwrap_err();
        assert!(e.contains("partition 1 is at checkpoint 3"), "{e}");
        assert!(rebuild(&store, "w", 4, Vec::new()).unwrap().is_none());
    }
}
