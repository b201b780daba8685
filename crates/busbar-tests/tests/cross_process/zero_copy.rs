//! Zero-copy: loans sent to other processes, messages lent in place by
//! `recv_with`, and lent regions reused once every receiver let go.

use crate::harness::{bus_name, controller_holder, joined, payloads, Peer};
use busbar_tests::pattern_fnv1a;

/// The lines of a `borrow-recv` peer up to `END <n>`; checks it then exits.
fn borrowed(peer: &mut Peer) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        let line = peer.line();
        if line.strip_prefix("END ").and_then(|n| n.parse().ok()) == Some(got.len()) {
            break;
        }
        got.push(line);
    }
    peer.wait_success();
    got
}

#[test]
fn loans_multicast_to_recv_and_recv_with_arrive_byte_exact() {
    let bus = bus_name("loans");
    let _holder = controller_holder(&bus);
    // 64 MiB of data is over the default `max_payload` (with its header): raised on every side.
    let raised = ["--max-payload", "100000000"];
    let mut plain = joined("plain", "recv", &bus, "zc,plain", &raised).0;
    let mut lent = joined("lent", "borrow-recv", &bus, "zc,lent", &raised).0;
    let sizes = [0usize, 1, 4096, 100_000, 1 << 20, 64 << 20];
    let list: Vec<String> = sizes.iter().map(usize::to_string).collect();
    let (mut tx, _) = joined(
        "tx",
        "loan-send",
        &bus,
        "tx",
        &[
            "--to",
            "zc",
            "--multicast",
            "--sizes",
            &list.join(","),
            raised[0],
            raised[1],
        ],
    );
    tx.expect_line(&format!("SENT {}", sizes.len()));
    let want_plain: Vec<String> = sizes
        .iter()
        .enumerate()
        .map(|(format, &len)| {
            format!(
                "bytes format={format} len={len} fnv={:016x} pattern=true",
                pattern_fnv1a(len)
            )
        })
        .collect();
    assert_eq!(payloads(&plain.received()), want_plain);
    let want_lent: Vec<String> = sizes
        .iter()
        .enumerate()
        .map(|(format, &len)| format!("BORROWED format={format} len={len} pattern=true"))
        .collect();
    assert_eq!(borrowed(&mut lent), want_lent);
    tx.wait_success();
}

#[test]
fn recv_with_lends_ring_and_socket_frames_in_order() {
    let bus = bus_name("recvwith");
    let _holder = controller_holder(&bus);
    let mut rx = joined("rx", "borrow-recv", &bus, "rx", &[]).0;
    let (mut tx, _) = joined("tx", "send", &bus, "tx", &[]);
    // Small frames travel in the ring (lent in place), the 100 kB one on
    // the socket with its payload in a region: the order must hold across both.
    for cmd in [
        "unicast 0 seq:0 rx",
        "unicast 0 bytes:1:100000 rx",
        "unicast 0 seq:1 rx",
        "unicast 0 bytes:2:5 rx",
        "unicast 0 seq:2 rx",
        "unicast 0 text:END rx",
    ] {
        assert_eq!(tx.ask(cmd), "OK", "{cmd}");
    }
    assert_eq!(
        borrowed(&mut rx),
        [
            "SEQ 0",
            "BORROWED format=1 len=100000 pattern=true",
            "SEQ 1",
            "BORROWED format=2 len=5 pattern=true",
            "SEQ 2",
        ]
    );
    tx.close_stdin();
    tx.wait_success();
}

#[test]
fn a_lent_region_is_reused_once_every_receiver_dropped_it() {
    let bus = bus_name("loanreuse");
    let _holder = controller_holder(&bus);
    let mut rxs: Vec<Peer> = (0..3)
        .map(|i| {
            let name = format!("rx{i}");
            joined(&name, "borrow-recv", &bus, "many", &["--ack-to", "tx"]).0
        })
        .collect();
    let rounds = 10;
    let sizes = vec![(1 << 20).to_string(); rounds].join(",");
    let (mut tx, _) = joined(
        "tx",
        "loan-send",
        &bus,
        "tx",
        &[
            "--to",
            "many",
            "--multicast",
            "--sizes",
            &sizes,
            "--acks",
            "3",
        ],
    );
    // Every round's multicast went to three processes from one region, and
    // each round found the region free again: the pool never grew.
    for round in 0..rounds {
        let pool = tx.expect("POOL ");
        assert_eq!(pool, "1", "round {round}: the sender keeps {pool} regions");
    }
    tx.expect_line(&format!("SENT {rounds}"));
    for rx in &mut rxs {
        let got = borrowed(rx);
        assert_eq!(got.len(), rounds);
        assert!(
            got.iter().all(|l| l.ends_with("len=1048576 pattern=true")),
            "{got:?}"
        );
    }
    tx.wait_success();
}
