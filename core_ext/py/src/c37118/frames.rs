//! Python classes of the C37.118 frames. Each wraps the `vpp_rt` struct it shows; data
//! frames keep a shared handle on their configuration so that `encode` needs nothing else.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use vpp_rt::c37118::{
    Cfg3Fragment as RtFragment, Command, CommandFrame as RtCommand, Config, ConfigKind,
    DataFrame as RtData, Format, HeaderFrame as RtHeader, Phasor, PmuConfig as RtPmuConfig,
    PmuData as RtPmuData, Stat, TimeQuality as RtTq,
};

use crate::errors::config_error;

fn time_of(soc: u32, fraction: u32, time_base: u32) -> f64 {
    f64::from(soc) + f64::from(fraction) / f64::from(time_base.max(1))
}

fn tq(py: Python<'_>, raw: u8) -> PyResult<Py<TimeQuality>> {
    Py::new(py, TimeQuality { raw })
}

fn check_fracsec(py: Python<'_>, fracsec: u32, time_quality: u8) -> PyResult<()> {
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

#[pymethods]
impl DataFrame {
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
    #[getter(r#type)]
    fn frame_type(&self) -> &'static str {
        "data"
    }
    #[getter]
    fn version(&self) -> u8 {
        self.inner.version
    }
    #[getter]
    fn idcode(&self) -> u16 {
        self.inner.idcode
    }
    #[getter]
    fn soc(&self) -> u32 {
        self.inner.soc
    }
    /// FRACSEC bits 23-0 (count of 1/TIME_BASE).
    #[getter]
    fn fracsec(&self) -> u32 {
        self.inner.fraction
    }
    #[getter]
    fn time_quality(&self, py: Python<'_>) -> PyResult<Py<TimeQuality>> {
        tq(py, self.inner.time_quality.0)
    }
    #[getter]
    fn time_base(&self) -> u32 {
        self.inner.time_base
    }
    /// SOC + FRACSEC / TIME_BASE, UNIX seconds.
    #[getter]
    fn time(&self) -> f64 {
        self.inner.time()
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

#[pymethods]
impl ConfigFrame {
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
    /// "cfg1", "cfg2" or "cfg3".
    #[getter(r#type)]
    fn frame_type(&self) -> &'static str {
        self.inner.kind.name()
    }
    #[getter]
    fn kind(&self) -> &'static str {
        self.inner.kind.name()
    }
    #[getter]
    fn version(&self) -> u8 {
        self.inner.version
    }
    #[getter]
    fn idcode(&self) -> u16 {
        self.inner.idcode
    }
    #[getter]
    fn soc(&self) -> u32 {
        self.inner.soc
    }
    #[getter]
    fn fracsec(&self) -> u32 {
        self.inner.fraction
    }
    #[getter]
    fn time_quality(&self, py: Python<'_>) -> PyResult<Py<TimeQuality>> {
        tq(py, self.inner.time_quality.0)
    }
    #[getter]
    fn time(&self) -> f64 {
        self.inner.time()
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

/// A header frame (free text).
#[pyclass(module = "vpp._core", frozen)]
pub struct HeaderFrame {
    pub inner: RtHeader,
}

#[pymethods]
impl HeaderFrame {
    #[new]
    #[pyo3(signature = (idcode, text, soc=0, fracsec=0, time_quality=0, version=2))]
    fn new(
        py: Python<'_>,
        idcode: u16,
        text: &Bound<'_, PyAny>,
        soc: u32,
        fracsec: u32,
        time_quality: u8,
        version: u8,
    ) -> PyResult<Self> {
        check_fracsec(py, fracsec, time_quality)?;
        let data = match text.extract::<String>() {
            Ok(s) => s.into_bytes(),
            Err(_) => text.extract::<Vec<u8>>()?,
        };
        Ok(Self {
            inner: RtHeader {
                version,
                idcode,
                soc,
                fraction: fracsec,
                time_quality: RtTq(time_quality),
                data,
            },
        })
    }
    #[getter(r#type)]
    fn frame_type(&self) -> &'static str {
        "header"
    }
    #[getter]
    fn version(&self) -> u8 {
        self.inner.version
    }
    #[getter]
    fn idcode(&self) -> u16 {
        self.inner.idcode
    }
    #[getter]
    fn soc(&self) -> u32 {
        self.inner.soc
    }
    #[getter]
    fn fracsec(&self) -> u32 {
        self.inner.fraction
    }
    #[getter]
    fn time_quality(&self, py: Python<'_>) -> PyResult<Py<TimeQuality>> {
        tq(py, self.inner.time_quality.0)
    }
    /// Time with TIME_BASE 1 000 000 (a header frame carries none of its own).
    #[getter]
    fn time(&self) -> f64 {
        time_of(self.inner.soc, self.inner.fraction, 1_000_000)
    }
    /// The text (bytes that are not UTF-8 replaced).
    #[getter]
    fn text(&self) -> String {
        self.inner.text().into_owned()
    }
    #[getter]
    fn data<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.data)
    }
    fn __repr__(&self) -> String {
        format!(
            "HeaderFrame(idcode={}, text={:?})",
            self.inner.idcode,
            self.inner.text()
        )
    }
}

pub fn command_of(py: Python<'_>, command: &Bound<'_, PyAny>) -> PyResult<Command> {
    if let Ok(code) = command.extract::<u16>() {
        return Command::from_code(code)
            .ok_or_else(|| config_error(py, "command", format!("reserved CMD code {code}")));
    }
    let name: String = command.extract()?;
    [
        Command::DataOff,
        Command::DataOn,
        Command::SendHeader,
        Command::SendCfg1,
        Command::SendCfg2,
        Command::SendCfg3,
        Command::Extended,
    ]
    .into_iter()
    .find(|c| c.name() == name)
    .ok_or_else(|| config_error(py, "command", format!("unknown command {name:?}")))
}

/// A command frame: CMD code (1-6, 8, or 0x0100-0x0FFF) and the extended-frame payload.
#[pyclass(module = "vpp._core", frozen)]
pub struct CommandFrame {
    pub inner: RtCommand,
}

#[pymethods]
impl CommandFrame {
    #[new]
    #[pyo3(signature = (idcode, command, extended=Vec::new(), soc=0, fracsec=0, time_quality=0, version=2))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        idcode: u16,
        command: &Bound<'_, PyAny>,
        extended: Vec<u8>,
        soc: u32,
        fracsec: u32,
        time_quality: u8,
        version: u8,
    ) -> PyResult<Self> {
        check_fracsec(py, fracsec, time_quality)?;
        let command = command_of(py, command)?;
        Ok(Self {
            inner: RtCommand {
                version,
                idcode,
                soc,
                fraction: fracsec,
                time_quality: RtTq(time_quality),
                command,
                extended,
            },
        })
    }
    #[getter(r#type)]
    fn frame_type(&self) -> &'static str {
        "command"
    }
    #[getter]
    fn version(&self) -> u8 {
        self.inner.version
    }
    #[getter]
    fn idcode(&self) -> u16 {
        self.inner.idcode
    }
    #[getter]
    fn soc(&self) -> u32 {
        self.inner.soc
    }
    #[getter]
    fn fracsec(&self) -> u32 {
        self.inner.fraction
    }
    #[getter]
    fn time_quality(&self, py: Python<'_>) -> PyResult<Py<TimeQuality>> {
        tq(py, self.inner.time_quality.0)
    }
    #[getter]
    fn time(&self) -> f64 {
        time_of(self.inner.soc, self.inner.fraction, 1_000_000)
    }
    /// The CMD code.
    #[getter]
    fn command(&self) -> u16 {
        self.inner.command.code()
    }
    /// "data_off", "data_on", "send_header", "send_cfg1", "send_cfg2", "send_cfg3", "extended" or "user".
    #[getter]
    fn command_name(&self) -> &'static str {
        self.inner.command.name()
    }
    #[getter]
    fn extended<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.extended)
    }
    fn __repr__(&self) -> String {
        format!(
            "CommandFrame(idcode={}, command={})",
            self.inner.idcode,
            self.inner.command.name()
        )
    }
}

/// One fragment of a CFG-3 that spans several frames (CONT_IDX != 0).
#[pyclass(module = "vpp._core", frozen)]
pub struct Cfg3Fragment {
    pub inner: RtFragment,
}

#[pymethods]
impl Cfg3Fragment {
    #[getter(r#type)]
    fn frame_type(&self) -> &'static str {
        "cfg3"
    }
    #[getter]
    fn version(&self) -> u8 {
        self.inner.version
    }
    #[getter]
    fn idcode(&self) -> u16 {
        self.inner.idcode
    }
    #[getter]
    fn soc(&self) -> u32 {
        self.inner.soc
    }
    #[getter]
    fn fracsec(&self) -> u32 {
        self.inner.fraction
    }
    #[getter]
    fn time_quality(&self, py: Python<'_>) -> PyResult<Py<TimeQuality>> {
        tq(py, self.inner.time_quality.0)
    }
    #[getter]
    fn time(&self) -> f64 {
        time_of(self.inner.soc, self.inner.fraction, 1_000_000)
    }
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
