//! A named multi-producer single-consumer ring in shared memory: ipmpsc's
//! model, without its lock.
//!
//! One process creates the ring at a path ([`RingReceiver::create`]); any
//! number of processes open it there ([`RingSender::open`]) and send; the
//! receiver reads each message where it lies ([`RingReceiver::recv_with`])
//! or copies it out ([`RingReceiver::recv`]).
//!
//! ```
//! use busbar::ring::{RingReceiver, RingSender};
//! # let path = std::env::temp_dir().join(format!("busbar-doc-ring-{}", std::process::id()));
//! let mut rx = RingReceiver::create(&path, 1 << 16)?;
//! // Normally in another process: `open` waits until the receiver serves it
//! // (any of its receive calls, or its descriptor polled readable).
//! let opener = std::thread::spawn({
//!     let path = path.clone();
//!     move || -> std::io::Result<()> {
//!         let tx = RingSender::open(&path)?;
//!         tx.send(&"hello".to_string()).map_err(std::io::Error::other)?;
//!         Ok(())
//!     }
//! });
//! let got: String = rx.recv()?;
//! assert_eq!(got, "hello");
//! opener.join().unwrap()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The name
//!
//! The path is a unix socket the receiver listens on (mode 0600, or what
//! its [`Access`] admits, checked with `SO_PEERCRED` both ways). A sender
//! connects and gets, through `SCM_RIGHTS`, the ring (a sealed memfd, so
//! nobody can shrink it under a mapping and raise `SIGBUS`), the
//! receiver's doorbell (an eventfd) and its slot number. The connection
//! then stays open and silent: it is how each side learns that the other
//! is gone, `kill -9` included. `create` binds the path exclusively: a ring
//! in use is refused, a stale socket file left by a dead receiver is
//! replaced. The file is removed when the receiver is dropped, unless
//! [`RingReceiver::persist`] was called.
//!
//! # Layout and protocol
//!
//! The shared memory is described in the `sys::mpsc` module: a header, a
//! slot table (one word per connected sender: the index it is claiming
//! at), and a data area of records. The reserve index `R` says where the
//! next record goes; `head` is how far the receiver has read.
//!
//! A sender claims space **with one compare-and-swap on the claim word of
//! the record itself**, which holds the record's length: there is no
//! moment when space is reserved but its length is unknown, so whoever
//! reaches a claimed record can step over it. In order:
//!
//! 1. load `head`, then `R` = `r`, then the claim word at `r`. If it is a
//!    claim for `r` already (another sender got there first but has not
//!    moved `R` yet), help: CAS `R` from `r` past that record, start over.
//! 2. check room: `r + len - head <= capacity` (else wait for room, or
//!    `Full`). A record that would cross the end of the data area is
//!    preceded by a padding record claimed the same way.
//! 3. load `R` again: not `r` any more, start over (the claim word was
//!    loaded after `r` and may be what followed a claim at `r`, see below).
//!    Store `r` in its slot (release), then CAS the claim word from the
//!    value it loaded to `claim(r, len)`. On failure: clear the slot, and
//!    start over. On success: CAS `R` from `r` to `r + len` (failure means
//!    another sender helped).
//!    A padding record is complete once claimed: its sender then wakes the
//!    receiver as in step 4 and starts over.
//! 4. copy the payload in (postcard writes straight into the record; a
//!    byte string of a megabyte or more goes in with streaming stores,
//!    past the sender's caches, fenced before the commit: `sys/copy.rs`),
//!    store the commit word `commit(r, slack)` (release), clear the slot (release), then a `SeqCst` fence and, if
//!    the receiver's wake flag is up, swap it down and ring the doorbell.
//!
//! Claim and commit words are tagged with their index mixed with a random
//! per-ring key, so a word left from an earlier lap is not taken for this
//! lap's claim or commit. The data area is never cleared, but the one word
//! where the next claim goes is:
//!
//! **Clean claim words.** When `R` becomes `q`, the claim word at `q` is no
//! claim for `q` unless someone really claimed `q`. Whoever moves `R` from
//! `r` to `q` (the claimant, or a sender helping it) first loads the word
//! at `q`, checks that `R` is still `r` (so nobody can have claimed `q`
//! yet: that takes `R == q`), and CASes the word from what it loaded to a
//! value that is no claim for `q`; a claim made meanwhile makes the CAS
//! fail. When `q` is a whole capacity ahead of `head` (a `head` loaded
//! again if the one it has is older than the claimant's: a helper may be
//! slow), the word at `q` is the claim of the record at `head` and is left
//! alone: the receiver, as it moves past each record, stores (release) a
//! no-claim for the index a lap later in that record's claim word before
//! it stores the new `head`, and no sender can claim there before seeing
//! that `head`. A full ring has no claim at
//! `R` (it would need room), so a sender does not look for one there. So
//! payload bytes left where a record header now lies are never read as a
//! claim (without this, a 36-bit tag would match random bytes once in 2³⁶
//! looks).
//!
//! **A slow sender.** A sender that loaded `R` = `r` and then stalled may
//! load the claim word at `r` only after another sender claimed `r` and
//! committed, and the receiver read that record and stored its no-claim
//! for the next lap there: a word that is no claim for `r`, which the CAS
//! would take for free space (the sender would then write over the records
//! that follow, and its message would never be read). So step 3 loads `R`
//! again after the claim word: the receiver's no-claim store is a release
//! made after it saw the commit, which came after `R` had moved past `r`,
//! so a sender that loaded that word sees `R` past `r` and starts over.
//!
//! The receiver, at `head`: loads the claim word (acquire). No claim for
//! `head`: nothing there. A padding claim: step over it. A message claim:
//! load the commit word (acquire); committed: the payload is complete (the
//! commit's release orders the copy before it), read it, then store the
//! new `head` (release; senders load it with acquire before they reuse
//! the space), a `SeqCst` fence, and wake senders waiting for room.
//!
//! **No lock across the copy.** Nothing a sender holds during its copy
//! stops another sender: they claim further records. A sender killed at
//! any point leaves at most one claimed, uncommitted record. The receiver
//! finds it at `head`; it then looks at the slots of the senders still
//! connected (a dead process's socket is closed by the kernel, which wakes
//! the receiver's epoll): if none of them is claiming at `head`, it loads
//! the commit word once more and, still uncommitted, steps over the record
//! (its length is in the claim): the space is reclaimed. A live sender's
//! slot says `head` from before its claim (step 3 stores it first, the CAS
//! releases it, the receiver's acquire load of the claim sees it) until
//! after its commit (the slot is cleared after the commit, with release:
//! a receiver that sees the slot cleared sees the commit). A sender that
//! lost the CAS may still show `head` in its slot for a moment: the
//! receiver then just waits, and that sender wakes it when it clears its
//! slot.
//!
//! The protocol is written once, in `sys::mpsc::protocol`, over a small
//! memory trait: this module calls it on the mapping, and its loom models
//! (`sys/mpsc/loom.rs`: two senders, a wrap with padding, a full ring, a
//! sender dying between claim and commit, a sleeping receiver) on a model
//! memory: `RUSTFLAGS="--cfg loom" cargo test -p busbar --release --lib
//! sys::mpsc`.
//!
//! Waiting is as on the bus's link rings (Dekker-style with `SeqCst`
//! fences): the receiver raises its wake flag, fences and looks again
//! before it sleeps in `epoll_wait` (doorbell, the senders' connections,
//! the listening socket); a sender commits, fences, and rings only if the
//! flag is up. Senders waiting for room do the same with a futex word,
//! which the receiver wakes after moving `head`.
//!
//! # Trust
//!
//! Everything in the shared file is checked before use: lengths against
//! the data area (a record must lie inside it, padding must end exactly at
//! its end, a payload's slack fits its record), offsets are masked into
//! it, the receiver keeps its own `head` and capacity, and a sender its
//! own capacity. A writer that scribbles on the file can make the ring
//! unusable ([`RecvError::Io`] with `InvalidData` once the receiver meets a
//! record that cannot be), and can overwrite messages other senders have
//! not yet had read (anyone who can write the file can), but never makes
//! the receiver read outside its mapping, panic or hang (every wait also
//! ends on the events above). A sender that claims a record and then stays
//! alive without committing holds the ring up, as a slow sender would.
//!
//! The payload lent by [`RingReceiver::recv_with`] is shared memory that a
//! hostile sender could still be changing: [`Borrowed::bytes`] is the bytes
//! in place, and [`Borrowed::decode`] decodes borrowing types (`&str`,
//! `&[u8]`) from one private copy, so a `&str` stays valid UTF-8.
//!
//! A process that forks while it holds a [`RingSender`] shares its slot
//! and connection with the child: send from one of them only.

use crate::payload::CodecError;
use crate::sync::Lock;
use crate::sys::copy::copy_to_shared;
use crate::sys::mpsc::protocol::{self, Message, Stop};
use crate::sys::mpsc::{Memory, Shared, RECORD, SLOTS};
use crate::sys::poll::{hung_up, Doorbell, Poller};
use crate::sys::socket::{self, Address, Bind, Listener, Received};
use crate::{Access, RecvError, SendError};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The handshake's first bytes.
const HELLO: &[u8; 2] = b"R1";
/// What a refused sender gets.
const REFUSED: &[u8; 2] = b"NO";
/// Poller token of the listening socket.
const LISTENER: u64 = 0;
/// Poller token of the doorbell.
const DOORBELL: u64 = 1;
/// Poller token of slot `i`'s connection: `CONN + i`.
const CONN: u64 = 2;
/// How long the receiver spins before it sleeps, by default.
const DEFAULT_SPIN: Duration = Duration::from_micros(50);
/// How often (in messages) a busy receiver accepts new senders.
const SERVE_EVERY: u32 = 64;

fn corrupt(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("named ring is corrupt: {why}"),
    )
}

/// The receiving end of a named ring: exactly one per ring.
///
/// For an event loop, [`AsFd`] gives a descriptor with
/// [`EndpointReceiver`'s](crate::EndpointReceiver) contract: once
/// [`try_recv`](RingReceiver::try_recv) (or `try_recv_with`) answered
/// [`RecvError::Empty`] (or a receive timed out), it turns readable when a
/// message may have come, a sender came or went; then call `try_recv`
/// until it says `Empty` again. It stays valid as long as the receiver.
#[derive(Debug)]
pub struct RingReceiver {
    shared: Shared,
    memfd: OwnedFd,
    doorbell: Doorbell,
    poller: Poller,
    listener: Listener,
    access: Access,
    uid: u32,
    /// Connections by slot.
    conns: Vec<Option<OwnedFd>>,
    live: usize,
    ever: bool,
    head: u64,
    broken: Option<String>,
    ready: Vec<u64>,
    since_serve: u32,
    spin: Duration,
    path: PathBuf,
}

/// A message lent in place by [`RingReceiver::recv_with`].
#[derive(Debug)]
pub struct Borrowed<'a> {
    bytes: &'a [u8],
    copy: std::cell::OnceCell<Vec<u8>>,
}

impl<'a> Borrowed<'a> {
    /// The message's bytes where they lie in the ring (a sender could
    /// still be changing them if it broke the rules: parse them once).
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Decodes a value sent with [`RingSender::send`], borrowing from one
    /// private copy of the bytes (made on the first call): `&str` and
    /// `&[u8]` fields cost no allocation of their own.
    pub fn decode<'b, T: Deserialize<'b>>(&'b self) -> Result<T, CodecError> {
        let copy = self.copy.get_or_init(|| self.bytes.to_vec());
        postcard::from_bytes(copy).map_err(|e| CodecError::new(e.to_string()))
    }

    /// Decodes a value that owns its data (no copy of the message first).
    pub fn decode_owned<T: DeserializeOwned>(&self) -> Result<T, CodecError> {
        postcard::from_bytes(self.bytes).map_err(|e| CodecError::new(e.to_string()))
    }
}

impl RingReceiver {
    /// Creates a ring whose data area holds `capacity` bytes (a power of
    /// two from 4 KiB to 1 GiB) and listens for senders at `path`, a
    /// socket file of mode 0600: senders of the same user only. Fails with
    /// `AddrInUse` when a receiver listens there already; a stale socket
    /// file is replaced.
    pub fn create(path: impl AsRef<Path>, capacity: usize) -> io::Result<RingReceiver> {
        RingReceiver::create_with(path, capacity, Access::SameUser)
    }

    /// As [`create`](RingReceiver::create), admitting the senders `access`
    /// admits (checked with `SO_PEERCRED`; the file's mode is 0600 for
    /// [`Access::SameUser`], else 0666).
    pub fn create_with(
        path: impl AsRef<Path>,
        capacity: usize,
        access: Access,
    ) -> io::Result<RingReceiver> {
        let path = path.as_ref().to_path_buf();
        let addr = Address::path(&path)?;
        let (shared, memfd) = Shared::create(capacity)?;
        let mut listener = None;
        for _ in 0..3 {
            match socket::bind_listener(&addr)? {
                Bind::Bound(l) => {
                    listener = Some(l);
                    break;
                }
                Bind::InUse => match socket::probe(&addr)? {
                    socket::Probe::Listening => {
                        return Err(io::Error::new(
                            io::ErrorKind::AddrInUse,
                            format!("a ring receiver listens at {} already", path.display()),
                        ))
                    }
                    socket::Probe::Refused => {
                        // A stale socket file of a dead receiver.
                        crate::sys::dir::unlink(&path)?;
                    }
                    socket::Probe::Missing => {}
                },
            }
        }
        let listener = listener.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("could not bind {}", path.display()),
            )
        })?;
        let mode = if access == Access::SameUser {
            0o600
        } else {
            0o666
        };
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        }
        socket::set_nonblocking(listener.as_fd(), true)?;
        let doorbell = Doorbell::new()?;
        let poller = Poller::new()?;
        poller.add(listener.as_fd(), LISTENER)?;
        poller.add(doorbell.as_fd(), DOORBELL)?;
        Ok(RingReceiver {
            shared,
            memfd,
            doorbell,
            poller,
            listener,
            access,
            uid: rustix::process::geteuid().as_raw(),
            conns: (0..SLOTS).map(|_| None).collect(),
            live: 0,
            ever: false,
            head: 0,
            broken: None,
            ready: Vec::new(),
            since_serve: 0,
            spin: DEFAULT_SPIN,
            path,
        })
    }

    /// Leaves the socket file in place when the receiver is dropped (a
    /// later `create` at the same path replaces it).
    pub fn persist(&mut self) {
        self.listener.keep_file();
    }

    /// The path senders open.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Senders connected now.
    pub fn senders(&self) -> usize {
        self.live
    }

    /// The most bytes one message can have.
    pub fn max_message(&self) -> usize {
        self.shared.capacity() - RECORD
    }

    /// How long a blocking receive spins before it sleeps (50 µs by
    /// default; zero never spins).
    pub fn set_spin(&mut self, spin: Duration) {
        self.spin = spin;
    }

    /// Waits for the next message and decodes it (as sent with
    /// [`RingSender::send`]). [`RecvError::Disconnected`] once every
    /// sender that opened the ring is gone and nothing is left in it (a new
    /// sender may still open it).
    pub fn recv<T: DeserializeOwned>(&mut self) -> Result<T, RecvError> {
        self.recv_inner(None, |b| b.decode_owned())?
            .map_err(RecvError::Decode)
    }

    /// As [`recv`](RingReceiver::recv), waiting at most `timeout`
    /// ([`RecvError::Timeout`]).
    pub fn recv_timeout<T: DeserializeOwned>(&mut self, timeout: Duration) -> Result<T, RecvError> {
        self.recv_inner(Some(Instant::now() + timeout), |b| b.decode_owned())?
            .map_err(RecvError::Decode)
    }

    /// The next message if there is one now, else [`RecvError::Empty`].
    pub fn try_recv<T: DeserializeOwned>(&mut self) -> Result<T, RecvError> {
        self.try_recv_with(|b| b.decode_owned())?
            .map_err(RecvError::Decode)
    }

    /// Waits for the next message (at most `timeout`, or forever for
    /// `None`) and lends it to `f` in place, zero-copy; the space goes
    /// back to the senders when `f` returns.
    pub fn recv_with<R>(
        &mut self,
        timeout: Option<Duration>,
        f: impl FnOnce(Borrowed<'_>) -> R,
    ) -> Result<R, RecvError> {
        self.recv_inner(timeout.map(|t| Instant::now() + t), f)
    }

    /// Lends the next message to `f` if there is one now, else
    /// [`RecvError::Empty`] (and arms the descriptor, see [`AsFd`]).
    pub fn try_recv_with<R>(&mut self, f: impl FnOnce(Borrowed<'_>) -> R) -> Result<R, RecvError> {
        if let Some(rec) = self.next_record(false)? {
            return self.deliver(rec, f);
        }
        self.arm()?;
        if let Some(rec) = self.next_record(true)? {
            return self.deliver(rec, f);
        }
        if self.disconnected() {
            return Err(RecvError::Disconnected);
        }
        Err(RecvError::Empty)
    }

    fn recv_inner<R>(
        &mut self,
        deadline: Option<Instant>,
        f: impl FnOnce(Borrowed<'_>) -> R,
    ) -> Result<R, RecvError> {
        loop {
            if let Some(rec) = self.next_record(false)? {
                return self.deliver(rec, f);
            }
            let start = Instant::now();
            let mut came = false;
            loop {
                let spun = start.elapsed();
                if spun >= self.spin {
                    break;
                }
                if spun >= crate::sys::ring::SPIN_ALONE {
                    // Nothing for a while: a sender may need the processor;
                    // when yielding it costs a time slice, sleep instead.
                    if !crate::sys::ring::give_way() {
                        break;
                    }
                } else {
                    for _ in 0..64 {
                        std::hint::spin_loop();
                    }
                }
                if self.ready_at_head() {
                    came = true;
                    break;
                }
            }
            if came {
                continue;
            }
            self.arm()?;
            if let Some(rec) = self.next_record(true)? {
                return self.deliver(rec, f);
            }
            if self.disconnected() {
                return Err(RecvError::Disconnected);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(RecvError::Timeout);
            }
            self.poller.wait(&mut self.ready, deadline)?;
        }
    }

    fn disconnected(&self) -> bool {
        self.ever && self.live == 0
    }

    /// Serves the socket side, drains the doorbell and raises the wake
    /// flag: from here on a sender that commits rings.
    fn arm(&mut self) -> Result<(), RecvError> {
        self.serve()?;
        protocol::raise_flag(&self.shared);
        Ok(())
    }

    /// Whether a committed record (or padding) is at `head`: the spin's look.
    fn ready_at_head(&self) -> bool {
        protocol::ready_at_head(&self.shared, self.head)
    }

    /// The committed message at `head`, stepping over padding and (with
    /// `reap`) over the record of a sender that is gone. `None` when there
    /// is none (yet).
    fn next_record(&mut self, reap: bool) -> Result<Option<Message>, RecvError> {
        if let Some(why) = &self.broken {
            return Err(RecvError::Io(corrupt(why)));
        }
        self.since_serve += 1;
        if self.since_serve >= SERVE_EVERY {
            self.serve()?;
        }
        let conns = &self.conns;
        let live = |i: usize| conns.get(i).is_some_and(Option::is_some);
        match protocol::next_record(&self.shared, &mut self.head, reap, live) {
            Ok(found) => Ok(found),
            Err(why) => Err(self.broke(why)),
        }
    }

    fn deliver<R>(
        &mut self,
        msg: Message,
        f: impl FnOnce(Borrowed<'_>) -> R,
    ) -> Result<R, RecvError> {
        let lend = |bytes: &[u8]| {
            f(Borrowed {
                bytes,
                copy: std::cell::OnceCell::new(),
            })
        };
        match protocol::deliver(&mut self.shared, &mut self.head, msg, lend) {
            Ok(out) => Ok(out),
            Err(why) => Err(self.broke(why)),
        }
    }

    fn broke(&mut self, why: &str) -> RecvError {
        self.broken = Some(why.to_string());
        RecvError::Io(corrupt(why))
    }

    /// Accepts new senders, drops those that are gone, drains the doorbell.
    fn serve(&mut self) -> Result<(), RecvError> {
        self.since_serve = 0;
        let mut ready = std::mem::take(&mut self.ready);
        let got = self.poller.ready_now(&mut ready);
        let result = got.map_err(RecvError::Io).and_then(|()| {
            for &token in &ready {
                match token {
                    LISTENER => self.accept_all()?,
                    DOORBELL => self.doorbell.clear(),
                    t => self.check_conn((t - CONN) as usize),
                }
            }
            Ok(())
        });
        self.ready = ready;
        result
    }

    fn accept_all(&mut self) -> Result<(), RecvError> {
        while let Some(conn) = socket::accept(self.listener.as_fd())? {
            let cred = match socket::peer_cred(conn.as_fd()) {
                Ok(c) => c,
                Err(_) => continue,
            };
            let slot = self.conns.iter().position(Option::is_none);
            let (true, Some(slot)) = (self.access.admits(self.uid, cred), slot) else {
                tracing::warn!(
                    pid = cred.pid,
                    uid = cred.uid,
                    "a named ring refused a sender (access, or no free slot)"
                );
                let _ = socket::send_frame(conn.as_fd(), &[REFUSED], &[]);
                continue;
            };
            protocol::free_slot(&self.shared, slot);
            let idx = (slot as u32).to_le_bytes();
            match socket::send_frame(
                conn.as_fd(),
                &[HELLO, &idx],
                &[self.memfd.as_fd(), self.doorbell.as_fd()],
            ) {
                Ok(()) => {}
                Err(e) if socket::is_peer_gone(&e) => continue,
                Err(e) => return Err(RecvError::Io(e)),
            }
            socket::set_nonblocking(conn.as_fd(), true)?;
            self.poller.add(conn.as_fd(), CONN + slot as u64)?;
            self.conns[slot] = Some(conn);
            self.live += 1;
            self.ever = true;
        }
        Ok(())
    }

    /// A sender's connection polled readable: it is gone (or broke the
    /// protocol, which only ever closes): free its slot.
    fn check_conn(&mut self, slot: usize) {
        let Some(Some(conn)) = self.conns.get(slot) else {
            return;
        };
        let mut buf = [0u8; 8];
        let mut control = socket::recv_control_space();
        let gone = !matches!(
            socket::recv_frame(conn.as_fd(), &mut buf, &mut control),
            Ok(Received::WouldBlock)
        );
        if gone {
            self.poller.remove(conn.as_fd());
            self.conns[slot] = None;
            self.live -= 1;
            protocol::free_slot(&self.shared, slot);
        }
    }
}

impl AsFd for RingReceiver {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.poller.as_fd()
    }
}

impl Drop for RingReceiver {
    fn drop(&mut self) {
        self.shared.gone().store(1, Ordering::Release);
        self.shared.room().store(0, Ordering::Release);
        self.shared.wake_room();
    }
}

/// How long a send may wait for room.
#[derive(Clone, Copy)]
enum Wait {
    No,
    Until(Option<Instant>),
}

/// A sending end of a named ring. Many processes (and many senders in one
/// process) can send to one ring at once; the sends of one `RingSender`
/// are serialised by a lock of this process (open another sender for
/// parallel sends from one process).
#[derive(Debug)]
pub struct RingSender {
    shared: Mutex<Shared>,
    doorbell: Doorbell,
    conn: OwnedFd,
    slot: usize,
    capacity: usize,
}

impl RingSender {
    /// Opens the ring at `path` (whose receiver must run as the same
    /// user). Waits until the receiver serves the connection: it does so
    /// in each of its receive calls, and its descriptor polls readable.
    pub fn open(path: impl AsRef<Path>) -> io::Result<RingSender> {
        RingSender::open_with(path, &Access::SameUser)
    }

    /// As [`open`](RingSender::open), accepting a receiver `access` admits.
    pub fn open_with(path: impl AsRef<Path>, access: &Access) -> io::Result<RingSender> {
        let path = path.as_ref();
        let refused = || {
            io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("no ring receiver takes senders at {}", path.display()),
            )
        };
        let conn = match socket::connect_within(&Address::path(path)?, None)? {
            socket::Connect::Connected(fd) => fd,
            _ => return Err(refused()),
        };
        let cred = socket::peer_cred(conn.as_fd())?;
        if !access.admits(rustix::process::geteuid().as_raw(), cred) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("the ring receiver at {} runs as uid {}, which the access policy does not admit", path.display(), cred.uid),
            ));
        }
        let mut buf = [0u8; 16];
        let mut control = socket::recv_control_space();
        let (len, mut fds) = loop {
            match socket::recv_frame(conn.as_fd(), &mut buf, &mut control)? {
                Received::Frame { len, fds } => break (len, fds),
                Received::WouldBlock => continue,
                _ => return Err(refused()),
            }
        };
        if len == 2 && &buf[..2] == REFUSED {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("the ring receiver at {} refused this sender (access, or {SLOTS} senders already)", path.display()),
            ));
        }
        if len != 6 || &buf[..2] != HELLO || fds.len() != 2 {
            return Err(corrupt("bad handshake"));
        }
        let slot = u32::from_le_bytes([buf[2], buf[3], buf[4], buf[5]]) as usize;
        if slot >= SLOTS {
            return Err(corrupt("bad slot"));
        }
        let bell = fds.pop().ok_or_else(|| corrupt("bad handshake"))?;
        let memfd = fds.pop().ok_or_else(|| corrupt("bad handshake"))?;
        let shared = Shared::open(memfd.as_fd())?;
        let doorbell = Doorbell::from_received(bell)?;
        Ok(RingSender {
            capacity: shared.capacity(),
            shared: Mutex::new(shared),
            doorbell,
            conn,
            slot,
        })
    }

    /// The most bytes one message can have.
    pub fn max_message(&self) -> usize {
        self.capacity - RECORD
    }

    /// Encodes `value` (postcard) into the ring, waiting for room as long
    /// as it takes. [`SendError::Disconnected`] once the receiver is gone.
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), SendError> {
        self.send_value(value, Wait::Until(None))
    }

    /// As [`send`](RingSender::send), waiting at most `timeout` for room
    /// ([`SendError::Full`] after that).
    pub fn send_timeout<T: Serialize + ?Sized>(
        &self,
        value: &T,
        timeout: Duration,
    ) -> Result<(), SendError> {
        self.send_value(value, Wait::Until(Some(Instant::now() + timeout)))
    }

    /// As [`send`](RingSender::send), without waiting: [`SendError::Full`]
    /// when there is no room now.
    pub fn try_send<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), SendError> {
        self.send_value(value, Wait::No)
    }

    /// Sends `bytes` as they are (received by [`Borrowed::bytes`]), waiting
    /// at most `timeout` for room (`None`: as long as it takes).
    pub fn send_bytes(&self, bytes: &[u8], timeout: Option<Duration>) -> Result<(), SendError> {
        let wait = Wait::Until(timeout.map(|t| Instant::now() + t));
        self.send_raw(bytes.len(), wait, |dst| {
            copy_to_shared(dst, bytes);
            Ok(())
        })
    }

    fn send_value<T: Serialize + ?Sized>(&self, value: &T, wait: Wait) -> Result<(), SendError> {
        let len = postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default())
            .map_err(|e| SendError::Encode(CodecError::new(e.to_string())))?;
        self.send_raw(len, wait, |dst| {
            postcard::serialize_with_flavor(value, Fill { dst, at: 0 })
                .map_err(|e| SendError::Encode(CodecError::new(e.to_string())))
        })
    }

    /// Claims a record for `len` bytes, lets `fill` write them, commits.
    fn send_raw(
        &self,
        len: usize,
        wait: Wait,
        fill: impl FnOnce(&mut [u8]) -> Result<(), SendError>,
    ) -> Result<(), SendError> {
        let cap = self.capacity;
        if len > cap - RECORD {
            return Err(SendError::TooLarge {
                size: len as u64,
                max: (cap - RECORD) as u64,
            });
        }
        let on_full = || {
            let deadline = match wait {
                Wait::No => None,
                Wait::Until(d) => {
                    if d.is_some_and(|d| Instant::now() >= d) {
                        None
                    } else {
                        Some(d)
                    }
                }
            };
            let Some(deadline) = deadline else {
                return Err(SendError::Full {
                    delivered: 0,
                    full: 1,
                });
            };
            if hung_up(self.conn.as_fd()) {
                return Err(SendError::Disconnected);
            }
            Ok(deadline
                .map(|d| d.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::MAX)
                .min(Duration::from_millis(100)))
        };
        let ring = || self.doorbell.ring();
        let mut shared = self.shared.locked();
        match protocol::send(&mut *shared, self.slot, len, on_full, ring, fill) {
            Ok(filled) => filled,
            Err(Stop::Disconnected) => Err(SendError::Disconnected),
            Err(Stop::Corrupt(why)) => Err(SendError::Io(corrupt(why))),
            Err(Stop::Full(e)) => Err(e),
        }
    }
}

/// postcard's output straight into a claimed record: like its slice
/// flavor, but a large byte string (a `serde_bytes` field, a `&[u8]`) goes
/// in with [`copy_to_shared`], past the sender's caches.
struct Fill<'a> {
    dst: &'a mut [u8],
    at: usize,
}

impl postcard::ser_flavors::Flavor for Fill<'_> {
    type Output = ();

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        let slot = self
            .dst
            .get_mut(self.at)
            .ok_or(postcard::Error::SerializeBufferFull)?;
        *slot = byte;
        self.at += 1;
        Ok(())
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        let end = self
            .at
            .checked_add(bytes.len())
            .filter(|&end| end <= self.dst.len())
            .ok_or(postcard::Error::SerializeBufferFull)?;
        copy_to_shared(&mut self.dst[self.at..end], bytes);
        self.at = end;
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Scribbles `rounds` random words (from `seed`) over the ring's header,
/// slot table and data area through `sender`'s mapping, as a hostile
/// sender would: for the tests (feature `test-hooks`).
#[cfg(feature = "test-hooks")]
pub(crate) fn scribble(sender: &RingSender, rounds: usize, seed: u64) {
    let shared = sender.shared.locked();
    let mut x = seed | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..rounds {
        let what = next() % 4;
        let value = match next() % 4 {
            0 => 0,
            1 => u64::MAX,
            2 => next() % (1 << 32),
            _ => next(),
        };
        match what {
            0 => shared.reserve().store(value, Ordering::Relaxed),
            1 => shared
                .slot((next() % SLOTS as u64) as usize)
                .store(value, Ordering::Relaxed),
            2 => shared
                .claim_word((next() as usize) % shared.capacity())
                .store(value, Ordering::Relaxed),
            _ => shared
                .commit_word((next() as usize) % shared.capacity())
                .store(value, Ordering::Relaxed),
        }
    }
}
