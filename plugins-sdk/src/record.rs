//! The unit of data: a record with key, value, event time and headers.

use std::sync::Arc;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::value::Value;

/// One event. `timestamp` is event time in epoch milliseconds when the source knows it.
/// Serializable so that stateful transforms can keep records in their checkpoints.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub key: Value,
    pub value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(CompactString, CompactString)>,
    /// The input partition (lane) the record came from, for watermarks per partition.
    /// A source sets its own lane number (0 for a single stream); the runtime makes it
    /// unique in the pipeline (see [`crate::lanes`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lane: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Record {
    pub fn new(value: Value) -> Self {
        Self {
            value,
            ..Self::default()
        }
    }

    pub fn with_key(mut self, key: Value) -> Self {
        self.key = key;
        self
    }

    pub fn with_timestamp(mut self, ts: i64) -> Self {
        self.timestamp = Some(ts);
        self
    }

    /// The record as one JSON object, for dead-letter files and debugging output.
    pub fn to_json(&self) -> serde_json::Value {
        let headers: serde_json::Map<String, serde_json::Value> = self
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
            .collect();
        serde_json::json!({
            "key": self.key.to_json(),
            "value": self.value.to_json(),
            "timestamp": self.timestamp,
            "headers": headers,
        })
    }
}

/// Components exchange batches, never single records. A batch is shared between the
/// consumers of a fan-out; a sole consumer takes it over without copying.
pub type Batch = Arc<Vec<Record>>;

/// Takes the records out of a batch, copying only when the batch is shared.
pub fn take_records(batch: Batch) -> Vec<Record> {
    Arc::try_unwrap(batch).unwrap_or_else(|shared| (*shared).clone())
}
