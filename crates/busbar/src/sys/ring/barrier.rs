//! Asymmetric fences ([membarrier(2)]): what lets a side of a ring publish
//! without a full fence, because the other side pays for both before it
//! sleeps (see "Ordering" in the module documentation).
//!
//! [membarrier(2)]: https://man7.org/linux/man-pages/man2/membarrier.2.html

use rustix::thread::{membarrier, membarrier_query, MembarrierCommand};
use std::sync::OnceLock;

/// What this process can do with `membarrier`, found out once (a forked
/// child keeps its parent's registration; `exec` starts afresh, and so does
/// this memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Barriers {
    /// The process is registered for `MEMBARRIER_CMD_GLOBAL_EXPEDITED`:
    /// another process's heavy barrier reaches its threads, so a light
    /// fence (a compiler fence) may stand in for a full one where the other
    /// side promised a heavy barrier.
    pub light: bool,
    /// `MEMBARRIER_CMD_GLOBAL_EXPEDITED` works here: the process can issue
    /// heavy barriers, and so promise them.
    pub heavy: bool,
}

static BARRIERS: OnceLock<Barriers> = OnceLock::new();

/// This process's [`Barriers`]: on the first call, asks the kernel, tries a
/// heavy barrier and registers for the other side's.
pub(crate) fn barriers() -> Barriers {
    *BARRIERS.get_or_init(|| {
        let supported = membarrier_query();
        let heavy = supported.contains_command(MembarrierCommand::GlobalExpedited)
            && membarrier(MembarrierCommand::GlobalExpedited).is_ok();
        let light = supported.contains_command(MembarrierCommand::RegisterGlobalExpedited)
            && membarrier(MembarrierCommand::RegisterGlobalExpedited).is_ok();
        Barriers { light, heavy }
    })
}

/// A heavy barrier: a full fence here and, in every running thread of
/// every registered process, one at some point between this call's start
/// and its return (a thread not running passes one when it is switched in).
/// `false` when neither the expedited command nor the slow one that covers
/// every process worked: the caller must not rely on it.
pub(crate) fn heavy_barrier() -> bool {
    if membarrier(MembarrierCommand::GlobalExpedited).is_ok() {
        return true;
    }
    // Worked once (`barriers`), so this is a transient failure (the kernel
    // could not allocate): the slow command waits for a grace period
    // instead, which covers every thread of every process.
    match membarrier(MembarrierCommand::Global) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(error = %e, "membarrier failed");
            false
        }
    }
}
