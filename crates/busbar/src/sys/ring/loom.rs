//! Loom models of the ring's ordering: the same [`Producer`] and
//! [`Consumer`] over a model [`Memory`] whose data area is one loom
//! `UnsafeCell` per 8-byte word (so loom flags any read of a record that is
//! not ordered after its write, and any overwrite not ordered after its
//! read) and whose futex is a mutex and condvar (so a lost wake-up is a
//! deadlock, which loom reports). The asymmetric fences (`barrier.rs`) are a
//! lock: a light fence holds it while it loads the other side's promise, a
//! heavy barrier takes it after its full fence, so one of the two comes
//! first and orders what is before it against what is after the other. That
//! is weaker than membarrier, which cuts the light side's program at any
//! point: a cut anywhere orders the publishing store and the look at the
//! flag at least as well as one at the light fence, the only place the
//! model cuts. Two light fences order nothing (the model's two directions
//! have a lock each). Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p busbar --release --lib sys::ring`.

use super::barrier::Barriers;
use super::{
    padded, Consumer, Memory, Producer, PushError, RingError, Word32, Word64, AWAKE, RECORD,
    SLEEPING,
};
use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicU32 as LoomU32, AtomicU64 as LoomU64};
use loom::sync::{Arc, Condvar, Mutex};
use std::sync::atomic::Ordering;
use std::time::Duration;

impl Word64 for LoomU64 {
    fn load(&self, order: Ordering) -> u64 {
        LoomU64::load(self, order)
    }
    fn store(&self, value: u64, order: Ordering) {
        LoomU64::store(self, value, order)
    }
    fn compare_exchange(
        &self,
        current: u64,
        new: u64,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u64, u64> {
        LoomU64::compare_exchange(self, current, new, success, failure)
    }
}

impl Word32 for LoomU32 {
    fn load(&self, order: Ordering) -> u32 {
        LoomU32::load(self, order)
    }
    fn store(&self, value: u32, order: Ordering) {
        LoomU32::store(self, value, order)
    }
    fn swap(&self, value: u32, order: Ordering) -> u32 {
        LoomU32::swap(self, value, order)
    }
}

/// The data area, one cell per 8-byte word.
struct Words(Vec<UnsafeCell<u64>>);

// SAFETY: the cells are shared between the model's producer and consumer
// threads on purpose: loom tracks every access to each of them and fails
// the model on any pair that is not ordered by happens-before.
unsafe impl Sync for Words {}

struct Inner {
    tail: LoomU64,
    head: LoomU64,
    sleeping: LoomU32,
    closed: LoomU32,
    room: LoomU32,
    gone: LoomU32,
    sleep_barrier: LoomU32,
    room_barrier: LoomU32,
    words: Words,
    /// The futex: a waiter checks the word and sleeps under this lock, a
    /// waker notifies under it, as the kernel does with its hash bucket.
    lock: Mutex<()>,
    cv: Condvar,
    /// The asymmetric fence of the consumer's wake-up: the producer's
    /// light fence after a publish, the consumer's heavy barrier before it sleeps.
    wake_barrier: Mutex<()>,
    /// The asymmetric fence of the producer's wait for room: the
    /// consumer's light fence after a release, the producer's heavy barrier.
    room_lock: Mutex<()>,
}

/// One side's view of the ring: the shared model, and what that side's
/// process can do with asymmetric fences.
#[derive(Clone)]
struct Model {
    shared: Arc<Inner>,
    barriers: Barriers,
    /// Whether this is the producer's view (its light fences and heavy
    /// barriers are the room's; the consumer's are the wake-up's).
    producer: bool,
}

impl Model {
    /// The cells covering `len` bytes at `off` (8-aligned), if inside the data area.
    fn cells(&self, off: usize, len: usize) -> Option<&[UnsafeCell<u64>]> {
        if off % RECORD != 0 {
            return None;
        }
        self.shared
            .words
            .0
            .get(off / RECORD..(off + padded(len)) / RECORD)
    }
}

impl Memory for Model {
    type U64 = LoomU64;
    type U32 = LoomU32;

    fn tail(&self) -> &LoomU64 {
        &self.shared.tail
    }
    fn head(&self) -> &LoomU64 {
        &self.shared.head
    }
    fn sleeping(&self) -> &LoomU32 {
        &self.shared.sleeping
    }
    fn closed(&self) -> &LoomU32 {
        &self.shared.closed
    }
    fn room(&self) -> &LoomU32 {
        &self.shared.room
    }
    fn gone(&self) -> &LoomU32 {
        &self.shared.gone
    }
    fn sleep_barrier(&self) -> &LoomU32 {
        &self.shared.sleep_barrier
    }
    fn room_barrier(&self) -> &LoomU32 {
        &self.shared.room_barrier
    }
    fn barriers(&self) -> Barriers {
        self.barriers
    }
    fn light_fence(&self, promise: &LoomU32) -> bool {
        let lock = if self.producer {
            &self.shared.wake_barrier
        } else {
            &self.shared.room_lock
        };
        let _held = lock.lock().expect("barrier");
        promise.load(Ordering::Relaxed) != 0
    }
    fn heavy_barrier(&self) -> bool {
        // membarrier is a full fence in the caller too.
        loom::sync::atomic::fence(Ordering::SeqCst);
        let lock = if self.producer {
            &self.shared.room_lock
        } else {
            &self.shared.wake_barrier
        };
        drop(lock.lock().expect("barrier"));
        true
    }
    fn capacity(&self) -> usize {
        self.shared.words.0.len() * RECORD
    }

    fn load_record(&self, off: usize) -> Option<u64> {
        let cell = self.cells(off, RECORD)?.first()?;
        // SAFETY: loom checks that this read is ordered after the write
        // of the record (and before any overwrite); it fails the model otherwise.
        Some(cell.with(|word| unsafe { *word }))
    }

    fn store_record(&mut self, off: usize, word: u64) -> Option<()> {
        let cell = self.cells(off, RECORD)?.first()?;
        // SAFETY: loom checks that no read or write of this cell races with it.
        cell.with_mut(|w| unsafe { *w = word });
        Some(())
    }

    fn read<R>(&self, off: usize, len: usize, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let mut bytes = Vec::new();
        for cell in self.cells(off, len)? {
            // SAFETY: as in `load_record`.
            bytes.extend(cell.with(|w| unsafe { *w }).to_ne_bytes());
        }
        Some(f(&bytes[..len]))
    }

    fn write<R>(&mut self, off: usize, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> Option<R> {
        let cells = self.cells(off, len)?;
        let mut bytes = vec![0; padded(len)];
        let out = f(&mut bytes[..len]);
        for (cell, chunk) in cells.iter().zip(bytes.chunks_exact(RECORD)) {
            let word = u64::from_ne_bytes(chunk.try_into().expect("8 bytes"));
            // SAFETY: as in `store_record`.
            cell.with_mut(|w| unsafe { *w = word });
        }
        Some(out)
    }

    fn wait(&self, _timeout: Duration) {
        // No timeout in the model: a missed wake-up must show as a deadlock.
        let guard = self.shared.lock.lock().expect("lock");
        if self.shared.sleeping.load(Ordering::Acquire) == SLEEPING {
            drop(self.shared.cv.wait(guard).expect("wait"));
        }
    }

    fn wake(&self) {
        let _guard = self.shared.lock.lock().expect("lock");
        self.shared.cv.notify_all();
    }

    fn wait_room(&self, _timeout: Duration) {
        let guard = self.shared.lock.lock().expect("lock");
        if self.shared.room.load(Ordering::Acquire) == SLEEPING {
            drop(self.shared.cv.wait(guard).expect("wait"));
        }
    }

    fn wake_room(&self) {
        let _guard = self.shared.lock.lock().expect("lock");
        self.shared.cv.notify_all();
    }

    fn fence(&self) {
        loom::sync::atomic::fence(Ordering::SeqCst);
    }
}

/// Both processes can issue membarrier and registered for it: the
/// protocol with light fences on the fast paths.
const FULL: Barriers = Barriers {
    light: true,
    heavy: true,
};

/// A process without membarrier: full fences only.
const NONE: Barriers = Barriers {
    light: false,
    heavy: false,
};

fn model_pair(capacity: usize) -> (Producer<Model>, Consumer<Model>) {
    let (p, c, _) = model_pair_with(capacity, FULL, FULL);
    (p, c)
}

/// A ring whose producer's and consumer's processes can do `p` and `c`
/// with asymmetric fences.
fn model_pair_with(
    capacity: usize,
    p: Barriers,
    c: Barriers,
) -> (Producer<Model>, Consumer<Model>, Arc<Inner>) {
    let shared = Arc::new(Inner {
        tail: LoomU64::new(0),
        head: LoomU64::new(0),
        sleeping: LoomU32::new(AWAKE),
        closed: LoomU32::new(0),
        room: LoomU32::new(AWAKE),
        gone: LoomU32::new(0),
        sleep_barrier: LoomU32::new(0),
        room_barrier: LoomU32::new(0),
        words: Words((0..capacity / RECORD).map(|_| UnsafeCell::new(0)).collect()),
        lock: Mutex::new(()),
        cv: Condvar::new(),
        wake_barrier: Mutex::new(()),
        room_lock: Mutex::new(()),
    });
    let mut producer = Producer::from_memory(Model {
        shared: shared.clone(),
        barriers: p,
        producer: true,
    })
    .expect("producer");
    producer.set_spin(Duration::ZERO);
    let mut consumer = Consumer::from_memory(consumer_view(&shared, c)).expect("consumer");
    consumer.set_spin(Duration::ZERO);
    (producer, consumer, shared)
}

/// The consumer's view of `shared`, in a process that can do `c`.
fn consumer_view(shared: &Arc<Inner>, c: Barriers) -> Model {
    Model {
        shared: shared.clone(),
        barriers: c,
        producer: false,
    }
}

fn push_all(p: &mut Producer<Model>, frames: &[Vec<u8>]) {
    for f in frames {
        loop {
            match p.try_push(f) {
                Ok(()) => break,
                Err(PushError::Full) => loom::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
    }
}

/// Pops `n` frames, sleeping (not spinning) whenever the ring is empty.
fn pop_n(c: &mut Consumer<Model>, n: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    while got.len() < n {
        match c.try_pop_with(|b| b.to_vec()) {
            Ok(Some(f)) => got.push(f),
            Ok(None) => assert_eq!(c.wait(Duration::from_secs(3600)), Ok(true)),
            Err(e) => panic!("{e}"),
        }
    }
    got
}

fn check(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

/// Three frames through a 32-byte ring: the second and third each need a
/// padding record and reuse space the consumer released. Every frame
/// arrives whole and in order, and the close comes after the last.
#[test]
fn loom_frames_wrap_in_order() {
    check(|| {
        let (mut p, mut c) = model_pair(32);
        let frames = vec![vec![1u8; 8], vec![2u8; 12], vec![3u8; 4]];
        let sent = frames.clone();
        let producer = loom::thread::spawn(move || push_all(&mut p, &sent));
        assert_eq!(pop_n(&mut c, 3), frames);
        producer.join().expect("producer");
        assert_eq!(c.try_pop_with(|b| b.len()), Err(RingError::Closed));
    });
}

/// A consumer that goes to sleep is always woken by the frames that
/// follow (the producer stays open, so only the frames can wake it).
#[test]
fn loom_no_lost_wakeup() {
    no_lost_wakeup(FULL, FULL);
}

/// Two frames from a producer whose process can do `p_can` reach a
/// consumer whose process can do `c_can`, however often it sleeps.
fn no_lost_wakeup(p_can: Barriers, c_can: Barriers) {
    check(move || {
        let (mut p, mut c, _) = model_pair_with(64, p_can, c_can);
        let (tx, rx) = loom::sync::mpsc::channel();
        let producer = loom::thread::spawn(move || {
            push_all(&mut p, &[vec![1], vec![2]]);
            // Keep the ring open until the consumer has both frames.
            rx.recv().expect("done");
            drop(p);
        });
        assert_eq!(pop_n(&mut c, 2), vec![vec![1], vec![2]]);
        tx.send(()).expect("send");
        producer.join().expect("producer");
    });
}

/// The same where the processes cannot all use membarrier: a producer
/// that could publish with a light fence but finds no promise (the
/// consumer's process cannot issue the barrier), one that cannot (not
/// registered) while the consumer promises, and neither.
#[test]
fn loom_no_lost_wakeup_without_a_promise() {
    for (p_can, c_can) in [(FULL, NONE), (NONE, FULL), (NONE, NONE)] {
        no_lost_wakeup(p_can, c_can);
    }
}

/// A consumer that promised the heavy barrier hands the ring over (after
/// the first frame) to one in a process that cannot keep the promise,
/// while the producer publishes with light fences: the new consumer,
/// which sleeps after its full fence only, is still woken by the second
/// frame, because the first withdrew the promise and issued a barrier
/// before it let go.
#[test]
fn loom_handed_over_consumer_is_woken() {
    check(|| {
        let (mut p, mut first, shared) = model_pair_with(64, FULL, FULL);
        let (tx, rx) = loom::sync::mpsc::channel();
        let producer = loom::thread::spawn(move || {
            push_all(&mut p, &[vec![1], vec![2]]);
            rx.recv().expect("done");
            drop(p);
        });
        assert_eq!(pop_n(&mut first, 1), vec![vec![1]]);
        first.hand_over();
        let mut next = Consumer::from_memory(consumer_view(&shared, NONE)).expect("consumer");
        next.set_spin(Duration::ZERO);
        assert_eq!(pop_n(&mut next, 1), vec![vec![2]]);
        tx.send(()).expect("send");
        producer.join().expect("producer");
    });
}

/// Closing wakes a sleeping consumer, after the frames published before it.
#[test]
fn loom_close_wakes_the_consumer() {
    check(|| {
        let (mut p, mut c) = model_pair(32);
        let producer = loom::thread::spawn(move || {
            push_all(&mut p, &[vec![9; 3]]);
            drop(p);
        });
        assert_eq!(pop_n(&mut c, 1), vec![vec![9; 3]]);
        loop {
            match c.try_pop_with(|b| b.len()) {
                Err(RingError::Closed) => break,
                Ok(None) => assert_eq!(c.wait(Duration::from_secs(3600)), Ok(true)),
                other => panic!("{other:?}"),
            }
        }
        producer.join().expect("producer");
    });
}

/// A producer waiting for room is always woken by the consumer's reads:
/// a 32-byte ring holds two 8-byte frames (16 bytes each with their
/// record headers), so the third waits in `wait_room` until the
/// consumer has read one (no timeout in the model, so a lost wake-up is
/// a deadlock). With light fences on the consumer's side and without.
#[test]
fn loom_producer_waits_for_room() {
    for (p_can, c_can) in [(FULL, FULL), (FULL, NONE), (NONE, FULL)] {
        check(move || producer_waits_for_room(p_can, c_can));
    }
}

/// One run of [`loom_producer_waits_for_room`], the producer's and the
/// consumer's processes able to do `p_can` and `c_can`.
fn producer_waits_for_room(p_can: Barriers, c_can: Barriers) {
    let (mut p, mut c, _) = model_pair_with(32, p_can, c_can);
    let producer = loom::thread::spawn(move || {
        for i in 0..3u8 {
            assert_eq!(p.wait_room(8, Duration::from_secs(3600)), Ok(true));
            p.try_push(&[i; 8]).expect("room");
        }
    });
    assert_eq!(pop_n(&mut c, 3), vec![vec![0; 8], vec![1; 8], vec![2; 8]]);
    producer.join().expect("producer");
}

/// A frame reserved and filled but never committed is never seen, even
/// while the producer is still filling it.
#[test]
fn loom_uncommitted_frame_is_invisible() {
    check(|| {
        let (mut p, mut c) = model_pair(32);
        let producer = loom::thread::spawn(move || {
            // Reserved and filled, never committed.
            p.reserve(8).expect("room").write_with(|b| b.fill(0xaa));
            push_all(&mut p, &[vec![5; 8]]);
        });
        assert_eq!(pop_n(&mut c, 1), vec![vec![5; 8]]);
        producer.join().expect("producer");
    });
}

/// The count protocol of a pool chunk (`sys/slab.rs`, `endpoint/lent.rs`):
/// the sender writes a payload and adds one per receiver before the frame
/// that refers to it leaves (here: before the receivers start, which the
/// ring's commit orders in the real thing), then drops its own hold and
/// writes the chunk again only if it reads 0; each receiver reads the
/// payload, then takes its count off. Loom fails the model if a receiver's
/// read is not ordered before the sender's next write (the payload is an
/// `UnsafeCell`), and the assertion if a receiver sees another payload.
#[test]
fn loom_chunk_is_reused_only_after_every_reader_let_go() {
    struct Chunk {
        count: LoomU32,
        payload: UnsafeCell<u64>,
    }
    // SAFETY: shared between the model's threads on purpose: loom tracks
    // every access to the payload cell and fails the model on any pair
    // not ordered by happens-before.
    unsafe impl Sync for Chunk {}

    check(|| {
        let chunk = Arc::new(Chunk {
            count: LoomU32::new(0),
            payload: UnsafeCell::new(0),
        });
        // The sender takes the free chunk (its own hold), writes, counts
        // two receivers, and sends.
        chunk.count.store(1, Ordering::Relaxed);
        // SAFETY: nobody else holds the chunk yet.
        chunk.payload.with_mut(|p| unsafe { *p = 1 });
        chunk.count.fetch_add(2, Ordering::AcqRel);
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let c = chunk.clone();
                loom::thread::spawn(move || {
                    // SAFETY: loom checks that this read is ordered after
                    // the write it reads and before the next one.
                    let seen = c.payload.with(|p| unsafe { *p });
                    assert_eq!(seen, 1, "a receiver saw another payload");
                    c.count.fetch_sub(1, Ordering::Release);
                })
            })
            .collect();
        chunk.count.fetch_sub(1, Ordering::Release);
        // Taken again only once every holder let go.
        if chunk.count.load(Ordering::Acquire) == 0 {
            // SAFETY: every reader let go (loom checks the order).
            chunk.payload.with_mut(|p| unsafe { *p = 2 });
        }
        for r in readers {
            r.join().expect("reader");
        }
    });
}
