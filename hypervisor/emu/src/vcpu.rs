//! The run loop of one software vCPU: fetch (through the decoded-instruction cache),
//! execute, deliver interrupts and exceptions, until a budget of instructions is spent
//! or something the caller must handle happens.

use crate::bus::Bus;
use crate::cpu::{CS, Cpu, IF};
use crate::decode_cache::DecodeCache;
use crate::exec::{self, Exception};
use crate::fast::{Fast, Kind};
use crate::interrupt::{self, Class};
use crate::mem::{Fault, Memory};
use crate::mmu::{self, Access};
use crate::ops;

/// Why [`EmuVcpu::run`] returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunExit {
    /// The instruction budget is spent; run again after checking for stop.
    Budget,
    /// The CPU is halted (HLT) and no interrupt is pending. `interrupts_enabled` is
    /// RFLAGS.IF: with IF = 0 only NMI/INIT/reset can wake it.
    Halted { interrupts_enabled: bool },
    /// [`Bus::stop_requested`] said so after an access.
    Stopped,
    /// The guest shut the CPU down (triple fault): what happened, with registers.
    Shutdown(String),
}

/// One software vCPU.
pub struct EmuVcpu {
    pub cpu: Cpu,
    retired: u64,
    cache: DecodeCache,
    shutdown: Option<String>,
}

/// [`Memory`] over the [`Bus`]: RAM, else MMIO in naturally aligned pieces; stores
/// drop cached code; every port/MMIO access asks whether to stop.
struct BusMem<'a, B: Bus + ?Sized> {
    bus: &'a mut B,
    t: u64,
    stop: bool,
    /// An access that may have changed the interrupt controllers happened (or IF was
    /// clear): ask for interrupts before the next instruction.
    poll: bool,
    cache: &'a mut DecodeCache,
}

impl<B: Bus + ?Sized> BusMem<'_, B> {
    /// Split a non-RAM range into naturally aligned 1/2/4/8-byte pieces.
    fn pieces(addr: u64, len: usize, mut f: impl FnMut(u64, core::ops::Range<usize>)) {
        let mut p = 0usize;
        while p < len {
            let a = addr.wrapping_add(p as u64);
            let mut k = 8usize;
            while k > 1 && (k > len - p || !a.is_multiple_of(k as u64)) {
                k /= 2;
            }
            f(a, p..p + k);
            p += k;
        }
    }
}

impl<B: Bus + ?Sized> Memory for BusMem<'_, B> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
        if self.bus.ram_read(addr, buf) {
            return Ok(());
        }
        let (bus, t) = (&mut *self.bus, self.t);
        Self::pieces(addr, buf.len(), |a, r| {
            let b = &mut buf[r];
            if bus.ram_read(a, b) {
                return;
            }
            // A piece across the end of RAM: its RAM bytes from RAM, the rest as
            // single-byte MMIO; a piece with no RAM at all is one MMIO access.
            let mut any_ram = false;
            for (k, x) in b.iter_mut().enumerate() {
                any_ram |= bus.ram_read(a.wrapping_add(k as u64), core::slice::from_mut(x));
            }
            if !any_ram {
                bus.mmio_read(t, a, b);
            } else {
                for (k, x) in b.iter_mut().enumerate() {
                    let one = core::slice::from_mut(x);
                    if !bus.ram_read(a.wrapping_add(k as u64), one) {
                        bus.mmio_read(t, a.wrapping_add(k as u64), one);
                    }
                }
            }
        });
        self.stop |= self.bus.stop_requested();
        self.poll = true;
        Ok(())
    }

    fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), Fault> {
        self.cache.written(addr, buf.len());
        if self.bus.ram_write(addr, buf) {
            return Ok(());
        }
        let (bus, t) = (&mut *self.bus, self.t);
        Self::pieces(addr, buf.len(), |a, r| {
            let b = &buf[r];
            if bus.ram_write(a, b) {
                return;
            }
            let mut probe = [0u8; 1];
            let any_ram = (0..b.len()).any(|k| bus.ram_read(a.wrapping_add(k as u64), &mut probe));
            if !any_ram {
                bus.mmio_write(t, a, b);
            } else {
                for (k, x) in b.iter().enumerate() {
                    let one = core::slice::from_ref(x);
                    if !bus.ram_write(a.wrapping_add(k as u64), one) {
                        bus.mmio_write(t, a.wrapping_add(k as u64), one);
                    }
                }
            }
        });
        self.stop |= self.bus.stop_requested();
        self.poll = true;
        Ok(())
    }

    fn fetch(&mut self, addr: u64, buf: &mut [u8]) -> Result<(usize, bool), Fault> {
        self.bus.code_page_cached(addr);
        if self.bus.ram_read(addr, buf) {
            return Ok((buf.len(), true));
        }
        // Up to the end of RAM only: prefetching must not read MMIO behind it.
        let mut n = 0;
        while n < buf.len()
            && self
                .bus
                .ram_read(addr.wrapping_add(n as u64), &mut buf[n..n + 1])
        {
            n += 1;
        }
        if n > 0 {
            return Ok((n, true));
        }
        // Code in MMIO (a ROM behind the bus): read it, never cache it.
        self.read(addr, buf)?;
        Ok((buf.len(), false))
    }

    fn pio_in(&mut self, port: u16, size: u8) -> u32 {
        let v = self.bus.pio_in(self.t, port, size);
        self.stop |= self.bus.stop_requested();
        self.poll = true;
        v
    }

    fn pio_out(&mut self, port: u16, size: u8, value: u32) {
        self.bus.pio_out(self.t, port, size, value);
        self.stop |= self.bus.stop_requested();
        self.poll = true;
    }

    fn stop_pending(&self) -> bool {
        self.stop
    }

    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> [u32; 4] {
        self.bus.cpuid(leaf, subleaf)
    }

    fn rdmsr(&mut self, msr: u32) -> Option<u64> {
        self.bus.rdmsr(self.t, msr)
    }

    fn wrmsr(&mut self, msr: u32, value: u64) -> bool {
        let ok = self.bus.wrmsr(self.t, msr, value);
        self.stop |= self.bus.stop_requested();
        self.poll = true;
        ok
    }

    fn tsc(&mut self) -> u64 {
        self.bus.tsc(self.t)
    }

    fn hypercall(&mut self, gpr: &mut [u64; 16], long_mode: bool) -> bool {
        self.bus.hypercall(self.t, gpr, long_mode);
        self.stop |= self.bus.stop_requested();
        self.poll = true;
        true
    }

    fn cmpxchg(&mut self, addr: u64, size: u8, old: u64, new: u64) -> Option<Result<(), u64>> {
        self.cache.written(addr, size as usize);
        self.bus.ram_cmpxchg(addr, size, old, new)
    }
}

/// Instructions between interrupt polls while nothing else asks for one.
const POLL_INTERVAL: u64 = 16;

/// Bound on exceptions raised while delivering one event (then: triple fault).
const MAX_NESTED: usize = 4;

/// Deliver an event, turning faults during delivery into #DF and a fault during #DF
/// delivery into a triple fault (`Err` = the shutdown reason).
fn raise(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    mut vector: u8,
    mut code: Option<u32>,
    mut soft: bool,
    mut cls: Class,
) -> Result<(), String> {
    let mut history = String::new();
    for _ in 0..MAX_NESTED {
        match interrupt::deliver(cpu, mem, vector, code, soft) {
            Ok(()) => return Ok(()),
            Err(Exception::Unsupported(why)) => return Err(why.to_string()),
            Err(e2) => {
                use core::fmt::Write;
                let _ = write!(history, "vector {vector} -> {e2:?}; ");
                if cls == Class::DoubleFault {
                    return Err(format!("triple fault: {history}"));
                }
                let c2 = interrupt::class(&e2);
                if let Exception::PageFault { addr, .. } = e2 {
                    cpu.cr2 = addr;
                }
                if interrupt::is_double(cls, c2) {
                    vector = 8;
                    code = Some(0);
                    cls = Class::DoubleFault;
                } else {
                    vector = e2.vector().unwrap_or(13);
                    code = e2.error_code();
                    cls = c2;
                }
                soft = false;
            }
        }
    }
    Err(format!("triple fault (nested delivery bound): {history}"))
}

/// Deliver an exception raised by an instruction (RIP at the instruction, or after it
/// for software interrupts).
fn raise_exception(cpu: &mut Cpu, mem: &mut dyn Memory, e: Exception) -> Result<(), String> {
    match e {
        Exception::Unsupported(why) => Err(why.to_string()),
        Exception::SoftInt(v) => raise(cpu, mem, v, None, v != 1, Class::Benign),
        _ => {
            if let Exception::PageFault { addr, .. } = e {
                cpu.cr2 = addr;
            }
            let v = e.vector().unwrap_or(13);
            raise(cpu, mem, v, e.error_code(), false, interrupt::class(&e))
        }
    }
}

impl EmuVcpu {
    pub fn new(cpu: Cpu) -> Self {
        EmuVcpu {
            cpu,
            retired: 0,
            cache: DecodeCache::default(),
            shutdown: None,
        }
    }

    /// Instructions retired so far (the `t` of every [`Bus`] call).
    pub fn retired(&self) -> u64 {
        self.retired
    }

    /// Start over with register state `cpu` (machine reset, INIT): clears a shutdown
    /// and the decoded code; the retired count (guest time) goes on.
    pub fn reset(&mut self, cpu: Cpu) {
        self.cpu = cpu;
        self.shutdown = None;
        self.cache.clear();
    }

    /// Why the vCPU shut down, if it did (every later `run` returns it again).
    pub fn shutdown_reason(&self) -> Option<&str> {
        self.shutdown.as_deref()
    }

    /// Drop all decoded code (e.g. after the caller rewrote guest memory wholesale).
    pub fn flush_code_cache(&mut self) {
        self.cache.clear();
    }

    /// Run at most `budget` instructions.
    ///
    /// Generic over the bus so that a concrete bus's RAM accessors inline into the
    /// memory path (`&mut dyn Bus` works as well).
    pub fn run<B: Bus + ?Sized>(&mut self, bus: &mut B, budget: u64) -> RunExit {
        if let Some(s) = &self.shutdown {
            return RunExit::Shutdown(s.clone());
        }
        let cache = &mut self.cache;
        bus.take_written_code_pages(&mut |p| cache.invalidate(p));
        let mut m = BusMem {
            bus,
            t: self.retired,
            stop: false,
            poll: true,
            cache: &mut self.cache,
        };
        let cpu = &mut self.cpu;
        let mut retired = self.retired;
        // The budget counts instructions and exception deliveries alike: a guest whose
        // handler faults again forever (which real hardware would also loop on) must
        // still give the slice back.
        let mut spent = 0u64;
        let mut scratch = iced_x86::Instruction::default();
        let exit = loop {
            if spent >= budget {
                break RunExit::Budget;
            }
            spent += 1;
            m.t = retired;
            // Interrupts are polled on the first instruction with IF = 1 (and no
            // shadow) after any instruction without, after every port/MMIO/MSR access,
            // while halted, and otherwise every POLL_INTERVAL instructions: a controller
            // raised from another thread is seen a few instructions late, which
            // interrupt latency allows, and the run loop does not call out to the bus
            // per instruction.
            if cpu.rflags & IF != 0 && !cpu.shadow {
                if core::mem::take(&mut m.poll) || cpu.halted || spent % POLL_INTERVAL == 0 {
                    if m.bus.interrupt_pending(retired)
                        && let Some(v) = m.bus.acknowledge_interrupt(retired)
                    {
                        cpu.halted = false;
                        // Code other vCPUs patched (int3 + sync IPIs) is dropped by now
                        // at the latest.
                        let c = &mut *m.cache;
                        m.bus.take_written_code_pages(&mut |p| c.invalidate(p));
                        if let Err(why) = raise(cpu, &mut m, v, None, false, Class::Benign) {
                            break RunExit::Shutdown(why);
                        }
                    }
                }
            } else {
                m.poll = true;
            }
            if cpu.halted {
                break RunExit::Halted {
                    interrupts_enabled: cpu.rflags & IF != 0,
                };
            }
            cpu.shadow = false;
            let single_step = cpu.rflags & crate::cpu::TF != 0;
            let r = match fetch(cpu, &mut m, &mut scratch) {
                Ok((f, handle)) => {
                    let r = if f.kind != Kind::Slow {
                        crate::fast::exec_fast(cpu, &mut m, &f)
                    } else {
                        // The full decoding: from the cache, or the one just made.
                        if handle != FRESH {
                            match m.cache.instr(handle) {
                                Some(i) => scratch = i,
                                None => {
                                    break RunExit::Shutdown("decode cache lost an entry".into());
                                }
                            }
                        }
                        exec::execute_slow(cpu, &mut m, &scratch)
                    };
                    match r {
                        Err(Exception::SoftInt(_)) => {
                            // A trap: the return address is the next instruction.
                            cpu.rip = f.next;
                            retired += 1;
                        }
                        Ok(()) => retired += 1,
                        Err(_) => {}
                    }
                    r
                }
                Err(e) => Err(e),
            };
            if let Err(e) = r
                && let Err(why) = raise_exception(cpu, &mut m, e)
            {
                break RunExit::Shutdown(why);
            }
            // TF set when the instruction began: a single-step #DB trap after it
            // completes (DR6.BS).
            if single_step && r.is_ok() {
                cpu.dr[6] |= 1 << 14;
                if let Err(why) = raise(cpu, &mut m, 1, None, false, Class::Benign) {
                    break RunExit::Shutdown(why);
                }
            }
            if m.stop {
                break RunExit::Stopped;
            }
        };
        self.retired = retired;
        if let RunExit::Shutdown(why) = &exit {
            let s = format!("{why}; {}", summary(&self.cpu));
            self.shutdown = Some(s.clone());
            return RunExit::Shutdown(s);
        }
        exit
    }

    /// Where the vCPU is, for crash reports: RIP, CS, mode, CR0/CR3/CR4, EFER, RFLAGS.
    pub fn summary(&self) -> String {
        summary(&self.cpu)
    }
}

/// The instruction at CS:RIP, from the decode cache when possible.
/// Its classification and a [`DecodeCache::instr`] handle, or [`FRESH`]: the full
/// decoding is in `scratch`.
#[inline]
fn fetch<B: Bus + ?Sized>(
    cpu: &mut Cpu,
    m: &mut BusMem<'_, B>,
    scratch: &mut iced_x86::Instruction,
) -> Result<(Fast, usize), Exception> {
    let bitness = cpu.bitness();
    let lin = ops::code_linear(cpu, cpu.rip)?;
    let user = cpu.cpl() == 3;
    let phys = mmu::translate(cpu, m, lin, Access::Exec, user)?;
    if let Some(e) = m.cache.lookup(phys, bitness, cpu.rip) {
        return Ok(e);
    }
    let d = exec::fetch_decode(cpu, m)?;
    let f = crate::fast::classify(cpu, &d.instr);
    if d.cacheable {
        m.cache.insert(d.phys, (d.instr, f));
    }
    *scratch = d.instr;
    Ok((f, FRESH))
}

/// [`fetch`]: not from the cache.
const FRESH: usize = usize::MAX;

fn summary(c: &Cpu) -> String {
    let mode = if !c.protected() {
        "real"
    } else if c.mode64() {
        "64-bit"
    } else if c.long_mode() {
        "compat"
    } else if c.bitness() == 32 {
        "pm32"
    } else {
        "pm16"
    };
    format!(
        "mode={mode} cs={:#06x}:{:#x} (base {:#x}) rflags={:#x} cpl={} \
         rax={:#x} rbx={:#x} rcx={:#x} rdx={:#x} rsi={:#x} rdi={:#x} rbp={:#x} rsp={:#x} \
         ss={:#06x} ds={:#06x} es={:#06x} cr0={:#x} cr2={:#x} cr3={:#x} cr4={:#x} efer={:#x} \
         gdtr={:#x}/{:#x} idtr={:#x}/{:#x} tr={:#06x}",
        c.seg[CS].selector,
        c.rip,
        c.seg[CS].base,
        c.rflags,
        c.cpl(),
        c.gpr[0],
        c.gpr[3],
        c.gpr[1],
        c.gpr[2],
        c.gpr[6],
        c.gpr[7],
        c.gpr[5],
        c.gpr[4],
        c.seg[crate::cpu::SS].selector,
        c.seg[crate::cpu::DS].selector,
        c.seg[crate::cpu::ES].selector,
        c.cr0,
        c.cr2,
        c.cr3,
        c.cr4,
        c.efer,
        c.gdtr.base,
        c.gdtr.limit,
        c.idtr.base,
        c.idtr.limit,
        c.tr.selector,
    )
}
