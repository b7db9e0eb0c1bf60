//! Helpers shared by the frame classes, and the FRACSEC time-quality class.

use pyo3::prelude::*;
use vpp_rt::c37118::TimeQuality as RtTq;

use crate::errors::config_error;

pub(super) fn time_of(soc: u32, fraction: u32, time_base: u32) -> f64 {
    f64::from(soc) + f64::from(fraction) / f64::from(time_base.max(1))
}

pub(super) fn tq(py: Python<'_>, raw: u8) -> PyResult<Py<TimeQuality>> {
    Py::new(py, TimeQuality { raw })
}

pub(super) fn check_fracsec(py: Python<'_>, fracsec: u32, time_quality: u8) -> PyResult<()> {
    if fracsec > 0x00FF_FFFF {
        return Err(config_error(
            py,
            "fracsec",
            format!("{fracsec} does not fit 24 bits"),
        ));
    }
    let _ = time_quality;
    Ok(())
}

/// The time-quality byte of FRACSEC.
#[pyclass(module = "vpp._core", frozen)]
pub struct TimeQuality {
    #[pyo3(get)]
    pub raw: u8,
}

#[pymethods]
impl TimeQuality {
    #[new]
    fn new(raw: u8) -> Self {
        Self { raw }
    }
    /// The pending or occurred leap second is a deletion (False = addition).
    #[getter]
    fn leap_second_delete(&self) -> bool {
        RtTq(self.raw).leap_second_delete()
    }
    #[getter]
    fn leap_second_occurred(&self) -> bool {
        RtTq(self.raw).leap_second_occurred()
    }
    #[getter]
    fn leap_second_pending(&self) -> bool {
        RtTq(self.raw).leap_second_pending()
    }
    /// 0 = locked, 0x1..0xB = unlocked within 1e-9..10 s, 0xF = clock failure.
    #[getter]
    fn quality_code(&self) -> u8 {
        RtTq(self.raw).quality_code()
    }
    /// Worst-case time error in seconds, None for clock failure.
    #[getter]
    fn max_error(&self) -> Option<f64> {
        RtTq(self.raw).max_error_s()
    }
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<TimeQuality>()
            .is_ok_and(|o| o.get().raw == self.raw)
    }
    fn __hash__(&self) -> u64 {
        u64::from(self.raw)
    }
    fn __repr__(&self) -> String {
        format!("TimeQuality(0x{:02x})", self.raw)
    }
}
