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
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let store = Arc::new(Mutex::new(KassandraSession::new()));
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(serve(stream, store.clone()));
            }
        });
    });
    rx.recv().unwrap().to_string()
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
