//! Hostile frames for the property tests and the fuzz loop (`busbar-fuzz`):
//! honest frames, the ways a peer can make them lie, and an oracle that
//! says exactly what the receiving path must do with each one.
//!
//! A [`Case`] is a base frame (an honest message, a hello, a join request,
//! garbage, nothing) plus [`Mutation`]s. [`judge`] models the receiver's
//! rules independently of the library (from the wire table in busbar's
//! `frame.rs` and the rules in `docs/ARCHITECTURE.md`) and compares the
//! model with what [`crate::fuzz_support::feed_link`] reports for every frame:
//! a frame the model finds malformed must be dropped, a truthful one must
//! be delivered byte for byte, and the link must be cut exactly when it has
//! sent `MAX_BAD_FRAMES` malformed ones.

use crate::fuzz_support::{
    self, seal, FdSpec, FeedReport, Honest, Outcome, RawInput, HEADER_LEN, KIND_CONTROL, KIND_DATA,
    KIND_HELLO, MAX_BAD_FRAMES, MAX_FDS_PER_FRAME, MAX_FRAME,
};
use crate::pattern;
use busbar::{BytesMessage, LabelOp, MessageBox, Selector, TypeUuid};

/// Byte offsets of the header fields (the table in busbar's `frame.rs`).
pub mod offset {
    /// `BSBR`, 4 bytes.
    pub const MAGIC: usize = 0;
    /// Protocol version, 2 bytes.
    pub const VERSION: usize = 4;
    /// Kind, 1 byte.
    pub const KIND: usize = 6;
    /// Flags, 1 byte.
    pub const FLAGS: usize = 7;
    /// Selector length, 2 bytes.
    pub const SELECTOR_LEN: usize = 8;
    /// Objects, 1 byte.
    pub const OBJECTS: usize = 10;
    /// Regions, 1 byte.
    pub const REGIONS: usize = 11;
    /// Sequence number, 4 bytes.
    pub const SEQ: usize = 12;
    /// Payload length, 8 bytes.
    pub const PAYLOAD_LEN: usize = 16;
    /// Type id, 16 bytes.
    pub const TYPE: usize = 24;
    /// Correlation id (requests and answers), 8 bytes.
    pub const CORRELATION: usize = 40;
}

/// The first bytes of every memory region's file.
pub const REGION_MAGIC: &[u8; 8] = b"busbarR1";
/// Bytes before the user's bytes in a region's file.
pub const REGION_HEADER: u64 = 64;

/// A small, fast, seeded PRNG (xorshift64*): the fuzz loop needs no more.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value, zero included).
    pub fn new(seed: u64) -> Rng {
        // splitmix64 of the seed, so that close seeds give unrelated streams.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`0` when `n` is zero).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }

    /// Fewer than `max` random bytes.
    pub fn some_bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max);
        self.bytes(n)
    }

    /// One of `items`.
    pub fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }
}

/// An honest message: what an honest sender would write.
#[derive(Debug, Clone)]
pub struct HonestSpec {
    /// Where it goes.
    pub selector: Selector,
    /// The payload's format tag.
    pub format: u16,
    /// The payload's length (its bytes are [`pattern`]).
    pub len: usize,
    /// Pipes sent as objects.
    pub objects: usize,
    /// Sizes of the regions sent.
    pub regions: Vec<usize>,
    /// Whether the payload travels in a sealed memfd.
    pub spill: bool,
}

impl HonestSpec {
    /// The payload.
    pub fn message(&self) -> BytesMessage {
        BytesMessage::new(self.format, pattern(self.len))
    }

    /// The frame, with sequence number `seq`; `None` when it cannot travel.
    pub fn frame(&self, seq: u32) -> Option<RawInput> {
        fuzz_support::honest_frame(&Honest {
            selector: self.selector.clone(),
            message: self.message(),
            seq,
            objects: self.objects,
            regions: self.regions.clone(),
            spill: self.spill,
        })
    }
}

/// What a frame starts as, before it is made to lie.
#[derive(Debug, Clone)]
pub enum Base {
    /// An honest message.
    Honest(HonestSpec),
    /// A hello from this endpoint id.
    Hello(u64),
    /// A join request (a control frame, never valid on a data link).
    Join,
    /// Random bytes.
    Garbage(Vec<u8>),
    /// No bytes at all.
    Empty,
}

/// A header field a mutation can set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The magic.
    Magic,
    /// The protocol version.
    Version,
    /// The kind byte.
    Kind,
    /// The flags byte.
    Flags,
    /// The selector length.
    SelectorLen,
    /// The object count.
    Objects,
    /// The region count.
    Regions,
    /// The payload length.
    PayloadLen,
    /// The sequence number.
    Seq,
    /// The first half of the type id.
    TypeLow,
    /// The second half of the type id.
    TypeHigh,
}

impl Field {
    /// Every field.
    pub const ALL: [Field; 11] = [
        Field::Magic,
        Field::Version,
        Field::Kind,
        Field::Flags,
        Field::SelectorLen,
        Field::Objects,
        Field::Regions,
        Field::PayloadLen,
        Field::Seq,
        Field::TypeLow,
        Field::TypeHigh,
    ];

    /// Offset and width in bytes.
    pub fn place(self) -> (usize, usize) {
        match self {
            Field::Magic => (offset::MAGIC, 4),
            Field::Version => (offset::VERSION, 2),
            Field::Kind => (offset::KIND, 1),
            Field::Flags => (offset::FLAGS, 1),
            Field::SelectorLen => (offset::SELECTOR_LEN, 2),
            Field::Objects => (offset::OBJECTS, 1),
            Field::Regions => (offset::REGIONS, 1),
            Field::PayloadLen => (offset::PAYLOAD_LEN, 8),
            Field::Seq => (offset::SEQ, 4),
            Field::TypeLow => (offset::TYPE, 8),
            Field::TypeHigh => (offset::TYPE + 8, 8),
        }
    }
}

/// One way to make a frame lie.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Flips one bit (at `at` modulo the length).
    FlipBit {
        /// Where.
        at: usize,
        /// Which bit (modulo 8).
        bit: u8,
    },
    /// Keeps the first `keep` (modulo length + 1) bytes.
    Truncate {
        /// How many.
        keep: usize,
    },
    /// Appends bytes.
    Extend(Vec<u8>),
    /// Pads the frame past the largest a receiver reads (by `extra` modulo 64, plus one).
    Oversize {
        /// How far past.
        extra: usize,
    },
    /// Writes a value (little-endian, cut to the field's width) into a header field.
    Field(Field, u64),
    /// Replaces the selector and fixes its length in the header (a truthful header, a bad selector).
    Selector(Vec<u8>),
    /// Replaces the payload (in line, or in a spilled payload memfd) and fixes its length in the header.
    Payload(Vec<u8>),
    /// Attaches one more descriptor.
    PushFd(FdSpec),
    /// Takes the last descriptor off.
    PopFd,
    /// Replaces a descriptor (at `at` modulo their number).
    SwapFd {
        /// Which.
        at: usize,
        /// With what.
        spec: FdSpec,
    },
    /// Attaches this many more pipes (over 253 in all: the kernel refuses the frame).
    ManyFds(usize),
    /// Replaces the descriptor of the first region the header counts (if any).
    RegionFd(FdSpec),
    /// Replaces the payload descriptor (a payload memfd or a lent region),
    /// when the header's flags say there is one.
    PayloadFd(FdSpec),
}

/// One frame of a batch: a base and what was done to it.
#[derive(Debug, Clone)]
pub struct Case {
    /// The frame before it lies.
    pub base: Base,
    /// The lies, applied in order.
    pub mutations: Vec<Mutation>,
}

impl Case {
    /// An honest message, unmodified.
    pub fn honest(spec: HonestSpec) -> Case {
        Case {
            base: Base::Honest(spec),
            mutations: Vec::new(),
        }
    }

    /// A hello, unmodified.
    pub fn hello(id: u64) -> Case {
        Case {
            base: Base::Hello(id),
            mutations: Vec::new(),
        }
    }

    /// The honest message this case is, if it was not tampered with.
    pub fn truthful(&self) -> Option<&HonestSpec> {
        match (&self.base, self.mutations.is_empty()) {
            (Base::Honest(spec), true) => Some(spec),
            _ => None,
        }
    }

    /// The frame, sequence number `seq` (for honest bases).
    pub fn build(&self, seq: u32) -> RawInput {
        let mut input = match &self.base {
            Base::Honest(spec) => spec.frame(seq).unwrap_or_default(),
            Base::Hello(id) => RawInput {
                bytes: fuzz_support::hello_frame(*id),
                fds: Vec::new(),
            },
            Base::Join => RawInput {
                bytes: fuzz_support::join_frame(busbar::PROTOCOL_VERSION, "token", 7, &["x"]),
                fds: Vec::new(),
            },
            Base::Garbage(bytes) => RawInput {
                bytes: bytes.clone(),
                fds: Vec::new(),
            },
            Base::Empty => RawInput::default(),
        };
        for m in &self.mutations {
            apply(&mut input, m);
        }
        input
    }
}

/// What a frame's flags byte says. The one place the oracle and the
/// mutations read the flags: a new flag goes here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    /// Where the payload lies.
    pub payload: PayloadAt,
    /// A request: its sender waits for the answer.
    pub request: bool,
    /// An answer to a request: it only travels back, on the request's own
    /// link, so a data link refuses it going forward.
    pub reply: bool,
}

impl Flags {
    /// The flags of `bytes` (`None` when the frame has no flags byte; flags
    /// the receiver refuses read as something here, and [`expect`] drops
    /// such frames before it asks).
    pub fn of(bytes: &[u8]) -> Option<Flags> {
        let flags = *bytes.get(offset::FLAGS)?;
        Some(Flags {
            payload: PayloadAt::of(flags),
            request: flags & fuzz_support::FLAG_REQUEST != 0,
            reply: flags & fuzz_support::FLAG_REPLY != 0,
        })
    }
}

/// Where a frame's flags say its payload lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadAt {
    /// In the frame, after the selector.
    InLine,
    /// In a sealed memfd, the last descriptor.
    Memfd,
    /// Lent in a memory region, the last descriptor, where the 24-byte
    /// locator after the selector says.
    Region,
    /// Lent in a region an earlier frame on the link left in the slot the
    /// locator names; no descriptor.
    ByRef,
}

impl PayloadAt {
    /// What the flags byte `flags` says.
    fn of(flags: u8) -> PayloadAt {
        if flags & fuzz_support::FLAG_PAYLOAD_IN_FD != 0 {
            PayloadAt::Memfd
        } else if flags & fuzz_support::FLAG_PAYLOAD_IN_REGION != 0 {
            PayloadAt::Region
        } else if flags & fuzz_support::FLAG_PAYLOAD_BY_REF != 0 {
            PayloadAt::ByRef
        } else {
            PayloadAt::InLine
        }
    }
}

fn read_le(bytes: &[u8], at: usize, width: usize) -> Option<u64> {
    let field = bytes.get(at..at + width)?;
    Some(
        field
            .iter()
            .rev()
            .fold(0u64, |v, &b| (v << 8) | u64::from(b)),
    )
}

fn write_le(bytes: &mut [u8], at: usize, width: usize, value: u64) {
    if let Some(field) = bytes.get_mut(at..at + width) {
        field.copy_from_slice(&value.to_le_bytes()[..width]);
    }
}

/// Applies one mutation.
pub fn apply(input: &mut RawInput, m: &Mutation) {
    let bytes = &mut input.bytes;
    match m {
        Mutation::FlipBit { at, bit } => {
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] ^= 1 << (bit % 8);
            }
        }
        Mutation::Truncate { keep } => {
            let keep = keep % (bytes.len() + 1);
            bytes.truncate(keep);
        }
        Mutation::Extend(more) => bytes.extend_from_slice(more),
        Mutation::Oversize { extra } => bytes.resize(MAX_FRAME + 1 + extra % 64, 0xab),
        Mutation::Field(field, value) => {
            let (at, width) = field.place();
            write_le(bytes, at, width, *value);
        }
        Mutation::Selector(new) => {
            let Some(old) = read_le(bytes, offset::SELECTOR_LEN, 2) else {
                return;
            };
            if bytes.len() < HEADER_LEN {
                return;
            }
            let end = (HEADER_LEN + old as usize).min(bytes.len());
            bytes.splice(HEADER_LEN..end, new.iter().copied());
            write_le(bytes, offset::SELECTOR_LEN, 2, new.len() as u64);
        }
        Mutation::Payload(new) => {
            let (Some(sel), Some(flags)) =
                (read_le(bytes, offset::SELECTOR_LEN, 2), Flags::of(bytes))
            else {
                return;
            };
            match input.fds.last_mut() {
                Some(FdSpec::Blob(blob)) if flags.payload == PayloadAt::Memfd => {
                    *blob = new.clone()
                }
                _ => {
                    let start = (HEADER_LEN + sel as usize).min(bytes.len());
                    bytes.truncate(start);
                    bytes.extend_from_slice(new);
                }
            }
            write_le(bytes, offset::PAYLOAD_LEN, 8, new.len() as u64);
        }
        Mutation::PushFd(spec) => input.fds.push(spec.clone()),
        Mutation::PopFd => {
            input.fds.pop();
        }
        Mutation::SwapFd { at, spec } => {
            if !input.fds.is_empty() {
                let i = at % input.fds.len();
                input.fds[i] = spec.clone();
            }
        }
        Mutation::ManyFds(n) => input.fds.extend(std::iter::repeat_n(FdSpec::Pipe, *n)),
        Mutation::RegionFd(spec) => {
            let objects = read_le(bytes, offset::OBJECTS, 1).unwrap_or(0) as usize;
            let regions = read_le(bytes, offset::REGIONS, 1).unwrap_or(0);
            if regions > 0 {
                if let Some(slot) = input.fds.get_mut(objects) {
                    *slot = spec.clone();
                }
            }
        }
        Mutation::PayloadFd(spec) => {
            let in_fd = Flags::of(bytes)
                .is_some_and(|f| matches!(f.payload, PayloadAt::Memfd | PayloadAt::Region));
            if let (true, Some(slot)) = (in_fd, input.fds.last_mut()) {
                *slot = spec.clone();
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Random cases (the fuzz loop; the property tests have proptest strategies).

const LEAVES: &[&str] = &[
    "a",
    "b",
    "gpu",
    "renderer",
    "com.solar/earth-1",
    "x y",
    "ü",
    "",
    "\"",
    "a\\b",
    "true",
    "&|!()",
];

/// A random expression, at most `depth` deep.
pub fn random_op(rng: &mut Rng, depth: usize) -> LabelOp {
    if depth == 0 || rng.chance(40) {
        return match rng.below(10) {
            0 => LabelOp::True,
            1 => LabelOp::False,
            _ => LabelOp::leaf(rng.pick(LEAVES)),
        };
    }
    match rng.below(3) {
        0 => !random_op(rng, depth - 1),
        1 => random_op(rng, depth - 1).and(random_op(rng, depth - 1)),
        _ => random_op(rng, depth - 1).or(random_op(rng, depth - 1)),
    }
}

/// A random selector.
pub fn random_selector(rng: &mut Rng) -> Selector {
    let op = random_op(rng, 4);
    if rng.chance(50) {
        Selector::unicast(op)
    } else {
        Selector::multicast(op)
    }
}

/// A random honest message.
pub fn random_honest(rng: &mut Rng) -> HonestSpec {
    let len = match rng.below(20) {
        0 => 0,
        1 => 60_000 + rng.below(20_000),
        _ => rng.below(300),
    };
    HonestSpec {
        selector: random_selector(rng),
        format: rng.next_u64() as u16,
        len,
        objects: if rng.chance(70) { 0 } else { 1 + rng.below(3) },
        regions: (0..if rng.chance(60) { 0 } else { 1 + rng.below(2) })
            .map(|_| rng.pick(&[0, 1, 64, 4096, 10_000]))
            .collect(),
        spill: len > 50_000 || rng.chance(15),
    }
}

/// A random descriptor.
pub fn random_fd(rng: &mut Rng) -> FdSpec {
    match rng.below(8) {
        0 => FdSpec::Pipe,
        1 => FdSpec::DevNull,
        2 => FdSpec::Socket,
        3 => FdSpec::Region(rng.pick(&[0, 1, 100, 4096])),
        4 => FdSpec::Blob(if rng.chance(50) {
            random_payload(rng)
        } else {
            rng.some_bytes(64)
        }),
        _ => {
            let len = rng.pick(&[0, 8, 63, 64, 65, 100, 4096]) as u64;
            let mut contents = if rng.chance(50) {
                REGION_MAGIC.to_vec()
            } else if rng.chance(50) {
                random_payload(rng)
            } else {
                Vec::new()
            };
            contents.extend(rng.some_bytes(16));
            let seals = if rng.chance(50) {
                rng.below(16) as u8
            } else {
                // Close to what a region or a payload memfd carries.
                use seal::*;
                rng.pick(&[
                    SHRINK | GROW | SEAL,
                    SHRINK | GROW | SEAL | WRITE,
                    SHRINK | WRITE,
                    SHRINK | GROW,
                    GROW | SEAL | WRITE,
                ])
            };
            FdSpec::Memfd {
                len,
                contents,
                seals,
            }
        }
    }
}

/// The encoding of a random `BytesMessage` (what a payload memfd should hold).
pub fn random_payload(rng: &mut Rng) -> Vec<u8> {
    let m = BytesMessage::new(rng.next_u64() as u16, rng.some_bytes(40));
    let mut out = Vec::new();
    let _ = m.encode_into(&mut out);
    out
}

/// A value for a header field: small, near a limit, or anything.
fn random_value(rng: &mut Rng, field: Field) -> u64 {
    match field {
        Field::Kind => rng.pick(&[
            0,
            u64::from(KIND_HELLO),
            u64::from(KIND_DATA),
            u64::from(KIND_CONTROL),
            3,
            255,
        ]),
        Field::Flags => {
            // One draw, as ever (so that the batches of a seed stay what
            // they were): its low bits pick a payload flag, or (a third of
            // the time) its high bits pick a request flag, both request
            // flags, or bits no flag uses.
            let x = rng.next_u64();
            match [0, 1, 2, 3, 0x80, 0xff][(x % 6) as usize] {
                0x80 | 0xff => [4, 5, 6, 8, 12, 0x80, 0xff][((x >> 32) % 7) as usize],
                flags => flags,
            }
        }
        Field::TypeLow | Field::TypeHigh if rng.chance(30) => {
            // Another half of the BytesMessage id: the other half decides.
            let id = BytesMessage::TYPE_UUID;
            let half = if field == Field::TypeLow {
                &id[..8]
            } else {
                &id[8..]
            };
            read_le(half, 0, 8).unwrap_or(0)
        }
        _ => match rng.below(6) {
            0 => 0,
            1 => 1 + rng.below(4) as u64,
            2 => u64::MAX,
            3 => u64::from(u32::MAX),
            4 => rng.below(300) as u64,
            _ => rng.next_u64(),
        },
    }
}

/// A random mutation.
pub fn random_mutation(rng: &mut Rng) -> Mutation {
    match rng.below(16) {
        0 | 1 => Mutation::FlipBit {
            at: rng.below(1 << 20),
            bit: rng.below(8) as u8,
        },
        2 => Mutation::Truncate {
            keep: rng.below(1 << 20),
        },
        3 => Mutation::Extend(rng.some_bytes(16 + 1)),
        4 if rng.chance(10) => Mutation::Oversize {
            extra: rng.below(64),
        },
        4..=6 => {
            let field = rng.pick(&Field::ALL);
            Mutation::Field(field, random_value(rng, field))
        }
        7 => Mutation::Selector(if rng.chance(50) {
            rng.some_bytes(20)
        } else {
            // A mode byte and text that may or may not parse.
            let mut s = vec![rng.below(3) as u8];
            s.extend(
                rng.pick(&["a & (b", "((((", "\"open", "a | b", "!!!!x", ""])
                    .bytes(),
            );
            s
        }),
        8 => Mutation::Payload(if rng.chance(50) {
            random_payload(rng)
        } else {
            rng.some_bytes(20)
        }),
        9 | 10 => Mutation::PushFd(random_fd(rng)),
        11 => Mutation::PopFd,
        12 => Mutation::SwapFd {
            at: rng.below(8),
            spec: random_fd(rng),
        },
        13 => Mutation::RegionFd(random_fd(rng)),
        14 => Mutation::PayloadFd(random_fd(rng)),
        _ => Mutation::ManyFds(rng.pick(&[2, 10, 250, 260])),
    }
}

/// A random frame: most start honest; more than half lie.
pub fn random_case(rng: &mut Rng) -> Case {
    let base = match rng.below(20) {
        0..=13 => Base::Honest(random_honest(rng)),
        14 | 15 => Base::Hello(rng.next_u64()),
        16 => Base::Join,
        17..=19 if rng.chance(95) => Base::Garbage(rng.some_bytes(100)),
        _ => Base::Empty,
    };
    let n = if rng.chance(35) { 0 } else { 1 + rng.below(3) };
    Case {
        base,
        mutations: (0..n).map(|_| random_mutation(rng)).collect(),
    }
}

/// A payload lent in a region (a region's descriptor and a slot for the
/// link to remember it in) or by reference to a slot, mostly well formed:
/// a few slots, so that references find what earlier frames left there;
/// locators mostly right, sometimes off.
fn random_lent(rng: &mut Rng) -> Case {
    let message = BytesMessage::new(rng.below(4) as u16, rng.some_bytes(40));
    let mut encoded = Vec::new();
    let _ = message.encode_into(&mut encoded);
    let slot = match rng.below(10) {
        0 => fuzz_support::NO_SLOT,
        1 => rng.next_u64() as u32,
        2 => fuzz_support::LINK_SLOTS,
        _ => rng.below(3) as u32,
    };
    let at: u64 = if rng.chance(85) {
        64
    } else {
        rng.below(300) as u64
    };
    let count: u64 = match rng.below(10) {
        0 => rng.next_u64(),
        1 => rng.below(300) as u64,
        _ => 4 * rng.below(16) as u64,
    };
    let len = if rng.chance(90) {
        encoded.len() as u64
    } else {
        rng.below(300) as u64
    };
    let mut locator = count.to_le_bytes().to_vec();
    locator.extend_from_slice(&at.to_le_bytes());
    locator.extend_from_slice(&slot.to_le_bytes());
    locator.extend_from_slice(&[0; 4]);
    let mut mutations = vec![
        Mutation::Field(Field::Flags, if rng.chance(50) { 2 } else { 16 }),
        Mutation::Payload(locator),
        Mutation::Field(Field::PayloadLen, len),
    ];
    if let Some(Mutation::Field(_, 2)) = mutations.first() {
        let region_len = 64 + rng.below(256) as u64;
        let mut contents = REGION_MAGIC.to_vec();
        contents.resize(REGION_HEADER as usize + 64, 0);
        contents.extend_from_slice(&encoded);
        let spec = if rng.chance(90) {
            FdSpec::Memfd {
                len: REGION_HEADER + region_len.max(64 + encoded.len() as u64),
                contents,
                seals: seal::SHRINK | seal::GROW | seal::SEAL,
            }
        } else {
            FdSpec::Region(rng.below(512))
        };
        mutations.push(Mutation::PushFd(spec));
    }
    if rng.chance(20) {
        mutations.push(random_mutation(rng));
    }
    Case {
        base: Base::Honest(random_honest(rng)),
        mutations,
    }
}

/// A random batch for one link: usually a hello first, hostile frames, and
/// honest messages at the end (which must still arrive unless the link was cut).
pub fn random_batch(rng: &mut Rng) -> Vec<Case> {
    let mut cases = Vec::new();
    if rng.chance(85) {
        cases.push(Case::hello(rng.next_u64()));
    }
    cases.extend((0..1 + rng.below(12)).map(|_| random_case(rng)));
    cases.extend((0..1 + rng.below(2)).map(|_| Case::honest(random_honest(rng))));
    // Payloads lent in regions and by reference to them, last (drawn after
    // everything else, so that the batches seeds found before stay as they were).
    if rng.chance(40) {
        cases.extend((0..1 + rng.below(6)).map(|_| random_lent(rng)));
        if rng.chance(50) {
            cases.push(Case::honest(random_honest(rng)));
        }
    }
    cases
}

/// The frames of a batch, honest ones numbered in order.
pub fn build_batch(cases: &[Case]) -> Vec<RawInput> {
    cases
        .iter()
        .enumerate()
        .map(|(i, c)| c.build(i as u32))
        .collect()
}

// ---------------------------------------------------------------------------
// The oracle.

/// What the receiving path must do with a frame.
#[derive(Debug, PartialEq)]
pub enum Expect {
    /// Deliver exactly this.
    Deliver {
        /// Selector.
        selector: Selector,
        /// Payload.
        payload: BytesMessage,
        /// Objects.
        objects: usize,
        /// Region sizes.
        regions: Vec<usize>,
        /// Whether it is a request.
        request: bool,
    },
    /// Drop it as malformed.
    Drop,
    /// Skip it (a type a `BytesMessage` receiver does not know).
    Skip,
    /// Report a decode error (a `BytesMessage` whose payload does not decode).
    DecodeError,
    /// A hello, taken: the link now knows its peer.
    Hello,
    /// Refused, and the link cut at once: a hello handing over descriptors
    /// that are not a usable ring and eventfd.
    Cut,
    /// A hang-up (an empty frame).
    Closed,
    /// Never written (too many descriptors, or the link is closed).
    NotSent,
}

/// Totals over judged batches.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    /// Frames fed.
    pub cases: u64,
    /// Delivered.
    pub delivered: u64,
    /// Dropped as malformed.
    pub dropped: u64,
    /// Skipped (unknown type).
    pub skipped: u64,
    /// Decode errors.
    pub decode_errors: u64,
    /// Hellos taken.
    pub hellos: u64,
    /// Not written (too many descriptors, link closed).
    pub not_sent: u64,
    /// Hang-ups (empty frames).
    pub hang_ups: u64,
    /// Links cut.
    pub links_cut: u64,
    /// Honest messages among the frames (all delivered unless their link was closed first).
    pub honest: u64,
}

impl Tally {
    /// Adds another tally.
    pub fn add(&mut self, o: &Tally) {
        self.cases += o.cases;
        self.delivered += o.delivered;
        self.dropped += o.dropped;
        self.skipped += o.skipped;
        self.decode_errors += o.decode_errors;
        self.hellos += o.hellos;
        self.not_sent += o.not_sent;
        self.hang_ups += o.hang_ups;
        self.links_cut += o.links_cut;
        self.honest += o.honest;
    }
}

fn padded(contents: &[u8], len: u64) -> Vec<u8> {
    let len = len as usize;
    let mut v = contents[..contents.len().min(len)].to_vec();
    v.resize(len, 0);
    v
}

fn has(seals: u8, want: u8) -> bool {
    seals & want == want
}

/// The length a region slot holding `spec` is adopted with, or `None`
/// when it must be refused: the length its header gives (bytes 16..24),
/// never more than its capacity.
fn region_size(spec: &FdSpec) -> Option<usize> {
    let capacity = region_capacity(spec)?;
    Some(match spec {
        FdSpec::Memfd { len, contents, .. } => {
            let header = padded(contents, *len);
            let claimed = u64::from_ne_bytes(header[16..24].try_into().unwrap_or_default());
            usize::try_from(claimed).map_or(capacity, |c| c.min(capacity))
        }
        _ => capacity,
    })
}

/// The user bytes a region slot holding `spec` holds (its file less the
/// header), or `None` when it must be refused.
fn region_capacity(spec: &FdSpec) -> Option<usize> {
    match spec {
        FdSpec::Region(n) => Some(*n),
        FdSpec::Memfd {
            len,
            contents,
            seals,
        } => {
            let sealed = has(*seals, seal::SHRINK | seal::GROW | seal::SEAL);
            // A file sealed against writes cannot be mapped shared and writable.
            let writable = seals & seal::WRITE == 0;
            let magic = *len >= REGION_HEADER && padded(contents, *len)[..8] == REGION_MAGIC[..];
            (sealed && writable && magic).then(|| (len - REGION_HEADER) as usize)
        }
        _ => None,
    }
}

/// The payload bytes a payload slot holding `spec` yields, or `None` when it must be refused.
fn payload_from(spec: &FdSpec, len: u64) -> Option<Vec<u8>> {
    match spec {
        FdSpec::Blob(b) if b.len() as u64 >= len => Some(b[..len as usize].to_vec()),
        FdSpec::Memfd {
            len: size,
            contents,
            seals,
        } if has(*seals, seal::SHRINK | seal::WRITE) && *size >= len => {
            Some(padded(contents, *size)[..len as usize].to_vec())
        }
        _ => None,
    }
}

/// The user bytes (the file less its header) of the region a slot holding
/// `spec` adopts, or `None` when it must be refused ([`region_capacity`]'s
/// rules). A fresh [`FdSpec::Region`] holds zeros.
fn region_bytes(spec: &FdSpec) -> Option<Vec<u8>> {
    let size = region_capacity(spec)?;
    Some(match spec {
        FdSpec::Memfd { len, contents, .. } => {
            padded(contents, *len)[REGION_HEADER as usize..].to_vec()
        }
        _ => vec![0; size],
    })
}

/// A lent payload's locator: where its count word is, where it is, the slot.
#[derive(Debug, Clone, Copy)]
struct Locator {
    count: u64,
    at: u64,
    slot: u32,
}

impl Locator {
    /// The locator after the selector (`check_frame` passed: the 24 bytes are there).
    fn of(b: &[u8], sel_len: usize) -> Locator {
        let at = HEADER_LEN + sel_len;
        Locator {
            count: read_le(b, at, 8).unwrap_or(u64::MAX),
            at: read_le(b, at + 8, 8).unwrap_or(u64::MAX),
            slot: read_le(b, at + 16, 4).unwrap_or(0) as u32,
        }
    }

    /// The payload of `len` bytes it locates in `region`, when the payload
    /// and the count word (4-aligned, 4 bytes) lie inside it.
    fn payload(&self, region: &[u8], len: u64) -> Option<Vec<u8>> {
        let size = region.len() as u64;
        if self.at > u64::from(u32::MAX) || self.count > u64::from(u32::MAX) {
            return None;
        }
        let end = self.at.checked_add(len).filter(|&e| e <= size)?;
        let count_ok = self.count % 4 == 0 && self.count.checked_add(4).is_some_and(|e| e <= size);
        count_ok.then(|| region[self.at as usize..end as usize].to_vec())
    }

    /// What the receiver does to its count word when the message is gone.
    fn give_back(&self, region: &mut [u8]) {
        let at = self.count as usize;
        if let Some(word) = region.get_mut(at..at + 4) {
            let v = u32::from_ne_bytes(word.try_into().unwrap_or_default()).wrapping_sub(1);
            word.copy_from_slice(&v.to_ne_bytes());
        }
    }
}

/// What the receiving end of a link remembers between frames: the regions
/// its sender asked it to keep, by slot (their user bytes, as the earlier
/// frames' receivers left them).
#[derive(Debug, Clone, Default)]
pub struct LinkModel {
    slots: Vec<Option<Vec<u8>>>,
}

impl LinkModel {
    /// The payload of a frame lent in a region (the link finds it before
    /// anything else is decoded), and the link's slots updated as the
    /// receiver does: `None` when the frame must be dropped.
    fn lent(&mut self, input: &RawInput, payload: PayloadAt) -> Option<Vec<u8>> {
        let b = &input.bytes;
        let field = |at, width| read_le(b, at, width).unwrap_or(0);
        let sel_len = field(offset::SELECTOR_LEN, 2) as usize;
        let n_fds = field(offset::OBJECTS, 1) as usize + field(offset::REGIONS, 1) as usize;
        let len = field(offset::PAYLOAD_LEN, 8);
        let loc = Locator::of(b, sel_len);
        let slot = match loc.slot {
            fuzz_support::NO_SLOT if payload == PayloadAt::Region => None,
            s if s < fuzz_support::LINK_SLOTS => Some(s as usize),
            _ => return None,
        };
        if self.slots.len() < fuzz_support::LINK_SLOTS as usize {
            self.slots.resize(fuzz_support::LINK_SLOTS as usize, None);
        }
        if payload == PayloadAt::ByRef {
            let region = self.slots[slot?].as_mut()?;
            let data = loc.payload(region, len)?;
            loc.give_back(region);
            return Some(data);
        }
        if let Some(s) = slot {
            self.slots[s] = None;
        }
        let mut region = input.fds.get(n_fds).and_then(region_bytes)?;
        let data = loc.payload(&region, len)?;
        loc.give_back(&mut region);
        if let Some(s) = slot {
            self.slots[s] = Some(region);
        }
        Some(data)
    }
}

/// What must happen to a data frame that passed the header checks on a link that had its hello.
fn expect_data(input: &RawInput, link: &mut LinkModel) -> Expect {
    let b = &input.bytes;
    let field = |at, width| read_le(b, at, width).unwrap_or(0);
    let sel_len = field(offset::SELECTOR_LEN, 2) as usize;
    let n_objects = field(offset::OBJECTS, 1) as usize;
    let n_regions = field(offset::REGIONS, 1) as usize;
    let payload_len = field(offset::PAYLOAD_LEN, 8);
    let type_id: [u8; 16] = b[offset::TYPE..offset::TYPE + 16]
        .try_into()
        .unwrap_or_default();
    let flags = Flags::of(b);
    // A lent payload is found (and the link's slots change) first.
    let lent = match flags.map(|f| f.payload) {
        Some(p @ (PayloadAt::Region | PayloadAt::ByRef)) => match link.lent(input, p) {
            Some(data) => Some(data),
            None => return Expect::Drop,
        },
        _ => None,
    };
    let Ok(selector) = fuzz_support::parse_selector(&b[HEADER_LEN..HEADER_LEN + sel_len]) else {
        return Expect::Drop;
    };
    let mut regions = Vec::new();
    for spec in &input.fds[n_objects..n_objects + n_regions] {
        match region_size(spec) {
            Some(n) => regions.push(n),
            None => return Expect::Drop,
        }
    }
    let last = input.fds.get(n_objects + n_regions);
    let data = match flags.map(|f| f.payload) {
        Some(PayloadAt::Memfd) => last.and_then(|spec| payload_from(spec, payload_len)),
        Some(PayloadAt::Region | PayloadAt::ByRef) => lent,
        _ => Some(b[HEADER_LEN + sel_len..].to_vec()),
    };
    let Some(data) = data else {
        return Expect::Drop;
    };
    if type_id != BytesMessage::TYPE_UUID {
        return Expect::Skip;
    }
    match BytesMessage::decode(type_id, &data) {
        Ok(Some(payload)) => Expect::Deliver {
            selector,
            payload,
            objects: n_objects,
            regions,
            request: flags.is_some_and(|f| f.request),
        },
        Ok(None) => Expect::Skip,
        Err(_) => Expect::DecodeError,
    }
}

/// What must happen to the first hello of a link (it passed the header checks).
///
/// A hello may hand over the sender's ring, then its eventfd; the receiver
/// cuts a link whose hello hands over anything it cannot use as such. No
/// descriptor an [`FdSpec`] makes is a ring (a ring's file is sealed, a
/// power of two plus 512 bytes long, and starts with the ring's magic
/// `busbring`, which none of them writes), so a hello with descriptors cuts
/// the link once its body decodes. (Links with real rings are the ring
/// fuzzer's, see [`crate::rings`].)
fn expect_hello(input: &RawInput) -> Expect {
    match fuzz_support::decode_hello(&input.bytes) {
        None => Expect::Drop,
        Some(_) if !input.fds.is_empty() => Expect::Cut,
        Some(_) => Expect::Hello,
    }
}

/// What must happen to `input` on a link in the state given (a link that
/// remembers no region).
pub fn expect(input: &RawInput, hello_seen: bool) -> Expect {
    expect_on(input, hello_seen, &mut LinkModel::default())
}

/// What must happen to `input` on a link in the state given, the regions
/// the link remembers updated as the receiver does.
pub fn expect_on(input: &RawInput, hello_seen: bool, link: &mut LinkModel) -> Expect {
    let b = &input.bytes;
    if input.fds.len() > MAX_FDS_PER_FRAME {
        return Expect::NotSent;
    }
    if b.len() > MAX_FRAME {
        return Expect::Drop;
    }
    if b.is_empty() && input.fds.is_empty() {
        return Expect::Closed;
    }
    if fuzz_support::check_frame(b, input.fds.len()).is_err() {
        return Expect::Drop;
    }
    // Answers to requests only travel back to the requester: going
    // forward on a data link they are refused (and count as bad).
    let answer = Flags::of(b).is_some_and(|f| f.reply);
    match b[offset::KIND] {
        KIND_HELLO if !hello_seen => expect_hello(input),
        KIND_DATA if hello_seen && !answer => expect_data(input, link),
        _ => Expect::Drop,
    }
}

/// Checks what `feed_link` did with a batch against the model. The tally of the batch, or what went wrong.
pub fn judge(cases: &[Case], inputs: &[RawInput], report: &FeedReport) -> Result<Tally, String> {
    if report.outcomes.len() != inputs.len() {
        return Err(format!(
            "{} outcomes for {} frames",
            report.outcomes.len(),
            inputs.len()
        ));
    }
    let mut t = Tally::default();
    let mut hello_seen = false;
    let mut link = LinkModel::default();
    let mut bad = 0u32;
    let mut closed = false;
    for (i, ((case, input), outcome)) in cases.iter().zip(inputs).zip(&report.outcomes).enumerate()
    {
        t.cases += 1;
        let want = if closed {
            Expect::NotSent
        } else {
            expect_on(input, hello_seen, &mut link)
        };
        let fail = |why: &str| {
            Err(format!(
                "frame {i}: {why}\n  expected {want:?}\n  got {outcome:?}\n  case {case:?}\n  bytes ({}) {:02x?}\n  fds {:?}",
                input.bytes.len(),
                &input.bytes[..input.bytes.len().min(96)],
                input.fds
            ))
        };
        if matches!(case.base, Base::Hello(_))
            && case.mutations.is_empty()
            && !hello_seen
            && !closed
            && !matches!(outcome, Outcome::Hello)
        {
            return fail("an honest hello was not taken");
        }
        if let Some(spec) = case.truthful() {
            t.honest += 1;
            if hello_seen && !closed {
                match outcome {
                    Outcome::Delivered(d)
                        if d.payload == spec.message()
                            && d.selector == spec.selector
                            && d.objects == spec.objects
                            && d.regions == spec.regions
                            && !d.request => {}
                    _ => return fail("a truthful message was not delivered as sent"),
                }
            }
        }
        match (&want, outcome) {
            (Expect::NotSent, Outcome::NotSent(_)) => t.not_sent += 1,
            (Expect::Closed, Outcome::Closed) => {
                t.hang_ups += 1;
                closed = true;
            }
            (Expect::Hello, Outcome::Hello) => {
                t.hellos += 1;
                hello_seen = true;
            }
            (Expect::Cut, Outcome::Dropped) => {
                t.dropped += 1;
                t.links_cut += 1;
                closed = true;
            }
            (Expect::Drop, Outcome::Dropped) => {
                t.dropped += 1;
                bad += 1;
                if bad >= MAX_BAD_FRAMES {
                    closed = true;
                    t.links_cut += 1;
                }
            }
            (Expect::Skip, Outcome::Skipped) => t.skipped += 1,
            (Expect::DecodeError, Outcome::DecodeError) => t.decode_errors += 1,
            (
                Expect::Deliver {
                    selector,
                    payload,
                    objects,
                    regions,
                    request,
                },
                Outcome::Delivered(d),
            ) => {
                if (&d.selector, &d.payload, d.objects, &d.regions, d.request)
                    != (selector, payload, *objects, regions, *request)
                {
                    return fail("delivered something other than what was sent");
                }
                t.delivered += 1;
            }
            (_, Outcome::Delivered(_)) => return fail("delivered a frame that must not be"),
            _ => return fail("the receiving path did something else"),
        }
    }
    if report.cut != (t.links_cut > 0) || report.closed != closed {
        return Err(format!(
            "the link was cut: {} (expected {}), closed: {} (expected {closed})",
            report.cut,
            t.links_cut > 0,
            report.closed
        ));
    }
    Ok(t)
}

/// Feeds a batch and judges it.
pub fn run_batch(cases: &[Case]) -> Result<Tally, String> {
    let inputs = build_batch(cases);
    let report = fuzz_support::feed_link(inputs.clone()).map_err(|e| format!("feed_link: {e}"))?;
    judge(cases, &inputs, &report)
}

/// Open descriptors and memfd mappings of this process: what a leak would raise.
pub fn resources() -> std::io::Result<(usize, usize)> {
    let fds = crate::open_fd_count()?;
    let maps = std::fs::read_to_string("/proc/self/maps")?
        .lines()
        .filter(|l| l.contains("/memfd:"))
        .count();
    Ok((fds, maps))
}
