//! Buses on two or three "hosts" (distinct bus names on this machine, each
//! with its own busbar-bridge process, the bridges connected over
//! tcp/127.0.0.1 with scouting off), and what crosses between them.

mod common;

use busbar::{label, Message, Selector};
use common::*;

#[test]
fn unicast_across_and_answer_the_source() {
    let (bus_a, bus_b) = (bus("uni-a"), bus("uni-b"));
    let a = Bridge::start(&bus_a, "a", "alice", &[]);
    let _b = Bridge::start(&bus_b, "b", "bob", &[a.port]);
    let (alice, mut alice_rx) = join::<String>(&bus_a, label!("alice"));
    let (bob, mut bob_rx) = join::<String>(&bus_b, label!("bob"));

    // Alice's sender does not know bob is elsewhere: a ttl waits for him to appear.
    let to_bob = Selector::unicast("bob").ttl(GUARD);
    alice
        .send(Message::new(to_bob, "hello, bob".to_string()))
        .expect("send");
    let m = bob_rx.recv(Some(GUARD)).expect("bob receives");
    assert_eq!(m.payload, "hello, bob");
    // The source is bob's view of alice: her labels plus her host.
    let d = bob.endpoints();
    let source = d.iter().find(|e| e.id == m.source).expect("source listed");
    assert!(source.label.contains("alice") && source.label.contains("@host:a"));

    // Answering the source, by id, with no ttl.
    bob.send(Message::new(
        Selector::endpoint(m.source),
        "hello, alice".to_string(),
    ))
    .expect("answer");
    let back = alice_rx.recv(Some(GUARD)).expect("alice receives");
    assert_eq!(back.payload, "hello, alice");
    let d = alice.endpoints();
    let source = d.iter().find(|e| e.id == back.source).expect("listed");
    assert!(source.label.contains("bob") && source.label.contains("@host:b"));
}

#[test]
fn bridge_endpoints_and_proxies_are_labelled() {
    let (bus_a, bus_b) = (bus("lab-a"), bus("lab-b"));
    let a = Bridge::start(&bus_a, "a", "x", &[]);
    let _b = Bridge::start(&bus_b, "b", "y", &[a.port]);
    let (_x, _xr) = join::<String>(&bus_a, label!("x", "cam"));
    let (y, _yr) = join::<String>(&bus_b, label!("y"));
    let d = wait_directory(&y, "x from a", |d| {
        !with(d, &["x", "cam", "@host:a"]).is_empty()
    });
    let proxy = with(&d, &["x", "@host:a"])[0];
    assert!(
        proxy.label.iter().any(|i| i.starts_with("@remote:")),
        "{proxy:?}"
    );
    assert_eq!(with(&d, &["@bridge", "@host:b"]).len(), 1, "{d:#?}");
}

#[test]
fn type_id_and_large_payloads_cross_intact() {
    let (bus_a, bus_b) = (bus("big-a"), bus("big-b"));
    let limit = "max_payload = 67174400"; // 64 MiB and change: the payload plus its length
    let a = Bridge::start_with(&bus_a, "a", "src", &[], limit);
    let _b = Bridge::start_with(&bus_b, "b", "dst", &[a.port], limit);
    let opts = |bus: &str, l| {
        let mut o = busbar::Options::new(bus, l, TOKEN);
        o.limits.max_payload = 67_174_400;
        o
    };
    let (src, _sr) =
        busbar::join::<Vec<u8>, Vec<u8>>(opts(&bus_a, label!("src")), Some(GUARD)).expect("join");
    let (_dst, mut dst_rx) =
        busbar::join::<Vec<u8>, Vec<u8>>(opts(&bus_b, label!("dst")), Some(GUARD)).expect("join");
    let big: Vec<u8> = (0..64usize << 20)
        .map(|i| (i * 31 + i / 4099) as u8)
        .collect();
    src.send(Message::new(
        Selector::unicast("dst").ttl(GUARD),
        big.clone(),
    ))
    .expect("send 64 MiB");
    let m = dst_rx.recv(Some(GUARD)).expect("receive 64 MiB");
    assert_eq!(m.payload.len(), big.len());
    assert!(m.payload == big, "64 MiB crossed intact");
}
