//! librdkafka's error events, logged once per kind and then at most once a minute.
//! librdkafka raises an event on every failed reconnect and hands the queued ones over
//! together: a source whose broker was down for five minutes logged the same
//! `AllBrokersDown` line 143 times in one millisecond. They are warnings: the source or
//! sink itself fails (with an error naming it) once it gives up.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, ProducerContext};

/// How long repeats of one error are counted rather than logged.
const REPEAT_EVERY: Duration = Duration::from_secs(60);

/// Per error text: when it was last logged, and the repeats left out since.
#[derive(Debug, Default)]
pub struct ClientErrors(Mutex<HashMap<String, (Instant, u64)>>);

impl ClientErrors {
    /// Logs `error` unless the same one was logged within `REPEAT_EVERY`; true when it
    /// was logged.
    pub fn report(&self, error: &KafkaError, reason: &str) -> bool {
        self.report_at(Instant::now(), &error.to_string(), reason)
    }

    fn report_at(&self, now: Instant, error: &str, reason: &str) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let left_out = match seen.get_mut(error) {
            Some((last, left_out)) if now.duration_since(*last) < REPEAT_EVERY => {
                *left_out += 1;
                return false;
            }
            Some((last, left_out)) => {
                *last = now;
                std::mem::take(left_out)
            }
            None => {
                seen.insert(error.to_string(), (now, 0));
                0
            }
        };
        if left_out > 0 {
            tracing::warn!(target: "librdkafka", repeats_left_out = left_out, "librdkafka: {error}: {reason}");
        } else {
            tracing::warn!(target: "librdkafka", "librdkafka: {error}: {reason}");
        }
        true
    }
}

/// A producer's context: errors through `ClientErrors`; of the deliveries, the first
/// that failed is kept. A transactional producer learns of it when it commits, as an
/// error that names neither the topic nor the broker's reason.
#[derive(Debug, Default)]
pub struct QuietProducer {
    errors: ClientErrors,
    failed_delivery: Mutex<Option<String>>,
}

impl QuietProducer {
    /// Why the first message that failed since the last call failed, naming its topic.
    pub fn take_failed_delivery(&self) -> Option<String> {
        self.failed_delivery
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

impl ClientContext for QuietProducer {
    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.report(&error, reason);
    }
}

impl ProducerContext for QuietProducer {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        if let Err((e, m)) = result {
            let mut first = self
                .failed_delivery
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            first.get_or_insert_with(|| format!("a message to `{}` failed: {e}", m.topic()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_logged_once_then_once_a_minute() {
        let errors = ClientErrors::default();
        let t0 = Instant::now();
        let logged = (0..143)
            .filter(|_| errors.report_at(t0, "AllBrokersDown", "1/1 brokers are down"))
            .count();
        assert_eq!(logged, 1, "a burst is one line");
        assert!(errors.report_at(t0, "BrokerTransportFailure", "connect failed"));
        assert!(!errors.report_at(t0 + Duration::from_secs(59), "AllBrokersDown", ""));
        assert!(errors.report_at(t0 + Duration::from_secs(61), "AllBrokersDown", ""));
        assert!(!errors.report_at(t0 + Duration::from_secs(62), "AllBrokersDown", ""));
    }
}
