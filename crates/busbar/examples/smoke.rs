use busbar::{label, Message, Options, Selector};
use std::time::Duration;
fn main() {
    let bus = format!("smoke.{}", std::process::id());
    let (a, ra) = busbar::join::<String, String>(Options::new(&bus, label!("a"), "t"), None).unwrap();
    let (b, mut rb) = busbar::join::<String, String>(Options::new(&bus, label!("b"), "t"), None).unwrap();
    let (c, mut rc) = busbar::join::<String, String>(Options::new(&bus, label!("c"), "t"), None).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    println!("{:?}", c.endpoints());
    b.send(Message::new(Selector::unicast("c"), "b->c".to_string())).unwrap();
    println!("{:?}", rc.recv(Some(Duration::from_secs(2))).map(|m| m.payload));
    c.send(Message::new(Selector::unicast("b"), "c->b".to_string())).unwrap();
    println!("{:?}", rb.recv(Some(Duration::from_secs(2))).map(|m| m.payload));
    let big = "x".repeat(1 << 20);
    c.send(Message::new(Selector::unicast("b"), big.clone())).unwrap();
    println!("big ok: {:?}", rb.recv(Some(Duration::from_secs(2))).map(|m| m.payload == big));
    let t = std::time::Instant::now();
    let n = 100_000;
    let h = std::thread::spawn(move || { for i in 0..n { rc.recv(Some(Duration::from_secs(5))).unwrap(); let _ = i; } });
    for i in 0..n { b.send(Message::new(Selector::unicast("c"), format!("{i}"))).unwrap(); }
    h.join().unwrap();
    println!("{n} in {:?}", t.elapsed());
    drop(a); drop(ra);
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..3 { println!("after a left: {:?}", b.endpoints().iter().map(|e| (e.label.clone(), e.is_controller)).collect::<Vec<_>>()); std::thread::sleep(Duration::from_millis(30)); }
    b.send(Message::new(Selector::unicast("c"), "after".to_string())).unwrap();
}
