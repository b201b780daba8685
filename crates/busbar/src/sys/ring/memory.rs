//! What a ring lives in: the [`Memory`] trait that [`Producer`] and
//! [`Consumer`] are written against, so the loom models check the code
//! that runs, and the atomic words it hands out.

use super::barrier::Barriers;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
// Named in the documentation only.
#[cfg(doc)]
use super::{producer::Grant, Consumer, Producer, Shm, AWAKE, SLEEPING};

/// A 64-bit atomic word: `std`'s in shared memory, loom's in the models.
/// Shared with the named ring ([`crate::sys::mpsc`]), whose senders claim
/// records with `compare_exchange`.
pub(crate) trait Word64 {
    fn load(&self, order: Ordering) -> u64;
    fn store(&self, value: u64, order: Ordering);
    fn compare_exchange(
        &self,
        current: u64,
        new: u64,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u64, u64>;
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
    fn compare_exchange(
        &self,
        current: u64,
        new: u64,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u64, u64> {
        AtomicU64::compare_exchange(self, current, new, success, failure)
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
    /// The consumer's promise: nonzero while it issues a heavy barrier
    /// after it raises its flag and before it looks again.
    fn sleep_barrier(&self) -> &Self::U32;
    /// The producer's promise: the same before it waits for room.
    fn room_barrier(&self) -> &Self::U32;
    /// What this process can do with asymmetric fences.
    fn barriers(&self) -> Barriers;
    /// The publishing side's half of an asymmetric fence, after its store
    /// and before it looks at the other side's flag: loads the other
    /// side's `promise` and, with a compiler fence only, keeps the look
    /// after the load. `true` when the promise holds, so that the other
    /// side's heavy barrier orders the two; `false`: the caller fences.
    fn light_fence(&self, promise: &Self::U32) -> bool;
    /// The sleeping side's half: a full fence here and one in every thread
    /// of every registered process ([`heavy_barrier`](super::barrier::heavy_barrier)). `false`
    /// when it could not be issued.
    fn heavy_barrier(&self) -> bool;
    /// Bytes in the data area: a power of two, fixed when it was mapped.
    fn capacity(&self) -> usize;
    /// Loads the record header at `off` (8-aligned).
    fn load_record(&self, off: usize) -> Option<u64>;
    /// Stores the record header at `off` (8-aligned).
    fn store_record(&mut self, off: usize, word: u64) -> Option<()>;
    /// Runs `f` over the `len` bytes at `off`.
    fn read<R>(&self, off: usize, len: usize, f: impl FnOnce(&[u8]) -> R) -> Option<R>;
    /// Runs `f` over the `len` bytes at `off`, to fill them (a data link
    /// fills them in place instead: [`Grant::bytes_mut`]).
    #[cfg(test)]
    fn write<R>(&mut self, off: usize, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> Option<R>;
    /// Sleeps while the futex word is [`SLEEPING`], at most `timeout`; may
    /// return early for any reason. (A data link sleeps on all its rings at
    /// once instead: [`Consumer::prepare_sleep`].)
    #[cfg(test)]
    fn wait(&self, timeout: Duration);
    /// Wakes the consumer sleeping on its futex word ([`Memory::sleeping`]),
    /// if any.
    fn wake(&self);
    /// Sleeps while the producer's word ([`Memory::room`]) is [`SLEEPING`],
    /// at most `timeout`; may return early for any reason.
    fn wait_room(&self, timeout: Duration);
    /// Wakes the producer sleeping in [`Memory::wait_room`], if any.
    fn wake_room(&self);
    /// A `SeqCst` fence (`std`'s, or loom's in the models).
    fn fence(&self);
}
