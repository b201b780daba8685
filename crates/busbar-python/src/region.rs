//! `busbar.Region` (shared memory, written and read in place through the
//! buffer protocol) and `busbar.Registry` (a pool of regions).

use crate::errors;
use crate::ffi::Exported;
use busbar::{MemoryRegion, MemoryRegistry};
use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::prelude::*;
use std::sync::{Mutex, MutexGuard};

/// A shared-memory region (Rust's `MemoryRegion`): `memoryview(region)` is
/// its memory, writable, with no copy; `numpy.frombuffer(region, ...)`
/// views it as an array. Attach it to a message (`regions=[region]`) and
/// the receivers map the same memory. `ref_count` counts the handles in
/// every process (this one included, and copies in messages on the way).
///
/// `close()` (or the end of a `with` block) lets go of this handle; it
/// raises `BufferError` while views of the memory are alive.
#[pyclass(frozen, module = "busbar")]
pub struct Region {
    state: Mutex<State>,
}

struct State {
    region: Option<MemoryRegion>,
    /// The mapping, once the memory was first asked for.
    mem: Option<Exported>,
    /// Buffers handed out and not released yet.
    exports: usize,
}

impl Region {
    pub fn wrap(region: MemoryRegion) -> Region {
        Region {
            state: Mutex::new(State {
                region: Some(region),
                mem: None,
                exports: 0,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The region's memory, mapped on first use, counted as one more
    /// export: the caller hands it to the buffer protocol and calls
    /// [`Region::release`] when the interpreter releases it.
    pub fn export(&self, py: Python<'_>) -> PyResult<Exported> {
        let mut s = self.state();
        let mem = match s.mem {
            Some(mem) => mem,
            None => {
                let region = s.region.as_mut().ok_or_else(closed)?;
                let bytes = region.map(..).map_err(|e| errors::region_error(py, e))?;
                let mem = Exported {
                    ptr: bytes.as_mut_ptr(),
                    len: bytes.len(),
                    readonly: false,
                };
                s.mem = Some(mem);
                mem
            }
        };
        s.exports += 1;
        Ok(mem)
    }

    /// One export fewer.
    pub fn release(&self) {
        let mut s = self.state();
        s.exports = s.exports.saturating_sub(1);
    }

    /// Another handle to attach to a message (the count goes up by one).
    pub fn handle(&self) -> PyResult<MemoryRegion> {
        self.state().region.clone().ok_or_else(closed)
    }
}

fn closed() -> PyErr {
    PyValueError::new_err("the region is closed")
}

#[pymethods]
impl Region {
    /// A new region of `size` bytes, zero-filled.
    #[new]
    fn new(py: Python<'_>, size: usize) -> PyResult<Region> {
        let region = MemoryRegion::new(size).map_err(|e| errors::region_error(py, e))?;
        Ok(Region::wrap(region))
    }

    /// Its length in bytes.
    #[getter]
    fn size(&self) -> PyResult<usize> {
        self.state()
            .region
            .as_ref()
            .map(|r| r.size())
            .ok_or_else(closed)
    }

    fn __len__(&self) -> PyResult<usize> {
        self.size()
    }

    /// How many handles to it exist, in all processes.
    #[getter]
    fn ref_count(&self) -> PyResult<u32> {
        self.state()
            .region
            .as_ref()
            .map(|r| r.ref_count())
            .ok_or_else(closed)
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.state().region.is_none()
    }

    /// Lets go of this handle (`BufferError` while views of it are alive).
    fn close(&self) -> PyResult<()> {
        let mut s = self.state();
        if s.exports > 0 {
            return Err(PyBufferError::new_err(format!(
                "cannot close a region while {} view(s) of it exist (release them first)",
                s.exports
            )));
        }
        s.mem = None;
        s.region = None;
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        _ty: &Bound<'_, PyAny>,
        _value: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        self.close()?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        let s = self.state();
        match s.region.as_ref() {
            Some(r) => format!(
                "<busbar.Region size={} ref_count={}>",
                r.size(),
                r.ref_count()
            ),
            None => "<busbar.Region closed>".to_string(),
        }
    }
}

/// A pool of regions (Rust's `MemoryRegistry`): `alloc` reuses a region
/// nobody holds any more (in any process) before making a new one.
#[pyclass(frozen, module = "busbar")]
pub struct Registry {
    inner: Mutex<MemoryRegistry>,
}

impl Registry {
    fn inner(&self) -> MutexGuard<'_, MemoryRegistry> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[pymethods]
impl Registry {
    /// A registry; `idle_timeout` (seconds) is how long a free region is
    /// kept, `max_free_bytes` how many bytes of free regions at most.
    #[new]
    #[pyo3(signature = (idle_timeout=None, max_free_bytes=None))]
    fn new(idle_timeout: Option<f64>, max_free_bytes: Option<usize>) -> PyResult<Registry> {
        let mut r = MemoryRegistry::new();
        if let Some(t) = idle_timeout {
            r = r.with_idle_timeout(crate::seconds(t)?);
        }
        if let Some(b) = max_free_bytes {
            r = r.with_max_free_bytes(b);
        }
        Ok(Registry {
            inner: Mutex::new(r),
        })
    }

    /// A region of `size` bytes with this `tag`: a free one reused, or a new one.
    #[pyo3(signature = (size, tag=None))]
    fn alloc(&self, py: Python<'_>, size: usize, tag: Option<&str>) -> PyResult<Region> {
        let region = self
            .inner()
            .alloc(size, tag)
            .map_err(|e| errors::region_error(py, e))?;
        Ok(Region::wrap(region))
    }

    /// Lets go of regions that were free for longer than the idle timeout.
    fn maintain(&self) {
        self.inner().maintain();
    }

    /// How many regions it holds, free or not.
    fn __len__(&self) -> usize {
        self.inner().len()
    }

    fn __repr__(&self) -> String {
        format!("<busbar.Registry regions={}>", self.inner().len())
    }
}
