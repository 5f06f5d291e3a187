//! Misbehaves on purpose, per `config.mode`, when a record has `"go": true`.

use connectd_sdk::wasm::{json, set_json, Event, Failure, Transform};

struct Probe {
    mode: String,
}

impl Transform for Probe {
    fn init(config: serde_json::Value) -> Result<Self, String> {
        Ok(Probe {
            mode: config["mode"].as_str().unwrap_or("pass").to_string(),
        })
    }

    fn process(&mut self, batch: Vec<Event>) -> Result<Vec<Event>, Failure> {
        if self.mode == "identity" {
            return Ok(batch);
        }
        let mut out = Vec::new();
        for mut e in batch {
            let mut v = json(&e)?;
            if v["go"] == true {
                match self.mode.as_str() {
                    "spin" => {
                        let mut n: u64 = 0;
                        loop {
                            n = std::hint::black_box(n.wrapping_add(1));
                        }
                    }
                    "hog" => {
                        let mut hoard: Vec<Vec<u8>> = Vec::new();
                        loop {
                            hoard.push(vec![1u8; 1 << 20]);
                            std::hint::black_box(&hoard);
                        }
                    }
                    "trap" => panic!("the probe panics on purpose"),
                    "read-file" => {
                        v["read"] = std::fs::read_to_string("/etc/hostname").is_ok().into();
                    }
                    "env" => {
                        v["env"] = (std::env::vars().count() as u64).into();
                    }
                    _ => {}
                }
            }
            v["seen"] = true.into();
            set_json(&mut e, &v);
            out.push(e);
        }
        Ok(out)
    }
}

connectd_sdk::export_transform!(Probe);
