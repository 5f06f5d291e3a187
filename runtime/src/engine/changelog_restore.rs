//! Restoring a transform's partition from its changelog (see `engine::changelog`), as a
//! Kafka Streams task restores its store: when a worker is assigned the partition (it
//! may have been another worker's), or has lost its state store, the task's table and
//! snapshot come back from the changelog compacted as Kafka compacts it: the last
//! record of each key.

use std::collections::BTreeMap;

use connectd_sdk::ChangelogRecord;
use fjall::Slice;
use serde_json::Value;

use super::changelog::{DATA, META};
use super::state_store::StateStore;

/// A task as its changelog left it.
#[derive(Debug, PartialEq)]
pub struct Restored {
    /// The task's lane and snapshot (`None`: the changelog has no metadata for it, so
    /// it starts empty).
    pub saved: Option<(u64, Value)>,
    pub keys: usize,
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Writes the table of `transform`'s task `task` as changelog `records` (every committed
/// record of its changelog partition, in order) leave it, in place of what the store
/// held of it, and returns its lane and snapshot.
pub fn restore_task(
    store: &StateStore,
    transform: &str,
    task: u32,
    records: Vec<ChangelogRecord>,
) -> Result<Restored, String> {
    let mut latest: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
    for r in records {
        if r.key.len() < 5 || ![META, DATA].contains(&r.key[0]) {
            return Err(format!(
                "a record in partition {} is not a connectd changelog record (key {:?})",
                r.partition,
                String::from_utf8_lossy(&r.key)
            ));
        }
        // Another task's record, in a topic with fewer partitions than tasks.
        if r.key[1..5] != task.to_be_bytes() {
            continue;
        }
        latest.insert(r.key, r.value);
    }
    let mut meta: Option<Value> = None;
    let mut entries: Vec<(Slice, Option<Slice>)> = Vec::new();
    for (key, value) in latest {
        match (key[0], value) {
            (META, Some(v)) => {
                meta = Some(
                    serde_json::from_slice(&v)
                        .map_err(|e| format!("partition {task}'s metadata is not JSON: {e}"))?,
                );
            }
            (DATA, Some(v)) => entries.push((Slice::from(&key[5..]), Some(Slice::from(v)))),
            _ => {} // a deleted key
        }
    }
    let Some(meta) = meta else {
        if !entries.is_empty() {
            return Err(format!("partition {task} has state but no metadata record"));
        }
        store
            .rebuild_task_table(transform, task, &[], &[])
            .map_err(|e| e.message)?;
        return Ok(Restored {
            saved: None,
            keys: 0,
        });
    };
    let bound = meta["bound"]
        .as_str()
        .and_then(unhex)
        .ok_or_else(|| format!("partition {task}'s bound is not hex: {}", meta["bound"]))?;
    let lane = meta["lane"]
        .as_u64()
        .ok_or_else(|| format!("partition {task}'s metadata has no lane: {meta}"))?;
    // Keys below the bound are forgotten: the log keeps them until compaction.
    entries.retain(|(k, _)| **k >= *bound);
    store
        .rebuild_task_table(transform, task, &entries, &bound)
        .map_err(|e| e.message)?;
    Ok(Restored {
        saved: Some((lane, meta["state"].clone())),
        keys: entries.len(),
    })
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
        // Stale local state of the task: replaced, not merged.
        store
            .rebuild_task_table(
                "w",
                2,
                &[(Slice::from(&b"stale"[..]), Some(Slice::from(&b"1"[..])))],
                b"",
            )
            .unwrap();
        let records = vec![
            record(DATA, 2, b"a", Some(b"1")),
            record(DATA, 2, b"b", Some(b"1")),
            record(DATA, 2, b"a", Some(b"2")),
            record(DATA, 2, b"b", None),
            // The bound is "0" (hex 30): a key at it stays, one below it is forgotten.
            record(DATA, 2, b"0", Some(b"old")),
            record(DATA, 2, b"\x01", Some(b"forgotten")),
            record(META, 2, b"", Some(&meta(4, "30"))),
            // Task 6 shares the changelog partition (a topic of 4 partitions).
            record(DATA, 6, b"z", Some(b"1")),
            record(META, 6, b"", Some(&meta(4, ""))),
        ];
        let restored = restore_task(&store, "w", 2, records).unwrap();
        assert_eq!(
            restored,
            Restored {
                saved: Some((7, serde_json::json!({"n": 1}))),
                keys: 2
            }
        );
        let (table, _) = store.task_table("w", 2, None, 1).unwrap();
        use connectd_sdk::state::KeyedState;
        assert_eq!(table.get(b"a").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(table.get(b"b").unwrap(), None);
        assert_eq!(table.get(b"0").unwrap().as_deref(), Some(&b"old"[..]));
        assert_eq!(table.get(b"\x01").unwrap(), None);
        assert_eq!(table.get(b"z").unwrap(), None);
        assert_eq!(table.get(b"stale").unwrap(), None);

        let fresh = restore_task(&store, "w", 3, Vec::new()).unwrap();
        assert_eq!(
            fresh,
            Restored {
                saved: None,
                keys: 0
            }
        );
        let orphan = vec![record(DATA, 1, b"k", Some(b"v"))];
        let e = restore_task(&store, "w", 1, orphan).unwrap_err();
        assert!(e.contains("partition 1 has state but no metadata"), "{e}");
    }
}
