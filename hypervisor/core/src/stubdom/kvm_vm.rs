//! Running a stub domain on the `kvm` backend: a second KVM VM beside the guest's.
//!
//! The VM is "bare" ([`KvmVm::new_bare`]): no in-kernel irqchip, so the stub's HLT comes
//! back to this thread (which parks it on the channel, as on `emu`) and the event-channel
//! upcall is injected with KVM_INTERRUPT. Its memory slots are exactly the stub-physical
//! map of `hypervisor_abi::stubdom::map`: its RAM, the shared pages, and the guest's RAM
//! ranges at the guest window (the same host pages as the guest's own slots: foreign
//! mapping without copies). Everything else is not backed, so a stub access there exits
//! as MMIO: the virtio console's window is served, anything else is the isolation
//! backstop and stops the domain with a report. The doorbell is the hypercall page's
//! `out 0xea` (KVM answers `vmcall` itself).

use std::sync::Arc;

use hypervisor_abi::hypercall::HYPERVISOR_CHASSIS_STUB;
use hypervisor_abi::stubdom::map;

use crate::backend::{Exit, Kick, Vcpu};
use crate::kvm::{BootState, HostSlot, KvmVcpu, KvmVm};
use crate::memory::GuestMemory;
use crate::platform::PlatformState;
use crate::stubdom::bus::VIRTIO_WINDOW;
use crate::stubdom::link::StubChannel;
use crate::stubdom::ops::{ENOSYS, StubOps};
use crate::stubdom::shared;
use crate::stubdom::virtio_console::VirtioConsole;
use crate::stubdom::vm::{StubStats, StubVm};
use crate::xen_hypercall::HYPERCALL_PORT;
use crate::{DomainExit, Error};

/// The stub domain's KVM VM and its one vCPU.
pub struct KvmStub<'m> {
    // The vCPU before the VM: dropped first.
    vcpu: KvmVcpu<'m>,
    _vm: KvmVm<'m>,
}

impl<'m> KvmStub<'m> {
    /// Create the VM for `vm` (its RAM), `ch` (the shared pages) and the guest's memory.
    pub fn new(vm: &'m StubVm, ch: &'m StubChannel, guest: &'m GuestMemory) -> Result<Self, Error> {
        let mut slots: Vec<HostSlot> = vm
            .mem
            .regions()
            .map(|r| HostSlot {
                gpa: r.gpa,
                size: r.size,
                host: r.host,
            })
            .collect();
        slots.push(HostSlot {
            gpa: map::SHARED_BASE,
            size: shared::SIZE as u64,
            host: ch.pages.host_base(),
        });
        for r in guest.regions() {
            let end = r.gpa.saturating_add(r.size).min(vm.window);
            if r.gpa < end {
                slots.push(HostSlot {
                    gpa: map::GUEST_WINDOW + r.gpa,
                    size: end - r.gpa,
                    host: r.host,
                });
            }
        }
        // SAFETY: the stub's RAM, the shared pages and the guest's memory all live as
        // long as `'m`, which outlives the VM; the stub-physical map keeps the ranges
        // apart (RAM < SHARED_BASE < VIRTIO_BASE < GUEST_WINDOW).
        let kvm = unsafe { KvmVm::new_bare(&vm.mem, &slots)? };
        let vcpu = kvm.create_vcpu(
            0,
            Some(BootState {
                entry: vm.entry,
                start_info: map::START_INFO,
            }),
        )?;
        Ok(KvmStub { vcpu, _vm: kvm })
    }

    /// What stops the stub's vCPU when the domain stops (it may be spinning in the
    /// guest, e.g. a stub that stopped answering).
    pub fn kicker(&self) -> Arc<dyn Kick> {
        self.vcpu.kicker()
    }

    /// Run the stub until the domain stops; a fault, an access outside the map or a
    /// CPU shutdown stops the whole domain with a report.
    pub fn run(&mut self, vm: &StubVm, ch: &StubChannel, st: &PlatformState) -> StubStats {
        let kick = self.vcpu.kicker();
        kick.bind_thread();
        let mut console = VirtioConsole::new(&vm.name, Box::new(|line: &str| eprintln!("{line}")));
        let ops = StubOps {
            ch,
            st,
            stub_mem: &vm.mem,
        };
        let fail = |why: String| {
            st.finish(Ok(DomainExit::Crashed(format!(
                "stub domain '{}' {why}",
                vm.name
            ))))
        };
        let mut doorbell = false;
        while !st.stopping() {
            if doorbell {
                doorbell = false;
                if let Err(e) = self.doorbell(&ops) {
                    st.finish(Err(e));
                    break;
                }
            }
            let exit = match self.vcpu.run() {
                Ok(e) => e,
                Err(e) => {
                    st.finish(Err(e));
                    break;
                }
            };
            match exit {
                Exit::PioOut {
                    port: HYPERCALL_PORT,
                    size: 4,
                    ..
                } => doorbell = true,
                Exit::PioIn { port, .. } | Exit::PioOut { port, .. } => {
                    fail(format!("did port I/O at {port:#x} (it has no ports)"));
                    break;
                }
                Exit::MmioRead { addr, data } => match virtio_offset(addr, data.len()) {
                    Some(off) => {
                        let v = console.mmio_read(&vm.mem, off, data.len() as u8);
                        let n = data.len().min(8);
                        data[..n].copy_from_slice(&v.to_le_bytes()[..n]);
                    }
                    None => {
                        fail(format!(
                            "accessed stub-physical {addr:#x} outside its memory (read)"
                        ));
                        break;
                    }
                },
                Exit::MmioWrite { addr, data } => match virtio_offset(addr, data.len()) {
                    Some(off) => {
                        let mut v = [0u8; 8];
                        let n = data.len().min(8);
                        v[..n].copy_from_slice(&data[..n]);
                        console.mmio_write(&vm.mem, off, n as u8, u64::from_le_bytes(v));
                    }
                    None => {
                        fail(format!(
                            "accessed stub-physical {addr:#x} outside its memory (write)"
                        ));
                        break;
                    }
                },
                Exit::Hlt => {
                    // KVM has moved past the HLT; the stub re-scans its slots when it
                    // runs again. With interrupts on it also gets the upcall.
                    ch.park_stub(st);
                    if ch.upcall.swap(false, std::sync::atomic::Ordering::SeqCst) {
                        match self.vcpu.inject_interrupt(map::UPCALL_VECTOR) {
                            Ok(true) => {}
                            // Interrupts off: keep the line raised for the next HLT
                            // (the stub also re-scans its slots when it runs on).
                            Ok(false) => ch.upcall.store(true, std::sync::atomic::Ordering::SeqCst),
                            Err(e) => {
                                st.finish(Err(e));
                                break;
                            }
                        }
                    }
                }
                Exit::Interrupted => {}
                Exit::Shutdown => {
                    let regs = self.vcpu.state_summary();
                    fail(format!("stopped: CPU shutdown (triple fault): {regs}"));
                    break;
                }
                other => {
                    let what = format!("{other:?}");
                    let regs = self.vcpu.state_summary();
                    fail(format!("stopped: unexpected vCPU exit {what}: {regs}"));
                    break;
                }
            }
        }
        console.flush();
        kick.unbind_thread();
        StubStats { instructions: 0 }
    }

    /// The hypercall page's `out 0xea`: the doorbell with the registers of the call,
    /// its result in RAX (KVM completes the OUT on the next run).
    fn doorbell(&mut self, ops: &StubOps) -> Result<(), Error> {
        let mut regs = self.vcpu.regs()?;
        regs.rax = if regs.rax as u32 == HYPERVISOR_CHASSIS_STUB {
            ops.call(regs.rdi, regs.rsi, regs.rdx, regs.r10) as u64
        } else {
            ENOSYS as u64
        };
        self.vcpu.set_regs(&regs)
    }
}

/// The offset in the virtio console's window of an access of `len` bytes at `addr`.
fn virtio_offset(addr: u64, len: usize) -> Option<u64> {
    let off = addr.checked_sub(map::VIRTIO_BASE)?;
    (off.checked_add(len as u64)? <= VIRTIO_WINDOW).then_some(off)
}
