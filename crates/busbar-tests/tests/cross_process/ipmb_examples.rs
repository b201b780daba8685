//! ipmb 0.8.5's examples, written against busbar the way ipmb's are
//! (`src/bin/ipmb/`, one binary each, the same calls in the same shape),
//! run as the processes they start: code ported from ipmb must keep
//! building and working, so a change that would break it fails here.

use crate::harness::{bus_name, Peer, GUARD};
use busbar::label;
use busbar_tests::{example_bus_with, EXAMPLE_BUS_ENV};
use std::process::Command;

/// Starts the example binary `bin` with `args`, its buses suffixed with `suffix`.
fn example(bin: &str, suffix: &str, args: &[&str]) -> Peer {
    let mut cmd = Command::new(bin);
    cmd.args(args).env(EXAMPLE_BUS_ENV, suffix);
    Peer::spawn(&format!("{bin} {}", args.join(" ")), cmd)
}

/// A bus suffix no other test run uses.
fn suffix(test: &str) -> String {
    bus_name(&format!("ipmb.{test}"))
}

/// ipmb's CI test: 10,000 multicasts to everyone, the sender's own
/// receiver (drained by a thread) included, under `Block`; a child that
/// dropped its receiver multicasts too; another joins and leaves. Every
/// `send(..).unwrap()` must succeed and every child finish.
#[test]
fn reliability() {
    let mut parent = example(
        env!("CARGO_BIN_EXE_ipmb-reliability"),
        &suffix("reliability"),
        &[],
    );
    parent.wait_success();
}

/// Three processes multicast to each other with a pooled 16-byte region;
/// each shows exactly 16 bytes to its receivers, and a multicast to `cc`,
/// whom nobody is, is no error.
#[test]
fn triangle() {
    let suffix = suffix("triangle");
    let bin = env!("CARGO_BIN_EXE_ipmb-triangle");
    let mut corners: Vec<(&str, Peer)> = ["a", "b", "c"]
        .into_iter()
        .map(|l| {
            let mut p = example(bin, &suffix, &[l]);
            p.expect_line(&format!("joined {l}"));
            (l, p)
        })
        .collect();
    // A few rounds: until each has heard from both others.
    for (me, peer) in &mut corners {
        let mut heard: Vec<String> = Vec::new();
        while heard.len() < 2 {
            let line = peer.line();
            if line.starts_with("ERROR") {
                peer.fail(&format!("a send failed: {line}"));
            }
            let from = line
                .strip_prefix("payload: from: ")
                .unwrap_or_else(|| peer.fail(&format!("expected a payload line, got {line:?}")));
            assert_ne!(from, *me, "a multicast to the other two reached its sender");
            let region = peer.line();
            assert_eq!(
                region,
                format!(
                    "region: {:x?}",
                    [0x2eu8].iter().chain(&[0; 15]).collect::<Vec<_>>()
                ),
                "the region is as long as allocated (16 bytes) and starts with 0x2e"
            );
            if !heard.iter().any(|h| h == from) {
                heard.push(from.to_string());
            }
        }
    }
    for (_, mut peer) in corners {
        peer.close_stdin();
        // Whatever else arrived is more of the same; no send failed.
        let rest = peer.remaining_lines();
        for pair in rest.chunks(2) {
            assert!(
                pair[0].starts_with("payload: from: ")
                    && pair.get(1).is_none_or(|r| r.starts_with("region: [2e, 0,")),
                "unexpected {pair:?}"
            );
        }
        peer.wait_success();
    }
}

/// One type of a three-type `MessageBox`, unicast to a receiver of the same box.
#[test]
fn multiple_type() {
    let suffix = suffix("multiple_type");
    let bin = env!("CARGO_BIN_EXE_ipmb-multiple-type");
    let mut receiver = example(bin, &suffix, &["receiver"]);
    receiver.expect_line("READY");
    let mut sender = example(bin, &suffix, &[]);
    for _ in 0..3 {
        receiver.expect_line("MyMessage foo=10 bar=false");
    }
    receiver.wait_success();
    sender.wait_success();
}

/// Join, leave, join again (hosting the bus both times), then receive:
/// a message from another endpoint ends the wait.
#[test]
fn rejoin() {
    let suffix = suffix("rejoin");
    let mut moon = example(env!("CARGO_BIN_EXE_ipmb-rejoin"), &suffix, &[]);
    moon.expect_line("Timeout");
    let bus = example_bus_with("com.solar", &suffix);
    let (sender, _receiver) =
        busbar::join::<(), ()>(busbar::Options::new(bus, label!("earth"), ""), Some(GUARD))
            .expect("join the rejoin example's bus");
    sender
        .send(busbar::Message::new(busbar::Selector::unicast("moon"), ()))
        .expect("send to moon");
    loop {
        match moon.line().as_str() {
            "Timeout" => continue,
            "Ok(())" => break,
            other => moon.fail(&format!("expected Ok(()), got {other:?}")),
        }
    }
    moon.wait_success();
}

/// A region's free callback runs once nothing holds it any more.
#[test]
fn region_free() {
    let mut p = example(env!("CARGO_BIN_EXE_ipmb-region-free"), "", &[]);
    p.expect_line("free");
    p.wait_success();
}

/// One receiver process per message size gets every message between the
/// `"0"` and the `"1"`.
#[test]
fn bench() {
    let mut p = example(env!("CARGO_BIN_EXE_ipmb-bench"), &suffix("bench"), &[]);
    for (i, (size, count)) in [
        (16, 20_000),
        (64, 10_000),
        (1024, 2_000),
        (4096, 1_000),
        (16384, 500),
    ]
    .into_iter()
    .enumerate()
    {
        let line = p.expect(&format!("receiver-{i}: "));
        // As in ipmb, the receiver counts the "0" too.
        assert!(
            line.starts_with(&format!("{size} B x {}: ", count + 1)),
            "receiver-{i}: every message arrived: {line}"
        );
    }
    p.wait_success();
}

/// A sender process's timestamped messages reach the parent.
#[test]
fn latency() {
    let mut p = example(env!("CARGO_BIN_EXE_ipmb-latency"), &suffix("latency"), &[]);
    for _ in 0..5 {
        let line = p.line();
        let ms = line.strip_suffix("ms").and_then(|v| v.parse::<f64>().ok());
        assert!(ms.is_some_and(|ms| ms >= 0.0), "a latency in ms: {line:?}");
    }
    p.wait_success();
}
