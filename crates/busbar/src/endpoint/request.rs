//! Requests and their answers.
//!
//! A request is a data frame with [`FLAG_REQUEST`](crate::frame::FLAG_REQUEST)
//! and a correlation id (in the header, not the payload). It is routed like
//! any unicast; the receiving endpoint hands it to its application as a
//! [`Message`] that remembers the link it came on. The answer goes back on
//! that same link, in the other direction (the link's socket carries frames
//! both ways; only the forward direction has a ring), with
//! [`FLAG_REPLY`](crate::frame::FLAG_REPLY) and the same correlation id.
//! So answers never reach the requester's receiver: the threads waiting in
//! [`EndpointSender::request`](crate::EndpointSender::request) read them
//! off the sockets of the links their requests went out on, and messages
//! keep arriving at the receiver as usual.
//!
//! One waiting thread at a time reads the answer sockets (it sleeps in
//! their poller); the others wait on a condition variable. The reader hands
//! each answer to its request's slot, and when its own has come it lets go,
//! and another waiting thread takes over. A socket that closes (the
//! responder left or died: the kernel closes its end either way) fails the
//! requests waiting on it at once with their own error.

use super::Shared;
use crate::error::{RequestError, SendError};
use crate::frame::{self, Kind};
use crate::link::{OutLink, RawFrame, MAX_BAD_FRAMES};
use crate::sync::{CondvarWait, Lock};
use crate::sys::poll::{Doorbell, Poller};
use crate::sys::socket::{self, Received};
use crate::{EndpointId, Message};
use std::collections::HashMap;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// The poller token of the doorbell (link keys start above it).
const BELL: u64 = 0;

/// Where and how to answer a received request.
#[derive(Clone)]
pub(crate) struct ReplyTo {
    /// The request's correlation id.
    pub corr: u64,
    /// The way back.
    pub path: ReplyPath,
}

impl std::fmt::Debug for ReplyTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyTo").field("corr", &self.corr).finish()
    }
}

/// The way back to a requester.
#[derive(Clone)]
pub(crate) enum ReplyPath {
    /// The socket of the link the request came on (gone once the link is).
    Link(Weak<OwnedFd>),
    /// The request came from this endpoint itself.
    Local,
}

/// What it takes to answer a received request, apart from the message:
/// from [`Borrowed::reply_handle`](crate::Borrowed::reply_handle) (a
/// request lent by [`recv_with`](crate::EndpointReceiver::recv_with), whose
/// message is gone when the closure returns) or
/// [`Message::reply_handle`](crate::Message::reply_handle); answer with
/// [`EndpointSender::reply_with`](crate::EndpointSender::reply_with).
/// Cheap to clone; it does not keep the link open.
#[derive(Debug, Clone)]
pub struct ReplyHandle {
    /// Who asked.
    pub(crate) source: EndpointId,
    pub(crate) to: ReplyTo,
}

impl ReplyHandle {
    /// The endpoint that sent the request.
    pub fn source(&self) -> EndpointId {
        self.source
    }
}

/// Travels with a request's frame until it is written to a link: tells
/// the request's slot where it went (or that it never went anywhere).
#[derive(Debug)]
pub(crate) struct Ticket {
    requests: Arc<Requests>,
    corr: u64,
}

impl Ticket {
    /// The request went out on `link` to endpoint `peer`.
    pub(crate) fn sent(&self, link: &Arc<OutLink>, peer: u64) {
        self.requests.sent(self.corr, Some(link), peer);
    }

    /// The request went to this endpoint itself (`id`).
    pub(crate) fn sent_local(&self, id: u64) {
        self.requests.sent(self.corr, None, id);
    }

    /// It did not go where [`sent`](Ticket::sent) said after all.
    pub(crate) fn unsent(&self) {
        self.requests.unsent(self.corr);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.requests.dropped(self.corr);
    }
}

/// What became of one request so far.
#[derive(Debug)]
enum Slot {
    /// Not written to any link yet (it may wait for its ttl).
    Unsent,
    /// Written to `peer` over the link with key `key` (`None`: to ourselves).
    Sent { key: Option<u64>, peer: u64 },
    /// The answer, from `peer`.
    Answered {
        key: Option<u64>,
        peer: u64,
        frame: RawFrame,
    },
    /// The link with key `key` to `peer` closed before the answer came.
    Gone { key: u64, peer: u64 },
    /// The frame was dropped without going anywhere (its ttl ran out).
    Undelivered,
}

/// Why a wait ended without an answer.
#[derive(Debug)]
enum Unanswered {
    Timeout,
    /// The link to this endpoint closed.
    Gone(u64),
    /// The request never went out (its ttl ran out, or the endpoint shut down).
    Undelivered,
}

/// An answer socket being watched, and how many requests wait on it.
#[derive(Debug)]
struct Watched {
    link: Arc<OutLink>,
    waiting: usize,
    bad: u32,
}

#[derive(Debug, Default)]
struct State {
    slots: HashMap<u64, Slot>,
    /// By link key.
    watched: HashMap<u64, Watched>,
}

/// What the reading thread uses.
#[derive(Debug)]
struct Reader {
    buf: Vec<u8>,
    control: Vec<MaybeUninit<u8>>,
    ready: Vec<u64>,
}

/// An endpoint's requests in flight.
#[derive(Debug)]
pub(crate) struct Requests {
    state: Mutex<State>,
    changed: Condvar,
    /// Held by the one thread reading answer sockets.
    reader: Mutex<Reader>,
    poller: Poller,
    bell: Doorbell,
    next: AtomicU64,
}

impl Requests {
    pub(crate) fn new() -> io::Result<Requests> {
        let poller = Poller::new()?;
        let bell = Doorbell::new()?;
        poller.add(bell.as_fd(), BELL)?;
        Ok(Requests {
            state: Mutex::default(),
            changed: Condvar::new(),
            reader: Mutex::new(Reader {
                buf: Vec::new(),
                control: socket::recv_control_space(),
                ready: Vec::new(),
            }),
            poller,
            bell,
            next: AtomicU64::new(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.locked()
    }

    /// A new request: its ticket (which carries its correlation id).
    pub(crate) fn open(self: &Arc<Self>) -> Ticket {
        let corr = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().slots.insert(corr, Slot::Unsent);
        Ticket {
            requests: self.clone(),
            corr,
        }
    }

    fn sent(&self, corr: u64, link: Option<&Arc<OutLink>>, peer: u64) {
        let mut st = self.lock();
        let Some(slot) = st.slots.get_mut(&corr) else {
            return;
        };
        let key = link.map(|l| l.key);
        *slot = Slot::Sent { key, peer };
        if let Some(link) = link {
            let w = st.watched.entry(link.key).or_insert_with(|| Watched {
                link: link.clone(),
                waiting: 0,
                bad: 0,
            });
            if w.waiting == 0 {
                if let Err(e) = self.poller.add(link.socket(), link.key) {
                    tracing::warn!("cannot watch a link for answers: {e}");
                }
            }
            w.waiting += 1;
        }
        drop(st);
        self.changed.notify_all();
    }

    fn unsent(&self, corr: u64) {
        let mut st = self.lock();
        if matches!(st.slots.get(&corr), Some(Slot::Sent { .. })) {
            // `finish` stops watching its link when it was the last request on it.
            self.finish(&mut st, corr);
            st.slots.insert(corr, Slot::Unsent);
        }
    }

    fn dropped(&self, corr: u64) {
        let mut st = self.lock();
        if let Some(slot @ Slot::Unsent) = st.slots.get_mut(&corr) {
            *slot = Slot::Undelivered;
            drop(st);
            self.wake();
        }
    }

    /// An answer from this endpoint to its own request; given back when
    /// nobody waits for it.
    pub(crate) fn answer_local(&self, corr: u64, frame: RawFrame) -> Result<(), RawFrame> {
        let mut st = self.lock();
        let Some(slot) = st.slots.get_mut(&corr) else {
            return Err(frame);
        };
        let Slot::Sent { key: None, peer } = *slot else {
            return Err(frame);
        };
        *slot = Slot::Answered {
            key: None,
            peer,
            frame,
        };
        drop(st);
        self.wake();
        Ok(())
    }

    /// Wakes every waiting thread, the reader included.
    fn wake(&self) {
        self.changed.notify_all();
        self.bell.ring();
    }

    /// Forgets a finished request (and stops watching its link when no
    /// other request waits on it).
    fn finish(&self, st: &mut State, corr: u64) -> Option<Slot> {
        let slot = st.slots.remove(&corr)?;
        let key = match &slot {
            Slot::Sent { key, .. } | Slot::Answered { key, .. } => *key,
            Slot::Gone { key, .. } => Some(*key),
            Slot::Unsent | Slot::Undelivered => None,
        };
        if let Some(key) = key {
            if let Some(w) = st.watched.get_mut(&key) {
                w.waiting = w.waiting.saturating_sub(1);
                if w.waiting == 0 {
                    self.poller.remove(w.link.socket());
                    st.watched.remove(&key);
                }
            }
        }
        Some(slot)
    }

    /// Waits until the request `corr` is answered, fails, or `deadline` passes.
    /// Gives the answer and who sent it.
    fn wait(&self, corr: u64, deadline: Instant) -> Result<(RawFrame, u64), Unanswered> {
        let mut st = self.lock();
        loop {
            match st.slots.get(&corr) {
                Some(Slot::Unsent | Slot::Sent { .. }) => {}
                Some(_) | None => {
                    return match self.finish(&mut st, corr) {
                        Some(Slot::Answered { frame, peer, .. }) => Ok((frame, peer)),
                        Some(Slot::Gone { peer, .. }) => Err(Unanswered::Gone(peer)),
                        _ => Err(Unanswered::Undelivered),
                    };
                }
            }
            let now = Instant::now();
            if now >= deadline {
                self.finish(&mut st, corr);
                return Err(Unanswered::Timeout);
            }
            // Read the answer sockets ourselves, unless another waiting
            // thread does. (Tried with the state locked: a reader lets go
            // before it takes the state to wake us, so we cannot miss it.)
            match self.reader.try_lock() {
                Ok(mut reader) => {
                    drop(st);
                    self.read_answers(&mut reader, deadline);
                    drop(reader);
                    st = self.lock();
                    self.changed.notify_all();
                }
                Err(_) => {
                    st = self.changed.wait_locked(st, deadline - now);
                }
            }
        }
    }

    /// Sleeps until an answer socket has something (or the bell rings, or
    /// `deadline`), then reads every ready one and hands out what came.
    fn read_answers(&self, reader: &mut Reader, deadline: Instant) {
        let Reader {
            buf,
            control,
            ready,
        } = reader;
        if buf.is_empty() {
            buf.resize(frame::MAX_FRAME, 0);
        }
        if let Err(e) = self.poller.wait(ready, Some(deadline)) {
            tracing::warn!("waiting for answers failed: {e}");
            return;
        }
        for &key in ready.iter() {
            if key == BELL {
                self.bell.clear();
                continue;
            }
            let Some(link) = self.lock().watched.get(&key).map(|w| w.link.clone()) else {
                continue;
            };
            let mut answers = Vec::new();
            let mut bad = 0;
            let mut closed = false;
            loop {
                match socket::recv_frame(link.socket(), buf, control) {
                    Ok(Received::Frame { len, fds }) => {
                        let bytes = &buf[..len];
                        match frame::check(bytes, fds.len()) {
                            Ok(header) if header.kind == Kind::Data && header.is_reply() => answers
                                .push(RawFrame {
                                    header,
                                    bytes: bytes.to_vec(),
                                    fds,
                                    view: None,
                                }),
                            Ok(_) => bad += 1,
                            Err(e) => {
                                tracing::warn!("dropped a malformed answer: {e}");
                                bad += 1;
                            }
                        }
                    }
                    Ok(Received::Truncated) => bad += 1,
                    Ok(Received::WouldBlock) => break,
                    Ok(Received::Closed) | Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
            self.hand_out(key, answers, bad, closed);
        }
    }

    /// Puts the answers read off link `key` in their slots; fails the
    /// requests waiting on it when it closed (or sent too much garbage).
    fn hand_out(&self, key: u64, answers: Vec<RawFrame>, bad: u32, closed: bool) {
        let mut st = self.lock();
        let mut cut = closed;
        if let Some(w) = st.watched.get_mut(&key) {
            w.bad = w.bad.saturating_add(bad);
            if w.bad >= MAX_BAD_FRAMES {
                tracing::warn!(
                    "a responder sent {} malformed answers; giving up on it",
                    w.bad
                );
                cut = true;
            }
        }
        for frame in answers {
            let corr = frame.header.correlation;
            if let Some(slot) = st.slots.get_mut(&corr) {
                if let Slot::Sent { key: Some(k), peer } = *slot {
                    if k == key {
                        *slot = Slot::Answered {
                            key: Some(key),
                            peer,
                            frame,
                        };
                    }
                }
            }
            // Anything else: the answer to a request that gave up waiting
            // (or a lie); dropped.
        }
        if cut {
            for slot in st.slots.values_mut() {
                if let Slot::Sent { key: Some(k), peer } = *slot {
                    if k == key {
                        *slot = Slot::Gone { key, peer };
                    }
                }
            }
            if let Some(w) = st.watched.get(&key) {
                self.poller.remove(w.link.socket());
            }
        }
        drop(st);
        self.changed.notify_all();
    }
}

impl Shared {
    /// Routes a request (as `route` would; its ticket rides with it and
    /// says where it went), giving up at `deadline`. Gives its selector as
    /// text, for the error when it turns out it went nowhere.
    pub(crate) fn request_route(
        &self,
        frame: super::outgoing::OutFrame,
        ticket_corr: u64,
        deadline: Instant,
    ) -> Result<String, RequestError> {
        let selector = frame.selector.to_string();
        if let Err(e) = self.route(frame, super::route::Call::Until(deadline)) {
            let mut st = self.requests.lock();
            self.requests.finish(&mut st, ticket_corr);
            return Err(RequestError::Send(e));
        }
        Ok(selector)
    }

    /// Waits until `deadline` for the answer to the routed request `corr`
    /// (to `selector`) and decodes it.
    fn request_wait<R: crate::MessageBox>(
        &self,
        corr: u64,
        selector: String,
        deadline: Instant,
    ) -> Result<Message<R>, RequestError> {
        let (raw, peer) = match self.requests.wait(corr, deadline) {
            Ok(answer) => answer,
            Err(Unanswered::Timeout) => return Err(RequestError::Timeout),
            Err(Unanswered::Gone(peer)) => {
                return Err(RequestError::ResponderGone(EndpointId(peer)))
            }
            Err(Unanswered::Undelivered) => {
                return Err(RequestError::Send(SendError::NoRoute(selector)))
            }
        };
        let origin = super::inbox::Origin::answer(peer);
        match super::receiver::decode_with::<R>(raw, &self.inbox.lent, &origin) {
            Ok(super::receiver::Decoded::Message(mut m)) => {
                m.source = EndpointId(peer);
                Ok(m)
            }
            Ok(super::receiver::Decoded::Skipped) => Err(RequestError::Answer(
                "the answer is of a type this endpoint does not know".into(),
            )),
            Ok(super::receiver::Decoded::Malformed(e)) => {
                Err(RequestError::Answer(format!("malformed answer: {e}")))
            }
            Err(e) => Err(RequestError::Answer(e.to_string())),
        }
    }
}

/// A request sent and not answered yet, from
/// [`EndpointSender::request_start`](crate::EndpointSender::request_start):
/// [`wait`](Self::wait) for its answer, a message of type `R`. It may be
/// moved to another thread to wait there. Dropping it gives up on the
/// answer (one that comes later is dropped). It keeps its endpoint open,
/// as a sender handle does.
#[must_use = "the answer is only read by `wait`"]
pub struct PendingRequest<R> {
    core: Arc<super::Core>,
    corr: u64,
    selector: String,
    /// Set once `wait` has finished the request's slot.
    done: bool,
    _answer: std::marker::PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for PendingRequest<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingRequest")
            .field("corr", &self.corr)
            .field("selector", &self.selector)
            .finish()
    }
}

impl<R: crate::MessageBox> PendingRequest<R> {
    pub(crate) fn new(core: Arc<super::Core>, corr: u64, selector: String) -> Self {
        PendingRequest {
            core,
            corr,
            selector,
            done: false,
            _answer: std::marker::PhantomData,
        }
    }

    /// Waits up to `timeout` for the answer, as
    /// [`EndpointSender::request`](crate::EndpointSender::request) does
    /// after sending: the answer, or [`RequestError::Timeout`],
    /// [`RequestError::ResponderGone`] (at once when the responder leaves),
    /// [`RequestError::Send`] with `NoRoute` when a request held for its
    /// `ttl` found nobody, or [`RequestError::Answer`]. An answer that came
    /// already is returned even with a zero `timeout`.
    pub fn wait(mut self, timeout: Duration) -> Result<Message<R>, RequestError> {
        self.done = true;
        let selector = std::mem::take(&mut self.selector);
        self.core
            .shared
            .request_wait(self.corr, selector, Instant::now() + timeout)
    }
}

impl<R> Drop for PendingRequest<R> {
    fn drop(&mut self) {
        if !self.done {
            let requests = &self.core.shared.requests;
            let mut st = requests.lock();
            requests.finish(&mut st, self.corr);
        }
    }
}

impl Ticket {
    /// The request's correlation id.
    pub(crate) fn corr(&self) -> u64 {
        self.corr
    }
}
