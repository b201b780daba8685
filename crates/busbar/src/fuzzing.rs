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

use crate::endpoint::receiver::{decode, Decoded};
use crate::frame::{self, Control, Header, Kind};
use crate::link::{InLink, Read};
use crate::payload::MessageBox;
use crate::sys::{blob, socket};
use crate::{BytesMessage, MemoryRegion, Selector};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

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
    frame::encode_small(Kind::Hello, &frame::Hello { id }, crate::PROTOCOL_VERSION)
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

/// Whether `frame::check` accepts `bytes` arriving with `fds` descriptors.
pub fn check_frame(bytes: &[u8], fds: usize) -> Result<(), String> {
    frame::check(bytes, fds)
        .map(|_| ())
        .map_err(|e| e.to_string())
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
            Ok(Decoded::Message(m)) => {
                let delivered = Delivered {
                    objects: m.objects.len(),
                    regions: m.memory_regions.iter().map(MemoryRegion::size).collect(),
                    selector: m.selector,
                    payload: m.payload,
                };
                (Outcome::Delivered(delivered), End::Open)
            }
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

#[cfg(test)]
mod tests {
    use super::*;

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
