//! [`Object`]: a file descriptor sent as an attachment of a message.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};

/// An owned file descriptor sent as an attachment.
///
/// Put objects in a message's `objects`; the receiver gets its own
/// descriptor for the same open file description (as with [dup(2)]: file
/// offset and status flags are shared with the sender's copy). Sending
/// consumes the sender's `Object`; the descriptor is closed when the
/// `Object` (or the [`OwnedFd`] taken out of it) is dropped.
///
/// Any descriptor can travel: a file, a pipe end, a socket, an eventfd, a
/// memfd. For shared memory with a reference count, use a
/// [`MemoryRegion`](crate::MemoryRegion) instead.
///
/// Coming from ipmb: `Object::from(unsafe { OwnedFd::from_raw_fd(raw) })`
/// replaces `Object::from_raw(raw)`, and [`try_clone`](Object::try_clone)
/// replaces `clone`; [`as_raw`](Object::as_raw) and
/// [`into_raw`](Object::into_raw) keep their names.
///
/// [dup(2)]: https://man7.org/linux/man-pages/man2/dup.2.html
///
/// # Examples
///
/// ```
/// use busbar::Object;
/// use std::io::{Read, Write};
///
/// let (mut reader, writer) = std::os::unix::net::UnixStream::pair()?;
/// let object = Object::new(writer);
/// // ... push `object` into a message's `objects` and send it; the receiver does:
/// let mut stream = std::os::unix::net::UnixStream::from(object.into_fd());
/// stream.write_all(b"hi")?;
/// let mut buf = [0; 2];
/// reader.read_exact(&mut buf)?;
/// assert_eq!(&buf, b"hi");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Object(OwnedFd);

impl Object {
    /// Wraps anything that owns a descriptor: an [`OwnedFd`], a [`File`],
    /// a `UnixStream`, a `ChildStdout`, ...
    ///
    /// # Examples
    ///
    /// ```
    /// use busbar::Object;
    ///
    /// let object = Object::new(std::fs::File::open("/dev/null")?);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(fd: impl Into<OwnedFd>) -> Object {
        Object(fd.into())
    }

    /// Gives the descriptor back.
    pub fn into_fd(self) -> OwnedFd {
        self.0
    }

    /// A new `Object` for the same open file, made with [dup(2)]
    /// (`F_DUPFD_CLOEXEC`, so the copy is close-on-exec).
    ///
    /// Fails when the process is out of descriptors (`EMFILE`).
    ///
    /// [dup(2)]: https://man7.org/linux/man-pages/man2/dup.2.html
    ///
    /// # Examples
    ///
    /// ```
    /// use busbar::Object;
    ///
    /// let object = Object::new(std::fs::File::open("/dev/null")?);
    /// let copy = object.try_clone()?;
    /// assert_ne!(object.as_raw(), copy.as_raw());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_clone(&self) -> io::Result<Object> {
        self.0.try_clone().map(Object)
    }

    /// The raw descriptor number, still owned by this `Object`.
    pub fn as_raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Gives up ownership: the caller must close the returned descriptor.
    pub fn into_raw(self) -> RawFd {
        self.0.into_raw_fd()
    }
}

impl From<OwnedFd> for Object {
    fn from(fd: OwnedFd) -> Self {
        Object(fd)
    }
}

impl From<File> for Object {
    fn from(file: File) -> Self {
        Object(file.into())
    }
}

impl From<Object> for OwnedFd {
    fn from(object: Object) -> Self {
        object.0
    }
}

impl From<Object> for File {
    fn from(object: Object) -> Self {
        File::from(object.0)
    }
}

impl AsFd for Object {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for Object {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl IntoRawFd for Object {
    fn into_raw_fd(self) -> RawFd {
        self.0.into_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::io::FdFlags;
    use std::io::{Read, Seek, SeekFrom, Write};

    fn inode(fd: impl AsFd) -> (u64, u64) {
        let st = rustix::fs::fstat(fd).expect("fstat");
        (st.st_dev, st.st_ino)
    }

    #[test]
    fn conversions_keep_the_descriptor() {
        let file = File::open("/dev/null").expect("open");
        let raw = file.as_raw_fd();
        let object = Object::from(file);
        assert_eq!(object.as_raw(), raw);
        assert_eq!(object.as_fd().as_raw_fd(), raw);
        let fd: OwnedFd = object.into();
        assert_eq!(fd.as_raw_fd(), raw);
        let object = Object::from(fd);
        let file = File::from(object);
        assert_eq!(file.as_raw_fd(), raw);
        assert_eq!(Object::new(file).into_fd().as_raw_fd(), raw);
    }

    #[test]
    fn try_clone_shares_the_open_file_and_is_cloexec() {
        let fd = crate::sys::memfd::create("busbar-test", 0).expect("memfd");
        let object = Object::from(fd);
        let copy = object.try_clone().expect("dup");
        assert_ne!(copy.as_raw(), object.as_raw());
        assert_eq!(inode(&copy), inode(&object));
        let flags = rustix::io::fcntl_getfd(&copy).expect("getfd");
        assert!(flags.contains(FdFlags::CLOEXEC));

        let mut a = File::from(object);
        let mut b = File::from(copy);
        a.write_all(b"shared").expect("write");
        b.seek(SeekFrom::Start(0)).expect("seek");
        let mut s = String::new();
        b.read_to_string(&mut s).expect("read");
        assert_eq!(s, "shared");
    }

    #[test]
    fn into_raw_gives_up_ownership() {
        let object = Object::new(File::open("/dev/null").expect("open"));
        let raw = object.into_raw();
        // Not closed when the `Object` went away (the test leaks it on purpose).
        assert!(std::path::Path::new(&format!("/proc/self/fd/{raw}")).exists());
    }
}
