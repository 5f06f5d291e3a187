//! The log of a checkpoint's large table deltas (`<pipeline>/state-deltas/<id>.log`).
//!
//! A large delta goes into its table as a table file (fjall's ingestion), skipping the
//! store's journal, memtable and flush (measured: a tenth of a 1 M-key dedup's CPU and
//! a third of its peak memory). An ingestion is not
//! part of the store's write batch, so a checkpoint's large deltas are first written
//! here and synced, then the manifest commits (the commit point, as before), then the
//! deltas are ingested and the log is removed. Opening the store ingests what a log
//! of a committed checkpoint still holds, and removes the log of one that never
//! committed. Ingesting the same delta twice gives the same table, and no later
//! checkpoint commits while a log exists, so a crash at any step is safe.
//!
//! Format: `CDL1`; per table `1`, its name (u32 length, bytes) and entries (u64
//! count; per entry the key as u32 length and bytes, then `0` for a deletion or `1`
//! and the value as u32 length and bytes); then `0` and the CRC-32 of all before
//! (little-endian).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use fjall::Slice;

const MAGIC: &[u8; 4] = b"CDL1";

/// A table's delta as read back: its name and its changes in key order.
pub(super) type LoggedDelta = (String, Vec<(Slice, Option<Slice>)>);

pub(super) struct DeltaLogs {
    dir: PathBuf,
}

/// Bytes encoded before they are written out and summed.
const CHUNK: usize = 1 << 20;

/// Writes `buf` to `file`, adds it to `crc` and empties it.
fn write_chunk(
    buf: &mut Vec<u8>,
    file: &mut File,
    crc: &mut crc32fast::Hasher,
) -> std::io::Result<()> {
    crc.update(buf);
    file.write_all(buf)?;
    buf.clear();
    Ok(())
}

fn len32(n: usize) -> std::io::Result<[u8; 4]> {
    u32::try_from(n)
        .map(u32::to_le_bytes)
        .map_err(|_| std::io::Error::other("a key or value of 4 GiB or more"))
}

impl DeltaLogs {
    pub(super) fn new(pipeline_dir: &Path) -> Self {
        Self {
            dir: pipeline_dir.join("state-deltas"),
        }
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id}.log"))
    }

    /// Writes and syncs the log of checkpoint `id`.
    pub(super) fn write<'a, E>(
        &self,
        id: u64,
        deltas: impl IntoIterator<Item = (&'a str, E)>,
    ) -> std::io::Result<()>
    where
        E: IntoIterator<Item = &'a (Slice, Option<Slice>)>,
        E::IntoIter: ExactSizeIterator,
    {
        std::fs::create_dir_all(&self.dir)?;
        let mut file = File::create(self.path(id))?;
        let mut crc = crc32fast::Hasher::new();
        // Entries are encoded into one buffer and written a chunk at a time: through a
        // `BufWriter` each of an entry's five pieces was a call of its own, most of
        // the log's cost for entries of a few bytes.
        let mut buf = Vec::with_capacity(CHUNK + (1 << 10));
        buf.extend_from_slice(MAGIC);
        for (name, entries) in deltas {
            let entries = entries.into_iter();
            buf.push(1);
            buf.extend_from_slice(&len32(name.len())?);
            buf.extend_from_slice(name.as_bytes());
            buf.extend_from_slice(&(entries.len() as u64).to_le_bytes());
            for (k, v) in entries {
                buf.extend_from_slice(&len32(k.len())?);
                buf.extend_from_slice(k);
                match v {
                    None => buf.push(0),
                    Some(v) => {
                        buf.push(1);
                        buf.extend_from_slice(&len32(v.len())?);
                        buf.extend_from_slice(v);
                    }
                }
                if buf.len() >= CHUNK {
                    write_chunk(&mut buf, &mut file, &mut crc)?;
                }
            }
        }
        buf.push(0);
        write_chunk(&mut buf, &mut file, &mut crc)?;
        file.write_all(&crc.finalize().to_le_bytes())?;
        file.sync_all()?;
        sync_dir(&self.dir)
    }

    /// Removes the log of checkpoint `id`, durably: no later checkpoint may commit
    /// while it could still be found.
    pub(super) fn remove(&self, id: u64) -> std::io::Result<()> {
        std::fs::remove_file(self.path(id))?;
        sync_dir(&self.dir)
    }

    /// The logs present, by checkpoint id in ascending order.
    pub(super) fn list(&self) -> std::io::Result<Vec<(u64, PathBuf)>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut logs = Vec::new();
        for entry in entries {
            let path = entry?.path();
            let id = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".log"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(id) = id {
                logs.push((id, path));
            }
        }
        logs.sort();
        Ok(logs)
    }

    /// Reads a log back; a log that is truncated or damaged is an error saying so.
    pub(super) fn read(path: &Path) -> Result<Vec<LoggedDelta>, String> {
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        let damaged = |why: &str| format!("the delta log {} is damaged: {why}", path.display());
        let Some(body_len) = bytes.len().checked_sub(4) else {
            return Err(damaged("too short"));
        };
        let (body, sum) = bytes.split_at(body_len);
        let mut want = [0u8; 4];
        want.copy_from_slice(sum);
        if crc32fast::hash(body) != u32::from_le_bytes(want) || !body.starts_with(MAGIC) {
            return Err(damaged("its checksum does not match"));
        }
        let mut r = Reader {
            bytes: body,
            at: MAGIC.len(),
        };
        let mut deltas = Vec::new();
        loop {
            match r.byte() {
                Some(0) => return Ok(deltas),
                Some(1) => {}
                _ => return Err(damaged("a table entry is malformed")),
            }
            let name = r
                .chunk()
                .and_then(|n| String::from_utf8(n.to_vec()).ok())
                .ok_or_else(|| damaged("a table name is malformed"))?;
            let count = r.u64().ok_or_else(|| damaged("a count is missing"))?;
            let mut entries = Vec::with_capacity(count.min(1 << 24) as usize);
            for _ in 0..count {
                let entry = (|| {
                    let k = Slice::from(r.chunk()?);
                    let v = match r.byte()? {
                        0 => None,
                        1 => Some(Slice::from(r.chunk()?)),
                        _ => return None,
                    };
                    Some((k, v))
                })();
                entries.push(entry.ok_or_else(|| damaged("an entry is malformed"))?);
            }
            deltas.push((name, entries));
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u64(&mut self) -> Option<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Some(u64::from_le_bytes(a))
    }

    fn chunk(&mut self) -> Option<&'a [u8]> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        self.take(u32::from_le_bytes(a) as usize)
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn delta(n: u32) -> Vec<(Slice, Option<Slice>)> {
        (0..n)
            .map(|i| {
                let v = (i % 3 != 0).then(|| Slice::from(vec![b'v'; (i % 40) as usize]));
                (Slice::from(&i.to_be_bytes()[..]), v)
            })
            .collect()
    }

    #[test]
    fn a_log_reads_back_as_written_and_a_damaged_one_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let logs = DeltaLogs::new(dir.path());
        assert!(logs.list().unwrap().is_empty(), "no directory yet");
        let (a, b) = (delta(1000), delta(3));
        logs.write(7, [("t.a", &a[..]), ("t.b", &b[..])]).unwrap();
        logs.write(12, [("t.a", &b[..])]).unwrap();
        let listed = logs.list().unwrap();
        assert_eq!(
            listed.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            [7, 12]
        );
        let back = DeltaLogs::read(&listed[0].1).unwrap();
        assert_eq!(back, [("t.a".to_string(), a), ("t.b".to_string(), b)]);

        // Truncated, or one byte changed: the checksum says so.
        let bytes = std::fs::read(&listed[0].1).unwrap();
        std::fs::write(&listed[0].1, &bytes[..bytes.len() - 9]).unwrap();
        let e = DeltaLogs::read(&listed[0].1).unwrap_err();
        assert!(e.contains("7.log") && e.contains("damaged"), "{e}");
        let mut changed = bytes.clone();
        changed[100] ^= 1;
        std::fs::write(&listed[0].1, &changed).unwrap();
        assert!(DeltaLogs::read(&listed[0].1).is_err());

        logs.remove(7).unwrap();
        assert_eq!(logs.list().unwrap().len(), 1);
    }
}
