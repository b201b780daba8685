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
