//! `alpaca`: the Alpaca market-data stream (v2 websocket): quotes, trades and bars.
//!
//! A background task holds the connection: connect, wait for `connected`, authenticate
//! (by message or by headers), subscribe and check the `subscription` answer, then read
//! arrays of `T`-typed messages. It reconnects with exponential backoff and jitter on
//! close, error or silence (pings every `ping_interval`; nothing heard for
//! `idle_timeout` means the connection is dead), re-authenticating and re-subscribing.
//! Error 402 (auth failed) and 406 (connection limit) stop the source: retrying cannot
//! help until the config changes. Every other error code reconnects.
//!
//! Offset: the last event time (ns) per symbol and message type; a record at or before
//! it — resent after a reconnect, or after a restart — is not emitted again. A live
//! stream cannot replay what was missed while disconnected: at-most-once across that gap.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::DateTime;
use connectd_sdk::config::{ConfigMap, HumanDuration, Invalid};
use connectd_sdk::{BadRecord, BuildContext, ConnectorError, Record, Source, SourcePoll, Value};
use futures_util::{SinkExt, StreamExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use connectd_sdk::stats::{ErrorKind, SourceStats};

use super::backoff::Backoff;

#[derive(Debug, Clone)]
struct Settings {
    url: String,
    key: String,
    secret: String,
    /// How the key was written (e.g. `${env:APCA_API_KEY_ID}`), for error messages.
    key_source: String,
    auth_headers: bool,
    quotes: Vec<String>,
    trades: Vec<String>,
    bars: Vec<String>,
    idle_timeout: Duration,
    ping_interval: Duration,
    connect_timeout: Duration,
}

/// What the connection task hands to `poll`.
#[derive(Debug)]
enum Event {
    /// (dedupe key "q:SPY", event time in ns, record)
    Records(Vec<(String, i64, Record)>),
    Bad(Box<BadRecord>),
    Fatal(String),
}

pub struct AlpacaSource {
    settings: Arc<Settings>,
    stats: Arc<SourceStats>,
    events: Option<mpsc::Receiver<Event>>,
    task: Option<tokio::task::JoinHandle<()>>,
    carry: VecDeque<(String, i64, Record)>,
    /// Last emitted event time (ns) per "type:symbol": the offset.
    last: BTreeMap<String, i64>,
}

impl std::fmt::Debug for AlpacaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlpacaSource")
            .field("url", &self.settings.url)
            .finish()
    }
}

impl Drop for AlpacaSource {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Alpaca's market-data websocket (v2): quotes, trades and bars of the subscribed
/// symbols, live (a reconnect resumes with what comes next; nothing is replayed).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct AlpacaOptions {
    /// The stream's base URL; the feed is appended.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// `iex`, `sip` or `test` (the test stream).
    #[serde(default)]
    pub feed: Feed,
    /// The whole URL, instead of `base_url` + `feed`.
    #[serde(default)]
    pub url: Option<String>,
    /// The API key id (use `${env:...}`).
    pub key: String,
    /// The API secret (use `${env:...}`).
    pub secret: String,
    /// How to authenticate: an auth `message` after connecting, or HTTP `headers`.
    #[serde(default)]
    pub auth: AuthWord,
    /// Symbols whose quotes to subscribe to (`"*"` for all).
    #[serde(default)]
    #[schemars(schema_with = "connectd_sdk::config::scalar_text_list")]
    pub quotes: Vec<String>,
    /// Symbols whose trades to subscribe to.
    #[serde(default)]
    #[schemars(schema_with = "connectd_sdk::config::scalar_text_list")]
    pub trades: Vec<String>,
    /// Symbols whose minute bars to subscribe to.
    #[serde(default)]
    #[schemars(schema_with = "connectd_sdk::config::scalar_text_list")]
    pub bars: Vec<String>,
    /// Reconnect when nothing (not even a pong) arrives for this long.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: HumanDuration,
    /// How often to ping the server.
    #[serde(default = "default_ping_interval")]
    pub ping_interval: HumanDuration,
    /// How long connecting may take.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
}

#[derive(Debug, Default, Clone, Copy, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Feed {
    #[default]
    Iex,
    Sip,
    Test,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthWord {
    #[default]
    Message,
    Headers,
}

fn default_base_url() -> String {
    "wss://stream.data.alpaca.markets/v2".into()
}

fn default_idle_timeout() -> HumanDuration {
    HumanDuration::secs(30)
}

fn default_ping_interval() -> HumanDuration {
    HumanDuration::secs(10)
}

fn default_connect_timeout() -> HumanDuration {
    HumanDuration::secs(10)
}

pub fn build(cfg: &mut ConfigMap<'_>, _ctx: &BuildContext) -> Result<Box<dyn Source>, Invalid> {
    let o: AlpacaOptions = cfg.typed().ok_or(Invalid)?;
    let feed = match o.feed {
        Feed::Iex => "iex",
        Feed::Sip => "sip",
        Feed::Test => "test",
    };
    let url = o
        .url
        .unwrap_or_else(|| format!("{}/{feed}", o.base_url.trim_end_matches('/')));
    if !url.starts_with("ws://") && !url.starts_with("wss://") {
        cfg.error(
            if cfg.has("url") { "url" } else { "base_url" },
            "expected a ws:// or wss:// URL",
        );
    }
    let key = o.key;
    let key_source = cfg
        .written_as("key")
        .unwrap_or_else(|| format!("`{}`", cfg.field_path("key")));
    let secret = o.secret;
    let auth_headers = o.auth == AuthWord::Headers;
    let (quotes, trades, bars) = (o.quotes, o.trades, o.bars);
    if quotes.is_empty() && trades.is_empty() && bars.is_empty() {
        cfg.error(
            "quotes",
            "subscribe to something: at least one of quotes, trades, bars (symbols, or \"*\")",
        );
    }
    let idle_timeout = o.idle_timeout.0;
    let ping_interval = o.ping_interval.0;
    let connect_timeout = o.connect_timeout.0;
    cfg.finish()?;
    let settings = Settings {
        url,
        key,
        secret,
        key_source,
        auth_headers,
        quotes,
        trades,
        bars,
        idle_timeout,
        ping_interval,
        connect_timeout,
    };
    Ok(Box::new(AlpacaSource {
        settings: Arc::new(settings),
        stats: Arc::default(),
        events: None,
        task: None,
        carry: VecDeque::new(),
        last: BTreeMap::new(),
    }))
}

/// What a failed session means.
enum Ended {
    /// Reconnect after a backoff.
    Retry(String),
    /// Stop the source.
    Fatal(String),
}

/// Alpaca's documented error codes.
fn error_code(code: i64, msg: &str, s: &Settings) -> Ended {
    let what = match code {
        400 => "invalid syntax",
        401 => "not authenticated",
        402 => "auth failed",
        403 => "already authenticated",
        404 => "auth timeout",
        405 => "symbol limit exceeded",
        406 => "connection limit exceeded",
        407 => "slow client",
        409 => "insufficient subscription",
        500 => "internal error",
        _ => "error",
    };
    let text = format!("alpaca error {code} ({what}): {msg}");
    match code {
        402 => Ended::Fatal(format!(
            "{text}; check the key and secret given by {}",
            s.key_source
        )),
        406 => Ended::Fatal(format!(
            "{text}; another connection uses this account and feed (Alpaca allows one)"
        )),
        _ => Ended::Retry(text),
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Reads the next text frame as a JSON array. `heard` is when the server last sent
/// anything (pongs included): silence past the idle timeout ends the session.
/// The next array of messages; `stats`, when given, counts its bytes.
async fn next_array(
    ws: &mut Socket,
    s: &Settings,
    tx: &mpsc::Sender<Event>,
    heard: &mut Instant,
    stats: Option<&SourceStats>,
) -> Result<Vec<serde_json::Value>, Ended> {
    loop {
        let remaining = s.idle_timeout.saturating_sub(heard.elapsed());
        let frame = tokio::time::timeout(remaining, ws.next())
            .await
            .map_err(|_| Ended::Retry(format!("nothing heard for {:?}", s.idle_timeout)))?;
        *heard = Instant::now();
        let text = match frame {
            None => return Err(Ended::Retry("the server closed the connection".into())),
            Some(Err(e)) => return Err(Ended::Retry(format!("connection error: {e}"))),
            Some(Ok(Message::Text(t))) => t.to_string(),
            Some(Ok(Message::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
            Some(Ok(Message::Close(c))) => {
                return Err(Ended::Retry(format!(
                    "the server closed the connection: {c:?}"
                )))
            }
            Some(Ok(_)) => continue, // ping/pong: tungstenite answers pings itself
        };
        if let Some(stats) = stats {
            stats.read_bytes(text.len() as u64);
        }
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Array(items)) => return Ok(items),
            Ok(_) => bad(tx, &text, "an Alpaca message must be a JSON array").await?,
            Err(e) => bad(tx, &text, &format!("not JSON: {e}")).await?,
        }
    }
}

async fn bad(tx: &mpsc::Sender<Event>, raw: &str, why: &str) -> Result<(), Ended> {
    // Counted by the source when it takes the event (see `accept`).
    let excerpt: String = raw.chars().take(300).collect();
    tx.send(Event::Bad(Box::new(BadRecord::raw(
        excerpt,
        "alpaca stream",
        format!("alpaca: {why}"),
    ))))
    .await
    .map_err(|_| Ended::Fatal("the source was closed".into()))
}

/// Waits for a `success` message with this `msg`, handling errors on the way.
async fn expect_success(
    ws: &mut Socket,
    s: &Settings,
    tx: &mpsc::Sender<Event>,
    wanted: &str,
) -> Result<(), Ended> {
    let mut heard = Instant::now();
    loop {
        for m in next_array(ws, s, tx, &mut heard, None).await? {
            match (m["T"].as_str(), m["msg"].as_str()) {
                (Some("success"), Some(msg)) if msg == wanted => return Ok(()),
                (Some("error"), _) => {
                    return Err(error_code(
                        m["code"].as_i64().unwrap_or(0),
                        m["msg"].as_str().unwrap_or(""),
                        s,
                    ))
                }
                _ => {}
            }
        }
    }
}

/// Turns one stream message into a record: (dedupe key, event time ns, record).
fn to_record(m: &serde_json::Value) -> Result<Option<(String, i64, Record)>, String> {
    let kind = match m["T"].as_str() {
        Some("q") => "q",
        Some("t") => "t",
        Some("b") => "b",
        _ => return Ok(None),
    };
    let symbol = m["S"]
        .as_str()
        .ok_or("a market-data message without `S` (symbol)")?;
    let t = m["t"]
        .as_str()
        .ok_or("a market-data message without `t` (time)")?;
    let time =
        DateTime::parse_from_rfc3339(t).map_err(|e| format!("`t` = `{t}` is not RFC 3339: {e}"))?;
    let ns = time.timestamp_nanos_opt().ok_or("`t` is out of range")?;
    let record = Record::new(Value::from_json(m))
        .with_key(Value::str(symbol))
        .with_timestamp(time.timestamp_millis());
    Ok(Some((format!("{kind}:{symbol}"), ns, record)))
}

/// One connection, from connect to its end.
async fn session(
    s: &Settings,
    tx: &mpsc::Sender<Event>,
    backoff: &mut Backoff,
    stats: &SourceStats,
) -> Ended {
    let mut request = match s.url.as_str().into_client_request() {
        Ok(r) => r,
        Err(e) => return Ended::Fatal(format!("alpaca: invalid URL {}: {e}", s.url)),
    };
    if s.auth_headers {
        for (name, value) in [
            ("APCA-API-KEY-ID", &s.key),
            ("APCA-API-SECRET-KEY", &s.secret),
        ] {
            match value.parse() {
                Ok(v) => {
                    request.headers_mut().insert(name, v);
                }
                Err(_) => {
                    return Ended::Fatal(format!(
                        "alpaca: the {name} value is not a valid header (from {})",
                        s.key_source
                    ))
                }
            }
        }
    }
    let mut ws =
        match tokio::time::timeout(s.connect_timeout, tokio_tungstenite::connect_async(request))
            .await
        {
            Err(_) => return Ended::Retry(format!("connecting to {} timed out", s.url)),
            Ok(Err(e)) => return Ended::Retry(format!("cannot connect to {}: {e}", s.url)),
            Ok(Ok((ws, _))) => ws,
        };
    if let Err(e) = expect_success(&mut ws, s, tx, "connected").await {
        return e;
    }
    if !s.auth_headers {
        let auth =
            serde_json::json!({"action": "auth", "key": s.key, "secret": s.secret}).to_string();
        if let Err(e) = ws.send(Message::text(auth)).await {
            return Ended::Retry(format!("sending auth: {e}"));
        }
    }
    if let Err(e) = expect_success(&mut ws, s, tx, "authenticated").await {
        return e;
    }
    let subscribe = serde_json::json!({"action": "subscribe", "quotes": s.quotes, "trades": s.trades, "bars": s.bars}).to_string();
    if let Err(e) = ws.send(Message::text(subscribe)).await {
        return Ended::Retry(format!("sending subscribe: {e}"));
    }
    let mut pending_records = Vec::new();
    let mut heard = Instant::now();
    // Wait for the subscription answer; data may already come along with it.
    'answer: loop {
        let items = match next_array(&mut ws, s, tx, &mut heard, Some(stats)).await {
            Ok(items) => items,
            Err(e) => return e,
        };
        let mut confirmed = false;
        for m in &items {
            match m["T"].as_str() {
                Some("subscription") => {
                    for (list, asked) in [
                        ("quotes", &s.quotes),
                        ("trades", &s.trades),
                        ("bars", &s.bars),
                    ] {
                        let got: Vec<&str> = m[list]
                            .as_array()
                            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                            .unwrap_or_default();
                        let missing: Vec<&String> = asked
                            .iter()
                            .filter(|a| !got.contains(&a.as_str()))
                            .collect();
                        if !missing.is_empty() {
                            tracing::warn!(
                                ?missing,
                                list,
                                "alpaca: the subscription answer lacks symbols that were asked for"
                            );
                        }
                    }
                    confirmed = true;
                }
                Some("error") => {
                    return error_code(
                        m["code"].as_i64().unwrap_or(0),
                        m["msg"].as_str().unwrap_or(""),
                        s,
                    )
                }
                _ => match to_record(m) {
                    Ok(Some(r)) => pending_records.push(r),
                    Ok(None) => {}
                    Err(why) => {
                        if let Err(e) = bad(tx, &m.to_string(), &why).await {
                            return e;
                        }
                    }
                },
            }
        }
        if confirmed {
            break 'answer;
        }
    }
    tracing::info!(url = %s.url, "alpaca: subscribed");
    backoff.reset();
    stats.success();
    if !pending_records.is_empty() && tx.send(Event::Records(pending_records)).await.is_err() {
        return Ended::Fatal("the source was closed".into());
    }
    let mut ping = tokio::time::interval(s.ping_interval);
    ping.tick().await;
    loop {
        let items = tokio::select! {
            r = next_array(&mut ws, s, tx, &mut heard, Some(stats)) => match r {
                Ok(items) => items,
                Err(e) => return e,
            },
            _ = ping.tick() => {
                if let Err(e) = ws.send(Message::Ping(Vec::new().into())).await {
                    return Ended::Retry(format!("sending a ping: {e}"));
                }
                continue;
            }
        };
        let mut records = Vec::with_capacity(items.len());
        for m in &items {
            if m["T"].as_str() == Some("error") {
                return error_code(
                    m["code"].as_i64().unwrap_or(0),
                    m["msg"].as_str().unwrap_or(""),
                    s,
                );
            }
            match to_record(m) {
                Ok(Some(r)) => records.push(r),
                Ok(None) => {}
                Err(why) => {
                    if let Err(e) = bad(tx, &m.to_string(), &why).await {
                        return e;
                    }
                }
            }
        }
        if !records.is_empty() {
            stats.success();
            if tx.send(Event::Records(records)).await.is_err() {
                return Ended::Fatal("the source was closed".into());
            }
        }
    }
}

async fn run(s: Arc<Settings>, tx: mpsc::Sender<Event>, stats: Arc<SourceStats>) {
    let mut backoff = Backoff::default();
    loop {
        stats.request();
        match session(&s, &tx, &mut backoff, &stats).await {
            Ended::Fatal(why) => {
                let _ = tx.send(Event::Fatal(why)).await;
                return;
            }
            Ended::Retry(why) => {
                if tx.is_closed() {
                    return;
                }
                stats.reconnect();
                stats.error(if why.starts_with("alpaca error") {
                    ErrorKind::Server
                } else {
                    ErrorKind::Network
                });
                let wait = backoff.next_delay();
                tracing::warn!(reason = %why, retry_in_ms = wait.as_millis() as u64, "alpaca: connection lost; reconnecting");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

impl AlpacaSource {
    fn accept(&mut self, event: Event, bad: &mut Vec<BadRecord>) -> Result<(), ConnectorError> {
        match event {
            Event::Records(records) => self.carry.extend(records),
            Event::Bad(b) => {
                self.stats.error(ErrorKind::Garbage);
                bad.push(*b)
            }
            Event::Fatal(why) => {
                self.stats.error(ErrorKind::Rejected);
                return Err(ConnectorError::permanent(why));
            }
        }
        Ok(())
    }

    fn take(&mut self, max: usize) -> Vec<Record> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some((key, ns, record)) = self.carry.pop_front() else {
                break;
            };
            // Already emitted (resent after a reconnect or a restart).
            if self.last.get(&key).is_some_and(|last| ns <= *last) {
                continue;
            }
            self.last.insert(key, ns);
            if let Some(ms) = record.timestamp {
                self.stats.event_time(ms);
            }
            out.push(record);
        }
        out
    }
}

#[async_trait]
impl Source for AlpacaSource {
    async fn open(&mut self, offset: Option<serde_json::Value>) -> Result<(), ConnectorError> {
        if let Some(v) = offset {
            self.last = connectd_sdk::error::parse_offset(v["last"].clone(), "alpaca")?;
        }
        let (tx, rx) = mpsc::channel(64);
        self.events = Some(rx);
        self.task = Some(tokio::spawn(run(
            self.settings.clone(),
            tx,
            self.stats.clone(),
        )));
        Ok(())
    }

    async fn poll(
        &mut self,
        max: usize,
        bad: &mut Vec<BadRecord>,
    ) -> Result<SourcePoll, ConnectorError> {
        let Some(mut events) = self.events.take() else {
            return Err(ConnectorError::permanent("alpaca: polled before open"));
        };
        let result = self.poll_events(&mut events, max, bad).await;
        self.events = Some(events);
        result
    }

    fn offset(&self) -> serde_json::Value {
        serde_json::json!({ "last": self.last })
    }

    /// A position is the newest event time seen per symbol (epoch ms): what a
    /// reconnect or restart skips up to.
    async fn alter(&mut self, offset: &serde_json::Value) -> Result<(), ConnectorError> {
        connectd_sdk::traits::offset_as::<LastSeen>(offset).map(|_| ())
    }

    fn replayable(&self) -> bool {
        false
    }

    fn stats(&self) -> Option<Arc<SourceStats>> {
        Some(self.stats.clone())
    }

    async fn close(&mut self) -> Result<(), ConnectorError> {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        Ok(())
    }
}

impl AlpacaSource {
    async fn poll_events(
        &mut self,
        events: &mut mpsc::Receiver<Event>,
        max: usize,
        bad: &mut Vec<BadRecord>,
    ) -> Result<SourcePoll, ConnectorError> {
        if self.carry.is_empty() {
            // Wait briefly for the stream, so the runtime stays responsive to barriers.
            match tokio::time::timeout(Duration::from_millis(100), events.recv()).await {
                Ok(Some(e)) => self.accept(e, bad)?,
                Ok(None) => {
                    return Err(ConnectorError::permanent(
                        "alpaca: the connection task ended",
                    ))
                }
                Err(_) => return Ok(SourcePoll::Idle(Duration::ZERO)),
            }
        }
        while self.carry.len() < max {
            match events.try_recv() {
                Ok(e) => self.accept(e, bad)?,
                Err(_) => break,
            }
        }
        let out = self.take(max);
        if out.is_empty() && bad.is_empty() {
            return Ok(SourcePoll::Idle(Duration::ZERO));
        }
        Ok(SourcePoll::Batch(out))
    }
}

/// This source's position, as `alter` reads it.
#[derive(serde::Deserialize, serde::Serialize)]
struct LastSeen {
    last: BTreeMap<String, i64>,
}
