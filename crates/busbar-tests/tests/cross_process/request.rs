//! Requests and answers, and who sent a message, across processes.

use crate::harness::{bus_name, controller_holder, joined};
use busbar::{BytesMessage, Selector};
use busbar_tests::fuzz_support::{self, Honest};
use std::os::fd::AsFd;

/// 8 threads make 10k requests each to two responders behind one label:
/// every answer is the one to its own request, and both responders answer.
#[test]
fn eight_threads_make_10k_requests_each_to_two_responders_and_every_answer_matches() {
    let bus = bus_name("requests");
    let _holder = controller_holder(&bus);
    let (mut r1, _) = joined("r1", "respond", &bus, "svc", &[]);
    let (mut r2, _) = joined("r2", "respond", &bus, "svc", &[]);
    let (mut client, _) = joined(
        "client",
        "requests",
        &bus,
        "client",
        &[
            "--to",
            "svc",
            "--threads",
            "8",
            "--count",
            "10000",
            "--fence",
        ],
    );
    client.expect_line("REQUESTS ok=80000 mismatched=0 responders=2");
    client.wait_success();
    let a1: u64 = r1.expect("ANSWERED ").parse().expect("a count");
    let a2: u64 = r2.expect("ANSWERED ").parse().expect("a count");
    assert_eq!(a1 + a2, 80_000, "every request answered once");
    r1.wait_success();
    r2.wait_success();
}

/// A responder killed while it holds requests: every waiting request fails
/// at once with the responder-gone error (they wait with a long timeout).
#[test]
fn a_responder_killed_mid_stream_fails_the_pending_requests_at_once() {
    let bus = bus_name("requests_kill");
    let _holder = controller_holder(&bus);
    let (mut victim, _) = joined(
        "victim",
        "respond",
        &bus,
        "svc",
        &["--hold-after", "1000", "--held", "4"],
    );
    let (mut client, _) = joined(
        "client",
        "requests",
        &bus,
        "client",
        &["--to", "svc", "--threads", "4", "--expect-gone"],
    );
    victim.expect_line("HELD 4");
    victim.kill9();
    client.expect_line("GONE 4 other=0");
    client.wait_success();
}

/// `source` is the sending endpoint, listed in the receiver's directory,
/// before and after the controller is killed; a raw client claiming a
/// listed endpoint's id in its hello is cut, and nothing it sends arrives.
#[test]
fn source_is_right_across_a_failover_and_a_forged_one_is_not_believed() {
    let bus = bus_name("sources");
    let mut holder = controller_holder(&bus);
    let (mut a, a_ready) = joined("a", "sources", &bus, "a", &[]);
    let (mut b, b_ready) = joined("b", "send", &bus, "b", &[]);
    assert_eq!(b.ask("unicast 60000 text:one a"), "OK");
    a.expect_line(&format!("FROM {} one listed=true", b_ready.id));

    // A hostile process claims to be b.
    let forger = busbar_tests::connect_abstract(&format!("busbar/{bus}/{}", a_ready.id));
    let b_id = u64::from_str_radix(&b_ready.id, 16).expect("hex id");
    let hello = fuzz_support::RawInput {
        bytes: fuzz_support::hello_frame(b_id),
        fds: Vec::new(),
    };
    let forged = fuzz_support::honest_frame(&Honest {
        selector: Selector::unicast("a"),
        message: BytesMessage::new(0, b"forged".to_vec()),
        seq: 0,
        objects: 0,
        regions: Vec::new(),
        spill: false,
    })
    .expect("an honest frame");
    // The message is a BytesMessage, which `sources` would skip anyway:
    // what shows is that the link is cut as soon as the hello is read.
    fuzz_support::send_raw(forger.as_fd(), &hello).expect("hello");
    let _ = fuzz_support::send_raw(forger.as_fd(), &forged);
    a.wait_stderr("claims another endpoint's id");

    holder.kill9();
    assert_eq!(b.ask("unicast 60000 text:two a"), "OK");
    a.expect_line(&format!("FROM {} two listed=true", b_ready.id));
    assert_eq!(b.ask("multicast 60000 text:END a"), "OK");
    a.expect_line("END 2");
    a.wait_success();
    b.close_stdin();
    b.wait_success();
}
