//! `kill -9` of the controller while two other processes stream.

use crate::harness::{bus_name, controller_holder, joined};

const COUNT: u64 = 100_000;

#[test]
fn kill_9_of_the_controller_during_a_100k_stream_loses_nothing() {
    let bus = bus_name("failover");
    let mut holder = controller_holder(&bus);
    let count = COUNT.to_string();
    let (mut rx, rx_ready) = joined("sink", "stream-recv", &bus, "sink", &["--count", &count]);
    let (mut tx, tx_ready) = joined(
        "source",
        "stream",
        &bus,
        "source",
        &[
            "--to",
            "sink",
            "--count",
            &count,
            "--progress-at",
            "20000",
            "--pause-at",
            "60000",
            "--report-controller",
        ],
    );

    // Kill the controller once 20k messages are through; the sender goes on
    // meanwhile, and if it gets to 60k first it waits there, so at least
    // 40k messages are sent after the kill, during and after the failover.
    tx.expect_line("PROGRESS 20000");
    holder.kill9();
    tx.expect_line("PAUSED 60000");
    tx.tell("go");

    // In order, each once, all of them (the receiver checks every sequence number).
    // One of the two survivors took over.
    let controller = tx.expect("CONTROLLER ");
    if controller != rx_ready.id && controller != tx_ready.id {
        tx.fail(&format!(
            "new controller {controller} is neither the sink {} nor the source {}",
            rx_ready.id, tx_ready.id
        ));
    }
    rx.expect_line(&format!("STREAM ok received={COUNT}"));
    tx.expect_line(&format!("SENT {COUNT}"));
    rx.wait_success();
    tx.wait_success();
}
