//! A source's line to its pipeline's checkpoint coordinator.
//!
//! Most sources never need it: checkpoints come on the pipeline's interval. A source
//! that must see what it has produced committed before it can go on — a Kafka source
//! giving up partitions in a rebalance — asks for a checkpoint and waits for it.

/// Implemented by the runtime; handed to a source through `Source::attach_checkpoints`.
pub trait CheckpointControl: Send + Sync + std::fmt::Debug {
    /// Asks for a checkpoint now (or right after the one in flight). Returns an id: the
    /// first committed checkpoint with this id or a later one covers every record the
    /// source has returned from `poll` before this call.
    fn request(&self) -> u64;

    /// The id of the newest checkpoint that every sink has committed.
    fn committed(&self) -> u64;
}
