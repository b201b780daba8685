//! Sealed memfd "blobs": how a payload too large for one socket frame travels.
//!
//! The sender writes the bytes into a fresh memfd with [write(2)], seals it
//! against any change ([memfd_create(2)], `F_SEAL_*`), and sends the
//! descriptor. The receiver maps it read-only ([mmap(2)]) and decodes
//! straight from the mapping, without copying it first. It maps only a
//! memfd sealed against shrinking (so reading the mapping cannot raise
//! `SIGBUS`) and against writing (so the bytes cannot change while they are
//! decoded), and no shorter than the frame says.
//!
//! [write(2)]: https://man7.org/linux/man-pages/man2/write.2.html
//! [memfd_create(2)]: https://man7.org/linux/man-pages/man2/memfd_create.2.html
//! [mmap(2)]: https://man7.org/linux/man-pages/man2/mmap.2.html

use super::memfd::{self, Mapping};
use rustix::fs::SealFlags;
use std::io;
use std::os::fd::BorrowedFd;
use {
    rustix::fs::{self, MemfdFlags},
    rustix::io::Errno,
    std::os::fd::OwnedFd,
};

/// Writes `bytes` into a new memfd and seals it against shrinking, growing and writing.
///
/// Senders put large payloads in pooled regions instead (`endpoint/loan.rs`);
/// receivers still take this form, which this module's tests make (the
/// fuzz support in `busbar-tests` makes its own), and `channel::SharedBytes`
/// is one.
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

/// Maps the first `len` bytes of a received blob, read-only and populated
/// up front ([mmap(2)] with `MAP_POPULATE`, see [`Mapping::populated_prefix`]);
/// `len` 0 gives an empty mapping.
///
/// Fails with `InvalidData` when the descriptor is not a memfd sealed
/// against writing and shrinking ([fcntl(2)] `F_GET_SEALS`: the sender could
/// still change it, or shrink it and make reading the mapping raise
/// `SIGBUS`) or is shorter than `len` ([fstat(2)]); with `OutOfMemory`
/// (`ENOMEM`) when there is no room to map it.
///
/// [mmap(2)]: https://man7.org/linux/man-pages/man2/mmap.2.html
/// [fcntl(2)]: https://man7.org/linux/man-pages/man2/fcntl.2.html
/// [fstat(2)]: https://man7.org/linux/man-pages/man2/fstat.2.html
pub(crate) fn map_sealed(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
    let seals =
        memfd::seals(fd).map_err(|_| invalid("payload descriptor is not a sealable memfd"))?;
    if !seals.contains(SealFlags::SHRINK | SealFlags::WRITE) {
        return Err(invalid(
            "payload memfd is not sealed against writes and shrinking",
        ));
    }
    if memfd::file_size(fd)? < len as u64 {
        return Err(invalid("payload memfd is shorter than the frame says"));
    }
    Mapping::populated_prefix(fd, len)
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn round_trip() {
        for len in [1, 4095, 4096, 64 * 1024 + 1, 1 << 20] {
            let data = bytes(len);
            let fd = write_sealed(&data).expect("write");
            let mut m = map_sealed(fd.as_fd(), len).expect("map");
            drop(fd); // the mapping outlives the descriptor
            assert_eq!(m.bytes(), &data[..], "{len} bytes");
            // Read-only: no way to write through it.
            assert!(m.slice_mut(0, 1).is_none());
            assert!(m.atomic_u32(0).is_none());
        }
    }

    #[test]
    fn a_prefix_of_a_longer_blob_maps() {
        let data = bytes(10_000);
        let fd = write_sealed(&data).expect("write");
        let mut m = map_sealed(fd.as_fd(), 5_000).expect("map");
        assert_eq!(m.bytes(), &data[..5_000]);
    }

    #[test]
    fn zero_length() {
        let fd = write_sealed(&[]).expect("write");
        let mut m = map_sealed(fd.as_fd(), 0).expect("map");
        assert_eq!(m.bytes(), &[] as &[u8]);
        let fd = write_sealed(b"abc").expect("write");
        let mut m = map_sealed(fd.as_fd(), 0).expect("map");
        assert!(m.bytes().is_empty());
    }

    #[test]
    fn unsealed_memfd_is_refused() {
        let fd = memfd::create("busbar-test", 4096).expect("memfd");
        let e = map_sealed(fd.as_fd(), 4096).expect_err("no seals");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        // Sealed against shrinking but not against writes: still refused.
        memfd::seal_size(fd.as_fd()).expect("seal");
        let e = map_sealed(fd.as_fd(), 4096).expect_err("writable");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn memfd_without_sealing_or_not_a_memfd_is_refused() {
        let fd = fs::memfd_create("busbar-test", MemfdFlags::CLOEXEC).expect("memfd");
        let e = map_sealed(fd.as_fd(), 0).expect_err("cannot be sealed");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let f = std::fs::File::open("/dev/null").expect("open");
        let e = map_sealed(f.as_fd(), 0).expect_err("not a memfd");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn shorter_than_len_is_refused() {
        let fd = write_sealed(&bytes(4096)).expect("write");
        let e = map_sealed(fd.as_fd(), 4097).expect_err("too short");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let e = map_sealed(fd.as_fd(), usize::MAX).expect_err("too short");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
