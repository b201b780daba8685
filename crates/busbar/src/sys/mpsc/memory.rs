//! What the named ring's protocol ([`super::protocol`]) is written
//! against: the [`Memory`] trait, so that the loom models (`loom.rs`) run
//! the code that runs in production ([`Shared`], the mapped memfd).

use super::{decode_claim, decode_commit, encode_claim, encode_commit, not_claim, Claim};
use std::time::Duration;
// Named in the documentation only.
#[cfg(doc)]
use super::Shared;

/// The atomic words: the link ring's ([`crate::sys::ring`]), one set of
/// `std` and loom implementations for both rings.
pub(crate) use crate::sys::ring::{Word32, Word64};

/// Where a named ring lives: the mapped memfd in production ([`Shared`]),
/// a loom model in the tests. The protocol is written once against this
/// trait, so the models check the code that runs.
///
/// Offsets are into the data area. The word accessors mask them into it;
/// [`Memory::read`] and [`Memory::fill`] answer `None` for a range outside
/// it, so memory safety never depends on the protocol being right.
pub(crate) trait Memory {
    /// The type of the index and record words.
    type U64: Word64;
    /// The type of the flag words.
    type U32: Word32;
    /// Bytes in the data area: a power of two, fixed when it was mapped.
    fn capacity(&self) -> usize;
    /// The ring's key, mixed into every record tag.
    fn key(&self) -> u64;
    /// How many sender slots there are.
    fn slots(&self) -> usize;
    /// The reserve index `R`.
    fn reserve(&self) -> &Self::U64;
    /// The consumer index `head`.
    fn head(&self) -> &Self::U64;
    /// The receiver's wake flag: 1 while it sleeps (or is about to).
    fn sleeping(&self) -> &Self::U32;
    /// Nonzero once the receiver let go.
    fn gone(&self) -> &Self::U32;
    /// The senders' futex word while they wait for room.
    fn room(&self) -> &Self::U32;
    /// Slot `i`'s claiming index (taken modulo [`Memory::slots`]).
    fn slot(&self, i: usize) -> &Self::U64;
    /// The claim word of the record at data offset `off` (masked into the
    /// data area and down to a record boundary).
    fn claim_word(&self, off: usize) -> &Self::U64;
    /// The commit word of the record at data offset `off` (masked as
    /// [`Memory::claim_word`]).
    fn commit_word(&self, off: usize) -> &Self::U64;
    /// Runs `f` over the `len` bytes at data offset `off` (16-aligned);
    /// `None` unless they lie inside the data area. Other processes may
    /// change them meanwhile: `f` parses them as untrusted input.
    fn read<R>(&mut self, off: usize, len: usize, f: impl FnOnce(&[u8]) -> R) -> Option<R>;
    /// Runs `f` over the `len` bytes at data offset `off` (16-aligned), to
    /// fill them; `None` unless they lie inside the data area.
    fn fill<R>(&mut self, off: usize, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> Option<R>;
    /// Sleeps while [`Memory::room`] is 1, at most `timeout`; may return
    /// early for any reason.
    fn wait_room(&self, timeout: Duration);
    /// Wakes every sender sleeping in [`Memory::wait_room`].
    fn wake_room(&self);
    /// A `SeqCst` fence (`std`'s, or loom's in the models).
    fn fence(&self);
    /// Lets other threads run (`std`'s, or loom's in the models).
    fn yield_now(&self);

    /// The offset in the data area of index `p`.
    #[inline]
    fn offset(&self, p: u64) -> usize {
        (p as usize) & (self.capacity() - 1)
    }
    /// The claim word for a record of `len` bytes at index `p`.
    #[inline]
    fn claim(&self, p: u64, len: usize, pad: bool) -> u64 {
        encode_claim(self.key(), p, len, pad)
    }
    /// A word that is no claim at index `p`.
    #[inline]
    fn not_claim(&self, p: u64) -> u64 {
        not_claim(self.key(), p)
    }
    /// Decodes `word` as a claim at index `p`: `None` when it is not one.
    #[inline]
    fn decode_claim(&self, p: u64, word: u64) -> Option<Claim> {
        decode_claim(self.key(), p, word)
    }
    /// The commit word for the record at index `p` with `slack` padding bytes.
    #[inline]
    fn commit(&self, p: u64, slack: usize) -> u64 {
        encode_commit(self.key(), p, slack)
    }
    /// The slack of a commit word if it commits the record at `p`.
    #[inline]
    fn decode_commit(&self, p: u64, word: u64) -> Option<usize> {
        decode_commit(self.key(), p, word)
    }
}
