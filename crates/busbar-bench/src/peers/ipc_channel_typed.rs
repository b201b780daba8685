//! ipc-channel's typed channels (`ipc::channel::<T>()`), set up as the
//! `ipc-channel` peer is (an `IpcOneShotServer` per sending process, the
//! receiving side connects and sends its sender), with a serde message
//! instead of bytes: [`typed::In`](super::typed) on the receiving side
//! (`IpcReceiver<In>::recv`, decoded into a `Vec<u8>`), the borrowing
//! [`typed::Out`](super::typed) on the sending side (`IpcSender<Out>::send`).
//! The sending side keeps its sender opaque (`OpaqueIpcSender`) and types
//! it for each message's lifetime (`to::<Out<'_>>()`, a move), as the
//! `busbar-chan-typed` peer does. No multicast.

use super::typed::{In, Out};
use super::End;
use crate::proc::{Args, Ctl};
use crate::Res;
use ipc_channel::ipc::{self, IpcOneShotServer, IpcReceiver, IpcSender, OpaqueIpcSender};
use std::time::Duration;

/// What the receiving side hands each sending side: where to send, and
/// where to send a sender for replies.
type Boot = (OpaqueIpcSender, IpcSender<OpaqueIpcSender>);

/// The receiving side (`sink`, `pong`).
struct Receiving {
    rx: IpcReceiver<In>,
    /// Kept until `GO` so that the channel does not close before every
    /// sender has its clone; dropped then so that it closes when they exit.
    tx: Option<IpcSender<In>>,
    boot_tx: Option<IpcSender<OpaqueIpcSender>>,
    boot_rx: IpcReceiver<OpaqueIpcSender>,
    reply: Option<OpaqueIpcSender>,
    wants_reply: bool,
}

/// The sending side (`source`, `ping`).
struct Sending {
    tx: Option<OpaqueIpcSender>,
    reply: Option<IpcReceiver<In>>,
}

pub fn open(role: &str, _args: &Args, ctl: &Ctl) -> Res<Box<dyn End>> {
    match role {
        "sink" | "pong" => {
            let (tx, rx) = ipc::channel::<In>()?;
            let (boot_tx, boot_rx) = ipc::channel()?;
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
            let (server, name) = IpcOneShotServer::<Boot>::new()?;
            ctl.say(&format!("NAME {name}"));
            let (_, (tx, boot_tx)) = server.accept()?;
            let reply = if role == "ping" {
                let (reply_tx, reply_rx) = ipc::channel::<In>()?;
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
        _ => Err(format!("ipc-channel (typed) has no role {role}").into()),
    }
}

/// Sends `data` as an [`Out`] through `slot`'s sender, typed for this call.
fn put(slot: &mut Option<OpaqueIpcSender>, data: &[u8]) -> Res<()> {
    let tx = slot.take().ok_or("no sender")?.to::<Out<'_>>();
    let sent = tx.send(Out { data });
    *slot = Some(tx.to_opaque());
    sent.map_err(|e| format!("{e:?}"))?;
    Ok(())
}

/// `IpcReceiver` is waited on without a timeout, as the byte peer does (the
/// parent's timeout covers hangs).
fn take(rx: &IpcReceiver<In>, f: &mut dyn FnMut(&[u8])) -> Res<bool> {
    match rx.recv() {
        Ok(m) => {
            f(&m.data);
            Ok(true)
        }
        Err(ipc_channel::IpcError::Disconnected) => Ok(false),
        Err(e) => Err(format!("{e:?}").into()),
    }
}

impl End for Receiving {
    fn send(&mut self, data: &[u8]) -> Res<()> {
        put(&mut self.reply, data)
    }

    fn recv(&mut self, _timeout: Duration, f: &mut dyn FnMut(&[u8])) -> Res<bool> {
        take(&self.rx, f)
    }

    fn on_peer(&mut self, name: &str) -> Res<()> {
        let tx = self.tx.as_ref().ok_or("peer after GO")?.clone();
        let boot_tx = self.boot_tx.as_ref().ok_or("peer after GO")?.clone();
        IpcSender::<Boot>::connect(name.to_string())?.send((tx.to_opaque(), boot_tx))?;
        Ok(())
    }

    fn on_go(&mut self) -> Res<()> {
        self.tx = None;
        self.boot_tx = None;
        if self.wants_reply {
            self.reply = Some(self.boot_rx.recv().map_err(|e| format!("{e:?}"))?);
        }
        Ok(())
    }
}

impl End for Sending {
    fn send(&mut self, data: &[u8]) -> Res<()> {
        put(&mut self.tx, data)
    }

    fn recv(&mut self, _timeout: Duration, f: &mut dyn FnMut(&[u8])) -> Res<bool> {
        let rx = self.reply.as_ref().ok_or("no reply channel")?;
        take(rx, f)
    }
}
