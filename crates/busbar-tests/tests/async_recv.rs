//! Feature `tokio`: `recv_async()` and `Stream` on the receivers, on one
//! current-thread runtime (so no thread per receiver can be hiding), with
//! sources in other processes; and cancel safety: a `recv_async()` future
//! dropped again and again loses no message.

use busbar::channel::{self, OneShotServer, Sender};
use busbar::ring::RingReceiver;
use busbar::{AsyncReceiver, RecvError};
use busbar_tests::chan::Cmd;
use busbar_tests::named_ring::{intact, Msg};
use futures_core::Stream;
use std::future::Future;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::task::Poll;
use std::time::Duration;

const GUARD: Duration = Duration::from_secs(60);

fn ring_peer(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_busbar-ring-peer"))
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn busbar-ring-peer")
}

fn chan_peer() -> (Child, Sender<Cmd>) {
    let (server, name) = OneShotServer::<Sender<Cmd>>::new().expect("server");
    let child = Command::new(env!("CARGO_BIN_EXE_busbar-chan-peer"))
        .args(["serve", &name])
        .spawn()
        .expect("spawn busbar-chan-peer");
    let (_rx, cmds) = server.accept().expect("accept");
    (child, cmds)
}

fn wait_ok(mut child: Child) {
    let status = child.wait().expect("wait for the peer");
    assert!(status.success(), "peer failed: {status}");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .expect("runtime")
}

async fn next<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

fn ring_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("busbar-async-{name}-{}", std::process::id()))
}

/// Three sources in three other processes (a named ring, a channel, a bus
/// endpoint), received at once on one thread: the ring as a `Stream`, the
/// others with `recv_async()`.
#[test]
fn tokio_three_sources_across_processes() {
    const COUNT: u64 = 300;
    let path = ring_path("three");
    let mut ring = RingReceiver::create(&path, 1 << 16).expect("ring");
    let ring_kid = ring_peer(&[
        "send",
        path.to_str().unwrap(),
        "5",
        &COUNT.to_string(),
        "64",
        "0",
    ]);
    let (chan_kid, cmds) = chan_peer();
    let (tx, mut chan_rx) = channel::channel::<u64>().expect("channel");
    cmds.send(Cmd::Count(tx, COUNT)).expect("send the command");
    let bus = format!("test.async.{}", std::process::id());
    let (_bus_tx, mut bus_rx) = busbar::join::<u64, u64>(
        busbar::Options::new(&bus, busbar::label!("async"), "t"),
        None,
    )
    .expect("join");
    let bus_kid = ring_peer(&["bus", &bus, &COUNT.to_string()]);

    runtime().block_on(async {
        let from_ring = async {
            let mut stream = ring.stream::<Msg>();
            let mut n = 0;
            while let Some(m) = tokio::time::timeout(GUARD, next(&mut stream))
                .await
                .expect("hang guard")
            {
                let m = m.expect("ring message");
                assert!(intact(&m));
                assert_eq!(m.seq, n);
                n += 1;
            }
            // The stream ended: the sender is gone.
            assert_eq!(n, COUNT);
        };
        let from_chan = async {
            for n in 0..COUNT {
                let got = tokio::time::timeout(GUARD, chan_rx.recv_async())
                    .await
                    .expect("hang guard");
                assert_eq!(got.expect("channel message"), n);
            }
            let end = tokio::time::timeout(GUARD, chan_rx.recv_async())
                .await
                .expect("hang guard");
            assert!(matches!(end, Err(RecvError::Disconnected)));
        };
        let from_bus = async {
            for n in 0..COUNT {
                let got = tokio::time::timeout(GUARD, bus_rx.recv_async())
                    .await
                    .expect("hang guard");
                assert_eq!(got.expect("bus message").payload, n);
            }
        };
        tokio::join!(from_ring, from_chan, from_bus);
    });
    drop(cmds);
    wait_ok(ring_kid);
    wait_ok(chan_kid);
    wait_ok(bus_kid);
}

/// A `recv_async()` raced against a short timer and dropped whenever the
/// timer wins, thousands of times, while a sender in another process
/// sends: every message arrives, in order (a named ring, then a channel).
#[test]
fn recv_async_is_cancel_safe() {
    const COUNT: u64 = 2000;
    let path = ring_path("cancel");
    let mut ring = RingReceiver::create(&path, 1 << 14).expect("ring");
    // One message a millisecond: most receives find nothing yet.
    let ring_kid = ring_peer(&["send", path.to_str().unwrap(), "6", "500", "200", "1"]);
    let (chan_kid, cmds) = chan_peer();
    let (tx, mut chan_rx) = channel::channel::<u64>().expect("channel");
    cmds.send(Cmd::Count(tx, COUNT)).expect("send the command");
    let rt = runtime();
    let mut dropped = 0u64;
    rt.block_on(async {
        let mut n = 0;
        let start = std::time::Instant::now();
        while n < 500 {
            // Polled once, then dropped if it is pending: the message it
            // was waiting for must come to the next one.
            let mut fut = ring.recv_async::<Msg>();
            let first = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut fut).poll(cx))).await;
            drop(fut);
            let m = match first {
                Poll::Ready(m) => m,
                Poll::Pending => {
                    dropped += 1;
                    tokio::select! {
                        m = ring.recv_async::<Msg>() => m,
                        _ = tokio::time::sleep(Duration::from_micros(20)) => {
                            dropped += 1;
                            continue;
                        }
                    }
                }
            };
            let m = m.expect("ring message");
            assert!(intact(&m));
            assert_eq!(m.seq, n, "a message was lost or reordered");
            n += 1;
            assert!(start.elapsed() < GUARD, "hang guard");
        }
        let mut n = 0;
        while n < COUNT {
            tokio::select! {
                m = chan_rx.recv_async() => {
                    assert_eq!(m.expect("channel message"), n, "a message was lost or reordered");
                    n += 1;
                }
                _ = tokio::time::sleep(Duration::from_micros(20)) => dropped += 1,
            }
            assert!(start.elapsed() < GUARD, "hang guard");
        }
    });
    eprintln!("{dropped} recv_async futures dropped before they finished");
    drop(cmds);
    wait_ok(ring_kid);
    wait_ok(chan_kid);
}
