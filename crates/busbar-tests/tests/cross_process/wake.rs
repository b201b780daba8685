//! Waking a receiver from outside `recv`: its poll descriptor (`AsFd`) for
//! an application's own event loop, and `RecvWaker` for a receive blocked
//! in another thread. The messages come from another process.

use crate::harness::{bus_name, controller_holder, joined, GUARD};
use busbar::{label, Options, RecvError};
use busbar_tests::Mixed;
use rustix::event::{poll, PollFd, PollFlags};
use std::os::fd::AsFd;

/// The test process itself receives, labelled `rx`.
fn receiver(
    bus: &str,
) -> (
    busbar::EndpointSender<Mixed>,
    busbar::EndpointReceiver<Mixed>,
) {
    let options = Options::new(bus, label!("rx"), "busbar-tests");
    busbar::join::<Mixed, Mixed>(options, Some(GUARD)).expect("join")
}

/// Polls `rx`'s descriptor until it is readable; fails on the hang guard.
fn wait_readable(rx: &busbar::EndpointReceiver<Mixed>) {
    let guard = rustix::time::Timespec {
        tv_sec: GUARD.as_secs() as i64,
        tv_nsec: 0,
    };
    let fd = rx.as_fd();
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let n = poll(&mut fds, Some(&guard)).expect("poll");
    assert_eq!(
        n, 1,
        "the descriptor did not turn readable within {GUARD:?}"
    );
}

/// What `try_recv` takes until it says `Empty` (a readiness may be spurious).
fn drain(rx: &mut busbar::EndpointReceiver<Mixed>) -> Vec<Mixed> {
    let mut got = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(m) => got.push(m.payload),
            Err(RecvError::Empty) => return got,
            Err(e) => panic!("try_recv: {e}"),
        }
    }
}

#[test]
fn a_poll_loop_wakes_for_every_message_another_process_sends() {
    let bus = bus_name("poll-fd");
    let _holder = controller_holder(&bus);
    let (_own, mut rx) = receiver(&bus);
    let (mut tx, _) = joined("tx", "send", &bus, "tx", &[]);

    // Small messages (through the ring) and large ones (a region, with its
    // descriptor over the socket), one at a time: each must make the
    // descriptor readable by itself, with nobody inside `recv`.
    for i in 0..200u32 {
        assert!(drain(&mut rx).is_empty(), "nothing was sent yet");
        let payload = if i % 10 == 9 {
            "bytes:7:100000".to_string()
        } else {
            format!("text:m{i}")
        };
        assert_eq!(tx.ask(&format!("unicast 0 {payload} rx")), "OK");
        let mut got = Vec::new();
        while got.is_empty() {
            wait_readable(&rx);
            got = drain(&mut rx);
        }
        assert_eq!(got.len(), 1, "message {i}: {got:?}");
        match (&got[0], i % 10 == 9) {
            (Mixed::Text(t), false) => assert_eq!(t, &format!("m{i}")),
            (Mixed::Bytes(b), true) => assert_eq!((b.format, b.data.len()), (7, 100_000)),
            (other, _) => panic!("message {i}: unexpected {other:?}"),
        }
    }
    tx.close_stdin();
    tx.wait_success();
}

#[test]
fn a_woken_recv_returns_interrupted_and_loses_nothing() {
    let bus = bus_name("waker");
    let _holder = controller_holder(&bus);
    let (_own, mut rx) = receiver(&bus);
    let (mut tx, _) = joined("tx", "send", &bus, "tx", &[]);
    let waker = rx.waker();

    // A receive blocked in another thread, with nothing to receive, returns.
    let blocked = std::thread::spawn(move || {
        let out = rx.recv(None);
        (rx, out)
    });
    waker.wake();
    let (mut rx, out) = blocked.join().expect("receiving thread");
    assert!(matches!(out, Err(RecvError::Interrupted)), "{out:?}");

    // A message that is already there when a receive is interrupted stays
    // for the next one.
    assert!(drain(&mut rx).is_empty());
    assert_eq!(tx.ask("unicast 0 text:kept rx"), "OK");
    wait_readable(&rx);
    waker.wake();
    assert!(matches!(rx.recv(None), Err(RecvError::Interrupted)));
    match rx.recv(Some(GUARD)).map(|m| m.payload) {
        Ok(Mixed::Text(t)) => assert_eq!(t, "kept"),
        other => panic!("the message was lost to the wake: {other:?}"),
    }

    // One wake, one interruption: the receive after it waits for the next message.
    waker.wake();
    waker.wake();
    assert!(matches!(rx.recv(None), Err(RecvError::Interrupted)));
    assert_eq!(tx.ask("unicast 0 text:next rx"), "OK");
    match rx.recv(Some(GUARD)).map(|m| m.payload) {
        Ok(Mixed::Text(t)) => assert_eq!(t, "next"),
        other => panic!("{other:?}"),
    }

    // A waker outlives its endpoint harmlessly.
    drop(rx);
    waker.wake();
    tx.close_stdin();
    tx.wait_success();
}
