//! Joins against results computed here by brute force over the inputs.

use std::collections::BTreeMap;
use std::sync::Arc;

use connectd_sdk::{Emitter, Object, Record, Transform, Value};
use serde_json::json;

use crate::test_config;

/// Deterministic pseudo-random numbers for test data.
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// (side, id, key, event time)
type Event = (usize, i64, i64, i64);

fn record(side: usize, id: i64, key: i64, t: i64) -> Record {
    let o: Object = if side == 0 {
        [
            ("sym", Value::Int(key)),
            ("lid", Value::Int(id)),
            ("ts", Value::Int(t)),
        ]
        .into_iter()
        .collect()
    } else {
        [
            ("sym", Value::Int(key)),
            ("rid", Value::Int(id)),
            ("ts", Value::Int(t)),
        ]
        .into_iter()
        .collect()
    };
    Record::new(Value::Object(o))
}

/// Both inputs interleaved in roughly time order (out of order by up to 400 ms).
fn events(seed: u64, n: i64) -> Vec<Event> {
    events_over(seed, n, 5)
}

/// Like `events`, over `keys` keys.
fn events_over(seed: u64, n: i64, keys: u64) -> Vec<Event> {
    let mut rng = Lcg(seed);
    (0..n)
        .map(|i| {
            let t = 10_000 + i * 100 - rng.below(400) as i64;
            (rng.below(2) as usize, i, rng.below(keys) as i64, t)
        })
        .collect()
}

fn merge(into: &mut Pairs, more: Pairs) {
    for (k, n) in more {
        *into.entry(k).or_default() += n;
    }
}

fn join(config: serde_json::Value) -> Box<dyn Transform> {
    test_config::build(super::build, config, &["stocks", "companies"]).unwrap()
}

fn int(r: &Record, f: &str) -> Option<i64> {
    match r.value.as_object().and_then(|o| o.get(f)) {
        Some(Value::Int(i)) => Some(*i),
        _ => None,
    }
}

/// (left id, right id or None) → how many times.
type Pairs = BTreeMap<(i64, Option<i64>), usize>;

fn run(t: &mut dyn Transform, input: &[Event], end: bool) -> Pairs {
    let mut out = Emitter::default();
    for &(side, id, key, ts) in input {
        let batch = Arc::new(vec![record(side, id, key, ts)]);
        t.process(side, batch, &mut out).unwrap();
    }
    if end {
        t.on_end(&mut out).unwrap();
    }
    assert!(out.bad.is_empty(), "{:?}", out.bad);
    assert_eq!(out.late_dropped, 0);
    let mut pairs = Pairs::new();
    for r in &out.records {
        *pairs
            .entry((int(r, "lid").unwrap(), int(r, "rid")))
            .or_default() += 1;
    }
    pairs
}

fn expected_window_join(input: &[Event], within: i64, left_outer: bool) -> Pairs {
    let mut pairs = Pairs::new();
    for &(ls, lid, lk, lt) in input.iter().filter(|e| e.0 == 0) {
        let _ = ls;
        let partners: Vec<i64> = input
            .iter()
            .filter(|&&(rs, _, rk, rt)| rs == 1 && rk == lk && (rt - lt).abs() <= within)
            .map(|e| e.1)
            .collect();
        for rid in &partners {
            *pairs.entry((lid, Some(*rid))).or_default() += 1;
        }
        if partners.is_empty() && left_outer {
            *pairs.entry((lid, None)).or_default() += 1;
        }
    }
    pairs
}

#[test]
fn windowed_inner_join_finds_every_pair_within_the_bound() {
    let input = events(1, 2000);
    let config = json!({"on": ["sym"], "within": "1s", "time": "ts", "grace": "500ms"});
    let got = run(join(config).as_mut(), &input, true);
    let want = expected_window_join(&input, 1000, false);
    assert!(want.len() > 1000, "{}", want.len());
    assert_eq!(got, want);
}

#[test]
fn windowed_left_join_emits_lonely_left_records_once() {
    let input = events(2, 2000);
    let config =
        json!({"on": "sym", "within": "150ms", "time": "ts", "grace": "500ms", "kind": "left"});
    let got = run(join(config).as_mut(), &input, true);
    let want = expected_window_join(&input, 150, true);
    assert!(want.keys().any(|k| k.1.is_none()) && want.keys().any(|k| k.1.is_some()));
    assert_eq!(got, want);
}

#[test]
fn windowed_state_stays_bounded_and_survives_a_restore() {
    let input = events(3, 3000);
    let config =
        json!({"on": ["sym"], "within": "1s", "time": "ts", "grace": "500ms", "kind": "left"});
    let whole = run(join(config.clone()).as_mut(), &input, true);
    let mut first = join(config.clone());
    let mut got = run(first.as_mut(), &input[..1234], false);
    let state = first.snapshot().unwrap();
    // Held: about (within + grace) / 100 ms per side, not the whole input.
    let held = state.to_string().matches("\"seq\"").count();
    assert!(held < 100, "{held} records held");
    let mut second = join(config);
    second.restore(state).unwrap();
    for (k, n) in run(second.as_mut(), &input[1234..], true) {
        *got.entry(k).or_default() += n;
    }
    assert_eq!(got, whole);
}

#[test]
fn a_join_over_many_keys_finds_every_pair_across_restores() {
    // Most records find no partner held: the presence filters skip their lookups and
    // must never skip one that has a partner. Restored twice: from a checkpoint that
    // says how long its records are held, and from one of an earlier version that
    // does not (its held records are then looked up in the store until they leave).
    let input = events_over(4, 10_000, 200);
    let config = json!({"on": ["sym"], "within": "1s", "time": "ts", "grace": "500ms"});
    let want = expected_window_join(&input, 1000, false);
    assert!(want.len() > 200, "{}", want.len());
    assert_eq!(run(join(config.clone()).as_mut(), &input, true), want);
    // Cut where a pair's records fall on both sides (ids are input positions), so each
    // restore has a held record to find.
    let cut_after = |from: usize| {
        (from..input.len())
            .find(|&at| {
                want.keys().any(|&(l, r)| {
                    let (a, b) = (l.min(r.unwrap_or(l)), l.max(r.unwrap_or(l)));
                    a < at as i64 && at as i64 <= b
                })
            })
            .unwrap()
    };
    let (one, two) = (cut_after(3000), cut_after(6000));
    let mut first = join(config.clone());
    let mut got = run(first.as_mut(), &input[..one], false);
    let mut second = join(config.clone());
    second.restore(first.snapshot().unwrap()).unwrap();
    merge(&mut got, run(second.as_mut(), &input[one..two], false));
    let mut earlier_version = second.snapshot().unwrap();
    let held_until = earlier_version
        .as_object_mut()
        .and_then(|o| o.remove("max_leaves_at"));
    assert!(held_until.is_some_and(|t| t.as_i64() > Some(600_000)));
    let mut third = join(config);
    third.restore(earlier_version).unwrap();
    merge(&mut got, run(third.as_mut(), &input[two..], true));
    assert_eq!(got, want);
}

#[test]
fn a_lagging_partition_finds_partners_the_memory_has_let_go() {
    // Held records stay in memory for `within + grace + out-of-orderness` after the
    // newest event time. The right side comes from a partition 3 s behind the left
    // one, so its partners are older than that and must come from the store.
    let mut rng = Lcg(6);
    let input: Vec<Event> = (0..4_000)
        .map(|i| {
            let side = rng.below(2) as usize;
            let t = 10_000 + i * 100 - if side == 1 { 3_000 } else { 0 };
            (side, i, rng.below(50) as i64, t)
        })
        .collect();
    let mut t = join(json!({"on": ["sym"], "within": "1s", "time": "ts", "grace": "0s"}));
    let mut out = Emitter::default();
    for &(side, id, key, ts) in &input {
        let mut r = record(side, id, key, ts);
        r.lane = 1 + side as u64;
        t.process(side, Arc::new(vec![r]), &mut out).unwrap();
    }
    t.on_end(&mut out).unwrap();
    assert_eq!(out.late_dropped + out.late_partition_behind, 0);
    let mut got = Pairs::new();
    for r in &out.records {
        *got.entry((int(r, "lid").unwrap(), int(r, "rid")))
            .or_default() += 1;
    }
    let want = expected_window_join(&input, 1000, false);
    assert!(want.len() > 300, "{}", want.len());
    assert_eq!(got, want);
}

#[test]
fn late_records_are_counted_or_sent_to_the_dlq() {
    let late = [(0, 1, 1, 50_000), (1, 2, 1, 40_000)];
    let mut t = join(json!({"on": ["sym"], "within": "1s", "time": "ts", "late": "dlq"}));
    let mut out = Emitter::default();
    for (side, id, key, ts) in late {
        t.process(side, Arc::new(vec![record(side, id, key, ts)]), &mut out)
            .unwrap();
    }
    assert_eq!(out.bad.len(), 1);
    assert!(out.bad[0].reason.contains("late"), "{}", out.bad[0].reason);
}

#[test]
fn stream_table_join_enriches_with_the_latest_row() {
    let mut t = join(json!({"on": ["sym"], "table": "companies", "kind": "left"}));
    let mut out = Emitter::default();
    let steps = [
        (1, 100, 1),
        (0, 1, 1), // enriched by 100
        (0, 2, 2), // no row: alone
        (1, 101, 1),
        (0, 3, 1), // enriched by 101
    ];
    for (side, id, key) in steps {
        t.process(side, Arc::new(vec![record(side, id, key, 0)]), &mut out)
            .unwrap();
    }
    let got: Vec<(Option<i64>, Option<i64>)> = out
        .records
        .iter()
        .map(|r| (int(r, "lid"), int(r, "rid")))
        .collect();
    assert_eq!(
        got,
        vec![(Some(1), Some(100)), (Some(2), None), (Some(3), Some(101))]
    );
    let snapshot = t.snapshot().unwrap();
    let mut inner = join(json!({"on": ["sym"], "table": "companies"}));
    inner.restore(snapshot).unwrap();
    let mut out = Emitter::default();
    for (id, key) in [(4, 1), (5, 2)] {
        inner
            .process(0, Arc::new(vec![record(0, id, key, 0)]), &mut out)
            .unwrap();
    }
    assert_eq!(out.records.len(), 1);
    assert_eq!(int(&out.records[0], "rid"), Some(101));
}

#[test]
fn output_prefixes_right_fields_and_keeps_the_later_time() {
    let mut t = join(json!({"on": ["sym"], "table": "companies", "right_prefix": "c_"}));
    let mut out = Emitter::default();
    let right = record(1, 7, 1, 0).with_timestamp(2_000);
    let left = record(0, 8, 1, 0).with_timestamp(1_000);
    t.process(1, Arc::new(vec![right]), &mut out).unwrap();
    t.process(0, Arc::new(vec![left]), &mut out).unwrap();
    let o = out.records[0].value.as_object().unwrap();
    let names: Vec<&str> = o.iter().map(|(k, _)| k).collect();
    assert_eq!(names, ["sym", "lid", "ts", "c_sym", "c_rid", "c_ts"]);
    assert_eq!(out.records[0].timestamp, Some(2_000));
}

#[test]
fn config_errors_name_the_field() {
    let e = test_config::build(super::build, json!({"on": ["sym"]}), &["a", "b"])
        .err()
        .unwrap();
    assert!(e.contains("t.within"), "{e}");
    let e = test_config::build(
        super::build,
        json!({"on": ["sym"], "table": "a"}),
        &["a", "b"],
    )
    .err()
    .unwrap();
    assert!(e.contains("t.table") && e.contains("second"), "{e}");
    let e = test_config::build(super::build, json!({"on": ["sym"], "within": "1s"}), &["a"])
        .err()
        .unwrap();
    assert!(e.contains("t.inputs"), "{e}");
}

#[test]
fn table_rows_are_forgotten_after_their_retention() {
    let mut t = join(json!({"on": ["sym"], "table": "companies", "retention": "1s"}));
    assert_eq!(
        t.tick_interval(),
        Some(std::time::Duration::from_millis(250))
    );
    let mut out = Emitter::default();
    t.process(1, Arc::new(vec![record(1, 100, 1, 0)]), &mut out)
        .unwrap();
    let now = connectd_sdk::time::now_ms();
    t.on_tick(now + 500, &mut out).unwrap();
    t.process(0, Arc::new(vec![record(0, 1, 1, 0)]), &mut out)
        .unwrap();
    assert_eq!(out.records.len(), 1, "still there after 0.5 s");
    t.on_tick(now + 1500, &mut out).unwrap();
    t.process(0, Arc::new(vec![record(0, 2, 1, 0)]), &mut out)
        .unwrap();
    assert_eq!(out.records.len(), 1, "forgotten after 1.5 s");
}

#[test]
fn an_updated_row_expires_from_its_last_update_and_many_rows_expire_in_parts() {
    let mut t = join(json!({"on": ["sym"], "table": "companies", "retention": "1s"}));
    let mut out = Emitter::default();
    // 10 000 rows (more than one expiry pass reads), then key 1 updated again later.
    let rows: Vec<Record> = (0..10_000).map(|k| record(1, 100 + k, k, 0)).collect();
    t.process(1, Arc::new(rows), &mut out).unwrap();
    // Every row so far was updated at or before `now`.
    let now = connectd_sdk::time::now_ms();
    std::thread::sleep(std::time::Duration::from_millis(20));
    t.process(1, Arc::new(vec![record(1, 7, 1, 0)]), &mut out)
        .unwrap();
    t.on_tick(now + 1005, &mut out).unwrap();
    let lefts: Vec<Record> = (0..10_000).map(|k| record(0, k, k, 0)).collect();
    t.process(0, Arc::new(lefts), &mut out).unwrap();
    let got: Vec<Option<i64>> = out.records.iter().map(|r| int(r, "rid")).collect();
    assert_eq!(got, vec![Some(7)], "only the row updated later is left");
}

#[test]
fn a_table_checkpointed_before_the_state_store_is_restored() {
    let row = serde_json::to_value(record(1, 100, 1, 0)).unwrap();
    let legacy = json!({"rows": [[[1], {"record": row, "updated": connectd_sdk::time::now_ms()}]]});
    let mut t = join(json!({"on": ["sym"], "table": "companies"}));
    t.restore(legacy).unwrap();
    let mut out = Emitter::default();
    t.process(0, Arc::new(vec![record(0, 1, 1, 0)]), &mut out)
        .unwrap();
    assert_eq!(int(&out.records[0], "rid"), Some(100));
}
