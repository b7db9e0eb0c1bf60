//! `vpp._core.StampRelay`: the events broker's stamping relay, in compiled code.
//!
//! With Curve on the events bus the broker cannot be libzmq's own proxy: each message
//! must leave with a third frame, the identity ZAP gave its publisher's connection
//! (`User-Id`), so that subscribers can tell who published it. In a Python loop that
//! costs about 15 us a message; here it is a few hundred nanoseconds.
//!
//! The relay works on the sockets pyzmq made (their `underlying` addresses), through the
//! libzmq pyzmq itself loaded: its functions are looked up with `dlopen(RTLD_NOLOAD)` in
//! the file Python names, so no second libzmq is linked in and ZAP (served by pyzmq in
//! the same context) keeps working. Only the thread that calls `run` touches the
//! sockets, and it holds no GIL while it does.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_long, c_short, c_void, CStr, CString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::prelude::*;
use vpp_rt::rate::TokenBucket;

const ZMQ_DONTWAIT: c_int = 1;
const ZMQ_SNDMORE: c_int = 2;
const ZMQ_POLLIN: c_short = 1;
// ZMQ_HAUSNUMERO + 53: the context was terminated.
const ETERM: c_int = 156_384_712 + 53;
/// Messages relayed per wake-up before the control socket is looked at again.
const BATCH: usize = 4096;
/// Publishing identities given a bucket of their own; only identities ZAP admitted reach
/// the relay (a site's keyring), so this bound is never met in practice.
const MAX_IDENTITIES: usize = 4096;

/// `zmq_msg_t`: 64 opaque bytes, pointer-aligned (zmq.h).
#[repr(C, align(8))]
struct Msg([u8; 64]);

/// `zmq_pollitem_t` on POSIX systems.
#[repr(C)]
struct PollItem {
    socket: *mut c_void,
    fd: c_int,
    events: c_short,
    revents: c_short,
}

type MsgFn = unsafe extern "C" fn(*mut Msg) -> c_int;
type MsgIoFn = unsafe extern "C" fn(*mut Msg, *mut c_void, c_int) -> c_int;
type MoreFn = unsafe extern "C" fn(*const Msg) -> c_int;
type DataFn = unsafe extern "C" fn(*mut Msg) -> *mut c_void;
type SizeFn = unsafe extern "C" fn(*const Msg) -> usize;
type GetsFn = unsafe extern "C" fn(*const Msg, *const c_char) -> *const c_char;
type SendFn = unsafe extern "C" fn(*mut c_void, *const c_void, usize, c_int) -> c_int;
type PollFn = unsafe extern "C" fn(*mut PollItem, c_int, c_long) -> c_int;
type ErrnoFn = unsafe extern "C" fn() -> c_int;

/// The libzmq functions the relay (and `FrameReceiver`, frames.rs) calls.
#[derive(Clone, Copy)]
pub(crate) struct Zmq {
    msg_init: MsgFn,
    msg_close: MsgFn,
    msg_recv: MsgIoFn,
    msg_send: MsgIoFn,
    msg_more: MoreFn,
    msg_data: DataFn,
    msg_size: SizeFn,
    msg_gets: GetsFn,
    send: SendFn,
    poll: PollFn,
    errno: ErrnoFn,
}

impl Zmq {
    /// Look the functions up in the already loaded libzmq at `path`.
    pub(crate) fn load(path: &str) -> Result<Self, String> {
        let c_path = CString::new(path).map_err(|_| format!("{path:?}: a NUL in the path"))?;
        // SAFETY: RTLD_NOLOAD only returns a handle to a library already in the process,
        // so nothing is initialised by this call; the handle is never closed.
        let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD) };
        if handle.is_null() {
            return Err(format!("{path}: not a libzmq loaded in this process"));
        }
        let sym = |name: &str| -> Result<*mut c_void, String> {
            let c_name = CString::new(name).expect("no NUL in a symbol name");
            // SAFETY: a lookup in a live handle with a NUL-terminated name.
            let p = unsafe { libc::dlsym(handle, c_name.as_ptr()) };
            if p.is_null() {
                Err(format!("{path}: no symbol {name}"))
            } else {
                Ok(p)
            }
        };
        // SAFETY: each symbol is the libzmq 4.x function of that name, whose C signature
        // is the one transmuted to (zmq.h); libzmq keeps these stable across 4.x.
        unsafe {
            Ok(Self {
                msg_init: std::mem::transmute::<*mut c_void, MsgFn>(sym("zmq_msg_init")?),
                msg_close: std::mem::transmute::<*mut c_void, MsgFn>(sym("zmq_msg_close")?),
                msg_recv: std::mem::transmute::<*mut c_void, MsgIoFn>(sym("zmq_msg_recv")?),
                msg_send: std::mem::transmute::<*mut c_void, MsgIoFn>(sym("zmq_msg_send")?),
                msg_more: std::mem::transmute::<*mut c_void, MoreFn>(sym("zmq_msg_more")?),
                msg_data: std::mem::transmute::<*mut c_void, DataFn>(sym("zmq_msg_data")?),
                msg_size: std::mem::transmute::<*mut c_void, SizeFn>(sym("zmq_msg_size")?),
                msg_gets: std::mem::transmute::<*mut c_void, GetsFn>(sym("zmq_msg_gets")?),
                send: std::mem::transmute::<*mut c_void, SendFn>(sym("zmq_send")?),
                poll: std::mem::transmute::<*mut c_void, PollFn>(sym("zmq_poll")?),
                errno: std::mem::transmute::<*mut c_void, ErrnoFn>(sym("zmq_errno")?),
            })
        }
    }
}

/// One received message part, closed when dropped.
pub(crate) struct Part<'a> {
    zmq: &'a Zmq,
    msg: Msg,
}

impl<'a> Part<'a> {
    pub(crate) fn new(zmq: &'a Zmq) -> Self {
        let mut msg = Msg([0; 64]);
        // SAFETY: zmq_msg_init on a properly sized and aligned zmq_msg_t cannot fail.
        unsafe { (zmq.msg_init)(&mut msg) };
        Self { zmq, msg }
    }

    /// Receive the next part without waiting; the errno when there is none.
    pub(crate) fn recv(&mut self, sock: *mut c_void) -> Result<(), c_int> {
        // SAFETY: `sock` is a live socket used by this thread only (see `StampRelay::run`,
        // `FrameReceiver::recv`).
        if unsafe { (self.zmq.msg_recv)(&mut self.msg, sock, ZMQ_DONTWAIT) } < 0 {
            return Err(unsafe { (self.zmq.errno)() });
        }
        Ok(())
    }

    pub(crate) fn more(&self) -> bool {
        // SAFETY: an initialised message.
        unsafe { (self.zmq.msg_more)(&self.msg) != 0 }
    }

    /// The part's content.
    pub(crate) fn data(&mut self) -> &[u8] {
        // SAFETY: an initialised message: its data pointer and size describe one buffer,
        // which lives as long as the message (a zero-size one may have a null pointer).
        unsafe {
            let size = (self.zmq.msg_size)(&self.msg);
            if size == 0 {
                return &[];
            }
            std::slice::from_raw_parts((self.zmq.msg_data)(&mut self.msg).cast::<u8>(), size)
        }
    }

    /// The `User-Id` ZAP gave the connection this part came in on ("" without one).
    fn user_id(&self) -> &[u8] {
        // SAFETY: an initialised message and a NUL-terminated property name; the string
        // returned lives as long as the message.
        let p = unsafe { (self.zmq.msg_gets)(&self.msg, c"User-Id".as_ptr()) };
        if p.is_null() {
            b""
        } else {
            unsafe { CStr::from_ptr(p) }.to_bytes()
        }
    }

    /// Send this part on (its content moves, without a copy); false if libzmq refused.
    fn send(&mut self, sock: *mut c_void, flags: c_int) -> bool {
        // SAFETY: as in `recv`; after a successful send the message is empty again.
        unsafe { (self.zmq.msg_send)(&mut self.msg, sock, flags) >= 0 }
    }
}

impl Drop for Part<'_> {
    fn drop(&mut self) {
        // SAFETY: closing an initialised (possibly already sent, hence empty) message.
        unsafe { (self.zmq.msg_close)(&mut self.msg) };
    }
}

/// The relay's own figures, readable from Python while it runs.
#[derive(Default)]
struct Counters {
    forwarded: AtomicU64,
    frames: AtomicU64,
    rate_limited: AtomicU64,
    send_failed: AtomicU64,
    dropped: Mutex<HashMap<String, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain counters: still consistent if a holder had panicked.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The stamping relay of the events broker: XSUB -> XPUB with the publisher's identity
/// appended as a third frame, each identity held to ``rate_per_s`` messages a second
/// (``burst`` at once; ``rate_per_s=None``: no limit). ``libzmq`` is the path of the libzmq
/// pyzmq loaded; ``OSError`` if it is not one.
#[pyclass(module = "vpp._core", name = "StampRelay", frozen)]
pub struct StampRelay {
    zmq: Zmq,
    rate: Option<(f64, f64)>,
    counters: Counters,
    running: Mutex<bool>,
}

#[pymethods]
impl StampRelay {
    #[new]
    #[pyo3(signature = (libzmq, rate_per_s=None, burst=1.0))]
    fn new(libzmq: &str, rate_per_s: Option<f64>, burst: f64) -> PyResult<Self> {
        let zmq = Zmq::load(libzmq).map_err(PyOSError::new_err)?;
        Ok(Self {
            zmq,
            rate: rate_per_s.map(|r| (r, burst)),
            counters: Counters::default(),
            running: Mutex::new(false),
        })
    }

    /// Relay until a message arrives on ``control`` (or the context ends), with the GIL
    /// released. ``xsub``, ``xpub`` and ``control`` are pyzmq sockets' ``underlying``
    /// addresses; the caller keeps them open, and touches them from no other thread,
    /// until this returns.
    fn run(&self, py: Python<'_>, xsub: usize, xpub: usize, control: usize) -> PyResult<()> {
        {
            let mut running = lock(&self.running);
            if *running {
                return Err(PyRuntimeError::new_err("StampRelay.run is already running"));
            }
            *running = true;
        }
        let sockets = (
            xsub as *mut c_void,
            xpub as *mut c_void,
            control as *mut c_void,
        );
        let sockets = SendPtrs(sockets);
        let result = py.detach(|| self.relay(sockets));
        *lock(&self.running) = false;
        result.map_err(|errno| PyOSError::new_err(format!("events relay: zmq errno {errno}")))
    }

    /// Messages forwarded.
    #[getter]
    fn forwarded(&self) -> u64 {
        self.counters.forwarded.load(Ordering::Relaxed)
    }

    /// Messages dropped by kind: ``frames`` (not two frames), ``rate_limited``,
    /// ``send`` (libzmq refused to send).
    fn errors(&self) -> HashMap<&'static str, u64> {
        let c = &self.counters;
        [
            ("frames", &c.frames),
            ("rate_limited", &c.rate_limited),
            ("send", &c.send_failed),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.load(Ordering::Relaxed)))
        .filter(|(_, v)| *v > 0)
        .collect()
    }

    /// Messages dropped by the publish rate, by identity.
    fn dropped(&self) -> HashMap<String, u64> {
        lock(&self.counters.dropped).clone()
    }
}

/// Socket addresses moved into the GIL-free closure; used only by that thread.
struct SendPtrs((*mut c_void, *mut c_void, *mut c_void));
// SAFETY: the caller of `run` hands the sockets to the relay thread for its duration.
unsafe impl Send for SendPtrs {}

impl StampRelay {
    fn relay(&self, sockets: SendPtrs) -> Result<(), c_int> {
        let (xsub, xpub, control) = sockets.0;
        let start = Instant::now();
        let mut buckets: HashMap<Vec<u8>, TokenBucket> = HashMap::new();
        loop {
            let mut items = [
                PollItem {
                    socket: xsub,
                    fd: 0,
                    events: ZMQ_POLLIN,
                    revents: 0,
                },
                PollItem {
                    socket: xpub,
                    fd: 0,
                    events: ZMQ_POLLIN,
                    revents: 0,
                },
                PollItem {
                    socket: control,
                    fd: 0,
                    events: ZMQ_POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: three valid poll items of live sockets.
            if unsafe { (self.zmq.poll)(items.as_mut_ptr(), 3, -1) } < 0 {
                match unsafe { (self.zmq.errno)() } {
                    libc::EINTR => continue,
                    ETERM => return Ok(()),
                    errno => return Err(errno),
                }
            }
            if items[2].revents & ZMQ_POLLIN != 0 {
                return Ok(());
            }
            if items[1].revents & ZMQ_POLLIN != 0 {
                self.subscriptions(xpub, xsub)?;
            }
            if items[0].revents & ZMQ_POLLIN != 0 {
                self.messages(xsub, xpub, &mut buckets, start)?;
            }
        }
    }

    /// Subscriptions travel upstream as they are.
    fn subscriptions(&self, xpub: *mut c_void, xsub: *mut c_void) -> Result<(), c_int> {
        for _ in 0..BATCH {
            let mut part = Part::new(&self.zmq);
            match part.recv(xpub) {
                Ok(()) => {}
                Err(libc::EAGAIN) => break,
                Err(errno) => return fail(errno),
            }
            let flags = if part.more() { ZMQ_SNDMORE } else { 0 };
            part.send(xsub, flags);
        }
        Ok(())
    }

    fn messages(
        &self,
        xsub: *mut c_void,
        xpub: *mut c_void,
        buckets: &mut HashMap<Vec<u8>, TokenBucket>,
        start: Instant,
    ) -> Result<(), c_int> {
        let c = &self.counters;
        let mut forwarded = 0;
        for _ in 0..BATCH {
            let mut topic = Part::new(&self.zmq);
            match topic.recv(xsub) {
                Ok(()) => {}
                Err(libc::EAGAIN) => break,
                Err(errno) => return fail(errno),
            }
            if !topic.more() {
                c.frames.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let mut payload = Part::new(&self.zmq);
            payload.recv(xsub).or_else(fail)?;
            if payload.more() {
                // A message of three or more parts: drop the rest of it too.
                loop {
                    let mut rest = Part::new(&self.zmq);
                    rest.recv(xsub).or_else(fail)?;
                    if !rest.more() {
                        break;
                    }
                }
                c.frames.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let who = payload.user_id();
            if let Some((rate, burst)) = self.rate {
                let now = start.elapsed().as_nanos() as u64;
                let full = buckets.len() >= MAX_IDENTITIES;
                let allowed = match buckets.get_mut(who) {
                    Some(b) => b.take(now),
                    None if !full => {
                        let mut b = TokenBucket::new(rate, burst, now);
                        let ok = b.take(now);
                        buckets.insert(who.to_vec(), b);
                        ok
                    }
                    None => false,
                };
                if !allowed {
                    // One publisher's flood must not starve the others' subscribers.
                    c.rate_limited.fetch_add(1, Ordering::Relaxed);
                    let name = String::from_utf8_lossy(who).into_owned();
                    *lock(&c.dropped).entry(name).or_insert(0) += 1;
                    continue;
                }
            }
            // The identity is copied out first: the payload's properties go with it.
            let mut short = [0u8; 64];
            let long: Vec<u8>;
            let stamp: &[u8] = if who.len() <= short.len() {
                short[..who.len()].copy_from_slice(who);
                &short[..who.len()]
            } else {
                long = who.to_vec();
                &long
            };
            let sent = topic.send(xpub, ZMQ_SNDMORE)
                && payload.send(xpub, ZMQ_SNDMORE)
                // SAFETY: a live socket and a buffer of that many bytes, which libzmq copies.
                && unsafe { (self.zmq.send)(xpub, stamp.as_ptr().cast(), stamp.len(), 0) } >= 0;
            if sent {
                forwarded += 1;
            } else {
                c.send_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        c.forwarded.fetch_add(forwarded, Ordering::Relaxed);
        Ok(())
    }
}

fn fail<T>(errno: c_int) -> Result<T, c_int> {
    Err(errno)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<StampRelay>()
}
