//! Rust errors as Python exceptions: one class per error kind.
//!
//! The classes are defined in Python (`busbar/_errors.py`), where
//! `busbar.TimeoutError` can derive from both `busbar.Error` and the
//! built-in `TimeoutError`; this module looks them up by name and raises
//! them. The table of names (and their `code`, shared with the C and
//! Node.js bindings) is in `bindings/python/README.md`.

use busbar::{JoinError, RecvError, RegionError, RequestError, SendError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// A `busbar.<class_name>` exception with `message`.
pub fn error(py: Python<'_>, class_name: &str, message: impl Into<String>) -> PyErr {
    let message = message.into();
    let class = ERRORS
        .get_or_try_init(py, || py.import("busbar._errors").map(|m| m.unbind()))
        .and_then(|m| m.bind(py).getattr(class_name))
        .and_then(|c| c.cast_into::<PyType>().map_err(PyErr::from));
    match class {
        Ok(class) => PyErr::from_type(class, (message,)),
        // The package is broken (the module was loaded without it): say so
        // rather than hide the error.
        Err(e) => e,
    }
}

/// `busbar.ClosedError`: the endpoint was closed (its `with` block ended).
pub fn closed(py: Python<'_>) -> PyErr {
    error(py, "ClosedError", "the endpoint is closed")
}

/// The exception for a failed `join`.
pub fn join_error(py: Python<'_>, e: JoinError) -> PyErr {
    let class = match &e {
        JoinError::Timeout => "TimeoutError",
        JoinError::VersionMismatch { .. } => "VersionMismatchError",
        JoinError::TokenMismatch => "TokenMismatchError",
        JoinError::PermissionDenied { .. } => "PermissionDeniedError",
        JoinError::BusFull { .. } => "BusFullError",
        JoinError::UntrustedController { .. } => "UntrustedControllerError",
        JoinError::InvalidIdentifier(_) => "InvalidIdentifierError",
        JoinError::Namespace(_) => "NamespaceError",
        JoinError::Protocol(_) => "ProtocolError",
        JoinError::Io(_) => "IoError",
        _ => "Error",
    };
    error(py, class, e.to_string())
}

/// The exception for a failed send.
pub fn send_error(py: Python<'_>, e: SendError) -> PyErr {
    let class = match &e {
        SendError::NoRoute(_) => "NoRouteError",
        SendError::TooManyObjects { .. } => "TooManyObjectsError",
        SendError::InvalidSelector(_) => "InvalidSelectorError",
        SendError::Full { .. } => "FullError",
        SendError::WouldDeadlock { .. } => "WouldDeadlockError",
        SendError::TooLarge { .. } => "TooLargeError",
        SendError::PendingFull(_) => "PendingFullError",
        SendError::Encode(_) => "CodecError",
        SendError::Region(_) => "RegionError",
        SendError::Disconnected => "DisconnectedError",
        SendError::NotARequest => "NotARequestError",
        SendError::Io(_) => "IoError",
        _ => "Error",
    };
    error(py, class, e.to_string())
}

/// The exception for a failed receive (not `Timeout`, `Empty` or
/// `Interrupted`, which the callers handle).
pub fn recv_error(py: Python<'_>, e: RecvError) -> PyErr {
    let class = match &e {
        RecvError::Timeout | RecvError::Empty => "TimeoutError",
        RecvError::Disconnected => "DisconnectedError",
        RecvError::Decode(_) => "CodecError",
        RecvError::TooLarge { .. } => "TooLargeError",
        RecvError::Io(_) => "IoError",
        _ => "Error",
    };
    error(py, class, e.to_string())
}

/// The exception for a request that got no answer.
pub fn request_error(py: Python<'_>, e: RequestError) -> PyErr {
    match e {
        RequestError::Send(e) => send_error(py, e),
        RequestError::Timeout => error(py, "TimeoutError", "no answer within the timeout"),
        e @ RequestError::ResponderGone(_) => error(py, "ResponderGoneError", e.to_string()),
        e @ RequestError::Answer(_) => error(py, "AnswerError", e.to_string()),
        e => error(py, "Error", e.to_string()),
    }
}

/// The exception for a region that could not be made or mapped.
pub fn region_error(py: Python<'_>, e: RegionError) -> PyErr {
    error(py, "RegionError", e.to_string())
}
