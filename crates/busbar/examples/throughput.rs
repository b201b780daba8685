//! One sender process streams messages to one receiver process; prints
//! messages/s and GB/s. Plain `send`/`recv`, or with `--loan` the
//! zero-copy pair (`loan` + `send_loan`, `recv_with`).
//!
//! ```text
//! cargo run --release -p busbar --example throughput -- [SIZE_BYTES] [COUNT] [--loan]
//! ```
use busbar::{join, label, BytesMessage, Message, Options, Selector};
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("__sink") {
        let (bus, count, loan) = (&args[2], args[3].parse::<u64>()?, args[4] == "1");
        let (_tx, mut rx) = join::<BytesMessage, BytesMessage>(
            Options::new(bus.as_str(), label!("sink"), "t"),
            Some(Duration::from_secs(5)),
        )?;
        let mut bytes = 0usize;
        let mut start = None;
        for _ in 0..count {
            let n = if loan {
                rx.recv_with(Some(Duration::from_secs(30)), |m| {
                    m.bytes().map_or(0, |(_, b)| {
                        b[0] as usize + b[b.len() - 1] as usize + b.len()
                    })
                })?
            } else {
                let m = rx.recv(Some(Duration::from_secs(30)))?;
                m.payload.data.len()
            };
            start.get_or_insert_with(Instant::now);
            bytes += n;
        }
        let t = start.map_or(Duration::ZERO, |s| s.elapsed());
        println!(
            "received {count} messages ({bytes} bytes) in {t:?}: {:.0} msg/s, {:.2} GB/s",
            count as f64 / t.as_secs_f64(),
            bytes as f64 / t.as_secs_f64() / 1e9
        );
        return Ok(());
    }
    let size: usize = args.get(1).map_or(Ok(16), |s| s.parse())?;
    let count: u64 = args.get(2).map_or(Ok(200_000), |s| s.parse())?;
    let loan = args.iter().any(|a| a == "--loan");
    let bus = format!("example.throughput.{}", std::process::id());
    let (tx, _rx) = join::<BytesMessage, BytesMessage>(
        Options::new(bus.as_str(), label!("source"), "t"),
        Some(Duration::from_secs(5)),
    )?;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args([
            "__sink",
            &bus,
            &count.to_string(),
            if loan { "1" } else { "0" },
        ])
        .spawn()?;
    while !tx.endpoints().iter().any(|e| e.label.contains("sink")) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let data = vec![7u8; size];
    let to = Selector::unicast("sink");
    for _ in 0..count {
        if loan {
            let mut l = tx.loan(0, size)?;
            l.as_mut_slice().copy_from_slice(&data);
            tx.send_loan(to.clone(), l)?;
        } else {
            tx.send(Message::new(to.clone(), BytesMessage::new(0, data.clone())))?;
        }
    }
    child.wait()?;
    Ok(())
}
