//! Removing the socket files of endpoints that went away (filesystem namespace).
//!
//! An endpoint removes its own socket file when it shuts down; a crashed
//! one cannot. When an endpoint leaves the directory, the controller
//! checks whether anybody still listens on its socket file, and removes
//! the file once nobody does. A process that is being killed may close its
//! control connection a moment before its listening socket, so a file that
//! still answers is checked again, with growing pauses, for
//! [`WATCH_FOR`]; an endpoint that keeps answering is alive (it left only
//! the directory) and keeps its file.

use crate::namespace;
use crate::sys::dir;
use crate::sys::socket::{self, Probe};
use crate::Options;
use std::time::{Duration, Instant};

/// How long a departed endpoint's socket is watched for its listener to go.
const WATCH_FOR: Duration = Duration::from_secs(10);
/// The first pause between two checks of one file; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(1);
const MAX_PAUSE: Duration = Duration::from_millis(250);

struct Check {
    id: u64,
    at: Instant,
    pause: Duration,
    until: Instant,
}

/// The socket files waiting to be removed.
pub(super) struct Stale {
    /// The bus's options, for the addresses; `None` in the abstract
    /// namespace, where the kernel frees names by itself.
    options: Option<Options>,
    checks: Vec<Check>,
}

impl Stale {
    /// Nothing to watch yet, for a bus with `options`.
    pub(super) fn new(options: &Options) -> Stale {
        Stale {
            options: namespace::directory(options).map(|_| options.clone()),
            checks: Vec::new(),
        }
    }

    /// Endpoint `id` left the directory: remove its socket file once nobody listens there.
    pub(super) fn departed(&mut self, id: u64, now: Instant) {
        if self.options.is_none() || self.checks.iter().any(|c| c.id == id) {
            return;
        }
        self.checks.push(Check {
            id,
            at: now,
            pause: FIRST_PAUSE,
            until: now + WATCH_FOR,
        });
    }

    /// When the next check is due.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.checks.iter().map(|c| c.at).min()
    }

    /// Runs the checks that are due.
    pub(super) fn run(&mut self, now: Instant) {
        let Some(options) = &self.options else {
            return;
        };
        self.checks.retain_mut(|c| {
            if c.at > now {
                return true;
            }
            let Ok(addr) = namespace::link_address(options, c.id) else {
                return false;
            };
            let Some(file) = addr.file() else {
                return false;
            };
            match socket::probe(&addr) {
                Ok(Probe::Listening) if now < c.until => {
                    c.at = now + c.pause;
                    c.pause = (c.pause * 2).min(MAX_PAUSE);
                    true
                }
                Ok(Probe::Listening) => {
                    tracing::debug!(
                        "endpoint {:016x} left the directory but still listens; keeping {}",
                        c.id,
                        file.display()
                    );
                    false
                }
                Ok(Probe::Refused) => {
                    match dir::unlink(file) {
                        Ok(_) => tracing::debug!(
                            "removed the socket file of departed endpoint {:016x}",
                            c.id
                        ),
                        Err(e) => tracing::warn!("could not remove {}: {e}", file.display()),
                    }
                    false
                }
                Ok(Probe::Missing) => false,
                Err(e) => {
                    tracing::warn!("could not check {}: {e}", file.display());
                    false
                }
            }
        });
    }
}
