//! LOCK-prefixed read-modify-writes and XCHG with memory, atomic against the other
//! vCPUs' accesses to guest RAM.
//!
//! The instruction handlers read their memory operand, compute, and write the result
//! (memory first, registers and flags after, so a failed write leaves the registers
//! alone). A locked instruction runs them against [`LockMem`], which remembers the
//! values read and turns the write of a read location into a compare-and-swap against
//! the value read ([`Memory::cmpxchg`], host atomics on the RAM mapping). When another
//! vCPU changed the operand in between (a plain `mov` unlocking a spinlock, another
//! `lock cmpxchg`), the swap fails, nothing was stored, and the instruction runs again
//! from the start. Operands the memory cannot swap atomically (MMIO, misaligned or
//! page-split, CMPXCHG16B) run again under a process-wide lock that excludes every other
//! locked instruction (plain stores of other vCPUs are not excluded there: such split
//! locks are rare and slow on real CPUs too).

use std::sync::RwLock;

use iced_x86::{Instruction, Mnemonic, OpKind};

use crate::cpu::Cpu;
use crate::exec::Exception;
use crate::mem::{Fault, Memory};

/// Held shared by compare-and-swap instructions, exclusively by the serialised ones.
static BUS_LOCK: RwLock<()> = RwLock::new(());

/// Retries after lost compare-and-swaps before the instruction is serialised (each
/// loss means another vCPU made progress, so this is only reached under extreme
/// contention).
const MAX_RETRIES: u32 = 10_000;

/// Whether `i` must be atomic: a LOCK prefix, or XCHG with a memory operand.
#[inline]
pub(crate) fn is_locked(i: &Instruction) -> bool {
    i.has_lock_prefix()
        || (i.mnemonic() == Mnemonic::Xchg
            && (i.op0_kind() == OpKind::Memory || i.op1_kind() == OpKind::Memory))
}

type Handler = fn(&mut Cpu, &mut dyn Memory, &Instruction) -> Result<(), Exception>;

/// Run the locked instruction `i` through `run` atomically (see the module doc).
pub(crate) fn execute(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    i: &Instruction,
    run: Handler,
) -> Result<(), Exception> {
    for _ in 0..MAX_RETRIES {
        let _shared = BUS_LOCK.read().unwrap_or_else(|e| e.into_inner());
        let mut m = LockMem {
            inner: &mut *mem,
            reads: [(0, 0, 0); 4],
            n: 0,
            outcome: Outcome::Done,
            serial: false,
        };
        let r = run(cpu, &mut m, i);
        // A store that did not go through fails the instruction. One that completed
        // made all its stores: running it again would apply its effect twice.
        if r.is_ok() {
            debug_assert!(m.outcome == Outcome::Done, "a stopped store was swallowed");
            return r;
        }
        match m.outcome {
            Outcome::Done => return r,
            Outcome::Lost => continue,
            Outcome::Serialise => break,
        }
    }
    let _excl = BUS_LOCK.write().unwrap_or_else(|e| e.into_inner());
    let mut m = LockMem {
        inner: mem,
        reads: [(0, 0, 0); 4],
        n: 0,
        outcome: Outcome::Done,
        serial: true,
    };
    run(cpu, &mut m, i)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Every store went through (or the instruction faulted on its own).
    Done,
    /// A compare-and-swap found another value: nothing of the operand was stored.
    Lost,
    /// A store the memory cannot swap atomically: run again serialised.
    Serialise,
}

struct LockMem<'a> {
    inner: &'a mut dyn Memory,
    /// (address, size, value) of the naturally sized reads so far.
    reads: [(u64, u8, u64); 4],
    n: usize,
    outcome: Outcome,
    /// Under the exclusive lock: plain stores.
    serial: bool,
}

impl LockMem<'_> {
    fn read_value(&self, addr: u64, size: usize) -> Option<u64> {
        let exact = self.reads[..self.n]
            .iter()
            .rev()
            .find(|r| r.0 == addr && r.1 as usize == size)
            .map(|r| r.2);
        if exact.is_some() || size != 8 {
            return exact;
        }
        // CMPXCHG8B reads two dwords and stores one qword.
        let lo = self.read_value(addr, 4)?;
        let hi = self.read_value(addr.wrapping_add(4), 4)?;
        Some(lo | (hi << 32))
    }

    fn stop(&mut self, o: Outcome, addr: u64) -> Result<(), Fault> {
        self.outcome = o;
        Err(Fault { addr, write: true })
    }
}

impl Memory for LockMem<'_> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
        self.inner.read(addr, buf)?;
        if matches!(buf.len(), 1 | 2 | 4 | 8) && self.n < self.reads.len() {
            let mut b = [0u8; 8];
            b[..buf.len()].copy_from_slice(buf);
            self.reads[self.n] = (addr, buf.len() as u8, u64::from_le_bytes(b));
            self.n += 1;
        }
        Ok(())
    }

    fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), Fault> {
        if self.serial {
            return self.inner.write(addr, buf);
        }
        let Some(old) = self.read_value(addr, buf.len()) else {
            return self.stop(Outcome::Serialise, addr);
        };
        let mut b = [0u8; 8];
        b[..buf.len()].copy_from_slice(buf);
        match self
            .inner
            .cmpxchg(addr, buf.len() as u8, old, u64::from_le_bytes(b))
        {
            Some(Ok(())) => Ok(()),
            Some(Err(_)) => self.stop(Outcome::Lost, addr),
            None => self.stop(Outcome::Serialise, addr),
        }
    }

    // Page-table reads and A/D stores are not the operand: straight through, neither
    // recorded nor swapped (see `mmu::walk`).
    fn walk_read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
        self.inner.walk_read(addr, buf)
    }
    fn walk_write(&mut self, addr: u64, buf: &[u8]) -> Result<(), Fault> {
        self.inner.walk_write(addr, buf)
    }
    fn fetch(&mut self, addr: u64, buf: &mut [u8]) -> Result<(usize, bool), Fault> {
        self.inner.fetch(addr, buf)
    }
    fn pio_in(&mut self, port: u16, size: u8) -> u32 {
        self.inner.pio_in(port, size)
    }
    fn pio_out(&mut self, port: u16, size: u8, value: u32) {
        self.inner.pio_out(port, size, value)
    }
    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> [u32; 4] {
        self.inner.cpuid(leaf, subleaf)
    }
    fn rdmsr(&mut self, msr: u32) -> Option<u64> {
        self.inner.rdmsr(msr)
    }
    fn wrmsr(&mut self, msr: u32, value: u64) -> bool {
        self.inner.wrmsr(msr, value)
    }
    fn tsc(&mut self) -> u64 {
        self.inner.tsc()
    }
    fn stop_pending(&self) -> bool {
        self.inner.stop_pending()
    }
    fn hypercall(&mut self, gpr: &mut [u64; 16], long_mode: bool) -> bool {
        self.inner.hypercall(gpr, long_mode)
    }
    fn cmpxchg(&mut self, addr: u64, size: u8, old: u64, new: u64) -> Option<Result<(), u64>> {
        self.inner.cmpxchg(addr, size, old, new)
    }
}

#[cfg(test)]
mod tests {
    use crate::cpu::{Cpu, RAX};
    use crate::mem::{Fault, FlatMemory, Memory};

    /// Flat memory whose compare-and-swap sees another CPU store `interfere` to the
    /// operand before its first `losses` attempts (or cannot swap at all: `None`).
    struct Racy {
        m: FlatMemory,
        losses: u32,
        interfere: u16,
        atomic: bool,
        attempts: u32,
    }

    impl Memory for Racy {
        fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
            self.m.read(addr, buf)
        }
        fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), Fault> {
            self.m.write(addr, buf)
        }
        fn cmpxchg(&mut self, addr: u64, size: u8, old: u64, new: u64) -> Option<Result<(), u64>> {
            if !self.atomic {
                return None;
            }
            self.attempts += 1;
            if self.losses > 0 {
                self.losses -= 1;
                self.m.write_u16(addr, self.interfere).ok()?;
            }
            let cur = self.m.read_sized(addr, size as usize).ok()?;
            if cur != old {
                return Some(Err(cur));
            }
            self.m.write_sized(addr, size as usize, new).ok()?;
            Some(Ok(()))
        }
    }

    fn run(losses: u32, atomic: bool) -> (Cpu, Racy) {
        let mut m = FlatMemory::new(0, 0x2000);
        // lock xadd %ax,(0x1000) (real mode, CS:IP = 0:0)
        m.write(0, &[0xf0, 0x0f, 0xc1, 0x06, 0x00, 0x10]).unwrap();
        m.write_u16(0x1000, 5).unwrap();
        let mut mem = Racy {
            m,
            losses,
            interfere: 7,
            atomic,
            attempts: 0,
        };
        let mut cpu = Cpu::startup(0);
        cpu.gpr[RAX] = 1;
        crate::exec::step(&mut cpu, &mut mem).unwrap();
        (cpu, mem)
    }

    #[test]
    fn a_lost_swap_runs_the_instruction_again() {
        let (cpu, mut mem) = run(0, true);
        assert_eq!((cpu.gpr[RAX], mem.m.read_u16(0x1000).unwrap()), (5, 6));
        assert_eq!(mem.attempts, 1);
        // Another CPU stored 7 between the read and the swap: the result builds on it.
        let (cpu, mut mem) = run(1, true);
        assert_eq!((cpu.gpr[RAX], mem.m.read_u16(0x1000).unwrap()), (7, 8));
        assert_eq!(mem.attempts, 2);
        assert_eq!(cpu.rip, 6);
    }

    #[test]
    fn operands_without_atomics_are_serialised() {
        let (cpu, mut mem) = run(0, false);
        assert_eq!((cpu.gpr[RAX], mem.m.read_u16(0x1000).unwrap()), (5, 6));
        assert_eq!(cpu.rip, 6);
    }
}
