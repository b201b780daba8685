//! The frames an honest sender writes, byte for byte, built with the
//! library's own encoders (`busbar::testing`): a test starts from these
//! and then makes them lie.

use super::attach::{FdSpec, RawInput};
use busbar::testing::{
    encode_selector, hello_body, join_body, FrameHeader, FLAG_PAYLOAD_IN_FD, INLINE_MAX,
    KIND_CONTROL, KIND_HELLO, MAX_FDS_PER_FRAME, MAX_FRAME, MAX_SELECTOR,
};
use busbar::{BytesMessage, MessageBox, Selector, MAX_DEPTH};

/// A truthful message, as an honest sender would write it.
#[derive(Debug, Clone)]
pub struct Honest {
    /// Where it goes.
    pub selector: Selector,
    /// The payload.
    pub message: BytesMessage,
    /// Its sequence number on the link.
    pub seq: u32,
    /// How many pipes travel as objects.
    pub objects: usize,
    /// The sizes of the regions that travel with it.
    pub regions: Vec<usize>,
    /// Whether the payload travels in a sealed memfd instead of in the frame.
    pub spill: bool,
}

/// The frame an honest sender writes for `h`; `None` when it cannot travel
/// (its selector is too deep or too long, or it has too many descriptors).
pub fn honest_frame(h: &Honest) -> Option<RawInput> {
    if h.selector.label_op.depth() > MAX_DEPTH {
        return None;
    }
    let selector = encode_selector(&h.selector);
    if selector.len() > MAX_SELECTOR {
        return None;
    }
    let mut payload = Vec::new();
    h.message.encode_into(&mut payload).ok()?;
    let mut header = FrameHeader::data();
    // In range: checked against MAX_SELECTOR above.
    header.selector_len = selector.len() as u16;
    header.n_objects = u8::try_from(h.objects).ok()?;
    header.n_regions = u8::try_from(h.regions.len()).ok()?;
    header.payload_len = payload.len() as u64;
    header.seq = h.seq;
    header.type_uuid = h.message.type_uuid();
    let mut fds: Vec<FdSpec> = std::iter::repeat_n(FdSpec::Pipe, h.objects).collect();
    fds.extend(h.regions.iter().map(|&n| FdSpec::Region(n)));
    let mut bytes = Vec::new();
    if h.spill {
        header.flags |= FLAG_PAYLOAD_IN_FD;
        fds.push(FdSpec::Blob(payload));
        bytes.extend_from_slice(&header.encode());
        bytes.extend_from_slice(&selector);
    } else {
        bytes.extend_from_slice(&header.encode());
        bytes.extend_from_slice(&selector);
        bytes.extend_from_slice(&payload);
    }
    if fds.len() > MAX_FDS_PER_FRAME || bytes.len() > MAX_FRAME {
        return None;
    }
    Some(RawInput { bytes, fds })
}

/// The in-line data frame an honest sender writes for `payload` to
/// `selector` with sequence number `seq` (no descriptors: a frame that may
/// travel through the ring); `None` when it cannot travel in line.
pub fn data_frame<T: MessageBox>(selector: &Selector, payload: &T, seq: u32) -> Option<Vec<u8>> {
    if selector.label_op.depth() > MAX_DEPTH {
        return None;
    }
    let sel = encode_selector(selector);
    if sel.len() > MAX_SELECTOR {
        return None;
    }
    let mut body = Vec::new();
    payload.encode_into(&mut body).ok()?;
    if sel.len() + body.len() > INLINE_MAX {
        return None;
    }
    let mut h = FrameHeader::data();
    // In range: checked against MAX_SELECTOR above.
    h.selector_len = sel.len() as u16;
    h.payload_len = body.len() as u64;
    h.seq = seq;
    h.type_uuid = payload.type_uuid();
    let mut out = h.encode().to_vec();
    out.extend_from_slice(&sel);
    out.extend_from_slice(&body);
    Some(out)
}

/// A small frame: a header of `kind` (claiming protocol `version`)
/// counting `n_fds` descriptors, then `body`.
fn small_frame(version: u16, kind: u8, n_fds: u8, body: Vec<u8>) -> Vec<u8> {
    let mut h = FrameHeader::new(kind);
    h.version = version;
    h.n_objects = n_fds;
    h.payload_len = body.len() as u64;
    let mut out = h.encode().to_vec();
    out.extend_from_slice(&body);
    out
}

/// The hello that opens a data link from endpoint `id`.
pub fn hello_frame(id: u64) -> Vec<u8> {
    ring_hello(id, 0)
}

/// The hello of a sender with a ring from endpoint `id`: its header counts
/// `n_fds` descriptors (an honest sender's are the ring, then the eventfd).
pub fn ring_hello(id: u64, n_fds: u8) -> Vec<u8> {
    small_frame(busbar::PROTOCOL_VERSION, KIND_HELLO, n_fds, hello_body(id))
}

/// A join request to a controller, claiming protocol `version`.
pub fn join_frame(version: u16, token: &str, id: u64, label: &[&str]) -> Vec<u8> {
    small_frame(
        version,
        KIND_CONTROL,
        0,
        join_body(version, token, id, label),
    )
}
