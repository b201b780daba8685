//! `busbar-fuzz`: feeds malformed, truncated and lying frames to busbar's
//! real receiving path and checks what it does with every one.
//!
//! ```text
//! busbar-fuzz [--cases N] [--seed S] [--replay BATCH_SEED] [--quiet]
//! ```
//!
//! A seeded PRNG makes batches of frames (see `busbar_tests::hostile`):
//! honest messages, hellos, join requests, garbage, each maybe mutated (bit
//! flips, truncation, extension, lying lengths and counts, wrong flags,
//! kinds and type ids, wrong or extra descriptors: pipes, sockets, sealed
//! and unsealed memfds, regions, more than a frame can carry). Each batch
//! goes through `busbar::fuzzing::feed_link` on a fresh link, under
//! `catch_unwind`; the oracle then checks every frame's fate (malformed:
//! dropped; truthful: delivered byte for byte, honest messages after
//! hostile ones included; cut exactly after `MAX_BAD_FRAMES`), and the
//! process's descriptors and memfd mappings must be back to where they
//! were. `cases` counts frames.
//!
//! On a failure it prints the batch seed; `--replay <batch seed>` runs that
//! one batch again and prints it. Exit status 0 only when nothing failed.

use busbar_tests::hostile::{self, random_batch, Rng, Tally};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str| -> Option<u64> {
        let i = args.iter().position(|a| a == name)?;
        let v = args.get(i + 1)?;
        v.strip_prefix("0x")
            .map(|h| u64::from_str_radix(h, 16).ok())
            .unwrap_or_else(|| v.parse().ok())
    };
    for (i, a) in args.iter().enumerate() {
        let is_value = i > 0 && ["--cases", "--seed", "--replay"].contains(&args[i - 1].as_str());
        if !is_value && !["--cases", "--seed", "--replay", "--quiet"].contains(&a.as_str()) {
            eprintln!("usage: busbar-fuzz [--cases N] [--seed S] [--replay BATCH_SEED] [--quiet]");
            return ExitCode::from(2);
        }
    }
    if let Some(batch_seed) = opt("--replay") {
        return replay(batch_seed);
    }
    let cases = opt("--cases").unwrap_or(100_000);
    let seed = opt("--seed").unwrap_or(1);
    let quiet = args.iter().any(|a| a == "--quiet");
    run(cases, seed, quiet)
}

fn run(cases: u64, seed: u64, quiet: bool) -> ExitCode {
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
    while total.cases < cases {
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
                return finish(total, batches, failures, leaked_fds, leaked_maps, started);
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
    finish(total, batches, failures, leaked_fds, leaked_maps, started)
}

fn finish(
    t: Tally,
    batches: u64,
    failures: u64,
    leaked_fds: usize,
    leaked_maps: usize,
    started: Instant,
) -> ExitCode {
    println!(
        "cases={} batches={batches} delivered={} dropped={} skipped={} decode_errors={} hellos={} not_sent={} hang_ups={} links_cut={} honest={} failures={failures} leaked_fds={leaked_fds} leaked_maps={leaked_maps} elapsed={:.1}s",
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
