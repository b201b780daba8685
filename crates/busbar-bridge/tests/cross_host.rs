//! Buses on two or three "hosts" (distinct bus names on this machine, each
//! with its own busbar-bridge process, the bridges connected over
//! tcp/127.0.0.1 with scouting off), and what crosses between them.

mod common;

use busbar::{label, Message, Selector};
use common::*;

#[test]
fn unicast_across_and_answer_the_source() {
    let (bus_a, bus_b) = (bus("uni-a"), bus("uni-b"));
    let a = Bridge::start(&bus_a, "a", "alice", &[]);
    let _b = Bridge::start(&bus_b, "b", "bob", &[a.port]);
    let (alice, mut alice_rx) = join::<String>(&bus_a, label!("alice"));
    let (bob, mut bob_rx) = join::<String>(&bus_b, label!("bob"));

    // Alice's sender does not know bob is elsewhere: a ttl waits for him to appear.
    let to_bob = Selector::unicast("bob").ttl(GUARD);
    alice
        .send(Message::new(to_bob, "hello, bob".to_string()))
        .expect("send");
    let m = bob_rx.recv(Some(GUARD)).expect("bob receives");
    assert_eq!(m.payload, "hello, bob");
    // The source is bob's view of alice: her labels plus her host.
    let d = bob.endpoints();
    let source = d.iter().find(|e| e.id == m.source).expect("source listed");
    assert!(source.label.contains("alice") && source.label.contains("@host:a"));

    // Answering the source, by id, with no ttl.
    bob.send(Message::new(
        Selector::endpoint(m.source),
        "hello, alice".to_string(),
    ))
    .expect("answer");
    let back = alice_rx.recv(Some(GUARD)).expect("alice receives");
    assert_eq!(back.payload, "hello, alice");
    let d = alice.endpoints();
    let source = d.iter().find(|e| e.id == back.source).expect("listed");
    assert!(source.label.contains("bob") && source.label.contains("@host:b"));
}

#[test]
fn bridge_endpoints_and_proxies_are_labelled() {
    let (bus_a, bus_b) = (bus("lab-a"), bus("lab-b"));
    let a = Bridge::start(&bus_a, "a", "x", &[]);
    let _b = Bridge::start(&bus_b, "b", "y", &[a.port]);
    let (_x, _xr) = join::<String>(&bus_a, label!("x", "cam"));
    let (y, _yr) = join::<String>(&bus_b, label!("y"));
    let d = wait_directory(&y, "x from a", |d| {
        !with(d, &["x", "cam", "@host:a"]).is_empty()
    });
    let proxy = with(&d, &["x", "@host:a"])[0];
    assert!(
        proxy.label.iter().any(|i| i.starts_with("@remote:")),
        "{proxy:?}"
    );
    assert_eq!(with(&d, &["@bridge", "@host:b"]).len(), 1, "{d:#?}");
}

#[test]
fn type_id_and_large_payloads_cross_intact() {
    let (bus_a, bus_b) = (bus("big-a"), bus("big-b"));
    let limit = "max_payload = 67174400"; // 64 MiB and change: the payload plus its length
    let a = Bridge::start_with(&bus_a, "a", "src", &[], limit);
    let _b = Bridge::start_with(&bus_b, "b", "dst", &[a.port], limit);
    let opts = |bus: &str, l| {
        let mut o = busbar::Options::new(bus, l, TOKEN);
        o.limits.max_payload = 67_174_400;
        o
    };
    let (src, _sr) =
        busbar::join::<Vec<u8>, Vec<u8>>(opts(&bus_a, label!("src")), Some(GUARD)).expect("join");
    let (_dst, mut dst_rx) =
        busbar::join::<Vec<u8>, Vec<u8>>(opts(&bus_b, label!("dst")), Some(GUARD)).expect("join");
    let big: Vec<u8> = (0..64usize << 20)
        .map(|i| (i * 31 + i / 4099) as u8)
        .collect();
    src.send(Message::new(
        Selector::unicast("dst").ttl(GUARD),
        big.clone(),
    ))
    .expect("send 64 MiB");
    let m = dst_rx.recv(Some(GUARD)).expect("receive 64 MiB");
    assert_eq!(m.payload.len(), big.len());
    assert!(m.payload == big, "64 MiB crossed intact");
}

#[test]
fn multicast_and_label_expressions_pick_endpoints_on_both_sides() {
    let (bus_a, bus_b) = (bus("mc-a"), bus("mc-b"));
    let a = Bridge::start(&bus_a, "a", "sensor | boss", &[]);
    let _b = Bridge::start(&bus_b, "b", "sensor", &[a.port]);
    let (boss, _boss_rx) = join::<String>(&bus_a, label!("boss"));
    let (_s1, mut s1) = join::<String>(&bus_a, label!("sensor", "left"));
    let (_s2, mut s2) = join::<String>(&bus_b, label!("sensor", "left"));
    let (_s3, mut s3) = join::<String>(&bus_b, label!("sensor", "right"));
    wait_directory(&boss, "both remote sensors", |d| {
        with(d, &["sensor", "@host:b"]).len() == 2
    });

    // Multicast reaches the local sensor and both remote ones.
    boss.send(Message::new(
        Selector::multicast("sensor"),
        "all".to_string(),
    ))
    .expect("multicast");
    for rx in [&mut s1, &mut s2, &mut s3] {
        assert_eq!(rx.recv(Some(GUARD)).expect("every sensor").payload, "all");
    }
    // An expression that picks one endpoint on each side.
    let pick: busbar::LabelOp = "sensor & (left & !\"@host:b\" | right & @host:b)"
        .parse()
        .expect("parses");
    boss.send(Message::new(
        Selector::multicast(pick),
        "picked".to_string(),
    ))
    .expect("multicast");
    assert_eq!(s1.recv(Some(GUARD)).expect("left on a").payload, "picked");
    assert_eq!(s3.recv(Some(GUARD)).expect("right on b").payload, "picked");
    // Then a marker to everyone: the left sensor on b got nothing before it.
    boss.send(Message::new(
        Selector::multicast("sensor"),
        "marker".to_string(),
    ))
    .expect("multicast");
    assert_eq!(s2.recv(Some(GUARD)).expect("marker").payload, "marker");
}

#[test]
fn requests_cross_and_answers_come_back() {
    let (bus_a, bus_b) = (bus("req-a"), bus("req-b"));
    let a = Bridge::start(&bus_a, "a", "client", &[]);
    let _b = Bridge::start(&bus_b, "b", "doubler", &[a.port]);
    let (doubler, mut doubler_rx) = join::<u64>(&bus_b, label!("doubler"));
    let served = std::thread::spawn(move || {
        let mut n = 0u64;
        loop {
            let m = doubler_rx.recv(Some(GUARD)).expect("a request");
            if !m.is_request() {
                return n; // The client's "done".
            }
            doubler.reply(&m, m.payload * 2).expect("reply");
            n += 1;
        }
    });
    let (client, _client_rx) = join::<u64>(&bus_a, label!("client"));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let client = client.clone();
            std::thread::spawn(move || {
                for i in 0..250u64 {
                    let x = t * 1_000_000 + i;
                    let to = Selector::unicast("doubler").ttl(GUARD);
                    let answer = client
                        .request::<u64>(Message::new(to, x), GUARD)
                        .expect("an answer");
                    assert_eq!(answer.payload, 2 * x, "the answer to this request");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("requester");
    }
    client
        .send(Message::new(Selector::unicast("doubler"), 0))
        .expect("done");
    assert_eq!(served.join().expect("server"), 1000);
}

#[test]
fn order_per_sender_over_100k_messages() {
    let (bus_a, bus_b) = (bus("ord-a"), bus("ord-b"));
    let a = Bridge::start(&bus_a, "a", "producer", &[]);
    let _b = Bridge::start(&bus_b, "b", "sink", &[a.port]);
    let (_sink, mut sink_rx) = join::<u64>(&bus_b, label!("sink"));
    let (producer, _p) = join::<u64>(&bus_a, label!("producer"));
    // Sent once the sink is listed, so that all 100k go straight through.
    wait_directory(&producer, "the sink", |d| {
        !with(d, &["sink", "@host:b"]).is_empty()
    });
    let to = Selector::unicast("sink");
    let sending = std::thread::spawn(move || {
        for i in 0..100_000u64 {
            producer.send(Message::new(to.clone(), i)).expect("send");
        }
        producer
    });
    let first = sink_rx.recv(Some(GUARD)).expect("first");
    assert_eq!(first.payload, 0);
    for i in 1..100_000u64 {
        let m = sink_rx.recv(Some(GUARD)).expect("next");
        assert_eq!(m.payload, i, "in order");
        assert_eq!(m.source, first.source, "one source");
    }
    drop(sending.join().expect("sender"));
}

#[test]
fn requests_keep_their_place_among_messages() {
    let (bus_a, bus_b) = (bus("rqo-a"), bus("rqo-b"));
    let a = Bridge::start(&bus_a, "a", "mixer", &[]);
    let _b = Bridge::start(&bus_b, "b", "checker", &[a.port]);
    let (checker, mut checker_rx) = join::<u64>(&bus_b, label!("checker"));
    let (mixer, _m) = join::<u64>(&bus_a, label!("mixer"));
    wait_directory(&mixer, "the checker", |d| {
        !with(d, &["checker", "@host:b"]).is_empty()
    });
    const N: u64 = 4000;
    let is_request = |i: u64| i % 4 == 1 || i % 97 == 0;
    // One thread sends messages and requests in one stream; another waits
    // for the answers.
    let (started, waiting) = std::sync::mpsc::channel();
    let sending = std::thread::spawn(move || {
        let to = Selector::unicast("checker");
        for i in 0..N {
            if is_request(i) {
                let pending = mixer
                    .request_start::<u64>(Message::new(to.clone(), i), GUARD)
                    .expect("request_start");
                started.send((i, pending)).expect("to the waiter");
            } else {
                mixer.send(Message::new(to.clone(), i)).expect("send");
            }
        }
    });
    let answers = std::thread::spawn(move || {
        let mut n = 0u64;
        for (i, pending) in waiting {
            let answer = pending.wait(GUARD).expect("an answer");
            assert_eq!(answer.payload, i + 1_000_000, "the answer to request {i}");
            n += 1;
        }
        n
    });
    for i in 0..N {
        let m = checker_rx.recv(Some(GUARD)).expect("next");
        assert_eq!(m.payload, i, "in the order sent");
        assert_eq!(m.is_request(), is_request(i), "message {i}");
        if m.is_request() {
            checker.reply(&m, i + 1_000_000).expect("reply");
        }
    }
    sending.join().expect("sender");
    let answered = answers.join().expect("waiter");
    assert_eq!(answered, (0..N).filter(|&i| is_request(i)).count() as u64);
}

#[test]
fn regions_are_copied_and_descriptors_refused() {
    let (bus_a, bus_b) = (bus("att-a"), bus("att-b"));
    let a = Bridge::start(&bus_a, "a", "src", &[]);
    let _b = Bridge::start(&bus_b, "b", "dst", &[a.port]);
    let (src, _sr) = join::<String>(&bus_a, label!("src"));
    let (_dst, mut dst_rx) = join::<String>(&bus_b, label!("dst"));
    let to = Selector::unicast("dst").ttl(GUARD);

    let (reader, _writer) = std::io::pipe().expect("pipe");
    let with_fd = Message::new(to.clone(), "with a descriptor".to_string())
        .with_object(busbar::Object::new(std::os::fd::OwnedFd::from(reader)));
    src.send(with_fd).expect("the local hop takes it");
    let mut region = busbar::MemoryRegion::new(1 << 20).expect("region");
    let filled: Vec<u8> = (0..1 << 20).map(|i: usize| (i % 251) as u8).collect();
    region.map(..).expect("map").copy_from_slice(&filled);
    src.send(Message::new(to, "with a region".to_string()).with_memory_region(region))
        .expect("send");

    // The message with a descriptor never arrives; the next one does,
    // with a copy of the region.
    let mut m = dst_rx.recv(Some(GUARD)).expect("receive");
    assert_eq!(m.payload, "with a region");
    assert!(m.objects.is_empty());
    assert_eq!(m.memory_regions.len(), 1);
    let copy = m.memory_regions[0].map(..).expect("map the copy");
    assert_eq!(copy, &filled[..]);

    let s = stats(&bus_a);
    assert_eq!(s["refused_descriptors"], "1", "{s:?}");
    assert_eq!(s["regions_copied"], "1", "{s:?}");
    assert!(
        s["last_refusal"].contains("descriptors cannot cross hosts"),
        "{s:?}"
    );
}

#[test]
fn export_expression_is_respected() {
    use zenoh::Wait;
    let (bus_a, bus_b) = (bus("exp-a"), bus("exp-b"));
    let a = Bridge::start(&bus_a, "a", "public", &[]);
    let _b = Bridge::start(&bus_b, "b", "bob", &[a.port]);
    let (private, mut private_rx) = join::<String>(&bus_a, label!("private"));
    let (_public, _public_rx) = join::<String>(&bus_a, label!("public"));
    let (bob, _bob_rx) = join::<String>(&bus_b, label!("bob"));
    wait_directory(&bob, "public from a", |d| {
        !with(d, &["public", "@host:a"]).is_empty()
    });
    wait_directory(&private, "bob from b", |d| {
        !with(d, &["bob", "@host:b"]).is_empty()
    });

    // Invisible and unreachable from b.
    assert!(with(&bob.endpoints(), &["private"]).is_empty());
    let e = bob
        .send(Message::new(
            Selector::unicast("private"),
            "psst".to_string(),
        ))
        .expect_err("no route to an unexported endpoint");
    assert!(matches!(e, busbar::SendError::NoRoute(_)), "{e}");

    // Its own messages do not leave either.
    private
        .send(Message::new(
            Selector::unicast("bob"),
            "from private".to_string(),
        ))
        .expect("the local hop takes it");
    wait_stat(&bus_a, "unexported_source", 1);

    // A well-formed frame naming it, from a Zenoh peer, is refused too.
    let peer = zenoh_peer(a.port);
    let frame = busbar_bridge::wire::encode(
        busbar_bridge::wire::Kind::Message,
        &a.zid, // any bridge's id: it names the source's bridge
        bob.id().0,
        private.id().0,
        0,
        <String as busbar::TypeUuid>::TYPE_UUID,
        b"\x05forge",
        0,
        0,
    );
    peer.put(format!("busbar/to/{}", a.zid), frame)
        .wait()
        .expect("put");
    wait_stat(&bus_a, "unexported_target", 1);
    assert!(matches!(
        private_rx.try_recv(),
        Err(busbar::RecvError::Empty)
    ));
}

#[test]
fn no_loop_back_in_a_triangle() {
    let buses = [bus("tri-a"), bus("tri-b"), bus("tri-c")];
    let a = Bridge::start(&buses[0], "a", "t", &[]);
    let b = Bridge::start(&buses[1], "b", "t", &[a.port]);
    let _c = Bridge::start(&buses[2], "c", "t", &[a.port, b.port]);
    let ends: Vec<_> = buses
        .iter()
        .zip(["a", "b", "c"])
        .map(|(bus, host)| join::<String>(bus, label!("t", format!("on-{host}"))))
        .collect();
    for ((s, _), host) in ends.iter().zip(["a", "b", "c"]) {
        let d = wait_directory(s, "the two other t's", |d| with(d, &["t"]).len() == 3);
        // Only the other hosts' endpoints, each once: no proxy of a proxy,
        // nothing of this host's coming back.
        for e in with(&d, &["t"]) {
            let hosts = e.label.iter().filter(|i| i.starts_with("@host:")).count();
            assert!(hosts <= 1, "{e:?}");
            assert!(!e.label.contains(&format!("@host:{host}")), "{e:?}");
        }
    }
    let sender = &ends[0].0;
    for text in ["once", "marker"] {
        sender
            .send(Message::new(Selector::multicast("t"), text.to_string()))
            .expect("multicast");
    }
    let mut ends = ends;
    for (_, rx) in ends.iter_mut() {
        assert_eq!(rx.recv(Some(GUARD)).expect("first").payload, "once");
        assert_eq!(rx.recv(Some(GUARD)).expect("second").payload, "marker");
    }
    wait_stat(&buses[1], "delivered", 2);
    wait_stat(&buses[2], "delivered", 2);
    assert_eq!(stat(&buses[0], "delivered"), 0, "nothing came back to a");
    assert_eq!(stat(&buses[1], "delivered"), 2);
    assert_eq!(stat(&buses[2], "delivered"), 2);
    for (_, rx) in ends.iter_mut() {
        assert!(matches!(rx.try_recv(), Err(busbar::RecvError::Empty)));
    }
}

#[test]
fn two_bridges_on_one_bus_one_stands_by() {
    let (bus_a, bus_b) = (bus("two-a"), bus("two-b"));
    let mut a1 = Bridge::start(&bus_a, "a", "x", &[]);
    let mut a2 = Bridge::start(&bus_a, "a", "x", &[]);
    let _b = Bridge::start(&bus_b, "b", "y", &[a1.port, a2.port]);
    let (x, mut x_rx) = join::<String>(&bus_a, label!("x"));
    let (y, mut y_rx) = join::<String>(&bus_b, label!("y"));
    wait_directory(&y, "x from a", |d| with(d, &["x", "@host:a"]).len() == 1);
    wait_directory(&x, "y from b", |d| with(d, &["y", "@host:b"]).len() == 1);

    for round in 0..2 {
        for (from, to, rx) in [(&x, "y", &mut y_rx), (&y, "x", &mut x_rx)] {
            for text in ["once", "marker"] {
                from.send(Message::new(
                    Selector::multicast(to).ttl(GUARD).require_receiver(),
                    format!("{text}{round}"),
                ))
                .expect("multicast");
            }
            assert_eq!(
                rx.recv(Some(GUARD)).expect("first").payload,
                format!("once{round}")
            );
            assert_eq!(
                rx.recv(Some(GUARD)).expect("second").payload,
                format!("marker{round}")
            );
        }
        if round == 0 {
            // Kill the active one (the smaller endpoint id): the other takes over.
            let d = x.endpoints();
            let active = with(&d, &["@bridge"])
                .into_iter()
                .min_by_key(|e| e.id)
                .expect("a bridge")
                .pid;
            let victim = if active == a1.child.id() {
                &mut a1
            } else {
                &mut a2
            };
            victim.kill();
            wait_directory(&x, "one y again", |d| {
                with(d, &["@bridge"]).len() == 1 && with(d, &["y", "@host:b"]).len() == 1
            });
        }
    }
}

#[test]
fn kill_9_and_restart_directories_converge_and_traffic_resumes() {
    let (bus_a, bus_b) = (bus("kill-a"), bus("kill-b"));
    let mut a = Bridge::start_with(&bus_a, "a", "x", &[], "lease_ms = 2000");
    let mut b = Bridge::start_with(&bus_b, "b", "y", &[a.port], "lease_ms = 2000");
    let (x, mut x_rx) = join::<String>(&bus_a, label!("x"));
    let (y, mut y_rx) = join::<String>(&bus_b, label!("y"));
    let round_trip = |x_rx: &mut busbar::EndpointReceiver<String>,
                      y_rx: &mut busbar::EndpointReceiver<String>,
                      text: &str| {
        x.send(Message::new(
            Selector::unicast("y").ttl(GUARD),
            text.to_string(),
        ))
        .expect("send");
        let m = y_rx.recv(Some(GUARD)).expect("y receives");
        assert_eq!(m.payload, text);
        y.send(Message::new(
            Selector::endpoint(m.source),
            format!("re: {text}"),
        ))
        .expect("answer");
        assert_eq!(
            x_rx.recv(Some(GUARD)).expect("x receives").payload,
            format!("re: {text}")
        );
    };
    round_trip(&mut x_rx, &mut y_rx, "before");

    // b's bridge killed: its endpoints leave a's directory.
    let killed = std::time::Instant::now();
    b.kill();
    wait_directory(&x, "y gone", |d| with(d, &["@host:b"]).is_empty());
    eprintln!(
        "kill -9: b's endpoints left a's directory after {:?}",
        killed.elapsed()
    );
    wait_directory(&y, "x gone from b", |d| with(d, &["@host:a"]).is_empty());
    b.restart("y");
    round_trip(&mut x_rx, &mut y_rx, "after b came back");

    // a's bridge (the one b connects to) killed and restarted: b connects again.
    let killed = std::time::Instant::now();
    a.kill();
    wait_directory(&y, "x gone", |d| with(d, &["@host:a"]).is_empty());
    eprintln!(
        "kill -9: a's endpoints left b's directory after {:?}",
        killed.elapsed()
    );
    a.restart("x");
    round_trip(&mut x_rx, &mut y_rx, "after a came back");

    // A link that goes silent (b's bridge stopped, its sockets open):
    // gone after the lease, back when it wakes.
    let stopped = std::time::Instant::now();
    signal(&b, "-STOP");
    wait_directory(&x, "y gone after the lease", |d| {
        with(d, &["@host:b"]).is_empty()
    });
    eprintln!(
        "SIGSTOP (lease 2 s): b's endpoints left a's directory after {:?}",
        stopped.elapsed()
    );
    signal(&b, "-CONT");
    round_trip(&mut x_rx, &mut y_rx, "after b woke up");
}

fn signal(b: &Bridge, sig: &str) {
    let ok = std::process::Command::new("kill")
        .arg(sig)
        .arg(b.child.id().to_string())
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill {sig}");
}

#[test]
fn hostile_zenoh_peer_is_dropped_counted_and_harmless() {
    use zenoh::Wait;
    let (bus_a, bus_b) = (bus("hos-a"), bus("hos-b"));
    let mut a = Bridge::start(&bus_a, "a", "x", &[]);
    let _b = Bridge::start(&bus_b, "b", "y", &[a.port]);
    let (x, _x_rx) = join::<String>(&bus_a, label!("x"));
    let (_y, mut y_rx) = join::<String>(&bus_b, label!("y"));

    let peer = zenoh_peer(a.port);
    let key = format!("busbar/to/{}", a.zid);
    let publisher = peer
        .declare_publisher(key)
        .congestion_control(zenoh::qos::CongestionControl::Block)
        .wait()
        .expect("publisher");
    let good = busbar_bridge::wire::encode(
        busbar_bridge::wire::Kind::Request,
        "abcdef",
        1,
        x.id().0,
        9,
        [0; 16],
        b"12345678",
        0,
        0,
    );
    let mut garbage: Vec<Vec<u8>> = Vec::new();
    let mut s = 0x9e37_79b9_u32;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        s
    };
    for _ in 0..100 {
        let n = next() as usize % 200;
        garbage.push((0..n).map(|_| next() as u8).collect());
    }
    for n in 0..good.len() {
        garbage.push(good[..n].to_vec()); // every truncation
    }
    for _ in 0..100 {
        let mut g = good.clone();
        let i = 4 + next() as usize % (good.len() - 4);
        g[i] ^= 1 + (next() % 255) as u8; // flipped bytes past the magic
        garbage.push(g);
    }
    let mut huge = good.clone();
    let at = huge.len() - 8 - 8; // the payload length
    huge[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    garbage.push(huge);
    // Batches (frames one after the other in one sample) with a good frame
    // first and then one cut short, one whose length lies, or junk: each
    // is dropped whole, its good frame too.
    let mut lying = good.clone();
    let at = lying.len() - 8 - 8;
    lying[at..at + 8].copy_from_slice(&7u64.to_le_bytes());
    for tail in [&good[..good.len() - 3], &lying[..], &b"BBZ1\x01junk"[..]] {
        let mut batch = good.clone();
        batch.extend_from_slice(tail);
        garbage.push(batch);
    }
    let refused = garbage
        .iter()
        .filter(|g| busbar_bridge::wire::decode_batch(g, 64 << 20).is_err())
        .count() as u64;
    assert!(
        refused >= 3 + good.len() as u64,
        "every cut and lying batch is refused"
    );
    // Flipped bytes that still parse (another source, kind, ...): handled,
    // and those from a source nobody announced counted as such.
    use busbar_bridge::wire::Kind;
    let unknown = garbage
        .iter()
        .filter_map(|g| busbar_bridge::wire::decode_batch(g, 64 << 20).ok())
        .flatten()
        .filter(|(_, f)| matches!(f.kind, Kind::Message | Kind::Request))
        .count() as u64;
    for g in &garbage {
        publisher.put(g.clone()).wait().expect("put");
    }
    // Tokens that do not parse.
    let bad_tokens = [
        "busbar/ep/nothex/h/0000000000000001/l",
        "busbar/ep/ab/h/123/l",
        "busbar/ep/ab/h/0000000000000001/lzz",
        "busbar/ep/ab/h",
    ];
    let _tokens: Vec<_> = bad_tokens
        .iter()
        .map(|k| peer.liveliness().declare_token(*k).wait().expect("token"))
        .collect();
    wait_stat(&bus_a, "garbage", refused + bad_tokens.len() as u64);
    // A well-formed request from a source nobody announced.
    publisher.put(good).wait().expect("put");
    wait_stat(&bus_a, "unknown_source", unknown + 1);
    // Frames from Zenoh are handled in order, so every frame before that
    // one has been: had a bad batch been handled in part, its good frame
    // would have been counted too.
    assert_eq!(
        stat(&bus_a, "unknown_source"),
        unknown + 1,
        "no frame of a bad batch handled"
    );

    assert!(
        a.child.try_wait().expect("wait").is_none(),
        "the bridge lives"
    );
    x.send(Message::new(
        Selector::unicast("y").ttl(GUARD),
        "still here".to_string(),
    ))
    .expect("send");
    assert_eq!(
        y_rx.recv(Some(GUARD)).expect("y receives").payload,
        "still here"
    );
    a.kill();
}

#[test]
fn a_responder_that_leaves_fails_the_request_at_once() {
    let (bus_a, bus_b) = (bus("gone-a"), bus("gone-b"));
    let a = Bridge::start(&bus_a, "a", "client", &[]);
    let _b = Bridge::start(&bus_b, "b", "flaky", &[a.port]);
    let (flaky, mut flaky_rx) = join::<u64>(&bus_b, label!("flaky"));
    let (client, _client_rx) = join::<u64>(&bus_a, label!("client"));
    let leaving = std::thread::spawn(move || {
        let m = flaky_rx.recv(Some(GUARD)).expect("the request");
        assert!(m.is_request());
        drop((flaky, flaky_rx)); // leaves without answering
    });
    let to = Selector::unicast("flaky").ttl(GUARD);
    // ResponderGone, not Timeout: the requester learns it at once.
    let e = client
        .request::<u64>(Message::new(to, 1), GUARD)
        .expect_err("no answer");
    assert!(matches!(e, busbar::RequestError::ResponderGone(_)), "{e}");
    leaving.join().expect("responder");
}

#[test]
fn a_bad_configuration_file_names_its_line() {
    let dir = std::env::temp_dir().join(format!("bridge-bad-config.{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("bad.toml");
    std::fs::write(&file, "bus = \"x\"\nexport = \"camera &\"\n").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_busbar-bridge"))
        .arg("--config")
        .arg(&file)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("line 2: export:"), "{err}");
    std::fs::write(
        &file,
        "bus = \"x\"\n\n[tls]\nroot_ca_certificate = \"ca.pem\"\n",
    )
    .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_busbar-bridge"))
        .arg("--config")
        .arg(&file)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("line 3:") && err.contains("TCP transport only"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
