//! Lines longer than `max_line_bytes`.

use connectd_sdk::{BadRecord, Source, SourcePoll};

use super::tests::source;

/// A line longer than `max_line_bytes` is not read into memory: its first 64 KiB go
/// to the DLQ with its line, bytes and length, and the lines around it pass —
/// within the reader's buffer (a short cap), across its end (3 MiB, past the 1 MiB
/// buffer), and as the last line without its end. One under the cap but longer than
/// the buffer is read whole.
#[tokio::test]
async fn a_line_over_max_line_bytes_goes_to_the_dlq_by_its_first_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.jsonl");
    let long = |n: usize| format!("{{\"s\":\"{}\"}}", "x".repeat(n));
    let lines = [
        "{\"n\":0}".to_string(),
        long(3_000),
        "{\"n\":2}".to_string(),
        long(3 << 20),
        long(1_500_000),
        "{\"n\":5}".to_string(),
    ];
    let mut text = lines.join("\n") + "\n";
    text.push_str(&long(2 << 20)); // the last, without its end
    std::fs::write(&path, &text).unwrap();
    let mut s = source(path, false);
    s.max_line = 2_000_000;
    s.open(None).await.unwrap();
    let (mut seen, mut bad) = (Vec::new(), Vec::new());
    let mut rejected: Vec<BadRecord> = Vec::new();
    loop {
        let polled = s.poll(1000, &mut bad).await.unwrap();
        rejected.append(&mut bad);
        match polled {
            SourcePoll::Batch(records) => seen.extend(records),
            SourcePoll::End => break,
            SourcePoll::Idle(_) => panic!("a file read once does not idle"),
        }
    }
    let numbers: Vec<Option<i64>> = seen
        .iter()
        .map(|r| {
            r.value
                .as_object()
                .and_then(|o| o.get("n"))
                .and_then(|v| match v {
                    connectd_sdk::Value::Int(i) => Some(*i),
                    _ => None,
                })
        })
        .collect();
    assert_eq!(
        numbers,
        [Some(0), None, Some(2), None, Some(5)],
        "lines 2 and 5 read whole"
    );
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    let starts: Vec<usize> = lines
        .iter()
        .scan(0, |at, l| {
            let start = *at;
            *at += l.len() + 1;
            Some(start)
        })
        .collect();
    // With a 2 MB cap, the 3 000-byte line is read; the 3 MiB one and the last are not.
    let last_start = text.len() - long(2 << 20).len();
    for (b, (line, start, len)) in rejected.iter().zip([
        (4, starts[3], lines[3].len() + 1),
        (7, last_start, long(2 << 20).len()),
    ]) {
        assert_eq!(
            b.position,
            format!(
                "line {line} of {} (bytes {start}..{})",
                s.path.display(),
                start + len
            )
        );
        assert!(
            b.reason.contains(&format!(
                "the line is {len} bytes, longer than `max_line_bytes` (2000000)"
            )),
            "{}",
            b.reason
        );
        let kept = b.raw.as_deref().unwrap();
        assert_eq!(kept.len(), 64 << 10);
        assert!(kept.starts_with("{\"s\":\"xxx"));
    }
    assert_eq!(s.pos, text.len() as u64);
    assert_eq!(s.line, 7);

    // Within the reader's buffer: a cap of 1 KiB.
    let mut s = source(s.path.clone(), false);
    s.max_line = 1024;
    s.open(None).await.unwrap();
    let mut bad = Vec::new();
    let SourcePoll::Batch(first) = s.poll(2, &mut bad).await.unwrap() else {
        panic!("a batch")
    };
    assert_eq!(first.len(), 2, "lines 1 and 3");
    assert_eq!(bad.len(), 1);
    assert!(
        bad[0].position.starts_with("line 2 of"),
        "{}",
        bad[0].position
    );
    let whole = format!("{}\n", lines[1]);
    assert_eq!(
        bad[0].raw.as_deref(),
        Some(whole.as_str()),
        "kept whole: under 64 KiB"
    );
}
