//! The node's clocks: the wall clock, for the expiry times a leader stamps into new entries, and a
//! monotonic clock that also counts time the machine spent suspended, for read leases.

use std::time::{SystemTime, UNIX_EPOCH};

/// The system's clocks as the node sees them.
///
/// - `now_ms`: milliseconds since the Unix epoch. Only the leader's reading is used, stamped into new
///   entries (expiry), so replicas never read their own clocks.
/// - `monotonic_nanos`: nanoseconds since this clock was made, on Linux from `CLOCK_BOOTTIME`. A lease
///   (dissertation §6.4.1) must not outlive the followers' election timeouts in real time; Rust's
///   `Instant` (`CLOCK_MONOTONIC`) stops while the machine is suspended, so a leader resumed from
///   suspend would think its lease still ran. `CLOCK_BOOTTIME` keeps counting through a suspend, so the
///   lease has run out when the leader wakes. (A follower's ticks also stop during its suspend, which only
///   makes it keep its promise longer.) Elsewhere `Instant` is the best on offer.
pub struct SystemClock {
    origin_nanos: u64,
    #[cfg(not(target_os = "linux"))]
    started: std::time::Instant,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        SystemClock {
            origin_nanos: raw_monotonic_nanos(),
            #[cfg(not(target_os = "linux"))]
            started: std::time::Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> SystemClock {
        SystemClock::new()
    }
}

impl node::Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
    }

    #[cfg(target_os = "linux")]
    fn monotonic_nanos(&self) -> u64 {
        raw_monotonic_nanos().saturating_sub(self.origin_nanos)
    }

    #[cfg(not(target_os = "linux"))]
    fn monotonic_nanos(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// `CLOCK_BOOTTIME` in nanoseconds (Linux): monotonic, and counting time spent suspended.
#[cfg(target_os = "linux")]
fn raw_monotonic_nanos() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid, writable timespec; CLOCK_BOOTTIME exists on every Linux since 2.6.39.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now) };
    assert_eq!(result, 0, "clock_gettime(CLOCK_BOOTTIME) failed: {}", std::io::Error::last_os_error());
    (now.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(now.tv_nsec as u64)
}

#[cfg(not(target_os = "linux"))]
fn raw_monotonic_nanos() -> u64 {
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use node::Clock;

    #[test]
    fn the_monotonic_clock_starts_near_zero_and_never_goes_back() {
        let clock = SystemClock::new();
        let mut last = clock.monotonic_nanos();
        assert!(last < 1_000_000_000, "a new clock starts near 0, read {last} ns");
        for _ in 0..1_000 {
            let now = clock.monotonic_nanos();
            assert!(now >= last, "went back from {last} to {now}");
            last = now;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(clock.monotonic_nanos() >= last + 5_000_000, "5 ms of sleep shows on the clock");
    }
}
