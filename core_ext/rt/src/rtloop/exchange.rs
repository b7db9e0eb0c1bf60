//! Python's transactions on a serial line the loop owns: one request PDU at a time is
//! handed to the loop, which sends it when the line has no setpoint or watchdog write
//! to carry, and hands the reply PDU back.
//!
//! The loop never waits here: it only `try_lock`s the slot (a request it cannot take now
//! is taken on a later iteration; a reply it cannot post is kept and posted on a later
//! one), so no priority inheritance is needed either: whatever a Python thread does while
//! holding the slot (it holds it only to copy a PDU in or out, in a Rust call, with the
//! GIL released), the loop goes on. A Python caller waits on a condition variable the
//! loop signals after posting, with the slot's mutex, so no wake-up is lost. The
//! loop hears of a new request through an eventfd in its poll set (else it would only
//! look at its next timer, up to 10 ms later).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::rtu::MAX_PDU;

/// Why a transaction gave no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxError {
    /// No (valid) answer within the time: silence, or a reply with a bad CRC or from
    /// another device, which the serial line spec has the master treat as none.
    Timeout,
    /// The line is not open (being reopened), or the loop has ended.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    /// Waiting for the loop (transaction id, deadline).
    Queued(u64, Instant),
    /// Sent by the loop (transaction id).
    Sent(u64),
    /// Answered (transaction id).
    Done(u64, Result<usize, TxError>),
}

struct Slot {
    state: State,
    next_id: u64,
    pdu: [u8; MAX_PDU],
    len: usize,
}

/// One line's transaction slot (see the module docstring).
pub struct Exchange {
    slot: Mutex<Slot>,
    cv: Condvar,
    /// Serialises Python callers: one transaction at a time per line.
    callers: Mutex<()>,
    /// A request waits for the loop: what the loop looks at without locking.
    posted: AtomicBool,
    /// Written when a request is queued; in the loop's poll set (None: no eventfd).
    wake: Option<OwnedFd>,
}

impl Default for Exchange {
    fn default() -> Self {
        Self {
            slot: Mutex::new(Slot {
                state: State::Idle,
                next_id: 1,
                pdu: [0; MAX_PDU],
                len: 0,
            }),
            cv: Condvar::new(),
            callers: Mutex::new(()),
            posted: AtomicBool::new(false),
            wake: eventfd(),
        }
    }
}

fn eventfd() -> Option<OwnedFd> {
    // SAFETY: flags only; a descriptor >= 0 is ours to own.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    // SAFETY: fd was just created and is owned by nobody else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Exchange {
    /// Python's side: send `pdu` and wait up to `timeout` for the reply PDU, copied into
    /// `reply`; its length. `running` tells whether the loop still runs (looked at every
    /// 50 ms while waiting: a loop that ended answers nothing). Call with the GIL released.
    pub fn transact(
        &self,
        pdu: &[u8],
        timeout: Duration,
        running: &AtomicBool,
        reply: &mut [u8; MAX_PDU],
    ) -> Result<usize, TxError> {
        let _one = relock(&self.callers);
        let deadline = Instant::now() + timeout;
        let mut g = relock(&self.slot);
        let id = g.next_id;
        g.next_id += 1;
        let n = pdu.len().min(MAX_PDU);
        g.pdu[..n].copy_from_slice(&pdu[..n]);
        g.len = n;
        g.state = State::Queued(id, deadline);
        self.posted.store(true, Ordering::Release);
        if let Some(fd) = &self.wake {
            let one: u64 = 1;
            // SAFETY: 8 bytes from a live u64 to our eventfd; a full counter (EAGAIN)
            // still leaves it readable, which is all the loop needs.
            unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
        loop {
            if let State::Done(done, r) = g.state {
                if done == id {
                    g.state = State::Idle;
                    return r.inspect(|&n| reply[..n].copy_from_slice(&g.pdu[..n]));
                }
            }
            let now = Instant::now();
            let closed = !running.load(Ordering::Acquire);
            if now >= deadline || closed {
                // Given up: the loop drops a reply that comes later (the state is no
                // longer `Sent(id)`), and does not send a request still queued.
                g.state = State::Idle;
                self.posted.store(false, Ordering::Release);
                return Err(if closed {
                    TxError::Closed
                } else {
                    TxError::Timeout
                });
            }
            let wait = (deadline - now).min(Duration::from_millis(50));
            g = self
                .cv
                .wait_timeout(g, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The descriptor the loop polls to hear of a new request.
    pub fn wake_fd(&self) -> Option<RawFd> {
        self.wake.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// The loop's side: the wake-up was heard (reset the eventfd).
    pub fn clear_wake(&self) {
        if let Some(fd) = &self.wake {
            let mut n: u64 = 0;
            // SAFETY: 8 bytes into a live u64 from our non-blocking eventfd.
            unsafe { libc::read(fd.as_raw_fd(), (&mut n as *mut u64).cast(), 8) };
        }
    }

    /// The loop's side: a request waits (cheap, no lock).
    pub fn posted(&self) -> bool {
        self.posted.load(Ordering::Acquire)
    }

    /// The loop's side: take the queued request into `out` (its id and length), marking
    /// it sent; None when there is none, it is past its deadline, or the slot is busy.
    pub fn take(&self, out: &mut [u8; MAX_PDU]) -> Option<(u64, usize)> {
        let mut g = self.slot.try_lock().ok()?;
        let State::Queued(id, deadline) = g.state else {
            self.posted.store(false, Ordering::Release);
            return None;
        };
        self.posted.store(false, Ordering::Release);
        if Instant::now() >= deadline {
            return None; // its caller is giving up: sending it would only hold the line
        }
        let n = g.len;
        out[..n].copy_from_slice(&g.pdu[..n]);
        g.state = State::Sent(id);
        Some((id, n))
    }

    /// The loop's side: refuse the queued request (the line is closed). False when the
    /// slot was busy (try again later).
    pub fn refuse(&self) -> bool {
        let Ok(mut g) = self.slot.try_lock() else {
            return false;
        };
        self.posted.store(false, Ordering::Release);
        if let State::Queued(id, _) = g.state {
            g.state = State::Done(id, Err(TxError::Closed));
            self.cv.notify_all();
        }
        true
    }

    /// The loop's side: the answer to transaction `id` (a reply PDU, or why none).
    /// False when the slot was busy: the caller keeps the answer and posts it later.
    /// An answer nobody waits for any more is dropped (true).
    pub fn answer(&self, id: u64, r: Result<&[u8], TxError>) -> bool {
        let Ok(mut g) = self.slot.try_lock() else {
            return false;
        };
        if g.state == State::Sent(id) {
            let r = r.map(|pdu| {
                let n = pdu.len().min(MAX_PDU);
                g.pdu[..n].copy_from_slice(&pdu[..n]);
                n
            });
            g.state = State::Done(id, r);
            self.cv.notify_all();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_request_and_its_reply() {
        let ex = Arc::new(Exchange::default());
        let running = Arc::new(AtomicBool::new(true));
        let (e, r) = (Arc::clone(&ex), Arc::clone(&running));
        let caller = std::thread::spawn(move || {
            let mut out = [0u8; MAX_PDU];
            let n = e.transact(&[3, 0, 0, 0, 2], Duration::from_secs(5), &r, &mut out)?;
            Ok::<Vec<u8>, TxError>(out[..n].to_vec())
        });
        let mut buf = [0u8; MAX_PDU];
        let (id, n) = loop {
            if ex.posted() {
                if let Some(t) = ex.take(&mut buf) {
                    break t;
                }
            }
            std::thread::yield_now();
        };
        assert_eq!(&buf[..n], &[3, 0, 0, 0, 2]);
        assert!(!ex.posted());
        assert!(ex.answer(id, Ok(&[3, 4, 0, 1, 0, 2])));
        assert_eq!(caller.join().unwrap(), Ok(vec![3, 4, 0, 1, 0, 2]));
    }

    #[test]
    fn timeouts_and_closed_lines() {
        let ex = Exchange::default();
        let running = AtomicBool::new(true);
        let mut out = [0u8; MAX_PDU];
        let t = Duration::from_millis(20);
        assert_eq!(
            ex.transact(&[3, 0, 0, 0, 1], t, &running, &mut out),
            Err(TxError::Timeout)
        );
        // Given up: nothing is taken, and a late answer is dropped.
        assert_eq!(ex.take(&mut out), None);
        assert!(ex.answer(1, Ok(&[3, 2, 0, 0])));
        running.store(false, Ordering::Release);
        assert_eq!(
            ex.transact(&[3, 0, 0, 0, 1], t, &running, &mut out),
            Err(TxError::Closed)
        );
    }
}
