//! `busbar list`: who is on a bus.

use crate::common::{self, parse_secs, print_line, show_label, Failure};
use crate::reach::Reach;
use busbar::{BytesMessage, EndpointInfo, Label};
use std::io::IsTerminal;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Show the endpoints on a bus: id, pid, uid, which one hosts the controller,
/// message rates, queue depth, drops, label; with --watch, every second.
#[derive(Debug, clap::Args)]
#[command(long_about = "\
Show the endpoints on a bus as a table: id, pid, uid, which one hosts the \
bus controller, the messages per second it receives (IN/S: handed to its \
application) and sends (OUT/S: one per receiver), how many bytes senders \
have queued for it that it has not read (QUEUED), how many messages were \
dropped for it because it was full (DROPPED, under the drop-newest policy), \
and label. The rates, QUEUED and DROPPED are what the endpoints last \
reported, about once a second, so they are up to about two seconds old.

With --watch, the table is shown again every --interval (1 second) until \
the command is stopped, or --count tables were shown: on a terminal it \
replaces the last one, otherwise each comes after a line with the time.

`list` joins the bus to read its directory (its own endpoint is left out \
of the table). Like `send`, it never hosts the controller, so it does not \
start a bus nor cause a failover when it exits: when nobody runs the bus it \
fails with \"no bus named ... is running\" after --join-timeout.")]
pub struct Args {
    /// The bus to look at.
    #[arg(long, value_name = "NAME")]
    bus: String,

    #[command(flatten)]
    reach: Reach,

    /// How long to wait for the bus controller to answer.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "1")]
    join_timeout: Duration,

    /// Show the table again every --interval, so you can watch a live bus.
    #[arg(long)]
    watch: bool,

    /// With --watch: the time between two tables.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "1", requires = "watch")]
    interval: Duration,

    /// With --watch: stop (status 0) after this many tables.
    #[arg(long, short = 'n', value_name = "N", requires = "watch")]
    count: Option<u64>,
}

/// Clears a terminal and puts the cursor at the top left.
const CLEAR: &str = "\x1b[H\x1b[2J";

/// Runs `busbar list`.
pub fn run(args: Args, token: &str) -> Result<(), Failure> {
    let label = Label::new([common::cli_marker()]);
    let options = args.reach.options(&args.bus, label, token, false);
    let (sender, _receiver) = common::join::<BytesMessage, BytesMessage>(
        options,
        args.join_timeout,
        "; start one with `busbar listen`",
    )?;
    let me = sender.id();
    let endpoints = || {
        let mut endpoints: Vec<EndpointInfo> = sender
            .endpoints()
            .into_iter()
            .filter(|e| e.id != me)
            .collect();
        endpoints.sort_by_key(|e| (!e.is_controller, e.pid, e.id));
        endpoints
    };
    if !args.watch {
        for line in table(&endpoints()) {
            print_line(&line)?;
        }
        return Ok(());
    }
    let terminal = std::io::stdout().is_terminal();
    let mut next = Instant::now();
    let mut shown: u64 = 0;
    while args.count.is_none_or(|n| shown < n) {
        if shown > 0 {
            next += args.interval;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        let endpoints = endpoints();
        let heading = format!(
            "bus {:?} at {} UTC: {} endpoint(s)",
            args.bus,
            clock(SystemTime::now()),
            endpoints.len()
        );
        let mut screen = String::new();
        if terminal {
            screen.push_str(CLEAR);
        } else if shown > 0 {
            screen.push('\n');
        }
        screen.push_str(&heading);
        for line in table(&endpoints) {
            screen.push('\n');
            screen.push_str(&line);
        }
        print_line(&screen)?;
        shown += 1;
    }
    Ok(())
}

/// The time of day of `t`, `HH:MM:SS`, in UTC.
fn clock(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// The table's lines, header first, columns aligned.
pub fn table(endpoints: &[EndpointInfo]) -> Vec<String> {
    let rows: Vec<[String; 9]> = endpoints
        .iter()
        .map(|e| {
            [
                e.id.to_string(),
                e.pid.to_string(),
                e.uid.to_string(),
                if e.is_controller { "yes" } else { "-" }.to_string(),
                e.received_per_sec.to_string(),
                e.sent_per_sec.to_string(),
                e.queued_bytes.to_string(),
                e.dropped.to_string(),
                show_label(&e.label),
            ]
        })
        .collect();
    let header = [
        "ID",
        "PID",
        "UID",
        "CONTROLLER",
        "IN/S",
        "OUT/S",
        "QUEUED",
        "DROPPED",
        "LABEL",
    ]
    .map(String::from);
    let mut widths = [0; 9];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    std::iter::once(&header)
        .chain(&rows)
        .map(|row| {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<w$}  "));
                }
            }
            line
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use busbar::{label, EndpointId};

    #[test]
    fn clock_shows_utc_time_of_day() {
        let t = UNIX_EPOCH + Duration::from_secs(3 * 86_400 + 13 * 3600 + 5 * 60 + 9);
        assert_eq!(clock(t), "13:05:09");
    }

    #[test]
    fn aligned() {
        let endpoints = [
            EndpointInfo {
                id: EndpointId(1),
                label: label!("renderer", "gpu"),
                pid: 42,
                uid: 1000,
                is_controller: true,
                queued_bytes: 0,
                dropped: 0,
                sent_per_sec: 0,
                received_per_sec: 120_000,
            },
            EndpointInfo {
                id: EndpointId(0xabc),
                label: Label::default(),
                pid: 12345,
                uid: 0,
                is_controller: false,
                queued_bytes: 4096,
                dropped: 3,
                sent_per_sec: 7,
                received_per_sec: 0,
            },
        ];
        assert_eq!(
            table(&endpoints),
            [
                "ID                PID    UID   CONTROLLER  IN/S    OUT/S  QUEUED  DROPPED  LABEL",
                "0000000000000001  42     1000  yes         120000  0      0       0        gpu,renderer",
                "0000000000000abc  12345  0     -           0       7      4096    3        -",
            ]
        );
    }
}
