//! Timeouts and departures: `recv` timing out, a killed peer leaving the directory.

use crate::harness::{bus_name, controller_holder, joined, Peer};

#[test]
fn recv_with_a_timeout_returns_timeout() {
    let bus = bus_name("timeout");
    let mut peer = Peer::start("idle", "expect-timeout", &bus, "idle", &["--ms", "300"]);
    peer.ready();
    let elapsed: u64 = peer
        .expect("TIMEOUT elapsed_ms=")
        .parse()
        .expect("a number");
    assert!(
        elapsed >= 300,
        "recv returned Timeout after {elapsed} ms, before its 300 ms were up"
    );
    peer.expect_line("EMPTY");
    peer.wait_success();
}

#[test]
fn peer_killed_mid_stream_leaves_the_directory() {
    let bus = bus_name("killed");
    let _holder = controller_holder(&bus);
    let (mut sink, _) = joined("sink", "stream-recv", &bus, "sink", &[]);
    let (mut victim, victim_ready) = joined(
        "victim",
        "stream",
        &bus,
        "victim",
        &[
            "--to",
            "sink",
            "--count",
            "1000000000",
            "--progress-at",
            "1000",
        ],
    );
    let (mut watcher, _) = joined("watcher", "send", &bus, "watcher", &[]);
    let listed = watcher.ask("endpoints");
    assert!(
        listed.contains(&format!("{}:victim:false", victim_ready.id)),
        "{listed}"
    );

    victim.expect_line("PROGRESS 1000");
    victim.kill9();
    assert_eq!(
        watcher.ask(&format!("wait-gone {}", victim_ready.id)),
        format!("GONE {}", victim_ready.id)
    );
    let listed = watcher.ask("endpoints");
    assert!(!listed.contains(&victim_ready.id), "{listed}");
    assert_eq!(
        listed.split(' ').count(),
        1 + 3,
        "holder, sink and watcher remain: {listed}"
    );

    // The receiver was not hurt by its sender dying: what it got was in
    // order, and it still takes messages from others.
    assert_eq!(watcher.ask("unicast 0 text:END sink"), "OK");
    let summary = sink.expect("STREAM ok received=");
    assert!(summary.parse::<u64>().is_ok(), "{summary}");
    sink.wait_success();
    watcher.wait_success();
}
