//! A CQL (native protocol v4) server for the tests: the in-memory `kassandra` store
//! behind a small tokio TCP loop. `CASSANDRA_URL` (host:port) points the same tests at a
//! real Cassandra/ScyllaDB instead.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use kassandra::frame::request::Request;
use kassandra::frame::response::Response;
use kassandra::frame::{request_stream, response_sink};
use kassandra::KassandraSession;

/// Starts the emulator on an ephemeral port (or returns `CASSANDRA_URL`); "host:port".
pub fn start() -> String {
    if let Ok(url) = std::env::var("CASSANDRA_URL") {
        return url;
    }
    start_emulator().0
}

/// Takes the emulator off the network for a while: the port closes and every
/// connection drops; the data stays. Then it listens on the same port again.
#[derive(Clone, Debug)]
pub struct Outage(tokio::sync::mpsc::UnboundedSender<std::time::Duration>);

impl Outage {
    pub fn go_down_for(&self, d: std::time::Duration) {
        self.0.send(d).unwrap();
    }
}

/// Starts the emulator itself; returns its address and a handle to simulate an outage.
pub fn start_emulator() -> (String, Outage) {
    let (tx, rx) = std::sync::mpsc::channel();
    let (outage_tx, mut outages) = tokio::sync::mpsc::unbounded_channel::<std::time::Duration>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tx.send(addr).unwrap();
            let store = Arc::new(Mutex::new(KassandraSession::new()));
            let mut clients: Vec<tokio::task::JoinHandle<()>> = Vec::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        if let Ok((stream, _)) = accepted {
                            clients.push(tokio::spawn(serve(stream, store.clone())));
                        }
                    }
                    Some(down) = outages.recv() => {
                        drop(listener);
                        for c in clients.drain(..) {
                            c.abort();
                        }
                        tokio::time::sleep(down).await;
                        listener = tokio::net::TcpListener::bind(addr).await.unwrap();
                    }
                }
            }
        });
    });
    (rx.recv().unwrap().to_string(), Outage(outage_tx))
}

async fn serve(mut stream: tokio::net::TcpStream, store: Arc<Mutex<KassandraSession>>) {
    let (mut read, mut write) = stream.split();
    let mut requests = request_stream(&mut read);
    let mut responses = response_sink(&mut write);
    while let Some(Ok((frame, opcode, data))) = requests.next().await {
        let response = if frame.version.is_unsupported() {
            Response::unsupported_version()
        } else {
            match Request::deserialize(opcode, &data, frame.flags) {
                Err(e) => Response::Error(kassandra::frame::response::error::Error::new(
                    kassandra::error::DbError::ProtocolError,
                    format!("{e}"),
                )),
                Ok(request) => answer(request, &store),
            }
        };
        if responses.send((response, frame.stream)).await.is_err() {
            return;
        }
    }
}

fn answer(request: Request<'_>, store: &Mutex<KassandraSession>) -> Response {
    let mut db = store.lock().unwrap();
    let result = match request {
        Request::StartUp(_) | Request::Register { .. } => return Response::Ready,
        Request::Options => return Response::options(),
        Request::Query(q) => db.process(q),
        Request::Prepare(p) => db.prepare(p),
        Request::Execute(e) => db.execute(e),
        Request::Batch(b) => db.process_batch(b),
        Request::AuthResponse => {
            return Response::Error(kassandra::frame::response::error::Error::new(
                kassandra::error::DbError::ProtocolError,
                "no authentication here",
            ))
        }
    };
    match result {
        Ok(r) => Response::Result(r),
        Err(e) => Response::Error(e),
    }
}

/// A driver session to `addr` (no wait for schema agreement: one node).
pub async fn session(addr: &str) -> scylla::client::session::Session {
    scylla::client::session_builder::SessionBuilder::new()
        .known_node(addr)
        .auto_await_schema_agreement(false)
        .build()
        .await
        .unwrap_or_else(|e| panic!("cannot reach the CQL server at {addr}: {e}"))
}
