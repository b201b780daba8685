//! `busbar-scale`: many endpoints on one bus, each a process of its own
//! (`busbar-peer`, found beside this binary), measured; prints Markdown
//! tables for BENCHMARKS.md. Exit status 0 only when every check held.
//!
//! ```text
//! cargo build --release -p busbar-tests --bins
//! target/release/busbar-scale [--grow 1000] [--storm 1000] [--mesh 10,100,250] [--out .]
//! ```
//!
//! With `--out DIR` the tables replace the scale section of
//! `DIR/BENCHMARKS.md` (between its `busbar-scale` markers; appended when
//! there is none), which `busbar-bench` keeps when it rewrites the file.
//!
//! * **grow**: endpoints join one at a time up to `--grow`; the join time
//!   of each (inside the process, around `busbar::join`) by how many were
//!   on the bus, and what an idle endpoint holds at 10, 100 and 1,000
//!   (descriptors, mappings, resident and shared memory, from `/proc`).
//! * **storm**: `--storm` endpoints join at once, each polling
//!   `endpoints()`; all must end with the same directory (same ids) and
//!   the same single controller.
//! * **mesh**: for each size N, N endpoints each multicast one message to
//!   all at once and wait for all N; then what each holds with its
//!   2 (N - 1) links up, and so what one link costs.
//!
//! Soft descriptor limits are raised to the hard limit here and in every
//! peer (a mesh endpoint holds a few descriptors per link).

mod procs;
mod report;

/// `writeln!` into the report, which cannot fail on a `String`.
macro_rules! out {
    ($md:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($md, $($arg)*);
    }};
}

use busbar_tests::raise_fd_limit;
use procs::{percentile, Cost, Proc};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// What to run, from the command line.
pub struct Settings {
    grow: usize,
    storm: usize,
    mesh: Vec<usize>,
    /// Where BENCHMARKS.md is, to write the tables into.
    out: Option<PathBuf>,
    /// The arguments, for the report.
    command: Vec<String>,
}

fn main() -> ExitCode {
    let settings = match parse(std::env::args().skip(1)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("busbar-scale: {e}\nusage: busbar-scale [--grow N] [--storm N] [--mesh A,B,..] [--out DIR]");
            return ExitCode::from(2);
        }
    };
    match run(&settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("busbar-scale: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse(args: impl Iterator<Item = String>) -> Result<Settings, String> {
    let command: Vec<String> = args.collect();
    let mut args = command.clone().into_iter();
    let mut s = Settings {
        grow: 1000,
        storm: 1000,
        mesh: vec![10, 100, 250],
        out: None,
        command,
    };
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        let num = |v: &str| v.parse::<usize>().map_err(|e| format!("{arg} {v}: {e}"));
        match arg.as_str() {
            "--grow" => s.grow = num(&value)?,
            "--storm" => s.storm = num(&value)?,
            "--mesh" => s.mesh = value.split(',').map(num).collect::<Result<_, _>>()?,
            "--out" => s.out = Some(PathBuf::from(value)),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(s)
}

fn run(s: &Settings) -> Result<(), String> {
    let peer = peer_path()?;
    let fd_limit = raise_fd_limit();
    let began = Instant::now();
    let mut md = String::new();
    if s.grow > 0 {
        grow(&mut md, &peer, s.grow)?;
    }
    if s.storm > 0 {
        storm(&mut md, &peer, s.storm)?;
    }
    if !s.mesh.is_empty() {
        mesh(&mut md, &peer, &s.mesh)?;
    }
    let block = report::block(&md, &report::Context::now(s, fd_limit, began.elapsed()));
    print!("{block}");
    if let Some(dir) = &s.out {
        report::write_into(&dir.join("BENCHMARKS.md"), &block)?;
    }
    Ok(())
}

/// `busbar-peer`, beside this binary.
fn peer_path() -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let peer = me.with_file_name("busbar-peer");
    if !peer.exists() {
        return Err(format!(
            "{} not found: build it with `cargo build --release -p busbar-tests --bins`",
            peer.display()
        ));
    }
    Ok(peer)
}

fn bus(what: &str) -> String {
    format!("scale.{what}.{}", std::process::id())
}

fn args(role: &str, bus: &str, label: &str, extra: &[&str]) -> Vec<String> {
    [role, "--bus", bus, "--label", label]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
}

/// `JOINED us=<t> listed=<n>`: (µs, n).
fn joined(p: &mut Proc) -> Result<(f64, usize), String> {
    let rest = p.expect("JOINED ")?;
    let field = |k: &str| {
        rest.split(' ')
            .find_map(|f| f.strip_prefix(k))
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or(format!("{}: bad JOINED line {rest:?}", p.name))
    };
    Ok((field("us=")?, field("listed=")? as usize))
}

/// Endpoints join one at a time; join times by bus size, and idle costs.
fn grow(md: &mut String, peer: &std::path::Path, n: usize) -> Result<(), String> {
    let bus = bus("grow");
    let mut procs: Vec<Proc> = Vec::with_capacity(n);
    let mut times: Vec<(usize, f64)> = Vec::with_capacity(n);
    let mut costs = Vec::new();
    let checkpoints = [10, 100, 1000];
    for i in 0..n {
        let mut p = Proc::start(
            peer,
            format!("grow{i}"),
            &args("member", &bus, "grow", &["--timing", "--poll-ms", "1000"]),
        )?;
        p.expect("READY ")?;
        let (us, listed) = joined(&mut p)?;
        p.expect("SETTLED ")?;
        times.push((listed, us));
        procs.push(p);
        if checkpoints.contains(&(i + 1)) {
            // Not the host: it runs the controller too.
            let others = Cost::mean(procs[1..].iter().map(Proc::pid));
            let host = Cost::of(procs[0].pid()).unwrap_or_default();
            costs.push((i + 1, others, host));
        }
    }
    out!(md, "\n### Idle endpoints (joined, no traffic)\n");
    out!(
        md,
        "| endpoints | fds | mappings | RSS KiB | shared KiB | host's fds | host's RSS KiB |"
    );
    out!(md, "|---:|---:|---:|---:|---:|---:|---:|");
    for (size, c, h) in &costs {
        out!(
            md,
            "| {size} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
            c.fds,
            c.maps,
            c.rss_kib,
            c.shmem_kib,
            h.fds,
            h.rss_kib
        );
    }
    out!(
        md,
        "\n### Join time by how many are on the bus (one joiner at a time)\n"
    );
    out!(md, "| on the bus | joins | p50 ms | p99 ms |");
    out!(md, "|---|---:|---:|---:|");
    for (lo, hi) in [(1, 10), (11, 100), (101, 1000), (1001, usize::MAX)] {
        let mut t: Vec<f64> = times
            .iter()
            .filter(|(listed, _)| (lo..=hi).contains(listed))
            .map(|(_, us)| us / 1000.0)
            .collect();
        if t.is_empty() {
            continue;
        }
        t.sort_by(f64::total_cmp);
        let range = if hi == usize::MAX {
            format!("{lo}+")
        } else {
            format!("{lo}–{hi}")
        };
        out!(
            md,
            "| {range} | {} | {:.2} | {:.2} |",
            t.len(),
            percentile(&t, 50.0),
            percentile(&t, 99.0)
        );
    }
    for p in procs {
        p.finish()?;
    }
    Ok(())
}

/// `n` endpoints join at once; all must agree on the directory and controller.
fn storm(md: &mut String, peer: &std::path::Path, n: usize) -> Result<(), String> {
    let bus = bus("storm");
    let expect = n.to_string();
    let began = Instant::now();
    let mut procs = (0..n)
        .map(|i| {
            Proc::start(
                peer,
                format!("storm{i}"),
                &args(
                    "member",
                    &bus,
                    "storm",
                    &[
                        "--expect",
                        &expect,
                        "--poll-ms",
                        "20",
                        "--timing",
                        "--join-timeout-s",
                        "600",
                        "--settle-timeout-s",
                        "600",
                    ],
                ),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let started = began.elapsed();
    let mut times = Vec::with_capacity(n);
    for p in &mut procs {
        p.expect("READY ")?;
        times.push(joined(p)?.0 / 1000.0);
    }
    let all_joined = began.elapsed();
    for p in &mut procs {
        p.expect("SETTLED ")?;
    }
    let settled = began.elapsed();
    let mut dirs = Vec::with_capacity(n);
    for p in &mut procs {
        p.tell("check")?;
        dirs.push(p.expect("DIR ")?);
    }
    let first = dirs[0].clone();
    if !first.starts_with(&format!("n={n} ")) || first.contains("controller=none") {
        return Err(format!("storm: endpoint 0 ended with {first:?}"));
    }
    if let Some((i, d)) = dirs.iter().enumerate().find(|(_, d)| **d != first) {
        return Err(format!(
            "storm: endpoint {i} ended with {d:?}, endpoint 0 with {first:?}"
        ));
    }
    times.sort_by(f64::total_cmp);
    out!(md, "\n### Join storm: {n} endpoints join at once\n");
    out!(md, "| endpoints | started in s | all joined in s | all agree in s | join p50 ms | join p99 ms | directory |");
    out!(md, "|---:|---:|---:|---:|---:|---:|---|");
    out!(md,
        "| {n} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} | all {n} list the same {n} ids and one controller |",
        started.as_secs_f64(),
        all_joined.as_secs_f64(),
        settled.as_secs_f64(),
        percentile(&times, 50.0),
        percentile(&times, 99.0)
    );
    for p in procs {
        p.finish()?;
    }
    Ok(())
}

/// All-to-all multicast at each size; then what each endpoint holds with its links.
fn mesh(md: &mut String, peer: &std::path::Path, sizes: &[usize]) -> Result<(), String> {
    let mut rows = Vec::new();
    for &n in sizes {
        let bus = bus(&format!("mesh{n}"));
        let count = n.to_string();
        let began = Instant::now();
        let mut procs = (0..n)
            .map(|i| {
                let index = i.to_string();
                Proc::start(
                    peer,
                    format!("mesh{n}.{i}"),
                    &args(
                        "mesh",
                        &bus,
                        "mesh",
                        &["--count", &count, "--index", &index, "--hold"],
                    ),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let want = format!("got={n} distinct={n}");
        for p in &mut procs {
            p.expect("READY ")?;
        }
        for p in &mut procs {
            let got = p.expect("MESH ")?;
            if got != want {
                return Err(format!("{}: MESH {got}, expected {want}", p.name));
            }
        }
        let took = began.elapsed();
        let cost = Cost::mean(procs.iter().map(Proc::pid));
        rows.push((n, took, cost));
        for p in procs {
            p.finish()?;
        }
    }
    out!(
        md,
        "\n### Mesh: every endpoint multicasts one message to all at once\n"
    );
    out!(
        md,
        "| endpoints | links | all delivered in s | fds | mappings | RSS KiB | shared KiB |"
    );
    out!(md, "|---:|---:|---:|---:|---:|---:|---:|");
    for (n, took, c) in &rows {
        out!(
            md,
            "| {n} | {} | {:.2} | {:.0} | {:.0} | {:.0} | {:.0} |",
            n * (n - 1),
            took.as_secs_f64(),
            c.fds,
            c.maps,
            c.rss_kib,
            c.shmem_kib
        );
    }
    if let (Some((a, _, ca)), Some((b, _, cb))) = (rows.first(), rows.last()) {
        if b > a {
            // Each endpoint holds N - 1 outgoing and N - 1 incoming links.
            let links = 2.0 * (*b - *a) as f64;
            out!(md,
                "\nOne link end (from {a} to {b} endpoints): {:.2} fds, {:.2} mappings, {:.1} KiB resident, {:.1} KiB shared.",
                (cb.fds - ca.fds) / links,
                (cb.maps - ca.maps) / links,
                (cb.rss_kib - ca.rss_kib) / links,
                (cb.shmem_kib - ca.shmem_kib) / links
            );
        }
    }
    Ok(())
}
