//! The causal directory: whoever an endpoint has heard from, it can answer
//! at once, by label, with no ttl, even while the controller fails over.

use crate::harness::{bus_name, controller_holder, joined, Peer};

const ROUNDS: &str = "1000";

/// Runs the rounds and checks 0 `NoRoute` and 0 lost; with `kill` the
/// controller is killed half way.
fn rounds(test: &str, kill: bool) {
    let bus = bus_name(test);
    let mut holder = controller_holder(&bus);
    let (mut a, _) = joined("a", "answer", &bus, "a", &[]);
    let mut extra = vec!["--to", "a", "--rounds", ROUNDS, "--no-affinity"];
    if kill {
        extra.extend(["--pause-at", "500"]);
    }
    let mut b = Peer::start("b", "rounds", &bus, "b", &extra);
    if kill {
        b.expect_line("AT 500");
        holder.kill9();
        // The rounds go on at once, while `a` takes the controller over.
        b.tell("go");
    }
    b.expect_line(&format!("ROUNDS {ROUNDS} lost=0"));
    a.expect_line(&format!("ANSWERED {ROUNDS} noroute=0"));
    b.wait_success();
    a.wait_success();
}

#[test]
fn a_newcomer_is_answered_by_label_at_once_1000_times() {
    rounds("causal", false);
}

#[test]
fn a_newcomer_is_answered_by_label_at_once_1000_times_across_a_controller_kill() {
    rounds("causal_kill", true);
}

/// The survivors of a dead controller cannot host it (`--no-affinity`), so
/// a brand-new endpoint takes it over knowing nobody. One survivor is
/// stopped and cannot re-register; the others tell the new controller
/// whom they know, so an endpoint that joins for the first time now sees
/// everyone, the stopped one included.
#[test]
fn a_first_time_joiner_during_a_failover_sees_everyone() {
    let bus = bus_name("causal_window");
    let mut holder = controller_holder(&bus);
    let (mut s1, _) = joined("s1", "hold", &bus, "s1", &["--no-affinity"]);
    let (mut s2, _) = joined("s2", "hold", &bus, "s2", &["--no-affinity"]);
    let (mut stopped, _) = joined("stopped", "hold", &bus, "stopped", &["--no-affinity"]);
    // Everyone knows everyone before the controller goes.
    let (mut check, _) = joined(
        "check",
        "sees",
        &bus,
        "check",
        &["--labels", "s1,s2,stopped", "--no-affinity"],
    );
    check.expect_line("SEES s1,s2,stopped");
    check.wait_success();
    stopped.stop();
    holder.kill9();
    let mut winner = Peer::start("winner", "hold", &bus, "winner", &[]);
    assert!(
        winner.ready().controller,
        "the only endpoint that may host the controller took it over"
    );
    let (mut newcomer, _) = joined(
        "newcomer",
        "sees",
        &bus,
        "newcomer",
        &["--labels", "s1,s2,stopped,winner", "--no-affinity"],
    );
    newcomer.expect_line("SEES s1,s2,stopped,winner");
    newcomer.wait_success();
    stopped.resume();
    for p in [&mut s1, &mut s2, &mut stopped, &mut winner] {
        p.close_stdin();
        p.wait_success();
    }
}
