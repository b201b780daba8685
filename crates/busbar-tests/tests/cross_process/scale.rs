//! Many endpoints on one bus: an all-to-all mesh of processes, and joins
//! while the controller's process is starved.

use crate::harness::{bus_name, controller_holder, Peer};

/// Every one of 200 processes waits until it sees all 200, multicasts to
/// all at once and gets all 200 messages. Each sender connects to 199
/// receivers that are busy connecting to others at the same moment: this
/// deadlocked while a sender held its links' lock across a blocking
/// connect (the receivers' background threads, needing that lock, stopped
/// accepting, and their backlogs filled).
#[test]
fn a_mesh_of_200_processes_multicasting_to_all_completes() {
    const N: usize = 200;
    let bus = bus_name("mesh200");
    let count = N.to_string();
    let mut peers: Vec<Peer> = (0..N)
        .map(|i| {
            Peer::start(
                &format!("mesh{i}"),
                "mesh",
                &bus,
                "mesh",
                &["--count", &count, "--index", &i.to_string()],
            )
        })
        .collect();
    let controllers = peers
        .iter_mut()
        .map(|p| p.ready())
        .filter(|r| r.controller)
        .count();
    assert_eq!(controllers, 1, "exactly one endpoint hosts the controller");
    for p in &mut peers {
        p.expect_line(&format!("MESH got={N} distinct={N}"));
    }
    for p in &mut peers {
        p.wait_success();
    }
}

/// Joins while the controller's process is stopped (`SIGSTOP`) for longer
/// than any fixed handshake limit, on a machine made busy by twice as many
/// spinning processes as cores, while every member polls `endpoints()`
/// every 2 ms: the joins wait (they have the caller's whole budget) and
/// nobody elects itself, so once the controller runs again every endpoint
/// ends with the same directory and the same controller.
#[test]
fn joins_while_the_controller_is_starved_end_in_one_directory_with_one_controller() {
    const MEMBERS: usize = 40;
    let bus = bus_name("starved");
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut spinners: Vec<Peer> = (0..2 * cores)
        .map(|i| Peer::start(&format!("spin{i}"), "spin", &bus, "spin", &[]))
        .collect();
    for s in &mut spinners {
        s.expect_line("SPINNING");
    }
    let expect = (MEMBERS + 1).to_string();
    let mut host = Peer::start("host", "member", &bus, "member", &["--expect", &expect]);
    let ready = host.ready();
    assert!(ready.controller, "the first endpoint hosts the controller");
    // Half join before the controller stops, half while it is stopped.
    let start = |i: usize| {
        Peer::start(
            &format!("member{i}"),
            "member",
            &bus,
            "member",
            &["--expect", &expect],
        )
    };
    let mut members: Vec<Peer> = (0..MEMBERS / 2).map(start).collect();
    for m in &mut members {
        m.ready();
    }
    host.stop();
    members.extend((MEMBERS / 2..MEMBERS).map(start));
    // Longer than the fixed 5 s a join used to allow for the handshake:
    // the stimulus under test, not a wait for something to happen.
    std::thread::sleep(std::time::Duration::from_secs(7));
    host.resume();
    for m in &mut members[MEMBERS / 2..] {
        if m.ready().controller {
            m.fail("elected itself while the controller was stopped");
        }
    }
    for p in std::iter::once(&mut host).chain(members.iter_mut()) {
        p.expect("SETTLED ");
    }
    let mut lines = Vec::new();
    for p in std::iter::once(&mut host).chain(members.iter_mut()) {
        p.tell("check");
        lines.push(p.expect("DIR "));
    }
    for s in &mut spinners {
        s.wait_success();
    }
    let want = format!("n={} controller={}", MEMBERS + 1, ready.id);
    for (i, l) in lines.iter().enumerate() {
        assert!(
            l.starts_with(&want),
            "endpoint {i} ended with directory {l:?}, expected {want:?} ..."
        );
        assert_eq!(l, &lines[0], "endpoint {i} disagrees with the host");
    }
    for p in std::iter::once(&mut host).chain(members.iter_mut()) {
        p.wait_success();
    }
}

/// A directory larger than the largest frame (24 endpoints with 4 KiB
/// labels) reaches every joiner whole: the welcome carries part of it and
/// the rest follows as single records.
#[test]
fn a_directory_larger_than_one_frame_reaches_every_joiner() {
    const N: usize = 24;
    let bus = bus_name("bigdir");
    let expect = N.to_string();
    let mut peers: Vec<Peer> = (0..N)
        .map(|i| {
            let label = format!("member,{}{i}", "x".repeat(4096));
            Peer::start(
                &format!("member{i}"),
                "member",
                &bus,
                &label,
                &["--expect", &expect, "--poll-ms", "20"],
            )
        })
        .collect();
    for p in &mut peers {
        p.ready();
    }
    for p in &mut peers {
        p.expect("SETTLED ");
    }
    let mut lines = Vec::new();
    for p in &mut peers {
        p.tell("check");
        lines.push(p.expect("DIR "));
    }
    for (i, l) in lines.iter().enumerate() {
        assert!(l.starts_with(&format!("n={N} ")), "endpoint {i}: {l:?}");
        assert_eq!(l, &lines[0], "endpoint {i} disagrees with endpoint 0");
    }
    for p in &mut peers {
        p.wait_success();
    }
}

/// A join to a controller that does not answer (its process is stopped)
/// ends when the caller's budget (2 s) runs out, with `Timeout`; it used
/// to wait a fixed 5 s for the answer whatever the budget, then fail with
/// a protocol error.
#[test]
fn a_join_to_a_stopped_controller_times_out_with_the_callers_budget() {
    let bus = bus_name("budget");
    let mut holder = controller_holder(&bus);
    holder.stop();
    let mut joiner = Peer::start(
        "joiner",
        "join-error",
        &bus,
        "joiner",
        &["--join-timeout-s", "2"],
    );
    joiner.expect_line("REFUSED Timeout");
    joiner.wait_success();
    holder.resume();
    holder.wait_success();
}
