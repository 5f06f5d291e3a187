//! Retrying transient errors with exponential backoff and jitter, up to a deadline.

use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};

#[derive(Debug)]
pub struct Backoff {
    delays: backon::ExponentialBackoff,
    deadline: Instant,
}

impl Backoff {
    pub fn new(timeout: Duration) -> Self {
        let delays = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(30))
            .with_jitter()
            .with_max_times(usize::MAX)
            .build();
        Self {
            delays,
            deadline: Instant::now() + timeout,
        }
    }

    /// The next delay, or `None` once the deadline has passed.
    pub fn next_delay(&mut self) -> Option<Duration> {
        let now = Instant::now();
        if now >= self.deadline {
            return None;
        }
        self.delays.next().map(|d| d.min(self.deadline - now))
    }
}

/// Awaits `$op` (re-evaluated on every attempt) and retries it while it fails with a
/// transient [`connectd_sdk::ConnectorError`], until `$timeout` has passed.
macro_rules! retry {
    ($timeout:expr, $what:expr, $op:expr) => {{
        let mut backoff = $crate::engine::retry::Backoff::new($timeout);
        loop {
            match $op.await {
                Ok(v) => break Ok(v),
                Err(e) if e.is_transient() => match backoff.next_delay() {
                    Some(d) => {
                        tracing::warn!(error = %e, retry_in_ms = d.as_millis() as u64, "{} failed; retrying", $what);
                        tokio::time::sleep(d).await;
                    }
                    None => break Err(e),
                },
                Err(e) => break Err(e),
            }
        }
    }};
}

pub(crate) use retry;
