//! `busbar-fuzz`: feeds malformed, truncated and lying frames to busbar's
//! real receiving path and checks what it does with every one.
//!
//! ```text
//! busbar-fuzz [--cases N] [--rings STEPS] [--seed S | --seed-from TEXT]
//!             [--time-budget SECS] [--replay BATCH_SEED]
//!             [--replay-ring EPISODE_SEED] [--allow-lost-wakeups] [--quiet]
//! ```
//!
//! A seeded PRNG makes batches of frames (see `busbar_tests::hostile`):
//! honest messages, hellos, join requests, garbage, each maybe mutated (bit
//! flips, truncation, extension, lying lengths and counts, wrong flags,
//! kinds and type ids, wrong or extra descriptors: pipes, sockets, sealed
//! and unsealed memfds, regions, more than a frame can carry). Each batch
//! goes through `busbar_tests::fuzz_support::feed_link` on a fresh link, under
//! `catch_unwind`; the oracle then checks every frame's fate (malformed:
//! dropped; truthful: delivered byte for byte, honest messages after
//! hostile ones included; cut exactly after `MAX_BAD_FRAMES`), and the
//! process's descriptors and memfd mappings must be back to where they
//! were. `cases` counts frames.
//!
//! With `--rings STEPS` it also attacks links through their shared-memory
//! rings (see `busbar_tests::rings`): episodes of honest messages, reads,
//! and a hostile sender scribbling on the ring it owns (indices, record
//! headers, frame bytes, flag words, lying frames, frames never committed,
//! a sender that dies half way through a frame), each step checked against
//! a model of what the receiving end may do, until STEPS steps were
//! played. `--rings` alone runs only the rings; `--cases` defaults to
//! 100000 otherwise. Descriptors and memfd mappings are counted after
//! every episode too. `--allow-lost-wakeups` counts lost wake-ups
//! (`lost_wakeups=`) instead of failing on them, to keep a run going while
//! one is being fixed.
//!
//! On a failure it prints the batch seed (or episode seed); `--replay <batch
//! seed>` (`--replay-ring <episode seed>`) runs that one again and prints
//! it. Exit status 0 only when nothing failed.
//!
//! `--seed-from TEXT` derives the seed from any text (FNV-1a of it, e.g. a
//! commit id, so that every commit CI tests explores a new seed) and prints
//! it, so that `--seed` replays the run. `--time-budget SECS` stops a run
//! early once that much time has passed (shared out evenly when both
//! fuzzers run) and says so (`budget_stop=1` in its totals): the batches
//! and episodes a seed makes do not depend on it, only how many run.

use busbar_tests::hostile::{self, random_batch, Rng, Tally};
use busbar_tests::rings::{self, Checks, RingTally};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// A seed from any text: FNV-1a, 64 bits.
fn seed_from(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// When a loop stops: after this many cases (steps), or at this instant.
#[derive(Debug, Clone, Copy)]
struct Stop {
    count: u64,
    deadline: Option<Instant>,
}

impl Stop {
    /// Whether the time is up.
    fn out_of_time(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str| -> Option<u64> {
        let i = args.iter().position(|a| a == name)?;
        let v = args.get(i + 1)?;
        v.strip_prefix("0x")
            .map(|h| u64::from_str_radix(h, 16).ok())
            .unwrap_or_else(|| v.parse().ok())
    };
    const VALUED: [&str; 7] = [
        "--cases",
        "--rings",
        "--seed",
        "--seed-from",
        "--time-budget",
        "--replay",
        "--replay-ring",
    ];
    for (i, a) in args.iter().enumerate() {
        let is_value = i > 0 && VALUED.contains(&args[i - 1].as_str());
        if !is_value
            && !VALUED.contains(&a.as_str())
            && !["--quiet", "--allow-lost-wakeups"].contains(&a.as_str())
        {
            eprintln!("usage: busbar-fuzz [--cases N] [--rings STEPS] [--seed S | --seed-from TEXT] [--time-budget SECS] [--replay BATCH_SEED] [--replay-ring EPISODE_SEED] [--allow-lost-wakeups] [--quiet]");
            return ExitCode::from(2);
        }
    }
    if let Some(batch_seed) = opt("--replay") {
        return replay(batch_seed);
    }
    let checks = Checks {
        allow_lost_wakeups: args.iter().any(|a| a == "--allow-lost-wakeups"),
    };
    if let Some(episode_seed) = opt("--replay-ring") {
        return replay_ring(episode_seed, checks);
    }
    let ring_steps = opt("--rings");
    let cases = opt("--cases").unwrap_or(if ring_steps.is_some() { 0 } else { 100_000 });
    let text = args
        .iter()
        .position(|a| a == "--seed-from")
        .and_then(|i| args.get(i + 1));
    let seed = match text {
        Some(text) => {
            let seed = seed_from(text);
            println!(
                "busbar-fuzz seed={seed:#x} from {text:?} (replay the run with --seed {seed:#x})"
            );
            seed
        }
        None => opt("--seed").unwrap_or(1),
    };
    let quiet = args.iter().any(|a| a == "--quiet");
    // Shared out evenly between the loops that run.
    let loops = u32::from(cases > 0) + u32::from(ring_steps.is_some());
    let slice = opt("--time-budget").map(|secs| Duration::from_secs(secs) / loops.max(1));
    let stop = |count| Stop {
        count,
        deadline: slice.map(|s| Instant::now() + s),
    };
    let mut status = ExitCode::SUCCESS;
    if cases > 0 {
        status = run(stop(cases), seed, quiet);
    }
    if let Some(steps) = ring_steps {
        if run_rings(stop(steps), seed, checks, quiet) != ExitCode::SUCCESS {
            status = ExitCode::FAILURE;
        }
    }
    status
}

fn run(stop: Stop, seed: u64, quiet: bool) -> ExitCode {
    let cases = stop.count;
    // One line per caught panic (where it happened); the FAIL line says which batch.
    std::panic::set_hook(Box::new(|info| eprintln!("panic: {info}")));
    // Warm up once so that anything opened lazily is open before the baseline.
    let _ = hostile::run_batch(&random_batch(&mut Rng::new(0)));
    let Ok(baseline) = hostile::resources() else {
        println!("FAIL cannot count descriptors in /proc/self");
        return ExitCode::FAILURE;
    };
    println!(
        "busbar-fuzz seed={seed} cases={cases} baseline fds={} memfd_maps={}",
        baseline.0, baseline.1
    );
    let mut master = Rng::new(seed);
    let mut total = Tally::default();
    let mut batches = 0u64;
    let mut failures = 0u64;
    let mut leaked_fds = 0usize;
    let mut leaked_maps = 0usize;
    let started = Instant::now();
    let step = (cases / 10).max(1);
    let mut next_report = step;
    let mut budget_stop = false;
    while total.cases < cases {
        if stop.out_of_time() {
            budget_stop = true;
            break;
        }
        let batch_seed = master.next_u64();
        batches += 1;
        let cases_in_batch = random_batch(&mut Rng::new(batch_seed));
        let result = catch_unwind(AssertUnwindSafe(|| hostile::run_batch(&cases_in_batch)));
        match result {
            Ok(Ok(t)) => total.add(&t),
            Ok(Err(why)) => {
                failures += 1;
                total.cases += cases_in_batch.len() as u64;
                println!("FAIL batch_seed={batch_seed:#x} (seed={seed}, batch {batches}): {why}");
            }
            Err(panic) => {
                failures += 1;
                total.cases += cases_in_batch.len() as u64;
                let what = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("?");
                println!(
                    "FAIL batch_seed={batch_seed:#x} (seed={seed}, batch {batches}): PANIC {what}"
                );
            }
        }
        match hostile::resources() {
            Ok((fds, maps)) if (fds, maps) != baseline => {
                failures += 1;
                leaked_fds += fds.saturating_sub(baseline.0);
                leaked_maps += maps.saturating_sub(baseline.1);
                println!(
                    "FAIL batch_seed={batch_seed:#x}: fds {} -> {fds}, memfd maps {} -> {maps}",
                    baseline.0, baseline.1
                );
                // Stop at the first leak: the batch seed above reproduces it.
                return finish(
                    total,
                    batches,
                    failures,
                    (leaked_fds, leaked_maps),
                    false,
                    started,
                );
            }
            Ok(_) => {}
            Err(e) => {
                println!("FAIL cannot count descriptors: {e}");
                return ExitCode::FAILURE;
            }
        }
        if failures >= 20 {
            println!("stopping after {failures} failures");
            break;
        }
        if !quiet && total.cases >= next_report {
            next_report += step;
            println!(
                "progress cases={} batches={batches} delivered={} dropped={} links_cut={} elapsed={:.1}s",
                total.cases,
                total.delivered,
                total.dropped,
                total.links_cut,
                started.elapsed().as_secs_f64()
            );
        }
    }
    finish(
        total,
        batches,
        failures,
        (leaked_fds, leaked_maps),
        budget_stop,
        started,
    )
}

fn finish(
    t: Tally,
    batches: u64,
    failures: u64,
    (leaked_fds, leaked_maps): (usize, usize),
    budget_stop: bool,
    started: Instant,
) -> ExitCode {
    println!(
        "cases={} batches={batches} delivered={} dropped={} skipped={} decode_errors={} hellos={} not_sent={} hang_ups={} links_cut={} honest={} failures={failures} leaked_fds={leaked_fds} leaked_maps={leaked_maps} budget_stop={} elapsed={:.1}s",
        t.cases,
        t.delivered,
        t.dropped,
        t.skipped,
        t.decode_errors,
        t.hellos,
        t.not_sent,
        t.hang_ups,
        t.links_cut,
        t.honest,
        u8::from(budget_stop),
        started.elapsed().as_secs_f64()
    );
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn replay(batch_seed: u64) -> ExitCode {
    let cases = random_batch(&mut Rng::new(batch_seed));
    for (i, c) in cases.iter().enumerate() {
        println!("case {i}: {c:?}");
    }
    match catch_unwind(AssertUnwindSafe(|| hostile::run_batch(&cases))) {
        Ok(Ok(t)) => {
            println!("ok {t:?}");
            ExitCode::SUCCESS
        }
        Ok(Err(why)) => {
            println!("FAIL {why}");
            ExitCode::FAILURE
        }
        Err(_) => {
            println!("FAIL panicked");
            ExitCode::FAILURE
        }
    }
}

fn run_rings(stop: Stop, seed: u64, checks: Checks, quiet: bool) -> ExitCode {
    let steps = stop.count;
    std::panic::set_hook(Box::new(|info| eprintln!("panic: {info}")));
    // Warm up once so that anything opened lazily is open before the baseline.
    let _ = rings::run_episode(&rings::random_episode(&mut Rng::new(0)), checks);
    let Ok(baseline) = hostile::resources() else {
        println!("FAIL cannot count descriptors in /proc/self");
        return ExitCode::FAILURE;
    };
    println!(
        "busbar-fuzz rings seed={seed} steps={steps} baseline fds={} memfd_maps={}",
        baseline.0, baseline.1
    );
    // Another stream than the frame batches of the same seed.
    let mut master = Rng::new(seed ^ 0x7269_6e67_7269_6e67);
    let mut total = RingTally::default();
    let mut failures = 0u64;
    let (mut leaked_fds, mut leaked_maps) = (0usize, 0usize);
    let started = Instant::now();
    let step = (steps / 10).max(1);
    let mut next_report = step;
    let mut budget_stop = false;
    while total.steps < steps {
        if stop.out_of_time() {
            budget_stop = true;
            break;
        }
        let episode_seed = master.next_u64();
        let episode = rings::random_episode(&mut Rng::new(episode_seed));
        let result = catch_unwind(AssertUnwindSafe(|| rings::run_episode(&episode, checks)));
        let what = match result {
            Ok(Ok(t)) => {
                total.add(&t);
                None
            }
            Ok(Err(why)) => Some(why),
            Err(panic) => Some(format!(
                "PANIC {}",
                panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("?")
            )),
        };
        if let Some(why) = what {
            failures += 1;
            total.episodes += 1;
            total.steps += episode.ops.len() as u64;
            println!(
                "FAIL episode_seed={episode_seed:#x} (seed={seed}, episode {}): {why}",
                total.episodes
            );
        }
        match hostile::resources() {
            Ok((fds, maps)) if (fds, maps) != baseline => {
                failures += 1;
                leaked_fds += fds.saturating_sub(baseline.0);
                leaked_maps += maps.saturating_sub(baseline.1);
                println!(
                    "FAIL episode_seed={episode_seed:#x}: fds {} -> {fds}, memfd maps {} -> {maps}",
                    baseline.0, baseline.1
                );
                // Stop at the first leak: the episode seed above reproduces it.
                return finish_rings(total, failures, (leaked_fds, leaked_maps), false, started);
            }
            Ok(_) => {}
            Err(e) => {
                println!("FAIL cannot count descriptors: {e}");
                return ExitCode::FAILURE;
            }
        }
        if failures >= 20 {
            println!("stopping after {failures} failures");
            break;
        }
        if !quiet && total.steps >= next_report {
            next_report += step;
            println!(
                "progress ring_steps={} episodes={} delivered={} forged={} dropped={} cut={} elapsed={:.1}s",
                total.steps,
                total.episodes,
                total.delivered,
                total.forged,
                total.dropped,
                total.cut_bad_frames + total.cut_corrupt,
                started.elapsed().as_secs_f64()
            );
        }
    }
    finish_rings(
        total,
        failures,
        (leaked_fds, leaked_maps),
        budget_stop,
        started,
    )
}

fn finish_rings(
    t: RingTally,
    failures: u64,
    (leaked_fds, leaked_maps): (usize, usize),
    budget_stop: bool,
    started: Instant,
) -> ExitCode {
    println!(
        "ring_steps={} episodes={} strict_episodes={} reads={} sent_ring={} sent_socket={} delivered={} delivered_tainted={} forged={} dropped={} skipped={} decode_errors={} lies={} scribbles={} ring_taints={} cut_bad_frames={} cut_corrupt={} closed={} gave_up={} sleeps={} woken={} lost_wakeups={} failures={failures} leaked_fds={leaked_fds} leaked_maps={leaked_maps} budget_stop={} elapsed={:.1}s",
        t.steps,
        t.episodes,
        t.strict_episodes,
        t.reads,
        t.sent_ring,
        t.sent_socket,
        t.delivered,
        t.delivered_tainted,
        t.forged,
        t.dropped,
        t.skipped,
        t.decode_errors,
        t.lies,
        t.scribbles,
        t.ring_taints,
        t.cut_bad_frames,
        t.cut_corrupt,
        t.closed,
        t.gave_up,
        t.sleeps,
        t.woken,
        t.lost_wakeups,
        u8::from(budget_stop),
        started.elapsed().as_secs_f64()
    );
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn replay_ring(episode_seed: u64, checks: Checks) -> ExitCode {
    let episode = rings::random_episode(&mut Rng::new(episode_seed));
    println!(
        "episode: capacity {} start {:#x} bell {}",
        episode.capacity, episode.start, episode.bell
    );
    for (i, op) in episode.ops.iter().enumerate() {
        println!("step {i}: {op:?}");
    }
    match catch_unwind(AssertUnwindSafe(|| rings::trace_episode(&episode, checks))) {
        Ok(Ok(t)) => {
            println!("ok {t:?}");
            ExitCode::SUCCESS
        }
        Ok(Err(why)) => {
            println!("FAIL {why}");
            ExitCode::FAILURE
        }
        Err(_) => {
            println!("FAIL panicked");
            ExitCode::FAILURE
        }
    }
}
