//! Ping-pong between two processes on one bus: prints the one-way latency
//! (half the round trip) of 64-byte messages.
//!
//! ```text
//! cargo run --release -p busbar --example pingpong
//! ```
use busbar::{join, label, BytesMessage, Message, Options, Selector};
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let rounds = 20_000;
    if args.get(1).map(String::as_str) == Some("pong") {
        let bus = &args[2];
        let (tx, mut rx) = join::<BytesMessage, BytesMessage>(
            Options::new(bus.as_str(), label!("pong"), "t"),
            Some(Duration::from_secs(5)),
        )?;
        if let Ok(us) = std::env::var("SPIN_US") {
            rx.set_spin(Duration::from_micros(us.parse()?));
        }
        for _ in 0..rounds + 1 {
            let m = rx.recv(Some(Duration::from_secs(10)))?;
            tx.send(Message::new(Selector::unicast("ping"), m.payload))?;
        }
        return Ok(());
    }
    let bus = format!("example.pingpong.{}", std::process::id());
    let (tx, mut rx) = join::<BytesMessage, BytesMessage>(
        Options::new(bus.as_str(), label!("ping"), "t"),
        Some(Duration::from_secs(5)),
    )?;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["pong", &bus])
        .spawn()?;
    while !tx.endpoints().iter().any(|e| e.label.contains("pong")) {
        std::thread::sleep(Duration::from_millis(1));
    }
    if let Ok(us) = std::env::var("SPIN_US") {
        rx.set_spin(Duration::from_micros(us.parse()?));
    }
    let data = vec![7u8; 64];
    let mut lat = Vec::with_capacity(rounds);
    for i in 0..rounds + 1 {
        let t = Instant::now();
        tx.send(Message::new(
            Selector::unicast("pong"),
            BytesMessage::new(0, data.clone()),
        ))?;
        rx.recv(Some(Duration::from_secs(10)))?;
        if i > 0 {
            lat.push(t.elapsed() / 2);
        }
    }
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "one-way latency, 64 B, {rounds} round trips: p50 {:?} p99 {:?} p99.9 {:?}",
        p(0.5),
        p(0.99),
        p(0.999)
    );
    child.wait()?;
    Ok(())
}
