//! Retrying transient errors with exponential backoff and jitter, up to a deadline, and
//! not past a request to stop: a worker told to shut down while a sink is down stops
//! retrying at once instead of waiting out `errors.retry_timeout` (5 minutes by
//! default). An operation in flight is not interrupted; only the wait before the next
//! attempt is.

use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::watch;

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

/// How a pipeline retries: until `timeout` (`errors.retry_timeout`), and only while
/// its stop signal (the worker's shutdown, or the admin API's pause, stop or
/// restart) is not raised.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub timeout: Duration,
    stop: Option<watch::Receiver<bool>>,
}

impl RetryPolicy {
    pub fn new(timeout: Duration, stop: watch::Receiver<bool>) -> Self {
        Self {
            timeout,
            stop: Some(stop),
        }
    }

    /// Retries that no stop request ends (tests).
    #[cfg(test)]
    pub fn without_stop(timeout: Duration) -> Self {
        Self {
            timeout,
            stop: None,
        }
    }

    /// Waits `delay` before the next attempt: false, at once, when a stop is or gets
    /// requested.
    pub async fn wait(&self, delay: Duration) -> bool {
        let Some(stop) = &self.stop else {
            tokio::time::sleep(delay).await;
            return true;
        };
        let mut stop = stop.clone();
        let stopped = async move {
            // A dropped sender is no request: the wait runs its course.
            if stop.wait_for(|s| *s).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = stopped => false,
        }
    }
}

/// How long an operation may run before the log says it has not returned, and again at
/// each multiple: `CONNECTD_SLOW_OPERATION_SECS`, 30 s by default.
fn slow_after() -> Duration {
    static EVERY: OnceLock<Duration> = OnceLock::new();
    *EVERY.get_or_init(|| {
        std::env::var("CONNECTD_SLOW_OPERATION_SECS")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|&s| s > 0)
            .map_or(Duration::from_secs(30), Duration::from_secs)
    })
}

/// Awaits `op`, calling `slow` with the time waited each `every` it has not returned.
pub async fn watch_slow<F: Future>(
    every: Duration,
    mut slow: impl FnMut(Duration),
    op: F,
) -> F::Output {
    let started = Instant::now();
    let mut op = std::pin::pin!(op);
    loop {
        match tokio::time::timeout(every, &mut op).await {
            Ok(out) => return out,
            Err(_) => slow(started.elapsed()),
        }
    }
}

/// Awaits `op`, warning each `slow_after()` it has not returned: a database that stops
/// answering in the middle of a statement stalls a pipeline, and without this nothing
/// said so (retries begin only once the operation fails). `what` names it, built only
/// when the warning is due.
pub async fn watched<F: Future, W: std::fmt::Display>(what: impl Fn() -> W, op: F) -> F::Output {
    let slow = |waited: Duration| {
        tracing::warn!(
            waited_s = waited.as_secs(),
            "{} has not returned after {} s; still waiting (a server that stopped answering?)",
            what(),
            waited.as_secs()
        );
    };
    watch_slow(slow_after(), slow, op).await
}

/// Awaits `$op` (re-evaluated on every attempt) and retries it while it fails with a
/// transient [`connectd_sdk::ConnectorError`], as `$policy` (a [`RetryPolicy`]) allows.
/// A stop request ends the retries with the last error. An attempt that has not
/// returned after a while is logged (`watched`); `retry!(unwatched ...)` is for
/// operations that wait for data by design (a source's poll).
macro_rules! retry {
    (unwatched $policy:expr, $what:expr, $op:expr) => {{
        let policy: &$crate::engine::retry::RetryPolicy = $policy;
        let mut backoff = $crate::engine::retry::Backoff::new(policy.timeout);
        loop {
            match $op.await {
                Ok(v) => break Ok(v),
                Err(e) if e.is_transient() => match backoff.next_delay() {
                    Some(d) => {
                        tracing::warn!(error = %e, retry_in_ms = d.as_millis() as u64, "{} failed; retrying", $what);
                        if !policy.wait(d).await {
                            tracing::warn!(error = %e, "{} failed; a stop was requested, so no more retries", $what);
                            break Err(e);
                        }
                    }
                    None => break Err(e),
                },
                Err(e) => break Err(e),
            }
        }
    }};
    ($policy:expr, $what:expr, $op:expr) => {
        $crate::engine::retry::retry!(
            unwatched $policy,
            $what,
            $crate::engine::retry::watched(|| $what, $op)
        )
    };
}

pub(crate) use retry;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use connectd_sdk::ConnectorError;
    use tokio::sync::watch;

    use super::RetryPolicy;

    fn patient() -> RetryPolicy {
        RetryPolicy::without_stop(Duration::from_secs(10))
    }

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
        let result: Result<u32, ConnectorError> = retry!(&patient(), "test op", op());
        assert_eq!(result.ok(), Some(3));
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let mut attempts = 0;
        let mut op = || {
            attempts += 1;
            async { Err::<(), _>(ConnectorError::permanent("bad credentials")) }
        };
        let result = retry!(&patient(), "test op", op());
        assert!(result.is_err());
        assert_eq!(attempts, 1);
    }

    #[tokio::test]
    async fn retrying_stops_at_the_deadline() {
        let started = std::time::Instant::now();
        let op = || async { Err::<(), _>(ConnectorError::transient("timeout")) };
        let result = retry!(
            &RetryPolicy::without_stop(Duration::from_millis(300)),
            "test op",
            op()
        );
        assert!(result.is_err());
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// A stop requested while an operation keeps failing ends the retries at the next
    /// wait, long before the deadline; one requested before the first failure, at once.
    #[tokio::test]
    async fn a_stop_request_ends_the_retries() {
        let (stop, stopped) = watch::channel(false);
        let policy = RetryPolicy::new(Duration::from_secs(600), stopped);
        let mut attempts = 0;
        let mut op = || {
            attempts += 1;
            async { Err::<(), _>(ConnectorError::transient("connection refused")) }
        };
        let requester = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            stop.send(true).unwrap();
            stop
        });
        let started = std::time::Instant::now();
        let result = retry!(&policy, "test op", op());
        assert!(result.is_err_and(|e| e.to_string().contains("connection refused")));
        assert!(attempts >= 2, "retried before the stop: {attempts}");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "waited out the deadline"
        );
        let _stop = requester.await.unwrap();
        let mut again = 0;
        let mut op = || {
            again += 1;
            async { Err::<(), _>(ConnectorError::transient("connection refused")) }
        };
        let result = retry!(&policy, "test op", op());
        assert!(result.is_err());
        assert_eq!(again, 1, "no retry once a stop is requested");
    }

    /// A stop signal whose sender is gone is no request: the retries go on.
    #[tokio::test]
    async fn a_dropped_stop_signal_is_no_request() {
        let (stop, stopped) = watch::channel(false);
        drop(stop);
        let policy = RetryPolicy::new(Duration::from_secs(10), stopped);
        let mut attempts = 0;
        let mut op = || {
            attempts += 1;
            let n = attempts;
            async move {
                if n < 3 {
                    Err(ConnectorError::transient("reset"))
                } else {
                    Ok(n)
                }
            }
        };
        assert_eq!(retry!(&policy, "test op", op()).ok(), Some(3));
    }

    /// An operation that takes about 10 intervals is reported at each (at least 3,
    /// however loaded the machine), with the time waited, and its result comes
    /// through; one that returns at once never is.
    #[tokio::test]
    async fn a_slow_operation_is_reported_each_interval_until_it_returns() {
        let every = Duration::from_millis(20);
        let mut waits = Vec::new();
        let slow = tokio::time::sleep(Duration::from_millis(200));
        let out = super::watch_slow(every, |w| waits.push(w), async {
            slow.await;
            7
        })
        .await;
        assert_eq!(out, 7);
        assert!(waits.len() >= 3, "{waits:?}");
        assert!(waits.windows(2).all(|w| w[1] > w[0]), "{waits:?}");
        assert!(waits.iter().all(|w| *w >= every), "{waits:?}");
        let mut none = 0;
        super::watch_slow(every, |_| none += 1, async {}).await;
        assert_eq!(none, 0);
    }
}
