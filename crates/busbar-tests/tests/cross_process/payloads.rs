//! What a message says: several types through one `MessageBox`, and payload sizes.

use crate::harness::{bus_name, controller_holder, joined, payloads};
use busbar_tests::pattern_fnv1a;

#[test]
fn several_types_through_one_message_box_unknown_ones_skipped() {
    let bus = bus_name("types");
    let _holder = controller_holder(&bus);
    let mut full = joined("full", "recv", &bus, "types,full", &[]).0;
    let mut narrow = joined("narrow", "recv", &bus, "types,narrow", &["--narrow"]).0;
    let (mut tx, _) = joined("tx", "send", &bus, "tx", &[]);

    for payload in ["text:one", "point:1,-2", "seq:3", "bytes:7:5", "text:two"] {
        assert_eq!(tx.ask(&format!("multicast 0 {payload} types")), "OK");
    }
    assert_eq!(tx.ask("multicast 0 text:END types"), "OK");

    let bytes = format!(
        "bytes format=7 len=5 fnv={:016x} pattern=true",
        pattern_fnv1a(5)
    );
    assert_eq!(
        payloads(&full.received()),
        ["text=one", "point=1,-2", "seq=3", &bytes, "text=two"]
    );
    // `Narrow` knows only text and seq: the point and the bytes are skipped,
    // and the message after each still arrives.
    assert_eq!(
        payloads(&narrow.received()),
        ["text=one", "seq=3", "text=two"]
    );
    tx.wait_success();
}

#[test]
fn payloads_of_0_1_64k_plus_1_16m_and_64m_bytes_arrive_byte_exact() {
    let bus = bus_name("sizes");
    let _holder = controller_holder(&bus);
    let mut rx = joined("rx", "recv", &bus, "rx", &[]).0;
    let (mut tx, _) = joined("tx", "send", &bus, "tx", &[]);

    let sizes = [0usize, 1, 64 * 1024 + 1, 16 << 20, 64 << 20];
    for (format, size) in sizes.iter().enumerate() {
        assert_eq!(
            tx.ask(&format!("unicast 0 bytes:{format}:{size} rx")),
            "OK",
            "{size} bytes"
        );
    }
    assert_eq!(tx.ask("unicast 0 text:END rx"), "OK");

    let want: Vec<String> = sizes
        .iter()
        .enumerate()
        .map(|(format, &size)| {
            format!(
                "bytes format={format} len={size} fnv={:016x} pattern=true",
                pattern_fnv1a(size)
            )
        })
        .collect();
    assert_eq!(payloads(&rx.received()), want);
    tx.wait_success();
}

/// One gigabyte: the payload travels as a sealed memfd that the receiver
/// maps. The receiving peer checks every byte against the pattern
/// (`pattern=true` with the right `len` is byte-exact) and skips the FNV
/// hash, which would take seconds over a gigabyte in a debug build; this
/// process holds no copy of the payload at all.
#[test]
fn a_1_gib_payload_arrives_byte_exact() {
    const SIZE: usize = 1 << 30;
    let bus = bus_name("gib");
    let _holder = controller_holder(&bus);
    let mut rx = joined("rx", "recv", &bus, "rx", &["--no-fnv"]).0;
    let (mut tx, _) = joined("tx", "send", &bus, "tx", &[]);

    assert_eq!(tx.ask(&format!("unicast 0 bytes:9:{SIZE} rx")), "OK");
    assert_eq!(tx.ask("unicast 0 text:END rx"), "OK");

    assert_eq!(
        payloads(&rx.received()),
        [format!("bytes format=9 len={SIZE} pattern=true")]
    );
    tx.wait_success();
}
