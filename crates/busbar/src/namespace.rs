//! Where a bus's sockets live, and the addresses in it.
//!
//! In the abstract namespace (the default) the controller listens at
//! `\0busbar/<identifier>` and endpoint `id` at `\0busbar/<identifier>/<id>`;
//! the kernel frees a name when its socket closes, crash or not.
//!
//! In the filesystem namespace they are socket files in a directory only
//! our user may enter (0700): `bus.sock` for the controller and
//! `<id as 16 hex digits>.sock` per endpoint, plus `bus.lock`, which the
//! controller holds locked (`flock`) for its whole life. Files outlive
//! crashes, so:
//!
//! - **Election.** A socket file refuses connections once its listener is
//!   gone, but binding it again fails while the file exists. Whoever wins
//!   the lock on `bus.lock` removes a stale `bus.sock` and binds; the others
//!   connect. The kernel releases the lock when its holder dies, and only
//!   the holder ever removes or binds `bus.sock`, so two controllers can
//!   never both serve.
//! - **Endpoint sockets.** An endpoint removes its socket file when it shuts
//!   down. The controller removes the file of an endpoint that went away
//!   (its control connection closed, or it did not come back after a
//!   failover, or it hosted the previous controller), once nobody listens
//!   there any more (`controller::Stale`).

use crate::error::JoinError;
use crate::options::Namespace;
use crate::sys::dir::{self, FileInfo};
use crate::sys::socket::Address;
use crate::Options;
use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

/// The controller's socket file.
pub(crate) const BUS_SOCKET: &str = "bus.sock";
/// The file whose lock elects the controller.
pub(crate) const BUS_LOCK: &str = "bus.lock";
/// The longest endpoint socket file name: 16 hex digits and `.sock`.
const LINK_NAME_LEN: usize = 16 + ".sock".len();

/// Makes the bus directory usable, for the filesystem namespace: resolves
/// `Filesystem(None)` to `$XDG_RUNTIME_DIR/busbar/<identifier>` (a relative
/// directory to an absolute one), creates what is missing with mode 0700,
/// and checks that what exists is a directory of ours that nobody else may
/// enter. Afterwards `options.namespace` names the directory for good.
pub(crate) fn prepare(options: &mut Options) -> Result<(), JoinError> {
    let Namespace::Filesystem(given) = &options.namespace else {
        return Ok(());
    };
    let uid = rustix::process::geteuid().as_raw();
    let dir = match given {
        Some(d) if d.is_absolute() => d.clone(),
        Some(d) => std::env::current_dir()?.join(d),
        None => {
            let runtime = std::env::var_os("XDG_RUNTIME_DIR");
            let dir = default_dir(runtime.as_deref(), &options.identifier)?;
            if let Some(parent) = dir.parent() {
                ensure_private(parent, uid)?;
            }
            dir
        }
    };
    check_length(&dir)?;
    ensure_private(&dir, uid)?;
    options.namespace = Namespace::Filesystem(Some(dir));
    Ok(())
}

/// `$XDG_RUNTIME_DIR/busbar/<identifier>`, given the variable's value.
pub(crate) fn default_dir(runtime: Option<&OsStr>, identifier: &str) -> Result<PathBuf, JoinError> {
    let runtime = runtime.filter(|r| !r.is_empty()).ok_or_else(|| {
        JoinError::Namespace(
            "XDG_RUNTIME_DIR is not set; set it or give Namespace::Filesystem a directory".into(),
        )
    })?;
    let runtime = Path::new(runtime);
    if !runtime.is_absolute() {
        return Err(JoinError::Namespace(format!(
            "XDG_RUNTIME_DIR ({}) is not an absolute path",
            runtime.display()
        )));
    }
    if identifier.contains('/') || identifier == "." || identifier == ".." {
        return Err(JoinError::Namespace(format!(
            "the identifier {identifier:?} cannot name a directory (it contains '/' or is '.' or '..'); \
             give Namespace::Filesystem a directory"
        )));
    }
    Ok(runtime.join("busbar").join(identifier))
}

/// Whether every socket path in `dir` fits a unix socket address.
pub(crate) fn check_length(dir: &Path) -> Result<(), JoinError> {
    let longest = dir.as_os_str().len() + 1 + LINK_NAME_LEN.max(BUS_SOCKET.len());
    if longest > Address::MAX_PATH {
        return Err(JoinError::Namespace(format!(
            "{} is too long: its socket paths would take {longest} bytes, and a unix socket \
             address holds at most {}",
            dir.display(),
            Address::MAX_PATH
        )));
    }
    Ok(())
}

/// Creates `dir` (mode 0700) if it is missing; then checks it is private to `uid`.
fn ensure_private(dir: &Path, uid: u32) -> Result<(), JoinError> {
    let unusable = |e: io::Error| JoinError::Namespace(format!("{}: {e}", dir.display()));
    dir::mkdir(dir, 0o700).map_err(unusable)?;
    let info = dir::lstat(dir).map_err(unusable)?;
    check_private(dir, info, uid).map_err(JoinError::Namespace)
}

/// Whether `info` (of `path`) describes a directory owned by `uid` that
/// group and others cannot use; why not otherwise.
pub(crate) fn check_private(path: &Path, info: FileInfo, uid: u32) -> Result<(), String> {
    if !info.is_dir {
        return Err(format!(
            "{} exists and is not a directory (symlinks are not followed)",
            path.display()
        ));
    }
    if info.uid != uid {
        return Err(format!(
            "{} belongs to uid {}, not to this user (uid {uid})",
            path.display(),
            info.uid
        ));
    }
    if info.mode & 0o077 != 0 {
        return Err(format!(
            "{} has mode {:04o}: group and others must have no access to it (chmod 700)",
            path.display(),
            info.mode
        ));
    }
    Ok(())
}

/// The directory of a filesystem-namespace bus, once [`prepare`]d.
pub(crate) fn directory(options: &Options) -> Option<&Path> {
    match &options.namespace {
        Namespace::Filesystem(Some(dir)) => Some(dir),
        _ => None,
    }
}

/// The address of a bus's controller.
pub(crate) fn bus_address(options: &Options) -> io::Result<Address> {
    match &options.namespace {
        Namespace::Abstract => Address::abstract_name(&format!("busbar/{}", options.identifier)),
        Namespace::Filesystem(_) => Address::path(&prepared(options)?.join(BUS_SOCKET)),
    }
}

/// The address where endpoint `id` accepts data links.
pub(crate) fn link_address(options: &Options, id: u64) -> io::Result<Address> {
    match &options.namespace {
        Namespace::Abstract => {
            Address::abstract_name(&format!("busbar/{}/{id:016x}", options.identifier))
        }
        Namespace::Filesystem(_) => {
            Address::path(&prepared(options)?.join(format!("{id:016x}.sock")))
        }
    }
}

/// The file whose lock elects the controller (filesystem namespace).
pub(crate) fn lock_path(options: &Options) -> io::Result<PathBuf> {
    Ok(prepared(options)?.join(BUS_LOCK))
}

fn prepared(options: &Options) -> io::Result<&Path> {
    directory(options).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the bus directory was not prepared",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: u32 = 1000;

    fn info(is_dir: bool, uid: u32, mode: u32) -> FileInfo {
        FileInfo { is_dir, uid, mode }
    }

    #[test]
    fn a_private_directory_passes() {
        let p = Path::new("/run/user/1000/busbar/x");
        assert_eq!(check_private(p, info(true, ME, 0o700), ME), Ok(()));
        // Fewer rights for the owner are its own business.
        assert_eq!(check_private(p, info(true, ME, 0o500), ME), Ok(()));
    }

    #[test]
    fn other_owners_modes_and_kinds_are_refused() {
        let p = Path::new("/tmp/b");
        let owner = check_private(p, info(true, 0, 0o700), ME).unwrap_err();
        assert!(owner.contains("belongs to uid 0"), "{owner}");
        for mode in [0o750, 0o705, 0o710, 0o701, 0o777, 0o1777] {
            let e = check_private(p, info(true, ME, mode), ME).unwrap_err();
            assert!(e.contains(&format!("{mode:04o}")), "{e}");
        }
        let file = check_private(p, info(false, ME, 0o700), ME).unwrap_err();
        assert!(file.contains("not a directory"), "{file}");
    }

    #[test]
    fn default_dir_needs_xdg_runtime_dir_and_a_plain_identifier() {
        assert_eq!(
            default_dir(Some(OsStr::new("/run/user/7")), "com.solar").ok(),
            Some(PathBuf::from("/run/user/7/busbar/com.solar"))
        );
        for unset in [None, Some(OsStr::new(""))] {
            let e = default_dir(unset, "com.solar").unwrap_err();
            assert!(
                matches!(&e, JoinError::Namespace(m) if m.contains("XDG_RUNTIME_DIR")),
                "{e}"
            );
        }
        assert!(matches!(
            default_dir(Some(OsStr::new("relative")), "b"),
            Err(JoinError::Namespace(_))
        ));
        for bad in ["a/b", ".", "..", "../x"] {
            assert!(
                matches!(
                    default_dir(Some(OsStr::new("/run/user/7")), bad),
                    Err(JoinError::Namespace(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn socket_paths_must_fit_a_unix_address() {
        // dir + '/' + 16 hex + ".sock" == 107 is the most that fits.
        let fits = format!("/{}", "d".repeat(Address::MAX_PATH - 1 - 1 - LINK_NAME_LEN));
        assert!(check_length(Path::new(&fits)).is_ok());
        let long = format!("{fits}d");
        let e = check_length(Path::new(&long)).unwrap_err();
        assert!(
            matches!(&e, JoinError::Namespace(m) if m.contains("too long")),
            "{e}"
        );
        let mut o = Options::new("b", crate::label!("x"), "t");
        o.namespace = Namespace::Filesystem(Some(PathBuf::from(&fits)));
        let a = link_address(&o, u64::MAX).expect("fits");
        assert_eq!(
            a.file().map(|p| p.as_os_str().len()),
            Some(Address::MAX_PATH)
        );
        o.namespace = Namespace::Filesystem(Some(PathBuf::from(&long)));
        assert!(link_address(&o, u64::MAX).is_err());
    }

    #[test]
    fn addresses_by_namespace() {
        let mut o = Options::new("com.solar", crate::label!("x"), "t");
        assert_eq!(
            format!("{:?}", bus_address(&o).expect("abstract")),
            "@busbar/com.solar"
        );
        assert_eq!(
            format!("{:?}", link_address(&o, 0xab).expect("abstract")),
            "@busbar/com.solar/00000000000000ab"
        );
        o.namespace = Namespace::Filesystem(Some(PathBuf::from("/run/b")));
        assert_eq!(
            bus_address(&o).expect("path").file(),
            Some(Path::new("/run/b/bus.sock"))
        );
        assert_eq!(
            link_address(&o, 0xab).expect("path").file(),
            Some(Path::new("/run/b/00000000000000ab.sock"))
        );
        assert_eq!(
            lock_path(&o).expect("path"),
            PathBuf::from("/run/b/bus.lock")
        );
        o.namespace = Namespace::Filesystem(None);
        assert!(bus_address(&o).is_err(), "not prepared");
    }

    #[test]
    fn prepare_creates_a_private_directory_and_refuses_a_public_one() {
        let base = std::env::temp_dir().join(format!(
            "busbar-ns-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir(&base).expect("base");
        let mut o = Options::new("b", crate::label!("x"), "t");
        let bus = base.join("bus");
        o.namespace = Namespace::Filesystem(Some(bus.clone()));
        prepare(&mut o).expect("created");
        let made = dir::lstat(&bus).expect("lstat");
        assert!(made.is_dir);
        assert_eq!(made.mode, 0o700);
        prepare(&mut o).expect("existing and private");

        let public = base.join("public");
        std::fs::create_dir(&public).expect("public");
        dir::mkdir(&public, 0o755).expect("exists");
        rustix::fs::chmod(&public, rustix::fs::Mode::from_raw_mode(0o755)).expect("chmod");
        o.namespace = Namespace::Filesystem(Some(public.clone()));
        let e = prepare(&mut o).unwrap_err();
        assert!(
            matches!(&e, JoinError::Namespace(m) if m.contains("0755")),
            "{e}"
        );

        let file = base.join("file");
        std::fs::write(&file, b"").expect("file");
        o.namespace = Namespace::Filesystem(Some(file));
        assert!(matches!(prepare(&mut o), Err(JoinError::Namespace(_))));

        let link = base.join("link");
        std::os::unix::fs::symlink(&bus, &link).expect("symlink");
        o.namespace = Namespace::Filesystem(Some(link));
        let e = prepare(&mut o).unwrap_err();
        assert!(
            matches!(&e, JoinError::Namespace(m) if m.contains("symlink")),
            "{e}"
        );

        std::fs::remove_dir_all(&base).expect("clean up");
    }
}
