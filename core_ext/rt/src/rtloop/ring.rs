//! A bounded single-producer single-consumer ring of `Copy` records: the loop pushes
//! (never waits: a full ring drops the record and counts it), Python drains.
//!
//! Lock-free: the producer owns `tail`, the consumer owns `head`; each publishes its
//! index with Release and reads the other's with Acquire, so a slot is written before
//! the consumer can see it and read before the producer can reuse it.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

pub struct Ring<T: Copy> {
    slots: Box<[UnsafeCell<T>]>,
    head: AtomicUsize,
    tail: AtomicUsize,
    dropped: AtomicU64,
}

// SAFETY: a slot is only written by the one producer while it is outside [head, tail)
// and only read by the one consumer while inside; the atomics order the hand-over.
// The single-producer / single-consumer use is the caller's contract (`push` from the
// loop thread only; `drain` from one consumer at a time, which the binding serialises).
unsafe impl<T: Copy + Send> Sync for Ring<T> {}
unsafe impl<T: Copy + Send> Send for Ring<T> {}

impl<T: Copy> Ring<T> {
    /// A ring of `capacity` records (at least 2), every slot set to `fill`.
    pub fn new(capacity: usize, fill: T) -> Self {
        let n = capacity.max(2);
        Self {
            slots: (0..n).map(|_| UnsafeCell::new(fill)).collect(),
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len() - 1
    }

    /// Records pushed but not drained yet.
    pub fn len(&self) -> usize {
        let (h, t) = (
            self.head.load(Ordering::Acquire),
            self.tail.load(Ordering::Acquire),
        );
        (t + self.slots.len() - h) % self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records dropped because the ring was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Producer side: append `v`, or drop it (counted) when the ring is full. Returns
    /// whether it was kept.
    pub fn push(&self, v: T) -> bool {
        let t = self.tail.load(Ordering::Relaxed);
        let next = (t + 1) % self.slots.len();
        if next == self.head.load(Ordering::Acquire) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        // SAFETY: slot `t` is outside [head, tail): the consumer does not read it.
        unsafe { *self.slots[t].get() = v };
        self.tail.store(next, Ordering::Release);
        true
    }

    /// Consumer side: every record pushed so far, oldest first, to `f`.
    pub fn drain(&self, mut f: impl FnMut(T)) -> usize {
        let mut h = self.head.load(Ordering::Relaxed);
        let t = self.tail.load(Ordering::Acquire);
        let mut n = 0;
        while h != t {
            // SAFETY: slot `h` is inside [head, tail): the producer does not write it.
            f(unsafe { *self.slots[h].get() });
            h = (h + 1) % self.slots.len();
            n += 1;
        }
        self.head.store(h, Ordering::Release);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn keeps_order_and_drops_when_full() {
        let r = Ring::new(4, 0u32);
        assert_eq!(r.capacity(), 3);
        for i in 0..5 {
            r.push(i);
        }
        assert_eq!(r.dropped(), 2);
        let mut got = vec![];
        r.drain(|v| got.push(v));
        assert_eq!(got, [0, 1, 2]);
        assert!(r.is_empty());
        r.push(9);
        r.drain(|v| got.push(v));
        assert_eq!(got, [0, 1, 2, 9]);
    }

    #[test]
    fn two_threads_lose_nothing_they_keep() {
        let r = Arc::new(Ring::new(64, 0u64));
        let p = Arc::clone(&r);
        let producer = std::thread::spawn(move || {
            let mut kept = 0u64;
            for i in 0..200_000u64 {
                if p.push(i) {
                    kept += 1;
                }
            }
            kept
        });
        let mut got = Vec::new();
        while !producer.is_finished() || !r.is_empty() {
            r.drain(|v| got.push(v));
        }
        let kept = producer.join().unwrap();
        assert_eq!(got.len() as u64, kept);
        assert_eq!(kept + r.dropped(), 200_000);
        assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order");
    }
}
