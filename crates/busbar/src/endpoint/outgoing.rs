//! Outgoing messages, encoded once into an [`OutFrame`] that can be written
//! to any number of links (routing is in `route.rs`).

use super::loan::{Loan, LoanPool};
use super::request::Ticket;
use crate::error::SendError;
use crate::frame::{self, Header, Kind, FLAG_PAYLOAD_IN_REGION, FLAG_REPLY, FLAG_REQUEST};
use crate::link::{OutLink, RawFrame, SendFailure, Wait};
use crate::payload::MessageBox;
use crate::selector::{LabelOp, SelectorMode};
use crate::sync::Lock;
use crate::sys::socket;
use crate::{MemoryRegion, Message, Selector};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A message encoded for the wire, ready to be written to any number of links.
#[derive(Debug)]
pub(crate) struct OutFrame {
    pub selector: Selector,
    header: Header,
    selector_bytes: Arc<[u8]>,
    /// The in-line payload (its offset in `lent` when it is there).
    payload: Vec<u8>,
    objects: Vec<OwnedFd>,
    regions: Vec<MemoryRegion>,
    /// The region a lent payload is in (its descriptor goes last). Our
    /// handle keeps its count; each receiver gets one of its own.
    lent: Option<(MemoryRegion, Arc<LoanPool>)>,
    /// Whether the regions' own counts (those of the handles in the
    /// message) are still here to give to the first receiver.
    own_counts: AtomicBool,
    /// For a request: tells its slot where it went.
    ticket: Option<Ticket>,
}

impl Drop for OutFrame {
    fn drop(&mut self) {
        if let Some((region, pool)) = self.lent.take() {
            pool.give_back(region);
        }
        if !*self.own_counts.get_mut() {
            for r in &mut self.regions {
                r.hand_over_count();
            }
        }
    }
}

/// What a frame is made of besides its payload ([`OutFrame::build`]).
pub(crate) struct Built {
    pub selector: Selector,
    pub selector_bytes: Arc<[u8]>,
    pub type_uuid: crate::payload::TypeUuidBytes,
    /// The descriptors a payload attached first, then the message's objects.
    pub objects: Vec<OwnedFd>,
    pub regions: Vec<MemoryRegion>,
}

/// An encoded payload: ours to keep, or the caller's to copy.
pub(crate) enum Payload<'a> {
    Owned(Vec<u8>),
    Borrowed(&'a [u8]),
}

impl Payload<'_> {
    /// Its length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.bytes().len()
    }

    /// Its bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Payload::Owned(v) => v,
            Payload::Borrowed(b) => b,
        }
    }

    fn into_vec(self) -> Vec<u8> {
        match self {
            Payload::Owned(v) => v,
            Payload::Borrowed(b) => b.to_vec(),
        }
    }
}

/// The last selector encoded, with its bytes: a sender usually sends many
/// messages with one selector, and its text need not be made each time.
#[derive(Debug, Default)]
pub(crate) struct SelectorCache(Mutex<Option<Encoded>>);

/// A selector's mode, expression and endpoint, and its bytes on the wire.
type Encoded = (SelectorMode, LabelOp, Option<crate::EndpointId>, Arc<[u8]>);

impl SelectorCache {
    /// The selector's bytes on the wire, if it can travel.
    pub(crate) fn bytes(&self, selector: &Selector) -> Result<Arc<[u8]>, SendError> {
        let mut last = self.0.locked();
        if let Some((mode, op, endpoint, bytes)) = last.as_ref() {
            if *mode == selector.mode && *op == selector.label_op && *endpoint == selector.endpoint
            {
                return Ok(bytes.clone());
            }
        }
        let bytes: Arc<[u8]> = check_selector(selector)?.into();
        *last = Some((
            selector.mode,
            selector.label_op.clone(),
            selector.endpoint,
            bytes.clone(),
        ));
        Ok(bytes)
    }
}

/// The selector's bytes on the wire, if it can travel.
fn check_selector(selector: &Selector) -> Result<Vec<u8>, SendError> {
    let depth = selector.label_op.depth();
    if depth > crate::MAX_DEPTH {
        return Err(SendError::InvalidSelector(format!(
            "nested {depth} deep, at most {} can travel",
            crate::MAX_DEPTH
        )));
    }
    let selector_bytes = frame::encode_selector(selector);
    if selector_bytes.len() > frame::MAX_SELECTOR {
        return Err(SendError::InvalidSelector(format!(
            "{} bytes of text, at most {} can travel",
            selector_bytes.len(),
            frame::MAX_SELECTOR
        )));
    }
    Ok(selector_bytes)
}

impl OutFrame {
    /// Encodes a message.
    /// Fails with [`SendError::TooLarge`] for a payload over `max_payload` bytes.
    /// A payload too large to travel in-line goes into a region from
    /// `pool` (written once, however many receivers map it).
    pub(crate) fn encode<T: MessageBox>(
        msg: Message<T>,
        max_payload: u64,
        pool: &Arc<LoanPool>,
        selectors: &SelectorCache,
    ) -> Result<OutFrame, SendError> {
        let selector_bytes = selectors.bytes(&msg.selector)?;
        let mut payload = Vec::with_capacity(64);
        // Channel ends in the payload attach their descriptors (`attach`):
        // they go first among the frame's objects.
        let (encoded, mut objects) =
            crate::attach::collect(|| msg.payload.encode_into(&mut payload));
        encoded?;
        objects.extend(msg.objects.into_iter().map(|o| o.into_fd()));
        OutFrame::build(
            Built {
                selector: msg.selector,
                selector_bytes,
                type_uuid: msg.payload.type_uuid(),
                objects,
                regions: msg.memory_regions,
            },
            Payload::Owned(payload),
            max_payload,
            pool,
        )
    }

    /// A frame for a payload already encoded (`payload`), with these
    /// descriptors: copied once, into the frame or into a region of `pool`
    /// when too large to travel in-line.
    pub(crate) fn build(
        parts: Built,
        payload: Payload<'_>,
        max_payload: u64,
        pool: &Arc<LoanPool>,
    ) -> Result<OutFrame, SendError> {
        let Built {
            selector,
            selector_bytes,
            type_uuid,
            objects,
            regions,
        } = parts;
        let payload_len = payload.len();
        let max = max_payload.min(frame::MAX_PAYLOAD);
        if payload_len as u64 > max {
            return Err(SendError::TooLarge {
                size: payload_len as u64,
                max,
            });
        }
        let spills = selector_bytes.len() + payload_len > frame::INLINE_MAX;
        let count = objects.len() + regions.len() + usize::from(spills);
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
        // In range: checked against MAX_SELECTOR and MAX_FDS_PER_FRAME above
        // (both fit the header's fields: see frame.rs).
        header.selector_len = selector_bytes.len() as u16;
        header.n_objects = objects.len() as u8;
        header.n_regions = regions.len() as u8;
        header.payload_len = payload_len as u64;
        header.type_uuid = type_uuid;
        let (payload, lent) = if spills {
            header.flags |= FLAG_PAYLOAD_IN_REGION;
            let (region, offset) = pool.lend_bytes(payload.bytes())?;
            (
                (offset as u64).to_le_bytes().to_vec(),
                Some((region, pool.clone())),
            )
        } else {
            (payload.into_vec(), None)
        };
        Ok(OutFrame {
            selector,
            header,
            selector_bytes,
            payload,
            objects,
            regions,
            lent,
            own_counts: AtomicBool::new(true),
            ticket: None,
        })
    }

    /// A frame for a payload lent    /// A frame for a payload lent in shared memory ([`Loan`]): it travels as
    /// a `BytesMessage` whose encoding is in the region, which receivers map.
    pub(crate) fn from_loan(
        selector: Selector,
        loan: Loan,
        max_payload: u64,
    ) -> Result<OutFrame, SendError> {
        let selector_bytes: Arc<[u8]> = check_selector(&selector)?.into();
        let Some((region, offset, len, pool)) = loan.into_parts() else {
            return Err(SendError::Region(crate::RegionError(
                "the loan was already taken apart".into(),
            )));
        };
        let max = max_payload.min(frame::MAX_PAYLOAD);
        if len as u64 > max {
            return Err(SendError::TooLarge {
                size: len as u64,
                max,
            });
        }
        let mut header = Header::new(Kind::Data);
        header.flags = FLAG_PAYLOAD_IN_REGION;
        // In range: checked against MAX_SELECTOR (see frame.rs).
        header.selector_len = selector_bytes.len() as u16;
        header.payload_len = len as u64;
        header.type_uuid = <crate::BytesMessage as crate::TypeUuid>::TYPE_UUID;
        Ok(OutFrame {
            selector,
            header,
            selector_bytes,
            payload: (offset as u64).to_le_bytes().to_vec(),
            objects: Vec::new(),
            regions: Vec::new(),
            lent: Some((region, pool)),
            own_counts: AtomicBool::new(true),
            ticket: None,
        })
    }

    /// Makes this frame a request: its sender waits for the answer with the
    /// ticket's correlation id.
    pub(crate) fn into_request(mut self, ticket: Ticket) -> OutFrame {
        self.header.flags |= FLAG_REQUEST;
        self.header.correlation = ticket.corr();
        self.ticket = Some(ticket);
        self
    }

    /// Makes this frame the answer to the request `corr`.
    pub(crate) fn into_reply(mut self, corr: u64) -> OutFrame {
        self.header.flags |= FLAG_REPLY;
        self.header.correlation = corr;
        self
    }

    /// The frame is about to be written to `link`, to endpoint `peer`
    /// (`None`: to ourselves, endpoint `peer`): a request learns where its
    /// answer will come from.
    pub(super) fn delivering(&self, link: Option<&Arc<OutLink>>, peer: u64) {
        match (&self.ticket, link) {
            (Some(t), Some(link)) => t.sent(link, peer),
            (Some(t), None) => t.sent_local(peer),
            (None, _) => {}
        }
    }

    /// It was not written after all ([`delivering`](Self::delivering)).
    pub(super) fn undelivered(&self) {
        if let Some(t) = &self.ticket {
            t.unsent();
        }
    }

    /// Writes the frame, whole, to the socket of the link a request came
    /// on, back to its sender (an answer), waiting for room as `wait` says.
    pub(super) fn write_back(&self, fd: BorrowedFd<'_>, wait: Wait) -> Result<(), SendFailure> {
        let own = self.take_counts();
        let body: [&[u8]; 2] = [&self.selector_bytes, &self.payload];
        let result = crate::link::send_whole(fd, &self.header.encode(), &body, &self.fds(), wait);
        if result.is_err() {
            self.return_counts(own);
        }
        result
    }

    fn fds(&self) -> Vec<BorrowedFd<'_>> {
        let objects = self.objects.iter().map(|f| f.as_fd());
        let regions = self.regions.iter().map(|r| r.fd());
        objects
            .chain(regions)
            .chain(self.lent.as_ref().map(|(r, _)| r.fd()))
            .collect()
    }

    /// Gives a receiver its count on every region: the first receiver gets
    /// the counts of the message's own handles, each further one a new count.
    /// Whether the own counts were used (to take back if the send fails).
    pub(super) fn take_counts(&self) -> bool {
        if let Some((r, _)) = &self.lent {
            r.add_in_flight_ref();
        }
        let own = self.own_counts.swap(false, Ordering::AcqRel);
        if !own {
            for r in &self.regions {
                r.add_in_flight_ref();
            }
        }
        own
    }

    /// Takes back the counts of a copy that did not go out.
    pub(crate) fn return_counts(&self, own: bool) {
        if let Some((r, _)) = &self.lent {
            r.drop_in_flight_ref();
        }
        if own {
            self.own_counts.store(true, Ordering::Release);
        } else {
            for r in &self.regions {
                r.drop_in_flight_ref();
            }
        }
    }

    /// Writes the frame to one link, waiting for room as `wait` says.
    pub(crate) fn write_to(&self, link: &OutLink, wait: Wait) -> Result<(), SendFailure> {
        let own = self.take_counts();
        let body: [&[u8]; 2] = [&self.selector_bytes, &self.payload];
        let result = link.send(&self.header, &body, &self.fds(), wait);
        if result.is_err() {
            self.return_counts(own);
        }
        result
    }

    /// What the frame weighs while it waits for its ttl: bytes and descriptors.
    pub(super) fn weight(&self) -> (usize, usize) {
        let bytes = frame::HEADER_LEN + self.selector_bytes.len() + self.payload.len();
        let spilled = if self.lent.is_some() {
            self.header.payload_len as usize
        } else {
            0
        };
        (bytes + spilled, self.header.fd_count())
    }

    /// The frame as our own receiver will read it (a message to ourselves
    /// skips the socket), with duplicated descriptors. It carries counts on
    /// the regions: [`return_counts`](Self::return_counts) with the flag
    /// returned if it is not delivered after all.
    pub(super) fn local_copy(&self) -> io::Result<(RawFrame, bool)> {
        let mut fds = Vec::with_capacity(self.header.fd_count());
        for fd in self.fds() {
            fds.push(fd.try_clone_to_owned()?);
        }
        let own = self.take_counts();
        let mut bytes = self.header.encode().to_vec();
        bytes.extend_from_slice(&self.selector_bytes);
        bytes.extend_from_slice(&self.payload);
        let raw = RawFrame {
            header: self.header.clone(),
            bytes,
            fds,
        };
        Ok((raw, own))
    }
}
