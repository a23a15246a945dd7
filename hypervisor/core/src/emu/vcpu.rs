//! The run loop of one `emu` vCPU thread.
//!
//! Each turn: bring guest time up to date, fire what is due (PIT IRQ 0 edges, LAPIC
//! timers; in deterministic mode also the device timers, which the host timer thread
//! fires otherwise), then run a slice of instructions:
//! * host time: [`HOST_SLICE`] instructions, so timers are looked at at least that often
//!   and a guest spinning in a tight loop still sees the stop flag;
//! * deterministic: up to [`DETERMINISTIC_SLICE`] instructions but never past the next
//!   timer deadline, so every timer fires at an exact instruction count. A slice also
//!   ends when the guest reprograms a timer (the bus says so), and the deadline is
//!   re-planned.
//!
//! HLT with interrupts enabled: wait (host time: until an interrupt, a stop or the next
//! PIT/LAPIC deadline; deterministic: jump guest time to the next deadline, or wait for
//! an interrupt from outside, i.e. console input, if there is none). HLT with interrupts
//! disabled: nothing can wake the vCPU (no NMI source exists, and vCPU 0 never gets
//! INIT), so the domain stops at once as crashed with a message saying so, instead of
//! hanging forever. A triple fault stops it as crashed with the CPU's summary.

use std::sync::Mutex;
use std::time::Duration;

use chassis_devices::machine::Machine;
use hypervisor_emu::{EmuVcpu, RunExit};

use crate::DomainExit;
use crate::dispatch::ExitCounts;
use crate::emu::EmuVm;
use crate::emu::bus::EmuBus;
use crate::platform::{PlatformState, lock};

/// Instructions per slice with host time.
pub const HOST_SLICE: u64 = 20_000;
/// Longest slice in deterministic mode (the next deadline usually comes first).
pub const DETERMINISTIC_SLICE: u64 = 1_000_000;

/// What one vCPU thread did.
#[derive(Clone, Copy, Debug, Default)]
pub struct VcpuStats {
    pub counts: ExitCounts,
    /// Instructions retired.
    pub instructions: u64,
}

/// Fire the device timers due at `now_ns` (deterministic mode: on the vCPU thread, in
/// deadline order). The timer lock is never held while the machine lock is taken.
pub fn fire_device_timers(st: &PlatformState, machine: &Mutex<Machine>, now_ns: u64) {
    // Bounded: a device re-arming at or before `now` forever must not hang the vCPU.
    for _ in 0..64 {
        let id = {
            let mut t = lock(&st.timers);
            match t.earliest() {
                Some((id, d)) if d <= now_ns => {
                    t.deadlines[id.index()] = None;
                    id
                }
                _ => return,
            }
        };
        lock(machine).on_timer(&mut st.handle(), id);
    }
}

/// The earliest deadline of anything this loop fires (device timers only in
/// deterministic mode).
fn next_deadline(st: &PlatformState, vm: &EmuVm, now: u64) -> Option<u64> {
    let chips = vm.irq.next_deadline(now);
    if st.clock.is_deterministic() {
        let dev = lock(&st.timers).earliest().map(|(_, d)| d);
        chips.into_iter().chain(dev).min()
    } else {
        chips
    }
}

/// Run vCPU `id` until the domain stops; the first vCPU to end the domain records why.
pub fn run_vcpu(
    st: &PlatformState,
    machine: &Mutex<Machine>,
    vm: &EmuVm,
    id: u32,
    vcpu: &mut EmuVcpu,
) -> VcpuStats {
    let mut bus = EmuBus::new(id, st, machine, &vm.irq, &vm.cpuid, &vm.written);
    let det = st.clock.is_deterministic();
    let idx = id as usize;
    while !st.stopping() {
        let retired = vcpu.retired();
        let now = bus.now(retired);
        if det {
            fire_device_timers(st, machine, now);
        }
        vm.irq.poll_timers(now);
        let budget = match (det, next_deadline(st, vm, now)) {
            (true, Some(d)) => st
                .clock
                .instructions_until(retired, d)
                .unwrap_or(DETERMINISTIC_SLICE)
                .min(DETERMINISTIC_SLICE),
            (true, None) => DETERMINISTIC_SLICE,
            (false, _) => HOST_SLICE,
        };
        bus.begin_slice();
        let exit = vcpu.run(&mut bus, budget);
        if let Some(what) = bus.crash.take() {
            st.finish(Ok(DomainExit::Crashed(format!(
                "vCPU {id}: {what}: {}",
                vcpu.summary()
            ))));
            break;
        }
        match exit {
            RunExit::Budget | RunExit::Stopped => {}
            RunExit::Shutdown(why) => {
                st.finish(Ok(DomainExit::Crashed(format!(
                    "vCPU {id}: triple fault (the CPU shut down): {why}"
                ))));
                break;
            }
            RunExit::Halted {
                interrupts_enabled: false,
            } => {
                st.finish(Ok(DomainExit::Crashed(format!(
                    "vCPU {id} halted with interrupts disabled (HLT with IF=0) and nothing can \
                     wake it: the guest stopped itself (a `cli; hlt`, e.g. after a panic): {}",
                    vcpu.summary()
                ))));
                break;
            }
            RunExit::Halted {
                interrupts_enabled: true,
            } => {
                if vm.irq.interrupt_pending(idx) {
                    continue;
                }
                let retired = vcpu.retired();
                let now = bus.now(retired);
                let next = next_deadline(st, vm, now);
                if det {
                    match next {
                        // Guest time jumps; the next turn fires what is due.
                        Some(d) if d > now => st.clock.skip_to(retired, d),
                        Some(_) => {}
                        None => vm.irq.wait_halted(idx, &|| st.stopping(), None),
                    }
                } else {
                    let timeout = next.map(|d| Duration::from_nanos(d.saturating_sub(now)));
                    vm.irq.wait_halted(idx, &|| st.stopping(), timeout);
                }
            }
        }
    }
    VcpuStats {
        counts: bus.counts,
        instructions: vcpu.retired(),
    }
}
