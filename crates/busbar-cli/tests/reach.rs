//! `--namespace` and `--access` on `listen`, `send` and `list`, across
//! real processes: a bus in a directory is reached only by commands that
//! name that directory, and an access policy keeps another user out.
//!
//! The tests with another user run only as root (CI is root): they start
//! `busbar` as uid/gid 65534 (`nobody`), and print a note and pass otherwise.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use support::*;

/// The uid and gid the stranger runs as.
const NOBODY: u32 = 65534;

/// A directory path no other test (nor another run) uses, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("busbar-cli-test.{}.{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temporary path")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_bus_in_a_directory_is_reached_by_listen_send_and_list_that_name_it() {
    let bus = bus("fs");
    let dir = TempDir::new("fs");
    let ns = ["--namespace", dir.path()];
    let listener = listen(&bus, "earth", &["--namespace", dir.path(), "--count", "1"]);
    let rows = wait_listed_with(&bus, &ns, |rows| has_label(rows, "earth"));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].pid, listener.pid());
    assert!(rows[0].controller, "{rows:?}");

    // The bus lives in the directory, private to this user, and nowhere else.
    let meta = std::fs::metadata(&dir.0).expect("the bus directory exists");
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    assert!(
        dir.0.join("bus.sock").exists(),
        "the controller's socket file"
    );
    let (status, _, err) = run(&["list", "--bus", &bus, "--join-timeout", "0.3"]);
    assert_eq!(
        status.code(),
        Some(1),
        "the abstract namespace has no such bus: {err}"
    );
    assert!(err.contains("no bus named"), "{err}");

    let (status, _, err) = run(&[
        "send",
        "--bus",
        &bus,
        "--namespace",
        dir.path(),
        "--to",
        "earth",
        "--ttl",
        "60000",
        "--join-timeout",
        "60",
        "hello, directory",
    ]);
    assert!(status.success(), "send failed: {err}");
    assert_eq!(listener.line(), "hello, directory");
    let (status, _, err) = listener.finish();
    assert!(status.success(), "listen failed: {err}");
}

#[test]
fn a_relative_directory_names_the_same_bus_from_anywhere() {
    let bus = bus("fs-relative");
    let dir = TempDir::new("fs-relative");
    let parent = dir.0.parent().expect("a parent").to_path_buf();
    let name = dir.0.file_name().expect("a name").to_str().expect("UTF-8");
    let relative = format!("./{name}");
    let mut listen = busbar(&listen_args(
        &bus,
        "rel",
        &["--namespace", &relative, "--count", "1"],
    ));
    listen.current_dir(&parent);
    let listener = Proc::start(listen, None);
    // Named by its absolute path from here, it is the same bus.
    wait_listed_with(&bus, &["--namespace", dir.path()], |rows| {
        has_label(rows, "rel")
    });
    let mut send = busbar(&[
        "send",
        "--bus",
        &bus,
        "--namespace",
        &relative,
        "--to",
        "rel",
        "--join-timeout",
        "60",
        "relative",
    ]);
    send.current_dir(&parent);
    let (status, _, err) = Proc::start(send, None).finish();
    assert!(status.success(), "send failed: {err}");
    assert_eq!(listener.line(), "relative");
}

#[test]
fn a_directory_that_is_not_private_is_refused_with_the_reason() {
    let dir = TempDir::new("fs-open");
    std::fs::create_dir(&dir.0).expect("mkdir");
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let bus = bus("fs-open");
    let (status, _, err) = run(&listen_args(&bus, "x", &["--namespace", dir.path()]));
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("--namespace") && err.contains("chmod 700"),
        "{err}"
    );
}

#[test]
fn bad_namespace_and_access_values_are_usage_errors_that_say_what_is_expected() {
    let cases: [(&[&str], &str); 4] = [
        (&["--namespace", "mybus"], "./mybus"),
        (&["--access", "uid:alice"], "numeric uid"),
        (&["--access", "user:1"], "neither `uid` nor `gid`"),
        (&["--access", "everyone"], "`anyone`"),
    ];
    for (flags, says) in cases {
        for command in ["listen", "send", "list"] {
            let mut args = vec![command, "--bus", "b"];
            if command == "listen" {
                args.extend(["--label", "x"]);
            }
            if command == "send" {
                args.extend(["--to", "x", "text"]);
            }
            args.extend_from_slice(flags);
            let (status, out, err) = run(&args);
            assert_eq!(status.code(), Some(2), "{args:?}: {err}");
            assert!(out.is_empty());
            assert!(err.contains(says), "{args:?}: {err}");
        }
    }
}

/// Whether this test may start processes as another user.
fn root() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    eprintln!("not root: cannot run busbar as another user; this access check is not exercised");
    false
}

/// `busbar args` as `nobody`.
fn as_nobody(args: &[&str]) -> (std::process::ExitStatus, Vec<String>, String) {
    let mut command = busbar(args);
    command.uid(NOBODY).gid(NOBODY);
    Proc::start(command, None).finish()
}

#[test]
fn access_keeps_another_user_out_unless_it_admits_that_user() {
    if !root() {
        return;
    }
    // A bus with the default policy: the same user only.
    let closed = bus("access-closed");
    let _closed = listen(&closed, "mine", &[]);
    wait_listed(&closed, |rows| has_label(rows, "mine"));

    // `nobody` must trust the controller (root) to even ask to join ...
    let (status, _, err) = as_nobody(&["list", "--bus", &closed, "--join-timeout", "5"]);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("which our --access does not admit") && err.contains("uid:0"),
        "{err}"
    );
    // ... and, trusting it, is refused by the controller's policy.
    let trust_root = ["--access", "uid:0"];
    let mut args = vec!["list", "--bus", &closed, "--join-timeout", "5"];
    args.extend_from_slice(&trust_root);
    let (status, out, err) = as_nobody(&args);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(out.is_empty(), "{out:?}");
    assert!(err.contains("does not admit uid 65534"), "{err}");
    let mut args = vec![
        "send",
        "--bus",
        &closed,
        "--to",
        "mine",
        "--join-timeout",
        "5",
        "x",
    ];
    args.extend_from_slice(&trust_root);
    let (status, _, err) = as_nobody(&args);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("does not admit uid 65534"), "{err}");

    // A bus whose listener admits `nobody`: it may list it and send to it.
    let open = bus("access-open");
    let listener = listen(&open, "shared", &["--access", "uid:65534", "--count", "1"]);
    wait_listed(&open, |rows| has_label(rows, "shared"));
    let mut args = vec!["list", "--bus", &open, "--join-timeout", "5"];
    args.extend_from_slice(&trust_root);
    let (status, lines, err) = as_nobody(&args);
    assert!(status.success(), "{err}");
    let rows = parse_table(&lines);
    assert!(has_label(&rows, "shared"), "{rows:?}");
    let mut args = vec![
        "send",
        "--bus",
        &open,
        "--to",
        "shared",
        "--join-timeout",
        "5",
        "from nobody",
    ];
    args.extend_from_slice(&trust_root);
    let (status, _, err) = as_nobody(&args);
    assert!(status.success(), "{err}");
    assert_eq!(listener.line(), "from nobody");
    assert!(listener.finish().0.success());
}

#[test]
fn the_filesystem_namespace_keeps_another_user_out_by_its_directory() {
    if !root() {
        return;
    }
    let bus = bus("fs-nobody");
    let dir = TempDir::new("fs-nobody");
    let _listener = listen(
        &bus,
        "mine",
        &["--namespace", dir.path(), "--access", "anyone"],
    );
    wait_listed_with(&bus, &["--namespace", dir.path()], |rows| {
        has_label(rows, "mine")
    });
    assert_eq!(std::fs::metadata(&dir.0).expect("dir").uid(), 0);
    // Even a policy of `anyone` does not open a directory only root may enter.
    let (status, _, err) = as_nobody(&[
        "list",
        "--bus",
        &bus,
        "--namespace",
        dir.path(),
        "--access",
        "anyone",
        "--join-timeout",
        "2",
    ]);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("--namespace") && err.contains("belongs to uid 0"),
        "{err}"
    );
}
