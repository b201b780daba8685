//! The only `unsafe` of the binding: the few Node-API calls napi's safe
//! API does not cover, and borrowing descriptors JavaScript names by number.

use crate::error::Failure;
use napi::bindgen_prelude::ArrayBuffer;
use napi::Env;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

/// An `ArrayBuffer` whose bytes are `len` bytes at `data` (no copy),
/// keeping `owner` alive until the garbage collector frees the buffer.
///
/// Fails with `EXTERNAL_BUFFERS_NOT_ALLOWED` where the runtime copies
/// external memory instead (Electron with V8's memory cage): writes into
/// such a copy would never reach the shared memory.
///
/// The caller promises that `data..data + len` stays mapped, readable and
/// writable, for as long as the returned buffer is attached: `owner` keeps
/// the mapping, and whoever unmaps it early must detach the buffer first
/// (see `region::Region::close`).
pub fn external_arraybuffer<'env, T: 'static>(
    env: &'env Env,
    data: *mut u8,
    len: usize,
    owner: T,
) -> Result<ArrayBuffer<'env>, Failure> {
    // SAFETY: `data` points at `len` mapped bytes that stay valid while the
    // buffer is attached (the caller's promise above: `owner` holds the
    // mapping, and the only early unmapping detaches the buffer first);
    // `data` is non-null (a mapping) and `len` > 0 (the caller makes an
    // ordinary empty buffer for an empty region). The finalizer only drops
    // `owner`, which is 'static and touches no JavaScript state.
    let buffer =
        unsafe { ArrayBuffer::from_external(env, data, len, owner, |_env, owner| drop(owner)) }
            .map_err(|e| Failure::new("REGION", format!("cannot make an ArrayBuffer: {e}")))?;
    if buffer.as_ptr() != data.cast_const() {
        return Err(Failure::new(
            "EXTERNAL_BUFFERS_NOT_ALLOWED",
            "this runtime does not allow ArrayBuffers over outside memory (Electron's V8 memory cage): use region.read() and region.write()",
        ));
    }
    Ok(buffer)
}

/// References (`true`) or unreferences a thread-safe function: while
/// referenced, it keeps the event loop of its thread alive.
pub fn tsfn_keep_alive(
    env: &Env,
    tsfn: napi::sys::napi_threadsafe_function,
    keep: bool,
) -> Result<(), Failure> {
    // SAFETY: called on the JavaScript thread that owns `env` (only from
    // methods napi calls there), with a thread-safe function created on
    // that thread and not yet released (its owner, `endpoint::Events`, is
    // alive while we hold a reference to it).
    let status = unsafe {
        if keep {
            napi::sys::napi_ref_threadsafe_function(env.raw(), tsfn)
        } else {
            napi::sys::napi_unref_threadsafe_function(env.raw(), tsfn)
        }
    };
    if status == napi::sys::Status::napi_ok {
        Ok(())
    } else {
        Err(Failure::new(
            "IO",
            format!("napi_(un)ref_threadsafe_function failed with status {status}"),
        ))
    }
}

/// A duplicate (close-on-exec) of descriptor `fd`, which JavaScript owns
/// and keeps: `BAD_FD` when it is not open.
pub fn dup_fd(fd: i64) -> Result<OwnedFd, Failure> {
    let raw = RawFd::try_from(fd)
        .ok()
        .filter(|fd| *fd >= 0)
        .ok_or_else(|| Failure::invalid(format!("{fd} is not a file descriptor")))?;
    // SAFETY: the borrow lives only for the `fcntl(F_DUPFD_CLOEXEC)` below,
    // on this thread, while JavaScript (its owner) cannot run and so cannot
    // close it; if `raw` is not open the call fails with EBADF, which is
    // reported, and nothing else is done with it.
    let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
    borrowed
        .try_clone_to_owned()
        .map_err(|e| Failure::new("BAD_FD", format!("descriptor {raw}: {e}")))
}
