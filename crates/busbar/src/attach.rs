//! Descriptors that travel inside a payload.
//!
//! A channel end ([`channel::Sender`](crate::channel::Sender),
//! [`channel::Receiver`](crate::channel::Receiver)) or a
//! [`SharedBytes`](crate::channel::SharedBytes) put in a payload is a
//! descriptor, and a descriptor can only travel as an attachment
//! (`SCM_RIGHTS`): its `Serialize` hands its descriptors to the send going
//! on in this thread ([`collect`]) and writes their positions among the
//! frame's descriptors; its `Deserialize` takes them back, by position,
//! from the receive going on ([`provide`]). The receiver never trusts a
//! number for a descriptor: a position names one of the descriptors that
//! came with the frame, each taken at most once, or the payload does not
//! decode.
//!
//! The descriptors a payload carries go first among the frame's objects,
//! before the message's own [`Message::objects`](crate::Message::objects);
//! those the payload does not take are handed to the application as the
//! message's objects, so an honest sender's objects arrive as they left.

use std::cell::RefCell;
use std::os::fd::OwnedFd;

thread_local! {
    /// Descriptors the payload being encoded in this thread attached.
    static OUTGOING: RefCell<Option<Vec<OwnedFd>>> = const { RefCell::new(None) };
    /// Descriptors of the frame whose payload is being decoded in this thread.
    static INCOMING: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
}

/// Puts back what a scope replaced, even when the encoder or decoder panics.
struct Restore<T: 'static> {
    key: &'static std::thread::LocalKey<RefCell<Option<T>>>,
    outer: Option<Option<T>>,
}

impl<T: 'static> Restore<T> {
    /// Swaps `value` in; the guard gives back what was there.
    fn enter(key: &'static std::thread::LocalKey<RefCell<Option<T>>>, value: T) -> Self {
        let outer = key.with(|slot| slot.replace(Some(value)));
        Restore {
            key,
            outer: Some(outer),
        }
    }

    /// Ends the scope: what it gathered.
    fn leave(mut self) -> Option<T> {
        let outer = self.outer.take().unwrap_or_default();
        self.key.with(|slot| slot.replace(outer))
    }
}

impl<T: 'static> Drop for Restore<T> {
    fn drop(&mut self) {
        if let Some(outer) = self.outer.take() {
            let _ = self.key.try_with(|slot| slot.replace(outer));
        }
    }
}

/// Runs `encode` (a payload's serialization) and gathers the descriptors
/// it attached, in order.
pub(crate) fn collect<R>(encode: impl FnOnce() -> R) -> (R, Vec<OwnedFd>) {
    let scope = Restore::enter(&OUTGOING, Vec::new());
    let out = encode();
    (out, scope.leave().unwrap_or_default())
}

/// Attaches `fd` to the payload being encoded: its position among the
/// frame's descriptors. Fails outside a send (serializing a channel end
/// with a plain serde encoder cannot carry its descriptor).
pub(crate) fn attach(fd: OwnedFd) -> Result<u32, &'static str> {
    OUTGOING.with(|slot| match slot.borrow_mut().as_mut() {
        Some(fds) => {
            let at = u32::try_from(fds.len()).map_err(|_| "too many descriptors")?;
            fds.push(fd);
            Ok(at)
        }
        None => Err("a descriptor can only be serialized into a busbar message or channel"),
    })
}

/// Runs `decode` with the frame's descriptors `fds` to take from; gives
/// back those it did not take, in order.
pub(crate) fn provide<R>(fds: Vec<OwnedFd>, decode: impl FnOnce() -> R) -> (R, Vec<OwnedFd>) {
    let scope = Restore::enter(&INCOMING, fds.into_iter().map(Some).collect());
    let out = decode();
    let left = scope.leave().unwrap_or_default();
    (out, left.into_iter().flatten().collect())
}

/// Takes the descriptor at position `at` of the frame being decoded.
/// Fails when there is none there, or it was taken already.
pub(crate) fn take(at: u32) -> Result<OwnedFd, &'static str> {
    INCOMING.with(|slot| match slot.borrow_mut().as_mut() {
        Some(fds) => fds
            .get_mut(at as usize)
            .and_then(Option::take)
            .ok_or("the payload names a descriptor the frame does not carry"),
        None => Err("a descriptor can only be deserialized from a busbar message or channel"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn null() -> OwnedFd {
        std::fs::File::open("/dev/null").expect("open").into()
    }

    #[test]
    fn positions_are_taken_once_and_the_rest_come_back_in_order() {
        let ((a, b), fds) = collect(|| (attach(null()), attach(null())));
        assert_eq!((a, b), (Ok(0), Ok(1)));
        assert_eq!(fds.len(), 2);
        let mut more = fds;
        more.push(null());
        let ((x, again, far), left) = provide(more, || (take(1), take(1), take(7)));
        assert!(x.is_ok() && again.is_err() && far.is_err());
        assert_eq!(left.len(), 2);
        assert!(
            attach(null()).is_err() && take(0).is_err(),
            "outside a scope"
        );
    }
}
