//! PLACEHOLDER — owned by the label/selector helper; replaced wholesale.
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A set of strings describing an endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Label(BTreeSet<String>);

impl Label {
    /// Builds a label from strings.
    pub fn new<I, S>(items: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Label(items.into_iter().map(Into::into).collect())
    }
    /// Whether the label holds `s`.
    pub fn contains(&self, s: &str) -> bool {
        self.0.contains(s)
    }
    /// The strings, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

/// Builds a [`Label`].
#[macro_export]
macro_rules! label {
    ($($s:expr),* $(,)?) => { $crate::Label::new([$(::std::string::String::from($s)),*]) };
}
