//! The one seam between a guest's exits and its device model, for both modes:
//!
//! * [`DeviceModel::Process`]: the machine runs in this process behind a mutex (the
//!   hot path is exactly the old one: lock, call the device, unlock);
//! * [`DeviceModel::Stub`]: the machine runs in a stub domain; every access becomes an
//!   ioreq in the guest vCPU's slot ([`crate::stubdom::StubLink`]), and timer expiry
//!   and console input go through the platform slot.
//!
//! Every caller (the dispatcher, the emu bus's ELCR copy, the deterministic timer
//! firing, the timer and console threads) goes through these methods, so nothing else
//! knows which mode runs.

use std::sync::Mutex;

use chassis_devices::io::Width;
use chassis_devices::machine::Machine;
use chassis_devices::platform::TimerId;

use crate::platform::{PlatformState, lock};
use crate::stubdom::StubLink;

/// Where the guest's devices live.
pub enum DeviceModel {
    /// In this process (process mode).
    Process(Mutex<Machine>),
    /// In a stub domain (stubdom mode).
    Stub(StubLink),
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

impl DeviceModel {
    /// `data.len() / size` port reads of `size` bytes from `port` by vCPU `vcpu`, in
    /// order (string I/O). A bad size reads all ones.
    #[inline]
    pub fn pio_in(&self, st: &PlatformState, vcpu: u32, port: u16, size: u8, data: &mut [u8]) {
        let Some(w) = pio_width(size) else {
            data.fill(0xff);
            return;
        };
        let n = size as usize;
        match self {
            DeviceModel::Process(machine) => {
                let mut p = st.handle();
                let mut m = lock(machine);
                for el in data.chunks_exact_mut(n) {
                    let v = m.pio_read(&mut p, port, w);
                    el.copy_from_slice(&v.to_le_bytes()[..n]);
                }
            }
            DeviceModel::Stub(link) => {
                for el in data.chunks_exact_mut(n) {
                    let v = link.pio_read(st, vcpu, port, size) as u32;
                    el.copy_from_slice(&v.to_le_bytes()[..n]);
                }
            }
        }
    }

    /// `data.len() / size` port writes of `size` bytes to `port`.
    #[inline]
    pub fn pio_out(&self, st: &PlatformState, vcpu: u32, port: u16, size: u8, data: &[u8]) {
        if pio_width(size).is_none() {
            return;
        }
        let n = size as usize;
        match self {
            DeviceModel::Process(machine) => {
                let w = pio_width(size).unwrap_or(Width::B1);
                let mut p = st.handle();
                let mut m = lock(machine);
                for el in data.chunks_exact(n) {
                    let mut v = [0u8; 4];
                    v[..n].copy_from_slice(el);
                    m.pio_write(&mut p, port, w, u32::from_le_bytes(v));
                }
            }
            DeviceModel::Stub(link) => {
                for el in data.chunks_exact(n) {
                    let mut v = [0u8; 4];
                    v[..n].copy_from_slice(el);
                    link.pio_write(st, vcpu, port, size, u32::from_le_bytes(v));
                }
            }
        }
    }

    /// An MMIO read of `data.len()` (1, 2, 4, 8) bytes; anything else, or an address
    /// nothing decodes, reads all ones.
    #[inline]
    pub fn mmio_read(&self, st: &PlatformState, vcpu: u32, addr: u64, data: &mut [u8]) {
        let v = match Width::from_bytes(data.len() as u64) {
            Some(w) => match self {
                DeviceModel::Process(machine) => lock(machine)
                    .mmio_read(&mut st.handle(), addr, w)
                    .unwrap_or(u64::MAX),
                DeviceModel::Stub(link) => link.mmio_read(st, vcpu, addr, data.len() as u8),
            },
            None => u64::MAX,
        };
        let n = data.len().min(8);
        data[..n].copy_from_slice(&v.to_le_bytes()[..n]);
    }

    /// An MMIO write of `data` (1, 2, 4, 8 bytes; other lengths are dropped).
    #[inline]
    pub fn mmio_write(&self, st: &PlatformState, vcpu: u32, addr: u64, data: &[u8]) {
        let Some(w) = Width::from_bytes(data.len() as u64) else {
            return;
        };
        let mut v = [0u8; 8];
        v[..data.len()].copy_from_slice(data);
        let v = u64::from_le_bytes(v);
        match self {
            DeviceModel::Process(machine) => {
                lock(machine).mmio_write(&mut st.handle(), addr, w, v);
            }
            DeviceModel::Stub(link) => link.mmio_write(st, vcpu, addr, data.len() as u8, v),
        }
    }

    /// Device timer `id` expired.
    pub fn on_timer(&self, st: &PlatformState, id: TimerId) {
        match self {
            DeviceModel::Process(machine) => lock(machine).on_timer(&mut st.handle(), id),
            DeviceModel::Stub(link) => link.on_timer(st, id),
        }
    }

    /// Host input for UART `index`; returns the bytes taken (retry the rest later).
    pub fn serial_input(&self, st: &PlatformState, index: usize, bytes: &[u8]) -> usize {
        match self {
            DeviceModel::Process(machine) => {
                lock(machine).serial_input(&mut st.handle(), index, bytes)
            }
            DeviceModel::Stub(link) => link.serial_input(st, index, bytes),
        }
    }

    /// The in-process machine (process mode), e.g. for tests and state save.
    pub fn machine(&self) -> Option<&Mutex<Machine>> {
        match self {
            DeviceModel::Process(m) => Some(m),
            DeviceModel::Stub(_) => None,
        }
    }
}
