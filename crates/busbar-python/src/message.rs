//! `busbar.Message` (a received message) and `busbar.EndpointInfo` (one
//! entry of the directory).

use crate::fd::Fd;
use crate::region::Region;
use busbar::{BytesMessage, EndpointInfo as Info, ReplyHandle, SelectorMode};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use std::os::fd::OwnedFd;

/// A received message: `data` (bytes), its `format` tag, the descriptors
/// (`fds`, `busbar.Fd`s, yours to close) and regions (`regions`) that came
/// with it, the endpoint that sent it (`source`) and the selector it was
/// sent with.
#[pyclass(frozen, module = "busbar")]
pub struct Message {
    /// The payload.
    #[pyo3(get)]
    data: Py<PyBytes>,
    /// The payload's format tag (0 to 65535), the sender's to choose.
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
    /// The selector it was sent with, as text: `unicast(a & !b)`.
    #[pyo3(get)]
    selector: String,
    /// The selector's label expression, as text: `a & !b`.
    #[pyo3(get)]
    expr: String,
    /// Whether it was sent to every match (multicast).
    #[pyo3(get)]
    multicast: bool,
    pub reply: Option<ReplyHandle>,
}

impl Message {
    /// A Python message from a Rust one.
    pub fn from_rust(py: Python<'_>, m: busbar::Message<BytesMessage>) -> PyResult<Message> {
        let reply = m.reply_handle();
        let fds = PyList::empty(py);
        for object in m.objects {
            fds.append(Fd::new(OwnedFd::from(object)))?;
        }
        let regions = PyList::empty(py);
        for region in m.memory_regions {
            regions.append(Region::wrap(region))?;
        }
        Ok(Message {
            data: PyBytes::new(py, &m.payload.data).unbind(),
            format: m.payload.format,
            fds: fds.unbind(),
            regions: regions.unbind(),
            source: m.source.0,
            selector: m.selector.to_string(),
            expr: m.selector.label_op.to_string(),
            multicast: m.selector.mode == SelectorMode::Multicast,
            reply,
        })
    }
}

#[pymethods]
impl Message {
    /// Whether its sender waits for an answer (`Endpoint.reply`).
    #[getter]
    fn is_request(&self) -> bool {
        self.reply.is_some()
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "<busbar.Message {} bytes format={} fds={} regions={} from {:016x} {}>",
            self.data.bind(py).as_bytes().len(),
            self.format,
            self.fds.bind(py).len(),
            self.regions.bind(py).len(),
            self.source,
            self.selector
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
