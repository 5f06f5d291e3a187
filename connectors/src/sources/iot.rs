//! `iot`: fake CPU metrics from the seven dwarfs, replayable from any offset.
//!
//! Record: `{"hostname":"dopey","cpu":"cpu4","usage":90.51,"occurred_at":<epoch ms>}`.
//! `jitter` makes events out of order (up to that much earlier than their slot);
//! `late_ratio` of them are moved `late_by` further back, to exercise late-data policies.

use connectd_sdk::config::{ConfigMap, HumanDuration, Invalid};
use connectd_sdk::{BuildContext, Object, Record, Source, Value};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::generator::{Generator, GeneratorConfig, GeneratorOptions, RecordMaker, SeqRng};

pub const HOSTNAMES: [&str; 7] = [
    "doc", "grumpy", "happy", "sleepy", "bashful", "sneezy", "dopey",
];
pub const CPUS: [&str; 5] = ["cpu1", "cpu2", "cpu3", "cpu4", "cpu5"];

#[derive(Debug)]
pub struct IotMaker {
    jitter_ms: u64,
    late_ratio: f64,
    late_by_ms: i64,
}

/// Fake CPU metrics of seven hosts (`hostname`, `cpu`, `usage`, `occurred_at`),
/// replayable from any offset.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct IotOptions {
    #[serde(skip)]
    #[schemars(flatten, !skip)]
    pub generator: GeneratorConfig,
    /// Makes events out of order: each up to this much earlier than its slot.
    #[serde(default)]
    pub jitter: Option<HumanDuration>,
    /// The share of events (0–1) moved `late_by` further back, to exercise late data.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub late_ratio: f64,
    /// How far back late events are moved.
    #[serde(default = "default_late_by")]
    pub late_by: HumanDuration,
}

fn default_late_by() -> HumanDuration {
    HumanDuration::secs(60)
}

pub fn build(cfg: &mut ConfigMap<'_>, _ctx: &BuildContext) -> Result<Box<dyn Source>, Invalid> {
    let generator: Option<GeneratorConfig> = cfg.typed_part();
    let o: IotOptions = cfg.typed().ok_or(Invalid)?;
    let opts = GeneratorOptions::read(cfg, &generator.ok_or(Invalid)?);
    if !(0.0..=1.0).contains(&o.late_ratio) {
        cfg.error("late_ratio", "expected a share between 0 and 1");
    }
    cfg.finish()?;
    Ok(Box::new(Generator::new(
        opts,
        IotMaker {
            jitter_ms: o.jitter.map_or(0, |d| d.as_millis_i64() as u64),
            late_ratio: o.late_ratio,
            late_by_ms: o.late_by.as_millis_i64(),
        },
    )))
}

impl RecordMaker for IotMaker {
    fn make(&self, _seq: u64, event_time: i64, rng: &mut SeqRng) -> Record {
        let hostname = HOSTNAMES[rng.below(7) as usize];
        let cpu = CPUS[rng.below(5) as usize];
        let usage = rng.below(10_001) as f64 / 100.0;
        let mut t = event_time - rng.below(self.jitter_ms + 1) as i64;
        if self.late_ratio > 0.0 && rng.unit() < self.late_ratio {
            t -= self.late_by_ms;
        }
        let mut o = Object::with_capacity(4);
        o.push_unchecked("hostname", Value::str(hostname));
        o.push_unchecked("cpu", Value::str(cpu));
        o.push_unchecked("usage", Value::Float(usage));
        o.push_unchecked("occurred_at", Value::Int(t));
        Record::new(Value::Object(o))
            .with_key(Value::str(hostname))
            .with_timestamp(t)
    }
}
