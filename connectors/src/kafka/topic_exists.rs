//! Whether a topic exists on the cluster, asked before a sink produces to it. On a broker
//! that does not create topics on first use (`auto.create.topics.enable=false`, the
//! usual setting in production), a message to a missing topic failed its transaction
//! 30 s later, at every retry, with an error that named no topic.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use connectd_sdk::ConnectorError;
use rdkafka::client::{Client, ClientContext};
use rdkafka::error::RDKafkaErrorCode;

use super::error;

/// How often "unknown topic" is asked again before it is believed: a broker that
/// creates topics on first use may answer so while it creates one.
const ASKS: u32 = 3;
const BETWEEN_ASKS: Duration = Duration::from_millis(300);

/// How long a missing topic is taken as missing before the cluster is asked again: an
/// operator may create it meanwhile, and a stream of records to it asks once.
pub const MISSING_FOR: Duration = Duration::from_secs(10);

/// Whether `topic` exists (or is being created); an error if the cluster cannot be asked
/// or refuses this client the topic.
pub fn exists<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<bool, ConnectorError> {
    for ask in 1..=ASKS {
        let md = client
            .fetch_metadata(Some(topic), timeout)
            .map_err(|e| error(&format!("read the metadata of the topic `{topic}`"), e))?;
        let code = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map(|t| t.error().map(RDKafkaErrorCode::from));
        match code {
            Some(None) => return Ok(true),
            Some(Some(RDKafkaErrorCode::TopicAuthorizationFailed)) => {
                return Err(ConnectorError::permanent(format!(
                    "kafka: not authorized to the topic `{topic}` (TopicAuthorizationFailed): grant this client's principal WRITE and DESCRIBE on it"
                )))
            }
            Some(Some(RDKafkaErrorCode::UnknownTopicOrPartition)) | None => {}
            // Leader not available and the like: it exists, or is being created.
            Some(Some(_)) => return Ok(true),
        }
        if ask < ASKS {
            std::thread::sleep(BETWEEN_ASKS);
        }
    }
    Ok(false)
}

/// Why a sink cannot write to `topic`.
pub fn missing(topic: &str) -> String {
    format!(
        "the topic `{topic}` does not exist and is not created on first use (the broker's auto.create.topics.enable or the client's allow.auto.create.topics is false): create it (kafka-topics.sh --create --topic {topic}) or route the record elsewhere"
    )
}

/// The topics a sink has found and not found, so each is asked about once (a missing
/// one again after `MISSING_FOR`).
#[derive(Debug, Default)]
pub struct KnownTopics(HashMap<String, Option<Instant>>);

impl KnownTopics {
    /// `Some(true)`: exists; `Some(false)`: missing, recently asked; `None`: ask. The
    /// clock is read only for a missing topic: a routed sink looks up every record.
    pub fn lookup(&self, topic: &str, now: impl FnOnce() -> Instant) -> Option<bool> {
        match self.0.get(topic)? {
            None => Some(true),
            Some(asked) if now().duration_since(*asked) < MISSING_FOR => Some(false),
            Some(_) => None,
        }
    }

    pub fn record(&mut self, topic: &str, exists: bool, now: Instant) {
        self.0.insert(topic.to_string(), (!exists).then_some(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_topic_is_asked_about_again_after_a_while() {
        let (mut known, t0) = (KnownTopics::default(), Instant::now());
        assert_eq!(known.lookup("a", || t0), None);
        known.record("a", true, t0);
        known.record("b", false, t0);
        assert_eq!(known.lookup("a", || t0 + MISSING_FOR * 100), Some(true));
        assert_eq!(known.lookup("b", || t0 + MISSING_FOR / 2), Some(false));
        assert_eq!(known.lookup("b", || t0 + MISSING_FOR), None);
    }
}
