//! `busbar.Loan`: shared memory from the endpoint's pool, filled in place
//! and sent without a copy (Rust's `EndpointSender::loan`).

use crate::ffi::Exported;
use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::prelude::*;
use std::sync::{Mutex, MutexGuard};

/// A buffer of shared memory lent by `Endpoint.loan(size)`: writable
/// through the buffer protocol (`memoryview(loan)`,
/// `numpy.frombuffer(loan, ...)`), then sent with `Endpoint.send(to,
/// loan)`, which hands the memory itself to the receivers: nothing is
/// copied however large it is. Receivers get a `busbar.Message` whose
/// payload stays in that memory (`memoryview(m)`, `numpy.frombuffer(m)`).
///
/// A loan is sent once; views of it must be gone by then (`BufferError`
/// otherwise). A loan never sent goes back to the pool when it is dropped.
/// Its bytes start zeroed only when the memory is new: reused memory holds
/// what an earlier message left there.
#[pyclass(frozen, module = "busbar")]
pub struct Loan {
    state: Mutex<State>,
    len: usize,
    format: u16,
}

struct State {
    loan: Option<busbar::Loan>,
    /// Buffers handed out and not released yet.
    exports: usize,
}

impl Loan {
    pub fn new(loan: busbar::Loan) -> Loan {
        let len = loan.len();
        let format = loan.format();
        Loan {
            state: Mutex::new(State {
                loan: Some(loan),
                exports: 0,
            }),
            len,
            format,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The lent memory, counted as one more export: the caller hands it to
    /// the buffer protocol and calls [`Loan::release`] when the interpreter
    /// releases it. `BufferError` once sent.
    pub fn export(&self) -> PyResult<Exported> {
        let mut s = self.state();
        let Some(loan) = s.loan.as_mut() else {
            return Err(PyBufferError::new_err("the loan was sent"));
        };
        let bytes = loan.as_mut_slice();
        let mem = Exported {
            ptr: bytes.as_mut_ptr(),
            len: bytes.len(),
            readonly: false,
        };
        s.exports += 1;
        Ok(mem)
    }

    /// One export fewer.
    pub fn release(&self) {
        let mut s = self.state();
        s.exports = s.exports.saturating_sub(1);
    }

    /// Takes the loan out to send it: `BufferError` while views of it are
    /// alive, `ValueError` when it was sent already.
    pub fn take(&self) -> PyResult<busbar::Loan> {
        let mut s = self.state();
        if s.exports > 0 {
            return Err(PyBufferError::new_err(format!(
                "{} view(s) of the loan are still alive: release them before sending it",
                s.exports
            )));
        }
        s.loan
            .take()
            .ok_or_else(|| PyValueError::new_err("the loan was sent already"))
    }
}

#[pymethods]
impl Loan {
    /// Its length in bytes.
    #[getter]
    fn size(&self) -> usize {
        self.len
    }

    fn __len__(&self) -> usize {
        self.len
    }

    /// The format tag it arrives with.
    #[getter]
    fn format(&self) -> u16 {
        self.format
    }

    /// Whether it was sent.
    #[getter]
    fn sent(&self) -> bool {
        self.state().loan.is_none()
    }

    fn __repr__(&self) -> String {
        format!(
            "<busbar.Loan {} bytes format={}{}>",
            self.len,
            self.format,
            if self.sent() { " sent" } else { "" }
        )
    }
}
