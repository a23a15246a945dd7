//! The platform interrupt wiring of the `emu` backend: the 8259A pair, the 8254, the
//! IOAPIC and one local APIC per vCPU (the pure models in `crate::irqchip`), connected
//! the way an i440FX/PIIX board and Xen's HVM platform connect them.
//!
//! * A device GSI below 16 drives the PIC line of the same number and the IOAPIC pin of
//!   the same number (Xen's identity ISA IRQ -> GSI mapping); GSIs 16-23 only the IOAPIC.
//! * The PIT's OUT0 is ISA IRQ 0: PIC line 0 and IOAPIC pin 2 (the MADT's interrupt
//!   source override IRQ0 -> GSI2). Its rising edges are collected when the run loop
//!   polls the timers ([`IrqChip::poll_timers`]) and pulsed onto both.
//! * IOAPIC messages and IPIs go to every local APIC they address (lowest priority:
//!   the addressed APIC with the lowest arbitration priority). A level-triggered EOI
//!   goes back to the IOAPIC as an EOI broadcast.
//! * The PIC's INTR reaches the BSP when its LAPIC accepts it (LVT LINT0 unmasked ExtINT,
//!   or the APIC hardware-disabled: virtual wire mode), and any vCPU that got an ExtINT
//!   message from the IOAPIC. At acknowledge time the PIC wins over the LAPIC (as on KVM).
//! * INIT and STARTUP messages start application processors: INIT resets an AP's LAPIC
//!   and puts it into wait-for-SIPI (the BSP ignores INIT, as with INIT-deassert); the
//!   first STARTUP received while waiting is kept, and the vCPU's run loop acts on both
//!   ([`IrqChip::take_start_event`]). APs power on waiting for a SIPI. NMI and SMI
//!   messages are only counted (the CPU has no NMI input).
//!
//! Everything sits behind one mutex: a delivery touches the IOAPIC and several LAPICs at
//! once, and the accesses are rare next to the instructions between them. Each vCPU has a
//! lock-free "interrupt pending" flag, recomputed under the lock after every change, so
//! the CPU's per-instruction question costs one atomic load; and a condvar wakes halted
//! vCPUs. Lock order: the machine lock before this one, never the reverse.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use chassis_devices::io::Width;

use crate::Error;
use crate::backend::IrqLines;
use crate::irqchip::ioapic::{Delivery, IOAPIC_BASE, IOAPIC_PINS, IOAPIC_SIZE, Ioapic};
use crate::irqchip::lapic::{Accepted, DeliveryMode, Ipi, LAPIC_BASE, LAPIC_SIZE, Lapic, Output};
use crate::irqchip::pic::{self, DualPic};
use crate::irqchip::pit::{self, Pit8254};
use crate::platform::lock;

/// The IOAPIC pin the PIT's IRQ 0 is wired to.
pub const PIT_IOAPIC_PIN: usize = 2;
/// The longest a halted vCPU sleeps before re-checking (a safety net: every wake-up
/// source also notifies).
const MAX_HALT_WAIT: Duration = Duration::from_millis(100);
/// IA32_APIC_BASE.EN.
const APIC_BASE_EN: u64 = 1 << 11;

/// Whether `port` belongs to the interrupt controllers or the PIT (handled here, not by
/// the device model).
pub fn is_local_port(port: u16) -> bool {
    matches!(
        port,
        pic::MASTER_CMD
            | pic::MASTER_DATA
            | pic::SLAVE_CMD
            | pic::SLAVE_DATA
            | pic::ELCR1
            | pic::ELCR2
            | 0x40..=0x43 | pit::PORT_61
    )
}

/// What one vCPU's interrupt inputs hold besides its LAPIC.
#[derive(Debug)]
pub struct CpuIrq {
    pub lapic: Lapic,
    /// An ExtINT message arrived: the next INTA goes to the PIC.
    extint: bool,
    /// NMIs received (not deliverable yet: the CPU contract has no NMI input).
    pub nmis: u64,
    /// An INIT arrived that the vCPU's run loop has not acted on yet.
    pub init: bool,
    /// The AP is in wait-for-SIPI (power-on state of APs; after INIT).
    pub wait_sipi: bool,
    /// The start-up vector received while waiting, not acted on yet.
    pub sipi: Option<u8>,
}

/// What the run loop of an AP must do ([`IrqChip::take_start_event`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartEvent {
    /// INIT: reset the CPU and wait for a SIPI.
    Init,
    /// STARTUP with this vector: start in real mode at `vector * 0x1000`.
    Startup(u8),
}

/// The controllers, under [`IrqChip`]'s lock.
#[derive(Debug)]
pub struct Chips {
    pub pic: DualPic,
    pub pit: Pit8254,
    pub ioapic: Ioapic,
    pub cpus: Vec<CpuIrq>,
    /// The latest guest time any vCPU passed in (host-time vCPU threads read the clock
    /// at slightly different moments; the timer models only ever see it go forward).
    last_now: u64,
}

impl Chips {
    fn mono(&mut self, now_ns: u64) -> u64 {
        self.last_now = self.last_now.max(now_ns);
        self.last_now
    }

    /// Whether vCPU `i` has an INIT or STARTUP to act on.
    fn start_event(&self, i: usize) -> bool {
        self.cpus
            .get(i)
            .is_some_and(|c| c.init || (c.wait_sipi && c.sipi.is_some()))
    }

    /// Whether the PIC's INTR reaches vCPU `i`.
    fn pic_intr(&self, i: usize) -> bool {
        let Some(c) = self.cpus.get(i) else {
            return false;
        };
        self.pic.output() && (c.extint || (c.lapic.is_bsp() && c.lapic.accepts_pic_intr()))
    }

    /// Whether vCPU `i` has a maskable interrupt to take.
    fn pending(&self, i: usize) -> bool {
        self.pic_intr(i)
            || self
                .cpus
                .get(i)
                .is_some_and(|c| c.lapic.pending_vector().is_some())
    }

    /// Hand a message to the LAPICs `targets` selects.
    fn deliver(
        &mut self,
        mode: DeliveryMode,
        vector: u8,
        level_triggered: bool,
        targets: impl Fn(&Lapic) -> bool,
    ) {
        let lowest = if mode == DeliveryMode::LowestPriority {
            // One target: the addressed APIC with the lowest arbitration priority.
            self.cpus
                .iter()
                .enumerate()
                .filter(|(_, c)| targets(&c.lapic))
                .min_by_key(|(_, c)| c.lapic.apr())
                .map(|(i, _)| i)
        } else {
            None
        };
        for (i, c) in self.cpus.iter_mut().enumerate() {
            let chosen = match lowest {
                Some(l) => l == i,
                None => mode != DeliveryMode::LowestPriority && targets(&c.lapic),
            };
            if !chosen {
                continue;
            }
            match c.lapic.deliver(mode, vector, level_triggered) {
                Accepted::Interrupt | Accepted::Dropped | Accepted::Smi => {}
                Accepted::ExtInt => c.extint = true,
                Accepted::Nmi => c.nmis = c.nmis.saturating_add(1),
                Accepted::Init => {
                    if !c.lapic.is_bsp() {
                        c.lapic.init_reset();
                        c.extint = false;
                        c.init = true;
                        c.wait_sipi = true;
                        c.sipi = None;
                    }
                }
                Accepted::StartUp(v) => {
                    if c.wait_sipi && c.sipi.is_none() {
                        c.sipi = Some(v);
                    }
                }
            }
        }
    }

    fn deliver_ioapic(&mut self, d: Delivery) {
        self.deliver(d.mode, d.vector, d.level_triggered, |l| {
            l.is_destination(d.dest_mode, d.dest)
        });
    }

    fn deliver_ipi(&mut self, ipi: Ipi) {
        self.deliver(ipi.mode, ipi.vector, ipi.level_triggered, |l| {
            l.ipi_targets(&ipi)
        });
    }

    fn lapic_output(&mut self, out: Option<Output>) {
        match out {
            Some(Output::Ipi(ipi)) => self.deliver_ipi(ipi),
            Some(Output::EoiBroadcast(v)) => {
                for d in self.ioapic.eoi(v) {
                    self.deliver_ioapic(d);
                }
            }
            None => {}
        }
    }

    /// Drive ISA IRQ / GSI `gsi`.
    fn set_gsi(&mut self, gsi: u32, level: bool) {
        if gsi < 16 {
            self.pic.set_irq(gsi as u8, level);
        }
        if (gsi as usize) < IOAPIC_PINS
            && let Some(d) = self.ioapic.set_irq(gsi as usize, level)
        {
            self.deliver_ioapic(d);
        }
    }

    /// Pulse IRQ 0 (PIC line 0, IOAPIC pin 2).
    fn pulse_irq0(&mut self) {
        self.pic.set_irq(0, true);
        self.pic.set_irq(0, false);
        if let Some(d) = self.ioapic.set_irq(PIT_IOAPIC_PIN, true) {
            self.deliver_ioapic(d);
        }
        self.ioapic.set_irq(PIT_IOAPIC_PIN, false);
    }
}

/// The interrupt controllers and platform timers of one `emu` VM.
pub struct IrqChip {
    chips: Mutex<Chips>,
    wake: Condvar,
    /// Per vCPU: an interrupt is pending (exact after every change under the lock).
    pending: Vec<AtomicBool>,
}

impl IrqChip {
    /// Power-on state for `vcpus` vCPUs; vCPU 0 is the BSP (APIC ID = index).
    pub fn new(vcpus: u32) -> IrqChip {
        let n = vcpus.clamp(1, 255);
        IrqChip {
            chips: Mutex::new(Chips {
                pic: DualPic::new(),
                pit: Pit8254::new(),
                ioapic: Ioapic::new(),
                cpus: (0..n)
                    .map(|i| CpuIrq {
                        lapic: Lapic::new(i as u8, i == 0),
                        extint: false,
                        nmis: 0,
                        init: false,
                        wait_sipi: i != 0,
                        sipi: None,
                    })
                    .collect(),
                last_now: 0,
            }),
            wake: Condvar::new(),
            pending: (0..n).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    pub fn vcpus(&self) -> usize {
        self.pending.len()
    }

    /// Run `f` on the controllers, then refresh the pending flags and wake halted vCPUs
    /// that now have an interrupt.
    pub fn with<R>(&self, f: impl FnOnce(&mut Chips) -> R) -> R {
        let mut g = lock(&self.chips);
        let r = f(&mut g);
        self.refresh(&g);
        r
    }

    fn refresh(&self, g: &MutexGuard<'_, Chips>) {
        let mut any = false;
        for (i, p) in self.pending.iter().enumerate() {
            let now = g.pending(i);
            any |= now || g.start_event(i);
            p.store(now, Ordering::SeqCst);
        }
        if any {
            self.wake.notify_all();
        }
    }

    /// Whether vCPU `i` has an interrupt to take (one atomic load).
    pub fn interrupt_pending(&self, i: usize) -> bool {
        self.pending
            .get(i)
            .is_some_and(|p| p.load(Ordering::SeqCst))
    }

    /// INTA for vCPU `i`: the vector, or `None` if nothing is pending any more.
    pub fn acknowledge(&self, i: usize) -> Option<u8> {
        self.with(|c| {
            if c.pic_intr(i) {
                if let Some(cpu) = c.cpus.get_mut(i) {
                    cpu.extint = false;
                }
                return Some(c.pic.acknowledge());
            }
            let cpu = c.cpus.get_mut(i)?;
            cpu.lapic.pending_vector()?;
            Some(cpu.lapic.acknowledge())
        })
    }

    /// AP `i`'s pending INIT (first) or STARTUP, consumed; `None` if there is none.
    pub fn take_start_event(&self, i: usize) -> Option<StartEvent> {
        self.with(|c| {
            let cpu = c.cpus.get_mut(i)?;
            if cpu.init {
                cpu.init = false;
                return Some(StartEvent::Init);
            }
            if cpu.wait_sipi
                && let Some(v) = cpu.sipi.take()
            {
                cpu.wait_sipi = false;
                return Some(StartEvent::Startup(v));
            }
            None
        })
    }

    /// Whether vCPU `i` is in wait-for-SIPI.
    pub fn waiting_for_sipi(&self, i: usize) -> bool {
        lock(&self.chips).cpus.get(i).is_some_and(|c| c.wait_sipi)
    }

    /// Sleep until vCPU `i` has an INIT/STARTUP to act on, `stop()` says so, a kick, or
    /// `timeout` (capped at 100 ms). For CPUs only those can wake (wait-for-SIPI, HLT
    /// with interrupts disabled). The caller loops.
    pub fn wait_start_event(&self, i: usize, stop: &dyn Fn() -> bool, timeout: Option<Duration>) {
        let g = lock(&self.chips);
        if stop() || g.start_event(i) {
            return;
        }
        let t = timeout.map_or(MAX_HALT_WAIT, |t| t.min(MAX_HALT_WAIT));
        let _ = self.wake.wait_timeout(g, t);
    }

    /// Collect timer events due at `now_ns`: PIT IRQ 0 edges, LAPIC timer expiries.
    pub fn poll_timers(&self, now_ns: u64) {
        self.with(|c| {
            let now_ns = c.mono(now_ns);
            if c.pit.irq0_edges(now_ns) > 0 {
                // Missed periods are coalesced into one edge, as a late tick would be.
                c.pulse_irq0();
            }
            for cpu in c.cpus.iter_mut() {
                cpu.lapic.poll_timer(now_ns);
            }
        })
    }

    /// The earliest PIT or LAPIC timer event, in guest ns.
    pub fn next_deadline(&self, now_ns: u64) -> Option<u64> {
        let c = lock(&self.chips);
        let lapics = c
            .cpus
            .iter()
            .filter_map(|cpu| cpu.lapic.next_timer_deadline());
        c.pit
            .next_irq0_deadline(now_ns)
            .into_iter()
            .chain(lapics)
            .min()
    }

    /// Sleep while vCPU `i` is halted: until an interrupt is pending for it, `stop()`
    /// says so, a kick, or `timeout` (capped at 100 ms). The caller loops.
    pub fn wait_halted(&self, i: usize, stop: &dyn Fn() -> bool, timeout: Option<Duration>) {
        let g = lock(&self.chips);
        if stop() || g.pending(i) || g.start_event(i) {
            return;
        }
        let t = timeout.map_or(MAX_HALT_WAIT, |t| t.min(MAX_HALT_WAIT));
        if t.is_zero() {
            return;
        }
        let _ = self.wake.wait_timeout(g, t);
    }

    /// Wake every halted vCPU (stop requests).
    pub fn kick_all(&self) {
        let _g = lock(&self.chips);
        self.wake.notify_all();
    }

    // ---- register accesses from vCPU `i` ----

    /// A port read of `size` bytes at one of the [`is_local_port`] ports (wider accesses
    /// are split into byte accesses of consecutive ports, as the ISA bus does).
    pub fn pio_read(&self, port: u16, size: u8, now_ns: u64) -> u32 {
        self.with(|c| {
            let now_ns = c.mono(now_ns);
            let mut v = 0u32;
            for k in 0..size.min(4) {
                let p = port.wrapping_add(k as u16);
                let b = match p {
                    0x40..=0x43 | pit::PORT_61 => c.pit.pio_read(p, now_ns),
                    _ => c.pic.pio_read(p),
                };
                v |= (b as u32) << (8 * k);
            }
            v
        })
    }

    /// A port write (see [`IrqChip::pio_read`]).
    pub fn pio_write(&self, port: u16, size: u8, value: u32, now_ns: u64) {
        self.with(|c| {
            let now_ns = c.mono(now_ns);
            for k in 0..size.min(4) {
                let p = port.wrapping_add(k as u16);
                let b = (value >> (8 * k)) as u8;
                match p {
                    0x40..=0x43 | pit::PORT_61 => c.pit.pio_write(p, b, now_ns),
                    _ => c.pic.pio_write(p, b),
                }
            }
        })
    }

    /// Whether `gpa` is the register page of vCPU `i`'s LAPIC (while it is enabled) or
    /// of the IOAPIC.
    pub fn claims_mmio(&self, i: usize, gpa: u64) -> bool {
        if gpa.wrapping_sub(IOAPIC_BASE) < IOAPIC_SIZE {
            return true;
        }
        gpa.wrapping_sub(LAPIC_BASE) < LAPIC_SIZE
            && lock(&self.chips)
                .cpus
                .get(i)
                .is_some_and(|c| c.lapic.read_apic_base() & APIC_BASE_EN != 0)
    }

    /// An MMIO read of a claimed address (little-endian in `buf`, 1..8 bytes).
    pub fn mmio_read(&self, i: usize, gpa: u64, buf: &mut [u8], now_ns: u64) {
        let Some(w) = Width::from_bytes(buf.len() as u64) else {
            buf.fill(0xff);
            return;
        };
        let v = self.with(|c| {
            let now_ns = c.mono(now_ns);
            if gpa.wrapping_sub(IOAPIC_BASE) < IOAPIC_SIZE {
                c.ioapic.mmio_read(gpa - IOAPIC_BASE, w)
            } else {
                c.cpus.get_mut(i).map_or(u64::MAX, |cpu| {
                    cpu.lapic.mmio_read(gpa - LAPIC_BASE, w, now_ns)
                })
            }
        });
        let n = buf.len().min(8);
        buf[..n].copy_from_slice(&v.to_le_bytes()[..n]);
    }

    /// An MMIO write to a claimed address.
    pub fn mmio_write(&self, i: usize, gpa: u64, buf: &[u8], now_ns: u64) {
        let Some(w) = Width::from_bytes(buf.len() as u64) else {
            return;
        };
        let mut b = [0u8; 8];
        let n = buf.len().min(8);
        b[..n].copy_from_slice(&buf[..n]);
        let v = u64::from_le_bytes(b);
        self.with(|c| {
            let now_ns = c.mono(now_ns);
            if gpa.wrapping_sub(IOAPIC_BASE) < IOAPIC_SIZE {
                if let Some(d) = c.ioapic.mmio_write(gpa - IOAPIC_BASE, w, v) {
                    c.deliver_ioapic(d);
                }
            } else if let Some(cpu) = c.cpus.get_mut(i) {
                let out = cpu.lapic.mmio_write(gpa - LAPIC_BASE, w, v, now_ns);
                c.lapic_output(out);
            }
        })
    }

    /// RDMSR IA32_APIC_BASE of vCPU `i`.
    pub fn apic_base(&self, i: usize) -> u64 {
        lock(&self.chips)
            .cpus
            .get(i)
            .map_or(0, |c| c.lapic.read_apic_base())
    }

    /// WRMSR IA32_APIC_BASE of vCPU `i`; false = #GP.
    pub fn set_apic_base(&self, i: usize, value: u64) -> bool {
        self.with(|c| {
            c.cpus
                .get_mut(i)
                .is_some_and(|cpu| cpu.lapic.write_apic_base(value).is_ok())
        })
    }

    /// Whether vCPU `i`'s APIC is hardware-enabled (CPUID.1:EDX.APIC follows it).
    pub fn apic_enabled(&self, i: usize) -> bool {
        self.apic_base(i) & APIC_BASE_EN != 0
    }

    /// Mirror an ELCR the device model holds (the PIIX3 decodes 0x4d0/0x4d1 too).
    pub fn set_elcr(&self, v: u16) {
        self.with(|c| c.pic.set_elcr(v))
    }
}

impl IrqLines for IrqChip {
    fn set_irq_line(&self, gsi: u32, level: bool) -> Result<(), Error> {
        self.with(|c| c.set_gsi(gsi, level));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irqchip::pit::PIT_HZ;

    fn w32(chip: &IrqChip, i: usize, gpa: u64, v: u32) {
        chip.mmio_write(i, gpa, &v.to_le_bytes(), 0);
    }

    fn r32(chip: &IrqChip, i: usize, gpa: u64) -> u32 {
        let mut b = [0u8; 4];
        chip.mmio_read(i, gpa, &mut b, 0);
        u32::from_le_bytes(b)
    }

    /// SeaBIOS/Linux-style 8259 init: master vectors 0x08.., slave 0x70.., all unmasked
    /// but the lines given.
    fn init_pic(chip: &IrqChip, imr: u16) {
        for (cmd, data, base, icw3) in [(0x20, 0x21, 0x08, 0x04), (0xa0, 0xa1, 0x70, 0x02)] {
            chip.pio_write(cmd, 1, 0x11, 0);
            chip.pio_write(data, 1, base, 0);
            chip.pio_write(data, 1, icw3, 0);
            chip.pio_write(data, 1, 0x01, 0);
        }
        chip.pio_write(0x21, 1, imr as u32 & 0xff, 0);
        chip.pio_write(0xa1, 1, (imr >> 8) as u32, 0);
    }

    fn ioapic_route(chip: &IrqChip, pin: u32, entry: u64) {
        w32(chip, 0, IOAPIC_BASE, 0x10 + 2 * pin);
        w32(chip, 0, IOAPIC_BASE + 0x10, entry as u32);
        w32(chip, 0, IOAPIC_BASE, 0x10 + 2 * pin + 1);
        w32(chip, 0, IOAPIC_BASE + 0x10, (entry >> 32) as u32);
    }

    /// Software-enable vCPU `i`'s LAPIC (SVR bit 8, spurious vector 0xff).
    fn enable_lapic(chip: &IrqChip, i: usize) {
        w32(chip, i, LAPIC_BASE + 0xf0, 0x1ff);
    }

    #[test]
    fn pic_reaches_the_bsp_through_virtual_wire() {
        let chip = IrqChip::new(2);
        init_pic(&chip, 0);
        assert!(!chip.interrupt_pending(0));
        // COM1 (IRQ 4): edge on the master.
        chip.set_irq_line(4, true).unwrap();
        assert!(chip.interrupt_pending(0));
        assert!(
            !chip.interrupt_pending(1),
            "the PIC is wired to the BSP only"
        );
        assert_eq!(chip.acknowledge(0), Some(0x08 + 4));
        assert!(!chip.interrupt_pending(0), "in service");
        chip.set_irq_line(4, false).unwrap();
        // RTC (IRQ 8) through the slave, blocked by nothing (IRQ 4 in service has lower
        // priority than the cascade IR2).
        chip.set_irq_line(8, true).unwrap();
        assert!(chip.interrupt_pending(0));
        assert_eq!(chip.acknowledge(0), Some(0x70));
        // Non-specific EOIs to both chips, then masking LINT0 cuts the wire.
        chip.pio_write(0xa0, 1, 0x20, 0);
        chip.pio_write(0x20, 1, 0x20, 0);
        chip.pio_write(0x20, 1, 0x20, 0);
        chip.set_irq_line(8, false).unwrap();
        enable_lapic(&chip, 0);
        w32(&chip, 0, LAPIC_BASE + 0x350, 1 << 16); // LVT LINT0 masked
        chip.set_irq_line(3, true).unwrap();
        assert!(!chip.interrupt_pending(0), "LINT0 masked");
        w32(&chip, 0, LAPIC_BASE + 0x350, 7 << 8); // ExtINT again
        assert!(chip.interrupt_pending(0));
        assert_eq!(chip.acknowledge(0), Some(0x0b));
        assert_eq!(chip.acknowledge(0), None);
    }

    #[test]
    fn elcr_ports_are_the_pics() {
        let chip = IrqChip::new(1);
        chip.pio_write(0x4d0, 2, 0x0c20, 0);
        assert_eq!(chip.pio_read(0x4d0, 2, 0), 0x0c20);
        assert_eq!(chip.pio_read(0x4d1, 1, 0), 0x0c);
        chip.set_elcr(0xffff);
        assert_eq!(chip.pio_read(0x4d0, 2, 0), pic::ELCR_WMASK as u32);
        assert!(is_local_port(0x4d1) && is_local_port(0x61) && !is_local_port(0x60));
    }

    #[test]
    fn ioapic_level_interrupt_reaches_the_lapic_and_eoi_rearms() {
        let chip = IrqChip::new(2);
        init_pic(&chip, 0xffff); // the guest uses the IOAPIC: PIC fully masked
        enable_lapic(&chip, 0);
        enable_lapic(&chip, 1);
        // Pin 10 -> vector 0x41, level, physical destination APIC 1.
        ioapic_route(&chip, 10, 0x41 | 1 << 15 | 1 << 56);
        chip.set_irq_line(10, true).unwrap();
        assert!(!chip.interrupt_pending(0));
        assert!(chip.interrupt_pending(1));
        assert_eq!(chip.acknowledge(1), Some(0x41));
        assert!(!chip.interrupt_pending(1));
        // Remote IRR set: the still-asserted line does not deliver again until EOI.
        chip.set_irq_line(10, true).unwrap();
        assert!(!chip.interrupt_pending(1));
        w32(&chip, 1, LAPIC_BASE + 0xb0, 0); // EOI -> broadcast -> re-delivery
        assert!(chip.interrupt_pending(1), "line still asserted after EOI");
        assert_eq!(chip.acknowledge(1), Some(0x41));
        chip.set_irq_line(10, false).unwrap();
        w32(&chip, 1, LAPIC_BASE + 0xb0, 0);
        assert!(!chip.interrupt_pending(1));
        // Remote IRR readable as clear again.
        w32(&chip, 0, IOAPIC_BASE, 0x10 + 20);
        assert_eq!(r32(&chip, 0, IOAPIC_BASE + 0x10) & (1 << 14), 0);
    }

    #[test]
    fn lowest_priority_and_logical_destinations() {
        let chip = IrqChip::new(2);
        init_pic(&chip, 0xffff);
        for i in 0..2 {
            enable_lapic(&chip, i);
            w32(&chip, i, LAPIC_BASE + 0xd0, 1 << (24 + i)); // LDR: bit i, flat model
        }
        w32(&chip, 0, LAPIC_BASE + 0x80, 0x20); // vCPU 0 TPR raises its priority
        // Pin 4 -> vector 0x50, lowest priority, logical dest both.
        ioapic_route(&chip, 4, 0x50 | 1 << 8 | 1 << 11 | 3 << 56);
        chip.set_irq_line(4, true).unwrap();
        assert!(!chip.interrupt_pending(0));
        assert!(chip.interrupt_pending(1), "the lower-priority APIC gets it");
    }

    #[test]
    fn pit_irq0_rate_in_guest_time() {
        let chip = IrqChip::new(1);
        init_pic(&chip, 0xfffe); // only IRQ 0
        // Channel 0, mode 2, lobyte/hibyte, 1193 counts: ~1000.15 Hz.
        chip.pio_write(0x43, 1, 0x34, 0);
        chip.pio_write(0x40, 1, 1193 & 0xff, 0);
        chip.pio_write(0x40, 1, 1193 >> 8, 0);
        let period_ns = 1193 * 1_000_000_000 / PIT_HZ;
        let mut ticks = 0;
        let mut now = 0;
        // Step through 100 ms of guest time deadline by deadline, as the run loop does.
        while let Some(d) = chip.next_deadline(now) {
            if d > 100_000_000 {
                break;
            }
            now = d.max(now);
            chip.poll_timers(now);
            if chip.interrupt_pending(0) {
                assert_eq!(chip.acknowledge(0), Some(0x08));
                chip.pio_write(0x20, 1, 0x20, 0);
                ticks += 1;
            }
            now += 1;
        }
        assert!((99..=101).contains(&ticks), "{ticks} ticks in 100 ms");
        assert!(period_ns > 999_000 && period_ns < 1_001_000);
        // IOAPIC pin 2 sees the same edges once routed.
        enable_lapic(&chip, 0);
        ioapic_route(&chip, 2, 0x30);
        chip.pio_write(0x21, 1, 0xff, 0); // PIC masked
        let d = chip.next_deadline(now).unwrap();
        chip.poll_timers(d);
        assert!(chip.interrupt_pending(0));
        assert_eq!(chip.acknowledge(0), Some(0x30));
    }

    #[test]
    fn lapic_timer_fires_at_its_deadline() {
        let chip = IrqChip::new(1);
        enable_lapic(&chip, 0);
        w32(&chip, 0, LAPIC_BASE + 0x3e0, 0xb); // divide by 1
        w32(&chip, 0, LAPIC_BASE + 0x320, 0xef); // one-shot, vector 0xef
        w32(&chip, 0, LAPIC_BASE + 0x380, 5000); // 5000 ns from t = 0
        assert_eq!(chip.next_deadline(0), Some(5000));
        chip.poll_timers(4999);
        assert!(!chip.interrupt_pending(0));
        chip.poll_timers(5000);
        assert!(chip.interrupt_pending(0));
        assert_eq!(chip.acknowledge(0), Some(0xef));
        assert_eq!(chip.next_deadline(6000), None);
    }

    #[test]
    fn ipis_init_sipi_and_apic_base() {
        let chip = IrqChip::new(2);
        enable_lapic(&chip, 0);
        enable_lapic(&chip, 1);
        // Fixed IPI 0x60 to APIC 1.
        w32(&chip, 0, LAPIC_BASE + 0x310, 1 << 24);
        w32(&chip, 0, LAPIC_BASE + 0x300, 0x60);
        assert!(chip.interrupt_pending(1));
        // INIT then SIPI vector 0x9f to all but self: recorded for the AP.
        w32(&chip, 0, LAPIC_BASE + 0x300, 0x000c_4500);
        w32(&chip, 0, LAPIC_BASE + 0x300, 0x000c_469f);
        chip.with(|c| {
            assert!(c.cpus[1].init);
            assert_eq!(c.cpus[1].sipi, Some(0x9f));
            assert!(!c.cpus[0].init);
        });
        assert_eq!(chip.apic_base(0), 0xfee0_0900);
        assert!(chip.claims_mmio(0, LAPIC_BASE + 0x20));
        assert!(!chip.set_apic_base(0, 0xfee0_0c00), "x2APIC refused");
        assert!(chip.set_apic_base(0, 0xfee0_0000), "hardware disable");
        assert!(!chip.apic_enabled(0));
        assert!(!chip.claims_mmio(0, LAPIC_BASE + 0x20));
        assert!(chip.claims_mmio(0, IOAPIC_BASE + 0x10));
        assert!(!chip.claims_mmio(0, 0xfed0_0000));
    }

    #[test]
    fn odd_accesses_do_not_panic() {
        let chip = IrqChip::new(1);
        for len in [0usize, 1, 2, 3, 4, 5, 8] {
            let mut b = vec![0u8; len];
            chip.mmio_read(0, LAPIC_BASE + 0xffd, &mut b, 0);
            chip.mmio_read(0, IOAPIC_BASE + 0xfff, &mut b, 0);
            chip.mmio_write(0, LAPIC_BASE + 0xfff, &b, 0);
            chip.mmio_write(0, IOAPIC_BASE + 0x13, &b, 0);
            chip.mmio_read(7, LAPIC_BASE, &mut b, 0);
        }
        for size in [0u8, 1, 2, 3, 4, 200] {
            chip.pio_read(0x43, size, u64::MAX);
            chip.pio_write(0x61, size, u32::MAX, u64::MAX);
        }
        for gsi in [0, 2, 15, 16, 23, 24, u32::MAX] {
            chip.set_irq_line(gsi, true).unwrap();
        }
        assert_eq!(chip.acknowledge(9), None);
        assert!(!chip.interrupt_pending(9));
        chip.poll_timers(u64::MAX);
        let _ = chip.next_deadline(u64::MAX);
        chip.wait_halted(0, &|| true, None);
    }
}
