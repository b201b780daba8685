//! epoll and eventfd: how the endpoint's threads wait for many sockets at once.

use rustix::event::{epoll, eventfd, EventfdFlags};
use rustix::io::Errno;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

/// An epoll instance ([epoll(7)]), level-triggered, keyed by `u64` tokens.
///
/// [epoll(7)]: https://man7.org/linux/man-pages/man7/epoll.7.html
#[derive(Debug)]
pub(crate) struct Poller {
    fd: OwnedFd,
}

impl Poller {
    /// A new, empty poller ([epoll_create1(2)]).
    ///
    /// [epoll_create1(2)]: https://man7.org/linux/man-pages/man2/epoll_create1.2.html
    pub(crate) fn new() -> io::Result<Poller> {
        Ok(Poller {
            fd: epoll::create(epoll::CreateFlags::CLOEXEC)?,
        })
    }

    /// Watches `fd` for input (and hang-up) under `token` ([epoll_ctl(2)]).
    ///
    /// [epoll_ctl(2)]: https://man7.org/linux/man-pages/man2/epoll_ctl.2.html
    pub(crate) fn add(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        epoll::add(
            &self.fd,
            fd,
            epoll::EventData::new_u64(token),
            epoll::EventFlags::IN,
        )?;
        Ok(())
    }

    /// Watches `fd` (already added under `token`) for room to write as well
    /// as for input, or for input only again ([epoll_ctl(2)] `EPOLL_CTL_MOD`).
    ///
    /// [epoll_ctl(2)]: https://man7.org/linux/man-pages/man2/epoll_ctl.2.html
    pub(crate) fn watch_writable(
        &self,
        fd: BorrowedFd<'_>,
        token: u64,
        on: bool,
    ) -> io::Result<()> {
        let flags = if on {
            epoll::EventFlags::IN | epoll::EventFlags::OUT
        } else {
            epoll::EventFlags::IN
        };
        epoll::modify(&self.fd, fd, epoll::EventData::new_u64(token), flags)?;
        Ok(())
    }

    /// Stops watching `fd` ([epoll_ctl(2)]). A descriptor already closed is fine.
    ///
    /// [epoll_ctl(2)]: https://man7.org/linux/man-pages/man2/epoll_ctl.2.html
    pub(crate) fn remove(&self, fd: BorrowedFd<'_>) {
        let _ = epoll::delete(&self.fd, fd);
    }

    /// Waits until something is ready or `deadline` passes ([epoll_wait(2)]);
    /// fills `ready` with the tokens. `None` waits forever.
    ///
    /// [epoll_wait(2)]: https://man7.org/linux/man-pages/man2/epoll_wait.2.html
    pub(crate) fn wait(&self, ready: &mut Vec<u64>, deadline: Option<Instant>) -> io::Result<()> {
        ready.clear();
        let timeout = deadline.map(|d| {
            let left = d.saturating_duration_since(Instant::now());
            // Round up so that we do not wake a hair before the deadline and spin.
            let left = left + Duration::from_nanos(999_999);
            rustix::time::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: (left.subsec_millis() as i64) * 1_000_000,
            }
        });
        let mut events: Vec<epoll::Event> = Vec::with_capacity(64);
        match epoll::wait(
            &self.fd,
            rustix::buffer::spare_capacity(&mut events),
            timeout.as_ref(),
        ) {
            Ok(_) => {}
            Err(Errno::INTR) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        ready.extend(events.iter().map(|e| e.data.u64()));
        Ok(())
    }

    /// The tokens of what is ready now, without waiting ([epoll_wait(2)]
    /// with a zero timeout).
    ///
    /// [epoll_wait(2)]: https://man7.org/linux/man-pages/man2/epoll_wait.2.html
    pub(crate) fn ready_now(&self, ready: &mut Vec<u64>) -> io::Result<()> {
        ready.clear();
        let zero = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let mut events: Vec<epoll::Event> = Vec::with_capacity(64);
        match epoll::wait(
            &self.fd,
            rustix::buffer::spare_capacity(&mut events),
            Some(&zero),
        ) {
            Ok(_) => {}
            Err(Errno::INTR) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        ready.extend(events.iter().map(|e| e.data.u64()));
        Ok(())
    }

    /// The epoll descriptor itself: it polls readable while any descriptor
    /// it watches is ready ([epoll(7)], "an epoll file descriptor can be
    /// monitored by poll, select or epoll").
    ///
    /// [epoll(7)]: https://man7.org/linux/man-pages/man7/epoll.7.html
    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// An eventfd ([eventfd(2)]) used as a doorbell between threads.
///
/// [eventfd(2)]: https://man7.org/linux/man-pages/man2/eventfd.2.html
#[derive(Debug)]
pub(crate) struct Doorbell {
    fd: OwnedFd,
}

impl Doorbell {
    /// A new, silent doorbell (non-blocking).
    pub(crate) fn new() -> io::Result<Doorbell> {
        Ok(Doorbell {
            fd: eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?,
        })
    }

    /// Takes an eventfd another process sent us: checks that it is one
    /// (reading anything else could block, or take another file's data),
    /// and makes it non-blocking.
    pub(crate) fn from_received(fd: OwnedFd) -> io::Result<Doorbell> {
        use std::os::fd::AsRawFd;
        let target = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
        if target.as_os_str() != "anon_inode:[eventfd]" {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not an eventfd", target.display()),
            ));
        }
        rustix::fs::fcntl_setfl(&fd, rustix::fs::OFlags::NONBLOCK)?;
        Ok(Doorbell { fd })
    }

    /// Gives the descriptor back (to send it on: a channel's receiving
    /// end moving to another process takes its links' doorbells along).
    pub(crate) fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// Rings it: whoever polls it wakes.
    pub(crate) fn ring(&self) {
        // Only fails when the counter would overflow, i.e. it is already ringing.
        let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
    }

    /// Silences it after a wake-up.
    pub(crate) fn clear(&self) {
        let mut b = [0u8; 8];
        let _ = rustix::io::read(&self.fd, &mut b);
    }

    /// The descriptor, to put in a [`Poller`].
    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Waits until `fd` can take a write or `deadline` passes ([poll(2)] for
/// `POLLOUT`); `None` waits forever. Whether it became writable (a hang-up
/// counts, so that the write that follows reports it).
///
/// [poll(2)]: https://man7.org/linux/man-pages/man2/poll.2.html
pub(crate) fn wait_writable(fd: BorrowedFd<'_>, deadline: Option<Instant>) -> io::Result<bool> {
    use rustix::event::{poll, PollFd, PollFlags};
    loop {
        let timeout = deadline.map(|d| {
            let left = d.saturating_duration_since(Instant::now());
            rustix::time::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            }
        });
        let mut fds = [PollFd::new(&fd, PollFlags::OUT)];
        match poll(&mut fds, timeout.as_ref()) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(Errno::INTR) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(false);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether socket `fd` has something to read, or its peer hung up
/// ([poll(2)] for `POLLIN`, without waiting).
///
/// [poll(2)]: https://man7.org/linux/man-pages/man2/poll.2.html
pub(crate) fn readable(fd: BorrowedFd<'_>) -> bool {
    use rustix::event::{poll, PollFd, PollFlags};
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    !matches!(poll(&mut fds, Some(&zero)), Ok(0))
}

/// Whether the peer of socket `fd` hung up ([poll(2)] for `POLLRDHUP`,
/// without waiting).
///
/// [poll(2)]: https://man7.org/linux/man-pages/man2/poll.2.html
pub(crate) fn hung_up(fd: BorrowedFd<'_>) -> bool {
    use rustix::event::{poll, PollFd, PollFlags};
    let mut fds = [PollFd::new(&fd, PollFlags::RDHUP)];
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match poll(&mut fds, Some(&zero)) {
        Ok(0) | Err(_) => false,
        Ok(_) => fds[0]
            .revents()
            .intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR),
    }
}
