//! The platform layer: every raw syscall busbar makes goes through here.
//!
//! This is the one module that knows it runs on Linux. It wraps
//! [rustix](https://docs.rs/rustix) (itself a safe layer over the syscalls)
//! into the few operations busbar needs: `SOCK_SEQPACKET` unix sockets with
//! `SCM_RIGHTS`, `SO_PEERCRED`, epoll and eventfd (`socket`, `poll`),
//! memfd with seals and shared mappings (`memfd`), and, for the filesystem
//! namespace, private directories, `flock` and socket files (`dir`). It is
//! also the only place where `unsafe` is allowed; each block carries a
//! `// SAFETY:` comment.
//!
//! Another platform would add a sibling of this module with the same
//! functions; nothing above it names a Linux syscall.

pub(crate) mod blob;
pub(crate) mod copy;
pub(crate) mod dir;
pub(crate) mod memfd;
pub(crate) mod mpsc;
pub(crate) mod poll;
#[cfg(feature = "tokio")]
pub(crate) mod reactor;
pub(crate) mod ring;
pub(crate) mod slab;
pub(crate) mod socket;
