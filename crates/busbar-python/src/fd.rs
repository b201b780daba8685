//! `busbar.Fd`: a file descriptor that came with a message, owned until
//! closed or detached.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

/// A received file descriptor. It is closed by `close()`, at the end of a
/// `with` block, or when the object goes away (CPython frees it as soon as
/// the last reference goes, so that is deterministic too); `detach()` hands
/// the descriptor over to you instead, and then nobody closes it but you.
#[pyclass(frozen, module = "busbar")]
pub struct Fd {
    fd: Mutex<Option<OwnedFd>>,
}

impl Fd {
    pub fn new(fd: OwnedFd) -> Fd {
        Fd {
            fd: Mutex::new(Some(fd)),
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<OwnedFd>> {
        self.fd.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn closed() -> PyErr {
    PyValueError::new_err("the descriptor is closed or detached")
}

#[pymethods]
impl Fd {
    /// The descriptor number (still owned by this object).
    fn fileno(&self) -> PyResult<RawFd> {
        self.slot()
            .as_ref()
            .map(|f| f.as_raw_fd())
            .ok_or_else(closed)
    }

    /// Gives up ownership: returns the number, which you must close.
    fn detach(&self) -> PyResult<RawFd> {
        self.slot()
            .take()
            .map(|f| f.into_raw_fd())
            .ok_or_else(closed)
    }

    /// Closes the descriptor (again: nothing).
    fn close(&self) {
        drop(self.slot().take());
    }

    /// Whether it was closed or detached.
    #[getter]
    fn closed(&self) -> bool {
        self.slot().is_none()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        _ty: &Bound<'_, PyAny>,
        _value: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> bool {
        self.close();
        false
    }

    fn __repr__(&self) -> String {
        match self.slot().as_ref() {
            Some(f) => format!("<busbar.Fd {}>", f.as_raw_fd()),
            None => "<busbar.Fd closed>".to_string(),
        }
    }
}

/// What `fds=[...]` may hold: an `int` or an object with `fileno()`; the
/// descriptor is duplicated (close-on-exec), the caller keeps its own.
pub fn dup_from(obj: &Bound<'_, PyAny>) -> PyResult<OwnedFd> {
    let raw: RawFd = if let Ok(n) = obj.extract::<RawFd>() {
        n
    } else if obj.hasattr("fileno")? {
        obj.call_method0("fileno")?.extract::<RawFd>()?
    } else {
        return Err(PyTypeError::new_err(format!(
            "expected a file descriptor (int or object with fileno()), got {}",
            obj.get_type().name()?
        )));
    };
    if raw < 0 {
        return Err(PyValueError::new_err(format!(
            "{raw} is not a file descriptor"
        )));
    }
    crate::ffi::dup_raw(raw)
        .map_err(|e| PyValueError::new_err(format!("file descriptor {raw}: {e}")))
}
