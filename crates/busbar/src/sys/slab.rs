//! A mapped region cut into equal chunks, each with a count word in its
//! first bytes: what the sender's pool of lent payloads (`endpoint/loan.rs`)
//! writes messages into.
//!
//! # The protocol of a chunk's count
//!
//! The count word (an `AtomicU32` at the chunk's start) says how many
//! holders a chunk has across processes: 0 is free. The sender that takes
//! a free chunk sets it to 1 (its own hold), writes the payload, adds 1 per
//! receiver *before* the frame that refers to the chunk leaves (so the
//! count cannot reach 0 while a frame is in flight), and drops its own hold
//! (`fetch_sub`, `Release`) once every receiver has been written to. Each
//! receiver drops its 1 (`fetch_sub`, `Release`) when its message is gone.
//! The sender takes a chunk again only after it read 0 (`Acquire`): every
//! receiver's reads of the old payload happen before that load, which
//! happens before the sender's new writes. `loom.rs` models it
//! (`chunk_is_reused_only_after_every_reader_let_go`).
//!
//! The count lives in memory every holder can write: a receiver that never
//! gives its count back (it crashed) leaves the chunk busy for good, and one
//! that writes nonsense only keeps the sender from reusing the chunk (or
//! makes it reuse it early, which only corrupts what that receiver reads).
//! In this process, a chunk is written through at most one [`ChunkMut`] at
//! a time (its claim flag), whatever the shared count says, so Rust's
//! aliasing rules hold whatever other processes do.

use super::memfd::Mapping;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

/// The bytes at the start of each chunk before its body: the count word and padding.
pub(crate) const CHUNK_HEADER: usize = 64;

/// A mapping cut into chunks.
#[derive(Debug)]
pub(crate) struct Chunks {
    map: Mapping,
    /// Where the first chunk starts in the mapping.
    base: usize,
    chunk: usize,
    n: usize,
    /// Whether a [`ChunkMut`] of each chunk is alive in this process.
    claimed: Box<[AtomicBool]>,
}

impl Chunks {
    /// Cuts the mapping from `base` on into chunks of `chunk` bytes (`None`
    /// unless `base` and `chunk` are multiples of [`CHUNK_HEADER`], the
    /// mapping is writable and holds at least one chunk).
    pub(crate) fn new(map: Mapping, base: usize, chunk: usize) -> Option<Chunks> {
        if base % CHUNK_HEADER != 0 || chunk % CHUNK_HEADER != 0 || chunk == 0 {
            return None;
        }
        let n = map.len().checked_sub(base)? / chunk;
        // Writable, aligned: the count words can be reached.
        map.atomic_u32(base)?;
        if n == 0 || (map.as_ptr() as usize) % CHUNK_HEADER != 0 {
            return None;
        }
        Some(Chunks {
            map,
            base,
            chunk,
            n,
            claimed: (0..n).map(|_| AtomicBool::new(false)).collect(),
        })
    }

    /// How many chunks there are.
    pub(crate) fn len(&self) -> usize {
        self.n
    }

    /// The size of a chunk, its header included.
    pub(crate) fn chunk_size(&self) -> usize {
        self.chunk
    }

    /// The count word of chunk `i`.
    pub(crate) fn count(&self, i: usize) -> Option<&AtomicU32> {
        if i >= self.n {
            return None;
        }
        self.map.atomic_u32(self.base + i * self.chunk)
    }

    /// Whether chunk `i` is free: nobody in this process writes it and its
    /// count is 0 (`Acquire`: every earlier holder's reads happened before).
    pub(crate) fn is_free(&self, i: usize) -> bool {
        i < self.n
            && !self.claimed[i].load(Ordering::Acquire)
            && self
                .count(i)
                .is_some_and(|c| c.load(Ordering::Acquire) == 0)
    }

    /// Takes chunk `i` to write it, if it is free: its count becomes 1 (the
    /// taker's hold).
    pub(crate) fn claim(self: &Arc<Self>, i: usize) -> Option<ChunkMut> {
        if !self.is_free(i) {
            return None;
        }
        self.claimed[i]
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        // Taken again: a holder may have added one meanwhile (only a
        // hostile one: nobody else was handed this chunk).
        if self.count(i)?.load(Ordering::Acquire) != 0 {
            self.claimed[i].store(false, Ordering::Release);
            return None;
        }
        self.count(i)?.store(1, Ordering::Relaxed);
        Some(ChunkMut {
            chunks: self.clone(),
            i,
        })
    }
}

/// Chunk `i` of a [`Chunks`], written by its one holder in this process.
/// Dropping it gives back the taker's count (`Release`).
#[derive(Debug)]
pub(crate) struct ChunkMut {
    chunks: Arc<Chunks>,
    i: usize,
}

impl ChunkMut {
    /// Where the chunk starts, from the start of the mapping.
    pub(crate) fn offset(&self) -> usize {
        self.chunks.base + self.i * self.chunks.chunk
    }

    /// The chunk's count word.
    pub(crate) fn count(&self) -> &AtomicU32 {
        // In range: checked when the chunks were made (`new`), and `i < n`.
        self.chunks
            .count(self.i)
            .expect("a claimed chunk's count word is in the mapping")
    }

    /// The chunk's body: its bytes after [`CHUNK_HEADER`].
    pub(crate) fn body_mut(&mut self) -> &mut [u8] {
        let len = self.chunks.chunk - CHUNK_HEADER;
        if len == 0 {
            return &mut [];
        }
        // In the mapping: `new` checked that `n` chunks fit from `base`.
        let ptr = self
            .chunks
            .map
            .as_ptr()
            .wrapping_add(self.offset() + CHUNK_HEADER);
        // SAFETY: the `len` bytes at `ptr` lie inside the mapping (chunk
        // `i < n` of `chunk` bytes from `base`, checked in `new`), which
        // is writable and stays mapped while `self.chunks` (an `Arc` we
        // hold) lives. They belong to chunk `i` only, past its count word:
        // no atomic of this process points into them (count words are at
        // chunk starts), and no other slice either, since only the one
        // `ChunkMut` of chunk `i` (its claim flag) hands them out, borrowed
        // mutably from it. Other processes may read or write them: the
        // shared-memory contract of `Mapping`.
        unsafe { std::slice::from_raw_parts_mut(ptr, len) }
    }
}

impl Drop for ChunkMut {
    fn drop(&mut self) {
        if let Some(c) = self.chunks.count(self.i) {
            c.fetch_sub(1, Ordering::Release);
        }
        self.chunks.claimed[self.i].store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::memfd;
    use std::os::fd::AsFd;

    fn chunks(len: usize, chunk: usize) -> Arc<Chunks> {
        let fd = memfd::create("busbar-test", len as u64).expect("memfd");
        memfd::seal_size(fd.as_fd()).expect("seal");
        let map = Mapping::prefix(fd.as_fd(), len).expect("map");
        Arc::new(Chunks::new(map, 64, chunk).expect("chunks"))
    }

    #[test]
    fn a_chunk_is_taken_once_and_freed_when_every_count_is_back() {
        let c = chunks(64 + 4 * 256, 256);
        assert_eq!(c.len(), 4);
        let mut a = c.claim(1).expect("free");
        assert!(c.claim(1).is_none(), "claimed");
        a.body_mut().fill(7);
        assert_eq!(a.body_mut().len(), 192);
        a.count().fetch_add(2, Ordering::AcqRel); // two receivers
        drop(a);
        assert!(!c.is_free(1));
        c.count(1).expect("count").fetch_sub(2, Ordering::Release);
        assert!(c.is_free(1));
        assert!(c.claim(1).is_some());
        assert!(c.count(4).is_none());
        assert!(Chunks::new(
            Mapping::prefix(memfd_of(4096).as_fd(), 4096).expect("map"),
            32,
            64
        )
        .is_none());
    }

    fn memfd_of(len: u64) -> std::os::fd::OwnedFd {
        let fd = memfd::create("busbar-test", len).expect("memfd");
        memfd::seal_size(fd.as_fd()).expect("seal");
        fd
    }
}
