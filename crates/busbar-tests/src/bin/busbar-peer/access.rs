//! Options for the access-control tests, which every role accepts:
//!
//! * `--namespace DIR`: socket files in `DIR` (`Namespace::Filesystem(Some(DIR))`);
//!   `--namespace xdg`: in `$XDG_RUNTIME_DIR/busbar/<bus>/` (`Filesystem(None)`).
//! * `--access same-user | anyone | allow:uids=A+B,gids=C`: who may join (when
//!   this peer hosts the controller) and open links to it.
//! * `--max-endpoints N`: the bus's limit, when this peer hosts the controller.
//! * `--max-payload N`: the largest payload this peer sends or accepts, in bytes.

use crate::common::{number, Result};
use crate::Args;
use busbar::{Access, Namespace, Options};
use std::path::PathBuf;

/// Applies `--namespace`, `--access`, `--max-endpoints` and `--max-payload` to `options`.
pub fn apply(args: &Args, options: &mut Options) -> Result {
    if let Some(ns) = args.get("namespace") {
        options.namespace = match ns {
            "xdg" => Namespace::Filesystem(None),
            dir => Namespace::Filesystem(Some(PathBuf::from(dir))),
        };
    }
    if let Some(access) = args.get("access") {
        options.access = parse_access(access)?;
    }
    if let Some(max) = args.opt_num::<usize>("max-endpoints")? {
        options.limits.max_endpoints = max;
    }
    if let Some(max) = args.opt_num::<u64>("max-payload")? {
        options.limits.max_payload = max;
    }
    Ok(())
}

/// `same-user`, `anyone`, or `allow:` then `uids=A+B` and `gids=C`, comma-separated.
fn parse_access(text: &str) -> Result<Access> {
    match text {
        "same-user" => return Ok(Access::SameUser),
        "anyone" => return Ok(Access::Anyone),
        _ => {}
    }
    let bad = || format!("bad --access {text:?}: same-user, anyone or allow:uids=A+B,gids=C");
    let list = text.strip_prefix("allow:").ok_or_else(bad)?;
    let (mut uids, mut gids) = (Vec::new(), Vec::new());
    for part in list.split(',').filter(|p| !p.is_empty()) {
        let (key, values) = part.split_once('=').ok_or_else(bad)?;
        let into = match key {
            "uids" => &mut uids,
            "gids" => &mut gids,
            _ => return Err(bad()),
        };
        for v in values.split('+').filter(|v| !v.is_empty()) {
            into.push(number::<u32>(v)?);
        }
    }
    Ok(Access::Allow { uids, gids })
}
