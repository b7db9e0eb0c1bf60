//! Python classes of configuration frames: `PmuConfig`, `ConfigFrame` (CFG-1/2/3) and
//! `Cfg3Fragment`.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use vpp_rt::c37118::{
    Cfg3Fragment as RtFragment, Config, ConfigKind, Format, PmuConfig as RtPmuConfig,
    TimeQuality as RtTq,
};

use super::time::{check_fracsec, frame_pymethods, time_of, tq, TimeQuality};
use crate::errors::config_error;

fn format_word(format: &Bound<'_, PyAny>) -> PyResult<Format> {
    Ok(Format(format.extract::<u16>()?))
}

/// One PMU of a configuration frame.
#[pyclass(module = "vpp._core", frozen)]
pub struct PmuConfig {
    pub inner: RtPmuConfig,
}

#[pymethods]
impl PmuConfig {
    #[new]
    #[pyo3(signature = (station, idcode, format, phasor_names, phasor_units, analog_names=Vec::new(), analog_units=Vec::new(), digital_names=Vec::new(), digital_units=Vec::new(), fnom=60.0, cfgcnt=0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        station: String,
        idcode: u16,
        format: &Bound<'_, PyAny>,
        phasor_names: Vec<String>,
        phasor_units: Vec<u32>,
        analog_names: Vec<String>,
        analog_units: Vec<u32>,
        digital_names: Vec<String>,
        digital_units: Vec<u32>,
        fnom: f64,
        cfgcnt: u16,
    ) -> PyResult<Self> {
        if fnom != 50.0 && fnom != 60.0 {
            return Err(config_error(
                py,
                "fnom",
                format!("{fnom} Hz is neither 50 nor 60"),
            ));
        }
        Ok(Self {
            inner: RtPmuConfig {
                station,
                idcode,
                format: format_word(format)?,
                phasor_names,
                analog_names,
                digital_names,
                phasor_units,
                analog_units,
                digital_units,
                fnom_50hz: fnom == 50.0,
                cfgcnt,
                cfg3: None,
            },
        })
    }
    #[getter]
    fn station(&self) -> String {
        self.inner.station.clone()
    }
    #[getter]
    fn idcode(&self) -> u16 {
        self.inner.idcode
    }
    /// The raw FORMAT word (bit 0 polar, 1 float phasors, 2 float analogs, 3 float FREQ/DFREQ).
    #[getter]
    fn format(&self) -> u16 {
        self.inner.format.0
    }
    #[getter]
    fn polar(&self) -> bool {
        self.inner.format.polar()
    }
    #[getter]
    fn phasors_float(&self) -> bool {
        self.inner.format.phasors_float()
    }
    #[getter]
    fn analogs_float(&self) -> bool {
        self.inner.format.analogs_float()
    }
    #[getter]
    fn freq_float(&self) -> bool {
        self.inner.format.freq_float()
    }
    #[getter]
    fn phasor_names(&self) -> Vec<String> {
        self.inner.phasor_names.clone()
    }
    #[getter]
    fn analog_names(&self) -> Vec<String> {
        self.inner.analog_names.clone()
    }
    #[getter]
    fn digital_names(&self) -> Vec<String> {
        self.inner.digital_names.clone()
    }
    #[getter]
    fn phasor_units(&self) -> Vec<u32> {
        self.inner.phasor_units.clone()
    }
    #[getter]
    fn analog_units(&self) -> Vec<u32> {
        self.inner.analog_units.clone()
    }
    #[getter]
    fn digital_units(&self) -> Vec<u32> {
        self.inner.digital_units.clone()
    }
    /// Nominal frequency, Hz.
    #[getter]
    fn fnom(&self) -> f64 {
        self.inner.fnom()
    }
    #[getter]
    fn cfgcnt(&self) -> u16 {
        self.inner.cfgcnt
    }
    /// Per-phasor engineering units per integer count (PHUNIT x 1e-5, or CFG-3 PHSCALE).
    #[getter]
    fn phasor_scales(&self) -> Vec<f64> {
        (0..self.inner.phnmr())
            .map(|i| self.inner.phasor_factor(i))
            .collect()
    }
    /// CFG-3 fields as a dict (global_pmu_id, latitude, longitude, elevation, svc_class,
    /// window, group_delay), None for CFG-1/2.
    #[getter]
    fn cfg3<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, pyo3::types::PyDict>>> {
        let Some(x) = &self.inner.cfg3 else {
            return Ok(None);
        };
        let d = pyo3::types::PyDict::new(py);
        d.set_item("global_pmu_id", PyBytes::new(py, &x.global_pmu_id))?;
        d.set_item("latitude", x.latitude)?;
        d.set_item("longitude", x.longitude)?;
        d.set_item("elevation", x.elevation)?;
        d.set_item("svc_class", char::from(x.svc_class).to_string())?;
        d.set_item("window", x.window)?;
        d.set_item("group_delay", x.group_delay)?;
        Ok(Some(d))
    }
    fn __repr__(&self) -> String {
        format!(
            "PmuConfig(station={:?}, idcode={}, format=0x{:x})",
            self.inner.station, self.inner.idcode, self.inner.format.0
        )
    }
}

pub fn kind_of(py: Python<'_>, kind: &str) -> PyResult<ConfigKind> {
    match kind {
        "cfg1" => Ok(ConfigKind::Cfg1),
        "cfg2" => Ok(ConfigKind::Cfg2),
        "cfg3" => Ok(ConfigKind::Cfg3),
        _ => Err(config_error(
            py,
            "kind",
            format!("{kind:?} is not cfg1, cfg2 or cfg3"),
        )),
    }
}

/// A configuration frame (CFG-1, CFG-2 or whole CFG-3; see `kind`).
#[pyclass(module = "vpp._core", frozen)]
pub struct ConfigFrame {
    pub inner: Arc<Config>,
}

frame_pymethods! {
    impl ConfigFrame;
    type = |f: &Self| f.inner.kind.name();
    time = |f: &Self| f.inner.time();
    #[new]
    #[pyo3(signature = (kind, idcode, pmus, time_base=1_000_000, data_rate=50, soc=0, fracsec=0, time_quality=0, version=2))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        kind: &str,
        idcode: u16,
        pmus: Vec<Bound<'_, PmuConfig>>,
        time_base: u32,
        data_rate: i16,
        soc: u32,
        fracsec: u32,
        time_quality: u8,
        version: u8,
    ) -> PyResult<Self> {
        check_fracsec(py, fracsec, time_quality)?;
        let cfg = Config {
            kind: kind_of(py, kind)?,
            version,
            idcode,
            soc,
            fraction: fracsec,
            time_quality: RtTq(time_quality),
            time_base,
            data_rate,
            pmus: pmus.iter().map(|p| p.get().inner.clone()).collect(),
        };
        cfg.validate()
            .map_err(|e| crate::errors::frame_err(py, &e))?;
        Ok(Self {
            inner: Arc::new(cfg),
        })
    }
    #[getter]
    fn kind(&self) -> &'static str {
        self.inner.kind.name()
    }
    #[getter]
    fn time_base(&self) -> u32 {
        self.inner.time_base
    }
    /// Frames per second (negative: seconds per frame).
    #[getter]
    fn data_rate(&self) -> i16 {
        self.inner.data_rate
    }
    #[getter]
    fn pmus(&self, py: Python<'_>) -> PyResult<Vec<Py<PmuConfig>>> {
        self.inner
            .pmus
            .iter()
            .map(|p| Py::new(py, PmuConfig { inner: p.clone() }))
            .collect()
    }
    /// FRAMESIZE of the data frames this configuration describes.
    #[getter]
    fn data_frame_size(&self) -> usize {
        self.inner.data_frame_size()
    }
    /// The same configuration as another kind ("cfg1", "cfg2", "cfg3").
    fn with_kind(&self, py: Python<'_>, kind: &str) -> PyResult<Self> {
        let mut c = (*self.inner).clone();
        c.kind = kind_of(py, kind)?;
        if c.kind == ConfigKind::Cfg3 {
            c.version = 2;
        }
        Ok(Self { inner: Arc::new(c) })
    }
    /// Encode as CFG-3 frames of at most `max_frame_size` bytes (CONT_IDX fragments when needed).
    #[pyo3(signature = (max_frame_size=65535))]
    fn encode_cfg3_fragments<'py>(
        &self,
        py: Python<'py>,
        max_frame_size: usize,
    ) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        let frames = vpp_rt::c37118::encode_cfg3_frames(&self.inner, max_frame_size)
            .map_err(|e| crate::errors::frame_err(py, &e))?;
        Ok(frames.iter().map(|f| PyBytes::new(py, f)).collect())
    }
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<ConfigFrame>()
            .is_ok_and(|o| *o.get().inner == *self.inner)
    }
    fn __repr__(&self) -> String {
        format!(
            "ConfigFrame(kind={:?}, idcode={}, pmus={})",
            self.inner.kind.name(),
            self.inner.idcode,
            self.inner.pmus.len()
        )
    }
}

/// One fragment of a CFG-3 that spans several frames (CONT_IDX != 0).
#[pyclass(module = "vpp._core", frozen)]
pub struct Cfg3Fragment {
    pub inner: RtFragment,
}

frame_pymethods! {
    impl Cfg3Fragment;
    type = |_: &Self| "cfg3";
    time = |f: &Self| time_of(f.inner.soc, f.inner.fraction, 1_000_000);
    /// 1 = first, 2.. = next, 0xFFFF = last.
    #[getter]
    fn cont_idx(&self) -> u16 {
        self.inner.cont_idx
    }
    #[getter]
    fn payload<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.payload)
    }
    fn __repr__(&self) -> String {
        format!(
            "Cfg3Fragment(idcode={}, cont_idx={})",
            self.inner.idcode, self.inner.cont_idx
        )
    }
}
