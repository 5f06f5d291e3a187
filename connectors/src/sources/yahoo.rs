//! `yahoo`: polls the Yahoo Finance chart API for each symbol and emits each new candle
//! (`mode: candles`) or each new `regularMarketPrice` tick (`mode: price`).
//!
//! Offset: the last emitted candle/tick time per symbol, so neither a later poll nor a
//! restart emits anything twice. A symbol Yahoo does not know (404, `chart.error`) is
//! dropped from polling with an error naming it; when none is left the source fails.
//! 429 honours `Retry-After`; 5xx and network errors back off exponentially; a body
//! that is not a chart goes to the dead-letter queue with an excerpt.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use connectd_sdk::config::{ConfigMap, HumanDuration, Invalid};
use connectd_sdk::time::format_rfc3339_ms;
use connectd_sdk::{
    BadRecord, BuildContext, ConnectorError, Object, Record, Source, SourcePoll, Value,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use connectd_sdk::stats::{ErrorKind, SourceStats};

use super::http::{self, Backoff, Fetched};

pub const BROWSER_USER_AGENT: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Candles,
    Price,
}

pub struct YahooSource {
    client: reqwest::Client,
    base_url: String,
    symbols: Vec<String>,
    /// Symbols Yahoo rejected, with the reason.
    disabled: BTreeMap<String, String>,
    interval: Duration,
    range: String,
    chart_interval: String,
    mode: Mode,
    /// Last emitted event time (epoch seconds) per symbol: the offset.
    last: BTreeMap<String, i64>,
    pending: VecDeque<(String, i64, Record)>,
    next_poll: Option<Instant>,
    backoff: Backoff,
    stats: Arc<SourceStats>,
}

impl std::fmt::Debug for YahooSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YahooSource")
            .field("base_url", &self.base_url)
            .field("symbols", &self.symbols)
            .finish()
    }
}

/// Polls Yahoo Finance's chart API: a row per new candle (or the latest price) of each
/// symbol.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct YahooOptions {
    /// The API's base URL.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The symbols, e.g. `[BTC-USD, AAPL]`.
    #[schemars(schema_with = "connectd_sdk::config::scalar_text_list")]
    pub symbols: Vec<String>,
    /// How often to poll.
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// The chart's range (Yahoo's `range`: `1d`, `5d`, ...).
    #[serde(default = "default_range")]
    pub range: String,
    /// The candle size (Yahoo's `interval`: `1m`, `5m`, ...).
    #[serde(default = "default_chart_interval")]
    pub chart_interval: String,
    /// `candles`: a row per new candle; `price`: the latest price at each poll.
    #[serde(default)]
    pub mode: ModeWord,
    /// The User-Agent header (Yahoo refuses some clients' defaults).
    #[serde(default)]
    pub user_agent: Option<String>,
    /// How long one request may take.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModeWord {
    #[default]
    Candles,
    Price,
}

fn default_base_url() -> String {
    "https://query2.finance.yahoo.com".into()
}

fn default_interval() -> HumanDuration {
    HumanDuration::secs(30)
}

fn default_range() -> String {
    "1d".into()
}

fn default_chart_interval() -> String {
    "1m".into()
}

fn default_timeout() -> HumanDuration {
    HumanDuration::secs(10)
}

pub fn build(cfg: &mut ConfigMap<'_>, _ctx: &BuildContext) -> Result<Box<dyn Source>, Invalid> {
    let o: YahooOptions = cfg.typed().ok_or(Invalid)?;
    let base_url = o.base_url;
    if !base_url.starts_with("http://") && !base_url.starts_with("https://") {
        cfg.error("base_url", "expected an http:// or https:// URL");
    }
    let symbols = o.symbols;
    if symbols.is_empty() && cfg.has("symbols") {
        cfg.error("symbols", "expected at least one symbol, e.g. [BTC-USD]");
    }
    let interval = o.interval.0;
    let (range, chart_interval) = (o.range, o.chart_interval);
    let mode = match o.mode {
        ModeWord::Price => Mode::Price,
        ModeWord::Candles => Mode::Candles,
    };
    let user_agent = o.user_agent.unwrap_or_else(|| BROWSER_USER_AGENT.into());
    let timeout = o.timeout.0;
    cfg.finish()?;
    let client = http::client(&user_agent, timeout).map_err(|e| {
        cfg.error("user_agent", e);
        Invalid
    })?;
    Ok(Box::new(YahooSource {
        client,
        base_url: base_url.trim_end_matches('/').to_string(),
        symbols,
        disabled: BTreeMap::new(),
        interval,
        range,
        chart_interval,
        mode,
        last: BTreeMap::new(),
        pending: VecDeque::new(),
        next_poll: None,
        backoff: Backoff::default(),
        stats: Arc::default(),
    }))
}

#[derive(Deserialize)]
struct ChartResponse {
    chart: Chart,
}

#[derive(Deserialize)]
struct Chart {
    result: Option<Vec<ChartResult>>,
    error: Option<ChartError>,
}

#[derive(Deserialize)]
struct ChartError {
    code: Option<String>,
    description: Option<String>,
}

impl ChartError {
    fn describe(&self) -> String {
        format!(
            "{}: {}",
            self.code.as_deref().unwrap_or("error"),
            self.description.as_deref().unwrap_or("no description")
        )
    }
}

#[derive(Deserialize)]
struct ChartResult {
    meta: Meta,
    timestamp: Option<Vec<i64>>,
    indicators: Option<Indicators>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    currency: Option<String>,
    regular_market_price: Option<f64>,
    regular_market_time: Option<i64>,
}

#[derive(Deserialize)]
struct Indicators {
    quote: Vec<Quote>,
}

#[derive(Deserialize, Default)]
struct Quote {
    open: Option<Vec<Option<f64>>>,
    high: Option<Vec<Option<f64>>>,
    low: Option<Vec<Option<f64>>>,
    close: Option<Vec<Option<f64>>>,
    volume: Option<Vec<Option<f64>>>,
}

fn at(v: &Option<Vec<Option<f64>>>, i: usize) -> Option<f64> {
    v.as_ref().and_then(|v| v.get(i).copied().flatten())
}

/// 9999-12-31T23:59:59Z.
const MAX_SECONDS: i64 = 253_402_300_799;

/// What one symbol's answer means for the poller.
enum Answer {
    /// (event time in seconds, record), oldest first.
    Records(Vec<(i64, Record)>),
    /// The symbol is unknown or rejected: stop polling it.
    Rejected(String),
    /// Not a chart at all: to the dead-letter queue.
    Garbage(String),
}

impl YahooSource {
    fn url(&self, symbol: &str) -> String {
        format!(
            "{}/v8/finance/chart/{symbol}?interval={}&range={}",
            self.base_url, self.chart_interval, self.range
        )
    }

    fn interpret(&self, symbol: &str, body: &[u8]) -> Answer {
        let parsed: ChartResponse = match serde_json::from_slice(body) {
            Ok(p) => p,
            Err(e) => return Answer::Garbage(format!("not a chart response: {e}")),
        };
        if let Some(err) = parsed.chart.error {
            return Answer::Rejected(err.describe());
        }
        let Some(result) = parsed.chart.result.and_then(|r| r.into_iter().next()) else {
            return Answer::Garbage("chart.result is empty".into());
        };
        // Seconds since the epoch, made milliseconds below: a number past year 9999 (or
        // before 1970) is not a time, and multiplied it would overflow.
        let stamps = result.timestamp.iter().flatten();
        if let Some(t) = stamps
            .chain(result.meta.regular_market_time.iter())
            .find(|t| !(0..=MAX_SECONDS).contains(*t))
        {
            return Answer::Garbage(format!("timestamp {t} is not a time in seconds"));
        }
        let after = self.last.get(symbol).copied().unwrap_or(i64::MIN);
        let mut out = Vec::new();
        match self.mode {
            Mode::Price => {
                if let (Some(price), Some(t)) = (
                    result.meta.regular_market_price,
                    result.meta.regular_market_time,
                ) {
                    if t > after {
                        let mut o = Object::with_capacity(4);
                        o.push_unchecked("symbol", Value::str(symbol));
                        o.push_unchecked("time", Value::str(format_rfc3339_ms(t * 1000)));
                        o.push_unchecked("price", Value::Float(price));
                        o.push_unchecked(
                            "currency",
                            result.meta.currency.map_or(Value::Null, Value::from),
                        );
                        out.push((
                            t,
                            Record::new(Value::Object(o))
                                .with_key(Value::str(symbol))
                                .with_timestamp(t * 1000),
                        ));
                    }
                }
            }
            Mode::Candles => {
                let stamps = result.timestamp.unwrap_or_default();
                let q = result
                    .indicators
                    .and_then(|i| i.quote.into_iter().next())
                    .unwrap_or_default();
                for (i, &t) in stamps.iter().enumerate() {
                    if t <= after {
                        continue;
                    }
                    // A candle with a null price is an empty minute: skipped.
                    let (Some(open), Some(high), Some(low), Some(close)) = (
                        at(&q.open, i),
                        at(&q.high, i),
                        at(&q.low, i),
                        at(&q.close, i),
                    ) else {
                        continue;
                    };
                    let mut o = Object::with_capacity(7);
                    o.push_unchecked("symbol", Value::str(symbol));
                    o.push_unchecked("time", Value::str(format_rfc3339_ms(t * 1000)));
                    o.push_unchecked("open", Value::Float(open));
                    o.push_unchecked("high", Value::Float(high));
                    o.push_unchecked("low", Value::Float(low));
                    o.push_unchecked("close", Value::Float(close));
                    o.push_unchecked("volume", at(&q.volume, i).map_or(Value::Null, Value::Float));
                    out.push((
                        t,
                        Record::new(Value::Object(o))
                            .with_key(Value::str(symbol))
                            .with_timestamp(t * 1000),
                    ));
                }
                out.sort_by_key(|(t, _)| *t);
            }
        }
        Answer::Records(out)
    }

    fn take(&mut self, max: usize) -> Vec<Record> {
        let n = max.min(self.pending.len());
        let mut out = Vec::with_capacity(n);
        for (symbol, t, record) in self.pending.drain(..n) {
            self.stats.event_time(t * 1000);
            self.last.insert(symbol, t);
            out.push(record);
        }
        out
    }

    /// Polls every active symbol once. Returns how long to wait before the next round.
    async fn poll_all(&mut self, bad: &mut Vec<BadRecord>) -> Result<Duration, ConnectorError> {
        let active: Vec<String> = self
            .symbols
            .iter()
            .filter(|s| !self.disabled.contains_key(*s))
            .cloned()
            .collect();
        for symbol in active {
            let url = self.url(&symbol);
            let fetched = http::get(&self.client, &url, &[]).await;
            http::record(&self.stats, &fetched);
            match fetched {
                Fetched::Body(body) => match self.interpret(&symbol, &body) {
                    Answer::Records(records) => {
                        self.pending
                            .extend(records.into_iter().map(|(t, r)| (symbol.clone(), t, r)));
                    }
                    Answer::Rejected(why) => self.disable(&symbol, why),
                    Answer::Garbage(why) => {
                        self.stats.error(ErrorKind::Garbage);
                        bad.push(BadRecord::raw(
                            http::excerpt(&body),
                            url.clone(),
                            format!("yahoo `{symbol}`: {why}"),
                        ));
                    }
                },
                Fetched::Permanent { status, body } => {
                    // Yahoo answers unknown symbols with 404 and a chart.error body.
                    let why = match self.interpret(&symbol, body.as_bytes()) {
                        Answer::Rejected(why) => format!("HTTP {status}, {why}"),
                        _ => format!("HTTP {status}: {body}"),
                    };
                    self.disable(&symbol, why);
                }
                Fetched::RateLimited(wait) => {
                    let wait = wait.unwrap_or_else(|| self.backoff.next_delay());
                    tracing::warn!(symbol = %symbol, wait_ms = wait.as_millis() as u64, "yahoo: rate limited (HTTP 429); waiting");
                    return Ok(wait);
                }
                Fetched::Transient(why) => {
                    let wait = self.backoff.next_delay();
                    tracing::warn!(symbol = %symbol, error = %why, retry_in_ms = wait.as_millis() as u64, "yahoo: request failed; backing off");
                    return Ok(wait);
                }
            }
        }
        if self.disabled.len() == self.symbols.len() {
            let reasons: Vec<String> = self
                .disabled
                .iter()
                .map(|(s, why)| format!("`{s}`: {why}"))
                .collect();
            return Err(ConnectorError::permanent(format!(
                "yahoo: no symbol left to poll ({})",
                reasons.join("; ")
            )));
        }
        self.backoff.reset();
        Ok(self.interval)
    }

    fn disable(&mut self, symbol: &str, why: String) {
        tracing::error!(symbol = %symbol, reason = %why, "yahoo: symbol rejected; no longer polled");
        self.disabled.insert(symbol.to_string(), why);
    }
}

#[async_trait]
impl Source for YahooSource {
    async fn open(&mut self, offset: Option<serde_json::Value>) -> Result<(), ConnectorError> {
        if let Some(v) = offset {
            self.last = connectd_sdk::error::parse_offset(v["last"].clone(), "yahoo")?;
        }
        Ok(())
    }

    async fn poll(
        &mut self,
        max: usize,
        bad: &mut Vec<BadRecord>,
    ) -> Result<SourcePoll, ConnectorError> {
        if !self.pending.is_empty() {
            return Ok(SourcePoll::Batch(self.take(max)));
        }
        let now = Instant::now();
        if let Some(at) = self.next_poll.filter(|at| *at > now) {
            return Ok(SourcePoll::Idle(at - now));
        }
        let wait = self.poll_all(bad).await?;
        self.next_poll = Some(Instant::now() + wait);
        if self.pending.is_empty() {
            return Ok(if bad.is_empty() {
                SourcePoll::Idle(wait)
            } else {
                SourcePoll::Batch(Vec::new())
            });
        }
        Ok(SourcePoll::Batch(self.take(max)))
    }

    fn stats(&self) -> Option<Arc<SourceStats>> {
        Some(self.stats.clone())
    }

    fn offset(&self) -> serde_json::Value {
        serde_json::json!({ "last": self.last })
    }

    /// A position is the newest event time seen per symbol (epoch ms): what a
    /// reconnect or restart skips up to.
    async fn alter(&mut self, offset: &serde_json::Value) -> Result<(), ConnectorError> {
        connectd_sdk::traits::offset_as::<LastSeen>(offset).map(|_| ())
    }
}

/// This source's position, as `alter` reads it.
#[derive(serde::Deserialize, serde::Serialize)]
struct LastSeen {
    last: BTreeMap<String, i64>,
}
