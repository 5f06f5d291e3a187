//! Which consumer groups feed a pipeline. A kafka sink commits its upstream kafka
//! sources' offsets inside its own transaction (`send_offsets_to_transaction`), which
//! needs each source consumer's group metadata: sources register it here by pipeline.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use rdkafka::consumer::ConsumerGroupMetadata;

/// A kafka source as a sink sees it.
#[derive(Clone)]
pub struct GroupSource {
    /// The source's component name: its offsets are `state.sources[name].offset`.
    pub source: String,
    pub metadata: Arc<ConsumerGroupMetadata>,
    /// The topics the source reads.
    pub topics: Vec<String>,
    /// The partitions the source's consumer holds now.
    pub held: Arc<Mutex<BTreeSet<(String, i32)>>>,
}

impl GroupSource {
    /// Whether the consumer holds this partition now.
    pub fn holds(&self, topic: &str, partition: i32) -> bool {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&(topic.to_string(), partition))
    }
}

impl std::fmt::Debug for GroupSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupSource")
            .field("source", &self.source)
            .finish()
    }
}

type Registry = Mutex<HashMap<String, Vec<GroupSource>>>;

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// Called by a source when its consumer has joined (or rejoined) its group.
pub fn register(
    pipeline: &str,
    source: &str,
    metadata: ConsumerGroupMetadata,
    topics: Vec<String>,
    held: Arc<Mutex<BTreeSet<(String, i32)>>>,
) {
    let mut r = registry().lock().unwrap_or_else(|p| p.into_inner());
    let list = r.entry(pipeline.to_string()).or_default();
    list.retain(|g| g.source != source);
    list.push(GroupSource {
        source: source.to_string(),
        metadata: Arc::new(metadata),
        topics,
        held,
    });
}

pub fn unregister(pipeline: &str, source: &str) {
    let mut r = registry().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(list) = r.get_mut(pipeline) {
        list.retain(|g| g.source != source);
    }
}

pub fn of(pipeline: &str) -> Vec<GroupSource> {
    let r = registry().lock().unwrap_or_else(|p| p.into_inner());
    r.get(pipeline).cloned().unwrap_or_default()
}
