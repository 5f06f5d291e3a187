//! A sink's write-ahead log: the records of each checkpoint epoch, one file per epoch
//! (`<state dir>/<pipeline>/wal/<sink>/<epoch>.jsonl`, a record per line).
//!
//! Sealing an epoch (flush + fsync) is the sink's pre-commit: whatever happens to the
//! sink's own transaction afterwards, the epoch can be written again. Recovery redoes
//! the epoch of the last complete checkpoint into a sink that had not committed it;
//! an epoch's file goes once the sink has committed it.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use connectd_sdk::Record;

use super::PipelineError;

#[derive(Debug)]
pub struct Wal {
    sink: String,
    dir: PathBuf,
    open: Option<(u64, BufWriter<File>)>,
}

impl Wal {
    pub fn new(pipeline_dir: &Path, sink: &str) -> Self {
        Self {
            sink: sink.to_string(),
            dir: pipeline_dir.join("wal").join(sink),
            open: None,
        }
    }

    fn err(&self, what: &str, path: &Path, e: impl std::fmt::Display) -> PipelineError {
        PipelineError::new(
            &self.sink,
            format!("write-ahead log: {what} {}: {e}", path.display()),
        )
    }

    fn path(&self, epoch: u64) -> PathBuf {
        self.dir.join(format!("{epoch}.jsonl"))
    }

    /// Appends records to the log of `epoch` (the checkpoint they will be committed with).
    pub fn append(&mut self, epoch: u64, records: &[Record]) -> Result<(), PipelineError> {
        if self.open.as_ref().is_some_and(|(e, _)| *e != epoch) {
            self.seal()?;
        }
        if self.open.is_none() {
            fs::create_dir_all(&self.dir).map_err(|e| self.err("cannot create", &self.dir, e))?;
            let path = self.path(epoch);
            // A file left by a run that crashed before this epoch was complete is stale.
            let f = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&path)
                .map_err(|e| self.err("cannot open", &path, e))?;
            self.open = Some((epoch, BufWriter::with_capacity(1 << 16, f)));
        }
        let Some((epoch, w)) = self.open.as_mut() else {
            return Ok(());
        };
        let epoch = *epoch;
        for r in records {
            serde_json::to_writer(&mut *w, r)
                .map_err(std::io::Error::from)
                .and_then(|_| w.write_all(b"\n"))
                .map_err(|e| {
                    PipelineError::new(
                        &self.sink,
                        format!("write-ahead log: cannot write epoch {epoch}: {e}"),
                    )
                })?;
        }
        Ok(())
    }

    /// Makes the open epoch durable (the pre-commit). An epoch with no records has no
    /// file: its redo writes nothing.
    pub fn seal(&mut self) -> Result<(), PipelineError> {
        if let Some((epoch, _)) = &self.open {
            let epoch = *epoch;
            self.seal_as(epoch)?;
        }
        Ok(())
    }

    /// Seals the open epoch as the log of checkpoint `id` (renamed, should the barrier
    /// carry another id than the one the records were logged under).
    pub fn seal_as(&mut self, id: u64) -> Result<(), PipelineError> {
        let Some((epoch, mut w)) = self.open.take() else {
            return Ok(());
        };
        let path = self.path(epoch);
        w.flush()
            .and_then(|_| w.get_ref().sync_data())
            .map_err(|e| self.err("cannot fsync", &path, e))?;
        if epoch != id {
            let to = self.path(id);
            fs::rename(&path, &to).map_err(|e| self.err("cannot rename", &path, e))?;
        }
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.err("cannot fsync", &self.dir, e))
    }

    /// The records of a sealed epoch (none when it had none).
    pub fn read(&self, epoch: u64) -> Result<Vec<Record>, PipelineError> {
        let mut reader = self.reader(epoch)?;
        let mut out = Vec::new();
        while let Some(chunk) = reader.next_chunk(usize::MAX)? {
            out.extend(chunk);
        }
        Ok(out)
    }

    /// Reads a sealed epoch a chunk at a time (a backfill's epoch can exceed memory).
    pub fn reader(&self, epoch: u64) -> Result<WalReader, PipelineError> {
        let path = self.path(epoch);
        let lines = match File::open(&path) {
            Ok(f) => Some(BufReader::new(f).lines()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(self.err("cannot open", &path, e)),
        };
        Ok(WalReader {
            sink: self.sink.clone(),
            path,
            lines,
            line: 0,
        })
    }

    /// Takes over the sealed epoch `epoch` of another log of this sink (a backfill's),
    /// durably: afterwards this log holds it as if the sink had logged it.
    pub fn adopt(&mut self, from: &Wal, epoch: u64) -> Result<(), PipelineError> {
        fs::create_dir_all(&self.dir).map_err(|e| self.err("cannot create", &self.dir, e))?;
        let (src, to) = (from.path(epoch), self.path(epoch));
        match fs::rename(&src, &to) {
            Ok(()) => {}
            // An epoch with no records has no file; an empty one says "backfilled".
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                File::create(&to)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| self.err("cannot create", &to, e))?;
            }
            Err(e) => return Err(self.err("cannot move", &src, e)),
        }
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.err("cannot fsync", &self.dir, e))
    }

    /// The epochs that have a file.
    pub fn epochs(&self) -> Result<Vec<u64>, PipelineError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.err("cannot list", &self.dir, e)),
        };
        let mut epochs: Vec<u64> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".jsonl")?.parse().ok())
            .collect();
        epochs.sort_unstable();
        Ok(epochs)
    }

    /// Drops the file of an epoch (committed, or given up).
    pub fn remove(&mut self, epoch: u64) -> Result<(), PipelineError> {
        if self.open.as_ref().is_some_and(|(e, _)| *e == epoch) {
            self.open = None;
        }
        let path = self.path(epoch);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err("cannot remove", &path, e)),
        }
    }

    /// Removes the whole log (offset reset).
    pub fn remove_all(pipeline_dir: &Path) -> std::io::Result<()> {
        match fs::remove_dir_all(pipeline_dir.join("wal")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// A sealed epoch read in chunks.
#[derive(Debug)]
pub struct WalReader {
    sink: String,
    path: PathBuf,
    lines: Option<std::io::Lines<BufReader<File>>>,
    line: usize,
}

impl WalReader {
    /// The next at most `max` records; `None` at the end.
    pub fn next_chunk(&mut self, max: usize) -> Result<Option<Vec<Record>>, PipelineError> {
        let Some(lines) = self.lines.as_mut() else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for line in lines.by_ref() {
            self.line += 1;
            let err = |what: &str, e: String| {
                PipelineError::new(
                    &self.sink,
                    format!("write-ahead log: {what} {}: {e}", self.path.display()),
                )
            };
            let line = line.map_err(|e| err("cannot read", e.to_string()))?;
            let r = serde_json::from_str(&line).map_err(|e| {
                err(
                    "corrupt record",
                    format!(
                        "line {}: {e} (remove the file to give the epoch up)",
                        self.line
                    ),
                )
            })?;
            out.push(r);
            if out.len() >= max {
                return Ok(Some(out));
            }
        }
        self.lines = None;
        Ok((!out.is_empty()).then_some(out))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use connectd_sdk::Value;

    fn rec(i: i64) -> Record {
        Record::new(Value::from(i))
            .with_key(Value::from("k"))
            .with_timestamp(i)
    }

    #[test]
    fn epochs_are_written_sealed_read_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::new(dir.path(), "out");
        wal.append(3, &[rec(1), rec(2)]).unwrap();
        wal.append(3, &[rec(3)]).unwrap();
        wal.append(4, &[rec(4)]).unwrap();
        wal.seal().unwrap();
        assert_eq!(wal.epochs().unwrap(), [3, 4]);
        assert_eq!(wal.read(3).unwrap(), [rec(1), rec(2), rec(3)]);
        assert_eq!(wal.read(4).unwrap(), [rec(4)]);
        assert_eq!(wal.read(5).unwrap(), []);
        wal.remove(3).unwrap();
        assert_eq!(wal.epochs().unwrap(), [4]);
        // A stale file of an epoch is replaced, not appended to.
        let mut again = Wal::new(dir.path(), "out");
        again.append(4, &[rec(9)]).unwrap();
        again.seal().unwrap();
        assert_eq!(again.read(4).unwrap(), [rec(9)]);
        std::fs::write(dir.path().join("wal/out/5.jsonl"), "{\"value\":").unwrap();
        assert!(again.read(5).unwrap_err().message.contains("5.jsonl"));
    }

    #[test]
    fn an_epoch_is_read_in_chunks_and_adopted_from_another_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut other = Wal::new(&dir.path().join("backfill"), "out");
        other
            .append(7, &(0..5).map(rec).collect::<Vec<_>>())
            .unwrap();
        other.seal().unwrap();
        let mut wal = Wal::new(dir.path(), "out");
        wal.adopt(&other, 7).unwrap();
        assert_eq!(other.epochs().unwrap(), Vec::<u64>::new());
        assert_eq!(wal.epochs().unwrap(), [7]);
        let mut reader = wal.reader(7).unwrap();
        let sizes: Vec<usize> = std::iter::from_fn(|| reader.next_chunk(2).unwrap())
            .map(|c| c.len())
            .collect();
        assert_eq!(sizes, [2, 2, 1]);
        // Nothing logged: adopted as an empty epoch, which recovery still sees.
        wal.adopt(&other, 8).unwrap();
        assert_eq!(wal.epochs().unwrap(), [7, 8]);
        assert_eq!(wal.read(8).unwrap(), []);
    }
}
