//! `busbar.Endpoint`: one endpoint on a bus, sending and receiving
//! `BytesMessage`s (format tag + bytes), the payload every binding speaks.

use crate::errors;
use crate::expr::op_from;
use crate::fd::dup_from;
use crate::ffi::InBuffer;
use crate::loan::Loan;
use crate::message::{EndpointInfo, Message};
use crate::region::Region;
use busbar::{
    BytesMessage, EndpointId, EndpointReceiver, EndpointSender, Object, RecvError, RecvWaker,
    Selector, SelectorMode, SendError,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyAny, PyInt};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

/// Payloads above this size (with no attachments) go out through a loan:
/// copied once, straight into shared memory. Below it, a plain send (one
/// copy into the message, one into the link's ring) is faster.
const LOAN_ABOVE: usize = 64 << 10;

type Receiver = EndpointReceiver<BytesMessage>;
type Sender = EndpointSender<BytesMessage>;

/// An endpoint on a bus, made by `busbar.join`. Use it in a `with` block:
/// it leaves the bus at the end (or at `close()`), and using it after that
/// raises `busbar.ClosedError`.
#[pyclass(frozen, module = "busbar")]
pub struct Endpoint {
    sender: RwLock<Option<Sender>>,
    /// Locked for the whole of a receive (with the GIL released).
    receiver: Arc<Mutex<Option<Receiver>>>,
    /// Interrupts a receive blocked in another thread when `close()` is called.
    waker: RecvWaker,
    /// The receiver's poll descriptor. Asked for at once: from then on a
    /// receive that finds nothing arms the rings so that the next frame
    /// makes the descriptor readable, which the second step of
    /// [`Endpoint::wait`] and `recv_async` count on.
    poll_fd: RawFd,
    /// Set while a message lent by `recv_with` is open.
    lending: Arc<AtomicBool>,
    /// The last `send`'s `to`, `multicast` and `ttl` with the selector made
    /// of them: a stream of sends to one place (the same `to` object: an
    /// `Expr`, a string or an id, all immutable) reuses it.
    last_selector: Mutex<Option<LastSelector>>,
    /// How long a receive that found nothing watches the rings before it
    /// sleeps (`join`'s `spin_us`).
    spin: Duration,
    /// How long (ns) the last `loan` that found every chunk held waited
    /// for one: see [`Endpoint::loan_spin`].
    loan_waited: AtomicU64,
    id: u64,
    bus: String,
    label: Vec<String>,
}

/// See [`Endpoint::last_selector`].
struct LastSelector {
    to: Py<PyAny>,
    multicast: bool,
    ttl: Option<f64>,
    selector: Selector,
}

/// How one wait for a message ended.
enum Waited {
    Message(busbar::Message<BytesMessage>),
    /// Nothing yet: check for signals, then wait again.
    Again,
    /// Nothing yet, and the spin goes on: check for signals, then spin on.
    Spinning,
    Failed(RecvError),
    Closed,
}

impl Endpoint {
    pub fn new(
        tx: Sender,
        mut rx: Receiver,
        bus: String,
        label: Vec<String>,
        spin: Duration,
    ) -> Endpoint {
        let poll_fd = rx.as_fd().as_raw_fd();
        // `recv_with` waits in the library's `recv_with`: its spin is this one.
        rx.set_spin(spin);
        Endpoint {
            id: tx.id().0,
            sender: RwLock::new(Some(tx)),
            waker: rx.waker(),
            receiver: Arc::new(Mutex::new(Some(rx))),
            poll_fd,
            lending: Arc::new(AtomicBool::new(false)),
            last_selector: Mutex::new(None),
            spin,
            loan_waited: AtomicU64::new(0),
            bus,
            label,
        }
    }

    /// `ClosedError` when closed, `RuntimeError` while a message lent by
    /// `recv_with` is open (the receiver is held until it goes back).
    fn not_lending(&self, py: Python<'_>) -> PyResult<()> {
        if self.closed() {
            return Err(errors::closed(py));
        }
        if self.lending.load(Ordering::Acquire) {
            return Err(crate::lent::busy());
        }
        Ok(())
    }

    /// A handle on the sender (cheap: a reference count).
    fn sender(&self, py: Python<'_>) -> PyResult<Sender> {
        self.sender
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| errors::closed(py))
    }

    /// The selector for a send to `to`: the last one when the arguments
    /// are the same objects (the GIL is held: nobody else is in here).
    fn selector_for(
        &self,
        to: &Bound<'_, PyAny>,
        multicast: bool,
        ttl: Option<f64>,
    ) -> PyResult<Selector> {
        let mut last = self.last_selector.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = last.as_ref() {
            if l.to.is(to) && l.multicast == multicast && l.ttl == ttl {
                return Ok(l.selector.clone());
            }
        }
        let made = selector(to, multicast, ttl)?;
        *last = Some(LastSelector {
            to: to.clone().unbind(),
            multicast,
            ttl,
            selector: made.clone(),
        });
        Ok(made)
    }

    fn receiver(&self) -> MutexGuard<'_, Option<Receiver>> {
        self.receiver.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for the next message until `deadline` with the GIL released.
    ///
    /// First, when nothing is there, it watches the shared-memory rings for
    /// up to `spin` (`EndpointReceiver::spin_for`: no system call, and the
    /// senders do not ring the descriptor meanwhile), in slices of at most
    /// [`FIRST_WAIT`] with a check for signals between two (see [`spin`]).
    /// It yields the processor as it goes, but unlike the library's own
    /// spin does not stop early on a busy machine: the caller asked for it.
    ///
    /// Signals: CPython runs a signal's Python handler (`KeyboardInterrupt`
    /// for `Ctrl-C`) only when the main thread gets back to Python, so a
    /// wait that does not end would never see it. The wait comes in two
    /// steps: first the library's own `recv` (spin, then sleep) for up to
    /// [`FIRST_WAIT`], which a stream of messages never gets past; then,
    /// after one check for signals, a `poll` of the receiver's descriptor
    /// for the rest of the time, which a signal interrupts (`EINTR`: the
    /// interpreter installs its handlers without `SA_RESTART`), and then
    /// the signals are checked again. No periodic wake-ups: an idle
    /// receiver sleeps in `poll` until a message, a signal, `close()` or
    /// its deadline. A signal that lands between the check and the
    /// `poll` (a window of a few instructions) waits for the next wake-up,
    /// as it does in CPython's own `time.sleep`.
    ///
    /// `close()` from another thread wakes the wait through the
    /// receiver's [`busbar::RecvWaker`]: it ends with `ClosedError`.
    fn wait(&self, py: Python<'_>, deadline: Option<Instant>) -> PyResult<Message> {
        self.not_lending(py)?;
        // A message already here is taken with the GIL held: releasing and
        // taking it back costs more than the take (a stream of messages
        // mostly finds one), and this look makes no system call and leaves
        // the rings' sleeping flags alone (senders keep from ringing the
        // descriptor). `try_lock`: never wait for the receiver with
        // the GIL held (a receive in another thread may hold it while it
        // waits for a message this thread's Python code would send).
        if let Ok(mut guard) = self.receiver.try_lock() {
            if let Some(rx) = guard.as_mut() {
                match rx.try_recv_ready() {
                    Ok(m) => {
                        drop(guard);
                        return Message::from_rust(py, m);
                    }
                    Err(RecvError::Empty) => {}
                    Err(e) => return Err(errors::recv_error(py, e)),
                }
            }
        }
        let mut spin_end = (!self.spin.is_zero()).then(|| Instant::now() + self.spin);
        loop {
            let waited = py.detach(|| {
                let mut guard = self.receiver();
                let Some(rx) = guard.as_mut() else {
                    return Waited::Closed;
                };
                let first = |now: Instant| {
                    deadline.map_or(FIRST_WAIT, |d| {
                        d.saturating_duration_since(now).min(FIRST_WAIT)
                    })
                };
                if let Some(end) = spin_end {
                    let now = Instant::now();
                    let until = end.min(now + first(now));
                    if let Some(got) = spin(rx, until) {
                        return got;
                    }
                    let now = Instant::now();
                    if now < end && deadline.is_none_or(|d| now < d) {
                        return Waited::Spinning;
                    }
                    spin_end = None;
                }
                let first = first(Instant::now());
                // Spun already: the library's recv sleeps at once (as it
                // would after its own spin), and spins again next time.
                rx.set_spin(Duration::ZERO);
                let got = rx.recv(Some(first));
                rx.set_spin(self.spin);
                match got {
                    Ok(m) => Waited::Message(m),
                    Err(RecvError::Timeout) if deadline.is_none_or(|d| Instant::now() < d) => {
                        Waited::Again
                    }
                    Err(RecvError::Interrupted) => Waited::Closed,
                    Err(e) => Waited::Failed(e),
                }
            });
            match waited {
                Waited::Message(m) => return Message::from_rust(py, m),
                Waited::Spinning if self.closed() => return Err(errors::closed(py)),
                Waited::Spinning => {
                    py.check_signals()?;
                    continue;
                }
                Waited::Again => {}
                Waited::Failed(RecvError::Timeout) => {
                    return Err(errors::error(
                        py,
                        "TimeoutError",
                        "timed out waiting for a message",
                    ))
                }
                Waited::Failed(e) => return Err(errors::recv_error(py, e)),
                Waited::Closed if self.closed() => return Err(errors::closed(py)),
                // A wake meant for a receive that had ended already: wait on.
                Waited::Closed => continue,
            }
            py.check_signals()?;
            let signalled = py.detach(|| {
                let guard = self.receiver();
                let Some(rx) = guard.as_ref() else {
                    return false;
                };
                let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                poll_readable(rx.as_fd(), left)
            });
            if signalled {
                py.check_signals()?;
            }
        }
    }

    /// How long a `loan` that finds every chunk held watches the pool (with
    /// the GIL released, yielding the processor between two looks) before
    /// it waits as the library's `loan` does (sleeps of 128 µs and more).
    ///
    /// [`LOAN_SPIN`] while the receivers keep up (the last such wait was no
    /// longer than that): a chunk comes back as soon as a receiver is done
    /// with a message. A sleep there lets the processor go idle, and
    /// waking an idle processor is slow and erratic (in a virtual machine:
    /// from 15 µs to 2 ms, measured). Meanwhile the receiver, done with
    /// every message, runs out of its own spin and sleeps too, the next
    /// send has to wake it, and the sender, 4 chunks ahead again, sleeps
    /// again: the pair stays in that cycle, a few messages per wake-up, for
    /// much of a stream (16 MiB arrays: 143 k a second with 462 such sleeps
    /// in the sender, against ~300 k with none). A receiver slower than
    /// [`LOAN_SPIN`] a message (the last wait was longer) is waited for as
    /// `spin_us` says, so that a sender to a slow receiver does not burn a
    /// processor; `spin_us=0` never spins.
    fn loan_spin(&self) -> Duration {
        if self.spin.is_zero() {
            return Duration::ZERO;
        }
        let last = Duration::from_nanos(self.loan_waited.load(Ordering::Relaxed));
        if last <= LOAN_SPIN {
            LOAN_SPIN.max(self.spin)
        } else {
            self.spin
        }
    }

    /// A message that is already here, or `None`.
    fn take(&self, py: Python<'_>) -> PyResult<Option<Message>> {
        self.not_lending(py)?;
        let got = py.detach(|| self.receiver().as_mut().map(|rx| rx.try_recv()));
        match got {
            None => Err(errors::closed(py)),
            Some(Ok(m)) => Message::from_rust(py, m).map(Some),
            Some(Err(RecvError::Empty)) => Ok(None),
            Some(Err(e)) => Err(errors::recv_error(py, e)),
        }
    }
}

/// How long a `loan` that finds every chunk held watches the pool before it
/// sleeps, while the receivers keep up: see [`Endpoint::loan_spin`].
const LOAN_SPIN: Duration = Duration::from_millis(2);

/// How long a spin watches the rings alone before it looks at the sockets
/// (a new link's first frame, descriptors, frames too large for a ring).
const SPIN_SLICE: Duration = Duration::from_millis(1);

/// How long a spin watches the rings between two yields of the processor.
const SPIN_TURN: Duration = Duration::from_micros(10);

/// Watches the rings until `until` ([`EndpointReceiver::spin_for`], in
/// turns of [`SPIN_TURN`] with a yield of the processor between two, and
/// a look at the sockets every [`SPIN_SLICE`]): the message that came, or
/// `None` when none did. The yields let whoever waits for this processor
/// run: the sender may be queued on it (two real-time processes on one
/// core: without them, each message cost a whole spin).
///
/// The first yield comes before the first turn, followed by a look at the
/// rings that leaves their sleeping flags down (`try_recv_ready`): on one
/// core the sender runs at once rather than after a turn spent watching
/// for a message it cannot send meanwhile. Measured with `taskset -c 1
/// chrt -f 50` (bench.py --cases array,latency --scale 0.2): 64 B p50
/// 16.3-17.1 µs before, 3.4-5.8 µs after; 16 MiB arrays 54-88 k/s before,
/// 100-167 k/s after. On two cores the yield returns at once (nothing
/// else waits for the processor).
fn spin(rx: &mut Receiver, until: Instant) -> Option<Waited> {
    std::thread::yield_now();
    match rx.try_recv_ready() {
        Ok(m) => return Some(Waited::Message(m)),
        Err(RecvError::Empty) => {}
        Err(e) => return Some(Waited::Failed(e)),
    }
    let mut sockets = Instant::now() + SPIN_SLICE;
    loop {
        let now = Instant::now();
        let slice = until.saturating_duration_since(now).min(SPIN_TURN);
        if rx.spin_for(slice) {
            match rx.try_recv_ready() {
                Ok(m) => return Some(Waited::Message(m)),
                // Not a ring's: the look at the sockets below finds it.
                Err(RecvError::Empty) => {}
                Err(e) => return Some(Waited::Failed(e)),
            }
        }
        let now = Instant::now();
        if now >= until {
            return None;
        }
        if now < sockets {
            std::thread::yield_now();
            continue;
        }
        sockets = now + SPIN_SLICE;
        match rx.try_recv() {
            Ok(m) => return Some(Waited::Message(m)),
            Err(RecvError::Empty) => {}
            Err(e) => return Some(Waited::Failed(e)),
        }
    }
}

/// How long a blocking receive waits in the library's `recv` before it
/// checks for signals and sleeps in `poll` (see [`Endpoint::wait`]).
const FIRST_WAIT: Duration = Duration::from_millis(20);

/// Waits until `fd` polls readable or `timeout` runs out; `true` when a
/// signal interrupted the wait.
fn poll_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> bool {
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let timeout = match timeout.map(Timespec::try_from) {
        Some(Ok(t)) => Some(t),
        // Too far off to say: as long as it takes.
        Some(Err(_)) | None => None,
    };
    matches!(poll(&mut fds, timeout.as_ref()), Err(Errno::INTR))
}

/// `None` or seconds (a non-negative, finite number) as a `Duration`.
pub fn timeout_arg(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    timeout.map(crate::seconds).transpose()
}

/// A selector for `to` (expression text, a `busbar.Expr`, or an endpoint id).
fn selector(to: &Bound<'_, PyAny>, multicast: bool, ttl: Option<f64>) -> PyResult<Selector> {
    // An int is an endpoint id; asked first only of an int, since a failed
    // extraction makes (and formats) a Python exception: most of the cost
    // of a small send to an expression, when it was asked of everything.
    let mut s = if let Some(id) = to
        .is_instance_of::<PyInt>()
        .then(|| to.extract::<u64>())
        .transpose()
        .map_err(|_| PyValueError::new_err("an endpoint id is an int from 0 to 2**64 - 1"))?
    {
        Selector::endpoint(EndpointId(id))
    } else {
        let op = op_from(to)?;
        if multicast {
            Selector::multicast(op)
        } else {
            Selector::unicast(op)
        }
    };
    if let Some(ttl) = timeout_arg(ttl)? {
        s = s.ttl(ttl);
    }
    Ok(s)
}

/// A message with `data` (anything with the buffer protocol), duplicates of
/// `fds` and handles on `regions`.
fn message(
    selector: Selector,
    data: &Bound<'_, PyAny>,
    format: u16,
    fds: &[Bound<'_, PyAny>],
    regions: &[Bound<'_, PyAny>],
) -> PyResult<busbar::Message<BytesMessage>> {
    let bytes = InBuffer::get(data)?;
    let mut m = busbar::Message::new(selector, BytesMessage::new(format, bytes.as_slice()));
    drop(bytes);
    for fd in fds {
        m.objects.push(Object::new(dup_from(fd)?));
    }
    for r in regions {
        let region = r
            .extract::<PyRef<'_, Region>>()
            .map_err(|_| PyTypeError::new_err("regions must be busbar.Region objects"))?;
        m.memory_regions.push(region.handle()?);
    }
    Ok(m)
}

#[pymethods]
impl Endpoint {
    /// Sends `data` (bytes, bytearray, memoryview, a numpy array: anything
    /// with the buffer protocol, read in place) to the endpoints `to`
    /// selects: a label expression (text or `busbar.Expr`) or an endpoint
    /// id (`message.source`). `multicast` sends to every match (else to
    /// exactly one); `ttl` (seconds) lets a message nobody matches yet wait
    /// for a match to join; `fds` (ints or objects with `fileno()`) are
    /// duplicated and sent, `regions` (`busbar.Region`) shared. Waits for
    /// room in a full receiver (at most `timeout` seconds, if given), with
    /// the GIL released. `data` may be a `busbar.Loan` (`Endpoint.loan`):
    /// its memory is sent as it is, without a copy (alone: no `fds`,
    /// `regions` or `timeout`; the loan's own format tag).
    #[pyo3(signature = (to, data, *, multicast=false, ttl=None, format=0, fds=Vec::new(), regions=Vec::new(), timeout=None))]
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        py: Python<'_>,
        to: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
        multicast: bool,
        ttl: Option<f64>,
        format: u16,
        fds: Vec<Bound<'_, PyAny>>,
        regions: Vec<Bound<'_, PyAny>>,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let tx = self.sender(py)?;
        let selector = self.selector_for(to, multicast, ttl)?;
        let timeout = timeout_arg(timeout)?;
        if let Ok(loan) = data.cast::<Loan>() {
            if !fds.is_empty() || !regions.is_empty() || timeout.is_some() {
                return Err(PyValueError::new_err(
                    "a busbar.Loan is sent alone: no fds, regions or timeout",
                ));
            }
            let loan = loan.get().take()?;
            return py
                .detach(|| tx.send_loan(selector, loan))
                .map_err(|e| errors::send_error(py, e));
        }
        let result = if fds.is_empty() && regions.is_empty() && timeout.is_none() {
            let bytes = InBuffer::get(data)?;
            if bytes.as_slice().len() <= LOAN_ABOVE && selector.mode != SelectorMode::Multicast {
                // First with the GIL held: releasing it and taking it back
                // costs more than a send that finds room (most do). Only a
                // unicast: a multicast `try_send` finds partly full has
                // gone to some receivers already, and cannot be sent again.
                let m = busbar::Message::new(
                    selector.clone(),
                    BytesMessage::new(format, bytes.as_slice()),
                );
                match tx.try_send(m) {
                    Ok(()) => return Ok(()),
                    // Nothing was sent: wait for room below, GIL released.
                    Err(SendError::Full { delivered: 0, .. }) => {}
                    Err(e) => return Err(errors::send_error(py, e)),
                }
            }
            if bytes.as_slice().len() > LOAN_ABOVE {
                // One copy, straight into shared memory the receivers map.
                let mut loan = tx
                    .loan(format, bytes.as_slice().len())
                    .map_err(|e| errors::send_error(py, e))?;
                loan.as_mut_slice().copy_from_slice(bytes.as_slice());
                drop(bytes);
                py.detach(|| tx.send_loan(selector, loan))
            } else {
                let m = busbar::Message::new(selector, BytesMessage::new(format, bytes.as_slice()));
                drop(bytes);
                py.detach(|| tx.send(m))
            }
        } else {
            let m = message(selector, data, format, &fds, &regions)?;
            py.detach(|| match timeout {
                Some(t) => tx.send_timeout(m, t),
                None => tx.send(m),
            })
        };
        result.map_err(|e| errors::send_error(py, e))
    }

    /// Lends `size` bytes of shared memory from this endpoint's pool, to
    /// fill in place (`memoryview(loan)`, `numpy.frombuffer(loan, ...)`)
    /// and send with `send(to, loan)`: the zero-copy send. Receivers read
    /// the same memory (`memoryview(m)`, `numpy.frombuffer(m)`), and the
    /// chunk is lent again once every receiver has dropped its message.
    /// A free chunk is taken with the GIL held; when every chunk of the size
    /// is held, waits for one with the GIL released (watching the pool for
    /// up to 2 ms while the receivers keep up, else for `join`'s `spin_us`;
    /// then sleeping, at most a second in all), then takes new memory.
    /// `format` is the format tag the message arrives with.
    #[pyo3(signature = (size, *, format=0))]
    fn loan(&self, py: Python<'_>, size: usize, format: u16) -> PyResult<Loan> {
        let tx = self.sender(py)?;
        // A free chunk is taken with the GIL held (no system call):
        // releasing it and taking it back costs more than the take. The GIL
        // is released only to wait for a chunk to come back: first watching
        // the pool (`loan_spin`: a receiver that keeps up gives one back
        // within microseconds), then as the library's `loan` waits (a few
        // yields, then sleeps of 128 µs and more).
        let loan = match tx.try_loan(format, size) {
            Ok(Some(loan)) => loan,
            Ok(None) => py
                .detach(|| {
                    let start = Instant::now();
                    let end = start + self.loan_spin();
                    let got = loop {
                        if let Some(loan) = tx.try_loan(format, size)? {
                            break loan;
                        }
                        if Instant::now() >= end {
                            break tx.loan(format, size)?;
                        }
                        // The receiver that gives a chunk back may be
                        // queued on this processor.
                        std::thread::yield_now();
                    };
                    let waited = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    self.loan_waited.store(waited, Ordering::Relaxed);
                    Ok(got)
                })
                .map_err(|e| errors::send_error(py, e))?,
            Err(e) => return Err(errors::send_error(py, e)),
        };
        Ok(Loan::new(loan))
    }

    /// Waits for the next message, up to `timeout` seconds (`None`: as long
    /// as it takes; `busbar.TimeoutError`, also a `TimeoutError`, when none
    /// came). The GIL is released while it waits, and `Ctrl-C`
    /// (`KeyboardInterrupt`) interrupts it.
    #[pyo3(signature = (timeout=None))]
    fn recv(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Message> {
        let deadline = timeout_arg(timeout)?.map(|t| Instant::now() + t);
        self.wait(py, deadline)
    }

    /// A message that is already here, or `None`: never waits.
    fn try_recv(&self, py: Python<'_>) -> PyResult<Option<Message>> {
        self.take(py)
    }

    /// Receives the next message without copying its payload: `with
    /// ep.recv_with(timeout) as m:` gives `m.data`, a read-only `memoryview`
    /// of the payload where it lies (the link's shared-memory ring, a
    /// mapped memfd, the sender's loan), valid inside the `with` block.
    /// Other receives on this endpoint raise `RuntimeError` until the block
    /// ends. Signals are checked every 50 ms while it waits.
    #[pyo3(signature = (timeout=None))]
    fn recv_with(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<crate::lent::Lent> {
        let deadline = timeout_arg(timeout)?.map(|t| Instant::now() + t);
        if self.closed() {
            return Err(errors::closed(py));
        }
        if self.lending.swap(true, Ordering::AcqRel) {
            return Err(crate::lent::busy());
        }
        crate::lent::recv_with(
            py,
            self.receiver.clone(),
            &self.waker,
            self.lending.clone(),
            deadline,
        )
    }

    /// The receiver's poll descriptor, for `select`, `selectors` or an
    /// event loop: once `try_recv` returned `None` (or `recv` timed out),
    /// it polls readable when a message may have come; then call
    /// `try_recv` until it returns `None` again. Readiness can be spurious.
    /// Poll it, never read or close it; it is closed with the endpoint.
    fn fileno(&self, py: Python<'_>) -> PyResult<RawFd> {
        if self.closed() {
            return Err(errors::closed(py));
        }
        Ok(self.poll_fd)
    }

    /// Waits for the next message on the running asyncio loop (through
    /// `loop.add_reader` on `fileno()`, no thread), up to `timeout` seconds:
    /// `m = await ep.recv_async()`. One at a time per endpoint.
    #[pyo3(signature = (timeout=None))]
    fn recv_async<'py>(slf: Bound<'py, Self>, timeout: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
        slf.py()
            .import("busbar._asyncio")?
            .getattr("recv_async")?
            .call1((slf, timeout))
    }

    /// Sends `data` as a request to the one endpoint `to` selects and waits
    /// up to `timeout` seconds for its answer (`Endpoint.reply`), with the
    /// GIL released. Other messages keep arriving at `recv` meanwhile.
    /// `busbar.ResponderGoneError` when the responder leaves first.
    #[pyo3(signature = (to, data, timeout, *, ttl=None, format=0, fds=Vec::new(), regions=Vec::new()))]
    #[allow(clippy::too_many_arguments)]
    fn request(
        &self,
        py: Python<'_>,
        to: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
        timeout: f64,
        ttl: Option<f64>,
        format: u16,
        fds: Vec<Bound<'_, PyAny>>,
        regions: Vec<Bound<'_, PyAny>>,
    ) -> PyResult<Message> {
        let tx = self.sender(py)?;
        let timeout = crate::seconds(timeout)?;
        let m = message(selector(to, false, ttl)?, data, format, &fds, &regions)?;
        let answer = py
            .detach(|| tx.request::<BytesMessage>(m, timeout))
            .map_err(|e| errors::request_error(py, e))?;
        Message::from_rust(py, answer)
    }

    /// Answers `request` (a message whose `is_request` is true) with `data`.
    #[pyo3(signature = (request, data, *, format=0))]
    fn reply(
        &self,
        py: Python<'_>,
        request: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
        format: u16,
    ) -> PyResult<()> {
        let tx = self.sender(py)?;
        let handle = if let Ok(m) = request.extract::<PyRef<'_, Message>>() {
            m.reply.clone()
        } else if let Ok(m) = request.extract::<PyRef<'_, crate::lent::Lent>>() {
            m.reply.clone()
        } else {
            return Err(PyTypeError::new_err(
                "reply answers a busbar.Message (or a message lent by recv_with)",
            ));
        };
        let Some(handle) = handle else {
            return Err(errors::error(
                py,
                "NotARequestError",
                "the message is not a request: nobody waits for an answer to it",
            ));
        };
        let bytes = InBuffer::get(data)?;
        let payload = BytesMessage::new(format, bytes.as_slice());
        drop(bytes);
        py.detach(|| tx.reply_with(&handle, payload))
            .map_err(|e| errors::send_error(py, e))
    }

    /// The directory: every endpoint on the bus (this one included).
    fn endpoints(&self, py: Python<'_>) -> PyResult<Vec<EndpointInfo>> {
        let tx = self.sender(py)?;
        Ok(tx.endpoints().into_iter().map(EndpointInfo::from).collect())
    }

    /// Whether this endpoint hosts the bus controller now.
    fn is_controller(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.sender(py)?.is_controller())
    }

    /// This endpoint's id (what receivers see as `message.source`).
    #[getter]
    fn id(&self) -> u64 {
        self.id
    }

    /// The bus's name.
    #[getter]
    fn bus(&self) -> &str {
        &self.bus
    }

    /// This endpoint's label strings.
    #[getter]
    fn label(&self) -> Vec<String> {
        self.label.clone()
    }

    /// Whether the endpoint was closed.
    #[getter]
    fn closed(&self) -> bool {
        self.sender
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }

    /// Leaves the bus (again: nothing). A `recv` blocked in another thread
    /// raises `busbar.ClosedError`.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        if self.lending.load(Ordering::Acquire) {
            return Err(crate::lent::busy());
        }
        let tx = self
            .sender
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if tx.is_none() {
            return Ok(());
        }
        drop(tx);
        self.last_selector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        // A receive blocked in another thread holds the receiver: wake it
        // (it sees the endpoint closed and lets go), then take it.
        self.waker.wake();
        let rx = py.detach(|| self.receiver().take());
        drop(rx);
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _ty: &Bound<'_, PyAny>,
        _value: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// The next message (waiting as long as it takes); the iteration ends
    /// when the endpoint is closed.
    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Message>> {
        match self.wait(py, None) {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.is_instance(py, &errors_class(py, "ClosedError")?) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "<busbar.Endpoint {:016x} on {:?} label={:?}{}>",
            self.id,
            self.bus,
            self.label,
            if self.closed() { " closed" } else { "" }
        )
    }
}

/// The class `busbar.<name>`.
fn errors_class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("busbar._errors")?.getattr(name)
}
