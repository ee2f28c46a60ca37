//! Raft's clock in the node: how many ticks the driver owes the core.
//!
//! Ticks are counted from elapsed real time, not from timer wake-ups. A
//! timer that fires late (a long fsync, a loaded machine, SIGSTOP, a
//! suspended VM) would otherwise make the core count fewer ticks than have
//! passed, and a leader that under-counts keeps its lease too long (see
//! `triton_raft::Config::lease_read`). Here the ticks missed in a stall
//! fall due at once, and the driver delivers every due tick before it
//! feeds the core a message or a request, so the core's count lags real
//! time by less than one tick whenever it decides anything.
//!
//! The clock is `CLOCK_BOOTTIME`: unlike `CLOCK_MONOTONIC` (behind
//! `std::time::Instant`), it keeps counting while the machine sleeps.

use std::time::Duration;

/// Counts ticks due since it started and hands each out once.
#[derive(Debug)]
pub struct TickClock {
    origin: Duration,
    tick: Duration,
    delivered: u64,
}

impl TickClock {
    /// A clock whose first tick falls due one `tick` from now.
    pub fn start(tick: Duration) -> Self {
        Self::start_at(boottime(), tick)
    }

    fn start_at(origin: Duration, tick: Duration) -> Self {
        assert!(!tick.is_zero(), "a tick must have a length");
        TickClock {
            origin,
            tick,
            delivered: 0,
        }
    }

    /// Ticks delivered so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// The ticks due now and not handed out yet; they count as delivered.
    pub fn take_due(&mut self) -> u64 {
        self.take_due_at(boottime())
    }

    fn take_due_at(&mut self, now: Duration) -> u64 {
        let elapsed = now.saturating_sub(self.origin);
        let due = (elapsed.as_nanos() / self.tick.as_nanos()) as u64;
        let owed = due.saturating_sub(self.delivered);
        self.delivered = self.delivered.max(due);
        owed
    }

    /// How long until the next tick falls due (zero if one is due now).
    pub fn until_next(&self) -> Duration {
        self.until_next_at(boottime())
    }

    fn until_next_at(&self, now: Duration) -> Duration {
        let next = self.origin.as_nanos() + self.tick.as_nanos() * u128::from(self.delivered + 1);
        let wait = next.saturating_sub(now.as_nanos());
        Duration::from_nanos(u64::try_from(wait).unwrap_or(u64::MAX))
    }
}

/// Time since boot, counting suspended time.
fn boottime() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_BOOTTIME exists on
    // every Linux since 2.6.39.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_BOOTTIME) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(50);

    #[test]
    fn ticks_fall_due_one_tick_length_apart_and_are_handed_out_once() {
        let t0 = Duration::from_secs(100);
        let mut c = TickClock::start_at(t0, TICK);
        assert_eq!(c.take_due_at(t0 + Duration::from_millis(49)), 0);
        assert_eq!(
            c.until_next_at(t0 + Duration::from_millis(49)),
            Duration::from_millis(1)
        );
        assert_eq!(c.take_due_at(t0 + Duration::from_millis(50)), 1);
        assert_eq!(c.take_due_at(t0 + Duration::from_millis(99)), 0);
        assert_eq!(
            c.until_next_at(t0 + Duration::from_millis(99)),
            Duration::from_millis(1)
        );
        assert_eq!(c.delivered(), 1);
    }

    /// A stall does not lose ticks: they all fall due when it ends, so the
    /// count never lags real time by a tick or more after `take_due`.
    #[test]
    fn ticks_missed_in_a_stall_fall_due_at_once() {
        let t0 = Duration::from_secs(7);
        let mut c = TickClock::start_at(t0, TICK);
        assert_eq!(c.take_due_at(t0 + Duration::from_millis(60)), 1);
        let after_stall = t0 + Duration::from_millis(2_030);
        assert_eq!(c.take_due_at(after_stall), 39);
        assert_eq!(c.delivered(), 40);
        assert_eq!(c.until_next_at(after_stall), Duration::from_millis(20));
        assert_eq!(c.until_next_at(after_stall + Duration::from_secs(1)), Duration::ZERO);
    }

    #[test]
    fn a_clock_that_steps_back_owes_nothing() {
        let t0 = Duration::from_secs(7);
        let mut c = TickClock::start_at(t0, TICK);
        assert_eq!(c.take_due_at(t0 + Duration::from_millis(500)), 10);
        assert_eq!(c.take_due_at(t0 + Duration::from_millis(100)), 0);
        assert_eq!(c.take_due_at(t0 - Duration::from_secs(1)), 0);
        assert_eq!(c.delivered(), 10);
    }

    #[test]
    fn the_real_clock_moves_forward() {
        let a = boottime();
        std::thread::sleep(Duration::from_millis(2));
        assert!(boottime() > a);
    }
}
