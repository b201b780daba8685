//! The filesystem namespace: the directory that holds a bus's socket files,
//! the lock that elects its controller, and removing stale socket files.
//!
//! Whether a directory is private enough is decided above this module
//! (`crate::namespace`); this one only makes the calls and reports what
//! the kernel said.

use rustix::fs::{self, FileType, FlockOperation, Mode, OFlags};
use rustix::io::Errno;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

/// What [`lstat`] says about a path, without following a symlink there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileInfo {
    /// A directory (not a symlink to one).
    pub is_dir: bool,
    /// The owner's uid.
    pub uid: u32,
    /// The permission bits (`0o7777` at most).
    pub mode: u32,
}

/// Creates directory `path` with permissions exactly `mode` ([mkdir(2)], then
/// [chmod(2)] so that the umask cannot take bits away). `Ok(false)` when
/// something already exists there (left as it is).
///
/// [mkdir(2)]: https://man7.org/linux/man-pages/man2/mkdir.2.html
/// [chmod(2)]: https://man7.org/linux/man-pages/man2/chmod.2.html
pub(crate) fn mkdir(path: &Path, mode: u32) -> io::Result<bool> {
    match fs::mkdir(path, Mode::from_raw_mode(mode)) {
        Ok(()) => {}
        Err(Errno::EXIST) => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    fs::chmod(path, Mode::from_raw_mode(mode))?;
    Ok(true)
}

/// The type, owner and permissions of `path`, not following a final symlink ([lstat(2)]).
///
/// [lstat(2)]: https://man7.org/linux/man-pages/man2/lstat.2.html
pub(crate) fn lstat(path: &Path) -> io::Result<FileInfo> {
    let st = fs::lstat(path)?;
    Ok(FileInfo {
        is_dir: FileType::from_raw_mode(st.st_mode) == FileType::Directory,
        uid: st.st_uid,
        mode: st.st_mode & 0o7777,
    })
}

/// Removes the name `path` ([unlink(2)]). `Ok(false)` when it was not there.
///
/// [unlink(2)]: https://man7.org/linux/man-pages/man2/unlink.2.html
pub(crate) fn unlink(path: &Path) -> io::Result<bool> {
    match fs::unlink(path) {
        Ok(()) => Ok(true),
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// An exclusive lock on a file, held until this is dropped, or until the
/// process dies: the kernel releases it then, so a crash never leaves it held.
#[derive(Debug)]
pub(crate) struct FileLock {
    _fd: OwnedFd,
}

/// Takes an exclusive lock on `path` without waiting ([open(2)] with
/// `O_CREAT` and mode 0600, then [flock(2)] `LOCK_EX | LOCK_NB`).
/// `Ok(None)` when someone else holds it.
///
/// The lock belongs to the open file description, so two opens of the same
/// file in one process exclude each other just like two processes do. The
/// file is never removed: a lock on an unlinked file would exclude nobody.
///
/// [open(2)]: https://man7.org/linux/man-pages/man2/open.2.html
/// [flock(2)]: https://man7.org/linux/man-pages/man2/flock.2.html
pub(crate) fn try_lock(path: &Path) -> io::Result<Option<FileLock>> {
    let fd = fs::open(
        path,
        OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::from_raw_mode(0o600),
    )?;
    loop {
        match fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(Some(FileLock { _fd: fd })),
            Err(Errno::WOULDBLOCK) => return Ok(None),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "busbar-sys-dir-{name}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir(&dir).expect("scratch dir");
        dir
    }

    #[test]
    fn lock_excludes_a_second_holder_until_dropped() {
        let dir = scratch("lock");
        let path = dir.join("bus.lock");
        let first = try_lock(&path).expect("lock").expect("free at first");
        assert!(
            try_lock(&path).expect("lock").is_none(),
            "held by the first"
        );
        drop(first);
        assert!(try_lock(&path).expect("lock").is_some(), "free again");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn mkdir_lstat_unlink() {
        let dir = scratch("mkdir");
        let sub = dir.join("sub");
        assert!(mkdir(&sub, 0o700).expect("mkdir"));
        assert!(!mkdir(&sub, 0o700).expect("mkdir again"));
        let info = lstat(&sub).expect("lstat");
        assert!(info.is_dir);
        assert_eq!(info.mode & 0o077, 0);
        assert_eq!(info.uid, rustix::process::geteuid().as_raw());
        let file = dir.join("f");
        std::fs::write(&file, b"x").expect("write");
        assert!(!lstat(&file).expect("lstat file").is_dir);
        assert!(unlink(&file).expect("unlink"));
        assert!(!unlink(&file).expect("unlink again"));
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
