//! The compacted topics connectd keeps for itself: sinks' checkpoint records and state
//! changelogs.

use std::collections::BTreeMap;
use std::time::Duration;

use connectd_sdk::ConnectorError;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use super::{client_config, error};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Creates a compacted topic with `partitions` unless it exists.
pub async fn ensure(
    props: &BTreeMap<String, String>,
    topic: &str,
    partitions: i32,
) -> Result<(), ConnectorError> {
    let mut admin_props = props.clone();
    admin_props.remove("transactional.id");
    admin_props.remove("enable.idempotence");
    let admin: AdminClient<DefaultClientContext> = client_config(&admin_props)
        .create()
        .map_err(|e| error("cannot create an admin client", e))?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1))
        .set("cleanup.policy", "compact");
    let results = admin
        .create_topics(
            &[new],
            &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
        )
        .await
        .map_err(|e| error(&format!("create the topic `{topic}`"), e))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => {
                return Err(ConnectorError::transient(format!(
                    "kafka: cannot create the topic `{t}`: {code}"
                )))
            }
        }
    }
    Ok(())
}
