//! The run loop of one `emu` vCPU thread.
//!
//! Each turn: bring guest time up to date, fire what is due (PIT IRQ 0 edges, LAPIC
//! timers; in deterministic mode also the device timers, which the host timer thread
//! fires otherwise), then run a slice of instructions:
//! * host time: at most [`HOST_SLICE`] instructions, so timers are looked at at least
//!   that often and a guest spinning in a tight loop still sees the stop flag; shorter
//!   (down to [`MIN_HOST_SLICE`]) when the next PIT/LAPIC deadline is nearer, estimated
//!   from the CPU's measured speed, so those timers fire close to their time;
//! * deterministic: up to [`DETERMINISTIC_SLICE`] instructions but never past the next
//!   timer deadline, so every timer fires at an exact instruction count. A slice also
//!   ends when the guest reprograms a timer (the bus says so), and the deadline is
//!   re-planned.
//!
//! HLT with interrupts enabled: wait (host time: until an interrupt, a stop or the next
//! PIT/LAPIC deadline; deterministic: jump guest time to the next deadline, or wait for
//! an interrupt from outside, i.e. console input, if there is none). If no timer is armed
//! at all and no console input can arrive, nothing can wake the vCPU: the domain stops
//! as crashed with a message saying so (deterministic: at once; host time: after
//! [`IDLE_GRACE`], since a host timer may be firing that very moment). HLT with
//! interrupts disabled: nothing can wake the vCPU either (no NMI source exists, and
//! vCPU 0 never gets INIT), so the domain stops at once as crashed with a message,
//! instead of hanging forever. A CPU shutdown (triple fault, or something the CPU
//! cannot emulate) stops it as crashed with the CPU's reason and register summary.

use std::time::Duration;

use hypervisor_emu::{Cpu, EmuVcpu, RunExit};

use crate::DomainExit;
use crate::device_model::DeviceModel;
use crate::dispatch::ExitCounts;
use crate::emu::EmuVm;
use crate::emu::bus::EmuBus;
use crate::emu::irqchip::StartEvent;
use crate::platform::{PlatformState, lock};

/// Longest slice with host time.
pub const HOST_SLICE: u64 = 20_000;
/// Shortest slice with host time (below this, the loop's own cost would show).
pub const MIN_HOST_SLICE: u64 = 1_000;
/// Longest slice in deterministic mode (the next deadline usually comes first).
pub const DETERMINISTIC_SLICE: u64 = 1_000_000;

/// How long a halted vCPU with no timer armed and no console input waits before the
/// domain is declared stuck (host time).
pub const IDLE_GRACE: Duration = Duration::from_secs(2);

/// What one vCPU thread did.
#[derive(Clone, Copy, Debug, Default)]
pub struct VcpuStats {
    pub counts: ExitCounts,
    /// Instructions retired.
    pub instructions: u64,
}

/// Fire the device timers due at `now_ns` (deterministic mode: on the vCPU thread, in
/// deadline order). The timer lock is never held while the machine lock is taken.
pub fn fire_device_timers(st: &PlatformState, dm: &DeviceModel, now_ns: u64) {
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
        dm.on_timer(st, id);
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
    dm: &DeviceModel,
    vm: &EmuVm,
    id: u32,
    vcpu: &mut EmuVcpu,
) -> VcpuStats {
    let mut bus = EmuBus::new(id, st, dm, &vm.irq, &vm.cpuid, &vm.written);
    let det = st.clock.is_deterministic();
    let idx = id as usize;
    // Since when the vCPU has been halted with nothing that could wake it.
    let mut stuck_since: Option<std::time::Instant> = None;
    // Host time: the CPU's speed in instructions per guest ns (a running average).
    let mut rate = 0.01f64;
    let smp = vm.vcpus() > 1;
    // Whether every vCPU can only be woken by another one, for long enough (host time:
    // a host timer may be firing that very moment) to call the domain stuck.
    let all_stuck = |since: &mut Option<std::time::Instant>| {
        let t = *since.get_or_insert_with(std::time::Instant::now);
        det || t.elapsed() >= IDLE_GRACE
    };
    while !st.stopping() {
        // INIT and STARTUP IPIs (APs only; the BSP ignores INIT).
        while let Some(ev) = vm.irq.take_start_event(idx) {
            vcpu.reset(match ev {
                StartEvent::Init => Cpu::reset(),
                StartEvent::Startup(v) => Cpu::startup(v),
            });
            vm.set_idle(idx, false);
            stuck_since = None;
        }
        if vm.irq.waiting_for_sipi(idx) {
            // Only another vCPU's IPI can start it; the domain stops without it.
            vm.set_idle(idx, true);
            vm.irq.wait_start_event(idx, &|| st.stopping(), None);
            continue;
        }
        let retired = vcpu.retired();
        let now = bus.now(retired);
        if det {
            fire_device_timers(st, dm, now);
        }
        vm.irq.poll_timers(now);
        let budget = match (det, next_deadline(st, vm, now)) {
            (true, Some(d)) => st
                .clock
                .instructions_until(retired, d)
                .unwrap_or(DETERMINISTIC_SLICE)
                .min(DETERMINISTIC_SLICE),
            (true, None) => DETERMINISTIC_SLICE,
            (false, Some(d)) => {
                let ns = d.saturating_sub(now) as f64;
                ((ns * rate) as u64).clamp(MIN_HOST_SLICE, HOST_SLICE)
            }
            (false, None) => HOST_SLICE,
        };
        bus.begin_slice();
        let exit = vcpu.run(&mut bus, budget);
        if !det {
            // Full slices only: a slice cut short by an access or HLT says little.
            let ran = vcpu.retired().saturating_sub(retired);
            let dt = st.clock.now_ns().saturating_sub(now);
            if exit == RunExit::Budget && dt > 0 && ran > 0 {
                rate = 0.8 * rate + 0.2 * (ran as f64 / dt as f64);
            }
        }
        if let Some(what) = bus.crash.take() {
            st.finish(Ok(DomainExit::Crashed(format!(
                "vCPU {id}: {what}: {}",
                vcpu.summary()
            ))));
            break;
        }
        match exit {
            RunExit::Budget | RunExit::Stopped => {
                if smp {
                    vm.set_idle(idx, false);
                    stuck_since = None;
                }
            }
            RunExit::Shutdown(why) => {
                st.finish(Ok(DomainExit::Crashed(format!(
                    "vCPU {id}: CPU shutdown: {why}"
                ))));
                break;
            }
            RunExit::Halted {
                interrupts_enabled: false,
            } => {
                // With other vCPUs, an INIT from one of them can still wake it.
                if smp {
                    let all = vm.set_idle(idx, true);
                    if !all {
                        stuck_since = None;
                    }
                    if !(all && all_stuck(&mut stuck_since)) {
                        vm.irq.wait_start_event(idx, &|| st.stopping(), None);
                        continue;
                    }
                }
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
                    vm.set_idle(idx, false);
                    stuck_since = None;
                    continue;
                }
                let retired = vcpu.retired();
                let now = bus.now(retired);
                let next = next_deadline(st, vm, now);
                let device_timer = lock(&st.timers).earliest().is_some();
                let input = st.console_input.load(std::sync::atomic::Ordering::SeqCst);
                if next.is_none() && !device_timer && !input {
                    // Another vCPU may still send it an IPI.
                    if !vm.set_idle(idx, true) {
                        stuck_since = None;
                    } else if all_stuck(&mut stuck_since) {
                        st.finish(Ok(DomainExit::Crashed(format!(
                            "vCPU {id} halted waiting for an interrupt, but no timer is armed \
                             and there is no console input: nothing can wake it: {}",
                            vcpu.summary()
                        ))));
                        break;
                    }
                } else {
                    vm.set_idle(idx, false);
                    stuck_since = None;
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emu::boot::pvh_vcpu;
    use crate::emu::clock::GuestClock;
    use crate::memory::{GuestMemory, Layout};
    use crate::platform::CharOut;
    use chassis_devices::machine::{Machine, MachineConfig};
    use chassis_devices::profile::QEMU_XEN;
    use std::sync::Mutex;
    use std::time::Instant;

    fn machine() -> DeviceModel {
        DeviceModel::Process(Mutex::new(Machine::new(&MachineConfig {
            profile: &QEMU_XEN,
            ram_below_4g: 16 << 20,
            ram_above_4g: 0,
            vcpus: 1,
            serial_ports: 1,
            boot: Default::default(),
        })))
    }

    /// A vCPU spinning in `jmp .` (no accesses at all) still stops within a slice of a
    /// stop request; with the stub CPU, its shutdown becomes a crash with its message.
    #[test]
    fn spinning_vcpu_honours_stop() {
        let mem = GuestMemory::new(Layout::from_mib(16).unwrap()).unwrap();
        mem.write(0x10_0000, &[0xeb, 0xfe]).unwrap();
        let vm = EmuVm::new(1);
        let st = PlatformState::with_clock(
            &mem,
            &*vm.irq,
            CharOut::Null,
            CharOut::Null,
            GuestClock::host(),
            Some(&vm.written),
        );
        st.set_kicks(vec![vm.kicker()]);
        let m = machine();
        let mut v = pvh_vcpu(0x10_0000, 0x8000);
        let stats = std::thread::scope(|s| {
            let h = s.spawn(|| run_vcpu(&st, &m, &vm, 0, &mut v));
            std::thread::sleep(Duration::from_millis(50));
            let t = Instant::now();
            st.finish(Ok(DomainExit::PowerOff));
            let stats = h.join().unwrap();
            assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
            stats
        });
        let outcome = st.take_outcome().unwrap().unwrap();
        if hypervisor_emu::AVAILABLE {
            assert_eq!(outcome, DomainExit::PowerOff);
            assert!(stats.instructions > 1000, "{stats:?}");
        } else {
            match outcome {
                DomainExit::Crashed(m) => {
                    assert!(m.starts_with("vCPU 0: CPU shutdown: "), "{m}");
                    assert!(m.contains(hypervisor_emu::NOT_YET), "{m}");
                }
                o => panic!("{o:?}"),
            }
        }
    }

    /// Deterministic mode fires device timers from the vCPU thread, in deadline order.
    #[test]
    fn device_timers_fire_at_their_deadlines() {
        use chassis_devices::io::Width;
        let mem = GuestMemory::new(Layout::from_mib(16).unwrap()).unwrap();
        let vm = EmuVm::new(1);
        let st = PlatformState::with_clock(
            &mem,
            &*vm.irq,
            CharOut::Null,
            CharOut::Null,
            GuestClock::deterministic(),
            Some(&vm.written),
        );
        let m = machine();
        {
            // RTC periodic interrupt at 1024 Hz (rate 6), PIE.
            let mut g = lock(m.machine().unwrap());
            let mut p = st.handle();
            g.pio_write(&mut p, 0x70, Width::B1, 0x0a);
            g.pio_write(&mut p, 0x71, Width::B1, 0x26);
            g.pio_write(&mut p, 0x70, Width::B1, 0x0b);
            g.pio_write(&mut p, 0x71, Width::B1, 0x42);
        }
        let d = next_deadline(&st, &vm, 0).expect("RTC armed");
        assert!(d > 0 && d <= 1_000_000_000 / 1024 + 1, "{d}");
        fire_device_timers(&st, &m, d - 1);
        assert_eq!(next_deadline(&st, &vm, d - 1), Some(d), "not due yet");
        st.clock.skip_to(0, d);
        fire_device_timers(&st, &m, st.clock.now_ns());
        // Fired once: whatever is armed next lies ahead (the RTC may wait for a
        // register C read before re-arming).
        if let Some(d2) = next_deadline(&st, &vm, d) {
            assert!(d2 > d);
        }
        // The RTC raised IRQ 8 (PIC at power-on: unmasked, vector base 0).
        assert!(vm.irq.interrupt_pending(0));
    }
}
