//! `busbar::ring`, the named MPSC ring, across processes: ipmpsc's own
//! cases (its `src/lib.rs` tests: simple, zero copy, slow sender with
//! `recv_timeout`, slow receiver with `send_timeout`, arbitrary sequences
//! by proptest), then what ipmpsc's users live with: a sender `kill -9`ed
//! mid-send, a hostile writer, `create` on a ring in use, the file's mode
//! and removal, and learning that every sender is gone. Senders are
//! `busbar-ring-peer` processes.

use busbar::ring::{RingReceiver, RingSender};
use busbar::{RecvError, SendError};
use busbar_tests::named_ring::{intact, msg, Msg};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A hang guard, never a measure.
const GUARD: Duration = Duration::from_secs(60);

fn path(name: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("busbar-ring-{name}-{}-{n}", std::process::id()))
}

fn peer(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_busbar-ring-peer"))
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn busbar-ring-peer")
}

fn wait_ok(mut child: Child) {
    let status = child.wait().expect("wait for the peer");
    assert!(status.success(), "peer failed: {status}");
}

fn recv(rx: &mut RingReceiver) -> Msg {
    let m: Msg = rx.recv_timeout(GUARD).expect("a message");
    assert!(
        intact(&m),
        "message {} of sender {} is damaged",
        m.seq,
        m.id
    );
    m
}

/// Waits until every sender is gone: `Disconnected`, not a timeout.
fn expect_disconnected(rx: &mut RingReceiver) {
    match rx.recv_timeout::<Msg>(GUARD) {
        Err(RecvError::Disconnected) => {}
        other => panic!("expected Disconnected, got {other:?}"),
    }
}

/// ipmpsc's `simple`: one sender, one message, across processes.
#[test]
fn simple() {
    let p = path("simple");
    let mut rx = RingReceiver::create(&p, 1 << 16).unwrap();
    let child = peer(&["send", p.to_str().unwrap(), "1", "1", "3", "0"]);
    let m = recv(&mut rx);
    assert_eq!((m.id, m.seq, m.data.len()), (1, 0, 3));
    wait_ok(child);
    expect_disconnected(&mut rx);
}

/// ipmpsc's `zero_copy`: the receiver decodes a borrowing type in place.
#[test]
fn zero_copy() {
    #[derive(serde::Deserialize)]
    struct View<'a> {
        id: u32,
        seq: u64,
        #[serde(borrow)]
        data: &'a [u8],
    }
    let p = path("zero-copy");
    let mut rx = RingReceiver::create(&p, 1 << 20).unwrap();
    let child = peer(&["send", p.to_str().unwrap(), "7", "20", "100000", "0"]);
    for seq in 0..20 {
        let ok = rx
            .recv_with(Some(GUARD), |b| {
                let v: View<'_> = b.decode().expect("decode");
                v.id == 7 && v.seq == seq && v.data == msg(7, seq, 100_000).data.as_slice()
            })
            .unwrap();
        assert!(ok, "message {seq} is not what was sent");
    }
    // The raw bytes, in place.
    wait_ok(child);
    expect_disconnected(&mut rx);
}

/// Messages of a megabyte and more (streamed into the ring past the
/// sender's caches) arrive whole: a byte string inside a value and raw
/// bytes, just under, at and over the size where streaming starts, at odd
/// offsets in the record.
#[test]
fn large_messages_arrive_whole() {
    let p = path("large");
    let mut rx = RingReceiver::create(&p, 16 << 20).unwrap();
    let sizes = [(1 << 20) - 1, 1 << 20, (1 << 20) + 13, (3 << 20) + 5];
    let args: Vec<String> = sizes.iter().map(|s| s.to_string()).collect();
    let mut all = vec!["large", p.to_str().unwrap()];
    all.extend(args.iter().map(String::as_str));
    let child = peer(&all);
    for (seq, &size) in sizes.iter().enumerate() {
        let want = msg(1, seq as u64, size);
        let ok = rx
            .recv_with(Some(GUARD), |b| {
                let (s, data): (u64, &[u8]) = b.decode().expect("decode");
                s == seq as u64 && data == want.data.as_slice()
            })
            .unwrap();
        assert!(ok, "value {seq} ({size} bytes) is not what was sent");
        let ok = rx
            .recv_with(Some(GUARD), |b| b.bytes() == want.data.as_slice())
            .unwrap();
        assert!(ok, "raw message {seq} ({size} bytes) is not what was sent");
    }
    wait_ok(child);
    expect_disconnected(&mut rx);
}

/// ipmpsc's `slow_sender_with_recv_timeout`: the receiver times out while
/// the sender dawdles, and gets everything anyway.
#[test]
fn slow_sender_with_recv_timeout() {
    let p = path("slow-sender");
    let mut rx = RingReceiver::create(&p, 1 << 16).unwrap();
    let child = peer(&["send", p.to_str().unwrap(), "2", "5", "10", "300"]);
    let mut got = 0u64;
    let mut timeouts = 0;
    while got < 5 {
        match rx.recv_timeout::<Msg>(Duration::from_millis(10)) {
            Ok(m) => {
                assert!(intact(&m));
                assert_eq!(m.seq, got);
                got += 1;
            }
            Err(RecvError::Timeout) => timeouts += 1,
            Err(e) => panic!("{e}"),
        }
        assert!(timeouts < 100_000, "hang guard");
    }
    assert!(
        timeouts > 0,
        "a 10 ms timeout never ran out against a sender that sleeps 300 ms"
    );
    wait_ok(child);
    expect_disconnected(&mut rx);
}

/// ipmpsc's `slow_receiver_with_send_timeout`: a sender fills the ring,
/// `send_timeout` and `try_send` say `Full`, and everything arrives once
/// the receiver reads.
#[test]
fn slow_receiver_with_send_timeout() {
    let p = path("slow-receiver");
    let mut rx = RingReceiver::create(&p, 1 << 12).unwrap();
    let opener = std::thread::spawn({
        let p = p.clone();
        move || {
            let tx = RingSender::open(&p).unwrap();
            let mut sent = 0u64;
            let mut full = 0;
            while sent < 40 {
                match tx.send_timeout(&msg(3, sent, 500), Duration::from_millis(5)) {
                    Ok(()) => sent += 1,
                    Err(SendError::Full { .. }) => full += 1,
                    Err(e) => panic!("{e}"),
                }
            }
            assert!(matches!(
                tx.try_send(&msg(3, 40, 5000)),
                Err(SendError::TooLarge { .. })
            ));
            full
        }
    });
    // Serve the opener, then let the ring fill before reading.
    let mut got = 0;
    while rx.senders() == 0 {
        match rx.recv_timeout::<Msg>(Duration::from_millis(50)) {
            Ok(m) => {
                assert_eq!(m.seq, got);
                got += 1;
            }
            Err(RecvError::Timeout) => {}
            Err(e) => panic!("{e}"),
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    while got < 40 {
        let m = recv(&mut rx);
        assert_eq!(m.seq, got);
        got += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    let full = opener.join().unwrap();
    assert!(
        full > 0,
        "a 4 KiB ring took 40 messages of 500 bytes without ever being full"
    );
    expect_disconnected(&mut rx);
}

/// Many senders in many processes at once, each message checked.
#[test]
fn concurrent_senders() {
    let p = path("concurrent");
    let mut rx = RingReceiver::create(&p, 1 << 16).unwrap();
    let kids: Vec<Child> = (0..4)
        .map(|id| {
            peer(&[
                "send",
                p.to_str().unwrap(),
                &id.to_string(),
                "500",
                "3000",
                "0",
            ])
        })
        .collect();
    let mut next: HashMap<u32, u64> = HashMap::new();
    for _ in 0..2000 {
        let m = recv(&mut rx);
        let n = next.entry(m.id).or_default();
        assert_eq!(m.seq, *n, "sender {} out of order", m.id);
        *n += 1;
    }
    for k in kids {
        wait_ok(k);
    }
    expect_disconnected(&mut rx);
}

mod arbitrary {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]
        /// ipmpsc's `arbitrary_case`: any sequence of message sizes, from
        /// two senders, arrives whole and in each sender's order.
        #[test]
        fn arbitrary_sequences(a in prop::collection::vec(0usize..20_000, 1..40),
                               b in prop::collection::vec(0usize..20_000, 1..40)) {
            let p = path("arbitrary");
            let mut rx = RingReceiver::create(&p, 1 << 15).unwrap();
            let args = |id: &str, sizes: &[usize]| {
                let mut v = vec!["sizes".to_string(), p.to_str().unwrap().to_string(), id.to_string()];
                v.extend(sizes.iter().map(|s| s.to_string()));
                v
            };
            let spawn = |v: Vec<String>| {
                let v: Vec<&str> = v.iter().map(String::as_str).collect();
                peer(&v)
            };
            let ka = spawn(args("1", &a));
            let kb = spawn(args("2", &b));
            let mut next = [0usize; 2];
            for _ in 0..a.len() + b.len() {
                let m = recv(&mut rx);
                let (i, sizes) = if m.id == 1 { (0, &a) } else { (1, &b) };
                assert_eq!(m.seq as usize, next[i]);
                assert_eq!(m.data.len(), sizes[next[i]]);
                next[i] += 1;
            }
            wait_ok(ka);
            wait_ok(kb);
            expect_disconnected(&mut rx);
        }
    }
}

fn wait_ready(child: &mut Child) {
    let out = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(out)
        .read_line(&mut line)
        .expect("read the peer's stdout");
    assert_eq!(line.trim(), "ready");
}

/// A sender `kill -9`ed at a random point of its sends, 100 times, while
/// another sender goes on: the receiver never hangs, the dead sender's
/// claimed space is reclaimed (the survivor keeps sending into a small
/// ring), and every message that arrives is whole and in order.
#[test]
fn sender_killed_mid_send_100_times() {
    let p = path("kill9");
    let mut rx = RingReceiver::create(&p, 1 << 19).unwrap();
    rx.set_spin(Duration::ZERO);
    let mut survivor = peer(&["flood", p.to_str().unwrap(), "1000"]);
    let mut next: HashMap<u32, u64> = HashMap::new();
    let check = |rx: &mut RingReceiver, next: &mut HashMap<u32, u64>| -> u32 {
        let m = recv(rx);
        let n = next.entry(m.id).or_insert(m.seq);
        assert!(m.seq >= *n, "sender {} went backwards", m.id);
        if m.id == 1000 {
            assert_eq!(m.seq, *n, "the survivor lost a message");
        }
        *n = m.seq + 1;
        m.id
    };
    // The survivor's first message, and with it its connection served.
    check(&mut rx, &mut next);
    wait_ready(&mut survivor);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for round in 0..100u32 {
        let mut victim = peer(&["flood", p.to_str().unwrap(), &round.to_string()]);
        // Receive until the victim's first message (its open is served by these receives).
        while check(&mut rx, &mut next) != round {}
        wait_ready(&mut victim);
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        for _ in 0..(rng % 40) {
            check(&mut rx, &mut next);
        }
        victim.kill().expect("kill -9");
        victim.wait().unwrap();
        for _ in 0..(rng % 7) {
            check(&mut rx, &mut next);
        }
    }
    // The survivor still gets through, with all of the ring reclaimed.
    for _ in 0..200 {
        check(&mut rx, &mut next);
    }
    survivor.kill().unwrap();
    survivor.wait().unwrap();
    loop {
        match rx.recv_timeout::<Msg>(GUARD) {
            Ok(m) => assert!(intact(&m)),
            Err(RecvError::Disconnected) => break,
            Err(e) => panic!("{e}"),
        }
    }
}

/// A sender that scribbles over the shared memory: the receiver may get
/// damaged messages or an `InvalidData` error, but never panics, hangs or
/// reads outside the ring, and it learns when the senders are gone.
#[test]
fn hostile_writer_scribbles() {
    for seed in 1..=8u64 {
        let p = path(&format!("hostile-{seed}"));
        let mut rx = RingReceiver::create(&p, 1 << 14).unwrap();
        let child = peer(&["hostile", p.to_str().unwrap(), &seed.to_string()]);
        let mut outcome = "disconnected";
        for _ in 0..1000 {
            match rx.recv_with(Some(GUARD), |b| b.bytes().len()) {
                Ok(_) => {}
                Err(RecvError::Disconnected) => break,
                Err(RecvError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                    outcome = "corrupt";
                    break;
                }
                Err(e) => panic!("seed {seed}: {e}"),
            }
        }
        wait_ok(child);
        // Whatever the outcome, the receiver keeps answering without hanging.
        let _ = rx.try_recv::<Msg>();
        eprintln!("seed {seed}: {outcome}");
    }
}

/// `create` refuses a ring in use (ipmpsc truncates it), replaces a stale
/// socket file, makes it mode 0600, and the file goes away with the
/// receiver unless it was persisted.
#[test]
fn create_refuses_a_ring_in_use_and_cleans_up() {
    use std::os::unix::fs::PermissionsExt;
    let p = path("exclusive");
    let rx = RingReceiver::create(&p, 1 << 12).unwrap();
    let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let err = RingReceiver::create(&p, 1 << 12).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    drop(rx);
    assert!(!p.exists(), "the socket file outlived its receiver");
    let mut rx = RingReceiver::create(&p, 1 << 12).unwrap();
    rx.persist();
    drop(rx);
    assert!(p.exists(), "a persisted ring's file was removed");
    // A stale file: replaced.
    let rx = RingReceiver::create(&p, 1 << 12).unwrap();
    drop(rx);
    assert!(!p.exists());
    // Nobody there: open is refused.
    let err = RingSender::open(&p).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}

/// A sender learns that the receiver is gone.
#[test]
fn sender_learns_receiver_gone() {
    let p = path("receiver-gone");
    let mut rx = RingReceiver::create(&p, 1 << 12).unwrap();
    let opener = std::thread::spawn({
        let p = p.clone();
        move || RingSender::open(&p).unwrap()
    });
    while rx.senders() == 0 {
        let _ = rx.recv_timeout::<Msg>(Duration::from_millis(10));
    }
    let tx = opener.join().unwrap();
    tx.send(&1u32).unwrap();
    drop(rx);
    assert!(matches!(tx.send(&2u32), Err(SendError::Disconnected)));
}
