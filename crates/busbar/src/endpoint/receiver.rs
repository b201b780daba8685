//! The receiving half of an endpoint.

use super::inbox::BELL;
use super::{Core, EndpointId};
use crate::error::RecvError;
use crate::frame::{self, FrameError, MAX_FRAME};
use crate::link::{RawFrame, Read, MAX_BAD_FRAMES};
use crate::payload::MessageBox;
use crate::sys::{blob, socket};
use crate::{MemoryRegion, Message, Object};
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Frames read from one link before looking at the others (fairness).
const BATCH: usize = 64;

/// Receives messages of type `R` sent to this endpoint.
pub struct EndpointReceiver<R> {
    core: Arc<Core>,
    /// Frames read, with the poller token of the link each came from
    /// ([`BELL`] for messages to ourselves).
    ready: VecDeque<(u64, RawFrame)>,
    buf: Vec<u8>,
    control: Vec<MaybeUninit<u8>>,
    tokens: Vec<u64>,
    _payload: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for EndpointReceiver<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointReceiver")
            .field("id", &EndpointId(self.core.shared.id))
            .finish()
    }
}

impl<R> Drop for EndpointReceiver<R> {
    fn drop(&mut self) {
        self.core.shared.inbox.close();
    }
}

impl<R: MessageBox> EndpointReceiver<R> {
    pub(crate) fn new(core: Arc<Core>) -> Self {
        EndpointReceiver {
            core,
            ready: VecDeque::new(),
            buf: vec![0; MAX_FRAME],
            control: socket::recv_control_space(),
            tokens: Vec::new(),
            _payload: PhantomData,
        }
    }

    /// Waits for the next message, up to `timeout` (`None`: as long as it takes).
    ///
    /// Messages of a type `R` does not know are skipped. A message of a known
    /// type whose payload does not decode is dropped and reported as
    /// [`RecvError::Decode`]; the next call goes on with the next message.
    ///
    /// ```
    /// use std::time::Duration;
    /// # let bus = format!("doc.recv.{}", std::process::id());
    /// let (_s, mut receiver) = busbar::join::<String, String>(busbar::Options::new(bus, busbar::label!("a"), "t"), None)?;
    /// let err = receiver.recv(Some(Duration::from_millis(10)));
    /// assert!(matches!(err, Err(busbar::RecvError::Timeout)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv(&mut self, timeout: Option<Duration>) -> Result<Message<R>, RecvError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(m) = self.next_ready()? {
                return Ok(m);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(RecvError::Timeout);
            }
            self.fill(deadline)?;
        }
    }

    /// Takes a message that is already here, without waiting.
    /// [`RecvError::Empty`] when there is none.
    ///
    /// ```
    /// # let bus = format!("doc.try_recv.{}", std::process::id());
    /// let (_s, mut receiver) = busbar::join::<String, String>(busbar::Options::new(bus, busbar::label!("a"), "t"), None)?;
    /// assert!(matches!(receiver.try_recv(), Err(busbar::RecvError::Empty)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_recv(&mut self) -> Result<Message<R>, RecvError> {
        loop {
            if let Some(m) = self.next_ready()? {
                return Ok(m);
            }
            if !self.fill(Some(Instant::now()))? {
                return Err(RecvError::Empty);
            }
        }
    }

    /// This endpoint's id.
    pub fn id(&self) -> EndpointId {
        EndpointId(self.core.shared.id)
    }

    /// Decodes frames already read until one is a message for us.
    fn next_ready(&mut self) -> Result<Option<Message<R>>, RecvError> {
        while let Some((token, raw)) = self.ready.pop_front() {
            let counters = &self.core.shared.counters;
            let max = self.core.shared.options.limits.max_payload;
            let decoded = if raw.header.payload_len > max {
                // Over this endpoint's own limit: dropped before a byte of it is read.
                Decoded::Malformed(FrameError::TooLarge(raw.header.payload_len))
            } else {
                decode(raw)?
            };
            match decoded {
                Decoded::Message(m) => {
                    counters.received.fetch_add(1, Ordering::Relaxed);
                    return Ok(Some(m));
                }
                Decoded::Skipped => {}
                Decoded::Malformed(e) => {
                    counters.malformed.fetch_add(1, Ordering::Relaxed);
                    if self.core.shared.inbox.malformed(token, e) {
                        counters.links_cut.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        Ok(None)
    }

    /// Waits for input until `deadline` and reads what came. Whether anything was read.
    fn fill(&mut self, deadline: Option<Instant>) -> Result<bool, RecvError> {
        let inbox = &self.core.shared.inbox;
        inbox.poller.wait(&mut self.tokens, deadline)?;
        for &token in &self.tokens {
            if token == BELL {
                inbox.bell.clear();
                self.ready.extend(
                    inbox
                        .local
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .drain(..)
                        .map(|f| (BELL, f)),
                );
                continue;
            }
            let mut links = inbox.links.lock().unwrap_or_else(|p| p.into_inner());
            let Some(link) = links.get_mut(&token) else {
                continue;
            };
            let counters = &self.core.shared.counters;
            let bad_before = link.bad_frames();
            let mut closed = false;
            for _ in 0..BATCH {
                match link.read(&mut self.buf, &mut self.control) {
                    Read::Frame(f) => self.ready.push_back((token, f)),
                    Read::Nothing => {}
                    Read::Empty => break,
                    Read::Closed => {
                        closed = true;
                        break;
                    }
                }
            }
            let bad = link.bad_frames() - bad_before;
            counters
                .malformed
                .fetch_add(u64::from(bad), Ordering::Relaxed);
            if closed {
                if link.bad_frames() >= MAX_BAD_FRAMES {
                    counters.links_cut.fetch_add(1, Ordering::Relaxed);
                }
                inbox.poller.remove(link.as_fd());
                links.remove(&token);
            }
        }
        Ok(!self.ready.is_empty())
    }
}

/// What became of a frame the links delivered.
pub(crate) enum Decoded<R> {
    /// A message for the application.
    Message(Message<R>),
    /// Well formed, but nothing for this receiver: a type `R` does not know,
    /// or a payload too large to buffer. Logged and dropped.
    Skipped,
    /// Malformed in a way [`frame::check`] cannot see (a bad selector, a
    /// descriptor that is not what the header says). Dropped; the caller
    /// counts it against the link it came from.
    Malformed(FrameError),
}

/// Turns a checked frame into a message. `Err` only when the payload is of
/// a type `R` knows but does not decode ([`RecvError::Decode`]).
pub(crate) fn decode<R: MessageBox>(mut raw: RawFrame) -> Result<Decoded<R>, RecvError> {
    let h = raw.header.clone();
    let selector = match frame::decode_selector(raw.selector()) {
        Ok(s) => s,
        Err(e) => return Ok(Decoded::Malformed(e)),
    };
    let mut fds = std::mem::take(&mut raw.fds).into_iter();
    let objects: Vec<Object> = fds
        .by_ref()
        .take(h.n_objects as usize)
        .map(Object::from)
        .collect();
    let mut memory_regions = Vec::with_capacity(h.n_regions as usize);
    for fd in fds.by_ref().take(h.n_regions as usize) {
        match MemoryRegion::from_received_fd(fd) {
            Ok(r) => memory_regions.push(r),
            Err(e) => return Ok(Decoded::Malformed(FrameError::Body(e.to_string()))),
        }
    }
    let spilled;
    let payload: &[u8] = if h.payload_in_fd() {
        let Some(fd) = fds.next() else {
            return Ok(Decoded::Malformed(FrameError::Body(
                "the payload descriptor is missing".into(),
            )));
        };
        let len = match usize::try_from(h.payload_len) {
            Ok(len) => len,
            Err(_) => return Ok(Decoded::Malformed(FrameError::TooLarge(h.payload_len))),
        };
        match blob::read_sealed(std::os::fd::AsFd::as_fd(&fd), len) {
            Ok(bytes) => {
                spilled = bytes;
                &spilled
            }
            Err(e) if e.kind() == std::io::ErrorKind::OutOfMemory => {
                tracing::warn!("dropped a message of {len} bytes: {e}");
                return Ok(Decoded::Skipped);
            }
            Err(e) => {
                return Ok(Decoded::Malformed(FrameError::Body(format!(
                    "payload descriptor: {e}"
                ))))
            }
        }
    } else {
        raw.inline_payload()
    };
    match R::decode(h.type_uuid, payload)? {
        Some(payload) => Ok(Decoded::Message(Message {
            selector,
            payload,
            objects,
            memory_regions,
        })),
        None => {
            tracing::debug!(type_id = %uuid::Uuid::from_bytes(h.type_uuid), "skipped a message of a type this receiver does not know");
            Ok(Decoded::Skipped)
        }
    }
}
