//! Prometheus metrics, per component, labelled `pipeline`, `component`, `kind`.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use connectd_sdk::stats::{ErrorKind, PluginStats, SinkStats, SourceStats};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
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
    config_reloads: IntCounterVec,
    checkpoint_bytes: IntCounterVec,
    state_keys: IntGaugeVec,
    state_bytes: IntGaugeVec,
    state_partitions: IntGaugeVec,
    state_restore: GaugeVec,
    /// Window output for the dashboard (not a metric, but shared the same way).
    live: crate::live::Live,
    /// What leaves each component, for `connectd tap`.
    taps: crate::tap::Taps,
    /// Sources' own counters about their services, read at scrape time.
    source_stats: Arc<Mutex<Vec<RegisteredStats>>>,
    plugin_stats: Arc<Mutex<Vec<RegisteredPlugin>>>,
    sink_stats: Arc<Mutex<Vec<RegisteredSink>>>,
}

/// (pipeline, component, counters)
type RegisteredStats = (String, String, Arc<SourceStats>);
type RegisteredPlugin = (String, String, Arc<PluginStats>);
type RegisteredSink = (String, String, Arc<SinkStats>);
/// (metric name, type, help, value)
type PluginFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&PluginStats) -> String,
);

/// One component's handles (cheap to update on the hot path: no label lookups).
#[derive(Debug, Clone)]
pub struct ComponentMetrics {
    pub records_in: IntCounter,
    pub records_out: IntCounter,
    pub errors: IntCounter,
    pub dlq: IntCounter,
    /// Late records behind the watermark of their own partition (`cause="within_partition"`).
    pub late: IntCounter,
    /// Late records on time in their partition, which had fallen behind
    /// (`cause="partition_behind"`: idle, or newly assigned).
    pub late_partition_behind: IntCounter,
    pub checkpoint_duration: prometheus::Histogram,
    pub last_checkpoint: prometheus::Gauge,
    /// Where the component's output goes for `connectd tap` (when anyone listens).
    pub tap: crate::tap::TapPoint,
}

/// A pipeline's state-store metrics, updated after each checkpoint is written.
#[derive(Debug, Clone)]
pub struct StateMetrics {
    pipeline: String,
    pub checkpoint_bytes: IntCounter,
    keys: IntGaugeVec,
    bytes: IntGaugeVec,
    partitions: IntGaugeVec,
    restore: prometheus::Gauge,
}

impl StateMetrics {
    /// How long the pipeline's last start took to have its state ready.
    pub fn restored(&self, took: std::time::Duration) {
        self.restore.set(took.as_secs_f64());
    }

    /// A transform's keyed state size: approximate keys, bytes on disk, in memory and
    /// in the key filter.
    pub fn table(&self, size: &crate::engine::TableSize) {
        let to_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let component = size.transform.as_str();
        self.keys
            .with_label_values(&[&self.pipeline, component])
            .set(to_i64(size.keys));
        if size.partitions > 0 {
            self.partitions
                .with_label_values(&[&self.pipeline, component])
                .set(to_i64(size.partitions));
        }
        for (place, bytes) in [
            ("disk", size.disk_bytes),
            ("memory", size.memory_bytes),
            ("filter", size.filter_bytes),
        ] {
            self.bytes
                .with_label_values(&[&self.pipeline, component, place])
                .set(to_i64(bytes));
        }
    }
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
        let late = IntCounterVec::new(
            Opts::new(
                "connectd_late_records_total",
                "Records that arrived after their window closed and were dropped, by cause: within_partition (behind the watermark of their own partition) or partition_behind (on time in their partition, which was idle or newly assigned while the watermark moved on).",
            ),
            &["pipeline", "component", "kind", "cause"],
        )
        .unwrap_or_else(|e| unreachable_metric("late", e));
        let _ = registry.register(Box::new(late.clone()));
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
        let config_reloads = IntCounterVec::new(
            Opts::new(
                "connectd_config_reloads_total",
                "Pipeline files re-read after a change: result=ok (applied) or failed (invalid; the running version stays).",
            ),
            &["result"],
        )
        .unwrap_or_else(|e| unreachable_metric("config_reloads", e));
        let _ = registry.register(Box::new(config_reloads.clone()));
        let checkpoint_bytes = IntCounterVec::new(
            Opts::new(
                "connectd_checkpoint_bytes_total",
                "Bytes written to the state store by checkpoints: changed keyed state and manifests.",
            ),
            &["pipeline"],
        )
        .unwrap_or_else(|e| unreachable_metric("checkpoint_bytes", e));
        let _ = registry.register(Box::new(checkpoint_bytes.clone()));
        let state_keys = IntGaugeVec::new(
            Opts::new(
                "connectd_state_keys",
                "Keys in a transform's keyed state at the last checkpoint (approximate: deleted keys count until compaction).",
            ),
            &["pipeline", "component"],
        )
        .unwrap_or_else(|e| unreachable_metric("state_keys", e));
        let _ = registry.register(Box::new(state_keys.clone()));
        let state_bytes = IntGaugeVec::new(
            Opts::new(
                "connectd_state_bytes",
                "Size of a transform's keyed state at the last checkpoint: where=disk (the store's files) or memory (what the transform holds, and changes not yet in the store).",
            ),
            &["pipeline", "component", "where"],
        )
        .unwrap_or_else(|e| unreachable_metric("state_bytes", e));
        let _ = registry.register(Box::new(state_bytes.clone()));
        let state_partitions = IntGaugeVec::new(
            Opts::new(
                "connectd_state_partitions",
                "Input partitions whose keyed state a transform holds on this worker, each in a table of its own (state.per_partition).",
            ),
            &["pipeline", "component"],
        )
        .unwrap_or_else(|e| unreachable_metric("state_partitions", e));
        let _ = registry.register(Box::new(state_partitions.clone()));
        let state_restore = GaugeVec::new(
            Opts::new(
                "connectd_state_restore_seconds",
                "How long the pipeline's last start took to restore its state: open the state store, roll it back to the last complete checkpoint, finish interrupted sink commits, hand each transform its state.",
            ),
            &["pipeline"],
        )
        .unwrap_or_else(|e| unreachable_metric("state_restore", e));
        let _ = registry.register(Box::new(state_restore.clone()));
        // process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds, ...
        #[cfg(target_os = "linux")]
        let _ = registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        Self {
            registry,
            records_in,
            records_out,
            errors,
            dlq,
            late,
            checkpoint_duration,
            last_checkpoint,
            config_reloads,
            checkpoint_bytes,
            state_keys,
            state_bytes,
            state_partitions,
            state_restore,
            live: Default::default(),
            taps: Default::default(),
            source_stats: Arc::default(),
            plugin_stats: Arc::default(),
            sink_stats: Arc::default(),
        }
    }

    pub fn live(&self) -> &crate::live::Live {
        &self.live
    }

    pub fn taps(&self) -> &crate::tap::Taps {
        &self.taps
    }

    /// A component's counters now, for the dashboard.
    pub fn counters(&self, pipeline: &str, component: &str, kind: &str) -> serde_json::Value {
        let l = [pipeline, component, kind];
        let lag = (kind == "source")
            .then(|| {
                let all = self.source_stats.lock().unwrap_or_else(|p| p.into_inner());
                all.iter()
                    .find(|(p, c, s)| p == pipeline && c == component && s.last_event_ms() > 0)
                    .map(|(_, _, s)| {
                        (connectd_sdk::time::now_ms() - s.last_event_ms()) as f64 / 1000.0
                    })
            })
            .flatten();
        serde_json::json!({
            "records_in": self.records_in.with_label_values(&l).get(),
            "records_out": self.records_out.with_label_values(&l).get(),
            "errors": self.errors.with_label_values(&l).get(),
            "dlq": self.dlq.with_label_values(&l).get(),
            "last_checkpoint": self.last_checkpoint.with_label_values(&l).get(),
            "lag": lag,
        })
    }

    /// Counts a pipeline file re-read on a hot reload.
    pub fn config_reload(&self, ok: bool) {
        self.config_reloads
            .with_label_values(&[if ok { "ok" } else { "failed" }])
            .inc();
    }

    /// The state store's metrics of one pipeline.
    pub fn state(&self, pipeline: &str) -> StateMetrics {
        StateMetrics {
            pipeline: pipeline.to_string(),
            checkpoint_bytes: self.checkpoint_bytes.with_label_values(&[pipeline]),
            keys: self.state_keys.clone(),
            bytes: self.state_bytes.clone(),
            partitions: self.state_partitions.clone(),
            restore: self.state_restore.with_label_values(&[pipeline]),
        }
    }

    pub fn component(&self, pipeline: &str, component: &str, kind: &str) -> ComponentMetrics {
        let l = [pipeline, component, kind];
        ComponentMetrics {
            records_in: self.records_in.with_label_values(&l),
            records_out: self.records_out.with_label_values(&l),
            errors: self.errors.with_label_values(&l),
            dlq: self.dlq.with_label_values(&l),
            late: self
                .late
                .with_label_values(&[pipeline, component, kind, "within_partition"]),
            late_partition_behind: self.late.with_label_values(&[
                pipeline,
                component,
                kind,
                "partition_behind",
            ]),
            checkpoint_duration: self.checkpoint_duration.with_label_values(&l),
            last_checkpoint: self.last_checkpoint.with_label_values(&l),
            tap: self.taps.point(pipeline, component),
        }
    }

    /// Exports a source's service counters (requests, reconnects, errors, lag).
    pub fn register_source_stats(&self, pipeline: &str, component: &str, stats: Arc<SourceStats>) {
        let mut all = self.source_stats.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|(p, c, _)| !(p == pipeline && c == component));
        all.push((pipeline.to_string(), component.to_string(), stats));
    }

    /// Exports a sink's counters about its destination (bytes written).
    pub fn register_sink_stats(&self, pipeline: &str, component: &str, stats: Arc<SinkStats>) {
        let mut all = self.sink_stats.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|(p, c, _)| !(p == pipeline && c == component));
        all.push((pipeline.to_string(), component.to_string(), stats));
    }

    /// Exports a plugin transform's counters (batches, traps, time in the guest).
    pub fn register_plugin_stats(&self, pipeline: &str, component: &str, stats: Arc<PluginStats>) {
        let mut all = self.plugin_stats.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|(p, c, _)| !(p == pipeline && c == component));
        all.push((pipeline.to_string(), component.to_string(), stats));
    }

    /// The topics a pipeline's sources read and its sinks wrote to since they started
    /// or since `forget_topics` (Kafka Connect's active topics), sorted.
    pub fn topics_of(&self, pipeline: &str) -> Vec<String> {
        let mut all = std::collections::BTreeSet::new();
        let sources = self.source_stats.lock().unwrap_or_else(|p| p.into_inner());
        for (_, _, s) in sources.iter().filter(|(p, _, _)| p == pipeline) {
            all.extend(s.topics.all());
        }
        drop(sources);
        let sinks = self.sink_stats.lock().unwrap_or_else(|p| p.into_inner());
        for (_, _, s) in sinks.iter().filter(|(p, _, _)| p == pipeline) {
            all.extend(s.topics.all());
        }
        all.into_iter().collect()
    }

    /// Forgets the topics a pipeline used: from now on, those it uses again.
    pub fn forget_topics(&self, pipeline: &str) {
        let sources = self.source_stats.lock().unwrap_or_else(|p| p.into_inner());
        for (_, _, s) in sources.iter().filter(|(p, _, _)| p == pipeline) {
            s.topics.forget();
        }
        drop(sources);
        let sinks = self.sink_stats.lock().unwrap_or_else(|p| p.into_inner());
        for (_, _, s) in sinks.iter().filter(|(p, _, _)| p == pipeline) {
            s.topics.forget();
        }
    }

    /// What a pipeline owns on this worker, for the admin API: the partitions each
    /// source reads, each transform's keyed state (at its last checkpoint), and how long
    /// the last start took to restore the state.
    pub fn ownership(&self, pipeline: &str) -> serde_json::Value {
        let mut partitions = serde_json::Map::new();
        let stats = self.source_stats.lock().unwrap_or_else(|p| p.into_inner());
        for (_, c, s) in stats.iter().filter(|(p, _, _)| p == pipeline) {
            if let Some(owned) = s.partitions() {
                let list = owned
                    .into_iter()
                    .map(|(topic, n)| serde_json::json!({"topic": topic, "partition": n}));
                partitions.insert(c.clone(), list.collect());
            }
        }
        drop(stats);
        // Read, not looked up by label: a lookup would create the series.
        use prometheus::core::Collector;
        let mut state = serde_json::Map::new();
        let mut restore = None;
        let families = [
            ("keys", self.state_keys.collect()),
            ("", self.state_bytes.collect()),
            ("partitions", self.state_partitions.collect()),
            ("", self.state_restore.collect()),
        ];
        let metrics = families.iter().flat_map(|(field, fs)| {
            fs.iter()
                .flat_map(|f| f.get_metric())
                .map(move |m| (*field, m))
        });
        for (field, m) in metrics {
            let label = |name: &str| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == name)
                    .map(|l| l.value())
            };
            if label("pipeline") != Some(pipeline) {
                continue;
            }
            let value = m.get_gauge().get_value();
            let Some(component) = label("component") else {
                restore = Some(value); // the one series per pipeline
                continue;
            };
            let entry = state
                .entry(component.to_string())
                .or_insert_with(|| serde_json::json!({}));
            let field = label("where").map_or(field.to_string(), |place| format!("{place}_bytes"));
            entry[field] = (value as i64).into();
        }
        serde_json::json!({
            "partitions": partitions,
            "state": state,
            "restore_seconds": restore,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        let mut text = String::from_utf8_lossy(&buf).into_owned();
        self.render_source_stats(&mut text);
        self.render_plugin_stats(&mut text);
        self.render_sink_stats(&mut text);
        text
    }

    fn render_sink_stats(&self, out: &mut String) {
        let all = self.sink_stats.lock().unwrap_or_else(|p| p.into_inner());
        if all.is_empty() {
            return;
        }
        let name = "connectd_sink_bytes_total";
        let _ = writeln!(
            out,
            "# HELP {name} Bytes a sink committed to its destination (file data; kafka keys and values).\n# TYPE {name} counter"
        );
        for (p, c, s) in all.iter() {
            let _ = writeln!(
                out,
                "{name}{{pipeline=\"{p}\",component=\"{c}\",kind=\"sink\"}} {}",
                s.bytes()
            );
        }
    }

    fn render_plugin_stats(&self, out: &mut String) {
        let all = self.plugin_stats.lock().unwrap_or_else(|p| p.into_inner());
        if all.is_empty() {
            return;
        }
        let families: [PluginFamily; 3] = [
            (
                "connectd_plugin_batches_total",
                "counter",
                "Batches a plugin processed.",
                |s| s.batches().to_string(),
            ),
            (
                "connectd_plugin_traps_total",
                "counter",
                "Times a plugin trapped (panic, memory cap, timeout).",
                |s| s.traps().to_string(),
            ),
            (
                "connectd_plugin_guest_seconds_total",
                "counter",
                "Time spent inside the plugin.",
                |s| s.guest_seconds().to_string(),
            ),
        ];
        for (name, kind, help, value) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (p, c, s) in all.iter() {
                let _ = writeln!(
                    out,
                    "{name}{{pipeline=\"{p}\",component=\"{c}\",kind=\"transform\"}} {}",
                    value(s)
                );
            }
        }
    }

    fn render_source_stats(&self, out: &mut String) {
        let all = self.source_stats.lock().unwrap_or_else(|p| p.into_inner());
        if all.is_empty() {
            return;
        }
        let now_ms = connectd_sdk::time::now_ms();
        let labels =
            |p: &str, c: &str| format!("pipeline=\"{p}\",component=\"{c}\",kind=\"source\"");
        let mut family =
            |name: &str,
             kind: &str,
             help: &str,
             rows: &mut dyn Iterator<Item = (String, String)>| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
                for (l, v) in rows {
                    let _ = writeln!(out, "{name}{{{l}}} {v}");
                }
            };
        family(
            "connectd_source_requests_total",
            "counter",
            "Requests (or connection attempts) a source made to its service.",
            &mut all
                .iter()
                .map(|(p, c, s)| (labels(p, c), s.requests().to_string())),
        );
        family(
            "connectd_source_reconnects_total",
            "counter",
            "Times a streaming source reconnected.",
            &mut all
                .iter()
                .map(|(p, c, s)| (labels(p, c), s.reconnects().to_string())),
        );
        family(
            "connectd_source_errors_total",
            "counter",
            "Errors of a source's service, by kind.",
            &mut all.iter().flat_map(|(p, c, s)| {
                ErrorKind::ALL.iter().map(move |k| {
                    (
                        format!("{},error=\"{}\"", labels(p, c), k.label()),
                        s.errors(*k).to_string(),
                    )
                })
            }),
        );
        family(
            "connectd_source_last_success_timestamp_seconds",
            "gauge",
            "When a source last got a good answer from its service (Unix time).",
            &mut all
                .iter()
                .filter(|(_, _, s)| s.last_success_ms() > 0)
                .map(|(p, c, s)| {
                    (
                        labels(p, c),
                        (s.last_success_ms() as f64 / 1000.0).to_string(),
                    )
                }),
        );
        family(
            "connectd_source_bytes_total",
            "counter",
            "Bytes a source read from its service or file (payloads, lines, bodies).",
            &mut all
                .iter()
                .map(|(p, c, s)| (labels(p, c), s.bytes().to_string())),
        );
        family(
            "connectd_source_backlog_records",
            "gauge",
            "Records waiting at a source's service that it has not read yet (kafka: consumer lag).",
            &mut all
                .iter()
                .filter_map(|(p, c, s)| s.backlog().map(|b| (labels(p, c), b.to_string()))),
        );
        family(
            "connectd_source_partitions",
            "gauge",
            "Partitions a source reads on this worker now (kafka: its share of the group's assignment).",
            &mut all.iter().filter_map(|(p, c, s)| {
                s.partitions()
                    .map(|owned| (labels(p, c), owned.len().to_string()))
            }),
        );
        family(
            "connectd_source_partition_owned",
            "gauge",
            "1 for each partition a source reads on this worker now.",
            &mut all.iter().flat_map(|(p, c, s)| {
                s.partitions()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |(topic, n)| {
                        (
                            format!("{},topic=\"{topic}\",partition=\"{n}\"", labels(p, c)),
                            "1".to_string(),
                        )
                    })
            }),
        );
        family(
            "connectd_source_lag_seconds",
            "gauge",
            "Seconds between now and the event time of the newest record a source emitted.",
            &mut all
                .iter()
                .filter(|(_, _, s)| s.last_event_ms() > 0)
                .map(|(p, c, s)| {
                    (
                        labels(p, c),
                        ((now_ms - s.last_event_ms()) as f64 / 1000.0).to_string(),
                    )
                }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_and_plugin_counters_are_rendered() {
        let m = Metrics::new();
        let source = Arc::new(SourceStats::default());
        source.request();
        source.error(ErrorKind::RateLimited);
        m.register_source_stats("p", "src", source.clone());
        assert!(!m.render().contains("connectd_source_backlog_records{"));
        source.set_backlog(42);
        source.set_partitions(vec![("iot".into(), 0), ("iot".into(), 2)]);
        let plugin = Arc::new(PluginStats::default());
        plugin.batch(std::time::Duration::from_millis(1500));
        plugin.trap();
        m.register_plugin_stats("p", "wasm", plugin);
        let text = m.render();
        for line in [
            r#"connectd_source_requests_total{pipeline="p",component="src",kind="source"} 1"#,
            r#"connectd_source_errors_total{pipeline="p",component="src",kind="source",error="rate_limited"} 1"#,
            r#"connectd_source_backlog_records{pipeline="p",component="src",kind="source"} 42"#,
            r#"connectd_source_partitions{pipeline="p",component="src",kind="source"} 2"#,
            r#"connectd_source_partition_owned{pipeline="p",component="src",kind="source",topic="iot",partition="2"} 1"#,
            r#"connectd_plugin_batches_total{pipeline="p",component="wasm",kind="transform"} 1"#,
            r#"connectd_plugin_traps_total{pipeline="p",component="wasm",kind="transform"} 1"#,
            r#"connectd_plugin_guest_seconds_total{pipeline="p",component="wasm",kind="transform"} 1.5"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
    }
}
