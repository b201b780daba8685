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
//! endpoint's background thread trims them).

use crate::region::HEADER_SIZE;
use crate::sys::memfd::{self, Mapping};
use crate::{MemoryRegion, RegionError};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most regions a receiver keeps mapped.
const MAX_REGIONS: usize = 16;

/// The most bytes of regions a receiver keeps mapped.
const MAX_BYTES: usize = 512 << 20;

/// How long a mapping no message used is kept.
pub(crate) const IDLE: Duration = Duration::from_secs(1);

/// The receiver's mappings of regions, by inode.
#[derive(Default)]
pub(crate) struct LentMaps {
    entries: Vec<Entry>,
}

struct Entry {
    key: (u64, u64),
    map: Arc<LentMap>,
    used: Instant,
}

/// A region mapped read-only, whole.
struct LentMap {
    /// A handle that does not count itself (the views do), to check the
    /// region once and to give its count back.
    region: MemoryRegion,
    data: Mapping,
}

/// The payload of one message: a range of a mapped region. Dropping it
/// gives back the count the sender added for this message.
pub(crate) struct LentView {
    map: Arc<LentMap>,
    off: usize,
    len: usize,
}

impl LentView {
    /// The payload's bytes (shared memory the sender may still write: read once).
    pub(crate) fn bytes(&self) -> &[u8] {
        let start = HEADER_SIZE + self.off;
        self.map
            .data
            .shared_bytes()
            .and_then(|b| b.get(start..start + self.len))
            .unwrap_or_default()
    }
}

impl Drop for LentView {
    fn drop(&mut self) {
        self.map.region.drop_in_flight_ref();
    }
}

impl LentMaps {
    /// The `len` bytes at `off` of the region in `fd` (received with a
    /// message, with a count the sender added for it), mapped or found
    /// mapped. The region is checked the first time it is seen (seals,
    /// size, magic: [`MemoryRegion`]'s rules); the range every time.
    pub(crate) fn open(
        &mut self,
        fd: OwnedFd,
        off: usize,
        len: usize,
    ) -> Result<LentView, RegionError> {
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
                let map = Arc::new(Self::map(fd)?);
                self.entries.push(Entry {
                    key,
                    map: map.clone(),
                    used: now,
                });
                self.evict();
                map
            }
        };
        let view = LentView { map, off, len };
        let size = view.map.region.capacity();
        if off.checked_add(len).is_none_or(|end| end > size) {
            // Dropping the view gives the count back.
            return Err(RegionError(format!(
                "a lent payload of {len} bytes at {off} runs past its region of {size}"
            )));
        }
        Ok(view)
    }

    fn map(fd: OwnedFd) -> Result<LentMap, RegionError> {
        let mut region = MemoryRegion::from_received_fd(fd)?;
        // The count the sender added is given back by each message's view.
        region.hand_over_count();
        let data = Mapping::read_only(region.fd(), HEADER_SIZE + region.capacity())
            .map_err(|e| RegionError(format!("cannot map a lent payload: {e}")))?;
        Ok(LentMap { region, data })
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

    /// How many regions are mapped.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// A region as a receiver gets it: a duplicate descriptor, one count added.
    fn received(region: &MemoryRegion) -> OwnedFd {
        region.add_in_flight_ref();
        region.fd().try_clone_to_owned().expect("dup")
    }

    #[test]
    fn a_region_seen_again_is_not_mapped_again_and_counts_come_back() {
        let mut region = MemoryRegion::new(8192).expect("region");
        region.map(100..105).expect("map").copy_from_slice(b"hello");
        let mut maps = LentMaps::default();
        let a = maps.open(received(&region), 100, 5).expect("open");
        let b = maps.open(received(&region), 100, 5).expect("open again");
        assert_eq!((a.bytes(), b.bytes()), (&b"hello"[..], &b"hello"[..]));
        assert_eq!(maps.len(), 1, "one mapping for both");
        assert_eq!(region.ref_count(), 3);
        drop((a, b));
        assert_eq!(region.ref_count(), 1, "each message gave its count back");
        // A range outside the region is refused, and its count given back too.
        assert!(maps.open(received(&region), 8190, 5).is_err());
        assert_eq!(region.ref_count(), 1);
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
            drop(maps.open(received(r), 0, 1).expect("open"));
        }
        assert_eq!(maps.len(), MAX_REGIONS);
        assert!(regions.iter().all(|r| r.ref_count() == 1));
    }
}
