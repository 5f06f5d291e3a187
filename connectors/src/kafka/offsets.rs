//! A kafka source's position: the next offset to read, per topic and partition, as
//! `{"topic": {"0": 42, "1": 17}}` in checkpoints.

use std::collections::BTreeMap;

use rdkafka::{Offset, TopicPartitionList};

pub type Positions = BTreeMap<(String, i32), i64>;

pub fn to_json(p: &Positions) -> serde_json::Value {
    let mut topics = serde_json::Map::new();
    for ((topic, partition), offset) in p {
        let entry = topics
            .entry(topic.clone())
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        if let serde_json::Value::Object(parts) = entry {
            parts.insert(partition.to_string(), (*offset).into());
        }
    }
    serde_json::Value::Object(topics)
}

pub fn from_json(v: &serde_json::Value) -> Result<Positions, String> {
    let mut p = Positions::new();
    let topics = v
        .as_object()
        .ok_or_else(|| format!("expected {{topic: {{partition: offset}}}}, found {v}"))?;
    for (topic, parts) in topics {
        let parts = parts
            .as_object()
            .ok_or_else(|| format!("topic `{topic}`: expected {{partition: offset}}"))?;
        for (partition, offset) in parts {
            let partition: i32 = partition
                .parse()
                .map_err(|_| format!("topic `{topic}`: `{partition}` is not a partition number"))?;
            let offset = offset.as_i64().ok_or_else(|| {
                format!("topic `{topic}` partition {partition}: offset is not an integer")
            })?;
            p.insert((topic.clone(), partition), offset);
        }
    }
    Ok(p)
}

/// The offsets of a list (a group's committed offsets); partitions without one left out.
pub fn from_list(list: &TopicPartitionList) -> Positions {
    list.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some(((e.topic().to_string(), e.partition()), o)),
            _ => None,
        })
        .collect()
}

pub fn to_list(p: &Positions) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in p {
        // Adding to a fresh list cannot fail for a valid offset.
        let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset));
    }
    tpl
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let mut p = Positions::new();
        p.insert(("in".into(), 0), 42);
        p.insert(("in".into(), 3), 7);
        p.insert(("other".into(), 1), 0);
        assert_eq!(from_json(&to_json(&p)), Ok(p));
        assert!(from_json(&serde_json::json!({"in": {"x": 1}})).is_err());
        assert!(from_json(&serde_json::json!({"in": {"0": "1"}})).is_err());
        assert!(from_json(&serde_json::json!([1])).is_err());
    }
}
