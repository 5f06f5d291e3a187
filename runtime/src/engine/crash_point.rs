//! Deterministic crashes at the steps of the two-phase commit, for tests of the running
//! binary: `CONNECTD_CRASH_AT=<step>:<checkpoint id>[:<sink>]` aborts the process (as a
//! SIGKILL would stop it) when that sink — any sink, if none is named — reaches that
//! step of that checkpoint (`*`: any checkpoint). Steps: `prepared` (its write-ahead log
//! sealed, the log not yet written), `logged` (the state store holds the checkpoint, no
//! sink has committed it through this one), `logged-changes` (as `logged`, in the sink
//! carrying state changelogs, when they hold changes of that checkpoint), `committed` (this sink committed, others may
//! not have), `backfilled` (a backfill's epoch moved into the sink's log, not committed),
//! and in the state store (sink `state`) `delta-logged` (large deltas logged, the
//! manifest not committed) and `ingesting` (committed, the deltas not yet ingested).
//! Read once; unset, it costs one comparison per checkpoint.
//!
//! `CONNECTD_TEST_COMMIT_TRACE=<file>` appends `begin <sink> <id>` when a sink starts
//! committing a checkpoint (its barrier aligned) and `end <sink> <id>` when it is done,
//! so a test that SIGKILLs at random can tell which kills landed inside a commit.

use std::sync::OnceLock;

#[derive(Debug)]
struct Point {
    step: String,
    /// `None`: any checkpoint.
    id: Option<u64>,
    sink: Option<String>,
}

fn point() -> Option<&'static Point> {
    static POINT: OnceLock<Option<Point>> = OnceLock::new();
    POINT
        .get_or_init(|| {
            let spec = std::env::var("CONNECTD_CRASH_AT").ok()?;
            let mut parts = spec.splitn(3, ':');
            let step = parts.next()?.to_string();
            let id = match parts.next()? {
                "*" => None,
                n => Some(n.parse().ok()?),
            };
            let sink = parts.next().map(str::to_string);
            Some(Point { step, id, sink })
        })
        .as_ref()
}

fn trace_file() -> Option<&'static std::path::Path> {
    static FILE: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    FILE.get_or_init(|| std::env::var_os("CONNECTD_TEST_COMMIT_TRACE").map(Into::into))
        .as_deref()
}

/// Appends `<what> <sink> <id>` to the commit trace, if one is asked for.
pub fn trace(what: &str, id: u64, sink: &str) {
    if let Some(path) = trace_file() {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{what} {sink} {id}");
        }
    }
}

/// Aborts the process if the test hook names this step.
pub fn hit(step: &str, id: u64, sink: &str) {
    if let Some(p) = point() {
        if p.step == step
            && p.id.is_none_or(|p| p == id)
            && p.sink.as_deref().is_none_or(|s| s == sink)
        {
            eprintln!("CONNECTD_CRASH_AT: aborting at {step} of checkpoint {id} in sink `{sink}`");
            std::process::abort();
        }
    }
}

/// The number of changes from which a table's delta is ingested as a table file
/// (`default` unless `CONNECTD_TEST_INGEST_MIN` sets it, so that a test reaches that
/// path with small epochs whatever the machine's speed).
pub fn ingest_min(default: usize) -> usize {
    static MIN: OnceLock<Option<usize>> = OnceLock::new();
    MIN.get_or_init(|| std::env::var("CONNECTD_TEST_INGEST_MIN").ok()?.parse().ok())
        .unwrap_or(default)
}
