//! busbar's channels (`busbar::channel`), set up exactly as the
//! ipc-channel peer is, for a side-by-side comparison: its byte channel
//! (`BytesSender::send(&[u8])`, `BytesReceiver::recv_timeout -> Vec<u8>`,
//! one copy out like ipc-channel's `recv`). Each sending process opens a
//! `OneShotServer` and prints its name; the receiving process connects
//! and sends the sender half of its channel (and a sender for the
//! ponger's reply sender). Many senders → one receiver is clones of one
//! `BytesSender` (each process makes its own link). No multicast.

use super::End;
use crate::proc::{Args, Ctl};
use crate::Res;
use busbar::channel::{self, BytesReceiver, BytesSender, OneShotServer, Receiver, Sender};
use busbar::RecvError;
use std::time::Duration;

/// What the receiving side hands each sending side.
type Boot = (BytesSender, Sender<BytesSender>);

/// The receiving side (`sink`, `pong`).
struct Receiving {
    rx: BytesReceiver,
    /// Kept until `GO`, as the ipc-channel peer does.
    tx: Option<BytesSender>,
    boot_tx: Option<Sender<BytesSender>>,
    boot_rx: Receiver<BytesSender>,
    reply: Option<BytesSender>,
    wants_reply: bool,
}

/// The sending side (`source`, `ping`).
struct Sending {
    tx: BytesSender,
    reply: Option<BytesReceiver>,
}

pub fn open(role: &str, _args: &Args, ctl: &Ctl) -> Res<Box<dyn End>> {
    match role {
        "sink" | "pong" => {
            let (tx, rx) = channel::bytes_channel()?;
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
                let (reply_tx, reply_rx) = channel::bytes_channel()?;
                boot_tx.send(reply_tx)?;
                Some(reply_rx)
            } else {
                None
            };
            Ok(Box::new(Sending { tx, reply }))
        }
        _ => Err(format!("busbar channels have no role {role}").into()),
    }
}

/// One message within `timeout`, handed to `f`.
fn take(rx: &BytesReceiver, timeout: Duration, f: &mut dyn FnMut(&[u8])) -> Res<bool> {
    match rx.recv_timeout(timeout) {
        Ok(data) => {
            f(&data);
            Ok(true)
        }
        Err(RecvError::Timeout | RecvError::Disconnected) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

impl End for Receiving {
    fn send(&mut self, data: &[u8]) -> Res<()> {
        let reply = self.reply.as_ref().ok_or("no reply channel")?;
        reply.send(data)?;
        Ok(())
    }

    fn recv(&mut self, timeout: Duration, f: &mut dyn FnMut(&[u8])) -> Res<bool> {
        take(&self.rx, timeout, f)
    }

    fn on_peer(&mut self, name: &str) -> Res<()> {
        let tx = self.tx.as_ref().ok_or("peer after GO")?.clone();
        let boot_tx = self.boot_tx.as_ref().ok_or("peer after GO")?.clone();
        Sender::<Boot>::connect(name)?.send((tx, boot_tx))?;
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
        self.tx.send(data)?;
        Ok(())
    }

    fn recv(&mut self, timeout: Duration, f: &mut dyn FnMut(&[u8])) -> Res<bool> {
        let rx = self.reply.as_ref().ok_or("no reply channel")?;
        take(rx, timeout, f)
    }
}
