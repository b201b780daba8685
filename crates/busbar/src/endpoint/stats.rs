//! What an endpoint counts: queue depths, drops, malformed input.

use super::{EndpointId, Shared};
use crate::sync::Lock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters kept by the endpoint's halves.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub sent: AtomicU64,
    pub dropped_full: AtomicU64,
    pub ttl_expired: AtomicU64,
    pub received: AtomicU64,
    pub too_large: AtomicU64,
    pub malformed: AtomicU64,
    pub links_cut: AtomicU64,
}

/// A snapshot of one endpoint's counters, from [`EndpointSender::stats`](crate::EndpointSender::stats).
///
/// Counts are since the endpoint joined; `sent` counts one per receiver
/// (a multicast to three endpoints counts three).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointStats {
    /// Messages written to receivers.
    pub sent: u64,
    /// Messages not written to a receiver that was full, under [`Backpressure::DropNewest`](crate::Backpressure::DropNewest).
    pub dropped_full: u64,
    /// Messages that waited for their ttl and found no receiver in time.
    pub ttl_expired: u64,
    /// Messages waiting for their ttl now.
    pub pending: usize,
    /// Messages this endpoint's receiver handed to the application.
    pub received: u64,
    /// Messages dropped unread because their payload was over this
    /// endpoint's [`Limits::max_payload`](crate::Limits::max_payload) (each
    /// reported once as [`RecvError::TooLarge`](crate::RecvError::TooLarge)).
    pub too_large: u64,
    /// Malformed frames from peers, dropped.
    pub malformed: u64,
    /// Links cut because the peer kept sending malformed frames.
    pub links_cut: u64,
    /// The links to receivers this endpoint has sent to, by receiver.
    pub links: Vec<LinkStats>,
    /// Shared-memory regions this endpoint keeps mapped for reuse: those it
    /// lends for [`loan`](crate::EndpointSender::loan)s, large payloads and
    /// multicasts, and those such payloads came to it in (kept for the next
    /// message in them, held by its links for their senders, or by
    /// messages). Its own are let go a second after it last lent one; those
    /// it received, a second after it last used one, or soon after their
    /// sender let go of them.
    pub pooled_regions: usize,
}

/// One link from this endpoint to a receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LinkStats {
    /// The receiver.
    pub peer: EndpointId,
    /// Bytes written that the receiver has not read yet (in the link's ring,
    /// and on its socket with the kernel's per-message overhead): how far
    /// behind it is.
    pub queued_bytes: usize,
    /// Messages written.
    pub sent: u64,
    /// Messages dropped because it was full.
    pub dropped_full: u64,
}

impl Shared {
    /// A snapshot of the counters and links.
    pub(crate) fn stats(&self) -> EndpointStats {
        let c = &self.counters;
        let links = self.link_stats();
        EndpointStats {
            sent: c.sent.load(Ordering::Relaxed),
            dropped_full: c.dropped_full.load(Ordering::Relaxed),
            ttl_expired: c.ttl_expired.load(Ordering::Relaxed),
            pending: self.pending_count(),
            received: c.received.load(Ordering::Relaxed),
            too_large: c.too_large.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
            links_cut: c.links_cut.load(Ordering::Relaxed),
            links,
            pooled_regions: self.loans.len() + self.inbox.lent.locked().len(),
        }
    }

    /// Our outgoing links, by receiver. Never waits for a sender (the
    /// background thread reports these).
    pub(crate) fn link_stats(&self) -> Vec<LinkStats> {
        let mut links: Vec<LinkStats> = self
            .links
            .locked()
            .iter()
            .map(|(id, l)| LinkStats {
                peer: EndpointId(*id),
                queued_bytes: l.queued_bytes(),
                sent: l.sent.load(Ordering::Relaxed),
                dropped_full: l.dropped.load(Ordering::Relaxed),
            })
            .collect();
        links.sort_by_key(|l| l.peer);
        links
    }
}
