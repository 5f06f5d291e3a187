//! Exactly-once appends to a local file, in two phases (Flink's file sink: a file and a
//! length are a recoverable committable, so no write-ahead log is needed):
//! - pre-commit: data flushed and fsynced, then the commit record gains `prepared`
//!   (the checkpoint id and the file's length) by atomic rename;
//! - commit: the record's committed id and length become the prepared ones.
//!
//! On open, the file is truncated back to the prepared length if a checkpoint was
//! prepared after the last commit (the recovery then commits it, or gives it up with
//! `abort_prepared`), else to the committed length, discarding writes of an unfinished
//! epoch. Shared by the `csv`, `jsonl` and `avro` sinks.

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use connectd_sdk::{BuildContext, Checkpoint, Committed, ConnectorError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CommitRecord {
    /// `None`: the baseline written before the first checkpoint of a new sink.
    id: Option<u64>,
    length: u64,
    #[serde(default)]
    state: serde_json::Value,
    /// A checkpoint pre-committed after `id` and not committed yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prepared: Option<Prepared>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Prepared {
    id: u64,
    length: u64,
}

/// A data file plus its commit record.
#[derive(Debug)]
pub struct CommittedFile {
    pub data_path: PathBuf,
    commit_path: PathBuf,
    file: Option<File>,
    /// The commit record as on disk (read at open, then as written).
    record: CommitRecord,
    stats: std::sync::Arc<connectd_sdk::stats::SinkStats>,
}

/// Where a sink of a pipeline keeps its commit record.
pub fn commit_path(ctx: &BuildContext) -> PathBuf {
    ctx.state_dir
        .join(&ctx.pipeline)
        .join("sinks")
        .join(format!("{}.json", ctx.component))
}

fn io(what: impl AsRef<str>, path: &Path, e: std::io::Error) -> ConnectorError {
    ConnectorError::io(format!("{} {}", what.as_ref(), path.display()), e)
}

impl CommittedFile {
    pub fn new(data_path: PathBuf, ctx: &BuildContext) -> Self {
        Self {
            data_path,
            commit_path: commit_path(ctx),
            file: None,
            record: CommitRecord {
                id: None,
                length: 0,
                state: serde_json::Value::Null,
                prepared: None,
            },
            stats: Default::default(),
        }
    }

    /// Where this sink's commit record is: deleting it starts the sink afresh.
    pub fn commit_record_path(&self) -> &Path {
        &self.commit_path
    }

    /// Opens for appending after the prepared epoch, if any, else at the committed
    /// length. Returns the last checkpoint and the file's length from here on.
    pub fn open(&mut self) -> Result<(Option<Committed>, u64), ConnectorError> {
        if let Some(dir) = self
            .data_path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            fs::create_dir_all(dir).map_err(|e| io("cannot create directory", dir, e))?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(&self.data_path)
            .map_err(|e| io("cannot open", &self.data_path, e))?;
        let len = file
            .metadata()
            .map_err(|e| io("cannot stat", &self.data_path, e))?
            .len();
        let record = match self.read_commit()? {
            Some(mut r) => {
                // A prepared record the commit did not clear is an older one's.
                r.prepared = r.prepared.filter(|p| r.id.is_none_or(|id| p.id > id));
                let kept = r.prepared.map_or(r.length, |p| p.length);
                if len < kept {
                    return Err(ConnectorError::permanent(format!(
                        "{} is {len} bytes but {kept} bytes were committed to it: the file was truncated or replaced \
                         outside connectd (delete {} to start this sink afresh)",
                        self.data_path.display(),
                        self.commit_path.display()
                    )));
                }
                r
            }
            None => {
                // First run: what is in the file already is the user's; remember its
                // length so a crash before the first checkpoint cannot leave half data.
                let r = CommitRecord {
                    id: None,
                    length: len,
                    state: serde_json::Value::Null,
                    prepared: None,
                };
                self.write_commit(&r)?;
                r
            }
        };
        let kept = record.prepared.map_or(record.length, |p| p.length);
        if len > kept {
            tracing::info!(file = %self.data_path.display(), discarded_bytes = len - kept, "discarding writes after the last checkpoint");
            file.set_len(kept)
                .map_err(|e| io("cannot truncate", &self.data_path, e))?;
        }
        file.seek(SeekFrom::Start(kept))
            .map_err(|e| io("cannot seek", &self.data_path, e))?;
        self.file = Some(file);
        let committed = record.id.map(|id| Checkpoint {
            id,
            state: record.state.clone(),
        });
        self.record = record;
        Ok((committed, kept))
    }

    pub fn file(&mut self) -> Result<&mut File, ConnectorError> {
        self.file.as_mut().ok_or_else(|| {
            ConnectorError::permanent(format!("{} used before open", self.data_path.display()))
        })
    }

    /// The checkpoint pre-committed after the last commit, kept by `open`.
    pub fn prepared(&self) -> Option<u64> {
        self.record.prepared.map(|p| p.id)
    }

    /// Makes the data durable, then records it as prepared for checkpoint `id`
    /// (atomic rename): a crash from here on keeps it for the recovery to commit.
    pub fn pre_commit(&mut self, id: u64) -> Result<(), ConnectorError> {
        let length = self.sync_data()?;
        let mut record = self.record.clone();
        record.prepared = Some(Prepared { id, length });
        self.write_commit(&record)?;
        self.record = record;
        Ok(())
    }

    /// Commits `checkpoint`: all that was written, which is what its pre-commit made
    /// durable when nothing came after it (else flushed and fsynced first).
    pub fn commit(&mut self, checkpoint: &Checkpoint) -> Result<(), ConnectorError> {
        let path = self.data_path.clone();
        let at = self
            .file()?
            .stream_position()
            .map_err(|e| io("cannot tell position of", &path, e))?;
        let length = match self.record.prepared {
            Some(p) if p.id == checkpoint.id && p.length == at => at,
            _ => self.sync_data()?,
        };
        let record = CommitRecord {
            id: Some(checkpoint.id),
            length,
            state: checkpoint.state.clone(),
            prepared: None,
        };
        self.write_commit(&record)?;
        self.stats
            .written(length.saturating_sub(self.record.length));
        self.record = record;
        Ok(())
    }

    /// Gives up the prepared epoch: the record forgets it first, then the file is cut
    /// back to the committed length (a crash between leaves bytes past the committed
    /// length, which the next `open` cuts). Returns that length.
    pub fn abort_prepared(&mut self) -> Result<u64, ConnectorError> {
        let length = self.record.length;
        if self.record.prepared.is_some() {
            let mut record = self.record.clone();
            record.prepared = None;
            self.write_commit(&record)?;
            self.record = record;
        }
        let path = self.data_path.clone();
        let file = self.file()?;
        file.set_len(length)
            .map_err(|e| io("cannot truncate", &path, e))?;
        file.seek(SeekFrom::Start(length))
            .map_err(|e| io("cannot seek", &path, e))?;
        Ok(length)
    }

    /// Flushes and fsyncs the data; returns the file's length.
    fn sync_data(&mut self) -> Result<u64, ConnectorError> {
        let path = self.data_path.clone();
        let file = self.file()?;
        file.flush().map_err(|e| io("cannot flush", &path, e))?;
        file.sync_data().map_err(|e| io("cannot fsync", &path, e))?;
        file.stream_position()
            .map_err(|e| io("cannot tell position of", &path, e))
    }

    /// The bytes committed to the file, for `/metrics`.
    pub fn stats(&self) -> std::sync::Arc<connectd_sdk::stats::SinkStats> {
        self.stats.clone()
    }

    /// Forgets the checkpoint: the next `open` takes the file as it is (nothing
    /// truncated) and appends from the beginning of the input.
    pub fn reset(&mut self) -> Result<(), ConnectorError> {
        match fs::remove_file(&self.commit_path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("cannot remove", &self.commit_path, e)),
        }
    }

    fn read_commit(&self) -> Result<Option<CommitRecord>, ConnectorError> {
        match fs::read(&self.commit_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                ConnectorError::permanent(format!(
                    "the checkpoint file {} is corrupt",
                    self.commit_path.display()
                ))
                .with_source(e)
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("cannot read", &self.commit_path, e)),
        }
    }

    fn write_commit(&self, record: &CommitRecord) -> Result<(), ConnectorError> {
        let dir = self.commit_path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|e| io("cannot create directory", dir, e))?;
        let tmp = self.commit_path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(record)
            .map_err(|e| ConnectorError::permanent("cannot encode checkpoint").with_source(e))?;
        let mut f = File::create(&tmp).map_err(|e| io("cannot create", &tmp, e))?;
        f.write_all(&bytes)
            .map_err(|e| io("cannot write", &tmp, e))?;
        f.sync_all().map_err(|e| io("cannot fsync", &tmp, e))?;
        fs::rename(&tmp, &self.commit_path)
            .map_err(|e| io("cannot rename onto", &self.commit_path, e))?;
        // The rename itself must reach the disk before the checkpoint counts.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("cannot fsync directory", dir, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn file_in(dir: &Path) -> CommittedFile {
        let ctx = BuildContext {
            pipeline: "p".into(),
            component: "out".into(),
            state_dir: dir.join("state"),
            ..Default::default()
        };
        CommittedFile::new(dir.join("out.txt"), &ctx)
    }

    fn checkpoint(id: u64) -> Checkpoint {
        Checkpoint {
            id,
            state: serde_json::json!({"at": id}),
        }
    }

    /// Commits "a" as checkpoint 1, prepares "b" as 2, writes "c" (epoch 3), then
    /// "crashes" (the value is dropped unclosed) and reopens.
    fn prepared_then_reopened(dir: &Path) -> CommittedFile {
        let mut f = file_in(dir);
        f.open().unwrap();
        f.file().unwrap().write_all(b"a").unwrap();
        f.pre_commit(1).unwrap();
        f.commit(&checkpoint(1)).unwrap();
        f.file().unwrap().write_all(b"b").unwrap();
        f.pre_commit(2).unwrap();
        f.file().unwrap().write_all(b"c").unwrap();
        drop(f);
        let mut f = file_in(dir);
        let (committed, length) = f.open().unwrap();
        assert_eq!(committed.map(|c| c.id), Some(1));
        assert_eq!(
            length, 2,
            "the prepared epoch is kept, the one after it cut"
        );
        assert_eq!(f.prepared(), Some(2));
        f
    }

    #[test]
    fn a_prepared_epoch_survives_a_crash_and_commits_without_being_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = prepared_then_reopened(dir.path());
        f.commit(&checkpoint(2)).unwrap();
        f.file().unwrap().write_all(b"d").unwrap();
        drop(f);
        let mut f = file_in(dir.path());
        let (committed, length) = f.open().unwrap();
        assert_eq!(committed.unwrap().state, serde_json::json!({"at": 2}));
        assert_eq!((length, f.prepared()), (2, None));
        assert_eq!(fs::read(dir.path().join("out.txt")).unwrap(), b"ab");
    }

    #[test]
    fn what_is_written_between_pre_commit_and_commit_is_committed_too() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = file_in(dir.path());
        f.open().unwrap();
        f.file().unwrap().write_all(b"a").unwrap();
        f.pre_commit(1).unwrap();
        f.file().unwrap().write_all(b"b").unwrap();
        f.commit(&checkpoint(1)).unwrap();
        drop(f);
        assert_eq!(file_in(dir.path()).open().unwrap().1, 2);
    }

    #[test]
    fn a_prepared_epoch_given_up_is_cut_and_stays_cut_after_another_crash() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = prepared_then_reopened(dir.path());
        assert_eq!(f.abort_prepared().unwrap(), 1);
        assert_eq!(fs::read(dir.path().join("out.txt")).unwrap(), b"a");
        f.file().unwrap().write_all(b"x").unwrap();
        drop(f);
        let mut f = file_in(dir.path());
        let (committed, length) = f.open().unwrap();
        assert_eq!(
            (committed.map(|c| c.id), length, f.prepared()),
            (Some(1), 1, None)
        );
        assert_eq!(fs::read(dir.path().join("out.txt")).unwrap(), b"a");
    }

    #[test]
    fn a_prepared_epoch_cut_outside_connectd_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        drop(prepared_then_reopened(dir.path()));
        OpenOptions::new()
            .write(true)
            .open(dir.path().join("out.txt"))
            .unwrap()
            .set_len(1)
            .unwrap();
        let e = file_in(dir.path()).open().unwrap_err().to_string();
        assert!(e.contains("out.txt is 1 bytes but 2 bytes"), "{e}");
    }

    #[test]
    fn a_commit_record_without_prepared_reads_as_before() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("state/p/sinks")).unwrap();
        fs::write(dir.path().join("out.txt"), b"abc").unwrap();
        fs::write(
            dir.path().join("state/p/sinks/out.json"),
            br#"{"id":4,"length":2,"state":{"at":4}}"#,
        )
        .unwrap();
        let mut f = file_in(dir.path());
        let (committed, length) = f.open().unwrap();
        assert_eq!(
            (committed.map(|c| c.id), length, f.prepared()),
            (Some(4), 2, None)
        );
        assert_eq!(fs::read(dir.path().join("out.txt")).unwrap(), b"ab");
    }
}
