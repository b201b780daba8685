//! How far behind each endpoint is: summed from its senders' reports and
//! pushed to everyone at most once per [`EVERY`].

use crate::frame::{EndpointLoad, LinkLoad};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// The most often the controller pushes a new load summary.
const EVERY: Duration = Duration::from_secs(1);

/// The reports, and what was last pushed.
#[derive(Debug, Default)]
pub(crate) struct LoadBoard {
    /// By reporting endpoint: its links.
    reports: HashMap<u64, Vec<LinkLoad>>,
    dirty: bool,
    last: Vec<EndpointLoad>,
    next: Option<Instant>,
}

impl LoadBoard {
    /// Takes one endpoint's report.
    pub(crate) fn report(&mut self, from: u64, loads: Vec<LinkLoad>) {
        self.reports.insert(from, loads);
        self.dirty = true;
    }

    /// Forgets an endpoint that left: its reports and the reports about it.
    pub(crate) fn forget(&mut self, id: u64) {
        self.reports.remove(&id);
        for loads in self.reports.values_mut() {
            loads.retain(|l| l.peer != id);
        }
        self.dirty = true;
    }

    /// When a summary may be due.
    pub(crate) fn due(&self) -> Option<Instant> {
        self.dirty.then(|| self.next.unwrap_or_else(Instant::now))
    }

    /// A new summary to push, if one is due and differs from the last.
    pub(crate) fn take(&mut self, now: Instant) -> Option<Vec<EndpointLoad>> {
        if !self.dirty || self.next.is_some_and(|n| now < n) {
            return None;
        }
        self.dirty = false;
        let mut sum: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        for l in self.reports.values().flatten() {
            let e = sum.entry(l.peer).or_default();
            e.0 = e.0.saturating_add(l.queued_bytes);
            e.1 = e.1.saturating_add(l.dropped);
        }
        let summary: Vec<EndpointLoad> = sum
            .into_iter()
            .filter(|(_, (q, d))| *q > 0 || *d > 0)
            .map(|(id, (queued_bytes, dropped))| EndpointLoad {
                id,
                queued_bytes,
                dropped,
            })
            .collect();
        if summary == self.last {
            return None;
        }
        self.next = Some(now + EVERY);
        self.last = summary.clone();
        Some(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_reports_per_receiver_and_forgets_leavers() {
        let mut b = LoadBoard::default();
        b.report(
            1,
            vec![LinkLoad {
                peer: 3,
                queued_bytes: 100,
                dropped: 1,
            }],
        );
        b.report(
            2,
            vec![
                LinkLoad {
                    peer: 3,
                    queued_bytes: 50,
                    dropped: 0,
                },
                LinkLoad {
                    peer: 1,
                    queued_bytes: 0,
                    dropped: 0,
                },
            ],
        );
        let now = Instant::now();
        assert_eq!(
            b.take(now),
            Some(vec![EndpointLoad {
                id: 3,
                queued_bytes: 150,
                dropped: 1
            }])
        );
        // Nothing new: nothing to push.
        assert_eq!(b.take(now + EVERY), None);
        b.forget(1);
        assert_eq!(b.take(now), None, "not before the interval");
        assert_eq!(
            b.take(now + EVERY),
            Some(vec![EndpointLoad {
                id: 3,
                queued_bytes: 50,
                dropped: 0
            }])
        );
    }
}
