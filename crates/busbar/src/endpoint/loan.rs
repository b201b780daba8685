//! Zero-copy sends: a buffer lent in shared memory, filled in place, and
//! sent without a copy ([`EndpointSender::loan`](super::EndpointSender::loan)).
//!
//! A loan is a [`MemoryRegion`] from a small pool the endpoint keeps, mapped
//! once and reused once every receiver has dropped its message. Its bytes
//! hold a [`BytesMessage`] exactly as postcard encodes it: the format and
//! length prefix end at [`DATA_OFFSET`], where the caller's bytes start (so
//! they are 64-byte aligned). Receivers map the same memory: a plain `recv`
//! of `BytesMessage` decodes it as usual (one copy, into its `Vec`), a
//! borrowing receive ([`recv_with`](super::EndpointReceiver::recv_with))
//! reads it in place.

use crate::error::SendError;
use crate::sync::Lock;
use crate::{MemoryRegion, RegionError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the lent bytes start in the region.
pub(crate) const DATA_OFFSET: usize = 64;

/// The most regions the pool keeps.
const POOL_REGIONS: usize = 16;

/// The most bytes the pool keeps.
const POOL_BYTES: usize = 256 << 20;

/// The smallest region a loan takes (smaller loans share its size class).
const MIN_REGION: usize = 4096;

/// How long the pool keeps regions nobody asked for: after that it lets
/// them all go (the memory returns to the system once receivers drop theirs).
pub(crate) const POOL_IDLE: Duration = Duration::from_secs(1);

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
    /// `None` only once the loan was taken apart.
    region: Option<MemoryRegion>,
    /// Where the encoded payload (prefix and bytes) starts.
    start: usize,
    len: usize,
    format: u16,
    pool: Arc<LoanPool>,
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
    /// region is new: a reused one holds what an earlier loan left there.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let range = DATA_OFFSET..DATA_OFFSET + self.len;
        match self.region.as_mut() {
            // The region was mapped whole when it was made, and holds the range.
            Some(r) => r.map(range).unwrap_or_default(),
            None => &mut [],
        }
    }

    /// The region, where the encoded payload lies in it (offset, length),
    /// and the pool to give the region back to.
    pub(crate) fn into_parts(mut self) -> Option<(MemoryRegion, usize, usize, Arc<LoanPool>)> {
        let region = self.region.take()?;
        let encoded = DATA_OFFSET - self.start + self.len;
        Some((region, self.start, encoded, self.pool.clone()))
    }
}

impl Drop for Loan {
    fn drop(&mut self) {
        if let Some(region) = self.region.take() {
            self.pool.give_back(region);
        }
    }
}

/// The regions an endpoint lends, kept mapped for reuse while it keeps
/// lending (the endpoint's background thread lets them go after
/// [`POOL_IDLE`]).
#[derive(Debug, Default)]
pub(crate) struct LoanPool {
    free: Mutex<Vec<MemoryRegion>>,
    /// When a region was last asked for.
    used: Mutex<Option<Instant>>,
}

impl LoanPool {
    /// Lends `len` bytes that will arrive with format tag `format`.
    pub(crate) fn lend(self: &Arc<Self>, format: u16, len: usize) -> Result<Loan, SendError> {
        let mut prefix = Vec::with_capacity(13);
        varint(u64::from(format), &mut prefix);
        varint(len as u64, &mut prefix);
        let need = DATA_OFFSET
            .checked_add(len)
            .ok_or_else(|| SendError::Region(RegionError(format!("a loan of {len} bytes"))))?;
        let mut region = self.take(need)?;
        let start = DATA_OFFSET - prefix.len();
        region
            .map(start..DATA_OFFSET)
            .map_err(SendError::Region)?
            .copy_from_slice(&prefix);
        Ok(Loan {
            region: Some(region),
            start,
            len,
            format,
            pool: self.clone(),
        })
    }

    /// Copies an encoded payload too large to travel in-line into a region
    /// (the plain `send` of a large message): the region and the offset.
    pub(crate) fn lend_bytes(&self, bytes: &[u8]) -> Result<(MemoryRegion, usize), SendError> {
        let need = DATA_OFFSET.checked_add(bytes.len()).ok_or_else(|| {
            SendError::Region(RegionError(format!("a payload of {} bytes", bytes.len())))
        })?;
        let mut region = self.take(need)?;
        region
            .map(DATA_OFFSET..need)
            .map_err(SendError::Region)?
            .copy_from_slice(bytes);
        Ok((region, DATA_OFFSET))
    }

    /// A free region of at least `need` bytes (at most four times that), or a new one.
    fn take(&self, need: usize) -> Result<MemoryRegion, SendError> {
        *self.used.locked() = Some(Instant::now());
        {
            let mut free = self.free.locked();
            let fits = |r: &MemoryRegion| {
                // Only our handle counts: every receiver dropped its message.
                r.ref_count() == 1 && r.size() >= need && r.size() / 4 <= need.max(MIN_REGION)
            };
            if let Some(i) = free.iter().position(fits) {
                return Ok(free.swap_remove(i));
            }
        }
        let size = need
            .max(MIN_REGION)
            .checked_next_power_of_two()
            .unwrap_or(need);
        let mut region = MemoryRegion::new(size).map_err(SendError::Region)?;
        // Mapped whole once, here: every later loan of it writes without a page fault.
        region.map(..).map_err(SendError::Region)?;
        Ok(region)
    }

    /// Keeps a region (still mapped) for a later loan: busy ones too, since
    /// receivers will drop theirs; the oldest go when the pool is full.
    pub(crate) fn give_back(&self, region: MemoryRegion) {
        let mut free = self.free.locked();
        free.push(region);
        while free.len() > POOL_REGIONS || free.iter().map(|r| r.size()).sum::<usize>() > POOL_BYTES
        {
            free.remove(0);
        }
    }
}

impl LoanPool {
    /// How many regions the pool keeps.
    pub(crate) fn len(&self) -> usize {
        self.free.locked().len()
    }

    /// Lets every kept region go once nothing was lent for [`POOL_IDLE`].
    /// When to call again (`None`: the pool is empty).
    pub(crate) fn trim(&self, now: Instant) -> Option<Instant> {
        let used = *self.used.locked();
        let mut free = self.free.locked();
        if free.is_empty() {
            return None;
        }
        let due = used.map_or(now, |t| t + POOL_IDLE);
        if now < due {
            return Some(due);
        }
        free.clear();
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
    fn a_loan_holds_a_bytes_message_as_postcard_encodes_it() {
        let pool = Arc::new(LoanPool::default());
        for (format, len) in [(0u16, 0usize), (1, 5), (300, 200), (u16::MAX, 70_000)] {
            let mut loan = pool.lend(format, len).expect("loan");
            for (i, b) in loan.as_mut_slice().iter_mut().enumerate() {
                *b = i as u8;
            }
            let (mut region, start, encoded, _) = loan.into_parts().expect("parts");
            let bytes = region.map(start..start + encoded).expect("map").to_vec();
            let m = BytesMessage::decode(BytesMessage::TYPE_UUID, &bytes)
                .expect("decodes")
                .expect("known type");
            assert_eq!(m.format, format);
            assert_eq!(m.data, (0..len).map(|i| i as u8).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_region_is_reused_once_only_the_pool_holds_it() {
        let pool = Arc::new(LoanPool::default());
        let (region, ..) = pool
            .lend(0, 10_000)
            .expect("loan")
            .into_parts()
            .expect("parts");
        let held = region.clone(); // a receiver still holds it
        pool.give_back(region);
        let (other, ..) = pool
            .lend(0, 10_000)
            .expect("loan")
            .into_parts()
            .expect("parts");
        assert_eq!(other.ref_count(), 1, "a busy region is not lent again");
        drop(held);
        pool.give_back(other);
        let (again, ..) = pool
            .lend(0, 9_000)
            .expect("loan")
            .into_parts()
            .expect("parts");
        assert_eq!(again.ref_count(), 1);
        assert_eq!(
            pool.free.lock().expect("pool").len(),
            1,
            "one of the two was reused"
        );
    }
}
