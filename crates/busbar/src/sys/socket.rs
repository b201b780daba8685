//! Unix `SOCK_SEQPACKET` sockets: the control and data links.
//!
//! A seqpacket socket keeps message boundaries (one `sendmsg` is one frame
//! on the other side), keeps order, and carries descriptors with the frame
//! they belong to (`SCM_RIGHTS`), which is exactly what a link needs.
//! Addresses live in the abstract namespace (`\0busbar/...`), which the
//! kernel frees when the last socket bound to them closes: a crashed
//! controller leaves nothing behind; or, in the filesystem namespace, they
//! are socket files, which a [`Listener`] removes when it closes (a crashed
//! process leaves its files behind: see `crate::namespace`).

use rustix::io::Errno;
use rustix::net::{
    self, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
};
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The most descriptors one frame can carry: the kernel's `SCM_MAX_FD`.
pub(crate) const MAX_FDS_PER_FRAME: usize = 253;

/// A unix socket address: a name in the abstract namespace, or a socket file.
#[derive(Clone)]
pub(crate) struct Address {
    name: Vec<u8>,
    /// The socket file, for a filesystem address.
    path: Option<PathBuf>,
    addr: SocketAddrUnix,
}

impl std::fmt::Debug for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{}", p.display()),
            None => write!(f, "@{}", String::from_utf8_lossy(&self.name)),
        }
    }
}

impl Address {
    /// The longest abstract name the kernel accepts (`sun_path` less the leading NUL).
    pub(crate) const MAX_NAME: usize = 107;

    /// An abstract address, `\0name`. Fails when the name is too long.
    pub(crate) fn abstract_name(name: &str) -> io::Result<Address> {
        if name.len() > Self::MAX_NAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("socket name longer than {} bytes", Self::MAX_NAME),
            ));
        }
        let addr = SocketAddrUnix::new_abstract_name(name.as_bytes())?;
        Ok(Address {
            name: name.as_bytes().to_vec(),
            path: None,
            addr,
        })
    }

    /// The longest socket file path the kernel accepts (`sun_path` less the terminating NUL).
    pub(crate) const MAX_PATH: usize = 107;

    /// A socket file at `path`. Fails when the path is longer than
    /// [`MAX_PATH`](Self::MAX_PATH) bytes or contains NUL.
    pub(crate) fn path(path: &Path) -> io::Result<Address> {
        let len = path.as_os_str().len();
        if len > Self::MAX_PATH {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "socket path {} is {len} bytes, longer than the {} a unix socket address holds",
                    path.display(),
                    Self::MAX_PATH
                ),
            ));
        }
        let addr = SocketAddrUnix::new(path)?;
        Ok(Address {
            name: Vec::new(),
            path: Some(path.to_path_buf()),
            addr,
        })
    }

    /// The socket file, for a filesystem address.
    pub(crate) fn file(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

/// The credentials the kernel recorded for the peer of a connected socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeerCred {
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
}

fn seqpacket() -> io::Result<OwnedFd> {
    Ok(net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// What [`bind_listener`] found.
pub(crate) enum Bind {
    /// We own the address now.
    Bound(Listener),
    /// Someone else holds it (for a socket file: the file exists, stale or not).
    InUse,
}

/// A listening socket. For a filesystem address it removes its socket file
/// when dropped ([unlink(2)]); only its owner ever binds that path, so the
/// file it removes is its own. A lock given to it with
/// [`keep_lock`](Listener::keep_lock) is released only after that.
///
/// [unlink(2)]: https://man7.org/linux/man-pages/man2/unlink.2.html
#[derive(Debug)]
pub(crate) struct Listener {
    fd: OwnedFd,
    path: Option<PathBuf>,
    /// Dropped after `Drop::drop` has removed the file.
    lock: Option<super::dir::FileLock>,
}

impl Listener {
    /// Holds `lock` for as long as this listener lives, and lets go of it
    /// only after the socket file is gone: whoever takes the lock next finds
    /// the address free.
    pub(crate) fn keep_lock(mut self, lock: super::dir::FileLock) -> Listener {
        self.lock = Some(lock);
        self
    }
}

impl Listener {
    /// Leaves the socket file in place when the listener is dropped (a
    /// named ring's `persist`).
    pub(crate) fn keep_file(&mut self) {
        self.path = None;
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            if let Err(e) = super::dir::unlink(path) {
                tracing::warn!("could not remove socket file {}: {e}", path.display());
            }
        }
    }
}

/// Binds and listens on `addr` ([bind(2)], [listen(2)]).
///
/// [bind(2)]: https://man7.org/linux/man-pages/man2/bind.2.html
/// [listen(2)]: https://man7.org/linux/man-pages/man2/listen.2.html
pub(crate) fn bind_listener(addr: &Address) -> io::Result<Bind> {
    let fd = seqpacket()?;
    match net::bind(&fd, &addr.addr) {
        Ok(()) => {}
        Err(Errno::ADDRINUSE) => return Ok(Bind::InUse),
        Err(e) => return Err(e.into()),
    }
    // From here on the file (if any) is ours: the listener removes it, also on error.
    let listener = Listener {
        fd,
        path: addr.path.clone(),
        lock: None,
    };
    // As deep as the system allows (`net.core.somaxconn` caps it): a deep
    // backlog spares connecting peers retries; nothing depends on its depth.
    net::listen(&listener.fd, 4096)?;
    Ok(Bind::Bound(listener))
}

/// What [`probe`] found at an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    /// A socket listens there (or its backlog is full, which means the same).
    Listening,
    /// The name exists but nobody listens: for a socket file, a stale one.
    Refused,
    /// No such socket file.
    Missing,
}

/// Whether anybody listens at `addr`: a non-blocking [connect(2)] that is
/// closed at once. A live listener sees a connection that closes before
/// saying anything.
///
/// [connect(2)]: https://man7.org/linux/man-pages/man2/connect.2.html
pub(crate) fn probe(addr: &Address) -> io::Result<Probe> {
    let fd = net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    match net::connect(&fd, &addr.addr) {
        // Another type of socket listening there is left alone too.
        Ok(()) | Err(Errno::AGAIN) | Err(Errno::INPROGRESS) | Err(Errno::PROTOTYPE) => {
            Ok(Probe::Listening)
        }
        Err(Errno::CONNREFUSED) => Ok(Probe::Refused),
        Err(Errno::NOENT) => Ok(Probe::Missing),
        Err(e) => Err(e.into()),
    }
}

/// What a bounded [`connect_within`] found.
#[derive(Debug)]
pub(crate) enum Connect {
    /// Connected (a blocking socket with no send timeout, as [`seqpacket`] makes them).
    Connected(OwnedFd),
    /// Nobody listens there, or only a socket of another type (not one of
    /// ours: `EPROTOTYPE`).
    Refused,
    /// The listener's backlog stayed full for as long as we could wait: it
    /// is alive but has not accepted its earlier connections yet.
    Busy,
}

/// Connects to a listener at `addr` ([connect(2)]), waiting at most
/// `limit` for room in its backlog: zero does not wait at all, `None`
/// waits as long as it takes (until the listener accepts, or closes).
///
/// A unix socket's connect waits only while the listener's backlog is
/// full, which lasts until the listener's process accepts; a caller that
/// holds something that process needs must therefore not wait forever.
///
/// [connect(2)]: https://man7.org/linux/man-pages/man2/connect.2.html
pub(crate) fn connect_within(addr: &Address, limit: Option<Duration>) -> io::Result<Connect> {
    let fd = seqpacket()?;
    match limit {
        Some(d) if d.is_zero() => set_nonblocking(fd.as_fd(), true)?,
        // A blocking unix connect waits for backlog room at most SO_SNDTIMEO.
        Some(d) => net::sockopt::set_socket_timeout(
            &fd,
            net::sockopt::Timeout::Send,
            Some(nonzero_timeout(d)),
        )?,
        None => {}
    }
    let got = loop {
        match net::connect(&fd, &addr.addr) {
            Err(Errno::INTR) => continue,
            other => break other,
        }
    };
    match got {
        Ok(()) => {
            match limit {
                Some(d) if d.is_zero() => set_nonblocking(fd.as_fd(), false)?,
                Some(_) => {
                    net::sockopt::set_socket_timeout(&fd, net::sockopt::Timeout::Send, None)?
                }
                None => {}
            }
            Ok(Connect::Connected(fd))
        }
        Err(Errno::CONNREFUSED) | Err(Errno::NOENT) | Err(Errno::PROTOTYPE) => Ok(Connect::Refused),
        Err(Errno::AGAIN) | Err(Errno::INPROGRESS) => Ok(Connect::Busy),
        Err(e) => Err(e.into()),
    }
}

/// Accepts one pending connection, non-blocking ([accept4(2)]). `Ok(None)` when none is waiting.
///
/// [accept4(2)]: https://man7.org/linux/man-pages/man2/accept4.2.html
pub(crate) fn accept(listener: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    match net::accept_with(listener, SocketFlags::CLOEXEC) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::AGAIN) | Err(Errno::INTR) => Ok(None),
        // The peer gave up before we got to it; nothing to do.
        Err(Errno::CONNABORTED) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The peer's pid, uid and gid as the kernel saw them at connect time ([`SO_PEERCRED`]).
///
/// [`SO_PEERCRED`]: https://man7.org/linux/man-pages/man7/unix.7.html
pub(crate) fn peer_cred(fd: BorrowedFd<'_>) -> io::Result<PeerCred> {
    let c = net::sockopt::socket_peercred(fd)?;
    Ok(PeerCred {
        pid: c.pid.as_raw_nonzero().get() as u32,
        uid: c.uid.as_raw(),
        gid: c.gid.as_raw(),
    })
}

/// Makes `fd` non-blocking (or blocking again) ([fcntl(2)] `O_NONBLOCK`).
///
/// [fcntl(2)]: https://man7.org/linux/man-pages/man2/fcntl.2.html
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    rustix::io::ioctl_fionbio(fd, on)?;
    Ok(())
}

/// Bounds how long a blocking receive waits ([`SO_RCVTIMEO`]); `None` waits forever.
///
/// [`SO_RCVTIMEO`]: https://man7.org/linux/man-pages/man7/socket.7.html
pub(crate) fn set_recv_timeout(fd: BorrowedFd<'_>, d: Option<Duration>) -> io::Result<()> {
    net::sockopt::set_socket_timeout(fd, net::sockopt::Timeout::Recv, d.map(nonzero_timeout))?;
    Ok(())
}

// A zero timeout means "forever" to the kernel; the smallest real one is 1 µs.
fn nonzero_timeout(d: Duration) -> Duration {
    d.max(Duration::from_micros(1))
}

/// Sets the socket's send buffer ([`SO_SNDBUF`]): how many bytes a link
/// holds before the receiver counts as full. The kernel doubles the value
/// for its bookkeeping and clamps it to `net.core.wmem_max`.
///
/// [`SO_SNDBUF`]: https://man7.org/linux/man-pages/man7/socket.7.html
pub(crate) fn set_send_buffer(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<()> {
    net::sockopt::set_socket_send_buffer_size(fd, bytes)?;
    Ok(())
}

/// Bytes written to the socket that its peer has not read yet ([`SIOCOUTQ`]),
/// including the kernel's per-frame overhead.
///
/// [`SIOCOUTQ`]: https://man7.org/linux/man-pages/man7/unix.7.html
pub(crate) fn unread_bytes(fd: BorrowedFd<'_>) -> io::Result<usize> {
    const SIOCOUTQ: rustix::ioctl::Opcode = 0x5411;
    // SAFETY: SIOCOUTQ (= TIOCOUTQ, 0x5411) on a unix socket writes one
    // `c_int` (the bytes in the send queue) to the pointer it is given,
    // which is what `Getter<_, c_int>` provides; the fd is borrowed live.
    let n = unsafe {
        rustix::ioctl::ioctl(
            fd,
            rustix::ioctl::Getter::<SIOCOUTQ, std::ffi::c_int>::new(),
        )?
    };
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Sends one frame: the byte slices, gathered, and the descriptors as `SCM_RIGHTS`
/// ([sendmsg(2)]). A seqpacket send is all or nothing.
///
/// [sendmsg(2)]: https://man7.org/linux/man-pages/man2/sendmsg.2.html
pub(crate) fn send_frame(
    fd: BorrowedFd<'_>,
    parts: &[&[u8]],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    if fds.len() > MAX_FDS_PER_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many descriptors for one frame",
        ));
    }
    let iov: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
    let mut space =
        vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(fds.len().max(1)))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("ancillary buffer too small"));
    }
    loop {
        match net::sendmsg(fd, &iov, &mut control, SendFlags::NOSIGNAL) {
            Ok(_) => return Ok(()),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// One frame as it came off a socket.
#[derive(Debug)]
pub(crate) enum Received {
    /// A whole frame of `len` bytes, with its descriptors.
    Frame { len: usize, fds: Vec<OwnedFd> },
    /// A frame that did not fit the buffer or whose descriptors were cut; its
    /// descriptors (if any arrived) are already closed.
    Truncated,
    /// Nothing to read now (non-blocking socket), or the receive timeout ran out.
    WouldBlock,
    /// The peer closed its end.
    Closed,
}

/// Space for the control message of a frame with the most descriptors.
pub(crate) fn recv_control_space() -> Vec<MaybeUninit<u8>> {
    vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_FRAME))]
}

/// Receives one frame into `buf` ([recvmsg(2)] with `MSG_CMSG_CLOEXEC`).
///
/// [recvmsg(2)]: https://man7.org/linux/man-pages/man2/recvmsg.2.html
pub(crate) fn recv_frame(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    control_space: &mut [MaybeUninit<u8>],
) -> io::Result<Received> {
    let mut control = RecvAncillaryBuffer::new(control_space);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = loop {
        match net::recvmsg(fd, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC) {
            Ok(m) => break m,
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Ok(Received::WouldBlock),
            Err(Errno::CONNRESET) => return Ok(Received::Closed),
            Err(e) => return Err(e.into()),
        }
    };
    let mut fds = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = m {
            fds.extend(rights);
        }
    }
    if msg
        .flags
        .intersects(ReturnFlags::TRUNC | ReturnFlags::CTRUNC)
    {
        drop(fds);
        return Ok(Received::Truncated);
    }
    if msg.bytes == 0 && fds.is_empty() {
        return Ok(Received::Closed);
    }
    Ok(Received::Frame {
        len: msg.bytes,
        fds,
    })
}

/// Whether an error from a send means the peer is gone for good.
pub(crate) fn is_peer_gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw_os_error),
        Some(Errno::PIPE)
            | Some(Errno::CONNRESET)
            | Some(Errno::CONNREFUSED)
            | Some(Errno::NOTCONN)
    )
}

/// A connected pair of seqpacket sockets ([socketpair(2)]), close-on-exec:
/// a data link without an address (a channel's, or the unit tests').
///
/// [socketpair(2)]: https://man7.org/linux/man-pages/man2/socketpair.2.html
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}
