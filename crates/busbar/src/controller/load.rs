//! How far behind each endpoint is, and how many messages it moves:
//! summed from the endpoints' reports and pushed to everyone at most once
//! per [`EVERY`].

use crate::frame::{EndpointLoad, LoadReport};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// The most often the controller pushes a new load summary.
const EVERY: Duration = Duration::from_secs(1);

/// The reports, and what was last pushed.
#[derive(Debug, Default)]
pub(crate) struct LoadBoard {
    /// By reporting endpoint.
    reports: HashMap<u64, LoadReport>,
    dirty: bool,
    last: Vec<EndpointLoad>,
    next: Option<Instant>,
}

impl LoadBoard {
    /// Takes one endpoint's report.
    pub(crate) fn report(&mut self, from: u64, report: LoadReport) {
        self.reports.insert(from, report);
        self.dirty = true;
    }

    /// Forgets an endpoint that left: its reports and the reports about it.
    pub(crate) fn forget(&mut self, id: u64) {
        self.reports.remove(&id);
        for report in self.reports.values_mut() {
            report.links.retain(|l| l.peer != id);
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
        let mut sum: BTreeMap<u64, EndpointLoad> = BTreeMap::new();
        for (&from, report) in &self.reports {
            let e = sum.entry(from).or_default();
            e.sent_per_sec = report.sent_per_sec;
            e.received_per_sec = report.received_per_sec;
            for l in &report.links {
                let e = sum.entry(l.peer).or_default();
                e.queued_bytes = e.queued_bytes.saturating_add(l.queued_bytes);
                e.dropped = e.dropped.saturating_add(l.dropped);
            }
        }
        let summary: Vec<EndpointLoad> = sum
            .into_iter()
            .map(|(id, load)| EndpointLoad { id, ..load })
            .filter(|l| {
                l.queued_bytes > 0 || l.dropped > 0 || l.sent_per_sec > 0 || l.received_per_sec > 0
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
    use crate::frame::LinkLoad;

    fn link(peer: u64, queued_bytes: u64, dropped: u64) -> LinkLoad {
        LinkLoad {
            peer,
            queued_bytes,
            dropped,
        }
    }

    fn load(id: u64, queued_bytes: u64, dropped: u64, sent: u64, received: u64) -> EndpointLoad {
        EndpointLoad {
            id,
            queued_bytes,
            dropped,
            sent_per_sec: sent,
            received_per_sec: received,
        }
    }

    #[test]
    fn sums_reports_per_receiver_keeps_each_endpoints_rates_and_forgets_leavers() {
        let mut b = LoadBoard::default();
        b.report(
            1,
            LoadReport {
                links: vec![link(3, 100, 1)],
                sent_per_sec: 500,
                received_per_sec: 0,
            },
        );
        b.report(
            2,
            LoadReport {
                links: vec![link(3, 50, 0), link(1, 0, 0)],
                sent_per_sec: 0,
                received_per_sec: 0,
            },
        );
        b.report(
            3,
            LoadReport {
                links: vec![],
                sent_per_sec: 0,
                received_per_sec: 480,
            },
        );
        let now = Instant::now();
        assert_eq!(
            b.take(now),
            Some(vec![load(1, 0, 0, 500, 0), load(3, 150, 1, 0, 480)]),
            "endpoint 2 has nothing to show"
        );
        // Nothing new: nothing to push.
        assert_eq!(b.take(now + EVERY), None);
        b.forget(1);
        assert_eq!(b.take(now), None, "not before the interval");
        assert_eq!(b.take(now + EVERY), Some(vec![load(3, 50, 0, 0, 480)]));
    }
}
