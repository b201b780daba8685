//! The message of the typed-channel peers (`busbar-chan-typed`,
//! `ipc-channel-typed`): a struct holding the harness's bytes as a serde
//! byte string (`serde_bytes`), the usual shape of a typed message that
//! carries data. Both libraries encode it with postcard, to the same bytes.
//!
//! The sender encodes a borrowing [`Out`] (no copy of the bytes before
//! `send`); the receiver decodes an owned [`In`] (a `Vec<u8>`, as `recv`
//! gives it). The two have the same encoding.

use serde::{Deserialize, Serialize};

/// What a typed sender sends: the bytes, borrowed.
#[derive(Serialize, Deserialize)]
pub struct Out<'a> {
    #[serde(with = "serde_bytes", borrow)]
    pub data: &'a [u8],
}

/// What a typed receiver gets: the bytes, owned.
#[derive(Serialize, Deserialize)]
pub struct In {
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}
