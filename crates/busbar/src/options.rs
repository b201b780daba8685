//! How an endpoint joins a bus.

use crate::Label;

/// How to join a bus: which bus, as whom, with what secret.
///
/// ```
/// let mut options = busbar::Options::new("com.example.solar", busbar::label!("earth"), "token");
/// options.controller_affinity = false; // never host the controller
/// ```
#[derive(Debug, Clone)]
pub struct Options {
    /// The bus name. Only endpoints with the same identifier talk to each other.
    /// At most [`Options::MAX_IDENTIFIER`] bytes, no NUL.
    pub identifier: String,
    /// The strings that describe this endpoint; selectors match against them.
    pub label: Label,
    /// A shared secret: the controller refuses endpoints with another token.
    pub token: String,
    /// Whether this endpoint may host the bus controller (default `true`).
    /// With `false` it never does, and `join` waits for one up to its timeout.
    pub controller_affinity: bool,
    pub(crate) protocol_version: u16,
}

impl Options {
    /// The longest bus identifier, in bytes.
    pub const MAX_IDENTIFIER: usize = 64;

    /// Options for joining bus `identifier` with `label` and `token`;
    /// `controller_affinity` is `true`.
    pub fn new(identifier: impl Into<String>, label: Label, token: impl Into<String>) -> Options {
        Options {
            identifier: identifier.into(),
            label,
            token: token.into(),
            controller_affinity: true,
            protocol_version: crate::frame::PROTOCOL_VERSION,
        }
    }

    /// Claims another protocol version at join (only for testing refusals).
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn with_protocol_version(mut self, version: u16) -> Options {
        self.protocol_version = version;
        self
    }
}
