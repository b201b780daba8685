//! The `busbar-bridge` command: joins a local bus to the other hosts' through Zenoh.

use busbar_bridge::{Bridge, Config};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Join a local busbar bus to the buses of other hosts through Zenoh.
///
/// Endpoints of the other hosts appear on the local bus with their labels
/// plus `@host:NAME`; the local endpoints that --export matches appear on
/// theirs. Flags override the file given with --config. Once running it
/// prints `busbar-bridge ready host=NAME zid=ZID bus=BUS` on stdout; send
/// its endpoint (label `@bridge`) the request `stats` for its counters:
/// `busbar request --bus BUS --to @bridge stats`.
#[derive(Debug, clap::Parser)]
#[command(version)]
struct Args {
    /// A TOML file with the settings (keys: bus, token, host, export,
    /// listen, connect, scouting, lease_ms, poll_ms, request_timeout_ms,
    /// spin_us, max_payload).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The local bus.
    #[arg(long, value_name = "NAME")]
    bus: Option<String>,
    /// The local bus's token (default: the file's, else `busbar`).
    #[arg(long, env = "BUSBAR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// This host's name, as the others label its endpoints (`@host:NAME`).
    #[arg(long, value_name = "NAME")]
    host: Option<String>,
    /// Which local endpoints the other hosts may see and reach (a label
    /// expression; default: none).
    #[arg(long, value_name = "EXPR")]
    export: Option<String>,
    /// A Zenoh endpoint to listen on, e.g. tcp/0.0.0.0:7447 (repeatable).
    #[arg(long, value_name = "ENDPOINT")]
    listen: Vec<String>,
    /// A Zenoh endpoint to connect to, e.g. tcp/10.0.0.2:7447 (repeatable).
    #[arg(long, value_name = "ENDPOINT")]
    connect: Vec<String>,
    /// Look for other bridges by UDP multicast too.
    #[arg(long)]
    scouting: bool,
    /// Zenoh's link lease in milliseconds: how long a silent link lasts.
    #[arg(long, value_name = "MS")]
    lease_ms: Option<u64>,
    /// How long a proxy spins for the next local message before it sleeps,
    /// in microseconds (default 0).
    #[arg(long, value_name = "US")]
    spin_us: Option<u64>,
}

fn config(args: Args) -> Result<Config, String> {
    let mut c = match &args.config {
        Some(path) => Config::from_file(path).map_err(|e| format!("{}: {e}", path.display()))?,
        None => Config::default(),
    };
    if let Some(v) = args.bus {
        c.bus = v;
    }
    if let Some(v) = args.token {
        c.token = v;
    }
    if let Some(v) = args.host {
        c.host = v;
    }
    if let Some(v) = args.export {
        c.export = v
            .parse()
            .map_err(|e: busbar::ParseError| format!("--export: {e}\n{}", e.caret(&v)))?;
    }
    c.listen.extend(args.listen);
    c.connect.extend(args.connect);
    c.scouting |= args.scouting;
    if let Some(ms) = args.lease_ms.filter(|&ms| ms > 0) {
        c.lease = std::time::Duration::from_millis(ms);
    }
    if let Some(us) = args.spin_us {
        c.spin = std::time::Duration::from_micros(us);
    }
    c.check().map_err(|e| e.to_string())?;
    Ok(c)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Args = clap::Parser::parse();
    let config = match config(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("busbar-bridge: {e}");
            return ExitCode::from(2);
        }
    };
    let (host, bus) = (config.host.clone(), config.bus.clone());
    let bridge = match Bridge::start(config) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("busbar-bridge: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "busbar-bridge ready host={host} zid={} bus={bus}",
        bridge.zid()
    );
    let _ = out.flush();
    // Runs until killed: the kernel closes its sockets, and the local bus
    // and the other hosts see its endpoints go.
    loop {
        std::thread::park();
    }
}
