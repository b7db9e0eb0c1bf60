//! `vpp._core` face of the C37.118 codec: frame classes (in `c37118/`),
//! `decode`, `encode`, `StreamDecoder` and the GIL-free `decode_batch` to NumPy arrays.

mod config;
mod data;
mod header_command;
mod time;

use std::sync::Arc;

use numpy::ndarray::Array2;
use numpy::IntoPyArray;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use vpp_rt::c37118::{
    self as rt, Config, ConfigStore, Frame, FrameStream as RtStream, StreamEvent,
};
use vpp_rt::{FrameError, FrameErrorKind};

use crate::errors::frame_err;
pub use config::{Cfg3Fragment, ConfigFrame, PmuConfig};
pub use data::{DataFrame, PmuData};
pub use header_command::{CommandFrame, HeaderFrame};
pub use time::TimeQuality;

/// The configurations passed as `configs=`: None, one ConfigFrame, an iterable of them,
/// or a dict whose values are ConfigFrames.
fn configs_of(configs: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<Arc<Config>>> {
    let Some(obj) = configs else {
        return Ok(Vec::new());
    };
    if obj.is_none() {
        return Ok(Vec::new());
    }
    if let Ok(c) = obj.cast::<ConfigFrame>() {
        return Ok(vec![Arc::clone(&c.get().inner)]);
    }
    let iter = match obj.cast::<PyDict>() {
        Ok(d) => d.values().into_any().try_iter()?,
        Err(_) => obj.try_iter()?,
    };
    iter.map(|item| Ok(Arc::clone(&item?.cast::<ConfigFrame>()?.get().inner)))
        .collect()
}

/// Wrap a decoded frame in its Python class; data frames take their configuration from `cfg`.
fn frame_to_py(py: Python<'_>, frame: Frame, cfg: Option<Arc<Config>>) -> PyResult<Py<PyAny>> {
    Ok(match frame {
        Frame::Data(inner) => {
            let config = cfg.expect("a decoded data frame had a configuration");
            Py::new(py, DataFrame { inner, config })?.into_any()
        }
        Frame::Header(inner) => Py::new(py, HeaderFrame { inner })?.into_any(),
        Frame::Config(c) => Py::new(
            py,
            ConfigFrame {
                inner: cfg.unwrap_or_else(|| Arc::new(c)),
            },
        )?
        .into_any(),
        Frame::Cfg3Fragment(inner) => Py::new(py, Cfg3Fragment { inner })?.into_any(),
        Frame::Command(inner) => Py::new(py, CommandFrame { inner })?.into_any(),
    })
}

/// Decode one frame that fills `data` exactly. Data frames need their configuration
/// (matched by IDCODE) in `configs`.
#[pyfunction]
#[pyo3(signature = (data, configs=None))]
fn decode(py: Python<'_>, data: &[u8], configs: Option<&Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
    let h = rt::check_frame(data).map_err(|e| frame_err(py, &e))?;
    if h.frame_type == rt::FrameType::Data {
        // One ConfigFrame is the common case: skip building a list for it.
        let single = configs
            .and_then(|o| o.cast::<ConfigFrame>().ok())
            .map(|c| Arc::clone(&c.get().inner));
        let cfg = match single {
            Some(c) => Some(c).filter(|c| c.idcode == h.idcode),
            None => configs_of(configs)?
                .into_iter()
                .find(|c| c.idcode == h.idcode),
        };
        let cfg = cfg.ok_or_else(|| {
            frame_err(
                py,
                &FrameError::new(FrameErrorKind::NoConfig, "IDCODE", 4)
                    .with_found(u64::from(h.idcode)),
            )
        })?;
        let mut out = rt::DataFrame::with_capacity_for(&cfg);
        rt::data::decode_checked(data, &h, &cfg, &mut out).map_err(|e| frame_err(py, &e))?;
        return Ok(Py::new(
            py,
            DataFrame {
                inner: out,
                config: cfg,
            },
        )?
        .into_any());
    }
    let frame = rt::decode_checked(data, &h, &ConfigStore::new()).map_err(|e| frame_err(py, &e))?;
    frame_to_py(py, frame, None)
}

/// Encode a frame object to bytes (a data frame with the configuration it carries).
#[pyfunction]
fn encode<'py>(py: Python<'py>, frame: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let mut out = Vec::new();
    let res = if let Ok(f) = frame.cast::<DataFrame>() {
        rt::data::encode_data(&f.get().inner, &f.get().config, &mut out)
    } else if let Ok(f) = frame.cast::<ConfigFrame>() {
        rt::encode_config(&f.get().inner, &mut out)
    } else if let Ok(f) = frame.cast::<HeaderFrame>() {
        rt::header::encode_header(&f.get().inner, &mut out)
    } else if let Ok(f) = frame.cast::<CommandFrame>() {
        rt::command::encode_command(&f.get().inner, &mut out)
    } else if let Ok(f) = frame.cast::<Cfg3Fragment>() {
        Frame::Cfg3Fragment(f.get().inner.clone()).encode_into(&ConfigStore::new(), &mut out)
    } else {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "encode() takes a C37.118 frame object, not {}",
            frame.get_type().name()?
        )));
    };
    res.map_err(|e| frame_err(py, &e))?;
    Ok(PyBytes::new(py, &out))
}

/// Feeds at least this large release the GIL while they decode.
const DETACH_BYTES: usize = 16 * 1024;

/// Incremental decoder of a C37.118 byte stream (TCP): `feed` bytes in any chunks and
/// get `(offset, frame_or_error)` pairs; configurations seen are kept so that data frames
/// decode, CFG-3 fragments are joined, and garbage is reported once before resync.
#[pyclass(module = "vpp._core")]
pub struct StreamDecoder {
    inner: RtStream,
}

fn event_to_py(py: Python<'_>, ev: StreamEvent, store: &ConfigStore) -> PyResult<Py<PyAny>> {
    let (offset, item) = match ev {
        StreamEvent::Error(e) => (e.offset as u64, frame_err(py, &e).into_value(py).into_any()),
        StreamEvent::Frame { offset, frame } => {
            let cfg = match &frame {
                Frame::Data(d) => store.get_arc(d.idcode),
                Frame::Config(c) => store.get_arc(c.idcode).filter(|a| **a == *c),
                _ => None,
            };
            (offset, frame_to_py(py, frame, cfg)?)
        }
    };
    Ok(
        PyTuple::new(py, [offset.into_pyobject(py)?.into_any().unbind(), item])?
            .into_any()
            .unbind(),
    )
}

/// The events as a list of `(offset, frame or FrameError)` pairs.
fn events_to_list<'py>(
    py: Python<'py>,
    events: Vec<StreamEvent>,
    store: &ConfigStore,
) -> PyResult<Bound<'py, PyList>> {
    let out = PyList::empty(py);
    for ev in events {
        out.append(event_to_py(py, ev, store)?)?;
    }
    Ok(out)
}

#[pymethods]
impl StreamDecoder {
    #[new]
    #[pyo3(signature = (configs=None))]
    fn new(configs: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let mut store = ConfigStore::new();
        for c in configs_of(configs)? {
            store.insert_arc(c);
        }
        Ok(Self {
            inner: RtStream::with_configs(store),
        })
    }

    /// Push bytes; returns the completed `(stream offset, frame or FrameError)` pairs.
    fn feed<'py>(&mut self, py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyList>> {
        let inner = &mut self.inner;
        // Large reads (a file, a backlog) decode without the GIL; small ones are not
        // worth the hand-over.
        let events = if data.len() >= DETACH_BYTES {
            py.detach(|| inner.feed_collect(data))
        } else {
            inner.feed_collect(data)
        };
        events_to_list(py, events, self.inner.configs())
    }

    /// End of stream: the pairs still in the buffer. A frame that never completed is one
    /// TruncatedFrameError, and the bytes after its SYNC are rescanned for frames (a
    /// false start near the end of a capture loses nothing after it).
    fn finish<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let inner = &mut self.inner;
        let events = py.detach(|| inner.finish_collect());
        events_to_list(py, events, self.inner.configs())
    }

    /// Remember a configuration (for data frames whose configuration came out of band).
    fn add_config(&mut self, config: &Bound<'_, ConfigFrame>) {
        self.inner
            .configs_mut()
            .insert_arc(Arc::clone(&config.get().inner));
    }

    /// The configurations known so far.
    #[getter]
    fn configs(&self, py: Python<'_>) -> PyResult<Vec<Py<ConfigFrame>>> {
        let s = self.inner.configs();
        let mut ids: Vec<u16> = s.idcodes().collect();
        ids.sort_unstable();
        ids.into_iter()
            .map(|id| {
                Py::new(
                    py,
                    ConfigFrame {
                        inner: s.get_arc(id).expect("listed"),
                    },
                )
            })
            .collect()
    }

    /// Stream offset of the next byte not yet consumed.
    #[getter]
    fn offset(&self) -> u64 {
        self.inner.offset()
    }
}

fn array2<'py, T: numpy::Element>(
    py: Python<'py>,
    n: usize,
    m: usize,
    v: Vec<T>,
) -> Bound<'py, PyAny> {
    Array2::from_shape_vec((n, m), v)
        .expect("column sizes match")
        .into_pyarray(py)
        .into_any()
}

/// Threads for `decode_batch`: the machine's parallelism, at most 8. Asked once:
/// `available_parallelism` reads cgroup files on Linux, which costs microseconds a call.
fn batch_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(8)))
}

/// The first PMU's column of a row-major (rows, `np`) array: a plain copy when there is
/// one PMU (the common case, a memcpy), else every `np`-th element.
fn first_column<T: Copy>(v: &[T], np: usize) -> Vec<T> {
    if np == 1 {
        v.to_vec()
    } else {
        v.iter().step_by(np.max(1)).copied().collect()
    }
}

/// Decode a buffer of back-to-back data frames of one configuration, without the GIL,
/// into NumPy arrays: `time`, `soc`, `fracsec`, and for the first PMU `freq`, `dfreq`,
/// `stat` (shape (n,)); per PMU `pmu_freq`, `pmu_dfreq`, `pmu_stat` (n, NUM_PMU); and
/// `magnitude`, `angle` (n, all phasors), `analogs` (n, all analogs), `digitals`
/// (n, all digital words), columns in configuration order.
#[pyfunction]
fn decode_batch<'py>(
    py: Python<'py>,
    buffer: &[u8],
    config: &Bound<'py, ConfigFrame>,
) -> PyResult<Bound<'py, PyDict>> {
    let cfg = Arc::clone(&config.get().inner);
    let c = py
        .detach(|| rt::batch::decode_batch(buffer, &cfg, batch_threads()))
        .map_err(|e| frame_err(py, &e))?;
    let (n, np) = (c.rows, c.num_pmu);
    let d = PyDict::new(py);
    d.set_item("freq", first_column(&c.freq, np).into_pyarray(py))?;
    d.set_item("dfreq", first_column(&c.dfreq, np).into_pyarray(py))?;
    d.set_item("stat", first_column(&c.stat, np).into_pyarray(py))?;
    d.set_item("time", c.time.into_pyarray(py))?;
    d.set_item("soc", c.soc.into_pyarray(py))?;
    d.set_item("fracsec", c.fracsec.into_pyarray(py))?;
    d.set_item("pmu_freq", array2(py, n, np, c.freq))?;
    d.set_item("pmu_dfreq", array2(py, n, np, c.dfreq))?;
    d.set_item("pmu_stat", array2(py, n, np, c.stat))?;
    d.set_item("magnitude", array2(py, n, c.phasors, c.magnitude))?;
    d.set_item("angle", array2(py, n, c.phasors, c.angle))?;
    d.set_item("analogs", array2(py, n, c.analogs, c.analog))?;
    d.set_item("digitals", array2(py, n, c.digitals, c.digital))?;
    Ok(d)
}

/// CRC-CCITT (0xFFFF init, poly 0x1021) as C37.118 CHK uses it.
#[pyfunction]
fn crc_ccitt(data: &[u8]) -> u16 {
    rt::crc_ccitt(data)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<TimeQuality>()?;
    m.add_class::<PmuData>()?;
    m.add_class::<DataFrame>()?;
    m.add_class::<PmuConfig>()?;
    m.add_class::<ConfigFrame>()?;
    m.add_class::<HeaderFrame>()?;
    m.add_class::<CommandFrame>()?;
    m.add_class::<Cfg3Fragment>()?;
    m.add_class::<StreamDecoder>()?;
    m.add_function(wrap_pyfunction!(decode, m)?)?;
    m.add_function(wrap_pyfunction!(encode, m)?)?;
    m.add_function(wrap_pyfunction!(decode_batch, m)?)?;
    m.add_function(wrap_pyfunction!(crc_ccitt, m)?)?;
    Ok(())
}
