//! A short run of the fuzz loop (`busbar-fuzz`) inside the test suite; the
//! long runs (a million cases and more) are made by hand, see its docs.

use std::process::Command;

/// Runs `busbar-fuzz` with `args`; its totals line (the one starting with
/// `totals`), after checking that it found nothing and leaked nothing, and
/// counted at least `at_least` in its first field.
fn run(args: &[&str], totals: &str, at_least: u64) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_busbar-fuzz"))
        .args(args)
        .output()
        .expect("run busbar-fuzz");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "busbar-fuzz failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with(totals))
        .unwrap_or_else(|| panic!("no totals line:\n{stdout}"))
        .to_string();
    for want in ["failures=0", "leaked_fds=0", "leaked_maps=0"] {
        assert!(line.contains(want), "{want} missing: {line}");
    }
    let n: u64 = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix(totals))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(n >= at_least, "{line}");
    line
}

#[test]
fn a_short_fuzz_run_finds_nothing() {
    run(
        &["--cases", "20000", "--seed", "0x5eed", "--quiet"],
        "cases=",
        20_000,
    );
}

/// Hostile senders scribbling on the rings of their links (`--rings`).
#[test]
fn a_short_ring_fuzz_run_finds_nothing() {
    let totals = run(
        &["--rings", "50000", "--seed", "0x5eed", "--quiet"],
        "ring_steps=",
        50_000,
    );
    // The run went where it should: honest traffic, lies, scribbles, cuts.
    for field in [
        "delivered=",
        "lies=",
        "scribbles=",
        "cut_bad_frames=",
        "cut_corrupt=",
        "sleeps=",
    ] {
        let n: u64 = totals
            .split_whitespace()
            .find_map(|w| w.strip_prefix(field))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(n > 0, "{field}0 in {totals}");
    }
}

/// What CI runs on every commit: a seed derived from text (the commit id),
/// stopped by a time budget rather than a count.
#[test]
fn a_seed_from_text_stopped_by_a_time_budget() {
    let totals = run(
        &[
            "--seed-from",
            "0123456789abcdef",
            "--cases",
            "1000000000",
            "--time-budget",
            "1",
            "--quiet",
        ],
        "cases=",
        1,
    );
    assert!(totals.contains("budget_stop=1"), "{totals}");
}
