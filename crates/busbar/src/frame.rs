//! The wire format: one frame per `sendmsg`, checked before anything is touched.
//!
//! Every frame starts with a fixed 48-byte header, little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `BSBR` |
//! | 4 | 2 | protocol version ([`PROTOCOL_VERSION`]) |
//! | 6 | 1 | kind: 1 hello (its descriptors: the link's ring and the sender's eventfd), 2 data, 16 control |
//! | 7 | 1 | flags: bit 0 = the payload travels in a sealed memfd (the last descriptor); bit 1 = the payload is lent in a memory region (the last descriptor), where the frame's 24 body bytes after the selector (the locator) say; bit 4 = the payload is lent in a region this link carried before, by reference: no descriptor, the locator's slot names it (at most one of bits 0, 1, 4); bit 2 = a request: its sender waits for the answer with this correlation id; bit 3 = an answer to the request with this correlation id (not both; data frames only) |
//! | 8 | 2 | selector length (data frames) |
//! | 10 | 1 | number of objects (descriptors) |
//! | 11 | 1 | number of memory regions (descriptors after the objects) |
//! | 12 | 4 | sequence number on this link (data frames, from 0, wrapping) |
//! | 16 | 8 | payload length |
//! | 24 | 16 | payload type id (data frames) |
//! | 40 | 8 | correlation id (requests and answers) |
//!
//! 48 bytes, not more: a frame of a 64-byte message (header, a short
//! selector and the payload) then fills a ring record of 128 bytes, two
//! cache lines, where 8 bytes more cost a third line on every message
//! (about 100 ns of one-way latency on the development machine). A link
//! never has 2^31 frames in flight, so 32 bits of sequence tell the one
//! due from any other; 253 descriptors at most travel with a frame, and
//! a selector is at most [`MAX_SELECTOR`] bytes of text.
//!
//! Answers travel back on the request's own link, from the receiving end
//! to the sending end (the socket only: that direction has no ring), and
//! are the only frames that do; a data link refuses them going forward.
//!
//! The header is followed by the selector (data frames: one mode byte, then
//! the label expression as text) and the payload, unless the payload rides
//! in a memfd. Control and hello frames carry a postcard-encoded body as
//! their payload. [`check`] verifies every length and count against what the
//! socket actually delivered before a byte of the body is read.

use crate::payload::TypeUuidBytes;
use crate::selector::{LabelOp, Selector, SelectorMode};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The version of the wire protocol this build speaks. Endpoints of another
/// version are refused at join.
pub const PROTOCOL_VERSION: u16 = 7;

pub(crate) const MAGIC: [u8; 4] = *b"BSBR";
pub(crate) const HEADER_LEN: usize = 48;
/// Selector plus payload up to this size travel in the frame itself; a larger
/// payload moves into a sealed memfd.
pub(crate) const INLINE_MAX: usize = 64 * 1024;
/// The longest selector text a frame may carry.
pub(crate) const MAX_SELECTOR: usize = 16 * 1024;
/// The largest frame a receiver accepts off a socket.
pub(crate) const MAX_FRAME: usize = HEADER_LEN + MAX_SELECTOR + INLINE_MAX;
// What the header's narrow fields carry must fit them.
const _: () = assert!(MAX_SELECTOR + 9 <= u16::MAX as usize);
const _: () = assert!(crate::sys::socket::MAX_FDS_PER_FRAME <= u8::MAX as usize);

/// The largest payload a receiver accepts (in a memfd).
pub(crate) const MAX_PAYLOAD: u64 = 4 << 30;

/// Flag: the payload is in the last descriptor, a sealed memfd.
pub(crate) const FLAG_PAYLOAD_IN_FD: u8 = 1;
/// Flag: the payload is in the last descriptor, a memory region (a loan,
/// a large payload), where the locator after the selector says.
pub(crate) const FLAG_PAYLOAD_IN_REGION: u8 = 2;
/// Flag: the payload is in a region an earlier frame on this link carried
/// (with [`FLAG_PAYLOAD_IN_REGION`] and a slot), where the locator after the
/// selector says: no descriptor travels.
pub(crate) const FLAG_PAYLOAD_BY_REF: u8 = 16;
/// Flag: a request; the sender waits for the answer with the frame's correlation id.
pub(crate) const FLAG_REQUEST: u8 = 4;
/// Flag: the answer to the request with the frame's correlation id.
pub(crate) const FLAG_REPLY: u8 = 8;
/// Every flag a frame may carry.
const KNOWN_FLAGS: u8 =
    FLAG_PAYLOAD_IN_FD | FLAG_PAYLOAD_IN_REGION | FLAG_PAYLOAD_BY_REF | FLAG_REQUEST | FLAG_REPLY;
/// The body bytes that locate a payload lent in a region ([`Locator`]).
pub(crate) const REGION_LOCATOR_LEN: usize = 24;
/// The slot of a region a link does not remember.
pub(crate) const NO_SLOT: u32 = u32::MAX;
/// How many regions a link remembers (slots `0..LINK_SLOTS`).
pub(crate) const LINK_SLOTS: u32 = 16;

/// Where a lent payload lies: 24 bytes after the selector, little-endian.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 8 | where the count word of the payload's chunk is, among the region's user bytes (4-aligned, below 4 GiB): the receiver takes one off it when it drops the message |
/// | 8 | 8 | where the payload is, among the region's user bytes (below 4 GiB) |
/// | 16 | 4 | the link's slot for the region: with `FLAG_PAYLOAD_IN_REGION`, remember the region there (`NO_SLOT`: do not); with `FLAG_PAYLOAD_BY_REF`, the region remembered there |
/// | 20 | 4 | reserved, zero |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Locator {
    pub count_offset: u64,
    pub payload_offset: u64,
    pub slot: u32,
}

impl Locator {
    /// Its bytes.
    pub(crate) fn encode(&self) -> [u8; REGION_LOCATOR_LEN] {
        let mut b = [0u8; REGION_LOCATOR_LEN];
        b[0..8].copy_from_slice(&self.count_offset.to_le_bytes());
        b[8..16].copy_from_slice(&self.payload_offset.to_le_bytes());
        b[16..20].copy_from_slice(&self.slot.to_le_bytes());
        b
    }

    /// Reads one (`None` unless exactly [`REGION_LOCATOR_LEN`] bytes).
    pub(crate) fn decode(b: &[u8]) -> Option<Locator> {
        let b: &[u8; REGION_LOCATOR_LEN] = b.try_into().ok()?;
        let le64 = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(a)
        };
        Some(Locator {
            count_offset: le64(0),
            payload_offset: le64(8),
            slot: u32::from_le_bytes([b[16], b[17], b[18], b[19]]),
        })
    }
}

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// First frame on a data link: who is sending.
    Hello = 1,
    /// A message.
    Data = 2,

    /// Between an endpoint and the controller.
    Control = 16,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        match v {
            1 => Some(Kind::Hello),
            2 => Some(Kind::Data),
            16 => Some(Kind::Control),
            _ => None,
        }
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub kind: Kind,
    pub flags: u8,
    pub selector_len: u16,
    pub n_objects: u8,
    pub n_regions: u8,
    pub payload_len: u64,
    /// Wraps around: only equality with the number due matters.
    pub seq: u32,
    pub type_uuid: TypeUuidBytes,
    /// Which request this frame is or answers (with [`FLAG_REQUEST`] or [`FLAG_REPLY`]).
    pub correlation: u64,
}

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("frame of {0} bytes is shorter than a header")]
    Short(usize),
    #[error("bad magic")]
    Magic,
    #[error("protocol version {0}, this endpoint speaks {PROTOCOL_VERSION}")]
    Version(u16),
    #[error("unknown frame kind {0}")]
    Kind(u8),
    #[error("unknown flags {0:#x}")]
    Flags(u8),
    #[error("frame lengths disagree with the {got} bytes received (header says {want})")]
    Length { want: u64, got: usize },
    #[error("frame says {want} descriptors, {got} arrived")]
    Fds { want: usize, got: usize },
    #[error("payload of {0} bytes is over the limit")]
    TooLarge(u64),
    #[error("bad body: {0}")]
    Body(String),
}

impl Header {
    /// A header for a frame of `kind` with everything else zero.
    pub(crate) fn new(kind: Kind) -> Header {
        Header {
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

    /// The header's bytes.
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        self.encode_with_version(PROTOCOL_VERSION)
    }

    /// The header's bytes claiming another protocol version (test hook).
    pub(crate) fn encode_with_version(&self, version: u16) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..6].copy_from_slice(&version.to_le_bytes());
        b[6] = self.kind as u8;
        b[7] = self.flags;
        b[8..10].copy_from_slice(&self.selector_len.to_le_bytes());
        b[10] = self.n_objects;
        b[11] = self.n_regions;
        b[12..16].copy_from_slice(&self.seq.to_le_bytes());
        b[16..24].copy_from_slice(&self.payload_len.to_le_bytes());
        b[24..40].copy_from_slice(&self.type_uuid);
        b[40..48].copy_from_slice(&self.correlation.to_le_bytes());
        b
    }

    /// Reads a header. A frame of another protocol version is
    /// `Err(FrameError::Version)`, so that a controller can still say why it refuses.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Header, FrameError> {
        let b: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(FrameError::Short(bytes.len()))?;
        if b[0..4] != MAGIC {
            return Err(FrameError::Magic);
        }
        let version = u16::from_le_bytes([b[4], b[5]]);
        if version != PROTOCOL_VERSION {
            return Err(FrameError::Version(version));
        }
        let kind = Kind::from_u8(b[6]).ok_or(FrameError::Kind(b[6]))?;
        let flags = b[7];
        let both = |a: u8, b: u8| flags & (a | b) == a | b;
        let places = flags & (FLAG_PAYLOAD_IN_FD | FLAG_PAYLOAD_IN_REGION | FLAG_PAYLOAD_BY_REF);
        if flags & !KNOWN_FLAGS != 0 || places.count_ones() > 1 || both(FLAG_REQUEST, FLAG_REPLY) {
            return Err(FrameError::Flags(flags));
        }
        let le64 = |r: std::ops::Range<usize>| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[r]);
            u64::from_le_bytes(a)
        };
        let mut type_uuid = [0u8; 16];
        type_uuid.copy_from_slice(&b[24..40]);
        Ok(Header {
            kind,
            flags,
            selector_len: u16::from_le_bytes([b[8], b[9]]),
            n_objects: b[10],
            n_regions: b[11],
            seq: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
            payload_len: le64(16..24),
            type_uuid,
            correlation: le64(40..48),
        })
    }

    /// Whether the payload rides in a memfd.
    pub(crate) fn payload_in_fd(&self) -> bool {
        self.flags & FLAG_PAYLOAD_IN_FD != 0
    }

    /// Whether the payload is lent in a memory region.
    pub(crate) fn payload_in_region(&self) -> bool {
        self.flags & FLAG_PAYLOAD_IN_REGION != 0
    }

    /// Whether the payload is lent in a region the link carried before.
    pub(crate) fn payload_by_ref(&self) -> bool {
        self.flags & FLAG_PAYLOAD_BY_REF != 0
    }

    /// Whether the sender waits for an answer to this frame.
    pub(crate) fn is_request(&self) -> bool {
        self.flags & FLAG_REQUEST != 0
    }

    /// Whether this frame answers a request.
    pub(crate) fn is_reply(&self) -> bool {
        self.flags & FLAG_REPLY != 0
    }

    /// How many descriptors the frame must carry.
    pub(crate) fn fd_count(&self) -> usize {
        self.n_objects as usize
            + self.n_regions as usize
            + usize::from(self.payload_in_fd() || self.payload_in_region())
    }

    /// The bytes after the selector: the payload, none when it is in a
    /// memfd, its locator when it is lent in a region.
    pub(crate) fn inline_len(&self) -> u64 {
        if self.payload_in_fd() {
            0
        } else if self.payload_in_region() || self.payload_by_ref() {
            REGION_LOCATOR_LEN as u64
        } else {
            self.payload_len
        }
    }
}

/// Checks a received frame of `len` bytes with `fds` descriptors against its
/// header: after this, `selector` and an in-line payload are in bounds.
pub(crate) fn check(bytes: &[u8], fds: usize) -> Result<Header, FrameError> {
    let h = Header::decode(bytes)?;
    if h.kind != Kind::Data && h.selector_len != 0 {
        return Err(FrameError::Body("only data frames carry selectors".into()));
    }
    // A hello may carry the link's ring and the sender's eventfd; control
    // frames carry no descriptors.
    let max_fds = match h.kind {
        Kind::Data => usize::MAX,
        Kind::Hello => 2,
        Kind::Control => 0,
    };
    if h.kind != Kind::Data && (h.fd_count() > max_fds || h.n_regions != 0 || h.flags != 0) {
        return Err(FrameError::Body(format!(
            "a {:?} frame carries at most {max_fds} descriptor(s), as an object",
            h.kind
        )));
    }
    if h.payload_len > MAX_PAYLOAD {
        return Err(FrameError::TooLarge(h.payload_len));
    }
    let body = h.selector_len as u64 + h.inline_len();
    let want = HEADER_LEN as u64 + body;
    if want != bytes.len() as u64 {
        return Err(FrameError::Length {
            want,
            got: bytes.len(),
        });
    }
    if h.fd_count() != fds {
        return Err(FrameError::Fds {
            want: h.fd_count(),
            got: fds,
        });
    }
    Ok(h)
}

/// A checked data frame's selector bytes and the bytes after them (the
/// in-line payload, or a payload's locator), split as its header says.
pub(crate) fn split_body<'a>(header: &Header, bytes: &'a [u8]) -> (&'a [u8], &'a [u8]) {
    let end = HEADER_LEN + header.selector_len as usize;
    (
        bytes.get(HEADER_LEN..end).unwrap_or_default(),
        bytes.get(end..).unwrap_or_default(),
    )
}

/// The selector's bytes on the wire: a mode byte (0 unicast, 1 multicast,
/// 2 one endpoint, whose id follows in 8 bytes), then the expression's text.
pub(crate) fn encode_selector(s: &Selector) -> Vec<u8> {
    let text = s.label_op.to_string();
    let mut out = Vec::with_capacity(9 + text.len());
    match (s.endpoint, s.mode) {
        (Some(id), _) => {
            out.push(2);
            out.extend_from_slice(&id.0.to_le_bytes());
        }
        (None, SelectorMode::Unicast) => out.push(0),
        (None, SelectorMode::Multicast) => out.push(1),
    }
    out.extend_from_slice(text.as_bytes());
    out
}

/// Reads a selector off the wire (its ttl is not sent: it only matters to the sender).
pub(crate) fn decode_selector(b: &[u8]) -> Result<Selector, FrameError> {
    let (&mode, mut text) = b
        .split_first()
        .ok_or_else(|| FrameError::Body("empty selector".into()))?;
    let mut endpoint = None;
    let mode = match mode {
        0 => SelectorMode::Unicast,
        1 => SelectorMode::Multicast,
        2 => {
            let (id, rest) = text
                .split_first_chunk::<8>()
                .ok_or_else(|| FrameError::Body("endpoint selector without its id".into()))?;
            endpoint = Some(crate::EndpointId(u64::from_le_bytes(*id)));
            text = rest;
            SelectorMode::Unicast
        }
        m => return Err(FrameError::Body(format!("unknown selector mode {m}"))),
    };
    let text =
        std::str::from_utf8(text).map_err(|_| FrameError::Body("selector is not UTF-8".into()))?;
    let label_op: LabelOp = text
        .parse()
        .map_err(|e| FrameError::Body(format!("selector: {e}")))?;
    Ok(Selector {
        mode,
        label_op,
        endpoint,
        ttl: Duration::ZERO,
        backpressure: None,
        require_receiver: false,
    })
}

/// An endpoint as the directory records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PeerRecord {
    pub id: u64,
    pub label: Vec<String>,
    pub pid: u32,
    pub uid: u32,
}

/// Why a controller refused a join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Refusal {
    /// The joiner speaks another protocol version.
    Version { controller: u16 },
    /// The token differs.
    Token,
    /// The joiner's uid is not allowed.
    Permission { uid: u32 },
    /// Another endpoint has this id.
    DuplicateId,
    /// The join request made no sense.
    Malformed,
    /// The controller admits at most `max` endpoints, and has that many.
    /// (Last, so that the variants before it keep their tags.)
    Full { max: u64 },
}

/// Control-plane messages (the body of a `Control` frame).
///
/// The encoding of `Refuse` must stay the same across protocol versions, so
/// that an old endpoint can read why a newer controller refuses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Control {
    /// Refusal (controller → joiner). Keep first: its encoding is version-stable.
    Refuse(Refusal),
    /// Join request (endpoint → controller).
    Join {
        version: u16,
        token: Vec<u8>,
        id: u64,
        label: Vec<String>,
    },
    /// Accepted: the whole directory (controller → joiner).
    Welcome {
        epoch: u64,
        controller: u64,
        peers: Vec<PeerRecord>,
    },
    /// An endpoint joined (controller → every endpoint).
    Added(PeerRecord),
    /// An endpoint left (controller → every endpoint).
    Removed(u64),
    /// How far behind each receiver this endpoint sends to is, and how many
    /// messages it moves (endpoint → controller, about once a second while
    /// it changes).
    Report(LoadReport),
    /// Per endpoint, what all senders together have queued for it and
    /// dropped because it was full, and its own message rates (controller →
    /// every endpoint, when it changes).
    Load(Vec<EndpointLoad>),
    /// Whom a re-joining endpoint knows (endpoint → a new controller, right
    /// after its welcome): the controller lists those it did not know yet
    /// until they re-register or their grace runs out, so that an endpoint
    /// joining for the first time during a failover learns of every live one.
    Known(Vec<PeerRecord>),
}

/// What an endpoint reports about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LoadReport {
    /// Its links to receivers.
    pub links: Vec<LinkLoad>,
    /// Messages it wrote to receivers per second (one per receiver), over
    /// the time since its last report.
    pub sent_per_sec: u64,
    /// Messages its receiver handed to the application per second, likewise.
    pub received_per_sec: u64,
}

/// One link's load, as its sender reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LinkLoad {
    pub peer: u64,
    pub queued_bytes: u64,
    pub dropped: u64,
}

/// One endpoint's inbound load, summed over its senders, and its own
/// message rates, as it reported them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EndpointLoad {
    pub id: u64,
    pub queued_bytes: u64,
    pub dropped: u64,
    pub sent_per_sec: u64,
    pub received_per_sec: u64,
}

/// The body of a `Hello` frame: who opened this data link. The receiver
/// learns the sender from it (see `InLink::take_hello`), so that a message
/// it hands to the application always comes from an endpoint its directory
/// lists, whatever the controller's pushes say yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub id: u64,
    /// The sender's label.
    pub label: Vec<String>,
}

/// A whole small frame (header and postcard body) of `kind`.
pub(crate) fn encode_small<T: Serialize>(kind: Kind, body: &T, version: u16) -> Vec<u8> {
    // Encoding our own plain structs into a Vec cannot fail.
    let body = postcard::to_allocvec(body).unwrap_or_default();
    let mut h = Header::new(kind);
    h.payload_len = body.len() as u64;
    let mut out = h.encode_with_version(version).to_vec();
    out.extend_from_slice(&body);
    out
}

/// The body of a checked small frame.
pub(crate) fn decode_small<'a, T: Deserialize<'a>>(frame: &'a [u8]) -> Result<T, FrameError> {
    let body = frame.get(HEADER_LEN..).unwrap_or_default();
    postcard::from_bytes(body).map_err(|e| FrameError::Body(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let mut h = Header::new(Kind::Data);
        h.flags = FLAG_PAYLOAD_IN_FD;
        h.selector_len = 7;
        h.n_objects = 3;
        h.n_regions = 2;
        h.payload_len = 1 << 40;
        h.seq = 99;
        h.type_uuid = [7; 16];
        h.correlation = 1 << 50;
        assert_eq!(Header::decode(&h.encode()), Ok(h.clone()));
        h.flags = FLAG_PAYLOAD_IN_REGION | FLAG_REPLY;
        assert_eq!(Header::decode(&h.encode()), Ok(h.clone()));
        h.flags = FLAG_REQUEST | FLAG_REPLY;
        assert_eq!(Header::decode(&h.encode()), Err(FrameError::Flags(12)));
        h.flags = FLAG_PAYLOAD_BY_REF | FLAG_REQUEST;
        assert_eq!(Header::decode(&h.encode()), Ok(h.clone()));
        h.flags = FLAG_PAYLOAD_BY_REF | FLAG_PAYLOAD_IN_REGION;
        assert_eq!(Header::decode(&h.encode()), Err(FrameError::Flags(18)));
        h.flags = FLAG_PAYLOAD_BY_REF | FLAG_PAYLOAD_IN_FD;
        assert_eq!(Header::decode(&h.encode()), Err(FrameError::Flags(17)));
        h.flags = 32;
        assert_eq!(Header::decode(&h.encode()), Err(FrameError::Flags(32)));
    }

    #[test]
    fn check_refuses_lies() {
        let mut h = Header::new(Kind::Data);
        h.selector_len = 4;
        h.payload_len = 10;
        let mut f = h.encode().to_vec();
        f.extend_from_slice(&[0; 14]);
        assert!(check(&f, 0).is_ok());
        assert!(matches!(
            check(&f[..f.len() - 1], 0),
            Err(FrameError::Length { .. })
        ));
        assert!(matches!(check(&f, 1), Err(FrameError::Fds { .. })));
        assert!(matches!(check(&f[..10], 0), Err(FrameError::Short(10))));
        let mut bad = f.clone();
        bad[0] = b'X';
        assert_eq!(check(&bad, 0), Err(FrameError::Magic));
        let mut v = f.clone();
        v[4] = 9;
        assert_eq!(check(&v, 0), Err(FrameError::Version(9)));
        let mut k = f.clone();
        k[6] = 77;
        assert_eq!(check(&k, 0), Err(FrameError::Kind(77)));
        h.payload_len = u64::MAX;
        assert!(matches!(
            check(&h.encode(), 0),
            Err(FrameError::TooLarge(_))
        ));
    }

    #[test]
    fn locators_round_trip_and_need_24_bytes() {
        let l = Locator {
            count_offset: 4096,
            payload_offset: 4096 + 64,
            slot: 3,
        };
        assert_eq!(Locator::decode(&l.encode()), Some(l));
        assert_eq!(Locator::decode(&l.encode()[..23]), None);
        let mut h = Header::new(Kind::Data);
        h.flags = FLAG_PAYLOAD_BY_REF;
        h.payload_len = 1 << 20;
        let mut f = h.encode().to_vec();
        f.extend_from_slice(&l.encode());
        assert_eq!(check(&f, 0).map(|h| h.payload_by_ref()), Ok(true));
        assert!(matches!(check(&f, 1), Err(FrameError::Fds { .. })));
    }

    #[test]
    fn endpoint_selectors_round_trip() {
        let s = Selector::endpoint(crate::EndpointId(0xfeed)).ttl(Duration::from_secs(1));
        let back = decode_selector(&encode_selector(&s)).expect("decodes");
        assert_eq!(back.endpoint, Some(crate::EndpointId(0xfeed)));
        assert_eq!(back.label_op, LabelOp::True);
        assert!(decode_selector(&[2, 1, 2, 3]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn check_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200), fds in 0usize..300) {
            let _ = check(&bytes, fds);
            let _ = decode_small::<Control>(&bytes);
            let _ = decode_selector(&bytes);
        }
    }
}
