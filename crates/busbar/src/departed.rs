//! Ids of endpoints known to have left the bus, remembered for a while.
//!
//! Endpoint ids are random and never reused, so "this id left" stays true.
//! An endpoint's directory uses it not to learn again, from a data link's
//! hello read late, of an endpoint the controller already said is gone; a
//! controller, not to list again an endpoint that left under it when a
//! re-joining endpoint reports it. Only the most recent [`Departed::MAX`]
//! are kept: an older one read late is at worst listed for a grace period.

use std::collections::{HashSet, VecDeque};

/// The last [`Departed::MAX`] ids that left.
#[derive(Debug, Default)]
pub(crate) struct Departed {
    order: VecDeque<u64>,
    set: HashSet<u64>,
}

impl Departed {
    /// How many ids are remembered.
    pub(crate) const MAX: usize = 4096;

    /// Remembers that `id` left.
    pub(crate) fn insert(&mut self, id: u64) {
        if !self.set.insert(id) {
            return;
        }
        self.order.push_back(id);
        if self.order.len() > Self::MAX {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }

    /// `id` is back (it re-registered): it has not left after all.
    pub(crate) fn forget(&mut self, id: u64) {
        if self.set.remove(&id) {
            self.order.retain(|&x| x != id);
        }
    }

    /// Whether `id` is known to have left.
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.set.contains(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::Departed;

    #[test]
    fn remembers_the_most_recent_and_forgets_those_that_come_back() {
        let mut d = Departed::default();
        for id in 0..(Departed::MAX as u64 + 10) {
            d.insert(id);
        }
        assert!(!d.contains(0) && !d.contains(9) && d.contains(10));
        d.forget(10);
        assert!(!d.contains(10));
        d.insert(10);
        assert!(d.contains(10));
    }
}
