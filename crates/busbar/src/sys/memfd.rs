//! Sealed memfds and shared mappings: what a [`MemoryRegion`] is made of.
//!
//! A region is a memfd ([memfd_create(2)]) sized once with [ftruncate(2)]
//! and then sealed ([fcntl(2)], `F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`)
//! before it is ever sent, so no process holding it can change its size.
//! That is what makes mapping it safe: a mapping of a file that shrinks
//! under it raises `SIGBUS` on the next access, and a peer must not be able
//! to kill us that way. [`Mapping`] therefore refuses a descriptor that is
//! not sealed against shrinking or that is shorter than the mapping.
//!
//! [`MemoryRegion`]: crate::region::MemoryRegion
//! [memfd_create(2)]: https://man7.org/linux/man-pages/man2/memfd_create.2.html
//! [ftruncate(2)]: https://man7.org/linux/man-pages/man2/ftruncate.2.html
//! [fcntl(2)]: https://man7.org/linux/man-pages/man2/fcntl.2.html

use rustix::fs::{self, FileType, MemfdFlags, SealFlags};
use rustix::io::Errno;
use rustix::mm::{self, MapFlags, ProtFlags};
use std::ffi::c_void;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};

/// The seals every region carries: its size can never change again.
pub(crate) const SIZE_SEALS: SealFlags = SealFlags::SHRINK
    .union(SealFlags::GROW)
    .union(SealFlags::SEAL);

/// Creates a memfd of `size` bytes that can be sealed ([memfd_create(2)],
/// [ftruncate(2)]). The descriptor is close-on-exec.
///
/// On kernels that know it (6.3 and later) the file is also created with
/// `MFD_NOEXEC_SEAL`, which keeps the kernel from warning about executable
/// memfds and honours the `vm.memfd_noexec` policy.
///
/// [memfd_create(2)]: https://man7.org/linux/man-pages/man2/memfd_create.2.html
/// [ftruncate(2)]: https://man7.org/linux/man-pages/man2/ftruncate.2.html
pub(crate) fn create(name: &str, size: u64) -> io::Result<OwnedFd> {
    let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    let fd = match fs::memfd_create(name, flags | MemfdFlags::NOEXEC_SEAL) {
        Ok(fd) => fd,
        // Before Linux 6.3 the flag is unknown.
        Err(Errno::INVAL) => fs::memfd_create(name, flags)?,
        Err(e) => return Err(e.into()),
    };
    fs::ftruncate(&fd, size)?;
    Ok(fd)
}

/// Seals `fd` against shrinking, growing and further sealing
/// ([fcntl(2)], `F_ADD_SEALS` with [`SIZE_SEALS`]).
///
/// [fcntl(2)]: https://man7.org/linux/man-pages/man2/fcntl.2.html
pub(crate) fn seal_size(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(fs::fcntl_add_seals(fd, SIZE_SEALS)?)
}

/// The seals on `fd`'s file ([fcntl(2)], `F_GET_SEALS`).
///
/// Fails with `EINVAL` when the file cannot carry seals at all (it is not a
/// memfd or another shmem file).
///
/// [fcntl(2)]: https://man7.org/linux/man-pages/man2/fcntl.2.html
pub(crate) fn seals(fd: BorrowedFd<'_>) -> io::Result<SealFlags> {
    Ok(fs::fcntl_get_seals(fd)?)
}

/// The size of the regular file behind `fd` ([fstat(2)]).
///
/// Fails with `InvalidData` when `fd` is not a regular file.
///
/// [fstat(2)]: https://man7.org/linux/man-pages/man2/fstat.2.html
pub(crate) fn file_size(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let st = fs::fstat(fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "descriptor is not a regular file",
        ));
    }
    u64::try_from(st.st_size)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file has a negative size"))
}

/// Which file is behind `fd`: its device and inode numbers ([fstat(2)]).
/// While a mapping of a memfd lives, no other memfd gets its inode number.
///
/// [fstat(2)]: https://man7.org/linux/man-pages/man2/fstat.2.html
pub(crate) fn identity(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let st = fs::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

/// Checks that the file behind `fd` is sealed against shrinking and is at
/// least `len` bytes long: then it stays so, and a mapping of its first
/// `len` bytes cannot raise `SIGBUS` ([fcntl(2)] `F_GET_SEALS`, [fstat(2)]).
///
/// Fails with `InvalidData` when it is not, and as [`seals`] does when the
/// file cannot carry seals.
///
/// [fcntl(2)]: https://man7.org/linux/man-pages/man2/fcntl.2.html
/// [fstat(2)]: https://man7.org/linux/man-pages/man2/fstat.2.html
fn check_covers(fd: BorrowedFd<'_>, len: usize) -> io::Result<()> {
    // Seals first: once SHRINK is set the size can only stay or grow,
    // so the size read next is a lower bound for as long as we map it.
    if !seals(fd)?.contains(SealFlags::SHRINK) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "file is not sealed against shrinking",
        ));
    }
    if file_size(fd)? < len as u64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "file is shorter than the mapping",
        ));
    }
    Ok(())
}

/// How [`Mapping::map`] maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// `PROT_READ | PROT_WRITE`.
    ReadWrite,
    /// `PROT_READ`, with `MAP_POPULATE`.
    ReadPopulated,
    /// `PROT_READ`.
    Read,
}

/// A shared mapping of the start of a sealed file ([mmap(2)] with
/// `MAP_SHARED`), unmapped on drop ([munmap(2)]): read-write
/// ([`Mapping::prefix`]) or read-only ([`Mapping::populated_prefix`]).
///
/// The mapping stays valid after the descriptor it came from is closed.
/// Other processes (and other mappings of the same file in this one) may
/// change its bytes at any time; that is the point of it.
///
/// [mmap(2)]: https://man7.org/linux/man-pages/man2/mmap.2.html
/// [munmap(2)]: https://man7.org/linux/man-pages/man2/munmap.2.html
#[derive(Debug)]
pub(crate) struct Mapping {
    /// Dangling (and never unmapped) when `len` is 0.
    ptr: NonNull<u8>,
    len: usize,
    /// Mapped `PROT_WRITE`: only then are `slice_mut` and the atomics offered.
    writable: bool,
}

// SAFETY: a `Mapping` owns its range of address space outright (no other
// Rust value points into it) and is not tied to the thread that created it;
// through `&Mapping` only atomics can be reached, which are `Sync`, and
// plain bytes (`slice_mut`, `bytes`) only through `&mut Mapping`.
unsafe impl Send for Mapping {}
// SAFETY: see `Send` above: shared access hands out atomics only.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the whole of the file behind `fd` (see [`Mapping::prefix`]);
    /// for the tests and `testing::Scribbler` (feature `test-hooks`), which
    /// scribble on rings as a hostile sender does.
    #[cfg(any(test, feature = "test-hooks"))]
    pub(crate) fn whole(fd: BorrowedFd<'_>) -> io::Result<Mapping> {
        let size = usize::try_from(file_size(fd)?)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large to map"))?;
        Self::prefix(fd, size)
    }

    /// Maps the first `len` bytes of the file behind `fd`, shared and
    /// read-write ([mmap(2)]).
    ///
    /// Refuses (`InvalidInput`) a `len` of zero, and (`InvalidData`) a file
    /// that is not sealed against shrinking or is shorter than `len`: those
    /// could raise `SIGBUS` later. Fails as `mmap` does when `fd` is not
    /// open for reading and writing or is sealed against writes.
    ///
    /// [mmap(2)]: https://man7.org/linux/man-pages/man2/mmap.2.html
    pub(crate) fn prefix(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot map zero bytes",
            ));
        }
        Self::map(fd, len, Access::ReadWrite)
    }

    /// Maps the first `len` bytes of the file behind `fd`, shared and
    /// read-only, with its pages mapped in up front ([mmap(2)] with
    /// `MAP_POPULATE`): reading a large mapping then takes no page fault per
    /// page. Populating is best effort; a page it could not map in faults in
    /// on first access as usual.
    ///
    /// A `len` of zero gives an empty mapping without calling `mmap`.
    /// Refuses (`InvalidData`) a file that is not sealed against shrinking
    /// or is shorter than `len`, as [`Mapping::prefix`] does. Fails as `mmap`
    /// does when `fd` is not open for reading, and with `ENOMEM`
    /// (`ErrorKind::OutOfMemory`) when there is no room for the mapping.
    ///
    /// [mmap(2)]: https://man7.org/linux/man-pages/man2/mmap.2.html
    pub(crate) fn populated_prefix(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
        Self::map(fd, len, Access::ReadPopulated)
    }

    /// Maps the first `len` bytes of the file behind `fd`, shared and
    /// read-only, pages faulting in as they are first read ([mmap(2)]): for
    /// a large file of which only part may ever be read. The same checks as
    /// [`Mapping::populated_prefix`].
    ///
    /// [mmap(2)]: https://man7.org/linux/man-pages/man2/mmap.2.html
    pub(crate) fn read_only(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
        Self::map(fd, len, Access::Read)
    }

    /// Checks that the file covers `len` bytes for good ([`check_covers`]),
    /// then maps them ([mmap(2)], `MAP_SHARED`); an empty mapping, without
    /// `mmap`, when `len` is 0.
    ///
    /// [mmap(2)]: https://man7.org/linux/man-pages/man2/mmap.2.html
    fn map(fd: BorrowedFd<'_>, len: usize, access: Access) -> io::Result<Mapping> {
        check_covers(fd, len)?;
        if len == 0 {
            return Ok(Mapping {
                ptr: NonNull::dangling(),
                len: 0,
                writable: false,
            });
        }
        let (prot, flags) = match access {
            Access::ReadWrite => (ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED),
            Access::ReadPopulated => (ProtFlags::READ, MapFlags::SHARED | MapFlags::POPULATE),
            Access::Read => (ProtFlags::READ, MapFlags::SHARED),
        };
        // SAFETY: a null hint without `MAP_FIXED` lets the kernel pick a
        // fresh range, so no existing memory (and no Rust reference) is
        // touched. `fd` is a live descriptor for the duration of the call.
        // The result is checked by rustix; on success it is page-aligned and
        // valid for `len` bytes (reads, and writes when `prot` says so) until
        // `munmap`, and since the file is sealed against shrinking and is at
        // least `len` bytes long (`check_covers` above) no access within it
        // can raise `SIGBUS`.
        let ptr = unsafe { mm::mmap(std::ptr::null_mut(), len, prot, flags, fd, 0) }?;
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null address"))?;
        Ok(Mapping {
            ptr,
            len,
            writable: access == Access::ReadWrite,
        })
    }

    /// The first byte of the mapping (not writable when the mapping is read-only).
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The length of the mapping in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// All the bytes of a read-only mapping, through a shared reference
    /// (`None` for a read-write one, whose bytes are reachable only through
    /// `&mut`: see [`Mapping::bytes`]).
    ///
    /// The bytes are shared: other processes (or other mappings of the same
    /// file) may change them while the slice is alive. Callers treat them as
    /// untrusted input: parse, never assume that two reads agree.
    pub(crate) fn shared_bytes(&self) -> Option<&[u8]> {
        if self.writable {
            return None;
        }
        if self.len == 0 {
            return Some(&[]);
        }
        // SAFETY: the mapping is valid for reads of `self.len` bytes until
        // `self` is dropped (the slice borrows `self`); `u8` has no invalid
        // bit patterns. The mapping is read-only (`PROT_READ`): nothing in
        // this process can write through it (`slice_mut` and the atomics
        // answer `None` for it), so many shared slices of it can be alive at
        // once. Another process (or another mapping) may write the bytes:
        // that is the shared-memory contract of `Mapping`, and they are
        // treated as untrusted input (see above).
        Some(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast_const(), self.len) })
    }

    /// All the bytes of the mapping, to read.
    ///
    /// The bytes are shared: other processes (or other mappings of the same
    /// file) may change them while the slice is alive, unless the file is
    /// sealed against writes. Callers treat them as untrusted input: parse,
    /// never assume that two reads agree.
    pub(crate) fn bytes(&mut self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the mapping is valid for reads of `self.len` bytes until
        // `self` is dropped (`munmap` waits for drop, and the slice borrows
        // `self`); `u8` has no invalid bit patterns. Within this process
        // nothing writes these bytes through this mapping meanwhile: writes
        // go through `slice_mut` or the atomics, and the slice borrows `self`
        // mutably, so neither can be alive at the same time. Another process
        // (or another mapping) may write them: that is the shared-memory
        // contract of `Mapping`, and the bytes are treated as untrusted input
        // (see above).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast_const(), self.len) }
    }

    /// The `len` bytes at `offset`, or `None` when they are not all inside
    /// the mapping or the mapping is read-only.
    ///
    /// The bytes are shared: other processes may change them while the
    /// slice is alive. Callers coordinate, as with any shared memory.
    pub(crate) fn slice_mut(&mut self, offset: usize, len: usize) -> Option<&mut [u8]> {
        let end = offset.checked_add(len)?;
        if end > self.len || !self.writable {
            return None;
        }
        // SAFETY: `offset..end` lies inside the mapping, which is valid for
        // reads and writes of `self.len` bytes until `self` is dropped. The
        // slice borrows `self` mutably, so no other slice or atomic of this
        // mapping can be alive at the same time, and `munmap` waits for drop.
        Some(unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(offset), len) })
    }

    /// The `AtomicU32` at `offset`, or `None` when `offset` is not 4-aligned,
    /// the 4 bytes are not inside the mapping, or the mapping is read-only.
    pub(crate) fn atomic_u32(&self, offset: usize) -> Option<&AtomicU32> {
        let ptr = self.aligned_field::<AtomicU32>(offset)?;
        // SAFETY: `aligned_field` checked that the 4 bytes at `ptr` are in the
        // mapping (valid for reads and writes for as long as `&self` lives)
        // and aligned for `AtomicU32`, which has the size and layout of
        // `u32`; every bit pattern is a valid `u32`. Plain (non-atomic)
        // access to the same bytes in this process needs `&mut self`, so it
        // cannot overlap with this shared borrow.
        Some(unsafe { &*ptr.cast::<AtomicU32>() })
    }

    /// The `AtomicU64` at `offset`, or `None` when `offset` is not 8-aligned,
    /// the 8 bytes are not inside the mapping, or the mapping is read-only.
    pub(crate) fn atomic_u64(&self, offset: usize) -> Option<&AtomicU64> {
        let ptr = self.aligned_field::<AtomicU64>(offset)?;
        // SAFETY: as in `atomic_u32`, for 8 bytes and `AtomicU64`.
        Some(unsafe { &*ptr.cast::<AtomicU64>() })
    }

    /// The address of a `T` at `offset` when it is aligned and inside the
    /// mapping, and the mapping is writable.
    fn aligned_field<T>(&self, offset: usize) -> Option<*const u8> {
        let end = offset.checked_add(std::mem::size_of::<T>())?;
        if end > self.len || !self.writable {
            return None;
        }
        let addr = (self.ptr.as_ptr() as usize).checked_add(offset)?;
        if addr % std::mem::align_of::<T>() != 0 {
            return None;
        }
        Some(self.ptr.as_ptr().wrapping_add(offset).cast_const())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.len == 0 {
            return; // never mapped
        }
        // SAFETY: `ptr`/`len` are exactly what `mmap` returned and were never
        // unmapped; every slice and atomic handed out borrowed `self`, so
        // none outlives this call.
        let result = unsafe { mm::munmap(self.ptr.as_ptr().cast::<c_void>(), self.len) };
        if let Err(e) = result {
            tracing::warn!(error = %e, len = self.len, "munmap of a shared region failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::sync::atomic::Ordering;

    #[test]
    fn create_seal_and_map() {
        let fd = create("busbar-test", 8192).expect("memfd");
        assert_eq!(file_size(fd.as_fd()).expect("size"), 8192);
        seal_size(fd.as_fd()).expect("seal");
        assert!(seals(fd.as_fd()).expect("seals").contains(SIZE_SEALS));
        assert!(fs::ftruncate(&fd, 4096).is_err(), "shrink must be refused");
        assert!(fs::ftruncate(&fd, 16384).is_err(), "grow must be refused");

        let mut a = Mapping::whole(fd.as_fd()).expect("map");
        let b = Mapping::prefix(fd.as_fd(), 16).expect("map");
        assert_eq!(a.len(), 8192);
        assert!(!a.as_ptr().is_null());
        a.slice_mut(8, 8)
            .expect("in range")
            .copy_from_slice(&7u64.to_ne_bytes());
        assert_eq!(b.atomic_u64(8).expect("field").load(Ordering::SeqCst), 7);
        b.atomic_u32(0).expect("field").store(3, Ordering::SeqCst);
        assert_eq!(a.slice_mut(0, 4).expect("in range"), &3u32.to_ne_bytes());
    }

    #[test]
    fn mapping_checks_bounds_and_alignment() {
        let fd = create("busbar-test", 64).expect("memfd");
        seal_size(fd.as_fd()).expect("seal");
        let mut m = Mapping::prefix(fd.as_fd(), 64).expect("map");
        assert!(m.atomic_u32(2).is_none());
        assert!(m.atomic_u64(4).is_none());
        assert!(m.atomic_u64(64).is_none());
        assert!(m.atomic_u64(usize::MAX).is_none());
        assert!(m.atomic_u32(60).is_some());
        assert!(m.slice_mut(60, 5).is_none());
        assert!(m.slice_mut(usize::MAX, 2).is_none());
        assert_eq!(m.slice_mut(64, 0).map(|s| s.len()), Some(0));
    }

    #[test]
    fn mapping_refuses_unsealed_short_and_empty() {
        let fd = create("busbar-test", 64).expect("memfd");
        let e = Mapping::prefix(fd.as_fd(), 64).expect_err("unsealed");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        seal_size(fd.as_fd()).expect("seal");
        let e = Mapping::prefix(fd.as_fd(), 65).expect_err("too short");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let e = Mapping::prefix(fd.as_fd(), 0).expect_err("empty");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn populated_prefix_is_read_only_and_sees_shared_writes() {
        let fd = create("busbar-test", 8192).expect("memfd");
        let e = Mapping::populated_prefix(fd.as_fd(), 8192).expect_err("unsealed");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        seal_size(fd.as_fd()).expect("seal");
        let e = Mapping::populated_prefix(fd.as_fd(), 8193).expect_err("too short");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);

        let mut w = Mapping::prefix(fd.as_fd(), 8192).expect("map");
        w.slice_mut(4096, 3)
            .expect("in range")
            .copy_from_slice(b"abc");
        let mut r = Mapping::populated_prefix(fd.as_fd(), 8192).expect("map");
        assert_eq!(r.len(), 8192);
        assert_eq!(&r.bytes()[4096..4099], b"abc");
        assert!(r.bytes()[..4096].iter().all(|&b| b == 0));
        assert!(r.slice_mut(0, 1).is_none(), "read-only");
        assert!(r.atomic_u32(0).is_none(), "read-only");
        assert!(r.atomic_u64(0).is_none(), "read-only");
        assert_eq!(w.bytes().len(), 8192);

        let mut empty = Mapping::populated_prefix(fd.as_fd(), 0).expect("empty");
        assert_eq!(empty.len(), 0);
        assert!(empty.bytes().is_empty());
    }

    #[test]
    fn non_memfd_has_no_seals() {
        let f = std::fs::File::open("/dev/null").expect("open");
        assert!(seals(f.as_fd()).is_err());
        assert!(file_size(f.as_fd()).is_err());
    }
}
