//! What the `busbar-peer` helper binary and the cross-process tests share:
//! the payload types that travel between them and a few small checks.
//!
//! The tests themselves are in `tests/cross_process/`; the peer is
//! `src/bin/busbar-peer.rs`.

pub mod chaos;
pub mod hostile;

use busbar::BytesMessage;
use serde::{Deserialize, Serialize};

/// A numbered message of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, busbar::TypeUuid)]
#[uuid = "4f6d2a0e-8c1b-4e57-9a3d-2b7c5e1f0a93"]
pub struct Seq {
    /// Position in the stream, from 0.
    pub n: u64,
}

/// A type that [`Narrow`] does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, busbar::TypeUuid)]
#[uuid = "b2e9c6d4-37a8-4f1e-8d05-6a4c1b9e7f22"]
pub struct Point {
    /// x.
    pub x: i32,
    /// y.
    pub y: i32,
}

/// Everything the peers send: several types through one endpoint.
#[derive(Debug, busbar::MessageBox)]
pub enum Mixed {
    /// Text; `"END"` is the fence that ends a receiver.
    Text(String),
    /// A numbered stream message.
    Seq(Seq),
    /// A type [`Narrow`] skips.
    Point(Point),
    /// Raw bytes (the payload-size tests).
    Bytes(BytesMessage),
}

/// A receiver that knows only some of [`Mixed`]'s types.
#[derive(Debug, busbar::MessageBox)]
pub enum Narrow {
    /// Text.
    Text(String),
    /// A numbered stream message.
    Seq(Seq),
}

/// The text of the message that ends a receiver.
pub const END: &str = "END";

/// The byte at `i` of a test payload of `len` bytes: differs per position
/// and per length, so a shifted, truncated or mixed-up payload shows.
pub fn pattern_byte(i: usize, len: usize) -> u8 {
    (i.wrapping_mul(31).wrapping_add(len).wrapping_add(i >> 8) % 251) as u8
}

/// A test payload of `len` bytes.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| pattern_byte(i, len)).collect()
}

/// Whether `data` is exactly `pattern(data.len())`.
pub fn is_pattern(data: &[u8]) -> bool {
    let len = data.len();
    data.iter()
        .enumerate()
        .all(|(i, &b)| b == pattern_byte(i, len))
}

/// 64-bit FNV-1a: a hash the sender and the receiver print and the test compares.
pub fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// How many descriptors this process has open (not counting the one used to count).
pub fn open_fd_count() -> std::io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/fd")?
        .count()
        .saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_recognised_and_disturbances_show() {
        for len in [0, 1, 255, 256, 257, 65_537] {
            let mut p = pattern(len);
            assert!(is_pattern(&p));
            if len > 0 {
                p[len / 2] ^= 1;
                assert!(!is_pattern(&p));
            }
        }
        // The same bytes shifted by one are not a pattern of the new length.
        assert!(!is_pattern(&pattern(1000)[1..]));
        assert_ne!(fnv1a(&pattern(1000)), fnv1a(&pattern(1001)[..1000]));
    }
}
