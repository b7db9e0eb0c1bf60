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

/// The `#[pymethods]` block of a frame class: the common-header getters every frame
/// has (`type`, `version`, `idcode`, `soc`, `fracsec`, `time_quality`, `time`), then
/// the class's own methods. PyO3 takes one `#[pymethods]` block per class, so the
/// shared getters are written once here rather than in each class. `type` and `time`
/// differ by class and come as functions of the frame.
macro_rules! frame_pymethods {
    (
        impl $ty:ident;
        type = $kind:expr;
        time = $time:expr;
        $($rest:tt)*
    ) => {
        #[pymethods]
        impl $ty {
            /// Frame type: "data", "header", "cfg1", "cfg2", "cfg3" or "command".
            #[getter(r#type)]
            fn frame_type(&self) -> &'static str {
                let kind: fn(&Self) -> &'static str = $kind;
                kind(self)
            }
            /// 1 = IEEE C37.118-2005, 2 = C37.118.2-2011.
            #[getter]
            fn version(&self) -> u8 {
                self.inner.version
            }
            #[getter]
            fn idcode(&self) -> u16 {
                self.inner.idcode
            }
            /// Second of century (UNIX seconds).
            #[getter]
            fn soc(&self) -> u32 {
                self.inner.soc
            }
            /// FRACSEC bits 23-0 (count of 1/TIME_BASE).
            #[getter]
            fn fracsec(&self) -> u32 {
                self.inner.fraction
            }
            /// FRACSEC bits 31-24 as named fields.
            #[getter]
            fn time_quality(&self, py: Python<'_>) -> PyResult<Py<TimeQuality>> {
                tq(py, self.inner.time_quality.0)
            }
            /// SOC + FRACSEC / TIME_BASE, UNIX seconds (TIME_BASE 1 000 000 for frames
            /// that carry none of their own: header, command, CFG-3 fragment).
            #[getter]
            fn time(&self) -> f64 {
                let time: fn(&Self) -> f64 = $time;
                time(self)
            }
            $($rest)*
        }
    };
}
pub(super) use frame_pymethods;
