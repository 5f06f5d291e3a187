//! A TCP proxy in front of a server, for outages a test controls: `cut` closes every
//! connection, and new ones as soon as they are accepted (a server that went down);
//! `freeze` forwards nothing either way and closes nothing (a server that stopped
//! answering mid-request).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug)]
pub struct Proxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
    frozen: Arc<AtomicBool>,
    /// Both ends of every connection passed through since the last cut.
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// Listens on `port` of 127.0.0.1 (0: any free one) and passes each connection to
    /// `upstream` (`host:port`).
    pub fn start(port: u16, upstream: String) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, frozen) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let open = Arc::new(Mutex::new(Vec::new()));
        let (is_cut, is_frozen, conns) = (cut.clone(), frozen.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if is_cut.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let ends = [&client, &server].map(|s| s.try_clone().unwrap());
                conns.lock().unwrap().extend(ends);
                let ways = [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ];
                for (from, to) in ways {
                    let frozen = is_frozen.clone();
                    std::thread::spawn(move || pipe(from, to, &frozen));
                }
            }
        });
        Self {
            port,
            cut,
            frozen,
            open,
        }
    }

    /// Closes every connection, and every new one until `restore`.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    /// Holds every byte until `thaw`, closing nothing.
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    pub fn thaw(&self) {
        self.frozen.store(false, Ordering::SeqCst);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, frozen: &AtomicBool) {
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buf) {
        while frozen.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    // Half-closed, as the peer did: the other way may still carry an answer.
    let _ = to.shutdown(Shutdown::Write);
}
