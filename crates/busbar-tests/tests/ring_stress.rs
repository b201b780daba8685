//! A ring scribbled on by another thread *while* the receiving end reads
//! it (the frames are read in place, in shared memory): no panic, every
//! read returns, the link ends within a bound once the sender hangs up,
//! and no descriptor or memfd mapping outlives it. A process of its own
//! (one test in this file) so that nothing else opens or closes
//! descriptors while it counts them in `/proc/self`.

use busbar::Selector;
use busbar_tests::fuzz_support::{self, ring_layout as layout, Pushed, RingLink, RingRead};
use busbar_tests::hostile::{self, Rng};
use busbar_tests::rings::honest_message;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One link attacked for `steps` pushes and reads; what the reads gave
/// (delivered, refused, cut, closed).
///
/// A round is wild or not: wild, the scribbler writes anywhere (indices,
/// record headers, frame bytes) and the sender lies now and then; otherwise
/// it writes only what cannot change what the receiver reads (the ring's
/// own header, the futex words), and every message must arrive.
fn round(seed: u64, steps: usize) -> [u64; 4] {
    let mut rng = Rng::new(seed);
    let capacity = rng.pick(&[256, 1024, 4096]);
    let start = if rng.chance(50) { 0 } else { u64::MAX - 255 };
    let mut link = RingLink::open(capacity, start, true).expect("ring link");
    let mut scribbler = link.ring().scribbler().expect("second mapping");
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let wild = rng.chance(50);
    let scribbling = std::thread::spawn(move || {
        let mut rng = Rng::new(seed ^ 0xdead);
        let len = scribbler.len();
        while !stopped.load(Ordering::Relaxed) {
            match rng.below(8) {
                0 if wild => {
                    let at = rng.pick(&[layout::TAIL, layout::HEAD]);
                    let v = scribbler.load_u64(at).unwrap_or(0);
                    scribbler.store_u64(at, v.wrapping_add(8 * rng.below(3) as u64));
                }
                1 => {
                    let flag = rng.pick(&[layout::SLEEPING, layout::ROOM]);
                    scribbler.store_u32(flag, rng.below(2) as u32);
                }
                2 | 3 if wild => {
                    // Anywhere in the data area: frame bytes, record headers.
                    let at = layout::DATA + rng.below(len - layout::DATA);
                    let n = 1 + rng.below(8);
                    let bytes = rng.bytes(n);
                    scribbler.write(at, &bytes);
                }
                2 | 3 => {
                    // The ring's own header, which neither side reads after opening it.
                    let n = 1 + rng.below(8);
                    let bytes = rng.bytes(n);
                    scribbler.write(rng.below(layout::TAIL - n), &bytes);
                }
                4 => std::thread::yield_now(),
                _ => std::hint::spin_loop(),
            }
        }
    });
    let mut counts = [0u64; 4];
    let mut seq = 0;
    for i in 0..steps {
        if !link.is_open() {
            break;
        }
        let len = rng.below(capacity / 2);
        if wild && rng.chance(20) {
            let lie = hostile::random_case(&mut rng).build(seq).bytes;
            let _ = link.push(&lie);
        } else if let Some(frame) =
            fuzz_support::data_frame(&Selector::unicast("a"), &honest_message(i, len), seq)
        {
            if matches!(link.push(&frame), Pushed::Sent { .. }) {
                seq += 1;
            }
        }
        for _ in 0..rng.below(4) {
            if !link.is_open() {
                break;
            }
            tally(&mut counts, link.read());
        }
    }
    // The sender leaves; the link must end, whatever the ring holds.
    link.ring().close();
    link.hang_up();
    link.wake();
    let bound = capacity / 4 + 64;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut reads = 0;
    while link.is_open() {
        reads += 1;
        assert!(
            reads <= bound && Instant::now() < deadline,
            "round {seed:#x}: the link did not end within {bound} reads after the sender hung up"
        );
        tally(&mut counts, link.read());
    }
    stop.store(true, Ordering::Relaxed);
    scribbling.join().expect("scribbler");
    if !wild {
        assert_eq!(
            counts,
            [u64::from(seq), 0, 0, 1],
            "round {seed:#x}: harmless scribbles, {seq} messages sent"
        );
    }
    counts
}

fn tally(counts: &mut [u64; 4], read: RingRead) {
    match read {
        RingRead::Delivered { .. } => counts[0] += 1,
        RingRead::Dropped | RingRead::Skipped | RingRead::DecodeError => counts[1] += 1,
        RingRead::Closed { cut, .. } => counts[if cut { 2 } else { 3 }] += 1,
        RingRead::Nothing | RingRead::Empty => {}
    }
}

#[test]
fn a_ring_scribbled_while_it_is_read_hurts_nothing_and_leaks_nothing() {
    // Warm up: anything opened lazily is open before the baseline.
    round(0, 100);
    let baseline = hostile::resources().expect("/proc/self");
    let mut master = Rng::new(0x57e55);
    let mut totals = [0u64; 4];
    for i in 0..60 {
        let seed = master.next_u64();
        let counts = round(seed, 3000);
        for (t, c) in totals.iter_mut().zip(counts) {
            *t += c;
        }
        assert_eq!(
            hostile::resources().expect("/proc/self"),
            baseline,
            "descriptors or memfd mappings leaked by round {i} (seed {seed:#x})"
        );
    }
    let [delivered, refused, cut, closed] = totals;
    assert!(
        delivered > 0 && refused > 0 && cut > 0 && closed > 0,
        "delivered {delivered}, refused {refused}, cut {cut}, closed {closed}"
    );
    println!("delivered {delivered}, refused {refused}, cut {cut}, closed {closed}");
}
