//! Regions that arrive as the payloads of messages (large messages, and
//! [`Loan`](crate::Loan)s), kept mapped by the receiver for reuse.
//!
//! A sender reuses the same few regions for message after message
//! (`loan.rs`); mapping each again for every message would cost two
//! `mmap`s, two `munmap`s and the page faults of fresh mappings each time.
//! So a receiver keeps a read-only mapping per region, found again by the
//! region's inode: a region it has seen costs one `fstat` and a `close`.
//!
//! A mapping kept here keeps its region's memory alive: at most
//! [`MAX_REGIONS`] and [`MAX_BYTES`], and none unused for [`IDLE`] (the
//! endpoint's background thread trims them). The links of an endpoint
//! share one table; a channel's links have one each.
//!
//! A data link also remembers the regions its sender asked it to (a slot
//! per region, `link.rs`), so that later frames refer to them without a
//! descriptor; those mappings live as long as the link's slot holds them.
//!
//! Each message's payload lies in a chunk whose count word the sender
//! raised for this receiver (`sys/slab.rs`); the message's [`LentView`]
//! takes it off when dropped. The count is reached through a read-write
//! mapping of its own; the payload is read through a read-only one.

use crate::frame::Locator;
use crate::region::HEADER_SIZE;
use crate::sys::memfd::{self, Mapping};
use crate::{MemoryRegion, RegionError};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most regions a receiver keeps mapped.
const MAX_REGIONS: usize = 16;

/// The most bytes of regions a receiver keeps mapped.
const MAX_BYTES: usize = 512 << 20;

/// How long a mapping no message used is kept.
pub(crate) const IDLE: Duration = Duration::from_secs(1);

/// The receiver's mappings of regions, by inode.
#[derive(Default, Debug)]
pub(crate) struct LentMaps {
    entries: Vec<Entry>,
    /// How many of its mappings are alive (in the table, a link's slot, or a message).
    live: Arc<AtomicUsize>,
}

#[derive(Debug)]
struct Entry {
    key: (u64, u64),
    map: Arc<LentMap>,
    used: Instant,
}

/// A region mapped whole: read-only for its bytes, read-write for its
/// chunks' count words.
pub(crate) struct LentMap {
    /// A handle that does not count itself, to check the region once.
    region: MemoryRegion,
    data: Mapping,
    counts: Mapping,
    /// Its table's count of live mappings.
    live: Arc<AtomicUsize>,
}

impl Drop for LentMap {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for LentMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LentMap")
            .field("region", &self.region)
            .finish()
    }
}

impl LentMap {
    /// Whether its sender marked it retired (see [`MemoryRegion::retire`]).
    pub(crate) fn is_retired(&self) -> bool {
        self.region.is_retired()
    }

    /// The payload `loc` and `len` say, in this region: checked to lie in
    /// it, and its count word too (4-aligned, in the region). The count the
    /// sender added for this message is given back when the view is
    /// dropped (not when the locator fails its checks: then it is not
    /// known to be one).
    pub(crate) fn view(
        self: &Arc<Self>,
        loc: &Locator,
        len: usize,
    ) -> Result<LentView, RegionError> {
        let size = self.region.capacity() as u64;
        let off = loc.payload_offset;
        // Offsets past 4 GiB are refused (a pool's slabs of many chunks are
        // a few MiB; a payload of its own starts a chunk header in).
        let (Ok(off32), Ok(count32)) = (u32::try_from(off), u32::try_from(loc.count_offset)) else {
            return Err(RegionError(format!(
                "a lent payload's locator ({off}, count word at {}) is past 4 GiB",
                loc.count_offset
            )));
        };
        if off.checked_add(len as u64).is_none_or(|end| end > size) {
            return Err(RegionError(format!(
                "a lent payload of {len} bytes at {off} runs past its region of {size}"
            )));
        }
        let count = loc.count_offset;
        let at = Some(count32 as usize)
            .filter(|&c| (c as u64) < size)
            .filter(|&c| self.counts.atomic_u32(HEADER_SIZE + c).is_some())
            .ok_or_else(|| {
                RegionError(format!(
                    "a lent payload's count word at {count} is not a 4-aligned word of its region of {size}"
                ))
            })?;
        Ok(LentView {
            map: self.clone(),
            off: off32,
            len,
            count: at as u32,
        })
    }
}

/// The payload of one message: a range of a mapped region. Dropping it
/// gives back the count the sender added for this message.
pub(crate) struct LentView {
    map: Arc<LentMap>,
    off: u32,
    len: usize,
    /// Where the count word is among the region's user bytes.
    count: u32,
}

impl std::fmt::Debug for LentView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LentView")
            .field("off", &self.off)
            .field("len", &self.len)
            .finish()
    }
}

impl LentView {
    /// The payload's length.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The payload's bytes (shared memory the sender may still write: read once).
    pub(crate) fn bytes(&self) -> &[u8] {
        let start = HEADER_SIZE + self.off as usize;
        self.map
            .data
            .shared_bytes()
            .and_then(|b| b.get(start..start + self.len))
            .unwrap_or_default()
    }
}

impl Drop for LentView {
    fn drop(&mut self) {
        if let Some(c) = self
            .map
            .counts
            .atomic_u32(HEADER_SIZE + self.count as usize)
        {
            // Release: our reads of the payload happen before the sender sees it free.
            c.fetch_sub(1, Ordering::Release);
        }
    }
}

impl LentMaps {
    /// The payload `loc` and `len` locate in the region in `fd` (received
    /// with a message, with a count the sender added for it), mapped or
    /// found mapped ([`region`](Self::region)), checked ([`LentMap::view`]).
    pub(crate) fn open(
        &mut self,
        fd: OwnedFd,
        loc: &Locator,
        len: usize,
    ) -> Result<LentView, RegionError> {
        self.region(fd)?.view(loc, len)
    }

    /// The region in `fd`, mapped or found mapped. The region is checked
    /// the first time it is seen (seals, size, magic: [`MemoryRegion`]'s rules).
    pub(crate) fn region(&mut self, fd: OwnedFd) -> Result<Arc<LentMap>, RegionError> {
        let key =
            memfd::identity(fd.as_fd()).map_err(|e| RegionError(format!("lent payload: {e}")))?;
        let now = Instant::now();
        let map = match self.entries.iter_mut().find(|e| e.key == key) {
            // The same file: sealed, so the same size, and still a region.
            Some(e) => {
                e.used = now;
                e.map.clone()
            }
            None => {
                let map = Arc::new(Self::map(fd, &self.live)?);
                self.entries.push(Entry {
                    key,
                    map: map.clone(),
                    used: now,
                });
                self.evict();
                map
            }
        };
        Ok(map)
    }

    fn map(fd: OwnedFd, live: &Arc<AtomicUsize>) -> Result<LentMap, RegionError> {
        let mut region = MemoryRegion::from_received_fd(fd)?;
        // The sender counts messages in the chunks, not in the region's header.
        region.hand_over_count();
        let len = HEADER_SIZE + region.capacity();
        let data = Mapping::read_only(region.fd(), len)
            .map_err(|e| RegionError(format!("cannot map a lent payload: {e}")))?;
        let counts = Mapping::prefix(region.fd(), len)
            .map_err(|e| RegionError(format!("cannot map a lent payload: {e}")))?;
        live.fetch_add(1, Ordering::Relaxed);
        Ok(LentMap {
            region,
            data,
            counts,
            live: live.clone(),
        })
    }

    /// Lets the least recently used mappings go while there are too many.
    fn evict(&mut self) {
        let bytes = |entries: &[Entry]| {
            entries
                .iter()
                .map(|e| e.map.region.capacity())
                .sum::<usize>()
        };
        while self.entries.len() > MAX_REGIONS
            || (self.entries.len() > 1 && bytes(&self.entries) > MAX_BYTES)
        {
            let oldest = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.used)
                .map(|(i, _)| i);
            match oldest {
                Some(i) => drop(self.entries.remove(i)),
                None => break,
            }
        }
    }

    /// Lets go of mappings no message used for [`IDLE`]. When to look again.
    pub(crate) fn trim(&mut self, now: Instant) -> Option<Instant> {
        self.entries.retain(|e| now < e.used + IDLE);
        self.entries.iter().map(|e| e.used + IDLE).min()
    }

    /// How many regions are mapped: kept here, by a link that remembers
    /// them, or by messages.
    pub(crate) fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn loc(count: u64, payload: u64) -> Locator {
        Locator {
            count_offset: count,
            payload_offset: payload,
            slot: crate::frame::NO_SLOT,
        }
    }

    fn count(region: &mut MemoryRegion) -> u32 {
        let b = region.map(0..4).expect("map");
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
    }

    fn set_count(region: &mut MemoryRegion, v: u32) {
        region
            .map(0..4)
            .expect("map")
            .copy_from_slice(&v.to_ne_bytes());
    }

    fn received(region: &MemoryRegion) -> OwnedFd {
        region.fd().try_clone_to_owned().expect("dup")
    }

    #[test]
    fn a_region_seen_again_is_not_mapped_again_and_counts_come_back() {
        let mut region = MemoryRegion::new(8192).expect("region");
        region.map(100..105).expect("map").copy_from_slice(b"hello");
        set_count(&mut region, 2); // two messages in flight
        let mut maps = LentMaps::default();
        let a = maps.open(received(&region), &loc(0, 100), 5).expect("open");
        let b = maps
            .open(received(&region), &loc(0, 100), 5)
            .expect("open again");
        assert_eq!((a.bytes(), b.bytes()), (&b"hello"[..], &b"hello"[..]));
        assert_eq!(maps.len(), 1, "one mapping for both");
        drop((a, b));
        assert_eq!(count(&mut region), 0, "each message gave its count back");
        // A range outside the region is refused, so is a count word outside
        // it or not aligned.
        assert!(maps.open(received(&region), &loc(0, 8190), 5).is_err());
        assert!(maps.open(received(&region), &loc(8192, 0), 5).is_err());
        assert!(maps.open(received(&region), &loc(2, 0), 5).is_err());
        assert!(maps.open(received(&region), &loc(u64::MAX, 0), 5).is_err());
        assert!(maps.open(received(&region), &loc(0, u64::MAX), 5).is_err());
        assert_eq!(count(&mut region), 0);
        maps.trim(Instant::now() + IDLE);
        assert_eq!(maps.len(), 0);
        let _ = region.fd().as_fd();
    }

    #[test]
    fn at_most_max_regions_stay_mapped() {
        let regions: Vec<MemoryRegion> = (0..MAX_REGIONS + 4)
            .map(|_| MemoryRegion::new(4096).expect("region"))
            .collect();
        let mut maps = LentMaps::default();
        for r in &regions {
            drop(maps.region(received(r)).expect("open"));
        }
        assert_eq!(maps.len(), MAX_REGIONS);
    }
}
