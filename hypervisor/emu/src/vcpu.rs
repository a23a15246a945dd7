//! The run loop of one software vCPU: fetch (through the decoded-instruction cache),
//! execute, deliver interrupts and exceptions, until a budget of instructions is spent
//! or something the caller must handle happens.

use crate::bus::Bus;
use crate::cpu::Cpu;

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
}

impl EmuVcpu {
    pub fn new(cpu: Cpu) -> Self {
        EmuVcpu { cpu, retired: 0 }
    }

    /// Instructions retired so far (the `t` of every [`Bus`] call).
    pub fn retired(&self) -> u64 {
        self.retired
    }

    /// Run at most `budget` instructions.
    pub fn run(&mut self, bus: &mut dyn Bus, budget: u64) -> RunExit {
        let _ = (bus, budget);
        RunExit::Shutdown(crate::NOT_YET.into())
    }

    /// Where the vCPU is, for crash reports: RIP, CS, mode, CR0/CR3/CR4, EFER, RFLAGS.
    pub fn summary(&self) -> String {
        format!(
            "rip={:#x} rflags={:#x} cr0={:#x} cr3={:#x} cr4={:#x} efer={:#x}",
            self.cpu.rip, self.cpu.rflags, self.cpu.cr0, self.cpu.cr3, self.cpu.cr4, self.cpu.efer
        )
    }
}
