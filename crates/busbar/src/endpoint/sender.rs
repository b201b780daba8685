//! The sending half of an endpoint.

use super::outgoing::OutFrame;
use super::{Core, EndpointId, EndpointInfo};
use crate::error::SendError;
use crate::payload::MessageBox;
use crate::Message;
use std::marker::PhantomData;
use std::sync::Arc;

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
    /// no match and no ttl it fails with [`SendError::NoRoute`]. Blocks while a
    /// receiver's queue is full. Messages from one sender to one receiver
    /// arrive in the order they were sent.
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
        self.core.shared.route(OutFrame::encode(msg)?)
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
