//! `busbar::channel`: ipc-channel's own test cases, ported and named after
//! the originals (its `src/test.rs` and `src/platform/test.rs`), plus the
//! gaps ipc-channel's users live with (#275, #378, #240, #112). Cases that
//! need two processes spawn `busbar-chan-peer`.

use busbar::channel::{
    self, bytes_channel, BytesSender, OneShotServer, Receiver, ReceiverSet, Selection, Sender,
};
use busbar::{RecvError, SendError};
use busbar_tests::chan::{Carry, Cmd};
use serde::{Deserialize, Serialize};
use std::process::{Child, Command};
use std::time::Duration;

/// A hang guard, never a measure: every receive here gets this long.
const GUARD: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Person {
    name: String,
    age: u32,
}

fn person() -> Person {
    Person {
        name: "Patrick Walton".into(),
        age: 29,
    }
}

fn peer(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_busbar-chan-peer"))
        .args(args)
        .spawn()
        .expect("spawn busbar-chan-peer")
}

fn wait_ok(mut child: Child) {
    let status = child.wait().expect("wait for the peer");
    assert!(status.success(), "peer failed: {status}");
}

#[test]
fn simple() {
    let (tx, rx) = channel::channel::<Person>().expect("channel");
    tx.send(person()).expect("send");
    assert_eq!(rx.recv_timeout(GUARD).expect("recv"), person());
    drop(tx);
    assert!(matches!(rx.recv(), Err(RecvError::Disconnected)));
}

#[test]
fn embedded_senders() {
    let (sub_tx, sub_rx) = channel::channel::<Person>().expect("channel");
    let (super_tx, super_rx) = channel::channel::<Sender<Person>>().expect("channel");
    super_tx.send(sub_tx).expect("send");
    let sub_tx = super_rx.recv_timeout(GUARD).expect("recv");
    sub_tx.send(person()).expect("send");
    assert_eq!(sub_rx.recv_timeout(GUARD).expect("recv"), person());
}

/// ipc-channel's `opaque_sender`: a sender with its type forgotten, typed
/// again; here it also travels inside a message first.
#[test]
fn opaque_sender() {
    let (tx, rx) = channel::channel::<Person>().expect("channel");
    let opaque = tx.to_opaque();
    let tx: Sender<Person> = opaque.clone().to();
    tx.send(person()).expect("send");
    assert_eq!(rx.recv_timeout(GUARD).expect("recv"), person());
    let (carrier, carried) = channel::channel::<channel::OpaqueSender>().expect("channel");
    carrier.send(opaque).expect("send the opaque sender");
    let travelled: Sender<Person> = carried.recv_timeout(GUARD).expect("recv").to();
    travelled.send(person()).expect("send");
    assert_eq!(rx.recv_timeout(GUARD).expect("recv"), person());
}

#[test]
fn embedded_receivers() {
    let (sub_tx, sub_rx) = channel::channel::<Person>().expect("channel");
    let (super_tx, super_rx) = channel::channel::<Receiver<Person>>().expect("channel");
    sub_tx.send(person()).expect("send before it moves");
    super_tx.send(sub_rx).expect("send the receiver");
    let sub_rx = super_rx.recv_timeout(GUARD).expect("recv");
    sub_tx.send(person()).expect("send after it moved");
    assert_eq!(sub_rx.recv_timeout(GUARD).expect("recv"), person());
    assert_eq!(sub_rx.recv_timeout(GUARD).expect("recv"), person());
}

#[test]
fn bytes() {
    let (tx, rx) = bytes_channel().expect("channel");
    tx.send(b"1234567").expect("send");
    assert_eq!(rx.recv_timeout(GUARD).expect("recv"), b"1234567");
    let big = vec![0xa5u8; 3 << 20];
    tx.send(&big).expect("send big");
    assert!(rx.recv_with(|b| b == &big[..]).expect("recv_with"));
}

/// A `serve` peer and the sender of its commands.
fn serve_peer() -> (Child, Sender<Cmd>) {
    let (server, name) = OneShotServer::<Sender<Cmd>>::new().expect("server");
    let child = peer(&["serve", &name]);
    let (_rx, cmds) = server.accept().expect("accept");
    (child, cmds)
}

#[test]
fn cross_process_embedded_senders() {
    let (server0, name0) = OneShotServer::<Sender<(String, u32)>>::new().expect("server");
    let (server2, name2) = OneShotServer::<(String, u32)>::new().expect("server");
    let child = peer(&["embedded-senders", &name0, &name2]);
    let (_rx0, tx1) = server0.accept().expect("accept 0");
    let person = ("Patrick Walton".to_string(), 29);
    tx1.send(person.clone()).expect("send");
    let (_rx2, received) = server2.accept().expect("accept 2");
    assert_eq!(received, person);
    wait_ok(child);
}

#[test]
fn cross_process_sender_transfer() {
    // Senders and receivers both ways: the peer answers on a sender we
    // made, and sends us a receiver it made.
    let (child, cmds) = serve_peer();
    let (tx, rx) = channel::channel::<String>().expect("channel");
    cmds.send(Cmd::Echo("over there and back".into(), tx))
        .expect("send");
    assert_eq!(rx.recv_timeout(GUARD).expect("echo"), "over there and back");
    let (senders, from_senders) = channel::channel::<Sender<u64>>().expect("channel");
    let (receivers, from_receivers) = channel::channel::<Receiver<u64>>().expect("channel");
    cmds.send(Cmd::MakeChannels(3, senders, receivers))
        .expect("send");
    for n in 0..3u64 {
        let their_tx = from_senders.recv_timeout(GUARD).expect("a sender");
        let their_rx = from_receivers.recv_timeout(GUARD).expect("a receiver");
        assert_eq!(their_rx.recv_timeout(GUARD).expect("queued"), n);
        their_tx.send(100 + n).expect("send on their sender");
        assert_eq!(their_rx.recv_timeout(GUARD).expect("ours"), 100 + n);
        drop(their_tx);
        assert!(matches!(their_rx.recv(), Err(RecvError::Disconnected)));
    }
    drop(cmds);
    wait_ok(child);
}

#[test]
fn shared_memory() {
    let (child, cmds) = serve_peer();
    let shared = channel::SharedBytes::from_byte(0xba, 1 << 20).expect("shared");
    let (tx, rx) = channel::channel::<u64>().expect("channel");
    cmds.send(Cmd::Sum(shared.clone(), tx)).expect("send");
    assert_eq!(rx.recv_timeout(GUARD).expect("sum"), 0xba * (1 << 20));
    assert_eq!(shared[0], 0xba);
    drop(cmds);
    wait_ok(child);
}

/// ipc-channel's `big_data_with_n_fds` for n = 0..=64 (and `big_data`,
/// `medium_data`): data of several sizes with `n` shared memories, to
/// another process and back.
#[test]
fn big_data_with_n_fds() {
    let (child, cmds) = serve_peer();
    for (n, size) in [
        (0, 1 << 20),
        (1, 1 << 20),
        (8, 65_536),
        (16, 100_000),
        (32, 4_000),
        (64, 1 << 20),
    ] {
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let shared: Vec<_> = (0..n)
            .map(|i| channel::SharedBytes::from_byte(i as u8, 10 + i).expect("shared"))
            .collect();
        let (tx, rx) = channel::channel().expect("channel");
        cmds.send(Cmd::EchoAll(data.clone(), shared, tx))
            .expect("send");
        let (got, shared): (Vec<u8>, Vec<channel::SharedBytes>) =
            rx.recv_timeout(GUARD).expect("echo");
        assert_eq!(got, data, "{n} fds");
        assert_eq!(shared.len(), n);
        for (i, s) in shared.iter().enumerate() {
            assert_eq!(&**s, &vec![i as u8; 10 + i][..]);
        }
    }
    drop(cmds);
    wait_ok(child);
}

#[test]
fn huge_data() {
    let (child, cmds) = serve_peer();
    let (tx, rx) = channel::channel().expect("channel");
    let data: Vec<u8> = (0..48 << 20).map(|i: u32| (i % 253) as u8).collect();
    cmds.send(Cmd::EchoAll(data.clone(), Vec::new(), tx))
        .expect("send");
    let (got, _): (Vec<u8>, Vec<channel::SharedBytes>) = rx.recv_timeout(GUARD).expect("echo");
    assert!(got == data);
    drop(cmds);
    wait_ok(child);
}

/// Three processes send on clones of one sender at once: every message
/// arrives, each process's in order.
#[test]
fn concurrent_senders() {
    const COUNT: u32 = 2_000;
    let (tx, rx) = bytes_channel().expect("channel");
    let peers: Vec<_> = (0..3)
        .map(|_| {
            let (child, cmds) = serve_peer();
            cmds.send(Cmd::Flood(tx.clone(), COUNT, 100 + 3000 * child.id() % 7))
                .expect("send");
            (child, cmds)
        })
        .collect();
    drop(tx);
    let mut next = std::collections::HashMap::<usize, u32>::new();
    let mut got = 0;
    loop {
        match rx.recv_timeout(GUARD) {
            Ok(m) => {
                let n = next.entry(m.len()).or_default();
                assert_eq!(m[0], *n as u8, "in order per sender");
                *n += 1;
                got += 1;
            }
            Err(RecvError::Disconnected) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got, 3 * COUNT);
    for (child, cmds) in peers {
        drop(cmds);
        wait_ok(child);
    }
}

#[test]
fn no_senders_notification() {
    let (child, cmds) = serve_peer();
    let (tx, rx) = channel::channel::<u64>().expect("channel");
    cmds.send(Cmd::Count(tx, 10)).expect("send");
    for n in 0..10 {
        assert_eq!(rx.recv_timeout(GUARD).expect("queued first"), n);
    }
    assert!(matches!(
        rx.recv_timeout(GUARD),
        Err(RecvError::Disconnected)
    ));
    drop(cmds);
    wait_ok(child);
    // A sender whose process is killed counts as gone too.
    let (mut child, cmds) = serve_peer();
    let (tx, rx) = channel::channel::<u64>().expect("channel");
    cmds.send(Cmd::Hold(channel::channel().expect("channel").1))
        .expect("send");
    let (keep_tx, keep_rx) = channel::channel::<String>().expect("channel");
    cmds.send(Cmd::Echo("sent".into(), keep_tx)).expect("send");
    keep_rx.recv_timeout(GUARD).expect("the peer runs");
    let (echo, from_echo) = channel::channel::<String>().expect("channel");
    // The peer holds a sender of `rx` (through a Count of 0 it drops, and
    // this echo it answers on): then it is killed.
    cmds.send(Cmd::Count(tx, 0)).expect("send");
    cmds.send(Cmd::Echo("x".into(), echo)).expect("send");
    from_echo.recv_timeout(GUARD).expect("echo");
    child.kill().expect("kill");
    child.wait().expect("wait");
    assert!(matches!(
        rx.recv_timeout(GUARD),
        Err(RecvError::Disconnected)
    ));
}

#[test]
fn no_receiver_notification() {
    let (mut child, cmds) = serve_peer();
    let (tx, rx) = channel::channel::<Vec<u8>>().expect("channel");
    tx.send(vec![1]).expect("send");
    cmds.send(Cmd::Hold(rx)).expect("send");
    child.kill().expect("kill");
    child.wait().expect("wait");
    // The holder died: the next sends fail (the first may still land in
    // the dead receiver's ring before the hang-up is seen).
    let mut outcome = Ok(());
    for _ in 0..1_000_000 {
        outcome = tx.send(vec![2; 1000]);
        if outcome.is_err() {
            break;
        }
    }
    assert!(
        matches!(outcome, Err(SendError::Disconnected)),
        "{outcome:?}"
    );
    drop(cmds);
}

/// ipc-channel #275: `send` blocks forever when the receiver stops
/// reading. Here `try_send` says `Full`, `send_timeout` gives up, and a
/// blocked `send` returns `Disconnected` when the holder dies.
#[test]
fn stopped_receiver_try_send() {
    let (mut child, cmds) = serve_peer();
    let (tx, rx) = channel::channel::<Vec<u8>>().expect("channel");
    cmds.send(Cmd::Hold(rx)).expect("send");
    let mut sent = 0usize;
    let full = loop {
        match tx.try_send(vec![7; 4000]) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent < 1_000_000, "never full");
    };
    assert!(matches!(full, SendError::Full { .. }), "{full:?}");
    assert!(sent * 4000 >= channel::CAPACITY / 2, "{sent} sent first");
    let e = tx
        .send_timeout(vec![7; 4000], Duration::from_millis(20))
        .expect_err("still full");
    assert!(matches!(e, SendError::Full { .. }), "{e:?}");
    let blocked = std::thread::spawn(move || tx.send(vec![7; 4000]));
    child.kill().expect("kill");
    child.wait().expect("wait");
    let e = blocked.join().expect("join").expect_err("the holder died");
    assert!(matches!(e, SendError::Disconnected), "{e:?}");
    drop(cmds);
}

/// ipc-channel #378: a second `connect` to a one-shot server was lost.
/// Two clients race to connect; one is accepted, the other refused.
#[test]
fn second_connect_refused() {
    let (server, name) = OneShotServer::<String>::new().expect("server");
    let a = peer(&["connect", &name]);
    let b = peer(&["connect", &name]);
    let (_rx, first) = server.accept().expect("accept");
    assert_eq!(first, "connected");
    let codes: Vec<_> = [a, b]
        .into_iter()
        .map(|mut c| c.wait().expect("wait").code())
        .collect();
    codes
        .iter()
        .for_each(|c| assert!(matches!(c, Some(0) | Some(3)), "{codes:?}"));
    assert_eq!(
        codes.iter().filter(|c| **c == Some(0)).count(),
        1,
        "{codes:?}"
    );
    // And one more, after: refused at once.
    let e = Sender::<String>::connect(&name).expect_err("refused");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[test]
fn one_shot_server_accept_first() {
    let (server, name) = OneShotServer::<String>::new().expect("server");
    let accepting = std::thread::spawn(move || server.accept());
    let child = peer(&["connect", &name]);
    let (_rx, first) = accepting.join().expect("join").expect("accept");
    assert_eq!(first, "connected");
    wait_ok(child);
}

#[test]
fn one_shot_server_connect_first() {
    let (server, name) = OneShotServer::<String>::new().expect("server");
    let child = peer(&["connect", &name]);
    // The client connects (and waits for the verdict) before we accept.
    let (_rx, first) = server.accept().expect("accept");
    assert_eq!(first, "connected");
    wait_ok(child);
}

/// ipc-channel's router tests: a process that forwards everything from
/// one channel to another, in order, until its senders are gone.
#[test]
fn router_like_forwarding() {
    let (child, cmds) = serve_peer();
    let (in_tx, in_rx) = bytes_channel().expect("channel");
    let (out_tx, out_rx) = bytes_channel().expect("channel");
    cmds.send(Cmd::Forward(in_rx, out_tx)).expect("send");
    for n in 0..1000u32 {
        in_tx.send(&n.to_le_bytes()).expect("send");
    }
    in_tx.send(&vec![9; 1 << 20]).expect("send big");
    drop(in_tx);
    for n in 0..1000u32 {
        assert_eq!(
            out_rx.recv_timeout(GUARD).expect("forwarded"),
            n.to_le_bytes()
        );
    }
    assert_eq!(out_rx.recv_timeout(GUARD).expect("big").len(), 1 << 20);
    assert!(matches!(
        out_rx.recv_timeout(GUARD),
        Err(RecvError::Disconnected)
    ));
    drop(cmds);
    wait_ok(child);
}

/// A channel's sender inside a bus message: the other endpoint answers on it.
#[test]
fn channel_ends_travel_in_bus_messages() {
    let bus = format!("test.chan.bus.{}", std::process::id());
    let child = peer(&["bus", &bus]);
    let options = busbar::Options::new(&bus, busbar::label!("chan-test"), "chan-token");
    let (bus_tx, _bus_rx) = busbar::join::<Carry, Carry>(options, None).expect("join");
    let (tx, rx) = channel::channel::<String>().expect("channel");
    let to_peer = busbar::Selector::unicast("chan-peer").ttl(GUARD);
    bus_tx
        .send(busbar::Message::new(to_peer, Carry { reply: tx }))
        .expect("send on the bus");
    assert_eq!(rx.recv_timeout(GUARD).expect("answer"), "via bus");
    wait_ok(child);
}

#[test]
fn bytes_sender_travels_and_flood_arrives() {
    let (child, cmds) = serve_peer();
    let (tx, rx) = bytes_channel().expect("channel");
    cmds.send(Cmd::Flood(tx, 300, 70_000)).expect("send");
    for n in 0..300u32 {
        let ok = rx
            .recv_with(|b| b.len() == 70_000 && b.iter().all(|&x| x == n as u8))
            .expect("recv");
        assert!(ok, "message {n}");
    }
    assert!(matches!(
        rx.recv_timeout(GUARD),
        Err(RecvError::Disconnected)
    ));
    drop(cmds);
    wait_ok(child);
    let _ = BytesSender::connect;
}

#[test]
fn select() {
    let (tx0, rx0) = channel::channel::<Person>().expect("channel");
    let (tx1, rx1) = channel::channel::<Person>().expect("channel");
    let mut set = ReceiverSet::new().expect("set");
    let id0 = set.add(rx0).expect("add");
    let id1 = set.add(rx1).expect("add");
    tx0.send(person()).expect("send");
    let got = set.select(Some(GUARD)).expect("select");
    assert_eq!(got.len(), 1);
    match got.into_iter().next() {
        Some(Selection::Message(id, m)) => {
            assert_eq!(id, id0);
            assert_eq!(m.take::<Person>().expect("a Person"), person());
        }
        other => panic!("{other:?}"),
    }
    tx1.send(person()).expect("send");
    match set.select(Some(GUARD)).expect("select").into_iter().next() {
        Some(Selection::Message(id, _)) => assert_eq!(id, id1),
        other => panic!("{other:?}"),
    }
    drop(tx0);
    let got = set.select(Some(GUARD)).expect("select");
    assert!(
        matches!(got[..], [Selection::Closed(id)] if id == id0),
        "{got:?}"
    );
}

#[test]
fn try_select() {
    let (tx, rx) = channel::channel::<u8>().expect("channel");
    let mut set = ReceiverSet::new().expect("set");
    set.add(rx).expect("add");
    assert!(set.select(Some(Duration::ZERO)).expect("select").is_empty());
    tx.send(1).expect("send");
    // Sent before the look: there now.
    assert_eq!(set.select(Some(Duration::ZERO)).expect("select").len(), 1);
}

#[test]
fn select_timeout() {
    let (_tx, rx) = channel::channel::<u8>().expect("channel");
    let mut set = ReceiverSet::new().expect("set");
    set.add(rx).expect("add");
    assert!(set
        .select(Some(Duration::from_millis(20)))
        .expect("select")
        .is_empty());
    let (_tx, rx) = channel::channel::<u8>().expect("channel");
    assert!(matches!(
        rx.recv_timeout(Duration::from_millis(20)),
        Err(RecvError::Timeout)
    ));
}

/// ipc-channel's `receiver_set`, across processes and with a bus
/// receiver among the channels: three peer processes send on channels,
/// a bus endpoint gets messages too; one select loop takes everything.
#[test]
fn receiver_set() {
    const COUNT: u64 = 300;
    let mut set = ReceiverSet::new().expect("set");
    let mut peers = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (child, cmds) = serve_peer();
        let (tx, rx) = channel::channel::<u64>().expect("channel");
        cmds.send(Cmd::Count(tx, COUNT)).expect("send");
        ids.push(set.add(rx).expect("add"));
        peers.push((child, cmds));
    }
    let bus = format!("test.chan.set.{}", std::process::id());
    let options = busbar::Options::new(&bus, busbar::label!("set"), "t");
    let (bus_tx, bus_rx) = busbar::join::<u64, u64>(options, None).expect("join");
    let bus_id = set.add(bus_rx).expect("add a bus receiver");
    for n in 0..COUNT {
        bus_tx
            .send(busbar::Message::new(busbar::Selector::unicast("set"), n))
            .expect("bus send");
    }
    let mut next = std::collections::HashMap::<u64, u64>::new();
    let mut closed = 0;
    let mut bus_got = 0;
    while closed < 3 || bus_got < COUNT {
        let got = set.select(Some(GUARD)).expect("select");
        assert!(!got.is_empty(), "nothing within the guard");
        for s in got {
            match s {
                Selection::Message(id, m) if id == bus_id => {
                    let m = m.take::<busbar::Message<u64>>().expect("a bus message");
                    assert_eq!(m.payload, bus_got);
                    bus_got += 1;
                }
                Selection::Message(id, m) => {
                    let n = next.entry(id).or_default();
                    assert_eq!(m.take::<u64>().expect("a u64"), *n);
                    *n += 1;
                }
                Selection::Closed(id) => {
                    assert!(ids.contains(&id));
                    assert_eq!(next.get(&id), Some(&COUNT));
                    closed += 1;
                }
                Selection::Failed(id, e) => panic!("{id}: {e}"),
            }
        }
    }
    for (child, cmds) in peers {
        drop(cmds);
        wait_ok(child);
    }
}

/// ipc-channel #112: a receiver in the application's own event loop,
/// with no thread of ours: poll the receiver's descriptor, `try_recv`
/// until `Empty`, poll again.
#[test]
fn receiver_in_own_event_loop() {
    use std::os::fd::AsFd;
    let (child, cmds) = serve_peer();
    let (tx, rx) = bytes_channel().expect("channel");
    cmds.send(Cmd::Flood(tx, 500, 200)).expect("send");
    // Asked for once, before the first receive (the contract).
    let fd = rx.as_fd().try_clone_to_owned().expect("dup");
    let mut got = 0u32;
    'outer: loop {
        loop {
            match rx.try_recv() {
                Ok(m) => {
                    assert_eq!(m, busbar_tests::chan::flood_message(got, 200));
                    got += 1;
                }
                Err(RecvError::Empty) => break,
                Err(RecvError::Disconnected) => break 'outer,
                Err(e) => panic!("{e}"),
            }
        }
        let mut fds = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::IN,
        )];
        let guard = rustix::time::Timespec {
            tv_sec: GUARD.as_secs() as i64,
            tv_nsec: 0,
        };
        let n = rustix::event::poll(&mut fds, Some(&guard)).expect("poll");
        assert!(n > 0, "nothing within the guard after {got}");
    }
    assert_eq!(got, 500);
    drop(cmds);
    wait_ok(child);
}
