//! Labels: the sets of strings that describe endpoints.
//!
//! Every endpoint joins a bus with a [`Label`], and a
//! [`Selector`](crate::Selector) picks receivers by testing their labels.
//!
//! ```
//! use busbar::{label, Label};
//!
//! let label = label!("renderer", "gpu");
//! assert!(label.contains("gpu"));
//! assert_eq!(label.to_string(), "gpu,renderer");
//! assert_eq!("renderer, gpu".parse::<Label>().unwrap(), label);
//! ```

use serde::{Deserialize, Serialize};
use std::collections::{btree_set, BTreeSet};
use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// A set of strings describing an endpoint, such as `{"renderer", "gpu"}`.
///
/// The strings are kept sorted and without duplicates. Build one with the
/// [`label!`](crate::label!) macro, [`Label::new`], `collect()`, or by
/// parsing the comma-separated form that [`Display`](fmt::Display) prints.
///
/// # Examples
///
/// ```
/// use busbar::Label;
///
/// let mut label = Label::new(["renderer"]);
/// label.insert("gpu");
/// assert_eq!(label.len(), 2);
/// assert_eq!(label.iter().collect::<Vec<_>>(), ["gpu", "renderer"]);
/// ```
///
/// A label is shared, not copied: cloning one (as
/// [`EndpointSender::endpoints`](crate::EndpointSender::endpoints) does for
/// every endpoint it lists) costs a reference count, and changing a clone
/// copies its strings first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Label(Arc<BTreeSet<String>>);

impl Serialize for Label {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.as_ref().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Label {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        BTreeSet::deserialize(deserializer).map(|set| Label(Arc::new(set)))
    }
}

impl Label {
    /// Builds a label from strings.
    ///
    /// ```
    /// use busbar::Label;
    ///
    /// let label = Label::new(["gpu", "renderer", "gpu"]);
    /// assert_eq!(label.len(), 2);
    /// ```
    pub fn new<I, S>(items: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Label(Arc::new(items.into_iter().map(Into::into).collect()))
    }

    /// Adds `item`; returns whether it was new.
    pub fn insert(&mut self, item: impl Into<String>) -> bool {
        Arc::make_mut(&mut self.0).insert(item.into())
    }

    /// Whether `other` is a clone of this label sharing its strings (not a copy).
    #[cfg(test)]
    pub(crate) fn shares_with(&self, other: &Label) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Whether the label holds `s`.
    pub fn contains(&self, s: &str) -> bool {
        self.0.contains(s)
    }

    /// The strings, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// How many strings the label holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the label holds no string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Prints the strings sorted and comma-separated, e.g. `gpu,renderer`.
///
/// Strings are printed as they are: one that contains a comma, or starts or
/// ends with a space, does not survive a trip through [`FromStr`].
impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(item)?;
        }
        Ok(())
    }
}

/// Parses the comma-separated form: `"renderer, gpu"`.
///
/// Items are trimmed of surrounding whitespace and empty items are skipped,
/// so `""` gives the empty label. Parsing never fails.
impl FromStr for Label {
    type Err = Infallible;

    fn from_str(s: &str) -> Result<Self, Infallible> {
        Ok(s.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .collect())
    }
}

/// A label holding just `s`, as it is (no splitting at commas).
impl From<&str> for Label {
    fn from(s: &str) -> Self {
        Label::new([s])
    }
}

/// A label holding just `s`, as it is (no splitting at commas).
impl From<String> for Label {
    fn from(s: String) -> Self {
        Label::new([s])
    }
}

impl<S: Into<String>> FromIterator<S> for Label {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        Label::new(iter)
    }
}

impl<S: Into<String>> Extend<S> for Label {
    fn extend<I: IntoIterator<Item = S>>(&mut self, iter: I) {
        Arc::make_mut(&mut self.0).extend(iter.into_iter().map(Into::into));
    }
}

impl IntoIterator for Label {
    type Item = String;
    type IntoIter = btree_set::IntoIter<String>;

    fn into_iter(self) -> Self::IntoIter {
        Arc::unwrap_or_clone(self.0).into_iter()
    }
}

impl<'a> IntoIterator for &'a Label {
    type Item = &'a str;
    type IntoIter = std::iter::Map<btree_set::Iter<'a, String>, fn(&'a String) -> &'a str>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(String::as_str)
    }
}

/// Builds a [`Label`] from string expressions.
///
/// Each argument is borrowed, so a `String` stays usable afterwards (as in
/// ipmb): anything `AsRef<str>` (`&str`, `String`, `Cow<str>`, ...) is
/// taken as its string, anything else that implements `ToString`
/// (`Display`: a number, a `char`, ...) as what it prints.
///
/// ```
/// use busbar::label;
///
/// let label = label!("renderer", "gpu");
/// assert!(label.contains("renderer"));
/// assert!(label!().is_empty());
///
/// let name = String::from("earth");
/// let label = label!(name, 3, format!("moon-{}", 1));
/// assert_eq!(label.to_string(), "3,earth,moon-1");
/// assert_eq!(name, "earth"); // still ours
/// ```
#[macro_export]
macro_rules! label {
    ($($s:expr),* $(,)?) => {{
        #[allow(unused_imports)]
        use $crate::__label_item::{ViaAsRef as _, ViaToString as _};
        $crate::Label::new::<_, ::std::string::String>(
            [$((&$crate::__label_item::Item(&$s)).label_item()),*]
        )
    }};
}

/// How [`label!`](crate::label!) turns a borrowed argument into a string:
/// by `AsRef<str>` when the argument has it, else by `ToString`. The
/// choice is made by method lookup (the `AsRef` method takes `&Item`, the
/// `ToString` one `&&Item`, which lookup reaches only when the first does
/// not apply), so no two impls overlap.
#[doc(hidden)]
pub mod item {
    /// One borrowed `label!` argument.
    pub struct Item<'a, T: ?Sized>(pub &'a T);

    /// Arguments that are strings already.
    pub trait ViaAsRef {
        /// The label string.
        fn label_item(&self) -> String;
    }

    impl<T: AsRef<str> + ?Sized> ViaAsRef for Item<'_, T> {
        fn label_item(&self) -> String {
            self.0.as_ref().to_owned()
        }
    }

    /// Arguments that print as one.
    pub trait ViaToString {
        /// The label string.
        fn label_item(&self) -> String;
    }

    impl<T: ToString + ?Sized> ViaToString for &Item<'_, T> {
        fn label_item(&self) -> String {
            self.0.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macro_forms() {
        assert!(label!().is_empty());
        assert_eq!(label!().len(), 0);
        let name = String::from("gpu");
        let l = label!("renderer", name, "gpu",);
        assert_eq!(l.len(), 2);
        assert!(l.contains("gpu") && l.contains("renderer") && !l.contains("cpu"));
    }

    /// Every argument is borrowed; strings by `AsRef<str>`, the rest by `ToString`.
    #[test]
    fn macro_borrows_its_arguments() {
        use std::borrow::Cow;
        use std::rc::Rc;
        let owned = String::from("a");
        let s: &str = "b";
        let cow: Cow<str> = Cow::Owned("c".into());
        let boxed: Box<str> = "d".into();
        let rc: Rc<str> = "e".into();
        let l = label!(
            owned,
            &owned,
            s,
            &s,
            cow,
            boxed,
            rc,
            'f',
            7u8,
            -1,
            owned.clone() + "g"
        );
        assert_eq!(l.to_string(), "-1,7,a,ag,b,c,d,e,f");
        // All still usable: nothing was moved.
        assert_eq!(
            (owned.as_str(), s, &*cow, &*boxed, &*rc),
            ("a", "b", "c", "d", "e")
        );
        // An argument that is only AsRef<str> (no Display) works too.
        struct Name;
        impl AsRef<str> for Name {
            fn as_ref(&self) -> &str {
                "name"
            }
        }
        assert_eq!(label!(Name), label!("name"));
        // As in ipmb: a temporary, and a variable used again later.
        let i = 3;
        assert_eq!(label!(i.to_string()), label!("3"));
        let label = String::from("x");
        let options = crate::Options::new("bus", label!(label), "");
        assert_eq!((options.label, label), (label!("x"), String::from("x")));
    }

    #[test]
    fn display_and_parse() {
        let l = label!("renderer", "gpu");
        assert_eq!(l.to_string(), "gpu,renderer");
        assert_eq!(" renderer ,, gpu , ".parse::<Label>(), Ok(l.clone()));
        assert_eq!(l.to_string().parse::<Label>(), Ok(l));
        assert_eq!("".parse::<Label>(), Ok(Label::default()));
        assert_eq!(Label::default().to_string(), "");
    }

    #[test]
    fn conversions() {
        assert_eq!(Label::from("a,b").iter().collect::<Vec<_>>(), ["a,b"]);
        assert_eq!(Label::from(String::from("x")), label!("x"));
        let l: Label = ["b", "a"].into_iter().collect();
        assert_eq!((&l).into_iter().collect::<Vec<_>>(), ["a", "b"]);
        let mut m = Label::default();
        assert!(m.insert("a"));
        assert!(!m.insert("a"));
        m.extend(["b"]);
        assert_eq!(m, l);
        assert_eq!(l.into_iter().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn clones_share_and_changes_copy() {
        let a = label!("renderer", "gpu");
        let mut b = a.clone();
        assert!(a.shares_with(&b));
        b.insert("cpu");
        assert!(!a.shares_with(&b));
        assert_eq!(a, label!("renderer", "gpu"));
        assert_eq!(b.len(), 3);
    }

    #[test]
    fn serde_round_trip() {
        let l = label!("renderer", "gpu", "");
        let bytes = postcard::to_allocvec(&l).unwrap();
        assert_eq!(postcard::from_bytes::<Label>(&bytes).unwrap(), l);
    }
}
