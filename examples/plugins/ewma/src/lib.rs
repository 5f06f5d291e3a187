//! Exponentially weighted moving average per key:
//! `config: {key: symbol, field: price, alpha: 0.3, output: price_ewma}`.
//! The averages are the plugin's state: snapshotted at every checkpoint, restored after
//! a restart, so the output is the same as if nothing had failed.
//!
//! `panic_on: <key>` makes the plugin panic on every record of that key: a way to watch
//! connectd recover from a trap (the record goes to the DLQ; the averages of the other
//! keys are as if it had never been seen).

use std::collections::BTreeMap;

use connectd_sdk::wasm::{bad_record, Batch, Failure, Output, Transform};

struct Ewma {
    key: String,
    field: String,
    output: String,
    alpha: f64,
    panic_on: Option<String>,
    averages: BTreeMap<String, f64>,
}

impl Transform for Ewma {
    fn init(config: serde_json::Value) -> Result<Self, String> {
        let text = |k: &str| {
            config[k]
                .as_str()
                .map(str::to_string)
                .ok_or(format!("config.{k} must be a string"))
        };
        let alpha = config["alpha"].as_f64().unwrap_or(0.3);
        if !(0.0..=1.0).contains(&alpha) || alpha == 0.0 {
            return Err("config.alpha must be in (0, 1]".into());
        }
        let field = text("field")?;
        let output = config["output"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("{field}_ewma"));
        Ok(Ewma {
            key: text("key")?,
            field,
            output,
            alpha,
            panic_on: config["panic_on"].as_str().map(str::to_string),
            averages: BTreeMap::new(),
        })
    }

    fn process(&mut self, batch: &Batch, out: &mut Output) -> Result<(), Failure> {
        for e in batch.iter() {
            let mut v = e.json()?;
            let key = match &v[&self.key] {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => {
                    return Err(bad_record(e.index(), format!("`{}` is missing", self.key)))
                }
                other => other.to_string(),
            };
            if self.panic_on.as_ref() == Some(&key) {
                panic!("ewma: panic_on is set for key {key}");
            }
            let Some(x) = v[&self.field].as_f64() else {
                return Err(bad_record(
                    e.index(),
                    format!("`{}` is not a number", self.field),
                ));
            };
            let avg = match self.averages.get(&key) {
                Some(prev) => self.alpha * x + (1.0 - self.alpha) * prev,
                None => x,
            };
            self.averages.insert(key, avg);
            v[&self.output] = avg.into();
            out.emit_json(&e, &v);
        }
        Ok(())
    }

    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&self.averages).unwrap_or_default()
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        self.averages = serde_json::from_slice(state).map_err(|e| format!("bad state: {e}"))?;
        Ok(())
    }
}

connectd_sdk::export_transform!(Ewma);
