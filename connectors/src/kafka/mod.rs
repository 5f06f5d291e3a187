//! What the `kafka` source and sink share: client settings, the offsets format, and the
//! registry through which a sink finds the consumer groups of its pipeline's sources.

pub mod awaited;
pub mod bounds;
pub mod changelog;
pub mod checkpoint_record;
pub mod client_errors;
pub mod compacted_topic;
pub mod exclusive;
pub mod fetcher;
pub mod format;
pub mod groups;
pub mod instance;
pub mod key_field;
pub mod message_key;
pub mod message_size;
pub mod offsets;
pub mod time_order;
pub mod topic_exists;
pub mod topic_name;

use std::collections::BTreeMap;

use connectd_sdk::config::ConfigMap;
use connectd_sdk::BuildContext;
use rdkafka::ClientConfig;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How a kafka connector reaches the cluster.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct ClientOptions {
    /// `host:port,...` (default: the worker file's `kafka.bootstrap_servers`).
    #[serde(default)]
    pub bootstrap_servers: Option<String>,
    /// librdkafka properties (SASL, SSL, tuning); these win over the worker file's.
    #[serde(default)]
    #[schemars(schema_with = "connectd_sdk::config::scalar_text_map")]
    pub properties: BTreeMap<String, String>,
}

/// librdkafka properties: the worker's `kafka.properties`, then the connector's own
/// `bootstrap_servers` / `properties`. Records an error when no bootstrap server is set.
pub fn client_properties(
    cfg: &ConfigMap<'_>,
    ctx: &BuildContext,
    o: ClientOptions,
) -> BTreeMap<String, String> {
    let mut props = ctx.worker.kafka.clone();
    // The worker's name identifies its clients to the broker (unless set explicitly).
    if !ctx.worker.name.is_empty() {
        props
            .entry("client.id".into())
            .or_insert_with(|| format!("connectd-{}", ctx.worker.name));
    }
    if let Some(servers) = o.bootstrap_servers {
        props.insert("bootstrap.servers".into(), servers);
    }
    props.extend(o.properties);
    if !props.contains_key("bootstrap.servers") {
        cfg.error(
            "bootstrap_servers",
            "no Kafka bootstrap servers: set `bootstrap_servers` here or `kafka.bootstrap_servers` in the worker file (--worker)",
        );
    }
    props
}

pub fn client_config(props: &BTreeMap<String, String>) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in props {
        c.set(k, v);
    }
    c
}

/// A Kafka error as a connector error: most Kafka errors clear up (broker restarts,
/// leader elections); a fenced producer or bad configuration does not.
pub fn error(what: &str, e: rdkafka::error::KafkaError) -> connectd_sdk::ConnectorError {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode as C};
    let message = format!("kafka: {what}: {e}");
    let permanent = match &e {
        KafkaError::ClientCreation(_) => true,
        KafkaError::Transaction(t) => t.is_fatal(),
        other => matches!(
            other.rdkafka_error_code(),
            Some(
                C::ProducerFenced
                    | C::InvalidProducerEpoch
                    | C::TopicAuthorizationFailed
                    | C::GroupAuthorizationFailed
                    | C::TransactionalIdAuthorizationFailed
            )
        ),
    };
    if permanent {
        connectd_sdk::ConnectorError::permanent(message)
    } else {
        connectd_sdk::ConnectorError::transient(message)
    }
}
