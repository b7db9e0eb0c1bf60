//! `vpp._core.FrameReceiver`: the messages queued on a subscriber's socket, in one call.
//!
//! pyzmq asks libzmq whether a part has more after it (`RCVMORE`) through its generic
//! socket-option layer, which costs about twice the receive of the part itself: a
//! two-part message taken in Python costs 2-4 us, more than validating it. Here the
//! same libzmq calls (`zmq_msg_recv`, `zmq_msg_more`) run from compiled code, on the
//! socket pyzmq made (its `underlying` address), through the libzmq pyzmq loaded (as
//! the events relay does, relay.rs), and each message comes back as the list of its
//! parts, as pyzmq's `recv_multipart` gives it.

use std::ffi::c_void;

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::relay::{Part, Zmq};

/// Takes what is queued on a pyzmq socket without waiting (``recv``). ``libzmq`` is the
/// path of the libzmq pyzmq loaded; ``OSError`` if it is not one.
#[pyclass(module = "vpp._core", name = "FrameReceiver", frozen)]
pub struct FrameReceiver {
    zmq: Zmq,
}

#[pymethods]
impl FrameReceiver {
    #[new]
    fn new(libzmq: &str) -> PyResult<Self> {
        let zmq = Zmq::load(libzmq).map_err(PyOSError::new_err)?;
        Ok(Self { zmq })
    }

    /// Up to ``limit`` messages queued on ``socket`` (a pyzmq socket's ``underlying``
    /// address), each the list of its parts; fewer, or none, when the queue runs dry.
    /// The caller keeps the socket open for the call and uses it from this thread only
    /// (the GIL is held throughout). ``OSError`` with libzmq's errno when a receive fails
    /// for another reason than an empty queue before any message was taken (after one
    /// was, the messages taken are returned and the next call raises).
    fn recv<'py>(
        &self,
        py: Python<'py>,
        socket: usize,
        limit: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        self.take(socket, limit, |parts| out.append(whole(py, parts)?))?;
        Ok(out)
    }

    /// As :meth:`recv`, but the messages of ``parts`` parts (2 or 3) come as columns,
    /// without a list each: their second parts (``payloads``) and, for 3, their third
    /// (``identities``); their first (the topic) is not kept. Messages of another number
    /// of parts come whole (``others``): ``(payloads, identities, others)``.
    fn recv_parts<'py>(
        &self,
        py: Python<'py>,
        socket: usize,
        limit: usize,
        parts: usize,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>, Bound<'py, PyList>)> {
        let payloads = PyList::empty(py);
        let identities = PyList::empty(py);
        let others = PyList::empty(py);
        self.take(socket, limit, |got| {
            if got.len() != parts || parts < 2 {
                return others.append(whole(py, got)?);
            }
            payloads.append(PyBytes::new(py, got[1].data()))?;
            if parts >= 3 {
                identities.append(PyBytes::new(py, got[2].data()))?;
            }
            Ok(())
        })?;
        Ok((payloads, identities, others))
    }
}

/// A message as pyzmq's ``recv_multipart`` gives it: the list of its parts.
fn whole<'py>(py: Python<'py>, parts: &mut [Part<'_>]) -> PyResult<Bound<'py, PyList>> {
    let frames = PyList::empty(py);
    for part in parts {
        frames.append(PyBytes::new(py, part.data()))?;
    }
    Ok(frames)
}

impl FrameReceiver {
    /// Take up to `limit` messages, handing each to `put` as its parts.
    fn take<'a>(
        &'a self,
        socket: usize,
        limit: usize,
        mut put: impl FnMut(&mut [Part<'a>]) -> PyResult<()>,
    ) -> PyResult<()> {
        let sock = socket as *mut c_void;
        let mut parts: Vec<Part<'a>> = Vec::with_capacity(4);
        let mut taken = 0;
        while taken < limit {
            parts.clear(); // closes the last message's parts
            loop {
                let mut part = Part::new(&self.zmq);
                if let Err(errno) = part.recv(sock) {
                    if parts.is_empty() {
                        if errno == libc::EAGAIN || taken > 0 {
                            return Ok(());
                        }
                        let what = format!("zmq errno {errno} on receive");
                        return Err(PyOSError::new_err((errno, what)));
                    }
                    // libzmq delivers a message's parts together, so this cannot happen;
                    // were it to, the parts taken go as a message of too few parts.
                    return put(&mut parts);
                }
                let more = part.more();
                parts.push(part);
                if !more {
                    break;
                }
            }
            put(&mut parts)?;
            taken += 1;
        }
        Ok(())
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<FrameReceiver>()
}
