//! Hosts for the cross-host tests: each "host" is a bus of its own name
//! with its own `busbar-bridge` process; bridges talk over tcp/127.0.0.1
//! on ports picked free, scouting off.

#![allow(dead_code)]

use busbar::{BytesMessage, EndpointInfo, EndpointSender, Message, Options, Selector};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Hang guard for anything the tests wait for.
pub const GUARD: Duration = Duration::from_secs(60);
pub const TOKEN: &str = "bridge-test";

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A bus name of this test's own.
pub fn bus(tag: &str) -> String {
    format!(
        "bt.{tag}.{}.{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A TCP port nobody listens on now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local address").port()
}

/// A bridge process.
pub struct Bridge {
    pub child: Child,
    pub zid: String,
    pub bus: String,
    pub host: String,
    pub port: u16,
    dir: std::path::PathBuf,
    extra: String,
    connect: Vec<u16>,
}

impl Bridge {
    /// Starts a bridge for `bus` as `host`, exporting `export`, listening
    /// on a free port and connecting to `connect`; waits until it is ready.
    pub fn start(bus: &str, host: &str, export: &str, connect: &[u16]) -> Bridge {
        Bridge::start_with(bus, host, export, connect, "")
    }

    /// As [`start`], with more lines for the configuration file.
    pub fn start_with(bus: &str, host: &str, export: &str, connect: &[u16], extra: &str) -> Bridge {
        let port = free_port();
        Bridge::launch(bus, host, export, port, connect, extra)
    }

    fn launch(
        bus: &str,
        host: &str,
        export: &str,
        port: u16,
        connect: &[u16],
        extra: &str,
    ) -> Bridge {
        let dir = std::env::temp_dir().join(format!("{bus}.{host}.{port}"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let config = dir.join("bridge.toml");
        let connect_list: Vec<String> = connect
            .iter()
            .map(|p| format!("\"tcp/127.0.0.1:{p}\""))
            .collect();
        let text = format!(
            "bus = \"{bus}\"\ntoken = \"{TOKEN}\"\nhost = \"{host}\"\nexport = {export:?}\n\
             listen = [\"tcp/127.0.0.1:{port}\"]\nconnect = [{}]\nscouting = false\n{extra}\n",
            connect_list.join(", ")
        );
        std::fs::File::create(&config)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .expect("write the config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_busbar-bridge"))
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start busbar-bridge");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(GUARD)
            .expect("the bridge said it was ready");
        let zid = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("zid="))
            .unwrap_or_else(|| panic!("no zid in {line:?}"))
            .to_string();
        Bridge {
            child,
            zid,
            bus: bus.to_string(),
            host: host.to_string(),
            port,
            dir,
            extra: extra.to_string(),
            connect: connect.to_vec(),
        }
    }

    /// `kill -9`, and waits for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again with the same settings and port (after [`kill`]).
    pub fn restart(&mut self, export: &str) {
        let again = Bridge::launch(
            &self.bus,
            &self.host,
            export,
            self.port,
            &self.connect,
            &self.extra,
        );
        let old = std::mem::replace(self, again);
        drop(old);
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Joins `bus` with `label`.
pub fn join<T: busbar::MessageBox>(
    bus: &str,
    label: busbar::Label,
) -> (EndpointSender<T>, busbar::EndpointReceiver<T>) {
    busbar::join::<T, T>(Options::new(bus, label, TOKEN), Some(GUARD)).expect("join")
}

/// Waits until `pred` holds for `sender`'s directory; returns it.
pub fn wait_directory<T>(
    sender: &EndpointSender<T>,
    what: &str,
    pred: impl Fn(&[EndpointInfo]) -> bool,
) -> Vec<EndpointInfo> {
    let deadline = Instant::now() + GUARD;
    loop {
        let d = sender.endpoints();
        if pred(&d) {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "hang guard: never saw {what}: {d:#?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Endpoints in `d` whose label has all of `items`.
pub fn with<'a>(d: &'a [EndpointInfo], items: &[&str]) -> Vec<&'a EndpointInfo> {
    d.iter()
        .filter(|e| items.iter().all(|i| e.label.contains(i)))
        .collect()
}

/// Asks the bridge on `bus` for its counters (`stats` to `@bridge`).
pub fn stats(bus: &str) -> std::collections::HashMap<String, String> {
    let (s, _r) = join::<BytesMessage>(bus, busbar::label!("stats-asker"));
    let ask = Message::new(
        Selector::unicast("@bridge").ttl(GUARD),
        BytesMessage::new(0, b"stats".to_vec()),
    );
    let answer = s
        .request::<BytesMessage>(ask, GUARD)
        .expect("the bridge answers stats");
    String::from_utf8(answer.payload.data.into_vec())
        .expect("text")
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A counter from [`stats`].
pub fn stat(bus: &str, name: &str) -> u64 {
    stats(bus)
        .get(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no counter {name}"))
}

/// A Zenoh session of the test's own, connected to the bridge listening on `port`.
pub fn zenoh_peer(port: u16) -> zenoh::Session {
    use zenoh::Wait;
    let mut c = zenoh::Config::default();
    for (k, v) in [
        ("mode", "\"peer\"".to_string()),
        ("connect/endpoints", format!("[\"tcp/127.0.0.1:{port}\"]")),
        ("scouting/multicast/enabled", "false".to_string()),
    ] {
        c.insert_json5(k, &v).expect("zenoh setting");
    }
    zenoh::open(c).wait().expect("open a zenoh session")
}

/// Waits until counter `name` of the bridge on `bus` is at least `n`.
pub fn wait_stat(bus: &str, name: &str, n: u64) -> u64 {
    let deadline = Instant::now() + GUARD;
    loop {
        let v = stat(bus, name);
        if v >= n {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "hang guard: {name} stayed at {v} < {n}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
