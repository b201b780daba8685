//! How either side of a ring waits: a spin first, then a sleep on a
//! futex word in the shared memory, which the other side wakes.

use super::SLEEPING;
use rustix::thread::futex;
use std::cell::Cell;
use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

/// The longest single futex wait (a longer timeout just waits again).
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// Spinning longer than this yields the processor between looks: the other
/// side may need it (more processes than cores), and a spin that has found
/// nothing for this long is waiting for someone who is not running.
pub(crate) const SPIN_ALONE: Duration = Duration::from_micros(5);

/// A yield that kept this thread off the processor for longer than this
/// handed it to someone who ran a whole time slice (a busy process on this
/// core), not to a peer that took a short turn: yielding on would cost a
/// slice per look (milliseconds), where sleeping costs one wake-up.
const LONG_YIELD: Duration = Duration::from_micros(500);

/// How long after a long yield this thread's spins do not yield: each one
/// stops at [`SPIN_ALONE`] and sleeps instead. (Then one yield tries again:
/// at most one slice lost per this long while busy processes share the core.)
const YIELD_BACKOFF: Duration = Duration::from_millis(50);

thread_local! {
    /// Until when this thread's spins sleep rather than yield (see [`give_way`]).
    static NO_YIELD_UNTIL: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The polite part of a spin that has found nothing for [`SPIN_ALONE`]:
/// lets whoever else waits for this core run (the peer we wait for may be
/// queued on it), `true`: look again. `false`: stop spinning and sleep,
/// because a yield of this thread's lately kept it off the processor for a
/// whole time slice of someone else's ([`LONG_YIELD`]): with busy processes
/// on the core, a yield per look would cost a slice per message, while a
/// sleeping thread that is woken runs soon.
pub(crate) fn give_way() -> bool {
    let before = Instant::now();
    if NO_YIELD_UNTIL
        .try_with(Cell::get)
        .ok()
        .flatten()
        .is_some_and(|until| before < until)
    {
        return false;
    }
    std::thread::yield_now();
    let after = Instant::now();
    if after.duration_since(before) < LONG_YIELD {
        return true;
    }
    let _ = NO_YIELD_UNTIL.try_with(|u| u.set(Some(after + YIELD_BACKOFF)));
    false
}

/// Polls `ready` until it holds (`Ok(true)`) or `spin` has passed since
/// `start` (`Ok(false)`): the spin before either side of a ring sleeps.
/// Looks at the clock only every 64 turns; past [`SPIN_ALONE`], yields
/// between looks ([`give_way`]; it may end the spin early).
pub(super) fn spin_until<E>(
    start: Instant,
    spin: Duration,
    mut ready: impl FnMut() -> Result<bool, E>,
) -> Result<bool, E> {
    if spin.is_zero() {
        return Ok(false);
    }
    let mut turns: u32 = 0;
    let mut polite = false;
    loop {
        if polite {
            if !give_way() {
                return ready();
            }
        } else {
            std::hint::spin_loop();
        }
        if ready()? {
            return Ok(true);
        }
        turns = turns.wrapping_add(1);
        if polite || turns % 64 == 0 {
            let waited = start.elapsed();
            if waited >= spin {
                return Ok(false);
            }
            polite = waited >= SPIN_ALONE;
        }
    }
}

/// Sleeps while `word` is [`SLEEPING`], at most `timeout` ([futex(2)] `FUTEX_WAIT`).
///
/// [futex(2)]: https://man7.org/linux/man-pages/man2/futex.2.html
pub(super) fn futex_wait(word: &AtomicU32, timeout: Duration) {
    let timeout = timeout.min(MAX_SLEEP);
    let Ok(ts) = futex::Timespec::try_from(timeout) else {
        return;
    };
    // Not FUTEX_PRIVATE: the word is shared with another process.
    match futex::wait(word, futex::Flags::empty(), SLEEPING, Some(&ts)) {
        Ok(()) => {}
        // Woken before we slept, timed out, or interrupted: the caller looks again.
        Err(rustix::io::Errno::AGAIN | rustix::io::Errno::TIMEDOUT | rustix::io::Errno::INTR) => {}
        Err(e) => {
            // Should not happen; do not turn the caller's wait into a busy loop.
            tracing::debug!(error = %e, "futex wait on a ring failed");
            std::thread::sleep(timeout.min(Duration::from_millis(1)));
        }
    }
}

/// Wakes one process sleeping on `word` ([futex(2)] `FUTEX_WAKE`).
///
/// [futex(2)]: https://man7.org/linux/man-pages/man2/futex.2.html
pub(super) fn futex_wake(word: &AtomicU32) {
    if let Err(e) = futex::wake(word, futex::Flags::empty(), 1) {
        tracing::debug!(error = %e, "futex wake on a ring failed");
    }
}
