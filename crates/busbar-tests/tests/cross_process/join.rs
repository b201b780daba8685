//! Refused joins: wrong token, wrong protocol version, another user.

use crate::harness::{bus_name, controller_holder, Peer};
use std::os::unix::process::CommandExt;

#[test]
fn wrong_token_is_refused_with_token_mismatch() {
    let bus = bus_name("token");
    let _holder = controller_holder(&bus);
    let mut peer = Peer::start(
        "intruder",
        "join-error",
        &bus,
        "x",
        &["--token", "not-the-token"],
    );
    peer.expect_line("REFUSED TokenMismatch");
    peer.wait_success();
}

#[test]
fn wrong_version_is_refused_with_version_mismatch() {
    let bus = bus_name("version");
    let _holder = controller_holder(&bus);
    let theirs = busbar::PROTOCOL_VERSION.wrapping_add(1);
    let mut peer = Peer::start(
        "future",
        "join-error",
        &bus,
        "x",
        &["--version", &theirs.to_string()],
    );
    peer.expect_line(&format!(
        "REFUSED VersionMismatch ours={theirs} controller={}",
        busbar::PROTOCOL_VERSION
    ));
    peer.wait_success();
}

#[test]
fn another_user_is_refused_with_permission_denied() {
    if !rustix::process::getuid().is_root() {
        eprintln!("not root: cannot start a peer as another user; the uid check is not exercised");
        return;
    }
    let bus = bus_name("uid");
    let _holder = controller_holder(&bus);
    let nobody = 65534;
    // The joiner trusts anyone to serve the bus, so it asks; the controller says no.
    let mut peer = Peer::start_with(
        "nobody",
        "join-error",
        &bus,
        "x",
        &["--access", "anyone"],
        |cmd| {
            cmd.uid(nobody).gid(nobody);
        },
    );
    peer.expect_line(&format!("REFUSED PermissionDenied uid={nobody}"));
    peer.wait_success();
}

#[test]
fn a_joiner_does_not_hand_its_token_to_a_controller_of_another_user() {
    if !rustix::process::getuid().is_root() {
        eprintln!("not root: cannot start a peer as another user; the check is not exercised");
        return;
    }
    let bus = bus_name("squat");
    // The bus is served by root; a joiner of another user with the default
    // policy (same user only) must refuse to send it the join request.
    let _holder = controller_holder(&bus);
    let nobody = 65534;
    let mut peer = Peer::start_with("nobody", "join-error", &bus, "x", &[], |cmd| {
        cmd.uid(nobody).gid(nobody);
    });
    peer.expect_line("REFUSED UntrustedController uid=0");
    peer.wait_success();
}
