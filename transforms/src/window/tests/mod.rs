//! Window correctness against results computed independently here (brute force over
//! the input, with the watermark rule re-derived from its definition).

use std::collections::BTreeMap;
use std::sync::Arc;

use connectd_sdk::{Emitter, FieldPath, Object, Record, Transform, Value};

use super::*;

/// Session and sliding windows over keyed state: checkpoints, restores, spills.
mod session_and_sliding_state;

/// Deterministic pseudo-random numbers for test data.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Debug)]
struct Event {
    t: i64,
    host: &'static str,
    v: i64,
}

fn record(e: &Event) -> Record {
    let mut o = Object::new();
    o.insert("host", Value::str(e.host));
    o.insert("v", Value::Int(e.v));
    o.insert("ts", Value::Int(e.t));
    Record::new(Value::Object(o))
}

/// In-order time with jitter (out of order by up to `jitter`) and some far-late events.
fn events(seed: u64, n: usize, jitter: i64, late_every: usize) -> Vec<Event> {
    let mut rng = Lcg(seed);
    let hosts = ["doc", "dopey", "happy"];
    (0..n)
        .map(|i| {
            let mut t = 1_000_000 + i as i64 * 37 - rng.below(jitter as u64 + 1) as i64;
            if late_every > 0 && i % late_every == late_every - 1 {
                t -= 20_000;
            }
            Event {
                t,
                host: hosts[rng.below(3) as usize],
                v: rng.below(100) as i64,
            }
        })
        .collect()
}

fn spec(kind: Kind, size: i64, hop: i64, gap: i64, ooo: i64, grace: i64) -> WindowSpec {
    let aggs = [
        ("n", "count()"),
        ("total", "sum(v)"),
        ("mean", "avg(v)"),
        ("lo", "min(v)"),
        ("hi", "max(v)"),
        ("first_v", "first(v)"),
        ("last_v", "last(v)"),
        ("distinct", "count_distinct(v)"),
    ];
    WindowSpec {
        kind,
        size,
        hop,
        gap,
        time: TimeSource::field("ts", TimeUnit::Ms),
        out_of_orderness: ooo,
        grace,
        late_to_dlq: false,
        emit_changes: false,
        group_by: vec![FieldPath::parse("host")],
        aggregates: aggs
            .iter()
            .map(|(n, a)| AggSpec::parse(n, a).unwrap())
            .collect(),
        idle_timeout: None,
    }
}

/// Runs the transform over the events in batches of `batch` records, then ends input.
fn run(spec: &WindowSpec, evs: &[Event], batch: usize) -> (Vec<Record>, u64) {
    let mut w = Window::new(spec.clone());
    let mut out = Emitter::default();
    for chunk in evs.chunks(batch) {
        w.process(0, Arc::new(chunk.iter().map(record).collect()), &mut out)
            .unwrap();
        drain(&mut w, &mut out);
    }
    w.on_end(&mut out).unwrap();
    drain(&mut w, &mut out);
    drain(&mut w, &mut out);
    (out.records, out.late_dropped)
}

/// Takes whatever more the window owes, as the transform task does.
fn drain(w: &mut dyn Transform, out: &mut Emitter) {
    while w.resume(out).unwrap() {}
}

/// The expected aggregate row, from a plain list of (arrival index, value).
fn expected_aggs(vals: &[(usize, i64)]) -> Vec<Value> {
    let mut sorted: Vec<i64> = vals.iter().map(|(_, v)| *v).collect();
    let sum: i64 = sorted.iter().sum();
    let first = vals.iter().min_by_key(|(i, _)| *i).map(|(_, v)| *v);
    let last = vals.iter().max_by_key(|(i, _)| *i).map(|(_, v)| *v);
    sorted.sort_unstable();
    let lo = sorted.first().copied();
    let hi = sorted.last().copied();
    sorted.dedup();
    vec![
        Value::Int(vals.len() as i64),
        Value::Int(sum),
        Value::Float(sum as f64 / vals.len() as f64),
        lo.map_or(Value::Null, Value::Int),
        hi.map_or(Value::Null, Value::Int),
        first.map_or(Value::Null, Value::Int),
        last.map_or(Value::Null, Value::Int),
        Value::Int(sorted.len() as i64),
    ]
}

type Row = (i64, i64, String, Vec<Value>);

fn rows(records: &[Record]) -> Vec<Row> {
    let mut out: Vec<Row> = records
        .iter()
        .map(|r| {
            let o = r.value.as_object().unwrap();
            let get = |k: &str| o.get(k).cloned().unwrap();
            let aggs = [
                "n", "total", "mean", "lo", "hi", "first_v", "last_v", "distinct",
            ]
            .iter()
            .map(|k| get(k))
            .collect();
            let Value::Int(s) = get("window_start") else {
                panic!()
            };
            let Value::Int(e) = get("window_end") else {
                panic!()
            };
            (s, e, get("host").to_string(), aggs)
        })
        .collect();
    out.sort_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)));
    out
}

fn assert_rows_eq(mut got: Vec<Row>, mut want: Vec<Row>) {
    // avg may differ in the last bit from summation order; compare it with a tolerance.
    let norm = |rows: &mut Vec<Row>| {
        for r in rows.iter_mut() {
            if let Value::Float(f) = r.3[2] {
                r.3[2] = Value::Float((f * 1e9).round() / 1e9);
            }
        }
    };
    norm(&mut got);
    norm(&mut want);
    assert_eq!(got.len(), want.len(), "row count");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }
}

/// Watermark after each arrival, from its definition.
fn watermarks(evs: &[Event], ooo: i64) -> Vec<i64> {
    let mut wm = i64::MIN;
    evs.iter()
        .map(|e| {
            wm = wm.max(e.t - ooo);
            wm
        })
        .collect()
}

/// Expected rows of aligned (tumbling/hopping) windows.
fn oracle_aligned(evs: &[Event], size: i64, step: i64, ooo: i64, grace: i64) -> (Vec<Row>, u64) {
    let wms = watermarks(evs, ooo);
    let mut groups: BTreeMap<(i64, i64, String), Vec<(usize, i64)>> = BTreeMap::new();
    let mut late = 0;
    for (i, e) in evs.iter().enumerate() {
        let before = if i == 0 { i64::MIN } else { wms[i - 1] };
        let mut accepted = false;
        let mut start = e.t.div_euclid(step) * step;
        while start + size > e.t {
            if start + size + grace > before {
                accepted = true;
                groups
                    .entry((start, start + size, e.host.to_string()))
                    .or_default()
                    .push((i, e.v));
            }
            start -= step;
        }
        if !accepted {
            late += 1;
        }
    }
    (
        groups
            .into_iter()
            .map(|((s, e, h), vals)| (s, e, h, expected_aggs(&vals)))
            .collect(),
        late,
    )
}

#[test]
fn tumbling_matches_brute_force_with_out_of_order_and_late_data() {
    let evs = events(7, 5000, 900, 97);
    let sp = spec(Kind::Tumbling, 5000, 0, 0, 1000, 500);
    let (want, want_late) = oracle_aligned(&evs, 5000, 5000, 1000, 500);
    assert!(want_late > 10, "the data must contain late events");
    for batch in [1, 7, 500, 5000] {
        let (got, late) = run(&sp, &evs, batch);
        assert_eq!(late, want_late, "batch {batch}");
        assert_rows_eq(rows(&got), want.clone());
    }
}

#[test]
fn hopping_matches_brute_force() {
    let evs = events(11, 4000, 600, 53);
    let sp = spec(Kind::Hopping, 6000, 2000, 0, 700, 0);
    let (want, want_late) = oracle_aligned(&evs, 6000, 2000, 700, 0);
    assert!(want_late > 0);
    let (got, late) = run(&sp, &evs, 64);
    assert_eq!(late, want_late);
    assert_rows_eq(rows(&got), want);
}

#[test]
fn sliding_matches_brute_force() {
    let evs = events(3, 1500, 400, 41);
    let (size, ooo, grace) = (3000, 500, 100);
    let sp = spec(Kind::Sliding, size, 0, 0, ooo, grace);
    let wms = watermarks(&evs, ooo);
    // A record's row fires after the first arrival that moves the watermark to t + grace.
    let fire_index = |t: i64| {
        wms.iter()
            .position(|w| *w >= t + grace)
            .unwrap_or(usize::MAX)
    };
    let accepted: Vec<usize> = (0..evs.len())
        .filter(|&i| {
            let before = if i == 0 { i64::MIN } else { wms[i - 1] };
            evs[i].t + grace > before
        })
        .collect();
    let mut want = Vec::new();
    for &i in &accepted {
        let e = &evs[i];
        let fire = fire_index(e.t);
        let vals: Vec<(usize, i64)> = accepted
            .iter()
            .filter(|&&j| {
                let o = &evs[j];
                o.host == e.host && o.t > e.t - size && o.t <= e.t && j <= fire
            })
            .map(|&j| (j, evs[j].v))
            .collect();
        want.push((e.t - size, e.t, e.host.to_string(), expected_aggs(&vals)));
    }
    want.sort_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)));
    let (got, late) = run(&sp, &evs, 33);
    assert_eq!(late as usize, evs.len() - accepted.len());
    // Equal-time rows of one host may come in either order: compare as multisets.
    let mut got = rows(&got);
    let key = |r: &Row| format!("{r:?}");
    got.sort_by_key(key);
    want.sort_by_key(key);
    assert_rows_eq(got, want);
}

#[test]
fn session_matches_brute_force_without_late_data() {
    // Bursts separated by silences longer than the gap; out of order within a burst.
    let mut rng = Lcg(5);
    let mut evs = Vec::new();
    let mut t = 0;
    for burst in 0..60 {
        let len = 1 + rng.below(20) as i64;
        for _ in 0..len {
            t += rng.below(300) as i64;
            let host = ["doc", "dopey"][burst % 2];
            evs.push(Event {
                t: t - rng.below(200) as i64,
                host,
                v: rng.below(10) as i64,
            });
        }
        t += 2000 + rng.below(3000) as i64;
    }
    let gap = 1000;
    let sp = spec(Kind::Session, 0, 0, gap, 250, 0);
    // Brute force: sort each host's events by time and cut where consecutive times differ by >= gap.
    let mut want = Vec::new();
    for host in ["doc", "dopey"] {
        let mut mine: Vec<(usize, &Event)> = evs
            .iter()
            .enumerate()
            .filter(|(_, e)| e.host == host)
            .collect();
        mine.sort_by_key(|(_, e)| e.t);
        let mut cur: Vec<(usize, &Event)> = Vec::new();
        let flush = |cur: &mut Vec<(usize, &Event)>, want: &mut Vec<Row>| {
            if let (Some(f), Some(l)) = (cur.first(), cur.last()) {
                let vals: Vec<(usize, i64)> = cur.iter().map(|(i, e)| (*i, e.v)).collect();
                want.push((f.1.t, l.1.t + gap, host.to_string(), expected_aggs(&vals)));
            }
            cur.clear();
        };
        for (i, e) in mine {
            if cur.last().is_some_and(|(_, p)| e.t - p.t >= gap) {
                flush(&mut cur, &mut want);
            }
            cur.push((i, e));
        }
        flush(&mut cur, &mut want);
    }
    want.sort_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)));
    for batch in [1, 10, 1000] {
        let (got, late) = run(&sp, &evs, batch);
        assert_eq!(late, 0);
        assert_rows_eq(rows(&got), want.clone());
    }
}

#[test]
fn session_late_record_is_dropped_and_bridging_record_merges() {
    let sp = spec(Kind::Session, 0, 0, 1000, 1000, 0);
    let ev = |t, v| Event { t, host: "doc", v };
    // 0 and 1500 are separate sessions until 800 bridges them (the 1 s out-of-orderness
    // keeps the first open); 10_000 moves the watermark; 100 then arrives after its
    // session closed: late.
    let evs = vec![ev(0, 1), ev(1500, 2), ev(800, 3), ev(10_000, 4), ev(100, 5)];
    let (got, late) = run(&sp, &evs, 1);
    assert_eq!(late, 1);
    let got = rows(&got);
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].0, got[0].1), (0, 2500));
    assert_eq!(got[0].3[0], Value::Int(3));
    assert_eq!((got[1].0, got[1].1), (10_000, 11_000));
}

#[test]
fn emit_changes_ends_with_the_final_values() {
    let evs = events(9, 2000, 300, 0);
    let mut sp = spec(Kind::Tumbling, 5000, 0, 0, 300, 0);
    let (finals, _) = run(&sp, &evs, 100);
    sp.emit_changes = true;
    let (changes, _) = run(&sp, &evs, 100);
    assert_eq!(changes.len(), evs.len(), "one update per record");
    let mut last: BTreeMap<(i64, String), Row> = BTreeMap::new();
    for r in rows(&changes).into_iter().rev() {
        last.entry((r.0, r.2.clone())).or_insert(r);
    }
    let mut last_rows = Vec::new();
    // rows() sorted by (start, end, host); within equal keys the later update comes later in
    // the emitted order, so take the last emitted per window from the raw sequence instead.
    let mut by_window: BTreeMap<(i64, String), Row> = BTreeMap::new();
    for r in &changes {
        let row = rows(std::slice::from_ref(r)).remove(0);
        by_window.insert((row.0, row.2.clone()), row);
    }
    last_rows.extend(by_window.into_values());
    assert_rows_eq(last_rows, rows(&finals));
}

#[test]
fn snapshot_restore_mid_stream_gives_the_same_output() {
    for kind in [Kind::Tumbling, Kind::Hopping, Kind::Sliding, Kind::Session] {
        let sp = spec(kind, 4000, 1000, 800, 500, 100);
        let evs = events(21, 3000, 500, 71);
        let (whole, _) = run(&sp, &evs, 50);
        let (got, _) = interrupted_run(&sp, &evs, 1234, |_| {});
        assert_eq!(rows(&got), rows(&whole), "{kind:?}");
        assert_eq!(got, whole, "{kind:?}: same rows in the same order");
    }
}

/// The output of a window stopped after `evs[..at]`, its snapshot (through JSON text,
/// then `edit`) restored into a new one that takes the rest; and that window.
fn interrupted_run(
    sp: &WindowSpec,
    evs: &[Event],
    at: usize,
    edit: impl FnOnce(&mut serde_json::Value),
) -> (Vec<Record>, Window) {
    let mut a = Window::new(sp.clone());
    let mut out = Emitter::default();
    a.process(
        0,
        Arc::new(evs[..at].iter().map(record).collect()),
        &mut out,
    )
    .unwrap();
    drain(&mut a, &mut out);
    let snap = a.snapshot().unwrap();
    let mut snap = serde_json::from_str(&serde_json::to_string(&snap).unwrap()).unwrap();
    edit(&mut snap);
    let mut b = Window::new(sp.clone());
    b.restore(snap).unwrap();
    b.process(
        0,
        Arc::new(evs[at..].iter().map(record).collect()),
        &mut out,
    )
    .unwrap();
    drain(&mut b, &mut out);
    b.on_end(&mut out).unwrap();
    drain(&mut b, &mut out);
    (out.records, b)
}

/// The record with its field `v` replaced.
fn with_v(r: &Record, v: Value) -> Record {
    let mut r = r.clone();
    if let Value::Object(o) = &mut r.value {
        o.insert("v", v);
    }
    r
}

#[test]
fn bad_time_and_bad_types_go_to_bad_records() {
    let sp = spec(Kind::Tumbling, 1000, 0, 0, 0, 0);
    let mut w = Window::new(sp);
    let mut out = Emitter::default();
    let good = record(&Event {
        t: 5,
        host: "doc",
        v: 1,
    });
    let mut no_time = good.clone();
    no_time.value = Value::Object([("host", Value::str("doc"))].into_iter().collect());
    let bad_v = with_v(&good, Value::str("ninety"));
    w.process(0, Arc::new(vec![good, no_time, bad_v]), &mut out)
        .unwrap();
    w.on_end(&mut out).unwrap();
    drain(&mut w, &mut out);
    assert_eq!(out.records.len(), 1);
    assert_eq!(out.bad.len(), 2);
    assert!(out.bad[0].reason.contains("ts"), "{}", out.bad[0].reason);
    assert!(
        out.bad[1].reason.contains("expected a number"),
        "{}",
        out.bad[1].reason
    );
}

/// Aggregates over one field look it up once; each still checks its type, so a
/// `sum` after a `max` of the same field rejects a string the `max` would take.
#[test]
fn aggregates_sharing_a_field_each_check_its_type() {
    let mut sp = spec(Kind::Tumbling, 1000, 0, 0, 0, 0);
    sp.aggregates = [("hi", "max(v)"), ("total", "sum(v)")]
        .iter()
        .map(|(n, a)| AggSpec::parse(n, a).unwrap())
        .collect();
    let mut w = Window::new(sp);
    let mut out = Emitter::default();
    let good = record(&Event {
        t: 5,
        host: "doc",
        v: 7,
    });
    let bad_v = with_v(&good, Value::str("ninety"));
    w.process(0, Arc::new(vec![good, bad_v]), &mut out).unwrap();
    w.on_end(&mut out).unwrap();
    drain(&mut w, &mut out);
    assert_eq!(out.bad.len(), 1);
    assert!(
        out.bad[0].reason.contains("total") && out.bad[0].reason.contains("expected a number"),
        "{}",
        out.bad[0].reason
    );
    let row = out.records[0].value.as_object().unwrap();
    assert_eq!(row.get("hi"), Some(&Value::Int(7)));
    assert_eq!(row.get("total"), Some(&Value::Int(7)));
}

/// A `sum` or `avg` past the float range is the window's error, with its row; every
/// kind of window emits through the same check. Before, the row carried infinity, which
/// a JSON sink wrote as `null` and a CSV one as `inf`.
#[test]
fn a_sum_past_the_float_range_is_the_window_error_not_infinity() {
    for kind in [Kind::Tumbling, Kind::Hopping, Kind::Sliding, Kind::Session] {
        let mut sp = spec(kind, 1000, 500, 1000, 0, 0);
        sp.aggregates = [("total", "sum(v)"), ("mean", "avg(v)"), ("n", "count()")]
            .iter()
            .map(|(n, a)| AggSpec::parse(n, a).unwrap())
            .collect();
        let mut w = Window::new(sp);
        let mut out = Emitter::default();
        let at = |t: i64, host: &'static str, v: f64| {
            with_v(&record(&Event { t, host, v: 0 }), Value::Float(v))
        };
        // `doc` passes the range with two finite values; `dopey` stays in it.
        let input = vec![
            at(10, "doc", 1.5e308),
            at(20, "doc", 1.5e308),
            at(30, "dopey", 1.5e308),
            at(40, "dopey", -1.5e308),
        ];
        w.process(0, Arc::new(input), &mut out).unwrap();
        w.on_end(&mut out).unwrap();
        drain(&mut w, &mut out);
        assert!(!out.bad.is_empty(), "{kind:?}: no error");
        for b in &out.bad {
            assert!(
                b.reason.contains("`total`") && b.reason.contains("float range"),
                "{kind:?}: {}",
                b.reason
            );
            let row = b.record.as_ref().unwrap().value.as_object().unwrap();
            assert_eq!(row.get("host"), Some(&Value::str("doc")), "{kind:?}");
        }
        for r in &out.records {
            let row = r.value.as_object().unwrap();
            for name in ["total", "mean"] {
                if let Some(Value::Float(f)) = row.get(name) {
                    assert!(f.is_finite(), "{kind:?}: {name} = {f} in {row:?}");
                }
            }
        }
        assert!(
            out.records.iter().any(|r| {
                let row = r.value.as_object().unwrap();
                row.get("host") == Some(&Value::str("dopey"))
                    && row.get("total") == Some(&Value::Float(0.0))
            }),
            "{kind:?}: the row in range is written: {:?}",
            out.records
        );
    }
}

/// Keyed state in memory that counts what a checkpoint writes.
#[derive(Debug, Default)]
struct CountingState {
    inner: MemoryState,
    puts: Arc<std::sync::atomic::AtomicUsize>,
}

impl KeyedState for CountingState {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ConnectorError> {
        self.inner.get(key)
    }
    fn put(&mut self, key: &[u8], value: &[u8]) {
        self.puts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.put(key, value)
    }
    fn delete(&mut self, key: &[u8]) {
        self.inner.delete(key)
    }
    fn range(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Entries, ConnectorError> {
        self.inner.range(from, to, limit)
    }
    fn forget_below(&mut self, bound: &[u8]) {
        self.inner.forget_below(bound)
    }
}

/// Events over `keys` hosts (one group each) inside one long window.
fn many_keys(keys: usize, n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let mut r = record(&Event {
                t: i as i64,
                host: "x",
                v: (i % 13) as i64,
            });
            if let Value::Object(o) = &mut r.value {
                o.insert("host", Value::str(format!("h{:06}", (i * 7919) % keys)));
            }
            r
        })
        .collect()
}

#[test]
fn groups_spilled_to_keyed_state_give_the_same_rows_in_the_same_order() {
    let sp = spec(Kind::Hopping, 60_000, 20_000, 0, 0, 0);
    let input = many_keys(3_000, 20_000);
    let collect = |budget: usize| {
        let mut w = Window::with_resident_budget(sp.clone(), budget);
        let mut out = Emitter::default();
        for chunk in input.chunks(700) {
            w.process(0, Arc::new(chunk.to_vec()), &mut out).unwrap();
            drain(&mut w, &mut out);
        }
        w.on_end(&mut out).unwrap();
        drain(&mut w, &mut out);
        out.records
    };
    let in_memory = collect(usize::MAX);
    assert_eq!(
        in_memory.len(),
        3 * 3_000,
        "three hopping windows hold every key"
    );
    // About 100 groups fit: the window spills again and again.
    assert_eq!(collect(30_000), in_memory);
}

/// A window over keyed state that counts its writes, and the count so far.
fn with_counting_state(sp: WindowSpec) -> (Window, impl Fn() -> usize) {
    let mut w = Window::new(sp);
    let state = CountingState::default();
    let puts = state.puts.clone();
    assert!(w.attach_state(Box::new(state)));
    (w, move || puts.load(std::sync::atomic::Ordering::Relaxed))
}

#[test]
fn a_checkpoint_writes_only_the_groups_changed_since_the_last() {
    let sp = spec(Kind::Tumbling, 3_600_000, 0, 0, 0, 0);
    let (mut w, puts) = with_counting_state(sp);
    let mut out = Emitter::default();
    w.process(0, Arc::new(many_keys(5_000, 5_000)), &mut out)
        .unwrap();
    w.snapshot().unwrap();
    let touched: Vec<Record> = many_keys(5_000, 5_000).into_iter().take(10).collect();
    w.process(0, Arc::new(touched), &mut out).unwrap();
    let before = puts();
    assert!(before >= 5_000);
    w.snapshot().unwrap();
    assert_eq!(puts() - before, 10);
}

/// A tumbling window over 10 000 keys, 10 000 sessions and 10 000 sliding rows, all
/// closing at the end.
#[test]
fn a_window_over_many_keys_closes_in_bounded_parts() {
    for sp in [
        spec(Kind::Tumbling, 3_600_000, 0, 0, 0, 0),
        spec(Kind::Session, 0, 0, 3_600_000, 0, 0),
        // Held back by its out-of-orderness: every row comes at the end.
        spec(Kind::Sliding, 3_600_000, 0, 0, 3_600_000, 0),
    ] {
        let mut w = Window::new(sp);
        let mut out = Emitter::default();
        w.process(0, Arc::new(many_keys(10_000, 10_000)), &mut out)
            .unwrap();
        w.on_end(&mut out).unwrap();
        let mut parts = vec![out.records.len()];
        out.records.clear();
        while w.resume(&mut out).unwrap() {
            parts.push(out.records.len());
            out.records.clear();
        }
        parts.push(out.records.len());
        assert!(parts.iter().all(|&n| n <= 4096), "{parts:?}");
        assert_eq!(parts.iter().sum::<usize>(), 10_000);
    }
}

/// A checkpoint whose store keys begin with the window's end and start (before
/// 2026-12-04) restores, and its groups are found and closed: the output is the
/// uninterrupted run's.
#[test]
fn state_whose_keys_hold_the_window_start_restores_and_finishes_the_same() {
    for kind in [Kind::Tumbling, Kind::Hopping] {
        let sp = spec(kind, 4000, 1000, 800, 500, 100);
        let evs = events(33, 3000, 500, 71);
        let (whole, _) = run(&sp, &evs, 50);
        // The snapshot rewritten as the earlier form: no `short_keys`, the start after
        // the end in every key.
        let (got, mut restored) = interrupted_run(&sp, &evs, 1234, |snap| {
            let aligned = snap["state"]["Aligned"].as_object_mut().unwrap();
            assert_eq!(aligned.remove("short_keys"), Some(serde_json::json!(true)));
            let entries: Vec<(Vec<u8>, Vec<u8>)> =
                serde_json::from_value(snap["entries"].take()).unwrap();
            assert!(!entries.is_empty());
            let long: Vec<(Vec<u8>, Vec<u8>)> = entries
                .into_iter()
                .map(|(k, v)| {
                    let end = connectd_sdk::ordered::i64_from_key(&k[..8]).unwrap();
                    let mut key = k[..8].to_vec();
                    key.extend_from_slice(&connectd_sdk::ordered::i64_key(end - sp.size));
                    key.extend_from_slice(&k[8..]);
                    (key, v)
                })
                .collect();
            snap["entries"] = serde_json::to_value(long).unwrap();
        });
        assert_eq!(got, whole, "{kind:?}: same rows in the same order");
        // And it keeps writing the form it restored.
        let again = restored.snapshot().unwrap();
        assert_eq!(
            again["state"]["Aligned"]["short_keys"],
            serde_json::json!(false)
        );
    }
}
