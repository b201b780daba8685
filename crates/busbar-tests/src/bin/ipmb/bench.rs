//! Mirrors ipmb 0.8.5's `examples/bench.rs` against busbar: the same calls
//! in the same shape, so that code ported from ipmb keeps working. The
//! parent, `sender`, starts one receiver process per message size and
//! sends it `"0"`, `count` strings of that size and `"1"`, unicast with a
//! 2 s ttl, ignoring what `send` returns; the receiver counts what came
//! between `"0"` and `"1"` and prints the rate.
//!
//! Differences, each marked below: the bus name is made unique per run
//! ([`busbar_tests::example_bus`]); the counts are small; the parent waits
//! until the receiver is in its directory instead of sleeping 2 s (a sleep
//! is no synchronisation on a loaded machine); the strings are a fixed
//! alphanumeric pattern instead of random ones; the receiver prints its
//! line on stdout (ipmb logs it) with the count, and without formatting
//! crates.

use busbar::label;
use busbar_tests::example_bus;
use std::{
    env,
    process::Command,
    thread,
    time::{Duration, Instant},
};

fn main() {
    let mut args = env::args();
    let command = args.next().unwrap();
    let label = args.next();

    match label {
        None => {
            let (sender, _) = busbar::join::<String, String>(
                busbar::Options::new(example_bus("bench.com"), label!("sender"), ""),
                None,
            )
            .unwrap();

            for (i, (message_size, count)) in [
                (1 << 4, 20_000),
                (1 << 6, 10_000),
                (1 << 10, 2_000),
                (1 << 12, 1_000),
                (1 << 14, 500),
            ]
            .into_iter()
            .enumerate()
            {
                let mut child = Command::new(command.clone())
                    .arg(format!("receiver-{i}"))
                    .spawn()
                    .unwrap();

                // Wait receiver (ipmb sleeps 2 s here).
                let name = format!("receiver-{i}");
                while !sender.endpoints().iter().any(|e| e.label.contains(&name)) {
                    thread::sleep(Duration::from_millis(1));
                }

                let mut selector = busbar::Selector::unicast(format!("receiver-{i}"));
                selector.ttl = Duration::from_secs(2);

                let msg = busbar::Message::new(selector.clone(), "0".to_string());
                let _ = sender.send(msg);

                // ipmb: random alphanumeric characters.
                let hello: String =
                    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                        .iter()
                        .cycle()
                        .take(message_size)
                        .map(|&b| char::from(b))
                        .collect();

                for _ in 0..count {
                    let msg = busbar::Message::new(selector.clone(), hello.clone());
                    let _ = sender.send(msg);
                }

                let msg = busbar::Message::new(selector, "1".to_string());
                let _ = sender.send(msg);

                child.wait().unwrap();
            }
        }
        Some(label) => {
            let (_, mut receiver) = busbar::join::<String, String>(
                busbar::Options::new(example_bus("bench.com"), label!(label), ""),
                None,
            )
            .unwrap();

            let mut start = None;
            let mut count = 0;
            let mut message_size = 0;

            loop {
                let msg = receiver.recv(None).unwrap();

                if msg.payload == "0" {
                    start = Some(Instant::now());
                }

                if msg.payload == "1" {
                    break;
                }

                count += 1;
                message_size = msg.payload.len();
            }

            let cost = start.expect("Lost start packet").elapsed().as_secs_f32();
            let packet = (count as f32 / cost) as usize;

            // ipmb logs size, rate and bandwidth; the test reads the count too.
            println!(
                "{label}: {message_size} B x {count}: {packet}/s, {} B/s",
                packet * message_size
            );
        }
    }
}
