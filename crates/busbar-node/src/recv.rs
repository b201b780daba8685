//! The receiving side of an endpoint: one thread that waits in busbar's
//! `recv` for whatever JavaScript asked for, and hands each batch over
//! through the endpoint's thread-safe function.
//!
//! JavaScript asks for one receive at a time (index.js queues its callers).
//! When messages are already there, index.js takes them on its own thread
//! with [`Receiving::try_batch`] and nothing wakes this thread at all.

use crate::error::Failure;
use crate::message::{Outcome, Received, SelectorText};
use busbar::{BytesMessage, EndpointReceiver, RecvError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

/// The most messages handed over at once; JavaScript keeps the ones its
/// callers have not asked for yet, so this bounds what waits inside Node.
pub const MAX_BATCH: usize = 64;
/// A batch stops growing past this many payload bytes.
pub const MAX_BATCH_BYTES: usize = 1 << 20;

/// A receive JavaScript asked for.
#[derive(Debug)]
pub struct Job {
    /// Chosen by index.js; the outcome carries it back.
    pub id: u32,
    /// `None`: no limit.
    pub timeout: Option<Duration>,
}

/// What the receiving thread and the endpoint share.
pub struct Receiving {
    rx: Mutex<Option<EndpointReceiver<BytesMessage>>>,
    /// Interrupts the thread's `recv` (abort, close).
    waker: busbar::RecvWaker,
    /// The job the thread works on, and the ids JavaScript aborted.
    state: Mutex<State>,
    closed: AtomicBool,
    /// An error met while filling a batch, for the next receive.
    deferred: Mutex<Option<Failure>>,
    /// Selector texts, shared by whoever receives (under `rx`'s lock).
    texts: Mutex<SelectorText>,
}

#[derive(Default)]
struct State {
    current: Option<u32>,
    aborted: Vec<u32>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here panics while holding a lock (and a panic is caught
    // outside it); a poisoned lock still guards a whole value.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Receiving {
    /// Takes the endpoint's receiver.
    pub fn new(mut rx: EndpointReceiver<BytesMessage>) -> Receiving {
        // No spin before sleeping: the thread that waits here is one more
        // beside Node's own, and a spinning one took the CPU the event
        // loops needed. On 2 cores, 64 B ping-pong between two Node
        // processes: one-way p50 34 us without the spin, 89 us with
        // busbar's default 50 us (bench/bench.js).
        rx.set_spin(Duration::ZERO);
        Receiving {
            waker: rx.waker(),
            rx: Mutex::new(Some(rx)),
            state: Mutex::new(State::default()),
            closed: AtomicBool::new(false),
            deferred: Mutex::new(None),
            texts: Mutex::new(SelectorText::default()),
        }
    }

    /// Up to `max` messages that are already there, without waiting:
    /// `Ok(None)` when the receiving thread is busy waiting (JavaScript
    /// then waits for its outcome).
    pub fn try_batch(&self, max: usize) -> Result<Option<Vec<Received>>, Failure> {
        if let Some(f) = lock(&self.deferred).take() {
            return Err(f);
        }
        let mut guard = match self.rx.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return Ok(None),
        };
        let rx = guard.as_mut().ok_or_else(Failure::closed)?;
        let mut batch = Vec::new();
        let mut texts = lock(&self.texts);
        match fill(rx, &mut texts, &mut batch, max.clamp(1, MAX_BATCH)) {
            Some(f) if batch.is_empty() => Err(f),
            Some(f) => {
                *lock(&self.deferred) = Some(f);
                Ok(Some(batch))
            }
            None => Ok(Some(batch)),
        }
    }

    /// Makes the receive `id` end without a message, whether it waits now
    /// or has not started: its outcome is `ABORTED`. A message it already
    /// took is still handed over (index.js keeps it for the next caller).
    pub fn abort(&self, id: u32) {
        let mut state = lock(&self.state);
        state.aborted.push(id);
        if state.current == Some(id) {
            self.waker.wake();
        }
    }

    /// Ends receiving: a waiting receive ends with `DISCONNECTED` and the
    /// receiver is dropped (here, or by the thread when it is in `recv`).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        match self.rx.try_lock() {
            Ok(mut g) => drop(g.take()),
            Err(TryLockError::Poisoned(p)) => drop(p.into_inner().take()),
            Err(TryLockError::WouldBlock) => self.waker.wake(),
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Starts job `id`; false when it was aborted before it started.
    fn start(&self, id: u32) -> bool {
        let mut state = lock(&self.state);
        if let Some(i) = state.aborted.iter().position(|a| *a == id) {
            state.aborted.swap_remove(i);
            return false;
        }
        state.current = Some(id);
        true
    }

    /// Ends job `id`; whether it was aborted meanwhile.
    fn finish(&self, id: u32) -> bool {
        let mut state = lock(&self.state);
        state.current = None;
        match state.aborted.iter().position(|a| *a == id) {
            Some(i) => {
                state.aborted.swap_remove(i);
                true
            }
            None => false,
        }
    }

    fn was_aborted(&self, id: u32) -> bool {
        lock(&self.state).aborted.contains(&id)
    }

    /// One job: wait for a message (then take what else is there, up to a
    /// batch), or the timeout, or an abort.
    fn run(&self, job: &Job) -> Result<Vec<Received>, Failure> {
        if let Some(f) = lock(&self.deferred).take() {
            return Err(f);
        }
        let deadline = job.timeout.map(|t| Instant::now() + t);
        let mut guard = lock(&self.rx);
        loop {
            if self.is_closed() {
                guard.take();
                return Err(Failure::closed());
            }
            let rx = guard.as_mut().ok_or_else(Failure::closed)?;
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            match rx.recv(left) {
                Ok(m) => {
                    let mut texts = lock(&self.texts);
                    let mut batch = vec![Received::new(m, &mut texts)];
                    if let Some(f) = fill(rx, &mut texts, &mut batch, MAX_BATCH) {
                        *lock(&self.deferred) = Some(f);
                    }
                    return Ok(batch);
                }
                Err(RecvError::Interrupted) => {
                    if self.was_aborted(job.id) {
                        return Err(Failure::new("ABORTED", "the receive was aborted"));
                    }
                    // A wake meant for a receive that had already ended
                    // (or for close, seen above): wait on.
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Adds what `try_recv` finds to `batch`, up to `max` messages or
/// [`MAX_BATCH_BYTES`]; an error other than "nothing there" is returned
/// (its message, if any, was dropped by busbar).
fn fill(
    rx: &mut EndpointReceiver<BytesMessage>,
    texts: &mut SelectorText,
    batch: &mut Vec<Received>,
    max: usize,
) -> Option<Failure> {
    let mut bytes: usize = batch.iter().map(Received::weight).sum();
    while batch.len() < max && bytes < MAX_BATCH_BYTES {
        match rx.try_recv() {
            Ok(m) => {
                let r = Received::new(m, texts);
                bytes += r.weight();
                batch.push(r);
            }
            Err(RecvError::Empty) => return None,
            Err(e) => return Some(e.into()),
        }
    }
    None
}

/// Starts the receiving thread: it runs `jobs` one after the other and
/// ends when the endpoint drops its end of the channel, or is closed.
pub fn spawn(
    receiving: Arc<Receiving>,
    jobs: mpsc::Receiver<Job>,
    emit: impl Fn(Outcome) + Send + 'static,
) -> Result<(), Failure> {
    std::thread::Builder::new()
        .name("busbar-node-recv".into())
        .spawn(move || {
            while let Ok(job) = jobs.recv() {
                let result = if receiving.start(job.id) {
                    let r = crate::no_panic(|| receiving.run(&job));
                    let aborted = receiving.finish(job.id);
                    match r {
                        // Aborted while messages came: they are handed over
                        // anyway, and index.js keeps them.
                        Err(_) if aborted => {
                            Err(Failure::new("ABORTED", "the receive was aborted"))
                        }
                        r => r,
                    }
                } else {
                    Err(Failure::new("ABORTED", "the receive was aborted"))
                };
                emit(Outcome {
                    kind: "recv",
                    id: job.id,
                    result,
                });
            }
            receiving.close();
        })
        .map(drop)
        .map_err(|e| Failure::new("IO", format!("cannot start the receiving thread: {e}")))
}
