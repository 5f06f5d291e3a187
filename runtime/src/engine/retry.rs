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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use connectd_sdk::ConnectorError;

    #[tokio::test]
    async fn transient_errors_are_retried_until_success() {
        let mut attempts = 0;
        let mut op = || {
            attempts += 1;
            let n = attempts;
            async move {
                if n < 3 {
                    Err(ConnectorError::transient(format!(
                        "attempt {n}: connection reset"
                    )))
                } else {
                    Ok(n)
                }
            }
        };
        let result: Result<u32, ConnectorError> = retry!(Duration::from_secs(10), "test op", op());
        assert_eq!(result.ok(), Some(3));
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let mut attempts = 0;
        let mut op = || {
            attempts += 1;
            async { Err::<(), _>(ConnectorError::permanent("bad credentials")) }
        };
        let result = retry!(Duration::from_secs(10), "test op", op());
        assert!(result.is_err());
        assert_eq!(attempts, 1);
    }

    #[tokio::test]
    async fn retrying_stops_at_the_deadline() {
        let started = std::time::Instant::now();
        let op = || async { Err::<(), _>(ConnectorError::transient("timeout")) };
        let result = retry!(Duration::from_millis(300), "test op", op());
        assert!(result.is_err());
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
