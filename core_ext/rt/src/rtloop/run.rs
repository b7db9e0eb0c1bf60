//! The loop thread's body: poll the sockets, decode each frame once, step every unit,
//! write the setpoints that changed, refresh the watchdogs, collect the answers; on a
//! serial line, carry Python's polls when the line has nothing of the loop's to carry.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::connect::{Connector, Slot, Stream};
use super::exchange::TxError;
use super::modbus::{
    parse_reply, read_request, write_request, Reply, MAX_REQUEST, MAX_WRITE_WORDS,
};
use super::pmu::PmuSource;
use super::rtu::{self, RtuReply, MAX_ADU, MAX_PDU};
use super::serial::{self, SerialSpec};
use super::Transport;
use super::{LoopShared, LoopSpec, ModbusTarget, Record, RecordKind, Ring, UnitShared, UnitSpec};
use super::{PiGuard, PiMutex};
use crate::c37118::{self, Cfg3Assembler, ConfigStore, DataFrame, Frame, FrameType, StreamItem};
use crate::clock::{monotonic_s, Clock};
use crate::error::{FrameError, FrameErrorKind};
use crate::pipeline::{Decision, Measurement, Pipeline};

/// Longest poll: the alive stamp and the stop flag are looked at this often.
const MAX_WAIT_S: f64 = 0.010;
/// An iteration this much later than the one before was a stall: an inverter whose
/// watchdog expired meanwhile holds 0 until it is written again, so every unit's next
/// setpoint is written whatever it is.
const RESYNC_GAP_S: f64 = 0.2;

#[derive(Clone, Copy, PartialEq)]
enum Sent {
    Setpoint(f64),
    Watchdog,
    /// The read of the target's `verify` run with this index.
    Verify(usize),
    /// One of the writes made on each connect (the watchdog timeout, the target's `init`).
    Init,
    /// Python's transaction (its id in the unit's exchange); serial lines only.
    Python(u64),
}

/// What a serial link knows of its line beyond what a TCP link has.
struct Line {
    spec: SerialSpec,
    char_s: f64,
    /// t3.5: the silence before each request.
    silence_s: f64,
    /// The line has been quiet long enough from then on (its last byte + t3.5).
    free_at: f64,
    /// The function code of the request in flight, which tells its reply's length.
    function: u8,
    /// Python's request PDU, taken from the exchange.
    pdu: [u8; MAX_PDU],
    /// An answer for Python not posted yet (the slot was busy): id, result, and the
    /// reply PDU in `answer`.
    undelivered: Option<(u64, Result<usize, TxError>)>,
    answer: [u8; MAX_PDU],
}

impl Line {
    fn new(spec: SerialSpec) -> Self {
        let char_s = spec.char_time_s();
        Self {
            spec,
            char_s,
            silence_s: rtu::silence_s(spec.baudrate, char_s),
            free_at: 0.0,
            function: 0,
            pdu: [0; MAX_PDU],
            undelivered: None,
            answer: [0; MAX_PDU],
        }
    }
}

struct Link {
    target: ModbusTarget,
    slot: Arc<Slot>,
    stream: Option<Stream>,
    /// Some: Modbus RTU on a serial line.
    line: Option<Line>,
    /// The one request unanswered (transaction id, when sent, what): one at a time, as
    /// most Modbus TCP servers expect (pipelined requests were seen held up 100-250 ms by
    /// pymodbus's server, and many embedded servers drop them). A newer setpoint waits
    /// for the answer (only the newest is sent).
    inflight: Option<(u16, f64, Sent)>,
    rx: [u8; 512],
    rx_len: usize,
    next_tid: u16,
    /// The setpoint last sent (None: the next one is sent whatever it is).
    last: Option<f64>,
    pending: Option<f64>,
    next_attempt: f64,
    backoff: f64,
    counter: u16,
    next_watchdog: f64,
    /// Serial line: a request went unanswered, and none has been answered since; the
    /// first answer then makes the connect writes due again (the device may have
    /// restarted). Not at the timeout itself: on a cut line that write would take every
    /// turn and starve the watchdog counter and Python's polls.
    unanswered: bool,
    /// The next `verify` run to read on this connection; all read and matched when it
    /// reaches their number. Nothing is written before.
    verify_next: usize,
    /// The next of the writes made on each connect (`target.init`, the watchdog timeout
    /// first); setpoints wait for the last.
    init_next: usize,
    /// When the last setpoint was sent (for `refresh_s`).
    sent_at: f64,
}

impl Link {
    fn new(mut target: ModbusTarget, backoff: f64) -> Self {
        // The watchdog timeout is the first of the writes made on each connect (the
        // target's validation made sure that it encodes).
        if let Some(p) = target.watchdog_timeout {
            if let Some((w, n)) = p.encode(target.watchdog_timeout_s) {
                target.init.insert(0, (p.address, w[..n].to_vec()));
            }
        }
        Self {
            line: match target.transport {
                Transport::Rtu(spec) => Some(Line::new(spec)),
                Transport::Tcp => None,
            },
            target,
            slot: Arc::new(Slot::default()),
            stream: None,
            inflight: None,
            rx: [0; 512],
            rx_len: 0,
            next_tid: 1,
            last: None,
            pending: None,
            next_attempt: 0.0,
            backoff,
            counter: 0,
            next_watchdog: 0.0,
            unanswered: false,
            verify_next: 0,
            init_next: 0,
            sent_at: f64::NEG_INFINITY,
        }
    }

    /// Every `verify` run of this connection matched: the loop may write.
    fn verified(&self) -> bool {
        self.verify_next >= self.target.verify.len()
    }

    /// Verified and every `init` write sent: setpoints may go.
    fn ready(&self) -> bool {
        self.verified() && self.init_next >= self.target.init.len()
    }
}

struct UnitState {
    pipeline: Arc<PiMutex<Pipeline>>,
    shared: Arc<UnitShared>,
    link: Option<Link>,
}

pub(super) struct Loop {
    spec: LoopSpec,
    shared: Arc<LoopShared>,
    ring: Arc<Ring<Record>>,
    units: Vec<UnitState>,
    pmu: PmuSource,
    configs: ConfigStore,
    cfg3: Cfg3Assembler,
    frame: DataFrame,
    last_admitted: f64,
    next_idle: f64,
    /// When the last data frame was read, and the frame period seen (EWMA; NaN unknown).
    last_frame_at: f64,
    period: f64,
    fds: Vec<RawFd>,
    pollfds: Vec<libc::pollfd>,
}

fn lock(p: &PiMutex<Pipeline>) -> PiGuard<'_, Pipeline> {
    p.lock()
}

impl Loop {
    pub(super) fn new(
        spec: LoopSpec,
        units: Vec<UnitSpec>,
        shared: Arc<LoopShared>,
        unit_shared: Vec<Arc<UnitShared>>,
        ring: Arc<Ring<Record>>,
    ) -> Self {
        let units = units
            .into_iter()
            .zip(unit_shared)
            .map(|(u, shared)| UnitState {
                pipeline: u.pipeline,
                shared,
                link: u
                    .target
                    .map(|target| Link::new(target, spec.backoff_initial_s)),
            })
            .collect();
        let pmu = PmuSource::new(spec.pmu.clone(), spec.backoff_initial_s, spec.backoff_max_s);
        Self {
            spec,
            shared,
            ring,
            units,
            pmu,
            configs: ConfigStore::new(),
            cfg3: Cfg3Assembler::new(),
            frame: DataFrame::default(),
            last_admitted: f64::NEG_INFINITY,
            next_idle: 0.0,
            last_frame_at: f64::NAN,
            period: f64::NAN,
            fds: Vec::with_capacity(64),
            pollfds: Vec::with_capacity(64),
        }
    }
}

/// The thread's entry: the loop, with a panic turned into "ended" for Python to report.
pub(super) fn run(mut state: Loop, ready: std::sync::mpsc::Sender<()>) {
    let shared = Arc::clone(&state.shared);
    let r = std::panic::catch_unwind(AssertUnwindSafe(|| state.main(ready)));
    let why = match r {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(p) => Some(
            p.downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_owned()),
        ),
    };
    if let Some(why) = why {
        *shared.ended.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
    }
    // Every socket and tty closed before `running` says the loop ended: the Python
    // driver of a serial unit then opens the port the loop no longer holds.
    drop(state);
    shared.pmu_connected.store(false, Ordering::Release);
    shared.running.store(false, Ordering::Release);
}

impl Loop {
    fn main(&mut self, ready: std::sync::mpsc::Sender<()>) -> Result<(), String> {
        if self.spec.lock_memory {
            self.shared
                .memory_locked
                .store(super::sched::lock_memory(), Ordering::Relaxed);
        }
        if self.spec.priority > 0 {
            super::sched::set_fifo(self.spec.priority);
        }
        self.shared
            .realtime
            .store(super::sched::is_fifo(), Ordering::Relaxed);
        let _ = ready.send(());
        let connector = Connector::start().map_err(|e| format!("connector thread: {e}"))?;
        let mut prev = monotonic_s();
        while !self.shared.stop.load(Ordering::Acquire) {
            self.faults();
            let now = monotonic_s();
            if now - prev > RESYNC_GAP_S {
                self.shared.gaps.fetch_add(1, Ordering::Relaxed);
                for l in self.units.iter_mut().filter_map(|u| u.link.as_mut()) {
                    l.last = None;
                }
            }
            prev = now;
            self.shared
                .alive_ns
                .store((now * 1e9) as u64, Ordering::Release);
            self.pmu.maintain(now, &connector, &self.shared);
            self.take_targets();
            self.maintain_links(now, &connector);
            self.wait(now);
            let now = monotonic_s();
            self.read_pmu(now);
            if now - self.last_admitted > self.spec.stale_s && now >= self.next_idle {
                self.next_idle = now + self.spec.idle_period_s;
                self.idle(now);
            }
            self.service_links(monotonic_s());
        }
        Ok(())
    }

    fn faults(&self) {
        let ms = self.shared.inject_stall_ms.swap(0, Ordering::AcqRel);
        if ms > 0 {
            std::thread::sleep(Duration::from_millis(ms));
        }
        if self.shared.inject_panic.load(Ordering::Acquire) {
            panic!("injected fault");
        }
    }

    /// Block in poll() until input, the next timer or MAX_WAIT_S.
    fn wait(&mut self, now: f64) {
        let mut until = now + MAX_WAIT_S;
        if now - self.last_admitted > self.spec.stale_s {
            until = until.min(self.next_idle);
        }
        self.fds.clear();
        self.pmu.fds(&mut self.fds);
        for u in &self.units {
            if let Some(l) = &u.link {
                if let (Some(fd), Some(_)) = (u.shared.exchange.wake_fd(), &l.line) {
                    self.fds.push(fd); // Python queued a request (or a closed line's refusal)
                }
                if let (Some(s), Some(line)) = (&l.stream, &l.line) {
                    // A tty is always watched: a hang-up shows as readable (EOF or EIO).
                    self.fds.push(s.as_raw_fd());
                    if let Some((_, sent, _)) = l.inflight {
                        until = until.min(sent + self.spec.write_timeout_s);
                    } else if l.pending.is_some() || !l.ready() || u.shared.exchange.posted() {
                        until = until.min(line.free_at);
                    }
                    if line.undelivered.is_some() {
                        until = until.min(now + 0.001);
                    }
                    if l.target.watchdog.is_some() {
                        until = until.min(l.next_watchdog.max(line.free_at));
                    }
                } else if let Some(s) = &l.stream {
                    if let Some((_, sent, _)) = l.inflight {
                        self.fds.push(s.as_raw_fd());
                        until = until.min(sent + self.spec.write_timeout_s);
                    }
                    if l.target.watchdog.is_some() {
                        until = until.min(l.next_watchdog);
                    }
                }
            }
        }
        self.pollfds.clear();
        self.pollfds.extend(self.fds.iter().map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        }));
        let spin = self.spec.spin_s;
        if spin > 0.0 && self.period.is_finite() {
            let expected = self.last_frame_at + self.period;
            if now < expected - spin {
                until = until.min(expected - spin);
            } else if now < expected + spin {
                // Awake for the frame: poll without sleeping until it (or a deadline) comes.
                let end = until.min(expected + spin);
                while self.poll(0) == 0 && monotonic_s() < end {
                    std::hint::spin_loop();
                }
                return;
            }
        }
        let ms = ((until - now) * 1000.0).ceil().clamp(0.0, 1000.0) as libc::c_int;
        self.poll(ms);
    }

    fn poll(&mut self, ms: libc::c_int) -> libc::c_int {
        // SAFETY: pollfds is a valid array of `len` pollfd structs we own.
        unsafe {
            libc::poll(
                self.pollfds.as_mut_ptr(),
                self.pollfds.len() as libc::nfds_t,
                ms,
            )
        }
    }

    /// A data frame was read at `now`: learn the period.
    fn frame_seen(&mut self, now: f64) {
        let dt = now - self.last_frame_at;
        if dt > 0.001 && dt < 1.0 {
            self.period = if self.period.is_finite() {
                0.9 * self.period + 0.1 * dt
            } else {
                dt
            };
        }
        self.last_frame_at = now;
    }

    fn read_pmu(&mut self, now: f64) {
        // Split borrows: the source reads, the rest of the loop handles each frame.
        let Self {
            pmu,
            shared,
            configs,
            cfg3,
            frame,
            units,
            ring,
            spec,
            last_admitted,
            ..
        } = self;
        let mut got_config = false;
        let mut got_data = false;
        pmu.read(now, shared, |item| match item {
            StreamItem::Error(e) => count_error(shared, &e),
            StreamItem::Frame { bytes, .. } => {
                shared.frames.fetch_add(1, Ordering::Relaxed);
                match handle_frame(bytes, spec, configs, cfg3, frame) {
                    Ok(Some(m)) => {
                        got_data = true;
                        shared.data_frames.fetch_add(1, Ordering::Relaxed);
                        if step_units(units, ring, m, now) {
                            *last_admitted = now;
                        } else {
                            shared.refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(None) => {}
                    Err(Handled::Config) => {
                        shared.configs.fetch_add(1, Ordering::Relaxed);
                        got_config = true;
                    }
                    Err(Handled::Error(e)) => count_error(shared, &e),
                }
            }
        });
        if got_data {
            self.frame_seen(now);
        }
        if got_config && self.configs.get(self.spec.pmu.idcode).is_some() {
            self.pmu.have_config = true;
        }
        if got_data {
            // Write what the frames decided now, and note how long it took.
            self.flush(now);
        }
    }

    fn idle(&mut self, now: f64) {
        let clock = Clock::now();
        for (i, u) in self.units.iter_mut().enumerate() {
            let d = *lock(&u.pipeline).idle(clock);
            self.shared.idle_steps.fetch_add(1, Ordering::Relaxed);
            decided(u, i, &self.ring, d, RecordKind::Idle, now);
        }
        self.flush(now);
    }

    /// Send the pending setpoints, then note the frame's time to the last send.
    fn flush(&mut self, received: f64) {
        for u in &mut self.units {
            if let Some(l) = u.link.as_mut() {
                if let Some(t) = send_pending(l, &u.shared, &self.spec) {
                    let ns = ((t - received).max(0.0) * 1e9) as u64;
                    self.shared.max_frame_ns.fetch_max(ns, Ordering::Relaxed);
                }
            }
        }
    }

    /// Targets Python gave since the last iteration: the old link (and its connection)
    /// goes, the new one connects and verifies before it writes anything.
    fn take_targets(&mut self) {
        for u in &mut self.units {
            let Some(target) = u.shared.take_target() else {
                continue;
            };
            if u.link.as_ref().is_some_and(|l| l.line.is_some()) {
                continue; // a serial line stays the loop's (the binding refuses this)
            }
            u.link = target.map(|t| Link::new(t, self.spec.backoff_initial_s));
            u.shared.connected.store(false, Ordering::Release);
            u.shared.verified.store(false, Ordering::Release);
            u.shared
                .has_target
                .store(u.link.is_some(), Ordering::Release);
        }
    }

    fn maintain_links(&mut self, now: f64, connector: &Connector) {
        for u in &mut self.units {
            let Some(l) = u.link.as_mut() else { continue };
            if l.stream.is_some() {
                continue;
            }
            if let Some(r) = l.slot.take() {
                match r {
                    Ok(s) => {
                        l.stream = Some(s);
                        l.backoff = self.spec.backoff_initial_s;
                        l.inflight = None;
                        l.rx_len = 0;
                        l.last = None;
                        l.next_watchdog = now;
                        l.verify_next = 0;
                        l.init_next = 0;
                        u.shared.verified.store(l.verified(), Ordering::Release);
                        if let Some(line) = l.line.as_mut() {
                            line.free_at = now + line.silence_s;
                        }
                        u.shared.connected.store(true, Ordering::Release);
                        u.shared.connects.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        self.shared.note(|| format!("inverter {e}"));
                        l.next_attempt = now + l.backoff;
                        l.backoff = (l.backoff * 2.0).min(self.spec.backoff_max_s);
                    }
                }
            } else if !l.slot.pending() && now >= l.next_attempt {
                let t = Duration::from_secs_f64(self.spec.write_timeout_s.max(0.05));
                let serial = l.line.as_ref().map(|line| line.spec);
                connector.request(&l.slot, &l.target.address, t, serial);
            }
        }
    }

    /// Answers, timeouts, watchdog refreshes and setpoints still waiting; on a serial
    /// line then Python's request, if the line has nothing of the loop's to carry.
    fn service_links(&mut self, now: f64) {
        for u in &mut self.units {
            let Some(l) = u.link.as_mut() else { continue };
            if let Some(line) = l.line.as_mut() {
                u.shared.exchange.clear_wake();
                if let Some((id, r)) = line.undelivered {
                    let ok = match r {
                        Ok(n) => u.shared.exchange.answer(id, Ok(&line.answer[..n])),
                        Err(e) => u.shared.exchange.answer(id, Err(e)),
                    };
                    if ok {
                        line.undelivered = None;
                    }
                }
                // Not open and not being opened (a failed open or a reset waits out its
                // backoff): the driver hears so at once. While the open is under way (at
                // start above all: `maintain_links` asked for it already) the request
                // waits for it, up to its deadline.
                if l.stream.is_none() && !l.slot.pending() && u.shared.exchange.posted() {
                    u.shared.exchange.refuse();
                }
            }
            if l.stream.is_none() {
                continue;
            }
            let read = if l.line.is_some() {
                read_line(l, &u.shared, now)
            } else {
                read_replies(l, &u.shared, now)
            };
            if let Err(why) = read {
                self.shared
                    .note(|| format!("inverter {}: {why}", l.target.address));
                reset(l, &u.shared, now, &self.spec);
                continue;
            }
            if l.inflight
                .is_some_and(|(_, sent, _)| now - sent > self.spec.write_timeout_s)
            {
                u.shared.timeouts.fetch_add(1, Ordering::Relaxed);
                self.shared.note(|| {
                    format!(
                        "inverter {}: no answer in {} s",
                        l.target.address, self.spec.write_timeout_s
                    )
                });
                if l.line.is_none() {
                    reset(l, &u.shared, now, &self.spec);
                    continue;
                }
                // A tty has nothing to reconnect: the line is flushed (a late answer
                // must not be taken for the next one's) and the next request goes after
                // the silence. The device may restart meanwhile: once it answers again
                // its watchdog timeout is written again, and the next setpoint whatever
                // it is.
                if let Some(Stream::Tty(f)) = &l.stream {
                    serial::flush(f);
                }
                fail_inflight(l, &u.shared, TxError::Timeout);
                l.rx_len = 0;
                l.last = None;
                l.unanswered = true;
                if let Some(line) = l.line.as_mut() {
                    line.free_at = now + line.silence_s;
                }
            }
            if !l.verified() {
                // Nothing else goes on this connection before the device is the one
                // the target was made for.
                if l.inflight.is_none() {
                    let k = l.verify_next;
                    if send_read(l, &u.shared, k, now).is_err() {
                        reset(l, &u.shared, now, &self.spec);
                    }
                }
                continue;
            }
            if !l.ready() && l.inflight.is_none() && line_free(l, now) {
                let (address, words) = &l.target.init[l.init_next];
                let (address, n) = (*address, words.len());
                let mut w = [0u16; MAX_WRITE_WORDS];
                w[..n].copy_from_slice(words);
                l.init_next += 1;
                if send(l, &u.shared, address, &w[..n], Sent::Init, now).is_err() {
                    reset(l, &u.shared, now, &self.spec);
                    continue;
                }
            }
            // The heartbeat of a device whose setpoint reverts: the last one again.
            if l.target.refresh_s > 0.0
                && l.pending.is_none()
                && now - l.sent_at >= l.target.refresh_s
                && u.shared.writable.load(Ordering::Acquire)
            {
                l.pending = l.last;
            }
            // A setpoint waiting goes before the watchdog.
            send_pending(l, &u.shared, &self.spec);
            if let Some(p) = l.target.watchdog {
                if now >= l.next_watchdog && l.inflight.is_none() && line_free(l, now) {
                    l.counter = l.counter.wrapping_add(1);
                    let w = [l.counter];
                    if send(l, &u.shared, p.address, &w, Sent::Watchdog, now).is_err() {
                        reset(l, &u.shared, now, &self.spec);
                        continue;
                    }
                    u.shared.watchdog_writes.fetch_add(1, Ordering::Relaxed);
                    l.next_watchdog = (l.next_watchdog + l.target.watchdog_period_s).max(now);
                }
            }
            // Python's poll last: only on a free line with no write of the loop's
            // waiting, so it delays a frame's setpoint by one transaction at most.
            let watchdog_due = l.target.watchdog.is_some() && now >= l.next_watchdog;
            if l.line.is_some()
                && l.inflight.is_none()
                && l.pending.is_none()
                && l.ready()
                && !watchdog_due
                && line_free(l, now)
                && u.shared.exchange.posted()
            {
                if let Some(line) = l.line.as_mut() {
                    if let Some((id, n)) = u.shared.exchange.take(&mut line.pdu) {
                        let mut adu = [0u8; MAX_ADU];
                        let len = rtu::adu(l.target.unit_id, &line.pdu[..n], &mut adu);
                        match len {
                            Some(len) if rtu::supported(line.pdu[0]) => {
                                if transmit(l, &u.shared, &adu[..len], 0, Sent::Python(id), now)
                                    .is_err()
                                {
                                    reset(l, &u.shared, now, &self.spec);
                                    continue;
                                }
                                u.shared.transactions.fetch_add(1, Ordering::Relaxed);
                            }
                            // The binding refuses these; never put on the line.
                            _ => {
                                u.shared.exchange.answer(id, Err(TxError::Timeout));
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The line has been quiet for t3.5 (always true of a TCP link).
fn line_free(l: &Link, now: f64) -> bool {
    l.line.as_ref().is_none_or(|line| now >= line.free_at)
}

/// The request in flight failed with `e`: Python's is told; a setpoint is sent again.
fn fail_inflight(l: &mut Link, shared: &UnitShared, e: TxError) {
    match l.inflight.take() {
        Some((_, _, Sent::Python(id))) => {
            if let Some(line) = l.line.as_mut() {
                if !shared.exchange.answer(id, Err(e)) {
                    line.undelivered = Some((id, Err(e)));
                }
            }
        }
        Some((_, _, Sent::Setpoint(_))) => l.last = None,
        _ => {}
    }
}

enum Handled {
    Config,
    Error(FrameError),
}

/// A frame: a data frame of the configured stream gives its measurement; configurations
/// are stored (and size the reused data frame).
fn handle_frame(
    buf: &[u8],
    spec: &LoopSpec,
    configs: &mut ConfigStore,
    cfg3: &mut Cfg3Assembler,
    frame: &mut DataFrame,
) -> Result<Option<Measurement>, Handled> {
    let h = c37118::check_frame(buf).map_err(Handled::Error)?;
    if h.frame_type == FrameType::Data {
        let Some(cfg) = configs.get(h.idcode) else {
            return Err(Handled::Error(
                FrameError::new(FrameErrorKind::NoConfig, "IDCODE", 4)
                    .with_found(u64::from(h.idcode)),
            ));
        };
        c37118::data::decode_checked(buf, &h, cfg, frame).map_err(Handled::Error)?;
        let Some(pmu) = frame.pmus.get(spec.pmu.pmu_index) else {
            return Err(Handled::Error(
                FrameError::new(FrameErrorKind::Mismatch, "NUM_PMU", 14)
                    .with_values(spec.pmu.pmu_index as u64 + 1, frame.pmus.len() as u64),
            ));
        };
        return Ok(Some(Measurement {
            t: frame.time(),
            idcode: h.idcode,
            freq: pmu.freq,
            dfreq: pmu.dfreq,
            stat: pmu.stat.0,
        }));
    }
    let config = match c37118::decode_checked(buf, &h, configs).map_err(Handled::Error)? {
        Frame::Config(c) => c,
        Frame::Cfg3Fragment(f) => match cfg3.push(f).map_err(Handled::Error)? {
            Some(c) => c,
            None => return Ok(None),
        },
        _ => return Ok(None),
    };
    if config.idcode == spec.pmu.idcode {
        *frame = DataFrame::with_capacity_for(&config);
    }
    configs.insert(config);
    Err(Handled::Config)
}

fn count_error(shared: &LoopShared, e: &FrameError) {
    shared.frame_errors[e.kind as usize].fetch_add(1, Ordering::Relaxed);
}

/// Step every unit with `m`; true when some unit admitted it.
fn step_units(units: &mut [UnitState], ring: &Ring<Record>, m: Measurement, now: f64) -> bool {
    let clock = Clock::now();
    let mut admitted = false;
    for (i, u) in units.iter_mut().enumerate() {
        let d = match lock(&u.pipeline).step(m, clock) {
            Ok(d) => *d,
            Err(_) => continue,
        };
        admitted = true;
        decided(u, i, ring, d, RecordKind::Frame, now);
    }
    admitted
}

/// A unit decided `d`: queue its setpoint (units the loop writes) and record it (every
/// decision: the controller publishes every n-th and raises events on changes).
fn decided(
    u: &mut UnitState,
    i: usize,
    ring: &Ring<Record>,
    d: Decision,
    kind: RecordKind,
    now: f64,
) {
    let mut written = false;
    if let Some(l) = u.link.as_mut() {
        if !u.shared.writable.load(Ordering::Acquire) {
            // Disabled, offline or not anchored: nothing is written, and the next
            // setpoint after it is written whatever it is.
            l.pending = None;
            l.last = None;
        } else {
            if u.shared.resync.swap(false, Ordering::AcqRel) {
                l.last = None;
            }
            let sp = d.setpoint_kw;
            let changed = l
                .last
                .is_none_or(|last| (sp - last).abs() > l.target.threshold_kw);
            if changed && sp.is_finite() {
                l.pending = Some(sp);
                l.last = Some(sp);
                written = true; // the flush right after the step sends it
            }
        }
    }
    ring.push(Record {
        unit: i as u16,
        kind,
        decision: d,
        received: now,
        written,
    });
}

/// Send the unit's pending setpoint if the link can take it; the send time if sent.
fn send_pending(l: &mut Link, shared: &UnitShared, spec: &LoopSpec) -> Option<f64> {
    let sp = l.pending?;
    l.stream.as_ref()?;
    if !l.ready() {
        return None; // the newest setpoint waits for the device's check and init
    }
    if l.inflight.is_some() {
        shared.coalesced.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    let now = monotonic_s();
    if !line_free(l, now) {
        return None; // the silence before a request: the loop comes back at `free_at`
    }
    l.pending = None;
    let Some((w, n)) = l.target.setpoint.encode(sp) else {
        shared.unencodable.fetch_add(1, Ordering::Relaxed);
        l.last = None;
        return None;
    };
    // The prefix's words, then the setpoint's, in one request (validated to fit).
    let p = l.target.prefix.len();
    let mut words = [0u16; MAX_WRITE_WORDS];
    words[..p].copy_from_slice(&l.target.prefix);
    words[p..p + n].copy_from_slice(&w[..n]);
    let address = l.target.setpoint.address - p as u16;
    l.sent_at = now;
    if send(l, shared, address, &words[..p + n], Sent::Setpoint(sp), now).is_err() {
        reset(l, shared, now, spec);
        return None;
    }
    shared.writes.fetch_add(1, Ordering::Relaxed);
    Some(now)
}

fn send(
    l: &mut Link,
    shared: &UnitShared,
    address: u16,
    words: &[u16],
    what: Sent,
    now: f64,
) -> Result<(), ()> {
    if l.line.is_some() {
        let mut adu = [0u8; MAX_ADU];
        let n = rtu::write_adu(l.target.unit_id, address, words, &mut adu);
        return transmit(l, shared, &adu[..n], 0, what, now);
    }
    let tid = l.next_tid;
    l.next_tid = l.next_tid.wrapping_add(1).max(1);
    let mut req = [0u8; MAX_REQUEST];
    let n = write_request(tid, l.target.unit_id, address, words, &mut req);
    transmit(l, shared, &req[..n], tid, what, now)
}

/// Read the target's `verify` run `k` (Modbus TCP: the only transport that has them).
fn send_read(l: &mut Link, shared: &UnitShared, k: usize, now: f64) -> Result<(), ()> {
    let (address, words) = &l.target.verify[k];
    let (address, count) = (*address, words.len() as u16);
    let tid = l.next_tid;
    l.next_tid = l.next_tid.wrapping_add(1).max(1);
    let mut req = [0u8; MAX_REQUEST];
    let n = read_request(tid, l.target.unit_id, address, count, &mut req);
    transmit(l, shared, &req[..n], tid, Sent::Verify(k), now)
}

/// Put one request on the link (transaction `tid` for TCP), which must have none in
/// flight.
fn transmit(
    l: &mut Link,
    shared: &UnitShared,
    bytes: &[u8],
    tid: u16,
    what: Sent,
    now: f64,
) -> Result<(), ()> {
    let Some(s) = l.stream.as_mut() else {
        return Err(());
    };
    // Every caller checks that nothing is in flight; a second request would break the
    // matching of the answer.
    debug_assert!(l.inflight.is_none());
    if l.inflight.is_some() {
        return Ok(());
    }
    if l.line.is_some() {
        l.rx_len = 0; // whatever came unasked is no answer to this request
    }
    // A request of at most 256 bytes into an empty socket or tty buffer goes whole or
    // not at all; anything else means the device stopped reading (or the serial adapter
    // went away): the link is reset.
    match s.write(bytes) {
        Ok(k) if k == bytes.len() => {
            l.inflight = Some((tid, now, what));
            if let Some(line) = l.line.as_mut() {
                line.function = bytes[1];
                // Not before the request is out and the line quiet again (the answer,
                // when it comes, moves this on).
                line.free_at = now + bytes.len() as f64 * line.char_s + line.silence_s;
            }
            Ok(())
        }
        _ => {
            shared.io_errors.fetch_add(1, Ordering::Relaxed);
            Err(())
        }
    }
}

fn read_replies(l: &mut Link, shared: &UnitShared, now: f64) -> Result<(), String> {
    let Some(s) = l.stream.as_mut() else {
        return Ok(());
    };
    loop {
        if l.rx_len == l.rx.len() {
            return Err("answer too long".into());
        }
        match s.read(&mut l.rx[l.rx_len..]) {
            Ok(0) => return Err("connection closed".into()),
            Ok(n) => l.rx_len += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                shared.io_errors.fetch_add(1, Ordering::Relaxed);
                return Err(e.to_string());
            }
        }
    }
    let mut at = 0;
    while let Some((used, reply)) = parse_reply(&l.rx[at..l.rx_len]) {
        let start = at;
        at += used;
        let tid = match reply {
            Reply::Ok(t) | Reply::Exception(t, _) | Reply::Registers(t, _) => t,
            Reply::Malformed => return Err("malformed answer".into()),
        };
        let Some((_, sent, what)) = l.inflight.take_if(|f| f.0 == tid) else {
            return Err(format!("answer to unknown transaction {tid}"));
        };
        match (what, reply) {
            (Sent::Verify(k), _) => {
                let data = &l.rx[start + 9..start + used];
                check_layout(&l.target, shared, k, reply, data)?;
                l.verify_next = k + 1;
                if l.verified() {
                    shared.verified.store(true, Ordering::Release);
                }
            }
            (_, Reply::Registers(..)) => return Err("registers in answer to a write".into()),
            _ => answered(l, shared, what, sent, now, matches!(reply, Reply::Ok(_))),
        }
    }
    l.rx.copy_within(at..l.rx_len, 0);
    l.rx_len -= at;
    Ok(())
}

/// The device answered the read of `verify` run `k` with `reply` (`data`: the
/// registers' bytes of a normal reply). Err: not the words the target expects (or an
/// exception): counted, and the connection is dropped without a write.
fn check_layout(
    target: &ModbusTarget,
    shared: &UnitShared,
    k: usize,
    reply: Reply,
    data: &[u8],
) -> Result<(), String> {
    let (address, expected) = &target.verify[k];
    let matched = matches!(reply, Reply::Registers(_, n) if usize::from(n) == expected.len())
        && data.len() == 2 * expected.len()
        && data
            .chunks_exact(2)
            .zip(expected)
            .all(|(b, w)| u16::from_be_bytes([b[0], b[1]]) == *w);
    if !matched {
        shared.layout_mismatches.fetch_add(1, Ordering::Relaxed);
        let got: Vec<u16> = match reply {
            Reply::Registers(..) => data
                .chunks_exact(2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .collect(),
            _ => Vec::new(),
        };
        return Err(match reply {
            Reply::Exception(_, code) => format!(
                "layout check: registers {address}+{} answered exception {code}; not written",
                expected.len()
            ),
            _ => format!(
                "layout check: registers {address}+{} hold {got:?}, expected {expected:?}; \
                 not written",
                expected.len()
            ),
        });
    }
    Ok(())
}

/// The device answered a write of the loop's: acknowledged (`ok`) or an exception.
fn answered(l: &mut Link, shared: &UnitShared, what: Sent, sent: f64, now: f64, ok: bool) {
    if ok {
        shared.acks.fetch_add(1, Ordering::Relaxed);
        if let Sent::Setpoint(kw) = what {
            shared.acked_kw.store(kw.to_bits(), Ordering::Relaxed);
            let ns = ((now - sent).max(0.0) * 1e9) as u64;
            shared.rtt_ns_sum.fetch_add(ns, Ordering::Relaxed);
        }
    } else {
        shared.exceptions.fetch_add(1, Ordering::Relaxed);
        if matches!(what, Sent::Setpoint(_)) {
            // Refused: the next decision is sent whatever it is.
            l.last = None;
        }
    }
}

/// Read what a serial line brought: the answer to the request in flight once its length
/// is there, judged by CRC, device id and function. Err: the line is gone (EOF on a hung
/// up tty, a read error such as EIO of an unplugged adapter): the link is reset.
fn read_line(l: &mut Link, shared: &UnitShared, now: f64) -> Result<(), String> {
    let Some(s) = l.stream.as_mut() else {
        return Ok(());
    };
    let mut got = false;
    loop {
        if l.rx_len == l.rx.len() {
            l.rx_len = 0; // noise on the line: nothing of ours is that long
        }
        match s.read(&mut l.rx[l.rx_len..]) {
            Ok(0) => return Err("serial line hung up".into()),
            Ok(n) => {
                l.rx_len += n;
                got = true;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                shared.io_errors.fetch_add(1, Ordering::Relaxed);
                return Err(e.to_string());
            }
        }
    }
    let Some(line) = l.line.as_mut() else {
        return Ok(());
    };
    if got {
        // Bytes on the line: it is busy until t3.5 after them.
        line.free_at = line.free_at.max(now + line.silence_s);
    }
    let Some((_, sent, what)) = l.inflight else {
        l.rx_len = 0; // a late answer after a timeout, or noise: dropped
        return Ok(());
    };
    let Some(len) = rtu::reply_len(line.function, &l.rx[..l.rx_len]) else {
        return Ok(());
    };
    let verdict = if len > MAX_ADU {
        RtuReply::Bad // a byte count no ADU can carry
    } else if l.rx_len < len {
        return Ok(()); // the rest is still on its way
    } else {
        rtu::check_reply(l.target.unit_id, line.function, &l.rx[..len])
    };
    l.inflight = None;
    if verdict != RtuReply::Bad && l.unanswered {
        l.unanswered = false;
        l.init_next = 0; // the device is back: it may have restarted
    }
    match (verdict, what) {
        (RtuReply::Bad, _) => {
            shared.bad_replies.fetch_add(1, Ordering::Relaxed);
            if let Some(Stream::Tty(f)) = &l.stream {
                serial::flush(f);
            }
            l.inflight = Some((0, sent, what));
            fail_inflight(l, shared, TxError::Timeout);
        }
        (_, Sent::Python(id)) => {
            let pdu = &l.rx[1..len - 2];
            if !shared.exchange.answer(id, Ok(pdu)) {
                line.answer[..pdu.len()].copy_from_slice(pdu);
                line.undelivered = Some((id, Ok(pdu.len())));
            }
        }
        (v, _) => answered(l, shared, what, sent, now, v == RtuReply::Ok),
    }
    // One request in flight: whatever follows its answer is noise.
    l.rx_len = 0;
    Ok(())
}

/// Drop the connection: what was unanswered is forgotten, the next setpoint is sent
/// whatever it is, and a new connection is made after the backoff.
fn reset(l: &mut Link, shared: &UnitShared, now: f64, spec: &LoopSpec) {
    fail_inflight(l, shared, TxError::Closed);
    l.stream = None;
    l.inflight = None;
    l.rx_len = 0;
    l.last = None;
    l.next_attempt = now + l.backoff;
    l.backoff = (l.backoff * 2.0).min(spec.backoff_max_s);
    shared.connected.store(false, Ordering::Release);
}
