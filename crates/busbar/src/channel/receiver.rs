//! The receiving ends: [`Receiver`] and [`BytesReceiver`].

use super::sender::DOOR_LINK;
use super::{BYTES, TYPED};
use crate::endpoint::borrowed::{Opened, Unopened};
use crate::endpoint::lent::LentMaps;
use crate::frame::{self, Header, MAX_FRAME};
use crate::link::{InLink, LinkParts, RawFrame, ReadWith, RING_BELL};
use crate::sys::poll::Poller;
use crate::sys::socket::{self, Received};
use crate::{CodecError, RecvError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::io;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a receiver watches its rings before it sleeps, by default.
const DEFAULT_SPIN: Duration = Duration::from_micros(50);

/// Looks at the rings between two looks at the clock while spinning.
const SPIN_TURNS: u32 = 16;

/// Looks at the clock between two looks at the sockets while spinning.
const SOCKET_EVERY: u32 = 8;

/// The poller token of the door.
const DOOR: u64 = 0;

/// How long a receive may wait.
#[derive(Clone, Copy)]
pub(crate) enum Until {
    /// Not at all (`try_recv`).
    Now,
    /// Until this instant.
    At(Instant),
    /// As long as it takes.
    Ever,
}

impl Until {
    /// `timeout` from now.
    pub(crate) fn after(timeout: Duration) -> Until {
        Instant::now()
            .checked_add(timeout)
            .map_or(Until::Ever, Until::At)
    }
}

/// A frame as the receiver hands it to its decoder.
pub(crate) enum Got<'a> {
    /// In a link's ring, in place (shared memory its sender can still write).
    Ring(Header, &'a [u8]),
    /// Read off a link's socket, with its descriptors.
    Socket(RawFrame),
}

/// What a decoder may use besides the frame.
pub(crate) struct Ctx {
    /// Private memory a ring frame is copied into before it is decoded.
    scratch: Vec<u8>,
    /// Regions received as payloads (sent to ourselves, or from a link's socket).
    lent: Mutex<LentMaps>,
}

/// The receiving end of a channel, whatever it carries: the door, the
/// links that came through it, and the poller watching them.
pub(crate) struct RecvCore {
    poller: Poller,
    /// Whether the application polls the poller's descriptor (see [`AsFd`]).
    watched: Cell<bool>,
    state: RefCell<State>,
}

struct State {
    /// Where new links come in (`None` once every sender's copy is closed).
    door: Option<OwnedFd>,
    door_ready: bool,
    /// The links, by poller token.
    links: Vec<(u64, InLink)>,
    next_token: u64,
    /// Where the next scan starts (fairness among links).
    cursor: usize,
    /// This end went to another process inside a message.
    moved: bool,
    buf: Vec<u8>,
    control: Vec<MaybeUninit<u8>>,
    tokens: Vec<u64>,
    spin: Duration,
    ctx: Ctx,
}

impl std::fmt::Debug for RecvCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

/// How a receiving end travels: positions among the frame's descriptors.
#[derive(Serialize, Deserialize)]
struct ReceiverWire {
    door: Option<u32>,
    links: Vec<LinkWire>,
}

#[derive(Serialize, Deserialize)]
struct LinkWire {
    socket: u32,
    ring: Option<u32>,
    bell: Option<u32>,
    next_seq: u32,
    peer: u64,
    socket_closed: bool,
}

fn custom(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl RecvCore {
    pub(crate) fn new(door: Option<OwnedFd>, links: Vec<InLink>) -> io::Result<RecvCore> {
        let poller = Poller::new()?;
        if let Some(door) = &door {
            socket::set_nonblocking(door.as_fd(), true)?;
            poller.add(door.as_fd(), DOOR)?;
        }
        let mut state = State {
            door,
            door_ready: true,
            links: Vec::new(),
            next_token: DOOR + 1,
            cursor: 0,
            moved: false,
            buf: vec![0; MAX_FRAME],
            control: socket::recv_control_space(),
            tokens: Vec::new(),
            spin: DEFAULT_SPIN,
            ctx: Ctx {
                scratch: Vec::new(),
                lent: Mutex::default(),
            },
        };
        for mut link in links {
            let token = state.next_token;
            state.next_token += 1;
            poller.add(link.as_fd(), token)?;
            if let Some(bell) = link.bell_to_watch() {
                poller.add(bell, token | RING_BELL)?;
            }
            state.links.push((token, link));
        }
        Ok(RecvCore {
            poller,
            watched: Cell::new(false),
            state: RefCell::new(state),
        })
    }

    /// The next frame, through `decode`, waiting as `until` says.
    pub(crate) fn receive<R>(
        &self,
        until: Until,
        mut decode: impl FnMut(Got<'_>, &mut Ctx) -> Result<R, RecvError>,
    ) -> Result<R, RecvError> {
        let mut st = self.state.try_borrow_mut().map_err(|_| {
            RecvError::Io(io::Error::other(
                "a channel receive from inside another receive on the same receiver",
            ))
        })?;
        if st.moved {
            return Err(RecvError::Disconnected);
        }
        loop {
            if let Some(out) = st.scan(&self.poller, &mut decode) {
                return out;
            }
            if st.door.is_none() && st.links.is_empty() {
                return Err(RecvError::Disconnected);
            }
            let expired = match until {
                Until::Now => Some(RecvError::Empty),
                Until::At(d) if Instant::now() >= d => Some(RecvError::Timeout),
                _ => None,
            };
            if let Some(e) = expired {
                // What the sockets and the door hold (the poller says; an
                // application polling it does not tell us).
                if st.poll_now(&self.poller)? {
                    if let Some(out) = st.scan(&self.poller, &mut decode) {
                        return out;
                    }
                    if st.door.is_none() && st.links.is_empty() {
                        return Err(RecvError::Disconnected);
                    }
                }
                // Polled by the application: leave every ring's flag raised
                // so that the next frame makes the descriptor readable.
                if self.watched.get() && st.arm() {
                    if let Some(out) = st.scan(&self.poller, &mut decode) {
                        return out;
                    }
                }
                if st.door.is_none() && st.links.is_empty() {
                    return Err(RecvError::Disconnected);
                }
                return Err(e);
            }
            st.wait_input(&self.poller, until)?;
        }
    }

    /// Sets how long a receive watches the rings before it sleeps.
    pub(crate) fn set_spin(&self, spin: Duration) {
        if let Ok(mut st) = self.state.try_borrow_mut() {
            st.spin = spin;
        }
    }

    /// The poller's descriptor; from now on a receive that finds nothing
    /// leaves the rings' flags raised.
    pub(crate) fn watch_fd(&self) -> BorrowedFd<'_> {
        if !self.watched.replace(true) {
            // A receive that found nothing before we were asked left the
            // flags down: raise them now, so that the next frame rings.
            if let Ok(mut st) = self.state.try_borrow_mut() {
                st.arm();
            }
        }
        self.poller.as_fd()
    }

    /// Takes this end apart to travel: its descriptors attached to the
    /// message being encoded. Afterwards it says `Disconnected`.
    fn travel(&self) -> Result<ReceiverWire, String> {
        let mut st = self
            .state
            .try_borrow_mut()
            .map_err(|_| "a receiver cannot travel while it receives".to_string())?;
        if st.moved {
            return Err("this receiver was sent away already".into());
        }
        if !st.links.iter().all(|(_, l)| l.can_move()) {
            return Err("this receiver holds a frame read ahead; receive it first".into());
        }
        st.moved = true;
        let door = match st.door.take() {
            Some(d) => {
                self.poller.remove(d.as_fd());
                Some(crate::attach::attach(d).map_err(custom)?)
            }
            None => None,
        };
        let mut links = Vec::new();
        for (_, link) in std::mem::take(&mut st.links) {
            for fd in link.watched() {
                self.poller.remove(fd);
            }
            let parts = link
                .into_parts()
                .map_err(|_| "a link of this receiver cannot move".to_string())?;
            let LinkParts {
                socket,
                ring,
                bell,
                next_seq,
                peer,
                socket_closed,
            } = parts;
            links.push(LinkWire {
                socket: crate::attach::attach(socket).map_err(custom)?,
                ring: ring
                    .map(crate::attach::attach)
                    .transpose()
                    .map_err(custom)?,
                bell: bell
                    .map(crate::attach::attach)
                    .transpose()
                    .map_err(custom)?,
                next_seq,
                peer,
                socket_closed,
            });
        }
        Ok(ReceiverWire { door, links })
    }

    /// A receiving end that travelled here.
    fn arrive(wire: ReceiverWire) -> Result<RecvCore, String> {
        let door = wire
            .door
            .map(crate::attach::take)
            .transpose()
            .map_err(custom)?;
        let mut links = Vec::with_capacity(wire.links.len());
        for l in wire.links {
            let parts = LinkParts {
                socket: crate::attach::take(l.socket).map_err(custom)?,
                ring: l
                    .ring
                    .map(crate::attach::take)
                    .transpose()
                    .map_err(custom)?,
                bell: l
                    .bell
                    .map(crate::attach::take)
                    .transpose()
                    .map_err(custom)?,
                next_seq: l.next_seq,
                peer: l.peer,
                socket_closed: l.socket_closed,
            };
            links.push(InLink::from_parts(parts).map_err(custom)?);
        }
        RecvCore::new(door, links).map_err(custom)
    }
}

impl Drop for RecvCore {
    fn drop(&mut self) {
        if let Ok(mut st) = self.state.try_borrow_mut() {
            if !st.moved {
                st.let_go(&self.poller);
            }
        }
    }
}

impl State {
    /// Takes in new links, then reads the links in turn until one has a
    /// frame: what `decode` made of it. `None` when nothing is there.
    fn scan<R>(
        &mut self,
        poller: &Poller,
        decode: &mut impl FnMut(Got<'_>, &mut Ctx) -> Result<R, RecvError>,
    ) -> Option<Result<R, RecvError>> {
        if self.door_ready {
            self.open_door(poller);
        }
        let State {
            links,
            buf,
            control,
            cursor,
            ctx,
            ..
        } = self;
        let n = links.len();
        let mut out = None;
        let mut gone = Vec::new();
        'links: for k in 0..n {
            let at = (*cursor + k) % n;
            let (token, link) = &mut links[at];
            loop {
                let read = link.read_with(buf, control, |h, b| decode(Got::Ring(h, b), ctx));
                match read {
                    ReadWith::InPlace(r) => {
                        out = Some(r);
                        *cursor = at + 1;
                        break 'links;
                    }
                    ReadWith::Frame(raw) => {
                        out = Some(decode(Got::Socket(raw), ctx));
                        *cursor = at + 1;
                        break 'links;
                    }
                    ReadWith::Nothing => {
                        // A hello: watch the link's eventfd from now on.
                        if let Some(bell) = link.bell_to_watch() {
                            if let Err(e) = poller.add(bell, *token | RING_BELL) {
                                tracing::warn!("could not watch a channel link's eventfd: {e}");
                            }
                        }
                    }
                    ReadWith::Empty => break,
                    ReadWith::Closed => {
                        gone.push(at);
                        break;
                    }
                }
            }
        }
        gone.sort_unstable();
        for at in gone.into_iter().rev() {
            let (_, link) = links.remove(at);
            for fd in link.watched() {
                poller.remove(fd);
            }
        }
        out
    }

    /// Takes in the links that came through the door.
    fn open_door(&mut self, poller: &Poller) {
        loop {
            let Some(door) = self.door.as_ref() else {
                return;
            };
            match socket::recv_frame(door.as_fd(), &mut self.buf, &mut self.control) {
                Ok(Received::Frame { len, mut fds }) => {
                    if &self.buf[..len] != DOOR_LINK || fds.len() != 1 {
                        tracing::warn!("dropped a malformed frame at a channel's door");
                        continue;
                    }
                    let Some(fd) = fds.pop() else { continue };
                    if let Err(e) = self.add_link(poller, fd) {
                        tracing::warn!("could not take a channel link: {e}");
                    }
                }
                Ok(Received::Truncated) => {
                    tracing::warn!("dropped a truncated frame at a channel's door");
                }
                Ok(Received::WouldBlock) => {
                    self.door_ready = false;
                    return;
                }
                Ok(Received::Closed) | Err(_) => {
                    // Every sender's copy of the door is closed: no more links.
                    if let Some(door) = self.door.take() {
                        poller.remove(door.as_fd());
                    }
                    self.door_ready = false;
                    return;
                }
            }
        }
    }

    fn add_link(&mut self, poller: &Poller, fd: OwnedFd) -> io::Result<()> {
        socket::set_nonblocking(fd.as_fd(), true)?;
        let token = self.next_token;
        self.next_token += 1;
        let link = InLink::movable(fd);
        poller.add(link.as_fd(), token)?;
        self.links.push((token, link));
        Ok(())
    }

    /// Asks the poller what is ready now, without waiting; whether anything is.
    fn poll_now(&mut self, poller: &Poller) -> Result<bool, RecvError> {
        poller.wait(&mut self.tokens, Some(Instant::now()))?;
        self.mark_ready();
        Ok(!self.tokens.is_empty())
    }

    /// Lets every sender know at once that nobody reads any more: opens
    /// the rings of links still waiting at the door or for their hello
    /// (dropping a ring's reading end marks it for its producer).
    fn let_go(&mut self, poller: &Poller) {
        self.open_door(poller);
        let State {
            links,
            buf,
            control,
            ..
        } = self;
        for (_, link) in links.iter_mut() {
            if link.peer.is_none() {
                let _ = link.read_with(buf, control, |_, _| ());
            }
        }
    }

    /// Raises every ring's sleeping flag; `true` when something came after all.
    fn arm(&mut self) -> bool {
        let mut any = false;
        for (_, link) in &mut self.links {
            any |= link.prepare_sleep();
        }
        any
    }

    /// Waits for input: spins on the rings for a while (looking at the
    /// sockets now and then, yielding the processor between looks once
    /// nothing came for [`SPIN_ALONE`](crate::sys::ring::SPIN_ALONE)), then sleeps on the poller with every ring's
    /// flag raised. Reads nothing.
    fn wait_input(&mut self, poller: &Poller, until: Until) -> Result<(), RecvError> {
        let deadline = match until {
            Until::Now => return Ok(()),
            Until::At(d) => Some(d),
            Until::Ever => None,
        };
        let now = Instant::now();
        let spin_end = deadline.map_or(now + self.spin, |d| d.min(now + self.spin));
        let mut turns: u32 = 0;
        let polite_from = now + crate::sys::ring::SPIN_ALONE;
        loop {
            let t = Instant::now();
            if t >= spin_end {
                break;
            }
            for _ in 0..SPIN_TURNS {
                std::hint::spin_loop();
                if self.links.iter_mut().any(|(_, l)| l.ring_has_frame()) {
                    return Ok(());
                }
            }
            if t >= polite_from && !crate::sys::ring::give_way() {
                // Nothing for a while, and whoever will send may need the
                // processor, but yielding it costs a time slice now (as an
                // endpoint's receiver does): sleep.
                break;
            }
            turns = turns.wrapping_add(1);
            if turns % SOCKET_EVERY == 0 {
                poller.wait(&mut self.tokens, Some(Instant::now()))?;
                if !self.tokens.is_empty() {
                    self.mark_ready();
                    return Ok(());
                }
            }
        }
        if self.arm() {
            // Something came: no wait, so no tokens (not the last wait's).
            self.tokens.clear();
        } else {
            poller.wait(&mut self.tokens, deadline)?;
        }
        for (_, link) in &mut self.links {
            link.awake();
        }
        self.mark_ready();
        Ok(())
    }

    /// Tells the door and the links the poller reported that they are ready.
    fn mark_ready(&mut self) {
        for &token in &self.tokens {
            if token == DOOR {
                self.door_ready = true;
            } else if token & RING_BELL != 0 {
                let token = token & !RING_BELL;
                if let Some((_, link)) = self.links.iter_mut().find(|(t, _)| *t == token) {
                    link.bell_rang();
                }
            } else if let Some((_, link)) = self.links.iter_mut().find(|(t, _)| *t == token) {
                link.socket_ready();
            }
        }
    }
}

/// Runs `decode` on a received frame's payload: in place for bytes that
/// cannot change (or `f` copies them), from a private copy for a ring
/// frame or a region its sender can still write. `want` is the payload
/// type id the receiver takes.
fn open_payload<R>(
    got: Got<'_>,
    ctx: &mut Ctx,
    want: crate::TypeUuidBytes,
    private: bool,
    f: impl FnOnce(&[u8], Vec<OwnedFd>) -> Result<R, RecvError>,
) -> Result<R, RecvError> {
    let wrong = |h: &Header| {
        RecvError::Decode(CodecError::new(format!(
            "a frame of type {} on a channel of type {}",
            uuid::Uuid::from_bytes(h.type_uuid),
            uuid::Uuid::from_bytes(want)
        )))
    };
    match got {
        Got::Ring(h, bytes) => {
            if h.type_uuid != want {
                return Err(wrong(&h));
            }
            let payload = frame::split_body(&h, bytes).1;
            if !private {
                return f(payload, Vec::new());
            }
            ctx.scratch.clear();
            ctx.scratch.extend_from_slice(payload);
            f(&ctx.scratch, Vec::new())
        }
        Got::Socket(raw) => {
            if raw.header.type_uuid != want {
                return Err(wrong(&raw.header));
            }
            let mut opened = match Opened::open(raw, &ctx.lent) {
                Ok(o) => o,
                Err(Unopened::Skipped) => {
                    return Err(RecvError::Io(io::Error::new(
                        io::ErrorKind::OutOfMemory,
                        "no address space to map a message's payload",
                    )))
                }
                Err(Unopened::Malformed(e)) => {
                    return Err(RecvError::Decode(CodecError::new(e.to_string())))
                }
            };
            let fds: Vec<OwnedFd> = std::mem::take(&mut opened.objects)
                .into_iter()
                .map(crate::Object::into_fd)
                .collect();
            let stable = opened.payload.stable();
            let Some(payload) = opened.payload.bytes() else {
                return Err(RecvError::Decode(CodecError::new(
                    "the payload lies outside its region",
                )));
            };
            if stable || !private {
                return f(payload, fds);
            }
            ctx.scratch.clear();
            ctx.scratch.extend_from_slice(payload);
            f(&ctx.scratch, fds)
        }
    }
}

/// Decodes a typed channel's payload, its channel ends taking their descriptors.
fn decode_typed<T: DeserializeOwned>(got: Got<'_>, ctx: &mut Ctx) -> Result<T, RecvError> {
    open_payload(got, ctx, TYPED, true, |bytes, fds| {
        let (decoded, _unclaimed) =
            crate::attach::provide(fds, || postcard::take_from_bytes::<T>(bytes));
        let (value, rest) = decoded.map_err(|e| {
            CodecError::new(format!(
                "cannot decode `{}`: {e}",
                std::any::type_name::<T>()
            ))
        })?;
        if !rest.is_empty() {
            return Err(RecvError::Decode(CodecError::new(format!(
                "cannot decode `{}`: {} trailing byte(s)",
                std::any::type_name::<T>(),
                rest.len()
            ))));
        }
        Ok(value)
    })
}

/// The receiving end of a typed channel ([`channel`](super::channel)).
///
/// `Send`, not `Sync` (one thread receives at a time, as with
/// `std::sync::mpsc`). Put in a message (`Serialize`), it moves to the
/// process that receives the message, with every message not yet received:
/// this one then says [`RecvError::Disconnected`]. It is consumed by being
/// serialized, even when the send that serialized it fails.
///
/// For an event loop, [`AsFd`] gives a descriptor that polls readable when
/// a message may have come (the contract of
/// [`EndpointReceiver`'s](crate::EndpointReceiver#impl-AsFd-for-EndpointReceiver<R>)).
///
/// ```
/// let (tx, rx) = busbar::channel::channel::<String>()?;
/// tx.send("a".into())?;
/// drop(tx);
/// assert_eq!(rx.recv()?, "a");
/// assert!(matches!(rx.recv(), Err(busbar::RecvError::Disconnected)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Receiver<T> {
    core: RecvCore,
    _t: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.core.fmt(f)
    }
}

impl<T> Receiver<T> {
    pub(crate) fn from_door(door: OwnedFd) -> io::Result<Self> {
        Ok(Receiver {
            core: RecvCore::new(Some(door), Vec::new())?,
            _t: PhantomData,
        })
    }

    /// Sets how long a receive watches the shared-memory rings before it
    /// sleeps when nothing is there (default 50 µs; zero sleeps at once).
    ///
    /// ```
    /// let (_tx, rx) = busbar::channel::channel::<u8>()?;
    /// rx.set_spin(std::time::Duration::ZERO);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_spin(&self, spin: Duration) {
        self.core.set_spin(spin);
    }
}

impl<T: DeserializeOwned> Receiver<T> {
    /// Waits for the next message. [`RecvError::Disconnected`] once every
    /// sender is gone and every message they sent was received;
    /// [`RecvError::Decode`] for a message that does not decode as `T`
    /// (dropped: the next call goes on).
    ///
    /// ```
    /// let (tx, rx) = busbar::channel::channel::<u8>()?;
    /// std::thread::spawn(move || tx.send(5));
    /// assert_eq!(rx.recv()?, 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv(&self) -> Result<T, RecvError> {
        self.core.receive(Until::Ever, decode_typed)
    }

    /// Takes a message that is here already; [`RecvError::Empty`] if none is.
    ///
    /// ```
    /// let (_tx, rx) = busbar::channel::channel::<u8>()?;
    /// assert!(matches!(rx.try_recv(), Err(busbar::RecvError::Empty)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_recv(&self) -> Result<T, RecvError> {
        self.core.receive(Until::Now, decode_typed)
    }

    /// Waits up to `timeout` for the next message; [`RecvError::Timeout`]
    /// when none came.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (_tx, rx) = busbar::channel::channel::<u8>()?;
    /// assert!(matches!(rx.recv_timeout(Duration::from_millis(5)), Err(busbar::RecvError::Timeout)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvError> {
        self.core.receive(Until::after(timeout), decode_typed)
    }
}

/// The receiver's descriptor for an application's own `poll`, `epoll` or
/// event loop: an epoll descriptor (poll it for input; never read or close
/// it), with the contract of [`EndpointReceiver`'s](crate::EndpointReceiver):
/// once [`try_recv`](Receiver::try_recv) returned [`RecvError::Empty`] (or
/// a receive timed out), it turns readable when a message may have come;
/// then call `try_recv` until it says `Empty` again, and poll again.
/// Readiness can be spurious. The descriptor is this receiver's for its
/// whole life (a receiver that moved to another process keeps a silent one).
///
/// ```
/// use std::os::fd::AsFd;
/// let (tx, rx) = busbar::channel::channel::<u8>()?;
/// assert!(matches!(rx.try_recv(), Err(busbar::RecvError::Empty)));
/// tx.send(1)?;
/// let fd = rx.as_fd();
/// let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
/// rustix::event::poll(&mut fds, None)?;
/// assert_eq!(rx.try_recv()?, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl<T> AsFd for Receiver<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.core.watch_fd()
    }
}

impl<T> Serialize for Receiver<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        self.core.travel().map_err(S::Error::custom)?.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for Receiver<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let wire = ReceiverWire::deserialize(d)?;
        Ok(Receiver {
            core: RecvCore::arrive(wire).map_err(D::Error::custom)?,
            _t: PhantomData,
        })
    }
}

/// The receiving end of a byte channel ([`bytes_channel`](super::bytes_channel)):
/// like [`Receiver`], for bytes, and [`recv_with`](BytesReceiver::recv_with)
/// reads them where they lie.
///
/// ```
/// let (tx, rx) = busbar::channel::bytes_channel()?;
/// tx.send(b"abc")?;
/// let n = rx.recv_with(|b| b.len())?;
/// assert_eq!(n, 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct BytesReceiver {
    core: RecvCore,
}

impl std::fmt::Debug for BytesReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.core.fmt(f)
    }
}

fn bytes_vec(got: Got<'_>, ctx: &mut Ctx) -> Result<Vec<u8>, RecvError> {
    open_payload(got, ctx, BYTES, false, |b, _| Ok(b.to_vec()))
}

impl BytesReceiver {
    pub(crate) fn from_door(door: OwnedFd) -> io::Result<Self> {
        Ok(BytesReceiver {
            core: RecvCore::new(Some(door), Vec::new())?,
        })
    }

    /// Waits for the next message, copied out.
    /// [`RecvError::Disconnected`] once every sender is gone and every
    /// message they sent was received.
    ///
    /// ```
    /// let (tx, rx) = busbar::channel::bytes_channel()?;
    /// tx.send(b"x")?;
    /// assert_eq!(rx.recv()?, b"x");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv(&self) -> Result<Vec<u8>, RecvError> {
        self.core.receive(Until::Ever, bytes_vec)
    }

    /// Takes a message that is here already; [`RecvError::Empty`] if none is.
    ///
    /// ```
    /// let (_tx, rx) = busbar::channel::bytes_channel()?;
    /// assert!(matches!(rx.try_recv(), Err(busbar::RecvError::Empty)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_recv(&self) -> Result<Vec<u8>, RecvError> {
        self.core.receive(Until::Now, bytes_vec)
    }

    /// Waits up to `timeout` for the next message.
    ///
    /// ```
    /// let (_tx, rx) = busbar::channel::bytes_channel()?;
    /// let got = rx.recv_timeout(std::time::Duration::from_millis(5));
    /// assert!(matches!(got, Err(busbar::RecvError::Timeout)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Vec<u8>, RecvError> {
        self.core.receive(Until::after(timeout), bytes_vec)
    }

    /// Waits for the next message and lends it to `f` where it lies: in
    /// the link's shared-memory ring (released when `f` returns), or the
    /// sender's shared region for a large one. The sender of a ring frame
    /// cannot change it meanwhile unless it breaks the ring's rules; treat
    /// the bytes as input all the same (parse once, check what you parse).
    ///
    /// ```
    /// let (tx, rx) = busbar::channel::bytes_channel()?;
    /// tx.send(&[1, 2, 3])?;
    /// let sum: u32 = rx.recv_with(|b| b.iter().map(|&x| u32::from(x)).sum())?;
    /// assert_eq!(sum, 6);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv_with<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Result<R, RecvError> {
        let mut f = Some(f);
        self.core.receive(Until::Ever, |got, ctx| {
            open_payload(got, ctx, BYTES, false, |b, _| match f.take() {
                Some(f) => Ok(f(b)),
                None => Err(RecvError::Io(io::Error::other("lent twice"))),
            })
        })
    }

    /// As [`Receiver::set_spin`].
    ///
    /// ```
    /// let (_tx, rx) = busbar::channel::bytes_channel()?;
    /// rx.set_spin(std::time::Duration::from_micros(10));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_spin(&self, spin: Duration) {
        self.core.set_spin(spin);
    }
}

/// As [`Receiver`'s descriptor](Receiver#impl-AsFd-for-Receiver<T>).
///
/// ```
/// use std::os::fd::{AsFd, AsRawFd};
/// let (_tx, rx) = busbar::channel::bytes_channel()?;
/// assert!(rx.as_fd().as_raw_fd() >= 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl AsFd for BytesReceiver {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.core.watch_fd()
    }
}

impl Serialize for BytesReceiver {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        self.core.travel().map_err(S::Error::custom)?.serialize(s)
    }
}

impl<'de> Deserialize<'de> for BytesReceiver {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let wire = ReceiverWire::deserialize(d)?;
        Ok(BytesReceiver {
            core: RecvCore::arrive(wire).map_err(D::Error::custom)?,
        })
    }
}
