//! librdkafka refuses a message whose size on the wire is over the producer's
//! `message.max.bytes` (`MSG_SIZE_TOO_LARGE`, at produce). In a transaction that fails
//! the whole checkpoint, again at every retry, until the pipeline stops: one oversized
//! record held back everything. Measured here, before the record joins the epoch, it
//! is that record's error (to the DLQ), as librdkafka would count it.

use std::collections::BTreeMap;

/// librdkafka's default `message.max.bytes`.
const DEFAULT_LIMIT: usize = 1_000_000;

/// `RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD` (rdkafka_proto.h): the record's varint length,
/// attributes, timestamp and offset deltas, key and value lengths, header count.
const RECORD_OVERHEAD: usize = 5 + 1 + 10 + 5 + 5 + 5 + 5;

/// The producer's limit, from the sink's client properties.
pub fn limit(props: &BTreeMap<String, String>) -> usize {
    props
        .get("message.max.bytes")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_LIMIT)
}

/// Zigzag varint length, as librdkafka encodes header name and value lengths.
fn varint_len(n: usize) -> usize {
    let mut z = (n as u64) << 1;
    let mut bytes = 1;
    while z >= 0x80 {
        z >>= 7;
        bytes += 1;
    }
    bytes
}

/// The size librdkafka compares with `message.max.bytes` (`rd_kafka_msg_max_wire_size`).
pub fn wire_size(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[(String, String)]) -> usize {
    let headers: usize = headers
        .iter()
        .map(|(n, v)| n.len() + v.len() + varint_len(n.len()) + varint_len(v.len()))
        .sum();
    RECORD_OVERHEAD + key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len) + headers
}

/// Why a message of `size` bytes cannot be produced under `limit`, if it cannot.
pub fn too_large(size: usize, limit: usize) -> Option<String> {
    (size > limit).then(|| {
        format!(
            "the message is {size} bytes (key, value and headers), over the producer's message.max.bytes of {limit}; raise it in the sink's `properties` (and the topic's max.message.bytes on the broker) or make the record smaller"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_librdkafka_counts_them() {
        assert_eq!(varint_len(0), 1);
        assert_eq!(varint_len(63), 1);
        assert_eq!(varint_len(64), 2);
        assert_eq!(varint_len(8191), 2);
        assert_eq!(varint_len(8192), 3);
        let headers = [("trace".to_string(), "abc".to_string())];
        assert_eq!(
            wire_size(Some(b"k"), Some(b"value"), &headers),
            36 + 1 + 5 + 5 + 3 + 2
        );
        assert_eq!(wire_size(None, None, &[]), 36);
        assert!(too_large(1_000_000, 1_000_000).is_none());
        assert!(too_large(1_000_001, 1_000_000)
            .unwrap()
            .contains("message.max.bytes of 1000000"));
        let props = BTreeMap::from([("message.max.bytes".to_string(), "2000000".to_string())]);
        assert_eq!(limit(&props), 2_000_000);
        assert_eq!(limit(&BTreeMap::new()), 1_000_000);
    }
}
