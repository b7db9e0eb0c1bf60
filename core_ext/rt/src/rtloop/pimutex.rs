//! A mutex with priority inheritance (PTHREAD_PRIO_INHERIT), for the pipelines the loop
//! shares with Python. While the SCHED_FIFO loop waits for a pipeline that a normal
//! thread holds (a Python call of a few microseconds), the holder runs at the loop's
//! priority, so a CPU hog cannot preempt it and hold the loop up: the textbook
//! cure for priority inversion. Not poisoned by a panic: every pipeline method leaves
//! the pipeline consistent, and the guard unlocks while unwinding.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};

pub struct PiMutex<T> {
    raw: Box<UnsafeCell<libc::pthread_mutex_t>>,
    data: UnsafeCell<T>,
}

// SAFETY: the data is reached only through a guard, which holds the pthread mutex.
unsafe impl<T: Send> Send for PiMutex<T> {}
unsafe impl<T: Send> Sync for PiMutex<T> {}

impl<T> PiMutex<T> {
    pub fn new(value: T) -> Self {
        // Boxed: a pthread mutex must not move once initialised.
        let raw = Box::new(UnsafeCell::new(libc::PTHREAD_MUTEX_INITIALIZER));
        // SAFETY: attr is initialised before use and destroyed after; the mutex lives in
        // its box, uninitialised users excluded (we own it).
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            if libc::pthread_mutexattr_init(&mut attr) == 0 {
                // Refused (a libc without PI): the mutex is a plain one, still correct.
                libc::pthread_mutexattr_setprotocol(&mut attr, libc::PTHREAD_PRIO_INHERIT);
                libc::pthread_mutex_init(raw.get(), &attr);
                libc::pthread_mutexattr_destroy(&mut attr);
            }
        }
        Self {
            raw,
            data: UnsafeCell::new(value),
        }
    }

    pub fn lock(&self) -> PiGuard<'_, T> {
        // SAFETY: the mutex was initialised in `new` and is never moved.
        let rc = unsafe { libc::pthread_mutex_lock(self.raw.get()) };
        assert_eq!(rc, 0, "pthread_mutex_lock failed: {rc}");
        PiGuard { m: self }
    }
}

impl<T> Drop for PiMutex<T> {
    fn drop(&mut self) {
        // SAFETY: no guard can be alive (they borrow self).
        unsafe { libc::pthread_mutex_destroy(self.raw.get()) };
    }
}

pub struct PiGuard<'a, T> {
    m: &'a PiMutex<T>,
}

impl<T> Deref for PiGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.m.data.get() }
    }
}

impl<T> DerefMut for PiGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock, and is borrowed mutably.
        unsafe { &mut *self.m.data.get() }
    }
}

impl<T> Drop for PiGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: this thread holds the lock.
        unsafe { libc::pthread_mutex_unlock(self.m.raw.get()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn excludes() {
        let m = Arc::new(PiMutex::new(0u64));
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let m = Arc::clone(&m);
                std::thread::spawn(move || {
                    for _ in 0..50_000 {
                        *m.lock() += 1;
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*m.lock(), 200_000);
    }
}
