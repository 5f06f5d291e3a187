//! Reading a line that may be longer than `max_line_bytes` without holding it whole.

use std::fs::File;
use std::io::{BufRead, BufReader};

/// How much of a line over the limit the dead-letter queue keeps.
pub(super) const KEPT_OF_LONG_LINE: usize = 64 << 10;

/// A line read up to its end (included) or the end of the file, keeping at most
/// `max` bytes of it in `buf`: what was read past them is only counted.
pub(super) struct LineRead {
    /// Bytes consumed.
    pub len: u64,
    /// It ended with a line end.
    pub ended: bool,
}

pub(super) fn read_line_capped(
    reader: &mut BufReader<File>,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<LineRead> {
    let mut len = 0u64;
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok(LineRead { len, ended: false });
        }
        let (take, ended) = match memchr::memchr(b'\n', chunk) {
            Some(end) => (end + 1, true),
            None => (chunk.len(), false),
        };
        len += take as u64;
        if len > max as u64 {
            // Too long: only its first bytes are kept, for the dead-letter queue.
            buf.truncate(KEPT_OF_LONG_LINE);
            let room = KEPT_OF_LONG_LINE.saturating_sub(buf.len()).min(take);
            buf.extend_from_slice(&chunk[..room]);
        } else {
            buf.extend_from_slice(&chunk[..take]);
        }
        reader.consume(take);
        if ended {
            return Ok(LineRead { len, ended });
        }
    }
}
