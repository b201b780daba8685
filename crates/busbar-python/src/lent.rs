//! `Endpoint.recv_with`: a message read where it lies (the link's ring, a
//! mapped memfd, the sender's loan), as a read-only `memoryview` valid
//! inside a `with` block.
//!
//! The library lends a message to a closure (`EndpointReceiver::recv_with`)
//! and takes it back when the closure returns. A `with` block cannot run
//! inside a closure, so the closure runs on a thread of its own: it hands
//! the message's place to the caller and waits until the caller lets go
//! (the end of the `with` block, once no view of the memory is left). The
//! receiver is held meanwhile: the endpoint's other receives refuse to run
//! until then (`RuntimeError`), rather than wait for themselves.

use crate::errors;
use crate::fd::Fd;
use crate::ffi::Exported;
use crate::region::Region;
use busbar::{
    BytesMessage, EndpointReceiver, MemoryRegion, Object, RecvError, RecvWaker, ReplyHandle,
    SelectorMode,
};
use pyo3::exceptions::PyBufferError;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyMemoryView};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How often a caller waiting for a lent message checks for signals.
const SIGNAL_SLICE: Duration = Duration::from_millis(50);

/// A message lent by the receiving thread.
struct Lend {
    mem: Exported,
    format: u16,
    objects: Vec<Object>,
    regions: Vec<MemoryRegion>,
    source: u64,
    selector: busbar::Selector,
    reply: Option<ReplyHandle>,
}

/// What the receiving thread reports.
enum Got {
    Lent(Lend),
    Failed(RecvError),
    Closed,
}

/// Receives one message with `recv_with` on a thread of its own and lends
/// it to the caller as a [`Lent`], until `deadline`. `lending` is set (by
/// the caller) while a message is lent, and cleared when it is given back.
pub fn recv_with(
    py: Python<'_>,
    receiver: Arc<Mutex<Option<EndpointReceiver<BytesMessage>>>>,
    waker: &RecvWaker,
    lending: Arc<AtomicBool>,
    deadline: Option<Instant>,
) -> PyResult<Lent> {
    let (got_tx, got_rx) = mpsc::sync_channel::<Got>(1);
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("busbar-recv-with".into())
        .spawn(move || lend_one(&receiver, deadline, &got_tx, &release_rx));
    if let Err(e) = spawned {
        lending.store(false, Ordering::Release);
        return Err(errors::error(
            py,
            "IoError",
            format!("cannot start a thread: {e}"),
        ));
    }
    let mut got_rx = got_rx;
    let got = loop {
        // (The channel's receiving end is `Send`, not `Sync`: it goes into
        // the GIL-free closure and comes back out.)
        let (waited, back) = py.detach(move || (got_rx.recv_timeout(SIGNAL_SLICE), got_rx));
        got_rx = back;
        match waited {
            Ok(got) => break got,
            Err(RecvTimeoutError::Timeout) => {
                if let Err(e) = py.check_signals() {
                    // Ends the receiving thread's wait; a message it lends
                    // meanwhile is dropped with the channel.
                    waker.wake();
                    lending.store(false, Ordering::Release);
                    return Err(e);
                }
            }
            Err(RecvTimeoutError::Disconnected) => break Got::Closed,
        }
    };
    let lend = match got {
        Got::Lent(lend) => lend,
        Got::Failed(e) => {
            lending.store(false, Ordering::Release);
            return Err(match e {
                RecvError::Timeout => {
                    errors::error(py, "TimeoutError", "timed out waiting for a message")
                }
                RecvError::Interrupted => errors::closed(py),
                e => errors::recv_error(py, e),
            });
        }
        Got::Closed => {
            lending.store(false, Ordering::Release);
            return Err(errors::closed(py));
        }
    };
    let fds = PyList::empty(py);
    for object in lend.objects {
        fds.append(Fd::new(OwnedFd::from(object)))?;
    }
    let regions = PyList::empty(py);
    for region in lend.regions {
        regions.append(Region::wrap(region))?;
    }
    Ok(Lent {
        state: Mutex::new(State {
            mem: lend.mem,
            exports: 0,
            exiting: false,
            release: Some(release_tx),
            lending,
        }),
        view: Mutex::new(None),
        format: lend.format,
        fds: fds.unbind(),
        regions: regions.unbind(),
        source: lend.source,
        selector: lend.selector.to_string(),
        expr: lend.selector.label_op.to_string(),
        multicast: lend.selector.mode == SelectorMode::Multicast,
        reply: lend.reply,
    })
}

/// The receiving thread: lends the next `BytesMessage` (skipping others)
/// and holds it until `release` says so (or its sender is gone).
fn lend_one(
    receiver: &Mutex<Option<EndpointReceiver<BytesMessage>>>,
    deadline: Option<Instant>,
    got: &mpsc::SyncSender<Got>,
    release: &mpsc::Receiver<()>,
) {
    let mut guard = receiver.lock().unwrap_or_else(|p| p.into_inner());
    let Some(rx) = guard.as_mut() else {
        let _ = got.send(Got::Closed);
        return;
    };
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let lent = rx.recv_with(left, |mut b| {
            let objects = std::mem::take(&mut b.objects);
            let regions = std::mem::take(&mut b.memory_regions);
            let reply = b.reply_handle();
            let Some((format, bytes)) = b.bytes() else {
                return false; // not a BytesMessage: skipped, as `recv` does
            };
            let lend = Lend {
                mem: Exported {
                    ptr: bytes.as_ptr().cast_mut(),
                    len: bytes.len(),
                    readonly: true,
                },
                format,
                objects,
                regions,
                source: b.source.0,
                selector: b.selector.clone(),
                reply,
            };
            if got.send(Got::Lent(lend)).is_ok() {
                // Returns once the caller lets go (or is gone): only then
                // may the library take the memory back.
                let _ = release.recv();
            }
            true
        });
        match lent {
            Ok(true) => return,
            Ok(false) => continue,
            Err(e) => {
                let _ = got.send(Got::Failed(e));
                return;
            }
        }
    }
}

/// A message lent by `Endpoint.recv_with`: `data` is a read-only
/// `memoryview` of the payload where it lies, valid until the end of the
/// `with` block (then it is released, and the memory goes back to the
/// bus). Views made from it (`numpy.frombuffer(m.data)`, slices) must be
/// gone by then: the block's end raises `BufferError` while one is alive,
/// and the message is given back when the last one goes. `fds` and
/// `regions` are yours, as with `recv`.
#[pyclass(frozen, module = "busbar")]
pub struct Lent {
    state: Mutex<State>,
    /// The `memoryview` `data` gives, made on first use.
    view: Mutex<Option<Py<PyAny>>>,
    /// The payload's format tag.
    #[pyo3(get)]
    format: u16,
    /// Descriptors that came with it.
    #[pyo3(get)]
    fds: Py<PyList>,
    /// Regions that came with it.
    #[pyo3(get)]
    regions: Py<PyList>,
    /// The id of the endpoint that sent it.
    #[pyo3(get)]
    source: u64,
    /// The selector it was sent with, as text.
    #[pyo3(get)]
    selector: String,
    /// The selector's label expression, as text.
    #[pyo3(get)]
    expr: String,
    /// Whether it was sent to every match.
    #[pyo3(get)]
    multicast: bool,
    pub reply: Option<ReplyHandle>,
}

struct State {
    mem: Exported,
    /// Buffers handed out and not released yet.
    exports: usize,
    /// The `with` block ended while views were alive: give the message
    /// back when the last one goes.
    exiting: bool,
    /// Tells the receiving thread to take the message back; `None` once done.
    release: Option<mpsc::Sender<()>>,
    lending: Arc<AtomicBool>,
}

impl State {
    fn let_go(&mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.send(());
            self.lending.store(false, Ordering::Release);
        }
    }
}

impl Lent {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The payload's memory, counted as one more export (see
    /// [`Lent::release`]); `BufferError` once the message was given back.
    pub fn export(&self) -> PyResult<Exported> {
        let mut s = self.state();
        if s.release.is_none() || s.exiting {
            return Err(PyBufferError::new_err(
                "the lent message was given back at the end of its with block",
            ));
        }
        s.exports += 1;
        Ok(s.mem)
    }

    /// One export fewer; the message goes back when the block has ended
    /// and this was the last.
    pub fn release(&self) {
        let mut s = self.state();
        s.exports = s.exports.saturating_sub(1);
        if s.exports == 0 && s.exiting {
            s.let_go();
        }
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        // No view is alive (each holds a reference to this object).
        self.state().let_go();
    }
}

#[pymethods]
impl Lent {
    /// The payload, read-only, where it lies (no copy).
    #[getter]
    fn data(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let this = slf.get();
        let mut view = this.view.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = view.as_ref() {
            return Ok(v.clone_ref(slf.py()));
        }
        let v = PyMemoryView::from(slf.as_any())?.into_any().unbind();
        *view = Some(v.clone_ref(slf.py()));
        Ok(v)
    }

    /// Whether its sender waits for an answer (`Endpoint.reply`).
    #[getter]
    fn is_request(&self) -> bool {
        self.reply.is_some()
    }

    /// Whether it was given back (the `with` block ended).
    #[getter]
    fn released(&self) -> bool {
        self.state().release.is_none()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Gives the message back; `BufferError` when views of `data` are still
    /// alive (it goes back when the last one does).
    fn __exit__(
        &self,
        py: Python<'_>,
        _ty: &Bound<'_, PyAny>,
        _value: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        let view = self.view.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(v) = view {
            // Fails while something made from the view still holds it; the
            // count below says so.
            let _ = v.bind(py).call_method0("release");
        }
        let mut s = self.state();
        if s.exports == 0 {
            s.let_go();
            return Ok(false);
        }
        s.exiting = true;
        Err(PyBufferError::new_err(format!(
            "{} view(s) of the lent message are still alive at the end of its with block: \
             it goes back to the bus when they are gone (copy what you keep: bytes(m.data))",
            s.exports
        )))
    }

    fn __len__(&self) -> usize {
        self.state().mem.len
    }

    fn __repr__(&self) -> String {
        let s = self.state();
        format!(
            "<busbar.Lent {} bytes format={} from {:016x}{}>",
            s.mem.len,
            self.format,
            self.source,
            if s.release.is_none() { " released" } else { "" }
        )
    }
}

/// The error of a receive while a message lent by `recv_with` is open.
pub fn busy() -> PyErr {
    pyo3::exceptions::PyRuntimeError::new_err(
        "a message lent by recv_with is still open on this endpoint: leave its with block first",
    )
}
