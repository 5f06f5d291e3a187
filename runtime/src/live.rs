//! Live window output for the dashboard's chart: window transforms hand what they emit
//! to whoever listens (an open dashboard), and skip it when nobody does.

use std::sync::Arc;

use connectd_sdk::Record;
use tokio::sync::broadcast;

/// One batch a window transform emitted.
#[derive(Debug, Clone)]
pub struct WindowOutput {
    pub pipeline: Arc<str>,
    pub component: Arc<str>,
    pub records: Arc<Vec<Record>>,
}

#[derive(Debug, Clone)]
pub struct Live(broadcast::Sender<WindowOutput>);

impl Default for Live {
    fn default() -> Self {
        // A slow listener misses batches (it is told how many) rather than slowing
        // the pipeline.
        Self(broadcast::channel(256).0)
    }
}

impl Live {
    pub fn subscribe(&self) -> broadcast::Receiver<WindowOutput> {
        self.0.subscribe()
    }

    /// A window transform's tap into this channel.
    pub fn tap(&self, pipeline: &str, component: &str) -> LiveTap {
        LiveTap {
            live: self.clone(),
            pipeline: pipeline.into(),
            component: component.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct LiveTap {
    live: Live,
    pipeline: Arc<str>,
    component: Arc<str>,
}

impl LiveTap {
    pub fn publish(&self, records: &Arc<Vec<Record>>) {
        if self.live.0.receiver_count() > 0 {
            let _ = self.live.0.send(WindowOutput {
                pipeline: self.pipeline.clone(),
                component: self.component.clone(),
                records: records.clone(),
            });
        }
    }
}
