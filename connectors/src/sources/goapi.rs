//! `goapi`: polls GoAPI's Indonesian stock exchange (IDX) REST API.
//!
//! - `endpoint: trending` — the trending list, one record per ticker, every `interval`.
//! - `endpoint: companies` — ticker, name and logo of every listed company.
//! - `endpoint: historical` — daily rows per ticker (`tickers: [BBCA, ...]`, or
//!   `tickers: trending` to follow the trending list); record id `{ticker}_{date}`.
//!   Offset: the last date emitted per ticker, so a restart asks only for what is new.
//!
//! The key goes in the `X-API-KEY` header. 401/403 stop the source with an error that
//! names where the key came from; 429 honours `Retry-After`; 5xx and network errors back
//! off; a body that is not the documented shape goes to the dead-letter queue with an
//! excerpt and polling goes on. Free keys have a monthly quota, hence
//! `max_requests_per_minute` and `monthly_budget`.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{Datelike, Days, NaiveDate, Utc};
use connectd_sdk::config::{ConfigMap, HumanDuration, Invalid};
use connectd_sdk::{
    BadRecord, BuildContext, ConnectorError, Object, Record, Source, SourcePoll, Value,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use connectd_sdk::stats::{ErrorKind, SourceStats};

use super::http::{self, Backoff, Fetched};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Trending,
    Companies,
    Historical,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tickers {
    Listed(Vec<String>),
    FollowTrending,
}

/// Fields GoAPI may send as strings that are numbers.
const NUMERIC: [&str; 9] = [
    "open", "high", "low", "close", "volume", "change", "percent", "price", "value",
];

#[derive(Debug, Default, Serialize, Deserialize)]
struct GoapiOffset {
    /// Last date emitted per ticker (historical).
    #[serde(default)]
    last_date: BTreeMap<String, NaiveDate>,
    /// Requests made per month ("2026-11"), for the monthly budget.
    #[serde(default)]
    requests: BTreeMap<String, u64>,
}

pub struct GoapiSource {
    client: reqwest::Client,
    base_url: String,
    api_key: String,
    /// How the key was written (e.g. `${env:GOAPI_API_KEY}`), for error messages.
    key_source: String,
    endpoint: Endpoint,
    tickers: Tickers,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    days: u64,
    interval: Duration,
    min_gap: Duration,
    monthly_budget: Option<u64>,
    state: GoapiOffset,
    /// Requests still to make in this round.
    work: VecDeque<Request>,
    /// Records fetched, with the (ticker, date) they advance.
    pending: VecDeque<(Option<(String, NaiveDate)>, Record)>,
    next_request: Option<Instant>,
    next_round: Option<Instant>,
    backoff: Backoff,
    stats: Arc<SourceStats>,
    budget_warned: bool,
}

impl std::fmt::Debug for GoapiSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoapiSource")
            .field("base_url", &self.base_url)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Request {
    Trending,
    Companies,
    Historical(String),
}

fn parse_date(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|e| format!("`{s}` is not a YYYY-MM-DD date: {e}"))
}

/// Polls GoAPI's IDX stock API: trending stocks, companies, or daily prices of tickers,
/// within a request budget.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct GoapiOptions {
    /// The API's base URL.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The API key (use `${env:...}`).
    pub api_key: String,
    /// `trending`, `companies` or `historical` (daily prices of `tickers`).
    pub endpoint: EndpointWord,
    /// Tickers for `historical`, e.g. `[BBCA, TLKM]`, or `trending` to follow the
    /// trending list.
    #[serde(default)]
    #[schemars(schema_with = "connectd_sdk::config::scalar_text_list")]
    pub tickers: Option<Vec<String>>,
    /// First day for `historical` (`YYYY-MM-DD`; default: `days` ago).
    #[serde(default)]
    pub from: Option<String>,
    /// Last day for `historical` (`YYYY-MM-DD`; default: today).
    #[serde(default)]
    pub to: Option<String>,
    /// Days back for `historical` when `from` is not given.
    #[serde(default = "default_days")]
    pub days: u64,
    /// How often a round of requests starts.
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// Requests per minute at most.
    #[serde(default = "default_rpm")]
    pub max_requests_per_minute: u64,
    /// Requests per calendar month at most (warned about, then waited for).
    #[serde(default)]
    pub monthly_budget: Option<u64>,
    /// How long one request may take.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndpointWord {
    Trending,
    Companies,
    Historical,
}

fn default_base_url() -> String {
    "https://api.goapi.id/v1/stock/idx".into()
}

fn default_days() -> u64 {
    30
}

fn default_interval() -> HumanDuration {
    HumanDuration::secs(3600)
}

fn default_rpm() -> u64 {
    30
}

fn default_timeout() -> HumanDuration {
    HumanDuration::secs(15)
}

pub fn build(cfg: &mut ConfigMap<'_>, _ctx: &BuildContext) -> Result<Box<dyn Source>, Invalid> {
    let o: GoapiOptions = cfg.typed().ok_or(Invalid)?;
    let base_url = o.base_url;
    if !base_url.starts_with("http://") && !base_url.starts_with("https://") {
        cfg.error("base_url", "expected an http:// or https:// URL");
    }
    let api_key = o.api_key;
    let key_source = cfg
        .written_as("api_key")
        .unwrap_or_else(|| format!("`{}`", cfg.field_path("api_key")));
    let endpoint = match o.endpoint {
        EndpointWord::Trending => Endpoint::Trending,
        EndpointWord::Companies => Endpoint::Companies,
        EndpointWord::Historical => Endpoint::Historical,
    };
    let tickers = match o.tickers {
        Some(list) if list == ["trending"] => Tickers::FollowTrending,
        Some(list) => Tickers::Listed(list.into_iter().map(|t| t.to_ascii_uppercase()).collect()),
        None => Tickers::Listed(Vec::new()),
    };
    if endpoint == Endpoint::Historical && tickers == Tickers::Listed(Vec::new()) {
        cfg.error(
            "tickers",
            "historical needs `tickers`: a list such as [BBCA, TLKM] or `trending`",
        );
    }
    let date = |key, text: Option<String>| {
        text.and_then(|s| parse_date(&s).map_err(|e| cfg.error(key, e)).ok())
    };
    let from = date("from", o.from);
    let to = date("to", o.to);
    let days = o.days;
    let interval = o.interval.0;
    let rpm = o.max_requests_per_minute;
    if rpm == 0 {
        cfg.error("max_requests_per_minute", "must be at least 1");
    }
    let monthly_budget = o.monthly_budget;
    let timeout = o.timeout.0;
    cfg.finish()?;
    let client = http::client("connectd", timeout).map_err(|e| {
        cfg.error("timeout", e);
        Invalid
    })?;
    Ok(Box::new(GoapiSource {
        client,
        base_url: base_url.trim_end_matches('/').to_string(),
        api_key,
        key_source,
        endpoint,
        tickers,
        from,
        to,
        days,
        interval,
        min_gap: Duration::from_secs(60) / rpm.max(1) as u32,
        monthly_budget,
        state: GoapiOffset::default(),
        work: VecDeque::new(),
        pending: VecDeque::new(),
        next_request: None,
        next_round: None,
        backoff: Backoff::default(),
        stats: Arc::default(),
        budget_warned: false,
    }))
}

#[derive(Deserialize)]
struct Envelope {
    status: Option<String>,
    message: Option<String>,
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    results: Vec<serde_json::Value>,
}

/// GoAPI sends some numbers as strings: read them as numbers.
fn normalize(row: &serde_json::Value) -> Option<Object> {
    let serde_json::Value::Object(map) = row else {
        return None;
    };
    let mut o = Object::with_capacity(map.len() + 1);
    for (k, v) in map {
        let value = match v {
            serde_json::Value::String(s) if NUMERIC.contains(&k.as_str()) => {
                let t = s.trim().replace(',', "");
                match t.parse::<i64>() {
                    Ok(i) => Value::Int(i),
                    Err(_) => t
                        .parse::<f64>()
                        .map(Value::Float)
                        .unwrap_or_else(|_| Value::str(s.as_str())),
                }
            }
            other => Value::from_json(other),
        };
        o.push_unchecked(k.as_str(), value);
    }
    Some(o)
}

enum Outcome {
    Rows(Vec<serde_json::Value>),
    Garbage(String),
}

fn read_results(body: &[u8]) -> Outcome {
    match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope {
            status,
            message,
            data,
        }) => {
            if status.as_deref().is_some_and(|s| s != "success") {
                return Outcome::Garbage(format!(
                    "GoAPI answered status `{}`: {}",
                    status.unwrap_or_default(),
                    message.unwrap_or_default()
                ));
            }
            match data {
                Some(d) => Outcome::Rows(d.results),
                None => Outcome::Garbage("no `data.results` in the answer".into()),
            }
        }
        Err(e) => Outcome::Garbage(format!("not a GoAPI answer: {e}")),
    }
}

impl GoapiSource {
    fn month() -> String {
        let now = Utc::now();
        format!("{}-{:02}", now.year(), now.month())
    }

    fn start_round(&mut self) {
        self.work = match (self.endpoint, &self.tickers) {
            (Endpoint::Trending, _) => VecDeque::from([Request::Trending]),
            (Endpoint::Companies, _) => VecDeque::from([Request::Companies]),
            (Endpoint::Historical, Tickers::FollowTrending) => VecDeque::from([Request::Trending]),
            (Endpoint::Historical, Tickers::Listed(list)) => {
                list.iter().cloned().map(Request::Historical).collect()
            }
        };
    }

    fn url(&self, req: &Request) -> Option<String> {
        Some(match req {
            Request::Trending => format!("{}/trending", self.base_url),
            Request::Companies => format!("{}/companies", self.base_url),
            Request::Historical(t) => {
                let today = Utc::now().date_naive();
                let to = self.to.unwrap_or(today);
                let default_from = self
                    .from
                    .unwrap_or_else(|| to.checked_sub_days(Days::new(self.days)).unwrap_or(to));
                let from = match self.state.last_date.get(t) {
                    Some(last) => last.checked_add_days(Days::new(1))?.max(default_from),
                    None => default_from,
                };
                if from > to {
                    return None; // nothing new can exist yet
                }
                format!("{}/{t}/historical?from={from}&to={to}", self.base_url)
            }
        })
    }

    /// Turns one answer's rows into records (or follow-up requests).
    fn accept(
        &mut self,
        req: &Request,
        rows: Vec<serde_json::Value>,
        url: &str,
        bad: &mut Vec<BadRecord>,
    ) {
        let follow_trending = self.endpoint == Endpoint::Historical && *req == Request::Trending;
        let mut fresh = Vec::new();
        for row in &rows {
            let Some(mut o) = normalize(row) else {
                bad.push(BadRecord::raw(
                    row.to_string(),
                    url,
                    "GoAPI result is not an object",
                ));
                continue;
            };
            let Some(ticker) = o.get("ticker").and_then(|t| t.as_str()).map(str::to_string) else {
                bad.push(BadRecord::raw(
                    row.to_string(),
                    url,
                    "GoAPI result has no `ticker`",
                ));
                continue;
            };
            if follow_trending {
                self.work
                    .push_back(Request::Historical(ticker.to_ascii_uppercase()));
                continue;
            }
            match req {
                Request::Historical(t) => {
                    let date = o.get("date").and_then(|d| d.as_str()).map(parse_date);
                    let Some(Ok(date)) = date else {
                        bad.push(BadRecord::raw(
                            row.to_string(),
                            url,
                            "GoAPI history row has no valid `date` (YYYY-MM-DD)",
                        ));
                        continue;
                    };
                    if self
                        .state
                        .last_date
                        .get(t)
                        .is_some_and(|last| date <= *last)
                    {
                        continue;
                    }
                    let id = format!("{ticker}_{date}");
                    o.insert("id", Value::str(id.as_str()));
                    let ms = date
                        .and_hms_opt(0, 0, 0)
                        .map_or(0, |d| d.and_utc().timestamp_millis());
                    fresh.push((
                        date,
                        Some((t.clone(), date)),
                        Record::new(Value::Object(o))
                            .with_key(Value::str(id))
                            .with_timestamp(ms),
                    ));
                }
                _ => {
                    let now = connectd_sdk::time::now_ms();
                    let r = Record::new(Value::Object(o))
                        .with_key(Value::str(ticker))
                        .with_timestamp(now);
                    fresh.push((NaiveDate::MIN, None, r));
                }
            }
        }
        // History rows oldest first, so the per-ticker offset only moves forward.
        fresh.sort_by_key(|(d, _, _)| *d);
        self.pending
            .extend(fresh.into_iter().map(|(_, advance, r)| (advance, r)));
    }

    fn take(&mut self, max: usize) -> Vec<Record> {
        let n = max.min(self.pending.len());
        let mut out = Vec::with_capacity(n);
        for (advance, r) in self.pending.drain(..n) {
            if let Some(ts) = r.timestamp {
                self.stats.event_time(ts);
            }
            if let Some((ticker, date)) = advance {
                self.state.last_date.insert(ticker, date);
            }
            out.push(r);
        }
        out
    }

    /// Makes the next request of the round. Returns how long to wait before another.
    async fn request_next(&mut self, bad: &mut Vec<BadRecord>) -> Result<Duration, ConnectorError> {
        let Some(req) = self.work.front().cloned() else {
            return Ok(Duration::ZERO);
        };
        let Some(url) = self.url(&req) else {
            self.work.pop_front();
            return Ok(Duration::ZERO);
        };
        let month = Self::month();
        let used = self.state.requests.get(&month).copied().unwrap_or(0);
        if let Some(budget) = self.monthly_budget.filter(|b| used >= *b) {
            if !self.budget_warned {
                tracing::error!(budget, month = %month, "goapi: the monthly request budget is used up; waiting for next month");
                self.budget_warned = true;
            }
            return Ok(Duration::from_secs(3600));
        }
        self.budget_warned = false;
        *self.state.requests.entry(month).or_default() += 1;
        let fetched = http::get(
            &self.client,
            &url,
            &[("X-API-KEY", &self.api_key), ("Accept", "application/json")],
        )
        .await;
        http::record(&self.stats, &fetched);
        match fetched {
            Fetched::Body(body) => {
                self.work.pop_front();
                self.backoff.reset();
                match read_results(&body) {
                    Outcome::Rows(rows) => self.accept(&req, rows, &url, bad),
                    Outcome::Garbage(why) => {
                        self.stats.error(ErrorKind::Garbage);
                        bad.push(BadRecord::raw(http::excerpt(&body), url.clone(), format!("goapi: {why}")))
                    }
                }
                Ok(self.min_gap)
            }
            Fetched::Permanent { status: status @ (401 | 403), .. } => Err(ConnectorError::permanent(format!(
                "goapi: the API key was rejected (HTTP {status}); check the key given by {} (`X-API-KEY`)",
                self.key_source
            ))),
            Fetched::Permanent { status, body } => {
                self.work.pop_front();
                tracing::error!(url = %url, status, body = %body, "goapi: request rejected; skipped this round");
                Ok(self.min_gap)
            }
            Fetched::RateLimited(wait) => {
                let wait = wait.unwrap_or_else(|| self.backoff.next_delay());
                tracing::warn!(wait_ms = wait.as_millis() as u64, "goapi: rate limited (HTTP 429); waiting");
                Ok(wait)
            }
            Fetched::Transient(why) => {
                let wait = self.backoff.next_delay();
                tracing::warn!(error = %why, retry_in_ms = wait.as_millis() as u64, "goapi: request failed; backing off");
                Ok(wait)
            }
        }
    }
}

#[async_trait]
impl Source for GoapiSource {
    async fn open(&mut self, offset: Option<serde_json::Value>) -> Result<(), ConnectorError> {
        if let Some(v) = offset {
            self.state = connectd_sdk::error::parse_offset(v, "goapi")?;
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
        if self.work.is_empty() {
            if let Some(at) = self.next_round.filter(|at| *at > now) {
                return Ok(SourcePoll::Idle(at - now));
            }
            self.start_round();
            self.next_round = Some(now + self.interval);
        }
        if let Some(at) = self.next_request.filter(|at| *at > now) {
            return Ok(SourcePoll::Idle(at - now));
        }
        let wait = self.request_next(bad).await?;
        self.next_request = Some(Instant::now() + wait);
        if !self.pending.is_empty() {
            return Ok(SourcePoll::Batch(self.take(max)));
        }
        Ok(if bad.is_empty() {
            SourcePoll::Idle(wait.max(Duration::from_millis(1)))
        } else {
            SourcePoll::Batch(Vec::new())
        })
    }

    fn stats(&self) -> Option<Arc<SourceStats>> {
        Some(self.stats.clone())
    }

    fn offset(&self) -> serde_json::Value {
        serde_json::to_value(&self.state).unwrap_or_default()
    }

    /// A position is the last date read per ticker (and the month's request count).
    async fn alter(&mut self, offset: &serde_json::Value) -> Result<(), ConnectorError> {
        connectd_sdk::traits::offset_as::<GoapiOffset>(offset).map(|_| ())
    }

    /// Trending and company lists are snapshots of now: the past cannot be re-read.
    fn replayable(&self) -> bool {
        self.endpoint == Endpoint::Historical
    }
}
