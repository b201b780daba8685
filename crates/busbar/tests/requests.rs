//! Requests, answers and `Selector::endpoint` within one process (the
//! cross-process suites in busbar-tests cover the same across processes).

use busbar::{join, label, Message, Options, RequestError, Selector, SendError};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn bus(name: &str) -> String {
    format!("requests.{name}.{}", std::process::id())
}

#[test]
fn other_messages_keep_arriving_at_the_receiver_while_a_request_waits() {
    let bus = bus("interleave");
    let (client, mut client_rx) =
        join::<String, String>(Options::new(&bus, label!("client"), "t"), Some(WAIT)).unwrap();
    let (server, mut server_rx) =
        join::<String, String>(Options::new(&bus, label!("server"), "t"), Some(WAIT)).unwrap();
    let to_server = Selector::unicast("server").ttl(WAIT);
    let asking = std::thread::spawn(move || {
        client.request::<String>(Message::new(to_server, "question".into()), WAIT)
    });
    let question = server_rx.recv(Some(WAIT)).unwrap();
    assert!(question.is_request());
    // Before answering, a plain message to the client: its receiver gets
    // it, and the waiting request does not take it.
    server
        .send(Message::new(
            Selector::endpoint(question.source),
            "news".into(),
        ))
        .unwrap();
    let news = client_rx.recv(Some(WAIT)).unwrap();
    assert_eq!((news.payload.as_str(), news.is_request()), ("news", false));
    assert_eq!(news.source, server.id());
    server.reply(&question, "answer".into()).unwrap();
    let answer = asking.join().unwrap().unwrap();
    assert_eq!(
        (answer.payload.as_str(), answer.source),
        ("answer", server.id())
    );
    // The answer never reaches the receiver.
    assert!(client_rx.recv(Some(Duration::from_millis(50))).is_err());
    // Answering twice: the second is dropped at the requester, no error here.
    server.reply(&question, "again".into()).unwrap();
    // A message that is not a request cannot be answered.
    assert!(matches!(
        server.reply(&news, "x".into()),
        Err(SendError::NotARequest)
    ));
}

#[test]
fn a_responder_that_leaves_fails_the_request_at_once() {
    let bus = bus("leaves");
    let (client, _client_rx) =
        join::<String, String>(Options::new(&bus, label!("client"), "t"), Some(WAIT)).unwrap();
    let (server, mut server_rx) =
        join::<String, String>(Options::new(&bus, label!("server"), "t"), Some(WAIT)).unwrap();
    let server_id = server.id();
    let leaving = std::thread::spawn(move || {
        let question = server_rx.recv(Some(WAIT)).unwrap();
        assert!(question.is_request());
        // Leaves without answering (the request it holds does not keep the link).
        drop((server, server_rx));
        question
    });
    let to_server = Selector::unicast("server").ttl(WAIT);
    // A timeout far beyond the test's: the failure must come from the leave.
    let got = client.request::<String>(Message::new(to_server, "q".into()), 10 * WAIT);
    assert!(
        matches!(got, Err(RequestError::ResponderGone(id)) if id == server_id),
        "{got:?}"
    );
    drop(leaving.join().unwrap());
}

#[test]
fn requests_time_out_and_refuse_multicast() {
    let bus = bus("timeout");
    let (client, _client_rx) =
        join::<String, String>(Options::new(&bus, label!("client"), "t"), Some(WAIT)).unwrap();
    let (_server, _server_rx) =
        join::<String, String>(Options::new(&bus, label!("server"), "t"), Some(WAIT)).unwrap();
    let to_server = Selector::unicast("server").ttl(WAIT);
    let got = client.request::<String>(
        Message::new(to_server, "nobody answers".into()),
        Duration::from_millis(200),
    );
    assert!(matches!(got, Err(RequestError::Timeout)), "{got:?}");
    let got = client.request::<String>(
        Message::new(Selector::multicast("server"), "all of you".into()),
        WAIT,
    );
    assert!(
        matches!(got, Err(RequestError::Send(SendError::InvalidSelector(_)))),
        "{got:?}"
    );
    let got = client.request::<String>(Message::new(Selector::unicast("nobody"), "x".into()), WAIT);
    assert!(
        matches!(got, Err(RequestError::Send(SendError::NoRoute(_)))),
        "{got:?}"
    );
}

#[test]
fn an_endpoint_selector_reaches_that_endpoint_only_and_fails_once_it_left() {
    let bus = bus("endpoint");
    let (a, _a_rx) =
        join::<String, String>(Options::new(&bus, label!("same"), "t"), Some(WAIT)).unwrap();
    let (b, mut b_rx) =
        join::<String, String>(Options::new(&bus, label!("same"), "t"), Some(WAIT)).unwrap();
    let (_c, mut c_rx) =
        join::<String, String>(Options::new(&bus, label!("same"), "t"), Some(WAIT)).unwrap();
    let to_b = Selector::endpoint(b.id()).ttl(WAIT);
    for i in 0..10 {
        a.send(Message::new(to_b.clone(), format!("{i}"))).unwrap();
    }
    for i in 0..10 {
        let m = b_rx.recv(Some(WAIT)).unwrap();
        assert_eq!((m.payload, m.source), (format!("{i}"), a.id()));
    }
    assert!(c_rx.recv(Some(Duration::from_millis(50))).is_err());
    let b_id = b.id();
    drop((b, b_rx));
    // Once the controller has told `a` that `b` left, no route.
    let gone = Selector::endpoint(b_id);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match a.send(Message::new(gone.clone(), "late".into())) {
            Err(SendError::NoRoute(text)) => {
                assert!(text.contains(&b_id.to_string()), "{text}");
                break;
            }
            Ok(()) => {}
            Err(e) => panic!("{e}"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still routed to {b_id}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_request_lent_by_recv_with_is_answered_through_its_handle() {
    let bus = bus("lent");
    let (client, _client_rx) =
        join::<String, String>(Options::new(&bus, label!("client"), "t"), Some(WAIT)).unwrap();
    let (server, mut server_rx) =
        join::<String, String>(Options::new(&bus, label!("server"), "t"), Some(WAIT)).unwrap();
    let client_id = client.id();
    let asking = std::thread::spawn(move || {
        let to_server = Selector::unicast("server").ttl(WAIT);
        client.request::<String>(Message::new(to_server, "shout".into()), WAIT)
    });
    // A small message without attachments: lent in place from the link's ring.
    let (handle, text) = server_rx
        .recv_with(Some(WAIT), |m| {
            assert!(m.is_request());
            assert_eq!(m.source, client_id);
            (m.reply_handle(), m.as_str().map(str::to_uppercase))
        })
        .unwrap();
    let handle = handle.expect("a request has a handle");
    assert_eq!(handle.source(), client_id);
    server.reply_with(&handle, text.unwrap()).unwrap();
    assert_eq!(asking.join().unwrap().unwrap().payload, "SHOUT");
}

#[test]
fn a_started_request_keeps_its_place_among_messages_and_is_waited_for_elsewhere() {
    let bus = bus("start");
    let (client, _client_rx) =
        join::<u64, u64>(Options::new(&bus, label!("client"), "t"), Some(WAIT)).unwrap();
    let (server, mut server_rx) =
        join::<u64, u64>(Options::new(&bus, label!("server"), "t"), Some(WAIT)).unwrap();
    let to = Selector::unicast("server").ttl(WAIT);
    // Messages and requests interleaved; each request waited for on a thread of its own.
    let mut waiting = Vec::new();
    for i in 0..60u64 {
        if i % 3 == 1 {
            let pending = client
                .request_start::<u64>(Message::new(to.clone(), i), WAIT)
                .unwrap();
            waiting.push(std::thread::spawn(move || (i, pending.wait(WAIT))));
        } else {
            client.send(Message::new(to.clone(), i)).unwrap();
        }
    }
    // One started and given up on: sent all the same, its answer dropped.
    drop(
        client
            .request_start::<u64>(Message::new(to.clone(), 60), WAIT)
            .unwrap(),
    );
    for i in 0..=60u64 {
        let m = server_rx.recv(Some(WAIT)).unwrap();
        assert_eq!(m.payload, i, "in the order sent");
        assert_eq!(m.is_request(), i % 3 == 1 || i == 60);
        if m.is_request() {
            server.reply(&m, m.payload * 10).unwrap();
        }
    }
    for t in waiting {
        let (i, answer) = t.join().unwrap();
        assert_eq!(answer.unwrap().payload, i * 10);
    }
    // Nobody answers: the wait times out; refused selectors fail at the start.
    let unanswered = client
        .request_start::<u64>(Message::new(to, 99), WAIT)
        .unwrap();
    assert!(matches!(
        unanswered.wait(Duration::from_millis(50)),
        Err(RequestError::Timeout)
    ));
    assert!(matches!(
        client.request_start::<u64>(Message::new(Selector::multicast("server"), 1), WAIT),
        Err(RequestError::Send(SendError::InvalidSelector(_)))
    ));
}
