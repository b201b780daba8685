//! Hostile rings for the property tests and the fuzz loop: a data link
//! whose sender owns the shared memory of the link and writes garbage into
//! it while it also sends honest messages.
//!
//! An [`Episode`] is one link ([`crate::fuzz_support::RingLink`]: a ring of
//! some capacity on a socket pair, the real receiving end behind it) and a
//! list of [`Op`]s: honest messages (into the ring, or whole through the
//! socket when they carry descriptors or do not fit, as `OutLink::send`
//! does), reads, the receiver going to sleep, and scribbles: the indices,
//! record headers, frame bytes, flag words, lying frames committed
//! properly, frames reserved and never committed, a sender that closes or
//! dies half way through a frame. [`run_episode`] plays it and checks
//! after every step what the receiving end did against a model of what it
//! may do ([`Run`]'s checks, listed there). Nothing here trusts the
//! library's own description of the ring beyond the layout table.
//!
//! # The oracle
//!
//! A frame the receiver delivers must be one of the honest messages, byte
//! for byte, unless the scribbles could have changed it; so the model
//! classifies each scribble by what it may do to what the receiver reads
//! (the harness knows exactly which bytes of the ring hold frames the
//! receiver has not read yet, see `RingLink`):
//!
//! * harmless: the ring's own header (its copies are kept by both sides),
//!   unused bytes, the futex words (they may only cost wake-ups: checked
//!   separately), bytes of the data area that hold no unread frame (the
//!   producer writes a record before it publishes it), frames reserved and
//!   never committed, a closed or "gone" flag (they end the link early, and
//!   the sender, as an honest one does, gives up when the receiver lets go):
//!   the receiver must go on delivering every honest message, in order,
//!   drop nothing and cut nothing;
//! * the bytes of one unread frame (not its record header), or a lying frame
//!   committed as a proper record: that one frame may be dropped, skipped,
//!   refused or delivered as something else (it is what the sender sent),
//!   and nothing else may change, except that a changed sequence number may
//!   change how the ring and the socket interleave (each on its own stays
//!   in order);
//! * the producer index, an unread record header, or a consumer index moved
//!   forwards into unread frames (the producer then overwrites them): from
//!   the first unread frame of the ring on, anything well formed may come
//!   out of the ring (stale frames of an earlier lap included), but the
//!   socket's frames must still all arrive, in order, unless the link is
//!   cut; scribbles that can only be read as corrupt (an index off
//!   alignment or out of range, a record of unknown kind or impossible
//!   length) must get the link cut by the next time the receiver has read
//!   everything.
//!
//! Whatever happens: no panic, every read returns, a drain of the link
//! ends within a bound, the link is cut exactly when it sent
//! `MAX_BAD_FRAMES` malformed frames or its ring is corrupt, a cut link is
//! dropped (the sender sees the hang-up), and a sleeping receiver whose
//! ring flag the sender cleared had its doorbell rung by the time the
//! sender's push returned, or was woken by the sender giving the link up.

use crate::fuzz_support::{
    self, ring_layout as layout, Honest, Pushed, RawInput, RingLink, RingRead, Unsent,
    MAX_BAD_FRAMES,
};
use crate::hostile::{self, Rng};
use busbar::{BytesMessage, LabelOp, Selector};
use std::collections::VecDeque;

/// One link and what happens on it.
#[derive(Debug, Clone)]
pub struct Episode {
    /// Bytes in the ring's data area (a power of two, at least 256).
    pub capacity: usize,
    /// Where both indices start (an honest sender starts at 0; near 2⁶⁴ they wrap).
    pub start: u64,
    /// Whether the hello hands over an eventfd with the ring.
    pub bell: bool,
    /// The steps.
    pub ops: Vec<Op>,
}

/// A value stored into an index, relative to what the model knows.
#[derive(Debug, Clone, Copy)]
pub enum Index {
    /// `k` records of 8 bytes ahead (of the producer index for the tail,
    /// of the consumer index for the head).
    Forward(u64),
    /// `k` records of 8 bytes behind.
    Back(u64),
    /// Off alignment by `d` (modulo 8, never 0).
    Misaligned(u64),
    /// More than the capacity ahead of anything the consumer could hold (`k` records more).
    Far(u64),
    /// This value.
    Any(u64),
}

/// Where a scribble lands.
#[derive(Debug, Clone, Copy)]
pub enum Spot {
    /// In the `nth` (modulo their number) record the receiver has not read
    /// yet, `offset` (modulo its length) bytes in; in free space when there is none.
    Live {
        /// Which record.
        nth: usize,
        /// Where in it.
        offset: usize,
    },
    /// In the frame bytes (past the record header) of the `nth` unread
    /// record; in free space when there is none (or it is padding).
    Payload {
        /// Which record.
        nth: usize,
        /// Where in its frame.
        offset: usize,
    },
    /// In the part of the data area that holds no unread record.
    Free {
        /// Where in it (modulo its length).
        offset: usize,
    },
    /// Anywhere in the file (modulo its length).
    File {
        /// Where.
        offset: usize,
    },
}

/// One step of an episode.
#[derive(Debug, Clone)]
pub enum Op {
    /// An honest message of `len` payload bytes to selector number
    /// `selector`, carrying `objects` pipes (then through the socket).
    Send {
        /// Payload bytes after the 8 that number it.
        len: usize,
        /// Pipes attached.
        objects: usize,
        /// Which of the test selectors.
        selector: u8,
    },
    /// Up to this many reads (fewer when the link is empty).
    Read(u8),
    /// Reads until the link is empty or ends.
    Drain,
    /// The receiver goes to sleep (raises the ring's flag).
    Sleep,
    /// The receiver's spin loop looks at the ring.
    Spin,
    /// A hostile frame committed as a proper record; with `stamp`, its
    /// sequence field is set to the link's next number.
    Lie {
        /// The frame.
        bytes: Vec<u8>,
        /// Whether it takes the next sequence number.
        stamp: bool,
    },
    /// Room reserved for a frame of `len` bytes, `written` of them written, never committed.
    Abandon {
        /// Frame length.
        len: usize,
        /// Bytes written.
        written: usize,
    },
    /// Stores into the producer index.
    Tail(Index),
    /// Stores into the consumer index.
    Head(Index),
    /// Stores a record header (8-aligned) at a spot of the data area.
    Record {
        /// Where.
        at: Spot,
        /// Its kind (`FRAM`, `PADD` or anything).
        kind: u32,
        /// Its length.
        len: u32,
    },
    /// Writes bytes at a spot.
    Bytes {
        /// Where.
        at: Spot,
        /// What.
        bytes: Vec<u8>,
    },
    /// Stores a flag word: 0 sleeping, 1 closed, 2 room, 3 gone.
    Flag {
        /// Which.
        word: u8,
        /// What.
        value: u32,
    },
    /// The sender closes the ring and hangs up (ends the episode).
    Close,
    /// The sender dies half way through a frame: reserved, partly written,
    /// never committed, closed flag down, socket closed (ends the episode).
    Die {
        /// Frame length.
        len: usize,
        /// Bytes written.
        written: usize,
    },
}

/// Totals over episodes.
#[derive(Debug, Default, Clone, Copy)]
pub struct RingTally {
    /// Episodes played.
    pub episodes: u64,
    /// Episodes whose scribbles never reached beyond single frames and
    /// never left a gap in the numbering: checked strictly at every drain.
    pub strict_episodes: u64,
    /// Steps played.
    pub steps: u64,
    /// Reads of the receiving end.
    pub reads: u64,
    /// Honest messages sent through the ring.
    pub sent_ring: u64,
    /// Honest messages sent through the socket.
    pub sent_socket: u64,
    /// Honest messages delivered byte for byte.
    pub delivered: u64,
    /// Deliveries of honest messages that had been scribbled on, or stale copies of earlier ones.
    pub delivered_tainted: u64,
    /// Deliveries of messages no honest step sent (lies, scribbled frames).
    pub forged: u64,
    /// Frames dropped as malformed.
    pub dropped: u64,
    /// Frames skipped (a type the receiver does not know).
    pub skipped: u64,
    /// Payloads that did not decode.
    pub decode_errors: u64,
    /// Lying frames committed.
    pub lies: u64,
    /// Scribbles (indices, records, bytes, flags).
    pub scribbles: u64,
    /// Scribbles that may have changed what the ring holds from some frame on.
    pub ring_taints: u64,
    /// Links cut for malformed frames.
    pub cut_bad_frames: u64,
    /// Links cut with a ring that may be corrupt.
    pub cut_corrupt: u64,
    /// Links the sender closed (or died on).
    pub closed: u64,
    /// Times the honest sender gave up (the receiver let go, the producer found the ring broken).
    pub gave_up: u64,
    /// Times the receiver went to sleep.
    pub sleeps: u64,
    /// Commits that found the receiver asleep and rang its doorbell.
    pub woken: u64,
    /// Times a sleeping receiver's flag was lowered without its doorbell
    /// ringing (only counted, not failed, with [`Checks::allow_lost_wakeups`]).
    pub lost_wakeups: u64,
}

impl RingTally {
    /// Adds another tally.
    pub fn add(&mut self, o: &RingTally) {
        let RingTally {
            episodes,
            strict_episodes,
            steps,
            reads,
            sent_ring,
            sent_socket,
            delivered,
            delivered_tainted,
            forged,
            dropped,
            skipped,
            decode_errors,
            lies,
            scribbles,
            ring_taints,
            cut_bad_frames,
            cut_corrupt,
            closed,
            gave_up,
            sleeps,
            woken,
            lost_wakeups,
        } = *o;
        self.episodes += episodes;
        self.strict_episodes += strict_episodes;
        self.steps += steps;
        self.reads += reads;
        self.sent_ring += sent_ring;
        self.sent_socket += sent_socket;
        self.delivered += delivered;
        self.delivered_tainted += delivered_tainted;
        self.forged += forged;
        self.dropped += dropped;
        self.skipped += skipped;
        self.decode_errors += decode_errors;
        self.lies += lies;
        self.scribbles += scribbles;
        self.ring_taints += ring_taints;
        self.cut_bad_frames += cut_bad_frames;
        self.cut_corrupt += cut_corrupt;
        self.closed += closed;
        self.gave_up += gave_up;
        self.sleeps += sleeps;
        self.woken += woken;
        self.lost_wakeups += lost_wakeups;
    }
}

/// What [`run_episode`] lets pass.
#[derive(Debug, Default, Clone, Copy)]
pub struct Checks {
    /// Count lost wake-ups ([`RingTally::lost_wakeups`]) instead of failing
    /// on them, and wake the receiver as its `recv` timeout would: to keep
    /// a run going, looking for anything else, while one is being fixed
    /// (`tests/ring_wakeups.rs` is the regression test of the one found).
    pub allow_lost_wakeups: bool,
}

// ---------------------------------------------------------------------------
// Honest messages.

/// The selectors honest messages go to.
pub fn selectors() -> Vec<Selector> {
    let op = |s: &str| s.parse::<LabelOp>().unwrap_or_else(|_| LabelOp::leaf(s));
    vec![
        Selector::unicast("a"),
        Selector::multicast(op("gpu & !cpu")),
        Selector::unicast(op("(a | b) & \"x y\"")),
        Selector::multicast(op("renderer | com.solar/earth-1 | ü")),
    ]
}

/// Honest message number `index`: its first 8 bytes are its number, so a
/// delivered message says which one it claims to be.
pub fn honest_message(index: usize, len: usize) -> BytesMessage {
    let mut data = (index as u64).to_le_bytes().to_vec();
    data.extend(crate::pattern(len));
    BytesMessage::new(index as u16 ^ 0x5a5a, data)
}

/// The number a delivered message claims to be.
fn claimed_index(m: &BytesMessage) -> Option<usize> {
    let n = u64::from_le_bytes(m.data.get(..8)?.try_into().ok()?);
    usize::try_from(n).ok()
}

// ---------------------------------------------------------------------------
// Random episodes (the fuzz loop; the property tests have proptest strategies).

fn random_index(rng: &mut Rng, capacity: usize) -> Index {
    match rng.below(6) {
        0 | 1 => Index::Forward(1 + rng.below(capacity / 8 + 2) as u64),
        2 => Index::Back(1 + rng.below(8) as u64),
        3 => Index::Misaligned(1 + rng.below(7) as u64),
        4 => Index::Far(rng.below(4) as u64),
        _ => Index::Any(rng.next_u64()),
    }
}

fn random_spot(rng: &mut Rng) -> Spot {
    match rng.below(4) {
        0 | 1 => Spot::Live {
            nth: rng.below(4),
            offset: rng.below(1 << 16),
        },
        2 => Spot::Free {
            offset: rng.below(1 << 16),
        },
        _ => Spot::File {
            offset: rng.below(1 << 20),
        },
    }
}

/// A random payload length for a ring of `capacity` bytes: mostly small,
/// some near the largest frame the ring takes, a few too large for it.
fn random_len(rng: &mut Rng, capacity: usize) -> usize {
    match rng.below(20) {
        0..=11 => rng.below(64),
        12..=16 => rng.below(capacity / 2),
        17 | 18 => capacity / 2 + rng.below(capacity / 2),
        _ => rng.below(2 * capacity),
    }
}

/// How wild an episode's scribbles are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// Anything.
    Wild,
    /// Nothing that may change what the ring holds beyond single frames:
    /// no index or record header of an unread frame is touched, so the
    /// strict checks hold to the end.
    Gentle,
    /// Gentle, with many lying frames (links get cut for them).
    Liar,
}

/// A random step.
pub fn random_op(rng: &mut Rng, capacity: usize, flavour: Flavour) -> Op {
    if flavour != Flavour::Wild {
        return gentle_op(rng, capacity, flavour == Flavour::Liar);
    }
    wild_op(rng, capacity)
}

/// A step that does not touch an index or an unread record header.
fn gentle_op(rng: &mut Rng, capacity: usize, liar: bool) -> Op {
    if liar && rng.chance(25) {
        let case = hostile::random_case(rng);
        return Op::Lie {
            bytes: case.build(0).bytes,
            stamp: rng.chance(70),
        };
    }
    loop {
        match wild_op(rng, capacity) {
            Op::Tail(_) | Op::Head(_) => continue,
            Op::Record {
                at: Spot::Free { offset },
                kind,
                len,
            } => {
                return Op::Record {
                    at: Spot::Free { offset },
                    kind,
                    len,
                }
            }
            Op::Record { .. } => continue,
            // Frame bytes only: past the record header of whichever record it lands in.
            Op::Bytes {
                at: Spot::Live { nth, offset },
                bytes,
            } => {
                return Op::Bytes {
                    at: Spot::Payload { nth, offset },
                    bytes,
                }
            }
            Op::Bytes {
                at: Spot::File { .. },
                ..
            } => continue,
            op => return op,
        }
    }
}

fn wild_op(rng: &mut Rng, capacity: usize) -> Op {
    match rng.below(100) {
        0..=29 => Op::Send {
            len: random_len(rng, capacity),
            objects: if rng.chance(10) { 1 + rng.below(3) } else { 0 },
            selector: rng.below(4) as u8,
        },
        30..=39 => Op::Read(1 + rng.below(4) as u8),
        40..=46 => Op::Drain,
        47..=52 => Op::Sleep,
        53..=55 => Op::Spin,
        56..=61 => {
            let case = hostile::random_case(rng);
            Op::Lie {
                bytes: case.build(0).bytes,
                stamp: rng.chance(70),
            }
        }
        62..=65 => {
            let len = random_len(rng, capacity);
            Op::Abandon {
                len,
                written: rng.below(len + 1),
            }
        }
        66..=70 => Op::Tail(random_index(rng, capacity)),
        71..=75 => Op::Head(random_index(rng, capacity)),
        76..=81 => Op::Record {
            at: random_spot(rng),
            kind: {
                let any = rng.next_u64() as u32;
                rng.pick(&[
                    layout::KIND_FRAME,
                    layout::KIND_FRAME,
                    layout::KIND_PAD,
                    0,
                    any,
                ])
            },
            len: match rng.below(4) {
                0 => rng.below(capacity + 16) as u32,
                1 => (capacity - 8) as u32,
                2 => rng.below(64) as u32,
                _ => rng.next_u64() as u32,
            },
        },
        82..=93 => Op::Bytes {
            at: random_spot(rng),
            bytes: {
                let n = 1 + rng.below(16);
                rng.bytes(n)
            },
        },
        94..=97 => Op::Flag {
            word: rng.below(4) as u8,
            value: {
                let any = rng.next_u64() as u32;
                rng.pick(&[0, 1, 1, 2, u32::MAX, any])
            },
        },
        98 => Op::Close,
        _ => {
            let len = random_len(rng, capacity);
            Op::Die {
                len,
                written: rng.below(len + 1),
            }
        }
    }
}

/// A random episode.
pub fn random_episode(rng: &mut Rng) -> Episode {
    let flavour = match rng.below(20) {
        0..=7 => Flavour::Wild,
        8..=14 => Flavour::Gentle,
        _ => Flavour::Liar,
    };
    let capacity = rng.pick(&[256, 256, 512, 1024, 4096, 16384]);
    let start = match rng.below(10) {
        0..=6 => 0,
        // Wraps past 2⁶⁴ within the first laps.
        7 | 8 => (u64::MAX - 7).wrapping_sub(8 * rng.below(capacity / 4) as u64),
        _ => rng.next_u64() & !7,
    };
    let n = 1 + rng.below(150);
    let mut ops: Vec<Op> = (0..n).map(|_| random_op(rng, capacity, flavour)).collect();
    match rng.below(10) {
        0..=2 => ops.push(Op::Close),
        3 | 4 => {
            let len = random_len(rng, capacity);
            ops.push(Op::Die {
                len,
                written: rng.below(len + 1),
            });
        }
        _ => {}
    }
    Episode {
        capacity,
        start,
        bell: rng.chance(90),
        ops,
    }
}

// ---------------------------------------------------------------------------
// The model and its checks.

/// Which way an honest message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Ring,
    Socket,
}

/// An honest message sent.
#[derive(Debug)]
struct Sent {
    stream: Stream,
    seq: u32,
    selector: Selector,
    message: BytesMessage,
    objects: usize,
    delivered: bool,
    /// Its bytes were scribbled on while the receiver had not read them.
    tainted: bool,
}

/// What a published record of the ring holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    Pad,
    Honest(usize),
    Lie,
}

/// Which producer call [`Run::published`] looks at, and what it owes a
/// sleeping receiver whose flag is down when the call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    /// An honest push that went in or found the ring full: it rang the
    /// doorbell, whoever lowered the flag (its own commit or padding, or
    /// padding an abandoned frame published before: the producer owes that
    /// wake-up until its next push, which pays it).
    Honest,
    /// An honest push that found the ring corrupt or the receiver gone: it
    /// publishes nothing, and the sender gives the link up and hangs up,
    /// which wakes the receiver through its socket ([`Run::give_up`]). A
    /// wake-up owed for an abandoned frame's padding is paid that way.
    GivesUp,
    /// A frame reserved and never committed (a hostile sender, or one that
    /// stops half way): the padding published on the way may lower the
    /// flag, and the wake-up is owed to its next push.
    Abandons,
}

/// A record published and not yet released, in positions (indices less the start).
#[derive(Debug, Clone, Copy)]
struct Live {
    start: u64,
    /// Bytes of the record, header and padding included.
    total: u64,
    /// Bytes of the frame (0 for padding).
    frame: usize,
    held: Held,
}

/// Where an episode stands; every check is made against it.
///
/// The checks, by step:
///
/// * every read: a delivered message is an honest one, byte for byte, or
///   the scribbles allow otherwise ([`Run::deliver`]); the same for drops,
///   skips and decode errors ([`Run::odd`]); a link that ends was cut with
///   cause or closed by the sender ([`Run::closed`]); the consumer released
///   whole records only;
/// * a drain: it ends within a bound; when it ends empty, every honest
///   message that could not have been lost has arrived, everything published
///   was released, and no scribble that can only read as corrupt is left
///   unseen;
/// * the receiver going to sleep: it sleeps exactly when nothing is unread;
///   while it sleeps, a frame committed lowers its flag and rings its
///   doorbell, and once an honest push returns, its flag is not down
///   without the doorbell having rung (unless the scribbler touched the
///   flag, or the push gave the link up: the hang-up wakes it; see [`Call`]);
/// * an honest send: it never fails or finds the ring corrupt unless a
///   scribble explains it, and never stays full once the receiver has read everything.
struct Run {
    link: RingLink,
    cap: usize,
    start: u64,
    selectors: Vec<Selector>,
    sent: Vec<Sent>,
    next_seq: u32,
    live: VecDeque<Live>,
    /// From which honest message on the ring's frames may be anything.
    ring_taint_from: Option<usize>,
    /// From which honest message on the ring's frames may be lost: the
    /// receiver may have let go of the ring (its closed flag was scribbled)
    /// without the sender noticing (its gone flag was scribbled back).
    ring_lost_from: Option<usize>,
    /// A sequence number may have been changed (the ring and the socket may interleave otherwise).
    seq_taint: bool,
    /// Frames that may come out as something other than an honest message.
    odd_budget: usize,
    odd_seen: usize,
    bad_seen: u32,
    head_scribbled: bool,
    closed_scribbled: bool,
    gone_scribbled: bool,
    /// Why the ring must be found corrupt by the end of the next drain.
    must_cut: Option<String>,
    /// Likewise, until the producer publishes again (it overwrites the tail).
    must_cut_tail: Option<String>,
    /// The receiver sleeps; whether its flag was scribbled since.
    asleep: Option<bool>,
    bell: bool,
    checks: Checks,
    trace: bool,
    sender_gone: bool,
    hung_up: bool,
    ended: bool,
    tally: RingTally,
}

type Check = Result<(), String>;

fn fail<T>(why: impl Into<String>) -> Result<T, String> {
    Err(why.into())
}

impl Run {
    fn pos(&self, index: u64) -> u64 {
        index.wrapping_sub(self.start)
    }

    fn clean(&self) -> bool {
        self.ring_taint_from.is_none()
    }

    /// Whether the sender may legitimately find the ring broken or the receiver gone.
    fn sender_may_fail(&self) -> bool {
        !self.clean()
            || self.head_scribbled
            || self.closed_scribbled
            || self.gone_scribbled
            || !self.link.is_open()
    }

    fn lossy(&self, i: usize) -> bool {
        let s = &self.sent[i];
        let from = match (self.ring_taint_from, self.ring_lost_from) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        s.tainted || (s.stream == Stream::Ring && from.is_some_and(|from| i >= from))
    }

    /// From now on the ring's frames (the first unread honest one on) may be anything.
    fn taint_ring(&mut self) {
        if self.ring_taint_from.is_none() {
            self.tally.ring_taints += 1;
        }
        let first_unread = self.first_unread_ring();
        self.ring_taint_from = Some(
            self.ring_taint_from
                .map_or(first_unread, |f| f.min(first_unread)),
        );
        self.seq_taint = true;
        self.live.clear();
        self.must_cut = None;
        self.must_cut_tail = None;
    }

    /// The first honest message of the ring the receiver has not delivered.
    fn first_unread_ring(&self) -> usize {
        (0..self.sent.len())
            .find(|&i| self.sent[i].stream == Stream::Ring && !self.sent[i].delivered)
            .unwrap_or(self.sent.len())
    }

    // --- what a scribble may do

    /// Classifies a write of `n` bytes at file offset `at` (see the module docs).
    fn touch(&mut self, at: usize, n: usize) {
        let end = at.saturating_add(n);
        let hits = |lo: usize, hi: usize| at < hi && lo < end;
        if hits(layout::TAIL, layout::TAIL + 8) {
            self.taint_ring();
        }
        if hits(layout::HEAD, layout::HEAD + 8) {
            // Any value may be forwards: the producer may overwrite unread frames.
            self.head_scribbled = true;
            self.taint_ring();
        }
        if hits(layout::SLEEPING, layout::SLEEPING + 4) {
            if let Some(flag) = self.asleep.as_mut() {
                *flag = true;
            }
        }
        if hits(layout::CLOSED, layout::CLOSED + 4) {
            self.closed_scribbled = true;
        }
        if hits(layout::GONE, layout::GONE + 4) {
            self.gone_scribbled = true;
        }
        if self.closed_scribbled && self.gone_scribbled && self.ring_lost_from.is_none() {
            self.ring_lost_from = Some(self.first_unread_ring());
        }
        if end <= layout::DATA {
            return;
        }
        if self.ring_taint_from.is_some() {
            // Nobody knows where the records are any more: this may write
            // over (or hide inside a longer record) the one that had to read
            // as corrupt.
            self.must_cut = None;
            return;
        }
        let (lo, hi) = (at.max(layout::DATA) - layout::DATA, end - layout::DATA);
        let mut ring_wide = false;
        for rec in self.live.clone() {
            let off = (self.start.wrapping_add(rec.start) % self.cap as u64) as usize;
            if lo < off + 8 && off < hi {
                ring_wide = true;
            }
            let body = (off + 8, off + 8 + rec.frame);
            if rec.frame > 0 && lo < body.1 && body.0 < hi {
                // Its sequence number may have changed too.
                self.seq_taint = true;
                if let Held::Honest(i) = rec.held {
                    self.sent[i].tainted = true;
                    self.odd_budget += 1;
                }
            }
        }
        if ring_wide {
            self.taint_ring();
        }
    }

    /// The file offset of a spot, and the room there (so that a write does
    /// not run into the next part); `None` when it names nothing.
    fn locate(&self, spot: Spot) -> Option<(usize, usize)> {
        let cap = self.cap as u64;
        let data = |index: u64| (index % cap) as usize;
        match spot {
            Spot::Live { nth, offset } if !self.live.is_empty() => {
                let rec = self.live[nth % self.live.len()];
                let off = data(self.start.wrapping_add(rec.start));
                let len = 8 + rec.frame;
                let at = offset % len;
                Some((layout::DATA + off + at, len - at))
            }
            Spot::Payload { nth, offset } if !self.live.is_empty() => {
                let rec = self.live[nth % self.live.len()];
                if rec.frame == 0 {
                    return self.locate(Spot::Free { offset });
                }
                let off = data(self.start.wrapping_add(rec.start));
                let at = offset % rec.frame;
                Some((layout::DATA + off + 8 + at, rec.frame - at))
            }
            Spot::Live { offset, .. } | Spot::Payload { offset, .. } | Spot::Free { offset } => {
                let used = self
                    .link
                    .producer_tail()
                    .wrapping_sub(self.link.consumer_head());
                let free = cap.checked_sub(used).filter(|&f| f > 0)?;
                let index = self.link.producer_tail().wrapping_add(offset as u64 % free);
                let off = data(index);
                let room = (free - offset as u64 % free).min(cap - off as u64);
                Some((layout::DATA + off, room as usize))
            }
            Spot::File { offset } => {
                let len = layout::DATA + self.cap;
                let at = offset % len;
                Some((at, len - at))
            }
        }
    }

    // --- the sender

    /// The honest sender found the link unusable: it closes its ring and hangs up.
    fn give_up(&mut self, why: &str) -> Check {
        if !self.sender_may_fail() {
            return fail(format!(
                "the honest sender had to give up ({why}) with no scribble to explain it"
            ));
        }
        self.tally.gave_up += 1;
        self.link.ring().close();
        self.link.hang_up();
        self.sender_gone = true;
        self.hung_up = true;
        self.socket_ready();
        Ok(())
    }

    /// What the poller does when the socket has something: the receiver wakes.
    fn socket_ready(&mut self) {
        self.link.wake();
        self.asleep = None;
    }

    /// Updates the model after a producer call: what it published, and whether a sleeping receiver was woken.
    fn published(
        &mut self,
        before: u64,
        frame: Option<(usize, Held)>,
        woke: bool,
        by: Call,
    ) -> Check {
        let after = self.link.producer_tail();
        let moved = self.pos(after).wrapping_sub(self.pos(before));
        if by == Call::GivesUp && moved != 0 {
            return fail(format!(
                "a push that found the link unusable published {moved} bytes"
            ));
        }
        if moved != 0 {
            self.must_cut_tail = None;
        }
        let rec = frame.map(|(len, held)| (8 + layout::padded(len) as u64, len, held));
        if moved < rec.map_or(0, |r| r.0) || moved > self.cap as u64 {
            return fail(format!(
                "the producer published {moved} bytes for a record of {} in a ring of {}",
                rec.map_or(0, |r| r.0),
                self.cap
            ));
        }
        if moved != 0 && self.clean() {
            let mut at = self.pos(before);
            let pad = moved - rec.map_or(0, |r| r.0);
            if pad > 0 {
                self.live.push_back(Live {
                    start: at,
                    total: pad,
                    frame: 0,
                    held: Held::Pad,
                });
                at += pad;
            }
            if let Some((total, len, held)) = rec {
                self.live.push_back(Live {
                    start: at,
                    total,
                    frame: len,
                    held,
                });
            }
        }
        if woke {
            self.tally.woken += 1;
        }
        if self.asleep == Some(false) && self.bell {
            let flag = self
                .link
                .ring()
                .scribble()
                .load_u32(layout::SLEEPING)
                .unwrap_or(1);
            if frame.is_some() && flag != 0 {
                return fail(
                    "a frame was committed while the receiver slept, and its flag is still up",
                );
            }
            if by == Call::Honest && flag == 0 && !self.link.bell_rung() {
                if self.checks.allow_lost_wakeups {
                    self.tally.lost_wakeups += 1;
                    self.socket_ready();
                    return Ok(());
                }
                return fail(format!(
                    "lost wake-up: the receiver slept, the sender lowered its flag (publishing {moved} bytes{}), and its doorbell did not ring",
                    if frame.is_some() { " with a frame" } else { " of padding only" }
                ));
            }
        }
        Ok(())
    }

    /// Pushes a frame as an honest sender does: when the ring is full, the
    /// receiver reads and it tries again. Whether it went in.
    fn push(&mut self, frame: &[u8], held: Held) -> Result<bool, String> {
        for attempt in 0..4 {
            if self.ended {
                return Ok(false);
            }
            let before = self.link.producer_tail();
            let pushed = self.link.push(frame);
            let woke = matches!(pushed, Pushed::Sent { woke: true });
            let went = matches!(pushed, Pushed::Sent { .. });
            let by = match pushed {
                Pushed::Corrupt(_) | Pushed::Gone => Call::GivesUp,
                _ => Call::Honest,
            };
            self.published(before, went.then_some((frame.len(), held)), woke, by)?;
            match pushed {
                Pushed::Sent { .. } => return Ok(true),
                Pushed::Full if attempt < 3 => self.drain()?,
                Pushed::Full => {
                    // (With a gap in the numbering, the receiver may be waiting.)
                    if self.sender_may_fail() || self.seq_taint {
                        return Ok(false);
                    }
                    return fail(format!(
                        "a frame of {} bytes does not fit a ring of {} after the receiver read everything",
                        frame.len(),
                        self.cap
                    ));
                }
                Pushed::TooLarge => {
                    return fail(format!(
                        "a frame of {} bytes is too large for a ring of {}",
                        frame.len(),
                        self.cap
                    ))
                }
                Pushed::Corrupt(why) => {
                    self.give_up(&format!("the producer found the ring corrupt: {why}"))?;
                    return Ok(false);
                }
                Pushed::Gone => {
                    self.give_up("the receiver let go of the ring")?;
                    return Ok(false);
                }
                Pushed::Closed => return fail("pushed into a closed ring"),
            }
        }
        Ok(false)
    }

    fn send(&mut self, len: usize, objects: usize, selector: u8) -> Check {
        if self.sender_gone {
            return Ok(());
        }
        if self.link.ring().consumer_gone() || self.link.receiver_hung_up() {
            return self.give_up("the receiver let go of the link");
        }
        let index = self.sent.len();
        let selector = self.selectors[selector as usize % self.selectors.len()].clone();
        let message = honest_message(index, len);
        let seq = self.next_seq;
        let in_line = fuzz_support::data_frame(&selector, &message, seq)
            .filter(|f| objects == 0 && f.len() <= self.link.ring().max_frame_len());
        let sent = Sent {
            stream: Stream::Ring,
            seq,
            selector: selector.clone(),
            message: message.clone(),
            objects,
            delivered: false,
            tainted: false,
        };
        if let Some(frame) = in_line {
            // (A drain while it waits for room cannot read it: it is not in the ring yet.)
            if self.push(&frame, Held::Honest(index))? {
                self.sent.push(sent);
                self.next_seq = self.next_seq.wrapping_add(1);
                self.tally.sent_ring += 1;
            }
            return Ok(());
        }
        let Some(input) = fuzz_support::honest_frame(&Honest {
            selector,
            message,
            seq,
            objects,
            regions: Vec::new(),
            spill: false,
        }) else {
            return Ok(());
        };
        self.send_socket(
            input,
            Sent {
                stream: Stream::Socket,
                ..sent
            },
        )
    }

    fn send_socket(&mut self, input: RawInput, sent: Sent) -> Check {
        for attempt in 0..4 {
            match self.link.send_socket(&input) {
                Ok(()) => {
                    self.sent.push(sent);
                    self.next_seq = self.next_seq.wrapping_add(1);
                    self.tally.sent_socket += 1;
                    self.socket_ready();
                    return Ok(());
                }
                Err(Unsent::Refused(e))
                    if e.kind() == std::io::ErrorKind::WouldBlock && attempt < 3 =>
                {
                    self.socket_ready();
                    self.drain()?;
                    if self.ended {
                        return Ok(());
                    }
                }
                Err(Unsent::Refused(e)) => {
                    return self.give_up(&format!("the socket refused a frame: {e}"))
                }
                Err(e @ Unsent::Setup(_)) => return fail(format!("harness: {e}")),
            }
        }
        Ok(())
    }

    fn lie(&mut self, mut bytes: Vec<u8>, stamp: bool) -> Check {
        if self.sender_gone || bytes.len() > self.link.ring().max_frame_len() {
            return Ok(());
        }
        if self.link.ring().consumer_gone() || self.link.receiver_hung_up() {
            return self.give_up("the receiver let go of the link");
        }
        let stamped = match bytes.get_mut(12..16) {
            Some(field) if stamp => {
                field.copy_from_slice(&self.next_seq.to_le_bytes());
                true
            }
            _ => false,
        };
        // A frame whose header does not read, or that carries another
        // number than its place, changes how the receiver interleaves the
        // ring with the socket (each still in order), and may leave a gap
        // it waits on for a while.
        if !stamped || fuzz_support::header_seq(&bytes) != Some(self.next_seq) {
            self.seq_taint = true;
        }
        // The link takes a data frame that passes its checks (the number
        // is used, even if decoding refuses it then); it drops anything
        // else without using the number, which the next frame then takes.
        let taken = fuzz_support::check_frame(&bytes, 0).is_ok()
            && bytes.get(6) == Some(&fuzz_support::KIND_DATA);
        if self.push(&bytes, Held::Lie)? {
            self.odd_budget += 1;
            self.tally.lies += 1;
            if stamped && taken {
                self.next_seq = self.next_seq.wrapping_add(1);
            }
        }
        Ok(())
    }

    fn abandon(&mut self, len: usize, written: usize) -> Check {
        if self.sender_gone {
            return Ok(());
        }
        let frame = vec![0xa5; len];
        let before = self.link.producer_tail();
        self.link.abandon(&frame, written);
        self.published(before, None, false, Call::Abandons)
    }

    // --- the receiver

    /// Handles what one read gave; whether the link has nothing more now.
    fn read_one(&mut self) -> Result<bool, String> {
        if self.asleep.is_some() {
            self.socket_ready();
        }
        self.tally.reads += 1;
        let got = self.link.read();
        if self.trace {
            let what = match &got {
                RingRead::Delivered { seq, message } => format!(
                    "Delivered seq {seq} claiming {:?} ({} bytes)",
                    claimed_index(&message.payload),
                    message.payload.data.len()
                ),
                other => format!("{other:?}"),
            };
            println!(
                "  read: {what} (head {:#x}, bad {})",
                self.link.consumer_head(),
                self.link.bad_frames()
            );
        }
        self.released()?;
        match got {
            RingRead::Delivered { seq, message } => {
                self.deliver(seq, message)?;
                Ok(false)
            }
            RingRead::Dropped => {
                self.tally.dropped += 1;
                self.bad_seen += 1;
                self.odd("dropped a frame")?;
                self.check_bad_count()?;
                Ok(false)
            }
            RingRead::Skipped => {
                self.tally.skipped += 1;
                self.odd("skipped a frame")?;
                Ok(false)
            }
            RingRead::DecodeError => {
                self.tally.decode_errors += 1;
                self.odd("a payload did not decode")?;
                Ok(false)
            }
            RingRead::Nothing => Ok(false),
            RingRead::Empty => Ok(true),
            RingRead::Closed { cut, newly_bad } => {
                self.closed(cut, newly_bad)?;
                Ok(true)
            }
        }
    }

    fn check_bad_count(&self) -> Check {
        if self.clean() && self.bad_seen != self.link.bad_frames() {
            return fail(format!(
                "the link counts {} malformed frames, the reads reported {}",
                self.link.bad_frames(),
                self.bad_seen
            ));
        }
        Ok(())
    }

    /// After a read: the records the consumer released leave the model.
    fn released(&mut self) -> Check {
        if !self.clean() {
            return Ok(());
        }
        let head = self.pos(self.link.consumer_head());
        while let Some(rec) = self.live.front() {
            if rec.start + rec.total <= head {
                self.live.pop_front();
            } else if rec.start < head {
                return fail(format!(
                    "the consumer released {} of the {} bytes of a record",
                    head - rec.start,
                    rec.total
                ));
            } else {
                break;
            }
        }
        let tail = self.pos(self.link.producer_tail());
        if head > tail {
            return fail(format!(
                "the consumer released {head} bytes, only {tail} were published"
            ));
        }
        Ok(())
    }

    /// A frame that is not an honest message came out (or none did where one was).
    fn odd(&mut self, what: &str) -> Check {
        self.odd_seen += 1;
        if self.clean() && self.odd_seen > self.odd_budget {
            return fail(format!(
                "{what}: {} such outcomes, but only {} lying or scribbled frames could explain them",
                self.odd_seen, self.odd_budget
            ));
        }
        Ok(())
    }

    fn deliver(&mut self, seq: u32, d: crate::fuzz_support::Delivered) -> Check {
        let honest = claimed_index(&d.payload).filter(|&i| {
            self.sent.get(i).is_some_and(|s| {
                s.message == d.payload
                    && s.selector == d.selector
                    && s.objects == d.objects
                    && d.regions.is_empty()
            })
        });
        let Some(i) = honest else {
            self.tally.forged += 1;
            return self.odd("delivered a message no honest step sent");
        };
        if self.lossy(i) {
            self.tally.delivered_tainted += 1;
            self.sent[i].delivered = true;
            return Ok(());
        }
        if self.sent[i].delivered {
            if self.clean() {
                return fail(format!("honest message {i} was delivered twice"));
            }
            // A stale copy from an earlier lap, exposed by a scribbled index.
            self.tally.delivered_tainted += 1;
            return Ok(());
        }
        let stream = self.sent[i].stream;
        let missing = (0..i).find(|&j| {
            !self.sent[j].delivered
                && !self.lossy(j)
                && (self.sent[j].stream == stream || (!self.seq_taint && self.clean()))
        });
        if let Some(j) = missing {
            return fail(format!(
                "honest message {i} ({stream:?}, seq {}) was delivered before honest message {j} ({:?}, seq {})",
                self.sent[i].seq, self.sent[j].stream, self.sent[j].seq
            ));
        }
        if !self.seq_taint && seq != self.sent[i].seq {
            return fail(format!(
                "honest message {i} came with seq {seq}, sent with {}",
                self.sent[i].seq
            ));
        }
        self.sent[i].delivered = true;
        self.tally.delivered += 1;
        Ok(())
    }

    /// The receiver dropped the link.
    fn closed(&mut self, cut: bool, newly_bad: u32) -> Check {
        self.ended = true;
        self.asleep = None;
        if !self.link.receiver_hung_up() {
            return fail("the receiver dropped the link, but the sender's socket does not show it");
        }
        if !cut {
            if !self.hung_up {
                return fail("the link ended without a cut while the sender was still connected");
            }
            return Ok(());
        }
        if self.clean() {
            self.bad_seen += newly_bad;
            self.tally.dropped += u64::from(newly_bad);
            if newly_bad != 1 || self.bad_seen != MAX_BAD_FRAMES {
                return fail(format!(
                    "the link was cut ({} malformed frames, {newly_bad} in the last read) though its ring holds only well-formed records",
                    self.link.bad_frames()
                ));
            }
            self.odd("the frame that got the link cut")?;
            self.tally.cut_bad_frames += 1;
        } else {
            self.tally.cut_corrupt += 1;
        }
        self.must_cut = None;
        self.must_cut_tail = None;
        Ok(())
    }

    /// Reads until the link is empty or ends, then checks what must hold then.
    fn drain(&mut self) -> Check {
        if self.ended {
            return Ok(());
        }
        let bound = self.cap / 4 + 4 * self.sent.len() + 64;
        for _ in 0..bound {
            if self.read_one()? {
                return self.drained();
            }
        }
        fail(format!(
            "a drain of the link did not end within {bound} reads (hang)"
        ))
    }

    fn drained(&mut self) -> Check {
        // With a gap in the numbering, the receiver may wait a while for the
        // frame due (it may come late on the socket), and say the link is
        // empty meanwhile. The end of the episode (the sender hangs up, so
        // nothing more can come) checks all of this then.
        if self.ended || self.seq_taint {
            return Ok(());
        }
        if let Some(why) = self.must_cut.take().or(self.must_cut_tail.take()) {
            return fail(format!(
                "the receiver read everything and did not find the ring corrupt: {why}"
            ));
        }
        if let Some(i) = (0..self.sent.len()).find(|&i| !self.sent[i].delivered && !self.lossy(i)) {
            return fail(format!(
                "the link is empty, and honest message {i} ({:?}, seq {}) never arrived",
                self.sent[i].stream, self.sent[i].seq
            ));
        }
        if self.clean()
            && !self.closed_scribbled
            && (!self.live.is_empty() || self.link.consumer_head() != self.link.producer_tail())
        {
            return fail(format!(
                "the link is empty, but {} published records were not released (head {:#x}, tail {:#x})",
                self.live.len(),
                self.link.consumer_head(),
                self.link.producer_tail()
            ));
        }
        Ok(())
    }

    fn sleep(&mut self) -> Check {
        if self.asleep.is_some() || self.ended {
            return Ok(());
        }
        let something = self.link.prepare_sleep();
        if let Some((closed, let_go)) = self.ring_flags() {
            let expect = !let_go && (!self.live.is_empty() || closed);
            if something != expect {
                return fail(format!(
                    "about to sleep, the receiver saw {} with {} unread records",
                    if something { "something" } else { "nothing" },
                    self.live.len()
                ));
            }
        }
        // Asleep, with its ring flag up: the sender owes it a wake-up when
        // it lowers the flag. (A receiver that let go of the ring sleeps
        // without a flag; the socket wakes it.)
        let raised = self.link.ring().scribble().load_u32(layout::SLEEPING) == Some(1);
        if !something && raised {
            self.asleep = Some(false);
            self.tally.sleeps += 1;
        }
        Ok(())
    }

    /// Whether the ring is closed, and whether the receiver let go of it
    /// (after it read the close), when the model knows exactly what the
    /// receiver's end of the ring looks at; `None` when scribbles blur it.
    fn ring_flags(&mut self) -> Option<(bool, bool)> {
        if !self.clean()
            || self.closed_scribbled
            || self.gone_scribbled
            || self.must_cut.is_some()
            || self.must_cut_tail.is_some()
        {
            return None;
        }
        let s = self.link.ring().scribble();
        let closed = s.load_u32(layout::CLOSED).unwrap_or(0) != 0;
        let let_go = s.load_u32(layout::GONE).unwrap_or(0) != 0;
        Some((closed, let_go))
    }

    fn spin(&mut self) -> Check {
        if self.ended {
            return Ok(());
        }
        if self.asleep.is_some() {
            self.socket_ready();
        }
        let flags = self.ring_flags();
        let seen = self.link.ring_has_frame();
        self.released()?;
        if let Some((closed, let_go)) = flags {
            let frames = !let_go && (closed || self.live.iter().any(|r| r.held != Held::Pad));
            if seen != frames {
                return fail(format!(
                    "the spin loop saw {} with {} unread frames",
                    if seen { "a frame" } else { "none" },
                    self.live.iter().filter(|r| r.held != Held::Pad).count()
                ));
            }
        }
        Ok(())
    }

    // --- the scribbler

    fn index_value(&self, index: Index, anchor: u64) -> u64 {
        match index {
            Index::Forward(k) => anchor.wrapping_add(8 * k),
            Index::Back(k) => anchor.wrapping_sub(8 * k),
            Index::Misaligned(d) => anchor.wrapping_add(1 + d % 7),
            Index::Far(k) => self
                .link
                .producer_tail()
                .wrapping_add(self.cap as u64 + 8 + 8 * k),
            Index::Any(v) => v,
        }
    }

    fn tail(&mut self, index: Index) {
        let (head, tail) = (self.link.consumer_head(), self.link.producer_tail());
        let v = self.index_value(index, tail);
        // (Only while the receiver surely holds the ring: the sender has not closed it.)
        let was_clean = self.clean() && !self.closed_scribbled && !self.sender_gone;
        self.link.ring().scribble().store_u64(layout::TAIL, v);
        if v == tail {
            return;
        }
        self.taint_ring();
        // Whatever the consumer holds when it next looks (between our head
        // and tail), this value is out of range for it, or off alignment.
        let (a, b) = (v.wrapping_sub(tail), v.wrapping_sub(head));
        let cap = self.cap as u64;
        if was_clean && (v % 8 != 0 || (a > cap && b >= a)) {
            self.must_cut_tail = Some(format!(
                "producer index set to {v:#x} with head {head:#x}, tail {tail:#x}, capacity {cap}"
            ));
        }
    }

    fn head(&mut self, index: Index) {
        let head = self.link.consumer_head();
        let v = self.index_value(index, head);
        self.link.ring().scribble().store_u64(layout::HEAD, v);
        self.head_scribbled = true;
        // Forwards: until the consumer next stores its own index, the
        // producer takes it as soon as its own index has passed it (at most
        // the capacity ahead of the consumer's), and may then write over
        // frames the consumer has not read.
        let ahead = v.wrapping_sub(head);
        if v % 8 == 0 && ahead > 0 && ahead <= self.cap as u64 {
            self.taint_ring();
        }
    }

    fn record(&mut self, at: Spot, kind: u32, len: u32) {
        let Some((file_at, _)) = self.locate(at) else {
            return;
        };
        let file_at = file_at.max(layout::DATA) & !7;
        if file_at + 8 > layout::DATA + self.cap {
            return;
        }
        let off = file_at - layout::DATA;
        // A record header the consumer will read, and can only read as corrupt.
        // (Only while the receiver surely holds the ring: the sender has not closed it.)
        let was_clean = self.clean() && !self.closed_scribbled && !self.sender_gone;
        let hits_header = self
            .live
            .iter()
            .any(|r| (self.start.wrapping_add(r.start) % self.cap as u64) as usize == off);
        let room = self.cap - off;
        let corrupt = match kind {
            layout::KIND_FRAME => {
                len as usize > self.cap - 8 || 8 + layout::padded(len as usize) > room
            }
            layout::KIND_PAD => off == 0 || len as usize != room,
            _ => true,
        };
        let word = layout::record(kind, len);
        self.link.ring().scribble().store_u64(file_at, word);
        self.touch(file_at, 8);
        if was_clean && hits_header && corrupt {
            self.must_cut = Some(format!(
                "record header {kind:#010x}/{len} written over an unread record at data offset {off}"
            ));
        }
    }

    fn bytes(&mut self, at: Spot, bytes: &[u8]) {
        let Some((file_at, room)) = self.locate(at) else {
            return;
        };
        let n = bytes.len().min(room);
        let written = self.link.ring().scribble().write(file_at, &bytes[..n]);
        self.touch(file_at, written);
    }

    fn flag(&mut self, word: u8, value: u32) {
        let at = [layout::SLEEPING, layout::CLOSED, layout::ROOM, layout::GONE][word as usize % 4];
        self.link.ring().scribble().store_u32(at, value);
        self.touch(at, 4);
    }

    // --- the end

    fn close(&mut self, die: Option<(usize, usize)>) -> Check {
        if !self.sender_gone {
            if let Some((len, written)) = die {
                self.abandon(len, written)?;
                self.link.ring().die();
            } else {
                self.link.ring().close();
            }
            self.tally.closed += 1;
        }
        self.link.hang_up();
        self.sender_gone = true;
        self.hung_up = true;
        self.socket_ready();
        Ok(())
    }

    /// The sender hangs up (if it has not), and the receiver reads until the link ends.
    fn finish(&mut self) -> Check {
        if !self.ended {
            self.close(None)?;
            let bound = self.cap / 4 + 4 * self.sent.len() + 64;
            let mut ended = false;
            for _ in 0..bound {
                if self.read_one()? && self.ended {
                    ended = true;
                    break;
                }
            }
            if !ended {
                return fail(format!(
                    "the sender hung up, and the link did not end within {bound} reads (hang)"
                ));
            }
        }
        if self.link.is_open() {
            return fail("the link ended, and the receiver still holds it");
        }
        if let Some(why) = self.must_cut.take().or(self.must_cut_tail.take()) {
            if !self.link.cut() {
                return fail(format!(
                    "the receiver read everything and did not find the ring corrupt: {why}"
                ));
            }
        }
        if !self.link.cut() {
            if let Some(i) =
                (0..self.sent.len()).find(|&i| !self.sent[i].delivered && !self.lossy(i))
            {
                return fail(format!(
                    "the link closed, and honest message {i} ({:?}, seq {}) never arrived",
                    self.sent[i].stream, self.sent[i].seq
                ));
            }
        }
        Ok(())
    }

    fn step(&mut self, op: &Op) -> Check {
        if self.ended {
            return Ok(());
        }
        self.tally.steps += 1;
        match op {
            Op::Send {
                len,
                objects,
                selector,
            } => self.send(*len, *objects, *selector)?,
            Op::Read(n) => {
                for _ in 0..*n {
                    if self.read_one()? {
                        break;
                    }
                }
            }
            Op::Drain => self.drain()?,
            Op::Sleep => self.sleep()?,
            Op::Spin => self.spin()?,
            Op::Lie { bytes, stamp } => self.lie(bytes.clone(), *stamp)?,
            Op::Abandon { len, written } => self.abandon(*len, *written)?,
            Op::Tail(i) => {
                self.tally.scribbles += 1;
                self.tail(*i);
            }
            Op::Head(i) => {
                self.tally.scribbles += 1;
                self.head(*i);
            }
            Op::Record { at, kind, len } => {
                self.tally.scribbles += 1;
                self.record(*at, *kind, *len);
            }
            Op::Bytes { at, bytes } => {
                self.tally.scribbles += 1;
                self.bytes(*at, bytes);
            }
            Op::Flag { word, value } => {
                self.tally.scribbles += 1;
                self.flag(*word, *value);
            }
            Op::Close => self.close(None)?,
            Op::Die { len, written } => self.close(Some((*len, *written)))?,
        }
        Ok(())
    }
}

/// Plays an episode and checks every step. Its tally, or what went wrong (with the step).
pub fn run_episode(episode: &Episode, checks: Checks) -> Result<RingTally, String> {
    play(episode, checks, false)
}

/// As [`run_episode`], printing the model's state after every step.
pub fn trace_episode(episode: &Episode, checks: Checks) -> Result<RingTally, String> {
    play(episode, checks, true)
}

fn play(episode: &Episode, checks: Checks, trace: bool) -> Result<RingTally, String> {
    let link = RingLink::open(episode.capacity, episode.start, episode.bell)
        .map_err(|e| format!("cannot open a ring link: {e}"))?;
    let start = link.producer_tail();
    let mut run = Run {
        link,
        cap: episode.capacity,
        start,
        selectors: selectors(),
        sent: Vec::new(),
        next_seq: 0,
        live: VecDeque::new(),
        ring_taint_from: None,
        ring_lost_from: None,
        seq_taint: false,
        odd_budget: 0,
        odd_seen: 0,
        bad_seen: 0,
        head_scribbled: false,
        closed_scribbled: false,
        gone_scribbled: false,
        must_cut: None,
        must_cut_tail: None,
        asleep: None,
        bell: episode.bell,
        checks,
        trace,
        sender_gone: false,
        hung_up: false,
        ended: false,
        tally: RingTally {
            episodes: 1,
            ..RingTally::default()
        },
    };
    for (i, op) in episode.ops.iter().enumerate() {
        run.step(op)
            .map_err(|why| format!("step {i} ({op:?}): {why}"))?;
        if trace {
            println!(
                "after step {i}: tail {:#x} head {:#x} live {:?} taint_from {:?} seq_taint {} sent {} delivered {} odd {}/{} bad {} open {}",
                run.link.producer_tail(),
                run.link.consumer_head(),
                run.live,
                run.ring_taint_from,
                run.seq_taint,
                run.sent.len(),
                run.sent.iter().filter(|s| s.delivered).count(),
                run.odd_seen,
                run.odd_budget,
                run.bad_seen,
                run.link.is_open()
            );
        }
    }
    run.finish()
        .map_err(|why| format!("at the end ({} steps): {why}", episode.ops.len()))?;
    if run.clean() && !run.seq_taint {
        run.tally.strict_episodes += 1;
    }
    Ok(run.tally)
}
