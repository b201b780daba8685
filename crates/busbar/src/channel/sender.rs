//! The sending ends: [`Sender`] and [`BytesSender`].

use super::{BYTES, CAPACITY, TYPED};
use crate::endpoint::loan::LoanPool;
use crate::endpoint::outgoing::{Built, OutFrame, Payload};
use crate::link::{self, Connected, OutLink, SendFailure, Wait};
use crate::sync::Lock;
use crate::sys::socket;
use crate::{Backpressure, Selector, SendError};
use serde::{Deserialize, Serialize};
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What every clone of a sender shares: the door, and the link made on the
/// first message.
#[derive(Debug)]
pub(crate) struct SenderCore {
    /// Our end of the receiver's door (shared with every sender of the channel).
    door: OwnedFd,
    link: Mutex<Option<Arc<OutLink>>>,
    pool: Arc<LoanPool>,
    selector: Arc<[u8]>,
    backpressure: Mutex<Backpressure>,
}

/// What a door frame says: here is a new link's receiving socket.
pub(super) const DOOR_LINK: &[u8; 8] = b"bbchlink";

impl SenderCore {
    pub(crate) fn new(door: OwnedFd) -> io::Result<SenderCore> {
        socket::set_nonblocking(door.as_fd(), true)?;
        let selector = crate::frame::encode_selector(&Selector::unicast(crate::LabelOp::True));
        Ok(SenderCore {
            door,
            link: Mutex::new(None),
            pool: Arc::default(),
            selector: selector.into(),
            backpressure: Mutex::new(Backpressure::Block),
        })
    }

    /// The link, made (and passed through the door) if need be.
    fn link(&self, wait: Wait) -> Result<Arc<OutLink>, SendError> {
        let mut slot = self.link.locked();
        if let Some(link) = slot.as_ref() {
            return Ok(link.clone());
        }
        let (ours, theirs) = socket::socketpair()?;
        let hello = crate::frame::Hello {
            id: 0,
            label: Vec::new(),
        };
        let link = match OutLink::introduce(ours, &hello, CAPACITY)? {
            // Its receiving end may move to another process: every lent
            // payload carries its region.
            Connected::Link(link) => link.without_slots(),
            Connected::Gone | Connected::Busy => return Err(SendError::Disconnected),
        };
        link.set_buffer(CAPACITY)?;
        link::send_whole(self.door.as_fd(), DOOR_LINK, &[], &[theirs.as_fd()], wait)
            .map_err(failure)?;
        let link = Arc::new(link);
        *slot = Some(link.clone());
        Ok(link)
    }

    /// Sends an encoded payload with the descriptors it attached.
    pub(crate) fn send(
        &self,
        type_uuid: crate::TypeUuidBytes,
        payload: Payload<'_>,
        objects: Vec<OwnedFd>,
        wait: Option<Wait>,
    ) -> Result<(), SendError> {
        let policy = *self.backpressure.locked();
        let dropping = wait.is_none() && policy == Backpressure::DropNewest;
        let wait = wait.unwrap_or(match policy {
            Backpressure::Block => Wait::Forever,
            Backpressure::DropNewest | Backpressure::FailFast => Wait::No,
        });
        if objects.is_empty() && self.selector.len() + payload.len() <= crate::frame::INLINE_MAX {
            // In-line with no descriptors (the ring's case): written
            // straight from the caller's bytes, with no frame in between.
            let mut header = crate::frame::Header::new(crate::frame::Kind::Data);
            // In range: a selector of a few bytes, and INLINE_MAX.
            header.selector_len = self.selector.len() as u16;
            header.payload_len = payload.len() as u64;
            header.type_uuid = type_uuid;
            let link = self.link(wait)?;
            let [head, rest] = payload.parts();
            let body: [&[u8]; 3] = [&self.selector, head, rest];
            let sent = link.send(&header, &body, &[], None, wait);
            return settle(&link, sent, dropping);
        }
        let frame = OutFrame::build(
            Built {
                selector: Selector::unicast(crate::LabelOp::True),
                selector_bytes: self.selector.clone(),
                type_uuid,
                objects,
                regions: Vec::new(),
            },
            payload,
            crate::frame::MAX_PAYLOAD,
            &self.pool,
            wait,
        )?;
        let link = self.link(wait)?;
        let sent = frame.write_to(&link, wait);
        settle(&link, sent, dropping)
    }

    /// A duplicate of the door, for a sender that travels.
    fn door_copy(&self) -> io::Result<OwnedFd> {
        self.door.try_clone()
    }
}

/// What a failed write means for a channel's sender.
fn failure(e: SendFailure) -> SendError {
    match e {
        SendFailure::Full => SendError::Full {
            delivered: 0,
            full: 1,
        },
        SendFailure::Io(e) if socket::is_peer_gone(&e) => SendError::Disconnected,
        SendFailure::Io(e) => SendError::Io(e),
    }
}

/// The outcome of a write to `link`: a frame a full receiver refused
/// under drop-newest is counted as dropped, and is no error.
fn settle(link: &OutLink, sent: Result<(), SendFailure>, dropping: bool) -> Result<(), SendError> {
    match sent {
        Ok(()) => Ok(()),
        Err(SendFailure::Full) if dropping => {
            link.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        }
        Err(e) => Err(failure(e)),
    }
}

/// The wait of `send_timeout`.
fn until(timeout: Duration) -> Option<Wait> {
    Some(
        Instant::now()
            .checked_add(timeout)
            .map_or(Wait::Forever, Wait::Until),
    )
}

/// Encodes `value`, gathering the descriptors of the channel ends (and
/// [`SharedBytes`](super::SharedBytes)) in it.
fn encode<T: Serialize>(value: &T) -> Result<(Vec<u8>, Vec<OwnedFd>), SendError> {
    let (encoded, fds) = crate::attach::collect(|| postcard::to_allocvec(value));
    let bytes = encoded.map_err(|e| {
        crate::CodecError::new(format!(
            "cannot encode `{}`: {e}",
            std::any::type_name::<T>()
        ))
    })?;
    Ok((bytes, fds))
}

/// The sending end of a typed channel ([`channel`](super::channel)).
///
/// `Clone + Send + Sync`: clones share one link, so the messages of all
/// of them arrive in the order they were sent. A sender put in a message
/// (`Serialize`) gives the process that receives it a sender of its own
/// (a duplicate of the channel's door: it makes its own link when it
/// first sends); this one goes on working.
///
/// ```
/// let (tx, rx) = busbar::channel::channel::<u64>()?;
/// let tx2 = tx.clone();
/// std::thread::spawn(move || tx2.send(2));
/// tx.send(1)?;
/// let mut got = vec![rx.recv()?, rx.recv()?];
/// got.sort();
/// assert_eq!(got, [1, 2]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Sender<T> {
    core: Arc<SenderCore>,
    _t: PhantomData<fn(T)>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender {
            core: self.core.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl<T> Sender<T> {
    pub(crate) fn from_door(door: OwnedFd) -> io::Result<Self> {
        Ok(Sender {
            core: Arc::new(SenderCore::new(door)?),
            _t: PhantomData,
        })
    }

    /// Sets what [`send`](Sender::send) does when the receiver has no room:
    /// wait for it ([`Backpressure::Block`], the default), drop the message
    /// (`DropNewest`: `send` returns `Ok`) or fail (`FailFast`:
    /// [`SendError::Full`]). Shared by this sender's clones.
    ///
    /// ```
    /// let (tx, _rx) = busbar::channel::channel::<u8>()?;
    /// tx.set_backpressure(busbar::Backpressure::FailFast);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_backpressure(&self, policy: Backpressure) {
        *self.core.backpressure.locked() = policy;
    }

    /// This sender with its message type forgotten (ipc-channel's
    /// `to_opaque`): to keep senders of different types together, or
    /// pass one through code that does not know its type.
    /// [`OpaqueSender::to`] gives a typed sender back.
    ///
    /// ```
    /// let (tx, rx) = busbar::channel::channel::<u32>()?;
    /// let opaque = tx.to_opaque();
    /// opaque.to::<u32>().send(3)?;
    /// assert_eq!(rx.recv()?, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_opaque(self) -> OpaqueSender {
        OpaqueSender { core: self.core }
    }
}

/// A channel's sender whose message type is not known here
/// ([`Sender::to_opaque`]), ipc-channel's `OpaqueIpcSender`. It travels in
/// messages as a [`Sender`] does, and [`to`](OpaqueSender::to) makes it a
/// [`Sender<T>`] again. Nothing checks that `T` is the type the receiver
/// decodes: a receiver of another type fails to decode those messages
/// ([`RecvError::Decode`](crate::RecvError::Decode)) and goes on.
///
/// ```
/// use busbar::channel::{channel, OpaqueSender};
/// let (tx, rx) = channel::<String>()?;
/// // An opaque sender inside a message, typed again where it arrives.
/// let (carrier, carried) = channel::<OpaqueSender>()?;
/// carrier.send(tx.to_opaque())?;
/// carried.recv()?.to::<String>().send("typed again".into())?;
/// assert_eq!(rx.recv()?, "typed again");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct OpaqueSender {
    core: Arc<SenderCore>,
}

impl std::fmt::Debug for OpaqueSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpaqueSender").finish_non_exhaustive()
    }
}

impl OpaqueSender {
    /// A sender of `T` on the same channel (sharing this sender's link).
    pub fn to<T>(self) -> Sender<T> {
        Sender {
            core: self.core,
            _t: PhantomData,
        }
    }
}

impl Serialize for OpaqueSender {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SenderWire::put(&self.core, s)
    }
}

impl<'de> Deserialize<'de> for OpaqueSender {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let door = SenderWire::take(d)?;
        Ok(OpaqueSender {
            core: Arc::new(SenderCore::new(door).map_err(D::Error::custom)?),
        })
    }
}

impl<T: Serialize> Sender<T> {
    /// Sends `msg`, waiting for room as the sender's
    /// [`Backpressure`] says (by default as long as it takes).
    /// [`SendError::Disconnected`] once the receiver is gone.
    ///
    /// ```
    /// let (tx, rx) = busbar::channel::channel::<Vec<u32>>()?;
    /// tx.send(vec![1, 2, 3])?;
    /// drop(rx);
    /// assert!(matches!(tx.send(vec![]), Err(busbar::SendError::Disconnected)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send(&self, msg: T) -> Result<(), SendError> {
        let (bytes, fds) = encode(&msg)?;
        self.core.send(TYPED, Payload::Owned(bytes), fds, None)
    }

    /// Sends `msg` if the receiver has room now; [`SendError::Full`] if not
    /// (the message is not sent).
    ///
    /// ```
    /// let (tx, _rx) = busbar::channel::channel::<Vec<u8>>()?;
    /// // Nobody reads: the channel fills up, and try_send says so.
    /// let full = (0..1000).find_map(|_| tx.try_send(vec![0; 4000]).err());
    /// assert!(matches!(full, Some(busbar::SendError::Full { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_send(&self, msg: T) -> Result<(), SendError> {
        let (bytes, fds) = encode(&msg)?;
        self.core
            .send(TYPED, Payload::Owned(bytes), fds, Some(Wait::No))
    }

    /// Sends `msg`, waiting up to `timeout` for room; [`SendError::Full`]
    /// when there was none by then.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (tx, rx) = busbar::channel::channel::<u8>()?;
    /// tx.send_timeout(1, Duration::from_millis(10))?;
    /// assert_eq!(rx.recv()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_timeout(&self, msg: T, timeout: Duration) -> Result<(), SendError> {
        let (bytes, fds) = encode(&msg)?;
        self.core
            .send(TYPED, Payload::Owned(bytes), fds, until(timeout))
    }

    /// Connects to the [`OneShotServer`](super::OneShotServer) named
    /// `name` (in the same user's processes: see
    /// [`connect_with`](Sender::connect_with)). The server's
    /// [`accept`](super::OneShotServer::accept) then returns the receiving
    /// end with the first message sent here.
    ///
    /// Fails with `ConnectionRefused` when nobody serves that name, or the
    /// server has already accepted a connection (a one-shot server takes
    /// one), and with `PermissionDenied` when the server runs as a user
    /// the access policy does not admit, or it refused us.
    ///
    /// ```
    /// let (server, name) = busbar::channel::OneShotServer::<String>::new()?;
    /// let t = std::thread::spawn(move || server.accept());
    /// let tx = busbar::channel::Sender::<String>::connect(&name)?;
    /// tx.send("first".into())?;
    /// let (_rx, first) = t.join().unwrap()?;
    /// assert_eq!(first, "first");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect(name: &str) -> io::Result<Sender<T>> {
        Sender::connect_with(name, &crate::Access::SameUser)
    }

    /// [`connect`](Sender::connect), admitting a server that runs as a
    /// user `access` admits.
    ///
    /// ```
    /// let (server, name) = busbar::channel::OneShotServer::<u8>::new()?;
    /// let t = std::thread::spawn(move || server.accept());
    /// let tx = busbar::channel::Sender::<u8>::connect_with(&name, &busbar::Access::Anyone)?;
    /// tx.send(1)?;
    /// assert_eq!(t.join().unwrap()?.1, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect_with(name: &str, access: &crate::Access) -> io::Result<Sender<T>> {
        Sender::from_door(super::server::connect(name, access)?)
    }
}

/// How a sender travels: the position of its door among the frame's descriptors.
#[derive(Serialize, Deserialize)]
struct SenderWire {
    door: u32,
}

impl SenderWire {
    /// Serializes a sender (any of the three kinds): a copy of its door
    /// attached to the frame being encoded, and that position.
    fn put<S: serde::Serializer>(core: &SenderCore, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let door = core.door_copy().map_err(S::Error::custom)?;
        let door = crate::attach::attach(door).map_err(S::Error::custom)?;
        SenderWire { door }.serialize(s)
    }

    /// Deserializes a sender's door: taken from the frame being decoded.
    fn take<'de, D: serde::Deserializer<'de>>(d: D) -> Result<std::os::fd::OwnedFd, D::Error> {
        use serde::de::Error;
        let wire = SenderWire::deserialize(d)?;
        crate::attach::take(wire.door).map_err(D::Error::custom)
    }
}

impl<T> Serialize for Sender<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SenderWire::put(&self.core, s)
    }
}

impl<'de, T> Deserialize<'de> for Sender<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let door = SenderWire::take(d)?;
        Sender::from_door(door).map_err(D::Error::custom)
    }
}

/// The sending end of a byte channel ([`bytes_channel`](super::bytes_channel)):
/// like [`Sender`], for `&[u8]`, with no encoding.
///
/// ```
/// let (tx, rx) = busbar::channel::bytes_channel()?;
/// tx.send(&[1, 2, 3])?;
/// assert_eq!(rx.recv()?, [1, 2, 3]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct BytesSender {
    core: Arc<SenderCore>,
}

impl std::fmt::Debug for BytesSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BytesSender").finish_non_exhaustive()
    }
}

impl BytesSender {
    pub(crate) fn from_door(door: OwnedFd) -> io::Result<Self> {
        Ok(BytesSender {
            core: Arc::new(SenderCore::new(door)?),
        })
    }

    /// Sends `bytes` (copied once: into the link's ring, or into a shared
    /// region for more than 64 KiB), waiting for room as the sender's
    /// [`Backpressure`] says.
    ///
    /// ```
    /// let (tx, rx) = busbar::channel::bytes_channel()?;
    /// tx.send(&vec![7u8; 1 << 20])?;
    /// assert_eq!(rx.recv()?.len(), 1 << 20);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send(&self, bytes: &[u8]) -> Result<(), SendError> {
        self.core
            .send(BYTES, Payload::Borrowed(bytes), Vec::new(), None)
    }

    /// Sends `bytes` if the receiver has room now; [`SendError::Full`] if not.
    ///
    /// ```
    /// let (tx, _rx) = busbar::channel::bytes_channel()?;
    /// let full = (0..1000).find_map(|_| tx.try_send(&[0; 4000]).err());
    /// assert!(matches!(full, Some(busbar::SendError::Full { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_send(&self, bytes: &[u8]) -> Result<(), SendError> {
        self.core
            .send(BYTES, Payload::Borrowed(bytes), Vec::new(), Some(Wait::No))
    }

    /// Sends `bytes`, waiting up to `timeout` for room.
    ///
    /// ```
    /// let (tx, rx) = busbar::channel::bytes_channel()?;
    /// tx.send_timeout(b"x", std::time::Duration::from_millis(10))?;
    /// assert_eq!(rx.recv()?, b"x");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_timeout(&self, bytes: &[u8], timeout: Duration) -> Result<(), SendError> {
        self.core
            .send(BYTES, Payload::Borrowed(bytes), Vec::new(), until(timeout))
    }

    /// As [`Sender::set_backpressure`].
    ///
    /// ```
    /// let (tx, _rx) = busbar::channel::bytes_channel()?;
    /// tx.set_backpressure(busbar::Backpressure::DropNewest);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_backpressure(&self, policy: Backpressure) {
        *self.core.backpressure.locked() = policy;
    }

    /// As [`Sender::connect`], for a byte channel's
    /// [`OneShotServer::new_bytes`](super::OneShotServer::new_bytes).
    ///
    /// ```
    /// let (server, name) = busbar::channel::OneShotServer::new_bytes()?;
    /// let t = std::thread::spawn(move || server.accept_bytes());
    /// busbar::channel::BytesSender::connect(&name)?.send(b"hi")?;
    /// assert_eq!(t.join().unwrap()?.1, b"hi");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect(name: &str) -> io::Result<BytesSender> {
        BytesSender::from_door(super::server::connect(name, &crate::Access::SameUser)?)
    }
}

impl Serialize for BytesSender {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SenderWire::put(&self.core, s)
    }
}

impl<'de> Deserialize<'de> for BytesSender {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let door = SenderWire::take(d)?;
        BytesSender::from_door(door).map_err(D::Error::custom)
    }
}
