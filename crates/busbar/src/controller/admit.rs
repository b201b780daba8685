//! Admission: may this connection join the bus?

use crate::frame::{self, Control, FrameError, Refusal, PROTOCOL_VERSION};
use crate::sys::socket::PeerCred;
use crate::Access;

/// Checks a join request: protocol version, the joiner's credentials against
/// `access` (for a controller running as `our_uid`), then the token (in
/// constant time). Gives the endpoint's id and label, or why it is refused.
///
/// The credentials come before the token so that a process the policy keeps
/// out learns nothing about the token by trying.
pub(crate) fn check(
    bytes: &[u8],
    token: &[u8],
    access: &Access,
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
    if !access.admits(our_uid, cred) {
        return Err(Refusal::Permission { uid: cred.uid });
    }
    if !constant_time_eq(token, &theirs) {
        return Err(Refusal::Token);
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

    const SAME: &Access = &Access::SameUser;

    #[test]
    fn admits_and_refuses() {
        assert_eq!(
            check(&join(PROTOCOL_VERSION, b"t"), b"t", SAME, 1000, ME),
            Ok((7, vec!["a".into()]))
        );
        assert_eq!(
            check(&join(PROTOCOL_VERSION, b"x"), b"t", SAME, 1000, ME),
            Err(Refusal::Token)
        );
        assert_eq!(
            check(&join(PROTOCOL_VERSION, b"tt"), b"t", SAME, 1000, ME),
            Err(Refusal::Token)
        );
        assert_eq!(
            check(&join(9, b"t"), b"t", SAME, 1000, ME),
            Err(Refusal::Version {
                controller: PROTOCOL_VERSION
            })
        );
        assert_eq!(
            check(&join(PROTOCOL_VERSION, b"t"), b"t", SAME, 0, ME),
            Err(Refusal::Permission { uid: 1000 })
        );
        assert_eq!(
            check(b"garbage", b"t", SAME, 1000, ME),
            Err(Refusal::Malformed)
        );
    }

    #[test]
    fn the_access_policy_decides_who_may_join() {
        let ok = Ok((7, vec!["a".into()]));
        let allow_uid = Access::Allow {
            uids: vec![1000],
            gids: vec![],
        };
        let allow_gid = Access::Allow {
            uids: vec![],
            gids: vec![1000],
        };
        let allow_other = Access::Allow {
            uids: vec![5],
            gids: vec![6],
        };
        let request = join(PROTOCOL_VERSION, b"t");
        assert_eq!(check(&request, b"t", &allow_uid, 0, ME), ok);
        assert_eq!(check(&request, b"t", &allow_gid, 0, ME), ok);
        assert_eq!(check(&request, b"t", &Access::Anyone, 0, ME), ok);
        assert_eq!(
            check(&request, b"t", &allow_other, 0, ME),
            Err(Refusal::Permission { uid: 1000 })
        );
        // A stranger with a wrong token hears only that it is not admitted.
        assert_eq!(
            check(&join(PROTOCOL_VERSION, b"x"), b"t", SAME, 0, ME),
            Err(Refusal::Permission { uid: 1000 })
        );
    }

    #[test]
    fn refusals_keep_their_tags() {
        // Control::Refuse is tag 0; the refusal's own tag follows. New
        // refusals go at the end, so an older joiner still reads these.
        let tags = [
            (Refusal::Token, 1),
            (Refusal::Permission { uid: 3 }, 2),
            (Refusal::DuplicateId, 3),
            (Refusal::Malformed, 4),
            (Refusal::Full { max: 3 }, 5),
        ];
        for (refusal, tag) in tags {
            let body = postcard::to_allocvec(&Control::Refuse(refusal.clone())).expect("encode");
            assert_eq!(&body[..2], &[0, tag], "{refusal:?}");
        }
        let full =
            postcard::to_allocvec(&Control::Refuse(Refusal::Full { max: 3 })).expect("encode");
        assert_eq!(full, [0, 5, 3]);
    }
}
