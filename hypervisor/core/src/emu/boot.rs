//! Where `emu` vCPUs start.
//!
//! vCPU 0 starts at the firmware's PVH entry: 32-bit flat protected mode (CS = 0x8
//! execute/read base 0 limit 4 GiB, data segments 0x10), paging off, CR0 = PE | ET,
//! EFLAGS = 2 (interrupts off), EIP = the entry, EBX = the start-info address: the same
//! state the `kvm` backend sets with KVM_SET_SREGS/KVM_SET_REGS. The other vCPUs are not
//! started: they wait for INIT/SIPI (SMP start-up is not implemented yet).

use hypervisor_emu::EmuVcpu;
use hypervisor_emu::cpu::Cpu;

/// vCPU 0 at the PVH entry.
pub fn pvh_vcpu(entry: u64, start_info: u64) -> EmuVcpu {
    EmuVcpu::new(Cpu::pvh_entry(entry, start_info))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypervisor_emu::cpu::{CS, RBX};

    #[test]
    fn pvh_entry_registers() {
        let v = pvh_vcpu(0x10_0000, 0x6000);
        assert_eq!(v.cpu.rip, 0x10_0000);
        assert_eq!(v.cpu.gpr[RBX], 0x6000);
        assert_eq!(v.cpu.cr0, 0x11);
        assert_eq!(v.cpu.rflags, 2);
        assert_eq!(v.retired(), 0);
        assert_eq!(v.cpu.bitness(), 32);
        assert_eq!(v.cpu.seg[CS].selector, 8);
    }
}
