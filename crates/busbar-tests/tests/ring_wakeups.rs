//! A receiver asleep on its links is woken by every frame a sender puts in
//! a link's ring, whatever the frame's size: two endpoints in this process,
//! talking through the public API only.
//!
//! A regression test for a lost wake-up that the ring fuzzing
//! (`busbar-fuzz --rings`) found (see the comment on the test); fixed by
//! `Producer::take_owed_wake`, which `OutLink` now pays when the ring is full.

use busbar::{label, BytesMessage, Message, Options, Selector};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the receiver waits in one `recv`: what a lost wake-up costs.
const RECV_TIMEOUT: Duration = Duration::from_secs(5);

/// Well under [`RECV_TIMEOUT`], far above what a wake-up takes.
const PROMPT: Duration = Duration::from_secs(2);

fn bus() -> String {
    format!("bt.ring-wakeups.{}", std::process::id())
}

/// A message that does not fit between the ring's write position and its
/// end, nor (with the padding that fills that end) in the whole ring,
/// reaches a receiver that went to sleep with the ring empty.
///
/// With a 4 KiB ring (`link_buffer` 4096), after two frames of ~1.3 KiB the
/// write position is ~2.5 KiB in; a frame of ~3 KiB then needs padding to
/// the end (~1.5 KiB) first, and the ring, empty, has room for the padding
/// but not for both. `Producer::reserve` publishes the padding alone and
/// answers `Full`; publishing lowers the sleeping receiver's flag (the
/// producer's half of the sleep handshake), but the link's producer wakes
/// its receiver through an eventfd (`set_external_wake`), which it rang
/// only when `Grant::commit` said the receiver slept: `reserve` dropped
/// that answer. The receiver slept on, its flag down; the sender waited for
/// room that only the receiver can make (it has to read the padding); the
/// frame arrived when the receiver's `recv` timed out and it looked again
/// (or never, with `recv(None)`).
#[test]
fn a_frame_that_needs_padding_wakes_a_sleeping_receiver() {
    send_to_a_sleeping_receiver("padding", &[1300, 1300, 3000]);
}

/// The control: the same, with a last frame that fits before the end of the
/// ring (no padding), passes.
#[test]
fn a_frame_that_fits_wakes_a_sleeping_receiver() {
    send_to_a_sleeping_receiver("fits", &[1300, 1300, 1000]);
}

/// Sends messages of these payload lengths through a 4 KiB ring, one at a
/// time, each once the receiver has the one before; before the last, the
/// receiver goes to sleep. Each must arrive within [`PROMPT`].
fn send_to_a_sleeping_receiver(name: &str, lens: &[usize]) {
    let bus = format!("{}.{name}", bus());
    let options = |name: &str| {
        let mut o = Options::new(&bus, label!(name), "ring-wakeups");
        o.limits.link_buffer = 4096;
        o
    };
    let (tx, _tx_rx) =
        busbar::join::<BytesMessage, BytesMessage>(options("tx"), None).expect("join tx");
    let (_rx_tx, mut rx) =
        busbar::join::<BytesMessage, BytesMessage>(options("rx"), None).expect("join rx");
    rx.set_spin(Duration::ZERO);
    let (got, arrivals) = mpsc::channel();
    let n = lens.len();
    let receiver = std::thread::spawn(move || {
        for _ in 0..n {
            let result = rx.recv(Some(RECV_TIMEOUT)).map(|m| m.payload.data.len());
            if got
                .send((result.map_err(|e| e.to_string()), Instant::now()))
                .is_err()
            {
                break;
            }
        }
    });
    let to_rx = Selector::unicast("rx").ttl(Duration::from_secs(10));
    for (i, &len) in lens.iter().enumerate() {
        if i + 1 == n {
            // Let the receiver go to sleep with its ring empty.
            std::thread::sleep(Duration::from_millis(200));
        }
        let sent = Instant::now();
        // `send` waits for room; in a thread of its own, so that a sender
        // stuck waiting does not keep the test from reporting.
        let tx = tx.clone();
        let to = to_rx.clone();
        let sender = std::thread::spawn(move || {
            tx.send(Message::new(to, BytesMessage::new(0, vec![7u8; len])))
        });
        let (result, at) = arrivals
            .recv_timeout(RECV_TIMEOUT + PROMPT)
            .expect("the receiver thread answers");
        assert_eq!(result, Ok(len), "message {i}");
        let took = at.duration_since(sent);
        assert!(
            took < PROMPT,
            "message {i} ({len} bytes) reached the sleeping receiver after {took:?}: lost wake-up"
        );
        sender.join().expect("sender thread").expect("send");
    }
    receiver.join().expect("receiver thread");
}
