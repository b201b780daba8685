//! Mirrors ipmb 0.8.5's `examples/multiple_type.rs` against busbar: the
//! same calls in the same shape, so that code ported from ipmb keeps
//! working. An endpoint labelled `single-type` sends a `MyMessage`, one of
//! the three types of its `MultipleMessage` box, unicast to `a`.
//!
//! Differences, each marked below: the bus name is made unique per run
//! ([`busbar_tests::example_bus`]); ipmb's example sends for ever, once a
//! second, to an `a` that nobody runs (ipmb drops a message nobody takes,
//! busbar's unicast says `NoRoute`), so here it sends [`COUNT`] messages
//! 100 ms apart, and `ipmb-multiple-type receiver` is that `a`: it receives
//! them through the same box and prints each.

use busbar::{label, MessageBox, TypeUuid};
use busbar_tests::example_bus;
use serde::{Deserialize, Serialize};
use std::{thread, time::Duration};

/// How many messages the sender sends (ipmb: for ever).
const COUNT: usize = 3;

fn main() {
    // Not in ipmb: the receiver the example needs.
    if std::env::args().nth(1).as_deref() == Some("receiver") {
        return receiver();
    }

    let (sender, _) = busbar::join::<MultipleMessage, MultipleMessage>(
        busbar::Options::new(example_bus("com.solar"), label!("single-type"), ""),
        None,
    )
    .unwrap();

    for _ in 0..COUNT {
        sender
            .send(busbar::Message::new(
                busbar::Selector::unicast("a"),
                MultipleMessage::MyMessage(MyMessage {
                    foo: 10,
                    bar: false,
                }),
            ))
            .unwrap();

        thread::sleep(Duration::from_millis(100));
    }
}

/// `a`: prints `READY` once joined, then what each of [`COUNT`] messages was.
fn receiver() {
    let (_, mut receiver) = busbar::join::<MultipleMessage, MultipleMessage>(
        busbar::Options::new(example_bus("com.solar"), label!("a"), ""),
        None,
    )
    .unwrap();
    println!("READY");
    for _ in 0..COUNT {
        match receiver.recv(None).unwrap().payload {
            MultipleMessage::String(s) => println!("String {s:?}"),
            MultipleMessage::I32(i) => println!("I32 {i}"),
            MultipleMessage::MyMessage(m) => println!("MyMessage foo={} bar={}", m.foo, m.bar),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, TypeUuid)]
#[uuid = "7b07473e-9659-4d47-a502-8245d71c0078"]
struct MyMessage {
    foo: i32,
    bar: bool,
}

#[derive(MessageBox)]
enum MultipleMessage {
    String(String),
    I32(i32),
    MyMessage(MyMessage),
}
