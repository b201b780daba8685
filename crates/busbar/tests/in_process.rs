//! Behaviour that needs no second process: self-delivery, API guarantees.

use busbar::{
    join, label, EndpointReceiver, EndpointSender, Message, Options, RecvError, Selector, SendError,
};
use std::time::Duration;

const WAIT: Option<Duration> = Some(Duration::from_secs(30));

fn bus(name: &str) -> String {
    format!("in-process.{name}.{}", std::process::id())
}

#[test]
fn sender_and_receiver_halves_are_thread_safe() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<EndpointSender<String>>();
    send::<EndpointReceiver<String>>();
    send_sync::<busbar::MemoryRegion>();
}

#[test]
fn multicast_includes_the_sender_when_its_label_matches() {
    let bus = bus("self-multicast");
    let (a, mut a_rx) =
        join::<String, String>(Options::new(&bus, label!("team", "a"), "t"), WAIT).unwrap();
    let (_b, mut b_rx) =
        join::<String, String>(Options::new(&bus, label!("team", "b"), "t"), WAIT).unwrap();
    // `a` learns of `b` through the controller; wait for it with a ttl'd unicast as a fence.
    a.send(Message::new(
        Selector::unicast("b").ttl(Duration::from_secs(30)),
        "fence".into(),
    ))
    .unwrap();
    assert_eq!(b_rx.recv(WAIT).unwrap().payload, "fence");

    a.send(Message::new(
        Selector::multicast("team"),
        "all hands".into(),
    ))
    .unwrap();
    assert_eq!(a_rx.recv(WAIT).unwrap().payload, "all hands");
    assert_eq!(b_rx.recv(WAIT).unwrap().payload, "all hands");
    assert!(matches!(a_rx.try_recv(), Err(RecvError::Empty)));
    assert!(matches!(b_rx.try_recv(), Err(RecvError::Empty)));
}

#[test]
fn unicast_to_oneself_carries_descriptors() {
    let bus = bus("self-unicast");
    let (a, mut a_rx) =
        join::<String, String>(Options::new(&bus, label!("solo"), "t"), WAIT).unwrap();
    let file = std::fs::File::open("/proc/self/status").unwrap();
    let mut region = busbar::MemoryRegion::new(16).unwrap();
    region.map(..).unwrap()[..5].copy_from_slice(b"hello");
    let m = Message::new(Selector::unicast("solo"), "with attachments".to_string())
        .with_object(busbar::Object::from(file))
        .with_memory_region(region.clone());
    a.send(m).unwrap();
    let mut got = a_rx.recv(WAIT).unwrap();
    assert_eq!(got.objects.len(), 1);
    assert_eq!(&got.memory_regions[0].map(..5).unwrap()[..], b"hello");
    // Ours and the received one: the message's own handle handed its count over.
    assert_eq!(region.ref_count(), 2);
    drop(got);
    assert_eq!(region.ref_count(), 1);
}

#[test]
fn a_payload_over_the_limit_fails_at_send() {
    let bus = bus("too-large");
    let mut options = Options::new(&bus, label!("a"), "t");
    options.limits.max_payload = 1000;
    let (a, _a_rx) = join::<Vec<u8>, Vec<u8>>(options, WAIT).unwrap();
    let err = a
        .send(Message::new(Selector::unicast("a"), vec![7u8; 2000]))
        .unwrap_err();
    assert!(
        matches!(err, SendError::TooLarge { max: 1000, .. }),
        "{err}"
    );
    // Under the limit it goes.
    a.send(Message::new(Selector::unicast("a"), vec![7u8; 900]))
        .unwrap();
}

#[test]
fn a_payload_over_the_receivers_limit_is_dropped_unread_and_reported_once() {
    let bus = bus("too-large-in");
    let mut small = Options::new(&bus, label!("small"), "t");
    small.limits.max_payload = 1000;
    let (small_tx, mut small_rx) = join::<Vec<u8>, Vec<u8>>(small, WAIT).unwrap();
    let mut big = Options::new(&bus, label!("big"), "t");
    big.limits.max_payload = 1 << 20;
    let (big, _big_rx) = join::<Vec<u8>, Vec<u8>>(big, WAIT).unwrap();
    let to_small = || Selector::unicast("small").ttl(Duration::from_secs(30));
    // Through the ring (5000 bytes) and through a region (over 64 KiB),
    // to `recv` and to `recv_with`: each too large one is reported, then
    // the next message arrives.
    for size in [5000usize, 100 << 10] {
        big.send(Message::new(to_small(), vec![1u8; size])).unwrap();
        big.send(Message::new(to_small(), vec![2u8; 10])).unwrap();
        big.send(Message::new(to_small(), vec![3u8; size])).unwrap();
        big.send(Message::new(to_small(), vec![4u8; 10])).unwrap();
        match small_rx.recv(WAIT) {
            Err(RecvError::TooLarge {
                size: got,
                max: 1000,
            }) => assert!(got > size as u64),
            other => panic!("{size} bytes: {other:?}"),
        }
        assert_eq!(small_rx.recv(WAIT).unwrap().payload, vec![2u8; 10]);
        match small_rx.recv_with(WAIT, |m| m.bytes().map(|(_, b)| b.len())) {
            Err(RecvError::TooLarge { max: 1000, .. }) => {}
            other => panic!("{size} bytes, recv_with: {other:?}"),
        }
        assert_eq!(small_rx.recv(WAIT).unwrap().payload, vec![4u8; 10]);
    }
    let stats = small_tx.stats();
    assert_eq!(
        (stats.too_large, stats.malformed, stats.received),
        (4, 0, 4)
    );
    assert_eq!(
        stats.links_cut, 0,
        "a sender with a higher limit is not hostile"
    );
}

#[test]
fn waiting_messages_are_bounded_in_bytes_and_descriptors() {
    let bus = bus("pending-limits");
    let mut options = Options::new(&bus, label!("a"), "t");
    options.limits.max_pending_bytes = 10_000;
    options.limits.max_pending_descriptors = 2;
    let (a, _a_rx) = join::<Vec<u8>, Vec<u8>>(options, WAIT).unwrap();
    let later = || Selector::unicast("nobody-yet").ttl(Duration::from_secs(60));
    a.send(Message::new(later(), vec![0u8; 6000])).unwrap();
    let err = a.send(Message::new(later(), vec![0u8; 6000])).unwrap_err();
    assert!(matches!(err, SendError::PendingFull(_)), "{err}");
    let fds = || busbar::Object::from(std::fs::File::open("/dev/null").unwrap());
    let m = Message::new(later(), vec![])
        .with_object(fds())
        .with_object(fds())
        .with_object(fds());
    let err = a.send(m).unwrap_err();
    assert!(matches!(err, SendError::PendingFull(_)), "{err}");
    assert_eq!(a.pending(), 1);
}

/// Fills this endpoint's own queue with `try_send`s to itself; how many fit.
fn fill_own_queue(tx: &EndpointSender<u32>, to: &str) -> u32 {
    let mut n = 0;
    loop {
        match tx.try_send(Message::new(Selector::unicast(to), n)) {
            Ok(()) => n += 1,
            Err(SendError::Full {
                delivered: 0,
                full: 1,
            }) => return n,
            Err(e) => panic!("filling the own queue: {e}"),
        }
    }
}

/// `Block` blocks for one's own queue too: a sender whose receiver another
/// thread drains waits for room instead of failing (ipmb's `reliability`
/// multicasts to everyone, itself included, this way).
#[test]
fn block_waits_for_room_in_its_own_queue_drained_by_another_thread() {
    let bus = bus("own-block");
    let (tx, mut rx) = join::<u32, u32>(Options::new(&bus, label!("me"), "t"), WAIT).unwrap();
    // Full first, so that the first blocking send finds no room.
    let fitted = fill_own_queue(&tx, "me");
    const N: u32 = 5000;
    let drain = std::thread::spawn(move || {
        (0..fitted + N)
            .map(|_| rx.recv(WAIT).unwrap().payload)
            .collect::<Vec<u32>>()
    });
    for i in fitted..fitted + N {
        tx.send(Message::new(Selector::multicast(busbar::LabelOp::True), i))
            .unwrap();
    }
    assert_eq!(drain.join().unwrap(), (0..fitted + N).collect::<Vec<_>>());
}

/// Not waiting means not waiting: `try_send`, `send_timeout` and
/// `FailFast` report the full own queue as `Full`.
#[test]
fn try_send_and_send_timeout_report_a_full_own_queue() {
    let bus = bus("own-full");
    let (tx, mut rx) = join::<u32, u32>(Options::new(&bus, label!("me"), "t"), WAIT).unwrap();
    let fitted = fill_own_queue(&tx, "me");
    assert!(fitted > 0);
    let err = tx
        .send_timeout(
            Message::new(Selector::unicast("me"), 0),
            Duration::from_millis(20),
        )
        .unwrap_err();
    assert!(matches!(err, SendError::Full { .. }), "{err}");
    let fail_fast = Selector::unicast("me").backpressure(busbar::Backpressure::FailFast);
    let err = tx.send(Message::new(fail_fast, 0)).unwrap_err();
    assert!(matches!(err, SendError::Full { .. }), "{err}");
    // Everything that was accepted arrives, in order.
    for i in 0..fitted {
        assert_eq!(rx.recv(WAIT).unwrap().payload, i);
    }
    assert!(matches!(rx.try_recv(), Err(RecvError::Empty)));
}

/// Sending to oneself from inside a receive of the same endpoint, with the
/// queue full: only this thread could make room, so waiting would never
/// end and the send says so instead of hanging (the other receivers of a
/// multicast still get it).
#[test]
fn a_send_that_only_its_own_thread_could_make_room_for_fails_with_would_deadlock() {
    let bus = bus("own-deadlock");
    let (tx, mut rx) =
        join::<u32, u32>(Options::new(&bus, label!("me", "all"), "t"), WAIT).unwrap();
    let (_other, mut other_rx) =
        join::<u32, u32>(Options::new(&bus, label!("other", "all"), "t"), WAIT).unwrap();
    // A fence: `tx` knows of `other` once it arrives.
    let fence = Selector::unicast("other").ttl(Duration::from_secs(30));
    tx.send(Message::new(fence, 7)).unwrap();
    assert_eq!(other_rx.recv(WAIT).unwrap().payload, 7);

    tx.send(Message::new(Selector::unicast("me"), 1)).unwrap();
    let (fitted, unicast, multicast, timeout) = rx
        .recv_with(WAIT, |_| {
            let fitted = fill_own_queue(&tx, "me");
            let send = |s: Selector| tx.send(Message::new(s, 2)).unwrap_err();
            let unicast = send(Selector::unicast("me"));
            let multicast = send(Selector::multicast("all"));
            let timeout = tx
                .send_timeout(Message::new(Selector::unicast("me"), 3), WAIT.unwrap())
                .unwrap_err();
            (fitted, unicast, multicast, timeout)
        })
        .unwrap();
    assert!(fitted > 0);
    assert!(
        matches!(unicast, SendError::WouldDeadlock { delivered: 0 }),
        "{unicast}"
    );
    assert!(
        matches!(multicast, SendError::WouldDeadlock { delivered: 1 }),
        "{multicast}"
    );
    assert!(
        matches!(timeout, SendError::WouldDeadlock { delivered: 0 }),
        "{timeout}"
    );
    assert_eq!(
        other_rx.recv(WAIT).unwrap().payload,
        2,
        "the other receiver got the multicast"
    );
    // Outside the receive, the same thread may wait again: the queue
    // drains as it is read.
    for i in 0..fitted {
        assert_eq!(rx.recv(WAIT).unwrap().payload, i);
    }
    tx.send(Message::new(Selector::unicast("me"), 4)).unwrap();
    assert_eq!(rx.recv(WAIT).unwrap().payload, 4);
}

/// A sender waiting for room in its own queue stops waiting when the
/// receiver goes away; nothing hangs.
#[test]
fn a_sender_waiting_for_its_own_queue_returns_when_the_receiver_is_dropped() {
    let bus = bus("own-dropped");
    let (tx, rx) = join::<u32, u32>(Options::new(&bus, label!("me"), "t"), WAIT).unwrap();
    let fitted = fill_own_queue(&tx, "me");
    let dropper = std::thread::spawn(move || drop(rx));
    // Whether the receiver goes before this send or while it waits, the
    // send ends: nobody is there to take it any more.
    let r = tx.send(Message::new(Selector::unicast("me"), fitted));
    assert!(matches!(r, Err(SendError::NoRoute(_))), "{r:?}");
    dropper.join().unwrap();
}

/// A multicast nobody listens to is no failure; `require_receiver` makes
/// it one; with a ttl, a multicast waits for its first receiver.
#[test]
fn a_multicast_that_matches_nobody_is_not_an_error_unless_required() {
    let bus = bus("multicast-nobody");
    let (tx, _rx) = join::<String, String>(Options::new(&bus, label!("a"), "t"), WAIT).unwrap();
    tx.send(Message::new(Selector::multicast("nobody"), "x".into()))
        .unwrap();
    tx.send(Message::new(Selector::multicast(false), "x".into()))
        .unwrap();
    let err = tx
        .send(Message::new(
            Selector::multicast("nobody").require_receiver(),
            "x".into(),
        ))
        .unwrap_err();
    assert!(matches!(err, SendError::NoRoute(_)), "{err}");
    let err = tx
        .send(Message::new(Selector::unicast("nobody"), "x".into()))
        .unwrap_err();
    assert!(matches!(err, SendError::NoRoute(_)), "{err}");
    assert_eq!(tx.stats().sent, 0);

    // With a ttl it waits, and goes to every match there is when the first one joins.
    let later = Selector::multicast("late").ttl(Duration::from_secs(60));
    tx.send(Message::new(later, "waited".into())).unwrap();
    assert_eq!(tx.pending(), 1);
    let (_late, mut late_rx) =
        join::<String, String>(Options::new(&bus, label!("late"), "t"), WAIT).unwrap();
    assert_eq!(late_rx.recv(WAIT).unwrap().payload, "waited");
}

/// Messages waiting with a ttl for a receiver to appear reach it in the
/// order they were sent, however the receiver's arrival falls among the
/// sends. (The sender's thread retries the waiting messages in order while
/// its background thread lists the new receiver: a message that had just
/// found nobody must not be overtaken by the ones behind it that, a moment
/// later, found the receiver. It was, in most rounds of this test, until
/// the flush learnt to start again when the directory changes under it.)
/// Two endpoints of one process: what races is the sender's own two
/// threads, whatever process the receiver is in.
#[test]
fn messages_waiting_for_a_receiver_reach_it_in_order() {
    const N: u64 = 5_000;
    for round in 0..12u64 {
        let bus = bus(&format!("ttl-order-{round}"));
        let (producer, _p) =
            join::<u64, u64>(Options::new(&bus, label!("producer"), "t"), WAIT).unwrap();
        let to = Selector::unicast("sink").ttl(Duration::from_secs(60));
        let sending = std::thread::spawn(move || {
            for i in 0..N {
                producer.send(Message::new(to.clone(), i)).expect("send");
            }
            producer
        });
        // The receiver joins at a different moment among the sends each round.
        std::thread::sleep(Duration::from_micros(200 * round));
        let (_s, mut rx) = join::<u64, u64>(Options::new(&bus, label!("sink"), "t"), WAIT).unwrap();
        let mut got = Vec::with_capacity(N as usize);
        while got.len() < N as usize {
            got.push(rx.recv(WAIT).expect("every message arrives").payload);
        }
        let first_wrong = got.iter().enumerate().find(|(i, v)| **v != *i as u64);
        assert_eq!(first_wrong, None, "round {round}: out of order");
        drop(sending.join().unwrap());
    }
}
