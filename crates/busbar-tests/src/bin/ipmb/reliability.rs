//! Mirrors ipmb 0.8.5's `examples/reliability.rs` (ipmb's CI test) against
//! busbar: the same calls in the same shape, so that code ported from ipmb
//! keeps working. Differences, each marked below: the bus name is made
//! unique per run ([`busbar_tests::example_bus`]), the children's exit
//! status is checked, and the time limit is a hang guard (60 s, not 5 s).
//!
//! The parent joins as `0`, starts three children, drains its own receiver
//! on a thread and multicasts 10,000 messages to everyone, itself included,
//! with `send(..).unwrap()` under the default `Block` policy; child `1`
//! drains, child `2` drops its receiver and multicasts 10,000 to everyone,
//! child `3` joins and leaves at once.

use busbar::label;
use busbar_tests::example_bus;
use std::{
    env,
    process::Command,
    sync::mpsc::{self, RecvTimeoutError},
    thread,
    time::Duration,
};

/// ipmb waits 5 s for children 2 and 3; here that is only a hang guard.
const GUARD: Duration = Duration::from_secs(60);

fn main() {
    let mut args = env::args();
    let command = args.next().unwrap();

    match args.next() {
        None => {
            let (tx, mut rx) = busbar::join::<busbar::BytesMessage, busbar::BytesMessage>(
                busbar::Options::new(example_bus("reliability"), label!("0"), ""),
                None,
            )
            .unwrap();

            let mut wait_list = vec![];
            let mut kill_list = vec![];

            for i in 1..4 {
                let child = Command::new(command.clone())
                    .arg(i.to_string())
                    .spawn()
                    .unwrap();

                match i {
                    2 | 3 => {
                        wait_list.push(child);
                    }
                    _ => {
                        kill_list.push(child);
                    }
                }
            }

            thread::spawn(move || while rx.recv(None).is_ok() {});

            for _ in 0..10_000 {
                tx.send(busbar::Message::new(
                    busbar::Selector::multicast(busbar::LabelOp::True),
                    busbar::BytesMessage {
                        format: 0,
                        data: vec![0x00, 0x01, 0x02, 0x03].into(),
                    },
                ))
                .unwrap();
            }

            let (guard_tx, guard_rx) = mpsc::channel();

            thread::spawn(move || {
                for mut child in wait_list {
                    // Not in ipmb: a child that panicked fails the run too.
                    let status = child.wait().unwrap();
                    assert!(status.success(), "a child failed: {status}");
                }
                guard_tx.send(()).unwrap();
            });

            match guard_rx.recv_timeout(GUARD) {
                Err(RecvTimeoutError::Timeout) => {
                    for mut child in kill_list {
                        child.kill().unwrap();
                    }
                    panic!("Timeout");
                }
                // Not in ipmb: the waiting thread panicked (a child failed).
                Err(RecvTimeoutError::Disconnected) => {
                    for mut child in kill_list {
                        child.kill().unwrap();
                    }
                    panic!("a child failed");
                }
                _ => {
                    for mut child in kill_list {
                        child.kill().unwrap();
                    }
                }
            }
        }
        Some(i) => {
            let (tx, mut rx) = busbar::join::<busbar::BytesMessage, busbar::BytesMessage>(
                busbar::Options::new(example_bus("reliability"), label!(i.to_string()), ""),
                None,
            )
            .unwrap();

            match i.as_str() {
                "1" => {
                    drop(tx);
                    while rx.recv(None).is_ok() {}
                }
                "2" => {
                    drop(rx);
                    for _ in 0..10_000 {
                        tx.send(busbar::Message::new(
                            busbar::Selector::multicast(busbar::LabelOp::True),
                            busbar::BytesMessage {
                                format: 0,
                                data: vec![0x00, 0x01, 0x02, 0x03].into(),
                            },
                        ))
                        .unwrap();
                    }
                }
                _ => {
                    drop(tx);
                    drop(rx);
                }
            }
        }
    }
}
