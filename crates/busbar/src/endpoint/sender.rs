//! The sending half of an endpoint.

use super::outgoing::OutFrame;
use super::request::PendingRequest;
use super::route::Call;
use super::{Core, EndpointId, EndpointInfo, EndpointStats};
use crate::error::{RequestError, SendError};
use crate::link::{SendFailure, Wait};
use crate::payload::MessageBox;
use crate::sync::ReadWrite;
use crate::sys::socket;
use crate::{Backpressure, Loan, Message, Selector, SelectorMode};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long [`EndpointSender::reply`] waits for room (under `Block`) when
/// the requester has left that many answers unread.
const REPLY_ROOM_WAIT: Duration = Duration::from_secs(1);

/// Sends messages of type `T` on the bus. Cheap to clone; every clone sends
/// from the same endpoint, from any thread.
pub struct EndpointSender<T> {
    core: Arc<Core>,
    _payload: PhantomData<fn(T)>,
}

impl<T> Clone for EndpointSender<T> {
    fn clone(&self) -> Self {
        EndpointSender {
            core: self.core.clone(),
            _payload: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for EndpointSender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointSender")
            .field("id", &self.id())
            .finish()
    }
}

impl<T: MessageBox> EndpointSender<T> {
    pub(crate) fn new(core: Arc<Core>) -> Self {
        EndpointSender {
            core,
            _payload: PhantomData,
        }
    }

    /// Sends a message to the endpoints its selector picks: one of them for
    /// unicast (round-robin among the matches), all of them for multicast
    /// (this endpoint included, when its own label matches).
    ///
    /// `Ok` means the message is in the receivers' queues, or, when nobody
    /// matches and the selector has a `ttl`, waiting here for a match. With
    /// no match and no ttl, a unicast fails with [`SendError::NoRoute`]; a
    /// multicast goes to nobody and returns `Ok` (publish–subscribe: a
    /// message nobody listens to is no failure), unless its selector
    /// [requires a receiver](Selector::require_receiver). Messages
    /// from one sender to one receiver arrive in the order they were sent.
    ///
    /// Each receiver's queue is bounded ([`Limits::link_buffer`](crate::Limits::link_buffer)).
    /// When one is full, the [`Backpressure`](crate::Backpressure) policy of the
    /// selector (or else of the endpoint) decides: `Block` (the default) waits
    /// for room, `DropNewest` skips that receiver and counts the drop,
    /// `FailFast` returns [`SendError::Full`]. A unicast goes to a matching
    /// receiver with room before it waits for a full one. This endpoint's
    /// own queue (a message to itself) is bounded and waited for the same
    /// way, for as long as another thread may receive from it; when the
    /// thread sending is the one receiving (it sends from a
    /// [`recv_with`](crate::EndpointReceiver::recv_with) closure), waiting
    /// could never end and the send fails with [`SendError::WouldDeadlock`].
    ///
    /// ```
    /// use busbar::{label, Message, Options, Selector, SendError};
    /// # let bus = format!("doc.send.{}", std::process::id());
    /// let (sender, _receiver) = busbar::join::<String, String>(Options::new(bus, label!("a"), "t"), None)?;
    /// let err = sender.send(Message::new(Selector::unicast("nobody"), "x".to_string()));
    /// assert!(matches!(err, Err(SendError::NoRoute(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send(&self, msg: Message<T>) -> Result<(), SendError> {
        self.route(msg, Call::Send)
    }

    /// Like [`send`](Self::send), but waits at most `timeout` for a full
    /// receiver to make room; then fails with [`SendError::Full`] (for a
    /// multicast, the receivers that had room have the message).
    ///
    /// ```
    /// use busbar::{label, Message, Options, Selector};
    /// use std::time::Duration;
    /// # let bus = format!("doc.send_timeout.{}", std::process::id());
    /// let (sender, _r) = busbar::join::<String, String>(Options::new(bus, label!("a"), "t"), None)?;
    /// sender.send_timeout(Message::new(Selector::unicast("a"), "hi".to_string()), Duration::from_millis(100))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_timeout(&self, msg: Message<T>, timeout: Duration) -> Result<(), SendError> {
        self.route(msg, Call::Until(Instant::now() + timeout))
    }

    /// Like [`send`](Self::send), but never waits for a full receiver: fails
    /// with [`SendError::Full`] instead (or, under `DropNewest`, drops).
    ///
    /// ```
    /// use busbar::{label, Message, Options, Selector, SendError};
    /// # let bus = format!("doc.try_send.{}", std::process::id());
    /// let (sender, _r) = busbar::join::<String, String>(Options::new(bus, label!("a"), "t"), None)?;
    /// match sender.try_send(Message::new(Selector::unicast("a"), "hi".to_string())) {
    ///     Ok(()) | Err(SendError::Full { .. }) => {}
    ///     Err(e) => return Err(e.into()),
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_send(&self, msg: Message<T>) -> Result<(), SendError> {
        self.route(msg, Call::Try)
    }

    /// Lends `len` bytes of shared memory to fill in place and send with
    /// [`send_loan`](Self::send_loan): the zero-copy send. Receivers map
    /// the same memory, so nothing is copied on the way, however large the
    /// message; it arrives as a [`BytesMessage`](crate::BytesMessage) with
    /// format tag `format`.
    ///
    /// Loans are chunks of a pool of regions this endpoint keeps mapped (a
    /// chunk is lent again once every receiver has dropped its message); a
    /// loan shorter than 512 bytes is private memory, copied into the
    /// link's ring when sent (cheaper than a reference at that size).
    /// The first loan from a region a receiver has not seen carries the
    /// region's descriptor; later ones travel through the link's ring as a
    /// small reference. When every chunk of the size is held (receivers are
    /// behind), `loan` waits for one under [`Backpressure::Block`], at most
    /// a second, then takes new memory.
    ///
    /// ```
    /// use busbar::{label, BytesMessage, Options, Selector};
    /// # let bus = format!("doc.send_loan.{}", std::process::id());
    /// let (sender, mut receiver) = busbar::join::<BytesMessage, BytesMessage>(Options::new(bus, label!("a"), "t"), None)?;
    /// let mut loan = sender.loan(1, 4 << 20)?;
    /// loan.as_mut_slice()[..5].copy_from_slice(b"hello");
    /// sender.send_loan(Selector::unicast("a"), loan)?;
    /// receiver.recv_with(None, |m| assert_eq!(&m.bytes().unwrap().1[..5], b"hello"))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn loan(&self, format: u16, len: usize) -> Result<Loan, SendError> {
        let shared = &self.core.shared;
        // A loan waits for room in the pool as a send waits for room in a link.
        let wait = match shared.options.backpressure {
            Backpressure::Block => Wait::Forever,
            _ => Wait::No,
        };
        shared.loans.lend(format, len, wait)
    }

    /// [`loan`](Self::loan) when it need not wait: a chunk that is free
    /// now (or new memory while the pool has room); `Ok(None)` when every
    /// chunk of the size is held by receivers, where `loan` would wait.
    /// Takes no system call for a free chunk: for a binding that lends
    /// with its interpreter lock held and lets go of it only to wait.
    ///
    /// ```
    /// use busbar::{label, BytesMessage, Options, Selector};
    /// # let bus = format!("doc.try_loan.{}", std::process::id());
    /// let (sender, mut receiver) = busbar::join::<BytesMessage, BytesMessage>(Options::new(bus, label!("a"), "t"), None)?;
    /// let mut loan = sender.try_loan(1, 1 << 20)?.expect("the pool has room");
    /// loan.as_mut_slice()[..2].copy_from_slice(b"hi");
    /// sender.send_loan(Selector::unicast("a"), loan)?;
    /// receiver.recv_with(None, |m| assert_eq!(&m.bytes().unwrap().1[..2], b"hi"))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_loan(&self, format: u16, len: usize) -> Result<Option<Loan>, SendError> {
        self.core.shared.loans.try_lend(format, len)
    }

    /// Sends a [`Loan`] to the endpoints `selector` picks, as
    /// [`send`](Self::send) does (same routing, backpressure and `ttl`).
    /// Every receiver maps the same memory: a multicast shares one copy.
    pub fn send_loan(&self, selector: Selector, loan: Loan) -> Result<(), SendError> {
        let shared = &self.core.shared;
        shared.route(
            OutFrame::from_loan(selector, loan, shared.options.limits.max_payload)?,
            Call::Send,
        )
    }

    /// Sends `msg` as a request and waits, up to `timeout`, for the answer
    /// to it (the receiver answers with [`reply`](Self::reply)): the
    /// message an [`EndpointReceiver`](crate::EndpointReceiver) of `R`
    /// would get, its [`source`](Message::source) the endpoint that answered.
    /// It is [`request_start`](Self::request_start) and
    /// [`PendingRequest::wait`] in one call.
    ///
    /// The request is routed as [`send`](Self::send) routes a unicast (a
    /// multicast selector is refused: a request goes to one endpoint), and
    /// with its `ttl` waits for a match; `timeout` bounds the whole call,
    /// waiting for room in a full receiver included (under
    /// `Backpressure::DropNewest` a request to a full receiver fails with
    /// `Full` rather than being dropped). The answer is matched to the
    /// request by a correlation id in the frame's header and comes back on
    /// the request's own link, so it never reaches this endpoint's
    /// receiver, and other messages keep arriving there as usual. Any
    /// number of threads may wait for answers at once.
    ///
    /// When the endpoint that got the request leaves or dies before it
    /// answers, the call fails at once with [`RequestError::ResponderGone`].
    ///
    /// ```
    /// use busbar::{label, Message, Options, Selector};
    /// use std::time::Duration;
    /// # let bus = format!("doc.request.{}", std::process::id());
    /// let (client, _client_rx) = busbar::join::<String, String>(Options::new(&bus, label!("client"), "t"), None)?;
    /// let (server, mut server_rx) = busbar::join::<String, String>(Options::new(&bus, label!("upper"), "t"), None)?;
    /// let answering = std::thread::spawn(move || -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    ///     let question = server_rx.recv(None)?;
    ///     server.reply(&question, question.payload.to_uppercase())?;
    ///     Ok(())
    /// });
    /// let to_upper = Selector::unicast("upper").ttl(Duration::from_secs(5));
    /// let answer = client.request::<String>(Message::new(to_upper, "hi".to_string()), Duration::from_secs(5))?;
    /// assert_eq!(answer.payload, "HI");
    /// # answering.join().unwrap().unwrap();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn request<R: MessageBox>(
        &self,
        msg: Message<T>,
        timeout: Duration,
    ) -> Result<Message<R>, RequestError> {
        let deadline = Instant::now() + timeout;
        self.request_start::<R>(msg, timeout)?
            .wait(deadline.saturating_duration_since(Instant::now()))
    }

    /// Sends `msg` as a request and returns without waiting for the
    /// answer: wait for it with [`PendingRequest::wait`] (on this thread or
    /// another). Routing is as for [`request`](Self::request); `timeout`
    /// bounds it (waiting for room in a full receiver).
    ///
    /// When this returns, the request is in its receiver's queue (or, with
    /// a `ttl` and no match yet, held here like a message), in order with
    /// this endpoint's messages: what this thread sends next to the same
    /// receiver arrives after the request, and what it sent before, ahead
    /// of it. So a thread can send a stream of messages and requests in
    /// order and leave the waiting to others. Dropping the
    /// [`PendingRequest`] gives up on the answer (the request stays sent).
    ///
    /// ```
    /// use busbar::{label, Message, Options, Selector};
    /// use std::time::Duration;
    /// # let bus = format!("doc.request_start.{}", std::process::id());
    /// let (me, mut rx) = busbar::join::<u32, u32>(Options::new(&bus, label!("squares"), "t"), None)?;
    /// let to_me = Selector::unicast("squares");
    /// me.send(Message::new(to_me.clone(), 1))?;
    /// let pending = me.request_start::<u32>(Message::new(to_me.clone(), 12), Duration::from_secs(5))?;
    /// me.send(Message::new(to_me, 2))?;
    /// // The receiver gets them in the order they were sent.
    /// let got: Vec<_> = (0..3).map(|_| rx.recv(None)).collect::<Result<_, _>>()?;
    /// assert_eq!(got.iter().map(|m| m.payload).collect::<Vec<_>>(), [1, 12, 2]);
    /// me.reply(&got[1], 144)?;
    /// assert_eq!(pending.wait(Duration::from_secs(5))?.payload, 144);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn request_start<R: MessageBox>(
        &self,
        mut msg: Message<T>,
        timeout: Duration,
    ) -> Result<PendingRequest<R>, RequestError> {
        if msg.selector.mode == SelectorMode::Multicast && msg.selector.endpoint.is_none() {
            return Err(RequestError::Send(SendError::InvalidSelector(
                "a request goes to one endpoint: use a unicast selector".into(),
            )));
        }
        let shared = &self.core.shared;
        let policy = msg
            .selector
            .backpressure
            .unwrap_or(shared.options.backpressure);
        if policy == Backpressure::DropNewest {
            msg.selector.backpressure = Some(Backpressure::FailFast);
        }
        let deadline = Instant::now() + timeout;
        let ticket = shared.requests.open();
        let corr = ticket.corr();
        let wait = shared.wait_for(&msg.selector, Call::Until(deadline));
        let frame = match OutFrame::encode(
            msg,
            shared.options.limits.max_payload,
            &shared.loans,
            &shared.selectors,
            wait,
        ) {
            Ok(f) => f.into_request(ticket),
            // The ticket is dropped: the request never went anywhere.
            Err(e) => return Err(RequestError::Send(e)),
        };
        let selector = shared.request_route(frame, corr, deadline)?;
        Ok(PendingRequest::new(self.core.clone(), corr, selector))
    }

    /// Answers a request this endpoint received (see
    /// [`request`](Self::request) and [`Message::is_request`]) with
    /// `payload`: it goes back to the requester on the link the request
    /// came on, matched to it by its correlation id. Fails with
    /// [`SendError::NotARequest`] for a message that is not a request, and
    /// with [`SendError::NoRoute`] when the requester has left. An answer to
    /// a requester that stopped waiting (its timeout ran out) is dropped
    /// there. Each request takes one answer; more are dropped.
    ///
    /// Waiting for room, when the requester has left many answers unread:
    /// under `Backpressure::Block` (the default) for up to a second, then
    /// [`SendError::Full`]; under the other policies not at all.
    ///
    /// ```
    /// use busbar::{label, Message, Options, Selector};
    /// use std::time::Duration;
    /// # let bus = format!("doc.reply.{}", std::process::id());
    /// let (me, mut rx) = busbar::join::<u32, u32>(Options::new(&bus, label!("squares"), "t"), None)?;
    /// let server = me.clone();
    /// let answering = std::thread::spawn(move || -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    ///     let m = rx.recv(None)?;
    ///     assert!(m.is_request());
    ///     server.reply(&m, m.payload * m.payload)?;
    ///     Ok(())
    /// });
    /// let answer = me.request::<u32>(Message::new(Selector::unicast("squares"), 12), Duration::from_secs(5))?;
    /// assert_eq!((answer.payload, answer.source), (144, me.id()));
    /// # answering.join().unwrap().unwrap();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reply<Q>(&self, request: &Message<Q>, payload: T) -> Result<(), SendError> {
        match request.reply_handle() {
            Some(handle) => self.reply_with(&handle, payload),
            None => Err(SendError::NotARequest),
        }
    }

    /// Answers the request `handle` stands for, as [`reply`](Self::reply)
    /// does: for a request lent by
    /// [`recv_with`](crate::EndpointReceiver::recv_with)
    /// ([`Borrowed::reply_handle`](crate::Borrowed::reply_handle)), or one
    /// answered after its message was dropped.
    pub fn reply_with(&self, handle: &super::ReplyHandle, payload: T) -> Result<(), SendError> {
        let to = &handle.to;
        let shared = &self.core.shared;
        let selector = Selector::endpoint(handle.source);
        let gone = || SendError::NoRoute(selector.to_string());
        let frame = OutFrame::encode(
            Message::new(selector.clone(), payload),
            shared.options.limits.max_payload,
            &shared.loans,
            &shared.selectors,
            Wait::Until(Instant::now() + REPLY_ROOM_WAIT),
        )?
        .into_reply(to.corr);
        match &to.path {
            super::ReplyPath::Local => {
                let (raw, own) = frame.local_copy()?;
                if shared.requests.answer_local(to.corr, raw).is_err() {
                    // Nobody waits for it any more: dropped, its counts given back.
                    frame.return_counts(own);
                }
                Ok(())
            }
            super::ReplyPath::Link(back) => {
                let Some(fd) = back.upgrade() else {
                    return Err(gone());
                };
                let wait = match shared.options.backpressure {
                    Backpressure::Block => Wait::Until(Instant::now() + REPLY_ROOM_WAIT),
                    _ => Wait::No,
                };
                match frame.write_back(std::os::fd::AsFd::as_fd(&*fd), wait) {
                    Ok(()) => {
                        shared
                            .counters
                            .sent
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        Ok(())
                    }
                    Err(SendFailure::Full) => Err(SendError::Full {
                        delivered: 0,
                        full: 1,
                    }),
                    Err(SendFailure::Io(e)) if socket::is_peer_gone(&e) => Err(gone()),
                    Err(SendFailure::Io(e)) => Err(e.into()),
                }
            }
        }
    }

    fn route(&self, msg: Message<T>, call: Call) -> Result<(), SendError> {
        let shared = &self.core.shared;
        let wait = shared.wait_for(&msg.selector, call);
        shared.route(
            OutFrame::encode(
                msg,
                shared.options.limits.max_payload,
                &shared.loans,
                &shared.selectors,
                wait,
            )?,
            call,
        )
    }
}

impl EndpointSender<crate::BytesMessage> {
    /// Like [`try_send`](Self::try_send) with a
    /// [`BytesMessage`](crate::BytesMessage) of format tag `format` and
    /// bytes `data`, copied into a buffer this endpoint keeps for the
    /// purpose: a stream of small sends allocates no buffer per message
    /// (as `BytesMessage::new(format, data.to_vec())` does). The language
    /// bindings' path for bytes they cannot hand over.
    ///
    /// ```
    /// use busbar::{label, BytesMessage, Options, Selector};
    /// # let bus = format!("doc.try_send_bytes.{}", std::process::id());
    /// let (sender, mut receiver) = busbar::join::<BytesMessage, BytesMessage>(Options::new(bus, label!("a"), "t"), None)?;
    /// for text in ["one", "two"] {
    ///     sender.try_send_bytes(Selector::unicast("a"), 7, text.as_bytes())?;
    /// }
    /// for text in ["one", "two"] {
    ///     receiver.recv_with(None, |m| assert_eq!(m.bytes(), Some((7, text.as_bytes()))))?;
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_send_bytes(
        &self,
        selector: Selector,
        format: u16,
        data: &[u8],
    ) -> Result<(), SendError> {
        let shared = &self.core.shared;
        let mut buffer = shared.spare.take();
        buffer.extend_from_slice(data);
        let msg = Message::new(selector, crate::BytesMessage::new(format, buffer));
        let wait = shared.wait_for(&msg.selector, Call::Try);
        let frame = OutFrame::encode(
            msg,
            shared.options.limits.max_payload,
            &shared.loans,
            &shared.selectors,
            wait,
        )?;
        // The buffer comes back for the next call, unless the frame waits.
        shared.route_then(frame, Call::Try, |frame| {
            shared.spare.give(frame.take_payload())
        })
    }
}

impl<T> EndpointSender<T> {
    /// This endpoint's id.
    pub fn id(&self) -> EndpointId {
        EndpointId(self.core.shared.id)
    }

    /// The endpoints on the bus as this endpoint currently knows them (itself included).
    ///
    /// ```
    /// # let bus = format!("doc.endpoints.{}", std::process::id());
    /// let (sender, _r) = busbar::join::<String, String>(busbar::Options::new(bus, busbar::label!("a"), "t"), None)?;
    /// let me = sender.endpoints().into_iter().find(|e| e.id == sender.id()).unwrap();
    /// assert!(me.is_controller); // the first endpoint on a bus hosts its controller
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn endpoints(&self) -> Vec<EndpointInfo> {
        self.core.shared.directory.read_locked().infos()
    }

    /// How many endpoints [`endpoints`](EndpointSender::endpoints) would
    /// list, without building the list: for polling until a bus has grown
    /// to some size (the list holds a record per endpoint; this is a count).
    ///
    /// ```
    /// # let bus = format!("doc.count.{}", std::process::id());
    /// let (sender, _r) = busbar::join::<String, String>(busbar::Options::new(bus, busbar::label!("a"), "t"), None)?;
    /// assert_eq!(sender.endpoint_count(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn endpoint_count(&self) -> usize {
        self.core.shared.directory.read_locked().count()
    }

    /// How many messages sent with a `ttl` are waiting here for a matching
    /// endpoint. They live in this process: if the endpoint is dropped (or
    /// the process exits) before a match joins, they are dropped with it, so
    /// wait for this to reach zero first when that matters.
    ///
    /// ```
    /// use busbar::{label, Message, Options, Selector};
    /// use std::time::Duration;
    /// # let bus = format!("doc.pending.{}", std::process::id());
    /// let (sender, _r) = busbar::join::<String, String>(Options::new(bus, label!("a"), "t"), None)?;
    /// let later = Selector::unicast("late-joiner").ttl(Duration::from_secs(60));
    /// sender.send(Message::new(later, "wait for me".to_string()))?;
    /// assert_eq!(sender.pending(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pending(&self) -> usize {
        self.core.shared.pending_count()
    }

    /// This endpoint's counters: messages sent, dropped and received, and how
    /// far behind each receiver it sends to is.
    ///
    /// ```
    /// # let bus = format!("doc.stats.{}", std::process::id());
    /// let (sender, _r) = busbar::join::<String, String>(busbar::Options::new(bus, busbar::label!("a"), "t"), None)?;
    /// let stats = sender.stats();
    /// assert_eq!((stats.sent, stats.dropped_full), (0, 0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stats(&self) -> EndpointStats {
        self.core.shared.stats()
    }

    /// Whether this endpoint hosts the bus controller right now.
    pub fn is_controller(&self) -> bool {
        let dir = self.core.shared.directory.read_locked();
        dir.controller == Some(self.core.shared.id)
    }
}
