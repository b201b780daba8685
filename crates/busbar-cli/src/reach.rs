//! `--namespace` and `--access`: where a bus's sockets live and who may
//! reach this endpoint, as the library's [`Namespace`] and [`Access`].

use busbar::{Access, Label, Namespace, Options};
use std::path::PathBuf;

/// Where the bus lives and who may reach this endpoint; every subcommand
/// that joins a bus takes these.
#[derive(Debug, Clone, clap::Args)]
pub struct Reach {
    /// Where the bus's sockets live: `abstract` (abstract unix
    /// sockets, no files), `filesystem` (socket files in
    /// $XDG_RUNTIME_DIR/busbar/<bus>/, a directory only this user may
    /// enter), or a directory path containing a `/` (e.g. `./my-bus` or
    /// `/run/app/bus`), created 0700 if missing. Every endpoint of a bus
    /// must give the same.
    #[arg(
        long,
        value_name = "abstract|filesystem|DIR",
        value_parser = parse_namespace,
        default_value = "abstract"
    )]
    pub namespace: Namespace,

    /// Who may join the bus (when this endpoint hosts its controller), open
    /// links to this endpoint, and be trusted as its controller or
    /// receivers: `same-user`, `anyone`, or the same user plus
    /// a comma-separated list of `uid:N` and `gid:N` (e.g. `uid:1001,gid:100`).
    #[arg(
        long,
        value_name = "same-user|anyone|uid:N,gid:N,...",
        value_parser = parse_access,
        default_value = "same-user"
    )]
    pub access: Access,
}

impl Reach {
    /// Options to join bus `bus` with `label` and `token`, reached as these
    /// flags say; `may_host` is `Options::controller_affinity`.
    pub fn options(&self, bus: &str, label: Label, token: &str, may_host: bool) -> Options {
        let mut options = Options::new(bus, label, token);
        options.namespace = self.namespace.clone();
        options.access = self.access.clone();
        options.controller_affinity = may_host;
        options
    }
}

/// Parses `--namespace`.
pub fn parse_namespace(text: &str) -> Result<Namespace, String> {
    match text {
        "abstract" => Ok(Namespace::Abstract),
        "filesystem" | "fs" => Ok(Namespace::Filesystem(None)),
        dir if dir.contains('/') => {
            // Absolute, so that processes started elsewhere find the same
            // directory; it need not exist yet (`join` creates it).
            let dir = std::path::absolute(dir)
                .map_err(|e| format!("cannot make {dir:?} an absolute path: {e}"))?;
            Ok(Namespace::Filesystem(Some(dir)))
        }
        "" => Err("empty: give `abstract`, `filesystem` or a directory path".to_string()),
        other => Err(format!(
            "{other:?} is neither `abstract`, `filesystem` nor a directory path \
             (a directory needs a `/`: ./{other})"
        )),
    }
}

/// Parses `--access`.
pub fn parse_access(text: &str) -> Result<Access, String> {
    match text {
        "same-user" => return Ok(Access::SameUser),
        "anyone" => return Ok(Access::Anyone),
        _ => {}
    }
    let (mut uids, mut gids) = (Vec::new(), Vec::new());
    for item in text.split(',').map(str::trim) {
        let (kind, number) = item.split_once(':').ok_or_else(|| {
            format!(
                "{item:?} is not `same-user`, `anyone`, `uid:N` or `gid:N` \
                 (list several as uid:1001,gid:100)"
            )
        })?;
        let into = match kind {
            "uid" => &mut uids,
            "gid" => &mut gids,
            _ => return Err(format!("{item:?}: `{kind}` is neither `uid` nor `gid`")),
        };
        let id: u32 = number
            .parse()
            .map_err(|_| format!("{item:?}: {number:?} is not a numeric {kind}"))?;
        into.push(id);
    }
    Ok(Access::Allow { uids, gids })
}

/// The directory a filesystem namespace lives in, for messages.
pub fn describe(namespace: &Namespace, bus: &str) -> String {
    match namespace {
        Namespace::Abstract => "the abstract namespace".to_string(),
        Namespace::Filesystem(Some(dir)) => format!("{}", dir.display()),
        Namespace::Filesystem(None) => match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(run) => format!("{}", PathBuf::from(run).join("busbar").join(bus).display()),
            None => "$XDG_RUNTIME_DIR/busbar/ (XDG_RUNTIME_DIR is not set)".to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_parse() {
        assert_eq!(parse_namespace("abstract"), Ok(Namespace::Abstract));
        assert_eq!(
            parse_namespace("filesystem"),
            Ok(Namespace::Filesystem(None))
        );
        assert_eq!(
            parse_namespace("/run/x"),
            Ok(Namespace::Filesystem(Some("/run/x".into())))
        );
        let Ok(Namespace::Filesystem(Some(dir))) = parse_namespace("./bus") else {
            panic!("a relative directory");
        };
        assert!(dir.is_absolute() && dir.ends_with("bus"), "{dir:?}");
        let err = parse_namespace("bus").unwrap_err();
        assert!(err.contains("./bus"), "{err}");
        assert!(parse_namespace("").is_err());
    }

    #[test]
    fn access_parses() {
        assert_eq!(parse_access("same-user"), Ok(Access::SameUser));
        assert_eq!(parse_access("anyone"), Ok(Access::Anyone));
        assert_eq!(
            parse_access("uid:1001, gid:100,uid:7"),
            Ok(Access::Allow {
                uids: vec![1001, 7],
                gids: vec![100]
            })
        );
        assert!(parse_access("uid:me").unwrap_err().contains("numeric uid"));
        assert!(parse_access("user:1").unwrap_err().contains("neither"));
        assert!(parse_access("everyone").unwrap_err().contains("anyone"));
        assert!(parse_access("uid:1,").is_err());
    }
}
