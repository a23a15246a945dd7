//! [`StubBus`]: what the stub domain's software CPU sees (`hypervisor_emu::Bus`).
//!
//! Stub-physical map (`hypervisor_abi::stubdom::map`):
//! * `[0, ram)`: the stub's own RAM;
//! * `[SHARED_BASE, SHARED_END)`: the ioreq, buffered-ioreq, event-channel and config
//!   pages (host-side atomics; LOCKed instructions of the stub are real atomics there);
//! * `[VIRTIO_BASE, +0x1000)`: the virtio-mmio console's registers;
//! * `[GUEST_WINDOW, +window)`: the guest's RAM (holes excluded). Writes are reported
//!   to the guest's CPUs (`WrittenPages`) so they drop decoded code they hold for it.
//!
//! Anything else (another address, any port I/O) is the isolation backstop: the access
//! is refused (reads all ones), the slice ends, and the domain stops with
//! "stub domain '<name>' accessed stub-physical 0x… outside its memory (read|write)".
//! VMCALL is the doorbell ([`StubOps`]); the stub has no MSRs of its own, a plain CPUID
//! profile, the TSC reads guest ns; its only interrupt is the event-channel upcall.

use std::sync::atomic::Ordering;

use hypervisor_abi::hypercall::HYPERVISOR_CHASSIS_STUB;
use hypervisor_abi::stubdom::map;

use crate::emu::cpuid::CpuidProfile;
use crate::emu::written::WrittenPages;
use crate::memory::GuestMemory;
use crate::platform::PlatformState;
use crate::stubdom::link::StubChannel;
use crate::stubdom::ops::{ENOSYS, StubOps};
use crate::stubdom::shared::SharedPages;
use crate::stubdom::virtio_console::VirtioConsole;

/// Bytes of the virtio-mmio console window.
pub const VIRTIO_WINDOW: u64 = 0x1000;

/// Where a stub-physical range lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    Ram(u64),
    Shared(usize),
    Virtio(u64),
    Guest(u64),
    Outside,
}

/// The `Bus` of the stub domain's vCPU.
pub struct StubBus<'r, 'a> {
    pub ch: &'r StubChannel,
    pub st: &'r PlatformState<'a>,
    /// The stub's RAM.
    pub mem: &'r GuestMemory,
    ram_size: u64,
    /// Bytes of the guest window.
    window: u64,
    written: Option<&'r WrittenPages>,
    pub console: VirtioConsole,
    cpuid: CpuidProfile,
    /// The first access outside the map (the report).
    pub fault: Option<String>,
}

impl<'r, 'a> StubBus<'r, 'a> {
    pub fn new(
        ch: &'r StubChannel,
        st: &'r PlatformState<'a>,
        mem: &'r GuestMemory,
        window: u64,
        written: Option<&'r WrittenPages>,
        console: VirtioConsole,
    ) -> Self {
        let ram_size = mem.layout().memory;
        StubBus {
            ch,
            st,
            mem,
            ram_size,
            window,
            written,
            console,
            cpuid: CpuidProfile::new(1),
            fault: None,
        }
    }

    /// Classify `[gpa, gpa + len)` (`Outside` unless entirely inside one range).
    pub fn region(&self, gpa: u64, len: u64) -> Region {
        let Some(end) = gpa.checked_add(len) else {
            return Region::Outside;
        };
        if end <= self.ram_size {
            Region::Ram(gpa)
        } else if gpa >= map::SHARED_BASE && end <= map::SHARED_END {
            Region::Shared((gpa - map::SHARED_BASE) as usize)
        } else if gpa >= map::VIRTIO_BASE && end <= map::VIRTIO_BASE + VIRTIO_WINDOW {
            Region::Virtio(gpa - map::VIRTIO_BASE)
        } else if gpa >= map::GUEST_WINDOW && end <= map::GUEST_WINDOW + self.window {
            Region::Guest(gpa - map::GUEST_WINDOW)
        } else {
            Region::Outside
        }
    }

    fn outside(&mut self, what: String) {
        if self.fault.is_none() {
            self.fault = Some(format!("stub domain '{}' {what}", self.ch.name));
        }
    }

    fn fault_access(&mut self, gpa: u64, write: bool) {
        let rw = if write { "write" } else { "read" };
        self.outside(format!(
            "accessed stub-physical {gpa:#x} outside its memory ({rw})"
        ));
    }

    fn shared(&self) -> &SharedPages {
        &self.ch.pages
    }

    /// RAM-like reads (own RAM, shared pages, guest window); false if not backed.
    fn backed_read(&mut self, gpa: u64, buf: &mut [u8]) -> bool {
        let n = buf.len();
        match self.region(gpa, n as u64) {
            Region::Ram(a) => read_mem(self.mem, a, buf),
            Region::Shared(off) => self.shared().access_read(off, buf),
            Region::Guest(g) => read_mem(self.st.mem, g, buf),
            Region::Virtio(_) | Region::Outside => false,
        }
    }

    fn backed_write(&mut self, gpa: u64, buf: &[u8]) -> bool {
        match self.region(gpa, buf.len() as u64) {
            Region::Ram(a) => write_mem(self.mem, a, buf),
            Region::Shared(off) => self.shared().access_write(off, buf),
            Region::Guest(g) => {
                let ok = write_mem(self.st.mem, g, buf);
                if ok && let Some(w) = self.written {
                    w.record(g, buf.len() as u64);
                }
                ok
            }
            Region::Virtio(_) | Region::Outside => false,
        }
    }
}

fn read_mem(m: &GuestMemory, gpa: u64, buf: &mut [u8]) -> bool {
    let n = buf.len();
    if matches!(n, 1 | 2 | 4 | 8)
        && let Some(v) = m.load(gpa, n as u8)
    {
        buf.copy_from_slice(&v.to_le_bytes()[..n]);
        return true;
    }
    m.read(gpa, buf).is_ok()
}

fn write_mem(m: &GuestMemory, gpa: u64, buf: &[u8]) -> bool {
    let n = buf.len();
    if matches!(n, 1 | 2 | 4 | 8) {
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(buf);
        if m.store(gpa, n as u8, u64::from_le_bytes(b)) {
            return true;
        }
    }
    m.write(gpa, buf).is_ok()
}

impl hypervisor_emu::Bus for StubBus<'_, '_> {
    fn ram_read(&mut self, gpa: u64, buf: &mut [u8]) -> bool {
        self.backed_read(gpa, buf)
    }

    fn ram_write(&mut self, gpa: u64, buf: &[u8]) -> bool {
        self.backed_write(gpa, buf)
    }

    fn ram_cmpxchg(&mut self, gpa: u64, size: u8, old: u64, new: u64) -> Option<Result<(), u64>> {
        match self.region(gpa, size as u64) {
            Region::Ram(a) => self.mem.cmpxchg(a, size, old, new),
            Region::Shared(off) => self.shared().cmpxchg(off, size, old, new),
            Region::Guest(g) => {
                let r = self.st.mem.cmpxchg(g, size, old, new);
                if matches!(r, Some(Ok(())))
                    && let Some(w) = self.written
                {
                    w.record(g, size as u64);
                }
                r
            }
            Region::Virtio(_) | Region::Outside => None,
        }
    }

    fn mmio_read(&mut self, _t: u64, gpa: u64, buf: &mut [u8]) {
        // Pieces of a RAM access the CPU split (it falls back to pieces when a range is
        // not all RAM) still reach RAM.
        if self.backed_read(gpa, buf) {
            return;
        }
        match self.region(gpa, buf.len() as u64) {
            Region::Virtio(off) if buf.len() <= 8 => {
                let v = self.console.mmio_read(self.mem, off, buf.len() as u8);
                let n = buf.len();
                buf.copy_from_slice(&v.to_le_bytes()[..n]);
            }
            _ => {
                buf.fill(0xff);
                self.fault_access(gpa, false);
            }
        }
    }

    fn mmio_write(&mut self, _t: u64, gpa: u64, buf: &[u8]) {
        if self.backed_write(gpa, buf) {
            return;
        }
        match self.region(gpa, buf.len() as u64) {
            Region::Virtio(off) if buf.len() <= 8 => {
                let mut b = [0u8; 8];
                b[..buf.len()].copy_from_slice(buf);
                self.console
                    .mmio_write(self.mem, off, buf.len() as u8, u64::from_le_bytes(b));
            }
            _ => self.fault_access(gpa, true),
        }
    }

    fn pio_in(&mut self, _t: u64, port: u16, _size: u8) -> u32 {
        self.outside(format!(
            "accessed I/O port {port:#x} (read): a stub domain has no port I/O"
        ));
        u32::MAX
    }

    fn pio_out(&mut self, _t: u64, port: u16, _size: u8, _value: u32) {
        self.outside(format!(
            "accessed I/O port {port:#x} (write): a stub domain has no port I/O"
        ));
    }

    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> [u32; 4] {
        self.cpuid.leaf(leaf, subleaf, 0, false)
    }

    fn rdmsr(&mut self, _t: u64, _msr: u32) -> Option<u64> {
        None
    }

    fn wrmsr(&mut self, _t: u64, _msr: u32, _value: u64) -> bool {
        false
    }

    fn tsc(&mut self, _t: u64) -> u64 {
        self.st.now_ns()
    }

    fn hypercall(&mut self, _t: u64, gpr: &mut [u64; 16], long_mode: bool) {
        use hypervisor_emu::cpu::{RAX, RBX, RCX, RDI, RDX, RSI};
        const R10: usize = 10;
        let nr = if long_mode {
            gpr[RAX]
        } else {
            gpr[RAX] & 0xffff_ffff
        };
        let r = if nr != HYPERVISOR_CHASSIS_STUB as u64 {
            ENOSYS
        } else {
            let ops = StubOps {
                ch: self.ch,
                st: self.st,
                stub_mem: self.mem,
            };
            if long_mode {
                ops.call(gpr[RDI], gpr[RSI], gpr[RDX], gpr[R10])
            } else {
                // Xen's 32-bit convention: EBX, ECX, EDX, ESI.
                let m = |v: u64| v & 0xffff_ffff;
                ops.call(m(gpr[RBX]), m(gpr[RCX]), m(gpr[RDX]), m(gpr[RSI]))
            }
        };
        gpr[RAX] = if long_mode { r as u64 } else { r as u32 as u64 };
    }

    fn interrupt_pending(&mut self, _t: u64) -> bool {
        self.ch.upcall.load(Ordering::Relaxed)
    }

    fn acknowledge_interrupt(&mut self, _t: u64) -> Option<u8> {
        self.ch
            .upcall
            .swap(false, Ordering::SeqCst)
            .then_some(map::UPCALL_VECTOR)
    }

    fn take_written_code_pages(&mut self, _f: &mut dyn FnMut(u64)) {}

    fn stop_requested(&mut self) -> bool {
        self.fault.is_some() || self.st.stopping()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::Layout;
    use crate::platform::CharOut;
    use crate::platform::tests::NoIrq;
    use hypervisor_emu::Bus;
    use std::time::Duration;

    #[test]
    fn ranges_and_the_backstop() {
        let guest = GuestMemory::new(Layout::from_mib(16).unwrap()).unwrap();
        let stub = GuestMemory::flat(2 << 20).unwrap();
        let written = WrittenPages::new(1);
        let st = PlatformState::new(&guest, &NoIrq, CharOut::Null, CharOut::Null);
        let ch = StubChannel::new("g-dm".into(), 1, Duration::from_secs(1), false);
        let console = VirtioConsole::new("g-dm", Box::new(|_| {}));
        let mut b = StubBus::new(&ch, &st, &stub, 16 << 20, Some(&written), console);
        // Own RAM, up to its last byte.
        assert!(b.ram_write(0x1000, &[1, 2, 3, 4]));
        let mut x = [0u8; 4];
        assert!(b.ram_read(0x1000, &mut x));
        assert_eq!(x, [1, 2, 3, 4]);
        assert!(b.ram_write((2 << 20) - 1, &[9]));
        assert!(
            !b.ram_read((2 << 20) - 2, &mut x),
            "straddles the end of RAM"
        );
        assert!(b.fault.is_none());
        // Shared pages: the ioreq page is seen by the host side.
        assert!(b.ram_write(map::IOREQ_PAGE + 8, &0xabcdu64.to_le_bytes()));
        assert_eq!(ch.pages.load(8, 8, Ordering::SeqCst), Some(0xabcd));
        assert_eq!(
            b.ram_cmpxchg(map::IOREQ_PAGE + 8, 8, 0xabcd, 1),
            Some(Ok(()))
        );
        assert!(b.ram_read(map::CONFIG_PAGE + 0xff8, &mut [0; 8]));
        assert!(!b.ram_read(map::SHARED_END - 4, &mut [0; 8]));
        // The guest window: RAM yes (writes reported to the guest CPUs), holes no.
        assert!(b.ram_write(map::GUEST_WINDOW + 0x5000, &[7; 8]));
        let mut pages = Vec::new();
        written.take(0, &mut |p| pages.push(p));
        assert_eq!(pages, [0x5000]);
        let mut g = [0u8; 8];
        guest.read(0x5000, &mut g).unwrap();
        assert_eq!(g, [7; 8]);
        assert!(
            !b.ram_read(map::GUEST_WINDOW + 0xa_0000, &mut x),
            "VGA hole"
        );
        assert!(
            !b.ram_read(map::GUEST_WINDOW + (16 << 20), &mut x),
            "past it"
        );
        assert!(
            b.fault.is_none(),
            "ram_* only say no; the CPU then asks mmio_*"
        );
        // The virtio window is MMIO.
        assert!(!b.ram_read(map::VIRTIO_BASE, &mut x));
        b.mmio_read(0, map::VIRTIO_BASE, &mut x);
        assert!(b.fault.is_none());
        // Outside: reported, the slice stops.
        assert!(!b.stop_requested());
        b.mmio_read(0, 0x4000_0000, &mut x);
        assert_eq!(x, [0xff; 4]);
        assert!(b.stop_requested());
        assert_eq!(
            b.fault.as_deref(),
            Some("stub domain 'g-dm' accessed stub-physical 0x40000000 outside its memory (read)")
        );
        // The first report wins.
        b.mmio_write(0, map::GUEST_WINDOW + 0xa_0000, &[1]);
        assert!(b.fault.as_deref().unwrap().contains("0x40000000"));
        let mut b2 = StubBus::new(
            &ch,
            &st,
            &stub,
            16 << 20,
            None,
            VirtioConsole::new("g-dm", Box::new(|_| {})),
        );
        b2.mmio_write(0, map::GUEST_WINDOW + (16 << 20), &[1, 2]);
        assert_eq!(
            b2.fault.as_deref(),
            Some(
                "stub domain 'g-dm' accessed stub-physical 0x10001000000 outside its memory (write)"
            )
        );
        let mut b3 = StubBus::new(
            &ch,
            &st,
            &stub,
            16 << 20,
            None,
            VirtioConsole::new("g-dm", Box::new(|_| {})),
        );
        b3.pio_out(0, 0x3f8, 1, 0x41);
        assert!(
            b3.fault
                .as_deref()
                .unwrap()
                .contains("I/O port 0x3f8 (write)")
        );
        // Wrapping ranges are outside.
        assert_eq!(b3.region(u64::MAX - 1, 4), Region::Outside);
    }

    #[test]
    fn hypercalls_and_upcalls() {
        let guest = GuestMemory::new(Layout::from_mib(16).unwrap()).unwrap();
        let stub = GuestMemory::flat(2 << 20).unwrap();
        let st = PlatformState::new(&guest, &NoIrq, CharOut::Null, CharOut::Null);
        let ch = StubChannel::new("g-dm".into(), 1, Duration::from_secs(1), false);
        let mut b = StubBus::new(
            &ch,
            &st,
            &stub,
            16 << 20,
            None,
            VirtioConsole::new("g-dm", Box::new(|_| {})),
        );
        use hypervisor_emu::cpu::{RAX, RBX, RDI};
        let mut g = [0u64; 16];
        g[RAX] = 17; // xen_version: not for stubs
        b.hypercall(0, &mut g, true);
        assert_eq!(g[RAX] as i64, ENOSYS);
        g[RAX] = HYPERVISOR_CHASSIS_STUB as u64;
        g[RDI] = hypervisor_abi::hypercall::StubOp::Ready.raw() as u64;
        b.hypercall(0, &mut g, true);
        assert_eq!(g[RAX], 0);
        assert!(ch.is_ready());
        // 32-bit convention: op in EBX, result in EAX.
        g[RAX] = HYPERVISOR_CHASSIS_STUB as u64;
        g[RBX] = 99;
        b.hypercall(0, &mut g, false);
        assert_eq!(g[RAX], ENOSYS as u32 as u64);
        // The upcall is an edge: raised once, acknowledged once.
        assert!(!b.interrupt_pending(0));
        ch.signal(1);
        assert!(b.interrupt_pending(0));
        assert_eq!(b.acknowledge_interrupt(0), Some(map::UPCALL_VECTOR));
        assert_eq!(b.acknowledge_interrupt(0), None);
        assert_eq!(b.rdmsr(0, 0x1b), None);
        assert!(!b.wrmsr(0, 0x4000_0200, 0x2000));
    }
}
