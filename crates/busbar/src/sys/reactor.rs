//! Registering a receiver's descriptor with tokio's reactor (feature
//! `tokio`): the one `unsafe` call the async receives need.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A duplicate of `fd` (the same open file description: for an epoll
/// descriptor, the same epoll instance and readiness), registered for
/// input with the current tokio runtime's reactor, and owned by the
/// registration. Must be called within a runtime with I/O enabled.
pub(crate) fn register(fd: BorrowedFd<'_>) -> io::Result<AsyncFd<OwnedFd>> {
    let owned = fd.try_clone_to_owned()?;
    // SAFETY: the `AsyncFd` takes ownership of `owned`, a descriptor we
    // just opened (dup) and nobody else holds: it stays open and refers to
    // the same open file description until the `AsyncFd` is dropped or
    // gives it back, and `OwnedFd::as_raw_fd` always returns that same
    // number.
    unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}
