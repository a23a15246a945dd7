//! The stub domain's doorbell (`HYPERVISOR_CHASSIS_STUB`, `hypervisor_abi::hypercall`):
//! what a stub domain may ask of the hypervisor about its own guest.
//!
//! Every argument comes from a hostile stub: each is checked, a bad one gets -EINVAL
//! (an unknown op -ENOSYS), nothing panics. Interrupts, power, time, timers and
//! character output go to the guest's [`PlatformState`] through the same [`Platform`]
//! calls process mode's devices make, so both modes drive the guest identically.

use chassis_devices::platform::{CharSink, Platform, PowerRequest, TIMER_COUNT, TimerId};
use hypervisor_abi::hypercall::{
    CHAR_OUT_MAX, CHAR_SINK_DEBUGCON, CRASH_MSG_MAX, SHUTDOWN_CRASH, SHUTDOWN_POWEROFF,
    SHUTDOWN_REBOOT, SHUTDOWN_SUSPEND, StubOp,
};

use crate::DomainExit;
use crate::memory::GuestMemory;
use crate::platform::PlatformState;
use crate::stubdom::link::StubChannel;

pub const EINVAL: i64 = -22;
pub const ENOSYS: i64 = -38;

/// ISA/IOAPIC lines a stub may drive.
pub const MAX_GSI: u64 = 24;

/// The doorbell of one stub domain.
pub struct StubOps<'r, 'a> {
    pub ch: &'r StubChannel,
    pub st: &'r PlatformState<'a>,
    /// The stub's own RAM (where CharOut and Crash buffers must lie).
    pub stub_mem: &'r GuestMemory,
}

impl StubOps<'_, '_> {
    /// Perform `op` with its arguments; the value for RAX (0, a result, or -errno).
    pub fn call(&self, op: u64, a0: u64, a1: u64, a2: u64) -> i64 {
        let Some(op) = u32::try_from(op).ok().and_then(StubOp::from_raw) else {
            return ENOSYS;
        };
        let mut p = self.st.handle();
        match op {
            StubOp::Ready => {
                self.ch.set_ready();
                0
            }
            StubOp::IoreqDone => match self.ch.ioreq_done(a0) {
                true => 0,
                false => EINVAL,
            },
            StubOp::SetIsaIrqLevel => {
                if a0 >= MAX_GSI || a1 > 1 {
                    return EINVAL;
                }
                p.set_irq(a0 as u32, a1 == 1);
                0
            }
            StubOp::SetPciIntxLevel
            | StubOp::SetPciLinkRoute
            | StubOp::InjectMsi
            | StubOp::SetRomLock => ENOSYS,
            StubOp::ModifiedMemory => {
                // No dirty tracking yet; writes through the guest window are already
                // reported to the guest's CPUs. Check the range all the same.
                let layout = self.st.mem.layout();
                let ok = a0
                    .checked_add(a1)
                    .and_then(|end| end.checked_mul(4096))
                    .is_some_and(|_| a1 > 0 && layout.is_ram(a0 << 12, a1 << 12));
                if ok { 0 } else { EINVAL }
            }
            StubOp::Shutdown => {
                match a0 as u32 {
                    _ if a0 > u32::MAX as u64 => return EINVAL,
                    SHUTDOWN_POWEROFF => p.power(PowerRequest::PowerOff),
                    SHUTDOWN_REBOOT => p.power(PowerRequest::Reset),
                    SHUTDOWN_SUSPEND => p.power(PowerRequest::Suspend),
                    SHUTDOWN_CRASH => self.st.finish(Ok(DomainExit::Crashed(format!(
                        "stub domain '{}' reported a crash of the guest (SHUTDOWN_crash)",
                        self.ch.name
                    )))),
                    _ => return EINVAL,
                }
                0
            }
            StubOp::Now => p.now_ns().min(i64::MAX as u64) as i64,
            StubOp::SetPmTimerPort => {
                // PM_TMR is 4 bytes inside a 64-byte block at a 64-byte aligned base.
                if a0 != 0 && (a0 > 0xfffc || a0 % 64 != 8) {
                    return EINVAL;
                }
                self.ch
                    .pm_timer_port
                    .store(a0 as u32, std::sync::atomic::Ordering::Relaxed);
                0
            }
            StubOp::SetTimer => {
                if a0 >= TIMER_COUNT as u64 {
                    return EINVAL;
                }
                let deadline = (a1 != u64::MAX).then_some(a1);
                p.set_timer(TimerId::ALL[a0 as usize], deadline);
                0
            }
            StubOp::CharOut => {
                let sink = match a0 {
                    CHAR_SINK_DEBUGCON => CharSink::DebugCon,
                    0..4 => CharSink::Serial(a0 as u8),
                    _ => return EINVAL,
                };
                if a2 > CHAR_OUT_MAX {
                    return EINVAL;
                }
                if a2 == 0 {
                    return 0;
                }
                let mut buf = [0u8; CHAR_OUT_MAX as usize];
                let buf = &mut buf[..a2 as usize];
                if self.stub_mem.read(a1, buf).is_err() {
                    return EINVAL;
                }
                p.char_out(sink, buf);
                0
            }
            StubOp::Crash => {
                let msg = if a1 <= CRASH_MSG_MAX {
                    let mut buf = vec![0u8; a1 as usize];
                    match self.stub_mem.read(a0, &mut buf) {
                        Ok(()) => crate::stubdom::virtio_console::printable(&buf),
                        Err(_) => format!("(message at {a0:#x}+{a1:#x} is outside its RAM)"),
                    }
                } else {
                    format!("(message length {a1:#x} exceeds {CRASH_MSG_MAX})")
                };
                self.st.finish(Ok(DomainExit::Crashed(format!(
                    "stub domain '{}' crashed: {msg}",
                    self.ch.name
                ))));
                0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use crate::backend::IrqLines;
    use crate::emu::clock::GuestClock;
    use crate::memory::Layout;
    use crate::platform::{CharOut, lock};
    use std::sync::Mutex;
    use std::time::Duration;

    #[derive(Default)]
    struct RecordIrq(Mutex<Vec<(u32, bool)>>);
    impl IrqLines for RecordIrq {
        fn set_irq_line(&self, gsi: u32, level: bool) -> Result<(), Error> {
            lock(&self.0).push((gsi, level));
            Ok(())
        }
    }

    #[test]
    fn argument_checks() {
        let guest = GuestMemory::new(Layout::from_mib(16).unwrap()).unwrap();
        let stub = GuestMemory::flat(2 << 20).unwrap();
        let irq = RecordIrq::default();
        let st = PlatformState::with_clock(
            &guest,
            &irq,
            CharOut::Null,
            CharOut::Null,
            GuestClock::deterministic(),
            None,
        );
        let ch = StubChannel::new("g-dm".into(), 2, Duration::from_secs(1), false);
        let ops = StubOps {
            ch: &ch,
            st: &st,
            stub_mem: &stub,
        };
        // Unknown ops.
        for op in [0u64, 15, 0x1_0000_0001, u64::MAX] {
            assert_eq!(ops.call(op, 0, 0, 0), ENOSYS, "{op}");
        }
        let op = |o: StubOp| o.raw() as u64;
        // IoreqDone: slots 0..=2 (2 vCPUs + platform).
        assert_eq!(ops.call(op(StubOp::IoreqDone), 2, 0, 0), 0);
        assert_eq!(ops.call(op(StubOp::IoreqDone), 3, 0, 0), EINVAL);
        assert_eq!(ops.call(op(StubOp::IoreqDone), u64::MAX, 0, 0), EINVAL);
        // IRQ levels.
        assert_eq!(ops.call(op(StubOp::SetIsaIrqLevel), 4, 1, 0), 0);
        assert_eq!(ops.call(op(StubOp::SetIsaIrqLevel), 24, 1, 0), EINVAL);
        assert_eq!(ops.call(op(StubOp::SetIsaIrqLevel), 4, 2, 0), EINVAL);
        assert_eq!(*lock(&irq.0), [(4, true)]);
        for o in [
            StubOp::SetPciIntxLevel,
            StubOp::SetPciLinkRoute,
            StubOp::InjectMsi,
            StubOp::SetRomLock,
        ] {
            assert_eq!(ops.call(op(o), 0, 0, 0), ENOSYS);
        }
        assert_eq!(ops.call(op(StubOp::ModifiedMemory), 0x100, 4, 0), 0);
        assert_eq!(ops.call(op(StubOp::ModifiedMemory), 0xa0, 1, 0), EINVAL);
        assert_eq!(ops.call(op(StubOp::ModifiedMemory), u64::MAX, 2, 0), EINVAL);
        assert_eq!(ops.call(op(StubOp::ModifiedMemory), 0x100, 0, 0), EINVAL);
        // Time and timers.
        st.clock.observe(1234);
        assert_eq!(ops.call(op(StubOp::Now), 0, 0, 0), 1234);
        assert_eq!(ops.call(op(StubOp::SetTimer), 3, 5, 0), EINVAL);
        assert_eq!(ops.call(op(StubOp::SetTimer), 1, 5000, 0), 0);
        assert_eq!(
            lock(&st.timers).earliest(),
            Some((TimerId::RtcUpdate, 5000))
        );
        assert_eq!(ops.call(op(StubOp::SetTimer), 1, u64::MAX, 0), 0);
        assert_eq!(lock(&st.timers).earliest(), None);
        // The PM timer port the hypervisor answers itself: PM block base + 8, or 0 (off).
        use std::sync::atomic::Ordering::Relaxed;
        assert_eq!(ops.call(op(StubOp::SetPmTimerPort), 0xb008, 0, 0), 0);
        assert_eq!(ch.pm_timer_port.load(Relaxed), 0xb008);
        for bad in [0xb000u64, 0xb009, 0x1_0008, u64::MAX] {
            assert_eq!(ops.call(op(StubOp::SetPmTimerPort), bad, 0, 0), EINVAL);
        }
        assert_eq!(ch.pm_timer_port.load(Relaxed), 0xb008);
        assert_eq!(ops.call(op(StubOp::SetPmTimerPort), 0, 0, 0), 0);
        assert_eq!(ch.pm_timer_port.load(Relaxed), 0);
        // Character output: sink, length, buffer in stub RAM.
        stub.write(0x1000, b"hi").unwrap();
        assert_eq!(ops.call(op(StubOp::CharOut), 0, 0x1000, 2), 0);
        assert_eq!(
            ops.call(op(StubOp::CharOut), CHAR_SINK_DEBUGCON, 0x1000, 2),
            0
        );
        assert_eq!(ops.call(op(StubOp::CharOut), 4, 0x1000, 2), EINVAL);
        assert_eq!(
            ops.call(op(StubOp::CharOut), 0, 0x1000, CHAR_OUT_MAX + 1),
            EINVAL
        );
        assert_eq!(ops.call(op(StubOp::CharOut), 0, (2 << 20) - 1, 2), EINVAL);
        assert_eq!(ops.call(op(StubOp::CharOut), 0, u64::MAX, 2), EINVAL);
        assert_eq!(ops.call(op(StubOp::Shutdown), 7, 0, 0), EINVAL);
        assert_eq!(ops.call(op(StubOp::Shutdown), 1 << 32, 0, 0), EINVAL);
        assert!(!st.stopping());
        assert!(!ch.is_ready());
        assert_eq!(ops.call(op(StubOp::Ready), 0, 0, 0), 0);
        assert!(ch.is_ready());
        // Crash with a message outside its RAM still stops, with a note.
        assert_eq!(ops.call(op(StubOp::Crash), u64::MAX - 1, 8, 0), 0);
        assert!(st.stopping());
        match st.take_outcome().unwrap().unwrap() {
            DomainExit::Crashed(m) => {
                assert!(m.starts_with("stub domain 'g-dm' crashed: "), "{m}");
                assert!(m.contains("outside its RAM"), "{m}");
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn crash_message_and_shutdown() {
        let guest = GuestMemory::new(Layout::from_mib(16).unwrap()).unwrap();
        let stub = GuestMemory::flat(2 << 20).unwrap();
        let irq = RecordIrq::default();
        let st = PlatformState::new(&guest, &irq, CharOut::Null, CharOut::Null);
        let ch = StubChannel::new("g-dm".into(), 1, Duration::from_secs(1), false);
        let ops = StubOps {
            ch: &ch,
            st: &st,
            stub_mem: &stub,
        };
        // Terminal escapes from the stub never reach the host's terminal.
        stub.write(0x2000, b"device model\x1b[2J panicked").unwrap();
        ops.call(StubOp::Crash.raw() as u64, 0x2000, 25, 0);
        assert_eq!(
            st.take_outcome().unwrap().unwrap(),
            DomainExit::Crashed("stub domain 'g-dm' crashed: device model?[2J panicked".into())
        );
        let st = PlatformState::new(&guest, &irq, CharOut::Null, CharOut::Null);
        let ops = StubOps {
            ch: &ch,
            st: &st,
            stub_mem: &stub,
        };
        assert_eq!(ops.call(StubOp::Shutdown.raw() as u64, 0, 0, 0), 0);
        assert_eq!(st.take_outcome().unwrap().unwrap(), DomainExit::PowerOff);
    }
}
