//! `vpp._core`: the thin PyO3 face of `vpp-rt`.
//!
//! Each area registers its own classes and functions; all logic lives in `vpp-rt`.
//! Every call that runs for more than a few microseconds, or blocks, releases the
//! GIL through `Python::detach`.

use pyo3::prelude::*;
use vpp_rt::alloc_count::{self, CountingAllocator};

mod c37118;
mod control;
mod errors;
mod frames;
mod iec104;
mod pipeline;
mod relay;
mod rtloop;

// Counting every Rust heap allocation lets benchmarks and tests show, from Python, that
// the per-frame pipeline allocates nothing. Python objects use Python's own allocator.
#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Number of Rust heap allocations made by the compiled core since import.
#[pyfunction]
fn allocation_count() -> u64 {
    alloc_count::allocations()
}
mod ticker;

/// Number of Rust heap allocations made by the compiled core on the calling thread.
#[pyfunction]
fn thread_allocation_count() -> u64 {
    alloc_count::thread_allocations()
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(allocation_count, m)?)?;
    m.add_function(wrap_pyfunction!(thread_allocation_count, m)?)?;
    errors::register(m)?;
    control::register(m)?;
    c37118::register(m)?;
    pipeline::register(m)?;
    ticker::register(m)?;
    relay::register(m)?;
    frames::register(m)?;
    iec104::register(m)?;
    rtloop::register(m)?;
    // PyO3 keeps an `__all__` of everything added; the public names are chosen by the
    // Python faces (vpp.core, vpp.c37118, vpp.errors), so the private module has none.
    m.delattr("__all__")?;
    Ok(())
}
