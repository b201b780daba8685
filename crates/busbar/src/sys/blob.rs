//! Sealed memfd "blobs": how a payload too large for one socket frame travels.
//!
//! The sender writes the bytes into a fresh memfd with [write(2)], seals it
//! against any change ([memfd_create(2)], `F_SEAL_*`), and sends the
//! descriptor. The receiver reads it back with [pread(2)]: no mapping, so a
//! lying peer can at worst make the read come up short, which is detected.
//!
//! [write(2)]: https://man7.org/linux/man-pages/man2/write.2.html
//! [memfd_create(2)]: https://man7.org/linux/man-pages/man2/memfd_create.2.html
//! [pread(2)]: https://man7.org/linux/man-pages/man2/pread.2.html

use rustix::fs::{self, MemfdFlags, SealFlags};
use rustix::io::Errno;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

/// Writes `bytes` into a new memfd and seals it against shrinking, growing and writing.
pub(crate) fn write_sealed(bytes: &[u8]) -> io::Result<OwnedFd> {
    let fd = fs::memfd_create(
        "busbar-payload",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?;
    fs::ftruncate(&fd, bytes.len() as u64)?;
    let mut done = 0;
    while done < bytes.len() {
        match rustix::io::pwrite(&fd, &bytes[done..], done as u64) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "memfd write made no progress",
                ))
            }
            Ok(n) => done += n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    fs::fcntl_add_seals(
        &fd,
        SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL,
    )?;
    Ok(fd)
}

/// Reads exactly `len` bytes from the start of a received blob.
///
/// Fails with `InvalidData` when the descriptor is not a memfd sealed
/// against writing (the sender could still change it), is shorter than
/// `len`, or comes up short while reading.
pub(crate) fn read_sealed(fd: BorrowedFd<'_>, len: usize) -> io::Result<Vec<u8>> {
    let seals = fs::fcntl_get_seals(fd)
        .map_err(|_| invalid("payload descriptor is not a sealable memfd"))?;
    if !seals.contains(SealFlags::SHRINK | SealFlags::WRITE) {
        return Err(invalid(
            "payload memfd is not sealed against writes and shrinking",
        ));
    }
    let size = fs::fstat(fd)?.st_size;
    if size < 0 || (size as u64) < len as u64 {
        return Err(invalid("payload memfd is shorter than the frame says"));
    }
    let mut out = Vec::new();
    out.try_reserve_exact(len)
        .map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, "payload too large to buffer"))?;
    out.resize(len, 0);
    let mut done = 0;
    while done < len {
        match rustix::io::pread(fd, &mut out[done..], done as u64) {
            Ok(0) => return Err(invalid("payload memfd ended early")),
            Ok(n) => done += n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}
