//! MC146818A real-time clock and 128-byte CMOS RAM (ports 0x70 index, 0x71 data).
//!
//! Follows the Motorola MC146818A / Dallas DS12887 data sheets: time and alarm
//! registers 0x00-0x09, control registers A-D (0x0a-0x0d), century at 0x32 (the byte
//! the ACPI FADT `CENTURY` field names), the rest plain battery-backed RAM holding the
//! PC BIOS conventions (memory sizes at 0x15-0x18/0x30-0x35/0x5b-0x5d, CPU count at
//! 0x5f, checksum 0x2e/0x2f over 0x10-0x2d).
//!
//! The clock is not a ticking counter: the guest's RTC time is platform wall-clock
//! base + platform time + `offset_ns`, and a guest write of the time only changes the
//! offset. Interrupt flags (PF, UF, AF) are computed lazily from the time elapsed since
//! they were last evaluated, so nothing runs while interrupts are disabled; timers are
//! armed only when an enabled interrupt must fire on time, and the IRQ is a level that
//! follows IRQF (raised when it sets, lowered by reading register C).
//!
//! Divider semantics (data sheet, register A DV2-0): 010 runs the 32.768 kHz time base;
//! 11x holds the divider chain in reset, stopping updates and periodic interrupts; when
//! the reset is released the first update follows 500 ms later (what Linux's
//! `mc146818_set_time` relies on). As in QEMU, DV values 000/001 also count as running.
//! The day of week is derived from the date, as Xen's and QEMU's RTCs do (a written
//! weekday is not kept as an independent counter); daylight-saving (DSE) is stored but
//! has no effect, as in both.

use crate::{Platform, PortIo, TimerId, Width, snapshot::*};

/// Register indexes.
pub const REG_SECONDS: u8 = 0x00;
pub const REG_SECONDS_ALARM: u8 = 0x01;
pub const REG_MINUTES: u8 = 0x02;
pub const REG_MINUTES_ALARM: u8 = 0x03;
pub const REG_HOURS: u8 = 0x04;
pub const REG_HOURS_ALARM: u8 = 0x05;
pub const REG_DAY_OF_WEEK: u8 = 0x06;
pub const REG_DAY_OF_MONTH: u8 = 0x07;
pub const REG_MONTH: u8 = 0x08;
pub const REG_YEAR: u8 = 0x09;
pub const REG_A: u8 = 0x0a;
pub const REG_B: u8 = 0x0b;
pub const REG_C: u8 = 0x0c;
pub const REG_D: u8 = 0x0d;
pub const REG_CENTURY: u8 = 0x32;

/// Register A: update in progress (read-only).
pub const A_UIP: u8 = 0x80;
/// Register A: divider select bits.
pub const A_DV_MASK: u8 = 0x70;
/// Register A: rate select bits.
pub const A_RS_MASK: u8 = 0x0f;

pub const B_SET: u8 = 0x80;
pub const B_PIE: u8 = 0x40;
pub const B_AIE: u8 = 0x20;
pub const B_UIE: u8 = 0x10;
pub const B_SQWE: u8 = 0x08;
pub const B_DM_BINARY: u8 = 0x04;
pub const B_24H: u8 = 0x02;
pub const B_DSE: u8 = 0x01;

pub const C_IRQF: u8 = 0x80;
pub const C_PF: u8 = 0x40;
pub const C_AF: u8 = 0x20;
pub const C_UF: u8 = 0x10;

/// Register D: valid RAM and time (battery good).
pub const D_VRT: u8 = 0x80;

const NS_PER_SEC: i128 = 1_000_000_000;
/// UIP is set for this long before each update (data sheet t_BUC).
const UIP_WINDOW_NS: i128 = 244_000;
/// First update after the divider leaves reset comes this long later.
const DIVIDER_RESTART_PHASE_NS: i128 = 500_000_000;
/// The time base the divider chain counts.
const TIMEBASE_HZ: i128 = 32_768;
const SECS_PER_DAY: i128 = 86_400;
/// Largest RTC offset a state record may carry: larger than any time the registers can
/// express (century and year bytes decode to at most 16,665 years) plus the platform
/// clock, small enough that no arithmetic on it can overflow an i128.
const MAX_OFFSET_NS: i128 = 1_000_000_000_000_000_000_000;

/// Broken-down RTC time (binary values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tm {
    year: i64,
    /// 1..=12
    month: u32,
    /// 1..=31
    mday: u32,
    hour: u32,
    min: u32,
    sec: u32,
    /// 1 = Sunday .. 7 = Saturday (PC convention)
    wday: u32,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (any month/day, normalized).
fn days_from_civil(year: i64, month0: i64, mday: i64) -> i64 {
    // Normalize months into the year.
    let y = year + month0.div_euclid(12);
    let m = month0.rem_euclid(12) + 1; // 1..=12
    // Shift the year to start in March so the leap day is last.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400); // 0..=399
    let mp = (m + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5; // day of year of the 1st of the month
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // 0..=146096
    era * 146_097 + doe - 719_468 + (mday - 1)
}

/// Date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let mday = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    (year, month, mday)
}

impl Tm {
    fn from_secs(secs: i128) -> Tm {
        let days = secs.div_euclid(SECS_PER_DAY) as i64;
        let tod = secs.rem_euclid(SECS_PER_DAY) as u32;
        let (year, month, mday) = civil_from_days(days);
        // 1970-01-01 was a Thursday (5 in the 1 = Sunday numbering).
        let wday = ((days + 4).rem_euclid(7) + 1) as u32;
        Tm {
            year,
            month,
            mday,
            hour: tod / 3600,
            min: tod / 60 % 60,
            sec: tod % 60,
            wday,
        }
    }
}

fn to_bcd(v: u32) -> u8 {
    let v = v % 100;
    (((v / 10) << 4) | (v % 10)) as u8
}

fn from_bcd(b: u8) -> u32 {
    (b >> 4) as u32 * 10 + (b & 0x0f) as u32
}

/// Ceiling division for a positive divisor.
fn div_ceil_i128(a: i128, d: i128) -> i128 {
    -((-a).div_euclid(d))
}

/// First second-of-day strictly after `tod0` (0..86400) matching the alarm, as a delta
/// in seconds (1..=86400). `None` fields are don't-care; values must be in range.
fn next_alarm_delta(tod0: u32, h: Option<u32>, m: Option<u32>, s: Option<u32>) -> u32 {
    let (h0, m0, s0) = (tod0 / 3600, tod0 / 60 % 60, tod0 % 60);
    for dh in 0..=24u32 {
        let hh = (h0 + dh) % 24;
        if h.is_some_and(|x| x != hh) {
            continue;
        }
        let same_hour = dh == 0;
        let first_min = if same_hour { m0 } else { 0 };
        for mm in first_min..60 {
            if m.is_some_and(|x| x != mm) {
                continue;
            }
            let lb = if same_hour && mm == m0 { s0 + 1 } else { 0 };
            let ss = match s {
                Some(x) if x >= lb => x,
                Some(_) => continue,
                None if lb <= 59 => lb,
                None => continue,
            };
            return dh * 3600 + mm * 60 + ss - (m0 * 60 + s0);
        }
    }
    86_400
}

#[derive(Clone, Debug)]
pub struct Mc146818 {
    irq: u8,
    /// The register file. Time registers hold the frozen time while the clock is
    /// stopped (SET or divider reset); while it runs they are computed from the offset.
    /// Register A is stored without UIP; register D is constant.
    cmos: [u8; 128],
    /// Index latched at port 0x70 (bit 7 masked off).
    index: u8,
    /// Bit 7 of the last index write (NMI disable on a PC).
    nmi_disabled: bool,
    /// RTC time in ns since 1970 = wall_clock_base_ns + now_ns + offset_ns.
    offset_ns: i128,
    /// Platform time up to which PF/UF/AF have been accounted into register C.
    last_eval_ns: u64,
    /// Level currently driven on `irq`.
    irq_level: bool,
    /// Deadlines armed with the platform (periodic, update). Not saved: re-armed by
    /// [`Mc146818::post_load`].
    armed: [Option<u64>; 2],
}

impl Mc146818 {
    pub fn new(irq: u8) -> Self {
        let mut cmos = [0u8; 128];
        cmos[REG_A as usize] = 0x26;
        cmos[REG_B as usize] = B_24H;
        cmos[REG_D as usize] = D_VRT;
        let mut s = Self {
            irq,
            cmos,
            index: 0,
            nmi_disabled: false,
            offset_ns: 0,
            last_eval_ns: 0,
            irq_level: false,
            armed: [None; 2],
        };
        s.update_checksum();
        s
    }

    /// Store the memory-size bytes firmware reads (0x15-0x18, 0x30/0x31, 0x34/0x35, 0x5b-0x5d).
    pub fn set_memory_size(&mut self, below_4g: u64, above_4g: u64) {
        const KIB: u64 = 1024;
        const MIB: u64 = 1024 * KIB;
        // Base memory: 640 KiB.
        self.cmos[0x15] = 0x80;
        self.cmos[0x16] = 0x02;
        // Extended memory above 1 MiB in KiB, capped (both the "setup" and POST copies).
        let ext = (below_4g.saturating_sub(MIB) / KIB).min(0xffff);
        self.cmos[0x17] = ext as u8;
        self.cmos[0x18] = (ext >> 8) as u8;
        self.cmos[0x30] = ext as u8;
        self.cmos[0x31] = (ext >> 8) as u8;
        // Memory above 16 MiB (below 4 GiB) in 64 KiB units.
        let above16 = (below_4g.saturating_sub(16 * MIB) / (64 * KIB)).min(0xffff);
        self.cmos[0x34] = above16 as u8;
        self.cmos[0x35] = (above16 >> 8) as u8;
        // Memory above 4 GiB in 64 KiB units, 24 bits (SeaBIOS's CMOS_MEM_HIGHMEM_*).
        let high = (above_4g / (64 * KIB)).min(0xff_ffff);
        self.cmos[0x5b] = high as u8;
        self.cmos[0x5c] = (high >> 8) as u8;
        self.cmos[0x5d] = (high >> 16) as u8;
        self.update_checksum();
    }

    /// CMOS 0x5f = number of CPUs - 1 (SeaBIOS/QEMU convention).
    pub fn set_cpu_count(&mut self, n: u32) {
        self.cmos[0x5f] = n.saturating_sub(1).min(0xff) as u8;
        self.update_checksum();
    }

    /// Whether the guest last wrote the index port with bit 7 (NMI disable) set.
    pub fn nmi_disabled(&self) -> bool {
        self.nmi_disabled
    }

    /// The ISA IRQ this RTC drives.
    pub fn irq(&self) -> u8 {
        self.irq
    }

    /// Raw CMOS byte (host-side inspection; time registers as last latched).
    pub fn cmos_byte(&self, index: u8) -> u8 {
        self.cmos.get(index as usize).copied().unwrap_or(0xff)
    }

    /// After a state record was loaded: drive the IRQ line to the restored level and
    /// re-arm the timers the restored state needs.
    pub fn post_load(&mut self, p: &mut dyn Platform) {
        self.armed = [None; 2];
        p.set_irq(self.irq as u32, self.irq_level);
        self.rearm(p);
    }

    /// A timer this device armed expired (or fired spuriously: harmless).
    pub fn on_timer(&mut self, p: &mut dyn Platform, id: TimerId) {
        let slot = match id {
            TimerId::RtcPeriodic => 0,
            TimerId::RtcUpdate => 1,
            TimerId::PmTimerOverflow => return,
        };
        self.eval(p);
        // The platform's timer is one-shot; state it explicitly for the fired id so a
        // platform that keeps the old deadline does not see it as still armed.
        let want = self.wanted_deadlines(p);
        if let Some(&w) = want.get(slot) {
            p.set_timer(id, w);
            if let Some(a) = self.armed.get_mut(slot) {
                *a = w;
            }
        }
        self.rearm(p);
    }

    // ---- register helpers -------------------------------------------------------

    fn reg(&self, r: u8) -> u8 {
        self.cmos.get(r as usize).copied().unwrap_or(0)
    }

    fn set_reg(&mut self, r: u8, v: u8) {
        if let Some(b) = self.cmos.get_mut(r as usize) {
            *b = v;
        }
    }

    fn update_checksum(&mut self) {
        let sum: u16 = self.cmos[0x10..=0x2d]
            .iter()
            .fold(0u16, |a, &b| a.wrapping_add(b as u16));
        self.cmos[0x2e] = (sum >> 8) as u8;
        self.cmos[0x2f] = sum as u8;
    }

    fn binary(&self) -> bool {
        self.reg(REG_B) & B_DM_BINARY != 0
    }

    fn h24(&self) -> bool {
        self.reg(REG_B) & B_24H != 0
    }

    fn divider_running_with(a: u8) -> bool {
        a & A_DV_MASK <= 0x20
    }

    fn divider_running(&self) -> bool {
        Self::divider_running_with(self.reg(REG_A))
    }

    fn running_with(a: u8, b: u8) -> bool {
        b & B_SET == 0 && Self::divider_running_with(a)
    }

    /// Whether the time registers update (not SET, divider not in reset).
    fn running(&self) -> bool {
        Self::running_with(self.reg(REG_A), self.reg(REG_B))
    }

    fn encode(&self, v: u32) -> u8 {
        if self.binary() {
            (v % 256) as u8
        } else {
            to_bcd(v)
        }
    }

    fn decode(&self, b: u8) -> u32 {
        if self.binary() { b as u32 } else { from_bcd(b) }
    }

    fn encode_hour(&self, h: u32) -> u8 {
        if self.h24() {
            self.encode(h)
        } else {
            let pm = h >= 12;
            let h12 = match h % 12 {
                0 => 12,
                x => x,
            };
            self.encode(h12) | if pm { 0x80 } else { 0 }
        }
    }

    fn decode_hour(&self, b: u8) -> u32 {
        if self.h24() {
            self.decode(b)
        } else {
            let h12 = self.decode(b & 0x7f);
            h12 % 12 + if b & 0x80 != 0 { 12 } else { 0 }
        }
    }

    // ---- clock ------------------------------------------------------------------

    fn host_ns_at(p: &dyn Platform, now: u64) -> i128 {
        p.wall_clock_base_ns() as i128 + now as i128
    }

    fn guest_ns_at(&self, p: &dyn Platform, now: u64) -> i128 {
        Self::host_ns_at(p, now) + self.offset_ns
    }

    fn guest_ns(&self, p: &dyn Platform) -> i128 {
        self.guest_ns_at(p, p.now_ns())
    }

    /// Platform time at which the RTC reads guest time `g`.
    fn host_deadline(&self, p: &dyn Platform, g: i128) -> u64 {
        let host = g - self.offset_ns - p.wall_clock_base_ns() as i128;
        let now = p.now_ns() as i128;
        host.max(now + 1).clamp(0, u64::MAX as i128) as u64
    }

    fn current_tm(&self, p: &dyn Platform) -> Tm {
        Tm::from_secs(self.guest_ns(p).div_euclid(NS_PER_SEC))
    }

    /// The byte a time register reads as while the clock runs.
    fn time_reg_value(&self, tm: &Tm, r: u8) -> u8 {
        match r {
            REG_SECONDS => self.encode(tm.sec),
            REG_MINUTES => self.encode(tm.min),
            REG_HOURS => self.encode_hour(tm.hour),
            REG_DAY_OF_WEEK => self.encode(tm.wday),
            REG_DAY_OF_MONTH => self.encode(tm.mday),
            REG_MONTH => self.encode(tm.month),
            REG_YEAR => self.encode(tm.year.rem_euclid(100) as u32),
            REG_CENTURY => self.encode((tm.year.rem_euclid(10_000) / 100) as u32),
            _ => self.reg(r),
        }
    }

    fn is_time_reg(r: u8) -> bool {
        matches!(
            r,
            REG_SECONDS
                | REG_MINUTES
                | REG_HOURS
                | REG_DAY_OF_WEEK
                | REG_DAY_OF_MONTH
                | REG_MONTH
                | REG_YEAR
                | REG_CENTURY
        )
    }

    /// Copy the running time into the time registers (clock about to stop).
    fn latch_time(&mut self, p: &dyn Platform) {
        let tm = self.current_tm(p);
        for r in [
            REG_SECONDS,
            REG_MINUTES,
            REG_HOURS,
            REG_DAY_OF_WEEK,
            REG_DAY_OF_MONTH,
            REG_MONTH,
            REG_YEAR,
            REG_CENTURY,
        ] {
            let v = self.time_reg_value(&tm, r);
            self.set_reg(r, v);
        }
    }

    /// Restart the clock from the time registers, with `phase_ns` (0..1 s) of the
    /// current second already elapsed.
    fn start_from_regs(&mut self, p: &dyn Platform, phase_ns: i128) {
        let year = self.decode(self.reg(REG_CENTURY)) as i64 * 100
            + self.decode(self.reg(REG_YEAR)) as i64;
        let month0 = self.decode(self.reg(REG_MONTH)) as i64 - 1;
        let mday = self.decode(self.reg(REG_DAY_OF_MONTH)) as i64;
        let days = days_from_civil(year, month0, mday);
        let secs = days as i128 * SECS_PER_DAY
            + self.decode_hour(self.reg(REG_HOURS)) as i128 * 3600
            + self.decode(self.reg(REG_MINUTES)) as i128 * 60
            + self.decode(self.reg(REG_SECONDS)) as i128;
        let target = secs * NS_PER_SEC + phase_ns.rem_euclid(NS_PER_SEC);
        self.offset_ns = target - Self::host_ns_at(p, p.now_ns());
    }

    /// Move the sub-second phase of the clock to `phase_ns` without changing the second.
    fn set_phase(&mut self, p: &dyn Platform, phase_ns: i128) {
        let g = self.guest_ns(p);
        self.offset_ns += phase_ns - g.rem_euclid(NS_PER_SEC);
    }

    fn uip(&self, p: &dyn Platform) -> bool {
        self.running() && self.guest_ns(p).rem_euclid(NS_PER_SEC) >= NS_PER_SEC - UIP_WINDOW_NS
    }

    // ---- interrupts -------------------------------------------------------------

    /// log2 of the periodic interrupt period in 32.768 kHz ticks, if enabled by RS.
    fn periodic_shift(&self) -> Option<u32> {
        match self.reg(REG_A) & A_RS_MASK {
            0 => None,
            1 => Some(7), // 256 Hz
            2 => Some(8), // 128 Hz
            rs => Some(rs as u32 - 1),
        }
    }

    fn timebase_ticks(g: i128) -> i128 {
        (g * TIMEBASE_HZ).div_euclid(NS_PER_SEC)
    }

    /// Alarm fields (None = don't care), or None if the alarm can never match.
    #[allow(clippy::type_complexity)]
    fn alarm(&self) -> Option<(Option<u32>, Option<u32>, Option<u32>)> {
        let field = |b: u8, max: u32, hour: bool| -> Result<Option<u32>, ()> {
            if b & 0xc0 == 0xc0 {
                return Ok(None);
            }
            let v = if hour {
                if !self.h24() {
                    let h12 = self.decode(b & 0x7f);
                    if h12 == 0 || h12 > 12 {
                        return Err(());
                    }
                }
                self.decode_hour(b)
            } else {
                self.decode(b)
            };
            if v > max { Err(()) } else { Ok(Some(v)) }
        };
        let h = field(self.reg(REG_HOURS_ALARM), 23, true).ok()?;
        let m = field(self.reg(REG_MINUTES_ALARM), 59, false).ok()?;
        let s = field(self.reg(REG_SECONDS_ALARM), 59, false).ok()?;
        Some((h, m, s))
    }

    /// Seconds from second `s0` to the next second whose time matches the alarm.
    fn alarm_delta(&self, s0: i128) -> Option<i128> {
        let (h, m, s) = self.alarm()?;
        let tod = s0.rem_euclid(SECS_PER_DAY) as u32;
        Some(next_alarm_delta(tod, h, m, s) as i128)
    }

    /// Account PF/UF/AF for the time since the last evaluation.
    fn eval(&mut self, p: &mut dyn Platform) {
        let now = p.now_ns();
        if now > self.last_eval_ns {
            let g0 = self.guest_ns_at(p, self.last_eval_ns);
            let g1 = self.guest_ns_at(p, now);
            let mut flags = 0u8;
            if self.divider_running() {
                if let Some(shift) = self.periodic_shift()
                    && Self::timebase_ticks(g0) >> shift != Self::timebase_ticks(g1) >> shift
                {
                    flags |= C_PF;
                }
                if self.reg(REG_B) & B_SET == 0 {
                    let s0 = g0.div_euclid(NS_PER_SEC);
                    let s1 = g1.div_euclid(NS_PER_SEC);
                    if s1 > s0 {
                        flags |= C_UF;
                        if let Some(d) = self.alarm_delta(s0)
                            && s0 + d <= s1
                        {
                            flags |= C_AF;
                        }
                    }
                }
            }
            let c = self.reg(REG_C) | flags;
            self.set_reg(REG_C, c);
        }
        self.last_eval_ns = now;
        self.update_irq(p);
    }

    /// Recompute IRQF from the flags and enables and drive the line on a change.
    fn update_irq(&mut self, p: &mut dyn Platform) {
        let c = self.reg(REG_C);
        let irqf = c & self.reg(REG_B) & (C_PF | C_AF | C_UF) != 0;
        self.set_reg(REG_C, if irqf { c | C_IRQF } else { c & !C_IRQF });
        if irqf != self.irq_level {
            self.irq_level = irqf;
            p.set_irq(self.irq as u32, irqf);
        }
    }

    /// Deadlines the current state needs: (periodic, update).
    fn wanted_deadlines(&self, p: &dyn Platform) -> [Option<u64>; 2] {
        let b = self.reg(REG_B);
        let c = self.reg(REG_C);
        let g = self.guest_ns(p);
        let mut out = [None; 2];
        if self.divider_running()
            && b & B_PIE != 0
            && c & C_PF == 0
            && let Some(shift) = self.periodic_shift()
        {
            let next = ((Self::timebase_ticks(g) >> shift) + 1) << shift;
            let edge = div_ceil_i128(next * NS_PER_SEC, TIMEBASE_HZ);
            out[0] = Some(self.host_deadline(p, edge));
        }
        if self.running() {
            let s = g.div_euclid(NS_PER_SEC);
            let mut next: Option<i128> = None;
            if b & B_UIE != 0 && c & C_UF == 0 {
                next = Some(s + 1);
            }
            if b & B_AIE != 0
                && c & C_AF == 0
                && let Some(d) = self.alarm_delta(s)
            {
                next = Some(next.map_or(s + d, |n| n.min(s + d)));
            }
            out[1] = next.map(|sec| self.host_deadline(p, sec * NS_PER_SEC));
        }
        out
    }

    fn rearm(&mut self, p: &mut dyn Platform) {
        let want = self.wanted_deadlines(p);
        for (i, id) in [TimerId::RtcPeriodic, TimerId::RtcUpdate]
            .into_iter()
            .enumerate()
        {
            if want[i] != self.armed[i] {
                p.set_timer(id, want[i]);
                self.armed[i] = want[i];
            }
        }
    }

    /// Write registers A and B together, handling clock stop/start transitions.
    fn set_control(&mut self, p: &mut dyn Platform, a: u8, b: u8) {
        self.eval(p);
        let old_b = self.reg(REG_B);
        let mut b = b;
        if b & B_SET != 0 && old_b & B_SET == 0 {
            // Data sheet: setting SET clears UIE.
            b &= !B_UIE;
        }
        let was_running = self.running();
        let div_was = self.divider_running();
        if was_running && !Self::running_with(a, b) {
            self.latch_time(p);
        }
        self.set_reg(REG_A, a & !A_UIP);
        self.set_reg(REG_B, b);
        if !was_running && self.running() {
            let phase = if div_was {
                self.guest_ns(p).rem_euclid(NS_PER_SEC)
            } else {
                DIVIDER_RESTART_PHASE_NS
            };
            self.start_from_regs(p, phase);
        } else if !div_was && self.divider_running() {
            // Divider released while SET holds the registers: the chain restarts now.
            self.set_phase(p, DIVIDER_RESTART_PHASE_NS);
        }
        self.update_irq(p);
        self.rearm(p);
    }

    fn read_data(&mut self, p: &mut dyn Platform) -> u8 {
        let r = self.index & 0x7f;
        match r {
            REG_A => (self.reg(REG_A) & !A_UIP) | if self.uip(p) { A_UIP } else { 0 },
            REG_C => {
                self.eval(p);
                let v = self.reg(REG_C);
                self.set_reg(REG_C, 0);
                self.update_irq(p);
                self.rearm(p);
                v
            }
            REG_D => D_VRT,
            r if Self::is_time_reg(r) && self.running() => {
                let tm = self.current_tm(p);
                self.time_reg_value(&tm, r)
            }
            r => self.reg(r),
        }
    }

    fn write_data(&mut self, p: &mut dyn Platform, v: u8) {
        let r = self.index & 0x7f;
        match r {
            REG_A => {
                let b = self.reg(REG_B);
                self.set_control(p, v, b);
            }
            REG_B => {
                let a = self.reg(REG_A);
                self.set_control(p, a, v);
            }
            REG_C | REG_D => {}
            REG_SECONDS_ALARM | REG_MINUTES_ALARM | REG_HOURS_ALARM => {
                self.eval(p);
                self.set_reg(r, v);
                self.rearm(p);
            }
            r if Self::is_time_reg(r) => {
                if self.running() {
                    // The clock continues from the written value, keeping its phase.
                    self.eval(p);
                    let phase = self.guest_ns(p).rem_euclid(NS_PER_SEC);
                    self.latch_time(p);
                    self.set_reg(r, v);
                    self.start_from_regs(p, phase);
                    self.rearm(p);
                } else {
                    self.set_reg(r, v);
                }
            }
            r => self.set_reg(r, v),
        }
    }
}

impl PortIo for Mc146818 {
    fn pio_read(&mut self, p: &mut dyn Platform, port: u16, w: Width) -> u32 {
        let mut v = 0u32;
        for i in 0..w.bytes().min(4) {
            let b = match port.wrapping_add(i as u16) {
                // The index register is write-only.
                0x71 => self.read_data(p),
                _ => 0xff,
            };
            v |= (b as u32) << (8 * i);
        }
        v
    }

    fn pio_write(&mut self, p: &mut dyn Platform, port: u16, w: Width, v: u32) {
        for i in 0..w.bytes().min(4) {
            let b = (v >> (8 * i)) as u8;
            match port.wrapping_add(i as u16) {
                0x70 => {
                    self.nmi_disabled = b & 0x80 != 0;
                    self.index = b & 0x7f;
                }
                0x71 => self.write_data(p, b),
                _ => {}
            }
        }
    }
}

impl Snapshot for Mc146818 {
    const NAME: &'static str = "mc146818";
    const VERSION: u16 = 1;

    /// v1: cmos[128], index u8, nmi_disabled bool, offset_ns i128 (u64 low, u64 high),
    /// last_eval_ns u64, irq_level bool.
    fn save(&self, w: &mut RecordWriter) {
        w.bytes(&self.cmos);
        w.u8(self.index);
        w.bool(self.nmi_disabled);
        let off = self.offset_ns as u128;
        w.u64(off as u64);
        w.u64((off >> 64) as u64);
        w.u64(self.last_eval_ns);
        w.bool(self.irq_level);
    }

    fn load(&mut self, _v: u16, r: &mut RecordReader<'_>) -> Result<(), LoadError> {
        let bad = |field| LoadError::Invalid {
            name: Self::NAME,
            field,
        };
        let mut cmos = [0u8; 128];
        r.bytes(&mut cmos)?;
        let index = r.u8()?;
        let nmi_disabled = r.bool(Self::NAME, "nmi_disabled")?;
        let lo = r.u64()? as u128;
        let hi = r.u64()? as u128;
        let offset_ns = (lo | (hi << 64)) as i128;
        let last_eval_ns = r.u64()?;
        let irq_level = r.bool(Self::NAME, "irq_level")?;

        if index > 0x7f {
            return Err(bad("index"));
        }
        if cmos[REG_A as usize] & A_UIP != 0 {
            return Err(bad("reg_a"));
        }
        if cmos[REG_D as usize] != D_VRT {
            return Err(bad("reg_d"));
        }
        let c = cmos[REG_C as usize];
        if c & 0x0f != 0 {
            return Err(bad("reg_c"));
        }
        let irqf = c & cmos[REG_B as usize] & (C_PF | C_AF | C_UF) != 0;
        if (c & C_IRQF != 0) != irqf {
            return Err(bad("reg_c.irqf"));
        }
        if irq_level != irqf {
            return Err(bad("irq_level"));
        }
        if !(-MAX_OFFSET_NS..=MAX_OFFSET_NS).contains(&offset_ns) {
            return Err(bad("offset_ns"));
        }
        self.cmos = cmos;
        self.index = index;
        self.nmi_disabled = nmi_disabled;
        self.offset_ns = offset_ns;
        self.last_eval_ns = last_eval_ns;
        self.irq_level = irq_level;
        self.armed = [None; 2];
        Ok(())
    }
}

#[cfg(test)]
fn interesting_rtc() -> Mc146818 {
    use crate::testing::MockPlatform;
    let mut p = MockPlatform::new();
    let mut r = Mc146818::new(8);
    r.set_memory_size(512 << 20, 1 << 30);
    r.set_cpu_count(4);
    // Binary, 12-hour, periodic + update interrupts, a year in the past, a pending PF.
    r.pio_write(&mut p, 0x70, Width::B1, 0x80 | REG_B as u32);
    r.pio_write(&mut p, 0x71, Width::B1, (B_SET | B_DM_BINARY) as u32);
    r.pio_write(&mut p, 0x70, Width::B1, REG_YEAR as u32);
    r.pio_write(&mut p, 0x71, Width::B1, 25);
    r.pio_write(&mut p, 0x70, Width::B1, REG_B as u32);
    r.pio_write(
        &mut p,
        0x71,
        Width::B1,
        (B_PIE | B_UIE | B_DM_BINARY) as u32,
    );
    r.pio_write(&mut p, 0x70, Width::B1, REG_HOURS_ALARM as u32);
    r.pio_write(&mut p, 0x71, Width::B1, 0xc0);
    p.advance(1_500_000_000);
    r.on_timer(&mut p, TimerId::RtcPeriodic);
    r.pio_write(&mut p, 0x70, Width::B1, 0x80 | 0x40);
    r
}

crate::snapshot_tests!(
    mc146818_snapshot,
    Mc146818,
    interesting_rtc(),
    Mc146818::new(8)
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MockPlatform;
    use alloc::vec::Vec;

    // CMOS access the way Linux's CMOS_READ/CMOS_WRITE and SeaBIOS's rtc_read/rtc_write do it.
    fn rd(r: &mut Mc146818, p: &mut MockPlatform, idx: u8) -> u8 {
        r.pio_write(p, 0x70, Width::B1, 0x80 | idx as u32);
        r.pio_read(p, 0x71, Width::B1) as u8
    }
    fn wr(r: &mut Mc146818, p: &mut MockPlatform, idx: u8, v: u8) {
        r.pio_write(p, 0x70, Width::B1, 0x80 | idx as u32);
        r.pio_write(p, 0x71, Width::B1, v as u32);
    }

    /// Linux mc146818_avoid_UIP + mc146818_get_time: poll UIP every 100 us (at most
    /// 10 ms), read the time, re-check UIP and the seconds. Returns the raw registers
    /// (sec, min, hour, mday, mon, year, century) and the polls it took.
    fn linux_get_time(r: &mut Mc146818, p: &mut MockPlatform) -> Option<([u8; 7], u32)> {
        for i in 0..100 {
            let sec = rd(r, p, REG_SECONDS);
            if rd(r, p, REG_A) & A_UIP != 0 {
                p.advance(100_000);
                continue;
            }
            if sec != rd(r, p, REG_SECONDS) {
                continue;
            }
            let t = [
                sec,
                rd(r, p, REG_MINUTES),
                rd(r, p, REG_HOURS),
                rd(r, p, REG_DAY_OF_MONTH),
                rd(r, p, REG_MONTH),
                rd(r, p, REG_YEAR),
                rd(r, p, REG_CENTURY),
            ];
            let _ctrl = rd(r, p, REG_B);
            if rd(r, p, REG_A) & A_UIP != 0 {
                p.advance(100_000);
                continue;
            }
            if sec != rd(r, p, REG_SECONDS) {
                continue;
            }
            return Some((t, i));
        }
        None
    }

    /// Linux mc146818_set_time: SET, divider reset, write fields, restore B, restore A.
    fn linux_set_time(r: &mut Mc146818, p: &mut MockPlatform, t: [u8; 7]) {
        let ctrl = rd(r, p, REG_B);
        wr(r, p, REG_B, ctrl | B_SET);
        let freq = rd(r, p, REG_A);
        wr(r, p, REG_A, freq | 0x70);
        wr(r, p, REG_YEAR, t[5]);
        wr(r, p, REG_MONTH, t[4]);
        wr(r, p, REG_DAY_OF_MONTH, t[3]);
        wr(r, p, REG_HOURS, t[2]);
        wr(r, p, REG_MINUTES, t[1]);
        wr(r, p, REG_SECONDS, t[0]);
        wr(r, p, REG_CENTURY, t[6]);
        wr(r, p, REG_B, ctrl);
        wr(r, p, REG_A, freq);
    }

    #[test]
    fn power_on_defaults() {
        let mut p = MockPlatform::new();
        let mut r = Mc146818::new(8);
        assert_eq!(rd(&mut r, &mut p, REG_A), 0x26);
        assert_eq!(rd(&mut r, &mut p, REG_B), 0x02);
        assert_eq!(rd(&mut r, &mut p, REG_C), 0x00);
        assert_eq!(rd(&mut r, &mut p, REG_D), 0x80);
        // The index port is write-only.
        assert_eq!(r.pio_read(&mut p, 0x70, Width::B1), 0xff);
    }

    #[test]
    fn reads_platform_wall_clock_in_bcd() {
        let mut p = MockPlatform::new(); // 2026-11-23 12:34:56 UTC, a Monday
        let mut r = Mc146818::new(8);
        let (t, _) = linux_get_time(&mut r, &mut p).unwrap();
        assert_eq!(t, [0x56, 0x34, 0x12, 0x23, 0x11, 0x26, 0x20]);
        assert_eq!(rd(&mut r, &mut p, REG_DAY_OF_WEEK), 2);
        p.advance(3_600_000_000_000 + 4_000_000_000);
        let (t, _) = linux_get_time(&mut r, &mut p).unwrap();
        assert_eq!(t, [0x00, 0x35, 0x13, 0x23, 0x11, 0x26, 0x20]);
    }

    #[test]
    fn uip_window_and_linux_poll_clears_it() {
        let mut p = MockPlatform::new();
        let mut r = Mc146818::new(8);
        p.advance(999_756_000 - 1);
        assert_eq!(rd(&mut r, &mut p, REG_A) & A_UIP, 0);
        p.advance(1);
        assert_eq!(rd(&mut r, &mut p, REG_A), 0x26 | A_UIP);
        // Linux polls every 100 us; UIP must clear within the 244 us window.
        let (t, polls) = linux_get_time(&mut r, &mut p).unwrap();
        assert!((1..=3).contains(&polls), "took {polls} polls");
        assert_eq!(t[0], 0x57, "read after the update, not before");
        assert_eq!(rd(&mut r, &mut p, REG_A) & A_UIP, 0);
        // SET holds UIP clear even inside the window.
        p.advance(999_800_000);
        assert_ne!(rd(&mut r, &mut p, REG_A) & A_UIP, 0);
        wr(&mut r, &mut p, REG_B, B_24H | B_SET);
        assert_eq!(rd(&mut r, &mut p, REG_A) & A_UIP, 0);
    }

    #[test]
    fn seabios_rtc_setup_and_updating() {
        let mut p = MockPlatform::new();
        let mut r = Mc146818::new(8);
        // rtc_setup
        wr(&mut r, &mut p, REG_A, 0x26);
        let b = rd(&mut r, &mut p, REG_B);
        wr(&mut r, &mut p, REG_B, (b & B_DSE) | B_24H);
        rd(&mut r, &mut p, REG_C);
        rd(&mut r, &mut p, REG_D);
        // rtc_updating: wait for a UIP 1 -> 0 transition, bounded.
        p.advance(999_900_000);
        assert_ne!(rd(&mut r, &mut p, REG_A) & A_UIP, 0);
        let mut cleared = false;
        for _ in 0..15 {
            p.advance(50_000);
            if rd(&mut r, &mut p, REG_A) & A_UIP == 0 {
                cleared = true;
                break;
            }
        }
        assert!(cleared);
        assert_eq!(rd(&mut r, &mut p, REG_SECONDS), 0x57);
        // No timers were armed for any of this.
        assert_eq!(p.timer(TimerId::RtcPeriodic), None);
        assert_eq!(p.timer(TimerId::RtcUpdate), None);
    }

    #[test]
    fn linux_set_time_restarts_half_a_second_later() {
        let mut p = MockPlatform::new();
        let mut r = Mc146818::new(8);
        p.advance(123_000_000);
        // 1999-12-31 23:59:58
        linux_set_time(&mut r, &mut p, [0x58, 0x59, 0x23, 0x31, 0x12, 0x99, 0x19]);
        assert_eq!(rd(&mut r, &mut p, REG_SECONDS), 0x58);
        p.advance(499_000_000);
        assert_eq!(rd(&mut r, &mut p, REG_SECONDS), 0x58);
        p.advance(1_000_000);
        assert_eq!(rd(&mut r, &mut p, REG_SECONDS), 0x59);
        p.advance(1_000_000_000);
        let (t, _) = linux_get_time(&mut r, &mut p).unwrap();
        assert_eq!(t, [0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x20]);
        // 2000-01-01 was a Saturday.
        assert_eq!(rd(&mut r, &mut p, REG_DAY_OF_WEEK), 7);
    }

    #[test]
    fn set_bit_freezes_and_write_while_running_keeps_phase() {
        let mut p = MockPlatform::new();
        let mut r = Mc146818::new(8);
        wr(&mut r, &mut p, REG_B, B_24H | B_SET);
        p.advance(5_000_000_000);
        assert_eq!(rd(&mut r, &mut p, REG_SECONDS), 0x56);
        wr(&mut r, &mut p, REG_MINUTES, 0x00);
        assert_eq!(rd(&mut r, &mut p, REG_MINUTES), 0x00);
        p.advance(300_000_000);
        wr(&mut r, &mut p, REG_B, B_24H);
        assert_eq!(rd(&mut r, &mut p, REG_SECONDS), 0x56);
        assert_eq!(rd(&mut r, &mut p, REG_MINUTES), 0x00);
        // The divider kept running under SET: the phase was 0.3 s, so 0.7 s to the tick.
        p.advance(699_999_999);
        assert_eq!(rd(&mut r, &mut p, REG_SECONDS), 0x56);
        p.advance(1);
        assert_eq!(rd(&mut r, &mut p, REG_SECONDS), 0x57);
        // A direct write while running takes effect at once and keeps the phase.
        p.advance(400_000_000);
        wr(&mut r, &mut p, REG_HOURS, 0x05);
        assert_eq!(rd(&mut r, &mut p, REG_HOURS), 0x05);
        assert_eq!(rd(&mut r, &mut p, REG_SECONDS), 0x57);
        p.advance(600_000_000);
        assert_eq!(rd(&mut r, &mut p, REG_SECONDS), 0x58);
        assert_eq!(rd(&mut r, &mut p, REG_MINUTES), 0x00);
    }

    #[test]
    fn binary_and_twelve_hour_modes() {
        let mut p = MockPlatform::new();
        let mut r = Mc146818::new(8);
        wr(&mut r, &mut p, REG_B, B_DM_BINARY); // binary, 12-hour
        assert_eq!(rd(&mut r, &mut p, REG_SECONDS), 56);
        assert_eq!(rd(&mut r, &mut p, REG_HOURS), 0x80 | 12); // 12 PM
        assert_eq!(rd(&mut r, &mut p, REG_YEAR), 26);
        wr(&mut r, &mut p, REG_B, 0); // BCD, 12-hour
        assert_eq!(rd(&mut r, &mut p, REG_HOURS), 0x92);
        // Write 1 AM and 11 PM in 12-hour BCD, read back in 24-hour binary.
        wr(&mut r, &mut p, REG_B, B_SET);
        wr(&mut r, &mut p, REG_HOURS, 0x01);
        wr(&mut r, &mut p, REG_B, 0);
        wr(&mut r, &mut p, REG_B, B_24H | B_DM_BINARY);
        assert_eq!(rd(&mut r, &mut p, REG_HOURS), 1);
        wr(&mut r, &mut p, REG_B, 0);
        wr(&mut r, &mut p, REG_HOURS, 0x91);
        wr(&mut r, &mut p, REG_B, B_24H | B_DM_BINARY);
        assert_eq!(rd(&mut r, &mut p, REG_HOURS), 23);
        // 12 AM is midnight.
        wr(&mut r, &mut p, REG_B, 0);
        wr(&mut r, &mut p, REG_HOURS, 0x12);
        wr(&mut r, &mut p, REG_B, B_24H);
        assert_eq!(rd(&mut r, &mut p, REG_HOURS), 0x00);
    }

    #[test]
    fn periodic_interrupt_rate_and_read_to_clear() {
        let mut p = MockPlatform::new();
        let mut r = Mc146818::new(8);
        // Default rate 6 = 1024 Hz; no timer until PIE.
        assert_eq!(p.timer(TimerId::RtcPeriodic), None);
        let b = rd(&mut r, &mut p, REG_B);
        wr(&mut r, &mut p, REG_B, b | B_PIE);
        let d = p.timer(TimerId::RtcPeriodic).expect("armed");
        // The wall base is a whole second: first edge after 1/1024 s, rounded up.
        assert_eq!(d, 976_563);
        p.now_ns = d - 1;
        assert_eq!(rd(&mut r, &mut p, REG_C) & C_PF, 0, "no edge yet");
        p.now_ns = d;
        r.on_timer(&mut p, TimerId::RtcPeriodic);
        assert!(p.irq(8));
        // No re-arm while PF is pending: the level holds.
        assert_eq!(p.timer(TimerId::RtcPeriodic), None);
        assert_eq!(rd(&mut r, &mut p, REG_C), C_IRQF | C_PF);
        assert!(!p.irq(8));
        assert_eq!(p.timer(TimerId::RtcPeriodic), Some(1_953_125));
        // Rate 15 = 2 Hz, rate 1 = 256 Hz, rate 3 = 8192 Hz.
        for (rs, period) in [(15u8, 500_000_000u64), (1, 3_906_250), (3, 122_071)] {
            wr(&mut r, &mut p, REG_A, 0x20 | rs);
            let next = p.timer(TimerId::RtcPeriodic).unwrap();
            assert!(next > p.now_ns && next - p.now_ns <= period, "rate {rs}");
        }
        // Rate 0 and PIE off disarm.
        wr(&mut r, &mut p, REG_A, 0x20);
        assert_eq!(p.timer(TimerId::RtcPeriodic), None);
        wr(&mut r, &mut p, REG_A, 0x26);
        assert!(p.timer(TimerId::RtcPeriodic).is_some());
        wr(&mut r, &mut p, REG_B, b);
        assert_eq!(p.timer(TimerId::RtcPeriodic), None);
        // PF is still set without PIE (lazily), without an interrupt.
        p.advance(10_000_000);
        assert_eq!(rd(&mut r, &mut p, REG_C), C_PF);
        assert!(!p.irq(8));
    }

    #[test]
    fn update_ended_interrupt_like_rtc_cmos() {
        let mut p = MockPlatform::new();
        let mut r = Mc146818::new(8);
        p.advance(250_000_000);
        let b = rd(&mut r, &mut p, REG_B);
        wr(&mut r, &mut p, REG_B, b | B_UIE);
        assert_eq!(p.timer(TimerId::RtcUpdate), Some(1_000_000_000));
        p.now_ns = 1_000_000_000;
        r.on_timer(&mut p, TimerId::RtcUpdate);
        assert!(p.irq(8));
        assert_eq!(p.timer(TimerId::RtcUpdate), None);
        // cmos_interrupt: read C, mask with the enables.
        let c = rd(&mut r, &mut p, REG_C) & !C_PF;
        assert_eq!(c, C_IRQF | C_UF);
        assert!(!p.irq(8));
        assert_eq!(p.timer(TimerId::RtcUpdate), Some(2_000_000_000));
        assert_eq!(rd(&mut r, &mut p, REG_SECONDS), 0x57);
        // Disabling UIE cancels the timer; UF still latches lazily.
        wr(&mut r, &mut p, REG_B, b);
        assert_eq!(p.timer(TimerId::RtcUpdate), None);
        p.advance(1_500_000_000);
        assert_eq!(rd(&mut r, &mut p, REG_C) & !C_PF, C_UF);
        // Enabling UIE with UF already pending raises IRQF at once.
        p.advance(1_000_000_000);
        wr(&mut r, &mut p, REG_B, b | B_UIE);
        assert!(p.irq(8));
        // ... and disabling it drops the line (IRQF is combinational).
        wr(&mut r, &mut p, REG_B, b);
        assert!(!p.irq(8));
    }

    #[test]
    fn alarm_interrupt_with_and_without_dont_care() {
        let mut p = MockPlatform::new(); // 12:34:56
        let mut r = Mc146818::new(8);
        // rtc-cmos cmos_set_alarm: write alarm regs, then AIE.
        wr(&mut r, &mut p, REG_HOURS_ALARM, 0x12);
        wr(&mut r, &mut p, REG_MINUTES_ALARM, 0x35);
        wr(&mut r, &mut p, REG_SECONDS_ALARM, 0x10);
        let b = rd(&mut r, &mut p, REG_B);
        wr(&mut r, &mut p, REG_B, b | B_AIE);
        assert_eq!(p.timer(TimerId::RtcUpdate), Some(14_000_000_000));
        p.now_ns = 14_000_000_000;
        r.on_timer(&mut p, TimerId::RtcUpdate);
        assert!(p.irq(8));
        assert_eq!(rd(&mut r, &mut p, REG_C) & !C_PF, C_IRQF | C_AF | C_UF);
        // Next match is a day later.
        assert_eq!(
            p.timer(TimerId::RtcUpdate),
            Some(14_000_000_000 + 86_400_000_000_000)
        );
        // Don't-care hour and minute: once a minute at :00.
        wr(&mut r, &mut p, REG_HOURS_ALARM, 0xff);
        wr(&mut r, &mut p, REG_MINUTES_ALARM, 0xc0);
        wr(&mut r, &mut p, REG_SECONDS_ALARM, 0x00);
        // now = 12:35:10 -> 12:36:00
        assert_eq!(p.timer(TimerId::RtcUpdate), Some(64_000_000_000));
        // All don't-care: every second.
        wr(&mut r, &mut p, REG_SECONDS_ALARM, 0xc0);
        assert_eq!(p.timer(TimerId::RtcUpdate), Some(15_000_000_000));
        // An alarm that can never match (hour 0x25) arms nothing.
        wr(&mut r, &mut p, REG_SECONDS_ALARM, 0x00);
        wr(&mut r, &mut p, REG_MINUTES_ALARM, 0x00);
        wr(&mut r, &mut p, REG_HOURS_ALARM, 0x25);
        assert_eq!(p.timer(TimerId::RtcUpdate), None);
        p.advance(100 * 86_400_000_000_000);
        assert_eq!(rd(&mut r, &mut p, REG_C) & !C_PF, C_UF);
    }

    #[test]
    fn lazy_alarm_over_long_gaps() {
        let mut p = MockPlatform::new(); // 12:34:56
        let mut r = Mc146818::new(8);
        wr(&mut r, &mut p, REG_HOURS_ALARM, 0x03);
        wr(&mut r, &mut p, REG_MINUTES_ALARM, 0x00);
        wr(&mut r, &mut p, REG_SECONDS_ALARM, 0x00);
        rd(&mut r, &mut p, REG_C);
        p.advance(3_600_000_000_000); // 13:34:56, no 03:00:00 crossed
        assert_eq!(rd(&mut r, &mut p, REG_C) & !C_PF, C_UF);
        p.advance(14 * 3_600_000_000_000); // 03:34:56 next day
        assert_eq!(rd(&mut r, &mut p, REG_C) & !C_PF, C_UF | C_AF);
    }

    #[test]
    fn next_alarm_delta_matches_brute_force() {
        let mut seed = 0x1234_5678_9abc_def1u64;
        for _ in 0..300 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let pick = |v: u64, max: u64| (!v.is_multiple_of(3)).then_some(((v >> 8) % max) as u32);
            let h = pick(seed, 24);
            let m = pick(seed >> 16, 60);
            let s = pick(seed >> 32, 60);
            let tod0 = ((seed >> 40) % 86_400) as u32;
            let want = (1..=86_400u32)
                .find(|d| {
                    let t = (tod0 + d) % 86_400;
                    h.is_none_or(|x| x == t / 3600)
                        && m.is_none_or(|x| x == t / 60 % 60)
                        && s.is_none_or(|x| x == t % 60)
                })
                .unwrap();
            assert_eq!(
                next_alarm_delta(tod0, h, m, s),
                want,
                "{tod0} {h:?} {m:?} {s:?}"
            );
        }
    }

    #[test]
    fn memory_size_cpu_count_and_checksum() {
        let mut p = MockPlatform::new();
        let mut r = Mc146818::new(8);
        r.set_memory_size(3 << 30, 5 << 30);
        r.set_cpu_count(4);
        let rd16 = |r: &mut Mc146818, p: &mut MockPlatform, lo: u8| {
            rd(r, p, lo) as u32 | (rd(r, p, lo + 1) as u32) << 8
        };
        assert_eq!(rd16(&mut r, &mut p, 0x15), 640);
        assert_eq!(rd16(&mut r, &mut p, 0x17), 0xffff);
        assert_eq!(rd16(&mut r, &mut p, 0x30), 0xffff);
        assert_eq!(
            rd16(&mut r, &mut p, 0x34),
            ((3u32 << 30) - (16 << 20)) >> 16
        );
        let high = rd16(&mut r, &mut p, 0x5b) | (rd(&mut r, &mut p, 0x5d) as u32) << 16;
        assert_eq!(high, (5u32 << 14)); // 5 GiB / 64 KiB
        assert_eq!(rd(&mut r, &mut p, 0x5f), 3);
        let sum: u32 = (0x10..=0x2d).map(|i| rd(&mut r, &mut p, i) as u32).sum();
        assert_eq!(rd16(&mut r, &mut p, 0x2e), ((sum & 0xff) << 8) | (sum >> 8));
        // Small machine: 32 MiB.
        r.set_memory_size(32 << 20, 0);
        assert_eq!(rd16(&mut r, &mut p, 0x17), 31 * 1024);
        assert_eq!(rd16(&mut r, &mut p, 0x34), 256);
        assert_eq!(rd(&mut r, &mut p, 0x5b), 0);
        r.set_memory_size(0, 0);
        r.set_cpu_count(0);
        assert_eq!(rd16(&mut r, &mut p, 0x17), 0);
        assert_eq!(rd(&mut r, &mut p, 0x5f), 0);
    }

    #[test]
    fn nmi_bit_is_masked_from_the_index_and_ram_is_plain() {
        let mut p = MockPlatform::new();
        let mut r = Mc146818::new(8);
        r.pio_write(&mut p, 0x70, Width::B1, 0x80 | 0x40);
        assert!(r.nmi_disabled());
        r.pio_write(&mut p, 0x71, Width::B1, 0xa5);
        r.pio_write(&mut p, 0x70, Width::B1, 0x40);
        assert!(!r.nmi_disabled());
        assert_eq!(r.pio_read(&mut p, 0x71, Width::B1), 0xa5);
        // A word write to 0x70 is an index write then a data write.
        r.pio_write(&mut p, 0x70, Width::B2, 0x5a41);
        assert_eq!(rd(&mut r, &mut p, 0x41), 0x5a);
        // Register D is read-only, C too.
        wr(&mut r, &mut p, REG_D, 0);
        wr(&mut r, &mut p, REG_C, 0xff);
        assert_eq!(rd(&mut r, &mut p, REG_D), 0x80);
        assert_eq!(rd(&mut r, &mut p, REG_C), 0);
    }

    #[test]
    fn state_round_trip_keeps_time_and_interrupts() {
        let mut p = MockPlatform::new();
        let mut r = Mc146818::new(8);
        linux_set_time(&mut r, &mut p, [0x00, 0x00, 0x08, 0x01, 0x02, 0x03, 0x21]);
        let b = rd(&mut r, &mut p, REG_B);
        wr(&mut r, &mut p, REG_B, b | B_UIE);
        let bytes = save_record(&r, 0);
        let mut q = Mc146818::new(8);
        load_record(&mut q, &bytes).unwrap();
        let mut p2 = MockPlatform::new();
        p2.now_ns = p.now_ns;
        q.post_load(&mut p2);
        assert_eq!(p2.timer(TimerId::RtcUpdate), p.timer(TimerId::RtcUpdate));
        p.advance(2_000_000_000);
        p2.advance(2_000_000_000);
        assert_eq!(
            linux_get_time(&mut r, &mut p).unwrap().0,
            linux_get_time(&mut q, &mut p2).unwrap().0
        );
        // A record with an inconsistent IRQF is refused.
        let mut bad = save_record(&r, 0);
        bad[24 + REG_C as usize] = C_IRQF;
        assert!(matches!(
            load_record(&mut q, &bad),
            Err(LoadError::Invalid { .. })
        ));
    }

    #[test]
    fn hammer_ports_never_panics_and_uip_clears() {
        let mut p = MockPlatform::new();
        let mut r = Mc146818::new(8);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut log = Vec::new();
        for _ in 0..200_000 {
            let x = next();
            let port = 0x6e + (x % 6) as u16;
            let w = [Width::B1, Width::B2, Width::B4][(x >> 8) as usize % 3];
            let v = (x >> 16) as u32;
            match (x >> 48) % 8 {
                0..=2 => r.pio_write(&mut p, port, w, v),
                3..=5 => log.push(r.pio_read(&mut p, port, w)),
                6 => p.advance((x >> 20) % 3_000_000_000),
                _ => {
                    let id = if x & 1 == 0 {
                        TimerId::RtcPeriodic
                    } else {
                        TimerId::RtcUpdate
                    };
                    if let Some(d) = p.timer(id) {
                        p.now_ns = p.now_ns.max(d);
                    }
                    r.on_timer(&mut p, id);
                }
            }
        }
        // Whatever state the guest left, a running clock's UIP clears within 250 us.
        wr(&mut r, &mut p, REG_A, 0x26);
        wr(&mut r, &mut p, REG_B, B_24H);
        let mut seen_clear = false;
        for _ in 0..4 {
            if rd(&mut r, &mut p, REG_A) & A_UIP == 0 {
                seen_clear = true;
                break;
            }
            p.advance(100_000);
        }
        assert!(seen_clear);
        // Extreme platform clocks do not overflow anything.
        p.wall_base_ns = u64::MAX;
        p.now_ns = u64::MAX;
        wr(&mut r, &mut p, REG_B, B_PIE | B_UIE | B_AIE);
        for i in 0..0x80 {
            rd(&mut r, &mut p, i);
        }
        assert!(!log.is_empty());
    }
}
