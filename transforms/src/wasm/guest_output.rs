//! A guest's stdout and stderr.
//!
//! - Writes land in a bounded in-memory buffer. They never block, never touch the async
//!   runtime and never fail: a failed write would make a Rust guest's `println!` panic.
//!   Bytes past the bound are dropped and counted.
//! - After each guest call the host forwards what was written to the log, one event per
//!   line, under the plugin's name. The rate is limited, so a plugin that prints per
//!   record cannot flood the log. The tail of stderr (a panic message) is kept for the
//!   reason of a trap.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// What one stream holds between two drains.
const CAPACITY: usize = 64 << 10;
/// Log lines per plugin per `WINDOW`; the rest are counted and summarised.
const LINES_PER_WINDOW: u32 = 50;
const WINDOW: Duration = Duration::from_secs(10);
/// How much of stderr a trap reason quotes.
const TAIL: usize = 400;

#[derive(Debug, Default)]
struct Captured {
    bytes: Vec<u8>,
    dropped: u64,
}

/// One of the guest's two output streams, shared by every handle the guest opens on it.
#[derive(Debug, Clone, Default)]
pub struct GuestStream(Arc<Mutex<Captured>>);

impl GuestStream {
    fn append(&self, bytes: &[u8]) -> usize {
        let mut c = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let room = CAPACITY.saturating_sub(c.bytes.len());
        let taken = bytes.len().min(room);
        c.bytes.extend_from_slice(&bytes[..taken]);
        c.dropped += (bytes.len() - taken) as u64;
        bytes.len()
    }

    fn take(&self) -> Captured {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl IsTerminal for GuestStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for GuestStream {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always writable: what does not fit is dropped and counted, never refused.
        Ok(CAPACITY)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestStream {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(self.append(buf)))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A plugin's two streams and the log rate limit, shared by its successive instances.
#[derive(Debug)]
pub struct GuestOutput {
    plugin: String,
    pub stdout: GuestStream,
    pub stderr: GuestStream,
    window_start: Instant,
    logged: u32,
    suppressed: u64,
}

impl GuestOutput {
    pub fn new(plugin: String) -> Self {
        Self {
            plugin,
            stdout: GuestStream::default(),
            stderr: GuestStream::default(),
            window_start: Instant::now(),
            logged: 0,
            suppressed: 0,
        }
    }

    /// Forwards what the guest wrote since the last call to the log; returns the tail
    /// of its stderr, for a trap's reason.
    pub fn forward(&mut self) -> String {
        let out = self.stdout.take();
        let err = self.stderr.take();
        self.log_lines("stdout", &out);
        self.log_lines("stderr", &err);
        let text = String::from_utf8_lossy(&err.bytes);
        let text = text.trim();
        let start = text
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| text.len() - i <= TAIL)
            .unwrap_or(text.len());
        text[start..].to_string()
    }

    /// Drops what the guest wrote: a replay repeats output that was logged already.
    pub fn discard(&mut self) {
        self.stdout.take();
        self.stderr.take();
    }

    fn log_lines(&mut self, stream: &str, captured: &Captured) {
        if captured.bytes.is_empty() && captured.dropped == 0 {
            return;
        }
        let text = String::from_utf8_lossy(&captured.bytes);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if !self.admit() {
                continue;
            }
            let plugin = &self.plugin;
            if stream == "stderr" {
                tracing::warn!(plugin = %plugin, stream, "{line}");
            } else {
                tracing::info!(plugin = %plugin, stream, "{line}");
            }
        }
        if captured.dropped > 0 {
            tracing::warn!(plugin = %self.plugin, stream, dropped_bytes = captured.dropped, "the plugin wrote more than {CAPACITY} bytes in one call; the rest was dropped");
        }
    }

    /// One more line within the rate limit? Says once per window how many were not.
    fn admit(&mut self) -> bool {
        if self.window_start.elapsed() >= WINDOW {
            if self.suppressed > 0 {
                tracing::warn!(plugin = %self.plugin, suppressed_lines = self.suppressed, "plugin output over {LINES_PER_WINDOW} lines per {WINDOW:?} was not logged");
            }
            self.window_start = Instant::now();
            self.logged = 0;
            self.suppressed = 0;
        }
        if self.logged < LINES_PER_WINDOW {
            self.logged += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn writes_never_fail_and_overflow_is_counted() {
        let mut s = GuestStream::default();
        let big = vec![b'x'; CAPACITY + 10];
        assert!(OutputStream::write(&mut s, bytes::Bytes::from(big)).is_ok());
        let c = s.take();
        assert_eq!(c.bytes.len(), CAPACITY);
        assert_eq!(c.dropped, 10);
        assert!(s.take().bytes.is_empty());
    }

    #[test]
    fn the_trap_reason_quotes_the_end_of_stderr() {
        let mut g = GuestOutput::new("p/t".into());
        let long = format!("{}panicked at src/lib.rs:3: boom\n", "é".repeat(500));
        g.stderr.append(long.as_bytes());
        let tail = g.forward();
        assert!(tail.ends_with("boom") && tail.len() <= TAIL, "{tail}");
        assert_eq!(g.forward(), "");
    }

    #[test]
    fn the_log_rate_is_limited() {
        let mut g = GuestOutput::new("p/t".into());
        let admitted = (0..LINES_PER_WINDOW + 20).filter(|_| g.admit()).count();
        assert_eq!(admitted, LINES_PER_WINDOW as usize);
        assert_eq!(g.suppressed, 20);
    }
}
