//! The Python binding of busbar: the extension module `busbar._busbar`,
//! which the `busbar` package (`bindings/python`) wraps and re-exports.
//!
//! Every binding speaks [`busbar::BytesMessage`] (a format tag and bytes),
//! so Python talks to Rust, C, Node.js and the `busbar` command. Waiting
//! (`recv`, `request`, a send to a full receiver) releases the GIL. The
//! buffer protocol, both ways, is the one place with `unsafe`: [`ffi`].
//!
//! Built with maturin (`pip install ./bindings/python`); its tests are in
//! Python (`bindings/python/tests`, run by `scripts/test-python.sh`).

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod endpoint;
mod errors;
mod expr;
mod fd;
#[allow(unsafe_code)] // The buffer protocol and raw descriptor numbers.
mod ffi;
mod lent;
mod loan;
mod message;
mod region;

use busbar::{Label, Options};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyString;
use std::time::Duration;

/// How long a receive that found nothing watches the shared memory before
/// it sleeps, by default (µs): busbar's own default, and the Node binding's.
const DEFAULT_SPIN_US: f64 = 50.0;

/// Seconds (a non-negative, finite number) as a `Duration`.
pub(crate) fn seconds(s: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| PyValueError::new_err(format!("{s} is not a number of seconds (>= 0)")))
}

/// Joins bus `bus` with `label` (a string or strings) and `token` (the
/// bus's shared secret), waiting up to `timeout` seconds for the bus
/// controller (`None`: as long as it takes). With `controller=False` this
/// endpoint never hosts the controller. `max_payload` raises the largest
/// payload it sends and accepts (default 64 MiB). `spin_us` (microseconds,
/// default 50, 0: never) is how long a receive that found nothing watches
/// the shared memory before it sleeps.
#[pyfunction]
#[pyo3(signature = (bus, label, *, token="busbar", timeout=None, controller=true, max_payload=None, spin_us=DEFAULT_SPIN_US))]
#[allow(clippy::too_many_arguments)]
fn join(
    py: Python<'_>,
    bus: String,
    label: &Bound<'_, PyAny>,
    token: &str,
    timeout: Option<f64>,
    controller: bool,
    max_payload: Option<u64>,
    spin_us: f64,
) -> PyResult<endpoint::Endpoint> {
    let spin = Duration::try_from_secs_f64(spin_us / 1e6).map_err(|_| {
        PyValueError::new_err(format!(
            "spin_us is a number of microseconds (>= 0), not {spin_us}"
        ))
    })?;
    let strings: Vec<String> = if let Ok(s) = label.cast::<PyString>() {
        vec![s.to_str()?.to_string()]
    } else {
        label
            .try_iter()?
            .map(|item| item?.extract::<String>())
            .collect::<PyResult<_>>()?
    };
    let timeout = endpoint::timeout_arg(timeout)?;
    let mut options = Options::new(bus.clone(), Label::new(strings.clone()), token);
    options.controller_affinity = controller;
    if let Some(max) = max_payload {
        options.limits.max_payload = max;
    }
    let (tx, rx) = py
        .detach(|| busbar::join::<busbar::BytesMessage, busbar::BytesMessage>(options, timeout))
        .map_err(|e| errors::join_error(py, e))?;
    let mut sorted = strings;
    sorted.sort();
    sorted.dedup();
    Ok(endpoint::Endpoint::new(tx, rx, bus, sorted, spin))
}

/// The extension module.
#[pymodule]
fn _busbar(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(join, m)?)?;
    m.add_class::<endpoint::Endpoint>()?;
    m.add_class::<message::Message>()?;
    m.add_class::<lent::Lent>()?;
    m.add_class::<loan::Loan>()?;
    m.add_class::<message::EndpointInfo>()?;
    m.add_class::<expr::Expr>()?;
    m.add_class::<fd::Fd>()?;
    m.add_class::<region::Region>()?;
    m.add_class::<region::Registry>()?;
    m.add("PROTOCOL_VERSION", busbar::PROTOCOL_VERSION)?;
    Ok(())
}
