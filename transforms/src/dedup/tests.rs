//! The dedup against a model of its documented semantics, restores and upgrades.

use std::sync::Arc;

use connectd_sdk::{Object, Value};
use serde_json::json;

use super::*;
use crate::test_config;

fn rec(id: i64, v: i64, ts: i64) -> Record {
    let o: Object = [
        ("id", Value::Int(id)),
        ("v", Value::Int(v)),
        ("ts", Value::Int(ts)),
    ]
    .into_iter()
    .collect();
    Record::new(Value::Object(o))
}

fn dedup(config: serde_json::Value) -> Box<dyn Transform> {
    test_config::build(build, config, &["in"]).unwrap()
}

impl Dedup {
    fn from_config(config: serde_json::Value) -> Self {
        test_config::build_as(Dedup::new, config, &["in"]).unwrap()
    }
}

/// (id, v) of each emitted record.
fn run(t: &mut dyn Transform, input: &[Record], end: bool) -> Vec<(i64, i64)> {
    let mut out = Emitter::default();
    for r in input {
        t.process(0, Arc::new(vec![r.clone()]), &mut out).unwrap();
    }
    if end {
        t.on_end(&mut out).unwrap();
    }
    assert!(out.bad.is_empty(), "{:?}", out.bad);
    out.records
        .iter()
        .map(|r| {
            let get = |f: &str| match r.value.as_object().and_then(|o| o.get(f)) {
                Some(Value::Int(i)) => *i,
                other => panic!("{f}: {other:?}"),
            };
            (get("id"), get("v"))
        })
        .collect()
}

#[test]
fn latest_passes_changes_and_drops_repeats() {
    let mut t = dedup(json!({"key": ["id"], "compare": ["v"], "retention": "1h", "time": "ts"}));
    let input = [
        rec(1, 10, 1000),
        rec(2, 20, 1001),
        rec(1, 10, 1002),
        rec(1, 11, 1003),
        rec(2, 20, 1004),
        rec(1, 11, 1005),
    ];
    assert_eq!(
        run(t.as_mut(), &input, true),
        vec![(1, 10), (2, 20), (1, 11)]
    );
}

#[test]
fn first_forgets_a_key_after_its_retention() {
    let mut t = dedup(json!({"key": "id", "keep": "first", "retention": "10s", "time": "ts"}));
    let input = [
        rec(1, 1, 0),
        rec(1, 2, 5_000),
        rec(2, 3, 9_000),
        // The watermark passes 10 s: key 1 (kept at 0 s) is forgotten.
        rec(2, 4, 10_500),
        rec(1, 5, 11_000),
        rec(2, 6, 12_000),
    ];
    assert_eq!(run(t.as_mut(), &input, true), vec![(1, 1), (2, 3), (1, 5)]);
}

#[test]
fn final_emits_the_latest_when_a_key_expires_or_the_input_ends() {
    let mut t = dedup(json!({"key": ["id"], "retention": "10s", "time": "ts", "emit": "final"}));
    let input = [
        rec(1, 1, 0),
        rec(1, 2, 1_000),
        rec(2, 3, 2_000),
        rec(3, 9, 12_000),
    ];
    // Key 1 expires at 11 s (its latest came at 1 s); 2 at 12 s; 3 at the end.
    assert_eq!(run(t.as_mut(), &input, true), vec![(1, 2), (2, 3), (3, 9)]);
}

#[test]
fn a_restored_snapshot_goes_on_as_if_uninterrupted() {
    let config = json!({"key": ["id"], "compare": "v", "retention": "5s", "time": "ts"});
    let input: Vec<Record> = (0..400)
        .map(|i| rec(i % 7, (i / 50) % 3, i * 100))
        .collect();
    let whole = run(dedup(config.clone()).as_mut(), &input, true);
    let mut first = dedup(config.clone());
    let mut got = run(first.as_mut(), &input[..150], false);
    let state = first.snapshot().unwrap();
    let mut second = dedup(config);
    second.restore(state).unwrap();
    got.extend(run(second.as_mut(), &input[150..], true));
    assert_eq!(got, whole);
    assert!(whole.len() > 7 && whole.len() < 400, "{}", whole.len());
}

#[test]
fn kept_entries_decode_in_binary_and_in_the_earlier_json_form() {
    let kept = Kept {
        record: Some(rec(1, 2, 3)),
        expires: -5,
        seq: 7,
    };
    let encoded = |k: &Kept| {
        // Appended after what the buffer holds (an entry's key, in `keep`).
        let mut bytes = b"key".to_vec();
        k.encode_into(&mut bytes);
        assert_eq!(&bytes[..3], b"key");
        bytes.split_off(3)
    };
    let back = Kept::decode(&encoded(&kept)).unwrap();
    assert_eq!((back.record, back.expires, back.seq), (kept.record, -5, 7));
    let first = Kept {
        record: None,
        expires: 1 << 40,
        seq: 1,
    };
    assert_eq!(encoded(&first).len(), 17);
    let json = br#"{"expires":12,"seq":3}"#;
    let old = Kept::decode(json).unwrap();
    assert_eq!((old.record, old.expires, old.seq), (None, 12, 3));
    let err = Kept::decode(&[0xff, 1, 2]).unwrap_err().to_string();
    assert!(err.contains("too short"), "{err}");
}

#[test]
fn a_record_without_the_key_goes_to_the_dlq() {
    let mut t = dedup(json!({"key": ["id"], "retention": "5s"}));
    let mut out = Emitter::default();
    let r = Record::new(Value::Object([("v", Value::Int(1))].into_iter().collect()));
    t.process(0, Arc::new(vec![r]), &mut out).unwrap();
    assert!(out.records.is_empty());
    assert_eq!(out.bad.len(), 1);
    assert!(out.bad[0].reason.contains("id"), "{}", out.bad[0].reason);
}

#[test]
fn config_errors_name_the_field() {
    let e = test_config::build(
        build,
        json!({"key": [], "retention": "0s", "keep": "last"}),
        &["in"],
    )
    .err()
    .unwrap();
    for needle in ["t.key", "t.retention", "t.keep"] {
        assert!(e.contains(needle), "no {needle} in {e}");
    }
}

/// The documented semantics, computed here: a key's entry is live while its expiry
/// (`retention` after its record, the latest's when it moved) is past the clock,
/// the clock being the newest event time less `max_out_of_orderness` before the
/// record.
fn model(input: &[Record], retention: i64, ooo: i64, latest: bool) -> Vec<(i64, i64)> {
    let field = |r: &Record, f: &str| match r.value.as_object().and_then(|o| o.get(f)) {
        Some(Value::Int(i)) => *i,
        other => panic!("{f}: {other:?}"),
    };
    let mut clock = i64::MIN;
    let mut kept: std::collections::HashMap<i64, (i64, i64)> = Default::default();
    let mut out = Vec::new();
    for r in input {
        let (id, v, t) = (field(r, "id"), field(r, "v"), field(r, "ts"));
        match kept
            .get(&id)
            .copied()
            .filter(|&(_, expires)| expires > clock)
        {
            None => {
                out.push((id, v));
                kept.insert(id, (v, t + retention));
            }
            Some((was, expires)) if latest && was != v => {
                out.push((id, v));
                kept.insert(id, (v, (t + retention).max(expires)));
            }
            Some(_) => {}
        }
        clock = clock.max(t - ooo);
    }
    out
}

/// Out-of-order input over few keys, values that change now and then.
fn scrambled(n: i64) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let jitter = (i * 7_919) % 23 * 100; // up to 2.2 s late
            rec(i * 13 % 17, i / 40 % 3, i * 100 - jitter)
        })
        .collect()
}

#[test]
fn segments_and_the_index_give_the_documented_output_on_out_of_order_input() {
    let input = scrambled(3_000);
    for keep in ["first", "latest"] {
        let config = json!({"key": ["id"], "keep": keep, "compare": ["v"],
            "retention": "5s", "max_out_of_orderness": "2s", "time": "ts"});
        let want = model(&input, 5_000, 2_000, keep == "latest");
        assert!(want.len() > 100 && want.len() < 2_000, "{}", want.len());
        let segmented = run(dedup(config.clone()).as_mut(), &input, true);
        assert_eq!(segmented, want, "segments, keep: {keep}");
        let mut indexed = Dedup::from_config(config);
        indexed.meta.segments = None;
        assert_eq!(run(&mut indexed, &input, true), want, "index, keep: {keep}");
    }
}

#[test]
fn segments_past_the_clock_are_forgotten_and_restored_state_goes_on() {
    let config = json!({"key": ["id"], "keep": "latest", "compare": ["v"],
        "retention": "5s", "max_out_of_orderness": "2s", "time": "ts"});
    let input: Vec<Record> = (0..20_000)
        .map(|i| rec(i % 1_000, i / 3_000, i * 10))
        .collect();
    let want = model(&input, 5_000, 2_000, true);
    for cut in [1, 4_999, 12_345] {
        let mut first = Dedup::from_config(config.clone());
        let mut got = run(&mut first, &input[..cut], false);
        let mut second = Dedup::from_config(config.clone());
        second.restore(first.snapshot().unwrap()).unwrap();
        got.extend(run(&mut second, &input[cut..], true));
        assert_eq!(got, want, "cut at {cut}");
        // 200 s of input, entries for 1 000 keys: a segment is 3.5 s, so about
        // three are live at the end.
        let live = second.meta.segments.as_ref().map(|s| s.live.len());
        assert!(live.is_some_and(|n| (2..=4).contains(&n)), "{live:?}");
        let held = second.state.export().map(|e| e.len()).unwrap_or(0);
        assert!(held <= 1_000 * 3, "{held} entries held");
    }
}

#[test]
fn state_of_the_index_layout_goes_on_in_it_after_an_upgrade() {
    let config = json!({"key": ["id"], "keep": "first", "retention": "5s",
        "max_out_of_orderness": "2s", "time": "ts"});
    let input = scrambled(2_000);
    let want = model(&input, 5_000, 2_000, false);
    let mut before = Dedup::from_config(config.clone());
    before.meta.segments = None;
    let mut got = run(&mut before, &input[..900], false);
    let snapshot = before.snapshot().unwrap();
    assert!(snapshot.get("segments").is_none(), "{snapshot}");
    let mut after = Dedup::from_config(config);
    after.restore(snapshot).unwrap();
    assert!(after.meta.segments.is_none());
    got.extend(run(&mut after, &input[900..], true));
    assert_eq!(got, want);
}

#[test]
fn emit_final_refuses_state_written_in_segments() {
    let mut changes = Dedup::from_config(json!({"key": ["id"], "retention": "5s", "time": "ts"}));
    run(&mut changes, &[rec(1, 1, 0)], false);
    let mut fin = Dedup::from_config(
        json!({"key": ["id"], "retention": "5s", "time": "ts", "emit": "final"}),
    );
    let err = fin
        .restore(changes.snapshot().unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("reset the pipeline's state"), "{err}");
}
