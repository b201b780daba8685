//! Selectors: which endpoints a message goes to.
//!
//! A [`Selector`] is a [`SelectorMode`] (one receiver or all of them), a
//! [`LabelOp`] that a receiver's [`Label`] must satisfy, and a `ttl`: how
//! long a message that no endpoint matches yet waits for one to join.
//!
//! A [`LabelOp`] is built in code with [`LabelOp::and`], [`LabelOp::or`] and
//! `!`, or parsed from text such as `renderer & (gpu | !cpu)` (the syntax
//! is described at [`LabelOp`]):
//!
//! ```
//! use busbar::{label, LabelOp, Selector};
//!
//! let op: LabelOp = "renderer & !gpu | codec".parse()?;
//! assert_eq!(op, LabelOp::from("renderer").and(!LabelOp::from("gpu")).or("codec"));
//! assert!(op.matches(&label!("renderer", "cpu")));
//! assert!(!op.matches(&label!("renderer", "gpu")));
//!
//! let selector = Selector::multicast(op);
//! assert_eq!(selector.to_string(), "multicast(renderer & !gpu | codec)");
//! # Ok::<(), busbar::ParseError>(())
//! ```

use crate::Label;
use serde::{de, ser, Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// The deepest [`LabelOp`] tree the parser accepts.
///
/// Every `!`, `&` and `|` adds a level to the tree (a leaf, `true` or
/// `false` is one level), so `a | b | …` can chain at most this many terms;
/// parentheses may not nest deeper than this either. Everything that walks a
/// tree (matching, printing, cloning, dropping) recurses, and this bound is
/// what keeps text from another process from overflowing the stack.
pub const MAX_DEPTH: usize = 128;

/// The longest text, in bytes, that the parser accepts.
pub const MAX_EXPR_LEN: usize = 64 * 1024;

/// A boolean expression over the strings of a [`Label`].
///
/// Build one in code with [`LabelOp::leaf`], [`LabelOp::and`],
/// [`LabelOp::or`] and `!`, or parse it from text with [`str::parse`].
///
/// # Text syntax
///
/// | form | meaning |
/// |---|---|
/// | `gpu`, `com.solar/earth-1` | the label contains this string; bare names use `A-Z a-z 0-9 _ . : / @ + -` |
/// | `"any text"` | the same, for any other string (`\"` and `\\` escape) |
/// | `true`, `false` | every label, no label |
/// | `!a` | not |
/// | `a & b` | and |
/// | `a \| b` | or |
/// | `( … )` | grouping |
///
/// `!` binds tighter than `&`, which binds tighter than `|`; `&` and `|`
/// group from the left. Whitespace between tokens is ignored.
/// [`Display`](fmt::Display) prints the same syntax, so printing and parsing
/// give back the same tree.
///
/// Text from other processes is safe to parse: the parser never panics, and
/// rejects input longer than [`MAX_EXPR_LEN`] bytes and trees deeper than
/// [`MAX_DEPTH`] levels. Trees are also sent between processes in this text
/// form (that is how `LabelOp` implements serde), so a deserialized `LabelOp`
/// obeys the same limits.
///
/// The variants hold their string and sub-expressions behind an [`Arc`]
/// (`Leaf(Arc<str>)`, `Not(Arc<LabelOp>)`, ...), so that cloning an
/// expression, as every `Message::new(to.clone(), ..)` does, allocates
/// nothing. (Before, they were a `String` and `Box`es, as ipmb's are `Box`es:
/// code that builds a variant by hand, `LabelOp::Not(Box::new(op))`, now
/// writes `Arc::new`, or `!op`; [`LabelOp::leaf`], [`and`](LabelOp::and),
/// [`or`](LabelOp::or), `!` and the `From` conversions are unchanged.)
///
/// # Examples
///
/// ```
/// use busbar::{label, LabelOp};
///
/// let op = LabelOp::leaf("renderer").and(!LabelOp::leaf("gpu"));
/// assert!(op.matches(&label!("renderer")));
/// assert!(!op.matches(&label!("renderer", "gpu")));
/// assert_eq!(op.to_string(), "renderer & !gpu");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LabelOp {
    /// Matches every label.
    True,
    /// Matches no label.
    False,
    /// Matches labels that contain the string. Shared, not copied, when the
    /// expression is cloned: a sender clones its selector into every message
    /// (`Message::new(to.clone(), ..)`) and a receiver hands out the one it
    /// decoded last, so a clone must cost no allocation.
    Leaf(Arc<str>),
    /// Matches labels the inner expression does not match.
    Not(Arc<LabelOp>),
    /// Matches labels both expressions match.
    And(Arc<LabelOp>, Arc<LabelOp>),
    /// Matches labels either expression matches.
    Or(Arc<LabelOp>, Arc<LabelOp>),
}

impl LabelOp {
    /// A [`LabelOp::Leaf`]: matches labels that contain `s`.
    ///
    /// `s` is taken as it is, never parsed: `LabelOp::leaf("a & b")` matches
    /// the label string `a & b`.
    pub fn leaf(s: impl Into<String>) -> Self {
        LabelOp::Leaf(s.into().into())
    }

    /// `self & other`.
    ///
    /// ```
    /// use busbar::{label, LabelOp};
    ///
    /// let op = LabelOp::leaf("a").and("b");
    /// assert!(op.matches(&label!("a", "b")));
    /// assert!(!op.matches(&label!("a")));
    /// ```
    pub fn and(self, other: impl Into<LabelOp>) -> LabelOp {
        LabelOp::And(Arc::new(self), Arc::new(other.into()))
    }

    /// `self | other`.
    ///
    /// ```
    /// use busbar::{label, LabelOp};
    ///
    /// let op = LabelOp::leaf("a").or("b");
    /// assert!(op.matches(&label!("b")));
    /// assert!(!op.matches(&label!("c")));
    /// ```
    pub fn or(self, other: impl Into<LabelOp>) -> LabelOp {
        LabelOp::Or(Arc::new(self), Arc::new(other.into()))
    }

    /// Whether `label` satisfies the expression.
    ///
    /// ```
    /// use busbar::{label, LabelOp};
    ///
    /// let op: LabelOp = "earth | moon".parse()?;
    /// assert!(op.matches(&label!("moon")));
    /// assert!(!op.matches(&label!("mars")));
    /// # Ok::<(), busbar::ParseError>(())
    /// ```
    pub fn matches(&self, label: &Label) -> bool {
        match self {
            LabelOp::True => true,
            LabelOp::False => false,
            LabelOp::Leaf(s) => label.contains(s),
            LabelOp::Not(op) => !op.matches(label),
            LabelOp::And(a, b) => a.matches(label) && b.matches(label),
            LabelOp::Or(a, b) => a.matches(label) || b.matches(label),
        }
    }

    /// The number of levels of the tree: 1 for a leaf, `true` or `false`,
    /// plus one for each `!`, `&` or `|` above the deepest leaf.
    ///
    /// Trees deeper than [`MAX_DEPTH`] do not parse and cannot be
    /// serialized. This method does not recurse, so it is safe on any tree.
    ///
    /// ```
    /// use busbar::LabelOp;
    ///
    /// assert_eq!(LabelOp::leaf("a").depth(), 1);
    /// assert_eq!(LabelOp::leaf("a").and("b").or("c").depth(), 3);
    /// ```
    pub fn depth(&self) -> usize {
        let mut deepest = 0;
        let mut stack = vec![(self, 1)];
        while let Some((op, depth)) = stack.pop() {
            deepest = deepest.max(depth);
            match op {
                LabelOp::True | LabelOp::False | LabelOp::Leaf(_) => {}
                LabelOp::Not(inner) => stack.push((inner, depth + 1)),
                LabelOp::And(a, b) | LabelOp::Or(a, b) => {
                    stack.push((a, depth + 1));
                    stack.push((b, depth + 1));
                }
            }
        }
        deepest
    }

    /// How tightly the printed form of `self` binds: a child that binds
    /// less tightly than its place requires is put in parentheses.
    fn precedence(&self) -> u8 {
        match self {
            LabelOp::Or(..) => 1,
            LabelOp::And(..) => 2,
            LabelOp::Not(_) => 3,
            LabelOp::True | LabelOp::False | LabelOp::Leaf(_) => 4,
        }
    }

    /// Prints `self`, in parentheses if it binds less tightly than `min`.
    fn fmt_at(&self, min: u8, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.precedence() < min {
            f.write_str("(")?;
            self.fmt_at(0, f)?;
            return f.write_str(")");
        }
        match self {
            LabelOp::True => f.write_str("true"),
            LabelOp::False => f.write_str("false"),
            LabelOp::Leaf(s) => fmt_leaf(s, f),
            LabelOp::Not(op) => {
                f.write_str("!")?;
                op.fmt_at(3, f)
            }
            // `&` and `|` group from the left, so only a right child of the
            // same kind needs parentheses.
            LabelOp::And(a, b) => {
                a.fmt_at(2, f)?;
                f.write_str(" & ")?;
                b.fmt_at(3, f)
            }
            LabelOp::Or(a, b) => {
                a.fmt_at(1, f)?;
                f.write_str(" | ")?;
                b.fmt_at(2, f)
            }
        }
    }
}

/// Prints a leaf bare if it can be, else as a quoted string.
fn fmt_leaf(s: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if is_bare(s) {
        return f.write_str(s);
    }
    f.write_str("\"")?;
    for c in s.chars() {
        if c == '"' || c == '\\' {
            f.write_str("\\")?;
        }
        fmt::Write::write_char(f, c)?;
    }
    f.write_str("\"")
}

/// Whether `b` may appear in a bare (unquoted) label.
fn is_bare_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_.:/@+-".contains(&b)
}

/// Whether `s` can be written without quotes.
fn is_bare(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_bare_byte) && s != "true" && s != "false"
}

/// Prints the text syntax with as few parentheses as keep the tree's shape.
///
/// ```
/// use busbar::LabelOp;
///
/// let op = LabelOp::leaf("a").and(LabelOp::leaf("b").and("c"));
/// assert_eq!(op.to_string(), "a & (b & c)");
/// assert_eq!(op.to_string().parse::<LabelOp>()?, op);
/// assert_eq!(LabelOp::leaf("two words").to_string(), r#""two words""#);
/// # Ok::<(), busbar::ParseError>(())
/// ```
impl fmt::Display for LabelOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_at(0, f)
    }
}

/// `!op`: a [`LabelOp::Not`].
impl std::ops::Not for LabelOp {
    type Output = LabelOp;

    fn not(self) -> LabelOp {
        LabelOp::Not(Arc::new(self))
    }
}

/// A [`LabelOp::Leaf`] holding `s` as it is. This does not parse `s`; use
/// [`str::parse`] for that.
impl From<&str> for LabelOp {
    fn from(s: &str) -> Self {
        LabelOp::Leaf(s.into())
    }
}

/// A [`LabelOp::Leaf`] holding `s` as it is. This does not parse `s`.
impl From<&String> for LabelOp {
    fn from(s: &String) -> Self {
        LabelOp::Leaf(s.as_str().into())
    }
}

/// A [`LabelOp::Leaf`] holding `s` as it is. This does not parse `s`.
impl From<String> for LabelOp {
    fn from(s: String) -> Self {
        LabelOp::Leaf(s.into())
    }
}

/// [`LabelOp::True`] or [`LabelOp::False`].
impl From<bool> for LabelOp {
    fn from(b: bool) -> Self {
        if b {
            LabelOp::True
        } else {
            LabelOp::False
        }
    }
}

/// Serializes as the text syntax (a string), after checking that the tree
/// is within [`MAX_DEPTH`] and [`MAX_EXPR_LEN`], so the receiving side can
/// parse it back.
impl Serialize for LabelOp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.depth() > MAX_DEPTH {
            return Err(ser::Error::custom(format_args!(
                "label expression nested deeper than {MAX_DEPTH} levels"
            )));
        }
        let text = self.to_string();
        if text.len() > MAX_EXPR_LEN {
            return Err(ser::Error::custom(format_args!(
                "label expression longer than {MAX_EXPR_LEN} bytes"
            )));
        }
        serializer.serialize_str(&text)
    }
}

/// Deserializes from the text syntax, with the parser's limits.
impl<'de> Deserialize<'de> for LabelOp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl de::Visitor<'_> for Visitor {
            type Value = LabelOp;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a label expression")
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<LabelOp, E> {
                s.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_str(Visitor)
    }
}

/// Error from parsing a label expression.
///
/// ```
/// use busbar::LabelOp;
///
/// let input = "a & (b | ";
/// let err = input.parse::<LabelOp>().unwrap_err();
/// assert_eq!(err.position, 9);
/// assert_eq!(err.to_string(), "bad label expression at 9: expected a label, `!`, `(`, `true` or `false`");
/// assert_eq!(err.caret(input), "a & (b | \n         ^");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad label expression at {position}: {message}")]
pub struct ParseError {
    /// Byte offset of the offending character, or the input's length when
    /// the input ended too early.
    pub position: usize,
    /// What was wrong, or what was expected instead.
    pub message: String,
}

impl ParseError {
    fn new(position: usize, message: impl Into<String>) -> Self {
        ParseError {
            position,
            message: message.into(),
        }
    }

    /// Two lines for a terminal: the line of `input` that holds the error,
    /// and a `^` under the offending character.
    ///
    /// Control characters are shown as spaces so the `^` stays aligned
    /// (wide characters can still shift it).
    pub fn caret(&self, input: &str) -> String {
        let mut pos = self.position.min(input.len());
        while !input.is_char_boundary(pos) {
            pos -= 1;
        }
        let (before, after) = input.split_at(pos);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line_end = after.find('\n').map_or(input.len(), |i| pos + i);
        let line: String = input[line_start..line_end]
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let column = before[line_start..].chars().count();
        format!("{line}\n{:column$}^", "")
    }
}

const EXPECTED_OPERAND: &str = "expected a label, `!`, `(`, `true` or `false`";

/// Parses the text syntax described at [`LabelOp`].
///
/// ```
/// use busbar::LabelOp;
///
/// let op: LabelOp = "a & (b | !c)".parse()?;
/// assert_eq!(op, LabelOp::leaf("a").and(LabelOp::leaf("b").or(!LabelOp::leaf("c"))));
/// assert_eq!(r#""true" | true"#.parse::<LabelOp>()?, LabelOp::leaf("true").or(true));
/// assert!("a &".parse::<LabelOp>().is_err());
/// # Ok::<(), busbar::ParseError>(())
/// ```
impl FromStr for LabelOp {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        if s.len() > MAX_EXPR_LEN {
            let mut pos = MAX_EXPR_LEN;
            while !s.is_char_boundary(pos) {
                pos -= 1;
            }
            return Err(ParseError::new(
                pos,
                format!("expression longer than {MAX_EXPR_LEN} bytes"),
            ));
        }
        Parser { src: s, pos: 0 }.parse()
    }
}

/// A parsed subtree and its depth.
type Parsed = (LabelOp, usize);

/// An operator-precedence parser. It keeps open parentheses on a heap
/// stack instead of recursing, so its stack use does not grow with the
/// input.
struct Parser<'a> {
    src: &'a str,
    /// Byte offset of the next unread character; always a char boundary.
    pos: usize,
}

/// What the parser knows of one parenthesized group (or of the whole input)
/// while reading it.
struct Group {
    /// Where its `(` is; `None` for the whole input.
    open: Option<usize>,
    /// How many `(` and `!` enclose the group, its own `(` included.
    nesting: usize,
    /// Where each `!` before the operand being read is.
    bangs: Vec<usize>,
    /// The left side of a pending `&`, and where that `&` is.
    and: Option<(Parsed, usize)>,
    /// The left side of a pending `|`, and where that `|` is.
    or: Option<(Parsed, usize)>,
}

impl Group {
    fn new(open: Option<usize>, nesting: usize) -> Self {
        Group {
            open,
            nesting,
            bangs: Vec::new(),
            and: None,
            or: None,
        }
    }

    /// Takes a just-read operand: applies the `!`s before it and the
    /// pending `&`, giving the current `&` term.
    fn operand(&mut self, (mut op, mut depth): Parsed) -> Result<Parsed, ParseError> {
        while let Some(at) = self.bangs.pop() {
            depth += 1;
            if depth > MAX_DEPTH {
                return Err(too_deep(at));
            }
            op = LabelOp::Not(Arc::new(op));
        }
        match self.and.take() {
            Some((left, at)) => join(at, left, (op, depth), LabelOp::And),
            None => Ok((op, depth)),
        }
    }

    /// Ends an `&` term: applies the pending `|`, giving the group's value
    /// so far.
    fn term(&mut self, term: Parsed) -> Result<Parsed, ParseError> {
        match self.or.take() {
            Some((left, at)) => join(at, left, term, LabelOp::Or),
            None => Ok(term),
        }
    }
}

/// Joins `a` and `b` with `join` (the operator at `at`), checking the depth.
fn join(
    at: usize,
    (a, da): Parsed,
    (b, db): Parsed,
    join: fn(Arc<LabelOp>, Arc<LabelOp>) -> LabelOp,
) -> Result<Parsed, ParseError> {
    let depth = da.max(db) + 1;
    if depth > MAX_DEPTH {
        return Err(too_deep(at));
    }
    Ok((join(Arc::new(a), Arc::new(b)), depth))
}

impl Parser<'_> {
    fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError::new(self.pos, message)
    }

    /// Skips whitespace and returns the next byte, without consuming it.
    fn peek(&mut self) -> Option<u8> {
        let bytes = self.src.as_bytes();
        while bytes.get(self.pos).is_some_and(u8::is_ascii_whitespace) {
            self.pos += 1;
        }
        bytes.get(self.pos).copied()
    }

    fn parse(mut self) -> Result<LabelOp, ParseError> {
        // The group being read, and the groups around it.
        let mut group = Group::new(None, 0);
        let mut outer: Vec<Group> = Vec::new();
        loop {
            // An operand: any `!` and `(`, then a label, `true` or `false`.
            let mut value = loop {
                let nesting = group.nesting + group.bangs.len();
                match self.peek() {
                    Some(b'!' | b'(') if nesting >= MAX_DEPTH => return Err(too_deep(self.pos)),
                    Some(b'!') => group.bangs.push(self.pos),
                    Some(b'(') => {
                        let inner = Group::new(Some(self.pos), nesting + 1);
                        outer.push(std::mem::replace(&mut group, inner));
                    }
                    _ => break self.atom()?,
                }
                self.pos += 1;
            };
            // Then an operator. A `)` ends the group, whose value becomes
            // an operand of the group around it.
            loop {
                value = group.operand(value)?;
                match self.peek() {
                    Some(b'&') => {
                        group.and = Some((value, self.pos));
                        break;
                    }
                    Some(b'|') => {
                        group.or = Some((group.term(value)?, self.pos));
                        break;
                    }
                    Some(b')') => match outer.pop() {
                        Some(parent) => {
                            self.pos += 1;
                            value = std::mem::replace(&mut group, parent).term(value)?;
                        }
                        None => return Err(self.error("unexpected `)`")),
                    },
                    None => {
                        return match group.open {
                            Some(open) => Err(self.error(format!("unclosed `(` opened at {open}"))),
                            None => group.term(value).map(|(op, _)| op),
                        }
                    }
                    Some(_) if group.open.is_some() => {
                        return Err(self.error("expected `&`, `|` or `)`"))
                    }
                    Some(_) => return Err(self.error("expected `&`, `|` or end of input")),
                }
            }
            self.pos += 1;
        }
    }

    /// A label, `true` or `false`.
    fn atom(&mut self) -> Result<Parsed, ParseError> {
        match self.peek() {
            Some(b'"') => Ok((LabelOp::Leaf(self.string()?.into()), 1)),
            Some(b) if is_bare_byte(b) => {
                let bytes = self.src.as_bytes();
                let mut end = self.pos;
                while bytes.get(end).copied().is_some_and(is_bare_byte) {
                    end += 1;
                }
                // The bytes are ASCII, so both ends are char boundaries.
                let word = self.src.get(self.pos..end).unwrap_or_default();
                self.pos = end;
                let op = match word {
                    "true" => LabelOp::True,
                    "false" => LabelOp::False,
                    _ => LabelOp::Leaf(word.into()),
                };
                Ok((op, 1))
            }
            Some(b'&' | b'|' | b')') | None => Err(self.error(EXPECTED_OPERAND)),
            Some(_) => Err(self.error(format!(
                "{EXPECTED_OPERAND} (a label with other characters must be written in double quotes)"
            ))),
        }
    }

    /// A double-quoted string, at `self.pos`; `\"` and `\\` are the escapes.
    fn string(&mut self) -> Result<String, ParseError> {
        let open = self.pos;
        let rest = self.src.get(open + 1..).unwrap_or_default();
        let mut out = String::new();
        let mut chars = rest.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos = open + 1 + i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, e @ ('"' | '\\'))) => out.push(e),
                    Some((_, e)) => {
                        return Err(ParseError::new(
                            open + 1 + i,
                            format!(
                                "unknown escape `\\{}`: only `\\\"` and `\\\\` are allowed",
                                e.escape_debug()
                            ),
                        ))
                    }
                    None => break,
                },
                c => out.push(c),
            }
        }
        Err(ParseError::new(
            self.src.len(),
            format!("unterminated string opened at {open}"),
        ))
    }
}

fn too_deep(at: usize) -> ParseError {
    ParseError::new(
        at,
        format!("expression nested deeper than {MAX_DEPTH} levels"),
    )
}

/// Whether a message goes to one matching endpoint or to all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SelectorMode {
    /// Exactly one matching endpoint gets the message.
    Unicast,
    /// Every matching endpoint gets the message.
    Multicast,
}

/// Prints `unicast` or `multicast`.
impl fmt::Display for SelectorMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SelectorMode::Unicast => "unicast",
            SelectorMode::Multicast => "multicast",
        })
    }
}

/// Where a message goes: a mode, a [`LabelOp`], and how long to wait for a
/// matching endpoint.
///
/// ```
/// use busbar::{LabelOp, Selector, SelectorMode};
/// use std::time::Duration;
///
/// let s = Selector::unicast("moon");
/// assert_eq!(s.mode, SelectorMode::Unicast);
/// assert_eq!(s.label_op, LabelOp::leaf("moon"));
/// assert_eq!(s.ttl, Duration::ZERO);
///
/// let s = Selector::multicast(LabelOp::leaf("moon").or("mars")).ttl(Duration::from_secs(2));
/// assert_eq!(s.to_string(), "multicast(moon | mars, ttl=2s)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Selector {
    /// Unicast or multicast.
    pub mode: SelectorMode,
    /// The expression the receivers' labels must satisfy.
    pub label_op: LabelOp,
    /// Exactly this endpoint (and only if its label satisfies `label_op`
    /// too): see [`Selector::endpoint`].
    #[serde(default)]
    pub endpoint: Option<crate::EndpointId>,
    /// How long a message that no endpoint matches waits for one to join
    /// (a multicast then goes to every match there is when the first one
    /// appears). Zero, the default, decides at once: a unicast fails with
    /// [`SendError::NoRoute`](crate::SendError::NoRoute), a multicast goes
    /// to nobody, which is not an error unless
    /// [`require_receiver`](Selector::require_receiver) is set.
    pub ttl: Duration,
    /// What to do when a receiver is full; `None` (the default) uses the
    /// endpoint's [`Options::backpressure`](crate::Options::backpressure).
    pub backpressure: Option<crate::Backpressure>,
    /// Whether a multicast with no `ttl` that no endpoint matches fails
    /// with [`SendError::NoRoute`](crate::SendError::NoRoute), as a unicast
    /// does, rather than going to nobody (`false`, the default). With a
    /// `ttl`, either waits for a match, and one that finds none in time is
    /// dropped and counted ([`EndpointStats::ttl_expired`](crate::EndpointStats::ttl_expired)).
    #[serde(default)]
    pub require_receiver: bool,
}

impl Selector {
    /// A selector for exactly one endpoint whose label matches `op`.
    ///
    /// A `&str` or `String` is one label string, not parsed:
    /// `Selector::unicast("moon")` selects endpoints labelled `moon`.
    ///
    /// ```
    /// use busbar::Selector;
    ///
    /// let by_name = Selector::unicast("moon");
    /// let by_expr = Selector::unicast("moon & !eclipse".parse::<busbar::LabelOp>()?);
    /// # Ok::<(), busbar::ParseError>(())
    /// ```
    pub fn unicast(op: impl Into<LabelOp>) -> Self {
        Selector {
            mode: SelectorMode::Unicast,
            label_op: op.into(),
            endpoint: None,
            ttl: Duration::ZERO,
            backpressure: None,
            require_receiver: false,
        }
    }

    /// A selector for every endpoint whose label matches `op` (the sender
    /// too, when its own label matches).
    ///
    /// A multicast that matches nobody is not an error, as a published
    /// message nobody subscribes to is not: `send` returns `Ok` and nobody
    /// gets it. With a [`ttl`](Selector::ttl) it waits that long for a
    /// first match; [`require_receiver`](Selector::require_receiver) makes
    /// "nobody" an error, as it is for a unicast.
    ///
    /// ```
    /// use busbar::{label, Message, Options, Selector, SelectorMode, SendError};
    ///
    /// assert_eq!(Selector::multicast(true).mode, SelectorMode::Multicast);
    /// # let bus = format!("doc.multicast.{}", std::process::id());
    /// let (sender, _r) = busbar::join::<String, String>(Options::new(bus, label!("a"), "t"), None)?;
    /// sender.send(Message::new(Selector::multicast("nobody"), "lost".to_string()))?;
    /// let strict = Selector::multicast("nobody").require_receiver();
    /// assert!(matches!(sender.send(Message::new(strict, "x".to_string())), Err(SendError::NoRoute(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn multicast(op: impl Into<LabelOp>) -> Self {
        Selector {
            mode: SelectorMode::Multicast,
            label_op: op.into(),
            endpoint: None,
            ttl: Duration::ZERO,
            backpressure: None,
            require_receiver: false,
        }
    }

    /// A selector for exactly the endpoint `id`, whatever its label: the
    /// way to answer whoever sent a message ([`Message::source`](crate::Message::source)).
    /// Once that endpoint has left, a send fails with
    /// [`SendError::NoRoute`](crate::SendError::NoRoute) (or, with a
    /// [`ttl`](Selector::ttl), waits that long for it to come back, which
    /// it never does: ids are not reused). Backpressure applies as to any
    /// unicast.
    ///
    /// ```
    /// use busbar::{label, Message, Options, Selector, SendError};
    /// # let bus = format!("doc.endpoint.{}", std::process::id());
    /// let (tx, mut rx) = busbar::join::<String, String>(Options::new(bus, label!("a"), "t"), None)?;
    /// tx.send(Message::new(Selector::endpoint(tx.id()), "to me".to_string()))?;
    /// let m = rx.recv(None)?;
    /// assert_eq!((m.payload.as_str(), m.source), ("to me", tx.id()));
    /// let gone = Selector::endpoint(busbar::EndpointId(7));
    /// assert!(matches!(tx.send(Message::new(gone, "x".into())), Err(SendError::NoRoute(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn endpoint(id: crate::EndpointId) -> Self {
        Selector {
            mode: SelectorMode::Unicast,
            label_op: LabelOp::True,
            endpoint: Some(id),
            ttl: Duration::ZERO,
            backpressure: None,
            require_receiver: false,
        }
    }

    /// Sets how long a message that no endpoint matches waits for one.
    ///
    /// ```
    /// use busbar::Selector;
    /// use std::time::Duration;
    ///
    /// let s = Selector::unicast("moon").ttl(Duration::from_millis(500));
    /// assert_eq!(s.ttl, Duration::from_millis(500));
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Makes a multicast that no endpoint matches fail with
    /// [`SendError::NoRoute`](crate::SendError::NoRoute), as a unicast
    /// does, instead of going to nobody: for when "nobody got it" is a
    /// failure to act on. (With a `ttl`, the message waits for a match
    /// either way.)
    ///
    /// ```
    /// use busbar::Selector;
    ///
    /// assert!(Selector::multicast("renderer").require_receiver().require_receiver);
    /// ```
    pub fn require_receiver(mut self) -> Self {
        self.require_receiver = true;
        self
    }

    /// Sets what a send with this selector does when a receiver is full,
    /// overriding the endpoint's [`Options::backpressure`](crate::Options::backpressure).
    ///
    /// ```
    /// use busbar::{Backpressure, Selector};
    ///
    /// let s = Selector::multicast("dashboard").backpressure(Backpressure::DropNewest);
    /// assert_eq!(s.backpressure, Some(Backpressure::DropNewest));
    /// ```
    pub fn backpressure(mut self, policy: crate::Backpressure) -> Self {
        self.backpressure = Some(policy);
        self
    }
}

/// Prints `unicast(a & b)` (`endpoint(<id>)`, `endpoint(<id>, a & b)`),
/// with `, ttl=…` added when the ttl is not zero.
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.endpoint {
            Some(id) if self.label_op == LabelOp::True => write!(f, "endpoint({id}")?,
            Some(id) => write!(f, "endpoint({id}, {}", self.label_op)?,
            None => write!(f, "{}({}", self.mode, self.label_op)?,
        }
        if !self.ttl.is_zero() {
            write!(f, ", ttl={:?}", self.ttl)?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::label;
    use proptest::prelude::*;

    fn leaf(s: &str) -> LabelOp {
        LabelOp::leaf(s)
    }

    fn parse(s: &str) -> LabelOp {
        match s.parse() {
            Ok(op) => op,
            Err(e) => panic!("{s:?}: {e}\n{}", e.caret(s)),
        }
    }

    fn err(s: &str) -> ParseError {
        match s.parse::<LabelOp>() {
            Ok(op) => panic!("{s:?} parsed as {op:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn matching_every_form() {
        let l = label!("a", "b");
        assert!(LabelOp::True.matches(&l));
        assert!(LabelOp::True.matches(&label!()));
        assert!(!LabelOp::False.matches(&l));
        assert!(leaf("a").matches(&l));
        assert!(!leaf("c").matches(&l));
        assert!(!leaf("c").matches(&label!()));
        assert!(!(!leaf("a")).matches(&l));
        assert!((!leaf("c")).matches(&l));
        assert!(leaf("a").and("b").matches(&l));
        assert!(!leaf("a").and("c").matches(&l));
        assert!(!leaf("c").and("a").matches(&l));
        assert!(leaf("c").or("a").matches(&l));
        assert!(leaf("a").or("c").matches(&l));
        assert!(!leaf("c").or("d").matches(&l));
        assert!(!leaf("").matches(&l));
        assert!(leaf("").matches(&label!("")));
    }

    #[test]
    fn builders() {
        assert_eq!(LabelOp::from("a & b"), leaf("a & b"));
        assert_eq!(LabelOp::from(String::from("x")), leaf("x"));
        assert_eq!(LabelOp::from(&String::from("x")), leaf("x"));
        assert_eq!(LabelOp::from(true), LabelOp::True);
        assert_eq!(LabelOp::from(false), LabelOp::False);
        assert_eq!(!leaf("a"), LabelOp::Not(Arc::new(leaf("a"))));
        assert_eq!(
            leaf("a").and(true).or(false),
            LabelOp::Or(
                Arc::new(LabelOp::And(Arc::new(leaf("a")), Arc::new(LabelOp::True))),
                Arc::new(LabelOp::False)
            )
        );
    }

    #[test]
    fn precedence_and_associativity() {
        let (a, b, c) = (leaf("a"), leaf("b"), leaf("c"));
        assert_eq!(parse("a | b & c"), a.clone().or(b.clone().and(c.clone())));
        assert_eq!(parse("a & b | c"), a.clone().and(b.clone()).or(c.clone()));
        assert_eq!(parse("!a & b"), (!a.clone()).and(b.clone()));
        assert_eq!(parse("!(a & b)"), !a.clone().and(b.clone()));
        assert_eq!(parse("a & b & c"), a.clone().and(b.clone()).and(c.clone()));
        assert_eq!(parse("a | b | c"), a.clone().or(b.clone()).or(c.clone()));
        assert_eq!(
            parse("a & (b | !c)"),
            a.clone().and(b.clone().or(!c.clone()))
        );
        assert_eq!(parse("!!a"), !!a.clone());
        assert_eq!(parse(" ( ( a ) ) "), a.clone());
        assert_eq!(parse("a&b|!c"), a.and(b).or(!c));
        assert_eq!(parse("true | false"), LabelOp::True.or(false));
    }

    #[test]
    fn matches_parsed_precedence() {
        // `!` > `&` > `|`: "a | b & c" is a | (b & c).
        let op = parse("a | b & c");
        assert!(op.matches(&label!("a")));
        assert!(!op.matches(&label!("b")));
        let op = parse("!a & b");
        assert!(op.matches(&label!("b")));
        assert!(!op.matches(&label!("a", "b")));
    }

    #[test]
    fn bare_and_quoted_leaves() {
        assert_eq!(
            parse("com.solar/earth-1:x@y+z_"),
            leaf("com.solar/earth-1:x@y+z_")
        );
        assert_eq!(parse(r#""two words""#), leaf("two words"));
        assert_eq!(parse(r#""""#), leaf(""));
        assert_eq!(parse(r#""true""#), leaf("true"));
        assert_eq!(parse(r#""a\"b\\c""#), leaf(r#"a"b\c"#));
        assert_eq!(parse(r#""é ✓""#), leaf("é ✓"));
        assert_eq!(parse("truex"), leaf("truex"));
        assert_eq!(parse("True"), leaf("True"));
        assert_eq!(leaf("true").to_string(), r#""true""#);
        assert_eq!(leaf("false").to_string(), r#""false""#);
        assert_eq!(leaf("").to_string(), r#""""#);
        assert_eq!(leaf(r#"a"b\c"#).to_string(), r#""a\"b\\c""#);
        assert_eq!(leaf("é").to_string(), r#""é""#);
        assert_eq!(leaf("a-b.c").to_string(), "a-b.c");
    }

    #[test]
    fn minimal_parentheses() {
        let (a, b, c) = (leaf("a"), leaf("b"), leaf("c"));
        let cases = [
            (a.clone().and(b.clone().and(c.clone())), "a & (b & c)"),
            (a.clone().and(b.clone()).and(c.clone()), "a & b & c"),
            (a.clone().or(b.clone().or(c.clone())), "a | (b | c)"),
            (a.clone().or(b.clone().and(c.clone())), "a | b & c"),
            (a.clone().and(b.clone().or(c.clone())), "a & (b | c)"),
            (a.clone().or(b.clone()).and(c.clone()), "(a | b) & c"),
            (!a.clone().and(b.clone()), "!(a & b)"),
            (!!a.clone(), "!!a"),
            ((!a.clone()).or(!LabelOp::True), "!a | !true"),
        ];
        for (op, text) in cases {
            assert_eq!(op.to_string(), text);
            assert_eq!(parse(text), op);
        }
    }

    #[test]
    fn error_positions() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 0, EXPECTED_OPERAND),
            ("   ", 3, EXPECTED_OPERAND),
            ("a &", 3, EXPECTED_OPERAND),
            ("a & | b", 4, EXPECTED_OPERAND),
            ("a b", 2, "expected `&`, `|` or end of input"),
            ("a)", 1, "unexpected `)`"),
            ("()", 1, EXPECTED_OPERAND),
            ("a & (b | c", 10, "unclosed `(` opened at 4"),
            ("(a b)", 3, "expected `&`, `|` or `)`"),
            (r#"a | "bc"#, 7, "unterminated string opened at 4"),
            (r#""ab\"#, 4, "unterminated string opened at 0"),
            (
                r#""a\nb""#,
                2,
                "unknown escape `\\n`: only `\\\"` and `\\\\` are allowed",
            ),
            ("a && b", 3, EXPECTED_OPERAND),
            ("!", 1, EXPECTED_OPERAND),
        ];
        for &(input, position, message) in cases {
            let e = err(input);
            assert_eq!(
                (e.position, e.message.as_str()),
                (position, message),
                "{input:?}"
            );
        }
        let e = err("a & é");
        assert_eq!(e.position, 4);
        assert!(e.message.starts_with(EXPECTED_OPERAND), "{}", e.message);
        assert!(e.message.contains("double quotes"));
        assert_eq!(err("a # b").position, 2);
    }

    #[test]
    fn error_display_and_caret() {
        let input = "a & (b | c";
        let e = err(input);
        assert_eq!(
            e.to_string(),
            "bad label expression at 10: unclosed `(` opened at 4"
        );
        assert_eq!(e.caret(input), "a & (b | c\n          ^");
        let input = "\"é\" & #";
        assert_eq!(err(input).position, 7);
        assert_eq!(err(input).caret(input), "\"é\" & #\n      ^");
        let input = "a &\n\t# b";
        assert_eq!(err(input).caret(input), "\t# b\n ^".replace('\t', " "));
        // A position that does not fit the input is clamped, not a panic.
        let e = ParseError::new(99, "x");
        assert_eq!(e.caret("ab"), "ab\n  ^");
        assert_eq!(ParseError::new(1, "x").caret("é"), "é\n^");
    }

    #[test]
    fn depth_limits() {
        let nested = |n: usize| format!("{}a{}", "(".repeat(n), ")".repeat(n));
        assert_eq!(parse(&nested(MAX_DEPTH)), leaf("a"));
        let e = err(&nested(MAX_DEPTH + 1));
        assert_eq!(e.position, MAX_DEPTH);
        assert!(
            e.message.contains("nested deeper than 128"),
            "{}",
            e.message
        );

        let bangs = |n: usize| format!("{}a", "!".repeat(n));
        assert_eq!(parse(&bangs(MAX_DEPTH - 1)).depth(), MAX_DEPTH);
        assert_eq!(err(&bangs(MAX_DEPTH)).position, 0);
        assert_eq!(err(&bangs(MAX_DEPTH + 1)).position, MAX_DEPTH);
        assert_eq!(err(&"!(".repeat(100)).position, 128);

        // Chains deepen the tree too: MAX_DEPTH terms is the most.
        let chain = |n: usize| vec!["a"; n].join("|");
        assert_eq!(parse(&chain(MAX_DEPTH)).depth(), MAX_DEPTH);
        let e = err(&chain(MAX_DEPTH + 1));
        assert_eq!(e.position, 2 * MAX_DEPTH - 1);

        // A right-leaning tree at the limit prints with 127 nested parentheses.
        let mut op = leaf("x");
        for _ in 1..MAX_DEPTH {
            op = leaf("a").and(op);
        }
        assert_eq!(op.depth(), MAX_DEPTH);
        assert_eq!(parse(&op.to_string()), op);
        let deeper = leaf("a").and(op);
        assert!(err(&deeper.to_string()).message.contains("deeper"));
        assert!(postcard::to_allocvec(&deeper).is_err());
    }

    #[test]
    fn worst_case_fits_a_small_stack() {
        // The deepest trees the parser accepts, walked by everything that
        // recurses, on a thread with a 256 KiB stack.
        let inputs = [
            format!("{}a{}", "(!".repeat(64), ")".repeat(64)),
            format!("{}a{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH)),
            format!("{}a", "!".repeat(MAX_DEPTH - 1)),
            format!(
                "{}a{}",
                "a & (".repeat(MAX_DEPTH - 1),
                ")".repeat(MAX_DEPTH - 1)
            ),
        ];
        let worker = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                for input in inputs {
                    let op: LabelOp = input.parse().unwrap();
                    let copy = op.clone();
                    assert_eq!(copy, op);
                    let _ = op.matches(&label!("a"));
                    let _ = format!("{op} {op:?} {op:#?}");
                    let bytes = postcard::to_allocvec(&op).unwrap();
                    assert_eq!(postcard::from_bytes::<LabelOp>(&bytes).unwrap(), op);
                }
            })
            .unwrap();
        worker.join().unwrap();
    }

    #[test]
    fn length_limit() {
        let ok = format!("{:width$}a", "", width = MAX_EXPR_LEN - 1);
        assert_eq!(parse(&ok), leaf("a"));
        let e = err(&format!("{ok} "));
        assert_eq!(e.position, MAX_EXPR_LEN);
        assert!(e.message.contains("longer than 65536 bytes"));
        // The position stays on a char boundary.
        let e = err(&format!("{:width$}é", "", width = MAX_EXPR_LEN - 1));
        assert_eq!(e.position, MAX_EXPR_LEN - 1);
        assert!(err(&"(".repeat(1_000_000)).message.contains("longer"));
    }

    #[test]
    fn deep_programmatic_tree_depth_does_not_recurse() {
        let mut op = leaf("a");
        for _ in 0..100_000 {
            op = !op;
        }
        assert_eq!(op.depth(), 100_001);
        assert!(postcard::to_allocvec(&op).is_err());
        // Take the tree apart iteratively so the test itself does not
        // overflow the stack in the drop glue.
        while let LabelOp::Not(inner) = op {
            op = Arc::try_unwrap(inner).unwrap_or_else(|shared| (*shared).clone());
        }
    }

    #[test]
    fn serde_as_text() {
        let s = Selector::multicast(parse(r#"a & ("b c" | !true)"#)).ttl(Duration::from_millis(5));
        let bytes = postcard::to_allocvec(&s).unwrap();
        assert_eq!(postcard::from_bytes::<Selector>(&bytes).unwrap(), s);
        let op_bytes = postcard::to_allocvec(&s.label_op).unwrap();
        let text = postcard::to_allocvec(&s.label_op.to_string()).unwrap();
        assert_eq!(op_bytes, text);
        // Hostile input: a deep expression from a peer is an error, not a crash.
        let hostile = postcard::to_allocvec(&"(".repeat(10_000)).unwrap();
        assert!(postcard::from_bytes::<LabelOp>(&hostile).is_err());
        let hostile = postcard::to_allocvec(&"!".repeat(60_000)).unwrap();
        assert!(postcard::from_bytes::<LabelOp>(&hostile).is_err());
    }

    #[test]
    fn selector_basics() {
        let s = Selector::unicast("moon");
        assert_eq!(s.mode, SelectorMode::Unicast);
        assert_eq!(s.label_op, leaf("moon"));
        assert_eq!(s.ttl, Duration::ZERO);
        assert_eq!(s.to_string(), "unicast(moon)");
        let s = Selector::multicast(leaf("a").and("b")).ttl(Duration::from_millis(1500));
        assert_eq!(s.mode, SelectorMode::Multicast);
        assert_eq!(s.to_string(), "multicast(a & b, ttl=1.5s)");
        assert_eq!(
            Selector::unicast(String::from("x y")).to_string(),
            r#"unicast("x y")"#
        );
    }

    fn leaf_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[A-Za-z0-9_.:/@+-]{1,8}",
            Just("true".to_string()),
            Just("false".to_string()),
            Just(String::new()),
            "[ a\"\\\\é✓()!&|\t\n]{0,6}",
            "\\PC{0,6}",
            any::<String>(),
        ]
    }

    fn label_op() -> impl Strategy<Value = LabelOp> {
        let leaf = prop_oneof![
            1 => Just(LabelOp::True),
            1 => Just(LabelOp::False),
            8 => leaf_text().prop_map(LabelOp::leaf),
        ];
        leaf.prop_recursive(5, 64, 2, |inner| {
            prop_oneof![
                inner.clone().prop_map(|op| !op),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| a.and(b)),
                (inner.clone(), inner).prop_map(|(a, b)| a.or(b)),
            ]
        })
    }

    fn hostile_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[()!&|\" \\\\ab]{0,300}",
            (0..3000usize).prop_map(|n| "(".repeat(n)),
            (0..3000usize).prop_map(|n| format!("{}a", "!".repeat(n))),
            (0..3000usize).prop_map(|n| format!("{}a{}", "(!".repeat(n), ")".repeat(n))),
            (0..3000usize).prop_map(|n| "a&".repeat(n) + "a"),
            (0..3000usize).prop_map(|n| "\\\"".repeat(n)),
        ]
    }

    proptest! {
        #[test]
        fn print_parse_round_trip(op in label_op()) {
            prop_assert!(op.depth() <= 6);
            let text = op.to_string();
            prop_assert_eq!(text.parse::<LabelOp>(), Ok(op.clone()), "text: {}", text);
            let bytes = postcard::to_allocvec(&op).unwrap();
            prop_assert_eq!(postcard::from_bytes::<LabelOp>(&bytes).unwrap(), op);
        }

        #[test]
        fn parser_never_panics(text in hostile_text()) {
            match text.parse::<LabelOp>() {
                Ok(op) => {
                    prop_assert!(op.depth() <= MAX_DEPTH);
                    // Anything accepted prints back to the same tree.
                    prop_assert_eq!(op.to_string().parse::<LabelOp>(), Ok(op.clone()));
                }
                Err(e) => {
                    prop_assert!(e.position <= text.len());
                    prop_assert!(text.is_char_boundary(e.position));
                    let _ = e.caret(&text);
                }
            }
        }
    }
}
