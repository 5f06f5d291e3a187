//! A followed log file rotated as logrotate does, in the running worker: renamed away
//! while the writer still appends to it, a new file at the path; copied and truncated
//! in place; rotated while the worker is down after a SIGKILL, once, and twice as
//! logrotate numbers or dates its files. Every line reaches the sink once, in order.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

fn append(path: &Path, from: u64, to: u64) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for n in from..to {
        writeln!(f, "{{\"n\":{n},\"msg\":\"request served\"}}").unwrap();
    }
}

fn truncate(path: &Path) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(0)
        .unwrap();
}

/// The numbers in the sink's CSV.
fn written(dir: &Path) -> Vec<u64> {
    std::fs::read_to_string(dir.join("out.csv"))
        .unwrap_or_default()
        .lines()
        .skip(1)
        .map(|l| l.parse().unwrap())
        .collect()
}

fn wait_for_rows(dir: &Path, child: &std::process::Child, n: usize) {
    let started = Instant::now();
    while written(dir).len() < n {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{} of {n} rows: {}",
            written(dir).len(),
            stderr_tail(child, 4000)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The pipeline of these tests: `app.jsonl` followed into `out.csv`.
fn tail_pipeline(dir: &Path, name: &str) -> std::path::PathBuf {
    write_pipeline(
        dir,
        "p.yaml",
        &format!("name: {name}\ncheckpoint: {{interval: 100ms}}\nsources:\n  lines: {{type: file, path: app.jsonl, follow: true, poll_interval: 20ms}}\nsinks:\n  out: {{type: csv, inputs: [lines], path: out.csv, columns: [n]}}\n"),
    )
}

/// Runs the worker until `rows` rows are written and a checkpoint has passed them,
/// then SIGKILLs it.
fn killed_after_rows(dir: &Path, cfg: &Path, rows: usize) {
    let mut child = spawn(dir, cfg, &[]);
    wait_for_rows(dir, &child, rows);
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, libc::SIGKILL);
    let _ = child.wait();
}

/// Runs the worker until the sink holds as many rows as `want`, stops it with SIGTERM
/// and checks the rows.
fn stopped_with(dir: &Path, cfg: &Path, want: Vec<u64>) {
    let mut child = spawn(dir, cfg, &[]);
    wait_for_rows(dir, &child, want.len());
    signal(&child, libc::SIGTERM);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(30)).success());
    assert_eq!(written(dir), want);
}

#[test]
fn a_followed_file_rotated_and_truncated_loses_and_repeats_no_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.jsonl");
    append(&log, 0, 1000);
    let cfg = tail_pipeline(dir.path(), "tail");
    let mut child = spawn(dir.path(), &cfg, &[]);
    wait_for_rows(dir.path(), &child, 1000);

    // Renamed away; the writer appends to the old file a while, then to a new one.
    append(&log, 1000, 1500);
    std::fs::rename(&log, dir.path().join("app.jsonl.1")).unwrap();
    append(&dir.path().join("app.jsonl.1"), 1500, 1600);
    append(&log, 1600, 2000);
    wait_for_rows(dir.path(), &child, 2000);

    // Copied and truncated in place, then written again.
    truncate(&log);
    append(&log, 2000, 2300);
    wait_for_rows(dir.path(), &child, 2300);

    // Killed; rotated while down: the rest of the old file comes first.
    signal(&child, libc::SIGKILL);
    let _ = child.wait();
    append(&log, 2300, 2400);
    std::fs::rename(&log, dir.path().join("app.jsonl.2")).unwrap();
    append(&log, 2400, 2600);
    stopped_with(dir.path(), &cfg, (0..2600).collect());
}

/// Rotated twice while the worker is down, numbered as logrotate does (`.1` the
/// newest): the rest of the file read, then the one rotated after it, then the new one.
/// Before, the file in between was skipped without a word.
#[test]
fn a_followed_file_rotated_twice_while_down_is_read_in_turn() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.jsonl");
    append(&log, 0, 500);
    rotate_numbered(&log);
    append(&log, 500, 1000);
    let cfg = tail_pipeline(dir.path(), "tail");
    // Started after the first rotation: the path's file from its start.
    killed_after_rows(dir.path(), &cfg, 500);
    append(&log, 1000, 1100);
    rotate_numbered(&log);
    append(&log, 1100, 1200);
    rotate_numbered(&log);
    append(&log, 1200, 1300);
    stopped_with(dir.path(), &cfg, (500..1300).collect());
}

/// Rotated twice while the worker is down, with dates in the names (logrotate's
/// `dateext`), beside another log whose name begins alike: the rest of the file read,
/// the one rotated after it, then the new one; never the other log. Before, the file
/// in between was skipped without a word.
#[test]
fn a_followed_file_rotated_twice_with_dated_names_while_down_is_read_in_turn() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.jsonl");
    let other = dir.path().join("app.jsonl-errors");
    append(&log, 0, 500);
    let cfg = tail_pipeline(dir.path(), "tail");
    killed_after_rows(dir.path(), &cfg, 500);
    append(&log, 500, 600);
    std::fs::rename(&log, dir.path().join("app.jsonl-20261206")).unwrap();
    append(&log, 600, 700);
    std::fs::rename(&log, dir.path().join("app.jsonl-20261207")).unwrap();
    append(&log, 700, 800);
    append(&other, 9000, 9010);
    stopped_with(dir.path(), &cfg, (0..800).collect());
}

/// Copied and truncated in place (`copytruncate`) while the worker is down, with lines
/// it had not read: they come from the copy, then the file from its start. Before,
/// they were lost with a warning.
#[test]
fn lines_unread_at_a_copytruncate_while_down_come_from_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.jsonl");
    append(&log, 0, 500);
    let cfg = tail_pipeline(dir.path(), "tail");
    killed_after_rows(dir.path(), &cfg, 500);
    append(&log, 500, 600);
    std::fs::copy(&log, dir.path().join("app.jsonl.1")).unwrap();
    truncate(&log);
    append(&log, 600, 700);
    stopped_with(dir.path(), &cfg, (0..700).collect());
}

/// Copied and truncated in place while the worker is far behind the writer, reading a
/// backlog: it reads on in the copy from its position, then the file from its start.
/// (Reading on in the truncated file would give the new lines' middles and lose the
/// backlog's rest.)
#[test]
fn a_copytruncate_while_the_worker_is_behind_loses_and_repeats_no_line() {
    const BACKLOG: u64 = 300_000;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.jsonl");
    append(&log, 0, BACKLOG);
    let cfg = tail_pipeline(dir.path(), "behind");
    let mut child = spawn(dir.path(), &cfg, &[]);
    wait_for_rows(dir.path(), &child, 1);
    std::fs::copy(&log, dir.path().join("app.jsonl.1")).unwrap();
    truncate(&log);
    let at_truncation = written(dir.path()).len();
    append(&log, BACKLOG, BACKLOG + 100);
    assert!(
        at_truncation < BACKLOG as usize / 2,
        "the backlog was mostly read before the truncation ({at_truncation} rows): the test needs a larger one"
    );
    wait_for_rows(dir.path(), &child, BACKLOG as usize + 100);
    signal(&child, libc::SIGTERM);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(30)).success());
    let rows = written(dir.path());
    let first_wrong = rows.iter().zip(0..).position(|(row, n)| *row != n);
    assert!(
        rows.len() as u64 == BACKLOG + 100 && first_wrong.is_none(),
        "{} rows, the first out of place at {first_wrong:?}: {:?}",
        rows.len(),
        first_wrong.map(|i| &rows[i..(i + 5).min(rows.len())])
    );
}

/// logrotate's numbered rotation: `app.jsonl.N` becomes `.N+1`, the newest first,
/// and the path's file `.1`.
fn rotate_numbered(path: &Path) {
    let numbered = |n: u32| path.with_file_name(format!("app.jsonl.{n}"));
    let highest = (1..)
        .take_while(|n| numbered(*n).exists())
        .last()
        .unwrap_or(0);
    for n in (1..=highest).rev() {
        std::fs::rename(numbered(n), numbered(n + 1)).unwrap();
    }
    std::fs::rename(path, numbered(1)).unwrap();
}

/// A followed file that is not there when the worker starts (the application that
/// writes it starts later) is waited for, not an error.
#[test]
fn a_followed_file_that_appears_later_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tail_pipeline(dir.path(), "later");
    let mut child = spawn(dir.path(), &cfg, &[]);
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        child.try_wait().unwrap().is_none(),
        "stopped before the file appeared: {}",
        stderr_tail(&child, 4000)
    );
    append(&dir.path().join("app.jsonl"), 0, 100);
    wait_for_rows(dir.path(), &child, 100);
    signal(&child, libc::SIGTERM);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(30)).success());
    assert_eq!(written(dir.path()), (0..100).collect::<Vec<_>>());
}
