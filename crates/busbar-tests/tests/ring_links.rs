//! A data link whose sender owns the ring and writes garbage into it: the
//! receiving end (`InLink::read` and the receiver's `decode`, through
//! `busbar_tests::fuzz_support::RingLink`) never panics or hangs, delivers honest
//! messages byte for byte and in order unless the scribbles could have
//! changed them, and cuts the link when the ring is corrupt or the sender
//! sent `MAX_BAD_FRAMES` malformed frames.
//!
//! The property tests play random [`Episode`]s through the model in
//! `busbar_tests::rings` (which says what each scribble may do); the other
//! tests are single attacks with exact expectations. The ring's own
//! scribble tests (`sys/ring/tests.rs`) look at one ring; these look at
//! the link.

use busbar::{BytesMessage, Selector};
use busbar_tests::fuzz_support::{
    self, ring_layout as layout, FdSpec, HelloOutcome, HostileRing, Pushed, RawInput, RingLink,
    RingRead, SecondFd, MAX_BAD_FRAMES,
};
use busbar_tests::hostile::{self, Rng};
use busbar_tests::rings::{self, honest_message, Checks, Episode, Index, Op, Spot};
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// Random episodes.

const CHECKS: Checks = Checks {
    allow_lost_wakeups: false,
};

fn index() -> impl Strategy<Value = Index> {
    prop_oneof![
        2 => (1u64..600).prop_map(Index::Forward),
        1 => (1u64..8).prop_map(Index::Back),
        1 => (1u64..8).prop_map(Index::Misaligned),
        1 => (0u64..4).prop_map(Index::Far),
        1 => any::<u64>().prop_map(Index::Any),
    ]
}

fn spot(gentle: bool) -> BoxedStrategy<Spot> {
    let payload = (0usize..8, any::<u16>())
        .prop_map(|(nth, offset)| Spot::Payload {
            nth,
            offset: offset as usize,
        })
        .boxed();
    let free = any::<u16>()
        .prop_map(|offset| Spot::Free {
            offset: offset as usize,
        })
        .boxed();
    if gentle {
        return prop_oneof![payload, free].boxed();
    }
    prop_oneof![
        payload,
        free,
        (0usize..8, any::<u16>()).prop_map(|(nth, offset)| Spot::Live {
            nth,
            offset: offset as usize
        }),
        any::<u32>().prop_map(|offset| Spot::File {
            offset: offset as usize
        }),
    ]
    .boxed()
}

/// A lying frame: one the frame fuzzer makes (mostly honest frames made to
/// lie), seeded by proptest.
fn lie() -> impl Strategy<Value = Op> {
    (any::<u64>(), any::<bool>()).prop_map(|(seed, stamp)| Op::Lie {
        bytes: hostile::random_case(&mut Rng::new(seed)).build(0).bytes,
        stamp,
    })
}

fn op(capacity: usize, gentle: bool) -> BoxedStrategy<Op> {
    let len = prop_oneof![0usize..64, 0..capacity + capacity / 2];
    let send = (
        len.clone(),
        prop_oneof![4 => Just(0usize), 1 => 1usize..3],
        0u8..4,
    )
        .prop_map(|(len, objects, selector)| Op::Send {
            len,
            objects,
            selector,
        });
    let abandon = (len, any::<u16>()).prop_map(|(len, w)| Op::Abandon {
        len,
        written: w as usize % (len + 1),
    });
    let record = (
        spot(gentle),
        prop_oneof![
            Just(layout::KIND_FRAME),
            Just(layout::KIND_PAD),
            any::<u32>()
        ],
        prop_oneof![0u32..600, any::<u32>()],
    )
        .prop_map(|(at, kind, len)| Op::Record { at, kind, len });
    let bytes = (spot(gentle), proptest::collection::vec(any::<u8>(), 1..16))
        .prop_map(|(at, bytes)| Op::Bytes { at, bytes });
    let flag = (0u8..4, prop_oneof![0u32..3, any::<u32>()])
        .prop_map(|(word, value)| Op::Flag { word, value });
    let common = prop_oneof![
        8 => send,
        3 => (1u8..5).prop_map(Op::Read),
        2 => Just(Op::Drain),
        2 => Just(Op::Sleep),
        1 => Just(Op::Spin),
        2 => lie(),
        1 => abandon,
        3 => bytes,
        1 => flag,
    ];
    if gentle {
        return prop_oneof![6 => common, 1 => record].boxed();
    }
    prop_oneof![
        8 => common,
        1 => index().prop_map(Op::Tail),
        1 => index().prop_map(Op::Head),
        2 => record,
    ]
    .boxed()
}

fn episode(gentle: bool) -> impl Strategy<Value = Episode> {
    (
        prop_oneof![Just(256usize), Just(1024), Just(4096)],
        prop_oneof![Just(0u64), Just(u64::MAX - 7 - 64), any::<u64>()],
        any::<bool>(),
    )
        .prop_flat_map(move |(capacity, start, bell)| {
            (
                proptest::collection::vec(op(capacity, gentle), 1..120),
                prop_oneof![
                    2 => Just(None),
                    1 => Just(Some(Op::Close)),
                    1 => (0usize..300, 0usize..300).prop_map(|(len, w)| Some(Op::Die {
                        len,
                        written: w % (len + 1)
                    })),
                ],
            )
                .prop_map(move |(mut ops, end)| {
                    ops.extend(end);
                    Episode {
                        capacity,
                        start: start & !7,
                        bell,
                        ops,
                    }
                })
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Scribbles that leave the indices and every unread record header
    /// alone (frame bytes, free space, flags, lying frames, frames never
    /// committed): every honest message arrives, byte for byte and in
    /// order, nothing else is dropped, and the link is cut exactly after
    /// `MAX_BAD_FRAMES` malformed frames.
    #[test]
    fn scribbles_on_single_frames_leave_the_rest_of_the_link_intact(e in episode(true)) {
        if let Err(why) = rings::run_episode(&e, CHECKS) {
            prop_assert!(false, "{}", why);
        }
    }

    /// Any scribble at all: the receiving end never panics or hangs, never
    /// delivers what it should not, cuts the link when its ring is corrupt,
    /// and lets go of everything.
    #[test]
    fn any_scribble_is_survived_and_corruption_cuts_the_link(e in episode(false)) {
        if let Err(why) = rings::run_episode(&e, CHECKS) {
            prop_assert!(false, "{}", why);
        }
    }
}

/// A few thousand episodes of the fuzz loop's own generator.
#[test]
fn random_episodes_follow_the_model() {
    let mut rng = Rng::new(0x7269_6e67);
    for i in 0..2000 {
        let seed = rng.next_u64();
        let episode = rings::random_episode(&mut Rng::new(seed));
        if let Err(why) = rings::run_episode(&episode, CHECKS) {
            panic!("episode {i} (busbar-fuzz --replay-ring {seed:#x}): {why}");
        }
    }
}

// ---------------------------------------------------------------------------
// Single attacks.

fn frame(index: usize, len: usize, seq: u32) -> Vec<u8> {
    fuzz_support::data_frame(&Selector::unicast("a"), &honest_message(index, len), seq)
        .expect("frame")
}

fn delivered(read: RingRead) -> (u32, BytesMessage) {
    match read {
        RingRead::Delivered { seq, message } => (seq, message.payload),
        other => panic!("expected a message, got {other:?}"),
    }
}

/// A frame that does not parse, committed properly: the ring stays in step.
fn garbage(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8).collect()
}

#[test]
fn malformed_frames_in_the_ring_are_dropped_until_the_eighth_cuts_the_link() {
    let mut link = RingLink::open(1024, 0, true).expect("ring link");
    let mut seq = 0;
    for i in 0..MAX_BAD_FRAMES as usize - 1 {
        assert_eq!(link.push(&garbage(40 + i)), Pushed::Sent { woke: false });
        assert_eq!(
            link.push(&frame(i, i * 13, seq)),
            Pushed::Sent { woke: false }
        );
        seq += 1;
        assert!(matches!(link.read(), RingRead::Dropped), "garbage {i}");
        assert_eq!(delivered(link.read()), (seq - 1, honest_message(i, i * 13)));
    }
    assert_eq!(link.bad_frames(), MAX_BAD_FRAMES - 1);
    assert_eq!(link.push(&garbage(8)), Pushed::Sent { woke: false });
    assert_eq!(link.push(&frame(99, 1, seq)), Pushed::Sent { woke: false });
    assert!(matches!(
        link.read(),
        RingRead::Closed {
            cut: true,
            newly_bad: 1
        }
    ));
    assert!(!link.is_open());
    // The sender sees it at once: the receiver let go of the ring and the socket.
    assert!(link.ring().consumer_gone());
    assert!(link.receiver_hung_up());
    assert_eq!(link.push(&frame(100, 1, seq + 1)), Pushed::Gone);
}

#[test]
fn a_sender_that_dies_half_way_through_a_frame_leaves_only_whole_frames() {
    let mut link = RingLink::open(1024, 0, true).expect("ring link");
    for i in 0..3 {
        assert!(matches!(
            link.push(&frame(i, 10, i as u32)),
            Pushed::Sent { .. }
        ));
    }
    // Reserved, half written (a whole-looking header included), never committed.
    let next = frame(3, 60, 3);
    assert!(link.abandon(&next, next.len() / 2));
    link.ring().die();
    link.hang_up();
    assert_eq!(
        link.ring().scribble().load_u32(layout::CLOSED),
        Some(0),
        "a dead sender does not close its ring"
    );
    link.wake();
    for i in 0..3 {
        assert_eq!(delivered(link.read()), (i as u32, honest_message(i, 10)));
    }
    assert!(matches!(
        link.read(),
        RingRead::Closed {
            cut: false,
            newly_bad: 0
        }
    ));
}

#[test]
fn honest_frames_cross_the_wrap_of_the_indices_past_two_to_the_64() {
    let mut link = RingLink::open(256, u64::MAX - 7 - 512, true).expect("ring link");
    let start = link.producer_tail();
    for i in 0..200usize {
        let f = frame(i, (i * 37) % 150, i as u32);
        if link.push(&f) == Pushed::Full {
            // Only the padding to the end went in: the receiver reads it.
            assert!(matches!(link.read(), RingRead::Empty));
            assert!(matches!(link.push(&f), Pushed::Sent { .. }), "frame {i}");
        }
        assert_eq!(
            delivered(link.read()),
            (i as u32, honest_message(i, (i * 37) % 150))
        );
    }
    assert!(link.producer_tail() < start, "the indices wrapped");
    assert!(matches!(link.read(), RingRead::Empty));
}

/// Each of these producer indices can only read as corrupt: the next read cuts the link.
#[test]
fn an_impossible_producer_index_cuts_the_link_at_the_next_read() {
    /// The value to store, from the consumer's and the producer's index.
    type Value = fn(u64, u64) -> u64;
    let cases: [(&str, Value); 5] = [
        ("off alignment", |_, tail| tail + 4),
        ("more than the capacity ahead", |head, _| head + 256 + 8),
        ("behind the consumer", |head, _| head.wrapping_sub(8)),
        ("far behind", |head, _| head.wrapping_sub(1 << 40)),
        ("at the top of the range", |_, _| u64::MAX),
    ];
    for (what, value) in cases {
        let mut link = RingLink::open(256, 64, true).expect("ring link");
        for i in 0..2 {
            assert!(matches!(
                link.push(&frame(i, 5, i as u32)),
                Pushed::Sent { .. }
            ));
        }
        assert_eq!(delivered(link.read()).0, 0);
        let (head, tail) = (link.consumer_head(), link.producer_tail());
        link.ring()
            .scribble()
            .store_u64(layout::TAIL, value(head, tail));
        // The frame the consumer had already seen still comes; then the cut.
        let mut reads = Vec::new();
        while link.is_open() && reads.len() < 4 {
            reads.push(format!("{:?}", link.read()));
        }
        assert!(link.cut(), "{what}: {reads:?}");
        assert_eq!(link.bad_frames(), MAX_BAD_FRAMES, "{what}");
    }
}

/// Record headers that can only read as corrupt, written over the next
/// unread record: the read that reaches it cuts the link.
#[test]
fn an_impossible_record_header_cuts_the_link_when_it_is_reached() {
    let cases = [
        ("unknown kind", 0x4b4e_4f57, 16u32),
        ("zero", 0, 0),
        ("a frame longer than the ring", layout::KIND_FRAME, 256),
        (
            "a frame past the end of the data area",
            layout::KIND_FRAME,
            240,
        ),
        ("a frame past the producer index", layout::KIND_FRAME, 200),
        ("padding at the start", layout::KIND_PAD, 256),
    ];
    for (what, kind, len) in cases {
        let mut link = RingLink::open(256, 0, true).expect("ring link");
        let f = frame(0, 3, 0);
        assert!(matches!(link.push(&f), Pushed::Sent { .. }));
        assert!(matches!(link.push(&frame(1, 3, 1)), Pushed::Sent { .. }));
        assert_eq!(delivered(link.read()).0, 0);
        // The second frame's record is right after the first.
        let at = layout::DATA + 8 + layout::padded(f.len());
        link.ring()
            .scribble()
            .store_u64(at, layout::record(kind, len));
        let read = link.read();
        assert!(
            matches!(read, RingRead::Closed { cut: true, .. }),
            "{what}: {read:?}"
        );
    }
}

/// The bytes of a frame changed after it was committed: that frame may be
/// refused (or be something else), and the frames around it are untouched.
#[test]
fn a_frame_scribbled_after_its_commit_costs_that_frame_only() {
    let mut link = RingLink::open(1024, 0, true).expect("ring link");
    let lens = [5usize, 40, 7];
    for (i, &len) in lens.iter().enumerate() {
        assert!(matches!(
            link.push(&frame(i, len, i as u32)),
            Pushed::Sent { .. }
        ));
    }
    // The middle frame's magic.
    let second = layout::DATA + 8 + layout::padded(frame(0, 5, 0).len()) + 8;
    link.ring().scribble().write(second, b"XXXX");
    assert_eq!(delivered(link.read()), (0, honest_message(0, 5)));
    assert!(matches!(link.read(), RingRead::Dropped));
    assert_eq!(delivered(link.read()), (2, honest_message(2, 7)));
    assert_eq!(link.bad_frames(), 1);
}

/// A frame as large as the ring takes is still only a frame: checked, and delivered.
#[test]
fn a_frame_as_large_as_the_ring_is_checked_like_any_other() {
    let mut link = RingLink::open(1 << 15, 0, true).expect("ring link");
    let max = link.ring().max_frame_len();
    let overhead = frame(0, 0, 0).len() + 4;
    let big = frame(0, max - overhead, 0);
    assert!(
        big.len() <= max && big.len() > max - 16,
        "{} of {max}",
        big.len()
    );
    assert!(matches!(link.push(&big), Pushed::Sent { .. }));
    let (_, m) = delivered(link.read());
    assert_eq!(m.data.len(), max - overhead + 8);
    // Lying about its lengths: dropped.
    let mut lying = frame(1, max - overhead, 1);
    lying[16] ^= 1;
    assert!(matches!(link.push(&lying), Pushed::Sent { .. }));
    assert!(matches!(link.read(), RingRead::Dropped));
}

#[test]
fn hellos_with_a_ring_that_is_not_one_get_the_link_cut() {
    // Through the ring-aware entry point: rings with a broken header.
    let good = HostileRing::new(4096, 0).expect("ring");
    assert_eq!(
        fuzz_support::offer_ring(&good, SecondFd::Bell).expect("offer"),
        (HelloOutcome::Taken, false)
    );
    for (what, at, bytes) in [
        ("magic", 0, &b"BUSBRING"[..]),
        ("version", 8, &[9, 0, 0, 0][..]),
        ("header length", 12, &[0, 1, 0, 0][..]),
        ("capacity", 16, &[0, 32, 0, 0, 0, 0, 0, 0][..]),
        ("consumer index off alignment", layout::HEAD, &[3][..]),
    ] {
        let mut ring = HostileRing::new(4096, 0).expect("ring");
        ring.scribble().write(at, bytes);
        assert_eq!(
            fuzz_support::offer_ring(&ring, SecondFd::Bell).expect("offer"),
            (HelloOutcome::Cut, false),
            "{what}"
        );
    }
    for second in [
        FdSpec::Pipe,
        FdSpec::DevNull,
        FdSpec::Socket,
        FdSpec::Memfd {
            len: 8,
            contents: vec![],
            seals: 0,
        },
    ] {
        assert_eq!(
            fuzz_support::offer_ring(&good, SecondFd::Spec(second.clone())).expect("offer"),
            (HelloOutcome::Cut, false),
            "{second:?} as the eventfd"
        );
    }
    // Through the plain frame feeder: the ring slot holding something else.
    let full = fuzz_support::seal::SHRINK | fuzz_support::seal::GROW;
    for ring in [
        FdSpec::Pipe,
        FdSpec::DevNull,
        FdSpec::Memfd {
            len: 512 + 4096,
            contents: b"busbring".to_vec(),
            seals: 0,
        },
        FdSpec::Memfd {
            len: 512 + 4096,
            contents: b"busbring\x02\0\0\0\0\x02\0\0\0\x10\0\0\0\0\0\0".to_vec(),
            seals: full,
        },
        FdSpec::Memfd {
            len: 512 + 100,
            contents: vec![],
            seals: full,
        },
        FdSpec::Region(4096),
    ] {
        let report = fuzz_support::feed_link(vec![
            RawInput {
                bytes: fuzz_support::ring_hello(7, 1),
                fds: vec![ring.clone()],
            },
            RawInput {
                bytes: frame(0, 1, 0),
                fds: vec![],
            },
        ])
        .expect("feed");
        assert!(report.cut, "{ring:?} as the ring: {report:?}");
    }
}
