//! `vpp._core`: the thin PyO3 face of `vpp-rt`.
//!
//! Each area registers its own classes and functions; all logic lives in `vpp-rt`.
//! Every call that runs for more than a few microseconds, or blocks, releases the
//! GIL through `Python::detach`.

use pyo3::prelude::*;

mod errors;
mod ticker;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    ticker::register(m)?;
    Ok(())
}
