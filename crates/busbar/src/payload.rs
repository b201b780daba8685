//! Payloads: typed messages with a stable 16-byte type id, encoded with postcard.
//!
//! A message travels as its type id ([`TypeUuidBytes`]) followed by the
//! postcard encoding of the value. A receiver hands both to its
//! [`MessageBox`]; the box either decodes the value or answers `Ok(None)`,
//! "I do not know this type", and the receiver skips the message.
//!
//! * A single type becomes a payload by implementing [`TypeUuid`] (usually
//!   with `#[derive(busbar::TypeUuid)]` and `#[uuid = "..."]`) plus serde's
//!   `Serialize` and `Deserialize`; the blanket implementation then makes it a
//!   [`MessageBox`].
//! * Several types travel through one endpoint as an enum of single-field
//!   tuple variants with `#[derive(busbar::MessageBox)]`. Each variant
//!   delegates to its inner type's [`MessageBox`], so such enums nest.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use busbar::{BytesMessage, MessageBox, TypeUuid};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize, busbar::TypeUuid)]
//! #[uuid = "0e8d7c3a-5b1f-4a52-9d3e-6f1a2b3c4d5e"]
//! struct Ping {
//!     seq: u64,
//! }
//!
//! #[derive(Debug, PartialEq, busbar::MessageBox)]
//! enum Msg {
//!     Ping(Ping),
//!     Text(String),
//!     Bytes(BytesMessage),
//! }
//!
//! // Sending side: the id says which type follows, then the encoded value.
//! let msg = Msg::from(Ping { seq: 7 });
//! let id = msg.type_uuid();
//! assert_eq!(id, Ping::TYPE_UUID);
//! let mut wire = Vec::new();
//! msg.encode_into(&mut wire)?;
//!
//! // Receiving side.
//! assert_eq!(Msg::decode(id, &wire)?, Some(Msg::Ping(Ping { seq: 7 })));
//! // A box that does not know the type answers `None`: the message is skipped.
//! assert_eq!(<u32 as MessageBox>::decode(id, &wire)?, None);
//! # Ok::<(), busbar::CodecError>(())
//! ```
//!
//! # Built-in type ids
//!
//! These ids are fixed forever: changing one breaks every peer that speaks
//! the old one. They were generated once as random (version 4) UUIDs.
//!
//! | type | id |
//! |---|---|
//! | `()` | `2601cde4-6db4-4285-9a4b-8afbbb21bbeb` |
//! | `bool` | `f428b31e-d357-4b96-98e8-806c94d854ae` |
//! | `u8` | `967180ad-83d5-4e92-98dd-54dc6fad2b1e` |
//! | `u16` | `8884c2d9-84ec-461a-8186-e24c487a0ef7` |
//! | `u32` | `9b4e1d9f-9047-4518-892a-24e1c71bc325` |
//! | `u64` | `00eec3cf-b216-4eeb-805e-5a04d5c68ec4` |
//! | `u128` | `cec00868-9c3d-4dbf-a54d-0717eb385535` |
//! | `i8` | `959d4b11-95f2-416a-8f07-177d47c189e3` |
//! | `i16` | `6c65e627-6080-4cbf-b18c-d4477449ee6b` |
//! | `i32` | `7f2e1609-aa16-47c1-81fa-c119c82c7537` |
//! | `i64` | `ab3287b0-be13-4a6c-87e9-91cab51e6a04` |
//! | `i128` | `c9abfb12-ce0e-4f6a-b721-7c1b14df6a35` |
//! | `f32` | `e314632c-f239-4217-b206-993fb3ea2453` |
//! | `f64` | `a861fd79-0968-4d37-86c3-cae7df1ab942` |
//! | `char` | `370fb849-d6c4-401c-adcb-e846dc9756f5` |
//! | `String` | `3d101901-30e9-419d-ad53-ecf351963099` |
//! | `Vec<u8>` | `68bd2291-6ace-4b12-a1de-0155f9cd272a` |
//! | [`BytesMessage`] | `7ffcfe7f-9cd3-4297-b19e-6c0366827eb0` |
//!
//! `Vec<u8>` and [`BytesMessage`] have the same wire encoding for their
//! bytes (a varint length, then the bytes), but different ids.
//!
//! Generic containers (`Option<T>`, `Vec<T>` other than `Vec<u8>`, tuples,
//! maps) get no id: a stable id for `Vec<T>` would have to be derived from
//! `T`'s id, which a `const` cannot do portably, and a single id shared by all
//! `T` would let a receiver decode bytes of one element type as another.
//! Wrap such values in your own type and give it an id with
//! `#[derive(busbar::TypeUuid)]`.
//!
//! # Untrusted input
//!
//! [`MessageBox::decode`] is fed bytes from other processes. Decoding never
//! panics on malformed input (random, truncated or with lying lengths); it
//! returns a [`CodecError`]. Lengths in the input never cause an allocation
//! larger than the input justifies (serde caps pre-allocation, and postcard
//! checks byte lengths against the remaining input). Bytes left over after a
//! complete value are an error too.

use crate::bytes::Bytes;
use std::any::{type_name, Any, TypeId};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A 16-byte type id: the bytes of a UUID, in the usual (big-endian) order.
pub type TypeUuidBytes = [u8; 16];

/// A type with a stable 16-byte id that names it on the wire.
///
/// Implement it with `#[derive(busbar::TypeUuid)]` and a
/// `#[uuid = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"]` attribute; pick a fresh
/// random UUID for every type (`python3 -c 'import uuid;print(uuid.uuid4())'`)
/// and never change it once peers use it. A type that is also `Serialize +
/// DeserializeOwned + Send + 'static` is then a [`MessageBox`].
///
/// ```
/// use busbar::TypeUuid;
///
/// #[derive(busbar::TypeUuid)]
/// #[uuid = "6b0f3a52-1c7e-4f0a-8d2b-9e4c5a6b7c8d"]
/// struct Frame;
///
/// assert_eq!(Frame::TYPE_UUID[..2], [0x6b, 0x0f]);
/// ```
pub trait TypeUuid {
    /// The id, as UUID bytes.
    const TYPE_UUID: TypeUuidBytes;
}

/// Error from encoding or decoding a payload; the message says what failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payload codec: {0}")]
pub struct CodecError(pub String);

impl CodecError {
    /// An error with the given message.
    pub fn new(message: impl Into<String>) -> Self {
        CodecError(message.into())
    }

    /// The message, without the `payload codec:` prefix that `Display` adds.
    pub fn message(&self) -> &str {
        &self.0
    }
}

/// A type (or enum of types) that can travel as a message payload.
///
/// Implemented for every `T: TypeUuid + Serialize + DeserializeOwned + Send +
/// 'static`, and by `#[derive(busbar::MessageBox)]` for enums of such types.
pub trait MessageBox: Sized + Send + 'static {
    /// The id of this value's type (for an enum of payloads, the id of the variant's type).
    fn type_uuid(&self) -> TypeUuidBytes;
    /// Appends the encoded value to `out`.
    ///
    /// On error, `out` is left as it was.
    fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), CodecError>;
    /// Decodes a value of type `type_uuid`; `Ok(None)` when this box does not know that type.
    ///
    /// `bytes` must hold exactly one encoded value: malformed input and
    /// trailing bytes are errors, never panics.
    fn decode(type_uuid: TypeUuidBytes, bytes: &[u8]) -> Result<Option<Self>, CodecError>;

    /// Decodes a value from a payload that arrived in shared memory, which
    /// the value may keep ([`BytesMessage`] does: its `data` stays where it
    /// lies, see [`Bytes`]). The default decodes a private copy with
    /// [`decode`](MessageBox::decode).
    fn decode_shared(type_uuid: TypeUuidBytes, payload: Bytes) -> Result<Option<Self>, CodecError> {
        let private = payload.to_vec();
        Self::decode(type_uuid, &private)
    }

    /// The length [`encode_into`](MessageBox::encode_into) would append,
    /// when it is known without encoding (then a large payload is encoded
    /// straight into shared memory with
    /// [`encode_to_slice`](MessageBox::encode_to_slice), and a small one
    /// too). `None` by default. A payload that says its length is bytes:
    /// it is always encoded with `encode_to_slice`, so it cannot carry a
    /// channel end or anything else that attaches a descriptor.
    fn encoded_len(&self) -> Option<usize> {
        None
    }

    /// Encodes the value into `out`, exactly [`encoded_len`](MessageBox::encoded_len)
    /// bytes long. The default encodes into a `Vec` and copies.
    fn encode_to_slice(&self, out: &mut [u8]) -> Result<(), CodecError> {
        let mut v = Vec::with_capacity(out.len());
        self.encode_into(&mut v)?;
        if v.len() != out.len() {
            return Err(CodecError(format!(
                "encoded {} bytes where {} were announced",
                v.len(),
                out.len()
            )));
        }
        out.copy_from_slice(&v);
        Ok(())
    }
}

impl<T: TypeUuid + Serialize + DeserializeOwned + Send + 'static> MessageBox for T {
    #[inline]
    fn type_uuid(&self) -> TypeUuidBytes {
        T::TYPE_UUID
    }

    fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let start = out.len();
        postcard::serialize_with_flavor(self, AppendVec(out)).map_err(|e| {
            out.truncate(start);
            CodecError(format!("cannot encode `{}`: {e}", type_name::<T>()))
        })
    }

    fn decode(type_uuid: TypeUuidBytes, bytes: &[u8]) -> Result<Option<Self>, CodecError> {
        if type_uuid != T::TYPE_UUID {
            return Ok(None);
        }
        let (value, rest) = postcard::take_from_bytes::<T>(bytes)
            .map_err(|e| CodecError(format!("cannot decode `{}`: {e}", type_name::<T>())))?;
        if !rest.is_empty() {
            return Err(CodecError(format!(
                "cannot decode `{}`: {} trailing byte(s) after the value",
                type_name::<T>(),
                rest.len()
            )));
        }
        Ok(Some(value))
    }

    fn decode_shared(type_uuid: TypeUuidBytes, payload: Bytes) -> Result<Option<Self>, CodecError> {
        if type_uuid == BytesMessage::TYPE_UUID && TypeId::of::<T>() == TypeId::of::<BytesMessage>()
        {
            // A BytesMessage keeps its bytes where they lie.
            let m: Box<dyn Any> = Box::new(BytesMessage::decode_in(payload)?);
            return Ok(m.downcast::<T>().ok().map(|m| *m));
        }
        let private = payload.to_vec();
        Self::decode(type_uuid, &private)
    }

    fn encoded_len(&self) -> Option<usize> {
        (self as &dyn Any)
            .downcast_ref::<BytesMessage>()
            .map(BytesMessage::wire_len)
    }

    fn encode_to_slice(&self, out: &mut [u8]) -> Result<(), CodecError> {
        match (self as &dyn Any).downcast_ref::<BytesMessage>() {
            Some(m) => m.write_wire(out),
            None => {
                let mut v = Vec::with_capacity(out.len());
                self.encode_into(&mut v)?;
                match out.get_mut(..) {
                    Some(o) if o.len() == v.len() => {
                        o.copy_from_slice(&v);
                        Ok(())
                    }
                    _ => Err(CodecError(format!(
                        "encoded {} bytes where {} were announced",
                        v.len(),
                        out.len()
                    ))),
                }
            }
        }
    }
}

/// A postcard flavor that appends to a borrowed `Vec<u8>` (byte slices with one copy).
struct AppendVec<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for AppendVec<'_> {
    type Output = ();

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    #[inline]
    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Builds a [`TypeUuidBytes`] from a UUID written as a `u128` literal.
const fn id(uuid: u128) -> TypeUuidBytes {
    uuid.to_be_bytes()
}

macro_rules! builtin_ids {
    ($($ty:ty => $uuid:literal,)*) => {
        $(
            impl TypeUuid for $ty {
                const TYPE_UUID: TypeUuidBytes = id($uuid);
            }
        )*
    };
}

builtin_ids! {
    () => 0x2601cde4_6db4_4285_9a4b_8afbbb21bbeb,
    bool => 0xf428b31e_d357_4b96_98e8_806c94d854ae,
    u8 => 0x967180ad_83d5_4e92_98dd_54dc6fad2b1e,
    u16 => 0x8884c2d9_84ec_461a_8186_e24c487a0ef7,
    u32 => 0x9b4e1d9f_9047_4518_892a_24e1c71bc325,
    u64 => 0x00eec3cf_b216_4eeb_805e_5a04d5c68ec4,
    u128 => 0xcec00868_9c3d_4dbf_a54d_0717eb385535,
    i8 => 0x959d4b11_95f2_416a_8f07_177d47c189e3,
    i16 => 0x6c65e627_6080_4cbf_b18c_d4477449ee6b,
    i32 => 0x7f2e1609_aa16_47c1_81fa_c119c82c7537,
    i64 => 0xab3287b0_be13_4a6c_87e9_91cab51e6a04,
    i128 => 0xc9abfb12_ce0e_4f6a_b721_7c1b14df6a35,
    f32 => 0xe314632c_f239_4217_b206_993fb3ea2453,
    f64 => 0xa861fd79_0968_4d37_86c3_cae7df1ab942,
    char => 0x370fb849_d6c4_401c_adcb_e846dc9756f5,
    String => 0x3d101901_30e9_419d_ad53_ecf351963099,
    Vec<u8> => 0x68bd2291_6ace_4b12_a1de_0155f9cd272a,
    BytesMessage => 0x7ffcfe7f_9cd3_4297_b19e_6c0366827eb0,
}

/// Raw bytes with an application-defined format tag: what `busbar send` sends
/// and `busbar listen` prints, and a payload any two programs can agree on
/// without sharing Rust types.
///
/// Its id is `7ffcfe7f-9cd3-4297-b19e-6c0366827eb0`. On the wire it is the
/// format tag (a postcard varint), then a varint length and the bytes as they
/// are; encoding copies the bytes once. A received message's `data` (a
/// [`Bytes`]) may stay in the shared memory it arrived in: see [`Bytes`].
///
/// ```
/// use busbar::{BytesMessage, MessageBox};
///
/// let m = BytesMessage::new(3, vec![1, 2, 3]);
/// let mut wire = Vec::new();
/// m.encode_into(&mut wire)?;
/// assert_eq!(wire, [3, 3, 1, 2, 3]);
/// assert_eq!(BytesMessage::decode(m.type_uuid(), &wire)?, Some(m));
/// assert_eq!(BytesMessage::from("hi").data, b"hi");
/// # Ok::<(), busbar::CodecError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BytesMessage {
    /// Application-defined format tag.
    pub format: u16,
    /// The bytes: owned, or (received) where they arrived; they read as a `&[u8]`.
    pub data: Bytes,
}

impl BytesMessage {
    /// A message with the given format tag and bytes.
    pub fn new(format: u16, data: impl Into<Bytes>) -> Self {
        BytesMessage {
            format,
            data: data.into(),
        }
    }

    /// Its encoded length: the format tag and length as varints, the bytes.
    fn wire_len(&self) -> usize {
        varint_len(u64::from(self.format)) + varint_len(self.data.len() as u64) + self.data.len()
    }

    /// Writes its encoding into `out`, exactly [`wire_len`](Self::wire_len) bytes.
    fn write_wire(&self, out: &mut [u8]) -> Result<(), CodecError> {
        let prefix = WirePrefix::new(self.format, self.data.len());
        let prefix = prefix.as_slice();
        if out.len() != prefix.len() + self.data.len() {
            return Err(CodecError::new(
                "a BytesMessage of another length than announced",
            ));
        }
        let (head, rest) = out.split_at_mut(prefix.len());
        head.copy_from_slice(prefix);
        rest.copy_from_slice(&self.data);
        Ok(())
    }

    /// Decodes one from a received payload, keeping its bytes where they lie.
    fn decode_in(payload: Bytes) -> Result<BytesMessage, CodecError> {
        // The prefix is read once, into private memory: the sender can
        // still write the payload.
        let head: Vec<u8> = payload.iter().take(13).copied().collect();
        let bad = |e: postcard::Error| CodecError(format!("cannot decode `BytesMessage`: {e}"));
        let (format, rest) = postcard::take_from_bytes::<u16>(&head).map_err(bad)?;
        let (len, rest) = postcard::take_from_bytes::<u64>(rest).map_err(bad)?;
        let start = head.len() - rest.len();
        let total = payload.len();
        if usize::try_from(len).ok().and_then(|l| l.checked_add(start)) != Some(total) {
            return Err(CodecError(format!(
                "cannot decode `BytesMessage`: {len} bytes announced, {} there",
                total.saturating_sub(start)
            )));
        }
        let data = payload
            .slice(start, total - start)
            .ok_or_else(|| CodecError::new("cannot decode `BytesMessage`: out of range"))?;
        // Small ones are copied out: holding the sender's chunk is worth it
        // only where the copy costs more than the trip.
        let data = if data.len() < SHARE_MIN {
            Bytes::from(&data[..])
        } else {
            data
        };
        Ok(BytesMessage { format, data })
    }
}

/// A received `BytesMessage` at least this long keeps its bytes in the
/// shared memory they came in.
const SHARE_MIN: usize = 64 * 1024;

/// How many bytes `v` takes as a postcard varint.
fn varint_len(v: u64) -> usize {
    (64 - v.max(1).leading_zeros() as usize).div_ceil(7)
}

/// What a [`BytesMessage`]'s encoding starts with: its format tag and
/// its length, as postcard varints (at most 3 and 10 bytes); the bytes
/// themselves follow.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct WirePrefix {
    bytes: [u8; 13],
    len: u8,
}

impl WirePrefix {
    /// The prefix of a `BytesMessage` with this format tag and `len` bytes.
    pub(crate) fn new(format: u16, len: usize) -> WirePrefix {
        let mut p = WirePrefix::default();
        p.put(u64::from(format));
        p.put(len as u64);
        p
    }

    /// Appends `v` as a varint: at most 3 + 10 bytes in all, which fit.
    fn put(&mut self, mut v: u64) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            let at = usize::from(self.len);
            if let Some(slot) = self.bytes.get_mut(at) {
                *slot = if v == 0 { byte } else { byte | 0x80 };
                self.len += 1;
            }
            if v == 0 {
                return;
            }
        }
    }

    /// Its bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }
}

/// Takes the payload out of `slot` when it is a [`BytesMessage`], to be
/// sent as its [`WirePrefix`] and its bytes (moved, not copied); any other
/// payload stays in `slot`.
pub(crate) fn take_bytes<T: MessageBox>(slot: &mut Option<T>) -> Option<BytesMessage> {
    (slot as &mut dyn Any)
        .downcast_mut::<Option<BytesMessage>>()
        .and_then(Option::take)
}

impl From<Vec<u8>> for BytesMessage {
    /// The bytes with format tag 0.
    fn from(data: Vec<u8>) -> Self {
        BytesMessage {
            format: 0,
            data: data.into(),
        }
    }
}

impl From<&[u8]> for BytesMessage {
    /// A copy of the bytes with format tag 0.
    fn from(data: &[u8]) -> Self {
        BytesMessage {
            format: 0,
            data: data.into(),
        }
    }
}

impl From<&str> for BytesMessage {
    /// The UTF-8 bytes of the string with format tag 0.
    fn from(text: &str) -> Self {
        BytesMessage {
            format: 0,
            data: text.into(),
        }
    }
}

impl From<String> for BytesMessage {
    /// The UTF-8 bytes of the string with format tag 0 (no copy).
    fn from(text: String) -> Self {
        BytesMessage {
            format: 0,
            data: text.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;
    use std::fmt::Debug;

    fn round_trip<T: MessageBox + PartialEq + Debug + Clone>(value: T) {
        let mut wire = Vec::new();
        value.encode_into(&mut wire).expect("encode");
        let id = value.type_uuid();
        assert_eq!(T::decode(id, &wire).expect("decode"), Some(value.clone()));
        // Appending keeps what is already in the buffer.
        let mut prefixed = vec![0xAA, 0xBB];
        value.encode_into(&mut prefixed).expect("encode");
        assert_eq!(&prefixed[..2], &[0xAA, 0xBB]);
        assert_eq!(&prefixed[2..], &wire[..]);
        // Trailing bytes are an error.
        let mut trailing = wire.clone();
        trailing.push(0);
        assert!(T::decode(id, &trailing).is_err(), "trailing byte accepted");
    }

    fn all_std_ids() -> Vec<(&'static str, TypeUuidBytes)> {
        vec![
            ("()", <()>::TYPE_UUID),
            ("bool", bool::TYPE_UUID),
            ("u8", u8::TYPE_UUID),
            ("u16", u16::TYPE_UUID),
            ("u32", u32::TYPE_UUID),
            ("u64", u64::TYPE_UUID),
            ("u128", u128::TYPE_UUID),
            ("i8", i8::TYPE_UUID),
            ("i16", i16::TYPE_UUID),
            ("i32", i32::TYPE_UUID),
            ("i64", i64::TYPE_UUID),
            ("i128", i128::TYPE_UUID),
            ("f32", f32::TYPE_UUID),
            ("f64", f64::TYPE_UUID),
            ("char", char::TYPE_UUID),
            ("String", String::TYPE_UUID),
            ("Vec<u8>", <Vec<u8>>::TYPE_UUID),
            ("BytesMessage", BytesMessage::TYPE_UUID),
        ]
    }

    #[test]
    fn std_types_round_trip() {
        round_trip(());
        for v in [false, true] {
            round_trip(v);
        }
        for v in [0u8, 1, 127, 128, 255] {
            round_trip(v);
        }
        for v in [0u16, 300, u16::MAX] {
            round_trip(v);
        }
        for v in [0u32, 1 << 20, u32::MAX] {
            round_trip(v);
        }
        for v in [0u64, 1 << 40, u64::MAX] {
            round_trip(v);
        }
        for v in [0u128, 1 << 100, u128::MAX] {
            round_trip(v);
        }
        for v in [0i8, -1, i8::MIN, i8::MAX] {
            round_trip(v);
        }
        for v in [0i16, -300, i16::MIN, i16::MAX] {
            round_trip(v);
        }
        for v in [0i32, -70_000, i32::MIN, i32::MAX] {
            round_trip(v);
        }
        for v in [0i64, -(1 << 40), i64::MIN, i64::MAX] {
            round_trip(v);
        }
        for v in [0i128, -(1 << 100), i128::MIN, i128::MAX] {
            round_trip(v);
        }
        for v in [0.0f32, -1.5, f32::MAX, f32::MIN_POSITIVE, f32::INFINITY] {
            round_trip(v);
        }
        for v in [0.0f64, -1.5, f64::MAX, f64::MIN_POSITIVE, f64::NEG_INFINITY] {
            round_trip(v);
        }
        for v in ['a', 'é', '\u{1F680}', '\0', char::MAX] {
            round_trip(v);
        }
        for v in ["", "hello", "héllo wörld 🚀"] {
            round_trip(v.to_string());
        }
        round_trip(Vec::<u8>::new());
        round_trip(vec![0u8, 1, 2, 255]);
    }

    #[test]
    fn nan_round_trips_bit_exact() {
        let mut wire = Vec::new();
        f64::NAN.encode_into(&mut wire).unwrap();
        let back = f64::decode(f64::TYPE_UUID, &wire).unwrap().unwrap();
        assert_eq!(back.to_bits(), f64::NAN.to_bits());
        let mut wire = Vec::new();
        f32::NAN.encode_into(&mut wire).unwrap();
        let back = f32::decode(f32::TYPE_UUID, &wire).unwrap().unwrap();
        assert_eq!(back.to_bits(), f32::NAN.to_bits());
    }

    #[test]
    fn std_ids_are_distinct_and_not_nil() {
        let ids = all_std_ids();
        let set: HashSet<_> = ids.iter().map(|(_, id)| *id).collect();
        assert_eq!(set.len(), ids.len(), "duplicate built-in id");
        assert!(!set.contains(&[0u8; 16]));
        // Every id is a version 4, RFC 4122 variant UUID, as generated.
        for (name, id) in &ids {
            assert_eq!(id[6] >> 4, 4, "{name}: not version 4");
            assert_eq!(id[8] >> 6, 0b10, "{name}: not RFC 4122 variant");
        }
    }

    #[test]
    fn std_ids_match_module_docs() {
        let docs = include_str!("payload.rs");
        for (name, id) in all_std_ids() {
            let text = uuid::Uuid::from_bytes(id).hyphenated().to_string();
            let row = format!("| `{name}` | `{text}` |");
            let row_link = format!("| [`{name}`] | `{text}` |");
            assert!(
                docs.contains(&row) || docs.contains(&row_link),
                "docs table lacks {row}"
            );
        }
    }

    #[test]
    fn bytes_message_round_trips() {
        round_trip(BytesMessage::default());
        round_trip(BytesMessage::new(0, Vec::new()));
        round_trip(BytesMessage::new(7, vec![42]));
        let big: Vec<u8> = (0..100 * 1024).map(|i| (i * 31 % 251) as u8).collect();
        round_trip(BytesMessage::new(u16::MAX, big));
    }

    #[test]
    fn bytes_message_wire_is_compact_and_matches_plain_vec() {
        #[derive(Serialize)]
        struct Plain {
            format: u16,
            data: Vec<u8>,
        }
        let data: Vec<u8> = (0..=255).collect();
        let m = BytesMessage::new(300, data.clone());
        let mut wire = Vec::new();
        m.encode_into(&mut wire).unwrap();
        let plain = postcard::to_allocvec(&Plain { format: 300, data }).unwrap();
        assert_eq!(wire, plain);
        // varint(300) = 2 bytes, varint(256) = 2 bytes, then the bytes.
        assert_eq!(wire.len(), 2 + 2 + 256);
        assert_eq!(&wire[4..], &m.data[..]);
    }

    #[test]
    fn bytes_message_constructors() {
        assert_eq!(
            BytesMessage::new(5, vec![1, 2]),
            BytesMessage {
                format: 5,
                data: vec![1, 2].into()
            }
        );
        assert_eq!(BytesMessage::new(5, &b"ab"[..]).data, b"ab");
        assert_eq!(BytesMessage::from(vec![9u8]).format, 0);
        assert_eq!(BytesMessage::from(vec![9u8]).data, vec![9]);
        assert_eq!(
            BytesMessage::from("hi"),
            BytesMessage::new(0, b"hi".to_vec())
        );
        assert_eq!(BytesMessage::from(String::from("hi")).data, b"hi");
        assert_eq!(BytesMessage::from(&b"xy"[..]).data, b"xy");
    }

    #[test]
    fn unknown_id_is_none_not_error() {
        let mut wire = Vec::new();
        "text".to_string().encode_into(&mut wire).unwrap();
        assert_eq!(u32::decode(String::TYPE_UUID, &wire), Ok(None));
        assert_eq!(BytesMessage::decode([0; 16], &wire), Ok(None));
        // Even garbage bytes: the id is checked first.
        assert_eq!(u64::decode([9; 16], &[0xFF; 3]), Ok(None));
    }

    #[test]
    fn decode_errors_are_readable() {
        let err = u32::decode(u32::TYPE_UUID, &[]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("payload codec: cannot decode `u32`"),
            "{text}"
        );
        let err = u8::decode(u8::TYPE_UUID, &[1, 2]).unwrap_err();
        assert!(err.message().contains("1 trailing byte"), "{err}");
        assert_eq!(CodecError::new("x"), CodecError("x".into()));
        let _: &dyn std::error::Error = &err;
    }

    #[test]
    fn lying_lengths_fail_cleanly() {
        // BytesMessage claiming u64::MAX-ish / 1 GiB of data with 3 bytes present.
        let mut lie = vec![0x01];
        lie.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]);
        lie.extend_from_slice(&[1, 2, 3]);
        assert!(BytesMessage::decode(BytesMessage::TYPE_UUID, &lie).is_err());
        let gib = [0x01, 0x80, 0x80, 0x80, 0x80, 0x04, 1, 2, 3];
        assert!(BytesMessage::decode(BytesMessage::TYPE_UUID, &gib).is_err());
        assert!(<Vec<u8>>::decode(<Vec<u8>>::TYPE_UUID, &gib[1..]).is_err());
        assert!(String::decode(String::TYPE_UUID, &gib[1..]).is_err());
        // Over-long varint, invalid UTF-8, invalid char, invalid bool.
        assert!(u32::decode(u32::TYPE_UUID, &[0xFF; 6]).is_err());
        assert!(String::decode(String::TYPE_UUID, &[2, 0xC3, 0x28]).is_err());
        assert!(char::decode(char::TYPE_UUID, &[3, 0xED, 0xA0, 0x80]).is_err());
        assert!(bool::decode(bool::TYPE_UUID, &[2]).is_err());
        // Truncations of a valid encoding.
        let mut wire = Vec::new();
        BytesMessage::new(1000, vec![7; 500])
            .encode_into(&mut wire)
            .unwrap();
        for cut in 0..wire.len() {
            assert!(BytesMessage::decode(BytesMessage::TYPE_UUID, &wire[..cut]).is_err());
        }
    }

    // ---- derives, used from inside busbar (`extern crate self as busbar`) ----

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, crate::TypeUuid)]
    #[uuid = "5f0c2d1e-8a3b-4c7d-9e6f-0a1b2c3d4e5f"]
    struct Point {
        x: i32,
        y: i32,
        name: String,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, crate::TypeUuid)]
    #[uuid = "A1B2C3D4E5F60718293A4B5C6D7E8F90"]
    enum Shape {
        Circle { r: f64 },
        Square(u32),
        Empty,
    }

    #[derive(Debug, Clone, PartialEq, crate::MessageBox)]
    enum Msg {
        Point(Point),
        Text(String),
        Bytes(BytesMessage),
    }

    #[derive(Debug, Clone, PartialEq, crate::MessageBox)]
    enum Outer {
        Inner(Msg),
        Shape(Shape),
        Number(u64),
    }

    /// Two variants of the same type: no `From` impls, first variant wins on decode.
    #[derive(Debug, Clone, PartialEq, crate::MessageBox)]
    enum Twice {
        First(u8),
        Second(u8),
        Other(i8),
    }

    /// `From` generation switched off.
    #[derive(Debug, Clone, PartialEq, crate::MessageBox)]
    #[message_box(no_from)]
    enum NoFrom {
        A(u16),
    }

    impl From<u16> for NoFrom {
        fn from(v: u16) -> Self {
            NoFrom::A(v + 1)
        }
    }

    fn point() -> Point {
        Point {
            x: -3,
            y: 4,
            name: "p".into(),
        }
    }

    #[test]
    fn derived_type_uuid() {
        assert_eq!(
            Point::TYPE_UUID,
            [
                0x5f, 0x0c, 0x2d, 0x1e, 0x8a, 0x3b, 0x4c, 0x7d, 0x9e, 0x6f, 0x0a, 0x1b, 0x2c, 0x3d,
                0x4e, 0x5f
            ]
        );
        assert_eq!(Shape::TYPE_UUID, id(0xa1b2c3d4_e5f6_0718_293a_4b5c6d7e8f90));
        round_trip(point());
        round_trip(Shape::Circle { r: 1.5 });
        round_trip(Shape::Square(9));
        round_trip(Shape::Empty);
    }

    #[test]
    fn derived_message_box_round_trips() {
        let cases = [
            (Msg::Point(point()), Point::TYPE_UUID),
            (Msg::Text("hello".into()), String::TYPE_UUID),
            (
                Msg::Bytes(BytesMessage::new(2, vec![1; 10])),
                BytesMessage::TYPE_UUID,
            ),
        ];
        for (m, id) in cases {
            assert_eq!(m.type_uuid(), id);
            round_trip(m.clone());
            // The enum's wire bytes are exactly the inner value's.
            let mut enum_wire = Vec::new();
            m.encode_into(&mut enum_wire).unwrap();
            let mut inner_wire = Vec::new();
            match &m {
                Msg::Point(v) => v.encode_into(&mut inner_wire),
                Msg::Text(v) => v.encode_into(&mut inner_wire),
                Msg::Bytes(v) => v.encode_into(&mut inner_wire),
            }
            .unwrap();
            assert_eq!(enum_wire, inner_wire);
        }
        // A single type decodes what an enum sent, and vice versa.
        let mut wire = Vec::new();
        Msg::Text("x".into()).encode_into(&mut wire).unwrap();
        assert_eq!(
            String::decode(String::TYPE_UUID, &wire),
            Ok(Some("x".into()))
        );
        assert_eq!(
            Msg::decode(String::TYPE_UUID, &wire),
            Ok(Some(Msg::Text("x".into())))
        );
    }

    #[test]
    fn derived_from_impls() {
        assert_eq!(Msg::from(point()), Msg::Point(point()));
        assert_eq!(Msg::from("s".to_string()), Msg::Text("s".into()));
        assert_eq!(
            Msg::from(BytesMessage::default()),
            Msg::Bytes(BytesMessage::default())
        );
        assert_eq!(
            Outer::from(Msg::Text("t".into())),
            Outer::Inner(Msg::Text("t".into()))
        );
        assert_eq!(Twice::from(-1i8), Twice::Other(-1));
        assert_eq!(NoFrom::from(1u16), NoFrom::A(2));
    }

    #[test]
    fn duplicate_variant_types_decode_to_first() {
        let mut wire = Vec::new();
        Twice::Second(5).encode_into(&mut wire).unwrap();
        assert_eq!(
            Twice::decode(u8::TYPE_UUID, &wire),
            Ok(Some(Twice::First(5)))
        );
        round_trip(NoFrom::A(1));
    }

    #[test]
    fn unknown_type_is_skipped_by_derived_box() {
        let mut wire = Vec::new();
        7u64.encode_into(&mut wire).unwrap();
        assert_eq!(Msg::decode(u64::TYPE_UUID, &wire), Ok(None));
        assert_eq!(Msg::decode([0; 16], &wire), Ok(None));
        let mut wire = Vec::new();
        point().encode_into(&mut wire).unwrap();
        assert_eq!(Twice::decode(Point::TYPE_UUID, &wire), Ok(None));
    }

    #[test]
    fn derived_box_propagates_decode_errors() {
        // Known id, bad bytes: an error, not None.
        assert!(Msg::decode(String::TYPE_UUID, &[5, b'a']).is_err());
        assert!(Outer::decode(Point::TYPE_UUID, &[]).is_err());
    }

    #[test]
    fn nested_enum() {
        let cases = [
            Outer::Inner(Msg::Point(point())),
            Outer::Inner(Msg::Text("nested".into())),
            Outer::Inner(Msg::Bytes(BytesMessage::from("b"))),
            Outer::Shape(Shape::Circle { r: 2.0 }),
            Outer::Number(u64::MAX),
        ];
        for m in cases {
            round_trip(m.clone());
        }
        assert_eq!(
            Outer::Inner(Msg::Point(point())).type_uuid(),
            Point::TYPE_UUID
        );
        // The inner enum decodes what the outer one sent, when it knows the type.
        let mut wire = Vec::new();
        Outer::Inner(Msg::Text("t".into()))
            .encode_into(&mut wire)
            .unwrap();
        assert_eq!(
            Msg::decode(String::TYPE_UUID, &wire),
            Ok(Some(Msg::Text("t".into())))
        );
        let mut wire = Vec::new();
        Outer::Number(3).encode_into(&mut wire).unwrap();
        assert_eq!(Msg::decode(u64::TYPE_UUID, &wire), Ok(None));
    }

    fn decode_all(id: TypeUuidBytes, bytes: &[u8]) {
        // Only the outcome matters: no panic, no abort, no huge allocation.
        let _ = <()>::decode(id, bytes);
        let _ = bool::decode(id, bytes);
        let _ = u8::decode(id, bytes);
        let _ = u16::decode(id, bytes);
        let _ = u32::decode(id, bytes);
        let _ = u64::decode(id, bytes);
        let _ = u128::decode(id, bytes);
        let _ = i8::decode(id, bytes);
        let _ = i16::decode(id, bytes);
        let _ = i32::decode(id, bytes);
        let _ = i64::decode(id, bytes);
        let _ = i128::decode(id, bytes);
        let _ = f32::decode(id, bytes);
        let _ = f64::decode(id, bytes);
        let _ = char::decode(id, bytes);
        let _ = String::decode(id, bytes);
        let _ = <Vec<u8>>::decode(id, bytes);
        let _ = BytesMessage::decode(id, bytes);
        let _ = Point::decode(id, bytes);
        let _ = Shape::decode(id, bytes);
        let _ = Msg::decode(id, bytes);
        let _ = Outer::decode(id, bytes);
    }

    fn known_ids() -> Vec<TypeUuidBytes> {
        let mut ids: Vec<_> = all_std_ids().into_iter().map(|(_, id)| id).collect();
        ids.push(Point::TYPE_UUID);
        ids.push(Shape::TYPE_UUID);
        ids
    }

    fn valid_encoding() -> impl Strategy<Value = (TypeUuidBytes, Vec<u8>)> {
        (
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..64),
            any::<i32>(),
            ".{0,16}",
            0usize..4,
        )
            .prop_map(|(format, data, n, text, which)| {
                let m = match which {
                    0 => Outer::Inner(Msg::Bytes(BytesMessage::new(format, data))),
                    1 => Outer::Inner(Msg::Point(Point {
                        x: n,
                        y: -n,
                        name: text,
                    })),
                    2 => Outer::Inner(Msg::Text(text)),
                    _ => Outer::Shape(Shape::Square(n as u32)),
                };
                let mut wire = Vec::new();
                m.encode_into(&mut wire).expect("encode");
                (m.type_uuid(), wire)
            })
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(
            which in 0usize..20,
            bytes in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let ids = known_ids();
            decode_all(ids[which % ids.len()], &bytes);
        }

        #[test]
        fn mutated_encodings_never_panic(
            (id, wire) in valid_encoding(),
            cut in any::<prop::sample::Index>(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            extra in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            // Truncated.
            let end = if wire.is_empty() { 0 } else { cut.index(wire.len()) };
            decode_all(id, &wire[..end]);
            // Corrupted bytes (including lying lengths and varints).
            let mut bad = wire.clone();
            if !bad.is_empty() {
                for (i, v) in &flips {
                    let at = i.index(bad.len());
                    bad[at] = *v;
                }
            }
            decode_all(id, &bad);
            // Extra bytes: an error for every box that knows the id.
            let mut longer = wire.clone();
            longer.extend_from_slice(&extra);
            if !extra.is_empty() {
                prop_assert!(Outer::decode(id, &longer).is_err());
            }
            decode_all(id, &longer);
        }

        #[test]
        fn bytes_message_round_trips_any(format in any::<u16>(), data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let m = BytesMessage::new(format, data);
            let mut wire = Vec::new();
            m.encode_into(&mut wire).unwrap();
            prop_assert_eq!(BytesMessage::decode(BytesMessage::TYPE_UUID, &wire), Ok(Some(m)));
        }
    }
}
