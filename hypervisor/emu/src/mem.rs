//! The machine as the interpreter sees it: guest-PHYSICAL memory plus the platform
//! services instructions reach (ports, CPUID, MSRs, TSC, hypercalls).
//!
//! Segmentation and paging sit in front of this (`ops`, `mmu`). The run loop implements
//! [`Memory`] over a [`crate::Bus`]; tests implement just `read`/`write` over flat
//! buffers and get the defaults for the platform calls.

/// A physical access the memory does not back (only test memories produce it: over a
/// `Bus` every address is RAM or MMIO).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub addr: u64,
    pub write: bool,
}

/// Guest-physical memory and the platform. Multi-byte values are little-endian.
pub trait Memory {
    /// Fill `buf` from physical `addr`.
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Fault>;
    /// Store `buf` at physical `addr`. On failure nothing was stored.
    fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), Fault>;

    /// The page walker's own accesses: page-table entries and the Accessed/Dirty bits
    /// it stores into them. They are implicit accesses, never part of an instruction's
    /// operands, so a memory that gives operand accesses a meaning (the LOCK wrapper in
    /// `atomic`, which turns operand stores into compare-and-swaps) passes these
    /// through untouched.
    fn walk_read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
        self.read(addr, buf)
    }
    fn walk_write(&mut self, addr: u64, buf: &[u8]) -> Result<(), Fault> {
        self.write(addr, buf)
    }

    /// Instruction fetch into `buf`: how many bytes were fetched (fewer than asked when
    /// RAM ends: the CPU does not prefetch into MMIO behind RAM) and whether they are
    /// RAM (and so may be cached decoded).
    fn fetch(&mut self, addr: u64, buf: &mut [u8]) -> Result<(usize, bool), Fault> {
        self.read(addr, buf).map(|()| (buf.len(), true))
    }
    /// IN: `size` is 1, 2 or 4. Default: nothing there (all ones).
    fn pio_in(&mut self, _port: u16, _size: u8) -> u32 {
        u32::MAX
    }
    fn pio_out(&mut self, _port: u16, _size: u8, _value: u32) {}
    fn cpuid(&mut self, _leaf: u32, _subleaf: u32) -> [u32; 4] {
        [0; 4]
    }
    /// An MSR the CPU does not own. `None` = #GP(0).
    fn rdmsr(&mut self, _msr: u32) -> Option<u64> {
        None
    }
    fn wrmsr(&mut self, _msr: u32, _value: u64) -> bool {
        false
    }
    fn tsc(&mut self) -> u64 {
        0
    }
    /// Whether a port/MMIO access asked the run loop to stop (a REP string instruction
    /// then ends its chunk early).
    fn stop_pending(&self) -> bool {
        false
    }
    /// VMCALL/VMMCALL. `false` = no hypervisor here (#UD).
    fn hypercall(&mut self, _gpr: &mut [u64; 16], _long_mode: bool) -> bool {
        false
    }
    /// Atomic compare-and-exchange of `size` (1, 2, 4, 8) bytes at physical `addr`
    /// (LOCKed instructions, `atomic`): `Some(Ok)` = `new` stored, `Some(Err(v))` = the
    /// memory held `v`, nothing stored; `None` = cannot be done atomically here (not
    /// RAM, misaligned): the caller serialises instead.
    fn cmpxchg(&mut self, _addr: u64, _size: u8, _old: u64, _new: u64) -> Option<Result<(), u64>> {
        None
    }

    fn read_u8(&mut self, addr: u64) -> Result<u8, Fault> {
        let mut b = [0u8; 1];
        self.read(addr, &mut b)?;
        Ok(b[0])
    }
    fn read_u16(&mut self, addr: u64) -> Result<u16, Fault> {
        let mut b = [0u8; 2];
        self.read(addr, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }
    fn read_u32(&mut self, addr: u64) -> Result<u32, Fault> {
        let mut b = [0u8; 4];
        self.read(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn read_u64(&mut self, addr: u64) -> Result<u64, Fault> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn write_u8(&mut self, addr: u64, v: u8) -> Result<(), Fault> {
        self.write(addr, &[v])
    }
    fn write_u16(&mut self, addr: u64, v: u16) -> Result<(), Fault> {
        self.write(addr, &v.to_le_bytes())
    }
    fn write_u32(&mut self, addr: u64, v: u32) -> Result<(), Fault> {
        self.write(addr, &v.to_le_bytes())
    }
    fn write_u64(&mut self, addr: u64, v: u64) -> Result<(), Fault> {
        self.write(addr, &v.to_le_bytes())
    }

    /// Read `size` (1, 2, 4 or 8) bytes zero-extended.
    fn read_sized(&mut self, addr: u64, size: usize) -> Result<u64, Fault> {
        let mut b = [0u8; 8];
        let n = size.min(8);
        self.read(addr, &mut b[..n])?;
        Ok(u64::from_le_bytes(b))
    }
    /// Write the low `size` (1, 2, 4 or 8) bytes of `v`.
    fn write_sized(&mut self, addr: u64, size: usize, v: u64) -> Result<(), Fault> {
        let b = v.to_le_bytes();
        self.write(addr, &b[..size.min(8)])
    }
}

/// One contiguous block of memory at `base`; everything else faults.
#[derive(Clone, Debug)]
pub struct FlatMemory {
    pub base: u64,
    pub data: Vec<u8>,
}

impl FlatMemory {
    pub fn new(base: u64, size: usize) -> Self {
        FlatMemory {
            base,
            data: vec![0; size],
        }
    }

    fn range(&self, addr: u64, len: usize, write: bool) -> Result<core::ops::Range<usize>, Fault> {
        let off = addr.wrapping_sub(self.base);
        let fault = Fault { addr, write };
        let start = usize::try_from(off).map_err(|_| fault)?;
        let end = start.checked_add(len).ok_or(fault)?;
        if end > self.data.len() {
            return Err(fault);
        }
        Ok(start..end)
    }
}

impl Memory for FlatMemory {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
        let r = self.range(addr, buf.len(), false)?;
        buf.copy_from_slice(&self.data[r]);
        Ok(())
    }
    fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), Fault> {
        let r = self.range(addr, buf.len(), true)?;
        self.data[r].copy_from_slice(buf);
        Ok(())
    }
}
