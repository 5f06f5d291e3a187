//! State changes for a changelog topic (`state.per_partition` with a sink that writes
//! changelogs, as Kafka Streams logs each task's store): what a sink adds to the
//! transaction of a checkpoint (`Sink::write_changelogs`), and reads back for a worker
//! that takes a partition over (`Sink::changelog_reader`).

/// One transform's changelog records of one checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changelog {
    /// `connectd-<pipeline>-<transform>-changelog`.
    pub topic: String,
    /// The partitions to create the topic with when it does not exist: one past the
    /// highest input partition the transform holds state of. A topic that exists keeps
    /// its count; records go to `partition` modulo it, and their keys name their task.
    pub partitions: u32,
    pub records: Vec<ChangelogRecord>,
}

/// A key's new value in a task's table (`None`: deleted), or a task's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangelogRecord {
    pub partition: u32,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// Reads a changelog back: what a worker restores a partition's state from when it is
/// assigned that partition. Blocking, callable from any thread (a restore runs where
/// the transform runs, before the partition's first record).
pub trait ChangelogReader: Send + Sync {
    /// Every committed record of `topic` (none when it does not exist), in order per
    /// partition; only the partition holding input partition `partition`'s records
    /// (`partition` modulo the topic's count) when it is given.
    fn read(
        &self,
        topic: &str,
        partition: Option<u32>,
    ) -> Result<Vec<ChangelogRecord>, crate::ConnectorError>;
}
