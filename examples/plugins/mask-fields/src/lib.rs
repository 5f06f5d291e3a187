//! Redacts the configured top-level fields: `config: {fields: [ssn, card], mask: "***"}`.

use connectd_sdk::wasm::{json, set_json, Event, Failure, Transform};

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

    fn process(&mut self, batch: Vec<Event>) -> Result<Vec<Event>, Failure> {
        batch
            .into_iter()
            .map(|mut e| {
                let mut v = json(&e)?;
                if let Some(o) = v.as_object_mut() {
                    for f in &self.fields {
                        if o.contains_key(f) {
                            o.insert(f.clone(), self.mask.clone());
                        }
                    }
                }
                set_json(&mut e, &v);
                Ok(e)
            })
            .collect()
    }
}

connectd_sdk::export_transform!(MaskFields);
