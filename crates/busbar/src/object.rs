//! PLACEHOLDER — owned by the region/object helper; replaced wholesale.
use std::os::fd::OwnedFd;

/// An owned file descriptor sent as an attachment.
#[derive(Debug)]
pub struct Object(OwnedFd);

impl Object {
    /// Gives the descriptor back.
    pub fn into_fd(self) -> OwnedFd {
        self.0
    }
}
impl From<OwnedFd> for Object {
    fn from(fd: OwnedFd) -> Self {
        Object(fd)
    }
}
