//! ipmb 0.8.5: `join`, `EndpointSender::send` of its `BytesMessage`,
//! `EndpointReceiver::recv`. On Linux every message goes through the bus
//! controller (the first endpoint to join), and a message between two
//! endpoints that are not the controller never arrives; so the single
//! side of each layout joins first and is the controller: the receiver for
//! one → one, ping-pong and many → one, the sender for the multicast.

use super::End;
use crate::proc::{Args, Ctl};
use crate::Res;
use ipmb::{label, BytesMessage, EndpointReceiver, EndpointSender, Message, Options, Selector};
use std::time::Duration;

const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

struct Ipmb {
    tx: EndpointSender<BytesMessage>,
    rx: EndpointReceiver<BytesMessage>,
    to: Selector,
}

pub fn open(role: &str, args: &Args, _ctl: &Ctl) -> Res<Box<dyn End>> {
    let bus = args.str("bus")?;
    let multicast = args.num("multicast")? == 1;
    let (me, peer) = match role {
        "sink" => ("sink", "source"),
        "source" => ("source", "sink"),
        "pong" => ("pong", "ping"),
        "ping" => ("ping", "pong"),
        _ => return Err(format!("ipmb has no role {role}").into()),
    };
    let (tx, rx) = ipmb::join::<BytesMessage, BytesMessage>(
        Options::new(bus, label!(me), ""),
        Some(JOIN_TIMEOUT),
    )?;
    let to = if multicast {
        Selector::multicast(peer)
    } else {
        Selector::unicast(peer)
    };
    Ok(Box::new(Ipmb { tx, rx, to }))
}

impl End for Ipmb {
    fn send(&mut self, data: &[u8]) -> Res<()> {
        let payload = BytesMessage {
            format: 0,
            data: data.to_vec(),
        };
        self.tx.send(Message::new(self.to.clone(), payload))?;
        Ok(())
    }

    fn recv(&mut self, timeout: Duration, f: &mut dyn FnMut(&[u8])) -> Res<bool> {
        match self.rx.recv(Some(timeout)) {
            Ok(m) => {
                f(&m.payload.data);
                Ok(true)
            }
            Err(ipmb::RecvError::Timeout) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}
