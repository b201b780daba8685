//! Hostile clients against live endpoints: a raw seqpacket client (this
//! test process) connects to an endpoint's data address and to the bus
//! address, and sends garbage and lying frames, with and without
//! descriptors. The endpoint must not crash or hang, must go on receiving
//! from an honest sender in order, must cut and log each offender after
//! `MAX_BAD_FRAMES` malformed frames, and must not leak descriptors; the
//! controller must refuse garbage joins and still admit honest ones.

use crate::harness::{bus_name, joined, Peer, GUARD};
use busbar::Selector;
use busbar_tests::fuzz_support::{self, seal, FdSpec, RawInput, MAX_BAD_FRAMES, MAX_FDS_PER_FRAME};
use busbar_tests::hostile::{self, Base, Case, Field, HonestSpec, Mutation, REGION_MAGIC};
use rustix::io::Errno;
use rustix::net::{self, RecvFlags};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

/// What the endpoint logs when it cuts a link.
const CUT: &str = "malformed frames";

/// A raw client: a seqpacket socket connected to an abstract address.
struct Raw {
    fd: OwnedFd,
}

impl Raw {
    fn connect(name: &str) -> Raw {
        let fd = busbar_tests::connect_abstract(name);
        net::sockopt::set_socket_timeout(&fd, net::sockopt::Timeout::Recv, Some(GUARD))
            .expect("SO_RCVTIMEO");
        Raw { fd }
    }

    /// Sends a frame; `false` when the other side has closed the connection.
    fn send(&self, input: &RawInput) -> bool {
        match fuzz_support::send_raw(self.fd.as_fd(), input) {
            Ok(()) => true,
            Err(fuzz_support::Unsent::Refused(e))
                if matches!(
                    e.raw_os_error().map(Errno::from_raw_os_error),
                    Some(Errno::PIPE | Errno::CONNRESET)
                ) =>
            {
                false
            }
            Err(e) => panic!("raw send: {e}"),
        }
    }

    /// The next frame the other side sent; `None` once it closed the connection.
    fn recv(&self) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; fuzz_support::MAX_FRAME];
        match net::recv(&self.fd, &mut buf, RecvFlags::empty()) {
            Ok((0, _)) => None,
            Ok((n, _)) => {
                buf.truncate(n);
                Some(buf)
            }
            Err(Errno::CONNRESET) => None,
            Err(Errno::AGAIN) => {
                panic!("the connection is still open after {GUARD:?} (hang guard)")
            }
            Err(e) => panic!("raw recv: {e}"),
        }
    }

    /// Waits until the other side closes; the frames it sent before that.
    fn closed(&self) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        while let Some(f) = self.recv() {
            frames.push(f);
        }
        frames
    }
}

fn honest_spec() -> HonestSpec {
    HonestSpec {
        selector: Selector::unicast("target"),
        format: 7,
        len: 100,
        objects: 1,
        regions: vec![64],
        spill: false,
    }
}

fn lie(mutations: Vec<Mutation>) -> RawInput {
    Case {
        base: Base::Honest(honest_spec()),
        mutations,
    }
    .build(0)
}

fn hello(id: u64) -> RawInput {
    Case::hello(id).build(0)
}

/// The target's descriptor count.
fn fds(target: &mut Peer, stream: &mut Option<String>) -> usize {
    target.tell("fds");
    let line = next_line(target, stream);
    line.strip_prefix("FDS ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| target.fail(&format!("expected FDS <n>, got {line:?}")))
}

/// The target's next line, keeping aside the `STREAM ...` line, which comes whenever the stream ends.
fn next_line(target: &mut Peer, stream: &mut Option<String>) -> String {
    loop {
        let line = target.line();
        if line.starts_with("STREAM ") {
            *stream = Some(line);
        } else {
            return line;
        }
    }
}

/// The `STREAM ...` line, once the stream has ended; fails on any other line.
fn wait_stream(target: &mut Peer, stream: &mut Option<String>) -> String {
    if let Some(line) = stream.take() {
        return line;
    }
    let line = target.line();
    if !line.starts_with("STREAM ") {
        target.fail(&format!("expected the STREAM line, got {line:?}"));
    }
    line
}

/// Asks for the descriptor count until it is `want` (the endpoint notices a
/// closed link or control connection on its own time).
fn wait_fds(target: &mut Peer, stream: &mut Option<String>, want: usize) {
    let deadline = Instant::now() + GUARD;
    loop {
        let n = fds(target, stream);
        if n == want {
            return;
        }
        if Instant::now() >= deadline {
            target.fail(&format!(
                "has {n} descriptors open, {want} before the attack (leak?)"
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn wait_log_count(target: &Peer, needle: &str, want: usize) {
    let deadline = Instant::now() + GUARD;
    while target.stderr_count(needle) < want {
        if Instant::now() >= deadline {
            target.fail(&format!(
                "logged {needle:?} {} times, expected {want}",
                target.stderr_count(needle)
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Sends `frames` on a fresh connection to the target's data address and
/// checks that the target closes it; whether all were written before that.
fn session(addr: &str, frames: &[RawInput]) -> bool {
    let raw = Raw::connect(addr);
    let all_sent = frames.iter().all(|f| raw.send(f));
    let sent_back = raw.closed();
    assert!(sent_back.is_empty(), "a data link sent frames back");
    all_sent
}

#[test]
fn hostile_data_links_are_cut_and_honest_traffic_goes_on() {
    let bus = bus_name("hostile-data");
    let mut target = Peer::start("target", "hostile-recv", &bus, "target", &[]);
    let ready = target.ready();
    let mut stream = None;
    let before = fds(&mut target, &mut stream);

    // An honest sender streams all along (and joined after the target, so
    // its join is also honest traffic the target's controller serves).
    let (mut sender, _) = joined(
        "sender",
        "stream",
        &bus,
        "sender",
        &["--to", "target", "--count", "3000", "--pause-at", "1"],
    );
    sender.expect_line("PAUSED 1");
    sender.tell("go");

    let addr = format!("busbar/{bus}/{}", ready.id);
    let bad = MAX_BAD_FRAMES as usize;
    let mut cuts = 0;

    // 1. Data before any hello, however honest it looks.
    let frames: Vec<RawInput> = (0..bad).map(|_| lie(vec![])).collect();
    assert!(session(&addr, &frames), "cut before the {bad}th frame");
    cuts += 1;
    wait_log_count(&target, CUT, cuts);

    // 2. Garbage, some of it with descriptors attached.
    let mut frames = vec![hello(0xbad1)];
    frames.extend((0..bad).map(|i| RawInput {
        bytes: (0..=(i * 13) as u8).collect(),
        fds: if i % 2 == 0 {
            vec![FdSpec::Pipe; i]
        } else {
            vec![]
        },
    }));
    session(&addr, &frames);
    cuts += 1;
    wait_log_count(&target, CUT, cuts);

    // 3. A good message first (it arrives), then lies about descriptors.
    let full = seal::SHRINK | seal::GROW | seal::WRITE | seal::SEAL;
    let spilled = |fd: FdSpec| {
        Case {
            base: Base::Honest(HonestSpec {
                spill: true,
                ..honest_spec()
            }),
            mutations: vec![Mutation::PayloadFd(fd)],
        }
        .build(0)
    };
    let frames = vec![
        hello(0xbad2),
        lie(vec![]),
        // An unsealed memfd, with the region magic, as a region.
        lie(vec![Mutation::RegionFd(FdSpec::Memfd {
            len: 4096,
            contents: REGION_MAGIC.to_vec(),
            seals: 0,
        })]),
        // A payload memfd shorter than the header says.
        spilled(FdSpec::Memfd {
            len: 10,
            contents: vec![],
            seals: full,
        }),
        // A payload memfd the sender can still write.
        spilled(FdSpec::Memfd {
            len: 4096,
            contents: vec![],
            seals: 0,
        }),
        // Descriptors the header does not count, and counted ones missing.
        lie(vec![Mutation::ManyFds(3)]),
        lie(vec![Mutation::ManyFds(MAX_FDS_PER_FRAME - 2)]),
        lie(vec![Mutation::Field(Field::Objects, 2)]),
        // A pipe as a region.
        lie(vec![Mutation::RegionFd(FdSpec::Pipe)]),
        // A control frame on a data link.
        Case {
            base: Base::Join,
            mutations: vec![],
        }
        .build(0),
    ];
    session(&addr, &frames);
    cuts += 1;
    let got = next_line(&mut target, &mut stream);
    assert!(
        got.starts_with("GOT bytes format=7 len=100 ")
            && got.ends_with("pattern=true objects=1 regions=1"),
        "{got}"
    );
    wait_log_count(&target, CUT, cuts);

    // 4. A second hello, bad selectors, lying lengths, a frame too large.
    let frames = vec![
        hello(0xbad3),
        hello(0xbad3),
        lie(vec![Mutation::Selector(b"\x00a & (".to_vec())]),
        lie(vec![Mutation::Selector(b"\x07a".to_vec())]),
        lie(vec![Mutation::Field(
            Field::SelectorLen,
            u64::from(u32::MAX),
        )]),
        lie(vec![Mutation::Field(Field::PayloadLen, u64::MAX)]),
        lie(vec![Mutation::Truncate { keep: 47 }]),
        lie(vec![Mutation::Field(Field::Flags, 0x40)]),
        lie(vec![Mutation::Oversize { extra: 0 }]),
    ];
    session(&addr, &frames);
    cuts += 1;
    wait_log_count(&target, CUT, cuts);

    // 5. Random hostile frames from the fuzz loop's generator, the ones the
    //    model says must be dropped or skipped (so the target prints nothing).
    let mut rng = hostile::Rng::new(0x7a26e7);
    let mut frames = vec![hello(0xbad4)];
    let mut dropped = 0;
    while frames.len() < 100 || dropped < bad {
        let frame = hostile::random_case(&mut rng).build(0);
        match hostile::expect(&frame, true) {
            hostile::Expect::Drop => dropped += 1,
            hostile::Expect::Skip => {}
            _ => continue,
        }
        frames.push(frame);
    }
    session(&addr, &frames);
    cuts += 1;
    wait_log_count(&target, CUT, cuts);

    // 6. An empty frame reads as a hang-up: the link goes, nothing is logged.
    assert!(session(&addr, &[hello(0xbad5), RawInput::default()]));

    // The honest stream arrived whole and in order.
    assert_eq!(
        wait_stream(&mut target, &mut stream),
        "STREAM ok received=3000"
    );
    sender.expect_line("SENT 3000");
    sender.wait_success();

    // Everything the attacks and the sender opened in the target is closed again.
    wait_fds(&mut target, &mut stream, before);
    assert_eq!(target.stderr_count(CUT), cuts, "one log line per cut");
    target.wait_success();
}

#[test]
fn hostile_control_clients_are_refused_and_honest_joins_go_on() {
    let bus = bus_name("hostile-control");
    let mut target = Peer::start("target", "hostile-recv", &bus, "target", &[]);
    let ready = target.ready();
    assert!(ready.controller);
    let mut stream = None;
    let before = fds(&mut target, &mut stream);
    let addr = format!("busbar/{bus}");
    let token = "busbar-tests";
    let version = busbar::PROTOCOL_VERSION;
    let raw_join = |bytes: Vec<u8>, fds: Vec<FdSpec>| {
        let raw = Raw::connect(&addr);
        assert!(raw.send(&RawInput { bytes, fds }));
        raw.closed()
            .iter()
            .map(|f| {
                fuzz_support::decode_control(f).unwrap_or_else(|e| format!("undecodable: {e}"))
            })
            .collect::<Vec<String>>()
    };

    // Garbage, lies and refusals: one answer, then the connection closes.
    assert_eq!(raw_join(b"garbage".to_vec(), vec![]), ["Refuse(Malformed)"]);
    assert_eq!(
        raw_join(
            fuzz_support::join_frame(version, "wrong", 1, &["x"]),
            vec![]
        ),
        ["Refuse(Token)"]
    );
    assert_eq!(
        raw_join(
            fuzz_support::join_frame(version + 1, token, 2, &["x"]),
            vec![]
        ),
        [format!("Refuse(Version {{ controller: {version} }})")]
    );
    let mut truncated = fuzz_support::join_frame(version, token, 3, &["x"]);
    truncated.pop();
    assert_eq!(raw_join(truncated, vec![]), ["Refuse(Malformed)"]);
    // A join carrying descriptors is malformed (and they are closed).
    assert_eq!(
        raw_join(
            fuzz_support::join_frame(version, token, 4, &["x"]),
            vec![FdSpec::Pipe, FdSpec::Region(64)]
        ),
        ["Refuse(Malformed)"]
    );
    // An empty frame and an oversized one: closed without an answer.
    assert!(raw_join(Vec::new(), vec![]).is_empty());
    assert!(raw_join(vec![0; fuzz_support::MAX_FRAME + 10], vec![]).is_empty());

    // Admitted, then garbage: disconnected.
    let raw = Raw::connect(&addr);
    assert!(raw.send(&RawInput {
        bytes: fuzz_support::join_frame(version, token, 0x5eed, &["raw"]),
        fds: vec![],
    }));
    let welcome = raw.recv().expect("an answer");
    let welcome = fuzz_support::decode_control(&welcome).expect("a control frame");
    assert!(welcome.starts_with("Welcome"), "{welcome}");
    raw.send(&RawInput {
        bytes: b"\x00garbage after the welcome".to_vec(),
        fds: vec![FdSpec::Pipe],
    });
    raw.closed();
    drop(raw);

    // Honest endpoints still join and talk.
    let (mut sender, _) = joined(
        "sender",
        "stream",
        &bus,
        "sender",
        &["--to", "target", "--count", "100"],
    );
    sender.expect_line("SENT 100");
    sender.wait_success();
    assert_eq!(
        wait_stream(&mut target, &mut stream),
        "STREAM ok received=100"
    );

    wait_fds(&mut target, &mut stream, before);
    target.wait_success();
}
