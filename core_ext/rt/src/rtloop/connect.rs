//! Connections made off the loop: a connector thread resolves and connects (or opens a
//! serial line's tty), and parks the stream in a slot the loop takes without waiting. A
//! device that does not answer a SYN therefore costs the loop nothing.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::serial::{self, SerialSpec};

/// A link's open stream: a TCP connection or a serial line's tty (both non-blocking).
pub enum Stream {
    Tcp(TcpStream),
    Tty(File),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Tcp(s) => s.read(buf),
            Self::Tty(f) => f.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Tcp(s) => s.write(buf),
            Self::Tty(f) => f.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Self::Tcp(s) => s.as_raw_fd(),
            Self::Tty(f) => f.as_raw_fd(),
        }
    }
}

/// Where a connection attempt's result waits for the loop.
#[derive(Default)]
pub struct Slot {
    pending: AtomicBool,
    result: Mutex<Option<Result<Stream, String>>>,
}

impl Slot {
    /// An attempt is under way.
    pub fn pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// The attempt's result, if it is there (never waits).
    pub fn take(&self) -> Option<Result<Stream, String>> {
        let r = self.result.try_lock().ok()?.take();
        if r.is_some() {
            self.pending.store(false, Ordering::Release);
        }
        r
    }
}

struct Request {
    slot: Arc<Slot>,
    address: String,
    timeout: Duration,
    /// Some: `address` is a tty path, opened with these settings.
    serial: Option<SerialSpec>,
}

pub struct Connector {
    tx: Option<Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

impl Connector {
    pub fn start() -> std::io::Result<Self> {
        let (tx, rx) = channel::<Request>();
        let thread = std::thread::Builder::new()
            .name("vpp-rt-connect".into())
            .spawn(move || serve(rx))?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Ask for a connection to `address` into `slot` (ignored while one is pending); with
    /// `serial`, `address` is a tty path to open with those settings.
    pub fn request(
        &self,
        slot: &Arc<Slot>,
        address: &str,
        timeout: Duration,
        serial: Option<SerialSpec>,
    ) {
        if slot.pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let req = Request {
            slot: Arc::clone(slot),
            address: address.to_owned(),
            timeout,
            serial,
        };
        if let Some(tx) = &self.tx {
            if tx.send(req).is_err() {
                slot.pending.store(false, Ordering::Release);
            }
        }
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        self.tx = None; // the thread ends when the channel closes
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(rx: Receiver<Request>) {
    while let Ok(req) = rx.recv() {
        let r = match &req.serial {
            Some(spec) => serial::open(&req.address, spec).map(Stream::Tty),
            None => connect(&req.address, req.timeout).map(Stream::Tcp),
        };
        let mut g = req.slot.result.lock().unwrap_or_else(|e| e.into_inner());
        *g = Some(r);
    }
}

fn connect(address: &str, timeout: Duration) -> Result<TcpStream, String> {
    let addrs = address
        .to_socket_addrs()
        .map_err(|e| format!("{address}: {e}"))?;
    let mut last = format!("{address}: no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                s.set_nodelay(true).map_err(|e| format!("{address}: {e}"))?;
                s.set_nonblocking(true)
                    .map_err(|e| format!("{address}: {e}"))?;
                return Ok(s);
            }
            Err(e) => last = format!("{address}: {e}"),
        }
    }
    Err(last)
}
