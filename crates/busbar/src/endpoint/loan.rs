//! Zero-copy sends: a buffer lent in shared memory, filled in place, and
//! sent without a copy ([`EndpointSender::loan`](super::EndpointSender::loan)).
//!
//! A loan is a chunk of a [`MemoryRegion`] from a pool the endpoint keeps
//! (regions cut into chunks of one size, `sys/slab.rs`), mapped once and
//! reused once every receiver has dropped its message (the chunk's count
//! word says so: see ARCHITECTURE.md, "Lent payloads"). Large payloads of
//! plain sends and multicast payloads are written into chunks of the same
//! pool. A loan's chunk holds a [`BytesMessage`] exactly as postcard
//! encodes it: the format and length prefix end at [`DATA_OFFSET`] of the
//! chunk's body, where the caller's bytes start (so they are 64-byte
//! aligned). Receivers map the same memory: a plain `recv` of
//! `BytesMessage` decodes it as usual, a borrowing receive
//! ([`recv_with`](super::EndpointReceiver::recv_with)) reads it in place.

use crate::error::SendError;
use crate::link::Wait;
use crate::region::HEADER_SIZE;
use crate::sync::Lock;
use crate::sys::memfd::Mapping;
use crate::sys::slab::{ChunkMut, Chunks, CHUNK_HEADER};
use crate::{MemoryRegion, RegionError};
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the lent bytes start in a chunk's body.
pub(crate) const DATA_OFFSET: usize = 64;

/// The most bytes the pool keeps in all.
const POOL_BYTES: usize = 256 << 20;

/// The most bytes the pool keeps of one chunk size: enough for this many
/// chunks, or [`CLASS_MIN_CHUNKS`] of them. Beyond it a sender waits for a
/// chunk to come back (the receivers are that far behind).
const CLASS_BYTES: usize = 32 << 20;
const CLASS_MIN_CHUNKS: usize = 4;

/// The smallest chunk (header included).
const MIN_CHUNK: usize = 256;

/// A slab holds about this many bytes of chunks ...
const SLAB_BYTES: usize = 4 << 20;
/// ... and at most this many chunks.
const MAX_CHUNKS: usize = 4096;

/// How many chunks of each slab a sender looks at before it looks at all.
const PROBES: usize = 4;

/// How long a sender waits for a chunk of a full class before it gives up
/// on the pool for this message (a receiver that crashed never gives its
/// counts back) and writes it into a region of its own.
const CHUNK_WAIT: Duration = Duration::from_secs(1);

/// How long the pool keeps regions nobody asked for: after that it lets
/// them all go (the memory returns to the system once receivers drop theirs).
pub(crate) const POOL_IDLE: Duration = Duration::from_secs(1);

/// Keys that tell slabs apart (never reused in a process, never 0).
static NEXT_SLAB: AtomicU64 = AtomicU64::new(1);

/// A buffer in shared memory, lent by [`EndpointSender::loan`](super::EndpointSender::loan):
/// fill it, then send it with [`EndpointSender::send_loan`](super::EndpointSender::send_loan).
/// Receivers map the same memory, so however large it is, nothing is copied.
///
/// It arrives as a [`BytesMessage`](crate::BytesMessage) with the loan's
/// format and bytes. A loan dropped without being sent goes back to the pool.
///
/// ```
/// use busbar::{label, Options, Selector};
/// # let bus = format!("doc.loan.{}", std::process::id());
/// let (sender, mut receiver) = busbar::join::<busbar::BytesMessage, busbar::BytesMessage>(
///     Options::new(bus, label!("a"), "t"), None)?;
/// let mut loan = sender.loan(7, 1 << 20)?;
/// loan.as_mut_slice().fill(0xab);
/// sender.send_loan(Selector::unicast("a"), loan)?;
/// let m = receiver.recv(None)?;
/// assert_eq!((m.payload.format, m.payload.data.len()), (7, 1 << 20));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Loan {
    mem: LoanMem,
    /// Where the encoded payload (prefix and bytes) starts in the chunk's body.
    start: usize,
    len: usize,
    format: u16,
}

impl std::fmt::Debug for Loan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loan")
            .field("format", &self.format)
            .field("len", &self.len)
            .finish()
    }
}

impl Loan {
    /// The number of bytes lent.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no bytes are lent.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The format tag it will arrive with.
    pub fn format(&self) -> u16 {
        self.format
    }

    /// The lent bytes, to fill in place. They start zeroed only when the
    /// memory is new: reused memory holds what an earlier message left there.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let range = DATA_OFFSET..DATA_OFFSET + self.len;
        // Sized for the range (`LoanPool::lend`).
        self.mem.body_mut().get_mut(range).unwrap_or_default()
    }

    /// Its memory, and where the encoded payload lies in it (offset, length).
    pub(crate) fn into_parts(self) -> (LoanMem, usize, usize) {
        let encoded = DATA_OFFSET - self.start + self.len;
        (self.mem, self.start, encoded)
    }
}

/// Where a loan's bytes are: a chunk of the pool, or (a loan too short to
/// be worth a reference: it travels in-line) private memory.
#[derive(Debug)]
pub(crate) enum LoanMem {
    Chunk(Held),
    Heap(Vec<u8>),
}

impl LoanMem {
    /// The bytes, laid out as a chunk's body.
    pub(crate) fn body_mut(&mut self) -> &mut [u8] {
        match self {
            LoanMem::Chunk(held) => held.body_mut(),
            LoanMem::Heap(v) => v,
        }
    }
}

/// A region the pool cut into chunks.
#[derive(Debug)]
pub(crate) struct Slab {
    /// The sender's handle (for its descriptor).
    region: MemoryRegion,
    /// Unique in this process: what links remember it by.
    key: u64,
    chunks: Arc<Chunks>,
    /// Whether the pool keeps it (a region made for one message when the
    /// pool had no room is not worth remembering on a link).
    pooled: bool,
}

impl Drop for Slab {
    /// Nothing in this process holds a chunk of it, and the pool let it go:
    /// no frame will refer to it again, so receivers may forget it.
    fn drop(&mut self) {
        self.region.retire();
    }
}

impl Slab {
    fn new(chunk: usize, n: usize, pooled: bool) -> Result<Slab, SendError> {
        let size = chunk
            .checked_mul(n)
            .ok_or_else(|| SendError::Region(RegionError(format!("{n} chunks of {chunk}"))))?;
        let region = MemoryRegion::new(size).map_err(SendError::Region)?;
        let map = Mapping::prefix(region.fd(), HEADER_SIZE + size)
            .map_err(|e| SendError::Region(RegionError(format!("cannot map a region: {e}"))))?;
        let chunks = Chunks::new(map, HEADER_SIZE, chunk).ok_or_else(|| {
            SendError::Region(RegionError("cannot cut a region into chunks".into()))
        })?;
        Ok(Slab {
            region,
            key: NEXT_SLAB.fetch_add(1, Ordering::Relaxed),
            chunks: Arc::new(chunks),
            pooled,
        })
    }

    /// Whether no chunk is held by anyone.
    #[cfg(test)]
    fn idle(&self) -> bool {
        (0..self.chunks.len()).all(|i| self.chunks.is_free(i))
    }

    fn bytes(&self) -> usize {
        self.chunks.len() * self.chunks.chunk_size()
    }
}

/// A chunk the sender holds (its count includes the sender's 1): written
/// by a loan or a large payload, then referred to by the frames that carry it.
#[derive(Debug)]
pub(crate) struct Held {
    chunk: ChunkMut,
    slab: Arc<Slab>,
}

impl Held {
    /// The chunk's body, to write.
    pub(crate) fn body_mut(&mut self) -> &mut [u8] {
        self.chunk.body_mut()
    }

    /// Where the chunk's count word is, among the region's user bytes.
    pub(crate) fn count_offset(&self) -> u64 {
        (self.chunk.offset() - HEADER_SIZE) as u64
    }

    /// Where the byte `at` of the body is, among the region's user bytes.
    pub(crate) fn body_offset(&self, at: usize) -> u64 {
        (self.chunk.offset() - HEADER_SIZE + CHUNK_HEADER + at) as u64
    }

    /// Counts one more holder, for a frame about to leave (before it does).
    pub(crate) fn add_ref(&self) {
        self.chunk.count().fetch_add(1, Ordering::AcqRel);
    }

    /// Takes back a count added for a frame that did not leave.
    pub(crate) fn drop_ref(&self) {
        self.chunk.count().fetch_sub(1, Ordering::AcqRel);
    }

    /// The region's descriptor, for the first frame a link carries from it.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.slab.region.fd()
    }

    /// What links remember the region by: `None` for one the pool does not keep.
    pub(crate) fn key(&self) -> Option<u64> {
        self.slab.pooled.then_some(self.slab.key)
    }
}

/// The regions an endpoint lends chunks of, kept mapped for reuse while it
/// keeps lending (the endpoint's background thread lets them go after
/// [`POOL_IDLE`]).
#[derive(Debug, Default)]
pub(crate) struct LoanPool {
    slabs: Mutex<Vec<(Arc<Slab>, usize)>>,
    /// When a chunk was last asked for.
    used: Mutex<Option<Instant>>,
    /// The coarse clock ([`coarse_ms`](crate::link::coarse_ms)) when `used`
    /// was last set: it is set again only once that moved (a few times a
    /// second at most, rather than a clock read per message).
    used_coarse: AtomicU64,
}

/// The chunk size (a power of two, at least [`MIN_CHUNK`]) for a body of
/// `need` bytes.
fn chunk_size(need: usize) -> Result<usize, SendError> {
    Ok(CHUNK_HEADER
        .checked_add(need)
        .and_then(usize::checked_next_power_of_two)
        .ok_or_else(|| SendError::Region(RegionError(format!("a payload of {need} bytes"))))?
        .max(MIN_CHUNK))
}

impl LoanPool {
    /// Lends `len` bytes that will arrive with format tag `format`.
    pub(crate) fn lend(&self, format: u16, len: usize, wait: Wait) -> Result<Loan, SendError> {
        self.lend_from(format, len, |need| self.take(need, wait).map(Some))?
            .ok_or_else(|| SendError::Region(RegionError("no chunk was taken".into())))
    }

    /// [`lend`](Self::lend) only when it need not wait: a free chunk, or a
    /// new region while the pool has room; `None` when every chunk of the
    /// size is held and the pool is full.
    pub(crate) fn try_lend(&self, format: u16, len: usize) -> Result<Option<Loan>, SendError> {
        self.lend_from(format, len, |need| {
            let chunk = chunk_size(need)?;
            self.touch();
            self.take_now(chunk)
        })
    }

    /// A loan of `len` bytes, its chunk (when it needs one) from `take`.
    fn lend_from(
        &self,
        format: u16,
        len: usize,
        take: impl FnOnce(usize) -> Result<Option<Held>, SendError>,
    ) -> Result<Option<Loan>, SendError> {
        let mut prefix = Vec::with_capacity(13);
        varint(u64::from(format), &mut prefix);
        varint(len as u64, &mut prefix);
        let need = DATA_OFFSET
            .checked_add(len)
            .ok_or_else(|| SendError::Region(RegionError(format!("a loan of {len} bytes"))))?;
        let start = DATA_OFFSET - prefix.len();
        // A loan shorter than a reference is worth travels in-line: no chunk.
        let mut mem = if DATA_OFFSET - start + len < super::outgoing::MULTICAST_BY_REF {
            LoanMem::Heap(vec![0; need])
        } else {
            match take(need)? {
                Some(held) => LoanMem::Chunk(held),
                None => return Ok(None),
            }
        };
        mem.body_mut()
            .get_mut(start..DATA_OFFSET)
            .ok_or_else(|| SendError::Region(RegionError("a chunk too small".into())))?
            .copy_from_slice(&prefix);
        Ok(Some(Loan {
            mem,
            start,
            len,
            format,
        }))
    }

    /// A chunk whose body holds `len` bytes, to write an encoded payload
    /// too large to travel in-line (or a multicast's) into.
    pub(crate) fn chunk_for(&self, len: usize, wait: Wait) -> Result<Held, SendError> {
        self.take(len, wait)
    }

    /// A free chunk with a body of at least `need` bytes: from a slab of its
    /// size, else from a new slab while the class and pool have room, else
    /// (waiting as `wait` says, at most [`CHUNK_WAIT`]) one that came back,
    /// else a region of its own.
    fn take(&self, need: usize, wait: Wait) -> Result<Held, SendError> {
        let chunk = chunk_size(need)?;
        self.touch();
        let deadline = match wait {
            Wait::No => None,
            Wait::Until(d) => Some(d.min(Instant::now() + CHUNK_WAIT)),
            Wait::Forever => Some(Instant::now() + CHUNK_WAIT),
        };
        let mut pause = Duration::from_micros(2);
        let mut abandoned = false;
        loop {
            if let Some(held) = self.take_now(chunk)? {
                return Ok(held);
            }
            match deadline {
                Some(d) if Instant::now() < d => {}
                Some(_) if !abandoned => {
                    // Nothing came back for a long while (a receiver may have
                    // crashed holding its counts): the pool forgets this
                    // size's regions (they live on while anyone holds them)
                    // and starts afresh.
                    abandoned = true;
                    self.slabs
                        .locked()
                        .retain(|(s, _)| s.chunks.chunk_size() != chunk);
                    continue;
                }
                _ => {
                    // The pool has no room: a region for this message alone.
                    let slab = Arc::new(Slab::new(chunk, 1, false)?);
                    let chunk = slab.chunks.claim(0).ok_or_else(|| {
                        SendError::Region(RegionError("a new chunk is taken".into()))
                    })?;
                    return Ok(Held { chunk, slab });
                }
            }
            // Receivers are behind: wait for one to give a chunk back.
            if pause < Duration::from_micros(100) {
                std::thread::yield_now();
                pause *= 2;
            } else {
                std::thread::sleep(pause);
            }
        }
    }

    /// Notes that the pool is in use (it is let go after [`POOL_IDLE`] without).
    fn touch(&self) {
        let coarse = crate::link::coarse_ms();
        if self.used_coarse.swap(coarse, Ordering::Relaxed) != coarse {
            *self.used.locked() = Some(Instant::now());
        }
    }

    /// A free chunk of `chunk` bytes, or one from a new slab while its
    /// class and the pool have room; `None` when neither.
    fn take_now(&self, chunk: usize) -> Result<Option<Held>, SendError> {
        let mut slabs = self.slabs.locked();
        if let Some(held) = Self::free_chunk(&mut slabs, chunk) {
            return Ok(Some(held));
        }
        let class: usize = slabs
            .iter()
            .filter(|(s, _)| s.chunks.chunk_size() == chunk)
            .map(|(s, _)| s.bytes())
            .sum();
        let total: usize = slabs.iter().map(|(s, _)| s.bytes()).sum();
        let n = (SLAB_BYTES / chunk).clamp(1, MAX_CHUNKS);
        let room = CLASS_BYTES.max(CLASS_MIN_CHUNKS.saturating_mul(chunk));
        if class + n * chunk <= room && total + n * chunk <= POOL_BYTES.max(room) {
            let slab = Arc::new(Slab::new(chunk, n, true)?);
            slabs.push((slab, 0));
            return Ok(Self::free_chunk(&mut slabs, chunk));
        }
        Ok(None)
    }

    /// A free chunk of `chunk` bytes from the slabs: a few looks on from
    /// where each slab last gave one (chunks come back about in the order
    /// they went, so the next one is usually free), then, if none was,
    /// every chunk (they are all busy or nearly: the receivers are behind).
    fn free_chunk(slabs: &mut [(Arc<Slab>, usize)], chunk: usize) -> Option<Held> {
        for probe in [Some(PROBES), None] {
            for (slab, cursor) in slabs.iter_mut() {
                if slab.chunks.chunk_size() != chunk {
                    continue;
                }
                let n = slab.chunks.len();
                for j in 0..probe.unwrap_or(n).min(n) {
                    let i = (*cursor + j) % n;
                    if let Some(c) = slab.chunks.claim(i) {
                        *cursor = (i + 1) % n;
                        return Some(Held {
                            chunk: c,
                            slab: slab.clone(),
                        });
                    }
                }
            }
        }
        None
    }

    /// How many regions the pool keeps.
    pub(crate) fn len(&self) -> usize {
        self.slabs.locked().len()
    }

    /// Lets every kept region go once nothing was lent for [`POOL_IDLE`]
    /// (one whose chunks receivers still hold lives on until they let go).
    /// When to call again (`None`: the pool is empty).
    pub(crate) fn trim(&self, now: Instant) -> Option<Instant> {
        let used = *self.used.locked();
        let mut slabs = self.slabs.locked();
        if slabs.is_empty() {
            return None;
        }
        let due = used.map_or(now, |t| t + POOL_IDLE);
        if now < due {
            return Some(due);
        }
        slabs.clear();
        None
    }
}

/// Appends `v` as a postcard (LEB128) varint.
fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BytesMessage, MessageBox, TypeUuid};

    #[test]
    fn try_lend_says_none_when_every_chunk_is_held_and_the_pool_is_full() {
        let pool = LoanPool::default();
        // 16 MiB loans: 32 MiB chunks, a class of CLASS_MIN_CHUNKS of them.
        let mut held = Vec::new();
        while let Some(loan) = pool.try_lend(0, 16 << 20).expect("try_lend") {
            held.push(loan);
            assert!(
                held.len() <= CLASS_MIN_CHUNKS,
                "the class grows past its room"
            );
        }
        assert_eq!(held.len(), CLASS_MIN_CHUNKS);
        drop(held.pop());
        assert!(pool.try_lend(0, 16 << 20).expect("try_lend").is_some());
        // Small loans need no chunk.
        assert!(pool.try_lend(0, 10).expect("try_lend").is_some());
    }

    #[test]
    fn a_loan_holds_a_bytes_message_as_postcard_encodes_it() {
        let pool = LoanPool::default();
        for (format, len) in [(0u16, 0usize), (1, 5), (300, 200), (u16::MAX, 70_000)] {
            let mut loan = pool.lend(format, len, Wait::No).expect("loan");
            for (i, b) in loan.as_mut_slice().iter_mut().enumerate() {
                *b = i as u8;
            }
            let (mut mem, start, encoded) = loan.into_parts();
            let bytes = mem.body_mut()[start..start + encoded].to_vec();
            let m = BytesMessage::decode(BytesMessage::TYPE_UUID, &bytes)
                .expect("decodes")
                .expect("known type");
            assert_eq!(m.format, format);
            assert_eq!(m.data, (0..len).map(|i| i as u8).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_chunk_is_reused_once_only_when_every_holder_let_go() {
        let pool = LoanPool::default();
        let held = pool.chunk_for(1000, Wait::No).expect("chunk");
        let first = (held.key(), held.count_offset());
        held.add_ref(); // a receiver holds it
        drop(held);
        let other = pool.chunk_for(1000, Wait::No).expect("chunk");
        assert_eq!(other.key(), first.0, "same slab");
        assert_ne!(
            other.count_offset(),
            first.1,
            "a busy chunk is not lent again"
        );
        drop(other);
        // The receiver lets go.
        let slabs = pool.slabs.locked();
        let (slab, _) = &slabs[0];
        let i = first.1 as usize / slab.chunks.chunk_size();
        slab.chunks
            .count(i)
            .expect("count")
            .fetch_sub(1, Ordering::Release);
        assert!(slab.idle());
        drop(slabs);
        assert_eq!(pool.len(), 1);
        assert_eq!(pool.trim(Instant::now() + POOL_IDLE), None, "idle slabs go");
        assert_eq!(pool.len(), 0);
    }
}
