//! The shared layout of a named multi-producer ring ([`crate::ring`]): the
//! header, the senders' slot table and the record words, in a sealed memfd.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `b"busbmpsc"` |
//! | 8 | 4 | version ([`VERSION`]) |
//! | 12 | 4 | number of sender slots ([`SLOTS`]) |
//! | 16 | 8 | capacity of the data area, a power of two |
//! | 24 | 8 | key: random, mixed into every record tag |
//! | 128 | 8 | reserve index `R`: where the next record will be claimed |
//! | 256 | 8 | consumer index `head`: bytes ever released, written only by the receiver |
//! | 384 | 4 | receiver's wake flag: 1 while it sleeps (or is about to) |
//! | 388 | 4 | 1 once the receiver has let go of the ring |
//! | 392 | 4 | futex word: 1 while a sender waits for room |
//! | 4096 | 64 × [`SLOTS`] | sender slots: the index a sender is claiming at, or [`NONE`] |
//! | [`DATA`] | capacity | records |
//!
//! A record at index `p` (offset `p % capacity`, 16-aligned) starts with
//! two words: the claim `tag(p) << 28 | pad << 27 | length / 16`, and the
//! commit `commit_tag(p) | slack` (slack: padding bytes after the payload,
//! 0..=15). Tags mix `p` with the key, so a word left from an earlier lap
//! (or payload bytes that happen to lie there) does not pass for a claim
//! or a commit at `p`. The data area is never zeroed: tags are how a word
//! is known to belong to this lap.
//!
//! Nothing here is trusted: every accessor checks its offset against the
//! mapping and answers `None` outside it; the ring logic checks lengths.
//!
//! | file | what it holds |
//! |---|---|
//! | `mod.rs` | this layout, the record words' encoding, [`Shared`] (the production [`Memory`]) |
//! | `memory.rs` | [`Memory`]: what the protocol is written against |
//! | `protocol.rs` | the protocol of [`crate::ring`]'s module docs: claim, commit, read, reap, wait |
//! | `loom.rs` | the loom models of the protocol (`--cfg loom`) |
//!
//! The loom models run the very functions of `protocol.rs` that
//! [`crate::ring`] calls, over a model [`Memory`]:
//! `RUSTFLAGS="--cfg loom" cargo test -p busbar --release --lib sys::mpsc`.

#[cfg(all(test, loom))]
mod loom;
mod memory;
pub(crate) mod protocol;

pub(crate) use memory::Memory;

use super::memfd::{self, Mapping};
use rustix::thread::futex;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// `b"busbmpsc"`.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"busbmpsc");
/// The layout version.
pub(crate) const VERSION: u32 = 1;
/// Sender slots: at most this many senders at once.
pub(crate) const SLOTS: usize = 256;
/// Where the slot table starts.
const SLOT_TABLE: usize = 4096;
/// Bytes per slot (a cache line each).
const SLOT_LEN: usize = 64;
/// Where the data area starts.
pub(crate) const DATA: usize = SLOT_TABLE + SLOTS * SLOT_LEN;
/// A slot that claims nothing.
pub(crate) const NONE: u64 = u64::MAX;
/// Bytes of a record header; also the alignment of records.
pub(crate) const RECORD: usize = 16;
/// The smallest data area.
pub(crate) const MIN_CAPACITY: usize = 4096;
/// The largest data area: 1 GiB.
pub(crate) const MAX_CAPACITY: usize = 1 << 30;

const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 8;
const OFF_SLOTS: usize = 12;
const OFF_CAPACITY: usize = 16;
const OFF_KEY: usize = 24;
const OFF_RESERVE: usize = 128;
const OFF_HEAD: usize = 256;
const OFF_SLEEPING: usize = 384;
const OFF_GONE: usize = 388;
const OFF_ROOM: usize = 392;

const PAD_BIT: u64 = 1 << 27;
const UNITS: u64 = PAD_BIT - 1;

/// A decoded claim word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Claim {
    /// Bytes of the record, header included (a multiple of [`RECORD`]).
    pub len: usize,
    /// Padding up to the end of the data area rather than a message.
    pub pad: bool,
}

fn mix(mut x: u64) -> u64 {
    // splitmix64's finaliser.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The tag of a claim at index `p`.
fn claim_tag(key: u64, p: u64) -> u64 {
    mix(p ^ key) >> 28
}

/// The claim word for a record of `len` bytes at index `p`.
pub(crate) fn encode_claim(key: u64, p: u64, len: usize, pad: bool) -> u64 {
    (claim_tag(key, p) << 28) | if pad { PAD_BIT } else { 0 } | ((len / RECORD) as u64 & UNITS)
}

/// A word that is no claim at index `p` (written where the next claim
/// will go, so that stale bytes there never pass for one).
pub(crate) fn not_claim(key: u64, p: u64) -> u64 {
    (claim_tag(key, p) ^ 1) << 28
}

/// Decodes `word` as a claim at index `p`: `None` when it is not one
/// (a word of an earlier lap, bytes of a payload, zero).
pub(crate) fn decode_claim(key: u64, p: u64, word: u64) -> Option<Claim> {
    if word >> 28 != claim_tag(key, p) {
        return None;
    }
    Some(Claim {
        len: ((word & UNITS) as usize) * RECORD,
        pad: word & PAD_BIT != 0,
    })
}

/// The commit word for the record at index `p` with `slack` padding bytes.
pub(crate) fn encode_commit(key: u64, p: u64, slack: usize) -> u64 {
    (mix(p ^ key ^ 0x636f_6d6d_6974_2121) & !0xf) | (slack as u64 & 0xf)
}

/// The slack of a commit word if it commits the record at `p`.
pub(crate) fn decode_commit(key: u64, p: u64, word: u64) -> Option<usize> {
    if word & !0xf != encode_commit(key, p, 0) {
        return None;
    }
    Some((word & 0xf) as usize)
}

/// A ring's memfd, mapped.
#[derive(Debug)]
pub(crate) struct Shared {
    map: Mapping,
    capacity: usize,
    key: u64,
}

impl Shared {
    /// Creates the memfd of a ring with a data area of `capacity` bytes
    /// (a power of two in [`MIN_CAPACITY`]`..=`[`MAX_CAPACITY`]), sealed
    /// against resizing, with its header written; and maps it.
    pub(crate) fn create(capacity: usize) -> io::Result<(Shared, OwnedFd)> {
        if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("ring capacity {capacity} is not a power of two in {MIN_CAPACITY}..={MAX_CAPACITY}"),
            ));
        }
        let fd = memfd::create("busbar-mpsc", (DATA + capacity) as u64)?;
        memfd::seal_size(fd.as_fd())?;
        let map = Mapping::prefix(fd.as_fd(), DATA + capacity)?;
        let key = mix(uuid::Uuid::new_v4().as_u64_pair().0);
        let shared = Shared { map, capacity, key };
        let w64 = |off| {
            shared
                .map
                .atomic_u64(off)
                .ok_or_else(|| io::Error::other("header"))
        };
        let w32 = |off| {
            shared
                .map
                .atomic_u32(off)
                .ok_or_else(|| io::Error::other("header"))
        };
        w64(OFF_CAPACITY)?.store(capacity as u64, Ordering::Relaxed);
        w64(OFF_KEY)?.store(key, Ordering::Relaxed);
        w32(OFF_SLOTS)?.store(SLOTS as u32, Ordering::Relaxed);
        w32(OFF_VERSION)?.store(VERSION, Ordering::Relaxed);
        protocol::init(&shared);
        w64(OFF_MAGIC)?.store(MAGIC, Ordering::Release);
        Ok((shared, fd))
    }

    /// Maps a ring's memfd received from its receiver and checks its header.
    pub(crate) fn open(fd: BorrowedFd<'_>) -> io::Result<Shared> {
        let bad =
            |why: &str| io::Error::new(io::ErrorKind::InvalidData, format!("not a ring: {why}"));
        let size = usize::try_from(memfd::file_size(fd)?).map_err(|_| bad("too large"))?;
        if size <= DATA {
            return Err(bad("too small"));
        }
        let map = Mapping::prefix(fd, size)?;
        let r64 = |off| {
            map.atomic_u64(off)
                .map(|w| w.load(Ordering::Acquire))
                .ok_or_else(|| bad("header"))
        };
        let r32 = |off| {
            map.atomic_u32(off)
                .map(|w| w.load(Ordering::Acquire))
                .ok_or_else(|| bad("header"))
        };
        if r64(OFF_MAGIC)? != MAGIC {
            return Err(bad("magic"));
        }
        if r32(OFF_VERSION)? != VERSION || r32(OFF_SLOTS)? != SLOTS as u32 {
            return Err(bad("version"));
        }
        let capacity = usize::try_from(r64(OFF_CAPACITY)?).map_err(|_| bad("capacity"))?;
        if !capacity.is_power_of_two()
            || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity)
            || DATA + capacity != size
        {
            return Err(bad("capacity"));
        }
        let key = r64(OFF_KEY)?;
        Ok(Shared { map, capacity, key })
    }

    /// Sleeps while the room word is 1, at most `timeout`.
    fn futex_wait_room(&self, timeout: Duration) {
        let Ok(ts) = futex::Timespec::try_from(timeout.min(Duration::from_secs(3600))) else {
            return;
        };
        match futex::wait(self.room(), futex::Flags::empty(), 1, Some(&ts)) {
            Ok(()) => {}
            Err(
                rustix::io::Errno::AGAIN | rustix::io::Errno::TIMEDOUT | rustix::io::Errno::INTR,
            ) => {}
            Err(e) => {
                tracing::debug!(error = %e, "futex wait on a named ring failed");
                std::thread::sleep(timeout.min(Duration::from_millis(1)));
            }
        }
    }

    fn word64(&self, off: usize) -> &AtomicU64 {
        // Every offset passed here is a constant of the header or masked
        // into the data area; the header and the data area are mapped (the
        // file is exactly DATA + capacity long), so this never fails.
        match self.map.atomic_u64(off) {
            Some(w) => w,
            None => unreachable_word(),
        }
    }

    fn word32(&self, off: usize) -> &AtomicU32 {
        match self.map.atomic_u32(off) {
            Some(w) => w,
            None => unreachable_word32(),
        }
    }
}

impl Memory for Shared {
    type U64 = AtomicU64;
    type U32 = AtomicU32;

    #[inline]
    fn capacity(&self) -> usize {
        self.capacity
    }
    #[inline]
    fn key(&self) -> u64 {
        self.key
    }
    #[inline]
    fn slots(&self) -> usize {
        SLOTS
    }
    #[inline]
    fn reserve(&self) -> &AtomicU64 {
        self.word64(OFF_RESERVE)
    }
    #[inline]
    fn head(&self) -> &AtomicU64 {
        self.word64(OFF_HEAD)
    }
    #[inline]
    fn sleeping(&self) -> &AtomicU32 {
        self.word32(OFF_SLEEPING)
    }
    #[inline]
    fn gone(&self) -> &AtomicU32 {
        self.word32(OFF_GONE)
    }
    #[inline]
    fn room(&self) -> &AtomicU32 {
        self.word32(OFF_ROOM)
    }
    #[inline]
    fn slot(&self, i: usize) -> &AtomicU64 {
        self.word64(SLOT_TABLE + (i % SLOTS) * SLOT_LEN)
    }
    #[inline]
    fn claim_word(&self, off: usize) -> &AtomicU64 {
        self.word64(DATA + (off & (self.capacity - 1) & !(RECORD - 1)))
    }
    #[inline]
    fn commit_word(&self, off: usize) -> &AtomicU64 {
        self.word64(DATA + (off & (self.capacity - 1) & !(RECORD - 1)) + 8)
    }

    fn read<R>(&mut self, off: usize, len: usize, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let end = off.checked_add(len)?;
        if end > self.capacity {
            return None;
        }
        Some(f(self.map.bytes().get(DATA + off..DATA + end)?))
    }

    fn fill<R>(&mut self, off: usize, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> Option<R> {
        let end = off.checked_add(len)?;
        if end > self.capacity {
            return None;
        }
        Some(f(self.map.slice_mut(DATA + off, len)?))
    }

    fn wait_room(&self, timeout: Duration) {
        self.futex_wait_room(timeout);
    }

    fn wake_room(&self) {
        if let Err(e) = futex::wake(self.room(), futex::Flags::empty(), u32::MAX) {
            tracing::debug!(error = %e, "futex wake on a named ring failed");
        }
    }

    #[inline]
    fn fence(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
    }

    #[inline]
    fn yield_now(&self) {
        std::thread::yield_now();
    }
}

#[cold]
fn unreachable_word() -> ! {
    // Offsets are header constants or masked into the data area, which the
    // mapping covers (checked when it was mapped).
    panic!("busbar: a named ring's word lies outside its mapping (a bug in busbar)")
}

#[cold]
fn unreachable_word32() -> ! {
    panic!("busbar: a named ring's word lies outside its mapping (a bug in busbar)")
}
