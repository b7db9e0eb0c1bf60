//! Python face of the battery telemetry read by the safety envelope.

use pyo3::prelude::*;
use vpp_rt::Telemetry;

use crate::errors::config_error;

/// Battery and inverter telemetry. Current and power: positive = discharge. Give either
/// `cell_v_min` and `cell_v_max`, or `cells` (all cell voltages). `timestamp` is when the
/// inverter data was measured; `bms_timestamp` when the BMS data was (None: no BMS).
#[pyclass(module = "vpp._core", name = "Telemetry", get_all, set_all)]
#[derive(Clone, Copy)]
pub struct PyTelemetry {
    timestamp: f64,
    pack_voltage_v: f64,
    current_a: f64,
    cell_v_min: f64,
    cell_v_max: f64,
    temp_min_c: f64,
    temp_max_c: f64,
    soc_pct: f64,
    soh_pct: f64,
    bms_faults: u32,
    power_kw: f64,
    bms_timestamp: Option<f64>,
}

#[pymethods]
impl PyTelemetry {
    #[new]
    #[pyo3(signature = (*, timestamp, pack_voltage_v, current_a, temp_min_c, temp_max_c, soc_pct,
                        cell_v_min=None, cell_v_max=None, cells=None, soh_pct=100.0, bms_faults=0,
                        power_kw=0.0, bms_timestamp=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        timestamp: f64,
        pack_voltage_v: f64,
        current_a: f64,
        temp_min_c: f64,
        temp_max_c: f64,
        soc_pct: f64,
        cell_v_min: Option<f64>,
        cell_v_max: Option<f64>,
        cells: Option<Vec<f64>>,
        soh_pct: f64,
        bms_faults: u32,
        power_kw: f64,
        bms_timestamp: Option<f64>,
    ) -> PyResult<Self> {
        let mut t = Telemetry {
            timestamp,
            pack_voltage_v,
            current_a,
            cell_v_min: f64::NAN,
            cell_v_max: f64::NAN,
            temp_min_c,
            temp_max_c,
            soc_pct,
            soh_pct,
            bms_faults,
            power_kw,
            bms_timestamp,
        };
        match (cells, cell_v_min, cell_v_max) {
            (Some(c), None, None) => t.set_cells(&c),
            (None, Some(lo), Some(hi)) => (t.cell_v_min, t.cell_v_max) = (lo, hi),
            _ => {
                return Err(config_error(
                    py,
                    "cells",
                    "give either cells or both cell_v_min and cell_v_max",
                ))
            }
        }
        Ok(Self::from(t))
    }

    fn __repr__(&self) -> String {
        format!(
            "Telemetry(t={}, {} V, {} A, cells {}-{} V, {}-{} C, SOC {} %, faults {:#x})",
            self.timestamp,
            self.pack_voltage_v,
            self.current_a,
            self.cell_v_min,
            self.cell_v_max,
            self.temp_min_c,
            self.temp_max_c,
            self.soc_pct,
            self.bms_faults
        )
    }
}

impl From<Telemetry> for PyTelemetry {
    fn from(t: Telemetry) -> Self {
        Self {
            timestamp: t.timestamp,
            pack_voltage_v: t.pack_voltage_v,
            current_a: t.current_a,
            cell_v_min: t.cell_v_min,
            cell_v_max: t.cell_v_max,
            temp_min_c: t.temp_min_c,
            temp_max_c: t.temp_max_c,
            soc_pct: t.soc_pct,
            soh_pct: t.soh_pct,
            bms_faults: t.bms_faults,
            power_kw: t.power_kw,
            bms_timestamp: t.bms_timestamp,
        }
    }
}

impl From<&PyTelemetry> for Telemetry {
    fn from(t: &PyTelemetry) -> Self {
        Self {
            timestamp: t.timestamp,
            pack_voltage_v: t.pack_voltage_v,
            current_a: t.current_a,
            cell_v_min: t.cell_v_min,
            cell_v_max: t.cell_v_max,
            temp_min_c: t.temp_min_c,
            temp_max_c: t.temp_max_c,
            soc_pct: t.soc_pct,
            soh_pct: t.soh_pct,
            bms_faults: t.bms_faults,
            power_kw: t.power_kw,
            bms_timestamp: t.bms_timestamp,
        }
    }
}
