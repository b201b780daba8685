//! busbar, used two ways. Both `join` with default options (blocking
//! backpressure, abstract namespace, receivers spin 50 µs on the link rings
//! before they sleep) and send a `BytesMessage` (format 0).
//!
//! - `busbar` (plain): `EndpointSender::send` of a `Message<BytesMessage>`
//!   built from the harness's slice (one copy into a `Vec`), and
//!   `EndpointReceiver::recv`, which decodes into an owned `Vec<u8>`.
//! - `busbar-zc` (zero-copy): `EndpointSender::loan(0, len)`, the slice
//!   copied into `Loan::as_mut_slice`, `EndpointSender::send_loan`; the
//!   receiver's `EndpointReceiver::recv_with` lends the message in place and
//!   the harness reads `Borrowed::bytes` there. This is how the iceoryx2
//!   peer uses iceoryx2 (loan a sample, copy the data in, send; read the
//!   sample in place).
//!
//! How the frames travel (see `busbar::link`): a frame without descriptors
//! that fits in-line (payload up to 64 KiB) goes through the shared-memory
//! ring of its sender → receiver link; the sender rings the link's eventfd
//! only when the receiver sleeps. A frame with descriptors goes over the
//! seqpacket socket. A plain `send` of a payload over 64 KiB copies the
//! encoded payload into a region from the sender's pool of shared-memory
//! regions and sends the region's descriptor over the socket; the receiver
//! maps it (no `pread`, no copy through the ring) and `recv` decodes it into
//! a `Vec`. A loan is such a region whatever its size, so every zero-copy
//! message, small ones too, travels over the socket with a descriptor.

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
    /// `loan` + `send_loan` and `recv_with`, instead of `send` and `recv`.
    zero_copy: bool,
    tx: EndpointSender<BytesMessage>,
    rx: EndpointReceiver<BytesMessage>,
    to: Selector,
    /// A label that must be in the directory (with how many) before the
    /// first send: checked at open, or for the ponger at `GO`.
    wait_for: Option<(&'static str, usize)>,
    wait_at_go: bool,
}

pub fn open(role: &str, args: &Args, _ctl: &Ctl, zero_copy: bool) -> Res<Box<dyn End>> {
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
    let mut options = Options::new(bus, label!(me), TOKEN);
    // An experiment, not a column: `BB_LINK_BUFFER=<bytes>` in the bench's
    // environment sets `Limits::link_buffer` (see "Memory" in BENCHMARKS.md).
    if let Some(v) = std::env::var_os("BB_LINK_BUFFER") {
        options.limits.link_buffer = v
            .to_str()
            .and_then(|v| v.parse().ok())
            .ok_or("BB_LINK_BUFFER is not a number of bytes")?;
    }
    let (tx, rx) = join::<BytesMessage, BytesMessage>(options, Some(JOIN_TIMEOUT))?;
    let to = if multicast {
        Selector::multicast(peer)
    } else {
        Selector::unicast(peer)
    };
    let end = Busbar {
        zero_copy,
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
        if self.zero_copy {
            let mut loan = self.tx.loan(0, data.len())?;
            let lent = loan.as_mut_slice();
            if lent.len() != data.len() {
                return Err(format!("a loan of {} bytes lent {}", data.len(), lent.len()).into());
            }
            lent.copy_from_slice(data);
            self.tx.send_loan(self.to.clone(), loan)?;
            return Ok(());
        }
        let msg = Message::new(self.to.clone(), BytesMessage::new(0, data));
        self.tx.send(msg)?;
        Ok(())
    }

    fn recv(&mut self, timeout: Duration, f: &mut dyn FnMut(&[u8])) -> Res<bool> {
        if self.zero_copy {
            let got = self.rx.recv_with(Some(timeout), |m| {
                m.bytes().map(|(_, data)| f(data)).is_some()
            });
            return match got {
                Ok(true) => Ok(true),
                Ok(false) => Err("recv_with lent a message that is not a BytesMessage".into()),
                Err(RecvError::Timeout) => Ok(false),
                Err(e) => Err(e.into()),
            };
        }
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
