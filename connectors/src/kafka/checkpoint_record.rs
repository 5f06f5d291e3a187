//! A kafka sink's checkpoint records: one compacted topic, keyed by sink instance; the
//! last committed record under a key is that sink's checkpoint.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use connectd_sdk::{Checkpoint, Committed, ConnectorError};
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::TopicPartitionList;

use super::error;

const TIMEOUT: Duration = Duration::from_secs(30);

/// The checkpoint record an offset reset writes: "no checkpoint".
pub const RESET: &str = r#"{"reset":true}"#;

/// Creates the checkpoint topic (one partition, compacted) unless it exists.
pub async fn ensure_topic(
    props: &BTreeMap<String, String>,
    topic: &str,
) -> Result<(), ConnectorError> {
    crate::kafka::compacted_topic::ensure(props, topic, 1).await
}

/// The last committed checkpoint under `key`: reads the checkpoint topic to its end
/// (read_committed) and keeps the last record with that key.
pub fn read(
    props: &BTreeMap<String, String>,
    topic: &str,
    key: &str,
) -> Result<Option<Committed>, ConnectorError> {
    let group = format!("connectd-checkpoint-reader-{key}");
    let consumer = crate::kafka::changelog::committed_reader(props, &group)?;
    let (_, high) = consumer
        .fetch_watermarks(topic, 0, TIMEOUT)
        .map_err(|e| error("read the checkpoint topic's end", e))?;
    if high <= 0 {
        return Ok(None);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, crate::kafka::changelog::FROM_START)
        .map_err(|e| error("read the checkpoint topic", e))?;
    consumer
        .assign(&tpl)
        .map_err(|e| error("read the checkpoint topic", e))?;
    let mut last: Option<Vec<u8>> = None;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.map_err(|e| error("read the checkpoint topic", e))?;
            if m.key() == Some(key.as_bytes()) {
                last = m.payload().map(<[u8]>::to_vec);
            }
        }
        // The position passes transaction markers too, so it reaches `high` once
        // everything committed has been read.
        let position = consumer
            .position()
            .ok()
            .and_then(|p| p.find_partition(topic, 0).and_then(|e| e.offset().to_raw()))
            .unwrap_or(-1);
        if position >= high {
            break;
        }
        if Instant::now() > deadline {
            return Err(ConnectorError::transient(format!(
                "kafka: reading the checkpoint topic `{topic}` did not reach its end ({high}) in 30 s (an open transaction?)"
            )));
        }
    }
    let Some(bytes) = last else { return Ok(None) };
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        ConnectorError::permanent(format!(
            "kafka: the checkpoint record for `{key}` is not JSON: {e}"
        ))
    })?;
    if v["reset"] == true {
        return Ok(None);
    }
    let id = v["id"].as_u64().ok_or_else(|| {
        ConnectorError::permanent(format!(
            "kafka: the checkpoint record for `{key}` has no id"
        ))
    })?;
    Ok(Some(Checkpoint {
        id,
        state: v["state"].clone(),
    }))
}
