//! busbar's control plane: how long `join` takes, and how long a bus goes
//! without a controller after `kill -9` of the process that hosts it.
//!
//! Join: a host process holds the bus (and its controller); another process
//! joins it N times in a row, timing each `join` call until it returns
//! (the endpoint is registered and has the directory), then drops the
//! endpoint (not timed). It also times N joins of a bus nobody holds yet,
//! where the joiner elects itself and starts the controller.
//!
//! Failover: three processes join a fresh bus: `ctl` first (it hosts the
//! controller), then `echo` and `watch`. The parent reads the clock and
//! sends SIGKILL to `ctl`. `watch` polls its directory every 100 µs and
//! notes when an endpoint other than the dead one is the controller; it
//! also sends a message to `echo` and notes when the answer is back, to
//! show that data keeps flowing. Both are reported as time since the kill.

use crate::measure::{now_ns, Fields, Percentiles, Plan};
use crate::peers::busbar::TOKEN;
use crate::peers::wait_until;
use crate::proc::{Args, Ctl, Proc};
use crate::scenario::fresh_bus;
use crate::Res;
use busbar::{join, label, BytesMessage, Message, Options, Selector};
use std::time::{Duration, Instant};

type Role = fn(&Args, &Ctl) -> Res<()>;
const T: Duration = Duration::from_secs(10);

/// The busbar control-plane roles a child process may take.
pub fn child_role(role: &str) -> Option<Role> {
    match role {
        "join-host" => Some(join_host),
        "join-loop" => Some(join_loop),
        "fo-node" => Some(fo_node),
        _ => None,
    }
}

fn options(bus: &str, label: &str) -> Options {
    Options::new(bus, label!(label), TOKEN)
}

fn join_host(args: &Args, ctl: &Ctl) -> Res<()> {
    let _ep = join::<BytesMessage, BytesMessage>(options(args.str("bus")?, "host"), Some(T))?;
    ctl.say("READY");
    let _ = ctl.next(Duration::from_secs(600));
    Ok(())
}

fn join_loop(args: &Args, ctl: &Ctl) -> Res<()> {
    let bus = args.str("bus")?;
    let n = args.num("n")?;
    ctl.say("READY");
    ctl.wait_go(T, &mut |_| Ok(()))?;
    let timed = |bus: &str| -> Res<u64> {
        let t = Instant::now();
        let ep = join::<BytesMessage, BytesMessage>(options(bus, "joiner"), Some(T))?;
        let ns = t.elapsed().as_nanos() as u64;
        drop(ep);
        Ok(ns)
    };
    let mut existing = Vec::new();
    let mut fresh = Vec::new();
    for i in 0..n {
        existing.push(timed(bus)?);
        fresh.push(timed(&format!("{bus}-f{i}"))?);
    }
    let (e, f) = (Percentiles::of(&mut existing), Percentiles::of(&mut fresh));
    ctl.say(&format!(
        "RESULT n={} p50={} p99={} max={} fresh_p50={} fresh_p99={} fresh_max={}",
        e.n, e.p50, e.p99, e.max, f.p50, f.p99, f.max
    ));
    Ok(())
}

fn fo_node(args: &Args, ctl: &Ctl) -> Res<()> {
    let me = args.str("label")?;
    let (tx, mut rx) = join::<BytesMessage, BytesMessage>(options(args.str("bus")?, me), Some(T))?;
    let expect = args.num("expect")? as usize;
    wait_until("the others in the directory", T, || {
        let eps = tx.endpoints();
        eps.len() >= expect && eps.iter().any(|e| e.is_controller)
    })?;
    ctl.say("READY");
    ctl.wait_go(Duration::from_secs(60), &mut |_| Ok(()))?;
    match me {
        "ctl" => {
            let _ = ctl.next(Duration::from_secs(600));
        }
        "echo" => loop {
            let m = rx.recv(Some(Duration::from_secs(60)))?;
            tx.send(Message::new(Selector::unicast("watch"), m.payload))?;
        },
        _ => {
            let old = tx
                .endpoints()
                .into_iter()
                .find(|e| e.is_controller)
                .ok_or("no controller")?;
            if !old.label.contains("ctl") {
                return Err(format!("controller is {}, not ctl", old.label).into());
            }
            let poller = tx.clone();
            let seen = std::thread::spawn(move || -> Option<(u64, String)> {
                let deadline = Instant::now() + T;
                while Instant::now() < deadline {
                    let eps = poller.endpoints();
                    if let Some(e) = eps.iter().find(|e| e.is_controller && e.id != old.id) {
                        return Some((now_ns(), e.label.to_string()));
                    }
                    std::thread::sleep(Duration::from_micros(100));
                }
                None
            });
            ctl.say("ARMED");
            ctl.wait_word("KILLED", T)?;
            let msg = BytesMessage::new(0, b"after the kill".to_vec());
            tx.send_timeout(Message::new(Selector::unicast("echo"), msg), T)?;
            rx.recv(Some(T))?;
            let answered = now_ns();
            let (new_ctl, who) = seen
                .join()
                .map_err(|_| "poller panicked")?
                .ok_or("no new controller within 10 s")?;
            ctl.say(&format!("RESULT ctl={new_ctl} echo={answered} who={who}"));
        }
    }
    Ok(())
}

/// Join times in nanoseconds: to a held bus, and to a fresh one.
#[derive(Debug, Clone, Copy)]
pub struct JoinTimes {
    pub n: u64,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
    pub fresh_p50: u64,
    pub fresh_p99: u64,
    pub fresh_max: u64,
}

pub fn run_join(plan: &Plan) -> Res<JoinTimes> {
    let bus = fresh_bus("join");
    let args = Args::default().set("bus", &bus).set("n", plan.joins);
    let _host = {
        let mut p = Proc::spawn("busbar", "join-host", &args)?;
        p.expect_only("READY", T)?;
        p
    };
    let mut joiner = Proc::spawn("busbar", "join-loop", &args)?;
    joiner.expect_only("READY", T)?;
    joiner.tell("GO")?;
    let f = Fields::parse(&joiner.expect_only("RESULT", Duration::from_secs(300))?);
    Ok(JoinTimes {
        n: f.num("n")?,
        p50: f.num("p50")?,
        p99: f.num("p99")?,
        max: f.num("max")?,
        fresh_p50: f.num("fresh_p50")?,
        fresh_p99: f.num("fresh_p99")?,
        fresh_max: f.num("fresh_max")?,
    })
}

/// Failover times in nanoseconds since the kill, over the rounds.
#[derive(Debug, Clone, Copy)]
pub struct FailoverTimes {
    pub rounds: u64,
    pub controller: Percentiles,
    pub echo: Percentiles,
}

pub fn run_failover(plan: &Plan) -> Res<FailoverTimes> {
    let mut controller = Vec::new();
    let mut echo = Vec::new();
    for _ in 0..plan.failovers {
        let bus = fresh_bus("failover");
        let mut nodes = Vec::new();
        for label in ["ctl", "echo", "watch"] {
            let expect = if label == "ctl" { 1 } else { 3 };
            let args = Args::default()
                .set("bus", &bus)
                .set("label", label)
                .set("expect", expect);
            nodes.push(Proc::spawn("busbar", "fo-node", &args)?);
            // The first one must be up (and the controller) before the others come.
            if label == "ctl" {
                nodes[0].expect_only("READY", T)?;
            }
        }
        for n in &mut nodes[1..] {
            n.expect_only("READY", T)?;
        }
        for n in &mut nodes {
            n.tell("GO")?;
        }
        nodes[2].expect_only("ARMED", T)?;
        let killed = now_ns();
        nodes[0].kill();
        nodes[2].tell("KILLED")?;
        let f = Fields::parse(&nodes[2].expect_only("RESULT", T + T)?);
        controller.push(f.num("ctl")?.saturating_sub(killed));
        echo.push(f.num("echo")?.saturating_sub(killed));
        for n in &mut nodes {
            n.kill();
        }
    }
    Ok(FailoverTimes {
        rounds: plan.failovers,
        controller: Percentiles::of(&mut controller),
        echo: Percentiles::of(&mut echo),
    })
}
