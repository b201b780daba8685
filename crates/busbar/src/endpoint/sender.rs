//! The sending half of an endpoint.

use super::outgoing::OutFrame;
use super::route::Call;
use super::{Core, EndpointId, EndpointInfo, EndpointStats};
use crate::error::SendError;
use crate::payload::MessageBox;
use crate::{Loan, Message, Selector};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// no match and no ttl it fails with [`SendError::NoRoute`]. Messages
    /// from one sender to one receiver arrive in the order they were sent.
    ///
    /// Each receiver's queue is bounded ([`Limits::link_buffer`](crate::Limits::link_buffer)).
    /// When one is full, the [`Backpressure`](crate::Backpressure) policy of the
    /// selector (or else of the endpoint) decides: `Block` (the default) waits
    /// for room, `DropNewest` skips that receiver and counts the drop,
    /// `FailFast` returns [`SendError::Full`]. A unicast goes to a matching
    /// receiver with room before it waits for a full one.
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
    /// Loans come from a pool of regions this endpoint keeps mapped (a
    /// region is lent again once every receiver has dropped its message).
    /// Worth it for large payloads; small ones travel faster by plain
    /// `send`, copied through the link's ring.
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
        self.core.shared.loans.lend(format, len)
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

    fn route(&self, msg: Message<T>, call: Call) -> Result<(), SendError> {
        let shared = &self.core.shared;
        shared.route(
            OutFrame::encode(
                msg,
                shared.options.limits.max_payload,
                &shared.loans,
                &shared.selectors,
            )?,
            call,
        )
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
        self.core
            .shared
            .directory
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .infos()
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
        self.core
            .shared
            .directory
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .count()
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
        let dir = self
            .core
            .shared
            .directory
            .read()
            .unwrap_or_else(|p| p.into_inner());
        dir.controller == Some(self.core.shared.id)
    }
}
