//! [`SharedBytes`]: read-only shared memory that travels in messages.

use crate::sys::blob;
use crate::sys::memfd::Mapping;
use serde::{Deserialize, Serialize};
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;

/// Bytes in shared memory that nobody can change: a memfd sealed against
/// writes, shrinking and growing, mapped read-only. Put it in a message
/// (a channel's or a bus message's payload) and the receiver maps the same
/// pages: nothing is copied however large it is, and the receiver checks
/// the seals before it maps, so what it reads cannot change under it.
///
/// Beside [`MemoryRegion`](crate::MemoryRegion), which is writable by
/// everyone who holds it and counts its holders, this is ipc-channel's
/// `IpcSharedMemory`. Cloning is cheap (one mapping, shared).
///
/// ```
/// use busbar::channel::{channel, SharedBytes};
/// let (tx, rx) = channel::<SharedBytes>()?;
/// tx.send(SharedBytes::from_bytes(b"a large frame")?)?;
/// let got = rx.recv()?;
/// assert_eq!(&*got, b"a large frame");
/// assert_eq!(&*SharedBytes::from_byte(7, 3)?, [7, 7, 7]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct SharedBytes {
    inner: Arc<Inner>,
}

struct Inner {
    fd: OwnedFd,
    map: Mapping,
}

impl std::fmt::Debug for SharedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedBytes")
            .field("len", &self.inner.map.len())
            .finish()
    }
}

impl SharedBytes {
    /// A sealed copy of `bytes`.
    ///
    /// ```
    /// let b = busbar::channel::SharedBytes::from_bytes(&[1, 2, 3])?;
    /// assert_eq!(b.len(), 3);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn from_bytes(bytes: &[u8]) -> io::Result<SharedBytes> {
        let fd = blob::write_sealed(bytes)?;
        SharedBytes::map(fd, bytes.len())
    }

    /// `len` bytes of value `byte`, sealed.
    ///
    /// ```
    /// let b = busbar::channel::SharedBytes::from_byte(0xff, 4096)?;
    /// assert!(b.iter().all(|&x| x == 0xff));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn from_byte(byte: u8, len: usize) -> io::Result<SharedBytes> {
        SharedBytes::from_bytes(&vec![byte; len])
    }

    /// Maps `len` bytes of a sealed memfd (checked: sealed, long enough).
    fn map(fd: OwnedFd, len: usize) -> io::Result<SharedBytes> {
        use std::os::fd::AsFd;
        let map = blob::map_sealed(fd.as_fd(), len)?;
        Ok(SharedBytes {
            inner: Arc::new(Inner { fd, map }),
        })
    }
}

impl std::ops::Deref for SharedBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // Mapped read-only by `map_sealed`, so the shared view exists.
        self.inner.map.shared_bytes().unwrap_or_default()
    }
}

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

/// How shared bytes travel: the memfd's position among the frame's
/// descriptors, and the length.
#[derive(Serialize, Deserialize)]
struct SharedWire {
    fd: u32,
    len: u64,
}

impl Serialize for SharedBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let fd = self.inner.fd.try_clone().map_err(S::Error::custom)?;
        let fd = crate::attach::attach(fd).map_err(S::Error::custom)?;
        SharedWire {
            fd,
            len: self.inner.map.len() as u64,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for SharedBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let wire = SharedWire::deserialize(d)?;
        let fd = crate::attach::take(wire.fd).map_err(D::Error::custom)?;
        let len = usize::try_from(wire.len).map_err(D::Error::custom)?;
        SharedBytes::map(fd, len).map_err(D::Error::custom)
    }
}
