//! `kill -9` at random points, many times: a sender mid-stream (mid-way
//! through large messages, descriptors and regions too), a receiver
//! holding memory regions, the controller during a burst of joins and
//! during traffic. After every kill the survivors must go on working,
//! have lost nothing they were promised and got nothing twice (the
//! receivers check every sequence number), and hold exactly the
//! descriptors, memfds and memfd mappings they held before (they count
//! them in `/proc/self` when asked; see the `crash-*` roles).
//!
//! The kill points are random but never timed: "once the sender says
//! message K was accepted", "once the receiver holds K messages", with K
//! from a seeded generator. The seed is printed; a failing run replays
//! with `BUSBAR_CRASH_SEED=<seed>`.

use crate::harness::{bus_name, Peer, Ready};
use busbar_tests::chaos::Rng;

/// Senders killed in [`sender_killed_at_random_points_loses_and_duplicates_nothing`].
const SENDER_KILLS: usize = 16;
/// Receivers killed in [`receiver_killed_while_holding_regions_hurts_no_one_else`].
const RECEIVER_KILLS: usize = 10;
/// Rounds of [`controller_killed_during_a_burst_of_joins`].
const JOIN_ROUNDS: usize = 8;
/// Joiners per round.
const JOINERS: usize = 5;
/// Controller kills in [`controller_killed_at_random_points_during_traffic`].
const FAILOVERS: usize = 10;

/// The test's generator, from `BUSBAR_CRASH_SEED` or fresh; says which.
fn rng_for(test: &str) -> Rng {
    let seed = std::env::var("BUSBAR_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(Rng::fresh_seed);
    // Shown by the test runner when the test fails.
    eprintln!(
        "{test}: seed {seed} (replay: BUSBAR_CRASH_SEED={seed} cargo test -p busbar-tests --test cross_process crash::{test})"
    );
    Rng::new(seed)
}

/// Starts a peer and waits for its `READY`.
fn start(name: &str, role: &str, bus: &str, label: &str, extra: &[&str]) -> (Peer, Ready) {
    let mut peer = Peer::start(name, role, bus, label, extra);
    let ready = peer.ready();
    (peer, ready)
}

/// Remembers the peer's descriptor, memfd and mapping counts.
fn baseline(peer: &mut Peer) {
    peer.tell("baseline");
    peer.expect("BASELINE ");
}

/// The peer's counts must be back at its baseline.
fn no_leak(peer: &mut Peer) {
    let answer = peer.ask("check");
    if !answer.starts_with("CHECK ok ") {
        peer.fail(&format!("leak check: {answer}"));
    }
}

/// A sink's count of one sender's stream, once it is at least `n`.
fn count_at_least(sink: &mut Peer, from: &str, stream: u32, n: u64) -> u64 {
    let m: u64 = sink
        .ask(&format!("wait-count {from} {stream} {n}"))
        .strip_prefix("COUNT ")
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| sink.fail("bad COUNT answer"));
    m
}

/// A sink's total, once it is at least `n`.
fn total_at_least(sink: &mut Peer, n: u64) -> u64 {
    let answer = sink.ask(&format!("wait-total {n}"));
    answer
        .strip_prefix("TOTAL ")
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| sink.fail(&format!("bad TOTAL answer {answer:?}")))
}

/// `ACK <stream> <n>` → `n`.
fn acked(line: &str) -> Option<u64> {
    let mut w = line.strip_prefix("ACK ")?.split(' ');
    w.next()?;
    w.next()?.parse().ok()
}

#[test]
fn sender_killed_at_random_points_loses_and_duplicates_nothing() {
    let mut rng = rng_for("sender_killed_at_random_points_loses_and_duplicates_nothing");
    let bus = bus_name("crash-send");
    let (mut holder, h) = start("holder", "crash-watch", &bus, "holder", &[]);
    assert!(h.controller, "the first endpoint hosts the controller");
    let (mut sink, _) = start("sink", "crash-sink", &bus, "sink", &["--no-affinity"]);
    baseline(&mut holder);
    baseline(&mut sink);

    for i in 0..SENDER_KILLS {
        let name = format!("sender{i}");
        let streams = if rng.chance(50) { "u:sink" } else { "m:sink" };
        let seed = rng.next_u64().to_string();
        let (mut tx, ready) = start(
            &name,
            "crash-send",
            &bus,
            &name,
            &[
                "--streams",
                streams,
                "--ack",
                "--attachments",
                "--seed",
                &seed,
                "--no-affinity",
            ],
        );
        // A random point: once the sender says message k is accepted, or
        // once the sink has k of them. The sender goes on meanwhile, so the
        // kill lands anywhere in what follows: encoding, filling a memfd,
        // making pipes and regions, in `sendmsg`, printing.
        let k = rng.below(300);
        let mut last = None;
        if rng.chance(50) {
            while last.is_none_or(|n| n < k) {
                let line = tx.line();
                last = Some(
                    acked(&line).unwrap_or_else(|| tx.fail(&format!("expected ACK, got {line:?}"))),
                );
            }
        } else {
            count_at_least(&mut sink, &ready.id, 0, k);
        }
        tx.kill9();
        for line in tx.remaining_lines() {
            if let Some(n) = acked(&line) {
                last = Some(n);
            }
        }
        // Everything accepted arrived, in order and once each (the sink
        // checks every number as it comes, and fails at the first wrong one).
        let want = last.map_or(0, |n| n + 1);
        let got = count_at_least(&mut sink, &ready.id, 0, want);
        assert!(
            got <= want + 1,
            "{name}: the sink got {got} messages, {want} were acknowledged: at most one more (in flight at the kill) may arrive"
        );
        no_leak(&mut sink);
        no_leak(&mut holder);
    }

    // The sink still takes a whole stream.
    let (mut tx, ready) = start(
        "last",
        "crash-send",
        &bus,
        "last",
        &[
            "--streams",
            "u:sink",
            "--count",
            "50",
            "--attachments",
            "--no-affinity",
        ],
    );
    tx.expect_line("SENT 50");
    assert_eq!(count_at_least(&mut sink, &ready.id, 0, 50), 50);
    tx.wait_success();
    no_leak(&mut sink);
    no_leak(&mut holder);
    sink.wait_success();
    holder.wait_success();
}

#[test]
fn receiver_killed_while_holding_regions_hurts_no_one_else() {
    let mut rng = rng_for("receiver_killed_while_holding_regions_hurts_no_one_else");
    let bus = bus_name("crash-recv");
    let (mut holder, _) = start("holder", "crash-watch", &bus, "holder", &[]);
    let (mut keeper, _) = start(
        "keeper",
        "crash-sink",
        &bus,
        "keeper",
        &["--keep-regions", "--no-affinity"],
    );
    let seed = rng.next_u64().to_string();
    let (mut source, src) = start(
        "source",
        "crash-region-send",
        &bus,
        "source",
        &["--seed", &seed, "--no-affinity"],
    );
    // Warm up, so that the link to the keeper is part of the baselines.
    assert_eq!(source.ask("send 1 keeper"), "SENT 1");
    let mut total = 1;
    assert_eq!(count_at_least(&mut keeper, &src.id, 0, total), total);
    expect_prefix(&mut keeper, "release", "RELEASED ");
    expect_prefix(&mut source, "drop", "DROPPED ");
    baseline(&mut holder);
    baseline(&mut keeper);
    baseline(&mut source);

    for i in 0..RECEIVER_KILLS {
        let name = format!("victim{i}");
        let (mut victim, v) = start(&name, "crash-victim", &bus, "victim", &["--no-affinity"]);
        // The source must know the victim before it sends.
        assert_eq!(
            source.ask(&format!("wait-listed {}", v.id)),
            format!("LISTED {}", v.id)
        );
        let n = rng.between(2, 12);
        let k = rng.between(1, n);
        source.tell(&format!("send {n} victim | keeper"));
        // Kill it once it holds k messages (regions mapped); the source may
        // still be sending to it.
        loop {
            let line = victim.line();
            if line == format!("HELD {k}") {
                break;
            }
            if !line.starts_with("HELD ") {
                victim.fail(&format!("expected HELD, got {line:?}"));
            }
        }
        victim.kill9();
        source.expect_line(&format!("SENT {n}"));
        total += n;

        // The keeper got every message, intact; its mappings and the
        // source's handles are fine (and the source can still write its own).
        assert_eq!(count_at_least(&mut keeper, &src.id, 0, total), total);
        expect_prefix(&mut keeper, "verify-held", "HELD ok ");
        expect_prefix(&mut source, "verify", "VERIFIED ");
        expect_prefix(&mut keeper, "release", "RELEASED ");
        expect_prefix(&mut source, "drop", "DROPPED ");

        // The source keeps sending to the others.
        assert_eq!(source.ask("send 1 keeper"), "SENT 1");
        total += 1;
        assert_eq!(count_at_least(&mut keeper, &src.id, 0, total), total);
        expect_prefix(&mut keeper, "release", "RELEASED ");
        expect_prefix(&mut source, "drop", "DROPPED ");

        no_leak(&mut source);
        no_leak(&mut keeper);
        no_leak(&mut holder);
    }
    source.wait_success();
    keeper.wait_success();
    holder.wait_success();
}

/// Asks `command`; the answer must start with `prefix`.
fn expect_prefix(peer: &mut Peer, command: &str, prefix: &str) -> String {
    let answer = peer.ask(command);
    match answer.strip_prefix(prefix) {
        Some(rest) => rest.to_string(),
        None => peer.fail(&format!(
            "{command}: expected {prefix:?}..., got {answer:?}"
        )),
    }
}

#[test]
fn controller_killed_during_a_burst_of_joins() {
    let mut rng = rng_for("controller_killed_during_a_burst_of_joins");
    for round in 0..JOIN_ROUNDS {
        let bus = bus_name("crash-joins");
        let (mut holder, h) = start("holder", "crash-watch", &bus, "holder", &[]);
        assert!(h.controller);
        let mut joiners: Vec<Peer> = (0..JOINERS)
            .map(|j| {
                let name = format!("joiner{j}");
                Peer::start(&name, "crash-watch", &bus, &format!("j{j}"), &[])
            })
            .collect();
        // Kill the controller once k of the joiners are in: the others are
        // anywhere in their join (connecting, handshaking, retrying).
        let k = rng.below(JOINERS as u64 + 1) as usize;
        let mut ids = Vec::new();
        for j in joiners.iter_mut().take(k) {
            ids.push(j.ready().id);
            baseline(j);
        }
        holder.kill9();
        for j in joiners.iter_mut().skip(k) {
            ids.push(j.ready().id);
        }

        // Every joiner ends up on one new controller, one of them, and sees all the others.
        let all = ids.join(",");
        let mut controller = None;
        for j in &mut joiners {
            let c = expect_prefix(j, &format!("view {all}"), "VIEW controller=");
            if controller.get_or_insert_with(|| c.clone()) != &c {
                j.fail(&format!(
                    "round {round}: sees controller {c}, another joiner {controller:?}"
                ));
            }
        }
        let controller = controller.unwrap_or_default();

        // Those that joined before the kill hold no more than they did then
        // (but the new host, whose descriptors changed for good reason).
        // (The others may have been anywhere in a failover when they said
        // READY, so there is no "before" to compare them with.)
        for (j, id) in joiners.iter_mut().zip(&ids).take(k) {
            if *id != controller {
                no_leak(j);
            }
        }

        // A fresh message goes through.
        let (first, last) = (0, JOINERS - 1);
        assert_eq!(
            joiners[first].ask(&format!("ping hello-{round} j{last}")),
            "PING ok"
        );
        joiners[last].expect_line(&format!("GOT hello-{round}"));
        for mut j in joiners {
            j.wait_success();
        }
    }
}

#[test]
fn controller_killed_at_random_points_during_traffic() {
    let mut rng = rng_for("controller_killed_at_random_points_during_traffic");
    let bus = bus_name("crash-ctl");
    // Candidates host the controller; everyone else is never allowed to,
    // so that killing the host never kills a sender or a receiver.
    let mut candidates: Vec<(Peer, String)> = Vec::new();
    let (c0, r) = start("candidate0", "crash-watch", &bus, "candidate", &[]);
    assert!(r.controller);
    let mut host = r.id.clone();
    candidates.push((c0, r.id));
    let (mut r1, _) = start("r1", "crash-sink", &bus, "r1,sink", &["--no-affinity"]);
    let (mut r2, _) = start("r2", "crash-sink", &bus, "r2,sink", &["--no-affinity"]);
    let streams = "u:r1,u:r2,m:sink";
    let mut senders = Vec::new();
    for name in ["s1", "s2"] {
        let seed = rng.next_u64().to_string();
        let (p, ready) = start(
            name,
            "crash-send",
            &bus,
            name,
            &["--streams", streams, "--seed", &seed, "--no-affinity"],
        );
        senders.push((p, ready.id));
    }
    // Every link is up before the baselines: each sink has had each stream meant for it.
    for (_, id) in &senders {
        count_at_least(&mut r1, id, 0, 1);
        count_at_least(&mut r1, id, 2, 1);
        count_at_least(&mut r2, id, 1, 1);
        count_at_least(&mut r2, id, 2, 1);
    }
    // Counts are compared while the senders pause, once the sinks have
    // taken everything sent (a large payload holds a memfd until it is read).
    pause_and_drain(&mut senders, &mut r1, &mut r2);
    for p in [&mut r1, &mut r2] {
        baseline(p);
    }
    for (p, _) in &mut senders {
        baseline(p);
    }
    resume(&mut senders);

    let mut killed: Vec<String> = Vec::new();
    let mut started = 1;
    for round in 0..FAILOVERS {
        // Two candidates besides the host, so that even a double kill leaves one.
        while candidates.len() < 3 {
            let name = format!("candidate{started}");
            started += 1;
            let (p, r) = start(&name, "crash-watch", &bus, "candidate", &[]);
            candidates.push((p, r.id));
        }
        // A random point in the traffic.
        let now = total_at_least(&mut r1, 0);
        total_at_least(&mut r1, now + rng.below(500));
        // Sometimes every endpoint that may host dies, and a new one that
        // knows nobody yet takes over while the others come back.
        let orphan = rng.chance(30);
        if orphan {
            let others: Vec<String> = candidates
                .iter()
                .map(|(_, id)| id.clone())
                .filter(|id| *id != host)
                .collect();
            for id in others {
                kill_candidate(&mut candidates, &id);
                killed.push(id);
            }
        }
        kill_candidate(&mut candidates, &host);
        killed.push(host.clone());
        // Sometimes a new endpoint joins right then: it may win the
        // election, knowing nobody yet, while the others come back.
        if orphan || rng.chance(50) {
            let name = format!("candidate{started}");
            started += 1;
            let (p, r) = start(&name, "crash-watch", &bus, "candidate", &[]);
            candidates.push((p, r.id));
        }
        // Sometimes kill the next host too, before everyone has re-registered
        // with it (when another candidate is left to take over).
        if candidates.len() > 1 && rng.chance(30) {
            let next = expect_prefix(
                &mut r2,
                &format!("controller-not {}", killed.join(",")),
                "CONTROLLER ",
            );
            if candidates.iter().any(|(_, id)| *id == next) {
                kill_candidate(&mut candidates, &next);
                killed.push(next);
            }
        }

        // Everyone agrees on one new controller, a candidate.
        let gone = killed.join(",");
        let mut new = None;
        let survivors = [&mut r1, &mut r2]
            .into_iter()
            .chain(senders.iter_mut().map(|(p, _)| p))
            .chain(candidates.iter_mut().map(|(p, _)| p));
        for p in survivors {
            let c = expect_prefix(p, &format!("controller-not {gone}"), "CONTROLLER ");
            if new.get_or_insert_with(|| c.clone()) != &c {
                p.fail(&format!(
                    "round {round}: sees controller {c}, another survivor {new:?}"
                ));
            }
        }
        host = new.unwrap_or_default();
        assert!(
            candidates.iter().any(|(_, id)| *id == host),
            "round {round}: the new controller {host} is not one of the candidates"
        );

        // Traffic goes on to both sinks, and nobody leaks.
        for sink in [&mut r1, &mut r2] {
            let now = total_at_least(sink, 0);
            total_at_least(sink, now + 50);
        }
        pause_and_drain(&mut senders, &mut r1, &mut r2);
        for p in [&mut r1, &mut r2] {
            no_leak(p);
        }
        for (p, _) in &mut senders {
            no_leak(p);
        }
        resume(&mut senders);
    }

    // Every message of every stream arrived, once, in order.
    for (p, id) in &mut senders {
        let [to_r1, to_r2, to_all] = stream_counts(p, "stop", "SENT ");
        assert_eq!(count_at_least(&mut r1, id, 0, to_r1), to_r1);
        assert_eq!(count_at_least(&mut r1, id, 2, to_all), to_all);
        assert_eq!(count_at_least(&mut r2, id, 1, to_r2), to_r2);
        assert_eq!(count_at_least(&mut r2, id, 2, to_all), to_all);
    }
    for (p, _) in &mut senders {
        no_leak(p);
    }
    for p in [&mut r1, &mut r2] {
        no_leak(p);
    }
    for (p, _) in &mut senders {
        p.wait_success();
    }
    for p in [&mut r1, &mut r2] {
        p.wait_success();
    }
    for (p, _) in &mut candidates {
        p.wait_success();
    }
}

/// A `crash-send` peer's answer to `command`: `<prefix><to r1> <to r2> <to all>`.
fn stream_counts(p: &mut Peer, command: &str, prefix: &str) -> [u64; 3] {
    let counts: Vec<u64> = expect_prefix(p, command, prefix)
        .split(' ')
        .map(|c| c.parse().unwrap_or_else(|_| p.fail("bad stream count")))
        .collect();
    counts
        .try_into()
        .unwrap_or_else(|c| p.fail(&format!("expected three stream counts, got {c:?}")))
}

/// Pauses the senders and waits until the sinks have everything they sent.
fn pause_and_drain(senders: &mut [(Peer, String)], r1: &mut Peer, r2: &mut Peer) {
    for (p, id) in senders {
        let [to_r1, to_r2, to_all] = stream_counts(p, "pause", "PAUSED ");
        count_at_least(r1, id, 0, to_r1);
        count_at_least(r1, id, 2, to_all);
        count_at_least(r2, id, 1, to_r2);
        count_at_least(r2, id, 2, to_all);
    }
}

fn resume(senders: &mut [(Peer, String)]) {
    for (p, _) in senders {
        assert_eq!(p.ask("resume"), "RESUMED");
    }
}

/// Kills the candidate with endpoint id `id`.
fn kill_candidate(candidates: &mut Vec<(Peer, String)>, id: &str) {
    let i = candidates
        .iter()
        .position(|(_, c)| c == id)
        .unwrap_or_else(|| panic!("the controller {id} is not a candidate"));
    let (mut p, _) = candidates.remove(i);
    p.kill9();
}
