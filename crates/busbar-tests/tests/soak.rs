//! The soak command, short: `busbar-soak --seconds 15 --processes 6` must
//! find nothing lost, duplicated, damaged, leaked or hung.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Far beyond the run's 15 seconds plus its own end-phase guards.
const GUARD: Duration = Duration::from_secs(600);

#[test]
fn a_short_soak_run_loses_duplicates_and_leaks_nothing() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_busbar-soak"))
        .args(["--seconds", "15", "--processes", "6"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start busbar-soak");
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + GUARD;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for busbar-soak") {
            break status;
        }
        if Instant::now() >= deadline {
            // Its children see their stdin close and go too.
            let _ = child.kill();
            let _ = child.wait();
            panic!("busbar-soak still running after {GUARD:?} (hang guard)");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    assert!(
        status.success() && out.contains("lost=0, duplicated=0") && out.contains("SOAK OK"),
        "busbar-soak failed ({status}):\n{out}\n{err}"
    );
    let totals = out
        .lines()
        .find(|l| l.starts_with("processes started="))
        .unwrap_or_default();
    // Shown with --nocapture.
    println!("{totals}");
}
