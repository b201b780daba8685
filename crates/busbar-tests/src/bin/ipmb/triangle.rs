//! Mirrors ipmb 0.8.5's `examples/triangle.rs` against busbar: the same
//! calls in the same shape, so that code ported from ipmb keeps working.
//!
//! Run as three processes, `a`, `b` and `c`: each multicasts a `MyMessage`
//! with a 16-byte region from a `MemoryRegistry` to the other two, and a
//! `BytesMessage` with a 32-byte region to `cc`, which nobody is (a
//! multicast nobody listens to is no error); a thread prints what arrives.
//!
//! Differences, each marked below: the bus name is made unique per run
//! ([`busbar_tests::example_bus`]); what ipmb logs is printed on stdout, one
//! line each, for the test to read; rounds are 100 ms apart instead of 2 s
//! and stop once stdin closes (ipmb's loop never ends).

use busbar::{label, MessageBox, TypeUuid};
use busbar_tests::example_bus;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::{
    env, thread,
    time::{Duration, SystemTime},
};

fn main() {
    let label = env::args().nth(1).unwrap();

    let target = match label.as_str() {
        "b" => busbar::LabelOp::from("a").or("c"),
        "c" => busbar::LabelOp::from("a").or("b"),
        _ => busbar::LabelOp::from("b").or("c"),
    };

    let mut options = busbar::Options::new(example_bus("com.solar"), label!(label), "");
    options.controller_affinity = true;

    let (sender, mut receiver) =
        busbar::join::<MyMessageBox, MyMessageBox>(options, None).expect("Join solar.com failed");
    // Not in ipmb: say when it has joined, and stop once stdin closes.
    println!("joined {label}");
    let stop = Arc::new(AtomicBool::new(false));
    let stopper = stop.clone();
    thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        stopper.store(true, Ordering::SeqCst);
    });

    thread::spawn(move || loop {
        let mut msg = receiver.recv(None).expect("Receive message failed");

        match msg.payload {
            MyMessageBox::MyMessage(payload) => {
                println!("payload: {}", payload.val);

                let mut region = msg.memory_regions.remove(0);
                println!("region: {:x?}", region.map(..).unwrap());
            }
            MyMessageBox::CMessage(_) => {}
            MyMessageBox::BytesMessage(bytes) => {
                println!("{bytes:?} region: {}", msg.memory_regions.len());
            }
        }
    });

    let mut registry = busbar::MemoryRegistry::default();

    while !stop.load(Ordering::SeqCst) {
        let mut msg = busbar::Message::new(
            busbar::Selector::multicast(target.clone()),
            MyMessageBox::MyMessage(MyMessage {
                create: SystemTime::now(),
                val: format!("from: {}", label),
            }),
        );

        let mut region = registry.alloc(16, None).unwrap();
        region.map(..).unwrap()[0] = 0x2e;

        msg.memory_regions.push(region);

        if let Err(err) = sender.send(msg) {
            println!("ERROR {:?}", err);
        }

        let mut msg = busbar::Message::new(
            busbar::Selector::multicast(busbar::LabelOp::from("cc")),
            MyMessageBox::BytesMessage(busbar::BytesMessage {
                format: 0,
                data: vec![0x01, 0x03, 0x05, 0x07].into(),
            }),
        );

        msg.memory_regions.push(registry.alloc(32, None).unwrap());

        if let Err(err) = sender.send(msg) {
            println!("ERROR {:?}", err);
        }

        thread::sleep(Duration::from_millis(100));
    }
}

#[derive(Debug, Serialize, Deserialize, TypeUuid)]
#[uuid = "d4adfc76-f5f4-40b0-8e28-8a51a12f5e46"]
pub struct MyMessage {
    create: SystemTime,
    val: String,
}

#[derive(Debug, Serialize, Deserialize, TypeUuid)]
#[uuid = "d4adfc76-f5f4-40b0-8e28-8a51a12f5e47"]
#[repr(C)]
pub struct CMessage {
    val: i32,
}

#[derive(Debug, MessageBox)]
pub enum MyMessageBox {
    MyMessage(MyMessage),
    CMessage(CMessage),
    BytesMessage(busbar::BytesMessage),
}
