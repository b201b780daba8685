//! What busbar's own test suite needs from the library's private parts
//! (feature `test-hooks` only; hidden, not part of the API, not stable).
//!
//! The fuzz support itself (descriptor builders, raw senders, the socket
//! feed, the hostile ring sender, the ring-link harness, their report
//! types) lives in the `busbar-tests` crate (`src/fuzz_support/`), built
//! on the public API and on this module. This module holds only what
//! cannot be written outside the library:
//!
//! - the wire format's constants and encoders: [`FrameHeader`] (every
//!   header field free, so a test can lie), the hello and join bodies, the
//!   selector encoding, and the receiver's own checks and decoders
//!   ([`check_frame`], [`parse_selector`], [`decode_control`], ...);
//! - the raw descriptor-carrying send ([`send_frame`]) and the in-flight
//!   count of a region about to travel ([`count_in_flight`], [`region_fd`]);
//! - the ring's layout, a mapping to scribble on it ([`Scribbler`]) and an
//!   honest producer ([`RingProducer`]), in `testing/ring.rs`;
//! - the real receiving end of a data link ([`LinkEnd`]), in `testing/link.rs`.

mod link;
mod ring;

pub use link::{LinkEnd, Received};
pub use ring::{create_ring, ring_layout, Pushed, RingProducer, Scribbler};

use crate::frame::{self, Control, Header, Kind};
use crate::sys::socket;
use crate::{MemoryRegion, Selector};
use std::io;
use std::os::fd::BorrowedFd;

/// Malformed frames a data link may send before the receiver cuts it.
pub const MAX_BAD_FRAMES: u32 = crate::link::MAX_BAD_FRAMES;
/// Bytes in a frame header.
pub const HEADER_LEN: usize = frame::HEADER_LEN;
/// The largest frame a receiver reads off a socket; a longer one is truncated and dropped.
pub const MAX_FRAME: usize = frame::MAX_FRAME;
/// The longest selector a frame may carry.
pub const MAX_SELECTOR: usize = frame::MAX_SELECTOR;
/// The most selector and payload bytes a frame carries in line (a larger
/// payload travels in a descriptor).
pub const INLINE_MAX: usize = frame::INLINE_MAX;
/// The most descriptors one frame can carry (the kernel's `SCM_MAX_FD`).
pub const MAX_FDS_PER_FRAME: usize = socket::MAX_FDS_PER_FRAME;
/// Frame kind byte: the hello that opens a data link.
pub const KIND_HELLO: u8 = Kind::Hello as u8;
/// Frame kind byte: a message.
pub const KIND_DATA: u8 = Kind::Data as u8;
/// Frame kind byte: a control-plane message (never valid on a data link).
pub const KIND_CONTROL: u8 = Kind::Control as u8;
/// Header flag: the payload is in the last descriptor, a sealed memfd.
pub const FLAG_PAYLOAD_IN_FD: u8 = frame::FLAG_PAYLOAD_IN_FD;
/// Header flag: the payload is lent in the last descriptor, a memory
/// region, where the 24-byte locator after the selector says.
pub const FLAG_PAYLOAD_IN_REGION: u8 = frame::FLAG_PAYLOAD_IN_REGION;
/// Header flag: the payload is lent in a region an earlier frame on the
/// link carried (the locator's slot names it); no descriptor travels.
pub const FLAG_PAYLOAD_BY_REF: u8 = frame::FLAG_PAYLOAD_BY_REF;
/// The bytes of a locator (count word offset, payload offset, slot, reserved).
pub const REGION_LOCATOR_LEN: usize = frame::REGION_LOCATOR_LEN;
/// How many regions a link remembers.
pub const LINK_SLOTS: u32 = frame::LINK_SLOTS;
/// The slot of a region the link is not asked to remember.
pub const NO_SLOT: u32 = frame::NO_SLOT;
/// The bytes at the start of a chunk of a sender's pool (its count word first).
pub const CHUNK_HEADER: usize = crate::sys::slab::CHUNK_HEADER;
/// Header flag: a request (its sender waits for the answer with the correlation id).
pub const FLAG_REQUEST: u8 = frame::FLAG_REQUEST;
/// Header flag: an answer; refused on a data link going forward (answers
/// only travel back, on the socket of the request's link).
pub const FLAG_REPLY: u8 = frame::FLAG_REPLY;

/// A frame header with every field free, so that it can lie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameHeader {
    /// Protocol version.
    pub version: u16,
    /// Kind byte ([`KIND_DATA`], ... or anything).
    pub kind: u8,
    /// Flags ([`FLAG_PAYLOAD_IN_FD`] or anything).
    pub flags: u8,
    /// Selector length.
    pub selector_len: u16,
    /// Objects (descriptors).
    pub n_objects: u8,
    /// Memory regions (descriptors after the objects).
    pub n_regions: u8,
    /// Payload length.
    pub payload_len: u64,
    /// Sequence number on the link (wrapping).
    pub seq: u32,
    /// Payload type id.
    pub type_uuid: [u8; 16],
    /// Correlation id (requests and answers).
    pub correlation: u64,
}

impl FrameHeader {
    /// A data-frame header of this protocol version with everything else zero.
    pub fn data() -> FrameHeader {
        FrameHeader::new(KIND_DATA)
    }

    /// A header of `kind` and this protocol version with everything else zero.
    pub fn new(kind: u8) -> FrameHeader {
        FrameHeader {
            version: crate::PROTOCOL_VERSION,
            kind,
            flags: 0,
            selector_len: 0,
            n_objects: 0,
            n_regions: 0,
            payload_len: 0,
            seq: 0,
            type_uuid: [0; 16],
            correlation: 0,
        }
    }

    /// The header's bytes, as the library's encoder writes them.
    pub fn encode(&self) -> [u8; frame::HEADER_LEN] {
        let h = Header {
            kind: Kind::Data,
            flags: self.flags,
            selector_len: self.selector_len,
            n_objects: self.n_objects,
            n_regions: self.n_regions,
            payload_len: self.payload_len,
            seq: self.seq,
            type_uuid: self.type_uuid,
            correlation: self.correlation,
        };
        let mut b = h.encode_with_version(self.version);
        // The one field the encoder types: overwrite it with whatever byte we are told.
        b[6] = self.kind;
        b
    }
}

/// The body of the hello that opens a data link from endpoint `id` (no label).
pub fn hello_body(id: u64) -> Vec<u8> {
    // Encoding our own plain struct into a Vec cannot fail.
    postcard::to_allocvec(&frame::Hello {
        id,
        label: Vec::new(),
    })
    .unwrap_or_default()
}

/// The body of a join request to a controller, claiming protocol `version`.
pub fn join_body(version: u16, token: &str, id: u64, label: &[&str]) -> Vec<u8> {
    let join = Control::Join {
        version,
        token: token.as_bytes().to_vec(),
        id,
        label: label.iter().map(|s| s.to_string()).collect(),
    };
    // Encoding our own plain enum into a Vec cannot fail.
    postcard::to_allocvec(&join).unwrap_or_default()
}

/// A selector's bytes in a frame, as a sender writes them.
pub fn encode_selector(selector: &Selector) -> Vec<u8> {
    frame::encode_selector(selector)
}

/// Reads selector bytes as a receiver does.
pub fn parse_selector(bytes: &[u8]) -> Result<Selector, String> {
    frame::decode_selector(bytes).map_err(|e| e.to_string())
}

/// A control frame read back (a controller's answer), as its `Debug` text:
/// `Refuse(Malformed)`, `Welcome { .. }`, ...
pub fn decode_control(bytes: &[u8]) -> Result<String, String> {
    let h = frame::check(bytes, 0).map_err(|e| e.to_string())?;
    if h.kind != Kind::Control {
        return Err(format!("a {:?} frame, not a control frame", h.kind));
    }
    frame::decode_small::<Control>(bytes)
        .map(|c| format!("{c:?}"))
        .map_err(|e| e.to_string())
}

/// The endpoint id in a hello's body, read as a receiver reads it; `None`
/// when the body does not decode.
pub fn decode_hello(bytes: &[u8]) -> Option<u64> {
    frame::decode_small::<frame::Hello>(bytes)
        .ok()
        .map(|h| h.id)
}

/// Whether `frame::check` accepts `bytes` arriving with `fds` descriptors.
pub fn check_frame(bytes: &[u8], fds: usize) -> Result<(), String> {
    frame::check(bytes, fds)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The sequence number a receiver sees in a frame when it merges a link's
/// ring with its socket: `None` when the frame's header does not even read
/// (bad magic, version, kind or flags, or too short).
pub fn header_seq(bytes: &[u8]) -> Option<u32> {
    Header::decode(bytes).ok().map(|h| h.seq)
}

/// Writes one frame (`bytes`, with `fds` as `SCM_RIGHTS`) with one
/// `sendmsg` to a connected seqpacket `socket`, as a sender does.
pub fn send_frame(socket: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    socket::send_frame(socket, &[bytes], fds)
}

/// Counts one more holder of `region` for a copy about to be sent, as a
/// sender does before a region's descriptor leaves (the receiver's handle
/// then owns that count).
pub fn count_in_flight(region: &MemoryRegion) {
    region.add_in_flight_ref();
}

/// The descriptor a sender sends for `region`.
pub fn region_fd(region: &MemoryRegion) -> BorrowedFd<'_> {
    region.fd()
}

/// Scribbles `rounds` random words (from `seed`) over a named ring's
/// shared memory through `sender`'s mapping (reserve index, sender slots,
/// record claim and commit words), as a hostile sender would.
pub fn scribble_named_ring(sender: &crate::ring::RingSender, rounds: usize, seed: u64) {
    crate::ring::scribble(sender, rounds, seed)
}
