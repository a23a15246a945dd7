//! Where `emu` vCPUs start.
//!
//! vCPU 0 starts at the firmware's PVH entry: 32-bit flat protected mode (CS = 0x8
//! execute/read base 0 limit 4 GiB, data segments 0x10), paging off, CR0 = PE | ET,
//! EFLAGS = 2 (interrupts off), EIP = the entry, EBX = the start-info address: the same
//! state the `kvm` backend sets with KVM_SET_SREGS/KVM_SET_REGS. The other vCPUs are not
//! started: they wait for INIT/SIPI (SMP start-up is not implemented yet).

use hypervisor_emu::EmuVcpu;
use hypervisor_emu::cpu::{Cpu, RBX};

/// CR0.PE | CR0.ET.
const PVH_CR0: u64 = 0x11;

/// vCPU 0 at the PVH entry.
pub fn pvh_vcpu(entry: u64, start_info: u64) -> EmuVcpu {
    let mut cpu = Cpu::new();
    cpu.rip = entry;
    cpu.gpr[RBX] = start_info;
    cpu.cr0 = PVH_CR0;
    cpu.cr3 = 0;
    cpu.cr4 = 0;
    cpu.efer = 0;
    cpu.rflags = 2;
    // The segment state (flat 32-bit CS/DS/ES/SS) is set here once the CPU models
    // segments; today's `Cpu` carries none.
    EmuVcpu::new(cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pvh_entry_registers() {
        let v = pvh_vcpu(0x10_0000, 0x6000);
        assert_eq!(v.cpu.rip, 0x10_0000);
        assert_eq!(v.cpu.gpr[RBX], 0x6000);
        assert_eq!(v.cpu.cr0, 0x11);
        assert_eq!(v.cpu.rflags, 2);
        assert_eq!(v.retired(), 0);
    }
}
