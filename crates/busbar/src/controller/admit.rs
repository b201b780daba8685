//! Admission: may this connection join the bus?

use crate::frame::{self, Control, FrameError, Refusal, PROTOCOL_VERSION};
use crate::sys::socket::PeerCred;

/// Checks a join request: protocol version, token (in constant time), uid.
/// Gives the endpoint's id and label, or why it is refused.
pub(crate) fn check(
    bytes: &[u8],
    token: &[u8],
    our_uid: u32,
    cred: PeerCred,
) -> Result<(u64, Vec<String>), Refusal> {
    match frame::check(bytes, 0) {
        Ok(h) if h.kind == frame::Kind::Control => {}
        Err(FrameError::Version(_)) => {
            return Err(Refusal::Version {
                controller: PROTOCOL_VERSION,
            })
        }
        _ => return Err(Refusal::Malformed),
    }
    let Ok(Control::Join {
        version,
        token: theirs,
        id,
        label,
    }) = frame::decode_small::<Control>(bytes)
    else {
        return Err(Refusal::Malformed);
    };
    if version != PROTOCOL_VERSION {
        return Err(Refusal::Version {
            controller: PROTOCOL_VERSION,
        });
    }
    if !constant_time_eq(token, &theirs) {
        return Err(Refusal::Token);
    }
    if cred.uid != our_uid {
        return Err(Refusal::Permission { uid: cred.uid });
    }
    Ok((id, label))
}

/// Compares two byte strings in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    // Keep the optimiser from short-circuiting the loop.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{encode_small, Kind};

    const ME: PeerCred = PeerCred {
        pid: 1,
        uid: 1000,
        gid: 1000,
    };

    fn join(version: u16, token: &[u8]) -> Vec<u8> {
        let j = Control::Join {
            version,
            token: token.to_vec(),
            id: 7,
            label: vec!["a".into()],
        };
        encode_small(Kind::Control, &j, version)
    }

    #[test]
    fn admits_and_refuses() {
        assert_eq!(
            check(&join(PROTOCOL_VERSION, b"t"), b"t", 1000, ME),
            Ok((7, vec!["a".into()]))
        );
        assert_eq!(
            check(&join(PROTOCOL_VERSION, b"x"), b"t", 1000, ME),
            Err(Refusal::Token)
        );
        assert_eq!(
            check(&join(PROTOCOL_VERSION, b"tt"), b"t", 1000, ME),
            Err(Refusal::Token)
        );
        assert_eq!(
            check(&join(9, b"t"), b"t", 1000, ME),
            Err(Refusal::Version {
                controller: PROTOCOL_VERSION
            })
        );
        assert_eq!(
            check(&join(PROTOCOL_VERSION, b"t"), b"t", 0, ME),
            Err(Refusal::Permission { uid: 1000 })
        );
        assert_eq!(check(b"garbage", b"t", 1000, ME), Err(Refusal::Malformed));
    }
}
