//! Guest time: the host's monotonic clock, or (deterministic mode, `emu` only) a clock
//! derived from the instructions vCPU 0 has retired.
//!
//! Deterministic mode: one retired instruction of vCPU 0 is [`NS_PER_INSTRUCTION`] guest
//! nanosecond(s), plus the time HLT skipped (a halted vCPU 0 jumps to the next timer
//! deadline instead of waiting for the host). Nothing reads a host clock, so the same
//! image and config run the same instruction stream every time. The wall clock the RTC
//! starts from is [`DETERMINISTIC_WALL_CLOCK_BASE_NS`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Guest ns per retired instruction of vCPU 0 in deterministic mode: a 1 GHz,
/// one-instruction-per-cycle machine, so the 1 GHz TSC and APIC timer advance exactly
/// one tick per instruction.
pub const NS_PER_INSTRUCTION: u64 = 1;

/// The RTC's wall clock at guest time 0 in deterministic mode: 2026-01-01 00:00:00 UTC.
pub const DETERMINISTIC_WALL_CLOCK_BASE_NS: u64 = 1_767_225_600 * 1_000_000_000;

/// The guest's clock.
#[derive(Debug)]
pub struct GuestClock {
    mode: Mode,
    /// Deterministic mode: HLT-skipped ns.
    skipped: AtomicU64,
    /// Deterministic mode: the latest guest time observed (monotonic).
    now: AtomicU64,
}

#[derive(Debug)]
enum Mode {
    Host { start: Instant, wall_base_ns: u64 },
    Deterministic,
}

impl GuestClock {
    /// Host time: guest ns = host ns since now; wall clock = the host's.
    pub fn host() -> GuestClock {
        let wall_base_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        GuestClock {
            mode: Mode::Host {
                start: Instant::now(),
                wall_base_ns,
            },
            skipped: AtomicU64::new(0),
            now: AtomicU64::new(0),
        }
    }

    /// Instruction-count time (see the module doc).
    pub fn deterministic() -> GuestClock {
        GuestClock {
            mode: Mode::Deterministic,
            skipped: AtomicU64::new(0),
            now: AtomicU64::new(0),
        }
    }

    pub fn is_deterministic(&self) -> bool {
        matches!(self.mode, Mode::Deterministic)
    }

    /// Guest ns now: host time, or the latest time vCPU 0 reported.
    pub fn now_ns(&self) -> u64 {
        match &self.mode {
            Mode::Host { start, .. } => start.elapsed().as_nanos() as u64,
            Mode::Deterministic => self.now.load(Ordering::SeqCst),
        }
    }

    /// Wall-clock ns since the Unix epoch at guest time 0.
    pub fn wall_clock_base_ns(&self) -> u64 {
        match &self.mode {
            Mode::Host { wall_base_ns, .. } => *wall_base_ns,
            Mode::Deterministic => DETERMINISTIC_WALL_CLOCK_BASE_NS,
        }
    }

    /// vCPU 0 has retired `retired` instructions: advance the deterministic clock and
    /// return guest ns. In host mode, host time (the count is ignored).
    pub fn observe(&self, retired: u64) -> u64 {
        match &self.mode {
            Mode::Host { .. } => self.now_ns(),
            Mode::Deterministic => {
                let t = retired
                    .saturating_mul(NS_PER_INSTRUCTION)
                    .saturating_add(self.skipped.load(Ordering::SeqCst));
                // Never backwards (a stale count from a racing reader must not rewind).
                self.now.fetch_max(t, Ordering::SeqCst).max(t)
            }
        }
    }

    /// Deterministic mode: vCPU 0 halted at `retired` instructions; jump guest time to
    /// `deadline_ns` (no-op if it is not in the future, or in host mode).
    pub fn skip_to(&self, retired: u64, deadline_ns: u64) {
        if !self.is_deterministic() {
            return;
        }
        let now = self.observe(retired);
        if deadline_ns > now {
            self.skipped.fetch_add(deadline_ns - now, Ordering::SeqCst);
            self.observe(retired);
        }
    }

    /// Deterministic mode: instructions vCPU 0 may retire before guest time reaches
    /// `deadline_ns` (at least 1). `None` in host mode.
    pub fn instructions_until(&self, retired: u64, deadline_ns: u64) -> Option<u64> {
        if !self.is_deterministic() {
            return None;
        }
        let now = self.observe(retired);
        Some((deadline_ns.saturating_sub(now) / NS_PER_INSTRUCTION).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_clock_counts_instructions_and_skips() {
        let c = GuestClock::deterministic();
        assert!(c.is_deterministic());
        assert_eq!(c.now_ns(), 0);
        assert_eq!(c.observe(1000), 1000 * NS_PER_INSTRUCTION);
        assert_eq!(c.now_ns(), 1000);
        // Monotonic: an older count does not rewind.
        assert_eq!(c.observe(10), 1000);
        assert_eq!(c.instructions_until(1000, 1500), Some(500));
        assert_eq!(c.instructions_until(1000, 900), Some(1));
        // HLT at 1000 instructions with a deadline at 1 ms: time jumps, the count doesn't.
        c.skip_to(1000, 1_000_000);
        assert_eq!(c.now_ns(), 1_000_000);
        assert_eq!(c.observe(1001), 1_000_001);
        c.skip_to(1001, 5); // in the past: nothing
        assert_eq!(c.observe(1001), 1_000_001);
        assert_eq!(c.wall_clock_base_ns(), DETERMINISTIC_WALL_CLOCK_BASE_NS);
        // 2026-01-01 is 20454 days after the epoch.
        assert_eq!(
            DETERMINISTIC_WALL_CLOCK_BASE_NS / 86_400_000_000_000,
            20_454
        );
    }

    #[test]
    fn host_clock_ignores_counts() {
        let c = GuestClock::host();
        assert!(!c.is_deterministic());
        let a = c.observe(u64::MAX);
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(c.now_ns() >= a + 1_000_000);
        assert_eq!(c.instructions_until(0, u64::MAX), None);
        c.skip_to(0, u64::MAX);
        assert!(c.now_ns() < 60_000_000_000);
        assert!(c.wall_clock_base_ns() > DETERMINISTIC_WALL_CLOCK_BASE_NS / 2);
    }
}
