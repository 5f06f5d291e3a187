//! Prometheus metrics, per component, labelled `pipeline`, `component`, `kind`.

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
    TextEncoder,
};

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    records_in: IntCounterVec,
    records_out: IntCounterVec,
    errors: IntCounterVec,
    dlq: IntCounterVec,
    late: IntCounterVec,
    checkpoint_duration: HistogramVec,
    last_checkpoint: GaugeVec,
}

/// One component's handles (cheap to update on the hot path: no label lookups).
#[derive(Debug, Clone)]
pub struct ComponentMetrics {
    pub records_in: IntCounter,
    pub records_out: IntCounter,
    pub errors: IntCounter,
    pub dlq: IntCounter,
    pub late: IntCounter,
    pub checkpoint_duration: prometheus::Histogram,
    pub last_checkpoint: prometheus::Gauge,
}

const LABELS: [&str; 3] = ["pipeline", "component", "kind"];

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), &LABELS)
        .unwrap_or_else(|e| unreachable_metric(name, e));
    let _ = registry.register(Box::new(c.clone()));
    c
}

#[allow(clippy::panic)]
fn unreachable_metric(name: &str, e: prometheus::Error) -> ! {
    // Only a malformed metric name gets here: a programming error caught by any test.
    panic!("metric {name}: {e}")
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let records_in = counter(
            &registry,
            "connectd_records_in_total",
            "Records received by a component.",
        );
        let records_out = counter(
            &registry,
            "connectd_records_out_total",
            "Records emitted (sources, transforms) or written (sinks).",
        );
        let errors = counter(
            &registry,
            "connectd_errors_total",
            "Bad records and failed operations.",
        );
        let dlq = counter(
            &registry,
            "connectd_dlq_records_total",
            "Records sent to the dead-letter queue.",
        );
        let late = counter(
            &registry,
            "connectd_late_records_total",
            "Records that arrived after their window closed and were dropped.",
        );
        let checkpoint_duration = HistogramVec::new(
            HistogramOpts::new(
                "connectd_checkpoint_duration_seconds",
                "Time a sink took to commit a checkpoint.",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &LABELS,
        )
        .unwrap_or_else(|e| unreachable_metric("checkpoint_duration", e));
        let _ = registry.register(Box::new(checkpoint_duration.clone()));
        let last_checkpoint = GaugeVec::new(
            Opts::new(
                "connectd_last_checkpoint_timestamp_seconds",
                "When a sink last committed a checkpoint (Unix time).",
            ),
            &LABELS,
        )
        .unwrap_or_else(|e| unreachable_metric("last_checkpoint", e));
        let _ = registry.register(Box::new(last_checkpoint.clone()));
        Self {
            registry,
            records_in,
            records_out,
            errors,
            dlq,
            late,
            checkpoint_duration,
            last_checkpoint,
        }
    }

    pub fn component(&self, pipeline: &str, component: &str, kind: &str) -> ComponentMetrics {
        let l = [pipeline, component, kind];
        ComponentMetrics {
            records_in: self.records_in.with_label_values(&l),
            records_out: self.records_out.with_label_values(&l),
            errors: self.errors.with_label_values(&l),
            dlq: self.dlq.with_label_values(&l),
            late: self.late.with_label_values(&l),
            checkpoint_duration: self.checkpoint_duration.with_label_values(&l),
            last_checkpoint: self.last_checkpoint.with_label_values(&l),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}
