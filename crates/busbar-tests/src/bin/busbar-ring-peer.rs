//! The other process of the named-ring tests (`tests/named_ring.rs`):
//! senders of many kinds, each a role.
//!
//! - `send PATH ID COUNT SIZE DELAY_MS`: sends COUNT [`Msg`]s of SIZE bytes,
//!   sleeping DELAY_MS between them.
//! - `sizes PATH ID SIZE...`: sends one [`Msg`] per size, in order.
//! - `flood PATH ID`: sends [`Msg`]s of varied sizes until killed (prints
//!   `ready` after its first send).
//! - `bus BUS COUNT`: joins the bus BUS and sends `0..COUNT` (u64) to the
//!   label `async` (not a ring: the async tests' bus source).
//! - `large PATH SIZE...`: per size, sends `(seq, bytes)` with the bytes
//!   as one byte string (postcard's `serialize_bytes`), then the same bytes
//!   raw with `send_bytes` (pieces of a megabyte or more are streamed
//!   into the ring: `sys/copy.rs`).
//! - `hostile PATH SEED`: sends a few messages, then scribbles over the
//!   ring's shared memory, and goes on sending (errors are fine).

use busbar::ring::RingSender;
use busbar_tests::named_ring::{msg, Msg, RawBytes};
use std::io::Write;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> &str {
        args.get(i)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("missing argument {i}"))
    };
    let num = |i: usize| -> u64 { arg(i).parse().expect("a number") };
    if arg(0) == "bus" {
        let options = busbar::Options::new(arg(1), busbar::label!("bus-source"), "t");
        let (tx, _rx) = busbar::join::<u64, u64>(options, None).expect("join");
        for n in 0..num(2) {
            let to = busbar::Selector::unicast("async").ttl(Duration::from_secs(60));
            tx.send(busbar::Message::new(to, n)).expect("bus send");
        }
        // Stay until the receiver had everything (it drops out of the bus then).
        std::thread::sleep(Duration::from_millis(500));
        return;
    }
    let tx = RingSender::open(arg(1)).expect("open the ring");
    match arg(0) {
        "send" => {
            let (id, count, size, delay) = (num(2) as u32, num(3), num(4) as usize, num(5));
            for seq in 0..count {
                tx.send(&msg(id, seq, size)).expect("send");
                if delay > 0 {
                    std::thread::sleep(Duration::from_millis(delay));
                }
            }
        }
        "sizes" => {
            let id = num(2) as u32;
            for (seq, i) in (3..args.len()).enumerate() {
                tx.send(&msg(id, seq as u64, num(i) as usize))
                    .expect("send");
            }
        }
        "flood" => {
            let id = num(2) as u32;
            let mut seq = 0u64;
            loop {
                let size = [0usize, 100, 5000, 40_000, 200_000][(seq % 5) as usize];
                let m: Msg = msg(id, seq, size);
                match tx.send_timeout(&m, Duration::from_secs(60)) {
                    Ok(()) => {}
                    Err(e) => {
                        eprintln!("flood {id}: {e}");
                        std::process::exit(3);
                    }
                }
                if seq == 0 {
                    println!("ready");
                    let _ = std::io::stdout().flush();
                }
                seq += 1;
            }
        }
        "large" => {
            for (seq, i) in (2..args.len()).enumerate() {
                let m = msg(1, seq as u64, num(i) as usize);
                tx.send(&(m.seq, RawBytes(&m.data))).expect("send");
                tx.send_bytes(&m.data, None).expect("send_bytes");
            }
        }
        "hostile" => {
            let seed = num(2);
            for seq in 0..10 {
                let _ = tx.send(&msg(99, seq, 1000));
            }
            busbar::testing::scribble_named_ring(&tx, 200, seed);
            for seq in 10..50 {
                let _ = tx.send_timeout(&msg(99, seq, 1000), Duration::from_millis(200));
            }
        }
        other => panic!("unknown role {other}"),
    }
}
