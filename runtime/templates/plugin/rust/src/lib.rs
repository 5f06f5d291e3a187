//! {{name}}: a connectd transform plugin. Upper-cases the text field named in its
//! config (`config: {field: name}`); other records pass unchanged.

use connectd_sdk::wasm::{Batch, Failure, Output, Transform};

struct Plugin {
    field: String,
}

impl Transform for Plugin {
    fn init(config: serde_json::Value) -> Result<Self, String> {
        let field = match config.get("field") {
            None => "name".to_string(),
            Some(f) => f.as_str().ok_or("config.field must be text")?.to_string(),
        };
        Ok(Plugin { field })
    }

    fn process(&mut self, batch: &Batch, out: &mut Output) -> Result<(), Failure> {
        for e in batch.iter() {
            // Not JSON: this record goes to the dead-letter queue, the rest go on.
            let mut v = e.json()?;
            match v.get(&self.field).and_then(|f| f.as_str()) {
                Some(s) => {
                    v[&self.field] = s.to_uppercase().into();
                    // Same key, timestamp and headers; the new value.
                    out.emit_json(&e, &v);
                }
                // Unchanged: costs nothing to pass back.
                None => out.keep(&e),
            }
        }
        Ok(())
    }
}

connectd_sdk::export_transform!(Plugin);

/// Natively, in plain `cargo test`: batches in, records out (`connectd_sdk::wasm::testing`).
#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn upper_cases_the_field_and_keeps_the_rest() {
        let mut plugin = Plugin::init(json!({"field": "name"})).unwrap();
        let batch = Batch::from_json(&[json!({"name": "ada"}), json!({"n": 2})]);
        let mut out = Output::default();
        plugin.process(&batch, &mut out).unwrap();
        let values: Vec<_> = out.events(&batch).iter().map(|e| e.json()).collect();
        assert_eq!(values, [json!({"name": "ADA"}), json!({"n": 2})]);
    }
}
