//! The bridge's configuration: a TOML file, flags on top of it.

use busbar::LabelOp;
use std::path::Path;
use std::time::Duration;

/// What a bridge joins and how it reaches the other hosts.
///
/// Read it from a TOML file with [`Config::from_toml`] (every error names
/// the line at fault) or build it in code:
///
/// ```
/// let config = busbar_bridge::Config::from_toml(r#"
/// bus = "com.example.robot"
/// host = "arm"
/// export = "camera | planner"
/// listen = ["tcp/0.0.0.0:7447"]
/// connect = ["tcp/10.0.0.2:7447"]
/// "#)?;
/// assert_eq!(config.host, "arm");
/// assert!(!config.scouting);
/// # Ok::<(), busbar_bridge::BridgeError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    /// The local bus to join (its identifier).
    pub bus: String,
    /// The local bus's token (default `busbar`, the `busbar` command's).
    pub token: String,
    /// This host's name: the other hosts list this host's endpoints with the
    /// label `@host:<name>`. Letters, digits, `_`, `-` and `.`, 1 to 64 of
    /// them. Default: the machine's host name.
    pub host: String,
    /// Which local endpoints the other hosts may see and reach: those whose
    /// label this expression matches (default `false`: none).
    pub export: LabelOp,
    /// Zenoh endpoints to listen on, e.g. `tcp/0.0.0.0:7447`.
    pub listen: Vec<String>,
    /// Zenoh endpoints to connect to, e.g. `tcp/10.0.0.2:7447`.
    pub connect: Vec<String>,
    /// Whether Zenoh looks for peers by UDP multicast (default `false`:
    /// only `listen` and `connect`).
    pub scouting: bool,
    /// How long a silent Zenoh link is kept before the peer counts as gone
    /// (Zenoh's lease; default 10 s). A bridge killed outright closes its
    /// TCP connections, which the others see at once; a link cut without a
    /// close (a cable, a frozen machine) takes up to this long.
    pub lease: Duration,
    /// How long the directory is left between looks for endpoints that
    /// joined or left the local bus (default 50 ms).
    pub poll: Duration,
    /// How long a request from another host waits for its local answer
    /// (default 60 s).
    pub request_timeout: Duration,
    /// How long a proxy's thread spins for the next local message before
    /// it sleeps (busbar's [`set_spin`](busbar::EndpointReceiver::set_spin);
    /// default 0: it sleeps at once). Spinning spares a wake-up per
    /// message when they come closer than this, and costs a core
    /// meanwhile: with many proxies, or fewer cores than busy threads, it
    /// slows everything down (on the 2-core test machine 50 µs made the
    /// bridge slower, not faster).
    pub spin: Duration,
    /// The largest payload the bridge's endpoints send or accept, in bytes
    /// (default 64 MiB, busbar's own default).
    pub max_payload: u64,
    /// TLS settings for Zenoh. This build of `busbar-bridge` has Zenoh's
    /// TCP transport only: giving any is an error
    /// ([`BridgeError::Config`]) that says so, rather than settings
    /// silently ignored.
    pub tls: Option<Tls>,
}

/// TLS settings, passed to Zenoh's `transport/link/tls` (see
/// [`Config::tls`]: refused by this build).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// A PEM file with the certificate authority to trust.
    pub root_ca_certificate: Option<String>,
    /// A PEM file with the private key to listen with.
    pub listen_private_key: Option<String>,
    /// A PEM file with the certificate to listen with.
    pub listen_certificate: Option<String>,
    /// Whether peers must show a certificate too.
    pub enable_mtls: Option<bool>,
    /// A PEM file with the private key to connect with (mutual TLS).
    pub connect_private_key: Option<String>,
    /// A PEM file with the certificate to connect with (mutual TLS).
    pub connect_certificate: Option<String>,
    /// Whether the peer's name is checked against its certificate.
    pub verify_name_on_connect: Option<bool>,
}

/// The file's shape; spans give errors their line.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    bus: Option<toml::Spanned<String>>,
    token: Option<String>,
    host: Option<toml::Spanned<String>>,
    export: Option<toml::Spanned<String>>,
    listen: Option<Vec<toml::Spanned<String>>>,
    connect: Option<Vec<toml::Spanned<String>>>,
    scouting: Option<bool>,
    lease_ms: Option<toml::Spanned<u64>>,
    poll_ms: Option<toml::Spanned<u64>>,
    request_timeout_ms: Option<toml::Spanned<u64>>,
    spin_us: Option<u64>,
    max_payload: Option<toml::Spanned<u64>>,
    tls: Option<toml::Spanned<Tls>>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            bus: String::new(),
            token: "busbar".to_string(),
            host: default_host(),
            export: LabelOp::False,
            listen: Vec::new(),
            connect: Vec::new(),
            scouting: false,
            lease: Duration::from_secs(10),
            poll: Duration::from_millis(50),
            request_timeout: Duration::from_secs(60),
            spin: Duration::ZERO,
            max_payload: 64 << 20,
            tls: None,
        }
    }
}

/// The machine's host name, made fit for a label and a key (`host` if
/// there is none).
fn default_host() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .filter(|c| host_char(*c))
        .take(64)
        .collect();
    if name.is_empty() {
        "host".to_string()
    } else {
        name
    }
}

fn host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// Checks a host name (see [`Config::host`]).
pub(crate) fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() || host.len() > 64 || !host.chars().all(host_char) {
        return Err(format!(
            "host {host:?}: 1 to 64 letters, digits, `_`, `-` or `.`"
        ));
    }
    Ok(())
}

/// Checks a Zenoh endpoint (see [`Config::listen`]).
pub(crate) fn check_endpoint(endpoint: &str) -> Result<(), String> {
    if endpoint.starts_with("tls/") {
        return Err(format!(
            "{endpoint:?}: this busbar-bridge is built with Zenoh's TCP transport only (no TLS); use tcp/..."
        ));
    }
    let parsed: Result<zenoh::config::EndPoint, _> = endpoint.parse();
    match parsed {
        Ok(e) if e.protocol().as_str() == "tcp" => Ok(()),
        Ok(e) => Err(format!(
            "{endpoint:?}: protocol {:?} is not built in; this busbar-bridge speaks tcp/HOST:PORT",
            e.protocol().as_str()
        )),
        Err(e) => Err(format!("{endpoint:?} is not a Zenoh endpoint: {e}")),
    }
}

/// The message for TLS settings this build cannot use.
pub(crate) const NO_TLS: &str = "TLS settings given, but this busbar-bridge is built with Zenoh's TCP transport only (the TLS transport adds rustls and its crypto to the build); remove [tls], or build busbar-bridge with zenoh's `transport_tls` feature";

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |t| t.bytes().filter(|&b| b == b'\n').count())
        + 1
}

impl Config {
    /// Reads a configuration file (see [`from_toml`](Self::from_toml)).
    pub fn from_file(path: &Path) -> Result<Config, crate::BridgeError> {
        let text = std::fs::read_to_string(path).map_err(|e| crate::BridgeError::Config {
            line: 0,
            message: format!("cannot read {}: {e}", path.display()),
        })?;
        Config::from_toml(&text)
    }

    /// Parses a configuration from TOML text. Keys: `bus`, `token`,
    /// `host`, `export`, `listen`, `connect`, `scouting`, `lease_ms`,
    /// `poll_ms`, `request_timeout_ms`, `spin_us`, `max_payload`, and a `[tls]` table
    /// (see [`Tls`]). An unknown key, a value of the wrong type, a label
    /// expression that does not parse or a Zenoh endpoint that is not
    /// `tcp/...` is a [`BridgeError::Config`] with its line.
    ///
    /// ```
    /// let err = busbar_bridge::Config::from_toml("bus = \"b\"\nexport = \"a & \"\n").unwrap_err();
    /// assert!(err.to_string().starts_with("line 2:"), "{err}");
    /// ```
    pub fn from_toml(text: &str) -> Result<Config, crate::BridgeError> {
        let at = |span: std::ops::Range<usize>, message: String| crate::BridgeError::Config {
            line: line_of(text, span.start),
            message,
        };
        let file: File = toml::from_str(text).map_err(|e| crate::BridgeError::Config {
            line: e.span().map_or(0, |s| line_of(text, s.start)),
            message: e.message().to_string(),
        })?;
        let mut config = Config::default();
        if let Some(bus) = file.bus {
            config.bus = bus.get_ref().clone();
        }
        if let Some(token) = file.token {
            config.token = token;
        }
        if let Some(host) = file.host {
            check_host(host.get_ref()).map_err(|m| at(host.span(), m))?;
            config.host = host.get_ref().clone();
        }
        if let Some(export) = file.export {
            config.export = export.get_ref().parse().map_err(|e: busbar::ParseError| {
                at(
                    export.span(),
                    format!("export: {e}\n{}", e.caret(export.get_ref())),
                )
            })?;
        }
        for (list, into) in [
            (file.listen, &mut config.listen),
            (file.connect, &mut config.connect),
        ] {
            for endpoint in list.into_iter().flatten() {
                check_endpoint(endpoint.get_ref()).map_err(|m| at(endpoint.span(), m))?;
                into.push(endpoint.into_inner());
            }
        }
        if let Some(scouting) = file.scouting {
            config.scouting = scouting;
        }
        let millis = |v: toml::Spanned<u64>, what: &str| {
            if *v.get_ref() == 0 {
                return Err(at(v.span(), format!("{what} must be at least 1")));
            }
            Ok(Duration::from_millis(*v.get_ref()))
        };
        if let Some(v) = file.lease_ms {
            config.lease = millis(v, "lease_ms")?;
        }
        if let Some(v) = file.poll_ms {
            config.poll = millis(v, "poll_ms")?;
        }
        if let Some(v) = file.request_timeout_ms {
            config.request_timeout = millis(v, "request_timeout_ms")?;
        }
        if let Some(v) = file.spin_us {
            config.spin = Duration::from_micros(v);
        }
        if let Some(v) = file.max_payload {
            if *v.get_ref() == 0 || *v.get_ref() > u64::from(u32::MAX) {
                return Err(at(
                    v.span(),
                    "max_payload must be from 1 to 4294967295".into(),
                ));
            }
            config.max_payload = *v.get_ref();
        }
        if let Some(tls) = file.tls {
            return Err(at(tls.span(), NO_TLS.into()));
        }
        Ok(config)
    }

    /// Checks what a configuration built in code (or changed by flags)
    /// holds; [`Bridge::start`](crate::Bridge::start) calls it.
    pub fn check(&self) -> Result<(), crate::BridgeError> {
        let bad = |message: String| crate::BridgeError::Config { line: 0, message };
        if self.bus.is_empty() {
            return Err(bad("no bus: give `bus = \"NAME\"` or --bus".into()));
        }
        check_host(&self.host).map_err(bad)?;
        for e in self.listen.iter().chain(&self.connect) {
            check_endpoint(e).map_err(bad)?;
        }
        if self.tls.is_some() {
            return Err(bad(NO_TLS.into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> usize {
        match Config::from_toml(text) {
            Err(crate::BridgeError::Config { line, .. }) => line,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn reads_every_key() {
        let c = Config::from_toml(
            "bus = \"x\"\ntoken = \"t\"\nhost = \"h-1\"\nexport = \"a | b\"\n\
             listen = [\"tcp/127.0.0.1:7447\"]\nconnect = [\"tcp/127.0.0.1:7448\"]\n\
             scouting = true\nlease_ms = 2000\npoll_ms = 10\nrequest_timeout_ms = 5000\nspin_us = 7\nmax_payload = 100\n",
        )
        .expect("valid");
        assert_eq!(
            (c.bus.as_str(), c.token.as_str(), c.host.as_str()),
            ("x", "t", "h-1")
        );
        assert_eq!(c.export, "a | b".parse::<LabelOp>().expect("parses"));
        assert_eq!(c.listen, ["tcp/127.0.0.1:7447"]);
        assert_eq!(c.connect, ["tcp/127.0.0.1:7448"]);
        assert!(c.scouting);
        assert_eq!(c.lease, Duration::from_secs(2));
        assert_eq!(c.poll, Duration::from_millis(10));
        assert_eq!(c.request_timeout, Duration::from_secs(5));
        assert_eq!(c.max_payload, 100);
        assert_eq!(c.spin, Duration::from_micros(7));
        c.check().expect("checks");
    }

    #[test]
    fn defaults_export_nothing() {
        let c = Config::from_toml("bus = \"x\"").expect("valid");
        assert_eq!(c.export, LabelOp::False);
        assert!(!c.scouting && c.listen.is_empty() && c.connect.is_empty());
        check_host(&c.host).expect("the default host name is usable");
    }

    #[test]
    fn errors_name_their_line() {
        assert_eq!(line("bus = \"x\"\n\nexport = \"a & (\"\n"), 3);
        assert_eq!(
            line("bus = \"x\"\nlisten = [\n  \"tcp/127.0.0.1:1\",\n  \"udp/1.2.3.4:5\",\n]\n"),
            4
        );
        assert_eq!(line("bus = \"x\"\nhosts = \"a\"\n"), 2);
        assert_eq!(line("bus = \"x\"\nscouting = \"yes\"\n"), 2);
        assert_eq!(line("bus = \"x\"\nhost = \"a b\"\n"), 2);
        assert_eq!(line("bus = \"x\"\nlease_ms = 0\n"), 2);
        assert_eq!(line("bus = \"x\"\nbus = \"y\"\n"), 2);
        assert_eq!(
            line("bus = \"x\"\n[tls]\nroot_ca_certificate = \"ca.pem\"\n"),
            2
        );
        assert_eq!(line("bus = \"x\"\nconnect = [\"tls/1.2.3.4:7447\"]\n"), 2);
    }

    #[test]
    fn tls_is_refused_with_a_clear_error() {
        let e = Config::from_toml("bus = \"x\"\n[tls]\nenable_mtls = true\n").expect_err("refused");
        assert!(e.to_string().contains("TCP transport only"), "{e}");
        let c = Config {
            bus: "x".into(),
            tls: Some(Tls::default()),
            ..Config::default()
        };
        assert!(c.check().is_err());
    }
}
