//! Mirrors ipmb 0.8.5's `examples/latency.rs` against busbar: the same
//! calls in the same shape, so that code ported from ipmb keeps working.
//! The parent joins as `receiver` and starts itself again as `sender`,
//! which unicasts a timestamped message to `receiver` every so often until
//! a send fails; the parent prints each message's latency.
//!
//! Differences, each marked below: the bus name is made unique per run
//! ([`busbar_tests::example_bus`]); the parent stops after [`COUNT`]
//! messages (ipmb's never does), and the sender sends every 100 ms
//! instead of every second.

use busbar::TypeUuid;
use busbar_tests::example_bus;
use serde::{Deserialize, Serialize};
use std::{
    env,
    process::Command,
    thread,
    time::{Duration, SystemTime},
};

/// How many messages the parent receives (ipmb: for ever).
const COUNT: usize = 5;

fn main() {
    let mut args = env::args();
    let command = args.next().unwrap();
    let arg = args.next();

    if arg.is_none() {
        let options = busbar::Options::new(
            example_bus("com.ipmb.latency"),
            busbar::label!("receiver"),
            "",
        );
        let (_, mut receiver) = busbar::join::<MyMessage, MyMessage>(options, None).unwrap();

        let mut child = Command::new(command).arg("arg").spawn().unwrap();

        let mut received = 0;
        while let Ok(message) = receiver.recv(None) {
            // ipmb unwraps: a clock stepped back would panic it.
            let d = SystemTime::now()
                .duration_since(message.payload.create)
                .unwrap_or_default();
            println!("{}ms", d.as_micros() as f64 / 1000.);
            // Not in ipmb: stop after a few.
            received += 1;
            if received == COUNT {
                break;
            }
        }

        child.kill().unwrap();
        // Not in ipmb: reap it.
        child.wait().unwrap();
    } else {
        let options = busbar::Options::new(
            example_bus("com.ipmb.latency"),
            busbar::label!("sender"),
            "",
        );
        let (sender, _) = busbar::join::<MyMessage, MyMessage>(options, None).unwrap();

        loop {
            let message = busbar::Message::new(
                busbar::Selector::unicast("receiver"),
                MyMessage {
                    create: SystemTime::now(),
                },
            );
            if sender.send(message).is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

#[derive(Debug, Serialize, Deserialize, TypeUuid)]
#[uuid = "d4adfc76-f5f4-40b0-8e28-8a51a12f5e46"]
pub struct MyMessage {
    create: SystemTime,
}
