//! Python classes of data frames: `PmuData` (one PMU block) and `DataFrame`.

use std::sync::Arc;

use pyo3::prelude::*;
use vpp_rt::c37118::{
    Config, DataFrame as RtData, Phasor, PmuData as RtPmuData, Stat, TimeQuality as RtTq,
};

use super::config::ConfigFrame;
use super::time::{check_fracsec, frame_pymethods, tq, TimeQuality};

/// One PMU block of a data frame: STAT, phasors (magnitude, angle in radians), FREQ (Hz),
/// DFREQ (Hz/s), analogs (scaled) and digital words.
#[pyclass(module = "vpp._core", frozen)]
pub struct PmuData {
    pub inner: RtPmuData,
}

#[pymethods]
impl PmuData {
    #[new]
    #[pyo3(signature = (phasors, freq, dfreq=0.0, analogs=Vec::new(), digitals=Vec::new(), stat=0, idcode=0))]
    fn new(
        phasors: Vec<(f64, f64)>,
        freq: f64,
        dfreq: f64,
        analogs: Vec<f64>,
        digitals: Vec<u16>,
        stat: u16,
        idcode: u16,
    ) -> Self {
        Self {
            inner: RtPmuData {
                idcode,
                stat: Stat(stat),
                phasors: phasors
                    .into_iter()
                    .map(|(magnitude, angle)| Phasor { magnitude, angle })
                    .collect(),
                freq,
                dfreq,
                analogs,
                digitals,
            },
        }
    }
    #[getter]
    fn idcode(&self) -> u16 {
        self.inner.idcode
    }
    /// The raw STAT word.
    #[getter]
    fn stat(&self) -> u16 {
        self.inner.stat.0
    }
    /// List of (magnitude, angle): V or A, radians.
    #[getter]
    fn phasors(&self) -> Vec<(f64, f64)> {
        self.inner
            .phasors
            .iter()
            .map(|p| (p.magnitude, p.angle))
            .collect()
    }
    #[getter]
    fn freq(&self) -> f64 {
        self.inner.freq
    }
    #[getter]
    fn dfreq(&self) -> f64 {
        self.inner.dfreq
    }
    #[getter]
    fn analogs(&self) -> Vec<f64> {
        self.inner.analogs.clone()
    }
    #[getter]
    fn digitals(&self) -> Vec<u16> {
        self.inner.digitals.clone()
    }
    /// STAT bits 15-14: 0 good, 1 PMU error, 2 test mode / absent, 3 PMU error.
    #[getter]
    fn data_error(&self) -> u8 {
        self.inner.stat.data_error()
    }
    #[getter]
    fn sync_lost(&self) -> bool {
        self.inner.stat.sync_lost()
    }
    #[getter]
    fn sorted_by_arrival(&self) -> bool {
        self.inner.stat.sorted_by_arrival()
    }
    #[getter]
    fn trigger(&self) -> bool {
        self.inner.stat.trigger()
    }
    #[getter]
    fn config_changed(&self) -> bool {
        self.inner.stat.config_changed()
    }
    #[getter]
    fn data_modified(&self) -> bool {
        self.inner.stat.data_modified()
    }
    /// STAT bits 8-6.
    #[getter]
    fn pmu_time_quality(&self) -> u8 {
        self.inner.stat.time_quality()
    }
    /// STAT bits 5-4.
    #[getter]
    fn unlocked_time(&self) -> u8 {
        self.inner.stat.unlocked_time()
    }
    /// STAT bits 3-0.
    #[getter]
    fn trigger_reason(&self) -> u8 {
        self.inner.stat.trigger_reason()
    }
    fn __repr__(&self) -> String {
        format!(
            "PmuData(idcode={}, stat=0x{:04x}, freq={}, dfreq={})",
            self.inner.idcode, self.inner.stat.0, self.inner.freq, self.inner.dfreq
        )
    }
}

/// A data frame, decoded against (or built for) a configuration.
#[pyclass(module = "vpp._core", frozen)]
pub struct DataFrame {
    pub inner: RtData,
    pub config: Arc<Config>,
}

frame_pymethods! {
    impl DataFrame;
    type = |_: &Self| "data";
    time = |f: &Self| f.inner.time();
    #[new]
    #[pyo3(signature = (config, pmus, soc, fracsec=0, time_quality=0, version=None))]
    fn new(
        py: Python<'_>,
        config: &Bound<'_, ConfigFrame>,
        pmus: Vec<Bound<'_, PmuData>>,
        soc: u32,
        fracsec: u32,
        time_quality: u8,
        version: Option<u8>,
    ) -> PyResult<Self> {
        check_fracsec(py, fracsec, time_quality)?;
        let cfg = Arc::clone(&config.get().inner);
        let pmus = pmus
            .iter()
            .zip(
                cfg.pmus
                    .iter()
                    .map(|p| p.idcode)
                    .chain(std::iter::repeat(0)),
            )
            .map(|(p, id)| RtPmuData {
                idcode: id,
                ..p.get().inner.clone()
            })
            .collect();
        let inner = RtData {
            version: version.unwrap_or(cfg.version),
            idcode: cfg.idcode,
            soc,
            fraction: fracsec,
            time_quality: RtTq(time_quality),
            time_base: cfg.time_base,
            pmus,
        };
        Ok(Self { inner, config: cfg })
    }
    #[getter]
    fn time_base(&self) -> u32 {
        self.inner.time_base
    }
    /// Frequency of the first PMU, Hz.
    #[getter]
    fn freq(&self) -> f64 {
        self.inner.freq()
    }
    /// ROCOF of the first PMU, Hz/s.
    #[getter]
    fn dfreq(&self) -> f64 {
        self.inner.dfreq()
    }
    #[getter]
    fn pmus(&self, py: Python<'_>) -> PyResult<Vec<Py<PmuData>>> {
        self.inner
            .pmus
            .iter()
            .map(|p| Py::new(py, PmuData { inner: p.clone() }))
            .collect()
    }
    /// The configuration the frame was decoded against.
    #[getter]
    fn config(&self, py: Python<'_>) -> PyResult<Py<ConfigFrame>> {
        Py::new(
            py,
            ConfigFrame {
                inner: Arc::clone(&self.config),
            },
        )
    }
    fn __repr__(&self) -> String {
        format!(
            "DataFrame(idcode={}, time={:.6}, freq={})",
            self.inner.idcode,
            self.inner.time(),
            self.inner.freq()
        )
    }
}
