//! ipmpsc's own benchmark, side by side: a 4K YUV420 frame (3840 × 2160 ×
//! 1.5 bytes, its three planes as `serde_bytes`) per message from one
//! process to another through `ipmpsc` 0.5 and through `busbar::ring`,
//! both received zero-copy (ipmpsc's `zero_copy_context`, busbar's
//! `recv_with` decoding the planes in place), the receiver touching the
//! first and last byte of each plane.
//!
//! ```text
//! cargo run --release -p busbar-bench --bin ring-frames -- [FRAMES] [RUNS]
//! ```
//!
//! Each run spawns a sender process that sends `FRAMES` + 10 frames as fast
//! as the ring takes them; the receiver times the last `FRAMES` (the first
//! 10 warm up). Runs of the two libraries alternate; the medians are printed.

use busbar::ring::{RingReceiver, RingSender};
use serde::{Deserialize, Serialize};
use std::process::Command;
use std::time::{Duration, Instant};

const WIDTH: usize = 3840;
const HEIGHT: usize = 2160;
const WARM: u64 = 10;
/// Room for two frames and a bit, for both libraries.
const RING: usize = 32 << 20;

#[derive(Serialize)]
struct Frame<'a> {
    seq: u64,
    #[serde(with = "serde_bytes")]
    y: &'a [u8],
    #[serde(with = "serde_bytes")]
    u: &'a [u8],
    #[serde(with = "serde_bytes")]
    v: &'a [u8],
}

#[derive(Deserialize)]
struct FrameView<'a> {
    seq: u64,
    #[serde(borrow, with = "serde_bytes")]
    y: &'a [u8],
    #[serde(borrow, with = "serde_bytes")]
    u: &'a [u8],
    #[serde(borrow, with = "serde_bytes")]
    v: &'a [u8],
}

fn touch(f: &FrameView<'_>) -> u64 {
    let ends = |p: &[u8]| u64::from(p[0]) + u64::from(p[p.len() - 1]);
    f.seq + ends(f.y) + ends(f.u) + ends(f.v)
}

fn planes() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let y = (0..WIDTH * HEIGHT).map(|i| i as u8).collect();
    let u = (0..WIDTH * HEIGHT / 4).map(|i| (i * 3) as u8).collect();
    let v = (0..WIDTH * HEIGHT / 4).map(|i| (i * 7) as u8).collect();
    (y, u, v)
}

fn sender(lib: &str, path: &str, count: u64) {
    let (y, u, v) = planes();
    match lib {
        "ipmpsc" => {
            let tx = ipmpsc::Sender::new(ipmpsc::SharedRingBuffer::open(path).expect("open"));
            for seq in 0..count {
                tx.send(&Frame {
                    seq,
                    y: &y,
                    u: &u,
                    v: &v,
                })
                .expect("send");
            }
        }
        _ => {
            let tx = RingSender::open(path).expect("open");
            for seq in 0..count {
                tx.send(&Frame {
                    seq,
                    y: &y,
                    u: &u,
                    v: &v,
                })
                .expect("send");
            }
        }
    }
}

/// One run: nanoseconds per frame over `frames` frames.
fn run(lib: &str, frames: u64) -> f64 {
    let path = std::env::temp_dir().join(format!("ring-frames-{lib}-{}", std::process::id()));
    let path_s = path.to_str().expect("utf-8 path").to_string();
    let total = frames + WARM;
    let spawn = || {
        Command::new(std::env::current_exe().expect("exe"))
            .args(["__send", lib, &path_s, &total.to_string()])
            .spawn()
            .expect("spawn the sender")
    };
    let mut sum = 0u64;
    let mut start = Instant::now();
    let elapsed;
    let mut child;
    match lib {
        "ipmpsc" => {
            let _ = std::fs::remove_file(&path);
            let buffer = ipmpsc::SharedRingBuffer::create(&path_s, RING as u32).expect("create");
            let mut rx = ipmpsc::Receiver::new(buffer);
            child = spawn();
            for n in 0..total {
                if n == WARM {
                    start = Instant::now();
                }
                let mut ctx = rx.zero_copy_context();
                let f: FrameView<'_> = ctx.recv().expect("recv");
                assert_eq!(f.seq, n);
                sum += touch(&f);
            }
            elapsed = start.elapsed();
            let _ = std::fs::remove_file(&path);
        }
        _ => {
            let mut rx = RingReceiver::create(&path, RING).expect("create");
            if let Some(us) = std::env::var("BB_SPIN_US")
                .ok()
                .and_then(|s| s.parse().ok())
            {
                rx.set_spin(Duration::from_micros(us));
            }
            child = spawn();
            for n in 0..total {
                if n == WARM {
                    start = Instant::now();
                }
                let s = rx
                    .recv_with(Some(Duration::from_secs(60)), |b| {
                        let f: FrameView<'_> = postcard::from_bytes(b.bytes()).expect("decode");
                        assert_eq!(f.seq, n);
                        touch(&f)
                    })
                    .expect("recv");
                sum += s;
            }
            elapsed = start.elapsed();
        }
    }
    assert!(child.wait().expect("wait").success());
    std::hint::black_box(sum);
    elapsed.as_nanos() as f64 / frames as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("__send") {
        sender(&args[2], &args[3], args[4].parse().expect("count"));
        return;
    }
    let frames: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let runs: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5);
    let mut ipmpsc = Vec::new();
    let mut busbar = Vec::new();
    for _ in 0..runs {
        ipmpsc.push(run("ipmpsc", frames));
        busbar.push(run("busbar", frames));
    }
    let frame_bytes = WIDTH * HEIGHT * 3 / 2;
    println!("4K YUV420 frame ({frame_bytes} bytes) per message, {frames} frames per run, median of {runs} runs:");
    println!("| library | time per frame | frames/s | GB/s |");
    println!("|---|---|---|---|");
    for (name, v) in [
        ("ipmpsc 0.5 (zero_copy_context)", ipmpsc),
        ("busbar::ring (recv_with)", busbar),
    ] {
        let ns = median(v);
        println!(
            "| {name} | {:.3} ms | {:.0} | {:.2} |",
            ns / 1e6,
            1e9 / ns,
            frame_bytes as f64 / ns
        );
    }
}
