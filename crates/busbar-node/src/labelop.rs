//! `LabelOp`: a label expression, built or parsed by busbar's own code, so
//! that JavaScript and Rust agree on every expression.

use crate::error::{Failure, Result};
use napi_derive::napi;

/// A label expression: `True`, `False`, a leaf, `!`, `&`, `|`.
#[napi]
pub struct LabelOp {
    pub(crate) op: busbar::LabelOp,
}

/// Parses `text`, or fails with `INVALID_ARGUMENT` and the caret under the
/// bad character.
pub(crate) fn parse(text: &str) -> std::result::Result<busbar::LabelOp, Failure> {
    text.parse::<busbar::LabelOp>().map_err(|e| {
        Failure::invalid(format!(
            "label expression {text:?} does not parse: {e}\n{}",
            e.caret(text)
        ))
    })
}

#[napi]
impl LabelOp {
    /// Parses a label expression (`renderer & !gpu | codec`).
    #[napi(factory, catch_unwind)]
    pub fn parse(text: String) -> Result<LabelOp> {
        Ok(LabelOp { op: parse(&text)? })
    }

    /// The leaf that matches labels containing `name`.
    #[napi(factory, catch_unwind)]
    pub fn leaf(name: String) -> LabelOp {
        LabelOp {
            op: busbar::LabelOp::leaf(name),
        }
    }

    /// The expression that matches every label.
    #[napi(factory, js_name = "true")]
    pub fn always() -> LabelOp {
        LabelOp {
            op: busbar::LabelOp::True,
        }
    }

    /// The expression that matches no label.
    #[napi(factory, js_name = "false")]
    pub fn never() -> LabelOp {
        LabelOp {
            op: busbar::LabelOp::False,
        }
    }

    /// `this & other`.
    #[napi(catch_unwind)]
    pub fn and(&self, other: &LabelOp) -> LabelOp {
        LabelOp {
            op: self.op.clone().and(other.op.clone()),
        }
    }

    /// `this | other`.
    #[napi(catch_unwind)]
    pub fn or(&self, other: &LabelOp) -> LabelOp {
        LabelOp {
            op: self.op.clone().or(other.op.clone()),
        }
    }

    /// `!this`.
    #[napi(catch_unwind)]
    pub fn not(&self) -> LabelOp {
        LabelOp {
            op: !self.op.clone(),
        }
    }

    /// Whether a label made of `items` matches.
    #[napi(catch_unwind)]
    pub fn matches(&self, items: Vec<String>) -> bool {
        self.op.matches(&busbar::Label::new(items))
    }

    /// The expression in the text syntax `parse` reads.
    #[napi(js_name = "toString", catch_unwind)]
    pub fn to_text(&self) -> String {
        self.op.to_string()
    }
}
