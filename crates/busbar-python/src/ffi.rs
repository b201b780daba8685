//! The binding's one module with `unsafe`: the buffer protocol, both ways.
//!
//! * [`InBuffer`] borrows the bytes of any object with the buffer protocol
//!   (`bytes`, `bytearray`, `memoryview`, numpy arrays, a [`Region`]) for
//!   as long as it lives, without copying them.
//! * [`fill_buffer`] exports memory this binding owns (a region's mapping,
//!   a lent message) to a `memoryview`, `numpy.frombuffer` or anything else
//!   that asks for a buffer.
//!
//! Everything else in the crate is safe Rust on pyo3's safe API.
//!
//! [`Region`]: crate::region::Region

use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;
use std::os::raw::c_int;

/// A contiguous buffer borrowed from a Python object (`PyBUF_SIMPLE`):
/// released when dropped. The object cannot resize or free the memory while
/// the buffer is held (that is the protocol's promise), so the slice stays
/// valid for the life of this value. It is used with the GIL held only.
pub struct InBuffer {
    view: Box<ffi::Py_buffer>,
}

impl InBuffer {
    /// Borrows `obj`'s bytes; a `TypeError` when it has no buffer, a
    /// `BufferError` when its buffer is not contiguous.
    pub fn get(obj: &Bound<'_, PyAny>) -> PyResult<InBuffer> {
        // SAFETY: `Py_buffer` is a plain C struct for which all-zero is a
        // valid (empty) value; `PyObject_GetBuffer` fills it in.
        let mut view: Box<ffi::Py_buffer> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: `obj` is a live object (we hold a reference and the GIL,
        // which `Bound` proves) and `view` points to writable memory that
        // stays put (boxed). On failure the call sets a Python exception and
        // leaves nothing to release.
        let rc = unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), &mut *view, ffi::PyBUF_SIMPLE) };
        if rc != 0 {
            return Err(PyErr::fetch(obj.py()));
        }
        Ok(InBuffer { view })
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        let len = usize::try_from(self.view.len).unwrap_or(0);
        if len == 0 || self.view.buf.is_null() {
            return &[];
        }
        // SAFETY: a successful `PyObject_GetBuffer` with `PyBUF_SIMPLE`
        // gives `len` contiguous bytes at `buf`, valid until
        // `PyBuffer_Release` (in `drop`), which needs `&mut self`, so no
        // slice handed out here outlives it.
        unsafe { std::slice::from_raw_parts(self.view.buf.cast::<u8>(), len) }
    }
}

impl Drop for InBuffer {
    fn drop(&mut self) {
        Python::attach(|_py| {
            // SAFETY: the view was filled by a successful
            // `PyObject_GetBuffer` and is released exactly once, here, with
            // the GIL held.
            unsafe { ffi::PyBuffer_Release(&mut *self.view) }
        });
    }
}

/// Memory a Python object of this binding exports through the buffer
/// protocol: where it is, how long, and whether others may write it.
#[derive(Clone, Copy, Debug)]
pub struct Exported {
    /// Start of the memory (dangling but non-null when `len` is 0).
    pub ptr: *mut u8,
    /// Its length in bytes.
    pub len: usize,
    /// Whether the buffer is read-only.
    pub readonly: bool,
}

// SAFETY: `Exported` only describes memory (a mapping owned by the pyclass
// that exports it); it is dereferenced in `fill_buffer` only, under the GIL,
// while its owner keeps the mapping alive. Moving the description between
// threads moves no access to the memory.
unsafe impl Send for Exported {}
// SAFETY: as for `Send`: sharing the description shares no access.
unsafe impl Sync for Exported {}

/// Fills `view` for a `__getbuffer__` request on `owner` with the memory
/// `mem`. The caller counts the export (and keeps `mem` mapped until the
/// matching `__releasebuffer__`).
///
/// # Safety
///
/// `view` must be the `Py_buffer` pointer the interpreter passed to
/// `__getbuffer__`, and `mem` must stay valid (mapped, `len` bytes) until
/// `__releasebuffer__` is called for this view.
pub unsafe fn fill_buffer(
    owner: &Bound<'_, PyAny>,
    view: *mut ffi::Py_buffer,
    flags: c_int,
    mem: Exported,
) -> PyResult<()> {
    if view.is_null() {
        return Err(PyBufferError::new_err("no buffer view to fill"));
    }
    let len = ffi::Py_ssize_t::try_from(mem.len)
        .map_err(|_| PyBufferError::new_err("the buffer is too large"))?;
    // SAFETY: `view` is the interpreter's, non-null (checked); `owner` is
    // live (we hold the GIL and a reference); `mem` is valid for `len`
    // bytes until the release, per this function's contract.
    // `PyBuffer_FillInfo` takes its own reference to `owner` (released by
    // the interpreter with the view), refuses a writable request on
    // read-only memory with `BufferError`, and sets one-dimensional,
    // byte-sized, contiguous fields.
    let rc = unsafe {
        ffi::PyBuffer_FillInfo(
            view,
            owner.as_ptr(),
            mem.ptr.cast(),
            len,
            c_int::from(mem.readonly),
            flags,
        )
    };
    if rc != 0 {
        return Err(PyErr::fetch(owner.py()));
    }
    Ok(())
}

/// A close-on-exec duplicate of descriptor number `raw`, which the caller
/// (Python code) says is open; `EBADF` when it is not.
pub fn dup_raw(raw: std::os::fd::RawFd) -> std::io::Result<std::os::fd::OwnedFd> {
    // SAFETY: the borrow lasts for the one `fcntl(F_DUPFD_CLOEXEC)` call
    // below and is never used to close or otherwise take the descriptor
    // over: duplicating a number that is not open fails with `EBADF`, and
    // duplicating one that is open is what the caller asked for.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) };
    Ok(rustix::io::fcntl_dupfd_cloexec(fd, 0)?)
}

#[pymethods]
impl crate::region::Region {
    /// The buffer protocol: the region's memory, writable.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let mem = slf.get().export(slf.py())?;
        // SAFETY: `view` is the interpreter's; `mem` is the region handle's
        // mapping, which stays mapped while the handle lives, and
        // `Region::close` refuses to drop the handle while an export
        // (counted by `export`, given back in `__releasebuffer__`) is out.
        let filled = unsafe { fill_buffer(slf.as_any(), view, flags, mem) };
        if filled.is_err() {
            slf.get().release();
        }
        filled
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        self.release();
    }
}

#[pymethods]
impl crate::lent::Lent {
    /// The buffer protocol: the lent payload, read-only.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let mem = slf.get().export()?;
        // SAFETY: `view` is the interpreter's; `mem` is the lent payload,
        // which the receiving thread keeps lent (its closure has not
        // returned) until `Lent` lets go, and it lets go only once no
        // export (counted by `export`, given back in `__releasebuffer__`)
        // is out. The buffer is read-only: `fill_buffer` refuses a writable
        // request.
        let filled = unsafe { fill_buffer(slf.as_any(), view, flags, mem) };
        if filled.is_err() {
            slf.get().release();
        }
        filled
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        self.release();
    }
}

#[pymethods]
impl crate::loan::Loan {
    /// The buffer protocol: the lent memory, writable.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let mem = slf.get().export()?;
        // SAFETY: `view` is the interpreter's; `mem` is the loan's chunk of
        // the endpoint's pool (or its private buffer), which stays mapped
        // and in place while the `busbar::Loan` lives, and `Loan::take`
        // (the only way it leaves, to be sent) refuses while an export
        // (counted by `export`, given back in `__releasebuffer__`) is out.
        let filled = unsafe { fill_buffer(slf.as_any(), view, flags, mem) };
        if filled.is_err() {
            slf.get().release();
        }
        filled
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        self.release();
    }
}

#[pymethods]
impl crate::message::Message {
    /// The buffer protocol: the payload where it lies, read-only.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let bytes = slf.get().payload();
        let mem = Exported {
            ptr: bytes.as_ptr().cast_mut(),
            len: bytes.len(),
            readonly: true,
        };
        // SAFETY: `view` is the interpreter's; `mem` is the message's
        // payload, which the frozen `Message` owns and never changes or
        // moves (a `busbar::Bytes`: a private buffer, or the sender's
        // shared memory held by a reference count), and the view holds a
        // reference to the message (`PyBuffer_FillInfo`), so the memory
        // outlives it. Read-only: `fill_buffer` refuses a writable request.
        unsafe { fill_buffer(slf.as_any(), view, flags, mem) }
    }
}
