//! A running count of the records per key, kept in the host's keyed state
//! (`connectd_sdk::wasm::state`) rather than in the plugin: any number of keys, no
//! snapshot code. `config: {key: symbol, output: count}` adds `count` (1, 2, ...) to
//! each record, counting by its `symbol`.
//!
//! `panic_on: <key>` makes it panic on a record of that key, after it has written the
//! counts of the records before it in the batch: a way to watch the host roll those
//! writes back with the trapped call.

use connectd_sdk::wasm::{state, Batch, Failure, Output, Transform};

struct RunningCount {
    key: String,
    output: String,
    panic_on: Option<String>,
}

impl Transform for RunningCount {
    fn init(config: serde_json::Value) -> Result<Self, String> {
        let text = |name: &str, default: Option<&str>| match config.get(name) {
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("config.{name} must be text")),
            None => Ok(default.map(str::to_string)),
        };
        Ok(RunningCount {
            key: text("key", None)?.ok_or("config.key names the field to count by")?,
            output: text("output", Some("count"))?.unwrap_or_default(),
            panic_on: text("panic_on", None)?,
        })
    }

    fn process(&mut self, batch: &Batch, out: &mut Output) -> Result<(), Failure> {
        for e in batch.iter() {
            let mut v = e.json()?;
            let key = match &v[&self.key] {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => {
                    return Err(connectd_sdk::wasm::bad_record(
                        e.index(),
                        format!("no `{}` to count by", self.key),
                    ))
                }
                other => other.to_string(),
            };
            if self.panic_on.as_deref() == Some(key.as_str()) {
                panic!("running-count: panic_on is set for key {key}");
            }
            let count = match state::get(key.as_bytes())? {
                Some(bytes) => u64::from_le_bytes(bytes.try_into().map_err(|b: Vec<u8>| {
                    Failure::Plugin(format!("the count of {key} is {} bytes, not 8", b.len()))
                })?),
                None => 0,
            } + 1;
            state::put(key.as_bytes(), &count.to_le_bytes());
            v[&self.output] = count.into();
            out.emit_json(&e, &v);
        }
        Ok(())
    }
}

connectd_sdk::export_transform!(RunningCount);

/// Natively, in plain `cargo test` (`connectd_sdk::wasm::testing`).
#[cfg(test)]
mod tests {
    use super::*;
    use connectd_sdk::wasm::testing::clear_state;
    use serde_json::json;

    #[test]
    fn counts_per_key_across_batches() {
        clear_state();
        let mut plugin = RunningCount::init(json!({"key": "symbol"})).unwrap();
        let mut out = Output::default();
        let first = Batch::from_json(&[json!({"symbol": "A"}), json!({"symbol": "B"})]);
        plugin.process(&first, &mut out).unwrap();
        let counts: Vec<u64> = out
            .events(&first)
            .iter()
            .map(|e| e.json()["count"].as_u64().unwrap())
            .collect();
        assert_eq!(counts, [1, 1]);
        let second = Batch::from_json(&[json!({"symbol": "A"})]);
        let mut out = Output::default();
        plugin.process(&second, &mut out).unwrap();
        assert_eq!(out.events(&second)[0].json()["count"], 2);
    }

    #[test]
    fn a_record_without_the_key_is_a_bad_record() {
        clear_state();
        let mut plugin = RunningCount::init(json!({"key": "symbol"})).unwrap();
        let batch = Batch::from_json(&[json!({"symbol": "A"}), json!({"other": 1})]);
        match plugin.process(&batch, &mut Output::default()) {
            Err(Failure::BadRecord(b)) => assert_eq!(b.index, 1),
            other => panic!("{other:?}"),
        }
    }
}
