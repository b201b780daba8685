//! The selectors a receiver decoded last, kept by their wire bytes.
//!
//! Every data frame carries its selector as text (see
//! [`frame::encode_selector`](crate::frame::encode_selector)), and a stream
//! of messages nearly always carries the same few. Parsing the text into a
//! [`LabelOp`](crate::LabelOp) was a tenth of a small message's cost to its
//! receiver (callgrind, 16 B); a clone of the one decoded before is a
//! fraction of that.

use crate::frame::{decode_selector, FrameError};
use crate::Selector;

/// How many selectors are kept: a receiver with a few senders, each
/// sending to its own place, finds them all.
const KEPT: usize = 4;

/// A few selectors and the bytes each was decoded from.
#[derive(Default)]
pub(crate) struct Selectors {
    kept: Vec<(Vec<u8>, Selector)>,
    /// The entry replaced next when a new one comes.
    next: usize,
}

impl Selectors {
    /// The selector `bytes` (private memory: the caller copied it out of
    /// anything a peer can still write) say, decoded once per distinct
    /// bytes while they stay among the last few.
    pub(crate) fn decode(&mut self, bytes: &[u8]) -> Result<Selector, FrameError> {
        if let Some((_, s)) = self.kept.iter().find(|(b, _)| b[..] == *bytes) {
            return Ok(s.clone());
        }
        let s = decode_selector(bytes)?;
        let entry = (bytes.to_vec(), s.clone());
        if self.kept.len() < KEPT {
            self.kept.push(entry);
        } else {
            self.kept[self.next] = entry;
            self.next = (self.next + 1) % KEPT;
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::encode_selector;
    use crate::{LabelOp, Selector};

    #[test]
    fn a_kept_selector_decodes_as_the_bytes_say() {
        let mut kept = Selectors::default();
        let places: Vec<Selector> = (0..6)
            .map(|i| Selector::unicast(LabelOp::leaf(format!("p{i}")).and("x")))
            .chain([
                Selector::multicast("p0 & x"),
                Selector::endpoint(crate::EndpointId(7)),
            ])
            .collect();
        // Each twice, round and round: found kept, replaced, decoded again.
        for round in 0..3 {
            for s in &places {
                for _ in 0..2 {
                    let back = kept.decode(&encode_selector(s)).expect("decodes");
                    assert_eq!(back.label_op, s.label_op, "round {round}");
                    assert_eq!(back.mode, s.mode);
                    assert_eq!(back.endpoint, s.endpoint);
                }
            }
        }
        assert!(kept.kept.len() <= KEPT);
    }

    #[test]
    fn bad_bytes_are_an_error_and_not_kept() {
        let mut kept = Selectors::default();
        assert!(kept.decode(&[9, b'a']).is_err());
        assert!(kept.decode(&[]).is_err());
        assert!(kept.decode(&[0, b'(']).is_err());
        assert!(kept.kept.is_empty());
    }
}
