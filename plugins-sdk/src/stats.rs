//! Operational counters a source keeps about its external service (requests,
//! reconnects, errors by kind, last success, event-time lag, backlog). The runtime exports them
//! on `/metrics`; the source only increments.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Kinds of errors a source counts separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// HTTP 429 and the like.
    RateLimited,
    /// 5xx, protocol errors the server reported.
    Server,
    /// Timeouts, refused or dropped connections.
    Network,
    /// The service refused the request for good (bad key, unknown symbol).
    Rejected,
    /// The answer was not in the documented shape.
    Garbage,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 5] = [
        Self::RateLimited,
        Self::Server,
        Self::Network,
        Self::Rejected,
        Self::Garbage,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::RateLimited => "rate_limited",
            Self::Server => "server",
            Self::Network => "network",
            Self::Rejected => "rejected",
            Self::Garbage => "garbage",
        }
    }
}

#[derive(Debug)]
pub struct SourceStats {
    requests: AtomicU64,
    reconnects: AtomicU64,
    errors: [AtomicU64; 5],
    /// Epoch ms of the last successful request or message; 0 = never.
    last_success_ms: AtomicI64,
    /// Event time (epoch ms) of the newest record emitted; 0 = none yet.
    last_event_ms: AtomicI64,
    /// Records waiting at the service that the source has not emitted yet (a kafka
    /// consumer's lag); -1 = the source cannot tell.
    backlog: AtomicI64,
    /// Bytes read from the service or file (message payloads, lines, bodies).
    bytes: AtomicU64,
    /// The partitions (stream, number) this worker reads now, for a source whose
    /// service splits its data among the workers of a group (a kafka consumer's
    /// assignment); `None` for a source that has no such thing.
    partitions: Mutex<Option<Vec<(String, i32)>>>,
    /// The topics records were read from (see `TopicsUsed`).
    pub topics: TopicsUsed,
}

impl Default for SourceStats {
    fn default() -> Self {
        Self {
            requests: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            errors: Default::default(),
            last_success_ms: AtomicI64::new(0),
            last_event_ms: AtomicI64::new(0),
            backlog: AtomicI64::new(-1),
            bytes: AtomicU64::new(0),
            partitions: Mutex::new(None),
            topics: TopicsUsed::default(),
        }
    }
}

impl SourceStats {
    pub fn request(&self) {
        self.requests.fetch_add(1, Relaxed);
    }

    pub fn reconnect(&self) {
        self.reconnects.fetch_add(1, Relaxed);
    }

    pub fn error(&self, kind: ErrorKind) {
        self.errors[kind as usize].fetch_add(1, Relaxed);
    }

    pub fn success(&self) {
        self.last_success_ms.store(crate::time::now_ms(), Relaxed);
    }

    pub fn event_time(&self, ms: i64) {
        self.last_event_ms.fetch_max(ms, Relaxed);
    }

    pub fn read_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Relaxed);
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Relaxed)
    }

    pub fn set_backlog(&self, records: u64) {
        self.backlog
            .store(i64::try_from(records).unwrap_or(i64::MAX), Relaxed);
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Relaxed)
    }

    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Relaxed)
    }

    pub fn errors(&self, kind: ErrorKind) -> u64 {
        self.errors[kind as usize].load(Relaxed)
    }

    pub fn last_success_ms(&self) -> i64 {
        self.last_success_ms.load(Relaxed)
    }

    pub fn last_event_ms(&self) -> i64 {
        self.last_event_ms.load(Relaxed)
    }

    pub fn set_partitions(&self, owned: Vec<(String, i32)>) {
        *self.partitions.lock().unwrap_or_else(|p| p.into_inner()) = Some(owned);
    }

    /// The partitions this worker reads now (see the field); `None` when the source has
    /// no partitions.
    pub fn partitions(&self) -> Option<Vec<(String, i32)>> {
        self.partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// None until the source has measured it (and for sources that cannot).
    pub fn backlog(&self) -> Option<u64> {
        u64::try_from(self.backlog.load(Relaxed)).ok()
    }
}

/// Counters a sink keeps about its destination: the bytes it committed there (a file
/// sink's data, a kafka sink's keys and values), and the topics it wrote to.
#[derive(Debug, Default)]
pub struct SinkStats {
    bytes: AtomicU64,
    pub topics: TopicsUsed,
}

impl SinkStats {
    pub fn written(&self, n: u64) {
        self.bytes.fetch_add(n, Relaxed);
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Relaxed)
    }
}

/// The topics (Kafka's, or a service's like them) a component read records from or
/// wrote them to since it started or since they were last forgotten: Kafka Connect's
/// "active topics" (`GET /connectors/{name}/topics`).
#[derive(Debug, Default)]
pub struct TopicsUsed(Mutex<std::collections::BTreeSet<String>>);

impl TopicsUsed {
    /// Adds topics; called once per batch, not per record.
    pub fn used<'t>(&self, topics: impl IntoIterator<Item = &'t str>) {
        let mut set = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for t in topics {
            if !set.contains(t) {
                set.insert(t.to_string());
            }
        }
    }

    pub fn all(&self) -> Vec<String> {
        let set = self.0.lock().unwrap_or_else(|p| p.into_inner());
        set.iter().cloned().collect()
    }

    pub fn forget(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// Counters a plugin-hosting transform keeps (WASM): calls, traps, time in the guest.
#[derive(Debug, Default)]
pub struct PluginStats {
    batches: AtomicU64,
    traps: AtomicU64,
    guest_nanos: AtomicU64,
}

impl PluginStats {
    pub fn batch(&self, guest_time: std::time::Duration) {
        self.batches.fetch_add(1, Relaxed);
        self.guest_nanos
            .fetch_add(guest_time.as_nanos() as u64, Relaxed);
    }

    pub fn trap(&self) {
        self.traps.fetch_add(1, Relaxed);
    }

    pub fn batches(&self) -> u64 {
        self.batches.load(Relaxed)
    }

    pub fn traps(&self) -> u64 {
        self.traps.load(Relaxed)
    }

    pub fn guest_seconds(&self) -> f64 {
        self.guest_nanos.load(Relaxed) as f64 / 1e9
    }
}
