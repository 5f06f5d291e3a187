//! A followed CSV file rotated while a row is half written, and a restart after the
//! rotation: every row comes out once, whole, named by its own file's header.

use std::io::Write;
use std::path::Path;

use connectd_sdk::{BadRecord, Source, SourcePoll, Value};

use super::csv_rows::{CellType, CsvReadOptions, CsvRows};
use super::tests::source;
use super::FileSource;

fn write(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn csv_source(path: &Path) -> FileSource {
    let mut options = CsvReadOptions::default();
    options.types.insert("n".into(), CellType::Int);
    let mut s = source(path.to_path_buf(), true);
    s.csv = Some(CsvRows::new(options).unwrap());
    s
}

/// Polls until the source idles: each row's `n` and `note`.
async fn drain(s: &mut FileSource) -> Vec<(i64, String)> {
    let (mut rows, mut bad) = (Vec::new(), Vec::<BadRecord>::new());
    while let SourcePoll::Batch(records) = s.poll(1000, &mut bad).await.unwrap() {
        for r in records {
            let o = r.value.as_object().unwrap();
            match (o.get("n"), o.get("note")) {
                (Some(Value::Int(n)), Some(Value::Str(note))) => rows.push((*n, note.to_string())),
                other => panic!("not a row: {other:?}"),
            }
        }
        assert!(bad.is_empty(), "{:?}", bad[0].reason);
    }
    rows
}

fn rows(from: i64, to: i64) -> Vec<(i64, String)> {
    (from..to).map(|n| (n, format!("row {n}"))).collect()
}

#[tokio::test]
async fn a_rotated_csv_file_gives_its_half_row_whole_then_the_new_files_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.csv");
    write(&path, "n,note\n0,row 0\n1,row 1\n");
    let mut s = csv_source(&path);
    s.open(None).await.unwrap();
    assert_eq!(drain(&mut s).await, rows(0, 2));
    // A row half written: its quoted note is open across a line end.
    write(&path, "2,\"two\n");
    assert_eq!(drain(&mut s).await, []);
    let checkpoint = s.offset();

    // Rotated; the writer ends the row in the old file, then starts a new one whose
    // header has the columns the other way round.
    std::fs::rename(&path, dir.path().join("app.csv.1")).unwrap();
    write(&dir.path().join("app.csv.1"), "lines\"\n3,row 3\n");
    write(&path, "note,n\nrow 4,4\n");
    let mut want = rows(0, 2);
    want.push((2, "two\nlines".into()));
    want.extend(rows(3, 5));
    let mut got = rows(0, 2);
    got.extend(drain(&mut s).await);
    assert_eq!(got, want);

    // A worker restarted from the checkpoint taken while the row was open: the rest
    // of the rotated file from the row's start, then the new file, by its header.
    let mut again = csv_source(&path);
    again.open(Some(checkpoint)).await.unwrap();
    assert_eq!(drain(&mut again).await, want[2..]);

    // And from a position past the new file's header: the header is read again.
    let mut later = csv_source(&path);
    later.open(Some(again.offset())).await.unwrap();
    write(&path, "row 5,5\n");
    assert_eq!(drain(&mut later).await, rows(5, 6));
}
