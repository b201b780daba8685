//! ipc-channel #240 (every received channel cost a descriptor until
//! `EMFILE`), as a test binary of its own: it counts this process's
//! descriptors, which no other test may change meanwhile.

use busbar::channel::{self, OneShotServer, Receiver, Sender};
use busbar_tests::chan::Cmd;
use std::process::Command;
use std::time::Duration;

/// A hang guard, never a measure.
const GUARD: Duration = Duration::from_secs(60);

/// Descriptors this process holds.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// ipc-channel #240: every received channel cost a descriptor until
/// `EMFILE`. Receive 10,000 senders and 10,000 receivers (each with a
/// message in it), use them, drop them: no descriptor more than before.
#[test]
fn ten_thousand_received_channels_hold_no_descriptor() {
    const COUNT: u32 = 10_000;
    let (server, name) = OneShotServer::<Sender<Cmd>>::new().expect("server");
    let mut child = Command::new(env!("CARGO_BIN_EXE_busbar-chan-peer"))
        .args(["serve", &name])
        .spawn()
        .expect("spawn busbar-chan-peer");
    let (_rx, cmds) = server.accept().expect("accept");
    let (senders, from_senders) = channel::channel::<Sender<u64>>().expect("channel");
    let (receivers, from_receivers) = channel::channel::<Receiver<u64>>().expect("channel");
    // Warm up (buffers, the peer's links to us), then count.
    cmds.send(Cmd::MakeChannels(1, senders.clone(), receivers.clone()))
        .expect("send");
    drop(from_senders.recv_timeout(GUARD).expect("sender"));
    drop(from_receivers.recv_timeout(GUARD).expect("receiver"));
    let before = open_fds();
    // Clones travel; the originals (and their descriptors) stay until the end.
    cmds.send(Cmd::MakeChannels(COUNT, senders.clone(), receivers.clone()))
        .expect("send");
    for n in 0..u64::from(COUNT) {
        let tx = from_senders.recv_timeout(GUARD).expect("sender");
        let rx = from_receivers.recv_timeout(GUARD).expect("receiver");
        assert_eq!(rx.recv_timeout(GUARD).expect("queued"), n);
        if n % 100 == 0 {
            tx.send(n).expect("use it");
            assert_eq!(rx.recv_timeout(GUARD).expect("ours"), n);
        }
    }
    assert_eq!(
        open_fds(),
        before,
        "descriptors held after dropping them all"
    );
    drop((senders, receivers, cmds));
    assert!(child.wait().expect("wait").success());
}
