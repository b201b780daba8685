//! An endpoint's copy of the bus directory, as the controller last told it.

use crate::departed::Departed;
use crate::frame::{EndpointLoad, PeerRecord};
use crate::selector::{Selector, SelectorMode};
use crate::sync::Lock;
use crate::{EndpointId, EndpointInfo, Label};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Who is on the bus.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    /// Bumped at every failover.
    pub epoch: u64,
    /// The endpoint hosting the controller, when there is one.
    pub controller: Option<u64>,
    peers: BTreeMap<u64, Peer>,
    /// Peers the controller has not confirmed (yet), and until when they are
    /// kept: those kept from before a failover (see [`Directory::reset`])
    /// and those learned from a data link's hello (see [`Directory::learn`]).
    stale: BTreeMap<u64, Instant>,
    /// Endpoints the controller said left (or whose grace ran out).
    departed: Departed,
    /// Bumped whenever an endpoint is listed or unlisted: a sender that
    /// found nobody for a message knows from it whether a later look may
    /// find somebody (see `Shared::flush`).
    changes: u64,
}

/// The receivers a selector matched, kept while the directory stays as it
/// was: a sender that sends many messages to one place matches its
/// selector against the peers' labels once, not once per message.
#[derive(Debug, Default)]
pub(crate) struct RouteMemo(Mutex<Option<Memo>>);

#[derive(Debug)]
struct Memo {
    /// The selector's bytes as the sender's selector cache gave them: the
    /// same allocation means the same selector (held here, so its address
    /// cannot be reused by another).
    key: Arc<[u8]>,
    /// The directory's [`changes`](Directory::changes) when it was matched.
    changes: u64,
    targets: Arc<[u64]>,
}

#[derive(Debug, Clone)]
struct Peer {
    record: PeerRecord,
    label: Label,
    /// Bytes queued for it by all senders, messages dropped for it, and
    /// its message rates (from the controller).
    load: EndpointLoad,
}

impl Directory {
    /// Takes a controller's welcome: its peers, plus, for
    /// [`REJOIN_GRACE`](crate::controller::REJOIN_GRACE), the peers we knew
    /// that it does not list (yet).
    ///
    /// After a failover the new controller may know fewer endpoints than we
    /// do: it may have joined a moment ago (its directory was empty when it
    /// won the election), or the others may not have re-registered with it
    /// yet. Dropping them would cut routes to live receivers: a multicast
    /// would silently skip them, a unicast fail with `NoRoute`. They stay
    /// until they re-register (`Added`), the controller says they left
    /// (`Removed`), or the grace runs out; a send to one that is really
    /// gone finds its address closed and skips it.
    pub(crate) fn reset(&mut self, epoch: u64, controller: u64, peers: Vec<PeerRecord>) {
        self.changes += 1;
        self.epoch = epoch;
        self.controller = Some(controller);
        let now = Instant::now();
        let until = now + crate::controller::REJOIN_GRACE;
        self.stale.retain(|_, t| *t > now);
        let before = std::mem::take(&mut self.peers);
        for p in peers {
            self.add(p);
        }
        for (id, p) in before {
            if self.peers.contains_key(&id) || self.stale.get(&id).is_some_and(|t| *t <= now) {
                continue;
            }
            self.stale.entry(id).or_insert(until);
            self.peers.insert(id, p);
        }
    }

    /// Whether `id` is not a kept peer whose grace ran out.
    fn live(&self, id: u64, now: Instant) -> bool {
        self.stale.get(&id).is_none_or(|t| now < *t)
    }

    /// Records an endpoint (the controller lists it).
    pub(crate) fn add(&mut self, record: PeerRecord) {
        self.changes += 1;
        self.stale.remove(&record.id);
        self.departed.forget(record.id);
        let label = Label::new(record.label.iter().cloned());
        let load = self
            .peers
            .get(&record.id)
            .map(|p| p.load.clone())
            .unwrap_or_default();
        self.peers.insert(
            record.id,
            Peer {
                record,
                label,
                load,
            },
        );
    }

    /// Takes the controller's summary of inbound load.
    pub(crate) fn set_load(&mut self, loads: &[EndpointLoad]) {
        for p in self.peers.values_mut() {
            p.load = EndpointLoad::default();
        }
        for l in loads {
            if let Some(p) = self.peers.get_mut(&l.id) {
                p.load = l.clone();
            }
        }
    }

    /// Drops the peers kept from before a failover whose grace ran out
    /// without the new controller listing them; gives their ids, so that
    /// their links can be closed.
    pub(crate) fn prune(&mut self, now: Instant) -> Vec<u64> {
        let gone: Vec<u64> = self
            .stale
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in &gone {
            self.changes += 1;
            self.stale.remove(id);
            self.peers.remove(id);
            self.departed.insert(*id);
        }
        gone
    }

    /// How many times an endpoint was listed or unlisted so far: equal
    /// counts, the same endpoints (a kept peer's grace running out only
    /// ever takes matches away).
    pub(crate) fn changes(&self) -> u64 {
        self.changes
    }

    /// When the next kept peer's grace runs out.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.stale.values().min().copied()
    }

    /// Forgets an endpoint that left; whether it was there.
    pub(crate) fn remove(&mut self, id: u64) -> bool {
        self.changes += 1;
        self.stale.remove(&id);
        self.departed.insert(id);
        self.peers.remove(&id).is_some()
    }

    /// The pid the directory gives for `id`, when it lists it.
    pub(crate) fn pid_of(&self, id: u64) -> Option<u32> {
        self.peers.get(&id).map(|p| p.record.pid)
    }

    /// Whether `id` is known to have left the bus.
    pub(crate) fn has_left(&self, id: u64) -> bool {
        self.departed.contains(id)
    }

    /// Lists an endpoint that a data link's hello introduced (its id
    /// checked by the caller), ahead of the controller's word: a message
    /// from it is about to reach the application, which may answer at once.
    /// It stays until the controller confirms it (`Added`, a welcome), says
    /// it left, or, unconfirmed, for [`REJOIN_GRACE`](crate::controller::REJOIN_GRACE).
    /// Nothing happens for an endpoint listed already or known to have left.
    pub(crate) fn learn(&mut self, record: PeerRecord) {
        if self.peers.contains_key(&record.id) || self.departed.contains(record.id) {
            return;
        }
        self.changes += 1;
        let until = Instant::now() + crate::controller::REJOIN_GRACE;
        self.stale.insert(record.id, until);
        let label = Label::new(record.label.iter().cloned());
        self.peers.insert(
            record.id,
            Peer {
                record,
                label,
                load: EndpointLoad::default(),
            },
        );
    }

    /// Whether `id` is listed (and not a stale peer whose grace ran out):
    /// whether a link to it may be made.
    pub(crate) fn lists(&self, id: u64) -> bool {
        self.peers.contains_key(&id) && self.live(id, Instant::now())
    }

    /// [`matching`](Directory::matching), remembered in `memo` for the
    /// selector whose bytes are `key` (see [`RouteMemo`]) until the
    /// directory changes. With kept peers (whose grace runs out with time,
    /// not with a change) it is worked out each time.
    pub(crate) fn matching_memo(
        &self,
        selector: &Selector,
        key: &Arc<[u8]>,
        memo: &RouteMemo,
    ) -> Arc<[u64]> {
        if !self.stale.is_empty() {
            return self.matching(selector).into();
        }
        let mut memo = memo.0.locked();
        if let Some(m) = memo.as_ref() {
            if m.changes == self.changes && Arc::ptr_eq(&m.key, key) {
                return m.targets.clone();
            }
        }
        let targets: Arc<[u64]> = self.matching(selector).into();
        *memo = Some(Memo {
            key: key.clone(),
            changes: self.changes,
            targets: targets.clone(),
        });
        targets
    }

    /// The endpoints whose labels satisfy the selector, in id order.
    pub(crate) fn matching(&self, selector: &Selector) -> Vec<u64> {
        // Every send routes: no clock read unless some peer is kept stale.
        let now = if self.stale.is_empty() {
            None
        } else {
            Some(Instant::now())
        };
        let live = |id: u64| now.is_none_or(|now| self.live(id, now));
        if let Some(id) = selector.endpoint {
            return self
                .peers
                .get(&id.0)
                .filter(|p| live(id.0) && selector.label_op.matches(&p.label))
                .map(|p| vec![p.record.id])
                .unwrap_or_default();
        }
        self.peers
            .values()
            .filter(|p| live(p.record.id) && selector.label_op.matches(&p.label))
            .map(|p| p.record.id)
            .collect()
    }

    /// The records, for seeding a new controller after a failover.
    pub(crate) fn records(&self) -> Vec<PeerRecord> {
        let now = Instant::now();
        self.peers
            .values()
            .filter(|p| self.live(p.record.id, now))
            .map(|p| p.record.clone())
            .collect()
    }

    /// How many [`infos`](Directory::infos) would list, without listing them.
    pub(crate) fn count(&self) -> usize {
        let now = Instant::now();
        let expired = self
            .stale
            .iter()
            .filter(|(id, t)| **t <= now && self.peers.contains_key(id))
            .count();
        self.peers.len() - expired
    }

    /// Everyone, as the public API shows them.
    pub(crate) fn infos(&self) -> Vec<EndpointInfo> {
        let now = Instant::now();
        self.peers
            .values()
            .filter(|p| self.live(p.record.id, now))
            .map(|p| EndpointInfo {
                id: EndpointId(p.record.id),
                label: p.label.clone(),
                pid: p.record.pid,
                uid: p.record.uid,
                is_controller: self.controller == Some(p.record.id),
                queued_bytes: p.load.queued_bytes,
                dropped: p.load.dropped,
                sent_per_sec: p.load.sent_per_sec,
                received_per_sec: p.load.received_per_sec,
            })
            .collect()
    }

    /// Whether the selector's mode wants every match.
    pub(crate) fn is_multicast(selector: &Selector) -> bool {
        selector.mode == SelectorMode::Multicast
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selector::Selector;
    use crate::LabelOp;
    use std::time::Duration;

    fn record(id: u64, label: &str) -> PeerRecord {
        PeerRecord {
            id,
            label: vec![label.into()],
            pid: 1,
            uid: 0,
        }
    }

    #[test]
    fn listing_endpoints_shares_their_labels_instead_of_copying_them() {
        let mut dir = Directory::default();
        dir.reset(1, 1, vec![record(1, "a"), record(2, "b")]);
        let first = dir.infos();
        let second = dir.infos();
        assert_eq!(first.len(), 2);
        assert_eq!(dir.count(), 2);
        for (x, y) in first.iter().zip(&second) {
            assert!(x.label.shares_with(&y.label), "{:?} was copied", x.label);
        }
    }

    #[test]
    fn a_remembered_route_holds_until_the_directory_changes() {
        let mut dir = Directory::default();
        dir.reset(1, 1, vec![record(1, "a"), record(2, "b")]);
        let memo = RouteMemo::default();
        let to_a = Selector::multicast(LabelOp::from("a"));
        let key: Arc<[u8]> = Arc::from(&b"a"[..]);
        let first = dir.matching_memo(&to_a, &key, &memo);
        assert_eq!(&first[..], &[1]);
        assert!(Arc::ptr_eq(&first, &dir.matching_memo(&to_a, &key, &memo)));
        // Another selector's key is matched afresh, never given a's route.
        let to_b = Selector::multicast(LabelOp::from("b"));
        let other: Arc<[u8]> = Arc::from(&b"a"[..]);
        assert_eq!(&dir.matching_memo(&to_b, &other, &memo)[..], &[2]);
        // A peer that joins (or leaves) is seen by the next send.
        dir.add(record(3, "a"));
        assert_eq!(&dir.matching_memo(&to_a, &key, &memo)[..], &[1, 3]);
        dir.remove(1);
        assert_eq!(&dir.matching_memo(&to_a, &key, &memo)[..], &[3]);
    }

    #[test]
    fn peers_a_new_controller_does_not_list_stay_for_the_grace_then_go() {
        let mut dir = Directory::default();
        dir.reset(1, 1, vec![record(1, "a"), record(2, "b"), record(3, "c")]);
        // After a failover the new controller (3) lists only itself so far.
        dir.reset(2, 3, vec![record(3, "c")]);
        assert_eq!(dir.matching(&Selector::multicast(true)), vec![1, 2, 3]);
        assert_eq!(dir.count(), 3);
        assert!(
            dir.prune(Instant::now()).is_empty(),
            "still within the grace"
        );
        // 2 re-registers; 1 never does.
        dir.add(record(2, "b"));
        let later = Instant::now() + crate::controller::REJOIN_GRACE + Duration::from_millis(1);
        assert_eq!(dir.prune(later), vec![1]);
        assert_eq!(dir.next_expiry(), None);
        assert_eq!(dir.matching(&Selector::multicast(true)), vec![2, 3]);
    }

    #[test]
    fn a_peer_learned_from_a_hello_routes_at_once_until_confirmed_or_gone() {
        let mut dir = Directory::default();
        dir.reset(1, 1, vec![record(1, "a")]);
        dir.learn(record(2, "b"));
        assert_eq!(dir.matching(&Selector::unicast("b")), vec![2]);
        // Confirmed by the controller: no longer subject to the grace.
        dir.add(record(2, "b"));
        let later = Instant::now() + crate::controller::REJOIN_GRACE + Duration::from_millis(1);
        assert!(dir.prune(later).is_empty());
        // Left: a hello read late does not bring it back.
        dir.remove(2);
        dir.learn(record(2, "b"));
        assert!(dir.matching(&Selector::unicast("b")).is_empty());
        // Never confirmed: dropped when the grace runs out.
        dir.learn(record(3, "c"));
        assert_eq!(dir.prune(later), vec![3]);
    }
}
