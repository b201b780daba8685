//! [`Bytes`]: the bytes of a [`BytesMessage`](crate::BytesMessage), owned
//! or still in the shared memory they arrived in.
//!
//! Why a type of its own rather than `Vec<u8>`: a large payload arrives in
//! a chunk of its sender's pool, mapped in the receiver. Handing it over
//! as a `Vec` means allocating and faulting in a fresh buffer and copying
//! every byte, which for 16 MiB costs more than the whole trip through
//! the bus. A `Bytes` can instead keep the payload where it lies, and
//! reads like a `&[u8]` (it derefs to one), so code that reads
//! `m.payload.data` is unchanged. Code that needs a `Vec` asks for one
//! ([`into_vec`](Bytes::into_vec), [`to_mut`](Bytes::to_mut)), and pays for
//! the copy only then.
//!
//! A received `Bytes` that lies in shared memory holds its sender's chunk
//! while it lives: the sender reuses the chunk only once every receiver
//! dropped it, and a sender whose chunks are all held waits for one (at
//! most a second, then it takes new memory). Keep such messages as long as
//! you need them, but copy what you keep for long. The sender can still
//! write the memory (a misbehaving one could change the bytes while you
//! read them): treat them as bytes read from a socket, read once, check
//! what you read.

use crate::endpoint::lent::LentView;
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// Bytes owned in a `Vec`, or (received) left in the shared memory they
/// came in. Derefs to `[u8]`.
///
/// ```
/// use busbar::Bytes;
/// let mut b = Bytes::from(vec![1, 2, 3]);
/// assert_eq!(b.len(), 3);
/// assert_eq!(b, [1, 2, 3]);
/// b.to_mut().push(4);
/// assert_eq!(b.into_vec(), vec![1, 2, 3, 4]);
/// ```
#[derive(Clone, Default)]
pub struct Bytes(Repr);

#[derive(Clone)]
enum Repr {
    Owned(Vec<u8>),
    /// `len` bytes at `start` of a received payload.
    Shared {
        view: Arc<LentView>,
        start: usize,
        len: usize,
    },
}

impl Default for Repr {
    fn default() -> Self {
        Repr::Owned(Vec::new())
    }
}

impl Bytes {
    /// No bytes.
    pub fn new() -> Bytes {
        Bytes::default()
    }

    /// `len` bytes at `start` of a received payload (`None` when they do
    /// not lie in it).
    pub(crate) fn shared(view: Arc<LentView>, start: usize, len: usize) -> Option<Bytes> {
        view.bytes().get(start..start.checked_add(len)?)?;
        Some(Bytes(Repr::Shared { view, start, len }))
    }

    /// `len` bytes at `start` of these (`None` when they do not lie in them):
    /// a copy when owned, the same memory when shared.
    pub(crate) fn slice(self, start: usize, len: usize) -> Option<Bytes> {
        let end = start.checked_add(len)?;
        match self.0 {
            Repr::Owned(v) => v.get(start..end).map(Bytes::from),
            Repr::Shared {
                view,
                start: s,
                len: l,
            } => (end <= l).then_some(Bytes(Repr::Shared {
                view,
                start: s + start,
                len,
            })),
        }
    }

    /// Whether the bytes lie in the shared memory they arrived in (rather
    /// than in a `Vec` of this process): a received payload of 64 KiB or
    /// more that came in a region does.
    ///
    /// ```
    /// use busbar::{label, BytesMessage, Message, Options, Selector};
    /// # let bus = format!("doc.bytes_shared.{}", std::process::id());
    /// let (tx, mut rx) = busbar::join::<BytesMessage, BytesMessage>(Options::new(bus, label!("a"), "t"), None)?;
    /// tx.send(Message::new(Selector::unicast("a"), BytesMessage::new(1, vec![7u8; 1 << 20])))?;
    /// let m = rx.recv(None)?;
    /// assert!(m.payload.data.is_shared());
    /// assert_eq!((m.payload.format, m.payload.data.len(), m.payload.data[5]), (1, 1 << 20, 7));
    /// let mine: Vec<u8> = m.payload.data.into_vec(); // a copy, to keep for long
    /// # assert_eq!(mine.len(), 1 << 20);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_shared(&self) -> bool {
        matches!(self.0, Repr::Shared { .. })
    }

    /// The bytes as a `Vec`: moved out when owned, copied when shared.
    pub fn into_vec(self) -> Vec<u8> {
        match self.0 {
            Repr::Owned(v) => v,
            Repr::Shared { .. } => self.to_vec(),
        }
    }

    /// The bytes as a `Vec` to change: copied into one first when shared.
    pub fn to_mut(&mut self) -> &mut Vec<u8> {
        if let Repr::Shared { .. } = self.0 {
            self.0 = Repr::Owned(self.to_vec());
        }
        match &mut self.0 {
            Repr::Owned(v) => v,
            // Just made owned.
            Repr::Shared { .. } => unreachable!("made owned above"),
        }
    }
}

impl Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            Repr::Owned(v) => v,
            // In range: checked when it was made (`shared`).
            Repr::Shared { view, start, len } => {
                view.bytes().get(*start..*start + *len).unwrap_or_default()
            }
        }
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::borrow::Borrow<[u8]> for Bytes {
    fn borrow(&self) -> &[u8] {
        self
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Bytes {
        Bytes(Repr::Owned(v))
    }
}

impl From<&[u8]> for Bytes {
    fn from(v: &[u8]) -> Bytes {
        Bytes(Repr::Owned(v.to_vec()))
    }
}

impl<const N: usize> From<[u8; N]> for Bytes {
    fn from(v: [u8; N]) -> Bytes {
        Bytes(Repr::Owned(v.to_vec()))
    }
}

impl<const N: usize> From<&[u8; N]> for Bytes {
    fn from(v: &[u8; N]) -> Bytes {
        Bytes(Repr::Owned(v.to_vec()))
    }
}

impl From<&str> for Bytes {
    fn from(v: &str) -> Bytes {
        Bytes(Repr::Owned(v.as_bytes().to_vec()))
    }
}

impl From<String> for Bytes {
    fn from(v: String) -> Bytes {
        Bytes(Repr::Owned(v.into_bytes()))
    }
}

impl From<Bytes> for Vec<u8> {
    fn from(b: Bytes) -> Vec<u8> {
        b.into_vec()
    }
}

impl PartialEq for Bytes {
    fn eq(&self, other: &Bytes) -> bool {
        **self == **other
    }
}

impl Eq for Bytes {}

impl std::hash::Hash for Bytes {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (**self).hash(state)
    }
}

impl PartialEq<[u8]> for Bytes {
    fn eq(&self, other: &[u8]) -> bool {
        **self == *other
    }
}

impl PartialEq<&[u8]> for Bytes {
    fn eq(&self, other: &&[u8]) -> bool {
        **self == **other
    }
}

impl PartialEq<Vec<u8>> for Bytes {
    fn eq(&self, other: &Vec<u8>) -> bool {
        **self == **other
    }
}

impl PartialEq<Bytes> for Vec<u8> {
    fn eq(&self, other: &Bytes) -> bool {
        **self == **other
    }
}

impl PartialEq<Bytes> for [u8] {
    fn eq(&self, other: &Bytes) -> bool {
        *self == **other
    }
}

impl PartialEq<Bytes> for &[u8] {
    fn eq(&self, other: &Bytes) -> bool {
        **self == **other
    }
}

impl<const N: usize> PartialEq<[u8; N]> for Bytes {
    fn eq(&self, other: &[u8; N]) -> bool {
        **self == other[..]
    }
}

impl<const N: usize> PartialEq<&[u8; N]> for Bytes {
    fn eq(&self, other: &&[u8; N]) -> bool {
        **self == other[..]
    }
}

/// A byte string (`serialize_bytes`): in postcard a varint length, then the bytes.
impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self)
    }
}

/// A byte string, or (for self-describing formats) a sequence of `u8`s; always owned.
impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
        deserializer
            .deserialize_byte_buf(BytesVisitor)
            .map(Bytes::from)
    }
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        // Never trust the length hint beyond a modest pre-allocation.
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64 * 1024));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(out)
    }
}
