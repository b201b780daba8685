//! The target of the hostile-input tests (`tests/cross_process/hostile.rs`).

use crate::common::{fd_count, join, Describe, Result, HANG};
use crate::Args;
use busbar::RecvError;
use busbar_tests::{Mixed, Seq, END};
use std::io::BufRead;

/// `hostile-recv`: receives until stdin closes, while raw clients attack it.
///
/// * `Seq`s must arrive 0, 1, 2, ... (an honest `stream` sender); at the
///   fence it prints `STREAM ok received=<n>` and goes on receiving.
/// * Any other message: `GOT <payload> objects=<n> regions=<n>`.
/// * A message of a known type that does not decode: `DECODE-ERROR <why>`.
/// * stdin command `fds`: `FDS <descriptors open in this process>`.
///
/// It exits 0 when stdin closes.
pub fn hostile_recv(args: &Args) -> Result {
    let (_tx, mut rx) = join::<Mixed, Mixed>(args)?;
    std::thread::spawn(|| {
        for line in std::io::stdin().lock().lines() {
            match line.as_deref() {
                Ok("fds") => match fd_count() {
                    Ok(n) => println!("FDS {n}"),
                    Err(e) => println!("FAIL {e}"),
                },
                Ok(other) => println!("FAIL unknown command {other:?}"),
                Err(_) => break,
            }
        }
        std::process::exit(0);
    });
    let mut next = 0u64;
    loop {
        match rx.recv(Some(HANG)) {
            Ok(m) => match m.payload {
                Mixed::Seq(Seq { n }) if n == next => next += 1,
                Mixed::Seq(Seq { n }) => return Err(format!("STREAM expected {next}, got {n}")),
                Mixed::Text(t) if t == END => println!("STREAM ok received={next}"),
                other => println!(
                    "GOT {} objects={} regions={}",
                    other.describe(),
                    m.objects.len(),
                    m.memory_regions.len()
                ),
            },
            Err(RecvError::Decode(e)) => println!("DECODE-ERROR {e}"),
            Err(RecvError::TooLarge { size, max }) => println!("TOO-LARGE size={size} max={max}"),
            Err(RecvError::Timeout) => {}
            Err(e) => return Err(format!("recv: {e}")),
        }
    }
}
