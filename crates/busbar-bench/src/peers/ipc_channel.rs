//! ipc-channel: its byte channel (`IpcBytesSender::send(&[u8])`,
//! `IpcBytesReceiver::recv() -> Vec<u8>`), the library's fastest way to move
//! bytes (no serde on the payload). Bootstrapped the usual way: each sending
//! process opens an `IpcOneShotServer` and prints its name; the receiving
//! process connects to it and sends the sender half of its channel (plus a
//! channel for the ponger's reply sender). Many senders → one receiver is
//! clones of one `IpcBytesSender`. There is no multicast.

use super::End;
use crate::proc::{Args, Ctl};
use crate::Res;
use ipc_channel::ipc::{
    self, IpcBytesReceiver, IpcBytesSender, IpcOneShotServer, IpcReceiver, IpcSender,
};
use std::time::Duration;

/// What the receiving side hands each sending side: where to send, and
/// where to send a sender for replies.
type Boot = (IpcBytesSender, IpcSender<IpcBytesSender>);

/// The receiving side (`sink`, `pong`).
struct Receiving {
    rx: IpcBytesReceiver,
    /// Kept until `GO` so that the channel does not close before every
    /// sender has its clone; dropped then so that it closes when they exit.
    tx: Option<IpcBytesSender>,
    boot_tx: Option<IpcSender<IpcBytesSender>>,
    boot_rx: IpcReceiver<IpcBytesSender>,
    reply: Option<IpcBytesSender>,
    wants_reply: bool,
}

/// The sending side (`source`, `ping`).
struct Sending {
    tx: IpcBytesSender,
    reply: Option<IpcBytesReceiver>,
}

pub fn open(role: &str, _args: &Args, ctl: &Ctl) -> Res<Box<dyn End>> {
    match role {
        "sink" | "pong" => {
            let (tx, rx) = ipc::bytes_channel()?;
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
                let (reply_tx, reply_rx) = ipc::bytes_channel()?;
                boot_tx.send(reply_tx)?;
                Some(reply_rx)
            } else {
                None
            };
            Ok(Box::new(Sending { tx, reply }))
        }
        _ => Err(format!("ipc-channel has no role {role}").into()),
    }
}

impl End for Receiving {
    fn send(&mut self, data: &[u8]) -> Res<()> {
        let reply = self.reply.as_ref().ok_or("no reply channel")?;
        reply.send(data)?;
        Ok(())
    }

    /// `IpcBytesReceiver` has no timed receive: this blocks until a message
    /// comes or every sender is gone (the parent's timeout covers hangs).
    fn recv(&mut self, _timeout: Duration, f: &mut dyn FnMut(&[u8])) -> Res<bool> {
        match self.rx.recv() {
            Ok(data) => {
                f(&data);
                Ok(true)
            }
            Err(ipc_channel::IpcError::Disconnected) => Ok(false),
            Err(e) => Err(format!("{e:?}").into()),
        }
    }

    fn on_peer(&mut self, name: &str) -> Res<()> {
        let tx = self.tx.as_ref().ok_or("peer after GO")?.clone();
        let boot_tx = self.boot_tx.as_ref().ok_or("peer after GO")?.clone();
        IpcSender::<Boot>::connect(name.to_string())?.send((tx, boot_tx))?;
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
        self.tx.send(data)?;
        Ok(())
    }

    fn recv(&mut self, _timeout: Duration, f: &mut dyn FnMut(&[u8])) -> Res<bool> {
        let rx = self.reply.as_ref().ok_or("no reply channel")?;
        match rx.recv() {
            Ok(data) => {
                f(&data);
                Ok(true)
            }
            Err(ipc_channel::IpcError::Disconnected) => Ok(false),
            Err(e) => Err(format!("{e:?}").into()),
        }
    }
}
