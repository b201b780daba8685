//! The causal directory: a receiver learns each sender from its data
//! link's hello, before it hands the application anything from it.
//!
//! The controller's `Added` for a new endpoint B reaches an endpoint A a
//! moment after B's `join` returned; B may send A a message before that, and
//! A may answer it at once. So A lists B as soon as it reads the hello of
//! B's link (which comes before any of B's frames on it): whatever A has
//! received from B, B is in A's directory, and A's answer finds it.
//!
//! A hello's id is the sender's word: it is believed only when the process
//! at the other end of the link is the one the id belongs to, by its pid as
//! the kernel gives it (`SO_PEERCRED`): the directory's for a listed id,
//! otherwise that of whoever listens at the id's own address.

use super::Shared;
use crate::frame::PeerRecord;
use crate::sync::ReadWrite;
use crate::sys::socket;
use std::os::fd::AsFd;

impl Shared {
    /// Takes the hello of a data link (its sender as it introduced itself,
    /// with the link's pid and uid). Whether to believe it: `false` when
    /// the id belongs to another process (the caller cuts the link).
    pub(crate) fn learn_sender(&self, hello: PeerRecord) -> bool {
        {
            let dir = self.directory.read_locked();
            if let Some(pid) = dir.pid_of(hello.id) {
                return pid == hello.pid;
            }
            if dir.has_left(hello.id) {
                // It left after it sent: its messages still arrive, and
                // answering it fails with `NoRoute`, as it should.
                return true;
            }
        }
        match self.pid_at(hello.id) {
            Some(pid) if pid == hello.pid => {
                self.directory.write_locked().learn(hello);
                true
            }
            Some(_) => false,
            // Nobody listens there any more: it left after it sent (or it
            // never was): nothing to list, nothing to refuse.
            None => true,
        }
    }

    /// The pid of the process listening at endpoint `id`'s data address, if
    /// any. Never waits: a listener whose backlog is full (it has not
    /// accepted its earlier connections yet) tells nothing.
    fn pid_at(&self, id: u64) -> Option<u32> {
        let addr = crate::namespace::link_address(&self.options, id).ok()?;
        let socket::Connect::Connected(conn) =
            socket::connect_within(&addr, Some(std::time::Duration::ZERO)).ok()?
        else {
            return None;
        };
        socket::peer_cred(conn.as_fd()).ok().map(|c| c.pid)
    }
}
