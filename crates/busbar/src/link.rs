//! Data links: one seqpacket connection per sender → receiver pair.
//!
//! The sending side ([`OutLink`]) numbers its frames; the receiving side
//! ([`InLink`]) reads whole frames, checks them with [`frame::check`], and
//! drops (and counts) anything malformed. A peer that keeps sending
//! malformed frames is disconnected.

use crate::frame::{self, FrameError, Header, Kind};
use crate::sys::poll;
use crate::sys::socket::{self, Received};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Malformed frames a link may send before it is cut.
pub(crate) const MAX_BAD_FRAMES: u32 = 8;

/// The sending end of a data link.
#[derive(Debug)]
pub(crate) struct OutLink {
    fd: OwnedFd,
    /// The next sequence number; held for the whole of a write, so that
    /// frames leave in order.
    seq: Mutex<u64>,
    /// Frames written.
    pub sent: AtomicU64,
    /// Frames dropped because the receiver was full (drop-newest policy).
    pub dropped: AtomicU64,
}

/// How long a write to a full link may wait for room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Not at all.
    No,
    /// Until this instant.
    Until(Instant),
    /// As long as it takes.
    Forever,
}

/// Why a write to a link did not happen.
#[derive(Debug)]
pub(crate) enum SendFailure {
    /// The receiver had no room within the wait.
    Full,
    /// The socket failed (the peer may be gone: see [`socket::is_peer_gone`]).
    Io(io::Error),
}

impl OutLink {
    /// Connects to the endpoint `peer` at `addr` and introduces us as `our_id`.
    /// `Ok(None)` when nobody listens there (the endpoint is gone). Fails with
    /// `PermissionDenied` when the process listening there is not one that
    /// `access` admits (for us, running as `our_uid`).
    pub(crate) fn connect(
        addr: &socket::Address,
        our_id: u64,
        our_uid: u32,
        access: &crate::Access,
    ) -> io::Result<Option<OutLink>> {
        let Some(fd) = socket::connect(addr)? else {
            return Ok(None);
        };
        // Whoever holds that address must be one of ours: never hand a
        // message to a stranger who squatted it.
        let cred = socket::peer_cred(fd.as_fd())?;
        if !access.admits(our_uid, cred) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{addr:?} is held by uid {} (gid {}), which our access policy does not admit",
                    cred.uid, cred.gid
                ),
            ));
        }
        let hello = frame::encode_small(
            Kind::Hello,
            &frame::Hello { id: our_id },
            frame::PROTOCOL_VERSION,
        );
        match socket::send_frame(fd.as_fd(), &[&hello], &[]) {
            Ok(()) => {
                // Writes never block inside the kernel: waiting for room is ours to bound.
                socket::set_nonblocking(fd.as_fd(), true)?;
                Ok(Some(OutLink {
                    fd,
                    seq: Mutex::new(0),
                    sent: AtomicU64::new(0),
                    dropped: AtomicU64::new(0),
                }))
            }
            Err(e) if socket::is_peer_gone(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends one data frame, stamping the link's next sequence number into
    /// it. When the receiver's buffer is full, waits for room as `wait` says.
    /// Frames leave in the order their `send` calls took the link.
    pub(crate) fn send(
        &self,
        header: &Header,
        body: &[&[u8]],
        fds: &[BorrowedFd<'_>],
        wait: Wait,
    ) -> Result<(), SendFailure> {
        let mut seq = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        let mut h = header.clone();
        h.seq = *seq;
        let head = h.encode();
        let mut parts: Vec<&[u8]> = Vec::with_capacity(1 + body.len());
        parts.push(&head);
        parts.extend(body.iter().copied().filter(|b| !b.is_empty()));
        loop {
            match socket::send_frame(self.fd.as_fd(), &parts, fds) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let deadline = match wait {
                        Wait::No => return Err(SendFailure::Full),
                        Wait::Until(d) if Instant::now() >= d => return Err(SendFailure::Full),
                        Wait::Until(d) => Some(d),
                        Wait::Forever => None,
                    };
                    match poll::wait_writable(self.fd.as_fd(), deadline) {
                        Ok(true) => {}
                        Ok(false) => return Err(SendFailure::Full),
                        Err(e) => return Err(SendFailure::Io(e)),
                    }
                }
                Err(e) => return Err(SendFailure::Io(e)),
            }
        }
        *seq += 1;
        self.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Sets how many bytes the link holds before the receiver counts as full.
    pub(crate) fn set_buffer(&self, bytes: usize) -> io::Result<()> {
        socket::set_send_buffer(self.fd.as_fd(), bytes)
    }

    /// Bytes written that the receiver has not read yet.
    pub(crate) fn queued_bytes(&self) -> usize {
        socket::unread_bytes(self.fd.as_fd()).unwrap_or(0)
    }
}

/// A frame as received, checked against its header.
#[derive(Debug)]
pub(crate) struct RawFrame {
    pub header: Header,
    /// The whole frame: header, selector, in-line payload.
    pub bytes: Vec<u8>,
    pub fds: Vec<OwnedFd>,
}

impl RawFrame {
    /// The selector bytes.
    pub(crate) fn selector(&self) -> &[u8] {
        let end = frame::HEADER_LEN + self.header.selector_len as usize;
        self.bytes.get(frame::HEADER_LEN..end).unwrap_or_default()
    }

    /// The in-line payload bytes (empty when the payload is in a memfd).
    pub(crate) fn inline_payload(&self) -> &[u8] {
        let start = frame::HEADER_LEN + self.header.selector_len as usize;
        self.bytes.get(start..).unwrap_or_default()
    }
}

/// The receiving end of a data link.
#[derive(Debug)]
pub(crate) struct InLink {
    pub fd: OwnedFd,
    /// The sender, once its hello arrived.
    pub peer: Option<u64>,
    next_seq: u64,
    bad_frames: u32,
    /// Whether a gap in the sequence was logged already (once per link: an
    /// honest sender never makes one, a dishonest one must not flood the log).
    seq_warned: bool,
}

/// What one read from a link gave.
#[derive(Debug)]
pub(crate) enum Read {
    /// A data frame for the application.
    Frame(RawFrame),
    /// Something the link handled itself (a hello) or dropped (a bad frame).
    Nothing,
    /// No more frames now.
    Empty,
    /// The link is finished: closed by the peer or cut for misbehaving.
    Closed,
}

impl InLink {
    /// A new link on an accepted socket.
    pub(crate) fn new(fd: OwnedFd) -> InLink {
        InLink {
            fd,
            peer: None,
            next_seq: 0,
            bad_frames: 0,
            seq_warned: false,
        }
    }

    /// Reads one frame (the socket is non-blocking). `buf` must hold [`frame::MAX_FRAME`]
    /// bytes and `control` come from [`socket::recv_control_space`].
    pub(crate) fn read(
        &mut self,
        buf: &mut [u8],
        control: &mut [std::mem::MaybeUninit<u8>],
    ) -> Read {
        let got = match socket::recv_frame(self.fd.as_fd(), buf, control) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(peer = ?self.peer, "data link read failed: {e}");
                return Read::Closed;
            }
        };
        match got {
            Received::WouldBlock => Read::Empty,
            Received::Closed => Read::Closed,
            Received::Truncated => self.bad(FrameError::Length {
                want: frame::MAX_FRAME as u64 + 1,
                got: buf.len(),
            }),
            Received::Frame { len, fds } => {
                let bytes = &buf[..len];
                let header = match frame::check(bytes, fds.len()) {
                    Ok(h) => h,
                    Err(e) => return self.bad(e),
                };
                match header.kind {
                    Kind::Hello if self.peer.is_none() => {
                        match frame::decode_small::<frame::Hello>(bytes) {
                            Ok(h) => {
                                self.peer = Some(h.id);
                                Read::Nothing
                            }
                            Err(e) => self.bad(e),
                        }
                    }
                    Kind::Data if self.peer.is_some() => {
                        if header.seq != self.next_seq && !self.seq_warned {
                            self.seq_warned = true;
                            tracing::warn!(peer = ?self.peer, "frame {} arrived where {} was due (logged once per link)", header.seq, self.next_seq);
                        }
                        self.next_seq = header.seq.wrapping_add(1);
                        Read::Frame(RawFrame {
                            header,
                            bytes: bytes.to_vec(),
                            fds,
                        })
                    }
                    _ => self.bad(FrameError::Body(format!(
                        "unexpected {:?} frame on a data link",
                        header.kind
                    ))),
                }
            }
        }
    }

    fn bad(&mut self, e: FrameError) -> Read {
        if self.malformed(e) {
            Read::Closed
        } else {
            Read::Nothing
        }
    }

    /// Counts a malformed frame from this link, found by [`read`](InLink::read)
    /// or later by the decoder (a bad selector or descriptor). Whether the
    /// link has now sent [`MAX_BAD_FRAMES`] and must be cut (the caller drops it).
    pub(crate) fn malformed(&mut self, e: FrameError) -> bool {
        self.bad_frames = self.bad_frames.saturating_add(1);
        let peer = self.peer.map(|id| format!("{id:016x}"));
        tracing::warn!(peer, "dropped a malformed frame: {e}");
        if self.bad_frames < MAX_BAD_FRAMES {
            return false;
        }
        match socket::peer_cred(self.fd.as_fd()) {
            Ok(c) => tracing::warn!(
                peer,
                pid = c.pid,
                uid = c.uid,
                "disconnecting a peer after {} malformed frames",
                self.bad_frames
            ),
            Err(_) => tracing::warn!(
                peer,
                "disconnecting a peer after {} malformed frames",
                self.bad_frames
            ),
        }
        true
    }

    /// Malformed frames this link sent so far.
    pub(crate) fn bad_frames(&self) -> u32 {
        self.bad_frames
    }

    /// The socket, for a poller.
    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
