//! A followed file rotated or truncated while it is read, and a restart after a
//! rotation: every line comes out once, in order.

use std::io::Write;
use std::path::Path;

use connectd_sdk::{Source, SourcePoll};

use super::tests::{number, source};
use super::FileSource;

fn append(path: &Path, from: i64, to: i64) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for n in from..to {
        writeln!(
            f,
            "{{\"n\":{n},\"line\":\"a log line long enough to matter\"}}"
        )
        .unwrap();
    }
}

/// As `copytruncate` leaves it: empty, the same file.
fn truncate(path: &Path) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(0)
        .unwrap();
}

/// Polls until the source idles, in batches of up to 1 000 lines; the numbers read.
async fn drain(s: &mut FileSource) -> Vec<i64> {
    let (mut seen, mut bad) = (Vec::new(), Vec::new());
    loop {
        match s.poll(1000, &mut bad).await.unwrap() {
            SourcePoll::Batch(records) => {
                seen.extend(records.iter().map(number));
                // A source that reads a file again and again never idles.
                assert!(
                    seen.len() < 1_000_000,
                    "the source keeps reading: {:?}",
                    &seen[..20]
                );
            }
            SourcePoll::Idle(_) => break,
            SourcePoll::End => panic!("a followed file does not end"),
        }
        assert!(bad.is_empty(), "{:?}", &bad[..1]);
    }
    seen
}

/// A new followed source of `path`, opened at `checkpoint`: the worker restarted.
async fn reopened(path: &Path, checkpoint: serde_json::Value) -> FileSource {
    let mut s = source(path.to_path_buf(), true);
    s.open(Some(checkpoint)).await.unwrap();
    s
}

/// A followed `app.jsonl` in a directory of its own, its first three lines read.
async fn three_lines_read() -> (tempfile::TempDir, std::path::PathBuf, FileSource) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.jsonl");
    append(&path, 0, 3);
    let mut s = source(path.clone(), true);
    s.open(None).await.unwrap();
    assert_eq!(drain(&mut s).await, [0, 1, 2]);
    (dir, path, s)
}

/// Renamed away while the writer still appends to it, a new file at the path: the
/// rest of the old one, a last line without its end included, then the new one.
#[tokio::test]
async fn a_rotated_file_is_read_to_its_end_then_the_new_one() {
    let (dir, path, mut s) = three_lines_read().await;
    let rotated = dir.path().join("app.jsonl.1");
    std::fs::rename(&path, &rotated).unwrap();
    append(&rotated, 3, 5);
    let mut old = std::fs::OpenOptions::new()
        .append(true)
        .open(&rotated)
        .unwrap();
    write!(old, "{{\"n\":5}}").unwrap();
    append(&path, 6, 9);
    assert_eq!(drain(&mut s).await, [3, 4, 5, 6, 7, 8]);
    append(&path, 9, 10);
    assert_eq!(drain(&mut s).await, [9]);
}

/// Copied and truncated in place (`copytruncate`), then written again: shorter than
/// the position, or as long but beginning otherwise, it is read from its start.
#[tokio::test]
async fn a_truncated_file_is_read_again_from_its_start() {
    let (_dir, path, mut s) = three_lines_read().await;
    truncate(&path);
    append(&path, 10, 11);
    assert_eq!(drain(&mut s).await, [10]);
    // Truncated and already written past the position before the source looked.
    truncate(&path);
    append(&path, 20, 24);
    assert_eq!(drain(&mut s).await, [20, 21, 22, 23]);
}

/// A checkpoint taken before a rotation: the restart finds the rotated file beside the
/// path by its identity and reads from the checkpoint's position in it, then the new
/// file. With the old file gone, it reads the new one from its start.
#[tokio::test]
async fn a_restart_after_a_rotation_reads_the_rest_of_the_rotated_file_first() {
    let (dir, path, s) = three_lines_read().await;
    let checkpoint = s.offset();
    // While stopped: more lines, rotated, a new file.
    append(&path, 3, 5);
    let rotated = dir.path().join("app.jsonl.1");
    std::fs::rename(&path, &rotated).unwrap();
    append(&path, 5, 7);
    let mut again = reopened(&path, checkpoint.clone()).await;
    assert_eq!(drain(&mut again).await, [3, 4, 5, 6]);

    std::fs::remove_file(&rotated).unwrap();
    let mut gone = reopened(&path, checkpoint).await;
    assert_eq!(drain(&mut gone).await, [5, 6]);
}

/// Rotated as logrotate numbers its files (`.1` the newest): the rotation shifts `.1`
/// to `.2` and the path's file to `.1`.
fn rotate_numbered(path: &Path) {
    let name = |n: u32| path.with_file_name(format!("app.jsonl.{n}"));
    if name(1).exists() {
        std::fs::rename(name(1), name(2)).unwrap();
    }
    std::fs::rename(path, name(1)).unwrap();
}

/// Rotated twice while the worker was down (or between two looks): the rest of the
/// file read, then the one rotated after it, then the path's, every line once.
#[tokio::test]
async fn files_rotated_more_than_once_are_read_in_turn() {
    let (_dir, path, s) = three_lines_read().await;
    let checkpoint = s.offset();
    append(&path, 3, 5);
    rotate_numbered(&path);
    append(&path, 5, 7);
    rotate_numbered(&path);
    append(&path, 7, 9);
    let mut again = reopened(&path, checkpoint).await;
    assert_eq!(drain(&mut again).await, [3, 4, 5, 6, 7, 8]);

    // Running, two rotations between two polls.
    append(&path, 9, 10);
    rotate_numbered(&path);
    append(&path, 10, 11);
    rotate_numbered(&path);
    append(&path, 11, 12);
    assert_eq!(drain(&mut again).await, [9, 10, 11]);
}

/// A `.1` older than the rotated `.2` (files named otherwise than logrotate's numbers)
/// is not taken for a later rotation: read once already, it is not read again.
#[tokio::test]
async fn an_older_file_numbered_below_the_rotated_one_is_not_read_again() {
    let (dir, path, s) = three_lines_read().await;
    let older = dir.path().join("app.jsonl.1");
    append(&older, 100, 102);
    let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&older)
        .unwrap();
    f.set_modified(long_ago).unwrap();
    let checkpoint = s.offset();
    append(&path, 3, 5);
    std::fs::rename(&path, dir.path().join("app.jsonl.2")).unwrap();
    append(&path, 5, 7);
    let mut again = reopened(&path, checkpoint).await;
    assert_eq!(drain(&mut again).await, [3, 4, 5, 6]);
}

/// Rotated with dates in the names (logrotate's `dateext`): the path's file renamed
/// to `app.jsonl-<date>`, which it keeps. Its last write time is set a minute per
/// day, as days apart would leave it.
fn rotate_dated(path: &Path, day: u32) {
    rotate_dated_with(path, day, '-');
}

/// The same with `separator` before the date (`dateformat .%Y%m%d` makes
/// `app.jsonl.20261206`).
fn rotate_dated_with(path: &Path, day: u32, separator: char) {
    let rotated = path.with_file_name(format!("app.jsonl{separator}202612{day:02}"));
    std::fs::rename(path, &rotated).unwrap();
    let written = std::time::SystemTime::now() - std::time::Duration::from_secs(3600)
        + std::time::Duration::from_secs(60 * u64::from(day));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&rotated)
        .unwrap();
    f.set_modified(written).unwrap();
}

/// Dated rotations while the worker was down, and between two polls: read in turn.
/// Another log beside it whose name begins alike (`app.jsonl-errors`, written later
/// than all of them) is not a rotation and is never read.
#[tokio::test]
async fn files_rotated_with_dated_names_are_read_in_turn() {
    let (dir, path, s) = three_lines_read().await;
    let checkpoint = s.offset();
    append(&dir.path().join("app.jsonl-errors"), 500, 502);
    append(&path, 3, 5);
    rotate_dated(&path, 6);
    append(&path, 5, 7);
    rotate_dated(&path, 7);
    append(&path, 7, 9);
    let mut again = reopened(&path, checkpoint).await;
    assert_eq!(drain(&mut again).await, [3, 4, 5, 6, 7, 8]);

    append(&path, 9, 10);
    rotate_dated(&path, 8);
    append(&path, 10, 11);
    rotate_dated(&path, 9);
    append(&path, 11, 12);
    append(&dir.path().join("app.jsonl-errors"), 502, 503);
    assert_eq!(drain(&mut again).await, [9, 10, 11]);
}

/// Dates after a dot (`app.jsonl.20261206`) are dates, not logrotate's numbers, and a
/// hard link to the file read (another name, the same file) is not read again.
#[tokio::test]
async fn dates_after_a_dot_are_read_in_turn_and_a_hard_link_is_not_read_again() {
    let (dir, path, s) = three_lines_read().await;
    let checkpoint = s.offset();
    append(&path, 3, 5);
    rotate_dated_with(&path, 6, '.');
    std::fs::hard_link(
        dir.path().join("app.jsonl.20261206"),
        dir.path().join("app.jsonl.20261206-1"),
    )
    .unwrap();
    append(&path, 5, 7);
    rotate_dated_with(&path, 7, '.');
    append(&path, 7, 9);
    let mut again = reopened(&path, checkpoint).await;
    assert_eq!(drain(&mut again).await, [3, 4, 5, 6, 7, 8]);
}

/// A dated rotation compressed since (`app.jsonl-20261207.gz`) is passed over: its
/// bytes are not read as lines; the next uncompressed one follows.
#[tokio::test]
async fn a_compressed_dated_rotation_is_passed_over() {
    let (_dir, path, s) = three_lines_read().await;
    let checkpoint = s.offset();
    append(&path, 3, 5);
    rotate_dated(&path, 6);
    append(&path, 100, 102);
    rotate_dated(&path, 7);
    let day7 = path.with_file_name("app.jsonl-20261207");
    std::fs::rename(&day7, day7.with_file_name("app.jsonl-20261207.gz")).unwrap();
    append(&path, 5, 7);
    rotate_dated(&path, 8);
    append(&path, 7, 9);
    let mut again = reopened(&path, checkpoint).await;
    assert_eq!(drain(&mut again).await, [3, 4, 5, 6, 7, 8]);
}

/// As `copytruncate` leaves it: a copy beside it, the file itself empty.
fn copy_and_truncate(path: &Path) {
    std::fs::copy(path, path.with_file_name("app.jsonl.1")).unwrap();
    truncate(path);
}

/// Copied and truncated in place with lines not read yet: they are read from the copy,
/// then the file from its start. Running, and while stopped.
#[tokio::test]
async fn lines_not_read_before_a_copytruncate_come_from_the_copy() {
    let (_dir, path, mut s) = three_lines_read().await;
    append(&path, 3, 5);
    copy_and_truncate(&path);
    append(&path, 10, 12);
    assert_eq!(drain(&mut s).await, [3, 4, 10, 11]);

    let checkpoint = s.offset();
    append(&path, 12, 14);
    std::fs::remove_file(path.with_file_name("app.jsonl.1")).unwrap();
    copy_and_truncate(&path);
    append(&path, 20, 22);
    let mut again = reopened(&path, checkpoint).await;
    assert_eq!(drain(&mut again).await, [12, 13, 20, 21]);
    // Restarted again in the file, not the copy.
    let mut third = reopened(&path, again.offset()).await;
    append(&path, 22, 23);
    assert_eq!(drain(&mut third).await, [22]);
}

/// Copied and truncated while the source is far behind (past what its reader has
/// buffered), then written past its position: it reads on in the copy, never the new
/// bytes past its position, then the file from its start.
#[tokio::test]
async fn a_copytruncate_while_behind_reads_on_in_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.jsonl");
    append(&path, 0, 40_000); // about 2.3 MB, twice the reader's buffer
    let mut s = source(path.clone(), true);
    s.open(None).await.unwrap();
    let mut bad = Vec::new();
    let SourcePoll::Batch(first) = s.poll(100, &mut bad).await.unwrap() else {
        panic!("no lines")
    };
    copy_and_truncate(&path);
    append(&path, 100_000, 150_000);
    let mut seen: Vec<i64> = first.iter().map(number).collect();
    seen.extend(drain(&mut s).await);
    let want: Vec<i64> = (0..40_000).chain(100_000..150_000).collect();
    assert_eq!(seen.len(), want.len());
    assert!(seen == want, "lines out of order, lost or repeated");
}

/// Only the newest file beside it can be its copy, and only if it begins as the one
/// read: an older rotation that begins alike (a log whose first lines are always the
/// same) is not read past the position.
#[tokio::test]
async fn a_file_beginning_otherwise_is_not_taken_for_the_copy() {
    let (dir, path, mut s) = three_lines_read().await;
    let older = dir.path().join("app.jsonl.2");
    std::fs::copy(&path, &older).unwrap();
    append(&older, 70, 72);
    let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&older)
        .unwrap();
    f.set_modified(long_ago).unwrap();
    append(&dir.path().join("app.jsonl.1"), 50, 60);
    truncate(&path);
    append(&path, 10, 12);
    assert_eq!(drain(&mut s).await, [10, 11]);
}

/// A followed file that is not there yet (the application writing it has not started):
/// the source waits for it, then reads it from its start. Read once, a missing file is
/// an error naming it.
#[tokio::test]
async fn a_followed_file_that_is_not_there_yet_is_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.jsonl");
    let mut s = source(path.clone(), true);
    s.open(None).await.unwrap();
    assert_eq!(drain(&mut s).await, Vec::<i64>::new());
    append(&path, 0, 2);
    assert_eq!(drain(&mut s).await, [0, 1]);

    let mut once = source(dir.path().join("absent.jsonl"), false);
    let e = once.open(None).await.unwrap_err().to_string();
    assert!(e.contains("absent.jsonl"), "{e}");
}

/// A checkpoint taken, then the file truncated and written past the checkpoint's
/// position while the worker was down (the same inode): the restart sees that it no
/// longer begins as it did and reads it from its start, not from the middle of a line.
#[tokio::test]
async fn a_file_rewritten_in_place_while_stopped_is_read_from_its_start() {
    let (_dir, path, s) = three_lines_read().await;
    let checkpoint = s.offset();
    truncate(&path);
    append(&path, 100, 106);
    let mut again = reopened(&path, checkpoint).await;
    assert_eq!(drain(&mut again).await, [100, 101, 102, 103, 104, 105]);
}

/// Rewritten in place after its end was read, and a checkpoint taken before the source
/// looked again: the checkpoint describes the bytes read, so the restart sees a file
/// that begins otherwise and reads it from its start. (It once took the print of the
/// file as it was then, which matched the new bytes, and resumed at the old position.)
#[tokio::test]
async fn a_checkpoint_taken_after_an_unseen_rewrite_describes_what_was_read() {
    let (_dir, path, s) = three_lines_read().await;
    truncate(&path);
    append(&path, 100, 104);
    let checkpoint = s.offset();
    let mut again = reopened(&path, checkpoint).await;
    assert_eq!(drain(&mut again).await, [100, 101, 102, 103]);
}

/// Truncated while stopped to less than the position, the first bytes unchanged (a
/// log that begins with the same header): read from its start, not an error.
#[tokio::test]
async fn a_followed_file_shorter_than_the_position_is_read_from_its_start() {
    let (_dir, path, mut s) = three_lines_read().await;
    append(&path, 3, 10);
    assert_eq!(drain(&mut s).await, (3..10).collect::<Vec<_>>());
    let checkpoint = s.offset();
    truncate(&path);
    // Past the 256 bytes the print covers, and short of the position.
    append(&path, 0, 6);
    let mut again = reopened(&path, checkpoint).await;
    assert_eq!(drain(&mut again).await, [0, 1, 2, 3, 4, 5]);
}

/// A backfill compares where it stops with a checkpoint's position: one written before
/// positions named their file and its first bytes matches on the byte position alone;
/// another position, or another file's print, does not.
#[tokio::test]
async fn a_position_from_before_file_identities_matches_on_its_byte_position() {
    let (_dir, _path, s) = three_lines_read().await;
    let now = s.offset();
    let mut old = now.clone();
    let fields = old.as_object_mut().unwrap();
    fields.remove("file");
    fields.remove("head");
    assert!(s.same_position(&old, &now));
    assert!(s.same_position(&now, &now));
    let mut elsewhere = old.clone();
    elsewhere["pos"] = serde_json::json!(now["pos"].as_u64().unwrap() - 1);
    assert!(!s.same_position(&elsewhere, &now));
    let mut other_file = now.clone();
    other_file["head"]["hash"] = serde_json::json!(1);
    assert!(!s.same_position(&other_file, &now));
}

/// A position says the same however it was reached: followed (having looked at the
/// file for rotation) or read once, as a backfill reads it again and compares.
#[tokio::test]
async fn a_position_is_the_same_followed_or_read_once() {
    let (_dir, path, followed) = three_lines_read().await;
    let mut once = source(path, false);
    once.open(None).await.unwrap();
    let mut bad = Vec::new();
    while let SourcePoll::Batch(_) = once.poll(1000, &mut bad).await.unwrap() {}
    assert_eq!(once.offset(), followed.offset());
}
