//! Redacts the configured top-level fields: `config: {fields: [ssn, card], mask: "***"}`.

use connectd_sdk::wasm::{Batch, Failure, Output, Transform};

struct MaskFields {
    fields: Vec<String>,
    mask: serde_json::Value,
}

impl Transform for MaskFields {
    fn init(config: serde_json::Value) -> Result<Self, String> {
        let fields = config["fields"]
            .as_array()
            .ok_or("config.fields must be a list of field names")?
            .iter()
            .map(|f| {
                f.as_str()
                    .map(str::to_string)
                    .ok_or("config.fields must hold strings")
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mask = config.get("mask").cloned().unwrap_or_else(|| "***".into());
        Ok(MaskFields { fields, mask })
    }

    fn process(&mut self, batch: &Batch, out: &mut Output) -> Result<(), Failure> {
        for e in batch.iter() {
            let mut v = e.json()?;
            let mut masked = false;
            if let Some(o) = v.as_object_mut() {
                for f in &self.fields {
                    if let Some(slot) = o.get_mut(f) {
                        *slot = self.mask.clone();
                        masked = true;
                    }
                }
            }
            if masked {
                out.emit_json(&e, &v);
            } else {
                out.keep(&e);
            }
        }
        Ok(())
    }
}

connectd_sdk::export_transform!(MaskFields);
