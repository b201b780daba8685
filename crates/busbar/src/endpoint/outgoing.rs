//! Outgoing messages, encoded once into an [`OutFrame`] that can be written
//! to any number of links (routing is in `route.rs`).

use super::loan::{Held, Loan, LoanMem, LoanPool};
use super::request::Ticket;
use crate::error::SendError;
use crate::frame::{
    self, Header, Kind, Locator, FLAG_PAYLOAD_IN_REGION, FLAG_REPLY, FLAG_REQUEST, NO_SLOT,
};
use crate::link::{OutLink, RawFrame, RegionRef, SendFailure, Wait};
use crate::payload::{take_bytes, MessageBox, WirePrefix};
use crate::selector::{LabelOp, SelectorMode};
use crate::sync::Lock;
use crate::sys::socket;
use crate::{MemoryRegion, Message, Selector};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A multicast payload at least this long is written once into a chunk of
/// the pool, and each receiver gets a reference to it, not a copy; a
/// loan shorter than this travels in-line, copied (cheaper than a reference).
pub(crate) const MULTICAST_BY_REF: usize = 512;

/// A message encoded for the wire, ready to be written to any number of links.
#[derive(Debug)]
pub(crate) struct OutFrame {
    pub selector: Selector,
    header: Header,
    selector_bytes: Arc<[u8]>,
    /// What the in-line payload's encoding starts with, when it is a
    /// `BytesMessage` whose bytes are `payload` as the sender gave them.
    prefix: WirePrefix,
    /// The in-line payload (its locator, slot `NO_SLOT`, when it is lent).
    payload: Vec<u8>,
    objects: Vec<OwnedFd>,
    regions: Vec<MemoryRegion>,
    /// The chunk a lent payload is in, and where: its region's descriptor
    /// goes last, or the link refers to a region it carried before. Our
    /// hold keeps its count; each receiver gets one of its own.
    lent: Option<(Held, Locator)>,
    /// Whether the regions' own counts (those of the handles in the
    /// message) are still here to give to the first receiver.
    own_counts: AtomicBool,
    /// For a request: tells its slot where it went.
    ticket: Option<Ticket>,
}

impl OutFrame {
    /// The in-line payload's buffer (empty for a lent payload), taken out
    /// of a frame that went out (and is about to be dropped).
    pub(crate) fn take_payload(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.payload)
    }
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

/// What a frame is made of besides its payload ([`OutFrame::build`]).
pub(crate) struct Built {
    pub selector: Selector,
    pub selector_bytes: Arc<[u8]>,
    pub type_uuid: crate::payload::TypeUuidBytes,
    /// The descriptors a payload attached first, then the message's objects.
    pub objects: Vec<OwnedFd>,
    pub regions: Vec<MemoryRegion>,
}

/// An encoded payload: ours to keep, the caller's to copy, a
/// `BytesMessage`'s bytes behind their prefix, or encoded already into the
/// first bytes of a chunk of the pool.
pub(crate) enum Payload<'a> {
    Owned(Vec<u8>),
    Borrowed(&'a [u8]),
    Prefixed(WirePrefix, Vec<u8>),
    InChunk(Held, usize),
}

impl Payload<'_> {
    /// Its length in bytes.
    pub(crate) fn len(&self) -> usize {
        match self {
            Payload::Owned(v) => v.len(),
            Payload::Borrowed(b) => b.len(),
            Payload::Prefixed(p, v) => p.as_slice().len() + v.len(),
            Payload::InChunk(_, n) => *n,
        }
    }

    /// Its bytes, in two parts, when not in a chunk.
    pub(crate) fn parts(&self) -> [&[u8]; 2] {
        match self {
            Payload::Owned(v) => [&[], v],
            Payload::Borrowed(b) => [&[], b],
            Payload::Prefixed(p, v) => [p.as_slice(), v],
            Payload::InChunk(..) => [&[], &[]],
        }
    }
}

/// Whether a payload of `len` bytes with `selector` goes into the pool: too
/// large to travel in-line, or a multicast's worth writing once.
fn spills(selector: &Selector, selector_len: usize, len: usize) -> bool {
    selector_len + len > frame::INLINE_MAX
        || (selector.mode == SelectorMode::Multicast
            && selector.endpoint.is_none()
            && len >= MULTICAST_BY_REF)
}

/// A payload buffer kept from the last frame that went out whole, for
/// [`EndpointSender::try_send_bytes`](crate::EndpointSender::try_send_bytes)
/// to copy the next one into: a stream of sends allocates no buffer per
/// message (glibc's malloc keeps chunks over 1032 bytes out of its thread
/// cache, so a 1 KiB payload's allocation and free cost more than its copy).
#[derive(Debug, Default)]
pub(crate) struct Spare(Mutex<Vec<u8>>);

impl Spare {
    /// The longest buffer kept.
    const MAX: usize = 64 * 1024;

    /// The buffer kept (empty), or a new one.
    pub(crate) fn take(&self) -> Vec<u8> {
        let mut v = std::mem::take(&mut *self.0.locked());
        v.clear();
        v
    }

    /// Keeps `v` for the next [`take`](Self::take), unless it is long.
    pub(crate) fn give(&self, v: Vec<u8>) {
        if v.capacity() <= Self::MAX {
            *self.0.locked() = v;
        }
    }
}

/// The last selector encoded, with its bytes: a sender usually sends many
/// messages with one selector, and its text need not be made each time.
///
/// Kept per thread, not per endpoint: a selector's bytes depend on the
/// selector alone, and a thread's own cache takes no lock. The lock it
/// replaced (taken and let go on every send) was most of the cache's cost:
/// 5.4 % of a 16 B plain sender's samples, nearly all on its two atomic
/// instructions (perf record, two processes).
#[derive(Debug, Default)]
pub(crate) struct SelectorCache;

/// A selector's mode, expression and endpoint, and its bytes on the wire.
type Encoded = (SelectorMode, LabelOp, Option<crate::EndpointId>, Arc<[u8]>);

thread_local! {
    /// The selector this thread encoded last.
    static LAST_SELECTOR: std::cell::RefCell<Option<Encoded>> = const { std::cell::RefCell::new(None) };
}

impl SelectorCache {
    /// The selector's bytes on the wire, if it can travel.
    pub(crate) fn bytes(&self, selector: &Selector) -> Result<Arc<[u8]>, SendError> {
        let kept = LAST_SELECTOR.try_with(|last| {
            let last = last.try_borrow().ok()?;
            let (mode, op, endpoint, bytes) = last.as_ref()?;
            (*mode == selector.mode && *op == selector.label_op && *endpoint == selector.endpoint)
                .then(|| bytes.clone())
        });
        if let Ok(Some(bytes)) = kept {
            return Ok(bytes);
        }
        let bytes: Arc<[u8]> = check_selector(selector)?.into();
        // A thread that is going away keeps nothing.
        let _ = LAST_SELECTOR.try_with(|last| {
            if let Ok(mut last) = last.try_borrow_mut() {
                *last = Some((
                    selector.mode,
                    selector.label_op.clone(),
                    selector.endpoint,
                    bytes.clone(),
                ));
            }
        });
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
        wait: Wait,
    ) -> Result<OutFrame, SendError> {
        let selector_bytes = selectors.bytes(&msg.selector)?;
        // A payload whose length is known (a `BytesMessage`) and that goes
        // into the pool is encoded straight into its chunk: no copy on the way.
        if let Some(n) = msg.payload.encoded_len() {
            let max = max_payload.min(frame::MAX_PAYLOAD);
            if spills(&msg.selector, selector_bytes.len(), n) && n as u64 <= max {
                let mut held = pool.chunk_for(n, wait)?;
                let out = held.body_mut().get_mut(..n).ok_or_else(|| {
                    SendError::Region(crate::RegionError("a chunk too small".into()))
                })?;
                msg.payload.encode_to_slice(out)?;
                return OutFrame::build(
                    Built {
                        type_uuid: msg.payload.type_uuid(),
                        selector: msg.selector,
                        selector_bytes,
                        objects: msg.objects.into_iter().map(|o| o.into_fd()).collect(),
                        regions: msg.memory_regions,
                    },
                    Payload::InChunk(held, n),
                    max_payload,
                    pool,
                    wait,
                );
            }
        }
        let type_uuid = msg.payload.type_uuid();
        let mut slot = Some(msg.payload);
        let (payload, mut objects) = match (take_bytes(&mut slot), slot) {
            // Bytes: they go out as the caller gave them, after their
            // prefix; a payload of known length attaches no descriptors.
            (Some(m), _) => {
                let prefix = WirePrefix::new(m.format, m.data.len());
                (Payload::Prefixed(prefix, m.data.into_vec()), Vec::new())
            }
            (None, Some(p)) => match p.encoded_len() {
                Some(n) => {
                    let mut payload = vec![0; n];
                    p.encode_to_slice(&mut payload)?;
                    (Payload::Owned(payload), Vec::new())
                }
                None => {
                    let mut payload = Vec::with_capacity(64);
                    // Channel ends in the payload attach their descriptors
                    // (`attach`): they go first among the frame's objects.
                    let (encoded, objects) = crate::attach::collect(|| p.encode_into(&mut payload));
                    encoded?;
                    (Payload::Owned(payload), objects)
                }
            },
            // `take_bytes` empties the slot only when it takes the payload.
            (None, None) => {
                return Err(SendError::Encode(crate::CodecError::new(
                    "the payload went missing on the way out",
                )))
            }
        };
        objects.extend(msg.objects.into_iter().map(|o| o.into_fd()));
        OutFrame::build(
            Built {
                selector: msg.selector,
                selector_bytes,
                type_uuid,
                objects,
                regions: msg.memory_regions,
            },
            payload,
            max_payload,
            pool,
            wait,
        )
    }

    /// A frame for a payload already encoded (`payload`), with these
    /// descriptors: copied once, into the frame or into a chunk of `pool`
    /// when too large to travel in-line or a multicast of at least
    /// [`MULTICAST_BY_REF`] bytes (waiting for a chunk as `wait` says).
    pub(crate) fn build(
        parts: Built,
        payload: Payload<'_>,
        max_payload: u64,
        pool: &Arc<LoanPool>,
        wait: Wait,
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
        let spills = matches!(payload, Payload::InChunk(..))
            || spills(&selector, selector_bytes.len(), payload_len);
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
            let held = match payload {
                Payload::InChunk(held, _) => held,
                payload => {
                    let mut held = pool.chunk_for(payload_len, wait)?;
                    let [head, rest] = payload.parts();
                    let out = held.body_mut().get_mut(..payload_len).ok_or_else(|| {
                        SendError::Region(crate::RegionError("a chunk too small".into()))
                    })?;
                    let (a, b) = out.split_at_mut(head.len());
                    a.copy_from_slice(head);
                    b.copy_from_slice(rest);
                    held
                }
            };
            let locator = Locator {
                count_offset: held.count_offset(),
                payload_offset: held.body_offset(0),
                slot: NO_SLOT,
            };
            (
                (WirePrefix::default(), locator.encode().to_vec()),
                Some((held, locator)),
            )
        } else {
            let bytes = match payload {
                Payload::Owned(v) => (WirePrefix::default(), v),
                Payload::Prefixed(p, v) => (p, v),
                other => (WirePrefix::default(), other.parts()[1].to_vec()),
            };
            (bytes, None)
        };
        let (prefix, payload) = payload;
        Ok(OutFrame {
            selector,
            header,
            selector_bytes,
            prefix,
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
        let (mem, start, len) = loan.into_parts();
        let max = max_payload.min(frame::MAX_PAYLOAD);
        if len as u64 > max {
            return Err(SendError::TooLarge {
                size: len as u64,
                max,
            });
        }
        let mut header = Header::new(Kind::Data);
        let held = match mem {
            LoanMem::Chunk(held) => held,
            LoanMem::Heap(mut payload) => {
                // A few hundred bytes travel faster copied through the ring
                // than referred to (a reference costs a count word that both
                // sides write).
                payload.drain(..start.min(payload.len()));
                payload.truncate(len);
                header.selector_len = selector_bytes.len() as u16;
                header.payload_len = len as u64;
                header.type_uuid = <crate::BytesMessage as crate::TypeUuid>::TYPE_UUID;
                return Ok(OutFrame {
                    selector,
                    header,
                    selector_bytes,
                    prefix: WirePrefix::default(),
                    payload,
                    objects: Vec::new(),
                    regions: Vec::new(),
                    lent: None,
                    own_counts: AtomicBool::new(true),
                    ticket: None,
                });
            }
        };
        header.flags = FLAG_PAYLOAD_IN_REGION;
        // In range: checked against MAX_SELECTOR (see frame.rs).
        header.selector_len = selector_bytes.len() as u16;
        header.payload_len = len as u64;
        header.type_uuid = <crate::BytesMessage as crate::TypeUuid>::TYPE_UUID;
        let locator = Locator {
            count_offset: held.count_offset(),
            payload_offset: held.body_offset(start),
            slot: NO_SLOT,
        };
        Ok(OutFrame {
            selector,
            header,
            selector_bytes,
            prefix: WirePrefix::default(),
            payload: locator.encode().to_vec(),
            objects: Vec::new(),
            regions: Vec::new(),
            lent: Some((held, locator)),
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

    /// Its selector's bytes as the [`SelectorCache`] gave them: the same
    /// allocation for the same selector, a key for remembering its route.
    pub(super) fn selector_key(&self) -> &Arc<[u8]> {
        &self.selector_bytes
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
        let body: [&[u8]; 3] = [&self.selector_bytes, self.prefix.as_slice(), &self.payload];
        let result =
            crate::link::send_whole(fd, &self.header.encode(), &body, &self.fds(true), wait);
        if result.is_err() {
            self.return_counts(own);
        }
        result
    }

    /// The frame's descriptors: objects, regions, and (`with_lent`) the
    /// region its payload is lent in.
    fn fds(&self, with_lent: bool) -> Vec<BorrowedFd<'_>> {
        if self.objects.is_empty() && self.regions.is_empty() && (self.lent.is_none() || !with_lent)
        {
            return Vec::new();
        }
        let objects = self.objects.iter().map(|f| f.as_fd());
        let regions = self.regions.iter().map(|r| r.fd());
        let lent = self.lent.as_ref().filter(|_| with_lent);
        objects
            .chain(regions)
            .chain(lent.map(|(held, _)| held.fd()))
            .collect()
    }

    /// Gives a receiver its count on every region: the first receiver gets
    /// the counts of the message's own handles, each further one a new count.
    /// Whether the own counts were used (to take back if the send fails).
    pub(super) fn take_counts(&self) -> bool {
        if let Some((held, _)) = &self.lent {
            held.add_ref();
        }
        if self.regions.is_empty() {
            // No region handles to count (nearly every frame): no atomic
            // swap of `own_counts`, which then matters to nobody.
            return true;
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
        if let Some((held, _)) = &self.lent {
            held.drop_ref();
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
        let result = match &self.lent {
            // The link sends the region, or refers to it if it did before.
            Some((held, locator)) => link.send(
                &self.header,
                &[&self.selector_bytes],
                &self.fds(false),
                Some(RegionRef {
                    key: held.key(),
                    fd: held.fd(),
                    locator: *locator,
                }),
                wait,
            ),
            None => link.send(
                &self.header,
                &[&self.selector_bytes, self.prefix.as_slice(), &self.payload],
                &self.fds(false),
                None,
                wait,
            ),
        };
        if result.is_err() {
            self.return_counts(own);
        }
        result
    }

    /// What the frame weighs while it waits for its ttl: bytes and descriptors.
    pub(super) fn weight(&self) -> (usize, usize) {
        let bytes = frame::HEADER_LEN
            + self.selector_bytes.len()
            + self.prefix.as_slice().len()
            + self.payload.len();
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
        for fd in self.fds(true) {
            fds.push(fd.try_clone_to_owned()?);
        }
        let own = self.take_counts();
        let mut bytes = self.header.encode().to_vec();
        bytes.extend_from_slice(&self.selector_bytes);
        bytes.extend_from_slice(self.prefix.as_slice());
        bytes.extend_from_slice(&self.payload);
        let raw = RawFrame {
            header: self.header.clone(),
            bytes,
            fds,
            view: None,
        };
        Ok((raw, own))
    }
}
