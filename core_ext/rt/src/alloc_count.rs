//! A global allocator wrapper that counts allocations, so tests and benchmarks can prove
//! that the per-frame path allocates nothing.
//!
//! Install it with `#[global_allocator] static A: CountingAllocator = CountingAllocator;`
//! in a test binary or in the Python extension. The counter is one relaxed atomic add per
//! allocation, which is negligible next to the allocation itself.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    // `const`-initialised and without a destructor: reading it never allocates, so it is
    // safe to use inside the allocator itself.
    static THREAD_ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

#[inline]
fn count() {
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    // try_with: during thread teardown the slot may be gone; the global count still counts.
    let _ = THREAD_ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

/// The system allocator, counting every allocation and reallocation.
pub struct CountingAllocator;

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

/// Allocations (including reallocations) made so far by this process through the
/// counting allocator; 0 forever if it is not installed.
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Allocations made so far by the calling thread (what a test of one code path wants:
/// other threads, such as a test harness's, do not disturb it).
pub fn thread_allocations() -> u64 {
    THREAD_ALLOCATIONS.with(Cell::get)
}
