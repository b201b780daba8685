//! An endpoint's copy of the bus directory, as the controller last told it.

use crate::frame::PeerRecord;
use crate::selector::{Selector, SelectorMode};
use crate::{EndpointId, EndpointInfo, Label};
use std::collections::BTreeMap;

/// Who is on the bus.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    /// Bumped at every failover.
    pub epoch: u64,
    /// The endpoint hosting the controller, when there is one.
    pub controller: Option<u64>,
    peers: BTreeMap<u64, Peer>,
}

#[derive(Debug, Clone)]
struct Peer {
    record: PeerRecord,
    label: Label,
}

impl Directory {
    /// Replaces everything with a controller's welcome.
    pub(crate) fn reset(&mut self, epoch: u64, controller: u64, peers: Vec<PeerRecord>) {
        self.epoch = epoch;
        self.controller = Some(controller);
        self.peers.clear();
        for p in peers {
            self.add(p);
        }
    }

    /// Records an endpoint.
    pub(crate) fn add(&mut self, record: PeerRecord) {
        let label = Label::new(record.label.iter().cloned());
        self.peers.insert(record.id, Peer { record, label });
    }

    /// Forgets an endpoint; whether it was there.
    pub(crate) fn remove(&mut self, id: u64) -> bool {
        self.peers.remove(&id).is_some()
    }

    /// The endpoints whose labels satisfy the selector, in id order.
    pub(crate) fn matching(&self, selector: &Selector) -> Vec<u64> {
        self.peers
            .values()
            .filter(|p| selector.label_op.matches(&p.label))
            .map(|p| p.record.id)
            .collect()
    }

    /// The records, for seeding a new controller after a failover.
    pub(crate) fn records(&self) -> Vec<PeerRecord> {
        self.peers.values().map(|p| p.record.clone()).collect()
    }

    /// Everyone, as the public API shows them.
    pub(crate) fn infos(&self) -> Vec<EndpointInfo> {
        self.peers
            .values()
            .map(|p| EndpointInfo {
                id: EndpointId(p.record.id),
                label: p.label.clone(),
                pid: p.record.pid,
                uid: p.record.uid,
                is_controller: self.controller == Some(p.record.id),
            })
            .collect()
    }

    /// Whether the selector's mode wants every match.
    pub(crate) fn is_multicast(selector: &Selector) -> bool {
        selector.mode == SelectorMode::Multicast
    }
}
