//! Real-time settings of the loop's thread, where the system allows them: SCHED_FIFO at a
//! priority, and the process's current memory locked. Each returns whether it was granted
//! (an unprivileged process is refused both; the loop then runs as a normal thread).

/// Put the calling thread under SCHED_FIFO at `priority` (1-99). False if refused.
pub fn set_fifo(priority: i32) -> bool {
    if priority <= 0 {
        return false;
    }
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: pthread_self() is the calling thread; param is a valid sched_param.
    unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) == 0 }
}

/// Whether the calling thread runs under SCHED_FIFO now.
pub fn is_fifo() -> bool {
    // SAFETY: sched_getscheduler(0) asks about the calling thread; no memory involved.
    unsafe { libc::sched_getscheduler(0) == libc::SCHED_FIFO }
}

/// Linux's MCL_ONFAULT (since 4.4; the same value on every architecture).
const MCL_ONFAULT: libc::c_int = 4;

/// Lock the process's memory where it is resident, and each page as it is touched
/// (mlockall MCL_CURRENT | MCL_ONFAULT): the code and data the loop runs on are never
/// paged out, and nothing is faulted in only to be locked (plain MCL_CURRENT doubled a
/// field controller's RSS, 55 -> 104 MB). MCL_FUTURE is not asked: the Python heap
/// grows, and an allocation must never fail because of a lock limit. False if refused
/// (or on a kernel without MCL_ONFAULT).
pub fn lock_memory() -> bool {
    // SAFETY: mlockall takes flags only.
    unsafe { libc::mlockall(libc::MCL_CURRENT | MCL_ONFAULT) == 0 }
}
