//! Live taps: every source, transform and sink hands the batches leaving it (a sink:
//! reaching it) to whoever listens through the admin API (`connectd tap`), and skips
//! it when nobody does (one atomic load per batch).

use std::sync::Arc;

use connectd_sdk::Record;
use tokio::sync::broadcast;

/// One batch that left a component.
#[derive(Debug, Clone)]
pub struct Tapped {
    pub pipeline: Arc<str>,
    pub component: Arc<str>,
    pub records: Arc<Vec<Record>>,
}

#[derive(Debug, Clone)]
pub struct Taps(broadcast::Sender<Tapped>);

impl Default for Taps {
    fn default() -> Self {
        // A slow listener misses batches (it is told how many) rather than slowing
        // the pipeline.
        Self(broadcast::channel(1024).0)
    }
}

impl Taps {
    pub fn subscribe(&self) -> broadcast::Receiver<Tapped> {
        self.0.subscribe()
    }

    /// A component's tap point.
    pub fn point(&self, pipeline: &str, component: &str) -> TapPoint {
        TapPoint {
            taps: self.clone(),
            pipeline: pipeline.into(),
            component: component.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TapPoint {
    taps: Taps,
    pipeline: Arc<str>,
    component: Arc<str>,
}

impl TapPoint {
    pub fn offer(&self, records: &Arc<Vec<Record>>) {
        if self.taps.0.receiver_count() > 0 {
            let _ = self.taps.0.send(Tapped {
                pipeline: self.pipeline.clone(),
                component: self.component.clone(),
                records: records.clone(),
            });
        }
    }
}

/// Keeps a share `rate` (0–1) of what it is shown, evenly: the n-th record is kept
/// when ⌊n·rate⌋ grows, so 0.25 keeps every fourth, with no randomness.
#[derive(Debug)]
pub struct Sampler {
    rate: f64,
    seen: u64,
}

impl Sampler {
    pub fn new(rate: f64) -> Self {
        Sampler {
            rate: rate.clamp(0.0, 1.0),
            seen: 0,
        }
    }

    pub fn keep(&mut self) -> bool {
        let before = (self.seen as f64 * self.rate).floor();
        self.seen += 1;
        (self.seen as f64 * self.rate).floor() > before
    }
}

/// A record as a tap shows it: one JSON line.
pub fn line(r: &Record) -> String {
    let mut v = serde_json::json!({ "value": r.value.to_json() });
    if !r.key.is_null() {
        v["key"] = r.key.to_json();
    }
    if let Some(t) = r.timestamp {
        v["timestamp"] = t.into();
    }
    if !r.headers.is_empty() {
        v["headers"] = r
            .headers
            .iter()
            .map(|(k, h)| (k.to_string(), serde_json::Value::from(h.as_str())))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    let mut s = v.to_string();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::Sampler;

    #[test]
    fn a_sampler_keeps_its_share_evenly() {
        let mut s = Sampler::new(0.25);
        let kept: Vec<bool> = (0..8).map(|_| s.keep()).collect();
        assert_eq!(kept, [false, false, false, true, false, false, false, true]);
        let mut all = Sampler::new(1.0);
        assert!((0..5).all(|_| all.keep()));
        let mut none = Sampler::new(0.0);
        assert!((0..5).all(|_| !none.keep()));
    }
}
