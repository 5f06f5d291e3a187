//! What the synthetic sources share: a counter-based random stream (record `n` depends
//! only on the seed and `n`, so any offset replays exactly), pacing to a rate, a
//! record count limit, and event times that advance by a fixed step.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use connectd_sdk::config::{ConfigMap, HumanDuration};
use connectd_sdk::time::{now_ms, parse_rfc3339_ms};
use connectd_sdk::{BadRecord, ConnectorError, Record, Source, SourcePoll};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Random numbers for record `seq` of a seeded stream (SplitMix64).
#[derive(Debug, Clone)]
pub struct SeqRng(u64);

impl SeqRng {
    pub fn new(seed: u64, seq: u64) -> Self {
        SeqRng(seed ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Options every generator has.
#[derive(Debug, Clone)]
pub struct GeneratorOptions {
    pub seed: u64,
    /// Records per second; 0 = as fast as possible.
    pub rate: u64,
    /// Stop after this many records; 0 = never.
    pub count: u64,
    /// Event time of record 0 (epoch ms); `None` = the wall clock at the first run,
    /// remembered in the offset so replays reproduce it.
    pub start: Option<i64>,
    /// Event-time distance between consecutive records.
    pub step_ms: i64,
}

/// The options every generator has.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
pub struct GeneratorConfig {
    /// Seed of the random stream: the same seed gives the same records.
    #[serde(default)]
    pub seed: u64,
    /// Records per second; 0 = as fast as possible.
    #[serde(default = "default_rate")]
    pub rate: u64,
    /// Stop after this many records; 0 = never.
    #[serde(default)]
    pub count: u64,
    /// Event time of record 0: `now` (the wall clock at the first run, kept in the
    /// offset so replays reproduce it), epoch milliseconds or an RFC 3339 time.
    #[serde(default)]
    #[schemars(schema_with = "start_schema")]
    pub start: Option<String>,
    /// Event-time distance between consecutive records (default: 1 s / rate, at least
    /// 1 ms).
    #[serde(default)]
    pub step: Option<HumanDuration>,
}

fn default_rate() -> u64 {
    1000
}

impl GeneratorOptions {
    pub fn read(cfg: &ConfigMap<'_>, c: &GeneratorConfig) -> Self {
        let start = c.start.as_deref().and_then(|s| {
            if s == "now" {
                return None;
            }
            match s.parse::<i64>() {
                Ok(ms) => Some(ms),
                Err(_) => match parse_rfc3339_ms(s) {
                    Ok(ms) => Some(ms),
                    Err(e) => {
                        cfg.error(
                            "start",
                            format!("expected `now`, epoch milliseconds or an RFC 3339 time: {e}"),
                        );
                        None
                    }
                },
            }
        });
        let default_step = 1000u64.checked_div(c.rate).unwrap_or(1).max(1);
        let step_ms = c
            .step
            .map(|d| d.as_millis_i64())
            .unwrap_or(default_step as i64);
        Self {
            seed: c.seed,
            rate: c.rate,
            count: c.count,
            start,
            step_ms,
        }
    }
}

/// Makes record number `seq`, with its event time.
pub trait RecordMaker: Send {
    fn make(&self, seq: u64, event_time: i64, rng: &mut SeqRng) -> Record;
}

#[derive(Debug, Serialize, Deserialize)]
struct GeneratorOffset {
    /// The next record to produce.
    seq: u64,
    start: i64,
}

/// A paced, bounded, replayable source over a [`RecordMaker`].
#[derive(Debug)]
pub struct Generator<M> {
    opts: GeneratorOptions,
    maker: M,
    seq: u64,
    start: i64,
    /// Pacing reference: the wall instant at which `paced_from` was the next seq.
    clock: Option<(Instant, u64)>,
}

impl<M: RecordMaker> Generator<M> {
    pub fn new(opts: GeneratorOptions, maker: M) -> Self {
        Self {
            seq: 0,
            start: opts.start.unwrap_or(0),
            opts,
            maker,
            clock: None,
        }
    }
}

#[async_trait]
impl<M: RecordMaker + std::fmt::Debug> Source for Generator<M> {
    async fn open(&mut self, offset: Option<serde_json::Value>) -> Result<(), ConnectorError> {
        match offset {
            Some(v) => {
                let o: GeneratorOffset = connectd_sdk::error::parse_offset(v, "generator")?;
                self.seq = o.seq;
                self.start = o.start;
            }
            None => {
                self.seq = 0;
                self.start = self.opts.start.unwrap_or_else(now_ms);
            }
        }
        Ok(())
    }

    async fn poll(
        &mut self,
        max: usize,
        _bad: &mut Vec<BadRecord>,
    ) -> Result<SourcePoll, ConnectorError> {
        let mut n = max as u64;
        if self.opts.count > 0 {
            if self.seq >= self.opts.count {
                return Ok(SourcePoll::End);
            }
            n = n.min(self.opts.count - self.seq);
        }
        if self.opts.rate > 0 {
            let (t0, s0) = *self.clock.get_or_insert((Instant::now(), self.seq));
            let due = s0 + (t0.elapsed().as_secs_f64() * self.opts.rate as f64) as u64;
            if due <= self.seq {
                let wait =
                    Duration::from_secs_f64((self.seq + 1 - s0) as f64 / self.opts.rate as f64)
                        .saturating_sub(t0.elapsed());
                return Ok(SourcePoll::Idle(wait.max(Duration::from_millis(1))));
            }
            n = n.min(due - self.seq);
        }
        let mut out = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let mut rng = SeqRng::new(self.opts.seed, self.seq);
            let t = self
                .start
                .saturating_add((self.seq as i64).saturating_mul(self.opts.step_ms));
            out.push(self.maker.make(self.seq, t, &mut rng));
            self.seq += 1;
        }
        Ok(SourcePoll::Batch(out))
    }

    /// A position is the next record's number and the first record's event time.
    async fn alter(&mut self, offset: &serde_json::Value) -> Result<(), ConnectorError> {
        connectd_sdk::traits::offset_as::<GeneratorOffset>(offset).map(|_| ())
    }

    fn offset(&self) -> serde_json::Value {
        serde_json::to_value(GeneratorOffset {
            seq: self.seq,
            start: self.start,
        })
        .unwrap_or_default()
    }
}

/// `start`: `now`, epoch milliseconds, or an RFC 3339 time.
fn start_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "anyOf": [
            {"type": "integer"},
            {
                "type": "string",
                "pattern": "^(now|-?[0-9]+|[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2}))$"
            }
        ]
    })
}

#[cfg(test)]
mod tests {
    use connectd_sdk::config::{ConfigErrors, ConfigMap, ConfigNode, ConfigValue};
    use connectd_sdk::{BuildContext, Record, Source, SourcePoll};

    fn build(kind: &str, yaml: &[(&str, &str)]) -> Box<dyn Source> {
        let node = ConfigNode {
            value: ConfigValue::Map(
                yaml.iter()
                    .map(|(k, v)| {
                        (
                            connectd_sdk::config::ConfigKey {
                                name: k.to_string(),
                                span: Default::default(),
                            },
                            ConfigNode {
                                value: ConfigValue::Scalar(v.to_string()),
                                span: Default::default(),
                                secret: false,
                                raw: None,
                                quoted: false,
                            },
                        )
                    })
                    .collect(),
            ),
            span: Default::default(),
            secret: false,
            raw: None,
            quoted: false,
        };
        let errors = ConfigErrors::default();
        let mut cfg = ConfigMap::new(&node, "sources.g", &errors);
        let ctx = BuildContext {
            pipeline: "p".into(),
            component: "g".into(),
            state_dir: ".".into(),
            inputs: vec![],
            ..Default::default()
        };
        let built = match kind {
            "iot" => super::super::iot::build(&mut cfg, &ctx),
            _ => super::super::trades::build(&mut cfg, &ctx),
        };
        assert!(errors.is_empty(), "{:?}", errors.take());
        built.expect("valid config")
    }

    async fn take(src: &mut Box<dyn Source>, n: usize) -> Vec<Record> {
        let mut out = Vec::new();
        while out.len() < n {
            match src
                .poll(n - out.len(), &mut Vec::new())
                .await
                .expect("poll")
            {
                SourcePoll::Batch(b) => out.extend(b),
                SourcePoll::Idle(_) => {}
                SourcePoll::End => break,
            }
        }
        out
    }

    #[tokio::test]
    async fn same_seed_and_offset_give_the_same_records() {
        for kind in ["iot", "trades"] {
            let opts = [
                ("seed", "9"),
                ("rate", "0"),
                ("start", "0"),
                ("jitter", "3s"),
                ("late_ratio", "0.1"),
            ];
            let opts: Vec<_> = opts
                .into_iter()
                .filter(|(k, _)| kind == "iot" || !matches!(*k, "jitter" | "late_ratio"))
                .collect();
            let mut whole = build(kind, &opts);
            whole.open(None).await.expect("open");
            let all = take(&mut whole, 1000).await;
            let mut first = build(kind, &opts);
            first.open(None).await.expect("open");
            let head = take(&mut first, 400).await;
            let offset = first.offset();
            let mut resumed = build(kind, &opts);
            resumed.open(Some(offset)).await.expect("open");
            let tail = take(&mut resumed, 600).await;
            assert_eq!([head, tail].concat(), all, "{kind}");
        }
    }

    #[tokio::test]
    async fn count_bounds_the_stream_and_iot_has_late_events() {
        let mut src = build(
            "iot",
            &[
                ("seed", "1"),
                ("rate", "0"),
                ("count", "2500"),
                ("start", "0"),
                ("late_ratio", "0.2"),
                ("late_by", "1m"),
            ],
        );
        src.open(None).await.expect("open");
        let all = take(&mut src, 10_000).await;
        assert_eq!(all.len(), 2500);
        let late = all
            .iter()
            .filter(|r| r.timestamp.unwrap_or(0) < -30_000)
            .count();
        assert!((300..700).contains(&late), "about 20% late, got {late}");
        for r in &all {
            let usage = r
                .value
                .get_path(&connectd_sdk::FieldPath::parse("usage"))
                .and_then(|v| v.as_f64())
                .unwrap_or(-1.0);
            assert!((0.0..=100.0).contains(&usage));
        }
    }
}
