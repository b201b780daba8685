//! Property tests: malformed, truncated and lying frames fed to busbar's
//! real receiving path (`busbar_tests::fuzz_support::feed_link`: `InLink::read`, then
//! the receiver's `decode`), judged frame by frame by the model in
//! `busbar_tests::hostile`.
//!
//! Every batch must follow the rules: nothing panics; a frame the model
//! finds malformed (bit flips, truncation, extension, lying selector and
//! payload lengths, wrong descriptor counts or kinds, unsealed memfds as
//! regions, short payload memfds, unknown flags and kinds, hello and
//! control frames where they do not belong, data before the hello) is
//! dropped and never delivered; a truthful frame is delivered byte for
//! byte, also after hostile ones; the link is cut exactly when it has sent
//! `MAX_BAD_FRAMES` malformed frames. Descriptor leaks are checked in
//! `hostile_leaks.rs`, a process of its own.

use busbar::{LabelOp, Selector};
use busbar_tests::fuzz_support::{
    self, seal, FdSpec, Outcome, RawInput, HEADER_LEN, MAX_BAD_FRAMES,
};
use busbar_tests::hostile::{self, Base, Case, Field, HonestSpec, Mutation, REGION_MAGIC};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

fn op() -> impl Strategy<Value = LabelOp> {
    let leaf = prop_oneof![
        Just(LabelOp::True),
        Just(LabelOp::False),
        "[a-z]{1,3}".prop_map(LabelOp::leaf),
        any::<String>().prop_map(LabelOp::leaf),
    ];
    leaf.prop_recursive(4, 16, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|o| !o),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| a.and(b)),
            (inner.clone(), inner).prop_map(|(a, b)| a.or(b)),
        ]
    })
}

fn selector() -> impl Strategy<Value = Selector> {
    (op(), any::<bool>()).prop_map(|(op, unicast)| {
        if unicast {
            Selector::unicast(op)
        } else {
            Selector::multicast(op)
        }
    })
}

fn honest() -> impl Strategy<Value = HonestSpec> {
    (
        selector(),
        any::<u16>(),
        prop_oneof![20 => 0usize..300, 1 => 60_000usize..70_000],
        0usize..4,
        vec(select(vec![0usize, 1, 64, 4096]), 0..3),
        any::<bool>(),
    )
        .prop_map(
            |(selector, format, len, objects, regions, spill)| HonestSpec {
                selector,
                format,
                len,
                objects,
                regions,
                spill: spill || len > 50_000,
            },
        )
}

fn fd() -> impl Strategy<Value = FdSpec> {
    use seal::*;
    prop_oneof![
        1 => Just(FdSpec::Pipe),
        1 => Just(FdSpec::DevNull),
        1 => Just(FdSpec::Socket),
        1 => select(vec![0usize, 1, 100, 4096]).prop_map(FdSpec::Region),
        1 => vec(any::<u8>(), 0..64).prop_map(FdSpec::Blob),
        3 => (
            select(vec![0u64, 8, 63, 64, 65, 4096]),
            any::<bool>(),
            vec(any::<u8>(), 0..16),
            prop_oneof![
                0u8..16,
                select(vec![SHRINK | GROW | SEAL, SHRINK | GROW | SEAL | WRITE, SHRINK | WRITE]),
            ],
        )
            .prop_map(|(len, magic, tail, seals)| {
                let mut contents = if magic { REGION_MAGIC.to_vec() } else { Vec::new() };
                contents.extend(tail);
                FdSpec::Memfd {
                    len,
                    contents,
                    seals,
                }
            }),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        2 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        1 => any::<usize>().prop_map(|keep| Mutation::Truncate { keep }),
        1 => vec(any::<u8>(), 1..16).prop_map(Mutation::Extend),
        1 => (0usize..64).prop_map(|extra| Mutation::Oversize { extra }),
        3 => (
            select(Field::ALL.to_vec()),
            prop_oneof![Just(0u64), 0u64..300, Just(u64::MAX), any::<u64>()],
        )
            .prop_map(|(f, v)| Mutation::Field(f, v)),
        1 => vec(any::<u8>(), 0..20).prop_map(Mutation::Selector),
        1 => vec(any::<u8>(), 0..20).prop_map(Mutation::Payload),
        2 => fd().prop_map(Mutation::PushFd),
        1 => Just(Mutation::PopFd),
        1 => (0usize..8, fd()).prop_map(|(at, spec)| Mutation::SwapFd { at, spec }),
        1 => select(vec![2usize, 10, 260]).prop_map(Mutation::ManyFds),
        1 => fd().prop_map(Mutation::RegionFd),
        1 => fd().prop_map(Mutation::PayloadFd),
    ]
}

fn base() -> impl Strategy<Value = Base> {
    prop_oneof![
        12 => honest().prop_map(Base::Honest),
        2 => any::<u64>().prop_map(Base::Hello),
        1 => Just(Base::Join),
        2 => vec(any::<u8>(), 0..100).prop_map(Base::Garbage),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (base(), vec(mutation(), 0..4)).prop_map(|(base, mutations)| Case { base, mutations })
}

/// A link's worth of frames: maybe a hello, hostile frames, honest ones last.
fn batch() -> impl Strategy<Value = Vec<Case>> {
    (
        prop::bool::weighted(0.85),
        any::<u64>(),
        vec(case(), 1..12),
        vec(honest(), 1..3),
    )
        .prop_map(|(hello, id, hostile, honest)| {
            let mut cases = Vec::new();
            if hello {
                cases.push(Case::hello(id));
            }
            cases.extend(hostile);
            cases.extend(honest.into_iter().map(Case::honest));
            cases
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The whole rule book, on random hostile batches.
    #[test]
    fn hostile_batches_follow_the_rules(cases in batch()) {
        if let Err(why) = hostile::run_batch(&cases) {
            return Err(TestCaseError::fail(why));
        }
    }

    /// Truthful frames after a hello are all delivered, in order, byte for byte.
    #[test]
    fn truthful_frames_are_delivered_exactly(specs in vec(honest(), 1..16), id in any::<u64>()) {
        let mut cases = vec![Case::hello(id)];
        cases.extend(specs.iter().cloned().map(Case::honest));
        let report = fuzz_support::feed_link(hostile::build_batch(&cases)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(!report.closed);
        for (spec, outcome) in specs.iter().zip(&report.outcomes[1..]) {
            match outcome {
                Outcome::Delivered(d) => {
                    prop_assert_eq!(&d.payload, &spec.message());
                    prop_assert_eq!(&d.selector, &spec.selector);
                    prop_assert_eq!(d.objects, spec.objects);
                    prop_assert_eq!(&d.regions, &spec.regions);
                }
                other => prop_assert!(false, "not delivered: {:?}", other),
            }
        }
    }

    /// Data frames before the hello are never delivered, however honest.
    #[test]
    fn nothing_is_delivered_before_the_hello(cases in vec(case(), 1..12)) {
        let no_hello: Vec<Case> = cases.into_iter().filter(|c| !matches!(c.base, Base::Hello(_))).collect();
        let inputs = hostile::build_batch(&no_hello);
        let report = fuzz_support::feed_link(inputs.clone()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let tally = hostile::judge(&no_hello, &inputs, &report).map_err(TestCaseError::fail)?;
        // A mutated frame may turn into a hello; before one, nothing arrives.
        let first_hello = report.outcomes.iter().position(|o| matches!(o, Outcome::Hello)).unwrap_or(report.outcomes.len());
        prop_assert!(report.outcomes[..first_hello].iter().all(|o| !matches!(o, Outcome::Delivered(_))));
        prop_assert!(tally.dropped <= u64::from(MAX_BAD_FRAMES));
    }

    /// `check_frame` agrees with a frame's own lengths, whatever they say.
    #[test]
    fn check_accepts_only_consistent_lengths(sel in 0u16..64, payload in 0u64..64, body in 0usize..140, fds in 0usize..4, n_objects in 0u8..4) {
        let mut h = fuzz_support::FrameHeader::data();
        h.selector_len = sel;
        h.payload_len = payload;
        h.n_objects = n_objects;
        let mut bytes = h.encode().to_vec();
        bytes.resize(HEADER_LEN + body, 0);
        let consistent = body as u64 == u64::from(sel) + payload && fds == usize::from(n_objects);
        prop_assert_eq!(fuzz_support::check_frame(&bytes, fds).is_ok(), consistent);
    }
}

/// The cases the brief names, one by one, each on a link of its own.
#[test]
fn named_lies_are_dropped_and_honest_frames_after_them_arrive() {
    let spec = HonestSpec {
        selector: Selector::unicast("a & !b"),
        format: 1,
        len: 10,
        objects: 1,
        regions: vec![64],
        spill: false,
    };
    let lies: Vec<(&str, Vec<Mutation>)> = vec![
        ("truncated", vec![Mutation::Truncate { keep: 50 }]),
        ("extended", vec![Mutation::Extend(vec![0; 3])]),
        (
            "selector length lies",
            vec![Mutation::Field(Field::SelectorLen, 1 << 20)],
        ),
        (
            "payload length lies",
            vec![Mutation::Field(Field::PayloadLen, u64::MAX)],
        ),
        (
            "one descriptor too many",
            vec![Mutation::PushFd(FdSpec::Pipe)],
        ),
        ("one descriptor too few", vec![Mutation::PopFd]),
        ("unknown flags", vec![Mutation::Field(Field::Flags, 0x80)]),
        (
            "payload flag without a memfd",
            vec![Mutation::Field(Field::Flags, 1)],
        ),
        ("control kind", vec![Mutation::Field(Field::Kind, 16)]),
        ("hello kind", vec![Mutation::Field(Field::Kind, 1)]),
        ("unknown kind", vec![Mutation::Field(Field::Kind, 99)]),
        (
            "other version",
            vec![Mutation::Field(
                Field::Version,
                u64::from(busbar::PROTOCOL_VERSION) + 1,
            )],
        ),
        ("bad magic", vec![Mutation::Field(Field::Magic, 0)]),
        ("oversize", vec![Mutation::Oversize { extra: 0 }]),
        (
            "unsealed memfd as a region",
            vec![Mutation::RegionFd(FdSpec::Memfd {
                len: 4096,
                contents: REGION_MAGIC.to_vec(),
                seals: 0,
            })],
        ),
        ("pipe as a region", vec![Mutation::RegionFd(FdSpec::Pipe)]),
        (
            "bad selector",
            vec![Mutation::Selector(b"\x00a & (".to_vec())],
        ),
        (
            "an answer going forward",
            vec![Mutation::Field(
                Field::Flags,
                u64::from(fuzz_support::FLAG_REPLY),
            )],
        ),
        (
            "request and answer at once",
            vec![Mutation::Field(
                Field::Flags,
                u64::from(fuzz_support::FLAG_REQUEST | fuzz_support::FLAG_REPLY),
            )],
        ),
    ];
    for (name, mutations) in lies {
        let cases = vec![
            Case::hello(1),
            Case {
                base: Base::Honest(spec.clone()),
                mutations,
            },
            Case::honest(spec.clone()),
        ];
        let inputs = hostile::build_batch(&cases);
        let report = fuzz_support::feed_link(inputs.clone()).expect("feed");
        hostile::judge(&cases, &inputs, &report).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            matches!(report.outcomes[1], Outcome::Dropped),
            "{name}: {:?}",
            report.outcomes[1]
        );
        assert!(
            matches!(report.outcomes[2], Outcome::Delivered(_)),
            "{name}: the honest frame after it: {:?}",
            report.outcomes[2]
        );
    }
}

/// A lying payload memfd: short, unsealed, or not a memfd at all.
#[test]
fn lying_payload_memfds_are_dropped() {
    let spec = HonestSpec {
        selector: Selector::multicast("x"),
        format: 0,
        len: 1000,
        objects: 0,
        regions: vec![],
        spill: true,
    };
    let full = seal::SHRINK | seal::GROW | seal::WRITE | seal::SEAL;
    for (name, fd) in [
        (
            "short",
            FdSpec::Memfd {
                len: 10,
                contents: vec![],
                seals: full,
            },
        ),
        (
            "unsealed",
            FdSpec::Memfd {
                len: 4096,
                contents: vec![],
                seals: 0,
            },
        ),
        (
            "writable",
            FdSpec::Memfd {
                len: 4096,
                contents: vec![],
                seals: seal::SHRINK,
            },
        ),
        ("a pipe", FdSpec::Pipe),
        ("a region", FdSpec::Region(4096)),
    ] {
        let cases = vec![
            Case::hello(1),
            Case {
                base: Base::Honest(spec.clone()),
                mutations: vec![Mutation::PayloadFd(fd)],
            },
            Case::honest(spec.clone()),
        ];
        let inputs: Vec<RawInput> = hostile::build_batch(&cases);
        let report = fuzz_support::feed_link(inputs.clone()).expect("feed");
        hostile::judge(&cases, &inputs, &report).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(matches!(report.outcomes[1], Outcome::Dropped), "{name}");
        assert!(
            matches!(report.outcomes[2], Outcome::Delivered(_)),
            "{name}"
        );
    }
}

/// The link is cut by the `MAX_BAD_FRAMES`th malformed frame, whichever check
/// caught each one, and nothing is read after that.
#[test]
fn the_link_is_cut_after_max_bad_frames() {
    let spec = HonestSpec {
        selector: Selector::unicast("a"),
        format: 0,
        len: 3,
        objects: 0,
        regions: vec![1],
        spill: false,
    };
    let lies = [
        Mutation::PushFd(FdSpec::Pipe),
        Mutation::RegionFd(FdSpec::DevNull),
        Mutation::Field(Field::Kind, 16),
        Mutation::Selector(vec![7]),
    ];
    let mut cases = vec![Case::hello(9)];
    for i in 0..MAX_BAD_FRAMES as usize {
        cases.push(Case {
            base: Base::Honest(spec.clone()),
            mutations: vec![lies[i % lies.len()].clone()],
        });
        // Honest frames in between do not reset the count.
        cases.push(Case::honest(spec.clone()));
    }
    cases.push(Case::honest(spec));
    let inputs = hostile::build_batch(&cases);
    let report = fuzz_support::feed_link(inputs.clone()).expect("feed");
    let tally = hostile::judge(&cases, &inputs, &report).expect("rules");
    assert!(report.cut);
    assert_eq!(tally.dropped, u64::from(MAX_BAD_FRAMES));
    assert_eq!(tally.delivered, u64::from(MAX_BAD_FRAMES) - 1);
    assert!(matches!(report.outcomes.last(), Some(Outcome::NotSent(_))));
}

/// The request flag goes through to the message; an answer going forward
/// on a data link is refused; both request flags at once are malformed.
#[test]
fn requests_are_delivered_as_requests_and_answers_going_forward_are_dropped() {
    let message = HonestSpec {
        selector: Selector::unicast("a"),
        format: 3,
        len: 10,
        objects: 0,
        regions: Vec::new(),
        spill: false,
    };
    for (flags, request) in [(4, Some(true)), (8, None), (12, None), (5, None)] {
        let cases = vec![
            Case::hello(1),
            Case {
                base: Base::Honest(message.clone()),
                mutations: vec![Mutation::Field(Field::Flags, flags)],
            },
            Case::honest(message.clone()),
        ];
        let inputs = hostile::build_batch(&cases);
        match (hostile::expect(&inputs[1], true), request) {
            (hostile::Expect::Deliver { request: got, .. }, Some(want)) => assert_eq!(got, want),
            (hostile::Expect::Drop, None) => {}
            (other, _) => panic!("flags {flags}: the model says {other:?}"),
        }
        if let Err(why) = hostile::run_batch(&cases) {
            panic!("flags {flags}: {why}");
        }
    }
}
