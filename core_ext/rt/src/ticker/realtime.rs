//! Optional real-time privileges for the ticker thread: `SCHED_FIFO` and `mlockall`.
//! Each may be refused (non-root, containers); everything works without them.

use std::io;

use crate::error::ConfigError;

/// What [`try_realtime`] obtained. Each field is `Ok(())` when granted, or the OS error.
#[derive(Debug)]
pub struct RealtimeStatus {
    /// `SCHED_FIFO` at `priority` for the calling thread.
    pub sched_fifo: Result<(), io::Error>,
    /// `mlockall(MCL_CURRENT | MCL_FUTURE)` for the whole process.
    pub mlockall: Result<(), io::Error>,
    /// The priority asked for.
    pub priority: i32,
}

/// Effective capability bit of the process (from /proc/self/status), false if unknown.
fn has_capability(bit: u32) -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << bit) != 0)
}

const CAP_IPC_LOCK: u32 = 14;

/// Ask for `SCHED_FIFO` at `priority` (1..=99 on Linux) for the calling thread only.
/// Refused without `CAP_SYS_NICE` or a sufficient `RLIMIT_RTPRIO`.
pub fn try_sched_fifo(priority: i32) -> Result<io::Result<()>, ConfigError> {
    // SAFETY: plain queries of constants.
    let (lo, hi) = unsafe {
        (
            libc::sched_get_priority_min(libc::SCHED_FIFO),
            libc::sched_get_priority_max(libc::SCHED_FIFO),
        )
    };
    if !(lo..=hi).contains(&priority) {
        return Err(ConfigError::new(
            "priority",
            format!("{priority} is outside the SCHED_FIFO range {lo}..={hi}"),
        ));
    }
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: `param` is valid; pthread_self() is the calling thread.
    let rc = unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
    Ok(if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    })
}

/// Lock all current and future pages of the process in RAM.
///
/// Attempted only when `RLIMIT_MEMLOCK` is unlimited or the process holds `CAP_IPC_LOCK`:
/// under a finite limit, `MCL_FUTURE` makes every later allocation beyond the limit fail,
/// which would turn a latency nicety into out-of-memory errors.
pub fn try_mlockall() -> io::Result<()> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    let unlimited = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } == 0
        && lim.rlim_cur == libc::RLIM_INFINITY;
    if !unlimited && !has_capability(CAP_IPC_LOCK) {
        return Err(io::Error::other(format!(
            "not attempted: RLIMIT_MEMLOCK is {} bytes and CAP_IPC_LOCK is missing",
            lim.rlim_cur
        )));
    }
    // SAFETY: mlockall has no memory-safety preconditions.
    if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Ask for `SCHED_FIFO` at `priority` for the calling thread and lock the process's
/// memory ([`try_sched_fifo`], [`try_mlockall`]). Either may be refused (non-root,
/// containers); the ticker works without them, only with more jitter. Errors only for a
/// priority outside the `SCHED_FIFO` range.
pub fn try_realtime(priority: i32) -> Result<RealtimeStatus, ConfigError> {
    let sched_fifo = try_sched_fifo(priority)?;
    Ok(RealtimeStatus {
        sched_fifo,
        mlockall: try_mlockall(),
        priority,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sched_fifo_answers_without_failing() {
        assert_eq!(try_sched_fifo(0).unwrap_err().field, "priority");
        assert!(try_realtime(100).is_err());
        // Granted or not depends on the host; it must answer either way. A throwaway
        // thread keeps SCHED_FIFO out of the test harness (mlockall is not tried here: it
        // would lock the whole test process).
        let granted = std::thread::spawn(|| try_sched_fifo(1).unwrap())
            .join()
            .unwrap();
        if let Err(e) = granted {
            assert!(e.raw_os_error().is_some(), "{e}");
        }
    }
}
