//! Entry points for property tests and the fuzz loop (feature `test-hooks`
//! only; not part of the API and not stable).
//!
//! [`feed_link`] writes hostile frames, with whatever descriptors they
//! claim or do not claim, into one end of a seqpacket socket pair and runs
//! the real receiving path on the other end: `InLink::read` (which
//! `frame::check`s every frame against what the socket delivered), then
//! the receiver's own `decode` for a [`BytesMessage`], then the same
//! bad-frame accounting the receiver does. It reports what became of each
//! frame, so a test can compare that with what it knows about the frame.
//!
//! The builders ([`FrameHeader`], [`honest_frame`], [`hello_frame`],
//! [`join_frame`]) use the library's own encoders, so a test starts from
//! what a real peer sends and then lies.
//!
//! The descriptors attached to frames ([`FdSpec`]) are made here with
//! rustix; this is test scaffolding, not an I/O path of the library.
//!
//! # Rings
//!
//! A data link also carries frames through a shared-memory ring that the
//! sender creates and hands over in its hello. A hostile sender owns that
//! memory and can write anything into it at any time. [`HostileRing`] is
//! such a sender: it creates a ring, sends the hello, pushes frames as an
//! honest sender does (`sys::ring::Producer`, filled in place and
//! committed, the receiver's doorbell rung when it sleeps), and maps the
//! ring a second time to scribble on it ([`Scribbler`]: indices, record
//! headers, frame bytes, flag words; offsets in [`ring_layout`]).
//! [`RingLink`] puts one on a socket pair in front of the real receiving
//! end (`InLink::read`, then the receiver's `decode`) and reports what
//! became of each read ([`RingRead`]), along with the indices each side
//! last published, so that a test can tell which bytes of the ring hold
//! frames the receiver has not read yet.

use crate::endpoint::receiver::{decode, Decoded};
use crate::frame::{self, Control, Header, Kind};
use crate::link::{InLink, Read};
use crate::payload::MessageBox;
use crate::sys::memfd::Mapping;
use crate::sys::poll::Doorbell;
use crate::sys::ring::{self, Producer, PushError};
use crate::sys::{blob, socket};
use crate::{BytesMessage, MemoryRegion, Selector};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;

/// Malformed frames a data link may send before the receiver cuts it.
pub const MAX_BAD_FRAMES: u32 = crate::link::MAX_BAD_FRAMES;
/// Bytes in a frame header.
pub const HEADER_LEN: usize = frame::HEADER_LEN;
/// The largest frame a receiver reads off a socket; a longer one is truncated and dropped.
pub const MAX_FRAME: usize = frame::MAX_FRAME;
/// The longest selector a frame may carry.
pub const MAX_SELECTOR: usize = frame::MAX_SELECTOR;
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
/// region, at the offset in the 8 bytes after the selector.
pub const FLAG_PAYLOAD_IN_REGION: u8 = frame::FLAG_PAYLOAD_IN_REGION;
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
    pub selector_len: u32,
    /// Objects (descriptors).
    pub n_objects: u16,
    /// Memory regions (descriptors after the objects).
    pub n_regions: u16,
    /// Payload length.
    pub payload_len: u64,
    /// Sequence number on the link.
    pub seq: u64,
    /// Payload type id.
    pub type_uuid: [u8; 16],
    /// Correlation id (requests and answers).
    pub correlation: u64,
}

impl FrameHeader {
    /// A data-frame header of this protocol version with everything else zero.
    pub fn data() -> FrameHeader {
        FrameHeader {
            version: crate::PROTOCOL_VERSION,
            kind: KIND_DATA,
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

/// A truthful message, as an honest sender would write it.
#[derive(Debug, Clone)]
pub struct Honest {
    /// Where it goes.
    pub selector: Selector,
    /// The payload.
    pub message: BytesMessage,
    /// Its sequence number on the link.
    pub seq: u64,
    /// How many pipes travel as objects.
    pub objects: usize,
    /// The sizes of the regions that travel with it.
    pub regions: Vec<usize>,
    /// Whether the payload travels in a sealed memfd instead of in the frame.
    pub spill: bool,
}

/// The frame an honest sender writes for `h`; `None` when it cannot travel
/// (its selector is too deep or too long, or it has too many descriptors).
pub fn honest_frame(h: &Honest) -> Option<RawInput> {
    if h.selector.label_op.depth() > crate::MAX_DEPTH {
        return None;
    }
    let selector = frame::encode_selector(&h.selector);
    if selector.len() > frame::MAX_SELECTOR {
        return None;
    }
    let mut payload = Vec::new();
    h.message.encode_into(&mut payload).ok()?;
    let mut header = FrameHeader::data();
    header.selector_len = selector.len() as u32;
    header.n_objects = u16::try_from(h.objects).ok()?;
    header.n_regions = u16::try_from(h.regions.len()).ok()?;
    header.payload_len = payload.len() as u64;
    header.seq = h.seq;
    header.type_uuid = h.message.type_uuid();
    let mut fds: Vec<FdSpec> = std::iter::repeat_n(FdSpec::Pipe, h.objects).collect();
    fds.extend(h.regions.iter().map(|&n| FdSpec::Region(n)));
    let mut bytes = Vec::new();
    if h.spill {
        header.flags |= FLAG_PAYLOAD_IN_FD;
        fds.push(FdSpec::Blob(payload));
        bytes.extend_from_slice(&header.encode());
        bytes.extend_from_slice(&selector);
    } else {
        bytes.extend_from_slice(&header.encode());
        bytes.extend_from_slice(&selector);
        bytes.extend_from_slice(&payload);
    }
    if fds.len() > MAX_FDS_PER_FRAME || bytes.len() > MAX_FRAME {
        return None;
    }
    Some(RawInput { bytes, fds })
}

/// The hello that opens a data link from endpoint `id`.
pub fn hello_frame(id: u64) -> Vec<u8> {
    frame::encode_small(
        Kind::Hello,
        &frame::Hello {
            id,
            label: Vec::new(),
        },
        crate::PROTOCOL_VERSION,
    )
}

/// A join request to a controller, claiming protocol `version`.
pub fn join_frame(version: u16, token: &str, id: u64, label: &[&str]) -> Vec<u8> {
    let join = Control::Join {
        version,
        token: token.as_bytes().to_vec(),
        id,
        label: label.iter().map(|s| s.to_string()).collect(),
    };
    frame::encode_small(Kind::Control, &join, version)
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
pub fn header_seq(bytes: &[u8]) -> Option<u64> {
    Header::decode(bytes).ok().map(|h| h.seq)
}

/// Reads selector bytes as a receiver does.
pub fn parse_selector(bytes: &[u8]) -> Result<Selector, String> {
    frame::decode_selector(bytes).map_err(|e| e.to_string())
}

/// A message the receiving path delivered.
#[derive(Debug)]
pub struct Delivered {
    /// Its selector.
    pub selector: Selector,
    /// Its payload.
    pub payload: BytesMessage,
    /// How many objects came with it (closed since).
    pub objects: usize,
    /// The sizes of the regions that came with it (dropped since).
    pub regions: Vec<usize>,
    /// Whether it is a request (its sender waits for an answer).
    pub request: bool,
}

impl Delivered {
    /// What the application got: `m`, its attachments counted (and let go).
    fn of(m: crate::Message<BytesMessage>) -> Delivered {
        Delivered {
            objects: m.objects.len(),
            regions: m.memory_regions.iter().map(MemoryRegion::size).collect(),
            request: m.is_request(),
            selector: m.selector,
            payload: m.payload,
        }
    }
}

/// What became of one frame.
#[derive(Debug)]
pub enum Outcome {
    /// A hello: the link now knows its peer.
    Hello,
    /// Delivered to the application.
    Delivered(Delivered),
    /// Refused as malformed (by the link's checks or by decoding) and counted against the link.
    Dropped,
    /// Well formed but of a type a `BytesMessage` receiver does not know: skipped.
    Skipped,
    /// A `BytesMessage` whose payload did not decode: `recv` reports `RecvError::Decode`.
    DecodeError,
    /// The read saw the link end without a malformed frame (an empty frame reads as a hang-up).
    Closed,
    /// Not written: the kernel refused it, or the link was closed before it.
    NotSent(String),
    /// Written, but nothing came out of the other end: never expected.
    Lost,
}

/// What [`feed_link`] saw.
#[derive(Debug, Default)]
pub struct FeedReport {
    /// One per input frame, in order.
    pub outcomes: Vec<Outcome>,
    /// The receiver cut the link for sending too many malformed frames.
    pub cut: bool,
    /// The link ended (cut, or read as hung up).
    pub closed: bool,
}

impl FeedReport {
    /// Frames delivered.
    pub fn delivered(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Delivered(_)))
    }

    /// Frames dropped as malformed.
    pub fn dropped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Dropped))
    }

    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.outcomes.iter().filter(|o| f(o)).count()
    }
}

/// Writes `frames` into a fresh data link, one at a time, and runs the
/// receiving path on each: `InLink::read`, then the receiver's `decode` for
/// a [`BytesMessage`], counting decode-time malformations against the link
/// as `EndpointReceiver` does. Everything it opened is closed when it returns.
///
/// Fails only when it cannot set up (no socket pair, or a descriptor to
/// attach could not be made).
pub fn feed_link(frames: Vec<RawInput>) -> io::Result<FeedReport> {
    let (tx, rx) = socket::socketpair()?;
    socket::set_nonblocking(tx.as_fd(), true)?;
    socket::set_nonblocking(rx.as_fd(), true)?;
    let mut link = Some(InLink::new(rx));
    let mut buf = vec![0u8; frame::MAX_FRAME];
    let mut control = socket::recv_control_space();
    let mut report = FeedReport::default();
    for input in frames {
        let Some(l) = link.as_mut() else {
            report
                .outcomes
                .push(Outcome::NotSent("the link is closed".into()));
            continue;
        };
        match send_raw(tx.as_fd(), &input) {
            Ok(()) => {}
            Err(Unsent::Refused(e)) => {
                report.outcomes.push(Outcome::NotSent(e.to_string()));
                continue;
            }
            Err(Unsent::Setup(e)) => return Err(e),
        }
        let (outcome, end) = receive_one(l, &mut buf, &mut control);
        match end {
            End::Open => {}
            End::Cut => {
                report.cut = true;
                report.closed = true;
                link = None;
            }
            End::HungUp => {
                report.closed = true;
                link = None;
            }
        }
        report.outcomes.push(outcome);
    }
    Ok(report)
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
    socket::send_frame(socket, &[&input.bytes], &fds).map_err(Unsent::Refused)
}

enum End {
    Open,
    Cut,
    HungUp,
}

/// Reads and decodes the one frame just written.
fn receive_one(
    link: &mut InLink,
    buf: &mut [u8],
    control: &mut [std::mem::MaybeUninit<u8>],
) -> (Outcome, End) {
    let bad_before = link.bad_frames();
    match link.read(buf, control) {
        Read::Frame(raw) => match decode::<BytesMessage>(raw) {
            Ok(Decoded::Message(m)) => (Outcome::Delivered(Delivered::of(m)), End::Open),
            Ok(Decoded::Skipped) => (Outcome::Skipped, End::Open),
            Ok(Decoded::Malformed(e)) => {
                let end = if link.malformed(e) {
                    End::Cut
                } else {
                    End::Open
                };
                (Outcome::Dropped, end)
            }
            Err(_) => (Outcome::DecodeError, End::Open),
        },
        Read::Nothing if link.bad_frames() > bad_before => (Outcome::Dropped, End::Open),
        Read::Nothing => (Outcome::Hello, End::Open),
        Read::Closed if link.bad_frames() > bad_before => (Outcome::Dropped, End::Cut),
        Read::Closed => (Outcome::Closed, End::HungUp),
        Read::Empty => (Outcome::Lost, End::Open),
    }
}

/// A descriptor made for a frame, kept open until the frame is written.
enum Attachment {
    Fd(OwnedFd),
    /// The end that travels, and the other end (kept open until the frame is written).
    Pair(OwnedFd, #[allow(dead_code)] OwnedFd),
    Region(MemoryRegion),
}

impl Attachment {
    fn make(spec: &FdSpec) -> io::Result<Attachment> {
        Ok(match spec {
            FdSpec::Pipe => {
                let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
                Attachment::Pair(r, w)
            }
            FdSpec::DevNull => Attachment::Fd(std::fs::File::open("/dev/null")?.into()),
            FdSpec::Socket => {
                let (a, b) = socket::socketpair()?;
                Attachment::Pair(a, b)
            }
            FdSpec::Memfd {
                len,
                contents,
                seals,
            } => Attachment::Fd(memfd(*len, contents, *seals)?),
            FdSpec::Region(size) => {
                let region = MemoryRegion::new(*size).map_err(io::Error::other)?;
                region.add_in_flight_ref();
                Attachment::Region(region)
            }
            FdSpec::Blob(bytes) => Attachment::Fd(blob::write_sealed(bytes)?),
        })
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Attachment::Fd(fd) | Attachment::Pair(fd, _) => fd.as_fd(),
            Attachment::Region(r) => r.fd(),
        }
    }
}

fn memfd(len: u64, contents: &[u8], seals: u8) -> io::Result<OwnedFd> {
    use rustix::fs::{self, MemfdFlags, SealFlags};
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

// ---------------------------------------------------------------------------
// Rings.

/// Byte offsets in a ring's file (the table in busbar's `sys/ring.rs`).
pub mod ring_layout {
    /// Producer index (`tail`): bytes ever published, 8 bytes.
    pub const TAIL: usize = 128;
    /// Consumer index (`head`): bytes ever released, 8 bytes.
    pub const HEAD: usize = 256;
    /// Futex word: 1 while the consumer sleeps or is about to, 4 bytes.
    pub const SLEEPING: usize = 384;
    /// 1 once the producer closed the ring, 4 bytes.
    pub const CLOSED: usize = 388;
    /// Futex word: 1 while the producer waits for room, 4 bytes.
    pub const ROOM: usize = 392;
    /// 1 once the consumer let go of the ring, 4 bytes.
    pub const GONE: usize = 396;
    /// Where the data area starts (the ring's header length).
    pub const DATA: usize = crate::sys::ring::HEADER_LEN;
    /// Bytes of a record header, and the alignment of every record and index.
    pub const RECORD: usize = 8;
    /// Record kind of a frame.
    pub const KIND_FRAME: u32 = crate::sys::ring::KIND_FRAME;
    /// Record kind of the padding up to the end of the data area.
    pub const KIND_PAD: u32 = crate::sys::ring::KIND_PAD;
    /// The smallest data area a ring may have.
    pub const MIN_CAPACITY: usize = crate::sys::ring::MIN_CAPACITY;
    /// The smallest data area an honest sender gives a data link.
    pub const MIN_LINK_CAPACITY: usize = crate::sys::ring::MIN_LINK_CAPACITY;

    /// The record header word for a record of `kind` and `len` bytes.
    pub fn record(kind: u32, len: u32) -> u64 {
        (u64::from(kind) << 32) | u64::from(len)
    }

    /// `len` rounded up to the record alignment.
    pub fn padded(len: usize) -> usize {
        len.div_ceil(RECORD) * RECORD
    }
}

/// A value neither side ever stores in an index (both keep them 8-aligned):
/// [`RingLink`] puts it in an index word around a call to learn whether the
/// call stored that index.
const NOT_AN_INDEX: u64 = 1;

/// Reads and writes any byte or word of a ring's file through a mapping of
/// its own, at any time: the hands of a hostile sender (which owns the
/// memory of its link). Offsets are into the whole file ([`ring_layout`]);
/// anything outside it is refused, never a panic.
#[derive(Debug)]
pub struct Scribbler {
    map: Mapping,
}

impl Scribbler {
    /// Maps the ring in `fd` (a memfd sealed against shrinking) for scribbling.
    pub fn new(fd: BorrowedFd<'_>) -> io::Result<Scribbler> {
        Ok(Scribbler {
            map: Mapping::whole(fd)?,
        })
    }

    /// Bytes in the file: the ring's header and its data area.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the file is empty (never, for a ring).
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// The 8-byte word at `at` (8-aligned), if inside the file.
    pub fn load_u64(&self, at: usize) -> Option<u64> {
        Some(self.map.atomic_u64(at)?.load(Ordering::SeqCst))
    }

    /// Stores the 8-byte word at `at` (8-aligned); whether it was inside the file.
    pub fn store_u64(&self, at: usize, value: u64) -> bool {
        self.map
            .atomic_u64(at)
            .map(|w| w.store(value, Ordering::SeqCst))
            .is_some()
    }

    /// The 4-byte word at `at` (4-aligned), if inside the file.
    pub fn load_u32(&self, at: usize) -> Option<u32> {
        Some(self.map.atomic_u32(at)?.load(Ordering::SeqCst))
    }

    /// Stores the 4-byte word at `at` (4-aligned); whether it was inside the file.
    pub fn store_u32(&self, at: usize, value: u32) -> bool {
        self.map
            .atomic_u32(at)
            .map(|w| w.store(value, Ordering::SeqCst))
            .is_some()
    }

    /// Writes `bytes` at `at`, cut at the end of the file; how many were written.
    pub fn write(&mut self, at: usize, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.map.len().saturating_sub(at));
        match self.map.slice_mut(at, n) {
            Some(dst) => {
                dst.copy_from_slice(&bytes[..n]);
                n
            }
            None => 0,
        }
    }

    /// Copies out up to `len` bytes at `at` (fewer at the end of the file).
    pub fn read(&mut self, at: usize, len: usize) -> Vec<u8> {
        let n = len.min(self.map.len().saturating_sub(at));
        self.map
            .slice_mut(at, n)
            .map(|b| b.to_vec())
            .unwrap_or_default()
    }
}

/// What became of a frame an honest sender pushed into its ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Published. `woke`: the receiver had gone to sleep, and its doorbell was rung.
    Sent {
        /// Whether the receiver was asleep.
        woke: bool,
    },
    /// No room now (perhaps only the padding up to the end of the data area went in).
    Full,
    /// The frame can never fit this ring: an honest sender sends it through the socket.
    TooLarge,
    /// The producer found the ring broken (the consumer index moved backwards,
    /// past the producer's, or off alignment): an honest sender gives the link up.
    Corrupt(&'static str),
    /// The receiver let go of the ring: an honest sender gives the link up.
    Gone,
    /// The producer is closed (or dead).
    Closed,
}

/// A sender that owns a ring: it pushes frames as an honest sender does and
/// scribbles on the ring as a hostile one may.
///
/// Dropping it closes the ring as a sender that leaves does ([`HostileRing::close`]);
/// a process that dies in the middle leaves the closed flag down ([`HostileRing::die`]).
#[derive(Debug)]
pub struct HostileRing {
    fd: OwnedFd,
    producer: Option<Producer>,
    scribbler: Scribbler,
    bell: Doorbell,
    capacity: usize,
}

impl HostileRing {
    /// Creates a ring with a data area of `capacity` bytes (a power of two,
    /// at least [`ring_layout::MIN_CAPACITY`]) whose indices both start at
    /// `start` rounded down to a multiple of 8 (an honest sender starts at 0;
    /// a large start makes the indices wrap past 2⁶⁴ soon), and opens its
    /// writing end with the external wake-up a data link uses.
    pub fn new(capacity: usize, start: u64) -> io::Result<HostileRing> {
        let fd = ring::create(capacity)?;
        let scribbler = Scribbler::new(fd.as_fd())?;
        let start = start & !(ring_layout::RECORD as u64 - 1);
        scribbler.store_u64(ring_layout::TAIL, start);
        scribbler.store_u64(ring_layout::HEAD, start);
        let mut producer = Producer::open(fd.as_fd())?;
        producer.set_external_wake();
        Ok(HostileRing {
            fd,
            producer: Some(producer),
            scribbler,
            bell: Doorbell::new()?,
            capacity,
        })
    }

    /// Sends the hello that opens a data link from endpoint `id` on
    /// `socket`, handing over the ring and, with `bell`, the eventfd rung
    /// when the receiver sleeps (as `OutLink::connect` does).
    pub fn hello(&self, socket: BorrowedFd<'_>, id: u64, bell: bool) -> Result<(), Unsent> {
        let mut fds = vec![self.fd.as_fd()];
        if bell {
            fds.push(self.bell.as_fd());
        }
        let bytes = ring_hello(id, fds.len() as u16);
        socket::send_frame(socket, &[&bytes], &fds).map_err(Unsent::Refused)
    }

    /// Bytes in the data area.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The longest frame the ring takes.
    pub fn max_frame_len(&self) -> usize {
        self.capacity - ring_layout::RECORD
    }

    /// The ring's descriptor (to map it again, or to send it).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Another mapping of the ring, for scribbling from elsewhere (another thread).
    pub fn scribbler(&self) -> io::Result<Scribbler> {
        Scribbler::new(self.fd.as_fd())
    }

    /// This sender's own mapping, for scribbling.
    pub fn scribble(&mut self) -> &mut Scribbler {
        &mut self.scribbler
    }

    /// Whether the receiver said it let go of the ring.
    pub fn consumer_gone(&self) -> bool {
        self.scribbler.load_u32(ring_layout::GONE).unwrap_or(0) != 0
    }

    /// Pushes one frame as `OutLink::send` does when it may not wait: room
    /// reserved, filled in place, committed, and the receiver's doorbell
    /// rung when it slept (also when the ring was full, but padding
    /// published on the way found it asleep). Refuses (`Gone`) when the
    /// receiver let go of the ring.
    pub fn push(&mut self, frame: &[u8]) -> Pushed {
        push_with(&mut self.producer, &self.bell, &self.scribbler, frame)
    }

    /// Reserves room for `frame`, writes its first `written` bytes, and
    /// never commits it (a sender that stops, or dies, half way through a
    /// frame). Whether room was reserved. A wake-up owed for padding
    /// published on the way is not paid (the next push pays it).
    pub fn abandon(&mut self, frame: &[u8], written: usize) -> bool {
        abandon_with(&mut self.producer, frame, written)
    }

    /// Rings the eventfd handed over in the hello, as a sender does when its
    /// receiver sleeps (a hostile one may ring it any time).
    pub fn ring_bell(&self) {
        self.bell.ring();
    }

    /// Closes the ring as a sender that leaves does (the closed flag goes up).
    pub fn close(&mut self) {
        self.producer = None;
    }

    /// Lets go of the ring as a process that dies does: the closed flag
    /// stays down (a dying process runs no destructor; the kernel only
    /// closes its descriptors).
    pub fn die(&mut self) {
        if self.producer.take().is_some() {
            self.scribbler.store_u32(ring_layout::CLOSED, 0);
        }
    }

    /// Whether the producer is still open.
    pub fn is_open(&self) -> bool {
        self.producer.is_some()
    }
}

/// The hello of a sender with a ring from endpoint `id`: its header counts
/// `n_fds` descriptors (an honest sender's are the ring, then the eventfd).
pub fn ring_hello(id: u64, n_fds: u16) -> Vec<u8> {
    // Encoding our own plain struct into a Vec cannot fail.
    let body = postcard::to_allocvec(&frame::Hello {
        id,
        label: Vec::new(),
    })
    .unwrap_or_default();
    let mut h = Header::new(Kind::Hello);
    h.n_objects = n_fds;
    h.payload_len = body.len() as u64;
    let mut out = h.encode().to_vec();
    out.extend_from_slice(&body);
    out
}

/// What a hello handing over a ring hands over after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecondFd {
    /// Nothing (a ring without an eventfd).
    None,
    /// The sender's eventfd, as an honest sender does.
    Bell,
    /// Something else.
    Spec(FdSpec),
}

/// What the receiving end made of a hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloOutcome {
    /// Taken: the link knows its peer (and holds the ring).
    Taken,
    /// Refused, and the link cut.
    Cut,
    /// Anything else (a bug, for a hello).
    Other,
}

/// Offers `ring` in a hello (then `second`) on a fresh link and reads it
/// with the real receiving end; then, if it was taken, reads once more
/// (the first look at the ring). What became of the hello, and whether
/// that read cut the link.
pub fn offer_ring(ring: &HostileRing, second: SecondFd) -> io::Result<(HelloOutcome, bool)> {
    let (tx, rx) = socket::socketpair()?;
    socket::set_nonblocking(tx.as_fd(), true)?;
    socket::set_nonblocking(rx.as_fd(), true)?;
    let extra = match &second {
        SecondFd::Spec(spec) => Some(Attachment::make(spec)?),
        _ => None,
    };
    let mut fds = vec![ring.fd()];
    match (&second, &extra) {
        (SecondFd::Bell, _) => fds.push(ring.bell.as_fd()),
        (_, Some(a)) => fds.push(a.fd()),
        _ => {}
    }
    let hello = ring_hello(0x0ffe_4ed0, fds.len() as u16);
    socket::send_frame(tx.as_fd(), &[&hello], &fds)?;
    drop(extra);
    let mut link = InLink::new(rx);
    let mut buf = vec![0u8; frame::MAX_FRAME];
    let mut control = socket::recv_control_space();
    let outcome = match link.read(&mut buf, &mut control) {
        Read::Nothing if link.peer.is_some() => HelloOutcome::Taken,
        Read::Closed if link.bad_frames() >= crate::link::MAX_BAD_FRAMES => HelloOutcome::Cut,
        _ => HelloOutcome::Other,
    };
    if outcome != HelloOutcome::Taken {
        return Ok((outcome, false));
    }
    let cut = matches!(link.read(&mut buf, &mut control), Read::Closed)
        && link.bad_frames() >= crate::link::MAX_BAD_FRAMES;
    Ok((outcome, cut))
}

/// The in-line data frame an honest sender writes for `payload` to
/// `selector` with sequence number `seq` (no descriptors: a frame that may
/// travel through the ring); `None` when it cannot travel in line.
pub fn data_frame<T: MessageBox>(selector: &Selector, payload: &T, seq: u64) -> Option<Vec<u8>> {
    if selector.label_op.depth() > crate::MAX_DEPTH {
        return None;
    }
    let sel = frame::encode_selector(selector);
    if sel.len() > frame::MAX_SELECTOR {
        return None;
    }
    let mut body = Vec::new();
    payload.encode_into(&mut body).ok()?;
    if sel.len() + body.len() > frame::INLINE_MAX {
        return None;
    }
    let mut h = Header::new(Kind::Data);
    h.selector_len = sel.len() as u32;
    h.payload_len = body.len() as u64;
    h.seq = seq;
    h.type_uuid = payload.type_uuid();
    let mut out = h.encode().to_vec();
    out.extend_from_slice(&sel);
    out.extend_from_slice(&body);
    Some(out)
}

/// What one read of a [`RingLink`] gave.
#[derive(Debug)]
pub enum RingRead {
    /// A message for the application, with the sequence number its frame carried.
    Delivered {
        /// The frame's sequence number.
        seq: u64,
        /// The message.
        message: Delivered,
    },
    /// A frame refused as malformed (by the link's checks or by decoding) and
    /// counted against the link, which lives on.
    Dropped,
    /// Well formed, of a type a `BytesMessage` receiver does not know: skipped.
    Skipped,
    /// A `BytesMessage` whose payload did not decode.
    DecodeError,
    /// Something the link handled itself (padding, a look at the socket).
    Nothing,
    /// Nothing to read now.
    Empty,
    /// The link ended, and the receiver dropped it.
    Closed {
        /// Cut for misbehaving (a corrupt ring, or `MAX_BAD_FRAMES` malformed
        /// frames), rather than closed by the sender.
        cut: bool,
        /// Malformed frames this read counted (the last one that made the
        /// link cut, if so; a corrupt ring counts up to the limit at once).
        newly_bad: u32,
    },
}

/// A data link with a ring: a [`HostileRing`] on one end of a socket pair,
/// the real receiving end (`InLink`) on the other, both in this process.
///
/// Since both ends are here, it learns the indices each side publishes
/// ([`RingLink::producer_tail`], [`RingLink::consumer_head`]): around each
/// call that may store one, it puts a value in the shared word that neither
/// side ever stores, then puts back what was there if the call did not
/// store it. Neither side reads back the index it writes, so this changes
/// nothing they see; it would, with another process reading the ring at
/// the same time, which is why only this in-process harness does it.
#[derive(Debug)]
pub struct RingLink {
    ring: HostileRing,
    tx: Option<OwnedFd>,
    link: Option<InLink>,
    buf: Vec<u8>,
    control: Vec<std::mem::MaybeUninit<u8>>,
    producer_tail: u64,
    consumer_head: u64,
    cut: bool,
    bad_frames: u32,
}

impl RingLink {
    /// A new link with a ring of `capacity` bytes whose indices start at
    /// `start` (see [`HostileRing::new`]); `bell`: the hello hands over an
    /// eventfd too. The hello has gone through the receiving end already.
    pub fn open(capacity: usize, start: u64, bell: bool) -> io::Result<RingLink> {
        let (tx, rx) = socket::socketpair()?;
        socket::set_nonblocking(tx.as_fd(), true)?;
        socket::set_nonblocking(rx.as_fd(), true)?;
        let ring = HostileRing::new(capacity, start)?;
        ring.hello(tx.as_fd(), 0x6861_7273_6820_7269, bell)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let start = ring.scribbler.load_u64(ring_layout::TAIL).unwrap_or(0);
        let mut link = RingLink {
            ring,
            tx: Some(tx),
            link: Some(InLink::new(rx)),
            buf: vec![0u8; frame::MAX_FRAME],
            control: socket::recv_control_space(),
            producer_tail: start,
            consumer_head: start,
            cut: false,
            bad_frames: 0,
        };
        // Not watched: the receiving end opens the ring here, and reads the
        // consumer index from it.
        let took = match link.link.as_mut() {
            Some(l) => match l.read(&mut link.buf, &mut link.control) {
                Read::Nothing if l.peer.is_some() => Ok(()),
                other => Err(format!("{other:?} (malformed frames: {})", l.bad_frames())),
            },
            None => Err("no link".into()),
        };
        match took {
            Ok(()) => Ok(link),
            Err(e) => Err(io::Error::other(format!(
                "the receiving end did not take the hello: {e}"
            ))),
        }
    }

    /// The sending end, to push frames and scribble with.
    pub fn ring(&mut self) -> &mut HostileRing {
        &mut self.ring
    }

    /// What the producer last published (its `tail`).
    pub fn producer_tail(&self) -> u64 {
        self.producer_tail
    }

    /// What the consumer last released (its `head`).
    pub fn consumer_head(&self) -> u64 {
        self.consumer_head
    }

    /// [`HostileRing::push`], learning the producer index it publishes.
    pub fn push(&mut self, frame: &[u8]) -> Pushed {
        let HostileRing {
            producer,
            bell,
            scribbler,
            ..
        } = &mut self.ring;
        let (out, tail) = watching(scribbler, ring_layout::TAIL, || {
            push_with(producer, bell, scribbler, frame)
        });
        if let Some(t) = tail {
            self.producer_tail = t;
        }
        out
    }

    /// [`HostileRing::abandon`], learning the producer index if padding was published.
    pub fn abandon(&mut self, frame: &[u8], written: usize) -> bool {
        let HostileRing {
            producer,
            scribbler,
            ..
        } = &mut self.ring;
        let (out, tail) = watching(scribbler, ring_layout::TAIL, || {
            abandon_with(producer, frame, written)
        });
        if let Some(t) = tail {
            self.producer_tail = t;
        }
        out
    }

    /// Writes a whole frame, with descriptors, to the socket (as an honest
    /// sender does with a frame that carries descriptors or does not fit the ring).
    pub fn send_socket(&mut self, input: &RawInput) -> Result<(), Unsent> {
        match &self.tx {
            Some(tx) => send_raw(tx.as_fd(), input),
            None => Err(Unsent::Refused(io::Error::from_raw_os_error(
                rustix::io::Errno::PIPE.raw_os_error(),
            ))),
        }
    }

    /// Whether the receiving end hung up the socket (it dropped the link).
    pub fn receiver_hung_up(&self) -> bool {
        self.tx
            .as_ref()
            .is_none_or(|tx| crate::sys::poll::hung_up(tx.as_fd()))
    }

    /// Closes the sender's end of the socket (the ring stays as it is: close
    /// or kill it first with [`HostileRing::close`] / [`HostileRing::die`]).
    pub fn hang_up(&mut self) {
        self.tx = None;
    }

    /// One read of the receiving end: `InLink::read`, then `decode` of a
    /// [`BytesMessage`] for a data frame, counting decode-time malformations
    /// against the link as the receiver does. A link that ends is dropped.
    pub fn read(&mut self) -> RingRead {
        let Some(link) = self.link.as_mut() else {
            return RingRead::Closed {
                cut: self.cut,
                newly_bad: 0,
            };
        };
        let bad_before = link.bad_frames();
        let (buf, control) = (&mut self.buf, &mut self.control);
        let (got, head) = watching(&self.ring.scribbler, ring_layout::HEAD, || {
            link.read(buf, control)
        });
        if let Some(h) = head {
            self.consumer_head = h;
        }
        let out = match got {
            Read::Frame(raw) => {
                let seq = raw.header.seq;
                match decode::<BytesMessage>(raw) {
                    Ok(Decoded::Message(m)) => RingRead::Delivered {
                        seq,
                        message: Delivered::of(m),
                    },
                    Ok(Decoded::Skipped) => RingRead::Skipped,
                    Ok(Decoded::Malformed(e)) => {
                        if link.malformed(e) {
                            self.end(bad_before)
                        } else {
                            RingRead::Dropped
                        }
                    }
                    Err(_) => RingRead::DecodeError,
                }
            }
            Read::Nothing if link.bad_frames() > bad_before => RingRead::Dropped,
            Read::Nothing => RingRead::Nothing,
            Read::Empty => RingRead::Empty,
            Read::Closed => self.end(bad_before),
        };
        if let Some(l) = &self.link {
            self.bad_frames = l.bad_frames();
        }
        out
    }

    /// The link ended: drop it as the receiver does.
    fn end(&mut self, bad_before: u32) -> RingRead {
        let bad = self.link.as_ref().map_or(0, InLink::bad_frames);
        self.bad_frames = bad;
        self.cut = bad >= crate::link::MAX_BAD_FRAMES;
        self.link = None;
        RingRead::Closed {
            cut: self.cut,
            newly_bad: bad.saturating_sub(bad_before),
        }
    }

    /// What the receiver does before it sleeps: raises the ring's flag and
    /// looks again. Whether something is there after all (do not sleep).
    pub fn prepare_sleep(&mut self) -> bool {
        self.link.as_mut().is_some_and(InLink::prepare_sleep)
    }

    /// What the receiver does when it wakes: lowers the ring's flag, takes
    /// note that the socket may have something, and silences the doorbell.
    pub fn wake(&mut self) {
        if let Some(l) = self.link.as_mut() {
            l.awake();
            l.socket_ready();
        }
    }

    /// Whether the receiver's copy of the doorbell is ringing (it would
    /// wake). `false` for a link whose hello handed over no eventfd.
    pub fn bell_rung(&self) -> bool {
        use rustix::event::{poll, PollFd, PollFlags};
        let Some(bell) = self.link.as_ref().and_then(|l| l.watched().nth(1)) else {
            return false;
        };
        let mut fds = [PollFd::new(&bell, PollFlags::IN)];
        let zero = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        matches!(poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
    }

    /// What the receiver's spin loop looks at: whether the ring seems to
    /// have something (it may release padding on the way).
    pub fn ring_has_frame(&mut self) -> bool {
        let Some(link) = self.link.as_mut() else {
            return false;
        };
        let (out, head) = watching(&self.ring.scribbler, ring_layout::HEAD, || {
            link.ring_has_frame()
        });
        if let Some(h) = head {
            self.consumer_head = h;
        }
        out
    }

    /// Whether the receiver still holds the link.
    pub fn is_open(&self) -> bool {
        self.link.is_some()
    }

    /// Whether the receiver cut the link for misbehaving.
    pub fn cut(&self) -> bool {
        self.cut
    }

    /// Malformed frames the link was charged with.
    pub fn bad_frames(&self) -> u32 {
        self.bad_frames
    }
}

/// [`HostileRing::push`] over the ring's parts (so that a caller can hold
/// the scribbler's index word meanwhile).
fn push_with(
    producer: &mut Option<Producer>,
    bell: &Doorbell,
    scribbler: &Scribbler,
    frame: &[u8],
) -> Pushed {
    if scribbler.load_u32(ring_layout::GONE).unwrap_or(0) != 0 {
        return Pushed::Gone;
    }
    let Some(producer) = producer.as_mut() else {
        return Pushed::Closed;
    };
    match producer.reserve(frame.len()) {
        Ok(mut grant) => {
            let buf = grant.bytes_mut();
            if buf.len() != frame.len() {
                return Pushed::Corrupt("the ring granted room of the wrong size");
            }
            buf.copy_from_slice(frame);
            let woke = grant.commit();
            if woke {
                bell.ring();
            }
            Pushed::Sent { woke }
        }
        Err(PushError::Full) => {
            // Padding published on the way may have found the receiver asleep.
            if producer.take_owed_wake() {
                bell.ring();
            }
            Pushed::Full
        }
        Err(PushError::TooLarge { .. }) => Pushed::TooLarge,
        Err(PushError::Corrupt(why)) => Pushed::Corrupt(why),
    }
}

/// [`HostileRing::abandon`] over the ring's producer.
fn abandon_with(producer: &mut Option<Producer>, frame: &[u8], written: usize) -> bool {
    let Some(producer) = producer.as_mut() else {
        return false;
    };
    match producer.reserve(frame.len()) {
        Ok(mut grant) => {
            let n = written.min(frame.len());
            if let Some(dst) = grant.bytes_mut().get_mut(..n) {
                dst.copy_from_slice(&frame[..n]);
            }
            true
        }
        Err(_) => false,
    }
}

/// Runs `f` with [`NOT_AN_INDEX`] in the index word at `at`; what `f`
/// returned, and the index it stored, if it stored one (else the word gets
/// back what it held).
fn watching<R>(scribbler: &Scribbler, at: usize, f: impl FnOnce() -> R) -> (R, Option<u64>) {
    let before = scribbler.load_u64(at).unwrap_or(0);
    scribbler.store_u64(at, NOT_AN_INDEX);
    let out = f();
    match scribbler.load_u64(at) {
        Some(NOT_AN_INDEX) | None => {
            scribbler.store_u64(at, before);
            (out, None)
        }
        Some(stored) => (out, Some(stored)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_link_tracks_both_indices_and_delivers() {
        let mut link = RingLink::open(256, 0, true).expect("ring link");
        let frame =
            data_frame(&Selector::unicast("a"), &BytesMessage::new(3, *b"abc"), 0).expect("frame");
        assert_eq!(link.push(&frame), Pushed::Sent { woke: false });
        let tail = (8 + ring_layout::padded(frame.len())) as u64;
        assert_eq!(link.producer_tail(), tail);
        // The layout table holds: the producer index is where we say.
        assert_eq!(
            link.ring().scribble().load_u64(ring_layout::TAIL),
            Some(tail)
        );
        match link.read() {
            RingRead::Delivered { seq: 0, message } => {
                assert_eq!(message.payload, BytesMessage::new(3, *b"abc"))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(link.consumer_head(), tail);
        assert_eq!(
            link.ring().scribble().load_u64(ring_layout::HEAD),
            Some(tail)
        );
        assert!(matches!(link.read(), RingRead::Empty));
        // A read that releases nothing leaves a scribbled index as it was.
        link.ring()
            .scribble()
            .store_u64(ring_layout::HEAD, 0xdead_bee0);
        assert!(matches!(link.read(), RingRead::Empty));
        assert_eq!(
            link.ring().scribble().load_u64(ring_layout::HEAD),
            Some(0xdead_bee0)
        );
        assert_eq!(link.consumer_head(), tail);
    }

    #[test]
    fn a_receiver_asleep_is_rung_by_a_commit() {
        let mut link = RingLink::open(4096, u64::MAX - 15, true).expect("ring link");
        assert!(!link.prepare_sleep());
        assert!(!link.bell_rung());
        let frame =
            data_frame(&Selector::unicast("a"), &BytesMessage::new(0, *b"x"), 0).expect("frame");
        assert_eq!(link.push(&frame), Pushed::Sent { woke: true });
        assert!(link.bell_rung());
        link.wake();
        assert!(!link.bell_rung());
        assert!(matches!(link.read(), RingRead::Delivered { seq: 0, .. }));
    }

    #[test]
    fn bad_rings_in_a_hello_get_the_link_cut() {
        let good = HostileRing::new(4096, 0).expect("ring");
        assert_eq!(
            offer_ring(&good, SecondFd::Bell).expect("offer"),
            (HelloOutcome::Taken, false)
        );
        assert_eq!(
            offer_ring(&good, SecondFd::None).expect("offer"),
            (HelloOutcome::Taken, false)
        );
        assert_eq!(
            offer_ring(&good, SecondFd::Spec(FdSpec::Pipe)).expect("offer"),
            (HelloOutcome::Cut, false)
        );
        let mut magic = HostileRing::new(4096, 0).expect("ring");
        magic.scribble().write(0, b"notaring");
        assert_eq!(
            offer_ring(&magic, SecondFd::Bell).expect("offer"),
            (HelloOutcome::Cut, false)
        );
        let misaligned = HostileRing::new(4096, 0).expect("ring");
        misaligned.scribbler.store_u64(ring_layout::HEAD, 12);
        assert_eq!(
            offer_ring(&misaligned, SecondFd::Bell).expect("offer"),
            (HelloOutcome::Cut, false)
        );
        // Taken (the tail is not looked at yet), cut at the first look.
        let far = HostileRing::new(4096, 0).expect("ring");
        far.scribbler.store_u64(ring_layout::TAIL, 4096 + 8);
        assert_eq!(
            offer_ring(&far, SecondFd::Bell).expect("offer"),
            (HelloOutcome::Taken, true)
        );
    }

    fn honest(data: &[u8], spill: bool, objects: usize, regions: Vec<usize>) -> RawInput {
        honest_frame(&Honest {
            selector: Selector::unicast("a"),
            message: BytesMessage::new(7, data),
            seq: 0,
            objects,
            regions,
            spill,
        })
        .expect("fits")
    }

    #[test]
    fn honest_frames_are_delivered_and_lies_dropped() {
        let hello = RawInput {
            bytes: hello_frame(1),
            fds: vec![],
        };
        let good = honest(b"hi", false, 2, vec![100]);
        let spilled = honest(b"big", true, 0, vec![]);
        let mut unsealed_region = honest(b"x", false, 0, vec![1]);
        unsealed_region.fds = vec![FdSpec::Memfd {
            len: 4096,
            contents: b"busbarR1".to_vec(),
            seals: 0,
        }];
        let report = feed_link(vec![hello, good, spilled, unsealed_region]).expect("feed");
        assert!(matches!(report.outcomes[0], Outcome::Hello));
        match &report.outcomes[1] {
            Outcome::Delivered(d) => {
                assert_eq!(d.payload, BytesMessage::new(7, *b"hi"));
                assert_eq!((d.objects, d.regions.clone()), (2, vec![100]));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&report.outcomes[2], Outcome::Delivered(d) if d.payload.data == b"big"));
        assert!(matches!(report.outcomes[3], Outcome::Dropped));
        assert!(!report.closed);
    }

    #[test]
    fn data_before_hello_is_dropped_and_the_link_cut() {
        let frames = (0..MAX_BAD_FRAMES + 2)
            .map(|_| honest(b"early", false, 0, vec![]))
            .collect();
        let report = feed_link(frames).expect("feed");
        assert!(report.cut);
        assert_eq!(report.dropped(), MAX_BAD_FRAMES as usize);
        assert!(matches!(report.outcomes.last(), Some(Outcome::NotSent(_))));
    }

    #[test]
    fn decode_time_lies_count_towards_the_cut() {
        let mut frames = vec![RawInput {
            bytes: hello_frame(1),
            fds: vec![],
        }];
        for _ in 0..MAX_BAD_FRAMES {
            let mut f = honest(b"lying", true, 0, vec![]);
            // The payload memfd is shorter than the header says.
            f.fds = vec![FdSpec::Memfd {
                len: 1,
                contents: vec![],
                seals: seal::SHRINK | seal::GROW | seal::WRITE,
            }];
            frames.push(f);
        }
        let report = feed_link(frames).expect("feed");
        assert!(report.cut, "{report:?}");
        assert_eq!(report.dropped(), MAX_BAD_FRAMES as usize);
    }
}
