//! [`EmuBus`]: what one software vCPU sees of the machine (`hypervisor_emu::Bus`).
//!
//! * RAM: the bounds-checked [`crate::memory::GuestMemory`] accessors.
//! * Port I/O and MMIO: the PIC/ELCR, PIT/port 0x61, IOAPIC and this vCPU's LAPIC are
//!   handled here ([`IrqChip`]); everything else becomes the same [`Exit`] record the
//!   `kvm` backend produces and goes through the same [`dispatch`], so no device can
//!   tell the backends apart. ELCR writes also reach the device model, whose PIIX3 keeps
//!   (and saves) the register too.
//! * CPUID: [`CpuidProfile`]. MSRs the CPU leaves to us (it owns EFER, the SYSCALL and
//!   SYSENTER sets, segment bases, PAT, MTRRs, TSC, MISC_ENABLE): IA32_APIC_BASE (the
//!   LAPIC), the Xen hypercall-page MSR (`vmcall` stubs), the microcode revision (0);
//!   anything else is #GP.
//! * Time: guest ns ([`crate::emu::clock::GuestClock`]); the TSC runs at 1 GHz, so it *is* guest ns.
//! * Slices end early ([`hypervisor_emu::Bus::stop_requested`]) on a stop request and
//!   whenever a timer was (re)programmed, so the run loop can re-plan the next deadline
//!   (exact timer firing in deterministic mode).

use std::sync::atomic::Ordering;

use hypervisor_abi::hypercall::HYPERVISOR_XEN_VERSION;

use crate::backend::Exit;
use crate::device_model::DeviceModel;
use crate::dispatch::{Action, ExitCounts, dispatch};
use crate::emu::cpuid::CpuidProfile;
use crate::emu::irqchip::{IrqChip, is_local_port};
use crate::emu::written::WrittenPages;
use crate::irqchip::lapic::MSR_APIC_BASE;
use crate::irqchip::pic;
use crate::platform::PlatformState;
use crate::xen_hypercall::{self as xen, HypercallRegs, StubKind};

/// IA32_BIOS_SIGN_ID: the microcode revision (Linux writes 0, runs CPUID, reads it).
pub const MSR_UCODE_REV: u32 = 0x8b;

/// The `Bus` of vCPU `id`.
pub struct EmuBus<'r, 'a> {
    id: usize,
    st: &'r PlatformState<'a>,
    dm: &'r DeviceModel,
    chip: &'r IrqChip,
    cpuid: &'r CpuidProfile,
    written: &'r WrittenPages,
    /// Accesses of this vCPU, counted as the kvm backend counts exits.
    pub counts: ExitCounts,
    /// A timer of ours was reprogrammed: end the slice.
    end_slice: bool,
    timer_epoch: u64,
    /// Why the last device access asked to crash the domain (never today: dispatch only
    /// crashes on backend exits the bus never produces).
    pub crash: Option<&'static str>,
}

impl<'r, 'a> EmuBus<'r, 'a> {
    pub fn new(
        id: u32,
        st: &'r PlatformState<'a>,
        dm: &'r DeviceModel,
        chip: &'r IrqChip,
        cpuid: &'r CpuidProfile,
        written: &'r WrittenPages,
    ) -> Self {
        EmuBus {
            id: id as usize,
            st,
            dm,
            chip,
            cpuid,
            written,
            counts: ExitCounts::default(),
            end_slice: false,
            timer_epoch: st.timer_epoch.load(Ordering::SeqCst),
            crash: None,
        }
    }

    /// Guest ns at this vCPU's instruction count `t` (vCPU 0 drives the deterministic
    /// clock; the others read it).
    pub fn now(&self, t: u64) -> u64 {
        if self.id == 0 {
            self.st.clock.observe(t)
        } else {
            self.st.clock.now_ns()
        }
    }

    /// Called by the run loop before each slice.
    pub fn begin_slice(&mut self) {
        self.end_slice = false;
        self.timer_epoch = self.st.timer_epoch.load(Ordering::SeqCst);
    }

    fn dispatch(&mut self, exit: Exit<'_>) {
        if let Action::Crash { what, .. } =
            dispatch(exit, self.dm, self.id as u32, self.st, &mut self.counts)
        {
            self.crash = Some(what);
        }
    }

    fn is_pit_port(port: u16) -> bool {
        matches!(port, 0x40..=0x43 | 0x61)
    }
}

impl hypervisor_emu::Bus for EmuBus<'_, '_> {
    fn ram_read(&mut self, gpa: u64, buf: &mut [u8]) -> bool {
        // Aligned operand sizes: one host access (not torn by another vCPU's store);
        // the rest as fixed-size copies (no memcpy call per access).
        fn fixed<const N: usize>(m: &crate::memory::GuestMemory, gpa: u64, buf: &mut [u8]) -> bool {
            if let Some(v) = m.load(gpa, N as u8) {
                buf.copy_from_slice(&v.to_le_bytes()[..N]);
                return true;
            }
            let mut b = [0u8; N];
            let ok = m.read(gpa, &mut b).is_ok();
            buf.copy_from_slice(&b);
            ok
        }
        match buf.len() {
            1 => fixed::<1>(self.st.mem, gpa, buf),
            2 => fixed::<2>(self.st.mem, gpa, buf),
            4 => fixed::<4>(self.st.mem, gpa, buf),
            8 => fixed::<8>(self.st.mem, gpa, buf),
            _ => self.st.mem.read(gpa, buf).is_ok(),
        }
    }

    fn ram_write(&mut self, gpa: u64, buf: &[u8]) -> bool {
        fn fixed<const N: usize>(m: &crate::memory::GuestMemory, gpa: u64, buf: &[u8]) -> bool {
            let mut b = [0u8; 8];
            b[..N].copy_from_slice(buf);
            if m.store(gpa, N as u8, u64::from_le_bytes(b)) {
                return true;
            }
            m.write(gpa, &b[..N]).is_ok()
        }
        let ok = match buf.len() {
            1 => fixed::<1>(self.st.mem, gpa, buf),
            2 => fixed::<2>(self.st.mem, gpa, buf),
            4 => fixed::<4>(self.st.mem, gpa, buf),
            8 => fixed::<8>(self.st.mem, gpa, buf),
            _ => self.st.mem.write(gpa, buf).is_ok(),
        };
        if ok {
            self.written.cpu_stored(self.id, gpa, buf.len());
        }
        ok
    }

    fn ram_cmpxchg(&mut self, gpa: u64, size: u8, old: u64, new: u64) -> Option<Result<(), u64>> {
        let r = self.st.mem.cmpxchg(gpa, size, old, new);
        if matches!(r, Some(Ok(()))) {
            self.written.cpu_stored(self.id, gpa, size as usize);
        }
        r
    }

    fn code_page_cached(&mut self, gpa: u64) {
        self.written.code_fetched(gpa);
    }

    fn mmio_read(&mut self, t: u64, gpa: u64, buf: &mut [u8]) {
        let now = self.now(t);
        if self.chip.claims_mmio(self.id, gpa) {
            self.counts.mmio += 1;
            self.chip.mmio_read(self.id, gpa, buf, now);
        } else if buf.len() > 8 {
            buf.fill(0xff);
        } else {
            self.dispatch(Exit::MmioRead {
                addr: gpa,
                data: buf,
            });
        }
    }

    fn mmio_write(&mut self, t: u64, gpa: u64, buf: &[u8]) {
        let now = self.now(t);
        if self.chip.claims_mmio(self.id, gpa) {
            self.counts.mmio += 1;
            self.chip.mmio_write(self.id, gpa, buf, now);
            // LAPIC timer or IOAPIC programming may move a deadline.
            self.end_slice = true;
        } else if buf.len() <= 8 {
            self.dispatch(Exit::MmioWrite {
                addr: gpa,
                data: buf,
            });
        }
    }

    fn pio_in(&mut self, t: u64, port: u16, size: u8) -> u32 {
        let now = self.now(t);
        if is_local_port(port) {
            self.counts.pio += 1;
            return self.chip.pio_read(port, size, now);
        }
        let mut data = [0u8; 4];
        let n = (size as usize).min(4);
        self.dispatch(Exit::PioIn {
            port,
            size,
            data: &mut data[..n],
        });
        u32::from_le_bytes(data)
    }

    fn pio_out(&mut self, t: u64, port: u16, size: u8, value: u32) {
        let now = self.now(t);
        if is_local_port(port) {
            self.counts.pio += 1;
            self.chip.pio_write(port, size, value, now);
            if Self::is_pit_port(port) {
                self.end_slice = true;
            }
            if matches!(port, pic::ELCR1 | pic::ELCR2) {
                // Keep the PIIX3's copy (it is in the saved state) in step.
                let data = value.to_le_bytes();
                let n = (size as usize).min(4);
                self.dm
                    .pio_out(self.st, self.id as u32, port, size, &data[..n]);
            }
            return;
        }
        let data = value.to_le_bytes();
        let n = (size as usize).min(4);
        self.dispatch(Exit::PioOut {
            port,
            size,
            data: &data[..n],
        });
    }

    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> [u32; 4] {
        let apic = self.chip.apic_enabled(self.id);
        self.cpuid.leaf(leaf, subleaf, self.id as u32, apic)
    }

    fn rdmsr(&mut self, _t: u64, msr: u32) -> Option<u64> {
        match msr {
            MSR_APIC_BASE => Some(self.chip.apic_base(self.id)),
            MSR_UCODE_REV => Some(0),
            _ => None,
        }
    }

    fn wrmsr(&mut self, _t: u64, msr: u32, value: u64) -> bool {
        match msr {
            MSR_APIC_BASE => self.chip.set_apic_base(self.id, value),
            xen::HYPERCALL_MSR => {
                let ok = xen::write_hypercall_msr(self.st.mem, value, StubKind::Vmcall);
                if ok {
                    // New code behind the CPU's back (for every vCPU, this one too).
                    self.written.record(value & !0xfff, xen::PAGE_SIZE as u64);
                }
                ok
            }
            MSR_UCODE_REV => true,
            _ => false,
        }
    }

    fn tsc(&mut self, t: u64) -> u64 {
        self.now(t)
    }

    fn hypercall(&mut self, _t: u64, gpr: &mut [u64; 16], long_mode: bool) {
        use hypervisor_emu::cpu::{RAX, RBX, RCX, RDI, RDX, RSI};
        let mut r = HypercallRegs {
            rax: gpr[RAX],
            rbx: gpr[RBX],
            rcx: gpr[RCX],
            rdx: gpr[RDX],
            rsi: gpr[RSI],
            rdi: gpr[RDI],
            long_mode,
            // The contract does not pass CR0: 64-bit code always pages; 32-bit callers
            // (SeaBIOS) are taken to run unpaged, as Xen's HVM ABI calls for here.
            paging: long_mode,
        };
        let nr = r.rax as u32;
        let buf = if long_mode {
            r.rsi
        } else {
            r.rcx & 0xffff_ffff
        };
        xen::hypercall(&mut r, self.st.mem);
        if nr == HYPERVISOR_XEN_VERSION {
            // xen_version writes at most 16 bytes at its buffer argument.
            self.written.record(buf, 16);
        }
        gpr[RAX] = r.rax;
    }

    fn interrupt_pending(&mut self, _t: u64) -> bool {
        self.chip.interrupt_pending(self.id)
    }

    fn acknowledge_interrupt(&mut self, _t: u64) -> Option<u8> {
        self.chip.acknowledge(self.id)
    }

    fn take_written_code_pages(&mut self, f: &mut dyn FnMut(u64)) {
        self.written.take(self.id, f);
    }

    fn stop_requested(&mut self) -> bool {
        if self.st.stopping() || self.end_slice || self.crash.is_some() {
            return true;
        }
        let e = self.st.timer_epoch.load(Ordering::SeqCst);
        if e != self.timer_epoch {
            self.timer_epoch = e;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::IrqLines;
    use crate::emu::clock::GuestClock;
    use crate::memory::{GuestMemory, Layout};
    use crate::platform::{CharOut, lock};
    use chassis_devices::machine::{Machine, MachineConfig};
    use chassis_devices::profile::QEMU_XEN;
    use hypervisor_emu::Bus;
    use std::sync::Mutex;

    struct Rig {
        mem: GuestMemory,
        chip: IrqChip,
        cpuid: CpuidProfile,
        written: WrittenPages,
        machine: DeviceModel,
    }

    fn rig() -> Rig {
        Rig {
            mem: GuestMemory::new(Layout::from_mib(16).unwrap()).unwrap(),
            chip: IrqChip::new(1),
            cpuid: CpuidProfile::new(1),
            written: WrittenPages::new(1),
            machine: DeviceModel::Process(Mutex::new(Machine::new(&MachineConfig {
                profile: &QEMU_XEN,
                ram_below_4g: 16 << 20,
                ram_above_4g: 0,
                vcpus: 1,
                serial_ports: 1,
                boot: Default::default(),
            }))),
        }
    }

    #[test]
    fn ram_devices_and_local_controllers() {
        let r = rig();
        let st = PlatformState::with_clock(
            &r.mem,
            &r.chip,
            CharOut::Null,
            CharOut::Null,
            GuestClock::deterministic(),
            Some(&r.written),
        );
        let mut b = EmuBus::new(0, &st, &r.machine, &r.chip, &r.cpuid, &r.written);
        assert!(b.ram_write(0x1000, &[1, 2, 3]));
        let mut x = [0u8; 3];
        assert!(b.ram_read(0x1000, &mut x));
        assert_eq!(x, [1, 2, 3]);
        assert!(!b.ram_read(0xa_0000, &mut x), "VGA hole is not RAM");
        assert!(!b.ram_write(0xffff_fff0, &x));
        // Device model: the CMOS through dispatch (register 0x0e, a plain byte).
        b.pio_out(10, 0x70, 1, 0x0e);
        b.pio_out(11, 0x71, 1, 0x5a);
        b.pio_out(12, 0x70, 1, 0x0e);
        assert_eq!(b.pio_in(13, 0x71, 1), 0x5a);
        assert_eq!(b.pio_in(14, 0x2e8, 2), 0xffff, "unclaimed port");
        // Unclaimed MMIO reads all ones.
        let mut m = [0u8; 4];
        b.mmio_read(15, 0xdead_0000, &mut m);
        assert_eq!(m, [0xff; 4]);
        // The PIC is ours: IMR round trip, and ELCR reaches the PIIX3 as well.
        b.pio_out(16, 0x21, 1, 0xa5);
        assert_eq!(b.pio_in(17, 0x21, 1), 0xa5);
        b.pio_out(18, 0x4d0, 2, 0x0e20);
        assert_eq!(b.pio_in(19, 0x4d1, 1), 0x0e);
        assert_eq!(
            lock(r.machine.machine().unwrap()).pio_read(
                &mut st.handle(),
                0x4d0,
                chassis_devices::io::Width::B2
            ),
            0x0e20
        );
        // The LAPIC: version register.
        b.mmio_read(20, 0xfee0_0030, &mut m);
        assert_eq!(u32::from_le_bytes(m), 0x0005_0014);
        // IOAPIC version.
        b.mmio_write(21, 0xfec0_0000, &1u32.to_le_bytes());
        b.mmio_read(22, 0xfec0_0010, &mut m);
        assert_eq!(u32::from_le_bytes(m), 0x0017_0011);
        // PIT programming ends the slice; so does a device timer being armed.
        b.begin_slice();
        assert!(!b.stop_requested());
        b.pio_out(23, 0x43, 1, 0x34);
        assert!(b.stop_requested());
        b.begin_slice();
        b.pio_out(24, 0x70, 1, 0x0a);
        b.pio_out(25, 0x71, 1, 0x26); // RTC rate: arms nothing without PIE
        b.pio_out(26, 0x70, 1, 0x0b);
        b.pio_out(27, 0x71, 1, 0x42); // PIE: arms the periodic timer
        assert!(b.stop_requested());
        // Deterministic time follows the instruction count.
        assert_eq!(b.tsc(1000), 1000);
        assert_eq!(b.tsc(1001), 1001);
        assert_eq!(st.now_ns(), 1001);
    }

    #[test]
    fn msrs_cpuid_and_the_hypercall_page() {
        let r = rig();
        let st = PlatformState::with_clock(
            &r.mem,
            &r.chip,
            CharOut::Null,
            CharOut::Null,
            GuestClock::deterministic(),
            Some(&r.written),
        );
        let mut b = EmuBus::new(0, &st, &r.machine, &r.chip, &r.cpuid, &r.written);
        assert_eq!(b.rdmsr(0, MSR_APIC_BASE), Some(0xfee0_0900));
        assert!(!b.wrmsr(0, MSR_APIC_BASE, 0xfee0_0d00), "no x2APIC");
        assert_eq!(b.rdmsr(0, 0xc001_0015), None, "unknown MSR: #GP");
        assert!(!b.wrmsr(0, 0x1234, 0));
        assert!(b.wrmsr(0, MSR_UCODE_REV, 0));
        assert_eq!(b.rdmsr(0, MSR_UCODE_REV), Some(0));
        assert_eq!(b.rdmsr(0, 0x6e0), None, "no TSC-deadline");
        assert_eq!(b.rdmsr(0, xen::HYPERCALL_MSR), None);
        // CPUID: the Xen signature; APIC bit follows IA32_APIC_BASE.EN.
        assert_eq!(b.cpuid(0x4000_0000, 0)[1], u32::from_le_bytes(*b"XenV"));
        assert_ne!(b.cpuid(1, 0)[3] & (1 << 9), 0);
        // Hypercall page: vmcall stubs, reported as written code.
        assert!(b.wrmsr(0, xen::HYPERCALL_MSR, 0x8000));
        let mut s = [0u8; 9];
        r.mem.read(0x8000 + 17 * 32, &mut s).unwrap();
        assert_eq!(s, [0xb8, 17, 0, 0, 0, 0x0f, 0x01, 0xc1, 0xc3]);
        let mut pages = Vec::new();
        b.take_written_code_pages(&mut |p| pages.push(p));
        assert_eq!(pages, [0x8000]);
        assert!(!b.wrmsr(0, xen::HYPERCALL_MSR, 0xa_0000));
        // xen_version(XENVER_version) through VMCALL, 32-bit convention.
        let mut g = [0u64; 16];
        g[0] = HYPERVISOR_XEN_VERSION as u64;
        b.hypercall(0, &mut g, false);
        assert_eq!(g[0], 0x0004_0011);
        // extraversion into a buffer at ECX.
        g[0] = HYPERVISOR_XEN_VERSION as u64;
        g[3] = 1;
        g[1] = 0x9000;
        b.hypercall(0, &mut g, false);
        assert_eq!(g[0], 0);
        let mut e = [0u8; 8];
        r.mem.read(0x9000, &mut e).unwrap();
        assert_eq!(&e, b"-chassis");
        // Interrupts: the PIC through virtual wire.
        assert!(!b.interrupt_pending(0));
        r.chip.set_irq_line(1, true).unwrap();
        assert!(b.interrupt_pending(0));
        assert_eq!(
            b.acknowledge_interrupt(0),
            Some(0x01),
            "vector base 0 at power-on"
        );
    }

    /// Arbitrary guest accesses through the bus never panic (a small xorshift stream:
    /// ports, MMIO around the controllers with odd lengths, MSRs, CPUID, hypercalls).
    #[test]
    fn arbitrary_accesses_do_not_panic() {
        let r = rig();
        let st = PlatformState::with_clock(
            &r.mem,
            &r.chip,
            CharOut::Null,
            CharOut::Null,
            GuestClock::deterministic(),
            Some(&r.written),
        );
        let mut b = EmuBus::new(0, &st, &r.machine, &r.chip, &r.cpuid, &r.written);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let bases = [
            0xfee0_0000u64,
            0xfec0_0000,
            0xe000_0000,
            0xa_0000,
            0xffff_fff8,
            0,
        ];
        for t in 0..200_000u64 {
            let v = next();
            let size = [1u8, 2, 4, 0, 3, 8][(v % 6) as usize];
            match (v >> 8) % 7 {
                0 => {
                    b.pio_in(t, (v >> 16) as u16, size);
                }
                1 => b.pio_out(t, (v >> 16) as u16, size, (v >> 32) as u32),
                2 | 3 => {
                    let gpa = bases[((v >> 16) % 6) as usize].wrapping_add((v >> 24) & 0x1fff);
                    let mut buf = vec![0u8; ((v >> 40) % 17) as usize];
                    if v & 1 == 0 {
                        b.mmio_read(t, gpa, &mut buf);
                    } else {
                        buf.fill((v >> 48) as u8);
                        b.mmio_write(t, gpa, &buf);
                    }
                }
                4 => {
                    let msr = [0x1b, 0x8b, 0x4000_0200, 0x6e0, (v >> 16) as u32][(v % 5) as usize];
                    b.rdmsr(t, msr);
                    b.wrmsr(t, msr, next());
                }
                5 => {
                    b.cpuid((v >> 16) as u32, (v >> 48) as u32);
                }
                _ => {
                    let mut g = [0u64; 16];
                    for r in g.iter_mut() {
                        *r = next();
                    }
                    g[0] &= 0xff;
                    b.hypercall(t, &mut g, v & 2 != 0);
                }
            }
            if b.interrupt_pending(t) {
                b.acknowledge_interrupt(t);
            }
            b.take_written_code_pages(&mut |_| {});
            b.stop_requested();
            b.begin_slice();
        }
    }
}
