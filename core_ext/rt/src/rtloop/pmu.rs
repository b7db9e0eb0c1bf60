//! The loop's PMU connection: a TCP client that asks for CFG-2 and turns data on once a
//! configuration is known, or a UDP receiver whose configuration is fetched once over
//! TCP. Non-blocking: the loop polls the socket and reads what is there; connecting is
//! the connector thread's job. Silence for `read_timeout_s` drops the connection.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use super::connect::{Connector, Slot, Stream};
use super::{LoopShared, PmuSpec, PmuTransport};
use crate::c37118::command::encode_command;
use crate::c37118::{check_frame, Command, CommandFrame, StreamDecoder, StreamItem};
use std::sync::atomic::Ordering;

pub struct PmuSource {
    spec: PmuSpec,
    slot: Arc<Slot>,
    tcp: Option<TcpStream>,
    udp: Option<UdpSocket>,
    decoder: StreamDecoder,
    buf: Box<[u8]>,
    cmd: Vec<u8>,
    /// Monotonic s of the last byte (or of the connection).
    last_byte: f64,
    next_attempt: f64,
    backoff: f64,
    backoff_initial: f64,
    backoff_max: f64,
    data_on_sent: bool,
    cfg_asked: f64,
    /// The stream's configuration is known (UDP: the TCP link is no longer needed).
    pub have_config: bool,
}

impl PmuSource {
    pub fn new(spec: PmuSpec, backoff_initial: f64, backoff_max: f64) -> Self {
        Self {
            spec,
            slot: Arc::new(Slot::default()),
            tcp: None,
            udp: None,
            decoder: StreamDecoder::new(),
            buf: vec![0u8; 1 << 16].into_boxed_slice(),
            cmd: Vec::with_capacity(32),
            last_byte: 0.0,
            next_attempt: 0.0,
            backoff: backoff_initial,
            backoff_initial,
            backoff_max,
            data_on_sent: false,
            cfg_asked: f64::NEG_INFINITY,
            have_config: false,
        }
    }

    /// The sockets to poll for input.
    pub fn fds(&self, out: &mut Vec<RawFd>) {
        if let Some(u) = &self.udp {
            out.push(u.as_raw_fd());
        }
        if let Some(t) = &self.tcp {
            out.push(t.as_raw_fd());
        }
    }

    /// Connect, reconnect, ask for the configuration and data: everything but reading.
    pub fn maintain(&mut self, now: f64, connector: &Connector, shared: &LoopShared) {
        if let PmuTransport::Udp { bind } = &self.spec.transport {
            if self.udp.is_none() && now >= self.next_attempt {
                match UdpSocket::bind(bind.as_str()).and_then(|s| {
                    s.set_nonblocking(true)?;
                    Ok(s)
                }) {
                    Ok(s) => {
                        self.udp = Some(s);
                        self.last_byte = now;
                    }
                    Err(e) => {
                        shared.note(|| format!("PMU UDP {bind}: {e}"));
                        self.next_attempt = now + self.backoff_max;
                    }
                }
            }
        }
        let need_tcp = match self.spec.transport {
            PmuTransport::Tcp => true,
            PmuTransport::Udp { .. } => !self.have_config,
        };
        if self.tcp.is_none() && need_tcp {
            if let Some(r) = self.slot.take() {
                match r {
                    Ok(Stream::Tcp(s)) => {
                        self.tcp = Some(s);
                        self.decoder = StreamDecoder::new();
                        self.data_on_sent = false;
                        self.cfg_asked = f64::NEG_INFINITY;
                        self.last_byte = now;
                        self.backoff = self.backoff_initial;
                        shared.pmu_connects.fetch_add(1, Ordering::Relaxed);
                        if matches!(self.spec.transport, PmuTransport::Tcp) {
                            shared.pmu_connected.store(true, Ordering::Release);
                        }
                    }
                    Ok(Stream::Tty(_)) => unreachable!("the PMU is never a serial line"),
                    Err(e) => {
                        shared.note(|| format!("PMU {e}"));
                        self.retry_later(now);
                    }
                }
            } else if !self.slot.pending() && now >= self.next_attempt {
                let timeout = Duration::from_secs_f64(self.spec.read_timeout_s.min(2.0));
                connector.request(&self.slot, &self.spec.address, timeout, None);
            }
        }
        if self.tcp.is_some() {
            if !self.have_config && now - self.cfg_asked >= self.spec.read_timeout_s {
                self.cfg_asked = now;
                self.send(Command::SendCfg2, shared, now);
            } else if self.have_config
                && !self.data_on_sent
                && matches!(self.spec.transport, PmuTransport::Tcp)
            {
                self.data_on_sent = true;
                self.send(Command::DataOn, shared, now);
            } else if self.have_config && matches!(self.spec.transport, PmuTransport::Udp { .. }) {
                // The configuration is known: the TCP link was only for it.
                self.tcp = None;
            }
        }
        let silent = now - self.last_byte > self.spec.read_timeout_s;
        if silent && (self.tcp.is_some() && need_tcp || self.udp.is_some() && self.have_config) {
            shared.note(|| {
                format!(
                    "PMU {}: no data for {:.1} s",
                    self.spec.address, self.spec.read_timeout_s
                )
            });
            self.drop_tcp(shared, now);
            self.last_byte = now;
        }
    }

    fn retry_later(&mut self, now: f64) {
        self.next_attempt = now + self.backoff;
        self.backoff = (self.backoff * 2.0).min(self.backoff_max);
    }

    fn drop_tcp(&mut self, shared: &LoopShared, now: f64) {
        if self.tcp.take().is_some() {
            shared.pmu_connected.store(false, Ordering::Release);
            self.retry_later(now);
        }
    }

    fn send(&mut self, command: Command, shared: &LoopShared, now: f64) {
        self.cmd.clear();
        if encode_command(&CommandFrame::new(self.spec.idcode, command), &mut self.cmd).is_err() {
            return;
        }
        let ok = match self.tcp.as_mut() {
            Some(t) => t.write_all(&self.cmd).is_ok(),
            None => return,
        };
        if !ok {
            shared.note(|| format!("PMU {}: command not sent", self.spec.address));
            self.drop_tcp(shared, now);
        }
    }

    /// Read everything that is there and hand each frame (or framing error) to `f`.
    pub fn read(&mut self, now: f64, shared: &LoopShared, mut f: impl FnMut(StreamItem<'_>)) {
        if let Some(u) = &self.udp {
            loop {
                match u.recv(&mut self.buf) {
                    Ok(n) => {
                        self.last_byte = now;
                        if matches!(self.spec.transport, PmuTransport::Udp { .. }) {
                            shared.pmu_connected.store(true, Ordering::Release);
                        }
                        // One datagram, one frame: checked alone, so a bad one spoils
                        // nothing after it.
                        let bytes = &self.buf[..n];
                        match check_frame(bytes) {
                            Ok(_) => f(StreamItem::Frame { offset: 0, bytes }),
                            Err(e) => f(StreamItem::Error(e)),
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => break,
                }
            }
        }
        let mut closed = false;
        if let Some(t) = self.tcp.as_mut() {
            loop {
                match t.read(&mut self.buf) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(n) => {
                        self.last_byte = now;
                        self.decoder.feed(&self.buf[..n], &mut f);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
        }
        if closed {
            shared.note(|| format!("PMU {}: connection closed", self.spec.address));
            self.drop_tcp(shared, now);
        }
    }
}
