//! `busbar.Message` (a received message) and `busbar.EndpointInfo` (one
//! entry of the directory).

use crate::fd::Fd;
use crate::region::Region;
use busbar::{BytesMessage, EndpointInfo as Info, ReplyHandle, Selector, SelectorMode};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use std::os::fd::OwnedFd;
use std::sync::OnceLock;

/// A received message: `data` (bytes), its `format` tag, the descriptors
/// (`fds`, `busbar.Fd`s, yours to close) and regions (`regions`) that came
/// with it, the endpoint that sent it (`source`) and the selector it was
/// sent with.
///
/// The message itself exports its payload through the buffer protocol,
/// read-only and without a copy: `memoryview(m)`, `numpy.frombuffer(m)`.
/// A large payload (one sent from a loan, or above 64 KiB) stays where it
/// arrived, in the sender's shared memory, for as long as the message (or
/// a view of it) lives; `data` copies it into `bytes` when first asked for.
#[pyclass(frozen, module = "busbar")]
pub struct Message {
    /// The payload, where it lies (a private copy, or the sender's memory).
    payload: busbar::Bytes,
    /// `data`, made on first use.
    data: OnceLock<Py<PyBytes>>,
    /// The payload's format tag (0 to 65535), the sender's to choose.
    #[pyo3(get)]
    format: u16,
    /// Descriptors that came with it (`None`: none came).
    fds: Option<Py<PyList>>,
    /// Regions that came with it (`None`: none came).
    regions: Option<Py<PyList>>,
    /// The id of the endpoint that sent it.
    #[pyo3(get)]
    source: u64,
    /// The selector it was sent with (as text on demand).
    sel: Selector,
    pub reply: Option<ReplyHandle>,
}

impl Message {
    /// A Python message from a Rust one.
    pub fn from_rust(py: Python<'_>, m: busbar::Message<BytesMessage>) -> PyResult<Message> {
        let reply = m.reply_handle();
        let fds = if m.objects.is_empty() {
            None
        } else {
            let fds = PyList::empty(py);
            for object in m.objects {
                fds.append(Fd::new(OwnedFd::from(object)))?;
            }
            Some(fds.unbind())
        };
        let regions = if m.memory_regions.is_empty() {
            None
        } else {
            let regions = PyList::empty(py);
            for region in m.memory_regions {
                regions.append(Region::wrap(region))?;
            }
            Some(regions.unbind())
        };
        Ok(Message {
            payload: m.payload.data,
            data: OnceLock::new(),
            format: m.payload.format,
            fds,
            regions,
            source: m.source.0,
            sel: m.selector,
            reply,
        })
    }

    /// The payload's bytes, where they lie (for the buffer protocol: they
    /// stay put and unchanged while the message lives).
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
}

#[pymethods]
impl Message {
    /// The payload, as `bytes` (copied on first use; `memoryview(m)` reads
    /// it in place).
    #[getter]
    fn data(&self, py: Python<'_>) -> Py<PyBytes> {
        self.data
            .get_or_init(|| PyBytes::new(py, &self.payload).unbind())
            .clone_ref(py)
    }

    /// Descriptors that came with it.
    #[getter]
    fn fds(&self, py: Python<'_>) -> Py<PyList> {
        match &self.fds {
            Some(l) => l.clone_ref(py),
            None => PyList::empty(py).unbind(),
        }
    }

    /// Regions that came with it.
    #[getter]
    fn regions(&self, py: Python<'_>) -> Py<PyList> {
        match &self.regions {
            Some(l) => l.clone_ref(py),
            None => PyList::empty(py).unbind(),
        }
    }

    /// The selector it was sent with, as text: `unicast(a & !b)`.
    #[getter]
    fn selector(&self) -> String {
        self.sel.to_string()
    }

    /// The selector's label expression, as text: `a & !b`.
    #[getter]
    fn expr(&self) -> String {
        self.sel.label_op.to_string()
    }

    /// Whether it was sent to every match (multicast).
    #[getter]
    fn multicast(&self) -> bool {
        self.sel.mode == SelectorMode::Multicast
    }

    /// Whether its sender waits for an answer (`Endpoint.reply`).
    #[getter]
    fn is_request(&self) -> bool {
        self.reply.is_some()
    }

    fn __len__(&self) -> usize {
        self.payload.len()
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "<busbar.Message {} bytes format={} fds={} regions={} from {:016x} {}>",
            self.payload.len(),
            self.format,
            self.fds.as_ref().map_or(0, |l| l.bind(py).len()),
            self.regions.as_ref().map_or(0, |l| l.bind(py).len()),
            self.source,
            self.sel
        )
    }
}

/// One endpoint of the bus, as the directory lists it.
#[pyclass(frozen, get_all, module = "busbar")]
pub struct EndpointInfo {
    /// Its id.
    id: u64,
    /// Its label's strings, sorted.
    label: Vec<String>,
    /// Its process id.
    pid: u32,
    /// Its user id.
    uid: u32,
    /// Whether it hosts the bus controller.
    is_controller: bool,
    /// Bytes written to it and not read yet (as it last reported).
    queued_bytes: u64,
    /// Messages dropped for it because it was full (as last reported).
    dropped: u64,
    /// Messages per second it sent (as last reported).
    sent_per_sec: u64,
    /// Messages per second it received (as last reported).
    received_per_sec: u64,
}

impl From<Info> for EndpointInfo {
    fn from(i: Info) -> EndpointInfo {
        EndpointInfo {
            id: i.id.0,
            label: i.label.iter().map(str::to_string).collect(),
            pid: i.pid,
            uid: i.uid,
            is_controller: i.is_controller,
            queued_bytes: i.queued_bytes,
            dropped: i.dropped,
            sent_per_sec: i.sent_per_sec,
            received_per_sec: i.received_per_sec,
        }
    }
}

#[pymethods]
impl EndpointInfo {
    fn __repr__(&self) -> String {
        format!(
            "<busbar.EndpointInfo {:016x} pid={} label={:?}{}>",
            self.id,
            self.pid,
            self.label,
            if self.is_controller {
                " controller"
            } else {
                ""
            }
        )
    }
}
