//! A sink's write-ahead log: the records of each checkpoint epoch, one file per epoch
//! (`<state dir>/<pipeline>/wal/<sink>/<epoch>.wal`).
//!
//! Sealing an epoch (flush + fsync) is the sink's pre-commit: whatever happens to the
//! sink's own transaction afterwards, the epoch can be written again. Recovery redoes
//! the epoch of the last complete checkpoint into a sink that had not committed it;
//! an epoch's file goes once the sink has committed it.
//!
//! A file is a sequence of frames, one per append: the payload's length and a CRC-32
//! of length and payload (4 bytes each, little-endian), then the records in `connectd_sdk::record_codec`'s
//! binary encoding; sealing adds an end frame with the record count. The checksums and
//! the end frame make damage an error naming the file instead of fewer or other
//! records. Logs written as JSON lines (`<epoch>.jsonl`, before 2026-12-03) are still
//! read, so an upgrade can finish the epoch a crash left.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use connectd_sdk::{record_codec, Record};

use super::PipelineError;

const EXTENSION: &str = "wal";
const LEGACY_EXTENSION: &str = "jsonl";
/// An epoch's state changelogs (`keep_changelogs`).
const CHANGELOG_EXTENSION: &str = "changelog";
const FRAME_HEADER: usize = 8;
/// Set in a frame's length: the end frame, whose payload is the epoch's record count
/// (8 bytes). A log without it was cut short.
const END: u32 = 1 << 31;

#[derive(Debug)]
struct OpenEpoch {
    epoch: u64,
    file: BufWriter<File>,
    records: u64,
}

#[derive(Debug)]
pub struct Wal {
    sink: String,
    dir: PathBuf,
    open: Option<OpenEpoch>,
    /// The frame being encoded, kept between appends for its capacity.
    frame: Vec<u8>,
}

impl Wal {
    pub fn new(pipeline_dir: &Path, sink: &str) -> Self {
        Self {
            sink: sink.to_string(),
            dir: pipeline_dir.join("wal").join(sink),
            open: None,
            frame: Vec::new(),
        }
    }

    fn err(&self, what: &str, path: &Path, e: impl std::fmt::Display) -> PipelineError {
        PipelineError::new(
            &self.sink,
            format!("write-ahead log: {what} {}: {e}", path.display()),
        )
    }

    fn path(&self, epoch: u64) -> PathBuf {
        self.dir.join(format!("{epoch}.{EXTENSION}"))
    }

    fn changelog_path(&self, epoch: u64) -> PathBuf {
        self.dir.join(format!("{epoch}.{CHANGELOG_EXTENSION}"))
    }

    /// Keeps the state changelogs of `epoch` (see `engine::changelog`), durably, before
    /// its pre-commit: a recovery that redoes the epoch writes them again.
    pub fn keep_changelogs(
        &mut self,
        epoch: u64,
        logs: &[connectd_sdk::Changelog],
    ) -> Result<(), PipelineError> {
        fs::create_dir_all(&self.dir).map_err(|e| self.err("cannot create", &self.dir, e))?;
        let path = self.changelog_path(epoch);
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&path)?;
            f.write_all(&super::changelog::encode(logs))?;
            f.sync_all()
        };
        write().map_err(|e| self.err("cannot write", &path, e))
    }

    /// The state changelogs kept for `epoch`, if any.
    pub fn changelogs(
        &self,
        epoch: u64,
    ) -> Result<Option<Vec<connectd_sdk::Changelog>>, PipelineError> {
        let path = self.changelog_path(epoch);
        match fs::read(&path) {
            Ok(bytes) => super::changelog::decode(&bytes)
                .map(Some)
                .map_err(|e| self.err("cannot read", &path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err("cannot read", &path, e)),
        }
    }

    fn legacy_path(&self, epoch: u64) -> PathBuf {
        self.dir.join(format!("{epoch}.{LEGACY_EXTENSION}"))
    }

    /// Appends records to the log of `epoch` (the checkpoint they will be committed with).
    pub fn append(&mut self, epoch: u64, records: &[Record]) -> Result<(), PipelineError> {
        if self.open.as_ref().is_some_and(|o| o.epoch != epoch) {
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
            self.open = Some(OpenEpoch {
                epoch,
                file: BufWriter::with_capacity(1 << 16, f),
                records: 0,
            });
        }
        if records.is_empty() {
            return Ok(());
        }
        let frame = &mut self.frame;
        frame.clear();
        frame.resize(FRAME_HEADER, 0);
        for r in records {
            record_codec::encode(r, frame);
        }
        let payload = frame.len() - FRAME_HEADER;
        let len = match u32::try_from(payload) {
            Ok(len) if len < END => len,
            _ => {
                return Err(PipelineError::new(
                    &self.sink,
                    format!("write-ahead log: a batch of {payload} bytes exceeds a frame (2 GiB)"),
                ))
            }
        };
        seal_frame(frame, len);
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        open.records += records.len() as u64;
        open.file.write_all(frame).map_err(|e| {
            PipelineError::new(
                &self.sink,
                format!("write-ahead log: cannot write epoch {}: {e}", open.epoch),
            )
        })
    }

    /// Makes the open epoch durable (the pre-commit). An epoch with no records has no
    /// file: its redo writes nothing.
    pub fn seal(&mut self) -> Result<(), PipelineError> {
        if let Some(open) = &self.open {
            let epoch = open.epoch;
            self.seal_as(epoch)?;
        }
        Ok(())
    }

    /// Seals the open epoch as the log of checkpoint `id` (renamed, should the barrier
    /// carry another id than the one the records were logged under).
    pub fn seal_as(&mut self, id: u64) -> Result<(), PipelineError> {
        let Some(OpenEpoch {
            epoch,
            file: mut w,
            records,
        }) = self.open.take()
        else {
            return Ok(());
        };
        let path = self.path(epoch);
        let mut end = vec![0; FRAME_HEADER];
        end.extend_from_slice(&records.to_le_bytes());
        seal_frame(&mut end, END | 8);
        w.write_all(&end)
            .and_then(|_| w.flush())
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
        for path in [self.path(epoch), self.legacy_path(epoch)] {
            let file = match File::open(&path) {
                Ok(f) => BufReader::with_capacity(1 << 16, f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.err("cannot open", &path, e)),
            };
            let source = if path.extension().is_some_and(|e| e == LEGACY_EXTENSION) {
                Source::Lines(file.lines())
            } else {
                Source::Frames(file)
            };
            return Ok(WalReader {
                sink: self.sink.clone(),
                path,
                source: Some(source),
                read: VecDeque::new(),
                at: 0,
                records: 0,
            });
        }
        Ok(WalReader {
            sink: self.sink.clone(),
            path: self.path(epoch),
            source: None,
            read: VecDeque::new(),
            at: 0,
            records: 0,
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
            .filter_map(|e| {
                let name = e.file_name();
                let (epoch, ext) = name.to_str()?.split_once('.')?;
                [EXTENSION, LEGACY_EXTENSION, CHANGELOG_EXTENSION]
                    .contains(&ext)
                    .then(|| epoch.parse().ok())?
            })
            .collect();
        epochs.sort_unstable();
        epochs.dedup();
        Ok(epochs)
    }

    /// Drops the file of an epoch (committed, or given up).
    pub fn remove(&mut self, epoch: u64) -> Result<(), PipelineError> {
        if self.open.as_ref().is_some_and(|o| o.epoch == epoch) {
            self.open = None;
        }
        let paths = [
            self.path(epoch),
            self.legacy_path(epoch),
            self.changelog_path(epoch),
        ];
        for path in paths {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.err("cannot remove", &path, e)),
            }
        }
        Ok(())
    }

    /// Removes the whole log (offset reset).
    pub fn remove_all(pipeline_dir: &Path) -> std::io::Result<()> {
        match fs::remove_dir_all(pipeline_dir.join("wal")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[derive(Debug)]
enum Source {
    Frames(BufReader<File>),
    /// A log written as JSON lines by an earlier version.
    Lines(std::io::Lines<BufReader<File>>),
}

/// A sealed epoch read in chunks.
#[derive(Debug)]
pub struct WalReader {
    sink: String,
    path: PathBuf,
    /// `None` once the end is reached.
    source: Option<Source>,
    /// Records read and not yet handed out (a frame holds a whole append).
    read: VecDeque<Record>,
    /// Where the next frame (or line number, for a legacy log) begins.
    at: u64,
    /// Records read so far, to check against the end frame.
    records: u64,
}

impl WalReader {
    fn damaged(&self, what: impl std::fmt::Display) -> PipelineError {
        PipelineError::new(
            &self.sink,
            format!(
                "write-ahead log {}: {what} (removing the file gives the epoch up)",
                self.path.display()
            ),
        )
    }

    /// The next at most `max` records; `None` at the end.
    pub fn next_chunk(&mut self, max: usize) -> Result<Option<Vec<Record>>, PipelineError> {
        while self.read.len() < max && self.source.is_some() {
            if !self.read_more().map_err(|what| self.damaged(what))? {
                self.source = None;
            }
        }
        if self.read.is_empty() {
            return Ok(None);
        }
        let n = max.min(self.read.len());
        Ok(Some(self.read.drain(..n).collect()))
    }

    /// Reads the next frame (or line) into `read`; false at the end, or what is wrong.
    fn read_more(&mut self) -> Result<bool, String> {
        match self.source.as_mut() {
            None => Ok(false),
            Some(Source::Lines(lines)) => {
                let Some(line) = lines.next() else {
                    return Ok(false);
                };
                self.at += 1;
                let line = line.map_err(|e| format!("cannot read: {e}"))?;
                let r = serde_json::from_str(&line)
                    .map_err(|e| format!("damaged: line {}: {e}", self.at))?;
                self.read.push_back(r);
                Ok(true)
            }
            Some(Source::Frames(file)) => {
                let mut header = [0u8; FRAME_HEADER];
                let got = read_full(file, &mut header).map_err(|e| format!("cannot read: {e}"))?;
                let at = self.at;
                // An empty file is an epoch with no records (see `adopt`).
                if got == 0 && at == 0 {
                    return Ok(false);
                }
                if got == 0 {
                    return Err(format!(
                        "damaged: it ends at byte {at} without its end frame"
                    ));
                }
                if got < FRAME_HEADER {
                    return Err(format!("damaged: the frame at byte {at} is cut short"));
                }
                let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
                let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
                let (field, is_end, len) = (len, len & END != 0, len & !END);
                let mut payload = Vec::new();
                let got = file
                    .by_ref()
                    .take(u64::from(len))
                    .read_to_end(&mut payload)
                    .map_err(|e| format!("cannot read: {e}"))?;
                if got < len as usize {
                    return Err(format!("damaged: the frame at byte {at} is cut short"));
                }
                if frame_crc(field, &payload) != crc {
                    return Err(format!(
                        "damaged: the frame at byte {at} does not match its checksum"
                    ));
                }
                if is_end {
                    let count = <[u8; 8]>::try_from(payload.as_slice())
                        .ok()
                        .map(u64::from_le_bytes);
                    if count != Some(self.records) {
                        return Err(format!(
                            "damaged: its end frame counts {count:?} records, {} were read",
                            self.records
                        ));
                    }
                    let mut more = [0u8; 1];
                    if read_full(file, &mut more).map_err(|e| format!("cannot read: {e}"))? != 0 {
                        return Err(format!("damaged: bytes follow its end frame at byte {at}"));
                    }
                    return Ok(false);
                }
                let mut records = record_codec::Decoder::new(&payload);
                while !records.is_empty() {
                    let r = records
                        .record()
                        .map_err(|e| format!("damaged: in the frame at byte {at}, {e}"))?;
                    self.read.push_back(r);
                    self.records += 1;
                }
                self.at += (FRAME_HEADER + payload.len()) as u64;
                Ok(true)
            }
        }
    }
}

/// Fills in the header of a frame whose payload follows the first `FRAME_HEADER` bytes.
fn seal_frame(frame: &mut [u8], len: u32) {
    frame[..4].copy_from_slice(&len.to_le_bytes());
    let crc = frame_crc(len, &frame[FRAME_HEADER..]);
    frame[4..FRAME_HEADER].copy_from_slice(&crc.to_le_bytes());
}

/// A frame's checksum covers its length field (with the end flag) and its payload.
fn frame_crc(len: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Reads until `buf` is full or the end: how many bytes were read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
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
    }

    /// A cut or changed byte anywhere in a sealed log is an error naming the file,
    /// never fewer or other records.
    #[test]
    fn a_damaged_log_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::new(dir.path(), "out");
        wal.append(5, &[rec(1), rec(2)]).unwrap();
        wal.append(5, &[rec(3)]).unwrap();
        wal.seal().unwrap();
        let path = dir.path().join("wal/out/5.wal");
        let bytes = std::fs::read(&path).unwrap();
        for cut in 1..bytes.len() {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let e = wal.read(5).unwrap_err().message;
            assert!(
                e.contains("5.wal") && e.contains("damaged"),
                "cut at {cut}: {e}"
            );
        }
        for at in 0..bytes.len() {
            let mut changed = bytes.clone();
            changed[at] ^= 0x20;
            std::fs::write(&path, &changed).unwrap();
            let e = wal.read(5).unwrap_err().message;
            assert!(e.contains("5.wal"), "byte {at}: {e}");
        }
    }

    /// A log an earlier version wrote as JSON lines is listed, read and removed.
    #[test]
    fn a_log_of_json_lines_is_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::new(dir.path(), "out");
        std::fs::create_dir_all(dir.path().join("wal/out")).unwrap();
        let lines: String = [rec(1), rec(2)]
            .iter()
            .map(|r| serde_json::to_string(r).unwrap() + "\n")
            .collect();
        std::fs::write(dir.path().join("wal/out/6.jsonl"), lines).unwrap();
        assert_eq!(wal.epochs().unwrap(), [6]);
        assert_eq!(wal.read(6).unwrap(), [rec(1), rec(2)]);
        wal.remove(6).unwrap();
        assert_eq!(wal.epochs().unwrap(), Vec::<u64>::new());
        std::fs::write(dir.path().join("wal/out/7.jsonl"), "{\"value\":").unwrap();
        assert!(wal.read(7).unwrap_err().message.contains("7.jsonl"));
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
        let chunks: Vec<Vec<Record>> =
            std::iter::from_fn(|| reader.next_chunk(2).unwrap()).collect();
        assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
        assert_eq!(chunks.concat(), (0..5).map(rec).collect::<Vec<_>>());
        // Nothing logged: adopted as an empty epoch, which recovery still sees.
        wal.adopt(&other, 8).unwrap();
        assert_eq!(wal.epochs().unwrap(), [7, 8]);
        assert_eq!(wal.read(8).unwrap(), []);
    }
}
