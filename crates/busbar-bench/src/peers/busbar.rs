//! busbar: `join`, `EndpointSender::send` of a `BytesMessage`,
//! `EndpointReceiver::recv`. Default options (blocking backpressure,
//! abstract namespace). Every frame goes over the seqpacket socket;
//! payloads over 64 KiB in a sealed memfd read back with `pread`.

use super::{wait_until, End};
use crate::proc::{Args, Ctl};
use crate::Res;
use busbar::{
    join, label, BytesMessage, EndpointReceiver, EndpointSender, Message, Options, RecvError,
    Selector,
};
use std::time::Duration;

pub const TOKEN: &str = "bench";
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

struct Busbar {
    tx: EndpointSender<BytesMessage>,
    rx: EndpointReceiver<BytesMessage>,
    to: Selector,
    /// A label that must be in the directory (with how many) before the
    /// first send: checked at open, or for the ponger at `GO`.
    wait_for: Option<(&'static str, usize)>,
    wait_at_go: bool,
}

pub fn open(role: &str, args: &Args, _ctl: &Ctl) -> Res<Box<dyn End>> {
    let bus = args.str("bus")?;
    let receivers = args.num("receivers")? as usize;
    let multicast = args.num("multicast")? == 1;
    let (me, peer, wait_for) = match role {
        "sink" => ("sink", "source", None),
        "source" => ("source", "sink", Some(("sink", receivers))),
        "pong" => ("pong", "ping", Some(("ping", 1))),
        "ping" => ("ping", "pong", Some(("pong", 1))),
        _ => return Err(format!("busbar has no role {role}").into()),
    };
    let (tx, rx) = join::<BytesMessage, BytesMessage>(
        Options::new(bus, label!(me), TOKEN),
        Some(JOIN_TIMEOUT),
    )?;
    let to = if multicast {
        Selector::multicast(peer)
    } else {
        Selector::unicast(peer)
    };
    let end = Busbar {
        tx,
        rx,
        to,
        wait_for,
        wait_at_go: role == "pong",
    };
    if !end.wait_at_go {
        end.wait_directory()?;
    }
    Ok(Box::new(end))
}

impl Busbar {
    fn wait_directory(&self) -> Res<()> {
        if let Some((label, n)) = self.wait_for {
            let tx = &self.tx;
            wait_until(
                &format!("{n} '{label}' in the directory"),
                JOIN_TIMEOUT,
                || {
                    tx.endpoints()
                        .iter()
                        .filter(|e| e.label.contains(label))
                        .count()
                        >= n
                },
            )?;
        }
        Ok(())
    }
}

impl End for Busbar {
    fn send(&mut self, data: &[u8]) -> Res<()> {
        let msg = Message::new(self.to.clone(), BytesMessage::new(0, data));
        self.tx.send(msg)?;
        Ok(())
    }

    fn recv(&mut self, timeout: Duration, f: &mut dyn FnMut(&[u8])) -> Res<bool> {
        match self.rx.recv(Some(timeout)) {
            Ok(m) => {
                f(&m.payload.data);
                Ok(true)
            }
            Err(RecvError::Timeout) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn on_go(&mut self) -> Res<()> {
        // The ponger starts before the pinger joins: it waits for it here.
        if self.wait_at_go {
            self.wait_directory()?;
        }
        Ok(())
    }
}
