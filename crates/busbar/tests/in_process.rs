//! Behaviour that needs no second process: self-delivery, API guarantees.

use busbar::{
    join, label, EndpointReceiver, EndpointSender, Message, Options, RecvError, Selector,
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
