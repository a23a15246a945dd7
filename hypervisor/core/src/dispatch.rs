//! Turning vCPU exits into machine calls.
//!
//! This is the hot path: no allocation, and (process mode) the machine lock is held only
//! around the device calls of one exit; in stubdom mode each access is one ioreq. String I/O arrives as `count` elements of `size` bytes and
//! becomes `count` single accesses of `size` bytes, in order, as on real hardware.

use crate::backend::Exit;
use crate::device_model::DeviceModel;
use crate::platform::PlatformState;

/// What the run loop does after an exit.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Run the vCPU again (after checking the stop flag).
    Continue,
    /// The guest crashed the VM: what happened and the backend's code for it, if any
    /// (the caller adds register state).
    Crash {
        what: &'static str,
        code: Option<u64>,
    },
}

impl Action {
    fn crash(what: &'static str, code: Option<u64>) -> Action {
        Action::Crash { what, code }
    }
}

/// Exit counters of one vCPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitCounts {
    /// Port I/O exits (a string instruction counts once).
    pub pio: u64,
    pub mmio: u64,
    /// Kicks, signals and other exits that did not reach a device.
    pub other: u64,
}

impl std::ops::AddAssign for ExitCounts {
    fn add_assign(&mut self, o: Self) {
        self.pio += o.pio;
        self.mmio += o.mmio;
        self.other += o.other;
    }
}

/// Handle one exit of vCPU `vcpu` against the device model.
#[inline]
pub fn dispatch(
    exit: Exit<'_>,
    dm: &DeviceModel,
    vcpu: u32,
    st: &PlatformState,
    counts: &mut ExitCounts,
) -> Action {
    match exit {
        Exit::PioIn { port, size, data } => {
            counts.pio += 1;
            dm.pio_in(st, vcpu, port, size, data);
            Action::Continue
        }
        Exit::PioOut { port, size, data } => {
            counts.pio += 1;
            dm.pio_out(st, vcpu, port, size, data);
            Action::Continue
        }
        Exit::MmioRead { addr, data } => {
            counts.mmio += 1;
            dm.mmio_read(st, vcpu, addr, data);
            Action::Continue
        }
        Exit::MmioWrite { addr, data } => {
            counts.mmio += 1;
            dm.mmio_write(st, vcpu, addr, data);
            Action::Continue
        }
        Exit::Interrupted | Exit::Hlt => {
            counts.other += 1;
            Action::Continue
        }
        Exit::Shutdown => Action::crash("triple fault (KVM_EXIT_SHUTDOWN)", None),
        Exit::FailEntry { reason, .. } => Action::crash(
            "VM entry failed (KVM_EXIT_FAIL_ENTRY, hardware reason)",
            Some(reason),
        ),
        Exit::InternalError { suberror } => Action::crash(
            "KVM internal error (KVM_EXIT_INTERNAL_ERROR, suberror)",
            Some(suberror as u64),
        ),
        Exit::SystemEvent { kind } => {
            Action::crash("unexpected KVM system event (type)", Some(kind as u64))
        }
        Exit::Other { reason } => {
            Action::crash("unexpected vCPU exit (reason)", Some(reason as u64))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{GuestMemory, Layout};
    use crate::platform::CharOut;
    use crate::platform::tests::NoIrq;
    use chassis_devices::machine::{Machine, MachineConfig};
    use chassis_devices::profile::QEMU_XEN;
    use std::sync::Mutex;

    fn machine() -> DeviceModel {
        DeviceModel::Process(Mutex::new(Machine::new(&MachineConfig {
            profile: &QEMU_XEN,
            ram_below_4g: 64 << 20,
            ram_above_4g: 0,
            vcpus: 1,
            serial_ports: 1,
            boot: Default::default(),
        })))
    }

    #[test]
    fn string_io_is_split_by_size() {
        let m = machine();
        let mem = GuestMemory::new(Layout::from_mib(16).unwrap()).unwrap();
        let st = PlatformState::new(&mem, &NoIrq, CharOut::Null, CharOut::Null);
        let mut c = ExitCounts::default();
        // `rep outsd` of two dwords to 0xcf8: the last one wins, and is a 4-byte access
        // (0xcf8 latches only dword writes).
        let data = [0x00, 0x00, 0x00, 0x80, 0x08, 0x00, 0x00, 0x80];
        let a = dispatch(
            Exit::PioOut {
                port: 0xcf8,
                size: 4,
                data: &data,
            },
            &m,
            0,
            &st,
            &mut c,
        );
        assert_eq!(a, Action::Continue);
        let mut r = [0u8; 8];
        dispatch(
            Exit::PioIn {
                port: 0xcf8,
                size: 4,
                data: &mut r,
            },
            &m,
            0,
            &st,
            &mut c,
        );
        assert_eq!(r, [0x08, 0, 0, 0x80, 0x08, 0, 0, 0x80]);
        // 16-bit string reads of an unclaimed port: each element is all ones.
        let mut r = [0u8; 6];
        dispatch(
            Exit::PioIn {
                port: 0x2e8,
                size: 2,
                data: &mut r,
            },
            &m,
            0,
            &st,
            &mut c,
        );
        assert_eq!(r, [0xff; 6]);
        assert_eq!(c.pio, 3);
    }

    #[test]
    fn bad_sizes_and_unclaimed_mmio_read_all_ones() {
        let m = machine();
        let mem = GuestMemory::new(Layout::from_mib(16).unwrap()).unwrap();
        let st = PlatformState::new(&mem, &NoIrq, CharOut::Null, CharOut::Null);
        let mut c = ExitCounts::default();
        let mut r = [0u8; 3];
        dispatch(
            Exit::PioIn {
                port: 0xcf8,
                size: 3,
                data: &mut r,
            },
            &m,
            0,
            &st,
            &mut c,
        );
        assert_eq!(r, [0xff; 3]);
        for len in [1usize, 2, 3, 4, 8] {
            let mut d = [0u8; 8];
            dispatch(
                Exit::MmioRead {
                    addr: 0xdead_0000,
                    data: &mut d[..len],
                },
                &m,
                0,
                &st,
                &mut c,
            );
            assert!(d[..len].iter().all(|&b| b == 0xff), "len {len}");
            assert!(d[len..].iter().all(|&b| b == 0), "len {len}");
        }
        dispatch(
            Exit::MmioWrite {
                addr: 0xdead_0000,
                data: &[1, 2, 3],
            },
            &m,
            0,
            &st,
            &mut c,
        );
        assert_eq!(c.mmio, 6);
        assert_eq!(
            dispatch(Exit::Shutdown, &m, 0, &st, &mut c),
            Action::Crash {
                what: "triple fault (KVM_EXIT_SHUTDOWN)",
                code: None
            }
        );
    }
}
