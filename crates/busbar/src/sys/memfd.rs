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

/// A shared, read-write mapping of the start of a sealed file
/// ([mmap(2)] with `MAP_SHARED`), unmapped on drop ([munmap(2)]).
///
/// The mapping stays valid after the descriptor it came from is closed.
/// Other processes (and other mappings of the same file in this one) may
/// change its bytes at any time; that is the point of it.
///
/// [mmap(2)]: https://man7.org/linux/man-pages/man2/mmap.2.html
/// [munmap(2)]: https://man7.org/linux/man-pages/man2/munmap.2.html
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a `Mapping` owns its range of address space outright (no other
// Rust value points into it) and is not tied to the thread that created it;
// through `&Mapping` only atomics can be reached, which are `Sync`, and
// plain bytes only through `&mut Mapping`.
unsafe impl Send for Mapping {}
// SAFETY: see `Send` above: shared access hands out atomics only.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the whole of the file behind `fd` (see [`Mapping::prefix`]).
    #[allow(dead_code)] // for the shared-memory ring of the link layer
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
        // SAFETY: a null hint lets the kernel pick a fresh range, so no
        // existing memory (and no Rust reference) is touched. `fd` is a live
        // descriptor for the duration of the call. The result is checked by
        // rustix; on success it is page-aligned and valid for `len` bytes
        // until `munmap`, and since the file is sealed against shrinking and
        // is at least `len` bytes long no access within it can fault.
        let ptr = unsafe {
            mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )
        }?;
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null address"))?;
        Ok(Mapping { ptr, len })
    }

    /// The first byte of the mapping.
    #[allow(dead_code)] // for the shared-memory ring of the link layer
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The length of the mapping in bytes.
    #[allow(dead_code)] // for the shared-memory ring of the link layer
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The `len` bytes at `offset`, or `None` when they are not all inside
    /// the mapping.
    ///
    /// The bytes are shared: other processes may change them while the
    /// slice is alive. Callers coordinate, as with any shared memory.
    pub(crate) fn slice_mut(&mut self, offset: usize, len: usize) -> Option<&mut [u8]> {
        let end = offset.checked_add(len)?;
        if end > self.len {
            return None;
        }
        // SAFETY: `offset..end` lies inside the mapping, which is valid for
        // reads and writes of `self.len` bytes until `self` is dropped. The
        // slice borrows `self` mutably, so no other slice or atomic of this
        // mapping can be alive at the same time, and `munmap` waits for drop.
        Some(unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(offset), len) })
    }

    /// The `AtomicU32` at `offset`, or `None` when `offset` is not 4-aligned
    /// or the 4 bytes are not inside the mapping.
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

    /// The `AtomicU64` at `offset`, or `None` when `offset` is not 8-aligned
    /// or the 8 bytes are not inside the mapping.
    pub(crate) fn atomic_u64(&self, offset: usize) -> Option<&AtomicU64> {
        let ptr = self.aligned_field::<AtomicU64>(offset)?;
        // SAFETY: as in `atomic_u32`, for 8 bytes and `AtomicU64`.
        Some(unsafe { &*ptr.cast::<AtomicU64>() })
    }

    /// The address of a `T` at `offset` when it is aligned and inside the mapping.
    fn aligned_field<T>(&self, offset: usize) -> Option<*const u8> {
        let end = offset.checked_add(std::mem::size_of::<T>())?;
        if end > self.len {
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
    fn non_memfd_has_no_seals() {
        let f = std::fs::File::open("/dev/null").expect("open");
        assert!(seals(f.as_fd()).is_err());
        assert!(file_size(f.as_fd()).is_err());
    }
}
