//! A short run of the fuzz loop (`busbar-fuzz`) inside the test suite; the
//! long runs (a million cases and more) are made by hand, see its docs.

use std::process::Command;

#[test]
fn a_short_fuzz_run_finds_nothing() {
    let out = Command::new(env!("CARGO_BIN_EXE_busbar-fuzz"))
        .args(["--cases", "20000", "--seed", "0x5eed", "--quiet"])
        .output()
        .expect("run busbar-fuzz");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "busbar-fuzz failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let totals = stdout
        .lines()
        .find(|l| l.starts_with("cases="))
        .unwrap_or_else(|| panic!("no totals line:\n{stdout}"));
    for want in ["failures=0", "leaked_fds=0", "leaked_maps=0"] {
        assert!(totals.contains(want), "{want} missing: {totals}");
    }
    let cases: u64 = totals
        .split_whitespace()
        .find_map(|w| w.strip_prefix("cases="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(cases >= 20_000, "{totals}");
}
