//! Kafka's rule for topic names, checked before a name reaches the broker.

/// Why `name` cannot name a Kafka topic (Kafka's own rule: 1 to 249 of `a-z A-Z 0-9 .
/// _ -`, not `.` or `..`). Produced anyway, such a message failed in the transaction, so
/// the checkpoint failed at every retry until the pipeline stopped.
pub fn fault(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("an empty topic name")
    } else if name.len() > 249 {
        Some("longer than a topic name may be (249)")
    } else if name == "." || name == ".." {
        Some("not a topic name")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("a topic name holds only letters, digits, `.`, `_` and `-`")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::fault;

    #[test]
    fn topic_names_as_kafka_takes_them() {
        for good in ["prices", "ux-ok_topic.1", "a", &"x".repeat(249)] {
            assert_eq!(fault(good), None, "{good}");
        }
        for bad in ["", ".", "..", "bad topic!", "prix/€", &"x".repeat(250)] {
            assert!(fault(bad).is_some(), "{bad}");
        }
    }
}
