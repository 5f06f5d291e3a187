use std::sync::{Arc, Mutex};

use connectd_sdk::state::{KeyedState, MemoryState};
use connectd_sdk::{lanes, Batch, ConnectorError, Emitter, Record, Transform, Value};

use super::*;

/// Counts records per key in its keyed state and emits each record's running count;
/// its snapshot is how many records it saw.
#[derive(Default)]
struct CountByKey {
    state: Option<Box<dyn KeyedState>>,
    seen: u64,
    /// Every `on_lanes` it was told, shared with the test.
    told: Told,
}

type Told = Arc<Mutex<Vec<(u32, Vec<u64>)>>>;

impl Transform for CountByKey {
    fn process(&mut self, _: usize, batch: Batch, out: &mut Emitter) -> Result<(), ConnectorError> {
        let state = self.state.as_mut().expect("state attached");
        for r in batch.iter() {
            let key = r.key.to_string();
            let n = state
                .get(key.as_bytes())?
                .map_or(0, |v| u64::from_le_bytes(v.try_into().unwrap()))
                + 1;
            state.put(key.as_bytes(), &n.to_le_bytes());
            self.seen += 1;
            let mut o = Record::new(Value::Int(n as i64));
            o.key = r.key.clone();
            out.emit(o);
        }
        Ok(())
    }

    fn on_lanes(&mut self, origin: u32, lanes: &[u64], _: &mut Emitter) {
        self.told.lock().unwrap().push((origin, lanes.to_vec()));
    }

    fn keeps_lanes(&self) -> bool {
        false
    }

    fn attach_state(&mut self, state: Box<dyn KeyedState>) -> bool {
        self.state = Some(state);
        true
    }

    fn snapshot(&mut self) -> Result<serde_json::Value, ConnectorError> {
        Ok(serde_json::json!({ "seen": self.seen }))
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), ConnectorError> {
        self.seen = state["seen"].as_u64().unwrap_or(0);
        Ok(())
    }
}

/// The tables opened, by task, with the share of the budget each was given.
type Opened = Arc<Mutex<Vec<(u32, usize)>>>;

fn rebuild(told: Told) -> Rebuild<dyn Transform> {
    Rebuild(Arc::new(move || {
        Some(Box::new(CountByKey {
            told: told.clone(),
            ..CountByKey::default()
        }) as Box<dyn Transform>)
    }))
}

fn per_task() -> (PerTask, Opened, Told) {
    let opened: Opened = Default::default();
    let told: Told = Default::default();
    let log = opened.clone();
    let open: TableOpener = Box::new(move |task, shares| {
        log.lock().unwrap().push((task, shares));
        Ok(Box::new(MemoryState::default()))
    });
    let t = PerTask::new(
        "count".into(),
        &CountByKey::default(),
        rebuild(told.clone()),
        open,
    );
    (t, opened, told)
}

fn batch(lane: u64, keys: &[&str]) -> Batch {
    Arc::new(
        keys.iter()
            .map(|k| Record {
                key: Value::from(*k),
                lane,
                ..Record::default()
            })
            .collect(),
    )
}

fn counts(out: &Emitter) -> Vec<(u64, String, i64)> {
    out.records
        .iter()
        .map(|r| match r.value {
            Value::Int(n) => (r.lane, r.key.to_string(), n),
            _ => panic!("not a count"),
        })
        .collect()
}

#[test]
fn each_partition_has_its_own_state_and_output_keeps_its_lane() {
    let (mut t, opened, told) = per_task();
    let (a, b) = (lanes::global(7, 0), lanes::global(7, 1));
    let mut out = Emitter::default();
    t.on_lanes(7, &[a, b], &mut out);
    assert_eq!(
        *opened.lock().unwrap(),
        vec![(0, 2), (1, 2)],
        "a table per partition, sharing the budget by two"
    );
    assert_eq!(
        *told.lock().unwrap(),
        vec![(7, vec![a]), (7, vec![b])],
        "an instance is told of its own lane only"
    );
    t.process(0, batch(a, &["x", "x"]), &mut out).unwrap();
    t.process(0, batch(b, &["x"]), &mut out).unwrap();
    // A batch of mixed lanes is split by lane.
    let mut mixed = batch(a, &["x"]).to_vec();
    mixed.extend(batch(b, &["x", "y"]).iter().cloned());
    t.process(0, Arc::new(mixed), &mut out).unwrap();
    assert_eq!(
        counts(&out),
        vec![
            (a, "x".into(), 1),
            (a, "x".into(), 2),
            (b, "x".into(), 1),
            (a, "x".into(), 3),
            (b, "x".into(), 2),
            (b, "y".into(), 1),
        ],
        "one key counted apart in each lane; a transform of a new stream keeps the input's lane"
    );
    assert!(t.keeps_lanes());
}

#[test]
fn a_lane_met_before_it_is_announced_gets_its_instance() {
    let (mut t, opened, _) = per_task();
    let lane = lanes::global(3, 5);
    let mut out = Emitter::default();
    t.process(0, batch(lane, &["k"]), &mut out).unwrap();
    assert_eq!(*opened.lock().unwrap(), vec![(5, 1)]);
    assert_eq!(counts(&out), vec![(lane, "k".into(), 1)]);
}

#[test]
fn the_snapshot_holds_every_lane_and_restores_each_into_its_own_instance() {
    let (mut t, _, _) = per_task();
    let (a, b) = (lanes::global(1, 0), lanes::global(1, 2));
    let mut out = Emitter::default();
    t.process(0, batch(a, &["x", "y"]), &mut out).unwrap();
    t.process(0, batch(b, &["x"]), &mut out).unwrap();
    let snap = t.snapshot().unwrap();
    assert_eq!(snap["per_partition"]["0"]["state"]["seen"], 2);
    assert_eq!(snap["per_partition"]["2"]["state"]["seen"], 1);
    assert_eq!(snap["per_partition"]["2"]["lane"], b);
    check_snapshot("count", &snap, true).unwrap();

    let (mut again, opened, _) = per_task();
    again.restore(snap.clone()).unwrap();
    assert_eq!(
        opened
            .lock()
            .unwrap()
            .iter()
            .map(|(task, _)| *task)
            .collect::<Vec<_>>(),
        vec![0, 2],
        "a table opened for each partition of the checkpoint"
    );
    assert_eq!(again.snapshot().unwrap(), snap);
}

#[test]
fn a_checkpoint_of_the_other_shape_is_refused_with_the_fix() {
    let split = serde_json::json!({ "per_partition": {} });
    let whole = serde_json::json!({ "seen": 3 });
    let e = check_snapshot("w", &split, false).unwrap_err();
    assert!(
        e.message
            .contains("per partition, but `state.per_partition` is off"),
        "{e}"
    );
    let e = check_snapshot("w", &whole, true).unwrap_err();
    assert!(
        e.message
            .contains("as one, but `state.per_partition` is on"),
        "{e}"
    );
    assert!(e.message.contains("reset the pipeline's state"), "{e}");
    check_snapshot("w", &whole, false).unwrap();
}

#[test]
fn an_instance_that_cannot_be_made_fails_the_next_call() {
    let open: TableOpener =
        Box::new(|_, _| Err(PipelineError::new("w", "cannot open a table in /x")));
    let mut t = PerTask::new(
        "w".into(),
        &CountByKey::default(),
        rebuild(Told::default()),
        open,
    );
    let mut out = Emitter::default();
    t.on_lanes(1, &[lanes::global(1, 0)], &mut out);
    let e = t.snapshot().unwrap_err();
    assert!(e.to_string().contains("cannot open a table"), "{e}");
}

/// A join's inputs: partition 1 of the left source and partition 1 of the right meet
/// in one instance (co-partitioned topics), and an instance made before the right
/// source declared its lanes waits for it, as the whole transform would.
#[test]
fn the_same_partition_of_two_sources_is_one_task_that_waits_for_both() {
    let (mut t, opened, told) = per_task();
    let (left, right) = (7u32, 9u32);
    let pending = lanes::global(right, lanes::PENDING);
    let mut out = Emitter::default();
    t.on_lanes(right, &[pending], &mut out);
    t.on_lanes(
        left,
        &[lanes::global(left, 0), lanes::global(left, 1)],
        &mut out,
    );
    assert_eq!(
        told.lock().unwrap().clone(),
        vec![
            (right, vec![pending]),
            (right, vec![pending]),
            (left, vec![lanes::global(left, 0)]),
            (left, vec![lanes::global(left, 1)]),
        ],
        "each new instance first told of the origin it waits for, then of its lane"
    );
    told.lock().unwrap().clear();
    t.on_lanes(right, &[lanes::global(right, 1)], &mut out);
    assert_eq!(
        told.lock().unwrap().clone(),
        vec![(right, vec![]), (right, vec![lanes::global(right, 1)])],
        "partition 0 has no lane of the right source; partition 1 has its own"
    );
    t.process(0, batch(lanes::global(left, 1), &["k"]), &mut out)
        .unwrap();
    t.process(1, batch(lanes::global(right, 1), &["k"]), &mut out)
        .unwrap();
    assert_eq!(
        opened.lock().unwrap().len(),
        2,
        "two partitions, two tables"
    );
    assert_eq!(
        counts(&out),
        vec![
            (lanes::global(left, 1), "k".into(), 1),
            (lanes::global(left, 1), "k".into(), 2),
        ],
        "one state for partition 1 of both; output in the lane that made the task"
    );
}

/// With a handover: instances only for partitions read, each restored from the
/// changelog first; a partition no longer declared is snapshotted a last time at the
/// next barrier, then retired, and comes back restored when it is read again.
#[test]
fn with_a_handover_a_partition_is_restored_before_its_first_record_and_retired_after_its_last_snapshot(
) {
    let (t, opened, told) = per_task();
    let restored: Arc<Mutex<Vec<u32>>> = Default::default();
    let retired: Arc<Mutex<Vec<u32>>> = Default::default();
    let (a, b) = (lanes::global(7, 0), lanes::global(7, 1));
    let log = restored.clone();
    let restore: TaskRestorer = Box::new(move |task| {
        log.lock().unwrap().push(task);
        // Partition 1 was another worker's, which had seen 5 records.
        Ok((task == 1).then(|| (b, serde_json::json!({ "seen": 5 }))))
    });
    let gone = retired.clone();
    let mut t = t.with_handover(Handover {
        restore,
        retire: Box::new(move |task| gone.lock().unwrap().push(task)),
    });
    let mut out = Emitter::default();
    // Declared (an awaited partition, maybe another worker's): no instance yet.
    t.on_lanes(7, &[a, b], &mut out);
    assert!(opened.lock().unwrap().is_empty());
    t.process(0, batch(b, &["x"]), &mut out).unwrap();
    t.process(0, batch(a, &["x"]), &mut out).unwrap();
    assert_eq!(*restored.lock().unwrap(), vec![1, 0]);
    assert!(
        told.lock().unwrap().contains(&(7, vec![b])),
        "a restored instance is told its own lane: {:?}",
        told.lock().unwrap()
    );
    let snapshot = t.snapshot().unwrap();
    assert_eq!(snapshot["per_partition"]["1"]["state"]["seen"], 6);
    // Partition 1 is revoked: its last snapshot still holds it, then it is retired.
    t.on_lanes(7, &[a], &mut out);
    assert!(retired.lock().unwrap().is_empty());
    t.process(0, batch(a, &["y"]), &mut out).unwrap();
    let last = t.snapshot().unwrap();
    assert_eq!(last["per_partition"]["1"]["state"]["seen"], 6);
    assert_eq!(*retired.lock().unwrap(), vec![1]);
    let after = t.snapshot().unwrap();
    assert!(after["per_partition"].get("1").is_none(), "{after}");
    // Assigned again: restored again, not the old instance.
    t.on_lanes(7, &[a, b], &mut out);
    t.process(0, batch(b, &["z"]), &mut out).unwrap();
    assert_eq!(*restored.lock().unwrap(), vec![1, 0, 1]);
    assert_eq!(
        t.snapshot().unwrap()["per_partition"]["1"]["state"]["seen"],
        6
    );
    // A checkpoint's snapshot is not restored: each partition comes from its changelog.
    let (fresh, opened_fresh, _) = per_task();
    let mut fresh = fresh.with_handover(Handover {
        restore: Box::new(|_| Ok(None)),
        retire: Box::new(|_| {}),
    });
    fresh.restore(last).unwrap();
    assert!(opened_fresh.lock().unwrap().is_empty());
}
