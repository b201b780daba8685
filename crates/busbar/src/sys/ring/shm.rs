//! The shared memory: the header at the start of the memfd (see the
//! layout table in the module documentation), [`Shm`], the production
//! [`Memory`], and [`create`], which writes the header that
//! [`Shm::open`] checks.

use super::barrier::{self, Barriers};
use super::wait::{futex_wait, futex_wake};
use super::{invalid, Memory, HEADER_LEN, MAGIC, MAX_CAPACITY, MIN_CAPACITY, RECORD, VERSION};
use crate::sys::memfd::{self, Mapping};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

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
    sleep_barrier: AtomicU32,
    room_barrier: AtomicU32,
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
    pub(super) fn open(fd: BorrowedFd<'_>) -> io::Result<Shm> {
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

    #[inline]
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
    #[inline]
    pub(super) fn slice_mut(&mut self, off: usize, len: usize) -> Option<&mut [u8]> {
        if off.checked_add(len)? > self.cap {
            return None;
        }
        self.map.slice_mut(HEADER_LEN + off, len)
    }

    /// The address range of the data area, for tests that check every slice handed out.
    #[cfg(test)]
    pub(super) fn data_range(&self) -> std::ops::Range<usize> {
        let start = self.map.as_ptr() as usize + HEADER_LEN;
        start..start + self.cap
    }
}

// The accessors are `#[inline]`: `Producer` and `Consumer` call them for
// every frame from other modules (and other codegen units).
impl Memory for Shm {
    type U64 = AtomicU64;
    type U32 = AtomicU32;

    #[inline]
    fn tail(&self) -> &AtomicU64 {
        &self.header().tail.0
    }
    #[inline]
    fn head(&self) -> &AtomicU64 {
        &self.header().head.0
    }
    #[inline]
    fn sleeping(&self) -> &AtomicU32 {
        &self.header().wake.0.sleeping
    }
    #[inline]
    fn closed(&self) -> &AtomicU32 {
        &self.header().wake.0.closed
    }
    #[inline]
    fn room(&self) -> &AtomicU32 {
        &self.header().wake.0.room
    }
    #[inline]
    fn gone(&self) -> &AtomicU32 {
        &self.header().wake.0.gone
    }
    #[inline]
    fn sleep_barrier(&self) -> &AtomicU32 {
        &self.header().wake.0.sleep_barrier
    }
    #[inline]
    fn room_barrier(&self) -> &AtomicU32 {
        &self.header().wake.0.room_barrier
    }
    fn barriers(&self) -> Barriers {
        barrier::barriers()
    }
    #[inline]
    fn light_fence(&self, promise: &AtomicU32) -> bool {
        // The other side's membarrier puts a full fence in this thread at
        // some point of its program, so program order is what counts: the
        // compiler must keep the store before (the index, or the closed
        // flag) above this load, and the look at the flag after below it.
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        let promised = promise.load(Ordering::Relaxed) != 0;
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        promised
    }
    fn heavy_barrier(&self) -> bool {
        barrier::heavy_barrier()
    }
    #[inline]
    fn capacity(&self) -> usize {
        self.cap
    }

    #[inline]
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

    #[inline]
    fn store_record(&mut self, off: usize, word: u64) -> Option<()> {
        if off.checked_add(RECORD)? > self.cap {
            return None;
        }
        self.map
            .atomic_u64(HEADER_LEN + off)?
            .store(word, Ordering::Relaxed);
        Some(())
    }

    #[inline]
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

    #[cfg(test)]
    #[inline]
    fn write<R>(&mut self, off: usize, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> Option<R> {
        Some(f(self.slice_mut(off, len)?))
    }

    #[cfg(test)]
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

    #[inline]
    fn fence(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
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
