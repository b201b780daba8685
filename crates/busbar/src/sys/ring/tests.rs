//! Unit and property tests of the ring, within one process (a
//! scribbling mapping plays the hostile peer), and its micro-benchmarks.

use super::*;
use crate::sys::memfd::{self, Mapping};
use proptest::prelude::*;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// The ring the micro-benchmarks use: 1 MiB.
const BENCH_CAPACITY: usize = 1 << 20;

/// The bytes of test frame number `seq`, `len` long.
fn frame(seq: u64, len: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..len)
        .map(|i| (seq as u8).wrapping_mul(31).wrapping_add(i as u8))
        .collect();
    let n = len.min(8);
    bytes[..n].copy_from_slice(&seq.to_le_bytes()[..n]);
    bytes
}

fn pop(c: &mut Consumer) -> Result<Option<Vec<u8>>, RingError> {
    let range = c.data_range();
    c.try_pop_with(|b| {
        let (start, end) = (b.as_ptr() as usize, b.as_ptr() as usize + b.len());
        assert!(
            range.start <= start && end <= range.end,
            "slice outside the data area"
        );
        b.to_vec()
    })
}

/// A mapping of the whole ring for a test to scribble on.
fn scribbler(fd: &OwnedFd) -> Mapping {
    Mapping::whole(fd.as_fd()).expect("map")
}

/// Padding published alone (the frame after it does not fit yet) finds
/// a consumer asleep: the producer owes it a wake-up, paid by the caller.
#[test]
fn padding_alone_owes_a_sleeping_consumer_a_wake() {
    let (mut p, mut c, _fd) = pair(64).expect("ring");
    p.set_external_wake();
    // 40 bytes used, then read: the write position is 40 in, the ring empty.
    p.try_push(&[1; 32]).expect("push");
    assert_eq!(pop(&mut c), Ok(Some(vec![1; 32])));
    assert_eq!(c.prepare_sleep(), Ok(false), "nothing to read: may sleep");
    // 48 bytes do not fit in the 24 before the end, nor with them in 64.
    assert_eq!(p.reserve(40).err(), Some(PushError::Full));
    assert!(p.take_owed_wake(), "the padding found the consumer asleep");
    assert!(!p.take_owed_wake(), "owed once");
    c.awake();
    assert_eq!(pop(&mut c), Ok(None), "the padding is skipped");
    let g = p.reserve(40).expect("room now");
    assert!(!g.commit(), "the consumer is awake");
}

#[test]
fn push_pop_in_place() {
    let (mut p, mut c, _fd) = pair(MIN_CAPACITY).expect("ring");
    assert_eq!(p.capacity(), 64);
    assert_eq!(c.capacity(), 64);
    assert_eq!(p.max_frame_len(), 56);
    assert_eq!(pop(&mut c), Ok(None));
    p.try_push(b"hello").expect("push");
    p.try_push(b"").expect("push empty");
    assert_eq!(pop(&mut c), Ok(Some(b"hello".to_vec())));
    assert_eq!(pop(&mut c), Ok(Some(Vec::new())));
    assert_eq!(pop(&mut c), Ok(None));
}

#[test]
fn reserve_and_commit_write_in_place() {
    let (mut p, mut c, _fd) = pair(MIN_CAPACITY).expect("ring");
    let mut g = p.reserve(5).expect("room");
    assert_eq!(g.len(), 5);
    assert!(!g.is_empty());
    g.bytes_mut().copy_from_slice(b"abcde");
    assert_eq!(pop(&mut c), Ok(None), "nothing before commit");
    g.commit();
    assert_eq!(pop(&mut c), Ok(Some(b"abcde".to_vec())));
}

#[test]
fn create_and_open_check_everything() {
    for cap in [0, 32, 100, MAX_CAPACITY * 2] {
        let e = create(cap).expect_err("bad capacity");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{cap}");
    }
    // Not a memfd.
    let f = std::fs::File::open("/dev/null").expect("open");
    assert!(Consumer::open(f.as_fd()).is_err());
    // Not sealed.
    let fd = memfd::create("t", (HEADER_LEN + 64) as u64).expect("memfd");
    assert!(Consumer::open(fd.as_fd()).is_err());
    // Sealed but not a ring, or of a size that is not header + power of two.
    for size in [HEADER_LEN + 64, HEADER_LEN + 96, 100] {
        let fd = memfd::create("t", size as u64).expect("memfd");
        memfd::seal_size(fd.as_fd()).expect("seal");
        let e = Consumer::open(fd.as_fd()).expect_err("not a ring");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(Producer::open(fd.as_fd()).is_err());
    }
    // A ring whose header lies about its capacity or version.
    for (at, value) in [(16usize, 128u64), (8, 99)] {
        let fd = create(64).expect("ring");
        let m = scribbler(&fd);
        m.atomic_u64(at)
            .expect("field")
            .store(value, Ordering::SeqCst);
        assert!(Consumer::open(fd.as_fd()).is_err(), "{at}");
    }
    // Unaligned indices.
    let fd = create(64).expect("ring");
    let m = scribbler(&fd);
    m.atomic_u64(256).expect("head").store(3, Ordering::SeqCst);
    assert!(Consumer::open(fd.as_fd()).is_err());
    assert!(Producer::open(fd.as_fd()).is_err());
}

#[test]
fn frames_wrap_with_padding_and_the_largest_always_fits() {
    let (mut p, mut c, _fd) = pair(64).expect("ring");
    let max = p.max_frame_len();
    assert_eq!(
        p.try_push(&vec![0; max + 1]),
        Err(PushError::TooLarge { len: max + 1, max })
    );
    let mut seq = 0;
    // Walk the start of the ring through every offset, with a
    // largest frame after each step.
    for step in 0..20 {
        let small = frame(seq, step % 13);
        p.try_push(&small).expect("small frame");
        assert_eq!(pop(&mut c), Ok(Some(small)));
        seq += 1;
        let big = frame(seq, max);
        match p.try_push(&big) {
            Ok(()) => {}
            Err(PushError::Full) => {
                // Only the padding went in; once read, the frame fits.
                assert_eq!(pop(&mut c), Ok(None));
                p.try_push(&big).expect("fits after the padding");
            }
            Err(e) => panic!("{e}"),
        }
        assert_eq!(p.try_push(b"x"), Err(PushError::Full));
        assert_eq!(pop(&mut c), Ok(Some(big)));
        seq += 1;
    }
}

#[test]
fn an_uncommitted_frame_is_never_seen() {
    let (mut p, mut c, fd) = pair(64).expect("ring");
    // Reserved and filled, never committed.
    p.reserve(16).expect("room").bytes_mut().fill(7);
    // A producer that died half way: the record header is written, `tail` is not.
    let m = scribbler(&fd);
    m.atomic_u64(HEADER_LEN)
        .expect("record")
        .store(record(KIND_FRAME, 16), Ordering::SeqCst);
    assert_eq!(pop(&mut c), Ok(None));
    p.try_push(b"after").expect("push");
    assert_eq!(pop(&mut c), Ok(Some(b"after".to_vec())));
    assert_eq!(pop(&mut c), Ok(None));
}

#[test]
fn close_comes_after_the_last_frame() {
    let (mut p, mut c, _fd) = pair(64).expect("ring");
    p.try_push(b"1").expect("push");
    p.try_push(b"2").expect("push");
    drop(p);
    assert_eq!(c.wait(Duration::ZERO), Ok(true));
    assert_eq!(pop(&mut c), Ok(Some(b"1".to_vec())));
    assert_eq!(pop(&mut c), Ok(Some(b"2".to_vec())));
    assert_eq!(pop(&mut c), Err(RingError::Closed));
    assert_eq!(c.wait(Duration::from_secs(5)), Ok(true));
    assert_eq!(
        c.pop_wait_with(Duration::from_secs(5), |b| b.len()),
        Err(RingError::Closed)
    );
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

#[test]
fn an_idle_consumer_sleeps_and_times_out() {
    let (_p, mut c, _fd) = pair(64).expect("ring");
    let (cpu, start) = (thread_cpu(), Instant::now());
    assert_eq!(c.wait(Duration::from_millis(300)), Ok(false));
    let (cpu, wall) = (thread_cpu() - cpu, start.elapsed());
    assert!(wall >= Duration::from_millis(300), "{wall:?}");
    assert!(
        cpu < Duration::from_millis(30),
        "an idle wait used {cpu:?} of CPU"
    );
    assert_eq!(
        c.pop_wait_with(Duration::from_millis(1), |b| b.len()),
        Ok(None)
    );
}

/// Each end promises the other a heavy barrier where this process can
/// issue one (the header says so), and a consumer that hands the ring
/// over takes its promise back; the next one makes its own.
#[test]
fn promises_follow_what_membarrier_can_do() {
    let fd = create(64).expect("ring");
    let m = scribbler(&fd);
    let promise = |at| m.atomic_u32(at).expect("promise").load(Ordering::SeqCst);
    let can = u32::from(barrier::barriers().heavy);
    let _p = Producer::open(fd.as_fd()).expect("producer");
    let c = Consumer::open(fd.as_fd()).expect("consumer");
    assert_eq!((promise(400), promise(404)), (can, can));
    c.hand_over();
    assert_eq!(promise(400), 0);
    let _c = Consumer::open(fd.as_fd()).expect("consumer");
    assert_eq!(promise(400), can);
}

#[test]
fn a_push_wakes_a_sleeping_consumer() {
    let (mut p, mut c, _fd) = pair(64).expect("ring");
    let t = std::thread::spawn(move || {
        let start = Instant::now();
        let got = c.pop_wait_with(Duration::from_secs(20), |b| b.to_vec());
        (got, start.elapsed())
    });
    std::thread::sleep(Duration::from_millis(100));
    p.try_push(b"wake").expect("push");
    let (got, waited) = t.join().expect("consumer");
    assert_eq!(got, Ok(Some(b"wake".to_vec())));
    assert!(waited < Duration::from_secs(10), "{waited:?}");
}

#[test]
fn a_close_wakes_a_sleeping_consumer() {
    let (p, mut c, _fd) = pair(64).expect("ring");
    let t = std::thread::spawn(move || c.pop_wait_with(Duration::from_secs(20), |b| b.len()));
    std::thread::sleep(Duration::from_millis(50));
    drop(p);
    assert_eq!(t.join().expect("consumer"), Err(RingError::Closed));
}

#[test]
fn a_million_frames_cross_threads_in_order() {
    const N: u64 = 1_000_000;
    let (mut p, mut c, _fd) = pair(4096).expect("ring");
    let producer = std::thread::spawn(move || {
        for seq in 0..N {
            let bytes = frame(seq, 8 + (seq % 24) as usize);
            loop {
                match p.try_push(&bytes) {
                    Ok(()) => break,
                    Err(PushError::Full) => std::thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
        }
    });
    for seq in 0..N {
        let got = c
            .pop_wait_with(Duration::from_secs(10), |b| {
                b == frame(seq, 8 + (seq % 24) as usize)
            })
            .expect("ring");
        assert_eq!(got, Some(true), "frame {seq}");
    }
    producer.join().expect("producer");
    assert_eq!(pop(&mut c), Err(RingError::Closed));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Random pushes (some abandoned half way), pops and sizes round-trip
    /// byte-exact, across many wrap-arounds.
    #[test]
    fn random_pushes_and_pops_round_trip(
        shift in 6u32..=10,
        ops in proptest::collection::vec((0u8..7, any::<u16>()), 1..400),
    ) {
        let cap = 1usize << shift;
        let (mut p, mut c, _fd) = pair(cap).expect("ring");
        let mut expected = VecDeque::new();
        let mut seq = 0u64;
        for (op, raw) in ops {
            let len = raw as usize % (cap + 16);
            match op {
                0..=2 => {
                    let bytes = frame(seq, len);
                    seq += 1;
                    let mut result = p.try_push(&bytes);
                    if result == Err(PushError::Full) && expected.is_empty() {
                        // At most the padding went in: now it must fit.
                        prop_assert_eq!(pop(&mut c), Ok(None));
                        result = p.try_push(&bytes);
                    }
                    match result {
                        Ok(()) => expected.push_back(bytes),
                        Err(PushError::Full) => prop_assert!(!expected.is_empty()),
                        Err(PushError::TooLarge { .. }) => prop_assert!(len > cap - 8),
                        Err(e) => prop_assert!(false, "{}", e),
                    }
                }
                3 => {
                    if let Ok(mut g) = p.reserve(len) {
                        g.bytes_mut().fill(0xee);
                    }
                }
                _ => prop_assert_eq!(pop(&mut c), Ok(expected.pop_front())),
            }
        }
        while let Some(bytes) = expected.pop_front() {
            prop_assert_eq!(pop(&mut c), Ok(Some(bytes)));
        }
        prop_assert_eq!(pop(&mut c), Ok(None));
        drop(p);
        prop_assert_eq!(pop(&mut c), Err(RingError::Closed));
    }

    /// Whatever is scribbled over the header and the data, at whatever
    /// moment, neither end panics, hangs or hands out bytes outside the
    /// data area: a pop gives a frame, nothing, `Closed` or `Corrupt`
    /// (and `Corrupt` for good).
    #[test]
    fn scribbles_never_hurt_either_end(
        ops in proptest::collection::vec(hostile_op(), 1..200),
    ) {
        let cap = 256;
        let fd = create(cap).expect("ring");
        let mut p = Producer::open(fd.as_fd()).expect("producer");
        let mut c = Consumer::open(fd.as_fd()).expect("consumer");
        c.set_spin(Duration::ZERO);
        let mut m = scribbler(&fd);
        let mut c_broken = false;
        let mut seq = 0;
        for op in ops {
            match op {
                Hostile::Push(len) => {
                    seq += 1;
                    match p.try_push(&frame(seq, len)) {
                        Ok(()) | Err(PushError::Full | PushError::TooLarge { .. }) => {}
                        Err(PushError::Corrupt(_)) => {
                            prop_assert!(matches!(p.try_push(b""), Err(PushError::Corrupt(_))));
                        }
                    }
                }
                Hostile::Pop | Hostile::Wait => {
                    let result = if matches!(op, Hostile::Pop) {
                        pop(&mut c).map(|f| f.map(|b| b.len()))
                    } else {
                        c.wait(Duration::ZERO).map(|_| None)
                    };
                    match result {
                        Ok(Some(len)) => prop_assert!(!c_broken && len <= cap - 8),
                        Ok(None) | Err(RingError::Closed) => prop_assert!(!c_broken),
                        Err(RingError::Corrupt(_)) => c_broken = true,
                    }
                }
                Hostile::Bytes { at, bytes } => {
                    let at = at % (HEADER_LEN + cap);
                    let n = bytes.len().min(HEADER_LEN + cap - at);
                    m.slice_mut(at, n).expect("in range").copy_from_slice(&bytes[..n]);
                }
                Hostile::Tail(delta) => {
                    let head = m.atomic_u64(256).expect("head").load(Ordering::SeqCst);
                    m.atomic_u64(128).expect("tail").store(head.wrapping_add(delta), Ordering::SeqCst);
                }
                Hostile::Head(delta) => {
                    let tail = m.atomic_u64(128).expect("tail").load(Ordering::SeqCst);
                    m.atomic_u64(256).expect("head").store(tail.wrapping_sub(delta), Ordering::SeqCst);
                }
                Hostile::Record { at_tail, kind, len } => {
                    let index = m.atomic_u64(if at_tail { 128 } else { 256 }).expect("index");
                    let off = (index.load(Ordering::SeqCst) as usize % cap) & !7;
                    let kind = [KIND_FRAME, KIND_PAD, kind][kind as usize % 3];
                    m.atomic_u64(HEADER_LEN + off)
                        .expect("record")
                        .store(record(kind, len as usize), Ordering::SeqCst);
                }
                Hostile::Flag { which, value } => {
                    // The sleeping and closed flags, and the two promises of a heavy barrier.
                    let at = [384, 388, 400, 404][which as usize % 4];
                    m.atomic_u32(at).expect("flag").store(value, Ordering::SeqCst);
                }
                Hostile::Reopen { producer } => {
                    if producer {
                        if let Ok(new) = Producer::open(fd.as_fd()) {
                            p = new;
                        }
                    } else if let Ok(mut new) = Consumer::open(fd.as_fd()) {
                        new.set_spin(Duration::ZERO);
                        c = new;
                        c_broken = false;
                    }
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Hostile {
    Push(usize),
    Pop,
    Wait,
    Bytes { at: usize, bytes: Vec<u8> },
    Tail(u64),
    Head(u64),
    Record { at_tail: bool, kind: u32, len: u32 },
    Flag { which: u8, value: u32 },
    Reopen { producer: bool },
}

fn small_or_any() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..300, any::<u64>(), Just(u64::MAX - 7)]
}

fn hostile_op() -> impl Strategy<Value = Hostile> {
    prop_oneof![
        6 => (0usize..300).prop_map(Hostile::Push),
        6 => Just(Hostile::Pop),
        1 => Just(Hostile::Wait),
        2 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Hostile::Bytes { at, bytes }),
        1 => small_or_any().prop_map(Hostile::Tail),
        1 => small_or_any().prop_map(Hostile::Head),
        2 => (any::<bool>(), any::<u32>(), prop_oneof![0u32..300, any::<u32>()])
            .prop_map(|(at_tail, kind, len)| Hostile::Record { at_tail, kind, len }),
        1 => (any::<u8>(), 0u32..3).prop_map(|(which, value)| Hostile::Flag { which, value }),
        1 => any::<bool>().prop_map(|producer| Hostile::Reopen { producer }),
    ]
}

/// Percentiles of `samples` (sorted in place), in µs.
fn percentiles(samples: &mut [Duration]) -> String {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    format!(
        "p50 {:.2} µs, p99 {:.2} µs, p99.9 {:.2} µs, max {:.2} µs",
        at(0.5),
        at(0.99),
        at(0.999),
        at(1.0)
    )
}

/// Throughput of 16-byte frames between two threads:
/// `cargo test -p busbar --release --lib sys::ring::tests::bench -- --ignored --nocapture --test-threads=1`
#[test]
#[ignore = "micro-benchmark"]
fn bench_throughput_16b() {
    const N: u64 = 20_000_000;
    let (mut p, mut c, _fd) = pair(BENCH_CAPACITY).expect("ring");
    let start = Instant::now();
    let producer = std::thread::spawn(move || {
        let mut bytes = [0u8; 16];
        for seq in 0..N {
            bytes[..8].copy_from_slice(&seq.to_le_bytes());
            while p.try_push(&bytes) == Err(PushError::Full) {
                std::hint::spin_loop();
            }
        }
    });
    let mut sum = 0u64;
    for seq in 0..N {
        let got = c
            .pop_wait_with(Duration::from_secs(10), |b| {
                u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
            })
            .expect("ring");
        assert_eq!(got, Some(seq));
        sum = sum.wrapping_add(seq);
    }
    let elapsed = start.elapsed();
    producer.join().expect("producer");
    let rate = N as f64 / elapsed.as_secs_f64();
    println!(
        "ring 16 B frames, 2 threads: {:.1} M frames/s, {:.0} MB/s of payload ({N} in {elapsed:?}, sum {sum})",
        rate / 1e6,
        rate * 16.0 / 1e6
    );
}

/// One-way latency of a 16-byte frame to a consumer that spins (hot) or
/// has gone to sleep on the futex (cold):
/// `cargo test -p busbar --release --lib sys::ring::tests::bench -- --ignored --nocapture --test-threads=1`
#[test]
#[ignore = "micro-benchmark"]
fn bench_wake_latency() {
    const N: usize = 2000;
    for (name, gap) in [
        (
            "hot (consumer spinning, 10 µs gap)",
            Duration::from_micros(10),
        ),
        ("cold (consumer asleep, 2 ms gap)", Duration::from_millis(2)),
    ] {
        let (mut p, mut c, _fd) = pair(BENCH_CAPACITY).expect("ring");
        let base = Arc::new(Instant::now());
        let b = Arc::clone(&base);
        let consumer = std::thread::spawn(move || {
            let mut lat = Vec::with_capacity(N);
            for _ in 0..N {
                let sent = c
                    .pop_wait_with(Duration::from_secs(10), |b| {
                        u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
                    })
                    .expect("ring")
                    .expect("frame");
                let now = b.elapsed().as_nanos() as u64;
                lat.push(Duration::from_nanos(now.saturating_sub(sent)));
            }
            lat
        });
        for _ in 0..N {
            let until = Instant::now() + gap;
            if gap >= Duration::from_millis(1) {
                std::thread::sleep(gap);
            } else {
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
            }
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&(base.elapsed().as_nanos() as u64).to_le_bytes());
            p.try_push(&bytes).expect("room");
        }
        let mut lat = consumer.join().expect("consumer");
        println!("ring wake-up latency, {name}: {}", percentiles(&mut lat));
    }
}

/// A spin's yield that hands the core to a thread that keeps it for a whole
/// time slice ends the spin, and this thread's spins then sleep without
/// yielding for a while: with busy processes on the core, a yield per look
/// would cost a slice per message (a request/answer loop next to six busy
/// loops crawled past its hang guard). Both threads are pinned to one
/// core; fails if give_way yields on however long each yield takes.
#[test]
fn a_yield_to_a_busy_thread_on_this_core_ends_the_spin() {
    use rustix::thread::{sched_getcpu, sched_setaffinity, CpuSet};
    use std::sync::atomic::AtomicBool;
    let mut one = CpuSet::new();
    one.set(sched_getcpu());
    sched_setaffinity(None, &one).expect("pin this thread");
    let stop = Arc::new(AtomicBool::new(false));
    let hog = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            sched_setaffinity(None, &one).expect("pin the busy thread");
            while !stop.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        })
    };
    // A hang guard, not a timing: the first yield the busy thread keeps
    // for its slice ends it.
    let start = Instant::now();
    let mut ended = false;
    while start.elapsed() < std::time::Duration::from_secs(30) {
        if !wait::give_way() {
            ended = true;
            break;
        }
    }
    let still_off = !wait::give_way();
    stop.store(true, Ordering::Relaxed);
    hog.join().expect("busy thread");
    assert!(ended, "every yield came back at once next to a busy thread");
    assert!(still_off, "the next spin yielded again at once");
}
