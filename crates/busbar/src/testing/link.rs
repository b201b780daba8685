//! The real receiving end of a data link, for a test to put a hostile
//! sender in front of.

use crate::endpoint::receiver::{decode, Decoded};
use crate::frame;
use crate::link::{InLink, Read};
use crate::sys::socket;
use crate::{BytesMessage, Message};
use std::os::fd::{BorrowedFd, OwnedFd};

/// What one [`LinkEnd::read`] gave.
#[derive(Debug)]
pub enum Received {
    /// A data frame, decoded as a `BytesMessage` receiver decodes it.
    Message {
        /// The sequence number its frame carried.
        seq: u32,
        /// The message, attachments and all.
        message: Message<BytesMessage>,
    },
    /// Well formed, of a type a `BytesMessage` receiver does not know: skipped.
    Skipped,
    /// A frame the link's checks passed but decoding found malformed (a bad
    /// selector or descriptor), counted against the link as the receiver
    /// counts it.
    Malformed {
        /// The link has now sent [`MAX_BAD_FRAMES`](super::MAX_BAD_FRAMES)
        /// malformed frames: the receiver cuts it.
        cut: bool,
    },
    /// A `BytesMessage` whose payload did not decode (`recv` reports `RecvError::Decode`).
    DecodeError,
    /// Something the link handled itself (a hello, padding, a malformed
    /// frame it counted, a look at the socket).
    Nothing,
    /// Nothing to read now.
    Empty,
    /// The link ended: closed by its sender, or refused.
    Closed,
}

/// The receiving end of a data link (`InLink`) on a socket, with the
/// buffers a receiver reads into.
#[derive(Debug)]
pub struct LinkEnd {
    link: InLink,
    buf: Vec<u8>,
    control: Vec<std::mem::MaybeUninit<u8>>,
}

impl LinkEnd {
    /// The receiving end of a data link on `socket`, a connected,
    /// non-blocking seqpacket socket (the other end is the sender's).
    pub fn new(socket: OwnedFd) -> LinkEnd {
        LinkEnd {
            link: InLink::new(socket),
            buf: vec![0u8; frame::MAX_FRAME],
            control: socket::recv_control_space(),
        }
    }

    /// One read, as the receiver does it: `InLink::read` (the link's own
    /// checks, the hello, the ring and the socket merged in sequence), then
    /// the receiver's `decode` for a `BytesMessage`, counting decode-time
    /// malformations against the link.
    pub fn read(&mut self) -> Received {
        match self.link.read(&mut self.buf, &mut self.control) {
            Read::Frame(raw) => {
                let seq = raw.header.seq;
                match decode::<BytesMessage>(raw) {
                    Ok(Decoded::Message(message)) => Received::Message { seq, message },
                    Ok(Decoded::Skipped) => Received::Skipped,
                    Ok(Decoded::Malformed(e)) => Received::Malformed {
                        cut: self.link.malformed(e),
                    },
                    Err(_) => Received::DecodeError,
                }
            }
            Read::Nothing => Received::Nothing,
            Read::Empty => Received::Empty,
            Read::Closed => Received::Closed,
        }
    }

    /// Malformed frames the link was charged with so far.
    pub fn bad_frames(&self) -> u32 {
        self.link.bad_frames()
    }

    /// Whether a hello told the link who its sender is.
    pub fn knows_peer(&self) -> bool {
        self.link.peer.is_some()
    }

    /// What the receiver does before it sleeps: raises the ring's flag and
    /// looks again. Whether something is there after all (do not sleep).
    pub fn prepare_sleep(&mut self) -> bool {
        self.link.prepare_sleep()
    }

    /// What the receiver does when it wakes: lowers the ring's flag, takes
    /// note that the socket may have something, and silences the doorbell.
    pub fn wake(&mut self) {
        self.link.awake();
        self.link.socket_ready();
        self.link.bell_rang();
    }

    /// What the receiver's spin loop looks at: whether the ring seems to
    /// have something (it may release padding on the way).
    pub fn ring_has_frame(&mut self) -> bool {
        self.link.ring_has_frame()
    }

    /// The receiver's copy of the doorbell the hello handed over, if any.
    pub fn bell(&self) -> Option<BorrowedFd<'_>> {
        self.link.watched().nth(1)
    }
}
