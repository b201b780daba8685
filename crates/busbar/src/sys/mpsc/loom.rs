//! Loom models of the named ring's protocol: the same functions of
//! `protocol.rs` that [`crate::ring`] calls, over a model [`Memory`].
//!
//! The model's data area is one loom atomic per 8-byte word (the claim and
//! commit words) plus one loom `UnsafeCell` per 8-byte word (the payload
//! bytes), so loom flags any read of a payload that is not ordered after
//! its write and any overwrite not ordered after its read. A payload write
//! also stores its words, relaxed, into the atomics: payload bytes left
//! where a later lap's record header goes are what the claim words then
//! hold, as in the real ring (the wrap model plants a fake claim there).
//!
//! The senders' futex is a mutex and condvar, and so is the receiver's
//! `epoll_wait` (its doorbell, an eventfd, is a counter; the senders'
//! connections hang up when they die). Nothing has a timeout, so a lost
//! wake-up is a deadlock, which loom reports. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p busbar --release --lib sys::mpsc`.

use super::protocol::{self, Claimed};
use super::{encode_claim, Memory, NONE, RECORD};
use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicU32 as LoomU32, AtomicU64 as LoomU64};
use loom::sync::{Arc, Condvar, Mutex};
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The model ring's key.
const KEY: u64 = 0x5eed_f00d_cafe_d00d;
/// Bytes per word of the model's data area.
const WORD: usize = 8;

/// The payload bytes of the data area, one cell per 8-byte word.
struct Cells(Vec<UnsafeCell<u64>>);

// SAFETY: the cells are shared between the model's threads on purpose:
// loom tracks every access to each of them and fails the model on any pair
// that is not ordered by happens-before.
unsafe impl Sync for Cells {}

/// What the receiver's `epoll_wait` waits for.
struct Poll {
    /// The doorbell (an eventfd: readable while nonzero).
    bell: u64,
    /// Slot `i`'s connection hung up, not yet seen by the receiver.
    hup: Vec<bool>,
}

struct Inner {
    reserve: LoomU64,
    head: LoomU64,
    sleeping: LoomU32,
    gone: LoomU32,
    room: LoomU32,
    slots: Vec<LoomU64>,
    /// The data area's words as atomics: claim and commit words.
    words: Vec<LoomU64>,
    cells: Cells,
    /// The room futex: a waiter checks the word and sleeps under this
    /// lock, a waker notifies under it, as the kernel does with its bucket.
    futex: Mutex<()>,
    futex_cv: Condvar,
    /// The receiver's poller. A mutex stands for the kernel here: a
    /// sender's stores before it rings (or dies) are visible to the
    /// receiver once it has seen the ring (or the hang-up).
    poll: Mutex<Poll>,
    poll_cv: Condvar,
}

#[derive(Clone)]
struct Model(Arc<Inner>);

impl Model {
    fn new(capacity: usize, slots: usize) -> Model {
        let words = capacity / WORD;
        let model = Model(Arc::new(Inner {
            reserve: LoomU64::new(0),
            head: LoomU64::new(0),
            sleeping: LoomU32::new(0),
            gone: LoomU32::new(0),
            room: LoomU32::new(0),
            slots: (0..slots).map(|_| LoomU64::new(0)).collect(),
            words: (0..words).map(|_| LoomU64::new(0)).collect(),
            cells: Cells((0..words).map(|_| UnsafeCell::new(0)).collect()),
            futex: Mutex::new(()),
            futex_cv: Condvar::new(),
            poll: Mutex::new(Poll {
                bell: 0,
                hup: vec![false; slots],
            }),
            poll_cv: Condvar::new(),
        }));
        protocol::init(&model);
        model
    }

    /// The word indices covering `len` bytes at `off`, if inside the data area.
    fn span(&self, off: usize, len: usize) -> Option<std::ops::Range<usize>> {
        let end = off.checked_add(len)?;
        if off % WORD != 0 || end > self.capacity() {
            return None;
        }
        Some(off / WORD..end.div_ceil(WORD))
    }

    /// Rings the receiver's doorbell.
    fn ring(&self) {
        let mut poll = self.0.poll.lock().expect("poll");
        poll.bell += 1;
        self.0.poll_cv.notify_all();
    }

    /// The kernel closing a dead sender's connection.
    fn hang_up(&self, slot: usize) {
        let mut poll = self.0.poll.lock().expect("poll");
        poll.hup[slot] = true;
        self.0.poll_cv.notify_all();
    }
}

impl Memory for Model {
    type U64 = LoomU64;
    type U32 = LoomU32;

    fn capacity(&self) -> usize {
        self.0.words.len() * WORD
    }
    fn key(&self) -> u64 {
        KEY
    }
    fn slots(&self) -> usize {
        self.0.slots.len()
    }
    fn reserve(&self) -> &LoomU64 {
        &self.0.reserve
    }
    fn head(&self) -> &LoomU64 {
        &self.0.head
    }
    fn sleeping(&self) -> &LoomU32 {
        &self.0.sleeping
    }
    fn gone(&self) -> &LoomU32 {
        &self.0.gone
    }
    fn room(&self) -> &LoomU32 {
        &self.0.room
    }
    fn slot(&self, i: usize) -> &LoomU64 {
        &self.0.slots[i % self.0.slots.len()]
    }
    fn claim_word(&self, off: usize) -> &LoomU64 {
        &self.0.words[(off & (self.capacity() - 1) & !(RECORD - 1)) / WORD]
    }
    fn commit_word(&self, off: usize) -> &LoomU64 {
        &self.0.words[(off & (self.capacity() - 1) & !(RECORD - 1)) / WORD + 1]
    }

    fn read<R>(&mut self, off: usize, len: usize, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let mut bytes = Vec::new();
        for cell in &self.0.cells.0[self.span(off, len)?] {
            // SAFETY: loom checks that this read is ordered after the
            // payload's write (and before any overwrite); it fails the
            // model otherwise.
            bytes.extend(cell.with(|w| unsafe { *w }).to_ne_bytes());
        }
        Some(f(&bytes[..len]))
    }

    fn fill<R>(&mut self, off: usize, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> Option<R> {
        let span = self.span(off, len)?;
        let mut bytes = vec![0u8; span.len() * WORD];
        let out = f(&mut bytes[..len]);
        for (i, chunk) in span.zip(bytes.chunks_exact(WORD)) {
            let word = u64::from_ne_bytes(chunk.try_into().expect("8 bytes"));
            // SAFETY: loom checks that no read or write of this cell races
            // with it.
            self.0.cells.0[i].with_mut(|w| unsafe { *w = word });
            // What a claim word there would read (a later lap's header).
            self.0.words[i].store(word, Ordering::Relaxed);
        }
        Some(out)
    }

    fn wait_room(&self, _timeout: Duration) {
        // No timeout in the model: a missed wake-up must show as a deadlock.
        let guard = self.0.futex.lock().expect("futex");
        if self.0.room.load(Ordering::Acquire) == 1 {
            drop(self.0.futex_cv.wait(guard).expect("futex"));
        }
    }

    fn wake_room(&self) {
        let _guard = self.0.futex.lock().expect("futex");
        self.0.futex_cv.notify_all();
    }

    fn fence(&self) {
        loom::sync::atomic::fence(Ordering::SeqCst);
    }

    fn yield_now(&self) {
        loom::thread::yield_now();
    }
}

/// Sends `msg` as sender `slot`, waiting for room as long as it takes.
fn send(mem: &mut Model, slot: usize, msg: &[u8]) {
    let bell = mem.clone();
    let wait = || Ok::<_, Infallible>(Duration::MAX);
    match protocol::send(
        mem,
        slot,
        msg.len(),
        wait,
        || bell.ring(),
        |dst| dst.copy_from_slice(msg),
    ) {
        Ok(()) => {}
        Err(e) => panic!("send: {e:?}"),
    }
}

/// Claims a record for `len` bytes as sender `slot`, writes half of the
/// payload, and dies there: the kernel closes its connection.
fn die_after_claim(mem: &mut Model, slot: usize, len: usize) -> Claimed {
    let bell = mem.clone();
    let wait = || Ok::<_, Infallible>(Duration::MAX);
    let claimed = match protocol::claim(mem, slot, len, wait, &|| bell.ring()) {
        Ok(c) => c,
        Err(e) => panic!("claim: {e:?}"),
    };
    mem.fill(claimed.off + RECORD, len / 2, |dst| dst.fill(0xdd))
        .expect("inside");
    mem.hang_up(slot);
    claimed
}

/// The receiver: what [`crate::ring::RingReceiver`] does around the
/// protocol's functions, without its spin (the model sleeps at once).
struct Receiver {
    mem: Model,
    head: u64,
    /// Slots whose connection is open, as the receiver knows it.
    live: Vec<bool>,
}

impl Receiver {
    fn new(mem: &Model) -> Receiver {
        Receiver {
            mem: mem.clone(),
            head: 0,
            live: vec![true; mem.slots()],
        }
    }

    /// Drains the doorbell and frees the slots of the senders whose
    /// connection hung up (`RingReceiver::serve`).
    fn serve(&mut self) {
        let mut poll = self.mem.0.poll.lock().expect("poll");
        poll.bell = 0;
        for (i, hup) in poll.hup.iter_mut().enumerate() {
            if std::mem::take(hup) && self.live[i] {
                self.live[i] = false;
                protocol::free_slot(&self.mem, i);
            }
        }
    }

    /// The next message now, if any.
    fn try_take(&mut self, reap: bool) -> Option<Vec<u8>> {
        let live = &self.live;
        let found = protocol::next_record(&self.mem, &mut self.head, reap, |i| live[i]);
        let msg = found.expect("the ring is intact")?;
        let got = protocol::deliver(&mut self.mem, &mut self.head, msg, <[u8]>::to_vec);
        Some(got.expect("the message lies inside the ring"))
    }

    /// Sleeps in the model's `epoll_wait` until the doorbell rings or a
    /// connection hangs up.
    fn sleep(&self) {
        let mut poll = self.mem.0.poll.lock().expect("poll");
        while poll.bell == 0 && !poll.hup.iter().any(|&h| h) {
            poll = self.mem.0.poll_cv.wait(poll).expect("poll");
        }
    }

    /// Waits for the next message (`RingReceiver::recv_inner`).
    fn recv(&mut self) -> Vec<u8> {
        loop {
            if let Some(got) = self.try_take(false) {
                return got;
            }
            self.serve();
            protocol::raise_flag(&self.mem);
            if let Some(got) = self.try_take(true) {
                return got;
            }
            self.sleep();
        }
    }

    /// Waits until the receiver has seen slot `slot` hang up.
    fn wait_hang_up(&mut self, slot: usize) {
        loop {
            self.serve();
            if !self.live[slot] {
                return;
            }
            self.sleep();
        }
    }
}

/// Explores `f` with at most `preemptions` preemptions per execution
/// (`LOOM_MAX_PREEMPTIONS` overrides it), so that the loom stage of CI
/// stays short: the models with two senders are the costly ones.
fn check(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(preemptions);
    }
    builder.check(f);
}

/// Message `k` of sender `s`: 8 bytes, each `s << 4 | k`.
fn message(s: u8, k: u8) -> Vec<u8> {
    vec![s << 4 | k; 8]
}

/// Two senders (two messages, one message) and a receiver that sleeps
/// whenever the ring is empty: every message arrives exactly once, whole,
/// and in the order of its sender; the claims race, and a sender that
/// loses (or finds a claim not yet moved past) helps the other one.
#[test]
fn loom_two_senders_once_in_order() {
    check(2, || {
        let mem = Model::new(128, 2);
        let mut rx = Receiver::new(&mem);
        let senders: Vec<_> = [(0u8, 2u8), (1, 1)]
            .into_iter()
            .map(|(s, n)| {
                let mut mem = mem.clone();
                loom::thread::spawn(move || {
                    for k in 0..n {
                        send(&mut mem, s as usize, &message(s, k));
                    }
                })
            })
            .collect();
        let got: Vec<Vec<u8>> = (0..3).map(|_| rx.recv()).collect();
        for s in senders {
            s.join().expect("sender");
        }
        let of =
            |s: u8| -> Vec<Vec<u8>> { got.iter().filter(|m| m[0] >> 4 == s).cloned().collect() };
        assert_eq!(of(0), vec![message(0, 0), message(0, 1)]);
        assert_eq!(of(1), vec![message(1, 0)]);
        assert_eq!(rx.try_take(true), None);
    });
}

/// A wrap-around with padding, and a stale claim left in a payload: a
/// 24-byte message (a 48-byte record at 0), then an 8-byte one, which does
/// not fit before the end of the 64-byte ring: padding at 48, the message
/// at 64 (offset 0), once the receiver has released the first record. The
/// reserve index then stops at 96, offset 32, where the first message's
/// payload left a word that is a claim for 96: it must have been cleared,
/// or the receiver would take it for a record (and reclaim it).
#[test]
fn loom_wrap_with_padding() {
    check(3, || {
        let mem = Model::new(64, 1);
        let mut rx = Receiver::new(&mem);
        let mut first = vec![0x11u8; 24];
        first[16..24].copy_from_slice(&encode_claim(KEY, 96, 32, false).to_ne_bytes());
        let second = vec![0x22u8; 8];
        let sender = {
            let (mut mem, first, second) = (mem.clone(), first.clone(), second.clone());
            loom::thread::spawn(move || {
                send(&mut mem, 0, &first);
                send(&mut mem, 0, &second);
            })
        };
        assert_eq!(rx.recv(), first);
        assert_eq!(rx.recv(), second);
        sender.join().expect("sender");
        assert_eq!(mem.reserve().load(Ordering::Relaxed), 96);
        assert_eq!(rx.try_take(true), None);
        assert_eq!(rx.head, 96);
    });
}

/// A ring that fills: two senders with a 24-byte message each (48-byte
/// records) in a 64-byte ring. Whichever claims second pads to the end and
/// waits for room in `wait_room` until the receiver has read the other
/// message (no timeout in the model: a lost wake-up is a deadlock).
#[test]
fn loom_full_ring_sender_is_woken() {
    check(2, || {
        let mem = Model::new(64, 2);
        let mut rx = Receiver::new(&mem);
        let senders: Vec<_> = [0u8, 1]
            .into_iter()
            .map(|s| {
                let mut mem = mem.clone();
                loom::thread::spawn(move || send(&mut mem, s as usize, &[s; 24]))
            })
            .collect();
        let mut got = vec![rx.recv(), rx.recv()];
        got.sort();
        assert_eq!(got, vec![vec![0; 24], vec![1; 24]]);
        for s in senders {
            s.join().expect("sender");
        }
    });
}

/// A sender dies after claiming a record and writing half of it; the
/// kernel closes its connection, and the receiver frees its slot and
/// reclaims the record while the other sender goes on. Each record takes
/// the whole 32-byte ring, so whichever sender claims second waits for
/// room: for the first message to be read, or for the dead sender's
/// record to be reclaimed. The message arrives whole, and in the end all
/// the space is back.
#[test]
fn loom_dead_sender_is_reaped() {
    check(3, || {
        let mem = Model::new(32, 2);
        let mut rx = Receiver::new(&mem);
        let dying = {
            let mut mem = mem.clone();
            loom::thread::spawn(move || {
                die_after_claim(&mut mem, 0, 8);
            })
        };
        let living = {
            let mut mem = mem.clone();
            loom::thread::spawn(move || send(&mut mem, 1, &message(1, 0)))
        };
        assert_eq!(rx.recv(), message(1, 0));
        living.join().expect("living sender");
        dying.join().expect("dying sender");
        rx.wait_hang_up(0);
        assert_eq!(rx.try_take(true), None);
        assert_eq!(rx.head, mem.reserve().load(Ordering::Relaxed));
        assert_eq!(mem.slot(0).load(Ordering::Relaxed), NONE);
    });
}

/// The receiver raises its wake flag and sleeps; a commit that follows
/// always wakes it (the sender rings only when it sees the flag up).
#[test]
fn loom_sleeping_receiver_is_woken() {
    check(3, || {
        let mem = Model::new(64, 1);
        let mut rx = Receiver::new(&mem);
        let sender = {
            let mut mem = mem.clone();
            loom::thread::spawn(move || send(&mut mem, 0, &message(0, 7)))
        };
        assert_eq!(rx.recv(), message(0, 7));
        sender.join().expect("sender");
    });
}
