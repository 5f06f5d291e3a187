//! Which file a followed path is: log rotation renames the file away and creates a new
//! one at the path (or copies it and truncates it in place), and a position means
//! something only in the file it was taken in. A file is known by its device and
//! inode, as Filebeat does, and its first bytes tell a truncated and rewritten file
//! from the one read.

use std::fs::{File, Metadata};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How much of a file's beginning is kept to recognise it.
pub const HEAD_BYTES: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    #[cfg(unix)]
    pub fn of(meta: &Metadata) -> Option<FileId> {
        use std::os::unix::fs::MetadataExt;
        Some(FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// No identity without inodes: the path is the file.
    #[cfg(not(unix))]
    pub fn of(_meta: &Metadata) -> Option<FileId> {
        None
    }

    /// The file at `path` now, if there is one.
    pub fn at(path: &Path) -> Option<FileId> {
        std::fs::metadata(path).ok().as_ref().and_then(FileId::of)
    }
}

/// Where the file `id` is now in `path`'s directory (rotated: `app.log` renamed to
/// `app.log.1`, say), if it is still there.
pub fn find_rotated(path: &Path, id: FileId) -> Option<PathBuf> {
    std::fs::read_dir(directory_of(path))
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|candidate| {
            std::fs::metadata(candidate)
                .ok()
                .is_some_and(|m| m.is_file() && FileId::of(&m) == Some(id))
        })
}

fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Endings of files a rotation compressed: not read.
const COMPRESSED: [&str; 4] = ["gz", "zst", "xz", "bz2"];

/// Where the lines went of a file copied and then truncated in place (logrotate's
/// `copytruncate`) past `pos`, the position read to: the newest file beside `path`
/// named after it (`app.log.1`, `app.log-20261207`), not the path's own and not
/// compressed, if it begins with the bytes `print` was taken of, is longer than `pos`
/// and has a line end right before it. Only the newest: an older rotation of a log
/// whose first lines are always alike is not a copy of this one. `None` at position 0:
/// nothing was read that could tell the copy.
pub fn find_copy(path: &Path, print: HeadPrint, pos: u64) -> Option<PathBuf> {
    if pos == 0 {
        return None;
    }
    let base = path.file_name()?.to_str()?;
    let own = FileId::at(path);
    let named_after = |name: &str| {
        name.strip_prefix(base)
            .and_then(|rest| rest.chars().next().map(|c| (c, rest)))
            .is_some_and(|(c, rest)| {
                matches!(c, '.' | '-' | '_')
                    && !COMPRESSED
                        .iter()
                        .any(|ext| rest.ends_with(&format!(".{ext}")))
            })
    };
    let (_, newest, meta) = std::fs::read_dir(directory_of(path))
        .ok()?
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_str().is_some_and(named_after))
        .filter_map(|entry| {
            let candidate = entry.path();
            let meta = std::fs::metadata(&candidate).ok()?;
            (meta.is_file() && FileId::of(&meta) != own)
                .then(|| (meta.modified().ok(), candidate, meta))
        })
        .max_by_key(|(written, _, _)| *written)?;
    if meta.len() <= pos {
        return None;
    }
    let f = File::open(&newest).ok()?;
    let mut before = [0u8; 1];
    let line_end = read_at_offset(&f, &mut before, pos - 1) == 1 && before[0] == b'\n';
    (line_end && print.matches(&f)).then_some(newest)
}

/// The file rotated right after the file `id`: a worker that was down across several
/// rotations reads them in turn before the file at the path. Two namings are known:
/// - logrotate's numbers (`app.log.1` the newest, `app.log.2` the one before): `id` is
///   now `app.log.N` with N ≥ 2, and `app.log.(N-1)` was last written no earlier than
///   it (modification times keep a directory named otherwise, an older `.1` beside a
///   newer `.2`, from being read twice);
/// - dates (`dateext`: `app.log-20261206`, `app.log-2026-12-07-1733570000`), which a
///   rotated file keeps: the dated file written last after `id` was, the next in time.
///   Only names whose suffix is a date (digits and separators), so that another log
///   beside it (`app.log-errors`) is never taken for a rotation of this one.
pub fn newer_rotation(path: &Path, id: FileId) -> Option<PathBuf> {
    let at = find_rotated(path, id)?;
    let base = path.file_name()?.to_str()?;
    let suffix = at.file_name()?.to_str()?.strip_prefix(base)?;
    // A number of 6 digits or more is a date (`app.log.20261207`), not a count.
    let number = suffix
        .strip_prefix('.')
        .filter(|n| n.len() < 6)
        .and_then(|n| n.parse::<u32>().ok());
    let newer = match number {
        Some(number) => numbered_after(&at, base, number)?,
        None if is_dated(suffix) => dated_after(path, &at, id, base)?,
        None => return None,
    };
    (FileId::at(&newer) != FileId::at(path)).then_some(newer)
}

/// `app.log.(N-1)` beside `app.log.N` (`at`), if it was last written no earlier.
fn numbered_after(at: &Path, base: &str, number: u32) -> Option<PathBuf> {
    if number < 2 {
        return None;
    }
    let newer = at.with_file_name(format!("{base}.{}", number - 1));
    let Ok(meta) = std::fs::metadata(&newer) else {
        let compressed = COMPRESSED
            .iter()
            .map(|ext| at.with_file_name(format!("{base}.{}.{ext}", number - 1)))
            .find(|c| c.is_file());
        if let Some(c) = compressed {
            warn_compressed(at, &c);
        }
        return None;
    };
    let old = std::fs::metadata(at).ok()?;
    let later = match (meta.modified(), old.modified()) {
        (Ok(newer), Ok(old)) => newer >= old,
        _ => false,
    };
    (meta.is_file() && later).then_some(newer)
}

/// The dated file beside `at` (the file `id`) that comes next in time: last written
/// after it (by name where the times are equal: a total order, so two files never lead
/// to each other), and not `at` again under another name (a hard link). A compressed
/// one in between is named in a warning and passed over.
fn dated_after(path: &Path, at: &Path, id: FileId, base: &str) -> Option<PathBuf> {
    let written = |p: &Path| std::fs::metadata(p).ok()?.modified().ok();
    let after = (written(at)?, at.file_name()?.to_os_string());
    let own = FileId::at(path);
    let mut later: Vec<_> = std::fs::read_dir(directory_of(path))
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            let suffix = name.to_str()?.strip_prefix(base)?;
            let (dated, compressed) = match COMPRESSED
                .iter()
                .find_map(|ext| suffix.strip_suffix(&format!(".{ext}")))
            {
                Some(inner) => (inner, true),
                None => (suffix, false),
            };
            if !is_dated(dated) {
                return None;
            }
            let meta = std::fs::metadata(entry.path()).ok()?;
            let key = (meta.modified().ok()?, name);
            let other = FileId::of(&meta);
            (meta.is_file() && key > after && other != own && other != Some(id))
                .then(|| (key, entry.path(), compressed))
        })
        .collect();
    later.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, candidate, compressed) in later {
        if !compressed {
            return Some(candidate);
        }
        warn_compressed(at, &candidate);
    }
    None
}

/// A dated rotation's suffix: a separator, then digits and separators only, with at
/// least 6 digits (`-20261207`, `.2026-12-07`, `-20261207-1733570000`, `_261207`).
fn is_dated(suffix: &str) -> bool {
    let mut chars = suffix.chars();
    let separator = |c: char| matches!(c, '.' | '-' | '_');
    chars.next().is_some_and(separator)
        && chars.clone().all(|c| c.is_ascii_digit() || separator(c))
        && chars.filter(char::is_ascii_digit).count() >= 6
}

fn warn_compressed(at: &Path, compressed: &Path) {
    tracing::warn!(read = %at.display(), compressed = %compressed.display(), "file source: a file rotated after the one read is compressed: its lines are not read");
}

/// The first bytes of `file` (up to `HEAD_BYTES`, and no further than `upto`, the
/// part already read), read without moving its position.
pub fn head(file: &File, upto: u64) -> Vec<u8> {
    let len = usize::try_from(upto).map_or(HEAD_BYTES, |n| n.min(HEAD_BYTES));
    let mut buf = vec![0u8; len];
    let read = read_at(file, &mut buf);
    buf.truncate(read);
    buf
}

fn read_at(file: &File, buf: &mut [u8]) -> usize {
    read_at_offset(file, buf, 0)
}

/// Reads into `buf` from `offset` of `file` without moving its position: how many
/// bytes (fewer at its end).
#[cfg(unix)]
fn read_at_offset(file: &File, buf: &mut [u8], offset: u64) -> usize {
    use std::os::unix::fs::FileExt;
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => done += n,
        }
    }
    done
}

#[cfg(not(unix))]
fn read_at_offset(_file: &File, _buf: &mut [u8], _offset: u64) -> usize {
    0
}

/// What a checkpoint keeps of a file's first bytes: how many, and their FNV-1a hash.
/// A file truncated and written again since (the same inode) begins otherwise, and its
/// position means nothing there. FNV-1a is written out here rather than taken from a
/// hashing crate: a checkpoint needs the same value from every later version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadPrint {
    len: u64,
    hash: u64,
}

impl HeadPrint {
    pub fn of(head: &[u8]) -> HeadPrint {
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        for b in head {
            hash = (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        HeadPrint {
            len: head.len() as u64,
            hash,
        }
    }

    /// Whether `file` still begins with the bytes this was taken of.
    pub fn matches(&self, file: &File) -> bool {
        HeadPrint::of(&head(file, self.len)) == *self
    }
}
