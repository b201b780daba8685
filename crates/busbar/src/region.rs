//! PLACEHOLDER — owned by the region/object helper; replaced wholesale.
use std::os::fd::{BorrowedFd, OwnedFd};

/// Error about a memory region.
#[derive(Debug, thiserror::Error)]
#[error("memory region: {0}")]
pub struct RegionError(pub String);

/// A memfd-backed shared block.
#[derive(Debug)]
pub struct MemoryRegion {}

impl MemoryRegion {
    /// The descriptor to send.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        todo!()
    }
    /// Counts one more holder for a copy about to be sent.
    pub(crate) fn add_in_flight_ref(&self) {
        todo!()
    }
    /// Takes back a count added by `add_in_flight_ref` for a copy that was not sent.
    pub(crate) fn drop_in_flight_ref(&self) {
        todo!()
    }
    /// Adopts a received descriptor (and the count the sender added for it).
    pub(crate) fn from_received_fd(fd: OwnedFd) -> Result<MemoryRegion, RegionError> {
        let _ = fd;
        todo!()
    }
}
