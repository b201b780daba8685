//! What a message carries: descriptors and shared memory regions.

use crate::harness::{bus_name, controller_holder, joined};

#[test]
fn descriptors_0_1_64_253_arrive_usable_and_254_is_refused() {
    let bus = bus_name("fds");
    let _holder = controller_holder(&bus);
    let (mut rx, _) = joined("rx", "fds-recv", &bus, "rx", &[]);
    // The sender sends pipe write-ends; the receiver writes its index into
    // each; the sender reads every pipe back.
    let (mut tx, _) = joined(
        "tx",
        "fds-send",
        &bus,
        "tx",
        &["--to", "rx", "--counts", "0,1,64,253,254"],
    );

    for n in [0, 1, 64, 253] {
        rx.expect_line(&format!("GOT_FDS {n}"));
        tx.expect_line(&format!("FDS_OK {n}"));
    }
    // Refused at `send`, with nothing left open, and nothing delivered: the
    // receiver's next message is the fence.
    tx.expect_line("FDS_REFUSED 254 253 leaked=0");
    rx.expect_line("END");
    tx.wait_success();
    rx.wait_success();
}

#[test]
fn memory_region_is_shared_counted_freed_and_reused() {
    let bus = bus_name("region");
    let _holder = controller_holder(&bus);
    let (mut b, _) = joined(
        "b",
        "region-b",
        &bus,
        "region-b",
        &["--reply-to", "region-a"],
    );
    let (mut a, _) = joined("a", "region-a", &bus, "region-a", &["--to", "region-b"]);

    // Counts: the registry's handle, A's handle, B's handle.
    a.expect_line("A_ALLOC count=2");
    a.expect_line("A_SENT count=3");
    b.expect_line("B_GOT count=3 size_ok=true pattern=true");
    // B wrote into the region; A sees it.
    a.expect_line("A_HELD count=3 reply=true");
    b.expect_line("B_DROPPED");
    a.expect_line("A_RELEASED count=2");
    // A dropped its handle too: only the registry holds it, so it is free ...
    a.expect_line("A_FREE regions=1 free_regions=1");
    // ... and handed out again: the same memory (a new region would be all zeros).
    a.expect_line("A_REUSED regions=1 same_memory=true count=2");
    a.wait_success();
    b.wait_success();
}

#[test]
fn descriptor_count_is_unchanged_after_10k_messages_with_descriptors() {
    let bus = bus_name("fdcount");
    let _holder = controller_holder(&bus);
    let (mut rx, _) = joined(
        "rx",
        "fd-churn-recv",
        &bus,
        "rx",
        &["--ack-to", "tx", "--count", "10000"],
    );
    // Each message carries a pipe end and a memory region.
    let (mut tx, _) = joined(
        "tx",
        "fd-churn-send",
        &bus,
        "tx",
        &["--to", "rx", "--count", "10000"],
    );
    // Both stay on the bus until both have counted: one leaving would close the other's link to it.
    for (side, peer) in [("sender", &mut tx), ("receiver", &mut rx)] {
        let line = peer.expect("FDCOUNT ");
        let (before, after) = line.split_once(' ').unwrap_or_default();
        assert!(
            before.starts_with("before=") && after.starts_with("after="),
            "{side}: {line}"
        );
        assert_eq!(
            before["before=".len()..],
            after["after=".len()..],
            "{side}: {line}"
        );
    }
    tx.wait_success();
    rx.wait_success();
}
