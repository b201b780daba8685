//! What the `busbar-peer` helper binary and the cross-process tests share:
//! the payload types that travel between them and a few small checks.
//!
//! The tests themselves are in `tests/cross_process/`; the peer is
//! `src/bin/busbar-peer.rs`.

pub mod chan;
pub mod chaos;
pub mod fuzz_support;
pub mod hostile;
pub mod named_ring;
pub mod rings;

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

/// How often a test payload repeats: `pattern_byte(i + PATTERN_PERIOD, len)
/// == pattern_byte(i, len)`, since `i * 31` (mod 251) repeats every 251
/// bytes and `i >> 8` (mod 251) every `251 * 256`. [`pattern`],
/// [`is_pattern`] and [`pattern_fnv1a`] work out one period byte by byte
/// and copy or compare the rest, so gigabyte payloads stay quick to make and
/// check even in unoptimised test builds.
const PATTERN_PERIOD: usize = 251 * 256;

/// The first period (or all, when shorter) of `pattern(len)`.
fn pattern_period(len: usize) -> Vec<u8> {
    (0..len.min(PATTERN_PERIOD))
        .map(|i| pattern_byte(i, len))
        .collect()
}

/// A test payload of `len` bytes.
pub fn pattern(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&pattern_period(len));
    while out.len() < len {
        out.extend_from_within(..out.len().min(len - out.len()));
    }
    out
}

/// Whether `data` is exactly `pattern(data.len())`.
pub fn is_pattern(data: &[u8]) -> bool {
    let period = pattern_period(data.len());
    data.chunks(PATTERN_PERIOD)
        .all(|chunk| chunk == &period[..chunk.len()])
}

/// 64-bit FNV-1a: a hash the sender and the receiver print and the test compares.
pub fn fnv1a(data: &[u8]) -> u64 {
    fnv1a_extend(FNV_OFFSET, data)
}

/// `fnv1a(&pattern(len))`, without making the payload.
pub fn pattern_fnv1a(len: usize) -> u64 {
    let period = pattern_period(len);
    let mut h = FNV_OFFSET;
    let mut left = len;
    while left > 0 {
        let n = left.min(period.len());
        h = fnv1a_extend(h, &period[..n]);
        left -= n;
    }
    h
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a from state `h` over `data` (a plain loop: twice as fast as a fold unoptimised).
fn fnv1a_extend(mut h: u64, data: &[u8]) -> u64 {
    for &b in data {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The environment variable that makes the bus names of the ipmb example
/// mirrors (`src/bin/ipmb/`) unique: the tests set it, and the processes an
/// example starts inherit it.
pub const EXAMPLE_BUS_ENV: &str = "BUSBAR_EXAMPLE_BUS";

/// The bus an ipmb example mirror joins: ipmb's fixed `name`, plus `.` and
/// the value of [`EXAMPLE_BUS_ENV`] when it is set, so that parallel test
/// runs (and other people's) never share a bus.
pub fn example_bus(name: &str) -> String {
    example_bus_with(name, &std::env::var(EXAMPLE_BUS_ENV).unwrap_or_default())
}

/// [`example_bus`] for the suffix `suffix` (none when empty).
pub fn example_bus_with(name: &str, suffix: &str) -> String {
    if suffix.is_empty() {
        name.to_string()
    } else {
        format!("{name}.{suffix}")
    }
}

/// How many descriptors this process has open (not counting the one used to count).
pub fn open_fd_count() -> std::io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/fd")?
        .count()
        .saturating_sub(1))
}

/// Raises this process's soft limit on open descriptors to its hard limit
/// (an endpoint in a mesh of N holds a few per link; a harness of N
/// processes three pipes each); gives the limit now in force.
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        );
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// A seqpacket socket connected to the abstract address `name` (no leading
/// NUL): how the hostile tests reach an endpoint's data address directly.
/// Panics when it cannot (a test helper).
pub fn connect_abstract(name: &str) -> std::os::fd::OwnedFd {
    use rustix::net::{self, AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let fd = net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .expect("socket");
    let addr = SocketAddrUnix::new_abstract_name(name.as_bytes()).expect("address");
    net::connect(&fd, &addr).unwrap_or_else(|e| panic!("connect to @{name}: {e}"));
    fd
}

/// [`Mutex`](std::sync::Mutex) taken whether or not it is poisoned: a
/// thread that panicked holding it has failed its test already, and the
/// others still report what they saw.
pub trait Locked<T: ?Sized> {
    /// Waits for the lock.
    fn locked(&self) -> std::sync::MutexGuard<'_, T>;
}

impl<T: ?Sized> Locked<T> for std::sync::Mutex<T> {
    fn locked(&self) -> std::sync::MutexGuard<'_, T> {
        self.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
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

    #[test]
    fn pattern_repeats_with_its_period_and_matches_its_definition() {
        for len in [
            0,
            1,
            PATTERN_PERIOD - 1,
            PATTERN_PERIOD,
            PATTERN_PERIOD + 1,
            3 * PATTERN_PERIOD + 12_345,
        ] {
            let p = pattern(len);
            assert_eq!(p.len(), len);
            assert!(
                p.iter()
                    .enumerate()
                    .all(|(i, &b)| b == pattern_byte(i, len)),
                "pattern({len}) differs from pattern_byte"
            );
            assert_eq!(pattern_fnv1a(len), fnv1a(&p), "len {len}");
            assert!(is_pattern(&p));
            if len > PATTERN_PERIOD {
                // A disturbance after the first period shows too.
                let mut q = p.clone();
                q[len - 1] ^= 1;
                assert!(!is_pattern(&q));
            }
        }
    }
}
