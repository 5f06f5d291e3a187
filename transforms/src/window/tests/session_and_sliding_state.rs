//! Session and sliding windows keep their state in keyed state: what a checkpoint
//! writes and holds, restores from older checkpoints, damaged state, and state dropped
//! from memory and read back.

use super::*;

/// A window over keyed state that counts its writes, after 5 000 records over 5 000
/// keys and a checkpoint, which must hold none of that state itself; the write count
/// so far, and the output.
fn after_a_first_checkpoint(sp: WindowSpec) -> (Window, impl Fn() -> usize, Emitter) {
    let (mut w, puts) = with_counting_state(sp);
    let mut out = Emitter::default();
    w.process(0, Arc::new(many_keys(5_000, 5_000)), &mut out)
        .unwrap();
    let snap = w.snapshot().unwrap();
    // The layout names the configuration: its length does not grow with the state.
    let layout = snap["layout"].as_str().map_or(0, str::len);
    assert!(
        snap.to_string().len() - layout < 300,
        "the checkpoint holds no state: {snap}"
    );
    (w, puts, out)
}

/// Session windows keep their sessions in keyed state: a checkpoint holds none of
/// them, and writes only the keys whose sessions changed since the previous one.
#[test]
fn a_session_checkpoint_writes_only_the_keys_changed_and_holds_no_sessions() {
    let sp = spec(Kind::Session, 0, 0, 3_600_000, 0, 0);
    let (mut w, puts, mut out) = after_a_first_checkpoint(sp);
    let before = puts();
    assert!(before >= 5_000);
    // Ten keys again, 1 ms later: their sessions grow, and close 1 ms later.
    let touched: Vec<Record> = many_keys(5_000, 5_000)
        .into_iter()
        .take(10)
        .map(|mut r| {
            if let Value::Object(o) = &mut r.value {
                let Some(&Value::Int(t)) = o.get("ts") else {
                    panic!("ts")
                };
                o.insert("ts", Value::Int(t + 1));
            }
            r
        })
        .collect();
    w.process(0, Arc::new(touched), &mut out).unwrap();
    w.snapshot().unwrap();
    // Each of the 10 keys: its sessions and their new closing index entry.
    assert_eq!(puts() - before, 20);
    assert!(out.records.is_empty(), "no session has closed yet");
    w.on_end(&mut out).unwrap();
    drain(&mut w, &mut out);
    let rows = rows(&out.records);
    assert_eq!(rows.len(), 5_000);
    let counts: i64 = rows
        .iter()
        .map(|r| match r.3[0] {
            Value::Int(n) => n,
            ref v => panic!("count {v:?}"),
        })
        .sum();
    assert_eq!(counts, 5_010);
}

/// A checkpoint from before sessions lived in keyed state (every key's sessions in
/// the snapshot) restores, and the run finishes as an uninterrupted one.
#[test]
fn a_checkpoint_holding_the_sessions_themselves_restores_and_finishes_the_same() {
    let sp = spec(Kind::Session, 0, 0, 800, 500, 100);
    let evs = events(41, 3000, 500, 71);
    let (whole, _) = run(&sp, &evs, 50);
    let (got, _) = interrupted_run(&sp, &evs, 1234, |snap| {
        let entries: Vec<(Vec<u8>, Vec<u8>)> =
            serde_json::from_value(snap["entries"].take()).unwrap();
        let by_key = session::legacy_by_key(&entries, sp.aggregates.len());
        assert!(!by_key.as_array().unwrap().is_empty(), "sessions open");
        snap.as_object_mut().unwrap().remove("entries");
        snap["state"]["Session"] = serde_json::json!({ "by_key": by_key });
    });
    assert_eq!(rows(&got), rows(&whole));
}

/// A session in the store that cannot be decoded stops the window with an error that
/// says so; it never emits a wrong row.
#[test]
fn a_damaged_session_in_keyed_state_is_an_error() {
    let sp = spec(Kind::Session, 0, 0, 800, 500, 100);
    let evs = events(43, 100, 0, 0);
    let mut w = Window::new(sp);
    let mut state = MemoryState::default();
    let mut key = vec![b's'];
    connectd_sdk::ordered::encode_all([&Value::str("doc")], &mut key);
    state.put(&key, b"\x00\x01garbage");
    assert!(w.attach_state(Box::new(state)));
    let mut out = Emitter::default();
    let recs: Vec<Record> = evs.iter().map(record).collect();
    let err = w.process(0, Arc::new(recs), &mut out).unwrap_err();
    assert!(err.to_string().contains("session"), "{err}");
}

/// Sessions written to keyed state and dropped from memory again and again (a small
/// budget) give the rows of a window that keeps them all in memory, in the same
/// order; and the rows are right: 300 keys, each with one session per block of 1 000
/// records (within a block a key comes every 300 ms, under the 350 ms gap; blocks are
/// 700 ms apart).
#[test]
fn sessions_spilled_to_keyed_state_give_the_same_rows_in_the_same_order() {
    let sp = spec(Kind::Session, 0, 0, 350, 0, 0);
    let input: Vec<Record> = many_keys(300, 20_000)
        .into_iter()
        .enumerate()
        .map(|(i, mut r)| {
            if let Value::Object(o) = &mut r.value {
                o.insert("ts", Value::Int((i + (i / 1000) * 400) as i64));
            }
            r
        })
        .collect();
    let collect = |budget: usize| {
        let mut w = Window::with_resident_budget(sp.clone(), budget);
        let mut out = Emitter::default();
        for chunk in input.chunks(700) {
            w.process(0, Arc::new(chunk.to_vec()), &mut out).unwrap();
            drain(&mut w, &mut out);
            if budget < usize::MAX {
                w.snapshot().unwrap();
            }
        }
        w.on_end(&mut out).unwrap();
        drain(&mut w, &mut out);
        out.records
    };
    let in_memory = collect(usize::MAX);
    let rows = rows(&in_memory);
    assert_eq!(rows.len(), 300 * 20, "one session per key and block");
    assert!(rows
        .iter()
        .all(|r| r.3[0] == Value::Int(1000 / 300) || r.3[0] == Value::Int(1000 / 300 + 1)));
    // About 20 keys fit: the sessions spill again and again.
    assert_eq!(collect(6_000), in_memory);
}

/// Sliding windows keep their records in keyed state: a checkpoint holds none of them
/// and writes only the records that arrived since the previous one.
#[test]
fn a_sliding_checkpoint_writes_only_the_records_since_the_last_and_holds_none() {
    let sp = spec(Kind::Sliding, 3_600_000, 0, 0, 0, 0);
    let (mut w, puts, mut out) = after_a_first_checkpoint(sp);
    let before = puts();
    // Each record's index entry (its records fit in memory: nothing else).
    assert_eq!(before, 5_000);
    let later: Vec<Record> = many_keys(5_000, 5_010).split_off(5_000);
    w.process(0, Arc::new(later), &mut out).unwrap();
    w.snapshot().unwrap();
    assert_eq!(puts() - before, 10);
    w.on_end(&mut out).unwrap();
    drain(&mut w, &mut out);
    assert_eq!(out.records.len(), 5_010, "a row per record");
}

/// A long stream through a short sliding window: what the window holds stays about
/// what its size, out-of-orderness and grace cover, not what passed through.
#[test]
fn a_sliding_window_forgets_what_no_later_row_can_include() {
    // One record per millisecond over three keys; a window of 300 ms.
    let sp = spec(Kind::Sliding, 300, 0, 0, 200, 100);
    let input = many_keys(3, 30_000);
    let mut w = Window::new(sp);
    let mut out = Emitter::default();
    let mut held = Vec::new();
    for chunk in input.chunks(500) {
        w.process(0, Arc::new(chunk.to_vec()), &mut out).unwrap();
        drain(&mut w, &mut out);
        let snap = w.snapshot().unwrap();
        held.push(snap["entries"].as_array().map_or(0, Vec::len));
    }
    // An entry per record, for the window, the watermark's delay and grace, and a
    // batch not yet fired.
    let bound = 300 + 200 + 100 + 500 + 1;
    assert!(held.iter().all(|&n| n <= bound), "{held:?}");
    assert!(held.iter().any(|&n| n >= bound / 2), "{held:?}");
    w.on_end(&mut out).unwrap();
    drain(&mut w, &mut out);
    assert_eq!(out.records.len(), 30_000);
    // Each row counts the records of its key in the last 300 ms: 100 of them.
    let full = rows(&out.records[1_000..]);
    assert!(full.iter().all(|r| r.3[0] == Value::Int(100)));
    let snap = w.snapshot().unwrap();
    assert_eq!(snap["entries"].as_array().map_or(0, Vec::len), 0);
}

/// A checkpoint from before sliding windows lived in keyed state (every record in the
/// snapshot) restores, and the run finishes as an uninterrupted one.
#[test]
fn a_checkpoint_holding_the_sliding_records_themselves_restores_and_finishes_the_same() {
    let mut sp = spec(Kind::Sliding, 4000, 0, 0, 500, 100);
    // The legacy form is rebuilt from one-record accumulators: a distinct count's is
    // not its input.
    sp.aggregates.retain(|a| a.name != "distinct");
    let evs = events(47, 3000, 500, 71);
    let (whole, _) = run(&sp, &evs, 50);
    let (got, _) = interrupted_run(&sp, &evs, 1234, |snap| {
        let entries: Vec<(Vec<u8>, Vec<u8>)> =
            serde_json::from_value(snap["entries"].take()).unwrap();
        let by_key = sliding::legacy_by_key(&entries, sp.aggregates.len());
        assert!(!by_key.as_array().unwrap().is_empty(), "records held");
        snap.as_object_mut().unwrap().remove("entries");
        snap["state"]["Sliding"] = serde_json::json!({ "by_key": by_key, "pending": [] });
    });
    assert_eq!(got, whole, "same rows in the same order");
}

/// A record in the store that cannot be decoded stops the window with an error that
/// says so, when a restore reads it back (in memory, or as rows need it once
/// spilled); it never emits a wrong row.
#[test]
fn a_damaged_sliding_record_in_keyed_state_is_an_error() {
    let sp = spec(Kind::Sliding, 800, 0, 0, 0, 0);
    let evs = events(43, 200, 0, 0);
    for budget in [usize::MAX, 2_000] {
        let mut w = Window::with_resident_budget(sp.clone(), budget);
        let mut out = Emitter::default();
        w.process(
            0,
            Arc::new(evs[..100].iter().map(record).collect()),
            &mut out,
        )
        .unwrap();
        let mut snap = w.snapshot().unwrap();
        let entries = snap["entries"].as_array_mut().unwrap();
        let mut damaged = 0;
        for entry in entries.iter_mut() {
            if entry[0][0] == serde_json::json!(b'r') || entry[0][0] == serde_json::json!(b'i') {
                entry[1] = serde_json::json!([0, 1, 2]);
                damaged += 1;
            }
        }
        assert!(damaged > 0, "records held");
        let mut b = Window::with_resident_budget(sp.clone(), budget);
        let fired = out.records.len();
        let err = match b.restore(snap) {
            Err(e) => e,
            Ok(()) => b
                .process(
                    0,
                    Arc::new(evs[100..].iter().map(record).collect()),
                    &mut out,
                )
                .unwrap_err(),
        };
        assert!(err.to_string().contains("sliding window"), "{err}");
        assert_eq!(out.records.len(), fired, "no row from damaged records");
    }
}

/// Sliding windows' records dropped from memory again and again (a small budget) and
/// read back from keyed state give the rows of a window that keeps them all in memory.
#[test]
fn sliding_records_dropped_from_memory_give_the_same_rows() {
    let sp = spec(Kind::Sliding, 2_000, 0, 0, 300, 100);
    let evs = events(53, 20_000, 300, 97);
    let collect = |budget: usize| {
        let mut w = Window::with_resident_budget(sp.clone(), budget);
        let mut out = Emitter::default();
        for chunk in evs.chunks(700) {
            w.process(0, Arc::new(chunk.iter().map(record).collect()), &mut out)
                .unwrap();
            drain(&mut w, &mut out);
            w.snapshot().unwrap();
        }
        w.on_end(&mut out).unwrap();
        drain(&mut w, &mut out);
        out.records
    };
    let in_memory = collect(usize::MAX);
    assert!(in_memory.len() > 19_000, "{}", in_memory.len());
    // About 60 records fit: the cache is dropped again and again.
    assert_eq!(collect(10_000), in_memory);
}
