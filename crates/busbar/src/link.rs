//! Data links: one per sender → receiver pair, a seqpacket socket plus a
//! shared-memory ring.
//!
//! The sending side ([`OutLink`]) creates the ring ([`ring`]) and sends it
//! in its hello. From then on it numbers its frames and writes each one
//! either into the ring (a frame without descriptors that fits: no system
//! call unless the receiver sleeps) or, whole, into the socket (a frame
//! with descriptors, or too large for the ring). The receiving side
//! ([`InLink`]) merges the two streams back into sequence order, checks
//! every frame with [`frame::check`], and drops (and counts) anything
//! malformed. A peer that keeps sending malformed frames is disconnected.
//!
//! A receiver that sleeps has raised the ring's flag (see
//! [`ring::Consumer::prepare_sleep`]); the sender then rings the link's
//! eventfd, which it handed over in the hello with the ring and which the
//! receiver's poller watches with the socket. A sender whose ring is full
//! waits on the ring's other futex until the receiver has read some.
//!
//! Order: the sender holds the link's lock from taking a sequence number
//! until the frame is written (committed to the ring or sent on the
//! socket), so frame `n` is written before frame `n + 1`. The receiver
//! takes whichever of the ring's next frame and the socket's next frame
//! carries the sequence number it expects, looking at the ring first. A
//! frame with descriptors can reach the receiver's socket queue a moment
//! after the sender's `sendmsg` returned; so when the ring holds a later
//! frame than the one due and the socket has nothing yet, the receiver
//! waits for it, up to [`SOCKET_LAG_MS`] (a sender that skips numbers
//! holds up only its own link).

use crate::endpoint::lent::{LentMap, LentMaps, LentView};
use crate::frame::{
    self, FrameError, Header, Kind, Locator, FLAG_PAYLOAD_BY_REF, FLAG_PAYLOAD_IN_REGION,
    LINK_SLOTS, NO_SLOT,
};
use crate::sync::Lock;
use crate::sys::poll;
use crate::sys::ring::{self, Consumer, Producer, PushError, RingError};
use crate::sys::socket::{self, Received};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Malformed frames a link may send before it is cut.
pub(crate) const MAX_BAD_FRAMES: u32 = 8;

/// How often (in ms) a sender writing only to the ring looks at the socket
/// for a receiver that died (a live one that leaves closes its end of the ring).
const HANGUP_CHECK_MS: u64 = 1;

/// How long (ms) a receiver waits for a frame due on the socket while the
/// ring holds later ones: far beyond the kernel's lag, short for a stall.
const SOCKET_LAG_MS: u64 = 100;

/// Milliseconds on the monotonic clock, cheaply (the coarse clock: a few
/// ms of resolution, which is all the hang-up check needs).
pub(crate) fn coarse_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    (t.tv_sec as u64).wrapping_mul(1000) + (t.tv_nsec as u64) / 1_000_000
}

/// The longest a sender sleeps waiting for room before it looks at the
/// socket again (to notice a receiver that died).
const ROOM_SLICE: Duration = Duration::from_millis(10);

/// Keys that tell links apart (for the answers to requests).
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

/// The sending end of a data link.
#[derive(Debug)]
pub(crate) struct OutLink {
    fd: OwnedFd,
    /// Unique among this process's links (never 0).
    pub key: u64,
    /// Held for the whole of a write, so that frames leave in order.
    state: Mutex<OutState>,
    /// Frames written.
    pub sent: AtomicU64,
    /// Frames dropped because the receiver was full (drop-newest policy).
    pub dropped: AtomicU64,
    /// The ring's unread bytes when last looked at: what
    /// [`queued_bytes`](OutLink::queued_bytes) reports while a sender holds
    /// the link (it may be waiting for room), so that a report never waits.
    queued_hint: AtomicUsize,
    /// Whether the receiver is asked to remember regions (not on a
    /// channel's link, whose receiving end may move to another process).
    remembers: bool,
}

/// What [`OutLink::connect`] achieved.
#[derive(Debug)]
pub(crate) enum Connected {
    /// A link, introduced.
    Link(OutLink),
    /// Nobody listens there: the endpoint is gone.
    Gone,
    /// The endpoint has not accepted its earlier connections yet and the
    /// wait ran out: it counts as full.
    Busy,
}

#[derive(Debug)]
struct OutState {
    /// The next sequence number (wrapping, like the header field).
    seq: u32,
    ring: Producer,
    /// Rung when the receiver sleeps; the receiver has the other end.
    bell: poll::Doorbell,
    /// When we last looked for a hang-up ([`coarse_ms`]).
    checked: u64,
    /// The regions the receiver remembers for us, by slot: their keys
    /// (0: none) and when each was last used (a count of frames).
    slots: Box<[(u64, u64); LINK_SLOTS as usize]>,
    /// Frames that used a slot, to find the least recently used.
    slot_tick: u64,
}

/// The region a frame's payload is lent in ([`OutLink::send`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RegionRef<'a> {
    /// What the link remembers it by (`None`: never remembered).
    pub key: Option<u64>,
    /// Its descriptor, sent the first time.
    pub fd: BorrowedFd<'a>,
    /// Where the payload is in it (its slot is the link's to fill).
    pub locator: Locator,
}

impl OutState {
    /// The slot the receiver remembers region `key` in.
    fn slot_of(&self, key: u64) -> Option<usize> {
        self.slots.iter().position(|&(k, _)| k == key)
    }

    /// The slot to remember a new region in: a free one, else the least recently used.
    fn slot_for_new(&self) -> usize {
        self.slots
            .iter()
            .enumerate()
            .min_by_key(|(_, &(k, used))| (k != 0, used))
            .map_or(0, |(i, _)| i)
    }
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

/// The error a write reports when the receiver is gone (or broke the ring):
/// one [`socket::is_peer_gone`] recognizes, so the link is dropped.
fn peer_gone(why: &str) -> SendFailure {
    tracing::debug!("data link: {why}");
    SendFailure::Io(io::Error::from_raw_os_error(
        rustix::io::Errno::PIPE.raw_os_error(),
    ))
}

impl OutLink {
    /// Connects to the endpoint at `addr` and introduces us with `hello`
    /// (our id and label), handing it a ring of `ring_capacity` bytes
    /// (rounded up to a power of two). Waits for room in the receiver's
    /// backlog as `wait` says (it frees as the receiver's background thread
    /// accepts). Fails with `PermissionDenied` when the process listening
    /// there is not one that `access` admits (for us, running as `our_uid`).
    pub(crate) fn connect(
        addr: &socket::Address,
        hello_body: &frame::Hello,
        our_uid: u32,
        access: &crate::Access,
        ring_capacity: usize,
        wait: Wait,
    ) -> io::Result<Connected> {
        let limit = match wait {
            Wait::No => Some(Duration::ZERO),
            Wait::Until(d) => Some(d.saturating_duration_since(Instant::now())),
            Wait::Forever => None,
        };
        let fd = match socket::connect_within(addr, limit)? {
            socket::Connect::Connected(fd) => fd,
            socket::Connect::Refused => return Ok(Connected::Gone),
            socket::Connect::Busy => return Ok(Connected::Busy),
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
        OutLink::introduce(fd, hello_body, ring_capacity)
    }

    /// Introduces us on a connected socket `fd` with `hello` (our id and
    /// label), handing the other end a ring of `ring_capacity` bytes
    /// (rounded up to a power of two) and an eventfd: the second half of
    /// [`connect`](OutLink::connect), and all of making a channel's link
    /// (whose socket comes from a socket pair).
    pub(crate) fn introduce(
        fd: OwnedFd,
        hello_body: &frame::Hello,
        ring_capacity: usize,
    ) -> io::Result<Connected> {
        let capacity = ring_capacity
            .next_power_of_two()
            .clamp(ring::MIN_LINK_CAPACITY, ring::MAX_CAPACITY);
        let ring_fd = ring::create(capacity)?;
        let mut producer = Producer::open(ring_fd.as_fd())?;
        producer.set_external_wake();
        let bell = poll::Doorbell::new()?;
        let mut hello = Header::new(Kind::Hello);
        hello.n_objects = 2;
        let body = postcard::to_allocvec(hello_body).unwrap_or_default();
        hello.payload_len = body.len() as u64;
        let fds = [ring_fd.as_fd(), bell.as_fd()];
        match socket::send_frame(fd.as_fd(), &[&hello.encode(), &body], &fds) {
            Ok(()) => {
                // Writes never block inside the kernel: waiting for room is ours to bound.
                socket::set_nonblocking(fd.as_fd(), true)?;
                Ok(Connected::Link(OutLink {
                    fd,
                    key: NEXT_KEY.fetch_add(1, Ordering::Relaxed),
                    state: Mutex::new(OutState {
                        seq: 0,
                        ring: producer,
                        bell,
                        checked: coarse_ms(),
                        slots: Box::new([(0, 0); LINK_SLOTS as usize]),
                        slot_tick: 0,
                    }),
                    sent: AtomicU64::new(0),
                    dropped: AtomicU64::new(0),
                    queued_hint: AtomicUsize::new(0),
                    remembers: true,
                }))
            }
            Err(e) if socket::is_peer_gone(&e) => Ok(Connected::Gone),
            Err(e) => Err(e),
        }
    }

    /// Sends one data frame, stamping the link's next sequence number into
    /// it. When the receiver has no room, waits for it as `wait` says.
    /// Frames leave in the order their `send` calls took the link.
    ///
    /// A payload lent in a region (`region`, its locator after `body`):
    /// the first frame from a region the link remembers carries its
    /// descriptor and a slot for the receiver to remember it in; later
    /// ones refer to the slot ([`FLAG_PAYLOAD_BY_REF`]) and carry none, so
    /// they travel through the ring. The slot is taken only once the frame
    /// with the descriptor is written: the receiver reads frames in order,
    /// so it has the region in the slot by the time it reads a reference.
    pub(crate) fn send(
        &self,
        header: &Header,
        body: &[&[u8]],
        fds: &[BorrowedFd<'_>],
        region: Option<RegionRef<'_>>,
        wait: Wait,
    ) -> Result<(), SendFailure> {
        let mut st = self.state.locked();
        let mut h = header.clone();
        h.seq = st.seq;
        let mut parts: [&[u8]; 4] = [&[]; 4];
        let n = body.len().min(3);
        parts[..n].copy_from_slice(&body[..n]);
        let locator;
        let with_region;
        let mut remember = None;
        let (body, fds): (&[&[u8]], &[BorrowedFd<'_>]) = match region {
            None => (body, fds),
            Some(r) => {
                let mut loc = r.locator;
                let key = r.key.filter(|_| self.remembers);
                let known = key.and_then(|k| st.slot_of(k));
                let fds = match known {
                    Some(slot) => {
                        h.flags = (h.flags & !FLAG_PAYLOAD_IN_REGION) | FLAG_PAYLOAD_BY_REF;
                        loc.slot = slot as u32;
                        st.slot_tick += 1;
                        st.slots[slot].1 = st.slot_tick;
                        fds
                    }
                    None => {
                        h.flags = (h.flags & !FLAG_PAYLOAD_BY_REF) | FLAG_PAYLOAD_IN_REGION;
                        loc.slot = NO_SLOT;
                        if let Some(key) = key {
                            let slot = st.slot_for_new();
                            loc.slot = slot as u32;
                            remember = Some((slot, key));
                        }
                        with_region = fds.iter().copied().chain([r.fd]).collect::<Vec<_>>();
                        &with_region[..]
                    }
                };
                locator = loc.encode();
                parts[n] = &locator;
                (&parts[..n + 1], fds)
            }
        };
        let head = h.encode();
        let len = frame::HEADER_LEN + body.iter().map(|b| b.len()).sum::<usize>();
        if st.ring.consumer_gone() {
            return Err(peer_gone("the receiver let go of the ring"));
        }
        let now = coarse_ms();
        if now.wrapping_sub(st.checked) >= HANGUP_CHECK_MS {
            st.checked = now;
            if poll::hung_up(self.fd.as_fd()) {
                return Err(peer_gone("the receiver hung up"));
            }
        }
        if fds.is_empty() && len <= st.ring.max_frame_len() {
            self.push(&mut st, &head, body, len, wait)?;
        } else {
            send_whole(self.fd.as_fd(), &head, body, fds, wait)?;
        }
        if let Some((slot, key)) = remember {
            st.slot_tick += 1;
            st.slots[slot] = (key, st.slot_tick);
        }
        st.seq = st.seq.wrapping_add(1);
        self.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Writes a frame into the ring, waiting for room as `wait` says.
    fn push(
        &self,
        st: &mut OutState,
        head: &[u8],
        body: &[&[u8]],
        len: usize,
        wait: Wait,
    ) -> Result<(), SendFailure> {
        loop {
            match st.ring.reserve(len) {
                Ok(mut grant) => {
                    let buf = grant.bytes_mut();
                    let mut at = 0;
                    for part in std::iter::once(head).chain(body.iter().copied()) {
                        buf[at..at + part.len()].copy_from_slice(part);
                        at += part.len();
                    }
                    if grant.commit() {
                        st.bell.ring();
                    }
                    return Ok(());
                }
                Err(PushError::Full) => {
                    self.queued_hint.store(st.ring.queued(), Ordering::Relaxed);
                    // Padding published on the way may have found it asleep.
                    if st.ring.take_owed_wake() {
                        st.bell.ring();
                    }
                }
                Err(PushError::TooLarge { .. }) => {
                    // `send` checked the length against the ring's limit.
                    return Err(SendFailure::Io(io::Error::other(
                        "frame too large for the ring",
                    )));
                }
                Err(PushError::Corrupt(why)) => return Err(peer_gone(why)),
            }
            let slice = match wait {
                Wait::No => return Err(SendFailure::Full),
                Wait::Until(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(SendFailure::Full);
                    }
                    left.min(ROOM_SLICE)
                }
                Wait::Forever => ROOM_SLICE,
            };
            match st.ring.wait_room(len, slice) {
                Ok(_) => {}
                Err(PushError::Corrupt(why)) => return Err(peer_gone(why)),
                Err(_) => return Err(SendFailure::Full),
            }
            if st.ring.consumer_gone() || poll::hung_up(self.fd.as_fd()) {
                return Err(peer_gone("the receiver went away while we waited for room"));
            }
        }
    }

    /// Never asks the receiver to remember a region: every lent payload
    /// carries its region's descriptor (a channel's link, whose receiving
    /// end may move to another process, which would not have them).
    pub(crate) fn without_slots(mut self) -> OutLink {
        self.remembers = false;
        self
    }

    /// The link's socket: answers to requests come back on it.
    pub(crate) fn socket(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Sets how many bytes the socket holds before the receiver counts as
    /// full (frames with descriptors travel there).
    pub(crate) fn set_buffer(&self, bytes: usize) -> io::Result<()> {
        socket::set_send_buffer(self.fd.as_fd(), bytes)
    }

    /// Bytes written that the receiver has not read yet (ring and socket).
    /// Never waits: while a sender holds the link (perhaps waiting for
    /// room), the ring's count is the one seen last.
    pub(crate) fn queued_bytes(&self) -> usize {
        let ring = self.state.try_locked().map(|mut st| st.ring.queued());
        let ring = match ring {
            Some(q) => {
                self.queued_hint.store(q, Ordering::Relaxed);
                q
            }
            None => self.queued_hint.load(Ordering::Relaxed),
        };
        ring + socket::unread_bytes(self.fd.as_fd()).unwrap_or(0)
    }
}

/// Set in the poller token of a link's eventfd (the sender rings it after
/// writing into the ring of a receiver that sleeps), clear in that of its
/// socket: a ring wake-up then costs no look at the socket
/// ([`InLink::bell_rang`] rather than [`InLink::socket_ready`]).
pub(crate) const RING_BELL: u64 = 1 << 63;

/// Writes a whole frame (header, body, descriptors) to a link's socket,
/// waiting for room as `wait` says: a frame with descriptors or too large
/// for the ring, or an answer going back to a requester.
pub(crate) fn send_whole(
    fd: BorrowedFd<'_>,
    head: &[u8],
    body: &[&[u8]],
    fds: &[BorrowedFd<'_>],
    wait: Wait,
) -> Result<(), SendFailure> {
    let mut parts: Vec<&[u8]> = Vec::with_capacity(1 + body.len());
    parts.push(head);
    parts.extend(body.iter().copied().filter(|b| !b.is_empty()));
    loop {
        match socket::send_frame(fd, &parts, fds) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let deadline = match wait {
                    Wait::No => return Err(SendFailure::Full),
                    Wait::Until(d) if Instant::now() >= d => return Err(SendFailure::Full),
                    Wait::Until(d) => Some(d),
                    Wait::Forever => None,
                };
                match poll::wait_writable(fd, deadline) {
                    Ok(true) => {}
                    Ok(false) => return Err(SendFailure::Full),
                    Err(e) => return Err(SendFailure::Io(e)),
                }
            }
            Err(e) => return Err(SendFailure::Io(e)),
        }
    }
}

/// A frame as received, checked against its header.
#[derive(Debug)]
pub(crate) struct RawFrame {
    pub header: Header,
    /// The whole frame: header, selector, in-line payload.
    pub bytes: Vec<u8>,
    pub fds: Vec<OwnedFd>,
    /// The payload lent in a region, found already (the link resolved a
    /// reference to a region it remembers, or took the region's descriptor).
    pub view: Option<LentView>,
}

impl RawFrame {
    /// The selector bytes.
    pub(crate) fn selector(&self) -> &[u8] {
        frame::split_body(&self.header, &self.bytes).0
    }

    /// The in-line payload bytes (empty when the payload is in a memfd).
    pub(crate) fn inline_payload(&self) -> &[u8] {
        frame::split_body(&self.header, &self.bytes).1
    }
}

/// The receiving end of a data link.
#[derive(Debug)]
pub(crate) struct InLink {
    /// The socket; requests received on it hold a weak handle to answer on.
    fd: Arc<OwnedFd>,
    /// The sender, once its hello arrived.
    pub peer: Option<u64>,
    /// The sender's label from its hello, until [`take_hello`](InLink::take_hello) takes it.
    hello_label: Option<Vec<String>>,
    /// The ring the sender handed over in its hello (none: a socket-only link).
    ring: Option<Consumer>,
    /// The ring's memfd, kept when the link may move to another process
    /// (a channel's: see [`InLink::into_parts`]).
    ring_fd: Option<OwnedFd>,
    /// Whether to keep `ring_fd`.
    keep_ring_fd: bool,
    /// The eventfd the sender rings when we sleep, from its hello, and
    /// whether the poller watches it yet.
    bell: Option<(poll::Doorbell, bool)>,
    /// The socket's next data frame, read ahead while the ring's next frame
    /// comes first.
    stash: Option<RawFrame>,
    /// Whether the socket may have something to read (the poller said so,
    /// or we have not looked yet).
    socket_ready: bool,
    /// The sender closed the socket (its ring may still hold frames).
    socket_closed: bool,
    next_seq: u32,
    bad_frames: u32,
    /// Whether a gap in the sequence was logged already (once per link: an
    /// honest sender never makes one, a dishonest one must not flood the log).
    seq_warned: bool,
    /// Since when ([`coarse_ms`]) the ring's first frame is a later one than
    /// the frame due and the socket has nothing.
    gap_since: Option<u64>,
    /// The regions the sender asked us to remember, by slot.
    slots: Vec<Option<Arc<LentMap>>>,
    /// Where regions that arrive are mapped (or found mapped).
    maps: Arc<Mutex<LentMaps>>,
}

/// A link's receiving end taken apart to move to another process
/// ([`InLink::into_parts`]).
#[derive(Debug)]
pub(crate) struct LinkParts {
    /// The socket.
    pub socket: OwnedFd,
    /// The ring's memfd (none: a socket-only link).
    pub ring: Option<OwnedFd>,
    /// The eventfd the sender rings.
    pub bell: Option<OwnedFd>,
    /// The sequence number due next.
    pub next_seq: u32,
    /// The sender's id from its hello.
    pub peer: u64,
    /// Whether the sender had closed its socket already.
    pub socket_closed: bool,
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

/// What one [`InLink::read_with`] gave.
#[derive(Debug)]
pub(crate) enum ReadWith<T> {
    /// A data frame read off the socket (or read ahead from it).
    Frame(RawFrame),
    /// What the caller made of a data frame read in place from the ring.
    InPlace(T),
    /// As [`Read::Nothing`].
    Nothing,
    /// As [`Read::Empty`].
    Empty,
    /// As [`Read::Closed`].
    Closed,
}

impl<T> From<Read> for ReadWith<T> {
    fn from(r: Read) -> ReadWith<T> {
        match r {
            Read::Frame(f) => ReadWith::Frame(f),
            Read::Nothing => ReadWith::Nothing,
            Read::Empty => ReadWith::Empty,
            Read::Closed => ReadWith::Closed,
        }
    }
}

/// A frame taken from the ring.
enum Popped<T> {
    /// What the caller made of it in place.
    InPlace(T),
    /// A frame whose payload is lent by reference, copied out.
    ByRef(Header, Vec<u8>),
}

/// Where the next frame comes from.
enum Source {
    Stash,
    Ring,
}

impl InLink {
    /// A new link on an accepted socket, with a table of region mappings of its own.
    pub(crate) fn new(fd: OwnedFd) -> InLink {
        InLink::with_maps(fd, Arc::default())
    }

    /// A new link on an accepted socket, mapping the regions that arrive
    /// in `maps` (its endpoint's, shared by its links).
    pub(crate) fn with_maps(fd: OwnedFd, maps: Arc<Mutex<LentMaps>>) -> InLink {
        InLink {
            fd: Arc::new(fd),
            peer: None,
            hello_label: None,
            ring: None,
            ring_fd: None,
            keep_ring_fd: false,
            bell: None,
            stash: None,
            socket_ready: true,
            socket_closed: false,
            next_seq: 0,
            bad_frames: 0,
            seq_warned: false,
            gap_since: None,
            slots: Vec::new(),
            maps,
        }
    }

    /// A new link on a socket whose receiving end may later move to another
    /// process ([`into_parts`](InLink::into_parts)): it keeps the ring's
    /// memfd open (one descriptor more) to send it along.
    pub(crate) fn movable(fd: OwnedFd) -> InLink {
        let mut link = InLink::new(fd);
        link.keep_ring_fd = true;
        link
    }

    /// Whether [`into_parts`](InLink::into_parts) would take it apart.
    pub(crate) fn can_move(&self) -> bool {
        self.stash.is_none()
            && (self.ring.is_none() || self.ring_fd.is_some())
            && Arc::strong_count(&self.fd) == 1
    }

    /// Takes the link apart to send its receiving end to another process,
    /// which goes on with [`from_parts`](InLink::from_parts) where this one
    /// stopped (the ring's consumer index is in shared memory, and the
    /// socket's queue goes with the socket). Gives the link back when it
    /// cannot move: it holds a frame read ahead off its socket, or was not
    /// made [`movable`](InLink::movable).
    pub(crate) fn into_parts(mut self) -> Result<LinkParts, Box<InLink>> {
        if self.stash.is_some() || (self.ring.is_some() && self.ring_fd.is_none()) {
            return Err(Box::new(self));
        }
        let fd = match Arc::try_unwrap(self.fd) {
            Ok(fd) => fd,
            Err(fd) => {
                self.fd = fd;
                return Err(Box::new(self));
            }
        };
        if let Some(ring) = self.ring.take() {
            ring.hand_over();
        }
        Ok(LinkParts {
            socket: fd,
            ring: self.ring_fd.take(),
            bell: self.bell.take().map(|(b, _)| b.into_fd()),
            next_seq: self.next_seq,
            peer: self.peer.unwrap_or(0),
            socket_closed: self.socket_closed,
        })
    }

    /// A link whose receiving end another process took apart
    /// ([`into_parts`](InLink::into_parts)) and sent here. Its descriptors
    /// are checked as a hello's are (the ring's seals and header, the
    /// eventfd); `InvalidData` when they are not what they must be.
    pub(crate) fn from_parts(parts: LinkParts) -> io::Result<InLink> {
        socket::set_nonblocking(parts.socket.as_fd(), true)?;
        let mut link = InLink::movable(parts.socket);
        if let Some(fd) = parts.ring {
            link.ring = Some(Consumer::open(fd.as_fd())?);
            link.ring_fd = Some(fd);
        }
        if let Some(fd) = parts.bell {
            link.bell = Some((poll::Doorbell::from_received(fd)?, false));
        }
        link.next_seq = parts.next_seq;
        link.peer = Some(parts.peer);
        link.socket_closed = parts.socket_closed;
        Ok(link)
    }

    /// The sender as its hello introduced it, once, right after the hello
    /// was read (before any of its data frames): its id and label, with the
    /// pid and uid the kernel gives for the link's socket. The receiver
    /// puts it in its directory (after checking the id is not forged) before
    /// it hands a message from this link to the application.
    pub(crate) fn take_hello(&mut self) -> Option<frame::PeerRecord> {
        let label = self.hello_label.take()?;
        let id = self.peer?;
        let cred = socket::peer_cred(self.fd.as_fd()).ok()?;
        Some(frame::PeerRecord {
            id,
            label,
            pid: cred.pid,
            uid: cred.uid,
        })
    }

    /// The way back to the sender, for answers to its requests: its socket,
    /// as long as the link lasts.
    pub(crate) fn back(&self) -> std::sync::Weak<OwnedFd> {
        Arc::downgrade(&self.fd)
    }

    /// The sender claimed an id that belongs to another process: the link is
    /// cut (the caller drops it) and nothing from it is believed.
    pub(crate) fn refuse_peer(&mut self) {
        tracing::warn!(peer = ?self.peer.map(|id| format!("{id:016x}")), "cutting a data link whose hello claims another endpoint's id");
        self.bad_frames = MAX_BAD_FRAMES;
    }

    /// The poller saw the socket readable (or hung up).
    pub(crate) fn socket_ready(&mut self) {
        self.socket_ready = true;
    }

    /// The poller saw the sender's eventfd rung (a frame in the ring):
    /// silences it. The socket is not looked at for it.
    pub(crate) fn bell_rang(&mut self) {
        if let Some((bell, _)) = &self.bell {
            bell.clear();
        }
    }

    /// The sender's eventfd, once, for the caller to add to its poller
    /// under this link's token (and remove with [`InLink::watched`] before
    /// dropping the link: the sender holds it open too).
    pub(crate) fn bell_to_watch(&mut self) -> Option<BorrowedFd<'_>> {
        match &mut self.bell {
            Some((bell, watched)) if !*watched => {
                *watched = true;
                Some(bell.as_fd())
            }
            _ => None,
        }
    }

    /// The descriptors a poller may watch for this link.
    pub(crate) fn watched(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        std::iter::once(self.fd.as_fd()).chain(self.bell.as_ref().map(|(b, _)| b.as_fd()))
    }

    /// Whether a frame may be waiting in the ring (a cheap look at shared
    /// memory, for spinning).
    pub(crate) fn ring_has_frame(&mut self) -> bool {
        match self.ring.as_mut() {
            Some(r) => !matches!(r.peek_with(|_| ()), Ok(None)),
            None => false,
        }
    }

    /// Raises the ring's sleeping flag before the receiver sleeps.
    /// `true` when something is there after all (the flag is down: do not sleep).
    pub(crate) fn prepare_sleep(&mut self) -> bool {
        match self.ring.as_mut() {
            Some(r) => !matches!(r.prepare_sleep(), Ok(false)),
            None => false,
        }
    }

    /// Lowers the ring's sleeping flag after the receiver woke.
    pub(crate) fn awake(&mut self) {
        if let Some(r) = self.ring.as_mut() {
            r.awake();
        }
    }

    /// Reads one frame (the socket is non-blocking). `buf` must hold [`frame::MAX_FRAME`]
    /// bytes and `control` come from [`socket::recv_control_space`].
    /// (The receiver reads with [`read_with`](InLink::read_with); the unit
    /// tests and `testing::LinkEnd`, feature `test-hooks`, with this.)
    #[cfg(any(test, feature = "test-hooks"))]
    pub(crate) fn read(
        &mut self,
        buf: &mut [u8],
        control: &mut [std::mem::MaybeUninit<u8>],
    ) -> Read {
        match self.read_with(buf, control, |header, bytes| RawFrame {
            header,
            bytes: bytes.to_vec(),
            fds: Vec::new(),
            view: None,
        }) {
            ReadWith::Frame(f) | ReadWith::InPlace(f) => Read::Frame(f),
            ReadWith::Nothing => Read::Nothing,
            ReadWith::Empty => Read::Empty,
            ReadWith::Closed => Read::Closed,
        }
    }

    /// Like `read`, but a frame due from the ring is read in place:
    /// `in_place` gets its checked header and bytes (in shared memory), and
    /// the frame is released when it returns.
    pub(crate) fn read_with<T>(
        &mut self,
        buf: &mut [u8],
        control: &mut [std::mem::MaybeUninit<u8>],
        in_place: impl FnOnce(Header, &[u8]) -> T,
    ) -> ReadWith<T> {
        // The sender makes frame `n` visible (in the ring or on the socket)
        // before frame `n + 1`. So whatever we see in the ring, every frame
        // before it is visible by the time we look at the socket *after*
        // looking at the ring; and after reading a frame off the socket,
        // every frame before it is visible in the ring. Look in that order.
        let mut ring_seq = match self.peek_ring() {
            Ok(seq) => seq,
            Err(closed) => return closed,
        };
        if self.stash.is_none() && ring_seq == Some(Some(self.next_seq)) {
            return self.take_ring(in_place);
        }
        // Hello, frames with descriptors, large frames, or the frame due
        // when the ring's first is a later one: the socket.
        if self.stash.is_none() && !self.socket_closed && (self.socket_ready || ring_seq.is_some())
        {
            match ReadWith::<T>::from(self.read_socket(buf, control)) {
                ReadWith::Empty => self.socket_ready = false,
                ReadWith::Frame(f) => self.stash = Some(f),
                // Closed: what the ring still holds comes first.
                ReadWith::Nothing if self.socket_closed => {}
                ReadWith::Nothing => return ReadWith::Nothing,
                ReadWith::Closed => return ReadWith::Closed,
                ReadWith::InPlace(_) => {}
            }
            ring_seq = match self.peek_ring() {
                Ok(seq) => seq,
                Err(closed) => return closed,
            };
        }
        let stash_seq = self.stash.as_ref().map(|f| f.header.seq);
        let source = match (stash_seq, ring_seq) {
            (None, None) if self.socket_closed => return ReadWith::Closed,
            (None, None) => return ReadWith::Empty,
            (Some(s), _) if s == self.next_seq => Source::Stash,
            (_, Some(r)) if r == Some(self.next_seq) => Source::Ring,
            // The one due is not in the ring, so it is on the socket: a
            // frame with descriptors can reach the socket's queue a moment
            // after the sender's `sendmsg` returned (and the sender went on
            // to the ring). Wait for it, for a while: a sender that skipped
            // a number holds up only its own link, and not for long.
            (None, Some(Some(r)))
                if r.wrapping_sub(self.next_seq) < 1 << 31
                    && !self.socket_closed
                    && self.socket_may_lag() =>
            {
                self.socket_ready = true;
                return ReadWith::Empty;
            }
            // The one due is nowhere (a sender that skips numbers, or
            // breaks the order): take what there is, the lower first.
            (None, Some(_)) => Source::Ring,
            (Some(_), None) => Source::Stash,
            (Some(s), Some(r)) if r.is_none_or(|r| r.wrapping_sub(s) < 1 << 31) => Source::Stash,
            (Some(_), Some(_)) => Source::Ring,
        };
        let frame = match source {
            Source::Stash => match self.stash.take() {
                Some(f) => f,
                None => return ReadWith::Nothing,
            },
            Source::Ring => return self.take_ring(in_place),
        };
        self.advance(frame.header.seq);
        ReadWith::Frame(frame)
    }

    /// The sequence number of the ring's first frame: `None` when there is
    /// none, `Some(None)` for a frame without a readable header. `Err` with
    /// what to return when the ring is corrupt (the link is cut).
    fn peek_ring<T>(&mut self) -> Result<Option<Option<u32>>, ReadWith<T>> {
        match self.ring.as_mut().map(|r| r.peek_with(peek_seq)) {
            None | Some(Ok(None)) => Ok(None),
            Some(Ok(Some(seq))) => Ok(Some(seq)),
            Some(Err(RingError::Closed)) => {
                self.ring = None;
                Ok(None)
            }
            Some(Err(RingError::Corrupt(why))) => {
                tracing::warn!(peer = ?self.peer, "cutting a link whose ring is corrupt: {why}");
                self.bad_frames = MAX_BAD_FRAMES;
                Err(ReadWith::Closed)
            }
        }
    }

    /// Takes the ring's first frame through `in_place`; a frame whose
    /// payload is lent by reference is copied out (it is small) and its
    /// payload found in the region its slot names.
    fn take_ring<T>(&mut self, in_place: impl FnOnce(Header, &[u8]) -> T) -> ReadWith<T> {
        match self.pop_ring_with(in_place) {
            Ok((seq, Popped::InPlace(out))) => {
                self.advance(seq);
                ReadWith::InPlace(out)
            }
            Ok((seq, Popped::ByRef(header, bytes))) => {
                self.advance(seq);
                match self.resolve(header, bytes, Vec::new()) {
                    Ok(raw) => ReadWith::Frame(raw),
                    Err(e) => self.bad(e).into(),
                }
            }
            Err(e) => self.bad(e).into(),
        }
    }

    /// A checked data frame with its payload found, if it is lent in a
    /// region: by reference, in the region of the slot its locator names;
    /// with the region's descriptor (the last of `fds`), in that region,
    /// which the slot the locator names (if any) remembers from now on.
    fn resolve(
        &mut self,
        header: Header,
        bytes: Vec<u8>,
        mut fds: Vec<OwnedFd>,
    ) -> Result<RawFrame, FrameError> {
        let by_ref = header.payload_by_ref();
        if !by_ref && !header.payload_in_region() {
            return Ok(RawFrame {
                header,
                bytes,
                fds,
                view: None,
            });
        }
        let (_, tail) = frame::split_body(&header, &bytes);
        let loc = Locator::decode(tail)
            .ok_or_else(|| FrameError::Body("a lent payload without its locator".into()))?;
        let len = usize::try_from(header.payload_len)
            .map_err(|_| FrameError::TooLarge(header.payload_len))?;
        let slot = match loc.slot {
            NO_SLOT if !by_ref => None,
            s if s < LINK_SLOTS => Some(s as usize),
            s => return Err(FrameError::Body(format!("region slot {s} is out of range"))),
        };
        let bad = |e: crate::RegionError| FrameError::Body(format!("lent payload: {e}"));
        let view = if by_ref {
            let map = slot
                .and_then(|s| self.slots.get(s).cloned().flatten())
                .ok_or_else(|| {
                    FrameError::Body(format!(
                        "a reference to region slot {} that holds none",
                        loc.slot
                    ))
                })?;
            map.view(&loc, len).map_err(bad)?
        } else {
            // A region named for a slot replaces whatever the slot held,
            // once its frame checks out.
            if let Some(s) = slot.and_then(|s| self.slots.get_mut(s)) {
                *s = None;
            }
            let fd = fds
                .pop()
                .ok_or_else(|| FrameError::Body("the payload descriptor is missing".into()))?;
            let map = self.maps.locked().region(fd).map_err(bad)?;
            let view = map.view(&loc, len).map_err(bad)?;
            if let Some(s) = slot {
                if self.slots.len() <= s {
                    self.slots.resize(s + 1, None);
                }
                self.slots[s] = Some(map);
            }
            view
        };
        Ok(RawFrame {
            header,
            bytes,
            fds,
            view: Some(view),
        })
    }

    /// Whether the frame due may still show up on the socket: for
    /// [`SOCKET_LAG_MS`] after it was first missed.
    fn socket_may_lag(&mut self) -> bool {
        let now = coarse_ms();
        let since = *self.gap_since.get_or_insert(now);
        now.wrapping_sub(since) < SOCKET_LAG_MS
    }

    /// The frame numbered `seq` was taken: the next one is due.
    fn advance(&mut self, seq: u32) {
        self.gap_since = None;
        if seq != self.next_seq && !self.seq_warned {
            self.seq_warned = true;
            tracing::warn!(peer = ?self.peer, "frame {seq} arrived where {} was due (logged once per link)", self.next_seq);
        }
        self.next_seq = seq.wrapping_add(1);
    }

    /// Takes the ring's next frame, checked, through `f` (in place); its
    /// sequence number and what `f` made of it.
    fn pop_ring_with<T>(
        &mut self,
        f: impl FnOnce(Header, &[u8]) -> T,
    ) -> Result<(u32, Popped<T>), FrameError> {
        let Some(ring) = self.ring.as_mut() else {
            return Err(FrameError::Body("no ring".into()));
        };
        let popped = ring.try_pop_with(|bytes| {
            let header = frame::check(bytes, 0)?;
            if header.kind != Kind::Data || header.is_reply() {
                return Err(FrameError::Body(format!(
                    "unexpected {:?} frame in a ring",
                    header.kind
                )));
            }
            if header.payload_by_ref() {
                return Ok((header.seq, Popped::ByRef(header, bytes.to_vec())));
            }
            Ok((header.seq, Popped::InPlace(f(header, bytes))))
        });
        match popped {
            Ok(Some(out)) => out,
            Ok(None) | Err(RingError::Closed) => {
                Err(FrameError::Body("the ring frame went away".into()))
            }
            Err(RingError::Corrupt(why)) => Err(FrameError::Body(format!("ring: {why}"))),
        }
    }

    /// Reads one frame off the socket: a hello is handled here, a data
    /// frame returned.
    fn read_socket(&mut self, buf: &mut [u8], control: &mut [std::mem::MaybeUninit<u8>]) -> Read {
        let got = match socket::recv_frame(self.fd.as_fd(), buf, control) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(peer = ?self.peer, "data link read failed: {e}");
                self.socket_closed = true;
                return Read::Nothing;
            }
        };
        match got {
            Received::WouldBlock => Read::Empty,
            Received::Closed => {
                self.socket_closed = true;
                Read::Nothing
            }
            Received::Truncated => self.bad(FrameError::Length {
                want: frame::MAX_FRAME as u64 + 1,
                got: buf.len(),
            }),
            Received::Frame { len, mut fds } => {
                let bytes = &buf[..len];
                let header = match frame::check(bytes, fds.len()) {
                    Ok(h) => h,
                    Err(e) => return self.bad(e),
                };
                match header.kind {
                    Kind::Hello if self.peer.is_none() => {
                        let hello = match frame::decode_small::<frame::Hello>(bytes) {
                            Ok(h) => h,
                            Err(e) => return self.bad(e),
                        };
                        let mut fds = fds.drain(..);
                        if let Some(fd) = fds.next() {
                            match Consumer::open(fd.as_fd()) {
                                Ok(ring) => {
                                    self.ring = Some(ring);
                                    if self.keep_ring_fd {
                                        self.ring_fd = Some(fd);
                                    }
                                }
                                Err(e) => {
                                    tracing::warn!("cutting a link whose ring is unusable: {e}");
                                    self.bad_frames = MAX_BAD_FRAMES;
                                    return Read::Closed;
                                }
                            }
                        }
                        if let Some(fd) = fds.next() {
                            match poll::Doorbell::from_received(fd) {
                                Ok(bell) => self.bell = Some((bell, false)),
                                Err(e) => {
                                    tracing::warn!(
                                        "cutting a link whose wake-up descriptor is unusable: {e}"
                                    );
                                    self.bad_frames = MAX_BAD_FRAMES;
                                    return Read::Closed;
                                }
                            }
                        }
                        self.peer = Some(hello.id);
                        self.hello_label = Some(hello.label);
                        Read::Nothing
                    }
                    Kind::Data if self.peer.is_some() && !header.is_reply() => {
                        match self.resolve(header, bytes.to_vec(), fds) {
                            Ok(raw) => Read::Frame(raw),
                            Err(e) => self.bad(e),
                        }
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
        // Its number is unknown: the next frame may be one past the one due,
        // and is not to be waited for.
        self.gap_since = Some(coarse_ms().wrapping_sub(SOCKET_LAG_MS));
        if self.malformed(e) {
            Read::Closed
        } else {
            Read::Nothing
        }
    }

    /// Counts a malformed frame from this link, found while reading it or
    /// later by the decoder (a bad selector or descriptor). Whether the
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

    /// Lets go of the regions in slots whose sender retired them, once
    /// nothing is left to read: the sender retires a region only after
    /// every frame that refers to it was written (its pool let go of it and
    /// nothing held a chunk of it in that process), so with the retirement
    /// seen (`Acquire`), a drained ring and socket hold no reference to it.
    pub(crate) fn forget_retired(&mut self) {
        if !self.slots.iter().flatten().any(|m| m.is_retired()) {
            return;
        }
        if self.stash.is_some() || self.ring_has_frame() || poll::readable(self.fd.as_fd()) {
            return;
        }
        for slot in &mut self.slots {
            if slot.as_ref().is_some_and(|m| m.is_retired()) {
                *slot = None;
            }
        }
    }

    /// The socket, for a poller.
    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The sequence number of a frame in a ring, if it has a header at all
/// (one without is taken anyway, and refused by [`frame::check`]).
fn peek_seq(bytes: &[u8]) -> Option<u32> {
    Header::decode(bytes).ok().map(|h| h.seq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::ring::pair;

    /// A data frame numbered `seq` whose payload is the number again.
    fn data_frame(seq: u32) -> Vec<u8> {
        let mut h = Header::new(Kind::Data);
        h.seq = seq;
        h.payload_len = 8;
        let mut bytes = h.encode().to_vec();
        bytes.extend_from_slice(&u64::from(seq).to_le_bytes());
        bytes
    }

    /// A receiving link over a socket pair and a ring, past its hello.
    fn link() -> (InLink, OwnedFd, Producer) {
        let (ours, theirs) = socket::socketpair().expect("socketpair");
        socket::set_nonblocking(ours.as_fd(), true).expect("nonblocking");
        let (producer, consumer, _fd) = pair(1 << 16).expect("ring");
        let mut link = InLink::new(ours);
        link.ring = Some(consumer);
        link.peer = Some(1);
        (link, theirs, producer)
    }

    /// A sender that puts some frames in the ring and some on the socket,
    /// as `OutLink::send` does (each visible before the next is written),
    /// races a receiver that reads all the time: every frame arrives once,
    /// in order. (A receiver that looked at the socket before the ring
    /// could take a ring frame while the one before it had just been
    /// written to the socket.)
    #[test]
    fn ring_and_socket_frames_merge_in_order_under_a_racing_sender() {
        const N: u32 = 100_000;
        let (mut link, socket_end, mut producer) = link();
        let sender = std::thread::spawn(move || {
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
            for seq in 0..N {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let frame = data_frame(seq);
                if x % 3 == 0 {
                    // With a descriptor: such a frame can reach the
                    // receiver's queue a moment after `sendmsg` returned.
                    let mut frame = frame;
                    frame[10] = 1; // one object
                    let fd = std::fs::File::open("/dev/null").expect("open");
                    while let Err(e) =
                        socket::send_frame(socket_end.as_fd(), &[&frame], &[fd.as_fd()])
                    {
                        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
                        std::thread::yield_now();
                    }
                } else {
                    loop {
                        match producer.try_push(&frame) {
                            Ok(()) => break,
                            Err(PushError::Full) => std::thread::yield_now(),
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            }
            (socket_end, producer)
        });
        let mut buf = vec![0u8; frame::MAX_FRAME];
        let mut control = socket::recv_control_space();
        let mut next = 0;
        while next < N {
            // The socket is looked at when the poller says so; here, always.
            link.socket_ready();
            match link.read(&mut buf, &mut control) {
                Read::Frame(f) => {
                    assert_eq!(f.header.seq, next, "out of order");
                    next += 1;
                }
                Read::Nothing | Read::Empty => std::thread::yield_now(),
                Read::Closed => panic!("closed after {next}"),
            }
        }
        let _ = sender.join().expect("sender");
        assert_eq!(link.bad_frames(), 0);
    }
}
