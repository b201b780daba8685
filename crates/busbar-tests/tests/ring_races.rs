//! A hostile sender changes the bytes of a frame in its ring *while* the
//! receiver decodes it there (`recv` decodes ring frames in place): the
//! receiver must never hand the application a value its checks did not
//! see. A `String` is the sharpest case: serde checks the bytes are UTF-8,
//! then copies them; if they change in between, the receiver holds a
//! `String` that is not UTF-8, which safe Rust promises never happens.
//!
//! One endpoint in this process receives `String`s; the test connects to
//! its data address as a hostile sender (`busbar_tests::fuzz_support::HostileRing`),
//! pushes frames of a long ASCII string into the ring, and has another
//! thread flip bytes of those strings between an ASCII letter and `0xff`
//! without pause.

use busbar::{label, Options, RecvError, Selector};
use busbar_tests::fuzz_support::{self, ring_layout as layout, HostileRing, Pushed};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes of the data area; frames are sized so that each record takes a
/// quarter of it, always at the same four places.
const CAPACITY: usize = 16 << 10;
const SLOT: usize = CAPACITY / 4;

/// How long the attack goes on when it finds nothing.
const ATTACK: Duration = Duration::from_secs(3);

#[test]
fn a_sender_racing_the_receivers_checks_never_gets_an_unchecked_value_through() {
    let bus = format!("bt.ring-races.{}", std::process::id());
    let (_tx, mut rx) =
        busbar::join::<String, String>(Options::new(&bus, label!("rx"), "ring-races"), None)
            .expect("join");
    let addr = format!("busbar/{bus}/{}", rx.id());

    // The hostile sender: a frame whose record fills one slot exactly.
    let socket = busbar_tests::connect_abstract(&addr);
    let mut ring = HostileRing::new(CAPACITY, 0).expect("ring");
    ring.hello(socket.as_fd(), 0x7ace, true).expect("hello");
    let selector = Selector::unicast("rx");
    let empty = fuzz_support::data_frame(&selector, &String::new(), 0).expect("frame");
    // 8 bytes of record header; the string's length prefix grows by one byte.
    let text_len = SLOT - 8 - empty.len() - 1;
    let to_rx = selector.clone();
    let frame_at = move |seq: u32| {
        let f = fuzz_support::data_frame(&to_rx, &"a".repeat(text_len), seq).expect("frame");
        assert_eq!(8 + layout::padded(f.len()), SLOT, "a record per slot");
        f
    };
    // Where the string's bytes are in each slot (file offsets).
    let text_start = 8 + empty.len() + 1;
    let spots: Vec<usize> = (0..4)
        .flat_map(|slot| {
            [0, text_len / 2, text_len - 1].map(|k| layout::DATA + slot * SLOT + text_start + k)
        })
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let flips = Arc::new(AtomicU64::new(0));
    let mut scribbler = ring.scribbler().expect("second mapping");
    let flipper = {
        let (stop, flips) = (stop.clone(), flips.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let byte = if n % 2 == 0 { 0xff } else { b'a' };
                for &at in &spots {
                    scribbler.write(at, &[byte]);
                }
                n += 1;
            }
            flips.store(n, Ordering::Relaxed);
        })
    };

    let pusher = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut seq = 0;
            while !stop.load(Ordering::Relaxed) {
                match ring.push(&frame_at(seq)) {
                    Pushed::Sent { .. } => seq += 1,
                    Pushed::Full => std::thread::yield_now(),
                    other => panic!("push: {other:?}"),
                }
            }
            (ring, socket, seq)
        })
    };

    let started = Instant::now();
    let (mut good, mut refused, mut broken) = (0u64, 0u64, Vec::new());
    while started.elapsed() < ATTACK && broken.is_empty() {
        match rx.recv(Some(Duration::from_millis(200))) {
            Ok(m) => {
                // Read the bytes as bytes: the String may not be what it claims.
                let bytes = m.payload.into_bytes();
                if std::str::from_utf8(&bytes).is_err() {
                    broken.push(bytes.iter().filter(|&&b| b == 0xff).count());
                } else {
                    good += 1;
                }
            }
            Err(RecvError::Decode(_)) => refused += 1,
            Err(RecvError::Timeout) => {}
            Err(e) => panic!("recv: {e}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    flipper.join().expect("flipper");
    let (_ring, _socket, sent) = pusher.join().expect("pusher");
    assert!(
        broken.is_empty(),
        "the receiver handed over {} String(s) that are not UTF-8 ({:?} bytes 0xff in them), \
         after {good} good ones and {refused} refused; {sent} sent, {} flips",
        broken.len(),
        broken,
        flips.load(Ordering::Relaxed)
    );
    assert!(good + refused > 0, "nothing arrived ({sent} sent)");
}
