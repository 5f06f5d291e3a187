//! Converts price fields with a configured rate:
//! `config: {fields: [price, bid], rate: 15800.0, round: 2}` (e.g. USD → IDR).

use connectd_sdk::wasm::{bad_record, Batch, Failure, Output, Transform};

struct Currency {
    fields: Vec<String>,
    rate: f64,
    round: Option<i32>,
}

impl Transform for Currency {
    fn init(config: serde_json::Value) -> Result<Self, String> {
        let rate = config["rate"]
            .as_f64()
            .ok_or("config.rate must be a number")?;
        let fields = config["fields"]
            .as_array()
            .ok_or("config.fields must be a list of field names")?
            .iter()
            .filter_map(|f| f.as_str().map(str::to_string))
            .collect();
        let round = config["round"].as_i64().map(|r| r as i32);
        Ok(Currency {
            fields,
            rate,
            round,
        })
    }

    fn process(&mut self, batch: &Batch, out: &mut Output) -> Result<(), Failure> {
        for e in batch.iter() {
            let mut v = e.json()?;
            let mut changed = false;
            for f in &self.fields {
                match v.get(f) {
                    None | Some(serde_json::Value::Null) => {}
                    Some(x) => {
                        let Some(n) = x.as_f64() else {
                            return Err(bad_record(e.index(), format!("`{f}` is not a number: {x}")));
                        };
                        let mut converted = n * self.rate;
                        if let Some(r) = self.round {
                            let factor = 10f64.powi(r);
                            converted = (converted * factor).round() / factor;
                        }
                        v[f] = converted.into();
                        changed = true;
                    }
                }
            }
            if changed {
                out.emit_json(&e, &v);
            } else {
                out.keep(&e);
            }
        }
        Ok(())
    }
}

connectd_sdk::export_transform!(Currency);
