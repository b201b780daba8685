//! Outgoing messages: encoded once, routed by the directory, written to
//! each chosen receiver's link, or held until their `ttl` if nobody matches.

use super::directory::Directory;
use super::Shared;
use crate::error::SendError;
use crate::frame::{self, Header, Kind, FLAG_PAYLOAD_IN_FD};
use crate::link::{OutLink, RawFrame};
use crate::payload::MessageBox;
use crate::sys::{blob, socket};
use crate::{MemoryRegion, Message, Selector};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// A message encoded for the wire, ready to be written to any number of links.
#[derive(Debug)]
pub(crate) struct OutFrame {
    pub selector: Selector,
    header: Header,
    selector_bytes: Vec<u8>,
    /// The in-line payload (empty when it spilled into `spill`).
    payload: Vec<u8>,
    objects: Vec<OwnedFd>,
    regions: Vec<MemoryRegion>,
    spill: Option<OwnedFd>,
    /// Whether the regions' own counts (those of the handles in the
    /// message) are still here to give to the first receiver.
    own_counts: AtomicBool,
}

impl Drop for OutFrame {
    fn drop(&mut self) {
        if !*self.own_counts.get_mut() {
            for r in &mut self.regions {
                r.hand_over_count();
            }
        }
    }
}

impl OutFrame {
    /// Encodes a message.
    pub(crate) fn encode<T: MessageBox>(msg: Message<T>) -> Result<OutFrame, SendError> {
        let depth = msg.selector.label_op.depth();
        if depth > crate::MAX_DEPTH {
            return Err(SendError::InvalidSelector(format!(
                "nested {depth} deep, at most {} can travel",
                crate::MAX_DEPTH
            )));
        }
        let selector_bytes = frame::encode_selector(&msg.selector);
        if selector_bytes.len() > frame::MAX_SELECTOR {
            return Err(SendError::InvalidSelector(format!(
                "{} bytes of text, at most {} can travel",
                selector_bytes.len(),
                frame::MAX_SELECTOR
            )));
        }
        let mut payload = Vec::new();
        msg.payload.encode_into(&mut payload)?;
        let spills = selector_bytes.len() + payload.len() > frame::INLINE_MAX;
        let count = msg.objects.len() + msg.memory_regions.len() + usize::from(spills);
        if count > socket::MAX_FDS_PER_FRAME {
            return Err(SendError::TooManyObjects {
                count,
                max: socket::MAX_FDS_PER_FRAME,
                spill: if spills {
                    ", plus one for the large payload"
                } else {
                    ""
                },
            });
        }
        let mut header = Header::new(Kind::Data);
        header.selector_len = selector_bytes.len() as u32;
        header.n_objects = msg.objects.len() as u16;
        header.n_regions = msg.memory_regions.len() as u16;
        header.payload_len = payload.len() as u64;
        header.type_uuid = msg.payload.type_uuid();
        let spill = if spills {
            header.flags |= FLAG_PAYLOAD_IN_FD;
            let fd = blob::write_sealed(&payload)?;
            payload = Vec::new();
            Some(fd)
        } else {
            None
        };
        Ok(OutFrame {
            selector: msg.selector,
            header,
            selector_bytes,
            payload,
            objects: msg.objects.into_iter().map(|o| o.into_fd()).collect(),
            regions: msg.memory_regions,
            spill,
            own_counts: AtomicBool::new(true),
        })
    }

    fn fds(&self) -> Vec<BorrowedFd<'_>> {
        let objects = self.objects.iter().map(|f| f.as_fd());
        let regions = self.regions.iter().map(|r| r.fd());
        objects
            .chain(regions)
            .chain(self.spill.as_ref().map(|f| f.as_fd()))
            .collect()
    }

    /// Gives a receiver its count on every region: the first receiver gets
    /// the counts of the message's own handles, each further one a new count.
    /// Whether the own counts were used (to take back if the send fails).
    fn take_counts(&self) -> bool {
        let own = self.own_counts.swap(false, Ordering::AcqRel);
        if !own {
            for r in &self.regions {
                r.add_in_flight_ref();
            }
        }
        own
    }

    /// Takes back the counts of a copy that did not go out.
    fn return_counts(&self, own: bool) {
        if own {
            self.own_counts.store(true, Ordering::Release);
        } else {
            for r in &self.regions {
                r.drop_in_flight_ref();
            }
        }
    }

    /// Writes the frame to one link.
    fn write_to(&self, link: &OutLink) -> io::Result<()> {
        let own = self.take_counts();
        let body: [&[u8]; 2] = [&self.selector_bytes, &self.payload];
        let result = link.send(&self.header, &body, &self.fds());
        if result.is_err() {
            self.return_counts(own);
        }
        result
    }

    /// The frame as our own receiver will read it (a message to ourselves
    /// skips the socket), with duplicated descriptors.
    fn local_copy(&self) -> io::Result<RawFrame> {
        let mut fds = Vec::with_capacity(self.header.fd_count());
        for fd in self.fds() {
            fds.push(fd.try_clone_to_owned()?);
        }
        self.take_counts();
        let mut bytes = self.header.encode().to_vec();
        bytes.extend_from_slice(&self.selector_bytes);
        bytes.extend_from_slice(&self.payload);
        Ok(RawFrame {
            header: self.header.clone(),
            bytes,
            fds,
        })
    }
}

/// A message waiting for an endpoint that matches its selector.
#[derive(Debug)]
pub(crate) struct Pending {
    pub frame: OutFrame,
    pub deadline: Instant,
}

/// What came of one delivery.
enum Delivery {
    Delivered,
    /// The receiver is gone (or was never reachable): try another.
    Gone,
}

impl Shared {
    /// Routes a message now, or queues it for its ttl. Keeps order with
    /// messages already waiting: while any wait, new ones are routed
    /// behind them.
    pub(crate) fn route(&self, frame: OutFrame) -> Result<(), SendError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(SendError::Disconnected);
        }
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if !pending.is_empty() {
            self.flush(&mut pending, Instant::now());
        }
        if !pending.is_empty() {
            return self.hold(&mut pending, frame);
        }
        drop(pending);
        if self.deliver(&frame)? {
            return Ok(());
        }
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        self.hold(&mut pending, frame)
    }

    fn hold(
        &self,
        pending: &mut std::collections::VecDeque<Pending>,
        frame: OutFrame,
    ) -> Result<(), SendError> {
        if frame.selector.ttl.is_zero() {
            return Err(SendError::NoRoute(frame.selector.to_string()));
        }
        let deadline = Instant::now() + frame.selector.ttl;
        pending.push_back(Pending { frame, deadline });
        // The background thread wakes at the new deadline.
        self.driver_bell.ring();
        Ok(())
    }

    /// Retries waiting messages (in order) and drops those whose ttl ran out.
    pub(crate) fn flush(&self, pending: &mut std::collections::VecDeque<Pending>, now: Instant) {
        let mut keep = std::collections::VecDeque::with_capacity(pending.len());
        while let Some(p) = pending.pop_front() {
            // Expired first: a match that appeared after the ttl ran out must not get it.
            if now >= p.deadline {
                tracing::warn!(selector = %p.frame.selector, "no endpoint matched within the ttl; message dropped");
                continue;
            }
            match self.deliver(&p.frame) {
                Ok(true) => {}
                Ok(false) => keep.push_back(p),
                Err(e) => {
                    tracing::warn!(selector = %p.frame.selector, "a waiting message could not be sent: {e}")
                }
            }
        }
        *pending = keep;
    }

    /// Messages waiting for their ttl.
    pub(crate) fn pending_count(&self) -> usize {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The endpoint is shutting down: one last try for waiting messages,
    /// then say how many are dropped with it.
    pub(crate) fn discard_pending(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.is_empty() {
            return;
        }
        self.flush(&mut pending, Instant::now());
        if !pending.is_empty() {
            tracing::warn!(
                "endpoint {:016x} shut down with {} message(s) still waiting for their ttl; they are dropped",
                self.id,
                pending.len()
            );
            pending.clear();
        }
    }

    /// The earliest ttl deadline among waiting messages.
    pub(crate) fn next_pending_deadline(&self) -> Option<Instant> {
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.iter().map(|p| p.deadline).min()
    }

    /// Writes the frame to the receivers its selector picks from the
    /// directory. `Ok(false)`: nobody matched (or every match was gone).
    fn deliver(&self, frame: &OutFrame) -> Result<bool, SendError> {
        let targets = {
            let dir = self.directory.read().unwrap_or_else(|p| p.into_inner());
            dir.matching(&frame.selector)
        };
        if targets.is_empty() {
            return Ok(false);
        }
        if Directory::is_multicast(&frame.selector) {
            let mut delivered = false;
            let mut first_error = None;
            for t in targets {
                match self.deliver_to(t, frame) {
                    Ok(Delivery::Delivered) => delivered = true,
                    Ok(Delivery::Gone) => {}
                    Err(e) => first_error = first_error.or(Some(e)),
                }
            }
            return match first_error {
                Some(e) => Err(e),
                None => Ok(delivered),
            };
        }
        let start = self.rr.fetch_add(1, Ordering::Relaxed) % targets.len();
        for i in 0..targets.len() {
            let t = targets[(start + i) % targets.len()];
            if let Delivery::Delivered = self.deliver_to(t, frame)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn deliver_to(&self, target: u64, frame: &OutFrame) -> Result<Delivery, SendError> {
        if target == self.id {
            if !self.inbox.is_open() {
                return Ok(Delivery::Gone);
            }
            self.inbox.push_local(frame.local_copy()?);
            return Ok(Delivery::Delivered);
        }
        let Some(link) = self.link_to(target)? else {
            return Ok(Delivery::Gone);
        };
        match frame.write_to(&link) {
            Ok(()) => Ok(Delivery::Delivered),
            Err(e) if socket::is_peer_gone(&e) => {
                self.forget_link(target);
                Ok(Delivery::Gone)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The link to `target`, connecting on first use. `None` when the endpoint is gone.
    fn link_to(&self, target: u64) -> Result<Option<Arc<OutLink>>, SendError> {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = links.get(&target) {
            return Ok(Some(l.clone()));
        }
        let addr = super::control::link_address(&self.options.identifier, target)?;
        match OutLink::connect(&addr, self.id, self.uid) {
            Ok(Some(l)) => {
                let l = Arc::new(l);
                links.insert(target, l.clone());
                Ok(Some(l))
            }
            Ok(None) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                tracing::warn!("not sending to endpoint {target:016x}: {e}");
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Drops the link to an endpoint that went away.
    pub(crate) fn forget_link(&self, target: u64) {
        self.links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&target);
    }
}
