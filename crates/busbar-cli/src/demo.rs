//! `busbar demo`: five processes on a fresh bus show what busbar does.
//!
//! The `director` (the process the user started) joins first, so it hosts
//! the bus controller, and starts four more copies of this program (hidden
//! subcommand `demo-role`): `camera`, `renderer-cpu`, `renderer-gpu` and
//! `recorder`, none of which may host the controller. Once the directory
//! shows all five, the camera runs the script: a unicast, a multicast, a
//! label expression, a pipe's write end and a shared memory region, each
//! step acknowledged over the bus before the next starts, so the lines come
//! out in order. Then the director tells everyone to quit, checks what each
//! one received, and exits 0 when everything went as it should.
//!
//! Nothing sleeps to synchronise: processes wait for messages, or for the
//! directory to show who they need, and every wait ends at one deadline.

use crate::common::{self, parse_secs, print_line, show_label, Failure};
use busbar::{
    label, BytesMessage, EndpointInfo, EndpointReceiver, EndpointSender, Label, LabelOp,
    MemoryRegion, Message, Object, RecvError, Selector,
};
use serde::{Deserialize, Serialize};
use std::fmt::Display;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Start several processes on one bus and show unicast, multicast, a label
/// expression, a file descriptor and shared memory going between them.
#[derive(Debug, clap::Args)]
#[command(long_about = "\
Start several processes on one bus and show unicast, multicast, a label \
expression, a file descriptor and shared memory going between them.

This process (the director) joins a fresh bus first, so it hosts the bus \
controller, and starts four more: camera, renderer-cpu, renderer-gpu and \
recorder. The camera sends: one unicast to `renderer` (one renderer gets it), \
one multicast to `renderer` (both get it), one unicast to `renderer & !gpu`, \
the write end of a pipe (the recorder writes into it, the camera reads), and \
a 1 MiB memory region (the recorder reads it and writes a reply; ref_count \
shows who holds it). Each line says which process printed it. None of these \
messages goes through the controller.

Exits 0 when every step worked, 1 when one did not, 3 on --timeout.")]
pub struct Args {
    /// Give up (status 3, stopping every process) when the demo has not
    /// finished within this many seconds.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "30")]
    timeout: Duration,
}

/// Arguments of one demo process (the hidden `demo-role` subcommand).
#[derive(Debug, clap::Args)]
pub struct RoleArgs {
    /// Which process this is.
    #[arg(long, value_enum)]
    role: Role,
    /// The demo's bus.
    #[arg(long)]
    bus: String,
    /// The director's pid: this process stops when the director is gone.
    #[arg(long)]
    parent: u32,
    /// How long this process may run, in milliseconds.
    #[arg(long)]
    deadline_ms: u64,
}

/// The processes the director starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Role {
    /// Sends everything.
    Camera,
    /// A renderer without a gpu.
    RendererCpu,
    /// A renderer with a gpu.
    RendererGpu,
    /// Receives the pipe and the region.
    Recorder,
}

/// The director's own name and label string.
const DIRECTOR: &str = "director";

/// Every process the director starts, in the order they are listed.
const ROLES: [Role; 4] = [
    Role::Camera,
    Role::RendererCpu,
    Role::RendererGpu,
    Role::Recorder,
];

/// What the recorder writes into the pipe (then its pid).
const PIPE_TEXT: &str = "hello from the recorder";
/// What the recorder writes into the region.
const REGION_REPLY: &str = "thanks, camera";
/// The byte the camera fills the region with.
const PATTERN: u8 = 0xa5;
/// The region's size.
const REGION_SIZE: usize = 1 << 20;

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Camera => "camera",
            Role::RendererCpu => "renderer-cpu",
            Role::RendererGpu => "renderer-gpu",
            Role::Recorder => "recorder",
        }
    }

    fn label(self) -> Label {
        match self {
            Role::Camera => label!("camera"),
            Role::RendererCpu => label!("renderer", "cpu"),
            Role::RendererGpu => label!("renderer", "gpu"),
            Role::Recorder => label!("recorder"),
        }
    }
}

/// The demo's own control messages.
#[derive(Debug, Serialize, Deserialize, busbar::TypeUuid)]
#[uuid = "555ccbd3-0446-4e36-87d1-0327867d1024"]
enum Step {
    /// Director → camera: everyone is here, run the script.
    Go,
    /// Receiver → camera: the step is done (its line is printed).
    Ack {
        /// Who acknowledges.
        role: String,
    },
    /// Camera → recorder: write into the pipe in `objects[0]`.
    Pipe,
    /// Camera → recorder: keep the region in `memory_regions[0]`.
    Region,
    /// Camera → recorder (after `Region`): read the region, write a reply
    /// into it, drop it. A second message, so that the camera's `send` of
    /// the region has returned and the count the recorder shows is settled.
    Reply,
    /// Camera → director: the script ran; what went wrong, if anything.
    Done {
        /// The first failed check.
        failure: Option<String>,
    },
    /// Director → everyone else: report and exit.
    Quit,
    /// Everyone → director: what this process received and found wrong.
    Bye {
        /// Who says goodbye.
        role: String,
        /// The texts it received.
        got: Vec<String>,
        /// What it found wrong.
        problems: Vec<String>,
    },
}

/// Every message of the demo: its control steps, or text as a
/// [`BytesMessage`] (what `busbar listen` prints).
#[derive(Debug, busbar::MessageBox)]
enum DemoMsg {
    /// A control step.
    Step(Step),
    /// A text.
    Text(BytesMessage),
}

/// One demo process's endpoint, name and deadline.
struct Node {
    name: &'static str,
    tx: EndpointSender<DemoMsg>,
    rx: EndpointReceiver<DemoMsg>,
    deadline: Instant,
}

impl Node {
    fn join(
        name: &'static str,
        bus: &str,
        label: Label,
        token: &str,
        host: bool,
        deadline: Instant,
    ) -> Result<Node, Failure> {
        let mut options = busbar::Options::new(bus, label, token);
        options.controller_affinity = host;
        let (tx, rx) = common::join(options, left(deadline), "")?;
        Ok(Node {
            name,
            tx,
            rx,
            deadline,
        })
    }

    /// Prints one line, prefixed with this process's name.
    fn say(&self, text: impl Display) -> Result<(), Failure> {
        print_line(&format!("{:<15}{text}", format!("[{}]", self.name)))
    }

    /// Sends, turning an error into a failure that says what was sent.
    fn send(&self, selector: Selector, message: impl Into<DemoMsg>) -> Result<(), Failure> {
        self.send_message(Message::new(selector, message.into()))
    }

    fn send_message(&self, message: Message<DemoMsg>) -> Result<(), Failure> {
        let to = message.selector.to_string();
        self.tx
            .send(message)
            .map_err(|e| Failure::failed(format!("{}: sending to {to} failed: {e}", self.name)))
    }

    /// The next message, waiting at most until the deadline.
    fn recv(&mut self, waiting_for: &str) -> Result<Message<DemoMsg>, Failure> {
        match self.rx.recv(Some(left(self.deadline))) {
            Ok(m) => Ok(m),
            Err(RecvError::Timeout) => Err(Failure::timeout(format!(
                "{}: timed out waiting for {waiting_for}",
                self.name
            ))),
            Err(e) => Err(Failure::failed(format!(
                "{}: receiving failed: {e}",
                self.name
            ))),
        }
    }

    /// A unicast to `to` that waits (until the deadline) for `to` to be known.
    fn to(&self, to: &str) -> Selector {
        Selector::unicast(to).ttl(left(self.deadline).max(Duration::from_millis(1)))
    }
}

/// Time left until `deadline`.
fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// The processes the director started; any still running when this is
/// dropped are killed, so a failed demo leaves nothing behind.
struct Children(Vec<(Role, Child)>);

impl Children {
    /// The first child that has already exited, with its status.
    fn exited(&mut self) -> Option<(Role, std::process::ExitStatus)> {
        self.0
            .iter_mut()
            .find_map(|(role, child)| child.try_wait().ok().flatten().map(|s| (*role, s)))
    }

    /// Waits (until `deadline`) for every child to exit with status 0.
    fn wait_all(&mut self, deadline: Instant) -> Result<(), Failure> {
        for (role, child) in &mut self.0 {
            loop {
                match child.try_wait() {
                    Ok(Some(status)) if status.success() => break,
                    Ok(Some(status)) => {
                        return Err(Failure::failed(format!(
                            "the {} process failed ({status})",
                            role.name()
                        )))
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    Ok(None) => {
                        return Err(Failure::timeout(format!(
                            "the {} process did not exit in time",
                            role.name()
                        )))
                    }
                    Err(e) => {
                        return Err(Failure::failed(format!(
                            "cannot wait for the {} process: {e}",
                            role.name()
                        )))
                    }
                }
            }
        }
        Ok(())
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Runs `busbar demo`: the director.
pub fn run(args: Args, token: &str, verbose: u8) -> Result<(), Failure> {
    let start = Instant::now();
    let deadline = start + args.timeout;
    let bus = fresh_bus_name();
    let mut me = Node::join(DIRECTOR, &bus, label!(DIRECTOR), token, true, deadline)?;
    let hosting = if me.tx.is_controller() {
        "this process hosts its controller"
    } else {
        "joined it"
    };
    me.say(format_args!(
        "bus {bus}: {hosting}; starting 4 more processes"
    ))?;

    let exe = std::env::current_exe().map_err(|e| {
        Failure::failed(format!(
            "cannot find this program to start the demo's processes: {e}"
        ))
    })?;
    let mut children = Children(Vec::new());
    for role in ROLES {
        let mut command = Command::new(&exe);
        command
            .arg("demo-role")
            .args(["--role", role.name(), "--bus", &bus])
            .args(["--parent", &std::process::id().to_string()])
            .args(["--deadline-ms", &left(deadline).as_millis().to_string()])
            .env("BUSBAR_TOKEN", token)
            .stdin(Stdio::null());
        for _ in 0..verbose {
            command.arg("-v");
        }
        let child = command.spawn().map_err(|e| {
            Failure::failed(format!("cannot start the {} process: {e}", role.name()))
        })?;
        children.0.push((role, child));
    }

    direct(&mut me, &mut children)?;
    children.wait_all(deadline)?;
    me.say(format_args!(
        "all checks passed in {} ms; no message went through the controller",
        start.elapsed().as_millis()
    ))
}

/// The director's part once the children are started.
fn direct(me: &mut Node, children: &mut Children) -> Result<(), Failure> {
    let pids: Vec<(Role, u32)> = children
        .0
        .iter()
        .map(|(role, child)| (*role, child.id()))
        .collect();
    // Wait until every child is in the directory (or one of them died).
    let mut dead = None;
    let (endpoints, all_here) = common::wait_for_directory(&me.tx, me.deadline, |endpoints| {
        dead = dead.take().or_else(|| children.exited());
        dead.is_some()
            || pids
                .iter()
                .all(|(_, pid)| endpoints.iter().any(|e| e.pid == *pid))
    });
    if let Some((role, status)) = dead {
        let message = format!("the {} process exited early ({status})", role.name());
        // A child that ran out of time exits with the timeout status: keep it.
        return Err(match status.code() {
            Some(code) if code == i32::from(common::EXIT_TIMEOUT) => Failure::timeout(message),
            _ => Failure::failed(message),
        });
    }
    if !all_here {
        let here = endpoints.len();
        return Err(Failure::timeout(format!(
            "only {here} of 5 processes joined the bus in time"
        )));
    }
    me.say("all 5 processes joined (only the director may host the controller); the directory:")?;
    let mut rows = Vec::new();
    rows.extend(
        endpoints
            .iter()
            .find(|e| e.id == me.tx.id())
            .map(|e| (DIRECTOR, e)),
    );
    for (role, pid) in &pids {
        rows.extend(
            endpoints
                .iter()
                .find(|e| e.pid == *pid)
                .map(|e| (role.name(), e)),
        );
    }
    for (name, e) in rows {
        let controller = if e.is_controller {
            "(hosts the controller)"
        } else {
            ""
        };
        let row = format!(
            "  {name:<13} pid {:<7} label {:<13} {controller}",
            e.pid,
            show_label(&e.label)
        );
        me.say(row.trim_end())?;
    }

    me.send(me.to(Role::Camera.name()), Step::Go)?;
    let failure = loop {
        match me.recv("the camera to finish its steps")?.payload {
            DemoMsg::Step(Step::Done { failure }) => break failure,
            other => tracing::warn!("director: unexpected {other:?}"),
        }
    };
    me.send(Selector::multicast(!LabelOp::leaf(DIRECTOR)), Step::Quit)?;
    let mut byes: Vec<(String, Vec<String>)> = Vec::new();
    let mut problems: Vec<String> = failure.into_iter().collect();
    while byes.len() < ROLES.len() {
        match me.recv("every process to report")?.payload {
            DemoMsg::Step(Step::Bye {
                role,
                got,
                problems: theirs,
            }) => {
                problems.extend(theirs.into_iter().map(|p| format!("{role}: {p}")));
                byes.push((role, got));
            }
            other => tracing::warn!("director: unexpected {other:?}"),
        }
    }
    problems.extend(check_deliveries(&byes));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Failure::failed(format!(
            "the demo found problems:\n  {}",
            problems.join("\n  ")
        )))
    }
}

/// What went wrong with the three text messages, judging by what each process received.
fn check_deliveries(byes: &[(String, Vec<String>)]) -> Vec<String> {
    let receivers = |text: &str| -> Vec<&str> {
        let mut who: Vec<&str> = byes
            .iter()
            .flat_map(|(role, got)| {
                got.iter()
                    .filter(|g| *g == text)
                    .map(move |_| role.as_str())
            })
            .collect();
        who.sort_unstable();
        who
    };
    let mut problems = Vec::new();
    let frame = receivers("frame 1");
    if frame.len() != 1 || !frame[0].starts_with("renderer") {
        problems.push(format!(
            "the unicast to `renderer` reached {frame:?}, not exactly one renderer"
        ));
    }
    let config = receivers("config v2");
    if config != ["renderer-cpu", "renderer-gpu"] {
        problems.push(format!(
            "the multicast to `renderer` reached {config:?}, not both renderers"
        ));
    }
    let job = receivers("cpu-only job");
    if job != ["renderer-cpu"] {
        problems.push(format!(
            "the unicast to `renderer & !gpu` reached {job:?}, not renderer-cpu"
        ));
    }
    problems
}

/// A bus name no other run uses.
fn fresh_bus_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("busbar-demo.{}.{nanos:08x}", std::process::id())
}

/// Runs one of the processes the director started.
pub fn run_role(args: RoleArgs, token: &str) -> Result<(), Failure> {
    let deadline = Instant::now() + Duration::from_millis(args.deadline_ms);
    // Die with the director, so that a killed demo leaves nothing running.
    // The check after it catches a director that died before it was set.
    if let Err(e) =
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
    {
        tracing::warn!("cannot ask to stop with the demo: {e}");
    }
    let parent = rustix::process::getppid().map(|p| p.as_raw_pid().unsigned_abs());
    if parent != Some(args.parent) {
        return Err(Failure::failed(
            "the demo that started this process is gone",
        ));
    }
    let role = args.role;
    let mut me = Node::join(role.name(), &args.bus, role.label(), token, false, deadline)?;
    let mut got = Vec::new();
    let mut problems = Vec::new();
    let mut kept: Option<MemoryRegion> = None;
    if role == Role::Camera {
        match me.recv("the director's go")?.payload {
            DemoMsg::Step(Step::Go) => {}
            other => {
                return Err(Failure::failed(format!(
                    "camera: expected go, got {other:?}"
                )))
            }
        }
        let failure = match camera(&mut me) {
            Ok(()) => None,
            Err(f) => Some(f.message().to_string()),
        };
        me.send(me.to(DIRECTOR), Step::Done { failure })?;
    }
    loop {
        let mut m = me.recv("the next step")?;
        match m.payload {
            DemoMsg::Text(text) => {
                let text = String::from_utf8_lossy(&text.data).into_owned();
                me.say(format_args!("got {text:?} by {}", m.selector))?;
                got.push(text);
            }
            DemoMsg::Step(Step::Pipe) => match m.objects.pop() {
                Some(object) => {
                    let line = format!("{PIPE_TEXT} (pid {})", std::process::id());
                    let mut pipe = std::fs::File::from(object);
                    if let Err(e) = pipe.write_all(line.as_bytes()) {
                        problems.push(format!("cannot write into the pipe: {e}"));
                    }
                    drop(pipe);
                    me.say(format_args!(
                        "wrote {line:?} into the pipe it got, and closed it"
                    ))?;
                }
                None => problems.push("the pipe message came without its descriptor".into()),
            },
            DemoMsg::Step(Step::Region) => {
                kept = m.memory_regions.pop();
                if kept.is_none() {
                    problems.push("the region message came without its region".into());
                }
                continue;
            }
            DemoMsg::Step(Step::Reply) => match kept.take() {
                Some(region) => me.say(read_region(region, &mut problems))?,
                None => problems.push("asked to reply in a region it does not hold".into()),
            },
            DemoMsg::Step(Step::Quit) => {
                let bye = Step::Bye {
                    role: role.name().to_string(),
                    got,
                    problems,
                };
                return me.send(Selector::unicast(DIRECTOR), bye);
            }
            other => {
                problems.push(format!("unexpected {other:?}"));
                continue;
            }
        }
        // The line is printed: the camera may go on with the next step.
        me.send(
            me.to(Role::Camera.name()),
            Step::Ack {
                role: role.name().to_string(),
            },
        )?;
    }
}

/// The recorder's part with the region: check the camera's bytes, write a
/// reply at the start, drop it. Gives the line to print.
fn read_region(mut region: MemoryRegion, problems: &mut Vec<String>) -> String {
    let refs = region.ref_count();
    let size = region.size();
    let mut filled = "all";
    match region.map(..) {
        Ok(bytes) => {
            if let Some(i) = bytes.iter().position(|&b| b != PATTERN) {
                filled = "NOT all";
                problems.push(format!(
                    "region byte {i} is {:#04x}, not {PATTERN:#04x}",
                    bytes[i]
                ));
            }
            // The reply and the NUL that ends it, if the region has room.
            match bytes.get_mut(..=REGION_REPLY.len()) {
                Some(start) => {
                    start[..REGION_REPLY.len()].copy_from_slice(REGION_REPLY.as_bytes());
                    start[REGION_REPLY.len()] = 0;
                }
                None => problems.push(format!("the region is too small: {} bytes", bytes.len())),
            }
        }
        Err(e) => problems.push(format!("cannot map the region: {e}")),
    }
    drop(region);
    format!("mapped the {} MiB region: {filled} {PATTERN:#04x}, ref_count {refs} (camera + recorder); wrote {REGION_REPLY:?} into it, dropped it", size >> 20)
}

/// The camera's script.
fn camera(me: &mut Node) -> Result<(), Failure> {
    // Everyone must be in our own directory before the first send.
    let wanted: Vec<Label> = std::iter::once(label!(DIRECTOR))
        .chain(ROLES.map(Role::label))
        .collect();
    let here = |endpoints: &[EndpointInfo]| {
        wanted
            .iter()
            .all(|l| endpoints.iter().any(|e| &e.label == l))
    };
    if !common::wait_for_directory(&me.tx, me.deadline, here).1 {
        return Err(Failure::timeout(
            "camera: not everyone showed up in its directory in time",
        ));
    }

    me.say("unicast to `renderer`: \"frame 1\"")?;
    me.send(Selector::unicast("renderer"), BytesMessage::from("frame 1"))?;
    acks(me, 1)?;

    me.say("multicast to `renderer`: \"config v2\"")?;
    me.send(
        Selector::multicast("renderer"),
        BytesMessage::from("config v2"),
    )?;
    acks(me, 2)?;

    let expression = "renderer & !gpu";
    let op: LabelOp = expression
        .parse()
        .map_err(|e| Failure::failed(format!("camera: {e}")))?;
    me.say(format_args!("unicast to `{expression}`: \"cpu-only job\""))?;
    me.send(Selector::unicast(op), BytesMessage::from("cpu-only job"))?;
    let who = acks(me, 1)?;
    if who != [Role::RendererCpu.name()] {
        return Err(Failure::failed(format!("`{expression}` reached {who:?}")));
    }

    let (mut read_end, write_end) = pipe()?;
    me.say("sends the write end of a pipe to `recorder`")?;
    me.send_message(
        Message::new(Selector::unicast("recorder"), Step::Pipe.into())
            .with_object(Object::new(write_end)),
    )?;
    acks(me, 1)?;
    // Our copy of the write end went with the message and the recorder closed
    // its own, so this reads to the end of what the recorder wrote.
    let mut text = String::new();
    read_end
        .read_to_string(&mut text)
        .map_err(|e| Failure::failed(format!("camera: cannot read the pipe: {e}")))?;
    me.say(format_args!("read {text:?} from its end of the pipe"))?;
    if !text.starts_with(PIPE_TEXT) {
        return Err(Failure::failed(format!("camera: the pipe gave {text:?}")));
    }

    let mut region =
        MemoryRegion::new(REGION_SIZE).map_err(|e| Failure::failed(format!("camera: {e}")))?;
    region
        .map(..)
        .map_err(|e| Failure::failed(format!("camera: {e}")))?
        .fill(PATTERN);
    let copy = region.clone();
    me.say(format_args!(
        "sends a 1 MiB memory region of {PATTERN:#04x} bytes to `recorder` (ref_count {}: its handle + the message's)",
        region.ref_count()
    ))?;
    me.send_message(
        Message::new(Selector::unicast("recorder"), Step::Region.into()).with_memory_region(copy),
    )?;
    // Messages from one sender arrive in order: the recorder has the region when it reads this.
    me.send(Selector::unicast("recorder"), Step::Reply)?;
    acks(me, 1)?;
    let refs = region.ref_count();
    let bytes = region
        .map(..)
        .map_err(|e| Failure::failed(format!("camera: {e}")))?;
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(0).min(64);
    let reply = String::from_utf8_lossy(&bytes[..end]).into_owned();
    me.say(format_args!(
        "ref_count is back to {refs}; the region now starts with {reply:?}"
    ))?;
    if refs != 1 || reply != REGION_REPLY {
        return Err(Failure::failed(format!(
            "camera: region ref_count {refs}, reply {reply:?}"
        )));
    }
    Ok(())
}

/// Waits for `n` acknowledgements; gives who sent them.
fn acks(me: &mut Node, n: usize) -> Result<Vec<String>, Failure> {
    let mut who = Vec::new();
    while who.len() < n {
        match me.recv("an acknowledgement")?.payload {
            DemoMsg::Step(Step::Ack { role }) => who.push(role),
            other => {
                return Err(Failure::failed(format!(
                    "camera: expected an acknowledgement, got {other:?}"
                )))
            }
        }
    }
    who.sort();
    Ok(who)
}

/// A pipe, both ends close-on-exec: (read end, write end).
fn pipe() -> Result<(std::fs::File, std::os::fd::OwnedFd), Failure> {
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| Failure::failed(format!("camera: cannot make a pipe: {e}")))?;
    Ok((std::fs::File::from(read), write))
}
