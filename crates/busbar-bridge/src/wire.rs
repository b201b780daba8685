//! What bridges say to each other over Zenoh, and the names they say it under.
//!
//! Keys (all under `busbar/`):
//!
//! - `busbar/ep/<zid>/<host>/<id>/l<label>`: a liveliness token per
//!   exported endpoint, held by the bridge whose Zenoh id is `<zid>` while
//!   the endpoint is on its bus. `<id>` is the endpoint's id (16 hex
//!   digits), `<label>` its label: each item as a 2-byte big-endian length
//!   and its UTF-8 bytes, in hex.
//! - `busbar/to/<zid>`: messages for the bridge whose Zenoh id is `<zid>`.
//!
//! A message (little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `BBZ1` |
//! | 1 | kind: 1 message, 2 request, 3 answer, 4 request failed |
//! | 1 | length `z` of the sending bridge's Zenoh id (1 to 32) |
//! | 2 | number of regions `n` |
//! | z | the sending bridge's Zenoh id (ASCII hex) |
//! | 8 | source endpoint id (on the sending bridge's bus) |
//! | 8 | destination endpoint id (on the receiving bridge's bus) |
//! | 8 | correlation id (requests, answers) |
//! | 16 | payload type id |
//! | 8 | payload length `p` |
//! | p | payload (postcard, as busbar encoded it) |
//! | n × (8 + len) | each region's length and contents |
//!
//! A Zenoh sample on `busbar/to/<zid>` carries one message or several, one
//! after the other (a *batch*: a message's lengths say where it ends).
//!
//! Everything is checked before use: a batch with a message that does not
//! parse is dropped whole and counted, never trusted.

use busbar::{Label, TypeUuidBytes};
use std::ops::Range;

/// The prefix of every key.
pub const PREFIX: &str = "busbar";

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A message.
    Message = 1,
    /// A request waiting for an answer.
    Request = 2,
    /// The answer to a request.
    Answer = 3,
    /// A request that got no answer on the other side.
    Failed = 4,
}

/// A decoded bridge message, borrowing from the bytes it came in.
#[derive(Debug)]
pub struct Frame<'a> {
    /// What it is.
    pub kind: Kind,
    /// The sending bridge's Zenoh id.
    pub zid: &'a str,
    /// The source endpoint (on the sender's bus).
    pub src: u64,
    /// The destination endpoint (on the receiver's bus).
    pub dst: u64,
    /// The correlation id.
    pub corr: u64,
    /// The payload's type id.
    pub type_uuid: TypeUuidBytes,
    /// Where the payload lies in the frame.
    pub payload: Range<usize>,
    /// Where each region's contents lie in the frame.
    pub regions: Vec<Range<usize>>,
}

/// The most bytes of a frame [`decode_prefix`] reads: every field up to
/// the payload, with the longest Zenoh id.
pub const PREFIX_MAX: usize = 4 + 4 + 32 + 8 + 8 + 8 + 16 + 8;

const MAGIC: &[u8; 4] = b"BBZ1";

/// Encodes a frame header announcing a payload of `payload_len` bytes,
/// which the caller sends after it (then regions, with [`push_region`]).
#[allow(clippy::too_many_arguments)]
pub fn encode_head(
    kind: Kind,
    zid: &str,
    src: u64,
    dst: u64,
    corr: u64,
    type_uuid: TypeUuidBytes,
    payload_len: usize,
    regions: usize,
    extra: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(PREFIX_MAX + extra);
    encode_head_into(
        &mut out,
        kind,
        zid,
        src,
        dst,
        corr,
        type_uuid,
        payload_len,
        regions,
    );
    out
}

/// [`encode_head`], appended to `out` (a batch of frames, say).
#[allow(clippy::too_many_arguments)]
pub fn encode_head_into(
    out: &mut Vec<u8>,
    kind: Kind,
    zid: &str,
    src: u64,
    dst: u64,
    corr: u64,
    type_uuid: TypeUuidBytes,
    payload_len: usize,
    regions: usize,
) {
    out.extend_from_slice(MAGIC);
    out.push(kind as u8);
    out.push(zid.len() as u8);
    out.extend_from_slice(&(regions as u16).to_le_bytes());
    out.extend_from_slice(zid.as_bytes());
    out.extend_from_slice(&src.to_le_bytes());
    out.extend_from_slice(&dst.to_le_bytes());
    out.extend_from_slice(&corr.to_le_bytes());
    out.extend_from_slice(&type_uuid);
    out.extend_from_slice(&(payload_len as u64).to_le_bytes());
}

/// Encodes a frame header and its payload; regions are appended by the
/// caller with [`push_region`].
#[allow(clippy::too_many_arguments)]
pub fn encode(
    kind: Kind,
    zid: &str,
    src: u64,
    dst: u64,
    corr: u64,
    type_uuid: TypeUuidBytes,
    payload: &[u8],
    regions: usize,
    extra: usize,
) -> Vec<u8> {
    let mut out = encode_head(
        kind,
        zid,
        src,
        dst,
        corr,
        type_uuid,
        payload.len(),
        regions,
        payload.len() + extra,
    );
    out.extend_from_slice(payload);
    out
}

/// Appends a region's contents to a frame from [`encode`].
pub fn push_region(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// Reads `bytes`, the first bytes (or all) of a frame of `total` bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    total: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self.at.checked_add(n).ok_or(Malformed("truncated"))?;
        let head = self.bytes.get(self.at..end).ok_or(Malformed("truncated"))?;
        self.at = end;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, Malformed> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A length word, and where the `n` bytes after it lie (skipped).
    fn span(&mut self, max: u64) -> Result<Range<usize>, Malformed> {
        let n = self.u64()?;
        let left = self.total.saturating_sub(self.at) as u64;
        if n > max || n > left {
            return Err(Malformed("a length beyond the frame or the limit"));
        }
        let start = self.at;
        self.at += n as usize;
        Ok(start..self.at)
    }
}

/// Decodes a whole frame, checking every length against what arrived and
/// against `max_payload` (regions too).
pub fn decode(bytes: &[u8], max_payload: u64) -> Result<Frame<'_>, Malformed> {
    decode_in(bytes, bytes.len(), max_payload, true).map(|(f, _)| f)
}

/// Decodes the first frame of a batch (frames one after the other, as
/// one Zenoh sample carries them) and says how many bytes it takes; its
/// ranges are from the start of `bytes`. Checked as [`decode`] checks a
/// frame, against the bytes left in the batch.
pub fn decode_next(bytes: &[u8], max_payload: u64) -> Result<(Frame<'_>, usize), Malformed> {
    decode_in(bytes, bytes.len(), max_payload, false)
}

/// Decodes every frame of a batch, each with where it starts in `bytes`
/// (its ranges are from there): all of them, or `Err` for the first that
/// does not parse (a batch cut inside a frame, a length that lies, bytes
/// that are no frame). An empty batch is refused too. A batch cut exactly
/// between two frames cannot be told from a shorter one: each frame is
/// whole and checked.
pub fn decode_batch(
    bytes: &[u8],
    max_payload: u64,
) -> Result<Vec<(usize, Frame<'_>)>, (usize, Malformed)> {
    let mut frames = Vec::new();
    let mut at = 0;
    while at < bytes.len() || frames.is_empty() {
        let rest = bytes.get(at..).unwrap_or_default();
        let (f, used) = decode_next(rest, max_payload).map_err(|e| (frames.len(), e))?;
        frames.push((at, f));
        at += used;
    }
    Ok(frames)
}

/// Decodes a frame of `total` bytes from its first bytes (at least
/// [`PREFIX_MAX`], or all of it), for a frame that came in pieces: its
/// payload is then read from the pieces. A frame with regions needs the
/// whole frame (their lengths follow the payload): `Err` here, and
/// [`decode`] says whether it is sound.
pub fn decode_prefix(
    prefix: &[u8],
    total: usize,
    max_payload: u64,
) -> Result<Frame<'_>, Malformed> {
    decode_in(prefix, total, max_payload, true).map(|(f, _)| f)
}

/// Decodes a frame from `bytes`, the first bytes of `total`; `whole`:
/// nothing may follow it.
fn decode_in(
    bytes: &[u8],
    total: usize,
    max_payload: u64,
    whole: bool,
) -> Result<(Frame<'_>, usize), Malformed> {
    let mut r = Reader {
        bytes,
        at: 0,
        total: total.max(bytes.len()),
    };
    if r.take(4)? != MAGIC {
        return Err(Malformed("bad magic"));
    }
    let head = r.take(4)?;
    let kind = match head[0] {
        1 => Kind::Message,
        2 => Kind::Request,
        3 => Kind::Answer,
        4 => Kind::Failed,
        _ => return Err(Malformed("unknown kind")),
    };
    let zid_len = usize::from(head[1]);
    if zid_len == 0 || zid_len > 32 {
        return Err(Malformed("bad zenoh id length"));
    }
    let regions = usize::from(u16::from_le_bytes([head[2], head[3]]));
    let zid = std::str::from_utf8(r.take(zid_len)?).map_err(|_| Malformed("zenoh id not text"))?;
    if !zid.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Malformed("zenoh id not hex"));
    }
    let src = r.u64()?;
    let dst = r.u64()?;
    let corr = r.u64()?;
    let mut type_uuid = [0u8; 16];
    type_uuid.copy_from_slice(r.take(16)?);
    let payload = r.span(max_payload)?;
    if regions > 253 {
        return Err(Malformed("too many regions"));
    }
    let mut out = Vec::with_capacity(regions);
    for _ in 0..regions {
        out.push(r.span(max_payload)?);
    }
    if whole && r.at != r.total {
        return Err(Malformed("trailing bytes"));
    }
    let used = r.at;
    let frame = Frame {
        kind,
        zid,
        src,
        dst,
        corr,
        type_uuid,
        payload,
        regions: out,
    };
    Ok((frame, used))
}

/// The liveliness key announcing endpoint `id` with `label` on `host`,
/// through bridge `zid`.
pub fn endpoint_key(zid: &str, host: &str, id: u64, label: &Label) -> String {
    let mut hex = String::from("l");
    for item in label.iter() {
        let bytes = item.as_bytes();
        let len = bytes.len().min(u16::MAX as usize);
        for b in (len as u16).to_be_bytes().iter().chain(&bytes[..len]) {
            hex.push_str(&format!("{b:02x}"));
        }
    }
    format!("{PREFIX}/ep/{zid}/{host}/{id:016x}/{hex}")
}

/// What an endpoint key says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced {
    /// The bridge holding the token.
    pub zid: String,
    /// Its host name.
    pub host: String,
    /// The endpoint's id there.
    pub id: u64,
    /// The endpoint's label.
    pub label: Label,
}

/// Parses a key from [`endpoint_key`].
pub fn parse_endpoint_key(key: &str) -> Result<Announced, Malformed> {
    let mut parts = key.split('/');
    let (Some(PREFIX), Some("ep"), Some(zid), Some(host), Some(id), Some(label), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(Malformed("not an endpoint key"));
    };
    if zid.is_empty() || zid.len() > 32 || !zid.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Malformed("bad zenoh id"));
    }
    crate::config::check_host(host).map_err(|_| Malformed("bad host"))?;
    if id.len() != 16 {
        return Err(Malformed("bad endpoint id"));
    }
    let id = u64::from_str_radix(id, 16).map_err(|_| Malformed("bad endpoint id"))?;
    let hex = label.strip_prefix('l').ok_or(Malformed("bad label"))?;
    if hex.len() % 2 != 0 {
        return Err(Malformed("bad label"));
    }
    let mut bytes = Vec::with_capacity(hex.len() / 2);
    for pair in hex.as_bytes().chunks(2) {
        let s = std::str::from_utf8(pair).map_err(|_| Malformed("bad label"))?;
        bytes.push(u8::from_str_radix(s, 16).map_err(|_| Malformed("bad label"))?);
    }
    let mut items = Vec::new();
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        if rest.len() < 2 {
            return Err(Malformed("bad label"));
        }
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let item = rest.get(2..2 + n).ok_or(Malformed("bad label"))?;
        items.push(
            std::str::from_utf8(item)
                .map_err(|_| Malformed("bad label"))?
                .to_string(),
        );
        rest = &rest[2 + n..];
    }
    Ok(Announced {
        zid: zid.to_string(),
        host: host.to_string(),
        id,
        label: Label::new(items),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use busbar::label;

    #[test]
    fn frames_round_trip() {
        let mut f = encode(Kind::Request, "a1b2", 7, 9, 11, [3; 16], b"hello", 2, 0);
        push_region(&mut f, b"one");
        push_region(&mut f, b"");
        let d = decode(&f, 1 << 20).expect("decodes");
        assert_eq!(
            (d.kind, d.zid, d.src, d.dst, d.corr),
            (Kind::Request, "a1b2", 7, 9, 11)
        );
        assert_eq!((d.type_uuid, &f[d.payload]), ([3; 16], &b"hello"[..]));
        let regions: Vec<&[u8]> = d.regions.into_iter().map(|r| &f[r]).collect();
        assert_eq!(regions, [&b"one"[..], &b""[..]]);
    }

    #[test]
    fn a_frame_without_regions_decodes_from_its_prefix() {
        let payload = vec![9u8; 1000];
        let f = encode(Kind::Message, "a1b2", 7, 9, 0, [3; 16], &payload, 0, 0);
        let prefix = &f[..PREFIX_MAX];
        let d = decode_prefix(prefix, f.len(), 1 << 20).expect("decodes");
        assert_eq!((d.kind, d.zid, d.src, d.dst), (Kind::Message, "a1b2", 7, 9));
        assert_eq!(&f[d.payload], &payload[..]);
        assert!(
            decode_prefix(prefix, f.len() + 1, 1 << 20).is_err(),
            "trailing"
        );
        assert!(
            decode_prefix(prefix, f.len() - 1, 1 << 20).is_err(),
            "short"
        );
        assert!(
            decode_prefix(prefix, f.len(), 999).is_err(),
            "over the limit"
        );
        let mut g = encode(Kind::Message, "a1b2", 7, 9, 0, [3; 16], &payload, 1, 0);
        push_region(&mut g, b"r");
        assert!(
            decode_prefix(&g[..PREFIX_MAX], g.len(), 1 << 20).is_err(),
            "regions"
        );
        assert!(decode(&g, 1 << 20).is_ok());
    }

    /// Hands `check` 20,000 copies of `frame`, each with one byte changed
    /// (which and to what from an xorshift sequence started at `seed`).
    fn corrupt_one_byte(frame: &[u8], seed: u32, mut check: impl FnMut(&[u8])) {
        let mut x = seed;
        for _ in 0..20_000 {
            let mut g = frame.to_vec();
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let i = x as usize % g.len();
            g[i] = (x >> 8) as u8;
            check(&g);
        }
    }

    #[test]
    fn every_truncation_and_corruption_is_refused_without_panic() {
        let mut f = encode(Kind::Message, "ff", 1, 2, 3, [0; 16], &[5; 40], 1, 0);
        push_region(&mut f, &[6; 10]);
        for n in 0..f.len() {
            assert!(decode(&f[..n], 1 << 20).is_err(), "truncated at {n}");
        }
        corrupt_one_byte(&f, 0x1234_5678, |g| {
            let _ = decode(g, 1 << 20);
        });
        assert!(decode(&f, 39).is_err(), "a payload over the limit");
    }

    #[test]
    fn a_batch_decodes_frame_by_frame_and_a_cut_or_lying_one_is_refused() {
        let mut batch = encode(Kind::Message, "a1", 1, 2, 0, [1; 16], b"first", 0, 0);
        let second_at = batch.len();
        batch.extend(encode(
            Kind::Request,
            "a1",
            1,
            2,
            7,
            [2; 16],
            &[9; 300],
            1,
            0,
        ));
        push_region(&mut batch, b"reg");
        let third_at = batch.len();
        batch.extend(encode(Kind::Message, "a1", 1, 2, 0, [3; 16], b"", 0, 0));
        let frames = decode_batch(&batch, 1 << 20).expect("decodes");
        let starts: Vec<usize> = frames.iter().map(|(at, _)| *at).collect();
        assert_eq!(starts, [0, second_at, third_at]);
        let (at, f) = &frames[1];
        assert_eq!((f.kind, f.corr), (Kind::Request, 7));
        assert_eq!(&batch[at + f.payload.start..at + f.payload.end], &[9; 300]);
        assert_eq!(
            &batch[at + f.regions[0].start..at + f.regions[0].end],
            b"reg"
        );
        // Cut anywhere but between two frames: refused, never a panic.
        for n in 0..batch.len() {
            let got = decode_batch(&batch[..n], 1 << 20);
            if n == second_at || n == third_at {
                assert_eq!(
                    got.expect("a shorter batch").len(),
                    if n == second_at { 1 } else { 2 }
                );
            } else {
                assert!(got.is_err(), "cut at {n}");
            }
        }
        // The second frame's payload length lies, shorter or longer: refused.
        // Its payload length: after magic, kind, zid length, regions (8), the
        // zid (2) and src, dst, corr, type id (40).
        let len_at = second_at + 8 + 2 + 40;
        for lie in [299u64, 301, 1 << 40] {
            let mut g = batch.clone();
            g[len_at..len_at + 8].copy_from_slice(&lie.to_le_bytes());
            assert!(decode_batch(&g, 1 << 20).is_err(), "a length of {lie}");
        }
        // Garbage after good frames, and random corruption anywhere.
        let mut g = batch.clone();
        g.extend_from_slice(b"BBZ1junk");
        assert_eq!(
            decode_batch(&g, 1 << 20)
                .map(|f| f.len())
                .map_err(|(i, _)| i),
            Err(3)
        );
        corrupt_one_byte(&batch, 0x9e37_79b9, |g| {
            let _ = decode_batch(g, 1 << 20);
        });
    }

    #[test]
    fn endpoint_keys_round_trip() {
        let l = label!("camera", "front left", "@x=1", "");
        let k = endpoint_key("abc123", "host-1", 0xdead_beef, &l);
        let a = parse_endpoint_key(&k).expect("parses");
        assert_eq!(
            (a.zid.as_str(), a.host.as_str(), a.id),
            ("abc123", "host-1", 0xdead_beef)
        );
        assert_eq!(a.label, l);
        for bad in [
            "busbar/ep/zz/h/0000000000000001/l",
            "busbar/ep/ab/h/1/l",
            "busbar/ep/ab/h/0000000000000001/x",
            "busbar/ep/ab/h/0000000000000001/l0",
            "busbar/ep/ab/h/0000000000000001/l0005ab",
            "busbar/to/ab",
        ] {
            assert!(parse_endpoint_key(bad).is_err(), "{bad}");
        }
    }
}
