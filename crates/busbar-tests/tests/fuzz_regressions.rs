//! Every failure `busbar-fuzz` ever found, replayed: the exact batch (or
//! ring episode) its seed makes, and the same shape built by hand so that
//! it stays covered when the generators change.
//!
//! To add one: the `FAIL batch_seed=...` (`episode_seed=...`) line of a
//! run names the seed; `busbar-fuzz --replay <seed>` (`--replay-ring`)
//! prints the frames (steps). Add the seed below with what it must hold,
//! and a hand-built case when the shape is worth keeping on its own.

use busbar::{BytesMessage, LabelOp, MessageBox, Selector};
use busbar_tests::fuzz_support::{seal, FdSpec};
use busbar_tests::hostile::{
    self, build_batch, expect, random_batch, Base, Case, Expect, Field, HonestSpec, Mutation, Rng,
    REGION_MAGIC,
};
use busbar_tests::rings::{self, Checks, Episode, Index, Op};

/// Batches whose frames said "the payload is lent in a region" (flags 2),
/// which the oracle read as an in-line payload: the receiver dropped them
/// (their last descriptor was no region, or the payload lay outside it)
/// where the oracle expected a delivery or a decode error. The oracle was
/// wrong. Seeds 777, 1, 12 and 14 of `--cases 200000`.
const LENT_FLAG_BATCHES: [u64; 6] = [
    0x85f1_459b_7798_5d24, // seed 777, batch 20971, frame 2
    0x37bb_da5d_bfd1_5c46, // seed 1, batch 22311, frame 7
    0x7aaf_7230_b582_d4f6, // seed 12, batch 2762, frame 1 (expected Deliver)
    0x23d0_6d63_6d6a_e7bb, // seed 12, batch 4044, frame 5
    0xbd18_5792_3a29_6100, // seed 12, batch 15540, frame 5
    0x3360_2a8d_0cf4_9482, // seed 14, batch 20222, frame 8
];

/// A batch whose hello handed over a descriptor that is no ring: the
/// receiver cut the link at once, the oracle expected it to go on (seed
/// 14, batch 7900, frame 3). The oracle was wrong.
const HELLO_FD_BATCH: u64 = 0x2cb2_a3e3_c65f_f58c;

/// The ring episode where a frame was abandoned (its padding lowered the
/// sleeping receiver's flag, the wake-up owed to the next push) and the
/// next push found the consumer index off alignment: the sender gave the
/// link up, which wakes the receiver, but the oracle wanted the doorbell
/// (seed 99 of `--rings 1000000`, episode 8570, step 10). The oracle was wrong.
const ABANDONED_THEN_CORRUPT_EPISODE: u64 = 0x7977_1f55_6faf_a49e;

fn batch(seed: u64) -> Vec<Case> {
    random_batch(&mut Rng::new(seed))
}

#[test]
fn batches_with_a_lent_payload_flag_pass() {
    for seed in LENT_FLAG_BATCHES {
        let cases = batch(seed);
        assert!(
            cases.iter().any(|c| c
                .mutations
                .iter()
                .any(|m| matches!(m, Mutation::Field(Field::Flags, 2)))),
            "batch {seed:#x} no longer sets flags 2: the generators changed; find a new seed"
        );
        if let Err(why) = hostile::run_batch(&cases) {
            panic!("batch {seed:#x}: {why}");
        }
    }
}

#[test]
fn a_batch_with_a_hello_handing_over_a_descriptor_passes() {
    let cases = batch(HELLO_FD_BATCH);
    assert!(
        cases.iter().any(|c| matches!(c.base, Base::Hello(_))
            && c.mutations.iter().any(|m| matches!(m, Mutation::PushFd(_)))),
        "the batch no longer has a hello with a descriptor: the generators changed"
    );
    if let Err(why) = hostile::run_batch(&cases) {
        panic!("{why}");
    }
}

fn honest(len: usize) -> HonestSpec {
    HonestSpec {
        selector: Selector::multicast(LabelOp::leaf("a").or(!LabelOp::leaf("b"))),
        format: 21182,
        len,
        objects: 0,
        regions: Vec::new(),
        spill: false,
    }
}

/// A hello, then `case`, then an honest message: judged, and the middle
/// frame's expectation returned.
fn judge_between(case: Case) -> Expect {
    let cases = vec![Case::hello(7), case, Case::honest(honest(12))];
    let inputs = build_batch(&cases);
    let want = expect(&inputs[1], true);
    if let Err(why) = hostile::run_batch(&cases) {
        panic!("{why}");
    }
    want
}

/// Flags 2 on a frame whose last descriptor is a socket (seed 12's shape).
#[test]
fn a_lent_payload_in_a_socket_is_dropped() {
    let case = Case {
        base: Base::Honest(honest(4)),
        mutations: vec![
            Mutation::PushFd(FdSpec::Socket),
            Mutation::Field(Field::Flags, 2),
        ],
    };
    assert_eq!(judge_between(case), Expect::Drop);
}

/// The 24-byte locator of a lent payload: count word at `count`, payload
/// at `at`, region slot `slot`.
fn locator(count: u64, at: u64, slot: u32) -> Vec<u8> {
    let mut l = count.to_le_bytes().to_vec();
    l.extend_from_slice(&at.to_le_bytes());
    l.extend_from_slice(&slot.to_le_bytes());
    l.extend_from_slice(&[0; 4]);
    l
}

/// A payload lent in a real region: `at` bytes in, `region_len` bytes of
/// region after its header, holding `message`'s encoding; its count word
/// at 0, the region remembered in `slot`.
fn lent_in_slot(message: &BytesMessage, at: usize, region_len: usize, slot: u32) -> Case {
    let mut encoded = Vec::new();
    message.encode_into(&mut encoded).expect("encode");
    let mut contents = REGION_MAGIC.to_vec();
    contents.resize(hostile::REGION_HEADER as usize + at, 0);
    contents.extend_from_slice(&encoded);
    Case {
        base: Base::Honest(honest(0)),
        mutations: vec![
            Mutation::Field(Field::Flags, 2),
            Mutation::Payload(locator(0, at as u64, slot)),
            Mutation::Field(Field::PayloadLen, encoded.len() as u64),
            Mutation::PushFd(FdSpec::Memfd {
                len: hostile::REGION_HEADER + region_len as u64,
                contents,
                seals: seal::SHRINK | seal::GROW | seal::SEAL,
            }),
        ],
    }
}

fn lent(message: &BytesMessage, at: usize, region_len: usize) -> Case {
    lent_in_slot(message, at, region_len, u32::MAX)
}

/// A payload by reference to slot `slot`, `len` bytes at `at`, count word at `count`.
fn by_ref(count: u64, at: u64, len: u64, slot: u32) -> Case {
    Case {
        base: Base::Honest(honest(0)),
        mutations: vec![
            Mutation::Field(Field::Flags, 16),
            Mutation::Payload(locator(count, at, slot)),
            Mutation::Field(Field::PayloadLen, len),
        ],
    }
}

#[test]
fn a_payload_lent_in_a_region_is_delivered_from_it() {
    let message = BytesMessage::new(9, b"lent in place".to_vec());
    match judge_between(lent(&message, 24, 128)) {
        Expect::Deliver { payload, .. } => assert_eq!(payload, message),
        other => panic!("expected a delivery, the model says {other:?}"),
    }
}

#[test]
fn a_payload_lent_past_its_region_is_dropped() {
    let message = BytesMessage::new(9, b"runs past the end".to_vec());
    assert_eq!(judge_between(lent(&message, 120, 128)), Expect::Drop);
}

/// A region remembered in a slot, then payloads by reference to it: to
/// the slot it is in, to an empty slot, to a slot out of range, past the
/// region's end, with a count word out of place; a slot taken over by a
/// frame whose region does not check out is empty after it.
#[test]
fn payloads_by_reference_are_found_in_the_slot_or_dropped() {
    let message = BytesMessage::new(9, b"by reference".to_vec());
    let mut encoded = Vec::new();
    message.encode_into(&mut encoded).expect("encode");
    let len = encoded.len() as u64;
    let cases = vec![
        Case::hello(7),
        lent_in_slot(&message, 64, 256, 3),
        by_ref(0, 64, len, 3),
        by_ref(0, 64, len, 4),
        by_ref(0, 64, len, 16),
        by_ref(0, 250, len, 3),
        by_ref(2, 64, len, 3),
        by_ref(256, 64, len, 3),
        by_ref(0, 64, len, u32::MAX),
        // A frame naming slot 3 whose payload lies outside its region: the slot is emptied.
        lent_in_slot(&message, 250, 256, 3),
        by_ref(0, 64, len, 3),
    ];
    let inputs = build_batch(&cases);
    let mut link = hostile::LinkModel::default();
    let want: Vec<Expect> = inputs
        .iter()
        .enumerate()
        .map(|(i, input)| hostile::expect_on(input, i > 0, &mut link))
        .collect();
    assert!(matches!(&want[1], Expect::Deliver { payload, .. } if *payload == message));
    assert!(matches!(&want[2], Expect::Deliver { payload, .. } if *payload == message));
    assert!(want[3..].iter().all(|w| *w == Expect::Drop), "{want:?}");
    // Eight bad frames cut the link; these are nine: the last is not sent.
    let short = &cases[..10];
    if let Err(why) = hostile::run_batch(short) {
        panic!("{why}");
    }
}

#[test]
fn a_hello_with_a_descriptor_that_is_no_ring_cuts_the_link() {
    let cases = vec![
        Case {
            base: Base::Hello(7),
            mutations: vec![
                Mutation::Field(Field::Objects, 1),
                Mutation::PushFd(FdSpec::Pipe),
            ],
        },
        Case::honest(honest(12)),
    ];
    let inputs = build_batch(&cases);
    assert_eq!(expect(&inputs[0], false), Expect::Cut);
    let tally = hostile::run_batch(&cases).unwrap_or_else(|why| panic!("{why}"));
    assert_eq!(tally.links_cut, 1);
}

#[test]
fn the_abandoned_frame_then_corrupt_ring_episode_passes() {
    let episode = rings::random_episode(&mut Rng::new(ABANDONED_THEN_CORRUPT_EPISODE));
    assert!(
        matches!(episode.ops.get(8), Some(Op::Abandon { .. }))
            && matches!(episode.ops.get(9), Some(Op::Head(Index::Misaligned(_))))
            && matches!(episode.ops.get(10), Some(Op::Lie { .. })),
        "the episode changed: the generators changed; find a new seed"
    );
    if let Err(why) = rings::run_episode(&episode, Checks::default()) {
        panic!("{why}");
    }
}

/// The same shape by hand, with an honest send after the abandoned frame:
/// the receiver sleeps; a frame too long for the end of the data area is
/// reserved and never committed, so the padding up to the end is published
/// alone and lowers the receiver's flag (the wake-up owed to the next
/// push); the consumer index is then moved off alignment, so the next push
/// finds the ring corrupt and the sender gives the link up.
#[test]
fn a_push_that_gives_up_after_an_abandoned_frame_wakes_the_receiver_by_hanging_up() {
    for next in [
        // Too long for the 80 bytes left: the producer looks at the consumer index.
        Op::Send {
            len: 30,
            objects: 0,
            selector: 0,
        },
        Op::Lie {
            bytes: busbar_tests::fuzz_support::data_frame(
                &Selector::unicast("a"),
                &BytesMessage::new(1, vec![0; 40]),
                1,
            )
            .expect("frame"),
            stamp: false,
        },
    ] {
        let episode = Episode {
            capacity: 256,
            start: 0,
            bell: true,
            ops: vec![
                Op::Send {
                    len: 6,
                    objects: 0,
                    selector: 0,
                },
                Op::Read(3),
                Op::Sleep,
                Op::Abandon {
                    len: 182,
                    written: 97,
                },
                Op::Head(Index::Misaligned(3)),
                next,
                Op::Drain,
            ],
        };
        let tally =
            rings::run_episode(&episode, Checks::default()).unwrap_or_else(|why| panic!("{why}"));
        assert_eq!(
            (tally.sleeps, tally.gave_up, tally.lost_wakeups),
            (1, 1, 0),
            "{tally:?}"
        );
    }
}
