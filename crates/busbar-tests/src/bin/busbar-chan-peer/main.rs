//! The other process of `tests/channel.rs`: `busbar-chan-peer <role> <args>`.
//!
//! Roles:
//! - `serve <name>`: connects to the one-shot server `name` with a
//!   `Sender<Sender<Cmd>>`, sends the sender of a channel of its own, and
//!   does what the commands that come on it say, until every sender is gone.
//! - `embedded-senders <name0> <name2>`: ipc-channel's
//!   `cross_process_embedded_senders`, the child's side.
//! - `connect <name>`: connects to a `OneShotServer<String>` and sends
//!   "connected"; exits 3 when the connect is refused.
//! - `bus <bus>`: joins the bus as "chan-peer", answers "via bus" on the
//!   channel sender the first `Carry` message brings.

use busbar::channel::{self, Sender};
use busbar_tests::chan::{flood_message, Carry, Cmd};
use std::io;
use std::process::exit;

type Res = Result<(), Box<dyn std::error::Error>>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    let out = match arg(0).as_str() {
        "serve" => serve(&arg(1)),
        "embedded-senders" => embedded_senders(&arg(1), &arg(2)),
        "connect" => connect(&arg(1)),
        "bus" => bus(&arg(1)),
        other => {
            eprintln!("busbar-chan-peer: unknown role {other:?}");
            exit(2);
        }
    };
    if let Err(e) = out {
        eprintln!("busbar-chan-peer {args:?}: {e}");
        exit(1);
    }
}

fn serve(name: &str) -> Res {
    let (tx, rx) = channel::channel::<Cmd>()?;
    Sender::<Sender<Cmd>>::connect(name)?.send(tx)?;
    let mut held = Vec::new();
    loop {
        let cmd = match rx.recv() {
            Ok(c) => c,
            Err(busbar::RecvError::Disconnected) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        match cmd {
            Cmd::Echo(s, to) => to.send(s)?,
            Cmd::EchoAll(data, shared, to) => to.send((data, shared))?,
            Cmd::Count(to, count) => {
                for n in 0..count {
                    to.send(n)?;
                }
            }
            Cmd::Flood(to, count, size) => {
                for n in 0..count {
                    to.send(&flood_message(n, size))?;
                }
            }
            Cmd::Forward(from, to) => loop {
                match from.recv() {
                    Ok(m) => to.send(&m)?,
                    Err(busbar::RecvError::Disconnected) => break,
                    Err(e) => return Err(e.into()),
                }
            },
            Cmd::Hold(rx) => held.push(rx),
            Cmd::MakeChannels(count, senders, receivers) => {
                for n in 0..count {
                    let (tx, rx) = channel::channel::<u64>()?;
                    tx.send(u64::from(n))?;
                    senders.send(tx)?;
                    receivers.send(rx)?;
                }
            }
            Cmd::Sum(shared, to) => to.send(shared.iter().map(|&b| u64::from(b)).sum())?,
            Cmd::Exit => exit(0),
        }
    }
}

/// ipc-channel's `cross_process_embedded_senders`, the forked child's part.
fn embedded_senders(name0: &str, name2: &str) -> Res {
    let (tx1, rx1) = channel::channel::<(String, u32)>()?;
    let tx0 = Sender::<Sender<(String, u32)>>::connect(name0)?;
    tx0.send(tx1)?;
    let person = rx1.recv()?;
    let tx2 = Sender::<(String, u32)>::connect(name2)?;
    tx2.send(person)?;
    Ok(())
}

fn connect(name: &str) -> Res {
    match Sender::<String>::connect(name) {
        Ok(tx) => {
            tx.send("connected".into())?;
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            eprintln!("busbar-chan-peer: refused as expected: {e}");
            exit(3)
        }
        Err(e) => Err(e.into()),
    }
}

fn bus(bus: &str) -> Res {
    let options = busbar::Options::new(bus, busbar::label!("chan-peer"), "chan-token");
    let (_tx, mut rx) = busbar::join::<Carry, Carry>(options, None)?;
    let m = rx.recv(None)?;
    m.payload.reply.send("via bus".into())?;
    Ok(())
}
