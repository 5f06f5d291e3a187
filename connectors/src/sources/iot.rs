//! `iot`: fake CPU metrics from the seven dwarfs, replayable from any offset.
//!
//! Record: `{"hostname":"dopey","cpu":"cpu4","usage":90.51,"occurred_at":<epoch ms>}`.
//! `jitter` makes events out of order (up to that much earlier than their slot);
//! `late_ratio` of them are moved `late_by` further back, to exercise late-data policies.

use connectd_sdk::config::{ConfigMap, Invalid};
use connectd_sdk::{BuildContext, Object, Record, Source, Value};

use super::generator::{Generator, GeneratorOptions, RecordMaker, SeqRng};

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

pub fn build(cfg: &mut ConfigMap<'_>, _ctx: &BuildContext) -> Result<Box<dyn Source>, Invalid> {
    let opts = GeneratorOptions::read(cfg);
    let jitter_ms = cfg
        .opt_duration("jitter")
        .map_or(0, |d| d.as_millis() as u64);
    let late_ratio = cfg.f64_or("late_ratio", 0.0);
    if !(0.0..=1.0).contains(&late_ratio) {
        cfg.error("late_ratio", "expected a share between 0 and 1");
    }
    let late_by_ms = cfg
        .opt_duration("late_by")
        .map_or(60_000, |d| d.as_millis() as i64);
    cfg.finish()?;
    Ok(Box::new(Generator::new(
        opts,
        IotMaker {
            jitter_ms,
            late_ratio,
            late_by_ms,
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
