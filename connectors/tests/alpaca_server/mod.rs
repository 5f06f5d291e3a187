//! A local server speaking the Alpaca market-data stream protocol (v2): connected →
//! auth (message or headers) → subscribe → subscription, then a scripted session per
//! connection.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::result_large_err
)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

pub const KEY: &str = "AKTEST";
pub const SECRET: &str = "s3cret";

#[derive(Clone, Debug)]
pub enum Step {
    /// Send this text frame (a JSON array, or garbage on purpose).
    Send(String),
    /// Close the connection.
    Close,
    /// Stop reading and writing for this long (no pongs either).
    Silence(Duration),
    /// Wait, still answering pings.
    Wait(Duration),
}

#[derive(Clone, Default)]
pub struct AlpacaServer {
    /// The steps of connection n (the last entry repeats for later connections).
    pub sessions: Arc<Mutex<Vec<Vec<Step>>>>,
    /// Error code to answer right after `connected` (e.g. 406), if any.
    pub reject_with: Arc<Mutex<Option<i64>>>,
    pub connections: Arc<Mutex<u32>>,
    /// Every text message the client sent, in order.
    pub received: Arc<Mutex<Vec<String>>>,
}

pub fn quote(symbol: &str, t: &str, bp: f64) -> String {
    format!(
        r#"{{"T":"q","S":"{symbol}","bx":"U","bp":{bp},"bs":1,"ax":"Q","ap":{},"as":4,"t":"{t}","c":["R"],"z":"C"}}"#,
        bp + 0.02
    )
}

pub fn trade(symbol: &str, t: &str, p: f64, i: u64) -> String {
    format!(
        r#"{{"T":"t","i":{i},"S":"{symbol}","x":"D","p":{p},"s":1,"t":"{t}","c":["@"],"z":"C"}}"#
    )
}

pub fn bar(symbol: &str, t: &str, c: f64) -> String {
    format!(r#"{{"T":"b","S":"{symbol}","o":{c},"h":{c},"l":{c},"c":{c},"v":100,"t":"{t}"}}"#)
}

pub fn batch(items: &[String]) -> Step {
    Step::Send(format!("[{}]", items.join(",")))
}

impl AlpacaServer {
    pub async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let me = me.clone();
                tokio::spawn(async move { me.serve(tcp).await });
            }
        });
        format!("ws://{addr}/v2/iex")
    }

    async fn serve(&self, tcp: tokio::net::TcpStream) {
        let n = {
            let mut c = self.connections.lock().unwrap();
            *c += 1;
            *c - 1
        };
        let header_auth = Arc::new(Mutex::new(None));
        let seen = header_auth.clone();
        let callback = move |req: &Request, resp: Response| {
            let h = req.headers();
            let k = h
                .get("APCA-API-KEY-ID")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let s = h
                .get("APCA-API-SECRET-KEY")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            *seen.lock().unwrap() = k.zip(s);
            Ok(resp)
        };
        let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
            return;
        };
        let send = |text: &str| Message::text(text.to_string());
        if ws
            .send(send(r#"[{"T":"success","msg":"connected"}]"#))
            .await
            .is_err()
        {
            return;
        }
        let reject = *self.reject_with.lock().unwrap();
        if let Some(code) = reject {
            let _ = ws
                .send(send(&format!(
                    r#"[{{"T":"error","code":{code},"msg":"connection limit exceeded"}}]"#
                )))
                .await;
            let _ = ws.close(None).await;
            return;
        }
        let header_creds = header_auth.lock().unwrap().clone();
        let authed = match header_creds {
            Some((k, s)) => k == KEY && s == SECRET,
            None => {
                let Some(msg) = self.read_text(&mut ws).await else {
                    return;
                };
                let v: serde_json::Value = serde_json::from_str(&msg).unwrap_or_default();
                v["action"] == "auth" && v["key"] == KEY && v["secret"] == SECRET
            }
        };
        if !authed {
            let _ = ws
                .send(send(r#"[{"T":"error","code":402,"msg":"auth failed"}]"#))
                .await;
            let _ = ws.close(None).await;
            return;
        }
        if ws
            .send(send(r#"[{"T":"success","msg":"authenticated"}]"#))
            .await
            .is_err()
        {
            return;
        }
        let Some(sub) = self.read_text(&mut ws).await else {
            return;
        };
        let v: serde_json::Value = serde_json::from_str(&sub).unwrap_or_default();
        assert_eq!(v["action"], "subscribe", "{sub}");
        let answer = serde_json::json!([{"T": "subscription", "trades": v["trades"], "quotes": v["quotes"], "bars": v["bars"]}]);
        if ws.send(send(&answer.to_string())).await.is_err() {
            return;
        }
        let steps = {
            let sessions = self.sessions.lock().unwrap();
            sessions
                .get(n as usize)
                .or(sessions.last())
                .cloned()
                .unwrap_or_default()
        };
        for step in steps {
            match step {
                Step::Send(text) => {
                    if ws.send(send(&text)).await.is_err() {
                        return;
                    }
                }
                Step::Close => {
                    let _ = ws.close(None).await;
                    return;
                }
                Step::Silence(d) => tokio::time::sleep(d).await,
                Step::Wait(d) => {
                    let _ = tokio::time::timeout(d, async {
                        while let Some(Ok(_)) = ws.next().await {}
                    })
                    .await;
                }
            }
        }
        // Stay connected, answering pings, until the client goes away.
        while let Some(Ok(_)) = ws.next().await {}
    }

    async fn read_text(
        &self,
        ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    ) -> Option<String> {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Text(t) = m {
                self.received.lock().unwrap().push(t.to_string());
                return Some(t.to_string());
            }
        }
        None
    }
}
