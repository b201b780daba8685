//! `busbar list`: who is on a bus.

use crate::common::{self, parse_secs, print_line, show_label, Failure};
use crate::reach::Reach;
use busbar::{BytesMessage, EndpointInfo, Label};
use std::time::Duration;

/// Show the endpoints on a bus: id, pid, uid, which one hosts the controller, queue depth, drops, label.
#[derive(Debug, clap::Args)]
#[command(long_about = "\
Show the endpoints on a bus as a table: id, pid, uid, which one hosts the \
bus controller, how many bytes senders have queued for it that it has not \
read (QUEUED), how many messages were dropped for it because it was full \
(DROPPED, under the drop-newest policy), and label. QUEUED and DROPPED are \
what the senders last reported, about once a second.

`list` joins the bus for a moment to read its directory (its own endpoint is \
left out of the table). Like `send`, it never hosts the controller, so it \
does not start a bus nor cause a failover when it exits: when nobody runs the \
bus it fails with \"no bus named ... is running\" after --join-timeout.")]
pub struct Args {
    /// The bus to look at.
    #[arg(long, value_name = "NAME")]
    bus: String,

    #[command(flatten)]
    reach: Reach,

    /// How long to wait for the bus controller to answer.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "1")]
    join_timeout: Duration,
}

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
    let mut endpoints: Vec<EndpointInfo> = sender
        .endpoints()
        .into_iter()
        .filter(|e| e.id != me)
        .collect();
    endpoints.sort_by_key(|e| (!e.is_controller, e.pid, e.id));
    for line in table(&endpoints) {
        print_line(&line)?;
    }
    Ok(())
}

/// The table's lines, header first, columns aligned.
pub fn table(endpoints: &[EndpointInfo]) -> Vec<String> {
    let rows: Vec<[String; 7]> = endpoints
        .iter()
        .map(|e| {
            [
                e.id.to_string(),
                e.pid.to_string(),
                e.uid.to_string(),
                if e.is_controller { "yes" } else { "-" }.to_string(),
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
        "QUEUED",
        "DROPPED",
        "LABEL",
    ]
    .map(String::from);
    let mut widths = [0; 7];
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
            },
            EndpointInfo {
                id: EndpointId(0xabc),
                label: Label::default(),
                pid: 12345,
                uid: 0,
                is_controller: false,
                queued_bytes: 4096,
                dropped: 3,
            },
        ];
        assert_eq!(
            table(&endpoints),
            [
                "ID                PID    UID   CONTROLLER  QUEUED  DROPPED  LABEL",
                "0000000000000001  42     1000  yes         0       0        gpu,renderer",
                "0000000000000abc  12345  0     -           4096    3        -",
            ]
        );
    }
}
