//! Python classes of header frames (free text) and command frames.

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use vpp_rt::c37118::{
    Command, CommandFrame as RtCommand, HeaderFrame as RtHeader, TimeQuality as RtTq,
};

use super::time::{check_fracsec, frame_pymethods, time_of, tq, TimeQuality};
use crate::errors::config_error;

/// A header frame (free text).
#[pyclass(module = "vpp._core", frozen)]
pub struct HeaderFrame {
    pub inner: RtHeader,
}

frame_pymethods! {
    impl HeaderFrame;
    type = |_: &Self| "header";
    time = |f: &Self| time_of(f.inner.soc, f.inner.fraction, 1_000_000);
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

frame_pymethods! {
    impl CommandFrame;
    type = |_: &Self| "command";
    time = |f: &Self| time_of(f.inner.soc, f.inner.fraction, 1_000_000);
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
