#![allow(clippy::unwrap_used)]
use super::*;
use connectd_sdk::state::KeyedState;

fn manifest(id: u64) -> Manifest {
    Manifest {
        id,
        state: PipelineState::default(),
    }
}

#[test]
fn changes_reach_the_store_only_with_their_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = StateStore::open(dir.path(), 64 << 20).unwrap();
        assert_eq!(store.latest().unwrap(), None);
        let (mut t, freezer) = store.table("dedup", None).unwrap();
        t.put(b"a", b"1");
        t.put(b"b", b"2");
        freezer.freeze(1);
        t.put(b"c", b"3"); // epoch 2: never completed
        t.delete(b"a");
        assert_eq!(t.get(b"a").unwrap(), None);
        assert_eq!(t.get(b"b").unwrap(), Some(b"2".to_vec()));
        store.complete(&manifest(1)).unwrap();
        assert_eq!(
            t.get(b"b").unwrap(),
            Some(b"2".to_vec()),
            "read from the store now"
        );
        assert_eq!(
            t.range(b"a", b"z", 10).unwrap(),
            [
                (b"b".to_vec(), b"2".to_vec()),
                (b"c".to_vec(), b"3".to_vec())
            ]
        );
    }
    // Reopened as after a crash: checkpoint 1, without epoch 2's changes.
    let store = StateStore::open(dir.path(), 64 << 20).unwrap();
    assert_eq!(store.latest().unwrap(), Some(manifest(1)));
    let (t, _) = store.table("dedup", None).unwrap();
    assert_eq!(t.get(b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(t.get(b"c").unwrap(), None);
    assert_eq!(
        t.range(b"a", b"c", 1).unwrap(),
        [(b"a".to_vec(), b"1".to_vec())]
    );
}

#[test]
fn a_given_up_checkpoint_is_rewound_durably() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = StateStore::open(dir.path(), 64 << 20).unwrap();
        store.complete(&manifest(7)).unwrap();
        store.rewind(Some(&manifest(6))).unwrap();
        assert_eq!(store.latest().unwrap(), Some(manifest(6)));
    }
    let store = StateStore::open(dir.path(), 64 << 20).unwrap();
    assert_eq!(store.latest().unwrap(), Some(manifest(6)), "after a reopen");
    // The next checkpoint takes the given-up id again.
    store.complete(&manifest(7)).unwrap();
    assert_eq!(store.latest().unwrap(), Some(manifest(7)));
    // Giving up the very first checkpoint: none left.
    store.rewind(None).unwrap();
    assert_eq!(store.latest().unwrap(), None);
}

#[test]
fn range_merges_the_overlay_with_the_store_in_key_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path(), 64 << 20).unwrap();
    let (mut t, freezer) = store.table("w", None).unwrap();
    let mut model = connectd_sdk::state::MemoryState::default();
    // Three epochs of random puts and deletes; the first two complete.
    let mut seed = 7u64;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as u8 % 40
    };
    for epoch in 1..=3u64 {
        for _ in 0..200 {
            let k = [b'k', next()];
            if next() % 4 == 0 {
                t.delete(&k);
                model.delete(&k);
            } else {
                let v = [next()];
                t.put(&k, &v);
                model.put(&k, &v);
            }
        }
        freezer.freeze(epoch);
        if epoch < 3 {
            store.complete(&manifest(epoch)).unwrap();
        }
        for limit in [1, 5, 100] {
            assert_eq!(
                t.range(b"k\x05", b"k\x20", limit).unwrap(),
                model.range(b"k\x05", b"k\x20", limit).unwrap(),
                "epoch {epoch}, limit {limit}"
            );
        }
    }
}

#[test]
fn forgotten_keys_vanish_for_reads_at_once_and_from_disk_after_their_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let keys = |t: &StoreTable| t.range(&[0], &[255], 1000).unwrap().len();
    {
        let store = StateStore::open(dir.path(), 64 << 20).unwrap();
        let (mut t, freezer) = store.table("w", None).unwrap();
        for i in 0..100u8 {
            t.put(&[i], b"v");
        }
        freezer.freeze(1);
        store.complete(&manifest(1)).unwrap();
        t.forget_below(&[50]);
        assert_eq!(t.get(&[10]).unwrap(), None);
        assert_eq!(t.get(&[60]).unwrap(), Some(b"v".to_vec()));
        assert_eq!(keys(&t), 50);
        freezer.freeze(2); // never completed
    }
    {
        // Back at checkpoint 1: nothing forgotten.
        let store = StateStore::open(dir.path(), 64 << 20).unwrap();
        let (mut t, freezer) = store.table("w", None).unwrap();
        assert_eq!(t.get(&[10]).unwrap(), Some(b"v".to_vec()));
        t.forget_below(&[50]);
        t.put(&[20], b"too old"); // below the bound: invisible too
        assert_eq!(t.get(&[20]).unwrap(), None);
        freezer.freeze(2);
        store.complete(&manifest(2)).unwrap();
    }
    let store = StateStore::open(dir.path(), 64 << 20).unwrap();
    let (t, _) = store.table("w", None).unwrap();
    assert_eq!(t.get(&[10]).unwrap(), None);
    assert_eq!(keys(&t), 50);
    // A compaction drops them from disk (no tombstone was written for them).
    t.gauges().ks.rotate_memtable_and_wait().unwrap();
    t.gauges().ks.major_compact().unwrap();
    let on_disk = t.gauges().ks.range::<&[u8], _>(..).count();
    assert_eq!(on_disk, 50);
}

#[test]
fn a_damaged_store_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = StateStore::open(dir.path(), 64 << 20).unwrap();
        let (mut t, freezer) = store.table("d", None).unwrap();
        for i in 0..1000u32 {
            t.put(&i.to_be_bytes(), b"value");
        }
        freezer.freeze(1);
        store.complete(&manifest(1)).unwrap();
    }
    damage(&dir.path().join("state"));
    let opened = StateStore::open(dir.path(), 64 << 20).and_then(|s| {
        s.latest()?;
        let (t, _) = s.table("d", None)?;
        t.get(&5u32.to_be_bytes())
            .map_err(|e| PipelineError::new("state", e.to_string()))?;
        Ok(())
    });
    let e = opened.unwrap_err().message;
    assert!(e.contains("state") && e.contains("reset"), "{e}");
}

#[test]
fn large_deltas_go_in_as_table_files_and_a_crash_around_their_commit_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let logs = DeltaLogs::new(dir.path());
    let key = |i: u32| i.to_be_bytes();
    let slice = |b: &[u8]| fjall::Slice::from(b);
    {
        let store = StateStore::open(dir.path(), 64 << 20).unwrap();
        let (mut t, freezer) = store.table("big", None).unwrap();
        for i in 0..INGEST_MIN_CHANGES as u32 + 100 {
            t.put(&key(i), b"one");
        }
        t.delete(&key(5));
        freezer.freeze(1);
        store.complete(&manifest(1)).unwrap();
        assert!(
            logs.list().unwrap().is_empty(),
            "the log goes once ingested"
        );
        assert_eq!(t.get(&key(7)).unwrap(), Some(b"one".to_vec()));
        assert_eq!(t.get(&key(5)).unwrap(), None);
        // In the table itself, not only in memory.
        assert_eq!(t.gauges().ks.get(key(7)).unwrap(), Some(slice(b"one")));
    }
    // A crash after checkpoint 2's log, before its manifest: the log is dropped.
    logs.write(2, [("t.big", &[(slice(&key(7)), Some(slice(b"two")))][..])])
        .unwrap();
    {
        let store = StateStore::open(dir.path(), 64 << 20).unwrap();
        assert_eq!(store.latest().unwrap(), Some(manifest(1)));
        let (_, freezer) = store.table("big", None).unwrap();
        assert!(logs.list().unwrap().is_empty());
        // Checkpoint 2 commits; a crash before its delta is ingested.
        freezer.freeze(2);
        store.complete(&manifest(2)).unwrap();
    }
    let changes = [
        (slice(&key(7)), Some(slice(b"two"))),
        (slice(&key(8)), None),
    ];
    let other = [(slice(b"o"), Some(slice(b"other")))];
    logs.write(2, [("t.big", &changes[..]), ("t.other", &other[..])])
        .unwrap();
    {
        let store = StateStore::open(dir.path(), 64 << 20).unwrap();
        let (o, _) = store.table("other", None).unwrap();
        assert_eq!(o.get(b"o").unwrap(), Some(b"other".to_vec()), "every table");
        let (t, _) = store.table("big", None).unwrap();
        assert_eq!(t.get(&key(7)).unwrap(), Some(b"two".to_vec()), "ingested");
        assert_eq!(t.get(&key(8)).unwrap(), None);
        assert_eq!(t.get(&key(9)).unwrap(), Some(b"one".to_vec()));
        assert!(logs.list().unwrap().is_empty());
    }
    // A damaged log of a committed checkpoint: the store refuses to open.
    logs.write(2, [("t.big", &changes[..])]).unwrap();
    let path = dir.path().join("state-deltas/2.log");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[6] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let e = StateStore::open(dir.path(), 64 << 20).unwrap_err().message;
    assert!(e.contains("2.log") && e.contains("damaged"), "{e}");
}

/// Overwrites the middle of every file under `dir` with garbage.
pub fn damage(dir: &Path) {
    for entry in walk(dir) {
        let mut bytes = std::fs::read(&entry).unwrap();
        if bytes.len() > 8 {
            let (mid, len) = (bytes.len() / 2, bytes.len());
            for b in &mut bytes[mid.saturating_sub(4)..(mid + 4).min(len)] {
                *b ^= 0x5a;
            }
            std::fs::write(&entry, bytes).unwrap();
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A task handed over: its last delta (the barrier after the retire) still goes to the
/// changelog and completes, then its table and data are gone; a later hold of the
/// partition opens it empty (to be rebuilt from the changelog).
#[test]
fn a_retired_task_table_logs_its_last_delta_then_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path(), 64 << 20).unwrap();
    let (mut kept, kept_freezer) = store.task_table("w", 0, None, 2).unwrap();
    let (mut gone, gone_freezer) = store.task_table("w", 1, None, 2).unwrap();
    store.task_in_use("w", &kept);
    store.task_in_use("w", &gone);
    assert_eq!(store.sizes()[0].partitions, 2);
    let freezers = super::super::state_table::Freezers::default();
    freezers.add(kept_freezer);
    freezers.add(gone_freezer);
    kept.put(b"a", b"1");
    gone.put(b"b", b"1");
    freezers.freeze(1);
    store.complete(&manifest(1)).unwrap();
    gone.put(b"c", b"2");
    store.retire_task_table("w", 1);
    drop(gone);
    freezers.freeze(2);
    let tasks = |id| -> Vec<(u32, usize)> {
        store
            .task_deltas(id)
            .unwrap()
            .iter()
            .map(|d| (d.task, d.changes.as_ref().map_or(0, |c| c.len())))
            .collect()
    };
    assert_eq!(tasks(2), vec![(0, 0), (1, 1)], "the last delta is logged");
    store.complete(&manifest(2)).unwrap();
    kept.put(b"d", b"1");
    freezers.freeze(3);
    assert_eq!(
        tasks(3),
        vec![(0, 1)],
        "nothing of the handed-over task after"
    );
    store.complete(&manifest(3)).unwrap();
    assert_eq!(store.sizes()[0].partitions, 1);
    let (again, _) = store.task_table("w", 1, None, 2).unwrap();
    assert_eq!(again.get(b"b").unwrap(), None, "its data went with it");
    assert_eq!(kept.get(b"a").unwrap(), Some(b"1".to_vec()));
}

#[test]
fn a_rising_bound_names_the_stored_keys_it_forgets_for_the_changelog() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path(), 64 << 20).unwrap();
    let (mut t, freezer) = store.task_table("once", 0, None, 1).unwrap();
    store.task_in_use("once", &t);
    let forgotten = |id| -> Vec<Vec<u8>> {
        let deltas = store.task_deltas(id).unwrap();
        deltas[0].forgotten.iter().map(|k| k.to_vec()).collect()
    };
    for k in [b"a1", b"b1", b"c1", b"d1"] {
        t.put(k, b"v");
    }
    freezer.freeze(1);
    assert!(forgotten(1).is_empty(), "nothing forgotten yet");
    store.complete(&manifest(1)).unwrap();
    // Epoch 2: the bound passes a1 and b1 (stored), and b9 is put and forgotten at
    // once (never logged: no tombstone).
    t.put(b"b9", b"v");
    t.forget_below(b"c");
    freezer.freeze(2);
    assert_eq!(forgotten(2), [b"a1".to_vec(), b"b1".to_vec()]);
    store.complete(&manifest(2)).unwrap();
    // The bound stays: nothing more.
    t.put(b"e1", b"v");
    freezer.freeze(3);
    assert!(forgotten(3).is_empty());
}
