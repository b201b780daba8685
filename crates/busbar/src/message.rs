//! A message: a selector, a payload, and attachments.

use crate::{EndpointId, MemoryRegion, Object, Selector};

/// A message: where it goes, what it says, and what it carries along.
///
/// ```
/// use busbar::{Message, Selector};
/// let m = Message::new(Selector::unicast("moon"), String::from("hello"));
/// assert!(m.objects.is_empty() && m.memory_regions.is_empty());
/// ```
#[derive(Debug)]
pub struct Message<T> {
    /// Where it goes. On a received message, the selector the sender used (without its ttl).
    pub selector: Selector,
    /// What it says.
    pub payload: T,
    /// File descriptors that travel with it (objects plus regions: at most 253 in all).
    pub objects: Vec<Object>,
    /// Shared memory that travels with it.
    pub memory_regions: Vec<MemoryRegion>,
    /// On a received message, the endpoint that sent it, as the receiving
    /// side knows it from the data link it came on (the link's hello,
    /// checked against the process at the other end): not something the
    /// sender can put in the payload. Its [`EndpointInfo`](crate::EndpointInfo)
    /// is in the receiver's directory by the time the message is handed
    /// over, so `Selector::endpoint(m.source)` (or the sender's label)
    /// reaches it until it leaves. Ignored when sending; `Message::new`
    /// sets `EndpointId(0)`.
    pub source: EndpointId,
    /// On a received request: where and how to answer it.
    /// Boxed: requests are rare, and every message moves a few times on
    /// its way to the caller (a smaller `Message` moves faster).
    pub(crate) reply_to: Option<Box<crate::endpoint::ReplyTo>>,
}

impl<T> Message<T> {
    /// A message with no attachments.
    pub fn new(selector: Selector, payload: T) -> Message<T> {
        Message {
            selector,
            payload,
            objects: Vec::new(),
            memory_regions: Vec::new(),
            source: EndpointId(0),
            reply_to: None,
        }
    }

    /// Whether this received message is a request its sender waits for an
    /// answer to ([`EndpointSender::request`](crate::EndpointSender::request)):
    /// answer it with [`EndpointSender::reply`](crate::EndpointSender::reply).
    ///
    /// ```
    /// use busbar::{label, Message, Options, Selector};
    /// # let bus = format!("doc.is_request.{}", std::process::id());
    /// let (tx, mut rx) = busbar::join::<String, String>(Options::new(bus, label!("a"), "t"), None)?;
    /// tx.send(Message::new(Selector::unicast("a"), "just news".to_string()))?;
    /// let m = rx.recv(None)?;
    /// assert!(!m.is_request() && m.reply_handle().is_none());
    /// assert_eq!(m.source, tx.id());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_request(&self) -> bool {
        self.reply_to.is_some()
    }

    /// For a received request, what it takes to answer it later, once the
    /// message itself is gone (see [`EndpointSender::reply_with`](crate::EndpointSender::reply_with)).
    pub fn reply_handle(&self) -> Option<crate::ReplyHandle> {
        self.reply_to.as_deref().map(|to| crate::ReplyHandle {
            source: self.source,
            to: to.clone(),
        })
    }

    /// Adds an object (builder style).
    pub fn with_object(mut self, object: Object) -> Message<T> {
        self.objects.push(object);
        self
    }

    /// Adds a memory region (builder style).
    pub fn with_memory_region(mut self, region: MemoryRegion) -> Message<T> {
        self.memory_regions.push(region);
        self
    }
}
