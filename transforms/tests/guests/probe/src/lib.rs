//! Misbehaves on purpose, per `config.mode`, when a record has `"go": true`; with
//! `config.print: true` it also prints a line to stdout and to stderr on every batch.

use connectd_sdk::wasm::{Batch, Failure, Output, Transform};

struct Probe {
    mode: String,
    print: bool,
    batches: u64,
}

impl Transform for Probe {
    fn init(config: serde_json::Value) -> Result<Self, String> {
        Ok(Probe {
            mode: config["mode"].as_str().unwrap_or("pass").to_string(),
            print: config["print"] == true,
            batches: 0,
        })
    }

    fn process(&mut self, batch: &Batch, out: &mut Output) -> Result<(), Failure> {
        self.batches += 1;
        if self.print {
            println!("probe: batch {} of {} records", self.batches, batch.len());
            eprintln!("probe: stderr on batch {}", self.batches);
        }
        for e in batch.iter() {
            if self.mode == "identity" {
                out.keep(&e);
                continue;
            }
            if self.mode == "twice" {
                out.keep(&e);
                out.keep(&e);
                continue;
            }
            let mut v = e.json()?;
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
                    "clock" => {
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_secs())
                            .unwrap_or(0);
                        v["now"] = now.into();
                    }
                    "random" => {
                        use std::hash::BuildHasher;
                        let seeded = std::collections::hash_map::RandomState::new();
                        v["hash"] = seeded.hash_one(42u64).into();
                    }
                    "alloc" => {
                        let n = v["bytes"].as_u64().unwrap_or(0) as usize;
                        let block = vec![7u8; n];
                        v["allocated"] = (std::hint::black_box(&block).len() as u64).into();
                    }
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
            out.emit_json(&e, &v);
        }
        Ok(())
    }
}

connectd_sdk::export_transform!(Probe);
