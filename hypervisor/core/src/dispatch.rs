//! Turning vCPU exits into machine calls.
//!
//! This is the hot path: no allocation, and the machine lock is held only around the
//! device calls of one exit. String I/O arrives as `count` elements of `size` bytes and
//! becomes `count` single accesses of `size` bytes, in order, as on real hardware.

use std::sync::Mutex;

use chassis_devices::io::Width;
use chassis_devices::machine::Machine;
use chassis_devices::platform::Platform;

use crate::backend::Exit;
use crate::platform::lock;

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

/// A port width: 1, 2 or 4 bytes.
fn pio_width(size: u8) -> Option<Width> {
    match size {
        1 => Some(Width::B1),
        2 => Some(Width::B2),
        4 => Some(Width::B4),
        _ => None,
    }
}

/// Handle one exit against the machine.
pub fn dispatch(
    exit: Exit<'_>,
    machine: &Mutex<Machine>,
    p: &mut dyn Platform,
    counts: &mut ExitCounts,
) -> Action {
    match exit {
        Exit::PioIn { port, size, data } => {
            counts.pio += 1;
            let Some(w) = pio_width(size) else {
                data.fill(0xff);
                return Action::Continue;
            };
            let n = size as usize;
            let mut m = lock(machine);
            for el in data.chunks_exact_mut(n) {
                let v = m.pio_read(p, port, w);
                el.copy_from_slice(&v.to_le_bytes()[..n]);
            }
            Action::Continue
        }
        Exit::PioOut { port, size, data } => {
            counts.pio += 1;
            let Some(w) = pio_width(size) else {
                return Action::Continue;
            };
            let n = size as usize;
            let mut m = lock(machine);
            for el in data.chunks_exact(n) {
                let mut v = [0u8; 4];
                v[..n].copy_from_slice(el);
                m.pio_write(p, port, w, u32::from_le_bytes(v));
            }
            Action::Continue
        }
        Exit::MmioRead { addr, data } => {
            counts.mmio += 1;
            let v = match Width::from_bytes(data.len() as u64) {
                Some(w) => lock(machine).mmio_read(p, addr, w).unwrap_or(u64::MAX),
                None => u64::MAX,
            };
            let n = data.len().min(8);
            data[..n].copy_from_slice(&v.to_le_bytes()[..n]);
            Action::Continue
        }
        Exit::MmioWrite { addr, data } => {
            counts.mmio += 1;
            if let Some(w) = Width::from_bytes(data.len() as u64) {
                let mut v = [0u8; 8];
                v[..data.len()].copy_from_slice(data);
                lock(machine).mmio_write(p, addr, w, u64::from_le_bytes(v));
            }
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
    use crate::platform::tests::NoIrq;
    use crate::platform::{CharOut, PlatformState};
    use chassis_devices::machine::MachineConfig;
    use chassis_devices::profile::QEMU_XEN;

    fn machine() -> Mutex<Machine> {
        Mutex::new(Machine::new(&MachineConfig {
            profile: &QEMU_XEN,
            ram_below_4g: 64 << 20,
            ram_above_4g: 0,
            vcpus: 1,
            serial_ports: 1,
            boot: Default::default(),
        }))
    }

    #[test]
    fn string_io_is_split_by_size() {
        let m = machine();
        let mem = GuestMemory::new(Layout::from_mib(16).unwrap()).unwrap();
        let st = PlatformState::new(&mem, &NoIrq, CharOut::Null, CharOut::Null);
        let mut p = st.handle();
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
            &mut p,
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
            &mut p,
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
            &mut p,
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
        let mut p = st.handle();
        let mut c = ExitCounts::default();
        let mut r = [0u8; 3];
        dispatch(
            Exit::PioIn {
                port: 0xcf8,
                size: 3,
                data: &mut r,
            },
            &m,
            &mut p,
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
                &mut p,
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
            &mut p,
            &mut c,
        );
        assert_eq!(c.mmio, 6);
        assert_eq!(
            dispatch(Exit::Shutdown, &m, &mut p, &mut c),
            Action::Crash {
                what: "triple fault (KVM_EXIT_SHUTDOWN)",
                code: None
            }
        );
    }
}
