//! Access control: who may join (the controller's `Access`), who may open a
//! data link to whom (both ends' `Access`), the filesystem namespace (a
//! private directory, the `flock` election, socket files removed after
//! crashes and on shutdown), and `Limits::max_endpoints`.
//!
//! The tests with another user run only as root (CI is root): they start a
//! peer as uid/gid 65534 (`nobody`) and print a note and pass otherwise.

use crate::harness::{bus_name, joined, payloads, Peer, GUARD};
use busbar::{JoinError, Namespace, Options};
use busbar_tests::Mixed;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The uid and gid the stranger runs as.
const NOBODY: u32 = 65534;

fn root() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    eprintln!("not root: cannot start a peer as another user; this access check is not exercised");
    false
}

fn as_nobody(cmd: &mut Command) {
    cmd.uid(NOBODY).gid(NOBODY);
}

/// Logs at `warn` at least, whatever `RUST_LOG` says, so refusals show on stderr.
fn warnings_on(cmd: &mut Command) {
    cmd.env("RUST_LOG", "warn");
}

/// Starts a peer with `configure` and waits for it to join as a non-controller.
fn joined_with(
    name: &str,
    role: &str,
    bus: &str,
    label: &str,
    extra: &[&str],
    configure: impl FnOnce(&mut Command),
) -> Peer {
    let mut peer = Peer::start_with(name, role, bus, label, extra, configure);
    if peer.ready().controller {
        peer.fail("hosts the controller, but another endpoint already did");
    }
    peer
}

/// The first endpoint of a fresh bus, started with `extra`: it hosts the controller.
fn holder(bus: &str, extra: &[&str]) -> Peer {
    let mut holder = Peer::start("holder", "hold", bus, "holder", extra);
    if !holder.ready().controller {
        holder.fail("the first endpoint on a fresh bus must host its controller");
    }
    holder
}

/// A holder whose controller applies `access`.
fn holder_with_access(bus: &str, access: &str) -> Peer {
    holder(bus, &["--access", access])
}

/// `nobody` joins a bus whose controller applies `access`, and leaves.
fn nobody_joins(test: &str, access: &str) {
    let bus = bus_name(test);
    let mut holder = holder_with_access(&bus, access);
    let mut peer = joined_with(
        "nobody",
        "hold",
        &bus,
        "nobody",
        // It must trust the controller (root) in turn to send it the join request.
        &["--no-affinity", "--access", "allow:uids=0"],
        as_nobody,
    );
    peer.wait_success();
    holder.wait_success();
}

/// A peer running as `nobody` (which itself trusts any controller) asks to
/// join a bus whose controller has policy `access`, and is refused.
fn nobody_is_refused(test: &str, access: &str) {
    let bus = bus_name(test);
    let mut holder = holder_with_access(&bus, access);
    let mut peer = Peer::start_with(
        "nobody",
        "join-error",
        &bus,
        "x",
        &["--access", "anyone"],
        as_nobody,
    );
    peer.expect_line(&format!("REFUSED PermissionDenied uid={NOBODY}"));
    peer.wait_success();
    holder.wait_success();
}

#[test]
fn another_uid_is_refused_under_same_user() {
    if !root() {
        return;
    }
    nobody_is_refused("acc-same", "same-user");
}

#[test]
fn another_uid_is_refused_when_only_others_are_allowed() {
    if !root() {
        return;
    }
    // Even with the right token: the policy is checked first.
    nobody_is_refused("acc-others", "allow:uids=12345+23456,gids=34567");
}

#[test]
fn another_uid_is_admitted_when_its_uid_is_allowed() {
    if !root() {
        return;
    }
    nobody_joins("acc-uid", &format!("allow:uids={NOBODY}"));
}

#[test]
fn another_uid_is_admitted_when_its_gid_is_allowed() {
    if !root() {
        return;
    }
    nobody_joins("acc-gid", &format!("allow:gids={NOBODY}"));
}

#[test]
fn another_uid_is_admitted_under_anyone() {
    if !root() {
        return;
    }
    nobody_joins("acc-anyone", "anyone");
}

#[test]
fn data_links_from_a_process_the_receiver_does_not_admit_are_refused() {
    if !root() {
        return;
    }
    let bus = bus_name("acc-link-refused");
    // The controller lets the stranger in; the sink's own policy (same user) does not.
    let mut holder = holder_with_access(&bus, &format!("allow:uids={NOBODY}"));
    let mut sink = joined_with("sink", "recv", &bus, "sink", &[], warnings_on);
    // The stranger itself would talk to anyone, so only the sink's check stands in the way.
    let mut stranger = joined_with(
        "stranger",
        "send",
        &bus,
        "stranger",
        &["--no-affinity", "--access", "anyone"],
        as_nobody,
    );
    // Whatever the stranger's send says (the link is cut under it), nothing may arrive.
    let _ = stranger.ask("unicast 60000 text:secret sink");
    sink.wait_stderr("refused a data link from a process our access policy does not admit");
    let (mut friend, _) = joined("friend", "send", &bus, "friend", &[]);
    assert_eq!(friend.ask("multicast 60000 text:END sink"), "OK");
    assert_eq!(sink.received(), Vec::<String>::new());
    friend.wait_success();
    stranger.wait_success();
    holder.wait_success();
}

#[test]
fn data_links_from_an_allowed_process_are_accepted() {
    if !root() {
        return;
    }
    let bus = bus_name("acc-link-allowed");
    let allow = format!("allow:uids={NOBODY}");
    let mut holder = holder_with_access(&bus, &allow);
    let mut sink = joined_with("sink", "recv", &bus, "sink", &["--access", &allow], |_| {});
    let mut stranger = joined_with(
        "stranger",
        "send",
        &bus,
        "stranger",
        &["--no-affinity", "--access", "anyone"],
        as_nobody,
    );
    assert_eq!(stranger.ask("unicast 60000 text:secret sink"), "OK");
    assert_eq!(stranger.ask("multicast 60000 text:END sink"), "OK");
    assert_eq!(payloads(&sink.received()), ["text=secret"]);
    stranger.wait_success();
    holder.wait_success();
}

#[test]
fn a_sender_gives_nothing_to_a_receiver_its_policy_does_not_admit() {
    if !root() {
        return;
    }
    const OTHER: u32 = 12345;
    let bus = bus_name("acc-squat");
    let mut holder = holder_with_access(&bus, &format!("allow:uids={NOBODY}+{OTHER}"));
    // The sink runs as a third user and would take anyone's link; the
    // stranger admits root (the controller) but not the sink's user, so it
    // must refuse to hand the sink anything.
    let mut sink = joined_with(
        "sink",
        "recv",
        &bus,
        "sink",
        &["--access", "anyone"],
        |cmd| {
            cmd.uid(OTHER).gid(OTHER);
        },
    );
    let mut stranger = joined_with(
        "stranger",
        "send",
        &bus,
        "stranger",
        &["--no-affinity", "--access", "allow:uids=0"],
        |cmd| {
            as_nobody(cmd);
            warnings_on(cmd);
        },
    );
    let _ = stranger.ask("unicast 60000 text:secret sink");
    stranger.wait_stderr("which our access policy does not admit");
    let (mut friend, _) = joined("friend", "send", &bus, "friend", &["--access", "anyone"]);
    assert_eq!(friend.ask("multicast 60000 text:END sink"), "OK");
    assert_eq!(sink.received(), Vec::<String>::new());
    friend.wait_success();
    stranger.wait_success();
    holder.wait_success();
}

#[test]
fn the_join_beyond_max_endpoints_is_refused_with_bus_full() {
    let bus = bus_name("acc-full");
    let mut holder = holder(&bus, &["--max-endpoints", "2"]);
    let (mut second, _) = joined("second", "hold", &bus, "second", &[]);
    let mut third = Peer::start("third", "join-error", &bus, "third", &[]);
    third.expect_line("REFUSED BusFull max=2");
    third.wait_success();
    // A place frees up when an endpoint leaves.
    second.wait_success();
    let (mut fourth, _) = joined("fourth", "hold", &bus, "fourth", &[]);
    fourth.wait_success();
    holder.wait_success();
}

// ---- the filesystem namespace ----

/// A scratch directory, removed (with everything in it) when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "bb-{test}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        Scratch(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|e| {
            e.expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// Waits (hang guard only) until `path` no longer exists.
fn wait_gone(path: &Path) {
    let deadline = Instant::now() + GUARD;
    while path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} still exists after {GUARD:?} (hang guard)",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn socket_of(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.sock"))
}

#[test]
fn filesystem_namespace_end_to_end() {
    let scratch = Scratch::new("fs-e2e");
    let dir = scratch.path().join("bus");
    let ns = dir.to_str().expect("utf-8 path");
    let bus = bus_name("fs-e2e");
    let fs = ["--namespace", ns];
    let mut holder = Peer::start("holder", "hold", &bus, "holder", &fs);
    let holder_ready = holder.ready();
    assert!(holder_ready.controller);
    assert_eq!(mode(&dir), 0o700, "the bus directory is private");
    assert!(dir.join("bus.sock").exists());
    assert!(socket_of(&dir, &holder_ready.id).exists());

    let (mut a, a_ready) = joined("a", "recv", &bus, "a,x", &fs);
    let (mut b, _) = joined("b", "recv", &bus, "b,x", &fs);
    let (mut tx, _) = joined("tx", "send", &bus, "tx", &fs);
    assert!(socket_of(&dir, &a_ready.id).exists());
    assert_eq!(tx.ask("unicast 60000 text:one a"), "OK");
    assert_eq!(tx.ask("multicast 60000 text:all x"), "OK");
    assert_eq!(tx.ask("multicast 60000 text:END x"), "OK");
    assert_eq!(payloads(&a.received()), ["text=one", "text=all"]);
    assert_eq!(payloads(&b.received()), ["text=all"]);
    tx.wait_success();
    holder.wait_success();

    // Everyone shut down cleanly: no socket file is left, only the lock file.
    assert_eq!(names(&dir), ["bus.lock"]);
}

#[test]
fn filesystem_namespace_defaults_to_xdg_runtime_dir() {
    let scratch = Scratch::new("fs-xdg");
    let runtime = scratch.path().join("run");
    std::fs::create_dir(&runtime).expect("runtime dir");
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let bus = bus_name("fs-xdg");
    let xdg = |cmd: &mut Command| {
        cmd.env("XDG_RUNTIME_DIR", &runtime);
    };
    let args = ["--namespace", "xdg"];
    let mut holder = Peer::start_with("holder", "hold", &bus, "holder", &args, xdg);
    assert!(holder.ready().controller);
    let dir = runtime.join("busbar").join(&bus);
    assert_eq!(mode(&runtime.join("busbar")), 0o700);
    assert_eq!(mode(&dir), 0o700);
    assert!(dir.join("bus.sock").exists());
    let mut other = joined_with("other", "hold", &bus, "other", &args, xdg);
    other.wait_success();
    holder.wait_success();
    assert_eq!(names(&dir), ["bus.lock"]);
}

#[test]
fn a_bus_directory_that_is_not_private_is_refused() {
    let scratch = Scratch::new("fs-mode");
    let join = |dir: &Path| {
        let mut options = Options::new(bus_name("fs-mode"), busbar::label!("x"), "t");
        options.namespace = Namespace::Filesystem(Some(dir.to_path_buf()));
        match busbar::join::<Mixed, Mixed>(options, Some(GUARD)) {
            Ok(_) => panic!("joined with the bus directory {}", dir.display()),
            Err(e) => e,
        }
    };

    let open = scratch.path().join("open");
    std::fs::create_dir(&open).expect("mkdir");
    for bad in [0o755, 0o750, 0o701, 0o777] {
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(bad)).expect("chmod");
        match join(&open) {
            JoinError::Namespace(m) => assert!(m.contains(&format!("{bad:04o}")), "{m}"),
            other => panic!("mode {bad:o}: expected a Namespace error, got {other:?}"),
        }
    }
    // It was refused, not "fixed".
    assert_eq!(mode(&open), 0o777);

    let file = scratch.path().join("file");
    std::fs::write(&file, b"").expect("file");
    assert!(matches!(join(&file), JoinError::Namespace(m) if m.contains("not a directory")));

    if rustix::process::geteuid().is_root() {
        let theirs = scratch.path().join("theirs");
        std::fs::create_dir(&theirs).expect("mkdir");
        std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        std::os::unix::fs::chown(&theirs, Some(NOBODY), Some(NOBODY)).expect("chown");
        assert_eq!(std::fs::metadata(&theirs).expect("stat").uid(), NOBODY);
        match join(&theirs) {
            JoinError::Namespace(m) => assert!(m.contains("belongs to uid 65534"), "{m}"),
            other => panic!("expected a Namespace error, got {other:?}"),
        }
    } else {
        eprintln!(
            "not root: cannot make a directory owned by another user; owner check not exercised"
        );
    }

    // Too long for a unix socket address: a clear error, not a truncated path.
    let deep = scratch.path().join("d".repeat(100));
    assert!(matches!(join(&deep), JoinError::Namespace(m) if m.contains("too long")));
}

#[test]
fn a_stale_controller_socket_does_not_block_the_election() {
    let scratch = Scratch::new("fs-stale");
    let dir = scratch.path().join("bus");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    // What a crashed controller leaves: a socket file nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(dir.join("bus.sock")).expect("bind"));
    assert!(dir.join("bus.sock").exists());

    let ns = dir.to_str().expect("utf-8 path");
    let bus = bus_name("fs-stale");
    // It becomes the controller: the stale file is no obstacle.
    let mut holder = holder(&bus, &["--namespace", ns]);
    let (mut other, _) = joined("other", "hold", &bus, "other", &["--namespace", ns]);
    other.wait_success();
    holder.wait_success();
}

#[test]
fn kill_9_of_a_filesystem_controller_another_takes_over_and_its_socket_goes() {
    let scratch = Scratch::new("fs-kill-ctl");
    let dir = scratch.path().join("bus");
    let ns = dir.to_str().expect("utf-8 path");
    let fs = ["--namespace", ns];
    let bus = bus_name("fs-kill-ctl");
    let mut holder = Peer::start("holder", "hold", &bus, "holder", &fs);
    let holder_ready = holder.ready();
    assert!(holder_ready.controller);
    let (mut survivor, _) = joined("survivor", "send", &bus, "survivor", &fs);

    // SIGKILL: nothing is unlinked; bus.sock and the holder's socket file stay behind.
    holder.kill9();

    // A newcomer that never hosts the controller can join only once a new
    // controller (the survivor) serves bus.sock.
    let no_affinity = ["--namespace", ns, "--no-affinity"];
    let (mut late, _) = joined("late", "recv", &bus, "late", &no_affinity);
    assert_eq!(survivor.ask("unicast 60000 text:after late"), "OK");
    assert_eq!(survivor.ask("multicast 60000 text:END late"), "OK");
    assert_eq!(payloads(&late.received()), ["text=after"]);

    // The new controller removed the dead host's socket file.
    wait_gone(&socket_of(&dir, &holder_ready.id));
    survivor.wait_success();
    assert_eq!(names(&dir), ["bus.lock"]);
}

#[test]
fn kill_9_of_a_filesystem_endpoint_its_socket_goes() {
    let scratch = Scratch::new("fs-kill-ep");
    let dir = scratch.path().join("bus");
    let ns = dir.to_str().expect("utf-8 path");
    let fs = ["--namespace", ns];
    let bus = bus_name("fs-kill-ep");
    let mut holder = holder(&bus, &fs);
    let (mut victim, victim_ready) = joined("victim", "hold", &bus, "victim", &fs);
    let victim_socket = socket_of(&dir, &victim_ready.id);
    assert!(victim_socket.exists());
    victim.kill9();
    wait_gone(&victim_socket);
    holder.wait_success();
    assert_eq!(names(&dir), ["bus.lock"]);
}
