//! The `emu` backend: guests on the software x86-64 CPU (`hypervisor-emu`).
//!
//! Unlike `kvm`, where the kernel owns the interrupt controllers and the PIT, here they
//! are ours: [`EmuVm`] owns them ([`irqchip`]), the CPUID profile ([`cpuid`]) and the
//! queues of pages written behind the CPUs' backs ([`written`]). Each vCPU runs
//! [`hypervisor_emu::EmuVcpu::run`] in slices against its [`bus::EmuBus`], which sends
//! device accesses through the same dispatcher as `kvm` ([`crate::dispatch`]).
//! Guest time is the host clock or, in deterministic mode, vCPU 0's instruction count
//! ([`clock`]). The per-vCPU run loop is [`vcpu::run_vcpu`].

pub mod boot;
pub mod bus;
pub mod clock;
pub mod cpuid;
pub mod irqchip;
pub mod vcpu;
pub mod written;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::backend::Kick;
use cpuid::CpuidProfile;
use irqchip::IrqChip;
use written::WrittenPages;

/// One `emu` virtual machine: what its vCPUs share besides memory and devices.
pub struct EmuVm {
    /// Shared with the kick handles (which must outlive any borrow).
    pub irq: Arc<IrqChip>,
    pub cpuid: CpuidProfile,
    pub written: WrittenPages,
    vcpus: u32,
    /// Per vCPU: it cannot wake itself (wait-for-SIPI, HLT with interrupts disabled, or
    /// HLT with no timer armed and no console input); only another vCPU can wake it.
    idle: Vec<AtomicBool>,
}

impl EmuVm {
    pub fn new(vcpus: u32) -> EmuVm {
        let vcpus = vcpus.clamp(1, 255);
        EmuVm {
            irq: Arc::new(IrqChip::new(vcpus)),
            cpuid: CpuidProfile::new(vcpus),
            written: WrittenPages::new(vcpus),
            vcpus,
            idle: (0..vcpus).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// Record whether vCPU `i` can only be woken by another vCPU; returns whether that
    /// now holds for every vCPU (then nothing can wake any of them).
    pub fn set_idle(&self, i: usize, idle: bool) -> bool {
        if let Some(f) = self.idle.get(i) {
            f.store(idle, Ordering::SeqCst);
        }
        idle && self.idle.iter().all(|f| f.load(Ordering::SeqCst))
    }

    pub fn vcpus(&self) -> u32 {
        self.vcpus
    }

    /// The handle [`crate::platform::PlatformState::finish`] uses to wake halted vCPUs.
    /// Running vCPUs notice the stop flag at their next access or slice end.
    pub fn kicker(&self) -> Arc<dyn Kick> {
        Arc::new(EmuKick(self.irq.clone()))
    }
}

struct EmuKick(Arc<IrqChip>);

impl Kick for EmuKick {
    fn kick(&self) {
        self.0.kick_all();
    }
}
