//! `Region`: a shared memory region (busbar's `MemoryRegion`) whose
//! `ArrayBuffer` is the shared mapping itself.

use crate::error::{Failure, Result};
use busbar::MemoryRegion;
use napi::bindgen_prelude::{ArrayBuffer, Buffer};
use napi::Env;
use napi_derive::napi;
use std::sync::{Arc, Mutex, MutexGuard};

/// What a `Region` object and its `ArrayBuffer` share: the region until
/// `close` (or until both are collected).
pub(crate) struct Inner {
    region: Mutex<Option<MemoryRegion>>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Option<MemoryRegion>> {
        // Nothing panics while holding it; a poisoned lock still guards a
        // whole value.
        self.region.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A shared memory region: made here (`Region.create`) or received in a
/// message; sent by putting it in a message's `regions`.
#[napi]
pub struct Region {
    inner: Arc<Inner>,
    /// Where the `ArrayBuffer` made by `buffer` points (0: none made).
    buffer_at: usize,
    size: usize,
}

impl Region {
    /// Wraps a region (a received one, or a new one).
    pub(crate) fn wrap(region: MemoryRegion) -> Region {
        let size = region.size();
        Region {
            inner: Arc::new(Inner {
                region: Mutex::new(Some(region)),
            }),
            buffer_at: 0,
            size,
        }
    }

    /// Another handle to the region, to send (it counts in `refCount`
    /// until the message is received or dropped).
    pub(crate) fn handle(&self) -> std::result::Result<MemoryRegion, Failure> {
        self.inner
            .lock()
            .as_ref()
            .map(MemoryRegion::clone)
            .ok_or_else(closed)
    }
}

fn closed() -> Failure {
    Failure::new("CLOSED", "the region is closed")
}

fn range(offset: f64, len: f64, size: usize) -> std::result::Result<(usize, usize), Failure> {
    let ok = |v: f64| v >= 0.0 && v.fract() == 0.0 && v <= size as f64;
    if !ok(offset) || !ok(len) || offset + len > size as f64 {
        return Err(Failure::new(
            "OUT_OF_RANGE",
            format!("{len} bytes at offset {offset} are not inside a region of {size} bytes"),
        ));
    }
    Ok((offset as usize, len as usize))
}

#[napi]
impl Region {
    /// A new region of `size` bytes, zero-filled, `refCount` 1.
    #[napi(factory, catch_unwind)]
    pub fn create(size: f64) -> Result<Region> {
        if !(size >= 0.0 && size.fract() == 0.0 && size <= (1u64 << 46) as f64) {
            return Err(Failure::invalid(format!("region size {size} is not a byte count")).into());
        }
        let region = MemoryRegion::new(size as usize).map_err(Failure::from)?;
        Ok(Region::wrap(region))
    }

    /// Its length in bytes.
    #[napi(getter)]
    pub fn size(&self) -> f64 {
        self.size as f64
    }

    /// How many handles to it exist in all processes (messages in flight
    /// included); 0 once closed here.
    #[napi(getter, catch_unwind)]
    pub fn ref_count(&self) -> u32 {
        self.inner
            .lock()
            .as_ref()
            .map_or(0, MemoryRegion::ref_count)
    }

    /// Whether `close` was called.
    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.inner.lock().is_none()
    }

    /// The one `ArrayBuffer` over the shared memory (index.js caches it).
    #[napi(catch_unwind)]
    pub fn buffer<'env>(&mut self, env: &'env Env) -> Result<ArrayBuffer<'env>> {
        if self.buffer_at != 0 {
            return Err(
                Failure::new("INVALID_STATE", "the region's buffer was made already").into(),
            );
        }
        let mut guard = self.inner.lock();
        let region = guard.as_mut().ok_or_else(closed)?;
        if region.size() == 0 {
            return Ok(ArrayBuffer::from_data(env, Vec::new()).map_err(Failure::from)?);
        }
        let bytes = region.map(..).map_err(Failure::from)?;
        let (data, len) = (bytes.as_mut_ptr(), bytes.len());
        drop(guard);
        let buffer = crate::ffi::external_arraybuffer(env, data, len, Arc::clone(&self.inner))?;
        self.buffer_at = data as usize;
        Ok(buffer)
    }

    /// `length` bytes from `offset`, copied (for runtimes that refuse
    /// `buffer`).
    #[napi(catch_unwind)]
    pub fn read(&self, offset: f64, length: f64) -> Result<Buffer> {
        let (offset, len) = range(offset, length, self.size)?;
        let mut guard = self.inner.lock();
        let region = guard.as_mut().ok_or_else(closed)?;
        let bytes = region.map(offset..offset + len).map_err(Failure::from)?;
        Ok(Buffer::from(bytes.to_vec()))
    }

    /// Copies `data` in at `offset`.
    #[napi(catch_unwind)]
    pub fn write(&self, offset: f64, data: &[u8]) -> Result<()> {
        let (offset, len) = range(offset, data.len() as f64, self.size)?;
        let mut guard = self.inner.lock();
        let region = guard.as_mut().ok_or_else(closed)?;
        region
            .map(offset..offset + len)
            .map_err(Failure::from)?
            .copy_from_slice(data);
        Ok(())
    }

    /// Lets the region go now: unmapped here, `refCount` one less for
    /// everyone. `buffer` is the `ArrayBuffer` `buffer()` made, if it was
    /// made: it is detached first (its `byteLength` becomes 0), so nothing
    /// can touch the memory after. Idempotent.
    #[napi(catch_unwind)]
    pub fn close(&mut self, buffer: Option<ArrayBuffer>) -> Result<()> {
        if self.buffer_at != 0 {
            let Some(buffer) = buffer else {
                return Err(Failure::invalid("close() needs the region's buffer to detach").into());
            };
            if buffer.as_ptr() as usize != self.buffer_at {
                return Err(Failure::invalid("that is not this region's buffer").into());
            }
            buffer
                .detach()
                .map_err(|e| Failure::new("REGION", format!("cannot detach the buffer: {e}")))?;
            self.buffer_at = 0;
        }
        // Nothing in JavaScript can reach the mapping any more: unmap it.
        self.inner.lock().take();
        Ok(())
    }
}
