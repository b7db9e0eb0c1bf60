//! `vpp._core` face of the IEC 60870-5-104 codec: `iec104_decode` to frozen
//! `Iec104Apdu` / `Iec104Object` values, and encoders for the frames an outstation sends.
//!
//! Errors are `vpp.errors.ScadaError` (a ValueError) with `kind` ("apdu", "asdu", "time",
//! "encode"), `field` and `offset`; the class is imported from Python, where it is
//! defined, when an error is raised. Every call is short (one APDU or one interrogation's
//! worth of objects), so none releases the GIL.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};
use vpp_rt::iec104::{
    self as rt, Apci, Asdu, Cp56Time, Iec104Error, Iec104ErrorKind, InfoObject, TypeId, UFunction,
    Value, MAX_ASDU_LEN,
};

/// Raise `vpp.errors.ScadaError` for a codec error.
fn scada_err(py: Python<'_>, e: &Iec104Error) -> PyErr {
    let made = (|| -> PyResult<PyErr> {
        let cls = py.import("vpp.errors")?.getattr("ScadaError")?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("kind", e.kind.name())?;
        let exc = cls.call((e.to_string(),), Some(&kwargs))?;
        exc.setattr("field", e.field)?;
        exc.setattr("offset", e.offset)?;
        Ok(PyErr::from_value(exc))
    })();
    made.unwrap_or_else(|err| err)
}

fn encode_error(py: Python<'_>, field: &'static str, found: Option<u64>) -> PyErr {
    let mut e = Iec104Error::new(Iec104ErrorKind::Encode, field, 0);
    e.found = found;
    scada_err(py, &e)
}

/// One information object as decoded: `value` is a bool (single point or command), an
/// int (double point or command, QOI, COI), a float (measured value or set-point) or
/// None (clock synchronisation); `qualifier` the quality bits (monitored values), QU
/// (single and double commands) or QL (set-points); `time` UNIX seconds of the
/// CP56Time2a, read as UTC, or None.
#[pyclass(module = "vpp._core", frozen, get_all)]
pub struct Iec104Object {
    ioa: u32,
    value: Py<PyAny>,
    qualifier: u8,
    select: bool,
    time: Option<f64>,
    time_invalid: bool,
}

#[pymethods]
impl Iec104Object {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Iec104Object(ioa={}, value={}, qualifier={:#04x}, select={}, time={})",
            self.ioa,
            self.value.bind(py).repr()?,
            self.qualifier,
            if self.select { "True" } else { "False" },
            self.time
                .map_or_else(|| "None".to_owned(), |t| format!("{t:.3}"))
        ))
    }
}

/// One APDU as decoded. `format` is "I", "S" or "U"; `u_function` names a U-frame's
/// function ("startdt_act", ...); the ASDU fields are those of an I-frame (zero
/// otherwise). `known_type` is False for an ASDU type the codec does not decode, whose
/// `objects` are then empty.
#[pyclass(module = "vpp._core", frozen, get_all)]
pub struct Iec104Apdu {
    format: &'static str,
    send_seq: u16,
    recv_seq: u16,
    u_function: Option<&'static str>,
    type_id: u8,
    known_type: bool,
    sequence: bool,
    cot: u8,
    negative: bool,
    test: bool,
    originator: u8,
    common_address: u16,
    objects: Py<PyTuple>,
}

#[pymethods]
impl Iec104Apdu {
    fn __repr__(&self, py: Python<'_>) -> String {
        match self.format {
            "U" => format!("Iec104Apdu(U {})", self.u_function.unwrap_or("?")),
            "S" => format!("Iec104Apdu(S recv={})", self.recv_seq),
            _ => format!(
                "Iec104Apdu(I send={} recv={} type={} cot={}{} ca={} objects={})",
                self.send_seq,
                self.recv_seq,
                self.type_id,
                self.cot,
                if self.negative { " negative" } else { "" },
                self.common_address,
                self.objects.bind(py).len()
            ),
        }
    }
}

fn object_to_py(py: Python<'_>, o: &InfoObject) -> PyResult<Py<Iec104Object>> {
    let value = match o.value {
        Value::Bool(v) => v.into_pyobject(py)?.to_owned().into_any().unbind(),
        Value::Double(v) | Value::Code(v) => v.into_pyobject(py)?.into_any().unbind(),
        Value::Float(v) => f64::from(v).into_pyobject(py)?.into_any().unbind(),
        Value::None => py.None(),
    };
    Py::new(
        py,
        Iec104Object {
            ioa: o.ioa,
            value,
            qualifier: o.qualifier,
            select: o.select,
            time: o.time.map(|t| t.to_unix_ms() as f64 / 1000.0),
            time_invalid: o.time.is_some_and(|t| t.invalid),
        },
    )
}

/// Decode the first APDU of `data`: `(consumed, apdu)`, or `(0, None)` while it is
/// incomplete. Raises ScadaError for a malformed one.
#[pyfunction]
fn iec104_decode(py: Python<'_>, data: &[u8]) -> PyResult<(usize, Option<Iec104Apdu>)> {
    let Some((n, apdu)) = rt::decode_apdu(data).map_err(|e| scada_err(py, &e))? else {
        return Ok((0, None));
    };
    let (format, send_seq, recv_seq, u_function) = match apdu.apci {
        Apci::I { send, recv } => ("I", send, recv, None),
        Apci::S { recv } => ("S", 0, recv, None),
        Apci::U(f) => ("U", 0, 0, Some(f.name())),
    };
    let empty = Asdu {
        type_id: 0,
        sequence: false,
        count: 0,
        cot: 0,
        negative: false,
        test: false,
        originator: 0,
        common_address: 0,
        objects: Vec::new(),
    };
    let a = apdu.asdu.as_ref().unwrap_or(&empty);
    let objects = a
        .objects
        .iter()
        .map(|o| object_to_py(py, o))
        .collect::<PyResult<Vec<_>>>()?;
    Ok((
        n,
        Some(Iec104Apdu {
            format,
            send_seq,
            recv_seq,
            u_function,
            type_id: a.type_id,
            known_type: apdu.asdu.is_some() && TypeId::from_u8(a.type_id).is_some(),
            sequence: a.sequence,
            cot: a.cot,
            negative: a.negative,
            test: a.test,
            originator: a.originator,
            common_address: a.common_address,
            objects: PyTuple::new(py, objects)?.unbind(),
        }),
    ))
}

fn value_of(py: Python<'_>, t: TypeId, v: &Bound<'_, PyAny>) -> PyResult<Value> {
    let bad = || encode_error(py, "value", None);
    Ok(match t {
        TypeId::MSpNa1 | TypeId::MSpTb1 | TypeId::CScNa1 | TypeId::CScTa1 => {
            Value::Bool(v.extract::<bool>().map_err(|_| bad())?)
        }
        TypeId::MDpNa1 | TypeId::MDpTb1 | TypeId::CDcNa1 | TypeId::CDcTa1 => {
            Value::Double(v.extract::<u8>().map_err(|_| bad())?)
        }
        TypeId::MMeNc1 | TypeId::MMeTf1 | TypeId::CSeNc1 | TypeId::CSeTc1 => {
            Value::Float(v.extract::<f64>().map_err(|_| bad())? as f32)
        }
        TypeId::MEiNa1 | TypeId::CIcNa1 => Value::Code(v.extract::<u8>().map_err(|_| bad())?),
        TypeId::CCsNa1 => Value::None,
    })
}

fn time_of(py: Python<'_>, t: Option<f64>) -> PyResult<Option<Cp56Time>> {
    let Some(s) = t else { return Ok(None) };
    let ms = (s * 1000.0).round();
    if !ms.is_finite() {
        return Err(encode_error(py, "time", None));
    }
    Cp56Time::from_unix_ms(ms as i64)
        .map(Some)
        .ok_or_else(|| encode_error(py, "time", None))
}

/// (ioa, value, qualifier, select, time) as passed to `iec104_encode_asdus`.
type ObjectTuple<'py> = (u32, Bound<'py, PyAny>, u8, bool, Option<f64>);

/// Encode information objects of one type as ASDUs (without SQ), as many objects in each
/// as fit an APDU. Each object is `(ioa, value, qualifier, select, time)`, `time` in UNIX
/// seconds (already shifted to the zone the master expects) or None for types without a
/// time tag.
#[pyfunction]
#[pyo3(signature = (type_id, cot, common_address, objects, *, negative=false, test=false, originator=0))]
#[allow(clippy::too_many_arguments)]
fn iec104_encode_asdus<'py>(
    py: Python<'py>,
    type_id: u8,
    cot: u8,
    common_address: u16,
    objects: Vec<ObjectTuple<'py>>,
    negative: bool,
    test: bool,
    originator: u8,
) -> PyResult<Vec<Bound<'py, PyBytes>>> {
    let t = TypeId::from_u8(type_id)
        .ok_or_else(|| encode_error(py, "type", Some(u64::from(type_id))))?;
    let per = rt::max_objects(t);
    let mut out = Vec::with_capacity(objects.len().div_ceil(per.max(1)));
    let mut buf = Vec::with_capacity(MAX_ASDU_LEN);
    for chunk in objects.chunks(per) {
        let mut asdu = Asdu {
            type_id,
            sequence: false,
            count: chunk.len() as u8,
            cot,
            negative,
            test,
            originator,
            common_address,
            objects: Vec::with_capacity(chunk.len()),
        };
        for (ioa, value, qualifier, select, time) in chunk {
            asdu.objects.push(InfoObject {
                ioa: *ioa,
                value: value_of(py, t, value)?,
                qualifier: *qualifier,
                select: *select,
                time: time_of(py, *time)?,
            });
        }
        buf.clear();
        rt::encode_asdu(&asdu, &mut buf).map_err(|e| scada_err(py, &e))?;
        out.push(PyBytes::new(py, &buf));
    }
    Ok(out)
}

/// An I-frame with send and receive sequence numbers around an encoded ASDU.
#[pyfunction]
fn iec104_encode_i<'py>(
    py: Python<'py>,
    send_seq: u16,
    recv_seq: u16,
    asdu: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    let mut out = Vec::with_capacity(6 + asdu.len());
    rt::encode_i(send_seq, recv_seq, asdu, &mut out).map_err(|e| scada_err(py, &e))?;
    Ok(PyBytes::new(py, &out))
}

/// An S-frame acknowledging every I-frame before `recv_seq`.
#[pyfunction]
fn iec104_encode_s(py: Python<'_>, recv_seq: u16) -> PyResult<Bound<'_, PyBytes>> {
    let mut out = Vec::with_capacity(6);
    rt::encode_s(recv_seq, &mut out).map_err(|e| scada_err(py, &e))?;
    Ok(PyBytes::new(py, &out))
}

/// A U-frame: `function` is "startdt_act", "startdt_con", "stopdt_act", "stopdt_con",
/// "testfr_act" or "testfr_con".
#[pyfunction]
fn iec104_encode_u<'py>(function: &str, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
    let f = UFunction::from_name(function)
        .ok_or_else(|| PyValueError::new_err(format!("unknown U-format function {function:?}")))?;
    let mut out = Vec::with_capacity(6);
    rt::encode_u(f, &mut out);
    Ok(PyBytes::new(py, &out))
}

/// The ASDU of the received I-frame `frame` with its cause of transmission replaced by
/// `cot` and the P/N bit by `negative` (test bit, originator and objects kept): the
/// mirror a confirmation or a refusal sends back, also for a type the codec does not know.
#[pyfunction]
fn iec104_reply<'py>(
    py: Python<'py>,
    frame: &[u8],
    cot: u8,
    negative: bool,
) -> PyResult<Bound<'py, PyBytes>> {
    let whole = frame.len() >= 12
        && frame[0] == rt::START
        && usize::from(frame[1]) + 2 == frame.len()
        && frame[2] & 0x01 == 0;
    if !whole {
        return Err(encode_error(py, "frame", Some(frame.len() as u64)));
    }
    if cot > 0x3F {
        return Err(encode_error(py, "COT", Some(u64::from(cot))));
    }
    let mut asdu = frame[6..].to_vec();
    asdu[2] = (asdu[2] & 0x80) | cot | if negative { 0x40 } else { 0 };
    Ok(PyBytes::new(py, &asdu))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Iec104Apdu>()?;
    m.add_class::<Iec104Object>()?;
    m.add_function(wrap_pyfunction!(iec104_decode, m)?)?;
    m.add_function(wrap_pyfunction!(iec104_encode_asdus, m)?)?;
    m.add_function(wrap_pyfunction!(iec104_encode_i, m)?)?;
    m.add_function(wrap_pyfunction!(iec104_encode_s, m)?)?;
    m.add_function(wrap_pyfunction!(iec104_encode_u, m)?)?;
    m.add_function(wrap_pyfunction!(iec104_reply, m)?)?;
    Ok(())
}
