//! Exactly-once appends to a local file: data is flushed and fsynced, then a checkpoint
//! holding the file's committed length is written by atomic rename. On open, the file is
//! truncated back to the committed length, discarding writes of an unfinished
//! checkpoint. Shared by the `csv` and `jsonl` sinks.

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use connectd_sdk::{BuildContext, Checkpoint, Committed, ConnectorError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct CommitRecord {
    /// `None`: the baseline written before the first checkpoint of a new sink.
    id: Option<u64>,
    length: u64,
    #[serde(default)]
    state: serde_json::Value,
}

/// A data file plus its commit record.
#[derive(Debug)]
pub struct CommittedFile {
    pub data_path: PathBuf,
    commit_path: PathBuf,
    file: Option<File>,
    /// The length the last commit made durable: what a commit adds counts as written.
    committed_length: u64,
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
            committed_length: 0,
            stats: Default::default(),
        }
    }

    /// Opens for appending at the committed length. Returns the last checkpoint and
    /// the file's committed length.
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
        let record = self.read_commit()?;
        let (committed, length) = match record {
            Some(r) => {
                if len < r.length {
                    return Err(ConnectorError::permanent(format!(
                        "{} is {len} bytes but {} bytes were committed to it: the file was truncated or replaced \
                         outside connectd (delete {} to start this sink afresh)",
                        self.data_path.display(),
                        r.length,
                        self.commit_path.display()
                    )));
                }
                let committed = r.id.map(|id| Checkpoint { id, state: r.state });
                (committed, r.length)
            }
            None => {
                // First run: what is in the file already is the user's; remember its
                // length so a crash before the first checkpoint cannot leave half data.
                self.write_commit(&CommitRecord {
                    id: None,
                    length: len,
                    state: serde_json::Value::Null,
                })?;
                (None, len)
            }
        };
        if len > length {
            tracing::info!(file = %self.data_path.display(), discarded_bytes = len - length, "discarding writes after the last checkpoint");
            file.set_len(length)
                .map_err(|e| io("cannot truncate", &self.data_path, e))?;
        }
        file.seek(SeekFrom::Start(length))
            .map_err(|e| io("cannot seek", &self.data_path, e))?;
        self.file = Some(file);
        self.committed_length = length;
        Ok((committed, length))
    }

    pub fn file(&mut self) -> Result<&mut File, ConnectorError> {
        self.file.as_mut().ok_or_else(|| {
            ConnectorError::permanent(format!("{} used before open", self.data_path.display()))
        })
    }

    /// Makes the data durable, then the checkpoint (atomic rename).
    pub fn commit(&mut self, checkpoint: &Checkpoint) -> Result<(), ConnectorError> {
        let path = self.data_path.clone();
        let file = self.file()?;
        file.flush().map_err(|e| io("cannot flush", &path, e))?;
        file.sync_data().map_err(|e| io("cannot fsync", &path, e))?;
        let length = file
            .stream_position()
            .map_err(|e| io("cannot tell position of", &path, e))?;
        self.write_commit(&CommitRecord {
            id: Some(checkpoint.id),
            length,
            state: checkpoint.state.clone(),
        })?;
        self.stats
            .written(length.saturating_sub(self.committed_length));
        self.committed_length = length;
        Ok(())
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
