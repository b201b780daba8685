//! A single-producer single-consumer ring of frames in a sealed memfd: the
//! shared-memory fast path of a data link.
//!
//! One process (the producer) writes frames, another (the consumer) reads
//! them in place. Either side may create the ring ([`create`]); the other
//! opens the descriptor it received ([`Producer::open`], [`Consumer::open`]).
//! Both map it separately, so the only thing they share is the memory.
//!
//! | file | what it holds |
//! |---|---|
//! | `mod.rs` | this description, the constants, the errors, the record format |
//! | `memory.rs` | [`Memory`]: what the two ends are written against |
//! | `shm.rs` | the header, [`Shm`] (the production [`Memory`]) and [`create`] |
//! | `wait.rs` | the spin before a sleep, the futex wait and wake |
//! | `barrier.rs` | the asymmetric fences (`membarrier`) of the handshake |
//! | `producer.rs` | [`Producer`] and the room it reserves for a frame (`Grant`) |
//! | `consumer.rs` | [`Consumer`] |
//! | `tests.rs` | unit and property tests, micro-benchmarks |
//! | `loom.rs` | the loom models (`--cfg loom`) |
//!
//! # Layout
//!
//! The file is exactly `HEADER_LEN + capacity` bytes, sealed against
//! shrinking and growing ([`memfd::SIZE_SEALS`]) before it is mapped, so no
//! peer can make an access to it raise `SIGBUS`.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `b"busbring"` |
//! | 8 | 4 | version ([`VERSION`]) |
//! | 12 | 4 | header length ([`HEADER_LEN`], 512) |
//! | 16 | 8 | capacity of the data area in bytes, a power of two |
//! | 128 | 8 | producer index (`tail`): bytes ever published, written only by the producer |
//! | 256 | 8 | consumer index (`head`): bytes ever released, written only by the consumer |
//! | 384 | 4 | futex word: 1 while the consumer sleeps or is about to, else 0 |
//! | 388 | 4 | 1 once the producer has closed the ring |
//! | 392 | 4 | futex word: 1 while the producer waits for room, else 0 |
//! | 396 | 4 | 1 once the consumer has let go of the ring |
//! | 400 | 4 | 1 while the consumer promises a heavy barrier before it sleeps, else 0 |
//! | 404 | 4 | 1 while the producer promises one before it waits for room, else 0 |
//! | 512 | capacity | data area |
//!
//! The indices grow forever (wrapping at 2⁶⁴); the offset of an index in the
//! data area is `index % capacity`. Each index has a 128-byte line of its own
//! (the adjacent-line prefetcher pairs 64-byte lines), so the two sides do not
//! write to the same cache line on the fast path.
//!
//! The data area holds records, each 8-byte aligned: an 8-byte record header
//! (`kind << 32 | length`, native endian) and then `length` bytes, padded to
//! a multiple of 8. `kind` is [`KIND_FRAME`] or [`KIND_PAD`]. A frame never
//! wraps: when it does not fit before the end of the data area, a padding
//! record fills the rest and the frame starts at offset 0. A frame's payload
//! is at most `capacity - 8` bytes ([`Producer::max_frame_len`]).
//!
//! # Memory bound
//!
//! A ring costs `HEADER_LEN + capacity` bytes of shared memory (one memfd,
//! mapped once on each side): a data link's ring holds
//! [`Limits::link_buffer`](crate::Limits::link_buffer) rounded up to a power
//! of two (256 KiB + 512 B by default), at least [`MIN_LINK_CAPACITY`] and
//! at most 1 GiB + 512 B ([`MAX_CAPACITY`]). Nothing else grows with traffic.
//!
//! # Ordering
//!
//! The producer writes a record, then publishes it by storing the new
//! `tail`; the consumer loads `tail` (acquire) before it reads the record,
//! and stores `head` (release) only after it has finished reading it, and
//! the producer loads `head` (acquire) before it reuses that space.
//!
//! Waiting is Dekker-style on the futex word, with `SeqCst` fences (which,
//! unlike `SeqCst` accesses, loom models faithfully). The consumer spins
//! for a while ([`DEFAULT_SPIN`]), then sets the word to 1, fences,
//! loads `tail` again, and only if still nothing is there sleeps in
//! `FUTEX_WAIT` on the word expecting 1, always with a timeout. The
//! producer stores `tail`, fences, loads the word, and only when it is 1
//! swaps it to 0 and calls `FUTEX_WAKE`. The two fences are ordered one way
//! or the other, so at least one side sees the other's store: either the
//! consumer sees the new frame and does not sleep, or the producer sees the
//! flag and wakes it (and a wake that comes before the consumer is inside
//! `FUTEX_WAIT` makes the wait return at once, since the word is no longer
//! 1). A producer that pushes while the consumer is awake makes no syscall.
//! Closing works the same way with the closed flag instead of `tail`. The
//! consumer changes the word only with swaps, so its changes and the
//! producer's form one chain.
//!
//! The producer's fence would cost it on every frame (it waits for the
//! frame's stores to leave the store buffer), the consumer's only when it
//! is about to sleep. So the fences are asymmetric where the kernel allows
//! ([membarrier(2)], `barrier.rs`): a consumer that can issue
//! `MEMBARRIER_CMD_GLOBAL_EXPEDITED` promises so in the header (offset
//! 400) and issues one after its fence, before it looks again; that puts a
//! full fence in the producer's thread at some point between the start and
//! the end of the call, so a producer whose process registered for it
//! replaces its fence with a compiler fence while the promise holds (it
//! loads the promise after its store, before it looks at the flag). The
//! argument is the same: the producer's program is cut at that point, and
//! either its store is before the cut (so the consumer, looking after its
//! barrier, sees it) or its look at the flag is after it (so it sees the
//! flag). A look at the promise that comes after a consumer withdrew it
//! (when it hands the ring to another process, which may not keep it; it
//! withdraws, fences and issues a barrier before the ring travels) falls
//! back to the full fence. Waiting for room is the mirror image (offset
//! 404): the producer promises, and the consumer releases with a compiler
//! fence. Where `membarrier` is missing or forbidden, nobody promises and
//! both sides fence as before.
//!
//! [membarrier(2)]: https://man7.org/linux/man-pages/man2/membarrier.2.html
//!
//! These orderings are checked by the loom models in this module's tests
//! (the asymmetric fences as a lock that a light fence takes around its
//! look at the promise, and a heavy barrier after its fence), which run the
//! same [`Producer`] and [`Consumer`] code over a model [`Memory`]: `RUSTFLAGS="--cfg loom" cargo test -p busbar --release --lib sys::ring`.
//!
//! # Trust
//!
//! Neither side trusts anything it reads from the shared memory. Each keeps
//! its own copy of the capacity and of its own index, and checks every index,
//! record header and length it loads before it uses it: `tail` may never be
//! behind the consumer's `head`, more than `capacity` ahead of it, unaligned
//! or moving backwards; a record must have a known kind, lie inside the data
//! area and end at or before `tail`; padding must end exactly at the end of
//! the data area; `head` may only move forwards and never past the
//! producer's `tail`. A violation is a [`RingError::Corrupt`] (and the side
//! that saw it stays broken); never a panic, a hang or an access outside the
//! mapping. A producer that dies half way through a frame has not stored
//! `tail`, so the half-written frame is never seen. Every futex wait has a
//! timeout, so a dead producer cannot keep the consumer asleep. The most a
//! hostile consumer can do to the producer is cost it a `FUTEX_WAKE` per
//! frame (by keeping the word at 1) or make it overwrite frames not yet
//! read, which only the consumer loses.
//! A promise of a heavy barrier (offsets 400 and 404) is believed, and a
//! side that breaks its own only loses its own wake-ups.
//!
//! The payload slice the consumer reads in place is shared memory that a
//! hostile producer could still be changing while it is read: callers treat
//! it like bytes arriving from a socket (parse it once, check what they
//! parse), as with any bytes of a [`Mapping`].

// The loom build compiles the models without the unit tests (`tests.rs`),
// so what only the unit tests use is unused there.
#![cfg_attr(loom, allow(dead_code))]

mod barrier;
mod consumer;
#[cfg(all(test, loom))]
mod loom;
mod memory;
mod producer;
mod shm;
#[cfg(all(test, not(loom)))]
mod tests;
mod wait;

pub(crate) use consumer::Consumer;
pub(crate) use memory::{Memory, Word32, Word64};
pub(crate) use producer::Producer;
pub(crate) use shm::{create, Shm};
pub(crate) use wait::{give_way, SPIN_ALONE};

use std::io;
#[cfg(test)]
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;
// Named in the documentation only.
#[cfg(doc)]
use super::memfd::{self, Mapping};

/// `b"busbring"`: the first 8 bytes of every ring.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"busbring");
/// The layout version this code reads and writes.
pub(crate) const VERSION: u32 = 2;
/// Bytes before the data area.
pub(crate) const HEADER_LEN: usize = 512;
/// The smallest data area accepted.
pub(crate) const MIN_CAPACITY: usize = 64;
/// The largest data area accepted: 1 GiB.
pub(crate) const MAX_CAPACITY: usize = 1 << 30;
/// The smallest ring a data link uses.
pub(crate) const MIN_LINK_CAPACITY: usize = 4096;
/// How long either end spins before it goes to sleep, by default: about
/// the cost of a kernel wake-up on the development machine.
pub(crate) const DEFAULT_SPIN: Duration = Duration::from_micros(50);
/// Record kind of a frame (`"FRAM"`).
pub(crate) const KIND_FRAME: u32 = u32::from_le_bytes(*b"FRAM");
/// Record kind of padding up to the end of the data area (`"PADD"`).
pub(crate) const KIND_PAD: u32 = u32::from_le_bytes(*b"PADD");

/// Bytes of a record header; also the alignment of every record.
const RECORD: usize = 8;
/// The futex word's value while the consumer sleeps (or is about to).
const SLEEPING: u32 = 1;
/// The futex word's value otherwise.
const AWAKE: u32 = 0;

/// What went wrong on a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RingError {
    /// The producer closed the ring and every frame it published was read.
    #[error("the producer closed the ring")]
    Closed,
    /// The other side broke the ring's rules (or scribbled over it); the ring
    /// is unusable from now on.
    #[error("shared-memory ring is corrupt: {0}")]
    Corrupt(&'static str),
}

/// Why a frame was not pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PushError {
    /// Not enough room now; try again once the consumer has read some.
    #[error("the ring is full")]
    Full,
    /// The frame can never fit in this ring.
    #[error("a frame of {len} bytes does not fit in a ring that takes at most {max}")]
    TooLarge {
        /// The frame's length.
        len: usize,
        /// [`Producer::max_frame_len`].
        max: usize,
    },
    /// The consumer broke the ring's rules; the ring is unusable from now on.
    #[error("shared-memory ring is corrupt: {0}")]
    Corrupt(&'static str),
}

/// `len` rounded up to the record alignment.
fn padded(len: usize) -> usize {
    (len + (RECORD - 1)) & !(RECORD - 1)
}

/// A record header.
fn record(kind: u32, len: usize) -> u64 {
    (u64::from(kind) << 32) | len as u64
}

fn invalid(why: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// Creates a ring ([`create`]) and opens both ends of it in this process;
/// the descriptor is what to send to the process that will use one of them.
#[cfg(test)]
pub(crate) fn pair(capacity: usize) -> io::Result<(Producer, Consumer, OwnedFd)> {
    let fd = create(capacity)?;
    let producer = Producer::open(fd.as_fd())?;
    let consumer = Consumer::open(fd.as_fd())?;
    Ok((producer, consumer, fd))
}
