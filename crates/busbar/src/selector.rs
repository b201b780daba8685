//! PLACEHOLDER — owned by the label/selector helper; replaced wholesale.
use crate::Label;
use std::time::Duration;

/// A boolean expression over label strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LabelOp {
    /// Matches every label.
    True,
    /// Matches no label.
    False,
    /// Matches labels that contain the string.
    Leaf(String),
    /// Negation.
    Not(Box<LabelOp>),
    /// Both.
    And(Box<LabelOp>, Box<LabelOp>),
    /// Either.
    Or(Box<LabelOp>, Box<LabelOp>),
}

impl LabelOp {
    /// Whether `label` satisfies the expression.
    pub fn matches(&self, label: &Label) -> bool {
        let _ = label;
        todo!()
    }
}

impl From<&str> for LabelOp {
    fn from(s: &str) -> Self {
        LabelOp::Leaf(s.to_string())
    }
}

impl std::fmt::Display for LabelOp {
    fn fmt(&self, _f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        todo!()
    }
}

/// Error from parsing a label expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad label expression at {position}: {message}")]
pub struct ParseError {
    /// Byte offset of the bad character.
    pub position: usize,
    /// What was wrong.
    pub message: String,
}

impl std::str::FromStr for LabelOp {
    type Err = ParseError;
    fn from_str(_s: &str) -> Result<Self, ParseError> {
        todo!()
    }
}

/// Unicast or multicast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SelectorMode {
    /// Exactly one matching endpoint.
    Unicast,
    /// Every matching endpoint.
    Multicast,
}

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Selector {
    /// Unicast or multicast.
    pub mode: SelectorMode,
    /// The expression endpoints' labels must satisfy.
    pub label_op: LabelOp,
    /// How long an unroutable message waits.
    pub ttl: Duration,
}

impl Selector {
    /// Unicast.
    pub fn unicast(op: impl Into<LabelOp>) -> Self {
        Selector { mode: SelectorMode::Unicast, label_op: op.into(), ttl: Duration::ZERO }
    }
    /// Multicast.
    pub fn multicast(op: impl Into<LabelOp>) -> Self {
        Selector { mode: SelectorMode::Multicast, label_op: op.into(), ttl: Duration::ZERO }
    }
}
impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}({})", self.mode, self.label_op)
    }
}
impl Selector {
    /// ttl
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }
}
