//! The messages of the named-ring tests (`tests/named_ring.rs`,
//! `busbar-ring-peer`): each says who sent it and its number, and carries
//! bytes that follow from both, so that the receiver checks every byte.

use serde::{Deserialize, Serialize};

/// One test message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Msg {
    /// The sender's number.
    pub id: u32,
    /// The message's number, from 0 per sender.
    pub seq: u64,
    /// `size` bytes of [`byte`]`(id, seq, i)`.
    pub data: Vec<u8>,
}

/// Byte `i` of message `seq` of sender `id`.
pub fn byte(id: u32, seq: u64, i: usize) -> u8 {
    (i as u64)
        .wrapping_mul(31)
        .wrapping_add(seq.wrapping_mul(7))
        .wrapping_add(u64::from(id) * 13) as u8
}

/// Message `seq` of sender `id`, `size` bytes of data.
pub fn msg(id: u32, seq: u64, size: usize) -> Msg {
    Msg {
        id,
        seq,
        data: (0..size).map(|i| byte(id, seq, i)).collect(),
    }
}

/// Whether `m`'s data are the bytes its sender put in.
pub fn intact(m: &Msg) -> bool {
    m.data
        .iter()
        .enumerate()
        .all(|(i, &b)| b == byte(m.id, m.seq, i))
}

/// Bytes that serialize as one byte string (`serialize_bytes`, as
/// `serde_bytes` does), not as a sequence of `u8`s.
pub struct RawBytes<'a>(pub &'a [u8]);

impl Serialize for RawBytes<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}
