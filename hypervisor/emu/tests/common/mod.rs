//! A test machine for the system tests: flat RAM, recorded port I/O, one pending
//! interrupt line, hypercalls, and a stop switch.

#![allow(dead_code)]

use hypervisor_emu::Bus;
use iced_x86::code_asm::CodeAssembler;

pub struct TestBus {
    pub ram: Vec<u8>,
    /// OUTs: (port, size, value).
    pub outs: Vec<(u16, u8, u32)>,
    /// INs: (port, size).
    pub ins: Vec<(u16, u8)>,
    /// What IN returns: port → value (else all ones).
    pub in_value: fn(u16) -> u32,
    /// A pending external interrupt vector.
    pub irq: Option<u8>,
    pub acks: u32,
    pub hypercalls: Vec<u64>,
    /// OUT to this port requests a stop.
    pub stop_port: Option<u16>,
    pub stop: bool,
    pub written_code: Vec<u64>,
    pub mmio: Vec<(u64, bool, usize)>,
    /// Implement [`Bus::ram_cmpxchg`] (as `hypervisor-core` does) so LOCKed
    /// instructions take the compare-and-swap path; off: they are serialised.
    pub atomics: bool,
    /// Successful and failed `ram_cmpxchg` calls.
    pub cas_ok: u32,
    pub cas_lost: u32,
}

impl TestBus {
    pub fn new(size: usize) -> Self {
        TestBus {
            ram: vec![0; size],
            outs: Vec::new(),
            ins: Vec::new(),
            in_value: |_| 0xffff_ffff,
            irq: None,
            acks: 0,
            hypercalls: Vec::new(),
            stop_port: None,
            stop: false,
            written_code: Vec::new(),
            mmio: Vec::new(),
            atomics: false,
            cas_ok: 0,
            cas_lost: 0,
        }
    }

    pub fn load(&mut self, addr: u64, bytes: &[u8]) {
        self.ram[addr as usize..addr as usize + bytes.len()].copy_from_slice(bytes);
    }

    pub fn u64_at(&self, addr: u64) -> u64 {
        u64::from_le_bytes(
            self.ram[addr as usize..addr as usize + 8]
                .try_into()
                .unwrap(),
        )
    }

    pub fn u32_at(&self, addr: u64) -> u32 {
        u32::from_le_bytes(
            self.ram[addr as usize..addr as usize + 4]
                .try_into()
                .unwrap(),
        )
    }

    pub fn put_u64(&mut self, addr: u64, v: u64) {
        self.load(addr, &v.to_le_bytes());
    }

    pub fn put_u32(&mut self, addr: u64, v: u32) {
        self.load(addr, &v.to_le_bytes());
    }

    fn range(&self, gpa: u64, len: usize) -> Option<core::ops::Range<usize>> {
        let s = usize::try_from(gpa).ok()?;
        let e = s.checked_add(len)?;
        (e <= self.ram.len()).then_some(s..e)
    }
}

impl Bus for TestBus {
    fn ram_read(&mut self, gpa: u64, buf: &mut [u8]) -> bool {
        match self.range(gpa, buf.len()) {
            Some(r) => {
                buf.copy_from_slice(&self.ram[r]);
                true
            }
            None => false,
        }
    }
    fn ram_write(&mut self, gpa: u64, buf: &[u8]) -> bool {
        match self.range(gpa, buf.len()) {
            Some(r) => {
                self.ram[r].copy_from_slice(buf);
                true
            }
            None => false,
        }
    }
    fn mmio_read(&mut self, _t: u64, gpa: u64, buf: &mut [u8]) {
        self.mmio.push((gpa, false, buf.len()));
        buf.fill(0xff);
    }
    fn mmio_write(&mut self, _t: u64, gpa: u64, buf: &[u8]) {
        self.mmio.push((gpa, true, buf.len()));
    }
    fn pio_in(&mut self, _t: u64, port: u16, size: u8) -> u32 {
        self.ins.push((port, size));
        (self.in_value)(port)
    }
    fn pio_out(&mut self, _t: u64, port: u16, size: u8, value: u32) {
        self.outs.push((port, size, value));
        if self.stop_port == Some(port) {
            self.stop = true;
        }
    }
    fn cpuid(&mut self, leaf: u32, _subleaf: u32) -> [u32; 4] {
        [leaf, 0x756e_6547, 0x6c65_746e, 0x4965_6e69]
    }
    fn rdmsr(&mut self, _t: u64, _msr: u32) -> Option<u64> {
        None
    }
    fn wrmsr(&mut self, _t: u64, _msr: u32, _value: u64) -> bool {
        false
    }
    fn tsc(&mut self, t: u64) -> u64 {
        t * 10
    }
    fn hypercall(&mut self, _t: u64, gpr: &mut [u64; 16], _long_mode: bool) {
        self.hypercalls.push(gpr[0]);
        gpr[0] = 0;
    }
    fn interrupt_pending(&mut self, _t: u64) -> bool {
        self.irq.is_some()
    }
    fn acknowledge_interrupt(&mut self, _t: u64) -> Option<u8> {
        self.acks += 1;
        self.irq.take()
    }
    fn take_written_code_pages(&mut self, f: &mut dyn FnMut(u64)) {
        for p in self.written_code.drain(..) {
            f(p);
        }
    }
    fn ram_cmpxchg(&mut self, gpa: u64, size: u8, old: u64, new: u64) -> Option<Result<(), u64>> {
        let n = size as usize;
        if !self.atomics || !matches!(n, 1 | 2 | 4 | 8) || !gpa.is_multiple_of(n as u64) {
            return None;
        }
        let r = self.range(gpa, n)?;
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(&self.ram[r.clone()]);
        let cur = u64::from_le_bytes(b);
        let m = if n == 8 {
            u64::MAX
        } else {
            (1u64 << (8 * n)) - 1
        };
        if cur != old & m {
            self.cas_lost += 1;
            return Some(Err(cur));
        }
        self.ram[r].copy_from_slice(&new.to_le_bytes()[..n]);
        self.cas_ok += 1;
        Some(Ok(()))
    }
    fn stop_requested(&mut self) -> bool {
        core::mem::take(&mut self.stop)
    }
}

/// Assemble `f`'s code for `bitness` at `ip`.
pub fn asm(
    bitness: u32,
    ip: u64,
    f: impl FnOnce(&mut CodeAssembler) -> Result<(), iced_x86::IcedError>,
) -> Vec<u8> {
    let mut a = CodeAssembler::new(bitness).unwrap();
    f(&mut a).unwrap();
    a.assemble(ip).unwrap()
}

/// A code/data descriptor.
pub fn desc(base: u32, limit: u32, access: u8, flags: u8) -> u64 {
    (limit as u64 & 0xffff)
        | ((base as u64 & 0xff_ffff) << 16)
        | ((access as u64) << 40)
        | (((limit as u64 >> 16) & 0xf) << 48)
        | (((flags as u64) & 0xf) << 52)
        | (((base as u64) >> 24) << 56)
}

/// far JMP ptr16:32 bytes (0xEA) for 32-bit code.
pub fn ljmp32(sel: u16, off: u32) -> Vec<u8> {
    let mut v = vec![0xea];
    v.extend_from_slice(&off.to_le_bytes());
    v.extend_from_slice(&sel.to_le_bytes());
    v
}

/// far JMP ptr16:16 bytes (0xEA) for 16-bit code.
pub fn ljmp16(sel: u16, off: u16) -> Vec<u8> {
    let mut v = vec![0xea];
    v.extend_from_slice(&off.to_le_bytes());
    v.extend_from_slice(&sel.to_le_bytes());
    v
}
