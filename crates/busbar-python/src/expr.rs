//! `busbar.Expr`: a label expression, parsed from text or built with `&`, `|` and `~`.

use busbar::LabelOp;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

/// A label expression (Rust's `LabelOp`): which endpoints a message goes to.
#[pyclass(frozen, eq, hash, module = "busbar")]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Expr {
    pub op: LabelOp,
}

/// Parses `text` as a label expression; `busbar.ParseError` (a `ValueError`)
/// pointing at the bad character when it is not one.
pub fn parse(py: Python<'_>, text: &str) -> PyResult<LabelOp> {
    text.parse::<LabelOp>()
        .map_err(|e| crate::errors::error(py, "ParseError", format!("{e}\n{}", e.caret(text))))
}

/// What a `to` or expression argument may be: an `Expr` or its text.
pub fn op_from(obj: &Bound<'_, PyAny>) -> PyResult<LabelOp> {
    if let Ok(e) = obj.extract::<PyRef<'_, Expr>>() {
        return Ok(e.op.clone());
    }
    if let Ok(text) = obj.extract::<&str>() {
        return parse(obj.py(), text);
    }
    Err(PyTypeError::new_err(format!(
        "expected a label expression (str or busbar.Expr), got {}",
        obj.get_type().name()?
    )))
}

#[pymethods]
impl Expr {
    /// Parses `text`: `renderer & (gpu | !cpu)`, `"any name"`, `true`, `false`.
    #[new]
    fn new(py: Python<'_>, text: &str) -> PyResult<Expr> {
        Ok(Expr {
            op: parse(py, text)?,
        })
    }

    /// The expression matching endpoints whose label contains `name`.
    #[staticmethod]
    fn leaf(name: String) -> Expr {
        Expr {
            op: LabelOp::leaf(name),
        }
    }

    /// Parses `text` (the same as `Expr(text)`).
    #[staticmethod]
    fn parse(py: Python<'_>, text: &str) -> PyResult<Expr> {
        Expr::new(py, text)
    }

    /// Whether an endpoint with these label strings matches.
    fn matches(&self, label: Vec<String>) -> bool {
        self.op.matches(&busbar::Label::new(label))
    }

    fn __and__(&self, other: &Bound<'_, PyAny>) -> PyResult<Expr> {
        Ok(Expr {
            op: self.op.clone().and(op_from(other)?),
        })
    }

    fn __rand__(&self, other: &Bound<'_, PyAny>) -> PyResult<Expr> {
        Ok(Expr {
            op: op_from(other)?.and(self.op.clone()),
        })
    }

    fn __or__(&self, other: &Bound<'_, PyAny>) -> PyResult<Expr> {
        Ok(Expr {
            op: self.op.clone().or(op_from(other)?),
        })
    }

    fn __ror__(&self, other: &Bound<'_, PyAny>) -> PyResult<Expr> {
        Ok(Expr {
            op: op_from(other)?.or(self.op.clone()),
        })
    }

    fn __invert__(&self) -> Expr {
        Expr {
            op: !self.op.clone(),
        }
    }

    fn __str__(&self) -> String {
        self.op.to_string()
    }

    fn __repr__(&self) -> String {
        format!("busbar.Expr({:?})", self.op.to_string())
    }
}
