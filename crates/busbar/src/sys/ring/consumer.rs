//! The reading end of a ring: [`Consumer`].

use super::{
    invalid, padded, Memory, RingError, Shm, Word32, Word64, AWAKE, KIND_FRAME, KIND_PAD, RECORD,
    SLEEPING,
};
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::Ordering;
#[cfg(test)]
use {
    super::{wait::spin_until, DEFAULT_SPIN},
    std::time::{Duration, Instant},
};

/// The reading end of a ring.
#[derive(Debug)]
pub(crate) struct Consumer<M: Memory = Shm> {
    mem: M,
    /// Our own copy of the capacity.
    cap: u64,
    /// Our own copy of the consumer index: what we released.
    head: u64,
    /// The producer index as last loaded and checked.
    tail: u64,
    /// How long `wait` spins before it sleeps.
    #[cfg(test)]
    spin: Duration,
    /// Whether a light fence may stand in for the full one after a release
    /// when the producer promised a heavy barrier (this process is
    /// registered for it).
    light: bool,
    /// Whether we promised the producer a heavy barrier before we sleep
    /// ([`Memory::sleep_barrier`]).
    heavy: bool,
    /// Why the ring is unusable, once it is.
    broken: Option<&'static str>,
    /// Whether the reading end went to another process (see
    /// [`Consumer::hand_over`]): then dropping it does not tell the
    /// producer that nobody reads.
    handed_over: bool,
}

impl<M: Memory> Drop for Consumer<M> {
    fn drop(&mut self) {
        if !self.handed_over {
            // Tells the producer not to fill a ring nobody reads.
            self.mem.gone().store(1, Ordering::Release);
        }
    }
}

/// Where the next frame is: payload offset, payload length, record length.
#[derive(Debug, Clone, Copy)]
struct Next {
    off: usize,
    len: usize,
    need: u64,
}

impl Consumer<Shm> {
    /// Opens the reading end of the ring in `fd`, checking its seals, size
    /// and header (`InvalidData` when they are wrong).
    pub(crate) fn open(fd: BorrowedFd<'_>) -> io::Result<Consumer> {
        Consumer::from_memory(Shm::open(fd)?).map_err(invalid)
    }

    /// The address range of the data area.
    #[cfg(test)]
    pub(super) fn data_range(&self) -> std::ops::Range<usize> {
        self.mem.data_range()
    }
}

impl<M: Memory> Consumer<M> {
    /// The reading end over `mem`, starting from the consumer index in it.
    pub(crate) fn from_memory(mem: M) -> Result<Self, RingError> {
        let cap = mem.capacity() as u64;
        let head = mem.head().load(Ordering::Acquire);
        if head % RECORD as u64 != 0 {
            return Err(RingError::Corrupt("consumer index not 8-aligned"));
        }
        let barriers = mem.barriers();
        // Our promise to the producer, which publishes with a light fence
        // while it holds. (A consumer before us that promised it too took
        // it back before it handed the ring over: `hand_over`.)
        mem.sleep_barrier()
            .store(u32::from(barriers.heavy), Ordering::Relaxed);
        Ok(Consumer {
            mem,
            cap,
            head,
            tail: head,
            #[cfg(test)]
            spin: DEFAULT_SPIN,
            light: barriers.light,
            heavy: barriers.heavy,
            broken: None,
            handed_over: false,
        })
    }

    /// Lets go of this reading end without telling the producer: another
    /// process opens the ring again (its memfd travelled there) and goes on
    /// from the consumer index in shared memory, which holds everything
    /// released so far.
    pub(crate) fn hand_over(mut self) {
        self.handed_over = true;
        if self.heavy {
            // The next reader may not be able to keep our promise. Take it
            // back, and make sure the producer sees that before it publishes
            // anything the next reader relies on: a publish whose look at
            // the promise comes after our barrier sees it withdrawn (and
            // fences in full); one whose look came before it had stored its
            // index before that, so the index is visible to whoever reads
            // after our barrier (the next reader, whom the ring reaches
            // through a message we send after this).
            self.mem.sleep_barrier().store(0, Ordering::Relaxed);
            self.mem.fence();
            self.mem.heavy_barrier();
        }
    }

    /// Reads the next frame in place: runs `f` over its bytes, then releases
    /// its room to the producer. `Ok(None)` when there is none yet;
    /// `Err(Closed)` when there is none and never will be.
    pub(crate) fn try_pop_with<R>(
        &mut self,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, RingError> {
        match self.next()? {
            Some(next) => self.take(next, f).map(Some),
            None => Ok(None),
        }
    }

    /// Whether `try_pop_with` has something to say: a record, or the close.
    fn ready(&mut self) -> Result<bool, RingError> {
        if let Some(why) = self.broken {
            return Err(RingError::Corrupt(why));
        }
        if self.head != self.tail {
            return Ok(true);
        }
        self.refresh_tail()?;
        Ok(self.head != self.tail || self.mem.closed().load(Ordering::Acquire) != 0)
    }

    fn fail(&mut self, why: &'static str) -> RingError {
        self.broken = Some(why);
        RingError::Corrupt(why)
    }

    /// Loads and checks the producer index: 8-aligned, not behind our index,
    /// at most the capacity ahead of it, and not behind what it was before.
    fn refresh_tail(&mut self) -> Result<(), RingError> {
        let tail = self.mem.tail().load(Ordering::Acquire);
        let avail = tail.wrapping_sub(self.head);
        if avail > self.cap {
            return Err(
                self.fail("producer index behind the consumer's or more than the capacity ahead")
            );
        }
        if tail % RECORD as u64 != 0 {
            return Err(self.fail("producer index not 8-aligned"));
        }
        if avail < self.tail.wrapping_sub(self.head) {
            return Err(self.fail("producer index moved backwards"));
        }
        self.tail = tail;
        Ok(())
    }

    /// Releases `need` bytes to the producer, and wakes it if it waits for room.
    fn release(&mut self, need: u64) {
        self.head = self.head.wrapping_add(need);
        self.mem.head().store(self.head, Ordering::Release);
        // The consumer's half of the producer's handshake (`wait_room`): a
        // light fence when it promised a heavy barrier before it sleeps.
        if !(self.light && self.mem.light_fence(self.mem.room_barrier())) {
            self.mem.fence();
        }
        let flag = self.mem.room();
        if flag.load(Ordering::Relaxed) != AWAKE && flag.swap(AWAKE, Ordering::AcqRel) != AWAKE {
            self.mem.wake_room();
        }
    }

    /// The first half of sleeping somewhere else than on this ring's futex
    /// (with many rings, on an eventfd their producers ring when
    /// [`Grant::commit`](super::producer::Grant::commit) says so): raises
    /// the flag, fences (and issues the heavy barrier it promised), and
    /// looks again. `Ok(true)` when there is something to read after all
    /// (the flag is down again: do not sleep); `Ok(false)` when the caller
    /// may sleep, and must call [`Consumer::awake`] when it wakes.
    pub(crate) fn prepare_sleep(&mut self) -> Result<bool, RingError> {
        self.mem.sleeping().swap(SLEEPING, Ordering::Relaxed);
        let ready = self.look_after_raising();
        if !matches!(ready, Ok(false)) {
            self.mem.sleeping().swap(AWAKE, Ordering::Relaxed);
        }
        ready
    }

    /// The rest of our half of the handshake, once the flag is up: fence,
    /// and the heavy barrier we promised (a producer may publish with a
    /// light fence), then look again. When the barrier cannot be issued,
    /// says there is something to look at, so that the caller does not
    /// sleep on a flag the producer may not have seen.
    fn look_after_raising(&mut self) -> Result<bool, RingError> {
        self.mem.fence();
        if self.heavy && !self.mem.heavy_barrier() {
            return Ok(true);
        }
        self.ready()
    }

    /// The consumer woke (after [`Consumer::prepare_sleep`]): lowers the flag.
    pub(crate) fn awake(&mut self) {
        // Reading the 0 a waking producer left synchronizes with it.
        self.mem.sleeping().swap(AWAKE, Ordering::AcqRel);
    }

    /// Runs `f` over the next frame in place without releasing it: the
    /// next `try_pop_with` sees the same frame. `Ok(None)` when there is none.
    pub(crate) fn peek_with<R>(
        &mut self,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, RingError> {
        match self.next()? {
            Some(next) => match self.mem.read(next.off, next.len, f) {
                Some(out) => Ok(Some(out)),
                None => Err(self.fail("frame outside the data area")),
            },
            None => Ok(None),
        }
    }

    /// Finds and checks the next frame, skipping padding.
    fn next(&mut self) -> Result<Option<Next>, RingError> {
        if let Some(why) = self.broken {
            return Err(RingError::Corrupt(why));
        }
        // Padding is never at offset 0, so two records are enough to find a frame.
        for _ in 0..2 {
            if self.head == self.tail {
                self.refresh_tail()?;
                if self.head == self.tail {
                    if self.mem.closed().load(Ordering::Acquire) == 0 {
                        return Ok(None);
                    }
                    // Everything published before the close is visible now.
                    self.refresh_tail()?;
                    if self.head == self.tail {
                        return Err(RingError::Closed);
                    }
                }
            }
            let avail = self.tail.wrapping_sub(self.head);
            let off = (self.head & (self.cap - 1)) as usize;
            let room = self.cap as usize - off;
            let Some(word) = self.mem.load_record(off) else {
                return Err(self.fail("record header outside the data area"));
            };
            let kind = (word >> 32) as u32;
            let len = (word & u64::from(u32::MAX)) as usize;
            match kind {
                KIND_FRAME => {
                    if len > self.cap as usize - RECORD {
                        return Err(self.fail("frame longer than the ring"));
                    }
                    let need = RECORD + padded(len);
                    if need > room {
                        return Err(self.fail("frame runs past the end of the data area"));
                    }
                    if need as u64 > avail {
                        return Err(self.fail("frame runs past the producer index"));
                    }
                    return Ok(Some(Next {
                        off: off + RECORD,
                        len,
                        need: need as u64,
                    }));
                }
                KIND_PAD => {
                    if off == 0 {
                        return Err(self.fail("padding at the start of the data area"));
                    }
                    if len != room {
                        return Err(self.fail("padding does not end at the end of the data area"));
                    }
                    if len as u64 > avail {
                        return Err(self.fail("padding runs past the producer index"));
                    }
                    self.release(len as u64);
                }
                _ => return Err(self.fail("unknown record kind")),
            }
        }
        Err(self.fail("padding after padding"))
    }

    /// Runs `f` over the frame at `next`, then releases it.
    fn take<R>(&mut self, next: Next, f: impl FnOnce(&[u8]) -> R) -> Result<R, RingError> {
        let Some(out) = self.mem.read(next.off, next.len, f) else {
            return Err(self.fail("frame outside the data area"));
        };
        self.release(next.need);
        Ok(out)
    }
}

/// The single-ring wait and the rest that only the tests and the loom
/// models use: a data link sleeps on all its rings at once
/// ([`Consumer::prepare_sleep`]).
#[cfg(test)]
impl<M: Memory> Consumer<M> {
    /// Bytes in the data area.
    pub(crate) fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// Sets how long [`Consumer::wait`] spins before it sleeps (zero: never spins).
    pub(crate) fn set_spin(&mut self, spin: Duration) {
        self.spin = spin;
    }

    /// As [`Consumer::try_pop_with`], but waits up to `timeout` for a frame
    /// ([`Consumer::wait`]). `Ok(None)` when none came in time.
    pub(crate) fn pop_wait_with<R>(
        &mut self,
        timeout: Duration,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, RingError> {
        let start = Instant::now();
        loop {
            if let Some(next) = self.next()? {
                return self.take(next, f).map(Some);
            }
            if !self.wait(timeout.saturating_sub(start.elapsed()))? {
                return Ok(None);
            }
        }
    }

    /// Waits up to `timeout` until the producer has published something or
    /// closed the ring: spins for a while (see [`Consumer::set_spin`]), then
    /// sleeps on the futex, so an idle consumer uses no CPU. `Ok(true)` when
    /// there is something for `try_pop_with` to look at, `Ok(false)` on
    /// timeout.
    pub(crate) fn wait(&mut self, timeout: Duration) -> Result<bool, RingError> {
        if self.ready()? {
            return Ok(true);
        }
        let start = Instant::now();
        if spin_until(start, self.spin.min(timeout), || self.ready())? {
            return Ok(true);
        }
        loop {
            // The consumer's half of the handshake: flag, fence, look again.
            // Swaps rather than stores: an RMW reads the latest value, so the
            // flag's changes form one chain. C11 would order a plain store
            // after the producer's swap too, but loom keeps only a partial
            // modification order and reports a false lost wake-up without it.
            self.mem.sleeping().swap(SLEEPING, Ordering::Relaxed);
            let ready = self.look_after_raising();
            if !matches!(ready, Ok(false)) {
                self.mem.sleeping().swap(AWAKE, Ordering::Relaxed);
                return ready;
            }
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                self.mem.sleeping().swap(AWAKE, Ordering::Relaxed);
                return Ok(false);
            }
            self.mem.wait(left);
            // Reading the 0 a waking producer left synchronizes with it.
            self.mem.sleeping().swap(AWAKE, Ordering::AcqRel);
            if self.ready()? {
                return Ok(true);
            }
        }
    }
}
