//! Hostile senders that own the shared-memory ring of their link, against
//! a live receiving endpoint (`busbar-peer crash-sink`, which checks every
//! numbered message as it comes and counts its descriptors, memfds and
//! memfd mappings when asked) while an honest sender (`crash-send`,
//! messages through the ring and, with descriptors or large payloads,
//! through the socket) streams to it all along.
//!
//! The hostile senders are this test process (and, to die for real half
//! way through a frame, a copy of it: see [`hostile_ring_child`]). Each
//! connects to the receiver's data address, hands over a ring and an
//! eventfd in its hello as an honest sender does, sends a few honest text
//! messages, then: scribbles an index the receiver can only read as
//! corrupt; commits malformed frames; scribbles random bytes all over the
//! ring from another thread while pushing frames and lies; stalls with a
//! frame reserved and never committed; dies half way through a frame.
//!
//! The receiver must stay up and keep taking the honest stream (complete
//! and in order: the sink fails at the first message out of place), log
//! and cut the links it must cut, deliver what the hostile senders sent
//! honestly before they turned, and hold exactly the descriptors, memfds
//! and mappings it held before, once the hostile links are gone.

#[allow(dead_code)]
#[path = "cross_process/harness.rs"]
mod harness;

use busbar::Selector;
use busbar_tests::chaos::Chaos;
use busbar_tests::fuzz_support::{self, ring_layout as layout, HostileRing, Pushed};
use busbar_tests::hostile::{self, Rng};
use harness::{bus_name, Peer, GUARD};
use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What the receiver logs when it cuts a link for its ring.
const CORRUPT: &str = "cutting a link whose ring is corrupt";
/// What the receiver logs when it cuts a link for its frames.
const MALFORMED: &str = "disconnecting a peer after";
/// Where the child hostile sender finds its target.
const CHILD_ENV: &str = "BUSBAR_HOSTILE_RING_ADDR";

/// Connects a seqpacket socket to an abstract address.
fn connect(name: &str) -> OwnedFd {
    busbar_tests::connect_abstract(name)
}

/// A hostile sender's link: a socket to the receiver and a ring it owns.
struct Hostile {
    socket: OwnedFd,
    ring: HostileRing,
    seq: u32,
    name: String,
}

impl Hostile {
    /// Connects and sends the hello (ring and eventfd), as an honest sender does.
    fn connect(addr: &str, name: &str, capacity: usize) -> Hostile {
        let socket = connect(addr);
        let ring = HostileRing::new(capacity, 0).expect("ring");
        ring.hello(socket.as_fd(), 0x4057_11e0, true)
            .unwrap_or_else(|e| panic!("{name}: hello: {e}"));
        Hostile {
            socket,
            ring,
            seq: 0,
            name: name.to_string(),
        }
    }

    /// Pushes an honest text message into the ring (waiting for room, up to [`GUARD`]).
    fn text(&mut self, text: &str) -> Pushed {
        let frame = fuzz_support::data_frame(
            &Selector::unicast("sink"),
            &Chaos::Text(text.to_string()),
            self.seq,
        )
        .expect("a text frame");
        let pushed = self.push(&frame);
        if matches!(pushed, Pushed::Sent { .. }) {
            self.seq += 1;
        }
        pushed
    }

    fn push(&mut self, frame: &[u8]) -> Pushed {
        let deadline = Instant::now() + GUARD;
        loop {
            match self.ring.push(frame) {
                Pushed::Full if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                other => return other,
            }
        }
    }

    /// Waits until the receiver has let go of the link (it marks its end of
    /// the ring, and its socket hangs up).
    fn wait_cut(&self) {
        let deadline = Instant::now() + GUARD;
        while !(self.ring.consumer_gone() && hung_up(&self.socket)) {
            assert!(
                Instant::now() < deadline,
                "{}: the receiver still holds the link after {GUARD:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Whether the other end of `socket` hung up.
fn hung_up(socket: &OwnedFd) -> bool {
    use rustix::event::{poll, PollFd, PollFlags};
    let mut fds = [PollFd::new(socket, PollFlags::RDHUP)];
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
        && fds[0]
            .revents()
            .intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR)
}

/// The sink's `GOT <text>` lines (what hostile senders delivered), kept
/// aside while the test waits for the answers to its commands.
#[derive(Default)]
struct Got(Vec<String>);

impl Got {
    /// Sends `command` and returns the answer line, which starts with `prefix`.
    fn ask(&mut self, sink: &mut Peer, command: &str, prefix: &str) -> String {
        sink.tell(command);
        self.until(sink, prefix)
    }

    /// The next line that starts with `prefix` (the rest of it), keeping `GOT` lines.
    fn until(&mut self, sink: &mut Peer, prefix: &str) -> String {
        loop {
            let line = sink.line();
            if let Some(text) = line.strip_prefix("GOT ") {
                self.0.push(text.to_string());
            } else if let Some(rest) = line.strip_prefix(prefix) {
                return rest.to_string();
            } else {
                sink.fail(&format!("expected {prefix:?} or GOT, got {line:?}"));
            }
        }
    }

    /// Waits until the sink printed `GOT <text>` for each of `texts`.
    fn wait_for(&mut self, sink: &mut Peer, texts: &[String]) {
        while !texts.iter().all(|t| self.0.contains(t)) {
            let line = sink.line();
            match line.strip_prefix("GOT ") {
                Some(text) => self.0.push(text.to_string()),
                None => sink.fail(&format!("expected GOT lines {texts:?}, got {line:?}")),
            }
        }
    }

    /// The texts whose first word is `tag`, in the order they came.
    fn tagged(&self, tag: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|t| t.split('-').next() == Some(tag))
            .map(String::as_str)
            .collect()
    }
}

/// The honest stream's count at the sink, once it is at least `n`.
fn count(sink: &mut Peer, got: &mut Got, from: &str, n: u64) -> u64 {
    got.ask(sink, &format!("wait-count {from} 0 {n}"), "COUNT ")
        .parse()
        .unwrap_or_else(|_| sink.fail("bad COUNT answer"))
}

/// The honest stream goes on: `more` messages arrive after now.
fn still_receiving(sink: &mut Peer, got: &mut Got, from: &str, more: u64) {
    let now = count(sink, got, from, 0);
    count(sink, got, from, now + more);
}

/// Texts a hostile sender sends honestly before it turns: `<tag>-<i>`.
fn texts(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-{i}")).collect()
}

#[test]
fn hostile_rings_are_cut_and_the_receiver_goes_on() {
    let bus = bus_name("hostile-rings");
    let mut holder = Peer::start("holder", "crash-watch", &bus, "holder", &[]);
    assert!(holder.ready().controller);
    let mut sink = Peer::start("sink", "crash-sink", &bus, "sink", &["--no-affinity"]);
    let sink_id = sink.ready().id;
    let addr = format!("busbar/{bus}/{sink_id}");
    let mut got = Got::default();

    // The honest sender streams all along: small messages through the ring,
    // large ones, descriptors and regions through the socket.
    let mut sender = Peer::start(
        "sender",
        "crash-send",
        &bus,
        "sender",
        &[
            "--streams",
            "u:sink",
            "--attachments",
            "--seed",
            "7",
            "--no-affinity",
        ],
    );
    let from = sender.ready().id;
    // The baseline with the honest link up and nothing in flight.
    count(&mut sink, &mut got, &from, 20);
    let paused = sender.ask("pause");
    let n: u64 = paused
        .strip_prefix("PAUSED ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| sender.fail(&format!("bad PAUSED answer {paused:?}")));
    count(&mut sink, &mut got, &from, n);
    let baseline = got.ask(&mut sink, "baseline", "BASELINE ");
    sender.tell("resume");
    sender.expect_line("RESUMED");

    // 1. Honest texts, then a producer index off alignment: cut at the next look.
    let mut a = Hostile::connect(&addr, "a", 4096);
    let sent = texts("a", 5);
    for t in &sent {
        assert!(matches!(a.text(t), Pushed::Sent { .. }));
    }
    got.wait_for(&mut sink, &sent);
    let tail = a.ring.scribble().load_u64(layout::TAIL).expect("tail");
    a.ring.scribble().store_u64(layout::TAIL, tail + 4);
    // In case the receiver sleeps: something to look at.
    a.ring.ring_bell();
    a.wait_cut();
    sink.wait_stderr(CORRUPT);
    drop(a);
    still_receiving(&mut sink, &mut got, &from, 50);

    // 2. Malformed frames committed properly: cut after the eighth.
    let mut b = Hostile::connect(&addr, "b", 4096);
    let sent = texts("b", 3);
    for t in &sent {
        assert!(matches!(b.text(t), Pushed::Sent { .. }));
    }
    for i in 0..fuzz_support::MAX_BAD_FRAMES as usize {
        let pushed = b.push(&vec![0x5a; 20 + i]);
        assert!(
            matches!(pushed, Pushed::Sent { .. }),
            "b: malformed frame {i}: {pushed:?}"
        );
    }
    b.ring.ring_bell();
    b.wait_cut();
    sink.wait_stderr(MALFORMED);
    got.wait_for(&mut sink, &sent);
    drop(b);
    still_receiving(&mut sink, &mut got, &from, 50);

    // 3. Random bytes all over the ring from another thread, while frames
    //    and lies go in: the receiver reads the ring while it changes.
    let mut c = Hostile::connect(&addr, "c", 4096);
    let mut scribbler = c.ring.scribbler().expect("second mapping");
    let len = scribbler.len();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let started = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scribbled = started.clone();
    let scribbling = std::thread::spawn(move || {
        let mut rng = Rng::new(0x5c41_bb1e);
        let mut n = 0u64;
        while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
            let at = rng.below(len);
            match rng.below(4) {
                0 => {
                    let idx = rng.pick(&[layout::TAIL, layout::HEAD]);
                    let v = scribbler.load_u64(idx).unwrap_or(0);
                    scribbler.store_u64(idx, v.wrapping_add(8 * rng.below(4) as u64));
                }
                1 => {
                    let n = 1 + rng.below(16);
                    let bytes = rng.bytes(n);
                    scribbler.write(at, &bytes);
                }
                2 => {
                    let flag = rng.pick(&[layout::SLEEPING, layout::CLOSED, layout::ROOM]);
                    scribbler.store_u32(flag, rng.below(2) as u32);
                }
                _ => std::thread::yield_now(),
            }
            n += 1;
            scribbled.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        n
    });
    // The frames go in while the scribbler is at work, however the
    // threads are scheduled (on a loaded machine it may start late).
    while !started.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::yield_now();
    }
    let mut rng = Rng::new(0xc0ffee);
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until && !c.ring.consumer_gone() {
        // Honest frames of a type the sink skips: with the bytes changing
        // under the receiver, a text could come out as anything (see
        // `ring_races.rs`), and this test reads the sink's output as text.
        let frame = if rng.chance(50) {
            fuzz_support::data_frame(
                &Selector::unicast("sink"),
                &busbar::BytesMessage::new(7, format!("c-{}", c.seq).into_bytes()),
                c.seq,
            )
            .expect("frame")
        } else {
            hostile::random_case(&mut rng).build(c.seq).bytes
        };
        // Without waiting for room: the scribbler may make it look full for good.
        if frame.len() <= c.ring.max_frame_len()
            && matches!(c.ring.push(&frame), Pushed::Sent { .. })
        {
            c.seq += 1;
            c.ring.ring_bell();
        }
        std::thread::yield_now();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let scribbles = scribbling.join().expect("scribbler");
    assert!(scribbles > 0);
    drop(c);
    still_receiving(&mut sink, &mut got, &from, 50);

    // The links that follow end without a cut.
    let cuts = sink.stderr_count(CORRUPT) + sink.stderr_count(MALFORMED);

    // 4. A frame reserved and never committed, the link held open: the
    //    receiver takes what came before, and goes on with everyone else.
    let mut d = Hostile::connect(&addr, "d", 4096);
    let sent = texts("d", 3);
    for t in &sent {
        assert!(matches!(d.text(t), Pushed::Sent { .. }));
    }
    let stalled = fuzz_support::data_frame(
        &Selector::unicast("sink"),
        &Chaos::Text("d-never".into()),
        d.seq,
    )
    .expect("frame");
    assert!(d.ring.abandon(&stalled, stalled.len() - 3));
    got.wait_for(&mut sink, &sent);
    still_receiving(&mut sink, &mut got, &from, 200);
    drop(d);

    // 5. A process that dies half way through a frame (SIGKILL).
    let sent = texts("e", 3);
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "hostile_ring_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &addr)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the hostile child");
    // (The test harness prints `test hostile_ring_child ... ` before it, on the same line.)
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let midframe = lines.any(|l| l.is_ok_and(|l| l.ends_with("MIDFRAME")));
    assert!(midframe, "the child did not get half way through its frame");
    child.kill().expect("SIGKILL the child");
    let status = child.wait().expect("reap the child");
    assert!(!status.success(), "the child was killed: {status}");
    got.wait_for(&mut sink, &sent);
    still_receiving(&mut sink, &mut got, &from, 50);

    // Every hostile sender's honest texts arrived once each, in order, and
    // nothing of what they did not commit.
    for (tag, n) in [("a", 5), ("b", 3), ("d", 3), ("e", 3)] {
        assert_eq!(got.tagged(tag), texts(tag, n), "texts from hostile {tag}");
    }

    // The honest stream: whole and in order (the sink checked each one).
    sender.tell("stop");
    let total: u64 = sender
        .expect("SENT ")
        .parse()
        .unwrap_or_else(|_| sender.fail("bad SENT line"));
    assert_eq!(count(&mut sink, &mut got, &from, total), total);

    // Nothing of the hostile links is left in the receiver.
    let check = got.ask(&mut sink, "check", "CHECK ");
    assert!(
        check.starts_with("ok "),
        "the receiver's descriptors, memfds or mappings did not come back to {baseline}: {check}"
    );
    assert!(sink.stderr_count(CORRUPT) >= 1 && sink.stderr_count(MALFORMED) >= 1);
    assert_eq!(
        sink.stderr_count(CORRUPT) + sink.stderr_count(MALFORMED),
        cuts,
        "a link that stalled, or whose sender died, was cut"
    );
    sender.wait_success();
    sink.close_stdin();
    for line in sink.remaining_lines() {
        assert!(
            line.starts_with("GOT "),
            "the sink said {line:?} at the end"
        );
    }
    sink.wait_success();
    holder.wait_success();
}

/// The hostile child of [`hostile_rings_are_cut_and_the_receiver_goes_on`]
/// (nothing when run on its own): connects to the address it is given,
/// sends three texts, writes half of a fourth into the ring without
/// committing it, says `MIDFRAME`, and waits to be killed.
#[test]
fn hostile_ring_child() {
    let Ok(addr) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut e = Hostile::connect(&addr, "e", 4096);
    for t in texts("e", 3) {
        assert!(matches!(e.text(&t), Pushed::Sent { .. }));
    }
    let half = fuzz_support::data_frame(
        &Selector::unicast("sink"),
        &Chaos::Text("e-never".into()),
        e.seq,
    )
    .expect("frame");
    assert!(e.ring.abandon(&half, half.len() / 2));
    println!("MIDFRAME");
    std::thread::sleep(GUARD);
    // Never reached in the test: killed first. Keep the ring open until then.
    drop(e);
}
