//! `trades`: a simulated trading feed for ten tickers (the Cassandra/MySQL reference).
//!
//! Record: `{"id","created_at","ticker","sector","volume","market_cap","price"}`;
//! `id` is a UUID derived from the seed and sequence number, so replays match.

use connectd_sdk::config::{ConfigMap, Invalid};
use connectd_sdk::time::format_rfc3339_ms;
use connectd_sdk::{BuildContext, Object, Record, Source, Value};

use super::generator::{Generator, GeneratorConfig, GeneratorOptions, RecordMaker, SeqRng};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// (ticker, sector, reference price, shares outstanding in millions)
pub const TICKERS: [(&str, &str, f64, f64); 10] = [
    ("AAPL", "Technology", 190.0, 15_500.0),
    ("MSFT", "Technology", 410.0, 7_430.0),
    ("NVDA", "Technology", 880.0, 2_500.0),
    ("JPM", "Financials", 195.0, 2_870.0),
    ("BAC", "Financials", 37.0, 7_900.0),
    ("XOM", "Energy", 115.0, 3_970.0),
    ("CVX", "Energy", 157.0, 1_850.0),
    ("JNJ", "Healthcare", 152.0, 2_410.0),
    ("PFE", "Healthcare", 28.0, 5_660.0),
    ("AMZN", "Consumer", 180.0, 10_400.0),
];

#[derive(Debug)]
pub struct TradeMaker;

/// A simulated trading feed for ten tickers (`id`, `created_at`, `ticker`, `sector`,
/// `volume`, `market_cap`, `price`).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct TradesOptions {
    #[serde(skip)]
    #[schemars(flatten, !skip)]
    pub generator: GeneratorConfig,
}

pub fn build(cfg: &mut ConfigMap<'_>, _ctx: &BuildContext) -> Result<Box<dyn Source>, Invalid> {
    let generator: Option<GeneratorConfig> = cfg.typed_part();
    cfg.typed::<TradesOptions>().ok_or(Invalid)?;
    let opts = GeneratorOptions::read(cfg, &generator.ok_or(Invalid)?);
    cfg.finish()?;
    Ok(Box::new(Generator::new(opts, TradeMaker)))
}

fn uuid(rng: &mut SeqRng) -> String {
    let (a, b) = (rng.next_u64(), rng.next_u64());
    // Version 4 / variant 1 bits, so it is a well-formed UUID.
    let a = (a & 0xFFFF_FFFF_FFFF_0FFF) | 0x4000;
    let b = (b & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xFFFF,
        a & 0xFFFF,
        b >> 48,
        b & 0xFFFF_FFFF_FFFF
    )
}

impl RecordMaker for TradeMaker {
    fn make(&self, _seq: u64, event_time: i64, rng: &mut SeqRng) -> Record {
        let id = uuid(rng);
        let (ticker, sector, reference, shares_m) = TICKERS[rng.below(10) as usize];
        let price = ((reference * (1.0 + (rng.unit() - 0.5) * 0.04)) * 100.0).round() / 100.0;
        let volume = 1 + rng.below(10_000) as i64;
        let market_cap = (price * shares_m * 1_000_000.0).round();
        let mut o = Object::with_capacity(7);
        o.push_unchecked("id", Value::str(id.as_str()));
        o.push_unchecked("created_at", Value::str(format_rfc3339_ms(event_time)));
        o.push_unchecked("ticker", Value::str(ticker));
        o.push_unchecked("sector", Value::str(sector));
        o.push_unchecked("volume", Value::Int(volume));
        o.push_unchecked("market_cap", Value::Float(market_cap));
        o.push_unchecked("price", Value::Float(price));
        Record::new(Value::Object(o))
            .with_key(Value::str(id))
            .with_timestamp(event_time)
    }
}
