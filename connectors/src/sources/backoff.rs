//! Exponential backoff with jitter for runs of transient failures (reconnects, retries).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// Exponential backoff with jitter across consecutive failures; reset on success.
#[derive(Debug, Default)]
pub struct Backoff {
    delays: Option<backon::ExponentialBackoff>,
}

impl Backoff {
    pub fn next_delay(&mut self) -> Duration {
        let delays = self.delays.get_or_insert_with(|| {
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(500))
                .with_max_delay(Duration::from_secs(300))
                .with_jitter()
                .with_max_times(usize::MAX)
                .build()
        });
        delays.next().unwrap_or(Duration::from_secs(300))
    }

    pub fn reset(&mut self) {
        self.delays = None;
    }
}
