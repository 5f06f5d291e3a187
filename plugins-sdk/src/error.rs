//! Errors a connector reports to the runtime.

use std::fmt;

use crate::record::Record;

/// Whether retrying the same operation may succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A timeout, a dropped connection, a 5xx, a 429: retried with backoff.
    Transient,
    /// Bad credentials, a missing table, a full disk: the pipeline stops and says why.
    Permanent,
}

/// An error of a source, transform or sink as a whole (not of one record).
#[derive(Debug, thiserror::Error)]
pub struct ConnectorError {
    pub kind: ErrorKind,
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl fmt::Display for ConnectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(s) = &self.source {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

impl ConnectorError {
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Transient,
            message: message.into(),
            source: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Permanent,
            message: message.into(),
            source: None,
        }
    }

    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    pub fn is_transient(&self) -> bool {
        self.kind == ErrorKind::Transient
    }

    /// An I/O error, classified: interruptions and timeouts are transient.
    pub fn io(context: impl Into<String>, e: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let kind = match e.kind() {
            K::Interrupted
            | K::TimedOut
            | K::WouldBlock
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::ConnectionRefused
            | K::BrokenPipe => ErrorKind::Transient,
            _ => ErrorKind::Permanent,
        };
        Self {
            kind,
            message: context.into(),
            source: Some(Box::new(e)),
        }
    }
}

/// Reads a checkpointed offset back into a source's own offset type; a mismatch (the
/// pipeline changed the source's type under the same name) is a clear permanent error.
pub fn parse_offset<T: serde::de::DeserializeOwned>(
    offset: serde_json::Value,
    source: &str,
) -> Result<T, ConnectorError> {
    serde_json::from_value(offset).map_err(|e| {
        ConnectorError::permanent(format!(
            "{source}: the checkpointed offset is not a {source} offset"
        ))
        .with_source(e)
    })
}

/// One record (or one unparsable input) that a component could not handle. The runtime
/// stops the pipeline or sends it to the dead-letter queue, per `errors.tolerance`.
#[derive(Clone, Debug)]
pub struct BadRecord {
    /// Where it came from, for a person: `"line 17"`, `"offset 3 of partition 2"`.
    pub position: String,
    pub reason: String,
    /// The parsed record, when there is one.
    pub record: Option<Record>,
    /// The raw input, when it could not be parsed (kept whole: nothing is lost).
    pub raw: Option<String>,
    /// The raw input when it is not UTF-8, as its bytes: text made of it would replace
    /// them, and the dead-letter file could not give them back.
    pub raw_bytes: Option<Vec<u8>>,
    /// The key it came with (a Kafka message's), as its bytes.
    pub raw_key: Option<Vec<u8>>,
}

impl BadRecord {
    pub fn record(record: Record, reason: impl Into<String>) -> Self {
        Self {
            position: String::new(),
            reason: reason.into(),
            record: Some(record),
            raw: None,
            raw_bytes: None,
            raw_key: None,
        }
    }

    pub fn raw(
        raw: impl Into<String>,
        position: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            position: position.into(),
            reason: reason.into(),
            record: None,
            raw: Some(raw.into()),
            raw_bytes: None,
            raw_key: None,
        }
    }

    /// Raw input as it came: kept as text when it is UTF-8, else as its bytes.
    pub fn input(bytes: &[u8], position: impl Into<String>, reason: impl Into<String>) -> Self {
        let (raw, raw_bytes) = match std::str::from_utf8(bytes) {
            Ok(text) => (Some(text.to_string()), None),
            Err(_) => (None, Some(bytes.to_vec())),
        };
        Self {
            position: position.into(),
            reason: reason.into(),
            record: None,
            raw,
            raw_bytes,
            raw_key: None,
        }
    }

    /// The key the raw input came with.
    pub fn with_key(mut self, key: Option<&[u8]>) -> Self {
        self.raw_key = key.map(<[u8]>::to_vec);
        self
    }
}
