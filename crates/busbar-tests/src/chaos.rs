//! What the crash tests (`tests/cross_process/crash.rs`, the `crash-*`
//! roles of `busbar-peer`) and the soak command (`busbar-soak`) share:
//!
//! * [`Stamp`]: a numbered message that says who sent it, on which stream,
//!   and what it carries, so that a receiver can tell a lost, duplicated,
//!   reordered or damaged message from a good one ([`verify`], [`Streams`]);
//! * [`build`]: such a message in one of several [`Shape`]s: small, large
//!   (spilled into a sealed memfd), with descriptors, with memory regions;
//! * [`Resources`]: this process's descriptors, memfds and memfd mappings,
//!   counted in `/proc/self`, for the leak checks;
//! * [`Rng`]: a small seeded generator, so that a failing run can be replayed.

use crate::{is_pattern, pattern, pattern_byte};
use busbar::{BytesMessage, MemoryRegion, Message, Object, Selector};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One numbered message of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, busbar::TypeUuid)]
#[uuid = "f8761710-5384-4b61-8856-5c4a307adc19"]
pub struct Stamp {
    /// The sending endpoint's id.
    pub from: u64,
    /// Which of the sender's streams (each has its own numbering and addressees).
    pub stream: u32,
    /// Position in the stream, from 0.
    pub n: u64,
    /// Whether the stream is round-robin unicast: each receiver then sees
    /// an increasing subsequence, and only all receivers together see every number.
    pub anycast: bool,
    /// How many objects the message carries.
    pub objects: u16,
    /// How many memory regions the message carries.
    pub regions: u16,
    /// A [`pattern`] of some length (more than 64 KiB for the large shape).
    pub body: BytesMessage,
}

/// What the crash peers and soak processes send and receive.
#[derive(Debug, busbar::MessageBox)]
pub enum Chaos {
    /// A numbered message.
    Stamp(Stamp),
    /// A command or a probe.
    Text(String),
}

/// The kinds of message [`build`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A short body.
    Small,
    /// A body over 64 KiB: it travels in a sealed memfd.
    Large,
    /// A short body and 1 to 3 pipe descriptors.
    Objects,
    /// A short body and 1 or 2 memory regions (some over 64 KiB).
    Regions,
    /// A large body, descriptors and regions.
    Everything,
}

impl Shape {
    /// A random shape: mostly small ones when `attachments` is false (small
    /// and large only), an even mix otherwise.
    pub fn pick(rng: &mut Rng, attachments: bool) -> Shape {
        if !attachments {
            return if rng.below(8) == 0 {
                Shape::Large
            } else {
                Shape::Small
            };
        }
        match rng.below(10) {
            0..=3 => Shape::Small,
            4 | 5 => Shape::Large,
            6 | 7 => Shape::Objects,
            8 => Shape::Regions,
            _ => Shape::Everything,
        }
    }
}

/// Bytes at the start of a region sent by [`build`]: the sender and the number.
const REGION_HEAD: usize = 16;

/// A new region of `size` bytes (at least [`REGION_HEAD`]) holding `from`,
/// `n` and a pattern.
pub fn stamped_region(from: u64, n: u64, size: usize) -> Result<MemoryRegion, String> {
    let size = size.max(REGION_HEAD);
    let mut region = MemoryRegion::new(size).map_err(|e| e.to_string())?;
    let bytes = region.map(..).map_err(|e| e.to_string())?;
    bytes[..8].copy_from_slice(&from.to_le_bytes());
    bytes[8..16].copy_from_slice(&n.to_le_bytes());
    let len = size - REGION_HEAD;
    for (i, b) in bytes[REGION_HEAD..].iter_mut().enumerate() {
        *b = pattern_byte(i, len);
    }
    Ok(region)
}

/// Checks a region made by [`stamped_region`] for message `n` of `from`.
pub fn check_region(region: &mut MemoryRegion, from: u64, n: u64) -> Result<(), String> {
    let size = region.size();
    if size < REGION_HEAD {
        return Err(format!("region of {size} bytes is too small"));
    }
    let bytes = region.map(..).map_err(|e| e.to_string())?;
    let got_from = u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default());
    let got_n = u64::from_le_bytes(bytes[8..16].try_into().unwrap_or_default());
    if (got_from, got_n) != (from, n) {
        return Err(format!(
            "region of message {n} from {from:016x} holds the stamp of message {got_n} from {got_from:016x}"
        ));
    }
    if !is_pattern(&bytes[REGION_HEAD..]) {
        return Err(format!(
            "region of message {n} from {from:016x} ({size} bytes) is damaged"
        ));
    }
    Ok(())
}

/// A numbered message of the given shape. The objects are write ends of
/// pipes whose read ends are closed here.
pub fn build(
    stamp: (u64, u32, u64, bool),
    shape: Shape,
    rng: &mut Rng,
    selector: Selector,
) -> Result<Message<Chaos>, String> {
    let (from, stream, n, anycast) = stamp;
    let large = matches!(shape, Shape::Large | Shape::Everything);
    let body_len = if large {
        65_537 + rng.below(200_000) as usize
    } else {
        rng.below(200) as usize
    };
    let objects = match shape {
        Shape::Objects | Shape::Everything => 1 + rng.below(3) as u16,
        _ => 0,
    };
    let regions = match shape {
        Shape::Regions | Shape::Everything => 1 + rng.below(2) as u16,
        _ => 0,
    };
    let mut msg = Message::new(
        selector,
        Chaos::Stamp(Stamp {
            from,
            stream,
            n,
            anycast,
            objects,
            regions,
            body: BytesMessage::new(0, pattern(body_len)),
        }),
    );
    for _ in 0..objects {
        let (_r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| format!("pipe: {e}"))?;
        msg.objects.push(Object::new(w));
    }
    for _ in 0..regions {
        let size = [100, 4096, 70_000, 150_000][rng.below(4) as usize];
        msg.memory_regions.push(stamped_region(from, n, size)?);
    }
    Ok(msg)
}

/// Checks that a received [`Stamp`] message carries what it says, intact;
/// its stamp. (Whether it was due is for [`Streams`] to say.)
pub fn verify(msg: &mut Message<Chaos>) -> Result<Stamp, String> {
    let stamp = match &msg.payload {
        Chaos::Stamp(s) => s.clone(),
        Chaos::Text(t) => return Err(format!("expected a numbered message, got text {t:?}")),
    };
    let what = || {
        format!(
            "message {} of stream {} from {:016x}",
            stamp.n, stamp.stream, stamp.from
        )
    };
    if !is_pattern(&stamp.body.data) {
        return Err(format!(
            "{}: body of {} bytes is damaged",
            what(),
            stamp.body.data.len()
        ));
    }
    if msg.objects.len() != usize::from(stamp.objects)
        || msg.memory_regions.len() != usize::from(stamp.regions)
    {
        return Err(format!(
            "{}: carries {} objects and {} regions, the sender attached {} and {}",
            what(),
            msg.objects.len(),
            msg.memory_regions.len(),
            stamp.objects,
            stamp.regions
        ));
    }
    for o in &msg.objects {
        rustix::fs::fstat(o)
            .map_err(|e| format!("{}: an object is not a usable descriptor: {e}", what()))?;
    }
    for r in &mut msg.memory_regions {
        check_region(r, stamp.from, stamp.n).map_err(|e| format!("{}: {e}", what()))?;
    }
    Ok(stamp)
}

/// Per-sender, per-stream bookkeeping of a receiver.
///
/// A normal stream must arrive complete and in order: 0, 1, 2, ... (a gap
/// is a lost message, a repeat a duplicate). An anycast stream's numbers
/// must only increase here; their count and [`Digest`] are kept, for a
/// check across receivers.
#[derive(Debug, Default)]
pub struct Streams {
    next: HashMap<(u64, u32), u64>,
    anycast: HashMap<(u64, u32), Anycast>,
    /// Messages accepted.
    pub total: u64,
}

/// What a receiver knows of one anycast stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anycast {
    /// One more than the last number that came.
    pub next: u64,
    /// How many came.
    pub count: u64,
    /// Their digest.
    pub digest: Digest,
}

/// An order-independent digest of a set of numbers (a wrapping sum of
/// their [`mix64`]), so that receivers that each got part of an anycast
/// stream can show together that they got every number once: the sums of
/// their digests equal the digest of `0..count`, which a lost, duplicated
/// or stray number changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Digest(pub u64);

impl Digest {
    /// Adds a number.
    pub fn add(&mut self, n: u64) {
        self.0 = self.0.wrapping_add(mix64(n));
    }

    /// Adds another digest (of disjoint numbers).
    pub fn merge(&mut self, other: Digest) {
        self.0 = self.0.wrapping_add(other.0);
    }

    /// The digest of `0..count`.
    pub fn of_range(count: u64) -> Digest {
        let mut d = Digest::default();
        for n in 0..count {
            d.add(n);
        }
        d
    }
}

/// A 64-bit mixing function (SplitMix64's finaliser).
pub fn mix64(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What went wrong with a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// A number was skipped: the messages in between are lost.
    Lost(String),
    /// A number came again (or went backwards).
    Duplicated(String),
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Violation::Lost(s) => write!(f, "lost: {s}"),
            Violation::Duplicated(s) => write!(f, "duplicated: {s}"),
        }
    }
}

impl Streams {
    /// Records a message; what is wrong with it. After a gap the stream
    /// goes on from the number that came (so one loss is reported once);
    /// a duplicate is not recorded.
    pub fn accept(&mut self, s: &Stamp) -> Result<(), Violation> {
        let key = (s.from, s.stream);
        if s.anycast {
            let a = self.anycast.entry(key).or_default();
            if a.next > s.n {
                return Err(Violation::Duplicated(format!(
                    "anycast stream {} from {:016x}: {} arrived after {}",
                    s.stream,
                    s.from,
                    s.n,
                    a.next - 1
                )));
            }
            a.next = s.n + 1;
            a.count += 1;
            a.digest.add(s.n);
            self.total += 1;
            return Ok(());
        }
        let next = self.next.entry(key).or_insert(0);
        if s.n != *next {
            let why = format!(
                "stream {} from {:016x}: {} arrived where {} was due",
                s.stream, s.from, s.n, *next
            );
            if s.n < *next {
                return Err(Violation::Duplicated(why));
            }
            *next = s.n + 1;
            self.total += 1;
            return Err(Violation::Lost(why));
        }
        *next += 1;
        self.total += 1;
        Ok(())
    }

    /// How many messages of a normal stream arrived (all of 0..count).
    pub fn count(&self, from: u64, stream: u32) -> u64 {
        self.next.get(&(from, stream)).copied().unwrap_or(0)
    }

    /// The normal streams: `(from, stream, count)`.
    pub fn counts(&self) -> impl Iterator<Item = (u64, u32, u64)> + '_ {
        self.next.iter().map(|(&(f, s), &c)| (f, s, c))
    }

    /// The anycast streams: `(from, stream, what came)`.
    pub fn anycasts(&self) -> impl Iterator<Item = (u64, u32, Anycast)> + '_ {
        self.anycast.iter().map(|(&(f, s), a)| (f, s, *a))
    }
}

/// This process's descriptors, memfd descriptors and memfd mappings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resources {
    /// Entries of `/proc/self/fd` (not counting the one reading it).
    pub fds: usize,
    /// Of those, the ones that point at a memfd (`/memfd:...`).
    pub memfds: usize,
    /// Lines of `/proc/self/maps` that map a memfd.
    pub maps: usize,
}

impl Resources {
    /// Counts them now.
    pub fn now() -> Result<Resources, String> {
        let mut r = Resources::default();
        let dir = std::fs::read_dir("/proc/self/fd").map_err(|e| format!("/proc/self/fd: {e}"))?;
        for entry in dir.flatten() {
            let Ok(target) = std::fs::read_link(entry.path()) else {
                // The directory's own descriptor is gone by the time it is read.
                continue;
            };
            let target = target.to_string_lossy();
            if target.starts_with("/proc/") && target.ends_with("/fd") {
                continue;
            }
            r.fds += 1;
            if target.starts_with("/memfd:") {
                r.memfds += 1;
            }
        }
        let maps = std::fs::read_to_string("/proc/self/maps")
            .map_err(|e| format!("/proc/self/maps: {e}"))?;
        r.maps = maps.lines().filter(|l| l.contains("/memfd:")).count();
        Ok(r)
    }

    /// What each descriptor points at, for a failure message.
    pub fn describe_fds() -> String {
        let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
            return String::new();
        };
        let mut all: Vec<String> = dir
            .flatten()
            .filter_map(|e| {
                let target = std::fs::read_link(e.path()).ok()?;
                Some(format!(
                    "{}->{}",
                    e.file_name().to_string_lossy(),
                    target.to_string_lossy()
                ))
            })
            .collect();
        all.sort();
        all.join(",")
    }

    /// Waits (polling every 5 ms, up to `guard`) until the counts equal
    /// `want`; the last counts seen. A leak shows as counts that never
    /// come back down; a working process gets there as soon as whatever it
    /// has in flight is done.
    pub fn settle(want: Resources, guard: std::time::Duration) -> Result<Resources, String> {
        Resources::settle_until(|now| *now == want, guard)
    }

    /// Like [`settle`](Resources::settle), until `done` holds.
    pub fn settle_until(
        done: impl Fn(&Resources) -> bool,
        guard: std::time::Duration,
    ) -> Result<Resources, String> {
        let deadline = std::time::Instant::now() + guard;
        loop {
            let now = Resources::now()?;
            if done(&now) || std::time::Instant::now() >= deadline {
                return Ok(now);
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

impl std::fmt::Display for Resources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fds={} memfds={} maps={}",
            self.fds, self.memfds, self.maps
        )
    }
}

/// A small seeded generator (SplitMix64): the same seed, the same run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// A seed from the clock and the process id, for runs not told one.
    pub fn fresh_seed() -> u64 {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Rng::new(t ^ (u64::from(std::process::id()) << 32)).next_u64()
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// A number in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_tell_lost_from_duplicated() {
        let stamp = |n, anycast| Stamp {
            from: 1,
            stream: 0,
            n,
            anycast,
            objects: 0,
            regions: 0,
            body: BytesMessage::default(),
        };
        let mut s = Streams::default();
        assert!(s.accept(&stamp(0, false)).is_ok());
        assert!(s.accept(&stamp(1, false)).is_ok());
        assert!(matches!(
            s.accept(&stamp(1, false)),
            Err(Violation::Duplicated(_))
        ));
        assert!(matches!(
            s.accept(&stamp(3, false)),
            Err(Violation::Lost(_))
        ));
        assert_eq!(s.count(1, 0), 4, "the stream goes on after the gap");
        assert!(s.accept(&stamp(4, false)).is_ok());
        assert!(s.accept(&stamp(4, true)).is_ok());
        assert!(s.accept(&stamp(9, true)).is_ok());
        assert!(matches!(
            s.accept(&stamp(9, true)),
            Err(Violation::Duplicated(_))
        ));
        let (_, _, a) = s.anycasts().next().unwrap();
        assert_eq!((a.next, a.count), (10, 2));
        let mut d = Digest::default();
        d.add(4);
        d.add(9);
        assert_eq!(a.digest, d);
    }

    #[test]
    fn digests_of_parts_add_up_to_the_whole() {
        let (mut a, mut b) = (Digest::default(), Digest::default());
        for n in 0..100 {
            if n % 3 == 0 {
                a.add(n)
            } else {
                b.add(n)
            }
        }
        a.merge(b);
        assert_eq!(a, Digest::of_range(100));
        let mut dup = Digest::of_range(99);
        dup.add(5);
        assert_ne!(dup, Digest::of_range(100));
    }

    #[test]
    fn built_messages_verify_and_damage_shows() {
        let mut rng = Rng::new(7);
        for shape in [
            Shape::Small,
            Shape::Large,
            Shape::Objects,
            Shape::Regions,
            Shape::Everything,
        ] {
            let mut m = build((5, 1, 9, false), shape, &mut rng, Selector::unicast("x")).unwrap();
            let s = verify(&mut m).unwrap();
            assert_eq!((s.from, s.stream, s.n), (5, 1, 9));
            if let Some(r) = m.memory_regions.first_mut() {
                r.map(20..21).unwrap()[0] ^= 1;
                assert!(verify(&mut m).is_err());
            }
        }
    }
}
