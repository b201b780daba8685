//! `bridge-bench`: busbar → bridge → Zenoh → bridge → busbar against raw
//! Zenoh publisher → subscriber, on the same loopback, in one run.
//!
//! ```text
//! cargo build --release -p busbar-bridge --bins
//! target/release/bridge-bench
//! target/release/bridge-bench --only-bridge 1024   # one case, for a profiler
//! ```
//!
//! Every case runs in separate processes: the sender (or echo) is this
//! binary started again with `--role`, the bridges are `busbar-bridge`
//! processes (found next to this binary), and this process receives (or
//! pings). Throughput: N messages sent as fast as the sender can, measured
//! from the first received to the last. Latency: ping-pong, half the round
//! trip, after a warm-up. Zenoh runs in peer mode over tcp/127.0.0.1 with
//! scouting off and blocking congestion control on both paths.

use busbar::{label, BytesMessage, Message, Options, Selector};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use zenoh::qos::CongestionControl;
use zenoh::Wait;

const TOKEN: &str = "bench";
type Error = Box<dyn std::error::Error + Send + Sync>;

fn free_port() -> Result<u16, Error> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn zenoh_session(listen: Option<u16>, connect: Option<u16>) -> Result<zenoh::Session, Error> {
    let mut c = zenoh::Config::default();
    let ep = |p: Option<u16>| p.map_or("[]".to_string(), |p| format!("[\"tcp/127.0.0.1:{p}\"]"));
    for (k, v) in [
        ("mode", "\"peer\"".to_string()),
        ("listen/endpoints", ep(listen)),
        ("connect/endpoints", ep(connect)),
        ("scouting/multicast/enabled", "false".to_string()),
    ] {
        c.insert_json5(k, &v)?;
    }
    zenoh::open(c).wait()
}

/// A child process, killed when dropped.
struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn me() -> Result<std::path::PathBuf, Error> {
    Ok(std::env::current_exe()?)
}

fn role(args: &[String]) -> Result<Kid, Error> {
    Ok(Kid(Command::new(me()?).arg("--role").args(args).spawn()?))
}

/// Starts a bridge and waits until it is ready.
fn bridge(
    bus: &str,
    host: &str,
    export: &str,
    port: u16,
    connect: Option<u16>,
) -> Result<Kid, Error> {
    let exe = me()?.with_file_name("busbar-bridge");
    let mut cmd = Command::new(exe);
    if let Ok(spin) = std::env::var("BRIDGE_SPIN_US") {
        cmd.args(["--spin-us", &spin]);
    }
    cmd.args([
        "--bus", bus, "--token", TOKEN, "--host", host, "--export", export,
    ])
    .args(["--listen", &format!("tcp/127.0.0.1:{port}")]);
    if let Some(c) = connect {
        cmd.args(["--connect", &format!("tcp/127.0.0.1:{c}")]);
    }
    let mut child = cmd.stdout(Stdio::piped()).spawn()?;
    let out = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line)?;
    if !line.starts_with("busbar-bridge ready") {
        return Err(format!("bridge did not start: {line:?}").into());
    }
    Ok(Kid(child))
}

fn count(size: usize) -> u64 {
    // For a profiler: how many messages a throughput case sends.
    if let Some(n) = std::env::var("BRIDGE_BENCH_COUNT")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        return n;
    }
    // About 200 MB per case, at least 20k messages.
    ((200usize << 20) / size).max(20_000) as u64
}

// ---- roles (child processes) ----

fn zpub(port: u16, size: usize, n: u64) -> Result<(), Error> {
    let s = zenoh_session(None, Some(port))?;
    let p = s
        .declare_publisher("bench/tput")
        .congestion_control(CongestionControl::Block)
        .wait()?;
    while !p.matching_status().wait()?.matching() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let payload = vec![7u8; size];
    for _ in 0..n {
        p.put(payload.clone()).wait()?;
    }
    std::thread::sleep(Duration::from_secs(3600));
    Ok(())
}

fn zecho(port: u16) -> Result<(), Error> {
    let s = zenoh_session(None, Some(port))?;
    let sub = s.declare_subscriber("bench/ping").wait()?;
    let p = s
        .declare_publisher("bench/pong")
        .congestion_control(CongestionControl::Block)
        .wait()?;
    while let Ok(sample) = sub.recv() {
        p.put(sample.payload().clone()).wait()?;
    }
    Ok(())
}

fn bsend(bus: &str, size: usize, n: u64) -> Result<(), Error> {
    let (tx, _rx) = busbar::join::<BytesMessage, BytesMessage>(
        Options::new(bus, label!("source"), TOKEN),
        Some(Duration::from_secs(30)),
    )?;
    let to = Selector::unicast("sink").ttl(Duration::from_secs(60));
    let data = vec![7u8; size];
    for _ in 0..n {
        tx.send(Message::new(to.clone(), BytesMessage::new(0, data.clone())))?;
    }
    std::thread::sleep(Duration::from_secs(3600));
    Ok(())
}

fn becho(bus: &str) -> Result<(), Error> {
    let (tx, mut rx) = busbar::join::<BytesMessage, BytesMessage>(
        Options::new(bus, label!("echo"), TOKEN),
        Some(Duration::from_secs(30)),
    )?;
    loop {
        let m = rx.recv(None)?;
        tx.send(Message::new(Selector::endpoint(m.source), m.payload))?;
    }
}

// ---- cases (this process) ----

struct Rate {
    msgs_per_sec: f64,
    bytes_per_sec: f64,
}

fn rate(n: u64, size: usize, first: Instant) -> Rate {
    let secs = first.elapsed().as_secs_f64();
    let msgs = (n - 1) as f64 / secs;
    Rate {
        msgs_per_sec: msgs,
        bytes_per_sec: msgs * size as f64,
    }
}

fn zenoh_throughput(size: usize) -> Result<Rate, Error> {
    let port = free_port()?;
    let s = zenoh_session(Some(port), None)?;
    let sub = s.declare_subscriber("bench/tput").wait()?;
    let n = count(size);
    let _kid = role(&[
        "zpub".into(),
        port.to_string(),
        size.to_string(),
        n.to_string(),
    ])?;
    sub.recv()?;
    let first = Instant::now();
    for _ in 1..n {
        sub.recv()?;
    }
    Ok(rate(n, size, first))
}

fn two_bridges(
    tag: &str,
    export_a: &str,
    export_b: &str,
) -> Result<(String, String, Vec<Kid>), Error> {
    let bus_a = format!("bridge-bench.{tag}.a.{}", std::process::id());
    let bus_b = format!("bridge-bench.{tag}.b.{}", std::process::id());
    let (pa, pb) = (free_port()?, free_port()?);
    let a = bridge(&bus_a, "a", export_a, pa, None)?;
    let b = bridge(&bus_b, "b", export_b, pb, Some(pa))?;
    Ok((bus_a, bus_b, vec![a, b]))
}

fn bridge_throughput(size: usize) -> Result<Rate, Error> {
    let (bus_a, bus_b, _bridges) = two_bridges(&format!("t{size}"), "source", "sink")?;
    let (_tx, mut rx) = busbar::join::<BytesMessage, BytesMessage>(
        Options::new(&bus_b, label!("sink"), TOKEN),
        Some(Duration::from_secs(30)),
    )?;
    let n = count(size);
    let _kid = role(&["bsend".into(), bus_a, size.to_string(), n.to_string()])?;
    rx.recv(None)?;
    let first = Instant::now();
    for _ in 1..n {
        rx.recv(None)?;
    }
    Ok(rate(n, size, first))
}

const WARMUP: usize = 2_000;
const ROUNDS: usize = 20_000;

fn percentiles(mut one_way: Vec<Duration>) -> (Duration, Duration) {
    one_way.sort();
    let at = |q: f64| one_way[((one_way.len() as f64 * q) as usize).min(one_way.len() - 1)];
    (at(0.50), at(0.99))
}

fn zenoh_latency() -> Result<(Duration, Duration), Error> {
    let port = free_port()?;
    let s = zenoh_session(Some(port), None)?;
    let sub = s.declare_subscriber("bench/pong").wait()?;
    let p = s
        .declare_publisher("bench/ping")
        .congestion_control(CongestionControl::Block)
        .wait()?;
    let _kid = role(&["zecho".into(), port.to_string()])?;
    while !p.matching_status().wait()?.matching() {
        std::thread::sleep(Duration::from_millis(10));
    }
    // The echo's publisher may match a moment after: ping until one comes back.
    loop {
        p.put(vec![0u8; 64]).wait()?;
        if sub.recv_timeout(Duration::from_millis(100))?.is_some() {
            break;
        }
    }
    let mut out = Vec::with_capacity(ROUNDS);
    for i in 0..WARMUP + ROUNDS {
        let t = Instant::now();
        p.put(vec![1u8; 64]).wait()?;
        sub.recv()?;
        if i >= WARMUP {
            out.push(t.elapsed() / 2);
        }
    }
    Ok(percentiles(out))
}

fn bridge_latency() -> Result<(Duration, Duration), Error> {
    let (bus_a, bus_b, _bridges) = two_bridges("lat", "ping", "echo")?;
    let _kid = role(&["becho".into(), bus_b])?;
    let (tx, mut rx) = busbar::join::<BytesMessage, BytesMessage>(
        Options::new(&bus_a, label!("ping"), TOKEN),
        Some(Duration::from_secs(30)),
    )?;
    let first = Selector::unicast("echo").ttl(Duration::from_secs(60));
    tx.send(Message::new(first, BytesMessage::new(0, vec![0u8; 64])))?;
    rx.recv(None)?;
    let to = Selector::unicast("echo");
    let mut out = Vec::with_capacity(ROUNDS);
    for i in 0..WARMUP + ROUNDS {
        let t = Instant::now();
        tx.send(Message::new(
            to.clone(),
            BytesMessage::new(0, vec![1u8; 64]),
        ))?;
        rx.recv(None)?;
        if i >= WARMUP {
            out.push(t.elapsed() / 2);
        }
    }
    Ok(percentiles(out))
}

fn run_role(args: &[String]) -> Result<(), Error> {
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .ok_or_else(|| Error::from("missing argument"))
    };
    match arg(0)?.as_str() {
        "zpub" => zpub(arg(1)?.parse()?, arg(2)?.parse()?, arg(3)?.parse()?),
        "zecho" => zecho(arg(1)?.parse()?),
        "bsend" => bsend(&arg(1)?, arg(2)?.parse()?, arg(3)?.parse()?),
        "becho" => becho(&arg(1)?),
        other => Err(format!("unknown role {other}").into()),
    }
}

fn human(bytes_per_sec: f64) -> String {
    if bytes_per_sec >= 1e9 {
        format!("{:.2} GB/s", bytes_per_sec / 1e9)
    } else {
        format!("{:.0} MB/s", bytes_per_sec / 1e6)
    }
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--role") {
        return run_role(&args[1..]);
    }
    // For a profiler: one side's throughput case alone.
    if let (Some(side @ ("--only-bridge" | "--only-zenoh")), Some(size)) =
        (args.first().map(String::as_str), args.get(1))
    {
        let size: usize = size.parse()?;
        let r = match side {
            "--only-bridge" => bridge_throughput(size)?,
            _ => zenoh_throughput(size)?,
        };
        println!("{side} {size} B: {:.1} k/s", r.msgs_per_sec / 1e3);
        return Ok(());
    }
    println!("| case | raw Zenoh pub→sub | busbar→bridge→Zenoh→bridge→busbar | ratio |");
    println!("|---|---|---|---|");
    for size in [1024usize, 64 << 10] {
        let z = zenoh_throughput(size)?;
        let b = bridge_throughput(size)?;
        println!(
            "| throughput {} KiB | {:.1} k/s ({}) | {:.1} k/s ({}) | {:.2}× |",
            size >> 10,
            z.msgs_per_sec / 1e3,
            human(z.bytes_per_sec),
            b.msgs_per_sec / 1e3,
            human(b.bytes_per_sec),
            b.msgs_per_sec / z.msgs_per_sec
        );
    }
    let (z50, z99) = zenoh_latency()?;
    let (b50, b99) = bridge_latency()?;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "| one-way latency 64 B, p50 | {:.1} µs | {:.1} µs | +{:.1} µs |",
        us(z50),
        us(b50),
        us(b50) - us(z50)
    );
    println!(
        "| one-way latency 64 B, p99 | {:.1} µs | {:.1} µs | +{:.1} µs |",
        us(z99),
        us(b99),
        us(b99) - us(z99)
    );
    Ok(())
}
