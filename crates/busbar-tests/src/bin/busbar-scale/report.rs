//! The scale section of BENCHMARKS.md: the tables with the command, the
//! machine's limits and load, between markers that `busbar-bench` keeps.

use crate::Settings;
use std::path::Path;
use std::time::Duration;

/// The first line of the section.
pub const BEGIN: &str =
    "<!-- busbar-scale: begin (written by busbar-scale; run it again, do not edit) -->";
/// The last line of the section.
pub const END: &str = "<!-- busbar-scale: end -->";

/// What the section says about the run.
pub struct Context {
    command: String,
    when: String,
    fd_limit: u64,
    tasks_limit: String,
    pid_max: String,
    somaxconn: String,
    load: String,
    cores: usize,
    took: Duration,
}

impl Context {
    /// The context of a run of `s` that took `took`, with the descriptor limit in force.
    pub fn now(s: &Settings, fd_limit: u64, took: Duration) -> Context {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|t| t.trim().to_string())
                .unwrap_or_else(|_| "?".into())
        };
        let tasks = rustix::process::getrlimit(rustix::process::Resource::Nproc)
            .current
            .map_or("unlimited".to_string(), |n| n.to_string());
        let mut command = String::from("target/release/busbar-scale");
        for a in &s.command {
            command.push(' ');
            command.push_str(a);
        }
        Context {
            command,
            when: utc_now(),
            fd_limit,
            tasks_limit: tasks,
            pid_max: read("/proc/sys/kernel/pid_max"),
            somaxconn: read("/proc/sys/net/core/somaxconn"),
            load: read("/proc/loadavg"),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            took,
        }
    }
}

/// The whole section around `tables`.
pub fn block(tables: &str, c: &Context) -> String {
    format!(
        "{BEGIN}\n## Many endpoints on one bus\n\n\
         Written by `busbar-scale` on {} in {:.0} s; every endpoint is a process of its own.\n\n\
         ```sh\ncargo build --release -p busbar-tests --bins\n{}\n```\n\n\
         {} cores; descriptor limit {} (the harness raises its soft limit to the hard \
         one, and so does every mesh endpoint), tasks limit {}, `pid_max` {}, \
         `somaxconn` {}; load average at the end: {}. Costs are means over the \
         endpoints from `/proc/<pid>` (`fd/`, `maps`, `VmRSS`, `RssShmem`); \
         join times are measured inside each process around `busbar::join`.\n\n\
         Links are made on first use, so an idle endpoint holds the same few \
         descriptors on a bus of 10 or of 1,000 (the controller's host holds one \
         control connection per endpoint more); a join costs the controller one \
         small `Added` per endpoint, so a storm of N joins is N² small frames in \
         all. An endpoint that talks to all N others holds 2 (N - 1) link ends.\n\
         {tables}\n{END}\n",
        c.when,
        c.took.as_secs_f64(),
        c.command,
        c.cores,
        c.fd_limit,
        c.tasks_limit,
        c.pid_max,
        c.somaxconn,
        c.load
    )
}

/// Puts `block` into the file at `path`: in place of the section there, or at its end.
pub fn write_into(path: &Path, block: &str) -> Result<(), String> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(a), Some(b)) if b > a => {
            let after = old[b + END.len()..].trim_start_matches('\n');
            format!("{}{block}{after}", &old[..a])
        }
        _ if old.is_empty() => block.to_string(),
        _ => format!("{}\n\n{block}", old.trim_end()),
    };
    std::fs::write(path, new).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The time now, `YYYY-MM-DD HH:MM UTC` (from `date`).
fn utc_now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "?".into(), |t| t.trim().to_string())
}
