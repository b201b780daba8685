//! The writing end of a ring: [`Producer`] and the room it reserves for
//! one frame, [`Grant`].

use super::wait::spin_until;
use super::{
    invalid, padded, record, Memory, PushError, RingError, Shm, Word32, Word64, AWAKE,
    DEFAULT_SPIN, KIND_FRAME, KIND_PAD, RECORD, SLEEPING,
};
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

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
    /// Whether a light fence may stand in for the full one after a publish
    /// when the consumer promised a heavy barrier (this process is
    /// registered for it).
    light: bool,
    /// Whether we promised the consumer a heavy barrier before we wait for
    /// room ([`Memory::room_barrier`]).
    heavy: bool,
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
        let barriers = mem.barriers();
        // Our promise to a consumer that releases room with a light fence.
        mem.room_barrier()
            .store(u32::from(barriers.heavy), Ordering::Relaxed);
        Ok(Producer {
            mem,
            cap,
            tail,
            head,
            futex_wake: true,
            owed_wake: false,
            spin: DEFAULT_SPIN,
            light: barriers.light,
            heavy: barriers.heavy,
            broken: None,
        })
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
        let (_, pad, need) = self.place(len)?;
        if self.free() < pad + need {
            self.refresh_head()?;
        }
        Ok(self.free() >= pad + need)
    }

    /// Where a frame of `len` bytes would go: the offset of the tail in the
    /// data area, the padding to the end of it that must come first (0 when
    /// the frame fits before the end), and the record's size. Refuses a
    /// broken ring and a frame larger than any the ring can hold.
    fn place(&self, len: usize) -> Result<(u64, u64, u64), PushError> {
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
        Ok((off, pad, need))
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
            // Kept to our promise: a consumer that releases with a light
            // fence is ordered by this one. If it cannot be issued, we
            // must not sleep: look again as if woken.
            if self.heavy && !self.mem.heavy_barrier() {
                self.mem.room().swap(AWAKE, Ordering::Relaxed);
                return self.has_room(len);
            }
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

    /// Reserves room for a frame of `len` bytes, to be filled in place and
    /// then published with [`Grant::commit`]. A grant dropped without
    /// `commit` publishes nothing.
    ///
    /// When the frame does not fit before the end of the data area and the
    /// ring has room only for the padding, the padding alone is published
    /// (and `Full` returned), so that a frame of up to `max_frame_len` bytes
    /// always fits once the consumer has caught up.
    pub(crate) fn reserve(&mut self, len: usize) -> Result<Grant<'_, M>, PushError> {
        let (off, pad, need) = self.place(len)?;
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
    /// after a store to `tail` or the closed flag, fence (a light fence
    /// when the consumer promised a heavy barrier before it sleeps), then
    /// look at the flag. The swap releases what we published to a consumer
    /// that reads the 0 it leaves. Whether the consumer slept (and was
    /// woken, unless waking is the caller's: [`Producer::set_external_wake`]).
    fn wake_if_sleeping(&self) -> bool {
        if !(self.light && self.mem.light_fence(self.mem.sleep_barrier())) {
            self.mem.fence();
        }
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

/// What only the tests and the loom models use: a data link fills its
/// frames in place ([`Grant::bytes_mut`]).
#[cfg(test)]
impl<M: Memory> Producer<M> {
    /// Bytes in the data area.
    pub(crate) fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// Sets how long [`Producer::wait_room`] spins before it sleeps (zero:
    /// never spins; the loom models, which have no clock, need that).
    #[cfg(loom)]
    pub(crate) fn set_spin(&mut self, spin: Duration) {
        self.spin = spin;
    }

    /// Copies `bytes` into the ring as one frame and publishes it (waking
    /// the consumer if it sleeps).
    pub(crate) fn try_push(&mut self, bytes: &[u8]) -> Result<(), PushError> {
        let mut grant = self.reserve(bytes.len())?;
        grant.write_with(|buf| buf.copy_from_slice(bytes));
        grant.commit();
        Ok(())
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

/// What only the tests and the loom models use.
#[cfg(test)]
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
