//! The descriptors a frame carries, made here with rustix (test
//! scaffolding, not an I/O path of the library), and [`send_raw`], which
//! writes a frame with them to any seqpacket socket.

use busbar::testing::{count_in_flight, region_fd, send_frame};
use busbar::MemoryRegion;
use rustix::fs::{self, MemfdFlags, SealFlags};
use rustix::net::{AddressFamily, SocketFlags, SocketType};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Seal bits for [`FdSpec::Memfd`].
pub mod seal {
    /// `F_SEAL_SHRINK`.
    pub const SHRINK: u8 = 1;
    /// `F_SEAL_GROW`.
    pub const GROW: u8 = 2;
    /// `F_SEAL_WRITE`.
    pub const WRITE: u8 = 4;
    /// `F_SEAL_SEAL`.
    pub const SEAL: u8 = 8;
}

/// A descriptor to attach to a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FdSpec {
    /// The read end of a fresh pipe: a fine object, nothing else.
    Pipe,
    /// `/dev/null`: not a memfd.
    DevNull,
    /// One end of a fresh socket pair.
    Socket,
    /// A memfd of `len` bytes starting with `contents`, with the [`seal`]
    /// bits given. Keep `len` small: a receiver may read up to the length
    /// a frame claims.
    Memfd {
        /// File size.
        len: u64,
        /// Bytes written at the start (before sealing; cut at `len`).
        contents: Vec<u8>,
        /// [`seal`] bits.
        seals: u8,
    },
    /// A real [`MemoryRegion`] of this many bytes, counted for the copy in flight as a sender does.
    Region(usize),
    /// A payload memfd holding these bytes, written and sealed as a sender does.
    Blob(Vec<u8>),
}

/// One frame to write: its bytes and its descriptors.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawInput {
    /// Everything `sendmsg` writes.
    pub bytes: Vec<u8>,
    /// What travels as `SCM_RIGHTS`.
    pub fds: Vec<FdSpec>,
}

/// Why [`send_raw`] did not send.
#[derive(Debug)]
pub enum Unsent {
    /// A descriptor to attach could not be made.
    Setup(io::Error),
    /// `sendmsg` refused the frame (too many descriptors, peer gone, no room).
    Refused(io::Error),
}

impl std::fmt::Display for Unsent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unsent::Setup(e) => write!(f, "cannot make a descriptor: {e}"),
            Unsent::Refused(e) => write!(f, "not sent: {e}"),
        }
    }
}

impl std::error::Error for Unsent {}

/// Writes one frame with one `sendmsg` to a connected seqpacket `socket`,
/// making the descriptors it lists first and closing them after: a raw
/// client of a live endpoint or controller uses this too.
pub fn send_raw(socket: BorrowedFd<'_>, input: &RawInput) -> Result<(), Unsent> {
    let attached = input
        .fds
        .iter()
        .map(Attachment::make)
        .collect::<io::Result<Vec<_>>>()
        .map_err(Unsent::Setup)?;
    let fds: Vec<BorrowedFd<'_>> = attached.iter().map(Attachment::fd).collect();
    send_frame(socket, &input.bytes, &fds).map_err(Unsent::Refused)
}

/// A descriptor made for a frame, kept open until the frame is written.
pub(crate) enum Attachment {
    Fd(OwnedFd),
    /// The end that travels, and the other end (kept open until the frame is written).
    Pair {
        sent: OwnedFd,
        _other: OwnedFd,
    },
    Region(MemoryRegion),
}

impl Attachment {
    pub(crate) fn make(spec: &FdSpec) -> io::Result<Attachment> {
        Ok(match spec {
            FdSpec::Pipe => {
                let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
                Attachment::Pair { sent: r, _other: w }
            }
            FdSpec::DevNull => Attachment::Fd(std::fs::File::open("/dev/null")?.into()),
            FdSpec::Socket => {
                let (a, b) = socketpair()?;
                Attachment::Pair { sent: a, _other: b }
            }
            FdSpec::Memfd {
                len,
                contents,
                seals,
            } => Attachment::Fd(memfd(*len, contents, *seals)?),
            FdSpec::Region(size) => {
                let region = MemoryRegion::new(*size).map_err(io::Error::other)?;
                count_in_flight(&region);
                Attachment::Region(region)
            }
            FdSpec::Blob(bytes) => Attachment::Fd(sealed_payload(bytes)?),
        })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Attachment::Fd(fd) | Attachment::Pair { sent: fd, .. } => fd.as_fd(),
            Attachment::Region(r) => region_fd(r),
        }
    }
}

/// A connected pair of seqpacket sockets, close-on-exec (as a data link's).
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// A [`socketpair`] whose ends are both non-blocking: a data link with the
/// sender on the first end and the receiver on the second.
pub(crate) fn link_sockets() -> io::Result<(OwnedFd, OwnedFd)> {
    let (tx, rx) = socketpair()?;
    rustix::io::ioctl_fionbio(&tx, true)?;
    rustix::io::ioctl_fionbio(&rx, true)?;
    Ok((tx, rx))
}

fn memfd(len: u64, contents: &[u8], seals: u8) -> io::Result<OwnedFd> {
    let fd = fs::memfd_create(
        "busbar-fuzz",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?;
    fs::ftruncate(&fd, len)?;
    // Never past `len`: the file keeps the size it was given.
    let contents = &contents[..contents
        .len()
        .min(usize::try_from(len).unwrap_or(usize::MAX))];
    let mut done = 0;
    while done < contents.len() {
        match rustix::io::pwrite(&fd, &contents[done..], done as u64)? {
            0 => break,
            n => done += n,
        }
    }
    let mut flags = SealFlags::empty();
    for (bit, flag) in [
        (seal::SHRINK, SealFlags::SHRINK),
        (seal::GROW, SealFlags::GROW),
        (seal::WRITE, SealFlags::WRITE),
        (seal::SEAL, SealFlags::SEAL),
    ] {
        if seals & bit != 0 {
            flags |= flag;
        }
    }
    if !flags.is_empty() {
        fs::fcntl_add_seals(&fd, flags)?;
    }
    Ok(fd)
}

/// `bytes` in a new memfd sealed against shrinking, growing and writing
/// (and further seals), as a sender that spills a payload writes it.
fn sealed_payload(bytes: &[u8]) -> io::Result<OwnedFd> {
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
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    fs::fcntl_add_seals(
        &fd,
        SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL,
    )?;
    Ok(fd)
}
