//! The one exception hierarchy of `vpp`, created here so that Rust and Python share it.
//!
//! Each specific error also inherits the matching built-in (`ValueError`, `OSError`) so
//! callers can catch either. PyO3's `create_exception!` allows one base only, so the
//! classes are made with `type(name, bases, ns)` at import and cached.

use pyo3::exceptions::{PyException, PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};
use vpp_rt::{ConfigError, FrameError, FrameErrorKind};

/// (class name, parent class name, extra built-in base, docstring).
const CLASSES: &[(&str, &str, Option<&str>, &str)] = &[
    ("VppError", "", None, "Base of every error raised by vpp."),
    ("ConfigError", "VppError", Some("ValueError"), "An invalid parameter or configuration; `field` names it."),
    ("FrameError", "VppError", Some("ValueError"), "A C37.118 frame that cannot be decoded or encoded; `kind`, `field`, `offset` say what and where."),
    ("TruncatedFrameError", "FrameError", None, "Fewer bytes than the frame or field needs."),
    ("FrameSizeError", "FrameError", None, "FRAMESIZE out of range or inconsistent with the content."),
    ("CrcError", "FrameError", None, "CHK does not match the CRC-CCITT of the frame."),
    ("SyncError", "FrameError", None, "Unknown SYNC word, frame type or version."),
    ("FrameCountError", "FrameError", None, "An absurd count field (NUM_PMU, PHNMR, ...)."),
    ("NoConfigError", "FrameError", None, "A data frame for an IDCODE with no configuration frame."),
    ("ConfigMismatchError", "FrameError", None, "A data frame that does not fit its configuration."),
    ("FrameValueError", "FrameError", None, "A field with a value that is not allowed."),
    ("FrameEncodeError", "FrameError", None, "A frame that cannot be encoded as asked."),
    ("TickerError", "VppError", Some("OSError"), "The periodic ticker could not use the system clock."),
];

static TYPES: PyOnceLock<Vec<Py<PyType>>> = PyOnceLock::new();

fn types(py: Python<'_>) -> &Vec<Py<PyType>> {
    TYPES
        .get_or_try_init(py, || -> PyResult<Vec<Py<PyType>>> {
            let builtins = py.import("builtins")?;
            let type_fn = builtins.getattr("type")?;
            let mut made: Vec<Py<PyType>> = Vec::with_capacity(CLASSES.len());
            for (name, parent, extra, doc) in CLASSES {
                let mut bases: Vec<Bound<'_, PyAny>> = Vec::new();
                if parent.is_empty() {
                    bases.push(py.get_type::<PyException>().into_any());
                } else {
                    let idx = CLASSES
                        .iter()
                        .position(|c| c.0 == *parent)
                        .expect("parent listed first");
                    bases.push(made[idx].bind(py).clone().into_any());
                }
                match extra {
                    Some("ValueError") => bases.push(py.get_type::<PyValueError>().into_any()),
                    Some("OSError") => bases.push(py.get_type::<PyOSError>().into_any()),
                    _ => {}
                }
                let ns = PyDict::new(py);
                ns.set_item("__module__", "vpp.errors")?;
                ns.set_item("__doc__", *doc)?;
                let cls = type_fn.call1((*name, PyTuple::new(py, bases)?, ns))?;
                made.push(cls.cast_into::<PyType>()?.unbind());
            }
            Ok(made)
        })
        .expect("creating the vpp exception classes cannot fail")
}

/// The exception class called `name` (one of `CLASSES`).
pub fn class<'py>(py: Python<'py>, name: &str) -> Bound<'py, PyType> {
    let idx = CLASSES
        .iter()
        .position(|c| c.0 == name)
        .expect("known exception class");
    types(py)[idx].bind(py).clone()
}

fn frame_class_name(kind: FrameErrorKind) -> &'static str {
    match kind {
        FrameErrorKind::Truncated => "TruncatedFrameError",
        FrameErrorKind::FrameSize => "FrameSizeError",
        FrameErrorKind::Crc => "CrcError",
        FrameErrorKind::Sync => "SyncError",
        FrameErrorKind::Count => "FrameCountError",
        FrameErrorKind::NoConfig => "NoConfigError",
        FrameErrorKind::Mismatch => "ConfigMismatchError",
        FrameErrorKind::Value => "FrameValueError",
        FrameErrorKind::Encode => "FrameEncodeError",
    }
}

/// Convert a core frame error to its Python exception, with `kind`, `field`, `offset`,
/// `expected` and `found` attributes.
pub fn frame_err(py: Python<'_>, e: &FrameError) -> PyErr {
    let cls = class(py, frame_class_name(e.kind));
    match cls.call1((e.to_string(),)) {
        Ok(exc) => {
            let _ = exc.setattr("kind", e.kind.name());
            let _ = exc.setattr("field", e.field);
            let _ = exc.setattr("offset", e.offset);
            let _ = exc.setattr("expected", e.expected);
            let _ = exc.setattr("found", e.found);
            PyErr::from_value(exc)
        }
        Err(err) => err,
    }
}

/// Convert a core configuration error to `vpp.errors.ConfigError` with a `field` attribute.
pub fn config_err(py: Python<'_>, e: &ConfigError) -> PyErr {
    let cls = class(py, "ConfigError");
    match cls.call1((e.to_string(),)) {
        Ok(exc) => {
            let _ = exc.setattr("field", e.field);
            PyErr::from_value(exc)
        }
        Err(err) => err,
    }
}

/// Raise `vpp.errors.ConfigError` for a binding-level parameter check.
pub fn config_error(py: Python<'_>, field: &'static str, reason: impl Into<String>) -> PyErr {
    config_err(py, &ConfigError::new(field, reason))
}

/// Raise `vpp.errors.TickerError` (an OSError) with a message.
pub fn ticker_err(py: Python<'_>, msg: String) -> PyErr {
    match class(py, "TickerError").call1((msg,)) {
        Ok(exc) => PyErr::from_value(exc),
        Err(err) => err,
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    for (name, ..) in CLASSES {
        m.add(*name, class(py, name))?;
    }
    Ok(())
}
