//! The Intel 8254 programmable interval timer at ports 0x40–0x43, with the PC/AT port
//! 0x61 bits that belong to it, as pure logic over a caller-supplied guest time.
//!
//! Used by the `emu` backend (`crate::emu::irqchip`, which routes ports 0x40-0x43 and
//! 0x61 here and polls IRQ 0 edges); on `kvm` the guest uses KVM's in-kernel PIT. Port
//! 0x61 is not decoded by `chassis-devices`.
//!
//! Time: every call takes the current guest time in ns. The counters run on the
//! 1.193182 MHz PIT clock: clock edge number `t` happens at the first ns `x` with
//! `x * 1193182 / 10^9 >= t` (integer math in u128, so the same time sequence always
//! gives the same counts). Times are clamped to be monotonic.
//!
//! Counting follows the 8254 datasheet (Intel 231164): a count written to a counter is
//! loaded into the counting element (CE) on the *next* clock edge and decremented on the
//! ones after it, so in mode 0 OUT goes high N+1 clocks after the count was written.
//! Counts of 0 mean 65536 (binary) or 10000 (BCD).
//! * Mode 0 (interrupt on terminal count): OUT low from the control word until the CE
//!   reaches 0; the CE then keeps wrapping. A new count restarts; in lobyte/hibyte access
//!   the first byte stops counting. GATE low suspends counting.
//! * Mode 1 (retriggerable one-shot), mode 5 (hardware-triggered strobe): start on a GATE
//!   rising edge (only channel 2 has a gate a guest can move: port 0x61 bit 0; channels 0
//!   and 1 have GATE tied high, as on the PC).
//! * Mode 2 (rate generator): OUT low for one clock when the CE reaches 1, period N.
//!   Mode 3 (square wave): OUT high for ceil(N/2), low for floor(N/2) clocks; the CE
//!   counts down by two (for odd N the CE readout is approximated: it runs N-1, N-3, ...
//!   in both halves). In both, GATE low stops counting and forces OUT high, a GATE rising
//!   edge reloads, and a count written while counting takes effect at the end of the
//!   current period. N = 1 (illegal in these modes) behaves as N = 2.
//! * Mode 4 (software-triggered strobe): OUT low for one clock when the CE reaches 0.
//! * Modes 6 and 7 are modes 2 and 3 (read-back status reports the mode as written).
//! * BCD counting: supported by converting the count to binary (digits above 9 are taken
//!   at face value, an approximation of what the real part does with invalid BCD) and
//!   the CE back to BCD on reads; mode 0/1/4/5 wrap at 10000.
//! * Counter latch (0x43 RW = 00) and read-back (0x43 bits 7:6 = 11; bit 5 = 0 latches
//!   the count, bit 4 = 0 latches the status: OUT, NULL COUNT, RW, mode, BCD) of each
//!   selected counter; a second latch before the first was read is ignored; a latched
//!   status is read before a latched count. A control word discards the latches.
//!   NULL COUNT is set by a control word or a count write and cleared when the count is
//!   loaded into the CE.
//! * Power-on: every counter waits for a count (mode 0, lobyte/hibyte, binary, OUT low),
//!   so there is no IRQ0 until the guest programs channel 0.
//!
//! Port 0x61 (system control port B): bit 0 = channel 2 GATE, bit 1 = speaker data
//! enable, bits 2–3 (parity/IOCHK check enables) are stored; reads add bit 4, the DRAM
//! refresh toggle (derived from the PIT clock: flips every 18 clocks, the 15.09 µs period
//! BIOSes program channel 1 for; channel 1 itself is not consulted), and bit 5 = channel
//! 2 OUT. Bits 6–7 (NMI sources) read 0.
//!
//! IRQ0: channel 0's OUT drives ISA IRQ0, and the PIC latches its *rising* edges (mode 0:
//! terminal count; modes 2/3: start of each period after the first; mode 4: end of the
//! strobe). [`Pit8254::next_irq0_deadline`] tells a run loop when the next one is due and
//! [`Pit8254::irq0_edges`] / [`Pit8254::irq0_pending`] collect the edges up to now (each
//! edge is reported once, also across reprogramming), so the loop can pulse IRQ0.
//!
//! State is saved as the `i8254` record; times in it are guest times.

use chassis_devices::snapshot::{LoadError, RecordReader, RecordWriter, Snapshot};

/// The PIT input clock in Hz.
pub const PIT_HZ: u64 = 1_193_182;
pub const PORT_COUNTER0: u16 = 0x40;
pub const PORT_COUNTER2: u16 = 0x42;
pub const PORT_MODE: u16 = 0x43;
/// System control port B.
pub const PORT_61: u16 = 0x61;
pub const P61_GATE2: u8 = 1 << 0;
pub const P61_SPEAKER: u8 = 1 << 1;
pub const P61_REFRESH: u8 = 1 << 4;
pub const P61_OUT2: u8 = 1 << 5;
/// PIT clocks per refresh-toggle half period.
const REFRESH_TICKS: u64 = 18;

const NS_PER_S: u128 = 1_000_000_000;

/// Number of PIT clock edges up to guest time `ns`.
pub fn tick_at(ns: u64) -> u64 {
    (ns as u128 * PIT_HZ as u128 / NS_PER_S) as u64
}

/// The first guest ns at which clock edge `tick` has happened.
pub fn ns_of_tick(tick: u64) -> u64 {
    let ns = (tick as u128 * NS_PER_S).div_ceil(PIT_HZ as u128);
    u64::try_from(ns).unwrap_or(u64::MAX)
}

const RUN_IDLE: u8 = 0;
const RUN_COUNTING: u8 = 1;
const RUN_PAUSED: u8 = 2;

fn bcd_to_bin(v: u16) -> u32 {
    let d = |s: u32| ((v as u32) >> s) & 0xf;
    d(12) * 1000 + d(8) * 100 + d(4) * 10 + d(0)
}

fn bin_to_bcd(v: u32) -> u16 {
    let v = v % 10000;
    ((v / 1000) << 12 | (v / 100 % 10) << 8 | (v / 10 % 10) << 4 | v % 10) as u16
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Channel {
    /// Mode as written (0..8).
    mode_raw: u8,
    /// 1 = LSB, 2 = MSB, 3 = LSB then MSB.
    access: u8,
    bcd: bool,
    /// Count register (raw, as the guest wrote it).
    count_reg: u16,
    /// LSB of a lobyte/hibyte write in progress.
    write_lsb: u8,
    write_msb_next: bool,
    read_msb_next: bool,
    count_latched: bool,
    latch_value: u16,
    latch_msb_next: bool,
    status_latched: bool,
    status: u8,
    gate: bool,
    /// A count is loaded and waits for (or has) a gate trigger (modes 1, 2, 3, 5).
    armed: bool,
    run: u8,
    /// RUN_COUNTING: clock edge that loaded the CE (k = 0). RUN_PAUSED: k at the pause.
    run_tick: u64,
    /// Effective count of the current cycle (1..=65536).
    n: u32,
    /// Effective count for the next trigger/period; 0 = none pending (modes 2/3).
    next_n: u32,
    /// Clock edge at which `next_n` takes over (modes 2/3, while counting).
    next_tick: u64,
    /// CE value shown while idle.
    hold: u16,
    /// OUT while idle (before the CE is loaded).
    idle_out: bool,
    /// NULL COUNT: set until this clock edge (u64::MAX = until a count/trigger).
    null_until: u64,
}

impl Channel {
    fn new(gate: bool) -> Self {
        Channel {
            mode_raw: 0,
            access: 3,
            bcd: false,
            count_reg: 0,
            write_lsb: 0,
            write_msb_next: false,
            read_msb_next: false,
            count_latched: false,
            latch_value: 0,
            latch_msb_next: false,
            status_latched: false,
            status: 0,
            gate,
            armed: false,
            run: RUN_IDLE,
            run_tick: 0,
            n: 65536,
            next_n: 0,
            next_tick: 0,
            hold: 0,
            idle_out: false,
            null_until: u64::MAX,
        }
    }

    fn mode(&self) -> u8 {
        if self.mode_raw >= 6 {
            self.mode_raw - 4
        } else {
            self.mode_raw
        }
    }

    fn modulus(&self) -> u32 {
        if self.bcd { 10000 } else { 65536 }
    }

    /// The count register as a number of clocks.
    fn effective(&self) -> u32 {
        let v = if self.bcd {
            bcd_to_bin(self.count_reg)
        } else {
            self.count_reg as u32
        };
        if v == 0 { self.modulus() } else { v }
    }

    /// Period of modes 2/3.
    fn period(&self) -> u64 {
        self.n.max(2) as u64
    }

    /// Apply a pending mode 2/3 reload that is due at `t`.
    fn sync(&mut self, t: u64) {
        if self.run == RUN_COUNTING && self.next_n != 0 && t >= self.next_tick {
            self.n = self.next_n;
            self.run_tick = self.next_tick;
            self.next_n = 0;
        }
    }

    /// k (clocks since the CE was loaded) at edge `t`, if the CE is loaded.
    fn k_at(&self, t: u64) -> Option<u64> {
        match self.run {
            RUN_COUNTING if t >= self.run_tick => Some(t - self.run_tick),
            RUN_PAUSED => Some(self.run_tick),
            _ => None,
        }
    }

    fn out_k(&self, k: u64) -> bool {
        let n = self.n as u64;
        match self.mode() {
            0 | 1 => k >= n,
            2 => {
                let p = self.period();
                k % p != p - 1
            }
            3 => {
                let p = self.period();
                k % p < p.div_ceil(2)
            }
            _ => k != n,
        }
    }

    fn ce_k(&self, k: u64) -> u32 {
        let m = self.modulus() as u64;
        let v = match self.mode() {
            2 => {
                let p = self.period();
                p - k % p
            }
            3 => {
                let p = self.period();
                let pos = k % p;
                let high = p.div_ceil(2);
                let j = if pos < high { pos } else { pos - high };
                ((p & !1).saturating_sub(2 * j)).max(2)
            }
            _ => self.n as u64 % m + m - k % m,
        };
        (v % m) as u32
    }

    fn out(&self, t: u64) -> bool {
        match self.k_at(t) {
            Some(k) => {
                if self.run == RUN_PAUSED && matches!(self.mode(), 2 | 3) {
                    true
                } else {
                    self.out_k(k)
                }
            }
            None => self.idle_out,
        }
    }

    /// The CE as the guest reads it (BCD-encoded in BCD mode).
    fn ce(&self, t: u64) -> u16 {
        let v = match self.k_at(t) {
            Some(k) => self.ce_k(k),
            None => return self.hold,
        };
        if self.bcd { bin_to_bcd(v) } else { v as u16 }
    }

    fn start(&mut self, t: u64) {
        self.n = self.effective();
        self.next_n = 0;
        self.run = RUN_COUNTING;
        self.run_tick = t.saturating_add(1);
        self.null_until = self.run_tick;
    }

    fn stop(&mut self, t: u64, idle_out: bool) {
        self.hold = self.ce(t);
        self.run = RUN_IDLE;
        self.next_n = 0;
        self.idle_out = idle_out;
    }

    fn control(&mut self, v: u8, t: u64) {
        self.stop(t, (v >> 1) & 7 != 0);
        self.access = (v >> 4) & 3;
        self.mode_raw = (v >> 1) & 7;
        self.bcd = v & 1 != 0;
        self.write_msb_next = false;
        self.read_msb_next = false;
        self.count_latched = false;
        self.latch_msb_next = false;
        self.status_latched = false;
        self.armed = false;
        self.null_until = u64::MAX;
    }

    fn write(&mut self, v: u8, t: u64) {
        let value = match self.access {
            1 => v as u16,
            2 => (v as u16) << 8,
            _ => {
                if !self.write_msb_next {
                    self.write_lsb = v;
                    self.write_msb_next = true;
                    if self.mode() == 0 && self.run != RUN_IDLE {
                        self.stop(t, false);
                    }
                    return;
                }
                self.write_msb_next = false;
                self.write_lsb as u16 | (v as u16) << 8
            }
        };
        self.count_reg = value;
        self.load_count(t);
    }

    fn load_count(&mut self, t: u64) {
        match self.mode() {
            0 | 4 => {
                self.idle_out = self.mode() != 0;
                self.start(t);
                if !self.gate {
                    self.run = RUN_PAUSED;
                    self.run_tick = 0;
                }
            }
            2 | 3 => {
                self.armed = true;
                if let (Some(k), true) = (self.k_at(t), self.run == RUN_COUNTING) {
                    let p = self.period();
                    self.next_n = self.effective();
                    self.next_tick = self
                        .run_tick
                        .saturating_add((k / p).saturating_add(1).saturating_mul(p));
                    self.null_until = self.next_tick;
                } else if self.gate {
                    self.start(t);
                } else {
                    self.null_until = u64::MAX;
                }
            }
            _ => {
                // Modes 1 and 5 wait for a gate trigger.
                self.armed = true;
                self.null_until = u64::MAX;
            }
        }
    }

    fn set_gate(&mut self, level: bool, t: u64) {
        let was = self.gate;
        self.gate = level;
        match (self.mode(), was, level) {
            (0 | 4, true, false) => {
                if let Some(k) = self.k_at(t) {
                    self.run = RUN_PAUSED;
                    self.run_tick = k;
                }
            }
            (0 | 4, false, true) => {
                if self.run == RUN_PAUSED {
                    self.run = RUN_COUNTING;
                    self.run_tick = t.saturating_sub(self.run_tick);
                }
            }
            (2 | 3, true, false) => {
                if self.run == RUN_COUNTING {
                    self.stop(t, true);
                }
            }
            (1 | 2 | 3 | 5, false, true) => {
                if self.armed {
                    if self.next_n != 0 {
                        self.next_n = 0;
                    }
                    self.start(t);
                }
            }
            _ => {}
        }
    }

    fn latch_count(&mut self, t: u64) {
        if !self.count_latched {
            self.count_latched = true;
            self.latch_value = self.ce(t);
            self.latch_msb_next = false;
        }
    }

    fn latch_status(&mut self, t: u64) {
        if !self.status_latched {
            self.status_latched = true;
            self.status = (self.out(t) as u8) << 7
                | ((t < self.null_until) as u8) << 6
                | self.access << 4
                | self.mode_raw << 1
                | self.bcd as u8;
        }
    }

    fn read(&mut self, t: u64) -> u8 {
        if self.status_latched {
            self.status_latched = false;
            return self.status;
        }
        let (value, msb) = if self.count_latched {
            let msb = match self.access {
                1 => false,
                2 => true,
                _ => self.latch_msb_next,
            };
            if self.access == 3 && !msb {
                self.latch_msb_next = true;
            } else {
                self.count_latched = false;
            }
            (self.latch_value, msb)
        } else {
            let msb = match self.access {
                1 => false,
                2 => true,
                _ => {
                    let m = self.read_msb_next;
                    self.read_msb_next = !m;
                    m
                }
            };
            (self.ce(t), msb)
        };
        if msb { (value >> 8) as u8 } else { value as u8 }
    }

    /// Clocks k (since load) of OUT's rising edges: one-shot edge, or period.
    fn rise_shape(&self) -> Option<Result<u64, u64>> {
        if self.run != RUN_COUNTING {
            return None;
        }
        let n = self.n as u64;
        Some(match self.mode() {
            0 | 1 => Ok(n),
            2 | 3 => Err(self.period()),
            _ => Ok(n + 1),
        })
    }

    /// OUT rising edges at clock edges in (after, upto].
    fn rises(&self, after: u64, upto: u64) -> u64 {
        let Some(shape) = self.rise_shape() else {
            return 0;
        };
        let lo_t = after.saturating_add(1).max(self.run_tick);
        if upto < lo_t {
            return 0;
        }
        let (lo, hi) = (lo_t - self.run_tick, upto - self.run_tick);
        match shape {
            Ok(kr) => (lo <= kr && kr <= hi) as u64,
            Err(p) => {
                let lo = lo.max(p);
                if hi < lo { 0 } else { hi / p - (lo - 1) / p }
            }
        }
    }

    /// The first OUT rising edge at a clock edge after `after`.
    fn next_rise(&self, after: u64) -> Option<u64> {
        let shape = self.rise_shape()?;
        let lo = after.saturating_add(1).max(self.run_tick) - self.run_tick;
        let k = match shape {
            Ok(kr) if kr >= lo => kr,
            Ok(_) => return None,
            Err(p) => lo.div_ceil(p).max(1).saturating_mul(p),
        };
        Some(self.run_tick.saturating_add(k))
    }
}

/// The PC's 8254 PIT (ports 0x40–0x43) and the timer bits of port 0x61.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pit8254 {
    ch: [Channel; 3],
    /// Writable bits 0–3 of port 0x61.
    port61: u8,
    /// Latest clock edge seen (times are clamped to be monotonic).
    last_tick: u64,
    /// IRQ0 edges at clock edges up to this one have been counted.
    irq0_counted: u64,
    /// Counted IRQ0 edges not yet collected by `irq0_edges`.
    irq0_unreported: u64,
}

impl Default for Pit8254 {
    fn default() -> Self {
        Self::new()
    }
}

impl Pit8254 {
    pub fn new() -> Self {
        Pit8254 {
            ch: [Channel::new(true), Channel::new(true), Channel::new(false)],
            port61: 0,
            last_tick: 0,
            irq0_counted: 0,
            irq0_unreported: 0,
        }
    }

    /// Advance to `now_ns`: count channel 0's IRQ0 edges under the current programming
    /// and apply due reloads. Returns the current clock edge.
    fn advance(&mut self, now_ns: u64) -> u64 {
        let t = tick_at(now_ns).max(self.last_tick);
        self.last_tick = t;
        let c0 = &mut self.ch[0];
        if c0.run == RUN_COUNTING && c0.next_n != 0 && c0.next_tick <= t {
            let due = c0.next_tick;
            let r = c0.rises(self.irq0_counted, due);
            self.irq0_unreported = self.irq0_unreported.saturating_add(r);
            self.irq0_counted = self.irq0_counted.max(due);
        }
        for c in self.ch.iter_mut() {
            c.sync(t);
        }
        let r = self.ch[0].rises(self.irq0_counted, t);
        self.irq0_unreported = self.irq0_unreported.saturating_add(r);
        self.irq0_counted = t;
        t
    }

    /// A byte read from 0x40–0x43 or 0x61; other ports read 0xff.
    pub fn pio_read(&mut self, port: u16, now_ns: u64) -> u8 {
        let t = self.advance(now_ns);
        match port {
            0x40..=0x42 => match self.ch.get_mut((port - 0x40) as usize) {
                Some(c) => c.read(t),
                None => 0xff,
            },
            PORT_61 => self.port61_value(t),
            // The control word register cannot be read.
            _ => 0xff,
        }
    }

    /// A byte written to 0x40–0x43 or 0x61; other ports are ignored.
    pub fn pio_write(&mut self, port: u16, v: u8, now_ns: u64) {
        let t = self.advance(now_ns);
        match port {
            0x40..=0x42 => {
                if let Some(c) = self.ch.get_mut((port - 0x40) as usize) {
                    c.write(v, t);
                }
            }
            PORT_MODE => {
                let sel = v >> 6;
                if sel == 3 {
                    for (i, c) in self.ch.iter_mut().enumerate() {
                        if v & (2 << i) != 0 {
                            if v & 0x10 == 0 {
                                c.latch_status(t);
                            }
                            if v & 0x20 == 0 {
                                c.latch_count(t);
                            }
                        }
                    }
                } else if let Some(c) = self.ch.get_mut(sel as usize) {
                    if v & 0x30 == 0 {
                        c.latch_count(t);
                    } else {
                        c.control(v, t);
                    }
                }
            }
            PORT_61 => {
                self.port61 = v & 0x0f;
                self.ch[2].set_gate(v & P61_GATE2 != 0, t);
            }
            _ => {}
        }
    }

    fn port61_value(&self, t: u64) -> u8 {
        let refresh = (t / REFRESH_TICKS) & 1 != 0;
        self.port61 | (refresh as u8) << 4 | (self.ch[2].out(t) as u8) << 5
    }

    /// Channel `ch`'s OUT at `now_ns` (false for a channel that does not exist).
    pub fn out(&mut self, ch: usize, now_ns: u64) -> bool {
        let t = self.advance(now_ns);
        self.ch.get(ch).is_some_and(|c| c.out(t))
    }

    /// Whether the speaker is driven (port 0x61 bits 0 and 1 both set).
    pub fn speaker_enabled(&self) -> bool {
        self.port61 & (P61_GATE2 | P61_SPEAKER) == P61_GATE2 | P61_SPEAKER
    }

    /// Guest time of the next IRQ0 rising edge not yet collected by [`Self::irq0_edges`],
    /// or `None` if channel 0 will not produce one without being reprogrammed. The result
    /// is at or before `now_ns` when an edge is already due.
    pub fn next_irq0_deadline(&self, now_ns: u64) -> Option<u64> {
        if self.irq0_unreported > 0 {
            return Some(ns_of_tick(self.irq0_counted).min(now_ns));
        }
        self.ch[0].next_rise(self.irq0_counted).map(ns_of_tick)
    }

    /// Collect the IRQ0 rising edges that happened up to `now_ns` and were not collected
    /// before. A run loop pulses IRQ0 when this is nonzero (more than one means ticks
    /// were missed and are coalesced, or the caller may replay them).
    pub fn irq0_edges(&mut self, now_ns: u64) -> u64 {
        self.advance(now_ns);
        core::mem::take(&mut self.irq0_unreported)
    }

    /// [`Self::irq0_edges`] as a yes/no.
    pub fn irq0_pending(&mut self, now_ns: u64) -> bool {
        self.irq0_edges(now_ns) > 0
    }
}

impl Snapshot for Pit8254 {
    const NAME: &'static str = "i8254";
    const VERSION: u16 = 1;

    /// v1: port61 u8, last_tick u64, irq0_counted u64, irq0_unreported u64, then per
    /// channel: mode_raw, access, bcd, count_reg u16, write_lsb, write_msb_next,
    /// read_msb_next, count_latched, latch_value u16, latch_msb_next, status_latched,
    /// status, gate, armed, run, run_tick u64, n u32, next_n u32, next_tick u64, hold
    /// u16, idle_out, null_until u64 (u8/bool unless stated).
    fn save(&self, w: &mut RecordWriter) {
        w.u8(self.port61);
        w.u64(self.last_tick);
        w.u64(self.irq0_counted);
        w.u64(self.irq0_unreported);
        for c in &self.ch {
            w.u8(c.mode_raw);
            w.u8(c.access);
            w.bool(c.bcd);
            w.u16(c.count_reg);
            w.u8(c.write_lsb);
            w.bool(c.write_msb_next);
            w.bool(c.read_msb_next);
            w.bool(c.count_latched);
            w.u16(c.latch_value);
            w.bool(c.latch_msb_next);
            w.bool(c.status_latched);
            w.u8(c.status);
            w.bool(c.gate);
            w.bool(c.armed);
            w.u8(c.run);
            w.u64(c.run_tick);
            w.u32(c.n);
            w.u32(c.next_n);
            w.u64(c.next_tick);
            w.u16(c.hold);
            w.bool(c.idle_out);
            w.u64(c.null_until);
        }
    }

    fn load(&mut self, _version: u16, r: &mut RecordReader<'_>) -> Result<(), LoadError> {
        let name = Self::NAME;
        let bad = |field| LoadError::Invalid { name, field };
        let port61 = r.u8()?;
        if port61 & !0x0f != 0 {
            return Err(bad("port61"));
        }
        let last_tick = r.u64()?;
        let irq0_counted = r.u64()?;
        let irq0_unreported = r.u64()?;
        let mut chs = self.ch.clone();
        for c in chs.iter_mut() {
            *c = Channel {
                mode_raw: r.u8()?,
                access: r.u8()?,
                bcd: r.bool(name, "bcd")?,
                count_reg: r.u16()?,
                write_lsb: r.u8()?,
                write_msb_next: r.bool(name, "write_msb_next")?,
                read_msb_next: r.bool(name, "read_msb_next")?,
                count_latched: r.bool(name, "count_latched")?,
                latch_value: r.u16()?,
                latch_msb_next: r.bool(name, "latch_msb_next")?,
                status_latched: r.bool(name, "status_latched")?,
                status: r.u8()?,
                gate: r.bool(name, "gate")?,
                armed: r.bool(name, "armed")?,
                run: r.u8()?,
                run_tick: r.u64()?,
                n: r.u32()?,
                next_n: r.u32()?,
                next_tick: r.u64()?,
                hold: r.u16()?,
                idle_out: r.bool(name, "idle_out")?,
                null_until: r.u64()?,
            };
            if c.mode_raw > 7 {
                return Err(bad("mode"));
            }
            if !(1..=3).contains(&c.access) {
                return Err(bad("access"));
            }
            if c.run > RUN_PAUSED {
                return Err(bad("run"));
            }
            if !(1..=65536).contains(&c.n) || c.next_n > 65536 {
                return Err(bad("n"));
            }
        }
        if !chs[0].gate || !chs[1].gate {
            return Err(bad("gate"));
        }
        if chs[2].gate != (port61 & P61_GATE2 != 0) {
            return Err(bad("gate"));
        }
        self.ch = chs;
        self.port61 = port61;
        self.last_tick = last_tick;
        self.irq0_counted = irq0_counted;
        self.irq0_unreported = irq0_unreported;
        Ok(())
    }
}

#[cfg(test)]
extern crate alloc;

#[cfg(test)]
fn interesting_pit() -> Pit8254 {
    let mut p = Pit8254::new();
    p.pio_write(PORT_MODE, 0x34, 1000);
    p.pio_write(PORT_COUNTER0, 0x9b, 1000);
    p.pio_write(PORT_COUNTER0, 0x2e, 1000);
    p.pio_write(PORT_61, 0x01, 2000);
    p.pio_write(PORT_MODE, 0xb1, 3000);
    p.pio_write(PORT_COUNTER2, 0x34, 3000);
    p.pio_write(PORT_MODE, 0xe4, 50_000);
    let _ = p.pio_read(PORT_COUNTER2, 60_000);
    p
}

chassis_devices::snapshot_tests!(pit_snapshot, Pit8254, interesting_pit(), Pit8254::new());

#[cfg(test)]
mod tests {
    use super::*;
    use chassis_devices::snapshot::{load_record, save_record};

    const T0: u64 = 1_000_000;

    /// SeaBIOS `tsctimer_setup`: channel 2, mode 0, count 0x800, poll port 0x61 bit 5.
    #[test]
    fn seabios_tsc_calibration() {
        let mut p = Pit8254::new();
        let orig = p.pio_read(PORT_61, T0);
        p.pio_write(PORT_61, (orig & !P61_SPEAKER) | P61_GATE2, T0);
        p.pio_write(PORT_MODE, 0xb0, T0);
        p.pio_write(PORT_COUNTER2, 0x00, T0);
        p.pio_write(PORT_COUNTER2, 0x08, T0);
        // tick_at(T0) = 1193; OUT rises at clock 1193 + 1 + 0x800 = 3242 = 2_717_105 ns.
        assert_eq!(tick_at(T0), 1193);
        assert_eq!(ns_of_tick(3242), 2_717_105);
        let mut now = T0;
        let mut polls = 0u32;
        while p.pio_read(PORT_61, now) & P61_OUT2 == 0 {
            now += 997;
            polls += 1;
            assert!(polls < 10_000);
        }
        assert_eq!(polls, (2_717_105 - T0).div_ceil(997) as u32);
        assert_eq!(p.pio_read(PORT_61, 2_717_104) & P61_OUT2, P61_OUT2);
        let mut q = Pit8254::new();
        q.pio_write(PORT_61, P61_GATE2, T0);
        q.pio_write(PORT_MODE, 0xb0, T0);
        q.pio_write(PORT_COUNTER2, 0x00, T0);
        q.pio_write(PORT_COUNTER2, 0x08, T0);
        assert_eq!(q.pio_read(PORT_61, 2_717_104) & P61_OUT2, 0);
        assert_eq!(q.pio_read(PORT_61, 2_717_105) & P61_OUT2, P61_OUT2);
        p.pio_write(PORT_61, orig, now);
        assert_eq!(p.pio_read(PORT_61, now) & 0x0f, orig & 0x0f);
    }

    /// Linux `pit_calibrate_tsc(CAL_LATCH = 11931, ...)`: the same with a 10 ms latch.
    #[test]
    fn linux_pit_calibrate_tsc() {
        let mut p = Pit8254::new();
        let v = p.pio_read(PORT_61, T0);
        p.pio_write(PORT_61, (v & !0x02) | 0x01, T0);
        p.pio_write(PORT_MODE, 0xb0, T0);
        p.pio_write(PORT_COUNTER2, (11931 & 0xff) as u8, T0);
        p.pio_write(PORT_COUNTER2, (11931 >> 8) as u8, T0);
        let mut now = T0;
        let mut pitcnt = 0u32;
        while p.pio_read(PORT_61, now) & 0x20 == 0 {
            now += 1000;
            pitcnt += 1;
            assert!(pitcnt < 100_000);
        }
        // Clock 1193 + 1 + 11931 = 13125 is at 10_999_999 ns.
        assert_eq!(ns_of_tick(13125), 10_999_999);
        assert_eq!(now, 11_000_000);
        assert_eq!(pitcnt, 10_000);
        // Mode 0 keeps counting after terminal count: 0, then 0xffff, 0xfffe, ...
        p.pio_write(PORT_MODE, 0x80, ns_of_tick(13125 + 2));
        assert_eq!(p.pio_read(PORT_COUNTER2, 0), 0xfe);
        assert_eq!(p.pio_read(PORT_COUNTER2, 0), 0xff);
    }

    /// Linux `quick_pit_calibrate`: mode 0 from 0xffff, unlatched LSB/MSB reads.
    #[test]
    fn linux_quick_pit_calibrate_msb_reads() {
        let mut p = Pit8254::new();
        let v = p.pio_read(PORT_61, T0);
        p.pio_write(PORT_61, (v & !0x02) | 0x01, T0);
        p.pio_write(PORT_MODE, 0xb0, T0);
        p.pio_write(PORT_COUNTER2, 0xff, T0);
        p.pio_write(PORT_COUNTER2, 0xff, T0);
        // pit_verify_msb(0): not loaded yet at the write's own clock, the CE reads as
        // held (0 after the control word) -- Linux only checks MSB == 0 here.
        let _ = p.pio_read(PORT_COUNTER2, T0);
        assert_eq!(p.pio_read(PORT_COUNTER2, T0), 0);
        // pit_expect_msb(0xff - i): the MSB is 0xff - i for clocks 256*i .. 256*i + 255
        // after the load edge (1194).
        for i in 0u64..64 {
            for off in [0u64, 128, 255] {
                let t = ns_of_tick(1194 + 256 * i + off);
                let lsb = p.pio_read(PORT_COUNTER2, t);
                let msb = p.pio_read(PORT_COUNTER2, t);
                assert_eq!(msb as u64, 0xff - i, "i={i} off={off}");
                assert_eq!(lsb as u64, 0xff - off);
            }
        }
    }

    /// The 18.2 Hz BIOS timer (mode 2, count 0) and a Linux HZ=250 periodic tick.
    #[test]
    fn periodic_irq0() {
        let mut p = Pit8254::new();
        assert_eq!(p.next_irq0_deadline(0), None);
        p.pio_write(PORT_MODE, 0x34, T0);
        p.pio_write(PORT_COUNTER0, 0, T0);
        p.pio_write(PORT_COUNTER0, 0, T0);
        let first = ns_of_tick(1194 + 65536);
        assert_eq!(p.next_irq0_deadline(T0), Some(first));
        assert!(!p.irq0_pending(first - 1));
        assert_eq!(p.irq0_edges(first), 1);
        assert_eq!(
            p.next_irq0_deadline(first),
            Some(ns_of_tick(1194 + 2 * 65536))
        );
        // SeaBIOS-style read-back of counter 0's count (0xd2) and a status (0xe2).
        p.pio_write(PORT_MODE, 0xd2, ns_of_tick(1194 + 65536 + 100));
        let lo = p.pio_read(PORT_COUNTER0, u64::MAX / 2) as u16;
        let hi = p.pio_read(PORT_COUNTER0, u64::MAX / 2) as u16;
        assert_eq!(lo | hi << 8, 65536u32.wrapping_sub(100) as u16);
        // Time went far ahead (clamped monotonic from here on): edges coalesce.
        assert!(p.irq0_edges(u64::MAX / 2) > 1000);

        // Linux: LATCH for HZ=250 is 4773; in one second of guest time, 1193182 / 4773
        // periods (rounded down), each edge reported once however the loop polls.
        let mut q = Pit8254::new();
        q.pio_write(PORT_MODE, 0x34, 0);
        q.pio_write(PORT_COUNTER0, (4773 & 0xff) as u8, 0);
        q.pio_write(PORT_COUNTER0, (4773 >> 8) as u8, 0);
        let mut total = 0;
        let mut now = 0;
        let mut loops = 0;
        while let Some(d) = q.next_irq0_deadline(now) {
            if d > 1_000_000_000 {
                break;
            }
            now = d;
            let e = q.irq0_edges(now);
            assert_eq!(e, 1);
            total += e;
            loops += 1;
            assert!(loops < 1000);
        }
        // Edges at clocks 1 + 4773 m <= 1193182.
        assert_eq!(total, (1_193_182 - 1) / 4773);
        // Polling at arbitrary times gives the same total.
        let mut r = Pit8254::new();
        r.pio_write(PORT_MODE, 0x34, 0);
        r.pio_write(PORT_COUNTER0, (4773 & 0xff) as u8, 0);
        r.pio_write(PORT_COUNTER0, (4773 >> 8) as u8, 0);
        let mut sum = 0;
        for i in 1..=777u64 {
            sum += r.irq0_edges(i * 1_000_000_000 / 777);
        }
        assert_eq!(sum, total);
    }

    #[test]
    fn one_shot_irq0_modes_0_and_4() {
        let mut p = Pit8254::new();
        p.pio_write(PORT_MODE, 0x30, T0);
        p.pio_write(PORT_COUNTER0, 100, T0);
        p.pio_write(PORT_COUNTER0, 0, T0);
        assert!(!p.out(0, T0));
        let d = ns_of_tick(1194 + 100);
        assert_eq!(p.next_irq0_deadline(T0), Some(d));
        assert!(!p.out(0, d - 1));
        assert!(p.out(0, d));
        assert_eq!(p.irq0_edges(d + 10_000_000), 1);
        assert_eq!(p.next_irq0_deadline(d), None);
        // Linux's oneshot clockevent: mode 4 (0x38); the edge ends the strobe.
        let mut q = Pit8254::new();
        q.pio_write(PORT_MODE, 0x38, T0);
        q.pio_write(PORT_COUNTER0, 50, T0);
        q.pio_write(PORT_COUNTER0, 0, T0);
        assert_eq!(q.next_irq0_deadline(T0), Some(ns_of_tick(1194 + 51)));
        let mut q2 = q.clone();
        assert!(q.out(0, ns_of_tick(1194 + 49)));
        assert!(!q.out(0, ns_of_tick(1194 + 50)));
        assert!(q.out(0, ns_of_tick(1194 + 51)));
        // Once due, the deadline reads as overdue (at or before now).
        assert_eq!(q.next_irq0_deadline(T0), Some(T0));
        assert_eq!(q.irq0_edges(ns_of_tick(1194 + 51)), 1);
        // Reprogramming before the edge replaces it; an edge already counted stays.
        q2.pio_write(PORT_COUNTER0, 10, ns_of_tick(1200));
        q2.pio_write(PORT_COUNTER0, 0, ns_of_tick(1200));
        assert_eq!(q2.next_irq0_deadline(0), Some(ns_of_tick(1201 + 11)));
        q2.pio_write(PORT_MODE, 0x30, ns_of_tick(1300));
        assert_eq!(q2.irq0_edges(ns_of_tick(5000)), 1);
        assert_eq!(q2.next_irq0_deadline(ns_of_tick(5000)), None);
    }

    #[test]
    fn mode2_new_count_applies_at_period_end() {
        let mut p = Pit8254::new();
        p.pio_write(PORT_MODE, 0x34, 0);
        p.pio_write(PORT_COUNTER0, 100, 0);
        p.pio_write(PORT_COUNTER0, 0, 0);
        // Load at clock 1: edges at 101, 201, ...; write 50 at clock 150.
        p.pio_write(PORT_COUNTER0, 50, ns_of_tick(150));
        p.pio_write(PORT_COUNTER0, 0, ns_of_tick(150));
        p.pio_write(PORT_MODE, 0xe2, ns_of_tick(150));
        assert_eq!(p.pio_read(PORT_COUNTER0, 0) & 0x40, 0x40, "NULL COUNT");
        // The edge at clock 101 happened before the write: due already.
        assert_eq!(p.next_irq0_deadline(ns_of_tick(150)), Some(ns_of_tick(150)));
        assert_eq!(p.irq0_edges(ns_of_tick(200)), 1);
        assert_eq!(p.next_irq0_deadline(0), Some(ns_of_tick(201)));
        assert_eq!(p.irq0_edges(ns_of_tick(201)), 1);
        assert_eq!(p.next_irq0_deadline(0), Some(ns_of_tick(251)));
        assert_eq!(p.irq0_edges(ns_of_tick(400)), 3);
        p.pio_write(PORT_MODE, 0xe2, ns_of_tick(400));
        assert_eq!(
            p.pio_read(PORT_COUNTER0, 0),
            0x34,
            "OUT low one clock before 401"
        );
        p.pio_write(PORT_MODE, 0xe2, ns_of_tick(410));
        assert_eq!(
            p.pio_read(PORT_COUNTER0, 0),
            0x80 | 0x34,
            "OUT high, count loaded"
        );
        // Mode 2: OUT low exactly one clock before each reload.
        assert!(!p.out(0, ns_of_tick(450)));
        assert!(p.out(0, ns_of_tick(451)));
        assert!(p.out(0, ns_of_tick(449)));
    }

    #[test]
    fn mode3_square_wave_and_gate() {
        let mut p = Pit8254::new();
        p.pio_write(PORT_61, P61_GATE2, 0);
        p.pio_write(PORT_MODE, 0xb6, 0);
        p.pio_write(PORT_COUNTER2, 10, 0);
        p.pio_write(PORT_COUNTER2, 0, 0);
        let outs: alloc::vec::Vec<bool> = (1..=21).map(|t| p.out(2, ns_of_tick(t))).collect();
        let expect = [
            true, true, true, true, true, false, false, false, false, false,
        ];
        assert_eq!(&outs[..10], &expect);
        assert_eq!(&outs[10..20], &expect);
        p.pio_write(PORT_MODE, 0x80, ns_of_tick(23));
        assert_eq!(p.pio_read(PORT_COUNTER2, 0), 6, "k = 2: CE 10 - 2*2");
        // Gate low: OUT high, counting stops; gate high reloads on the next clock.
        p.pio_write(PORT_61, 0, ns_of_tick(27));
        assert!(p.out(2, ns_of_tick(40)));
        p.pio_write(PORT_61, P61_GATE2, ns_of_tick(40));
        assert!(p.out(2, ns_of_tick(45)));
        assert!(!p.out(2, ns_of_tick(46)));
        assert!(!p.speaker_enabled());
    }

    #[test]
    fn mode1_and_mode5_gate_triggered() {
        let mut p = Pit8254::new();
        p.pio_write(PORT_MODE, 0xb2, 0);
        p.pio_write(PORT_COUNTER2, 5, 0);
        p.pio_write(PORT_COUNTER2, 0, 0);
        assert!(p.out(2, ns_of_tick(100)), "waits for a trigger");
        p.pio_write(PORT_61, P61_GATE2 | P61_SPEAKER, ns_of_tick(100));
        assert!(p.speaker_enabled());
        assert!(p.out(2, ns_of_tick(100)));
        assert!(!p.out(2, ns_of_tick(101)));
        assert!(!p.out(2, ns_of_tick(105)));
        assert!(p.out(2, ns_of_tick(106)));
        // Retrigger.
        p.pio_write(PORT_61, 0, ns_of_tick(110));
        p.pio_write(PORT_61, 1, ns_of_tick(111));
        assert!(!p.out(2, ns_of_tick(113)));
        assert!(p.out(2, ns_of_tick(117)));
        // Mode 5.
        p.pio_write(PORT_MODE, 0xba, ns_of_tick(200));
        p.pio_write(PORT_COUNTER2, 3, ns_of_tick(200));
        p.pio_write(PORT_COUNTER2, 0, ns_of_tick(200));
        p.pio_write(PORT_61, 0, ns_of_tick(201));
        p.pio_write(PORT_61, 1, ns_of_tick(202));
        assert!(p.out(2, ns_of_tick(205)));
        assert!(!p.out(2, ns_of_tick(206)));
        assert!(p.out(2, ns_of_tick(207)));
    }

    #[test]
    fn access_modes_latch_and_readback() {
        let mut p = Pit8254::new();
        // LSB only: MSB is 0.
        p.pio_write(PORT_MODE, 0x50, 0);
        p.pio_write(0x41, 0x80, 0);
        assert_eq!(p.pio_read(0x41, ns_of_tick(1)), 0x80);
        assert_eq!(p.pio_read(0x41, ns_of_tick(3)), 0x7e);
        // MSB only: LSB is 0; reads give the MSB.
        p.pio_write(PORT_MODE, 0x60, ns_of_tick(10));
        p.pio_write(0x41, 0x02, ns_of_tick(10));
        assert_eq!(p.pio_read(0x41, ns_of_tick(11)), 0x02);
        assert_eq!(p.pio_read(0x41, ns_of_tick(12)), 0x01);
        // Latch holds across time; a second latch before reading is ignored.
        p.pio_write(PORT_MODE, 0x70, ns_of_tick(20));
        p.pio_write(0x41, 0x00, ns_of_tick(20));
        p.pio_write(0x41, 0x10, ns_of_tick(20));
        p.pio_write(PORT_MODE, 0x40, ns_of_tick(31));
        p.pio_write(PORT_MODE, 0x40, ns_of_tick(40));
        assert_eq!(p.pio_read(0x41, ns_of_tick(50)), 0xf6);
        assert_eq!(p.pio_read(0x41, ns_of_tick(50)), 0x0f);
        // Unlatched now: 0x1000 - 29.
        assert_eq!(p.pio_read(0x41, ns_of_tick(50)), 0xe3);
        assert_eq!(p.pio_read(0x41, ns_of_tick(50)), 0x0f);
        // Read-back status and count of counter 1: status first, then count.
        p.pio_write(PORT_MODE, 0xc4, ns_of_tick(60));
        assert_eq!(
            p.pio_read(0x41, 0),
            0x30,
            "OUT low, loaded, lohi, mode 0, binary"
        );
        assert_eq!(p.pio_read(0x41, 0), 0xd9, "0x1000 - 39");
        assert_eq!(p.pio_read(0x41, 0), 0x0f);
        // Status of a freshly programmed counter shows NULL COUNT.
        p.pio_write(PORT_MODE, 0x74, ns_of_tick(70));
        p.pio_write(PORT_MODE, 0xe4, ns_of_tick(70));
        assert_eq!(p.pio_read(0x41, 0), 0xc0 | 0x34);
        // Control register and unknown ports read 0xff; writes there are ignored.
        assert_eq!(p.pio_read(PORT_MODE, 0), 0xff);
        assert_eq!(p.pio_read(0x44, 0), 0xff);
        p.pio_write(0x44, 0, 0);
    }

    #[test]
    fn lohi_first_byte_stops_mode0() {
        let mut p = Pit8254::new();
        p.pio_write(PORT_MODE, 0x30, 0);
        p.pio_write(PORT_COUNTER0, 10, 0);
        p.pio_write(PORT_COUNTER0, 0, 0);
        assert!(p.out(0, ns_of_tick(11)));
        p.pio_write(PORT_COUNTER0, 20, ns_of_tick(12));
        assert!(!p.out(0, ns_of_tick(100)), "stopped, OUT low");
        p.pio_write(PORT_COUNTER0, 0, ns_of_tick(100));
        assert!(!p.out(0, ns_of_tick(120)));
        assert!(p.out(0, ns_of_tick(121)));
        assert_eq!(p.irq0_edges(ns_of_tick(200)), 2);
    }

    #[test]
    fn bcd_counting() {
        let mut p = Pit8254::new();
        p.pio_write(PORT_MODE, 0x71, 0);
        p.pio_write(0x41, 0x00, 0);
        p.pio_write(0x41, 0x10, 0); // 1000 decimal
        p.pio_write(PORT_MODE, 0x40, ns_of_tick(1 + 1));
        assert_eq!(p.pio_read(0x41, 0), 0x99);
        assert_eq!(p.pio_read(0x41, 0), 0x09);
        assert!(!p.out(1, ns_of_tick(1000)));
        assert!(p.out(1, ns_of_tick(1001)));
        // Count 0 in BCD is 10000; after terminal count it wraps to 9999.
        p.pio_write(PORT_MODE, 0x71, ns_of_tick(2000));
        p.pio_write(0x41, 0, ns_of_tick(2000));
        p.pio_write(0x41, 0, ns_of_tick(2000));
        assert!(p.out(1, ns_of_tick(12001)));
        p.pio_write(PORT_MODE, 0x40, ns_of_tick(12002));
        assert_eq!(p.pio_read(0x41, 0), 0x99);
        assert_eq!(p.pio_read(0x41, 0), 0x99);
    }

    #[test]
    fn count_zero_is_65536_and_refresh_toggles() {
        let mut p = Pit8254::new();
        p.pio_write(PORT_MODE, 0x30, 0);
        p.pio_write(PORT_COUNTER0, 0, 0);
        p.pio_write(PORT_COUNTER0, 0, 0);
        assert!(!p.out(0, ns_of_tick(65536)));
        assert!(p.out(0, ns_of_tick(65537)));
        let r = |p: &mut Pit8254, t| p.pio_read(PORT_61, ns_of_tick(t)) & P61_REFRESH;
        assert_eq!(r(&mut p, 70_000 * 18), 0);
        assert_eq!(r(&mut p, 70_000 * 18 + 18), P61_REFRESH);
        assert_eq!(r(&mut p, 70_000 * 18 + 36), 0);
    }

    #[test]
    fn hammer_random_ports() {
        let ports = [0x40u16, 0x41, 0x42, 0x43, 0x61, 0x44];
        let mut seed = 0xfeed_beef_1234_5678u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..40 {
            let mut p = Pit8254::new();
            let mut now = 0u64;
            for _ in 0..4000 {
                let r = next();
                now = match (r >> 56) % 8 {
                    0 => now.wrapping_add(r >> 8),
                    1 => r,
                    _ => now.saturating_add((r >> 40) % 100_000),
                };
                if round == 0 {
                    now = u64::MAX - (r & 0xff);
                }
                let port = ports[(r % ports.len() as u64) as usize];
                match (r >> 8) % 5 {
                    0 | 1 => p.pio_write(port, (r >> 16) as u8, now),
                    2 => {
                        let _ = p.pio_read(port, now);
                    }
                    3 => {
                        let _ = p.next_irq0_deadline(now);
                        let _ = p.out((r >> 20) as usize % 4, now);
                    }
                    _ => {
                        let _ = p.irq0_edges(now);
                    }
                }
            }
            let bytes = save_record(&p, 0);
            let mut q = Pit8254::new();
            load_record(&mut q, &bytes).expect("any reachable state saves and loads");
            assert_eq!(p, q);
        }
    }
}
