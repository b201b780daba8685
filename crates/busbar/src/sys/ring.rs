//! A single-producer single-consumer ring of frames in a sealed memfd: the
//! shared-memory fast path of a data link.
//!
//! One process (the producer) writes frames, another (the consumer) reads
//! them in place. Either side may create the ring ([`create`]); the other
//! opens the descriptor it received ([`Producer::open`], [`Consumer::open`]).
//! Both map it separately, so the only thing they share is the memory.
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
//! mapped once on each side): 1 MiB + 512 B with [`DEFAULT_CAPACITY`], and at
//! most 1 GiB + 512 B ([`MAX_CAPACITY`]). Nothing else grows with traffic.
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
//! These orderings are checked by the loom models in this module's tests,
//! which run the same [`Producer`] and [`Consumer`] code over a model
//! [`Memory`]: `RUSTFLAGS="--cfg loom" cargo test -p busbar --release --lib sys::ring`.
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
//!
//! The payload slice the consumer reads in place is shared memory that a
//! hostile producer could still be changing while it is read: callers treat
//! it like bytes arriving from a socket (parse it once, check what they
//! parse), as with any bytes of a [`Mapping`].

// The single-ring wait (`Consumer::wait`, `pop_wait_with`) and the plain
// push are what the tests and loom models drive; data links sleep on many
// rings at once with `prepare_sleep` and fill frames in place.
#![cfg_attr(not(test), allow(dead_code))]

use super::memfd::{self, Mapping};
use rustix::thread::futex;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
/// The data area a link uses unless told otherwise: 1 MiB.
pub(crate) const DEFAULT_CAPACITY: usize = 1 << 20;
/// The smallest ring a data link uses.
pub(crate) const MIN_LINK_CAPACITY: usize = 4096;
/// How long [`Consumer::wait`] spins before it goes to sleep, by default:
/// about the cost of a kernel wake-up on the development machine.
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
/// The longest single futex wait (a longer timeout just waits again).
const MAX_SLEEP: Duration = Duration::from_secs(3600);

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

/// A 64-bit atomic word: `std`'s in shared memory, loom's in the models.
pub(crate) trait Word64 {
    fn load(&self, order: Ordering) -> u64;
    fn store(&self, value: u64, order: Ordering);
}

/// A 32-bit atomic word: `std`'s in shared memory, loom's in the models.
pub(crate) trait Word32 {
    fn load(&self, order: Ordering) -> u32;
    fn store(&self, value: u32, order: Ordering);
    fn swap(&self, value: u32, order: Ordering) -> u32;
}

impl Word64 for AtomicU64 {
    fn load(&self, order: Ordering) -> u64 {
        AtomicU64::load(self, order)
    }
    fn store(&self, value: u64, order: Ordering) {
        AtomicU64::store(self, value, order)
    }
}

impl Word32 for AtomicU32 {
    fn load(&self, order: Ordering) -> u32 {
        AtomicU32::load(self, order)
    }
    fn store(&self, value: u32, order: Ordering) {
        AtomicU32::store(self, value, order)
    }
    fn swap(&self, value: u32, order: Ordering) -> u32 {
        AtomicU32::swap(self, value, order)
    }
}

/// Where a ring lives: the shared memory in production ([`Shm`]), a loom
/// model in the tests. [`Producer`] and [`Consumer`] are written once
/// against this trait, so the models check the code that runs.
///
/// Offsets are into the data area. Every method checks them and answers
/// `None` for one outside it, so memory safety never depends on the ring
/// logic being right.
pub(crate) trait Memory {
    /// The type of the index words.
    type U64: Word64;
    /// The type of the flag words.
    type U32: Word32;
    /// The producer index.
    fn tail(&self) -> &Self::U64;
    /// The consumer index.
    fn head(&self) -> &Self::U64;
    /// The futex word: [`SLEEPING`] or [`AWAKE`].
    fn sleeping(&self) -> &Self::U32;
    /// Nonzero once the producer closed the ring.
    fn closed(&self) -> &Self::U32;
    /// The producer's futex word: [`SLEEPING`] while it waits for room.
    fn room(&self) -> &Self::U32;
    /// Nonzero once the consumer let go of the ring.
    fn gone(&self) -> &Self::U32;
    /// Bytes in the data area: a power of two, fixed when it was mapped.
    fn capacity(&self) -> usize;
    /// Loads the record header at `off` (8-aligned).
    fn load_record(&self, off: usize) -> Option<u64>;
    /// Stores the record header at `off` (8-aligned).
    fn store_record(&mut self, off: usize, word: u64) -> Option<()>;
    /// Runs `f` over the `len` bytes at `off`.
    fn read<R>(&self, off: usize, len: usize, f: impl FnOnce(&[u8]) -> R) -> Option<R>;
    /// Runs `f` over the `len` bytes at `off`, to fill them.
    fn write<R>(&mut self, off: usize, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> Option<R>;
    /// Sleeps while the futex word is [`SLEEPING`], at most `timeout`; may
    /// return early for any reason.
    fn wait(&self, timeout: Duration);
    /// Wakes the consumer sleeping in [`Memory::wait`], if any.
    fn wake(&self);
    /// Sleeps while the producer's word ([`Memory::room`]) is [`SLEEPING`],
    /// at most `timeout`; may return early for any reason.
    fn wait_room(&self, timeout: Duration);
    /// Wakes the producer sleeping in [`Memory::wait_room`], if any.
    fn wake_room(&self);
    /// A `SeqCst` fence (`std`'s, or loom's in the models).
    fn fence(&self);
}

/// Polls `ready` until it holds (`Ok(true)`) or `spin` has passed since
/// `start` (`Ok(false)`): the spin before either side of a ring sleeps.
/// Looks at the clock only every 64 turns.
fn spin_until<E>(
    start: Instant,
    spin: Duration,
    mut ready: impl FnMut() -> Result<bool, E>,
) -> Result<bool, E> {
    if spin.is_zero() {
        return Ok(false);
    }
    let mut turns: u32 = 0;
    loop {
        std::hint::spin_loop();
        if ready()? {
            return Ok(true);
        }
        turns = turns.wrapping_add(1);
        if turns % 64 == 0 && start.elapsed() >= spin {
            return Ok(false);
        }
    }
}

/// `len` rounded up to the record alignment.
fn padded(len: usize) -> usize {
    (len + (RECORD - 1)) & !(RECORD - 1)
}

/// A record header.
fn record(kind: u32, len: usize) -> u64 {
    (u64::from(kind) << 32) | len as u64
}

/// Checks a capacity: a power of two in `MIN_CAPACITY..=MAX_CAPACITY`.
fn check_capacity(capacity: usize) -> Result<(), &'static str> {
    if !capacity.is_power_of_two() {
        return Err("ring capacity is not a power of two");
    }
    if !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
        return Err("ring capacity is out of range");
    }
    Ok(())
}

fn invalid(why: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

// ---------------------------------------------------------------------------
// The shared memory.

/// 128 bytes of the header, aligned so that two of them never share a
/// (pair of) cache line(s).
#[repr(C, align(128))]
struct Line<T>(T);

#[repr(C)]
struct Meta {
    magic: AtomicU64,
    version: AtomicU32,
    header_len: AtomicU32,
    capacity: AtomicU64,
}

#[repr(C)]
struct Wake {
    sleeping: AtomicU32,
    closed: AtomicU32,
    room: AtomicU32,
    gone: AtomicU32,
}

/// The header at the start of the mapping (see the module's table).
#[repr(C)]
struct Header {
    meta: Line<Meta>,
    tail: Line<AtomicU64>,
    head: Line<AtomicU64>,
    wake: Line<Wake>,
}

const _: () = assert!(std::mem::size_of::<Header>() == HEADER_LEN);
const _: () = assert!(std::mem::align_of::<Header>() <= 4096);

/// A ring mapped from its memfd: the production [`Memory`].
#[derive(Debug)]
pub(crate) struct Shm {
    map: Mapping,
    /// Our own copy: the header's is not trusted after `open`.
    cap: usize,
}

impl Shm {
    /// Maps the header and `cap` bytes of data of a sealed ring file.
    fn map(fd: BorrowedFd<'_>, cap: usize) -> io::Result<Shm> {
        let map = Mapping::prefix(fd, HEADER_LEN + cap)?;
        // mmap returns page-aligned addresses; checked because `header` relies on it.
        if (map.as_ptr() as usize) % std::mem::align_of::<Header>() != 0
            || map.len() < HEADER_LEN + cap
        {
            return Err(io::Error::other("ring mapping is misaligned"));
        }
        Ok(Shm { map, cap })
    }

    /// Maps a ring received from a peer, checking everything about it.
    fn open(fd: BorrowedFd<'_>) -> io::Result<Shm> {
        let seals = memfd::seals(fd).map_err(|_| invalid("ring descriptor is not a memfd"))?;
        if !seals.contains(memfd::SIZE_SEALS) {
            return Err(invalid("ring memfd is not sealed against resizing"));
        }
        let size = memfd::file_size(fd)?;
        let cap = usize::try_from(size)
            .ok()
            .and_then(|s| s.checked_sub(HEADER_LEN))
            .ok_or_else(|| invalid("ring memfd has a bad size"))?;
        check_capacity(cap).map_err(invalid)?;
        let shm = Shm::map(fd, cap)?;
        let meta = &shm.header().meta.0;
        if meta.magic.load(Ordering::Acquire) != MAGIC {
            return Err(invalid("ring memfd does not start with the ring magic"));
        }
        if meta.version.load(Ordering::Relaxed) != VERSION {
            return Err(invalid("ring has an unknown layout version"));
        }
        if meta.header_len.load(Ordering::Relaxed) as usize != HEADER_LEN
            || meta.capacity.load(Ordering::Relaxed) != cap as u64
        {
            return Err(invalid("ring header disagrees with the memfd's size"));
        }
        Ok(shm)
    }

    fn header(&self) -> &Header {
        // SAFETY: `Shm::map` checked that the mapping is at least
        // `HEADER_LEN == size_of::<Header>()` bytes long and that its start
        // is aligned for `Header`. The mapping stays valid for reads and
        // writes while `self` lives, which bounds the returned borrow.
        // `Header` is made only of atomics (and padding), so every bit
        // pattern is valid and the other side writing them concurrently is
        // what they are for. No plain `&`/`&mut [u8]` to the header bytes
        // is ever made: `Shm` hands out slices of the data area only.
        unsafe { &*self.map.as_ptr().cast::<Header>() }
    }

    /// The `len` bytes at data offset `off`, for the producer to fill.
    fn slice_mut(&mut self, off: usize, len: usize) -> Option<&mut [u8]> {
        if off.checked_add(len)? > self.cap {
            return None;
        }
        self.map.slice_mut(HEADER_LEN + off, len)
    }

    /// The address range of the data area, for tests that check every slice handed out.
    #[cfg(test)]
    fn data_range(&self) -> std::ops::Range<usize> {
        let start = self.map.as_ptr() as usize + HEADER_LEN;
        start..start + self.cap
    }
}

impl Memory for Shm {
    type U64 = AtomicU64;
    type U32 = AtomicU32;

    fn tail(&self) -> &AtomicU64 {
        &self.header().tail.0
    }
    fn head(&self) -> &AtomicU64 {
        &self.header().head.0
    }
    fn sleeping(&self) -> &AtomicU32 {
        &self.header().wake.0.sleeping
    }
    fn closed(&self) -> &AtomicU32 {
        &self.header().wake.0.closed
    }
    fn room(&self) -> &AtomicU32 {
        &self.header().wake.0.room
    }
    fn gone(&self) -> &AtomicU32 {
        &self.header().wake.0.gone
    }
    fn capacity(&self) -> usize {
        self.cap
    }

    fn load_record(&self, off: usize) -> Option<u64> {
        if off.checked_add(RECORD)? > self.cap {
            return None;
        }
        // A single atomic load: the value checked is the value used.
        Some(
            self.map
                .atomic_u64(HEADER_LEN + off)?
                .load(Ordering::Relaxed),
        )
    }

    fn store_record(&mut self, off: usize, word: u64) -> Option<()> {
        if off.checked_add(RECORD)? > self.cap {
            return None;
        }
        self.map
            .atomic_u64(HEADER_LEN + off)?
            .store(word, Ordering::Relaxed);
        Some(())
    }

    fn read<R>(&self, off: usize, len: usize, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        if off.checked_add(len)? > self.cap {
            return None;
        }
        // SAFETY: `off + len <= cap` and the mapping holds `HEADER_LEN + cap`
        // bytes (checked in `Shm::map`), so the range is inside it, valid for
        // reads while `&self` lives (the slice does not escape `f`); `u8`
        // has no invalid bit patterns. Within this process nothing writes
        // these bytes meanwhile: writes go through `slice_mut`/`store_record`,
        // which need `&mut self`, and the consumer only ever writes header
        // atomics. Another process (or another mapping) may write them: that
        // is the shared-memory contract of `Mapping`, and the bytes are
        // treated as untrusted input (see the module documentation).
        let bytes =
            unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(HEADER_LEN + off), len) };
        Some(f(bytes))
    }

    fn write<R>(&mut self, off: usize, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> Option<R> {
        Some(f(self.slice_mut(off, len)?))
    }

    fn wait(&self, timeout: Duration) {
        futex_wait(self.sleeping(), timeout);
    }

    fn wake(&self) {
        futex_wake(self.sleeping());
    }

    fn wait_room(&self, timeout: Duration) {
        futex_wait(self.room(), timeout);
    }

    fn wake_room(&self) {
        futex_wake(self.room());
    }

    fn fence(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
    }
}

/// Sleeps while `word` is [`SLEEPING`], at most `timeout` ([futex(2)] `FUTEX_WAIT`).
///
/// [futex(2)]: https://man7.org/linux/man-pages/man2/futex.2.html
fn futex_wait(word: &AtomicU32, timeout: Duration) {
    let timeout = timeout.min(MAX_SLEEP);
    let Ok(ts) = futex::Timespec::try_from(timeout) else {
        return;
    };
    // Not FUTEX_PRIVATE: the word is shared with another process.
    match futex::wait(word, futex::Flags::empty(), SLEEPING, Some(&ts)) {
        Ok(()) => {}
        // Woken before we slept, timed out, or interrupted: the caller looks again.
        Err(rustix::io::Errno::AGAIN | rustix::io::Errno::TIMEDOUT | rustix::io::Errno::INTR) => {}
        Err(e) => {
            // Should not happen; do not turn the caller's wait into a busy loop.
            tracing::debug!(error = %e, "futex wait on a ring failed");
            std::thread::sleep(timeout.min(Duration::from_millis(1)));
        }
    }
}

/// Wakes one process sleeping on `word` ([futex(2)] `FUTEX_WAKE`).
///
/// [futex(2)]: https://man7.org/linux/man-pages/man2/futex.2.html
fn futex_wake(word: &AtomicU32) {
    if let Err(e) = futex::wake(word, futex::Flags::empty(), 1) {
        tracing::debug!(error = %e, "futex wake on a ring failed");
    }
}

/// Creates a ring with a data area of `capacity` bytes (a power of two in
/// `MIN_CAPACITY..=MAX_CAPACITY`): a memfd of `HEADER_LEN + capacity` bytes,
/// sealed against resizing, with its header written. Both sides then open it.
pub(crate) fn create(capacity: usize) -> io::Result<OwnedFd> {
    check_capacity(capacity).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let fd = memfd::create("busbar-ring", (HEADER_LEN + capacity) as u64)?;
    memfd::seal_size(fd.as_fd())?;
    let shm = Shm::map(fd.as_fd(), capacity)?;
    let meta = &shm.header().meta.0;
    meta.version.store(VERSION, Ordering::Relaxed);
    meta.header_len.store(HEADER_LEN as u32, Ordering::Relaxed);
    meta.capacity.store(capacity as u64, Ordering::Relaxed);
    meta.magic.store(MAGIC, Ordering::Release);
    Ok(fd)
}

/// Creates a ring ([`create`]) and opens both ends of it in this process;
/// the descriptor is what to send to the process that will use one of them.
pub(crate) fn pair(capacity: usize) -> io::Result<(Producer, Consumer, OwnedFd)> {
    let fd = create(capacity)?;
    let producer = Producer::open(fd.as_fd())?;
    let consumer = Consumer::open(fd.as_fd())?;
    Ok((producer, consumer, fd))
}

// ---------------------------------------------------------------------------
// The producer.

/// The writing end of a ring. There must be only one per ring (the link
/// layer makes sure); its `Drop` closes the ring.
#[derive(Debug)]
pub(crate) struct Producer<M: Memory = Shm> {
    mem: M,
    /// Our own copy of the capacity.
    cap: u64,
    /// Our own copy of the producer index: what we published.
    tail: u64,
    /// The consumer index as last loaded and checked.
    head: u64,
    /// Whether a sleeping consumer is woken with `FUTEX_WAKE` (else the
    /// caller wakes it some other way when `commit` says so).
    futex_wake: bool,
    /// A wake-up the caller owes the consumer: publishing padding alone
    /// (in `reserve`) found it asleep ([`Producer::take_owed_wake`]).
    owed_wake: bool,
    /// How long `wait_room` spins before it sleeps.
    spin: Duration,
    /// Why the ring is unusable, once it is.
    broken: Option<&'static str>,
}

impl Producer<Shm> {
    /// Opens the writing end of the ring in `fd`, checking its seals, size
    /// and header (`InvalidData` when they are wrong).
    pub(crate) fn open(fd: BorrowedFd<'_>) -> io::Result<Producer> {
        Producer::from_memory(Shm::open(fd)?).map_err(invalid)
    }
}

impl<M: Memory> Producer<M> {
    /// The writing end over `mem`, starting from the indices in it.
    pub(crate) fn from_memory(mem: M) -> Result<Self, RingError> {
        let cap = mem.capacity() as u64;
        let tail = mem.tail().load(Ordering::Acquire);
        let head = mem.head().load(Ordering::Acquire);
        if tail % RECORD as u64 != 0 || head % RECORD as u64 != 0 {
            return Err(RingError::Corrupt("ring index not 8-aligned"));
        }
        if tail.wrapping_sub(head) > cap {
            return Err(RingError::Corrupt(
                "ring indices more than the capacity apart",
            ));
        }
        Ok(Producer {
            mem,
            cap,
            tail,
            head,
            futex_wake: true,
            owed_wake: false,
            spin: DEFAULT_SPIN,
            broken: None,
        })
    }

    /// Bytes in the data area.
    pub(crate) fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// The longest frame this ring takes: the capacity less a record header.
    pub(crate) fn max_frame_len(&self) -> usize {
        self.cap as usize - RECORD
    }

    /// Leaves waking a sleeping consumer to the caller: [`Grant::commit`]
    /// says when it must (the consumer then sleeps on something other than
    /// this ring's futex, e.g. an eventfd next to many rings).
    pub(crate) fn set_external_wake(&mut self) {
        self.futex_wake = false;
    }

    /// Sets how long [`Producer::wait_room`] spins before it sleeps (zero:
    /// never spins; the loom models, which have no clock, need that).
    #[cfg_attr(not(loom), allow(dead_code))]
    pub(crate) fn set_spin(&mut self, spin: Duration) {
        self.spin = spin;
    }

    /// Whether publishing padding alone (a `reserve` that answered `Full`)
    /// found the consumer asleep since the last call: the caller must wake
    /// it (with [`Producer::set_external_wake`]), or it sleeps on with its
    /// flag down while the producer waits for room only it can make.
    pub(crate) fn take_owed_wake(&mut self) -> bool {
        std::mem::take(&mut self.owed_wake)
    }

    /// Whether the consumer said it let go of the ring (it may also have
    /// died without saying so).
    pub(crate) fn consumer_gone(&self) -> bool {
        self.mem.gone().load(Ordering::Relaxed) != 0
    }

    /// Bytes published that the consumer has not released yet.
    pub(crate) fn queued(&mut self) -> usize {
        let _ = self.refresh_head();
        self.tail.wrapping_sub(self.head) as usize
    }

    /// Whether a frame of `len` bytes fits now (reloading the consumer index if needed).
    fn has_room(&mut self, len: usize) -> Result<bool, PushError> {
        if let Some(why) = self.broken {
            return Err(PushError::Corrupt(why));
        }
        let max = self.max_frame_len();
        if len > max {
            return Err(PushError::TooLarge { len, max });
        }
        let need = (RECORD + padded(len)) as u64;
        let room = self.cap - (self.tail & (self.cap - 1));
        let pad = if room < need { room } else { 0 };
        if self.free() < pad + need {
            self.refresh_head()?;
        }
        Ok(self.free() >= pad + need)
    }

    /// Waits up to `timeout` until a frame of `len` bytes fits: sleeps on
    /// the producer's futex word, which the consumer swaps back and wakes
    /// after it released room. `Ok(true)` when it fits, `Ok(false)` on timeout.
    ///
    /// The handshake mirrors the consumer's (see the module documentation):
    /// flag, fence, look again, sleep.
    pub(crate) fn wait_room(&mut self, len: usize, timeout: Duration) -> Result<bool, PushError> {
        if self.has_room(len)? {
            return Ok(true);
        }
        let start = Instant::now();
        // A consumer that is reading frees room within microseconds: spin
        // for a while before paying for a sleep and a wake-up.
        if spin_until(start, self.spin.min(timeout), || self.has_room(len))? {
            return Ok(true);
        }
        loop {
            self.mem.room().swap(SLEEPING, Ordering::Relaxed);
            self.mem.fence();
            let fits = self.has_room(len);
            if !matches!(fits, Ok(false)) {
                self.mem.room().swap(AWAKE, Ordering::Relaxed);
                return fits;
            }
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                self.mem.room().swap(AWAKE, Ordering::Relaxed);
                return Ok(false);
            }
            self.mem.wait_room(left);
            self.mem.room().swap(AWAKE, Ordering::AcqRel);
            if self.has_room(len)? {
                return Ok(true);
            }
        }
    }

    /// Copies `bytes` into the ring as one frame and publishes it (waking
    /// the consumer if it sleeps).
    pub(crate) fn try_push(&mut self, bytes: &[u8]) -> Result<(), PushError> {
        let mut grant = self.reserve(bytes.len())?;
        grant.write_with(|buf| buf.copy_from_slice(bytes));
        grant.commit();
        Ok(())
    }

    /// Reserves room for a frame of `len` bytes, to be filled in place and
    /// then published with [`Grant::commit`]. A grant dropped without
    /// `commit` publishes nothing.
    ///
    /// When the frame does not fit before the end of the data area and the
    /// ring has room only for the padding, the padding alone is published
    /// (and `Full` returned), so that a frame of up to `max_frame_len` bytes
    /// always fits once the consumer has caught up.
    pub(crate) fn reserve(&mut self, len: usize) -> Result<Grant<'_, M>, PushError> {
        if let Some(why) = self.broken {
            return Err(PushError::Corrupt(why));
        }
        let max = self.max_frame_len();
        if len > max {
            return Err(PushError::TooLarge { len, max });
        }
        let need = (RECORD + padded(len)) as u64;
        let off = self.tail & (self.cap - 1);
        let room = self.cap - off;
        let pad = if room < need { room } else { 0 };
        if self.free() < pad + need {
            self.refresh_head()?;
            if self.free() < pad + need {
                if pad > 0 && self.free() >= pad {
                    self.write_padding(off as usize, pad as usize)?;
                    if self.publish(self.tail.wrapping_add(pad)) {
                        self.owed_wake = true;
                    }
                }
                return Err(PushError::Full);
            }
        }
        if pad > 0 {
            self.write_padding(off as usize, pad as usize)?;
        }
        let start = self.tail.wrapping_add(pad);
        Ok(Grant {
            start: (start & (self.cap - 1)) as usize,
            len,
            end: start.wrapping_add(need),
            producer: self,
        })
    }

    /// Bytes free, by the last checked consumer index.
    fn free(&self) -> u64 {
        self.cap - self.tail.wrapping_sub(self.head)
    }

    /// Loads and checks the consumer index: it may only have moved forwards,
    /// and never past what we published.
    fn refresh_head(&mut self) -> Result<(), PushError> {
        let head = self.mem.head().load(Ordering::Acquire);
        let why = if head.wrapping_sub(self.head) > self.tail.wrapping_sub(self.head) {
            "consumer index moved backwards or past the producer index"
        } else if head % RECORD as u64 != 0 {
            "consumer index not 8-aligned"
        } else {
            self.head = head;
            return Ok(());
        };
        self.broken = Some(why);
        Err(PushError::Corrupt(why))
    }

    fn write_padding(&mut self, off: usize, len: usize) -> Result<(), PushError> {
        self.store_record(off, record(KIND_PAD, len))
    }

    fn store_record(&mut self, off: usize, word: u64) -> Result<(), PushError> {
        if self.mem.store_record(off, word).is_none() {
            // Our own offsets are always inside the data area; never publish around a bug.
            let why = "record outside the data area";
            self.broken = Some(why);
            return Err(PushError::Corrupt(why));
        }
        Ok(())
    }

    /// Publishes everything up to `tail`, then wakes the consumer if it
    /// sleeps. Whether it slept.
    fn publish(&mut self, tail: u64) -> bool {
        self.tail = tail;
        self.mem.tail().store(tail, Ordering::Release);
        self.wake_if_sleeping()
    }

    /// The producer's half of the handshake (see the module documentation):
    /// after a store to `tail` or the closed flag, fence, then look at the
    /// flag. The swap releases what we published to a consumer that reads
    /// the 0 it leaves. Whether the consumer slept (and was woken, unless
    /// waking is the caller's: [`Producer::set_external_wake`]).
    fn wake_if_sleeping(&self) -> bool {
        self.mem.fence();
        let flag = self.mem.sleeping();
        if flag.load(Ordering::Relaxed) != AWAKE && flag.swap(AWAKE, Ordering::AcqRel) != AWAKE {
            if self.futex_wake {
                self.mem.wake();
            }
            return true;
        }
        false
    }
}

impl<M: Memory> Drop for Producer<M> {
    fn drop(&mut self) {
        self.mem.closed().store(1, Ordering::Release);
        self.wake_if_sleeping();
    }
}

/// Room for one frame, reserved by [`Producer::reserve`]: fill it, then
/// [`commit`](Grant::commit) it. Dropped without `commit`, it is as if it
/// never happened.
#[derive(Debug)]
pub(crate) struct Grant<'a, M: Memory = Shm> {
    producer: &'a mut Producer<M>,
    /// Offset of the frame's record header.
    start: usize,
    len: usize,
    /// The producer index after this frame.
    end: u64,
}

impl<M: Memory> Grant<'_, M> {
    /// The frame's length.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether the frame is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Runs `f` over the frame's bytes, to fill them (they hold whatever was
    /// there before). `None` only if the grant were outside the data area,
    /// which `reserve` rules out.
    pub(crate) fn write_with<R>(&mut self, f: impl FnOnce(&mut [u8]) -> R) -> Option<R> {
        self.producer.mem.write(self.start + RECORD, self.len, f)
    }

    /// Publishes the frame. Whether the consumer was asleep (see
    /// [`Producer::set_external_wake`]).
    pub(crate) fn commit(self) -> bool {
        let producer = self.producer;
        let woke = producer
            .store_record(self.start, record(KIND_FRAME, self.len))
            .is_ok()
            && producer.publish(self.end);
        // A wake owed for padding published earlier is paid with this one.
        producer.take_owed_wake() || woke
    }
}

impl Grant<'_, Shm> {
    /// The frame's bytes, to be filled in place (zero-copy send).
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // `reserve` checked the range; an empty slice would only ever come from a bug.
        self.producer
            .mem
            .slice_mut(self.start + RECORD, self.len)
            .unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------
// The consumer.

/// The reading end of a ring.
#[derive(Debug)]
pub(crate) struct Consumer<M: Memory = Shm> {
    mem: M,
    /// Our own copy of the capacity.
    cap: u64,
    /// Our own copy of the consumer index: what we released.
    head: u64,
    /// The producer index as last loaded and checked.
    tail: u64,
    /// How long `wait` spins before it sleeps.
    spin: Duration,
    /// Why the ring is unusable, once it is.
    broken: Option<&'static str>,
}

impl<M: Memory> Drop for Consumer<M> {
    fn drop(&mut self) {
        // Tells the producer not to fill a ring nobody reads.
        self.mem.gone().store(1, Ordering::Release);
    }
}

/// Where the next frame is: payload offset, payload length, record length.
#[derive(Debug, Clone, Copy)]
struct Next {
    off: usize,
    len: usize,
    need: u64,
}

impl Consumer<Shm> {
    /// Opens the reading end of the ring in `fd`, checking its seals, size
    /// and header (`InvalidData` when they are wrong).
    pub(crate) fn open(fd: BorrowedFd<'_>) -> io::Result<Consumer> {
        Consumer::from_memory(Shm::open(fd)?).map_err(invalid)
    }

    /// The address range of the data area.
    #[cfg(test)]
    fn data_range(&self) -> std::ops::Range<usize> {
        self.mem.data_range()
    }
}

impl<M: Memory> Consumer<M> {
    /// The reading end over `mem`, starting from the consumer index in it.
    pub(crate) fn from_memory(mem: M) -> Result<Self, RingError> {
        let cap = mem.capacity() as u64;
        let head = mem.head().load(Ordering::Acquire);
        if head % RECORD as u64 != 0 {
            return Err(RingError::Corrupt("consumer index not 8-aligned"));
        }
        Ok(Consumer {
            mem,
            cap,
            head,
            tail: head,
            spin: DEFAULT_SPIN,
            broken: None,
        })
    }

    /// Bytes in the data area.
    pub(crate) fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// Sets how long [`Consumer::wait`] spins before it sleeps (zero: never spins).
    pub(crate) fn set_spin(&mut self, spin: Duration) {
        self.spin = spin;
    }

    /// Reads the next frame in place: runs `f` over its bytes, then releases
    /// its room to the producer. `Ok(None)` when there is none yet;
    /// `Err(Closed)` when there is none and never will be.
    pub(crate) fn try_pop_with<R>(
        &mut self,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, RingError> {
        match self.next()? {
            Some(next) => self.take(next, f).map(Some),
            None => Ok(None),
        }
    }

    /// As [`Consumer::try_pop_with`], but waits up to `timeout` for a frame
    /// ([`Consumer::wait`]). `Ok(None)` when none came in time.
    pub(crate) fn pop_wait_with<R>(
        &mut self,
        timeout: Duration,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, RingError> {
        let start = Instant::now();
        loop {
            if let Some(next) = self.next()? {
                return self.take(next, f).map(Some);
            }
            if !self.wait(timeout.saturating_sub(start.elapsed()))? {
                return Ok(None);
            }
        }
    }

    /// Waits up to `timeout` until the producer has published something or
    /// closed the ring: spins for a while (see [`Consumer::set_spin`]), then
    /// sleeps on the futex, so an idle consumer uses no CPU. `Ok(true)` when
    /// there is something for `try_pop_with` to look at, `Ok(false)` on
    /// timeout.
    pub(crate) fn wait(&mut self, timeout: Duration) -> Result<bool, RingError> {
        if self.ready()? {
            return Ok(true);
        }
        let start = Instant::now();
        if spin_until(start, self.spin.min(timeout), || self.ready())? {
            return Ok(true);
        }
        loop {
            // The consumer's half of the handshake: flag, fence, look again.
            // Swaps rather than stores: an RMW reads the latest value, so the
            // flag's changes form one chain. C11 would order a plain store
            // after the producer's swap too, but loom keeps only a partial
            // modification order and reports a false lost wake-up without it.
            self.mem.sleeping().swap(SLEEPING, Ordering::Relaxed);
            self.mem.fence();
            let ready = self.ready();
            if !matches!(ready, Ok(false)) {
                self.mem.sleeping().swap(AWAKE, Ordering::Relaxed);
                return ready;
            }
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                self.mem.sleeping().swap(AWAKE, Ordering::Relaxed);
                return Ok(false);
            }
            self.mem.wait(left);
            // Reading the 0 a waking producer left synchronizes with it.
            self.mem.sleeping().swap(AWAKE, Ordering::AcqRel);
            if self.ready()? {
                return Ok(true);
            }
        }
    }

    /// Whether `try_pop_with` has something to say: a record, or the close.
    fn ready(&mut self) -> Result<bool, RingError> {
        if let Some(why) = self.broken {
            return Err(RingError::Corrupt(why));
        }
        if self.head != self.tail {
            return Ok(true);
        }
        self.refresh_tail()?;
        Ok(self.head != self.tail || self.mem.closed().load(Ordering::Acquire) != 0)
    }

    fn fail(&mut self, why: &'static str) -> RingError {
        self.broken = Some(why);
        RingError::Corrupt(why)
    }

    /// Loads and checks the producer index: 8-aligned, not behind our index,
    /// at most the capacity ahead of it, and not behind what it was before.
    fn refresh_tail(&mut self) -> Result<(), RingError> {
        let tail = self.mem.tail().load(Ordering::Acquire);
        let avail = tail.wrapping_sub(self.head);
        if avail > self.cap {
            return Err(
                self.fail("producer index behind the consumer's or more than the capacity ahead")
            );
        }
        if tail % RECORD as u64 != 0 {
            return Err(self.fail("producer index not 8-aligned"));
        }
        if avail < self.tail.wrapping_sub(self.head) {
            return Err(self.fail("producer index moved backwards"));
        }
        self.tail = tail;
        Ok(())
    }

    /// Releases `need` bytes to the producer, and wakes it if it waits for room.
    fn release(&mut self, need: u64) {
        self.head = self.head.wrapping_add(need);
        self.mem.head().store(self.head, Ordering::Release);
        // The consumer's half of the producer's handshake (`wait_room`).
        self.mem.fence();
        let flag = self.mem.room();
        if flag.load(Ordering::Relaxed) != AWAKE && flag.swap(AWAKE, Ordering::AcqRel) != AWAKE {
            self.mem.wake_room();
        }
    }

    /// The first half of sleeping somewhere else than on this ring's futex
    /// (with many rings, on an eventfd their producers ring when
    /// [`Grant::commit`] says so): raises the flag, fences, and looks again.
    /// `Ok(true)` when there is something to read after all (the flag is
    /// down again: do not sleep); `Ok(false)` when the caller may sleep, and
    /// must call [`Consumer::awake`] when it wakes.
    pub(crate) fn prepare_sleep(&mut self) -> Result<bool, RingError> {
        self.mem.sleeping().swap(SLEEPING, Ordering::Relaxed);
        self.mem.fence();
        let ready = self.ready();
        if !matches!(ready, Ok(false)) {
            self.mem.sleeping().swap(AWAKE, Ordering::Relaxed);
        }
        ready
    }

    /// The consumer woke (after [`Consumer::prepare_sleep`]): lowers the flag.
    pub(crate) fn awake(&mut self) {
        // Reading the 0 a waking producer left synchronizes with it.
        self.mem.sleeping().swap(AWAKE, Ordering::AcqRel);
    }

    /// Runs `f` over the next frame in place without releasing it: the
    /// next `try_pop_with` sees the same frame. `Ok(None)` when there is none.
    pub(crate) fn peek_with<R>(
        &mut self,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, RingError> {
        match self.next()? {
            Some(next) => match self.mem.read(next.off, next.len, f) {
                Some(out) => Ok(Some(out)),
                None => Err(self.fail("frame outside the data area")),
            },
            None => Ok(None),
        }
    }

    /// Finds and checks the next frame, skipping padding.
    fn next(&mut self) -> Result<Option<Next>, RingError> {
        if let Some(why) = self.broken {
            return Err(RingError::Corrupt(why));
        }
        // Padding is never at offset 0, so two records are enough to find a frame.
        for _ in 0..2 {
            if self.head == self.tail {
                self.refresh_tail()?;
                if self.head == self.tail {
                    if self.mem.closed().load(Ordering::Acquire) == 0 {
                        return Ok(None);
                    }
                    // Everything published before the close is visible now.
                    self.refresh_tail()?;
                    if self.head == self.tail {
                        return Err(RingError::Closed);
                    }
                }
            }
            let avail = self.tail.wrapping_sub(self.head);
            let off = (self.head & (self.cap - 1)) as usize;
            let room = self.cap as usize - off;
            let Some(word) = self.mem.load_record(off) else {
                return Err(self.fail("record header outside the data area"));
            };
            let kind = (word >> 32) as u32;
            let len = (word & u64::from(u32::MAX)) as usize;
            match kind {
                KIND_FRAME => {
                    if len > self.cap as usize - RECORD {
                        return Err(self.fail("frame longer than the ring"));
                    }
                    let need = RECORD + padded(len);
                    if need > room {
                        return Err(self.fail("frame runs past the end of the data area"));
                    }
                    if need as u64 > avail {
                        return Err(self.fail("frame runs past the producer index"));
                    }
                    return Ok(Some(Next {
                        off: off + RECORD,
                        len,
                        need: need as u64,
                    }));
                }
                KIND_PAD => {
                    if off == 0 {
                        return Err(self.fail("padding at the start of the data area"));
                    }
                    if len != room {
                        return Err(self.fail("padding does not end at the end of the data area"));
                    }
                    if len as u64 > avail {
                        return Err(self.fail("padding runs past the producer index"));
                    }
                    self.release(len as u64);
                }
                _ => return Err(self.fail("unknown record kind")),
            }
        }
        Err(self.fail("padding after padding"))
    }

    /// Runs `f` over the frame at `next`, then releases it.
    fn take<R>(&mut self, next: Next, f: impl FnOnce(&[u8]) -> R) -> Result<R, RingError> {
        let Some(out) = self.mem.read(next.off, next.len, f) else {
            return Err(self.fail("frame outside the data area"));
        };
        self.release(next.need);
        Ok(out)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;
    use std::sync::Arc;

    /// The bytes of test frame number `seq`, `len` long.
    fn frame(seq: u64, len: usize) -> Vec<u8> {
        let mut bytes: Vec<u8> = (0..len)
            .map(|i| (seq as u8).wrapping_mul(31).wrapping_add(i as u8))
            .collect();
        let n = len.min(8);
        bytes[..n].copy_from_slice(&seq.to_le_bytes()[..n]);
        bytes
    }

    fn pop(c: &mut Consumer) -> Result<Option<Vec<u8>>, RingError> {
        let range = c.data_range();
        c.try_pop_with(|b| {
            let (start, end) = (b.as_ptr() as usize, b.as_ptr() as usize + b.len());
            assert!(
                range.start <= start && end <= range.end,
                "slice outside the data area"
            );
            b.to_vec()
        })
    }

    /// A mapping of the whole ring for a test to scribble on.
    fn scribbler(fd: &OwnedFd) -> Mapping {
        Mapping::whole(fd.as_fd()).expect("map")
    }

    /// Padding published alone (the frame after it does not fit yet) finds
    /// a consumer asleep: the producer owes it a wake-up, paid by the caller.
    #[test]
    fn padding_alone_owes_a_sleeping_consumer_a_wake() {
        let (mut p, mut c, _fd) = pair(64).expect("ring");
        p.set_external_wake();
        // 40 bytes used, then read: the write position is 40 in, the ring empty.
        p.try_push(&[1; 32]).expect("push");
        assert_eq!(pop(&mut c), Ok(Some(vec![1; 32])));
        assert_eq!(c.prepare_sleep(), Ok(false), "nothing to read: may sleep");
        // 48 bytes do not fit in the 24 before the end, nor with them in 64.
        assert_eq!(p.reserve(40).err(), Some(PushError::Full));
        assert!(p.take_owed_wake(), "the padding found the consumer asleep");
        assert!(!p.take_owed_wake(), "owed once");
        c.awake();
        assert_eq!(pop(&mut c), Ok(None), "the padding is skipped");
        let g = p.reserve(40).expect("room now");
        assert!(!g.commit(), "the consumer is awake");
    }

    #[test]
    fn push_pop_in_place() {
        let (mut p, mut c, _fd) = pair(MIN_CAPACITY).expect("ring");
        assert_eq!(p.capacity(), 64);
        assert_eq!(c.capacity(), 64);
        assert_eq!(p.max_frame_len(), 56);
        assert_eq!(pop(&mut c), Ok(None));
        p.try_push(b"hello").expect("push");
        p.try_push(b"").expect("push empty");
        assert_eq!(pop(&mut c), Ok(Some(b"hello".to_vec())));
        assert_eq!(pop(&mut c), Ok(Some(Vec::new())));
        assert_eq!(pop(&mut c), Ok(None));
    }

    #[test]
    fn reserve_and_commit_write_in_place() {
        let (mut p, mut c, _fd) = pair(MIN_CAPACITY).expect("ring");
        let mut g = p.reserve(5).expect("room");
        assert_eq!(g.len(), 5);
        assert!(!g.is_empty());
        g.bytes_mut().copy_from_slice(b"abcde");
        assert_eq!(pop(&mut c), Ok(None), "nothing before commit");
        g.commit();
        assert_eq!(pop(&mut c), Ok(Some(b"abcde".to_vec())));
    }

    #[test]
    fn create_and_open_check_everything() {
        for cap in [0, 32, 100, MAX_CAPACITY * 2] {
            let e = create(cap).expect_err("bad capacity");
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{cap}");
        }
        // Not a memfd.
        let f = std::fs::File::open("/dev/null").expect("open");
        assert!(Consumer::open(f.as_fd()).is_err());
        // Not sealed.
        let fd = memfd::create("t", (HEADER_LEN + 64) as u64).expect("memfd");
        assert!(Consumer::open(fd.as_fd()).is_err());
        // Sealed but not a ring, or of a size that is not header + power of two.
        for size in [HEADER_LEN + 64, HEADER_LEN + 96, 100] {
            let fd = memfd::create("t", size as u64).expect("memfd");
            memfd::seal_size(fd.as_fd()).expect("seal");
            let e = Consumer::open(fd.as_fd()).expect_err("not a ring");
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            assert!(Producer::open(fd.as_fd()).is_err());
        }
        // A ring whose header lies about its capacity or version.
        for (at, value) in [(16usize, 128u64), (8, 99)] {
            let fd = create(64).expect("ring");
            let m = scribbler(&fd);
            m.atomic_u64(at)
                .expect("field")
                .store(value, Ordering::SeqCst);
            assert!(Consumer::open(fd.as_fd()).is_err(), "{at}");
        }
        // Unaligned indices.
        let fd = create(64).expect("ring");
        let m = scribbler(&fd);
        m.atomic_u64(256).expect("head").store(3, Ordering::SeqCst);
        assert!(Consumer::open(fd.as_fd()).is_err());
        assert!(Producer::open(fd.as_fd()).is_err());
    }

    #[test]
    fn frames_wrap_with_padding_and_the_largest_always_fits() {
        let (mut p, mut c, _fd) = pair(64).expect("ring");
        let max = p.max_frame_len();
        assert_eq!(
            p.try_push(&vec![0; max + 1]),
            Err(PushError::TooLarge { len: max + 1, max })
        );
        let mut seq = 0;
        // Walk the start of the ring through every offset, with a
        // largest frame after each step.
        for step in 0..20 {
            let small = frame(seq, step % 13);
            p.try_push(&small).expect("small frame");
            assert_eq!(pop(&mut c), Ok(Some(small)));
            seq += 1;
            let big = frame(seq, max);
            match p.try_push(&big) {
                Ok(()) => {}
                Err(PushError::Full) => {
                    // Only the padding went in; once read, the frame fits.
                    assert_eq!(pop(&mut c), Ok(None));
                    p.try_push(&big).expect("fits after the padding");
                }
                Err(e) => panic!("{e}"),
            }
            assert_eq!(p.try_push(b"x"), Err(PushError::Full));
            assert_eq!(pop(&mut c), Ok(Some(big)));
            seq += 1;
        }
    }

    #[test]
    fn an_uncommitted_frame_is_never_seen() {
        let (mut p, mut c, fd) = pair(64).expect("ring");
        // Reserved and filled, never committed.
        p.reserve(16).expect("room").bytes_mut().fill(7);
        // A producer that died half way: the record header is written, `tail` is not.
        let m = scribbler(&fd);
        m.atomic_u64(HEADER_LEN)
            .expect("record")
            .store(record(KIND_FRAME, 16), Ordering::SeqCst);
        assert_eq!(pop(&mut c), Ok(None));
        p.try_push(b"after").expect("push");
        assert_eq!(pop(&mut c), Ok(Some(b"after".to_vec())));
        assert_eq!(pop(&mut c), Ok(None));
    }

    #[test]
    fn close_comes_after_the_last_frame() {
        let (mut p, mut c, _fd) = pair(64).expect("ring");
        p.try_push(b"1").expect("push");
        p.try_push(b"2").expect("push");
        drop(p);
        assert_eq!(c.wait(Duration::ZERO), Ok(true));
        assert_eq!(pop(&mut c), Ok(Some(b"1".to_vec())));
        assert_eq!(pop(&mut c), Ok(Some(b"2".to_vec())));
        assert_eq!(pop(&mut c), Err(RingError::Closed));
        assert_eq!(c.wait(Duration::from_secs(5)), Ok(true));
        assert_eq!(
            c.pop_wait_with(Duration::from_secs(5), |b| b.len()),
            Err(RingError::Closed)
        );
    }

    /// CPU time of the calling thread.
    fn thread_cpu() -> Duration {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    }

    #[test]
    fn an_idle_consumer_sleeps_and_times_out() {
        let (_p, mut c, _fd) = pair(64).expect("ring");
        let (cpu, start) = (thread_cpu(), Instant::now());
        assert_eq!(c.wait(Duration::from_millis(300)), Ok(false));
        let (cpu, wall) = (thread_cpu() - cpu, start.elapsed());
        assert!(wall >= Duration::from_millis(300), "{wall:?}");
        assert!(
            cpu < Duration::from_millis(30),
            "an idle wait used {cpu:?} of CPU"
        );
        assert_eq!(
            c.pop_wait_with(Duration::from_millis(1), |b| b.len()),
            Ok(None)
        );
    }

    #[test]
    fn a_push_wakes_a_sleeping_consumer() {
        let (mut p, mut c, _fd) = pair(64).expect("ring");
        let t = std::thread::spawn(move || {
            let start = Instant::now();
            let got = c.pop_wait_with(Duration::from_secs(20), |b| b.to_vec());
            (got, start.elapsed())
        });
        std::thread::sleep(Duration::from_millis(100));
        p.try_push(b"wake").expect("push");
        let (got, waited) = t.join().expect("consumer");
        assert_eq!(got, Ok(Some(b"wake".to_vec())));
        assert!(waited < Duration::from_secs(10), "{waited:?}");
    }

    #[test]
    fn a_close_wakes_a_sleeping_consumer() {
        let (p, mut c, _fd) = pair(64).expect("ring");
        let t = std::thread::spawn(move || c.pop_wait_with(Duration::from_secs(20), |b| b.len()));
        std::thread::sleep(Duration::from_millis(50));
        drop(p);
        assert_eq!(t.join().expect("consumer"), Err(RingError::Closed));
    }

    #[test]
    fn a_million_frames_cross_threads_in_order() {
        const N: u64 = 1_000_000;
        let (mut p, mut c, _fd) = pair(4096).expect("ring");
        let producer = std::thread::spawn(move || {
            for seq in 0..N {
                let bytes = frame(seq, 8 + (seq % 24) as usize);
                loop {
                    match p.try_push(&bytes) {
                        Ok(()) => break,
                        Err(PushError::Full) => std::thread::yield_now(),
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        });
        for seq in 0..N {
            let got = c
                .pop_wait_with(Duration::from_secs(10), |b| {
                    b == frame(seq, 8 + (seq % 24) as usize)
                })
                .expect("ring");
            assert_eq!(got, Some(true), "frame {seq}");
        }
        producer.join().expect("producer");
        assert_eq!(pop(&mut c), Err(RingError::Closed));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Random pushes (some abandoned half way), pops and sizes round-trip
        /// byte-exact, across many wrap-arounds.
        #[test]
        fn random_pushes_and_pops_round_trip(
            shift in 6u32..=10,
            ops in proptest::collection::vec((0u8..7, any::<u16>()), 1..400),
        ) {
            let cap = 1usize << shift;
            let (mut p, mut c, _fd) = pair(cap).expect("ring");
            let mut expected = VecDeque::new();
            let mut seq = 0u64;
            for (op, raw) in ops {
                let len = raw as usize % (cap + 16);
                match op {
                    0..=2 => {
                        let bytes = frame(seq, len);
                        seq += 1;
                        let mut result = p.try_push(&bytes);
                        if result == Err(PushError::Full) && expected.is_empty() {
                            // At most the padding went in: now it must fit.
                            prop_assert_eq!(pop(&mut c), Ok(None));
                            result = p.try_push(&bytes);
                        }
                        match result {
                            Ok(()) => expected.push_back(bytes),
                            Err(PushError::Full) => prop_assert!(!expected.is_empty()),
                            Err(PushError::TooLarge { .. }) => prop_assert!(len > cap - 8),
                            Err(e) => prop_assert!(false, "{}", e),
                        }
                    }
                    3 => {
                        if let Ok(mut g) = p.reserve(len) {
                            g.bytes_mut().fill(0xee);
                        }
                    }
                    _ => prop_assert_eq!(pop(&mut c), Ok(expected.pop_front())),
                }
            }
            while let Some(bytes) = expected.pop_front() {
                prop_assert_eq!(pop(&mut c), Ok(Some(bytes)));
            }
            prop_assert_eq!(pop(&mut c), Ok(None));
            drop(p);
            prop_assert_eq!(pop(&mut c), Err(RingError::Closed));
        }

        /// Whatever is scribbled over the header and the data, at whatever
        /// moment, neither end panics, hangs or hands out bytes outside the
        /// data area: a pop gives a frame, nothing, `Closed` or `Corrupt`
        /// (and `Corrupt` for good).
        #[test]
        fn scribbles_never_hurt_either_end(
            ops in proptest::collection::vec(hostile_op(), 1..200),
        ) {
            let cap = 256;
            let fd = create(cap).expect("ring");
            let mut p = Producer::open(fd.as_fd()).expect("producer");
            let mut c = Consumer::open(fd.as_fd()).expect("consumer");
            c.set_spin(Duration::ZERO);
            let mut m = scribbler(&fd);
            let mut c_broken = false;
            let mut seq = 0;
            for op in ops {
                match op {
                    Hostile::Push(len) => {
                        seq += 1;
                        match p.try_push(&frame(seq, len)) {
                            Ok(()) | Err(PushError::Full | PushError::TooLarge { .. }) => {}
                            Err(PushError::Corrupt(_)) => {
                                prop_assert!(matches!(p.try_push(b""), Err(PushError::Corrupt(_))));
                            }
                        }
                    }
                    Hostile::Pop | Hostile::Wait => {
                        let result = if matches!(op, Hostile::Pop) {
                            pop(&mut c).map(|f| f.map(|b| b.len()))
                        } else {
                            c.wait(Duration::ZERO).map(|_| None)
                        };
                        match result {
                            Ok(Some(len)) => prop_assert!(!c_broken && len <= cap - 8),
                            Ok(None) | Err(RingError::Closed) => prop_assert!(!c_broken),
                            Err(RingError::Corrupt(_)) => c_broken = true,
                        }
                    }
                    Hostile::Bytes { at, bytes } => {
                        let at = at % (HEADER_LEN + cap);
                        let n = bytes.len().min(HEADER_LEN + cap - at);
                        m.slice_mut(at, n).expect("in range").copy_from_slice(&bytes[..n]);
                    }
                    Hostile::Tail(delta) => {
                        let head = m.atomic_u64(256).expect("head").load(Ordering::SeqCst);
                        m.atomic_u64(128).expect("tail").store(head.wrapping_add(delta), Ordering::SeqCst);
                    }
                    Hostile::Head(delta) => {
                        let tail = m.atomic_u64(128).expect("tail").load(Ordering::SeqCst);
                        m.atomic_u64(256).expect("head").store(tail.wrapping_sub(delta), Ordering::SeqCst);
                    }
                    Hostile::Record { at_tail, kind, len } => {
                        let index = m.atomic_u64(if at_tail { 128 } else { 256 }).expect("index");
                        let off = (index.load(Ordering::SeqCst) as usize % cap) & !7;
                        let kind = [KIND_FRAME, KIND_PAD, kind][kind as usize % 3];
                        m.atomic_u64(HEADER_LEN + off)
                            .expect("record")
                            .store(record(kind, len as usize), Ordering::SeqCst);
                    }
                    Hostile::Flag { closed, value } => {
                        m.atomic_u32(if closed { 388 } else { 384 }).expect("flag").store(value, Ordering::SeqCst);
                    }
                    Hostile::Reopen { producer } => {
                        if producer {
                            if let Ok(new) = Producer::open(fd.as_fd()) {
                                p = new;
                            }
                        } else if let Ok(mut new) = Consumer::open(fd.as_fd()) {
                            new.set_spin(Duration::ZERO);
                            c = new;
                            c_broken = false;
                        }
                    }
                }
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Hostile {
        Push(usize),
        Pop,
        Wait,
        Bytes { at: usize, bytes: Vec<u8> },
        Tail(u64),
        Head(u64),
        Record { at_tail: bool, kind: u32, len: u32 },
        Flag { closed: bool, value: u32 },
        Reopen { producer: bool },
    }

    fn small_or_any() -> impl Strategy<Value = u64> {
        prop_oneof![0u64..300, any::<u64>(), Just(u64::MAX - 7)]
    }

    fn hostile_op() -> impl Strategy<Value = Hostile> {
        prop_oneof![
            6 => (0usize..300).prop_map(Hostile::Push),
            6 => Just(Hostile::Pop),
            1 => Just(Hostile::Wait),
            2 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16))
                .prop_map(|(at, bytes)| Hostile::Bytes { at, bytes }),
            1 => small_or_any().prop_map(Hostile::Tail),
            1 => small_or_any().prop_map(Hostile::Head),
            2 => (any::<bool>(), any::<u32>(), prop_oneof![0u32..300, any::<u32>()])
                .prop_map(|(at_tail, kind, len)| Hostile::Record { at_tail, kind, len }),
            1 => (any::<bool>(), 0u32..3).prop_map(|(closed, value)| Hostile::Flag { closed, value }),
            1 => any::<bool>().prop_map(|producer| Hostile::Reopen { producer }),
        ]
    }

    /// Percentiles of `samples` (sorted in place), in µs.
    fn percentiles(samples: &mut [Duration]) -> String {
        samples.sort();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
        format!(
            "p50 {:.2} µs, p99 {:.2} µs, p99.9 {:.2} µs, max {:.2} µs",
            at(0.5),
            at(0.99),
            at(0.999),
            at(1.0)
        )
    }

    /// Throughput of 16-byte frames between two threads:
    /// `cargo test -p busbar --release --lib sys::ring::tests::bench -- --ignored --nocapture --test-threads=1`
    #[test]
    #[ignore = "micro-benchmark"]
    fn bench_throughput_16b() {
        const N: u64 = 20_000_000;
        let (mut p, mut c, _fd) = pair(DEFAULT_CAPACITY).expect("ring");
        let start = Instant::now();
        let producer = std::thread::spawn(move || {
            let mut bytes = [0u8; 16];
            for seq in 0..N {
                bytes[..8].copy_from_slice(&seq.to_le_bytes());
                while p.try_push(&bytes) == Err(PushError::Full) {
                    std::hint::spin_loop();
                }
            }
        });
        let mut sum = 0u64;
        for seq in 0..N {
            let got = c
                .pop_wait_with(Duration::from_secs(10), |b| {
                    u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
                })
                .expect("ring");
            assert_eq!(got, Some(seq));
            sum = sum.wrapping_add(seq);
        }
        let elapsed = start.elapsed();
        producer.join().expect("producer");
        let rate = N as f64 / elapsed.as_secs_f64();
        println!(
            "ring 16 B frames, 2 threads: {:.1} M frames/s, {:.0} MB/s of payload ({N} in {elapsed:?}, sum {sum})",
            rate / 1e6,
            rate * 16.0 / 1e6
        );
    }

    /// One-way latency of a 16-byte frame to a consumer that spins (hot) or
    /// has gone to sleep on the futex (cold):
    /// `cargo test -p busbar --release --lib sys::ring::tests::bench -- --ignored --nocapture --test-threads=1`
    #[test]
    #[ignore = "micro-benchmark"]
    fn bench_wake_latency() {
        const N: usize = 2000;
        for (name, gap) in [
            (
                "hot (consumer spinning, 10 µs gap)",
                Duration::from_micros(10),
            ),
            ("cold (consumer asleep, 2 ms gap)", Duration::from_millis(2)),
        ] {
            let (mut p, mut c, _fd) = pair(DEFAULT_CAPACITY).expect("ring");
            let base = Arc::new(Instant::now());
            let b = Arc::clone(&base);
            let consumer = std::thread::spawn(move || {
                let mut lat = Vec::with_capacity(N);
                for _ in 0..N {
                    let sent = c
                        .pop_wait_with(Duration::from_secs(10), |b| {
                            u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
                        })
                        .expect("ring")
                        .expect("frame");
                    let now = b.elapsed().as_nanos() as u64;
                    lat.push(Duration::from_nanos(now.saturating_sub(sent)));
                }
                lat
            });
            for _ in 0..N {
                let until = Instant::now() + gap;
                if gap >= Duration::from_millis(1) {
                    std::thread::sleep(gap);
                } else {
                    while Instant::now() < until {
                        std::hint::spin_loop();
                    }
                }
                let mut bytes = [0u8; 16];
                bytes[..8].copy_from_slice(&(base.elapsed().as_nanos() as u64).to_le_bytes());
                p.try_push(&bytes).expect("room");
            }
            let mut lat = consumer.join().expect("consumer");
            println!("ring wake-up latency, {name}: {}", percentiles(&mut lat));
        }
    }
}

/// Loom models of the ring's ordering: the same [`Producer`] and
/// [`Consumer`] over a model [`Memory`] whose data area is one loom
/// `UnsafeCell` per 8-byte word (so loom flags any read of a record that is
/// not ordered after its write, and any overwrite not ordered after its
/// read) and whose futex is a mutex and condvar (so a lost wake-up is a
/// deadlock, which loom reports). Run with
/// `RUSTFLAGS="--cfg loom" cargo test -p busbar --release --lib sys::ring`.
#[cfg(all(test, loom))]
mod models {
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::atomic::{AtomicU32 as LoomU32, AtomicU64 as LoomU64};
    use loom::sync::{Arc, Condvar, Mutex};

    impl Word64 for LoomU64 {
        fn load(&self, order: Ordering) -> u64 {
            LoomU64::load(self, order)
        }
        fn store(&self, value: u64, order: Ordering) {
            LoomU64::store(self, value, order)
        }
    }

    impl Word32 for LoomU32 {
        fn load(&self, order: Ordering) -> u32 {
            LoomU32::load(self, order)
        }
        fn store(&self, value: u32, order: Ordering) {
            LoomU32::store(self, value, order)
        }
        fn swap(&self, value: u32, order: Ordering) -> u32 {
            LoomU32::swap(self, value, order)
        }
    }

    /// The data area, one cell per 8-byte word.
    struct Words(Vec<UnsafeCell<u64>>);

    // SAFETY: the cells are shared between the model's producer and consumer
    // threads on purpose: loom tracks every access to each of them and fails
    // the model on any pair that is not ordered by happens-before.
    unsafe impl Sync for Words {}

    struct Inner {
        tail: LoomU64,
        head: LoomU64,
        sleeping: LoomU32,
        closed: LoomU32,
        room: LoomU32,
        gone: LoomU32,
        words: Words,
        /// The futex: a waiter checks the word and sleeps under this lock, a
        /// waker notifies under it, as the kernel does with its hash bucket.
        lock: Mutex<()>,
        cv: Condvar,
    }

    #[derive(Clone)]
    struct Model(Arc<Inner>);

    impl Model {
        /// The cells covering `len` bytes at `off` (8-aligned), if inside the data area.
        fn cells(&self, off: usize, len: usize) -> Option<&[UnsafeCell<u64>]> {
            if off % RECORD != 0 {
                return None;
            }
            self.0
                .words
                .0
                .get(off / RECORD..(off + padded(len)) / RECORD)
        }
    }

    impl Memory for Model {
        type U64 = LoomU64;
        type U32 = LoomU32;

        fn tail(&self) -> &LoomU64 {
            &self.0.tail
        }
        fn head(&self) -> &LoomU64 {
            &self.0.head
        }
        fn sleeping(&self) -> &LoomU32 {
            &self.0.sleeping
        }
        fn closed(&self) -> &LoomU32 {
            &self.0.closed
        }
        fn room(&self) -> &LoomU32 {
            &self.0.room
        }
        fn gone(&self) -> &LoomU32 {
            &self.0.gone
        }
        fn capacity(&self) -> usize {
            self.0.words.0.len() * RECORD
        }

        fn load_record(&self, off: usize) -> Option<u64> {
            let cell = self.cells(off, RECORD)?.first()?;
            // SAFETY: loom checks that this read is ordered after the write
            // of the record (and before any overwrite); it fails the model otherwise.
            Some(cell.with(|word| unsafe { *word }))
        }

        fn store_record(&mut self, off: usize, word: u64) -> Option<()> {
            let cell = self.cells(off, RECORD)?.first()?;
            // SAFETY: loom checks that no read or write of this cell races with it.
            cell.with_mut(|w| unsafe { *w = word });
            Some(())
        }

        fn read<R>(&self, off: usize, len: usize, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
            let mut bytes = Vec::new();
            for cell in self.cells(off, len)? {
                // SAFETY: as in `load_record`.
                bytes.extend(cell.with(|w| unsafe { *w }).to_ne_bytes());
            }
            Some(f(&bytes[..len]))
        }

        fn write<R>(
            &mut self,
            off: usize,
            len: usize,
            f: impl FnOnce(&mut [u8]) -> R,
        ) -> Option<R> {
            let cells = self.cells(off, len)?;
            let mut bytes = vec![0; padded(len)];
            let out = f(&mut bytes[..len]);
            for (cell, chunk) in cells.iter().zip(bytes.chunks_exact(RECORD)) {
                let word = u64::from_ne_bytes(chunk.try_into().expect("8 bytes"));
                // SAFETY: as in `store_record`.
                cell.with_mut(|w| unsafe { *w = word });
            }
            Some(out)
        }

        fn wait(&self, _timeout: Duration) {
            // No timeout in the model: a missed wake-up must show as a deadlock.
            let guard = self.0.lock.lock().expect("lock");
            if self.0.sleeping.load(Ordering::Acquire) == SLEEPING {
                drop(self.0.cv.wait(guard).expect("wait"));
            }
        }

        fn wake(&self) {
            let _guard = self.0.lock.lock().expect("lock");
            self.0.cv.notify_all();
        }

        fn wait_room(&self, _timeout: Duration) {
            let guard = self.0.lock.lock().expect("lock");
            if self.0.room.load(Ordering::Acquire) == SLEEPING {
                drop(self.0.cv.wait(guard).expect("wait"));
            }
        }

        fn wake_room(&self) {
            let _guard = self.0.lock.lock().expect("lock");
            self.0.cv.notify_all();
        }

        fn fence(&self) {
            loom::sync::atomic::fence(Ordering::SeqCst);
        }
    }

    fn model_pair(capacity: usize) -> (Producer<Model>, Consumer<Model>) {
        let model = Model(Arc::new(Inner {
            tail: LoomU64::new(0),
            head: LoomU64::new(0),
            sleeping: LoomU32::new(AWAKE),
            closed: LoomU32::new(0),
            room: LoomU32::new(AWAKE),
            gone: LoomU32::new(0),
            words: Words((0..capacity / RECORD).map(|_| UnsafeCell::new(0)).collect()),
            lock: Mutex::new(()),
            cv: Condvar::new(),
        }));
        let mut producer = Producer::from_memory(model.clone()).expect("producer");
        producer.set_spin(Duration::ZERO);
        let mut consumer = Consumer::from_memory(model).expect("consumer");
        consumer.set_spin(Duration::ZERO);
        (producer, consumer)
    }

    fn push_all(p: &mut Producer<Model>, frames: &[Vec<u8>]) {
        for f in frames {
            loop {
                match p.try_push(f) {
                    Ok(()) => break,
                    Err(PushError::Full) => loom::thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
        }
    }

    /// Pops `n` frames, sleeping (not spinning) whenever the ring is empty.
    fn pop_n(c: &mut Consumer<Model>, n: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        while got.len() < n {
            match c.try_pop_with(|b| b.to_vec()) {
                Ok(Some(f)) => got.push(f),
                Ok(None) => assert_eq!(c.wait(Duration::from_secs(3600)), Ok(true)),
                Err(e) => panic!("{e}"),
            }
        }
        got
    }

    fn check(f: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(3);
        }
        builder.check(f);
    }

    /// Three frames through a 32-byte ring: the second and third each need a
    /// padding record and reuse space the consumer released. Every frame
    /// arrives whole and in order, and the close comes after the last.
    #[test]
    fn loom_frames_wrap_in_order() {
        check(|| {
            let (mut p, mut c) = model_pair(32);
            let frames = vec![vec![1u8; 8], vec![2u8; 12], vec![3u8; 4]];
            let sent = frames.clone();
            let producer = loom::thread::spawn(move || push_all(&mut p, &sent));
            assert_eq!(pop_n(&mut c, 3), frames);
            producer.join().expect("producer");
            assert_eq!(c.try_pop_with(|b| b.len()), Err(RingError::Closed));
        });
    }

    /// A consumer that goes to sleep is always woken by the frames that
    /// follow (the producer stays open, so only the frames can wake it).
    #[test]
    fn loom_no_lost_wakeup() {
        check(|| {
            let (mut p, mut c) = model_pair(64);
            let (tx, rx) = loom::sync::mpsc::channel();
            let producer = loom::thread::spawn(move || {
                push_all(&mut p, &[vec![1], vec![2]]);
                // Keep the ring open until the consumer has both frames.
                rx.recv().expect("done");
                drop(p);
            });
            assert_eq!(pop_n(&mut c, 2), vec![vec![1], vec![2]]);
            tx.send(()).expect("send");
            producer.join().expect("producer");
        });
    }

    /// Closing wakes a sleeping consumer, after the frames published before it.
    #[test]
    fn loom_close_wakes_the_consumer() {
        check(|| {
            let (mut p, mut c) = model_pair(32);
            let producer = loom::thread::spawn(move || {
                push_all(&mut p, &[vec![9; 3]]);
                drop(p);
            });
            assert_eq!(pop_n(&mut c, 1), vec![vec![9; 3]]);
            loop {
                match c.try_pop_with(|b| b.len()) {
                    Err(RingError::Closed) => break,
                    Ok(None) => assert_eq!(c.wait(Duration::from_secs(3600)), Ok(true)),
                    other => panic!("{other:?}"),
                }
            }
            producer.join().expect("producer");
        });
    }

    /// A producer waiting for room is always woken by the consumer's reads:
    /// a 32-byte ring holds two 8-byte frames (16 bytes each with their
    /// record headers), so the third waits in `wait_room` until the
    /// consumer has read one (no timeout in the model, so a lost wake-up is
    /// a deadlock).
    #[test]
    fn loom_producer_waits_for_room() {
        check(|| {
            let (mut p, mut c) = model_pair(32);
            let producer = loom::thread::spawn(move || {
                for i in 0..3u8 {
                    assert_eq!(p.wait_room(8, Duration::from_secs(3600)), Ok(true));
                    p.try_push(&[i; 8]).expect("room");
                }
            });
            assert_eq!(pop_n(&mut c, 3), vec![vec![0; 8], vec![1; 8], vec![2; 8]]);
            producer.join().expect("producer");
        });
    }

    /// A frame reserved and filled but never committed is never seen, even
    /// while the producer is still filling it.
    #[test]
    fn loom_uncommitted_frame_is_invisible() {
        check(|| {
            let (mut p, mut c) = model_pair(32);
            let producer = loom::thread::spawn(move || {
                // Reserved and filled, never committed.
                p.reserve(8).expect("room").write_with(|b| b.fill(0xaa));
                push_all(&mut p, &[vec![5; 8]]);
            });
            assert_eq!(pop_n(&mut c, 1), vec![vec![5; 8]]);
            producer.join().expect("producer");
        });
    }
}
