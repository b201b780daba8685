//! `busbar-peer`: one process of a cross-process test.
//!
//! ```text
//! busbar-peer <role> --bus B [--label a,b] [--token T] [--no-affinity] [role options]
//! ```
//!
//! Every role joins bus `B` and prints `READY <id> controller=<bool>` once
//! it has joined (except `join-error`, which expects to be refused, and
//! `spin`, which does not join), so a
//! test waits for that line instead of sleeping. After that it speaks in stdout lines, one fact per
//! line, and exits 0 when it did its job. On any failure it prints
//! `FAIL <why>` and exits 1, so the test sees the reason at once.
//!
//! A receiver stops at a text message `END` (the fence): everything its
//! senders sent before the fence has arrived by then, so tests never wait
//! for "nothing more arrives".
//!
//! | role | does |
//! |---|---|
//! | `hold` | joins (first, so it hosts the controller) and waits for stdin to close |
//! | `recv [--narrow] [--no-fnv]` | prints `GOT <payload> @ <selector>` per message (bytes without their hash with `--no-fnv`; `GOT too-large size=<s> max=<m>` for one over its `max_payload`), `END <n>` at the fence |
//! | `send` | runs commands read from stdin, one answer line each (see [`messaging::send`]) |
//! | `stream --to L --count N [--progress-at K] [--pause-at P] [--report-controller]` | sends `Seq` 0..N unicast to `L`, then the fence |
//! | `stream-recv [--count N]` | checks `Seq`s arrive 0, 1, 2, ... up to the fence; `STREAM ok received=<n>` |
//! | `fds-send --to L --counts 0,1,..` | one message per count, carrying that many pipe write-ends; reads back what the receiver wrote |
//! | `fds-recv` | writes its index into every descriptor it gets |
//! | `fd-churn-send --to L --count N` / `fd-churn-recv --ack-to L --count N` | N messages with a pipe and a region each; `FDCOUNT before=<a> after=<b>` |
//! | `region-a --to L` / `region-b --reply-to L` | a shared region written, read, counted, freed and reused |
//! | `bytes-read-attachments --reply-to L` / `bytes-send-attachments --to L` | a `BytesMessage` with descriptors and regions read (and the regions written) / sent, for the Node.js binding's tests (see `bytes_attachments.rs`) |
//! | `loan-send --to L --sizes A,B [--multicast] [--acks N]` | one `loan` per size, filled with the pattern, `send_loan`; `POOL <n>` after each `N` acks (see `zero_copy.rs`) |
//! | `borrow-recv [--ack-to L]` | `recv_with` until the fence: `BORROWED format=<f> len=<n> pattern=<bool>`, `SEQ <n>`, `END <n>` |
//! | `join-error [--version V]` | expects `join` to be refused (or to time out); prints `REFUSED <kind> ...` |
//! | `expect-timeout --ms M` | `recv` with a timeout on an idle endpoint; `TIMEOUT elapsed_ms=<t>` |
//! | `crash-watch`, `crash-sink`, `crash-send`, `crash-region-send`, `crash-victim` | the crash tests' processes (see `crash.rs`) |
//! | `answer` / `rounds --to L --rounds N [--pause-at K]` | a newcomer speaks at once and is answered by label with no ttl (see `causal.rs`) |
//! | `respond [--hold-after N --held K]` / `requests --to L --threads T --count N [--expect-gone]` | answer requests with their payload / make them from T threads and match every answer (see `requests.rs`) |
//! | `sources` | `FROM <source> <text> listed=<bool>` per message, `END <n>` at the fence |
//! | `sees --labels a,b` | waits until its directory lists each label; `SEES a,b` |
//! | `hostile-recv` | receives while raw clients attack it; `Seq`s in order, `FDS <n>` on `fds` (see `hostile.rs`) |
//! | `mesh --count N --index I [--hold]` | waits for `N` endpoints with its label, multicasts to all, waits for `N` messages; `MESH got=<n> distinct=<d>` (see `scale.rs`) |
//! | `member [--expect N] [--poll-ms P] [--timing]` | polls `endpoints()` until `N` are listed with one controller: `SETTLED <dir>`; `check` on stdin: `DIR <dir>` |
//! | `spin` | burns a core until stdin closes (`SPINNING` first); does not join |
//! | `bytes-agent` / `bytes-flood --to L --count N` | speak `BytesMessage` only, for the bindings' tests: commands in message text answered to their sender / `N` messages with a descriptor and a region each (see `bindings.rs`) |
//! | `bytes` | `BytesMessage`s only: echoes, writes into descriptors, changes regions, sends on request, answers requests; the C and C++ bindings' peer (see `bytes.rs`) |
//!
//! Every role also takes `--namespace DIR|xdg`, `--access
//! same-user|anyone|allow:uids=A+B,gids=C`, `--max-endpoints N` and
//! `--max-payload N` (see `access.rs`), and `--join-timeout-s S` (default:
//! the 120 s hang guard).
//!
//! The roles are in `messaging.rs` and `attachments.rs`, one function
//! each; `common.rs` has what they share. The payload types are in the
//! library part of this crate (`src/lib.rs`), which the tests use too.

mod access;
mod attachments;
mod bindings;
mod bytes;
mod bytes_attachments;
mod causal;
mod common;
mod crash;
mod hostile;
mod messaging;
mod pressure;
mod requests;
mod scale;
mod zero_copy;

use common::{number, Result};
use std::collections::HashMap;
use std::process::ExitCode;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    let result = match args.role.as_str() {
        "hold" => messaging::hold(&args),
        "recv" if args.flag("narrow") => messaging::recv::<busbar_tests::Narrow>(&args),
        "recv" => messaging::recv::<busbar_tests::Mixed>(&args),
        "send" => messaging::send(&args),
        "stream" => messaging::stream(&args),
        "stream-recv" => messaging::stream_recv(&args),
        "bytes" => bytes::bytes(&args),
        "fds-send" => attachments::fds_send(&args),
        "fds-recv" => attachments::fds_recv(&args),
        "fd-churn-send" => attachments::fd_churn_send(&args),
        "fd-churn-recv" => attachments::fd_churn_recv(&args),
        "region-a" => attachments::region_a(&args),
        "loan-send" => zero_copy::loan_send(&args),
        "borrow-recv" => zero_copy::borrow_recv(&args),
        "region-b" => attachments::region_b(&args),
        "bytes-read-attachments" => bytes_attachments::read_attachments(&args),
        "bytes-send-attachments" => bytes_attachments::send_attachments(&args),
        "join-error" => messaging::join_error(&args),
        "expect-timeout" => messaging::expect_timeout(&args),
        "crash-watch" => crash::watch(&args),
        "crash-sink" => crash::sink(&args),
        "crash-send" => crash::send(&args),
        "crash-region-send" => crash::region_send(&args),
        "crash-victim" => crash::victim(&args),
        "hostile-recv" => hostile::hostile_recv(&args),
        "answer" => causal::answer(&args),
        "rounds" => causal::rounds(&args),
        "sees" => causal::sees(&args),
        "mesh" => scale::mesh(&args),
        "member" => scale::member(&args),
        "spin" => scale::spin(&args),
        "respond" => requests::respond(&args),
        "requests" => requests::requests(&args),
        "sources" => requests::sources(&args),
        "bytes-agent" => bindings::bytes_agent(&args),
        "bytes-flood" => bindings::bytes_flood(&args),
        other => Err(format!("unknown role {other:?}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn fail(why: String) -> ExitCode {
    println!("FAIL {why}");
    eprintln!("busbar-peer: {why}");
    ExitCode::FAILURE
}

/// `<role> --key value --flag ...`
struct Args {
    role: String,
    options: HashMap<String, String>,
}

impl Args {
    fn parse(args: impl Iterator<Item = String>) -> Result<Args> {
        let mut args = args.peekable();
        let role = args
            .next()
            .ok_or("usage: busbar-peer <role> --bus B [options]")?;
        let mut options = HashMap::new();
        while let Some(arg) = args.next() {
            let key = arg
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {arg:?}"))?;
            let value = match args.peek() {
                Some(v) if !v.starts_with("--") => args.next().unwrap_or_default(),
                _ => "true".to_string(),
            };
            options.insert(key.to_string(), value);
        }
        Ok(Args { role, options })
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.options.get(key).map(String::as_str)
    }

    fn req(&self, key: &str) -> Result<&str> {
        self.get(key).ok_or_else(|| format!("--{key} is required"))
    }

    fn flag(&self, key: &str) -> bool {
        self.get(key) == Some("true")
    }

    fn num<N: std::str::FromStr>(&self, key: &str) -> Result<N> {
        number(self.req(key)?)
    }

    fn opt_num<N: std::str::FromStr>(&self, key: &str) -> Result<Option<N>> {
        self.get(key).map(number).transpose()
    }

    /// A comma-separated list of numbers.
    fn list(&self, key: &str) -> Result<Vec<usize>> {
        self.req(key)?.split(',').map(number).collect()
    }
}
