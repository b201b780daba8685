//! Shared memory: [`MemoryRegion`] and the [`MemoryRegistry`] that pools them.
//!
//! # Layout
//!
//! A region is one memfd: a 64-byte header, then the user's bytes.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic, `u64::from_le_bytes(*b"busbarR1")` (native endian, like every field) |
//! | 8 | 4 | reference count, atomic `u32` |
//! | 12 | 4 | retired: non-zero once its sender's pool let go of it for good (a receiver that keeps it for a link may let go too, see `endpoint/lent.rs`) |
//! | 16 | 8 | length in bytes of the current allocation, `u64` |
//! | 24 | 40 | reserved, zero |
//! | 64 | size | the user's bytes |
//!
//! The file is sealed against shrinking, growing and further sealing right
//! after it is created, before it is ever sent, so no holder can resize it
//! and make another one's mapping fault. The user's bytes (the file's
//! *capacity*) may be more than the region's *length*: a
//! [`MemoryRegistry`] rounds new regions up to whole pages and reuses a
//! larger free one, and a region is as long as its allocation asked. The
//! length travels in the header: whoever hands a region out writes it
//! there while nobody else holds the region, and a receiver reads it once,
//! when the region arrives. A receiver trusts nothing in the header but
//! the count (which it only ever increments and decrements) and the
//! length, which it clamps to the capacity: it checks the seals and the
//! magic and takes the capacity from the file itself.

use crate::sys::memfd::{self, Mapping};
use std::fmt;
use std::ops::{Bound, RangeBounds};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes before the user's bytes in a region's memfd.
pub(crate) const HEADER_SIZE: usize = 64;
/// First 8 bytes of every region.
const MAGIC: u64 = u64::from_le_bytes(*b"busbarR1");
const MAGIC_OFFSET: usize = 0;
const REFS_OFFSET: usize = 8;
const RETIRED_OFFSET: usize = 12;
const SIZE_OFFSET: usize = 16;

/// Error about a memory region.
///
/// The message says what went wrong: creating or mapping the memfd failed
/// (with the OS error), a range was out of bounds, or a received descriptor
/// was not a valid region.
#[derive(Debug, thiserror::Error)]
#[error("memory region: {0}")]
pub struct RegionError(pub String);

impl RegionError {
    fn new(msg: impl Into<String>) -> RegionError {
        RegionError(msg.into())
    }
}

/// A memfd-backed shared block, mapped by both sides, with a cross-process
/// reference count.
///
/// Put regions in a message's `memory_regions`: the receiver maps the same
/// memory, so nothing is copied however large the block is.
///
/// # Sharing
///
/// The bytes are shared with every process holding the region, **without
/// any synchronisation**: another holder may read or write them at any
/// moment, including while you hold the slice [`map`](MemoryRegion::map)
/// returned. Callers coordinate access, as with any shared memory (for
/// example: the sender fills the region, sends it, and does not touch it
/// again until [`ref_count`](MemoryRegion::ref_count) shows the receiver
/// dropped it; this is what [`MemoryRegistry`] does).
///
/// Each handle maps the memory on its first [`map`](MemoryRegion::map), so
/// two handles (clones) in one process never hand out overlapping Rust
/// slices of the same mapping.
///
/// # Reference count
///
/// The count lives in the shared header and counts handles in all
/// processes: [`new`](MemoryRegion::new) starts it at 1, [`Clone`] adds
/// one, [`Drop`] takes one off, and sending adds one for the copy in
/// flight (which the receiver's handle then owns). It is advisory: the
/// memory itself is freed by the kernel when the last descriptor and
/// mapping are gone, whatever the count says. A process that dies while
/// holding handles never takes its share off, so after a crash the count
/// stays too high for good; a region in a [`MemoryRegistry`] is then never
/// reused, and the registry lets it go after its busy timeout. A holder can
/// also write anything into the count; nothing panics because of it.
///
/// # Examples
///
/// ```
/// use busbar::MemoryRegion;
///
/// let mut region = MemoryRegion::new(4096)?;
/// region.map(..5)?.copy_from_slice(b"hello");
/// assert_eq!(&region.map(0..5)?[..], b"hello");
/// assert_eq!(region.ref_count(), 1);
/// # Ok::<(), busbar::RegionError>(())
/// ```
pub struct MemoryRegion {
    shared: Arc<Shared>,
    /// This handle's own mapping of the whole file, made on first `map`.
    data: Option<Mapping>,
    /// Whether this handle holds one of the shared count (false once its
    /// count was handed to a receiver of a message it travelled in).
    counted: bool,
    /// The bytes this handle shows: what its allocation asked for, at
    /// most the capacity.
    len: usize,
}

/// What all handles of a region in one process share.
struct Shared {
    fd: OwnedFd,
    /// The first `HEADER_SIZE` bytes; only ever accessed through atomics.
    header: Mapping,
    /// The capacity: the user's bytes in the file, from `fstat` (never
    /// from the header).
    size: usize,
}

impl Shared {
    /// Wraps a mapped header after checking its fields can be reached, so
    /// that `refs` and `magic` below cannot fail.
    fn new(fd: OwnedFd, header: Mapping, size: usize) -> Result<Shared, RegionError> {
        if header.atomic_u64(MAGIC_OFFSET).is_none()
            || header.atomic_u32(REFS_OFFSET).is_none()
            || header.atomic_u64(SIZE_OFFSET).is_none()
        {
            return Err(RegionError::new(
                "header mapping is too short or misaligned",
            ));
        }
        Ok(Shared { fd, header, size })
    }

    fn refs(&self) -> &AtomicU32 {
        self.header
            .atomic_u32(REFS_OFFSET)
            .expect("checked in Shared::new")
    }
}

impl MemoryRegion {
    /// Creates a region of `size` bytes (zero is allowed), filled with zeros.
    ///
    /// The memory is allocated lazily by the kernel as pages are first
    /// touched. The count starts at 1.
    ///
    /// # Errors
    ///
    /// When `size` is too large, or the memfd cannot be created, sealed or
    /// mapped (out of memory or descriptors).
    ///
    /// # Examples
    ///
    /// ```
    /// use busbar::MemoryRegion;
    ///
    /// let region = MemoryRegion::new(1 << 20)?;
    /// assert_eq!(region.size(), 1 << 20);
    /// # Ok::<(), busbar::RegionError>(())
    /// ```
    pub fn new(size: usize) -> Result<MemoryRegion, RegionError> {
        let total = HEADER_SIZE
            .checked_add(size)
            .and_then(|t| u64::try_from(t).ok())
            .ok_or_else(|| RegionError(format!("size {size} is too large")))?;
        let fd = memfd::create("busbar-region", total)
            .map_err(|e| RegionError(format!("cannot create a memfd of {total} bytes: {e}")))?;
        memfd::seal_size(fd.as_fd())
            .map_err(|e| RegionError(format!("cannot seal the memfd: {e}")))?;
        let header = Mapping::prefix(fd.as_fd(), HEADER_SIZE)
            .map_err(|e| RegionError(format!("cannot map the region header: {e}")))?;
        let shared = Shared::new(fd, header, size)?;
        let h = &shared.header;
        if let (Some(refs), Some(len), Some(magic)) = (
            h.atomic_u32(REFS_OFFSET),
            h.atomic_u64(SIZE_OFFSET),
            h.atomic_u64(MAGIC_OFFSET),
        ) {
            refs.store(1, Ordering::Relaxed);
            len.store(total - HEADER_SIZE as u64, Ordering::Relaxed);
            magic.store(MAGIC, Ordering::Release);
        }
        Ok(MemoryRegion {
            shared: Arc::new(shared),
            data: None,
            counted: true,
            len: size,
        })
    }

    /// The region's length in bytes: what [`new`](MemoryRegion::new) or
    /// [`MemoryRegistry::alloc`] was asked for (the header is not
    /// counted). A receiver sees the same length.
    ///
    /// ```
    /// let mut registry = busbar::MemoryRegistry::new();
    /// let mut region = registry.alloc(16, None)?; // a page underneath
    /// assert_eq!((region.size(), region.map(..)?.len()), (16, 16));
    /// # Ok::<(), busbar::RegionError>(())
    /// ```
    pub fn size(&self) -> usize {
        self.len
    }

    /// [`size`](MemoryRegion::size) as a `u64`, the name and type ipmb used.
    pub fn buffer_size(&self) -> u64 {
        self.len as u64
    }

    /// The bytes the memfd holds for the user, at least [`size`](MemoryRegion::size).
    pub(crate) fn capacity(&self) -> usize {
        self.shared.size
    }

    /// Another handle, `len` bytes long (at most the capacity), whose
    /// length is written to the header for receivers. Only for a region
    /// nobody else holds: the header is shared.
    fn handed_out(&self, len: usize) -> MemoryRegion {
        let mut region = self.clone();
        region.len = len.min(self.capacity());
        if let Some(h) = self.shared.header.atomic_u64(SIZE_OFFSET) {
            h.store(region.len as u64, Ordering::Release);
        }
        region
    }

    /// The bytes in `range` (`..`, `a..b`, `a..=b`, `a..`, `..b`), mapped
    /// read-write.
    ///
    /// The first call on a handle maps the region into this process; later
    /// calls reuse that mapping. An empty range needs no mapping at all.
    ///
    /// The bytes are shared with the other holders without synchronisation;
    /// see [Sharing](MemoryRegion#sharing).
    ///
    /// # Errors
    ///
    /// When the range ends past [`size`](MemoryRegion::size) or starts after
    /// it ends, or when the mapping fails (out of address space).
    ///
    /// # Examples
    ///
    /// ```
    /// use busbar::MemoryRegion;
    ///
    /// let mut region = MemoryRegion::new(8)?;
    /// region.map(..)?.fill(7);
    /// assert_eq!(region.map(6..)?, &[7, 7]);
    /// assert!(region.map(4..9).is_err());
    /// # Ok::<(), busbar::RegionError>(())
    /// ```
    pub fn map(&mut self, range: impl RangeBounds<usize>) -> Result<&mut [u8], RegionError> {
        let (start, end) = resolve(&range, self.size())?;
        if start == end {
            return Ok(&mut []);
        }
        let data = match self.data.take() {
            Some(data) => data,
            None => Mapping::prefix(self.shared.fd.as_fd(), HEADER_SIZE + self.len)
                .map_err(|e| RegionError(format!("cannot map {} bytes: {e}", self.size())))?,
        };
        self.data
            .insert(data)
            .slice_mut(HEADER_SIZE + start, end - start)
            .ok_or_else(|| RegionError::new("mapping is shorter than the region"))
    }

    /// How many handles to this region exist, in all processes, counting
    /// copies in flight in messages not yet received.
    ///
    /// Only a lower bound on use if a holder crashed, and only as honest as
    /// the holders (see [Reference count](MemoryRegion#reference-count)).
    ///
    /// # Examples
    ///
    /// ```
    /// use busbar::MemoryRegion;
    ///
    /// let region = MemoryRegion::new(16)?;
    /// let copy = region.clone();
    /// assert_eq!(region.ref_count(), 2);
    /// drop(copy);
    /// assert_eq!(region.ref_count(), 1);
    /// # Ok::<(), busbar::RegionError>(())
    /// ```
    pub fn ref_count(&self) -> u32 {
        self.shared.refs().load(Ordering::Acquire)
    }

    /// The descriptor to send.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.shared.fd.as_fd()
    }

    /// Counts one more holder for a copy about to be sent.
    ///
    /// Call it before the descriptor leaves, so the count cannot reach the
    /// "free" value while the copy is in flight; the receiver's handle then
    /// owns that count ([`from_received_fd`](MemoryRegion::from_received_fd)
    /// does not add one).
    pub(crate) fn add_in_flight_ref(&self) {
        self.shared.refs().fetch_add(1, Ordering::AcqRel);
    }

    /// Gives this handle's count to a receiver that got the region: the
    /// handle no longer counts, so the total is right the moment the
    /// receiver has it, not only once the sender's message is dropped.
    pub(crate) fn hand_over_count(&mut self) {
        self.counted = false;
    }

    /// Marks the region retired: its sender's pool will never refer to it again.
    pub(crate) fn retire(&self) {
        if let Some(w) = self.shared.header.atomic_u32(RETIRED_OFFSET) {
            w.store(1, Ordering::Release);
        }
    }

    /// Whether its sender marked it retired (`Acquire`: every frame the
    /// sender wrote from it before is visible).
    pub(crate) fn is_retired(&self) -> bool {
        self.shared
            .header
            .atomic_u32(RETIRED_OFFSET)
            .is_some_and(|w| w.load(Ordering::Acquire) != 0)
    }

    /// Takes back a count added by `add_in_flight_ref` for a copy that was not sent.
    pub(crate) fn drop_in_flight_ref(&self) {
        self.shared.refs().fetch_sub(1, Ordering::AcqRel);
    }

    /// Adopts a received descriptor (and the count the sender added for it).
    ///
    /// The descriptor comes from another process and is checked before
    /// anything is mapped: it must be a regular file sealed with
    /// `F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL` (so it cannot be resized
    /// under our mapping), at least as long as the header, open read-write,
    /// and start with the region magic. The size is taken from the file,
    /// never from the header.
    ///
    /// A descriptor that fails is closed; if it was a real region whose
    /// sender counted it, that count is not given back (the count is
    /// advisory, see [`MemoryRegion`]).
    pub(crate) fn from_received_fd(fd: OwnedFd) -> Result<MemoryRegion, RegionError> {
        let seals = memfd::seals(fd.as_fd()).map_err(|e| {
            RegionError(format!("received descriptor is not a sealable memfd: {e}"))
        })?;
        if !seals.contains(memfd::SIZE_SEALS) {
            return Err(RegionError(format!(
                "received memfd is not sealed against resizing (has {seals:?}, needs SHRINK | GROW | SEAL)"
            )));
        }
        let file_len = memfd::file_size(fd.as_fd())
            .map_err(|e| RegionError(format!("received region: {e}")))?;
        let size = file_len
            .checked_sub(HEADER_SIZE as u64)
            .ok_or_else(|| {
                RegionError(format!(
                    "received memfd of {file_len} bytes is smaller than the {HEADER_SIZE}-byte region header"
                ))
            })
            .and_then(|size| {
                usize::try_from(size)
                    .ok()
                    .filter(|s| s.checked_add(HEADER_SIZE).is_some())
                    .ok_or_else(|| RegionError(format!("received region of {size} bytes is too large")))
            })?;
        let header = Mapping::prefix(fd.as_fd(), HEADER_SIZE)
            .map_err(|e| RegionError(format!("cannot map a received region: {e}")))?;
        let shared = Shared::new(fd, header, size)?;
        let magic = shared
            .header
            .atomic_u64(MAGIC_OFFSET)
            .map(|m| m.load(Ordering::Acquire));
        if magic != Some(MAGIC) {
            return Err(RegionError::new(
                "received memfd does not start with the region magic",
            ));
        }
        // The sender's length, read once; never more than the file holds.
        let len = shared.header.atomic_u64(SIZE_OFFSET).map_or(size, |l| {
            usize::try_from(l.load(Ordering::Acquire)).map_or(size, |l| l.min(size))
        });
        Ok(MemoryRegion {
            shared: Arc::new(shared),
            data: None,
            counted: true,
            len,
        })
    }
}

/// Turns `range` into `start..end` inside `0..size`.
fn resolve(range: &impl RangeBounds<usize>, size: usize) -> Result<(usize, usize), RegionError> {
    let start = match range.start_bound() {
        Bound::Included(&s) => Some(s),
        Bound::Excluded(&s) => s.checked_add(1),
        Bound::Unbounded => Some(0),
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.checked_add(1),
        Bound::Excluded(&e) => Some(e),
        Bound::Unbounded => Some(size),
    };
    match (start, end) {
        (Some(start), Some(end)) if start <= end && end <= size => Ok((start, end)),
        (Some(start), Some(end)) if start > end => Err(RegionError(format!(
            "range {start}..{end} starts after it ends"
        ))),
        (Some(start), Some(end)) => Err(RegionError(format!(
            "range {start}..{end} is out of bounds of a region of {size} bytes"
        ))),
        _ => Err(RegionError(format!(
            "range is out of bounds of a region of {size} bytes"
        ))),
    }
}

impl Clone for MemoryRegion {
    /// Another handle to the same region: adds one to the shared count.
    /// The clone shares this process's descriptor and maps the bytes on its
    /// own first [`map`](MemoryRegion::map).
    fn clone(&self) -> Self {
        self.shared.refs().fetch_add(1, Ordering::AcqRel);
        MemoryRegion {
            shared: Arc::clone(&self.shared),
            data: None,
            counted: true,
            len: self.len,
        }
    }
}

impl Drop for MemoryRegion {
    fn drop(&mut self) {
        if self.counted {
            // Release: this handle's writes happen before whoever sees the count drop.
            self.shared.refs().fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl fmt::Debug for MemoryRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRegion")
            .field("size", &self.size())
            .field("capacity", &self.capacity())
            .field("ref_count", &self.ref_count())
            .field("fd", &self.shared.fd.as_raw_fd())
            .finish()
    }
}

/// A callback run when a pooled region is free again.
type FreeFn = Box<dyn FnOnce() + Send + 'static>;

/// Pools [`MemoryRegion`]s so that a producer sending many blocks reuses
/// the same memory instead of creating, mapping and faulting in new memfds.
///
/// The registry keeps one handle of every region it hands out. A region is
/// **free** when its [`ref_count`](MemoryRegion::ref_count) is 1: only the
/// registry holds it, in every process, and no copy is in flight.
/// [`alloc`](MemoryRegistry::alloc) hands out a free region with the same
/// tag whose size fits (at least `min_size`, at most what a request for
/// twice `min_size` would create, so small requests do not pin large
/// blocks), the smallest such; otherwise it creates one.
///
/// # Cache policy
///
/// [`maintain`](MemoryRegistry::maintain) applies it; every `alloc` does too.
///
/// - A free region not handed out for the **idle timeout** (default 5 s,
///   [`with_idle_timeout`](MemoryRegistry::with_idle_timeout)) is dropped.
/// - When the free regions together hold more than **max free bytes**
///   (default 64 MiB, [`with_max_free_bytes`](MemoryRegistry::with_max_free_bytes)),
///   the least recently handed out are dropped until they fit.
/// - A region still held elsewhere is kept, so it can be reused and its
///   free callback run, until the **busy timeout** (default 60 s after it
///   was handed out, [`with_busy_timeout`](MemoryRegistry::with_busy_timeout);
///   `None` keeps it for good). Then the registry lets go of its handle:
///   this is what reclaims regions whose holder crashed (their count never
///   comes back to 1). The memory lives on until the other holders drop it.
///
/// Regions still in use are never reclaimed by the kernel early: dropping
/// the registry's handle only stops the pooling.
///
/// # Examples
///
/// ```
/// use busbar::{MemoryRegion, MemoryRegistry};
///
/// let mut registry = MemoryRegistry::new();
/// let mut region: MemoryRegion = registry.alloc(1000, Some("frames"))?;
/// region.map(..4)?.copy_from_slice(b"data");
/// // ... send it; once every holder has dropped it, it is reused:
/// drop(region);
/// let _again = registry.alloc(1000, Some("frames"))?; // the same memfd
/// assert_eq!(registry.len(), 1);
/// # Ok::<(), busbar::RegionError>(())
/// ```
pub struct MemoryRegistry {
    entries: Vec<Entry>,
    idle_timeout: Duration,
    max_free_bytes: usize,
    busy_timeout: Option<Duration>,
}

struct Entry {
    region: MemoryRegion,
    tag: Option<String>,
    last_alloc: Instant,
    /// The count was 1 at the last refresh.
    free: bool,
    on_free: Option<FreeFn>,
}

/// A snapshot of a [`MemoryRegistry`], from [`MemoryRegistry::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegistryStats {
    /// Regions the registry holds.
    pub regions: usize,
    /// Of those, regions nobody else holds (ready for reuse).
    pub free_regions: usize,
    /// Bytes of all held regions (their memory, which may be more than
    /// their allocations asked for).
    pub bytes: usize,
    /// Bytes of the free regions.
    pub free_bytes: usize,
}

impl Default for MemoryRegistry {
    fn default() -> Self {
        MemoryRegistry {
            entries: Vec::new(),
            idle_timeout: Duration::from_secs(5),
            max_free_bytes: 64 << 20,
            busy_timeout: Some(Duration::from_secs(60)),
        }
    }
}

impl MemoryRegistry {
    /// An empty registry with the default [cache policy](MemoryRegistry#cache-policy).
    pub fn new() -> MemoryRegistry {
        MemoryRegistry::default()
    }

    /// Sets how long a free region may stay cached without being handed out.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> MemoryRegistry {
        self.idle_timeout = timeout;
        self
    }

    /// Sets how many usable bytes the free regions may hold together.
    pub fn with_max_free_bytes(mut self, bytes: usize) -> MemoryRegistry {
        self.max_free_bytes = bytes;
        self
    }

    /// Sets how long after handing a region out the registry keeps waiting
    /// for it to become free; `None` waits for good.
    pub fn with_busy_timeout(mut self, timeout: Option<Duration>) -> MemoryRegistry {
        self.busy_timeout = timeout;
        self
    }

    /// A region of `min_size` bytes: a free one with the same `tag` whose
    /// memory fits, reused, or a new one. The memory underneath may be
    /// larger (new regions are rounded up to whole pages, and a larger free
    /// one is reused), but the region shows `min_size` bytes, to its
    /// receivers too: [`size`](MemoryRegion::size) and
    /// [`map(..)`](MemoryRegion::map) give what was asked for.
    ///
    /// # Errors
    ///
    /// When a new region is needed and cannot be created (see [`MemoryRegion::new`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use busbar::MemoryRegistry;
    ///
    /// let mut registry = MemoryRegistry::default();
    /// let a = registry.alloc(100, None)?;
    /// assert_eq!(a.size(), 100);
    /// let b = registry.alloc(100, None)?; // `a` is still held: a new region
    /// assert_eq!(registry.len(), 2);
    /// # Ok::<(), busbar::RegionError>(())
    /// ```
    pub fn alloc(
        &mut self,
        min_size: usize,
        tag: Option<&str>,
    ) -> Result<MemoryRegion, RegionError> {
        self.alloc_inner(min_size, tag, None)
    }

    /// Like [`alloc`](MemoryRegistry::alloc), and runs `free` once the
    /// region is free again: the first time `maintain`, an `alloc` or the
    /// registry's drop finds that only the registry still holds it. It runs
    /// on the thread making that call.
    ///
    /// If the registry lets go of the region while it is still held
    /// elsewhere (busy timeout, registry dropped), or the region cannot be
    /// created, `free` is dropped without being called.
    ///
    /// # Examples
    ///
    /// ```
    /// use busbar::MemoryRegistry;
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    ///
    /// let mut registry = MemoryRegistry::new();
    /// let freed = Arc::new(AtomicBool::new(false));
    /// let flag = freed.clone();
    /// let region = registry.alloc_with_free(4096, None, move || flag.store(true, Ordering::SeqCst))?;
    /// drop(region); // the last holder elsewhere lets go
    /// registry.maintain();
    /// assert!(freed.load(Ordering::SeqCst));
    /// # Ok::<(), busbar::RegionError>(())
    /// ```
    pub fn alloc_with_free(
        &mut self,
        min_size: usize,
        tag: Option<&str>,
        free: impl FnOnce() + Send + 'static,
    ) -> Result<MemoryRegion, RegionError> {
        self.alloc_inner(min_size, tag, Some(Box::new(free)))
    }

    fn alloc_inner(
        &mut self,
        min_size: usize,
        tag: Option<&str>,
        on_free: Option<FreeFn>,
    ) -> Result<MemoryRegion, RegionError> {
        let now = Instant::now();
        self.refresh();
        let max_size = rounded_size(min_size.saturating_mul(2));
        let best = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                e.free
                    && e.tag.as_deref() == tag
                    && (min_size..=max_size).contains(&e.region.capacity())
            })
            .min_by_key(|(_, e)| e.region.capacity())
            .map(|(i, _)| i);
        let region = match best {
            Some(i) => {
                let entry = &mut self.entries[i];
                entry.last_alloc = now;
                entry.free = false;
                entry.on_free = on_free;
                entry.region.handed_out(min_size)
            }
            None => {
                let region = MemoryRegion::new(rounded_size(min_size))?;
                let handed = region.handed_out(min_size);
                self.entries.push(Entry {
                    region,
                    tag: tag.map(str::to_owned),
                    last_alloc: now,
                    free: false,
                    on_free,
                });
                handed
            }
        };
        self.evict(now);
        Ok(region)
    }

    /// Runs the free callbacks of regions that became free and drops cached
    /// regions as the [cache policy](MemoryRegistry#cache-policy) says.
    ///
    /// Call it now and then (every `alloc` also does) so that idle memory
    /// goes back to the system and callbacks run promptly.
    pub fn maintain(&mut self) {
        self.refresh();
        self.evict(Instant::now());
    }

    /// How many regions the registry holds, free or in use.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the registry holds no region.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Counts of held and free regions and bytes, read now.
    pub fn stats(&self) -> RegistryStats {
        let mut stats = RegistryStats::default();
        for e in &self.entries {
            let size = e.region.capacity();
            stats.regions += 1;
            stats.bytes = stats.bytes.saturating_add(size);
            if e.region.ref_count() == 1 {
                stats.free_regions += 1;
                stats.free_bytes = stats.free_bytes.saturating_add(size);
            }
        }
        stats
    }

    /// Notes which regions are free and runs their pending callbacks.
    fn refresh(&mut self) {
        for e in &mut self.entries {
            e.free = e.region.ref_count() == 1;
            if e.free {
                if let Some(free) = e.on_free.take() {
                    free();
                }
            }
        }
    }

    /// Drops entries as the cache policy says; `refresh` must have run.
    fn evict(&mut self, now: Instant) {
        let (idle, busy) = (self.idle_timeout, self.busy_timeout);
        self.entries.retain(|e| {
            let age = now.saturating_duration_since(e.last_alloc);
            if e.free {
                age < idle
            } else if busy.is_some_and(|t| age >= t) {
                tracing::debug!(
                    size = e.region.capacity(),
                    ref_count = e.region.ref_count(),
                    "memory registry gives up a region still in use"
                );
                false
            } else {
                true
            }
        });
        let mut free_bytes = self
            .entries
            .iter()
            .filter(|e| e.free)
            .fold(0usize, |n, e| n.saturating_add(e.region.capacity()));
        while free_bytes > self.max_free_bytes {
            let oldest = self
                .entries
                .iter()
                .enumerate()
                .filter(|(_, e)| e.free)
                .min_by_key(|(_, e)| e.last_alloc)
                .map(|(i, _)| i);
            let Some(i) = oldest else { break };
            let entry = self.entries.swap_remove(i);
            free_bytes -= entry.region.capacity();
        }
    }
}

impl Drop for MemoryRegistry {
    fn drop(&mut self) {
        self.refresh();
    }
}

impl fmt::Debug for MemoryRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRegistry")
            .field("stats", &self.stats())
            .field("idle_timeout", &self.idle_timeout)
            .field("max_free_bytes", &self.max_free_bytes)
            .field("busy_timeout", &self.busy_timeout)
            .finish()
    }
}

/// The size of the region `alloc` creates for `min_size`: header and user
/// bytes rounded up to whole pages, less the header.
fn rounded_size(min_size: usize) -> usize {
    let page = rustix::param::page_size();
    HEADER_SIZE
        .checked_add(min_size)
        .and_then(|total| total.checked_next_multiple_of(page))
        .map_or(min_size, |total| total - HEADER_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::{Mode, OFlags};
    use std::sync::atomic::AtomicUsize;

    type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

    fn inode(region: &MemoryRegion) -> u64 {
        rustix::fs::fstat(region.fd()).expect("fstat").st_ino
    }

    /// What the receiving side gets: its own descriptor for the same file.
    fn send(region: &MemoryRegion) -> OwnedFd {
        region.add_in_flight_ref();
        region.fd().try_clone_to_owned().expect("dup")
    }

    fn error_of(r: std::result::Result<MemoryRegion, RegionError>) -> String {
        r.expect_err("must be refused").to_string()
    }

    #[test]
    fn create_map_write_read() -> Result {
        let mut region = MemoryRegion::new(10_000)?;
        assert_eq!(region.size(), 10_000);
        assert_eq!(region.buffer_size(), 10_000);
        assert!(region.map(..)?.iter().all(|&b| b == 0));
        region.map(9_990..)?.copy_from_slice(b"0123456789");
        assert_eq!(&region.map(9_995..=9_999)?[..], b"56789");
        assert_eq!(region.map(..)?.len(), 10_000);
        Ok(())
    }

    #[test]
    fn zero_size_region() -> Result {
        let mut region = MemoryRegion::new(0)?;
        assert_eq!(region.size(), 0);
        assert!(region.map(..)?.is_empty());
        assert!(region.map(0..0)?.is_empty());
        assert!(region.map(0..1).is_err());
        Ok(())
    }

    #[test]
    fn bounds_are_checked() -> Result {
        let mut region = MemoryRegion::new(100)?;
        assert_eq!(region.map(100..)?.len(), 0);
        assert_eq!(region.map(..=99)?.len(), 100);
        let e = region.map(50..101).expect_err("past the end").to_string();
        assert!(e.contains("50..101") && e.contains("100 bytes"), "{e}");
        let e = region
            .map((Bound::Included(60), Bound::Excluded(50)))
            .expect_err("reversed")
            .to_string();
        assert!(e.contains("starts after it ends"), "{e}");
        assert!(region.map(..=100).is_err());
        assert!(region.map(101..).is_err());
        assert!(region.map(..=usize::MAX).is_err());
        assert!(region
            .map((Bound::Excluded(usize::MAX), Bound::Unbounded))
            .is_err());
        Ok(())
    }

    #[test]
    fn clone_and_drop_change_ref_count() -> Result {
        let mut a = MemoryRegion::new(64)?;
        assert_eq!(a.ref_count(), 1);
        let mut b = a.clone();
        assert_eq!(a.ref_count(), 2);
        let c = b.clone();
        assert_eq!(c.ref_count(), 3);
        // Clones see the same bytes, each through its own mapping.
        a.map(..3)?.copy_from_slice(b"abc");
        assert_eq!(&b.map(..3)?[..], b"abc");
        drop(c);
        drop(b);
        assert_eq!(a.ref_count(), 1);
        Ok(())
    }

    #[test]
    fn in_flight_ref_is_counted_and_undone() -> Result {
        let region = MemoryRegion::new(8)?;
        region.add_in_flight_ref();
        assert_eq!(region.ref_count(), 2);
        region.drop_in_flight_ref();
        assert_eq!(region.ref_count(), 1);
        Ok(())
    }

    #[test]
    fn received_region_shares_bytes_and_count() -> Result {
        let mut a = MemoryRegion::new(4096)?;
        a.map(..5)?.copy_from_slice(b"hello");
        let mut b = MemoryRegion::from_received_fd(send(&a))?;
        assert_eq!(b.size(), 4096);
        assert_eq!(a.ref_count(), 2);
        assert_eq!(b.ref_count(), 2);
        assert_eq!(&b.map(..5)?[..], b"hello");
        b.map(..1)?[0] = b'j';
        assert_eq!(&a.map(..5)?[..], b"jello");
        let b2 = b.clone();
        assert_eq!(a.ref_count(), 3);
        drop(b);
        drop(b2);
        assert_eq!(a.ref_count(), 1);
        Ok(())
    }

    #[test]
    fn refuses_non_memfd() -> Result {
        let f = std::fs::File::open("/dev/null")?;
        let e = error_of(MemoryRegion::from_received_fd(f.into()));
        assert!(e.contains("not a sealable memfd"), "{e}");
        Ok(())
    }

    #[test]
    fn refuses_unsealed_memfd() -> Result {
        let fd = memfd::create("busbar-test", 4096)?;
        let e = error_of(MemoryRegion::from_received_fd(fd));
        assert!(e.contains("not sealed"), "{e}");
        // Sealed against resizing but not against more sealing: refused too.
        let fd = memfd::create("busbar-test", 4096)?;
        rustix::fs::fcntl_add_seals(
            &fd,
            rustix::fs::SealFlags::SHRINK | rustix::fs::SealFlags::GROW,
        )?;
        let e = error_of(MemoryRegion::from_received_fd(fd));
        assert!(e.contains("not sealed"), "{e}");
        Ok(())
    }

    #[test]
    fn refuses_too_small_and_wrong_magic() -> Result {
        let fd = memfd::create("busbar-test", HEADER_SIZE as u64 - 1)?;
        memfd::seal_size(fd.as_fd())?;
        let e = error_of(MemoryRegion::from_received_fd(fd));
        assert!(e.contains("smaller than"), "{e}");

        let fd = memfd::create("busbar-test", 4096)?;
        memfd::seal_size(fd.as_fd())?;
        let e = error_of(MemoryRegion::from_received_fd(fd));
        assert!(e.contains("magic"), "{e}");
        Ok(())
    }

    #[test]
    fn refuses_read_only_descriptor() -> Result {
        let region = MemoryRegion::new(16)?;
        let path = format!("/proc/self/fd/{}", region.fd().as_raw_fd());
        let ro = rustix::fs::open(
            path.as_str(),
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let e = error_of(MemoryRegion::from_received_fd(ro));
        assert!(e.contains("cannot map"), "{e}");
        Ok(())
    }

    #[test]
    fn hostile_header_cannot_hurt() -> Result {
        let mut a = MemoryRegion::new(100)?;
        // A peer scribbles a huge size and a zero count into the header.
        let h = &a.shared.header;
        h.atomic_u64(SIZE_OFFSET)
            .expect("field")
            .store(u64::MAX, Ordering::SeqCst);
        h.atomic_u32(REFS_OFFSET)
            .expect("field")
            .store(0, Ordering::SeqCst);
        let mut b = MemoryRegion::from_received_fd(a.fd().try_clone_to_owned()?)?;
        assert_eq!(b.size(), 100, "a length is never more than the file holds");
        assert!(b.map(..200).is_err());
        b.map(..)?.fill(1);
        drop(b); // count wraps around: no panic
        assert_eq!(a.ref_count(), u32::MAX);
        assert!(a.map(..)?.iter().all(|&x| x == 1));
        Ok(())
    }

    /// A pooled region is as long as its allocation asked, however much
    /// memory is underneath, for its receivers too (the length travels in
    /// the header), and each reuse has its own length.
    #[test]
    fn pooled_region_is_as_long_as_asked() -> Result {
        let mut registry = MemoryRegistry::new();
        let mut a = registry.alloc(16, None)?;
        assert!(a.capacity() > 16, "a page underneath");
        assert_eq!((a.size(), a.buffer_size(), a.map(..)?.len()), (16, 16, 16));
        a.map(..)?[0] = 0x2e;
        assert!(a.map(..17).is_err());
        let a_ino = inode(&a);
        let mut got = MemoryRegion::from_received_fd(send(&a))?;
        assert_eq!((got.size(), got.map(..)?.len()), (16, 16));
        assert_eq!(got.map(..1)?, &[0x2e]);
        let copy = got.clone();
        assert_eq!(copy.size(), 16);
        drop((a, got, copy));

        // Reused for 32 bytes: 32 here and there; the old 16 is gone.
        let mut b = registry.alloc(32, None)?;
        assert_eq!(inode(&b), a_ino, "reused");
        assert_eq!(b.map(..)?.len(), 32);
        let got = MemoryRegion::from_received_fd(send(&b))?;
        assert_eq!(got.size(), 32);
        drop((b, got));
        let zero = registry.alloc(0, None)?;
        assert_eq!((zero.size(), registry.len()), (0, 1));
        // A region made directly is as long as asked as well.
        let direct = MemoryRegion::new(5)?;
        assert_eq!(MemoryRegion::from_received_fd(send(&direct))?.size(), 5);
        Ok(())
    }

    /// A header claiming less than the file holds is believed (it only
    /// shortens what the receiver shows); more is clamped.
    #[test]
    fn received_length_is_clamped_to_the_file() -> Result {
        let a = MemoryRegion::new(4000)?;
        let h = a.shared.header.atomic_u64(SIZE_OFFSET).expect("field");
        h.store(10, Ordering::SeqCst);
        let mut b = MemoryRegion::from_received_fd(send(&a))?;
        assert_eq!((b.size(), b.map(..)?.len()), (10, 10));
        h.store(5000, Ordering::SeqCst);
        assert_eq!(b.size(), 10, "read once, on arrival");
        assert_eq!(MemoryRegion::from_received_fd(send(&a))?.size(), 4000);
        Ok(())
    }

    #[test]
    fn registry_reuses_only_free_regions() -> Result {
        let mut registry = MemoryRegistry::new();
        let a = registry.alloc(1000, None)?;
        assert_eq!(a.size(), 1000);
        assert_eq!(a.ref_count(), 2, "the registry keeps a handle");
        let a_ino = inode(&a);

        let b = registry.alloc(1000, None)?;
        assert_ne!(inode(&b), a_ino, "a is still held");
        assert_eq!(registry.len(), 2);

        // Held in "another process": still not free.
        let remote = MemoryRegion::from_received_fd(send(&a))?;
        drop(a);
        let c = registry.alloc(1000, None)?;
        assert_ne!(inode(&c), a_ino);
        assert_eq!(registry.len(), 3);

        drop(remote);
        let d = registry.alloc(900, None)?;
        assert_eq!(inode(&d), a_ino, "free again: reused");
        assert_eq!(registry.len(), 3);
        drop((b, c, d));
        Ok(())
    }

    #[test]
    fn registry_matches_tag_and_size() -> Result {
        let mut registry = MemoryRegistry::new();
        let small = registry.alloc(10, Some("x"))?;
        let small_ino = inode(&small);
        drop(small);
        assert_ne!(inode(&registry.alloc(10, Some("y"))?), small_ino);
        assert_ne!(inode(&registry.alloc(10, None)?), small_ino);
        let big = registry.alloc(100_000, Some("x"))?;
        let big_ino = inode(&big);
        assert_ne!(big_ino, small_ino, "too small for the request");
        drop(big);
        assert_ne!(
            inode(&registry.alloc(10, Some("x"))?),
            inode(&registry.alloc(10, Some("x"))?),
        );
        // A tiny request does not take the 100 000-byte region, even when
        // every small one is held; a large request does.
        let held = [registry.alloc(0, Some("x"))?, registry.alloc(0, Some("x"))?];
        assert!(held.iter().any(|r| inode(r) == small_ino));
        let tiny = registry.alloc(0, Some("x"))?;
        assert_ne!(inode(&tiny), big_ino);
        assert!(tiny.size() < 100_000);
        assert_eq!(inode(&registry.alloc(60_000, Some("x"))?), big_ino);
        Ok(())
    }

    #[test]
    fn alloc_with_free_runs_once_when_free() -> Result {
        let runs = Arc::new(AtomicUsize::new(0));
        let mut registry = MemoryRegistry::new();
        let r = {
            let runs = runs.clone();
            registry.alloc_with_free(64, None, move || {
                runs.fetch_add(1, Ordering::SeqCst);
            })?
        };
        let remote = MemoryRegion::from_received_fd(send(&r))?;
        drop(r);
        registry.maintain();
        assert_eq!(runs.load(Ordering::SeqCst), 0, "still held remotely");
        drop(remote);
        registry.maintain();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        registry.maintain();
        let _again = registry.alloc(64, None)?;
        assert_eq!(runs.load(Ordering::SeqCst), 1, "runs only once");
        Ok(())
    }

    #[test]
    fn free_callback_runs_on_reuse_and_registry_drop() -> Result {
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = |runs: &Arc<AtomicUsize>| {
            let runs = runs.clone();
            move || {
                runs.fetch_add(1, Ordering::SeqCst);
            }
        };
        let mut registry = MemoryRegistry::new();
        drop(registry.alloc_with_free(64, None, counter(&runs))?);
        // The next alloc sees it free, runs the callback, then reuses it.
        let r = registry.alloc_with_free(64, None, counter(&runs))?;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        drop(r);
        drop(registry);
        assert_eq!(runs.load(Ordering::SeqCst), 2);

        // Dropped uncalled when the registry goes away with the region in use.
        struct Witness(Arc<AtomicUsize>);
        impl Drop for Witness {
            fn drop(&mut self) {
                self.0.fetch_add(100, Ordering::SeqCst);
            }
        }
        let witness = Witness(runs.clone());
        let mut registry = MemoryRegistry::new();
        let held = registry.alloc_with_free(64, None, move || {
            witness.0.fetch_add(1, Ordering::SeqCst);
        })?;
        drop(registry);
        assert_eq!(runs.load(Ordering::SeqCst), 102);
        assert_eq!(held.ref_count(), 1);
        Ok(())
    }

    #[test]
    fn maintain_drops_idle_free_regions_only() -> Result {
        // No sleeps: the timeout is moved instead of the clock, so a
        // descheduled test thread cannot make a region look idle early.
        let mut registry = MemoryRegistry::new().with_idle_timeout(Duration::from_secs(3600));
        let held = registry.alloc(64, None)?;
        drop(registry.alloc(64, None)?);
        registry.maintain();
        assert_eq!(registry.len(), 2, "not idle long enough yet");
        assert_eq!(
            registry.stats(),
            RegistryStats {
                regions: 2,
                free_regions: 1,
                bytes: 2 * held.capacity(),
                free_bytes: held.capacity(),
            }
        );
        registry.idle_timeout = Duration::ZERO;
        registry.maintain();
        assert_eq!(registry.len(), 1, "the free one went");
        assert_eq!(held.ref_count(), 2, "the held one stays");
        drop(held);
        registry.maintain();
        assert!(registry.is_empty());
        Ok(())
    }

    #[test]
    fn maintain_caps_free_bytes_oldest_first() -> Result {
        let page = rustix::param::page_size();
        let one = rounded_size(0);
        let mut registry = MemoryRegistry::new().with_max_free_bytes(2 * one);
        let regions = [
            registry.alloc(0, Some("a"))?,
            registry.alloc(0, Some("b"))?,
            registry.alloc(0, Some("c"))?,
        ];
        assert_eq!(one, page - HEADER_SIZE);
        let inodes: Vec<u64> = regions.iter().map(inode).collect();
        drop(regions);
        registry.maintain();
        assert_eq!(registry.len(), 2);
        // "a" was handed out first, so it went first.
        assert_ne!(inode(&registry.alloc(0, Some("a"))?), inodes[0]);
        assert_eq!(inode(&registry.alloc(0, Some("b"))?), inodes[1]);
        assert_eq!(inode(&registry.alloc(0, Some("c"))?), inodes[2]);
        Ok(())
    }

    #[test]
    fn busy_timeout_lets_go_of_stuck_regions() -> Result {
        let timeout = Duration::from_millis(300);
        let mut registry = MemoryRegistry::new().with_busy_timeout(Some(timeout));
        let stuck = registry.alloc(64, None)?;
        registry.maintain();
        assert_eq!(stuck.ref_count(), 2);
        std::thread::sleep(timeout + Duration::from_millis(50));
        registry.maintain();
        assert!(registry.is_empty());
        assert_eq!(stuck.ref_count(), 1);

        let mut registry = MemoryRegistry::new().with_busy_timeout(None);
        let held = registry.alloc(64, None)?;
        registry.maintain();
        assert_eq!(registry.len(), 1);
        drop(held);
        Ok(())
    }

    #[test]
    fn types_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        fn check_send<T: Send>() {}
        check::<MemoryRegion>();
        check_send::<MemoryRegistry>();
        check::<RegionError>();
    }
}
