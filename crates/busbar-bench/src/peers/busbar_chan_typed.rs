//! busbar's typed channels (`busbar::channel::channel::<T>()`), set up as
//! the `busbar-chan` peer is (a `OneShotServer` per sending process, the
//! receiving side connects and sends its sender), with a serde message
//! instead of bytes: [`typed::In`](super::typed) on the receiving side
//! (`Receiver<In>::recv_timeout`, decoded into a `Vec<u8>`), the borrowing
//! [`typed::Out`](super::typed) on the sending side (`Sender<Out>::send`).
//! The sending side keeps its sender opaque (`OpaqueSender`) and types it
//! for each message's lifetime (`to::<Out<'_>>()`, a move, no reference
//! count). Compare with `ipc-channel-typed`. No multicast.

use super::typed::{In, Out};
use super::End;
use crate::proc::{Args, Ctl};
use crate::Res;
use busbar::channel::{self, OneShotServer, OpaqueSender, Receiver, Sender};
use busbar::RecvError;
use std::time::Duration;

/// What the receiving side hands each sending side: where to send, and
/// where to send a sender for replies.
type Boot = (OpaqueSender, Sender<OpaqueSender>);

/// The receiving side (`sink`, `pong`).
struct Receiving {
    rx: Receiver<In>,
    /// Kept until `GO`, as the other channel peers do.
    tx: Option<Sender<In>>,
    boot_tx: Option<Sender<OpaqueSender>>,
    boot_rx: Receiver<OpaqueSender>,
    reply: Option<OpaqueSender>,
    wants_reply: bool,
}

/// The sending side (`source`, `ping`).
struct Sending {
    tx: Option<OpaqueSender>,
    reply: Option<Receiver<In>>,
}

pub fn open(role: &str, _args: &Args, ctl: &Ctl) -> Res<Box<dyn End>> {
    match role {
        "sink" | "pong" => {
            let (tx, rx) = channel::channel::<In>()?;
            let (boot_tx, boot_rx) = channel::channel()?;
            Ok(Box::new(Receiving {
                rx,
                tx: Some(tx),
                boot_tx: Some(boot_tx),
                boot_rx,
                reply: None,
                wants_reply: role == "pong",
            }))
        }
        "source" | "ping" => {
            let (server, name) = OneShotServer::<Boot>::new()?;
            ctl.say(&format!("NAME {name}"));
            let (_, (tx, boot_tx)) = server.accept()?;
            let reply = if role == "ping" {
                let (reply_tx, reply_rx) = channel::channel::<In>()?;
                boot_tx.send(reply_tx.to_opaque())?;
                Some(reply_rx)
            } else {
                None
            };
            Ok(Box::new(Sending {
                tx: Some(tx),
                reply,
            }))
        }
        _ => Err(format!("busbar typed channels have no role {role}").into()),
    }
}

/// Sends `data` as an [`Out`] through `slot`'s sender, typed for this call.
fn put(slot: &mut Option<OpaqueSender>, data: &[u8]) -> Res<()> {
    let tx = slot.take().ok_or("no sender")?.to::<Out<'_>>();
    let sent = tx.send(Out { data });
    *slot = Some(tx.to_opaque());
    sent?;
    Ok(())
}

/// One message within `timeout`, its bytes handed to `f`.
fn take(rx: &Receiver<In>, timeout: Duration, f: &mut dyn FnMut(&[u8])) -> Res<bool> {
    match rx.recv_timeout(timeout) {
        Ok(m) => {
            f(&m.data);
            Ok(true)
        }
        Err(RecvError::Timeout | RecvError::Disconnected) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

impl End for Receiving {
    fn send(&mut self, data: &[u8]) -> Res<()> {
        put(&mut self.reply, data)
    }

    fn recv(&mut self, timeout: Duration, f: &mut dyn FnMut(&[u8])) -> Res<bool> {
        take(&self.rx, timeout, f)
    }

    fn on_peer(&mut self, name: &str) -> Res<()> {
        let tx = self.tx.as_ref().ok_or("peer after GO")?.clone();
        let boot_tx = self.boot_tx.as_ref().ok_or("peer after GO")?.clone();
        Sender::<Boot>::connect(name)?.send((tx.to_opaque(), boot_tx))?;
        Ok(())
    }

    fn on_go(&mut self) -> Res<()> {
        self.tx = None;
        self.boot_tx = None;
        if self.wants_reply {
            self.reply = Some(self.boot_rx.recv()?);
        }
        Ok(())
    }
}

impl End for Sending {
    fn send(&mut self, data: &[u8]) -> Res<()> {
        put(&mut self.tx, data)
    }

    fn recv(&mut self, timeout: Duration, f: &mut dyn FnMut(&[u8])) -> Res<bool> {
        let rx = self.reply.as_ref().ok_or("no reply channel")?;
        take(rx, timeout, f)
    }
}
