//! A received frame opened up: its selector, attachments and a view of its
//! payload wherever it lies (in the frame, a mapped memfd, or a lent
//! region). Both `recv` (which decodes the view) and the borrowing
//! [`recv_with`](super::EndpointReceiver::recv_with) (which hands it out
//! as a [`Borrowed`]) start here.

use super::lent::{LentMaps, LentView};
use crate::frame::{self, FrameError, Locator};
use crate::link::RawFrame;
use crate::payload::TypeUuidBytes;
use crate::sync::Lock;
use crate::sys::{blob, memfd::Mapping};
use crate::{BytesMessage, MemoryRegion, Object, Selector, TypeUuid};
use std::os::fd::AsFd;
use std::sync::Mutex;

/// Where a received payload lies.
pub(crate) enum Payload {
    /// In the frame itself.
    Inline(RawFrame),
    /// In a sealed memfd, mapped read-only.
    Blob(Mapping),
    /// In a memory region (a loan, or a large payload), mapped.
    Lent(LentView),
}

impl Payload {
    /// Whether the bytes can no longer change: our own copy, or a memfd
    /// sealed against writes. (A region its sender can still write can.)
    pub(crate) fn stable(&self) -> bool {
        !matches!(self, Payload::Lent(_))
    }

    /// The payload's bytes (`None` for a lent one that lies outside its region).
    pub(crate) fn bytes(&mut self) -> Option<&[u8]> {
        match self {
            Payload::Inline(raw) => Some(raw.inline_payload()),
            Payload::Blob(m) => Some(m.bytes()),
            Payload::Lent(view) => Some(view.bytes()),
        }
    }
}

/// A checked frame, its descriptors adopted.
pub(crate) struct Opened {
    pub selector: Selector,
    pub type_uuid: TypeUuidBytes,
    pub objects: Vec<Object>,
    pub memory_regions: Vec<MemoryRegion>,
    pub payload: Payload,
}

/// Why a frame did not open.
pub(crate) enum Unopened {
    /// Well formed, but it cannot be taken (no address space for its payload).
    Skipped,
    /// Malformed in a way [`frame::check`] cannot see.
    Malformed(FrameError),
}

impl Opened {
    /// Decodes the selector, adopts the descriptors and finds the payload
    /// (a region holding it mapped, or found mapped, in `lent`).
    pub(crate) fn open(mut raw: RawFrame, lent: &Mutex<LentMaps>) -> Result<Opened, Unopened> {
        let h = raw.header.clone();
        let selector = frame::decode_selector(raw.selector()).map_err(Unopened::Malformed)?;
        let mut fds = std::mem::take(&mut raw.fds).into_iter();
        let objects: Vec<Object> = fds
            .by_ref()
            .take(h.n_objects as usize)
            .map(Object::from)
            .collect();
        let mut memory_regions = Vec::with_capacity(h.n_regions as usize);
        for fd in fds.by_ref().take(h.n_regions as usize) {
            let r = MemoryRegion::from_received_fd(fd)
                .map_err(|e| Unopened::Malformed(FrameError::Body(e.to_string())))?;
            memory_regions.push(r);
        }
        let len = usize::try_from(h.payload_len)
            .map_err(|_| Unopened::Malformed(FrameError::TooLarge(h.payload_len)))?;
        let missing =
            || Unopened::Malformed(FrameError::Body("the payload descriptor is missing".into()));
        let payload = if h.payload_in_fd() {
            let fd = fds.next().ok_or_else(missing)?;
            // Mapped read-only, decoded straight from the mapping; the
            // descriptor is closed right after mapping.
            match blob::map_sealed(fd.as_fd(), len) {
                Ok(mapping) => Payload::Blob(mapping),
                Err(e) if e.kind() == std::io::ErrorKind::OutOfMemory => {
                    // No address space (or map count) left for it: `mmap` said `ENOMEM`.
                    tracing::warn!("dropped a message of {len} bytes: {e}");
                    return Err(Unopened::Skipped);
                }
                Err(e) => {
                    return Err(Unopened::Malformed(FrameError::Body(format!(
                        "payload descriptor: {e}"
                    ))))
                }
            }
        } else if let Some(view) = raw.view.take() {
            // The link found it (by reference, or from its descriptor).
            Payload::Lent(view)
        } else if h.payload_in_region() {
            let fd = fds.next().ok_or_else(missing)?;
            let locator = Locator::decode(raw.inline_payload()).ok_or_else(|| {
                Unopened::Malformed(FrameError::Body("no payload locator".into()))
            })?;
            let view = lent
                .locked()
                .open(fd, &locator, len)
                .map_err(|e| Unopened::Malformed(FrameError::Body(format!("lent payload: {e}"))))?;
            Payload::Lent(view)
        } else if h.payload_by_ref() {
            return Err(Unopened::Malformed(FrameError::Body(
                "a payload by reference off its link".into(),
            )));
        } else {
            Payload::Inline(raw)
        };
        Ok(Opened {
            selector,
            type_uuid: h.type_uuid,
            objects,
            memory_regions,
            payload,
        })
    }
}

/// A message lent to [`recv_with`](super::EndpointReceiver::recv_with)'s
/// closure: its payload is read where it lies, in the link's shared-memory
/// ring, a mapped memfd, or the sender's lent region, and nothing is copied
/// unless you copy it.
///
/// Every message is handed over, whatever its type: look at
/// [`type_uuid`](Borrowed::type_uuid), or ask for the type you expect with
/// [`bytes`](Borrowed::bytes), [`as_str`](Borrowed::as_str) or
/// [`decode`](Borrowed::decode), which borrow from the payload where the
/// type allows (`&str`, `&[u8]` fields with `#[serde(borrow)]`).
///
/// [`bytes`](Borrowed::bytes) and [`payload`](Borrowed::payload) are the
/// bytes in place, in memory the sender can still write to (a misbehaving
/// one could change them while you read): treat them like bytes from a
/// socket, read once, check what you read. [`as_str`](Borrowed::as_str) and
/// [`decode`](Borrowed::decode) check what they return (UTF-8, the type's
/// shape), which proves nothing about bytes that can still change: where
/// the payload lies in such memory (a ring, a lent region) they first copy
/// it into private memory, once, and borrow from that copy.
#[derive(Debug)]
pub struct Borrowed<'a> {
    /// The selector it was sent with.
    pub selector: Selector,
    /// File descriptors that came with it (yours to keep).
    pub objects: Vec<Object>,
    /// Memory regions that came with it (yours to keep).
    pub memory_regions: Vec<MemoryRegion>,
    /// The endpoint that sent it (see [`Message::source`](crate::Message::source)).
    pub source: crate::EndpointId,
    /// For a request: how to answer it.
    reply_to: Option<super::ReplyTo>,
    type_uuid: TypeUuidBytes,
    payload: &'a [u8],
    /// Whether `payload` can no longer change (our copy, a sealed memfd).
    stable: bool,
    /// The private copy `as_str` and `decode` read from when it can.
    private: std::sync::OnceLock<Vec<u8>>,
    /// The region the payload lies in, when its sender lent it.
    lent: Option<std::sync::Arc<LentView>>,
}

impl<'a> Borrowed<'a> {
    pub(crate) fn new(
        selector: Selector,
        objects: Vec<Object>,
        memory_regions: Vec<MemoryRegion>,
        type_uuid: TypeUuidBytes,
        payload: &'a [u8],
        stable: bool,
        (source, reply_to): (crate::EndpointId, Option<super::ReplyTo>),
    ) -> Borrowed<'a> {
        Borrowed {
            selector,
            objects,
            memory_regions,
            source,
            reply_to,
            type_uuid,
            payload,
            stable,
            private: std::sync::OnceLock::new(),
            lent: None,
        }
    }

    /// The same message, its payload in the region `view` (`payload` is
    /// `view`'s bytes).
    pub(crate) fn in_region(mut self, view: std::sync::Arc<LentView>) -> Borrowed<'a> {
        self.lent = Some(view);
        self
    }

    /// Bytes to check and then use: the payload when it cannot change, else
    /// a private copy of it (made once).
    fn checked_bytes(&self) -> &[u8] {
        if self.stable {
            return self.payload;
        }
        self.private.get_or_init(|| self.payload.to_vec())
    }

    /// Whether this is a request its sender waits for an answer to (see
    /// [`EndpointSender::request`](crate::EndpointSender::request)).
    pub fn is_request(&self) -> bool {
        self.reply_to.is_some()
    }

    /// For a request, what it takes to answer it, after the closure too:
    /// keep it, and answer with
    /// [`EndpointSender::reply_with`](crate::EndpointSender::reply_with).
    ///
    /// ```
    /// use busbar::{label, BytesMessage, Message, Options, Selector};
    /// use std::time::Duration;
    /// # let bus = format!("doc.reply_handle.{}", std::process::id());
    /// let (me, mut rx) = busbar::join::<BytesMessage, BytesMessage>(Options::new(&bus, label!("sum"), "t"), None)?;
    /// let server = me.clone();
    /// let answering = std::thread::spawn(move || -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    ///     let (handle, sum) = rx.recv_with(None, |m| {
    ///         let sum: u32 = m.bytes().map_or(0, |(_, b)| b.iter().map(|&x| u32::from(x)).sum());
    ///         (m.reply_handle(), sum)
    ///     })?;
    ///     server.reply_with(&handle.expect("a request"), BytesMessage::new(0, sum.to_le_bytes().to_vec()))?;
    ///     Ok(())
    /// });
    /// let ask = Message::new(Selector::unicast("sum"), BytesMessage::new(0, vec![1, 2, 3]));
    /// let answer = me.request::<BytesMessage>(ask, Duration::from_secs(5))?;
    /// assert_eq!(answer.payload.data, 6u32.to_le_bytes());
    /// # answering.join().unwrap().unwrap();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reply_handle(&self) -> Option<crate::ReplyHandle> {
        self.reply_to.clone().map(|to| crate::ReplyHandle {
            source: self.source,
            to,
        })
    }

    /// The type id the sender gave the payload.
    pub fn type_uuid(&self) -> uuid::Uuid {
        uuid::Uuid::from_bytes(self.type_uuid)
    }

    /// The payload as encoded on the wire (postcard).
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// The payload as it is encoded on the wire (as [`payload`](Self::payload)),
    /// as [`Bytes`](crate::Bytes) that may outlive the closure, when it
    /// lies in shared memory its sender lent (a payload over 64 KiB, or
    /// one sent from a [`Loan`](crate::Loan)): the same memory, not a copy.
    /// They hold the sender's chunk while they live, and the sender can
    /// still write them (see [`Bytes`](crate::Bytes)). `None` for a payload
    /// that lies in the link's ring or in this process: copy
    /// [`payload`](Self::payload) to keep it.
    ///
    /// ```
    /// use busbar::{label, BytesMessage, Message, Options, Selector};
    /// # let bus = format!("doc.shared_payload.{}", std::process::id());
    /// let (tx, mut rx) = busbar::join::<BytesMessage, BytesMessage>(Options::new(bus, label!("a"), "t"), None)?;
    /// tx.send(Message::new(Selector::unicast("a"), BytesMessage::new(0, vec![7u8; 1 << 20])))?;
    /// let kept = rx.recv_with(None, |m| m.shared_payload())?.expect("lent");
    /// assert!(kept.is_shared());
    /// assert_eq!((kept.len(), kept[100_000]), ((1 << 20) + 4, 7));
    /// tx.send(Message::new(Selector::unicast("a"), BytesMessage::from("small")))?;
    /// assert!(rx.recv_with(None, |m| m.shared_payload())?.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shared_payload(&self) -> Option<crate::Bytes> {
        let view = self.lent.as_ref()?;
        crate::Bytes::shared(view.clone(), 0, view.len())
    }

    /// For a [`BytesMessage`]: its format tag and its bytes, in place.
    /// `None` for a payload of another type (or one that does not parse).
    ///
    /// ```
    /// use busbar::{label, BytesMessage, Message, Options, Selector};
    /// # let bus = format!("doc.bytes.{}", std::process::id());
    /// let (tx, mut rx) = busbar::join::<BytesMessage, BytesMessage>(Options::new(bus, label!("a"), "t"), None)?;
    /// tx.send(Message::new(Selector::unicast("a"), BytesMessage::new(9, b"abc".to_vec())))?;
    /// let (format, len) = rx.recv_with(None, |m| m.bytes().map(|(f, b)| (f, b.len())))?.unwrap();
    /// assert_eq!((format, len), (9, 3));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn bytes(&self) -> Option<(u16, &'a [u8])> {
        if self.type_uuid != BytesMessage::TYPE_UUID {
            return None;
        }
        let (format, rest) = postcard::take_from_bytes::<u16>(self.payload).ok()?;
        let (len, rest) = postcard::take_from_bytes::<u64>(rest).ok()?;
        let len = usize::try_from(len).ok()?;
        Some((format, rest.get(..len)?))
    }

    /// For a `String` payload: the text (in place when the payload cannot
    /// change, else from a private copy). `None` for another type (or text
    /// that is not UTF-8).
    ///
    /// ```
    /// use busbar::{label, Message, Options, Selector};
    /// # let bus = format!("doc.as_str.{}", std::process::id());
    /// let (tx, mut rx) = busbar::join::<String, String>(Options::new(bus, label!("a"), "t"), None)?;
    /// tx.send(Message::new(Selector::unicast("a"), "hello".to_string()))?;
    /// assert_eq!(rx.recv_with(None, |m| m.as_str().map(str::len))?, Some(5));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn as_str(&self) -> Option<&str> {
        if self.type_uuid != String::TYPE_UUID {
            return None;
        }
        postcard::from_bytes::<&str>(self.checked_bytes()).ok()
    }

    /// Decodes the payload as a `D`, borrowing from it where `D` borrows
    /// (in place when the payload cannot change, else from a private copy).
    /// `Ok(None)` when the payload is of another type; `Err` when it is a
    /// `D` that does not decode.
    ///
    /// ```
    /// use busbar::{label, Message, Options, Selector, TypeUuid, TypeUuidBytes};
    /// #[derive(serde::Serialize, serde::Deserialize, TypeUuid)]
    /// #[uuid = "5b0c3f0e-8d0a-4a53-9d8c-9b4f9b8e0c11"]
    /// struct Frame { id: u32, name: String }
    /// /// The same wire format, borrowing its text from the payload.
    /// #[derive(serde::Deserialize)]
    /// struct FrameView<'a> { id: u32, name: &'a str }
    /// impl TypeUuid for FrameView<'_> {
    ///     const TYPE_UUID: TypeUuidBytes = Frame::TYPE_UUID;
    /// }
    /// # let bus = format!("doc.decode.{}", std::process::id());
    /// let (tx, mut rx) = busbar::join::<Frame, Frame>(Options::new(bus, label!("a"), "t"), None)?;
    /// tx.send(Message::new(Selector::unicast("a"), Frame { id: 7, name: "seven".into() }))?;
    /// let (id, len) = rx.recv_with(None, |m| {
    ///     let view = m.decode::<FrameView>()?.expect("a Frame");
    ///     Ok::<_, busbar::CodecError>((view.id, view.name.len()))
    /// })??;
    /// assert_eq!((id, len), (7, 5));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decode<'b, D: TypeUuid + serde::Deserialize<'b>>(
        &'b self,
    ) -> Result<Option<D>, crate::CodecError> {
        if self.type_uuid != D::TYPE_UUID {
            return Ok(None);
        }
        postcard::from_bytes(self.checked_bytes())
            .map(Some)
            .map_err(|e| crate::CodecError::new(e.to_string()))
    }
}
