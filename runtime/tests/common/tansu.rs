//! A Tansu broker of each test's own (the binary that `scripts/kafka.sh install` puts in
//! place). Tansu keeps everything in memory, and after the Kafka crash tests (producers
//! SIGKILLed inside transactions) one broker was seen to stop answering group requests
//! and to keep committed transactional writes invisible for good. With a broker per
//! test, such a broker fails at most the test that broke it, not every Kafka test after.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The address of the calling test's broker, started on first use. A test is known by
/// its thread's name (libtest names each test's thread after the test), so a thread the
/// test spawns must be handed the address: called there, this panics rather than start
/// a second broker the test would not know of.
pub fn broker_for_this_test() -> String {
    let test = this_test();
    let mut brokers = BROKERS.lock().unwrap();
    if let Some(b) = brokers.get(&test) {
        return b.clone();
    }
    let port = super::free_port();
    start(port, port);
    let address = format!("127.0.0.1:{port}");
    brokers.insert(test, address.clone());
    address
}

/// Each test's broker, by the test's name.
static BROKERS: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());

fn this_test() -> String {
    let Some(test) = std::thread::current().name().map(str::to_string) else {
        panic!("the test broker is looked up on the test's own thread; hand its address to threads the test spawns");
    };
    test
}

/// A broker of the calling test's own that every client reaches through a proxy the
/// test can cut (`Proxy::cut`: the broker as if down). It advertises the proxy's
/// address, so no client goes past the proxy; `broker_for_this_test` (and so
/// `kafka::bootstrap`) answers that address on this test's thread from now on.
pub fn broker_behind_proxy() -> super::proxy::Proxy {
    let test = this_test();
    let port = super::free_port();
    let proxy = super::proxy::Proxy::start(0, format!("127.0.0.1:{port}"));
    start(port, proxy.port);
    BROKERS
        .lock()
        .unwrap()
        .insert(test, format!("127.0.0.1:{}", proxy.port));
    proxy
}

fn binary() -> PathBuf {
    match std::env::var_os("TANSU_BIN") {
        Some(p) => p.into(),
        None => PathBuf::from(
            std::env::var("CONNECTD_SERVICES_DIR")
                .unwrap_or_else(|_| "/tmp/connectd-services".into()),
        )
        .join("kafka/tansu"),
    }
}

/// The port to listen on, the port to advertise, and where to answer.
type Request = (u16, u16, Sender<std::io::Result<()>>);

/// Starts a broker on `port`, advertising `advertised`, and waits until it accepts
/// connections.
fn start(port: u16, advertised: u16) {
    // The brokers are children of one thread that lives as long as the test process,
    // and die with it (PR_SET_PDEATHSIG follows the thread that spawned them, so not a
    // test's thread, which ends with the test).
    static SPAWNER: OnceLock<Mutex<Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = channel::<Request>();
        std::thread::spawn(move || {
            for (port, advertised, answer) in rx {
                let _ = answer.send(spawn(port, advertised).map(drop));
            }
        });
        Mutex::new(tx)
    });
    let (answer, spawned) = channel();
    spawner
        .lock()
        .unwrap()
        .send((port, advertised, answer))
        .unwrap();
    if let Err(e) = spawned.recv().unwrap() {
        panic!(
            "cannot start the Tansu broker {} ({e}); run `scripts/kafka.sh install`, or set KAFKA_BOOTSTRAP",
            binary().display()
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the Tansu broker on port {port} did not start within 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[allow(unsafe_code)]
fn spawn(port: u16, advertised: u16) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    let url = format!("tcp://127.0.0.1:{port}");
    let mut cmd = Command::new(binary());
    cmd.args(["broker", "--listener-url", &url])
        .args([
            "--advertised-listener-url",
            &format!("tcp://127.0.0.1:{advertised}"),
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}
