//! What is measured and how: sizes, durations, the stamp in every payload,
//! the receiver's tally, percentiles, the clock and CPU time.

use std::time::Duration;

/// Message sizes for throughput, one sender → one receiver.
pub const SIZES: [usize; 5] = [16, 1 << 10, 16 << 10, 1 << 20, 16 << 20];
/// Message sizes for ping-pong latency.
pub const LATENCY_SIZES: [usize; 2] = [64, 64 << 10];
/// Message size of the sleeping-receiver latency row.
pub const SLEEPING_SIZE: usize = 64;
/// How long the pinger waits before each message of the sleeping-receiver
/// row: far longer than any receiver's spin (busbar's is 50 µs), so that
/// every message finds its receiver asleep (or, for a receiver that only
/// polls, still polling).
pub const SLEEPING_GAP: Duration = Duration::from_millis(1);
/// Message size of the CPU-cost row.
pub const CPU_SIZE: usize = 1 << 10;
/// Senders (one link each) of the idle receiver whose memory is read.
pub const MEMORY_LINKS: usize = 32;
/// Receivers for the multicast fan-out.
pub const FAN_OUT: [usize; 3] = [1, 8, 32];
/// Senders for the fan-in.
pub const FAN_IN: usize = 8;
/// Message size for fan-out and fan-in.
pub const FAN_SIZE: usize = 1 << 10;
/// A sequence number that marks a sender's last message.
pub const END: u64 = u64::MAX;

/// How long and how often: the full run or `--quick`.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub quick: bool,
    /// Each throughput and fan cell sends for this long.
    pub stream: Duration,
    /// Latency: measured round trips go on for this long...
    pub latency: Duration,
    /// ...and at least this many, after this many warm-up round trips.
    pub latency_min: u64,
    pub latency_warmup: u64,
    /// Sleeping-receiver latency: at least this many messages (after the
    /// same warm-up), one every [`SLEEPING_GAP`].
    pub sleeping_min: u64,
    /// CPU time of an idle receiver is read over this long.
    pub idle: Duration,
    /// Joins for the join-time percentiles.
    pub joins: u64,
    /// Rounds of `kill -9` of the controller.
    pub failovers: u64,
    /// A receiver that has had no message for this long gives up.
    pub give_up: Duration,
    /// A stream stops early once it has made this many deliveries (over
    /// all receivers), so that a library that queues without bound does
    /// not leave minutes of backlog to drain.
    pub max_deliveries: u64,
}

impl Plan {
    pub fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                quick,
                stream: Duration::from_millis(100),
                latency: Duration::from_millis(100),
                latency_min: 200,
                latency_warmup: 20,
                sleeping_min: 100,
                idle: Duration::from_millis(300),
                joins: 10,
                failovers: 2,
                give_up: Duration::from_secs(2),
                max_deliveries: 200_000,
            }
        } else {
            Plan {
                quick,
                stream: Duration::from_secs(1),
                latency: Duration::from_secs(1),
                latency_min: 2_000,
                latency_warmup: 200,
                sleeping_min: 1_000,
                idle: Duration::from_secs(1),
                joins: 100,
                failovers: 10,
                give_up: Duration::from_secs(10),
                max_deliveries: 2_000_000,
            }
        }
    }

    /// The fewest messages a throughput sender sends, whatever the time.
    pub fn min_count(&self, size: usize) -> u64 {
        let floor = if self.quick { 1 } else { 10 };
        if size >= 1 << 20 {
            floor
        } else {
            100
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the same clock in every process.
pub fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Writes the stamp (sequence number, sender index) into the first 12 bytes.
pub fn stamp(buf: &mut [u8], seq: u64, sender: u32) {
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    buf[8..12].copy_from_slice(&sender.to_le_bytes());
}

/// Reads a stamp; `None` when the message is too short to hold one.
pub fn read_stamp(buf: &[u8]) -> Option<(u64, u32)> {
    let seq = u64::from_le_bytes(buf.get(..8)?.try_into().ok()?);
    let sender = u32::from_le_bytes(buf.get(8..12)?.try_into().ok()?);
    Some((seq, sender))
}

/// What a receiver counts: every message it got, checked for length and order.
#[derive(Debug, Default)]
pub struct Tally {
    size: usize,
    next: Vec<u64>,
    pub count: u64,
    pub gaps: u64,
    pub disorder: u64,
    pub bad: u64,
    pub ends: u64,
    pub first_ns: u64,
    pub last_ns: u64,
}

impl Tally {
    pub fn new(senders: usize, size: usize) -> Tally {
        Tally {
            size,
            next: vec![0; senders],
            ..Tally::default()
        }
    }

    /// Counts one message.
    pub fn on(&mut self, data: &[u8]) {
        let Some((seq, sender)) = read_stamp(data) else {
            self.bad += 1;
            return;
        };
        if seq == END {
            self.ends += 1;
            return;
        }
        let now = now_ns();
        if self.count == 0 {
            self.first_ns = now;
        }
        self.last_ns = now;
        self.count += 1;
        if data.len() != self.size {
            self.bad += 1;
        }
        match self.next.get_mut(sender as usize) {
            Some(next) if seq == *next => *next += 1,
            Some(next) if seq > *next => {
                self.gaps += seq - *next;
                *next = seq + 1;
            }
            Some(_) => self.disorder += 1,
            None => self.bad += 1,
        }
    }

    pub fn line(&self, timed_out: bool) -> String {
        format!(
            "RESULT count={} gaps={} disorder={} bad={} ends={} first={} last={} timeout={}",
            self.count,
            self.gaps,
            self.disorder,
            self.bad,
            self.ends,
            self.first_ns,
            self.last_ns,
            u8::from(timed_out)
        )
    }
}

/// Parses `k=v k=v` into a lookup.
pub struct Fields(Vec<(String, String)>);

impl Fields {
    pub fn parse(line: &str) -> Fields {
        Fields(
            line.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    pub fn num(&self, key: &str) -> crate::Res<u64> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.parse().ok())
            .ok_or_else(|| format!("result has no number {key}").into())
    }
}

/// Percentiles of a set of samples (nanoseconds).
#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    pub n: u64,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Percentiles {
    pub fn of(samples: &mut [u64]) -> Percentiles {
        samples.sort_unstable();
        let at = |p: f64| -> u64 {
            if samples.is_empty() {
                return 0;
            }
            let rank = (p * samples.len() as f64).ceil() as usize;
            samples[rank.clamp(1, samples.len()) - 1]
        };
        Percentiles {
            n: samples.len() as u64,
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
            max: samples.last().copied().unwrap_or(0),
        }
    }

    pub fn line(&self) -> String {
        format!(
            "RESULT n={} p50={} p99={} p999={} max={}",
            self.n, self.p50, self.p99, self.p999, self.max
        )
    }

    pub fn from_fields(f: &Fields) -> crate::Res<Percentiles> {
        Ok(Percentiles {
            n: f.num("n")?,
            p50: f.num("p50")?,
            p99: f.num("p99")?,
            p999: f.num("p999")?,
            max: f.num("max")?,
        })
    }
}

/// User + system CPU time of process `pid` (all its threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> crate::Res<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces; the fields after it are plain.
    let after = stat.rsplit_once(')').ok_or("odd /proc stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state is field 3 of stat(5); utime is 14, stime 15.
    let utime: u64 = fields.get(11).ok_or("no utime")?.parse()?;
    let stime: u64 = fields.get(12).ok_or("no stime")?.parse()?;
    Ok(utime + stime)
}

/// CPU time this process (all its threads, user + system) has used, in
/// nanoseconds (`CLOCK_PROCESS_CPUTIME_ID`).
pub fn cpu_ns_self() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// What a process holds in memory, from `/proc/<pid>`.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// Resident set (`VmRSS`), bytes.
    pub rss: u64,
    /// The part of it that is shared memory: memfd, `/dev/shm`, `MAP_SHARED`
    /// anonymous pages (`RssShmem`), bytes.
    pub rss_shmem: u64,
    /// Shared mappings (`s` in `/proc/<pid>/maps`: memfds, `/dev/shm`
    /// files, shared anonymous memory): their whole size, touched or not, bytes.
    pub mapped_shared: u64,
    /// How many such mappings.
    pub shared_mappings: u64,
}

/// Reads `pid`'s [`Memory`].
pub fn memory_of(pid: u32) -> crate::Res<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| -> crate::Res<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(key))
            .ok_or_else(|| format!("no {key} in /proc/{pid}/status"))?;
        let n: u64 = line[key.len()..]
            .split_whitespace()
            .next()
            .ok_or("empty status field")?
            .parse()?;
        Ok(n * 1024)
    };
    let (rss, rss_shmem) = (kib("VmRSS:")?, kib("RssShmem:")?);
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    let (mut mapped_shared, mut shared_mappings) = (0, 0);
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        if !perms.ends_with('s') {
            continue;
        }
        let (a, b) = range.split_once('-').ok_or("odd maps line")?;
        let (a, b) = (u64::from_str_radix(a, 16)?, u64::from_str_radix(b, 16)?);
        mapped_shared += b.saturating_sub(a);
        shared_mappings += 1;
    }
    Ok(Memory {
        rss,
        rss_shmem,
        mapped_shared,
        shared_mappings,
    })
}

pub fn ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_ranks() {
        let mut v: Vec<u64> = (1..=1000).collect();
        let p = Percentiles::of(&mut v);
        assert_eq!((p.p50, p.p99, p.p999, p.max), (500, 990, 999, 1000));
    }

    #[test]
    fn tally_counts_gaps_and_ends() {
        let mut t = Tally::new(2, 16);
        let mut b = [0u8; 16];
        for (seq, s) in [(0, 0), (1, 0), (3, 0), (0, 1), (2, 0), (END, 0)] {
            stamp(&mut b, seq, s);
            t.on(&b);
        }
        assert_eq!((t.count, t.gaps, t.disorder, t.ends), (5, 1, 1, 1));
    }

    #[test]
    fn cpu_ticks_of_self() {
        assert!(cpu_ticks(std::process::id()).is_ok());
    }

    #[test]
    fn memory_of_self() {
        let m = memory_of(std::process::id()).expect("own /proc");
        assert!(m.rss > 0 && m.rss_shmem <= m.rss);
    }
}
