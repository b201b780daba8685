//! Locks that go on after a panic.
//!
//! A lock is poisoned when a thread panicked while holding it. busbar's
//! locks guard tables, queues and counters that every critical section
//! leaves whole or not yet changed at any point it could panic, and one
//! of them is held while the application's own closure runs (the link
//! table, while [`recv_with`](crate::EndpointReceiver::recv_with) lends a
//! message). Passing the poison on would turn one panic, maybe the
//! application's, into a panic in every other thread of the endpoint,
//! its background thread included, and the library must not panic. So
//! every lock here is taken through these helpers, which hand out the
//! guard whether or not the lock is poisoned.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};
use std::sync::{RwLockWriteGuard, TryLockError};
use std::time::Duration;

/// [`Mutex`] taken whether or not it is poisoned.
pub(crate) trait Lock<T: ?Sized> {
    /// Waits for the lock.
    fn locked(&self) -> MutexGuard<'_, T>;
    /// The lock if nobody holds it.
    fn try_locked(&self) -> Option<MutexGuard<'_, T>>;
}

impl<T: ?Sized> Lock<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn try_locked(&self) -> Option<MutexGuard<'_, T>> {
        match self.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }
}

/// [`RwLock`] taken whether or not it is poisoned.
pub(crate) trait ReadWrite<T: ?Sized> {
    /// Waits to read.
    fn read_locked(&self) -> RwLockReadGuard<'_, T>;
    /// Waits to write.
    fn write_locked(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T: ?Sized> ReadWrite<T> for RwLock<T> {
    fn read_locked(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_locked(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// [`Condvar`] waits that hand back the guard whether or not its lock is poisoned.
pub(crate) trait CondvarWait {
    /// Waits for a notification or `timeout`, whichever comes first
    /// (spurious wake-ups too: check the condition again).
    fn wait_locked<'a, T>(&self, guard: MutexGuard<'a, T>, timeout: Duration) -> MutexGuard<'a, T>;
}

impl CondvarWait for Condvar {
    fn wait_locked<'a, T>(&self, guard: MutexGuard<'a, T>, timeout: Duration) -> MutexGuard<'a, T> {
        self.wait_timeout(guard, timeout)
            .unwrap_or_else(PoisonError::into_inner)
            .0
    }
}
