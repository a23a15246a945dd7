//! The host end of a stub domain's virtio console (virtio-mmio, version 2 "modern"
//! register layout; virtio 1.2 §4.2.2, §5.3). PLACEHOLDER: the interface is fixed, the
//! device is being written.

use crate::memory::GuestMemory;

/// A virtio-mmio console: the stub domain's transmit queue becomes complete lines handed
/// to `sink` with `"[<name>] "` in front.
pub struct VirtioConsole {
    _name: String,
    _sink: Box<dyn FnMut(&str) + Send>,
}

impl VirtioConsole {
    /// `name` is the stub domain's name (e.g. `guest-dm`).
    pub fn new(name: &str, sink: Box<dyn FnMut(&str) + Send>) -> Self {
        VirtioConsole {
            _name: name.into(),
            _sink: sink,
        }
    }

    /// A read of `size` (1, 2, 4, 8) bytes at `offset` in the register window; `mem` is
    /// the stub domain's RAM (where its queues live).
    pub fn mmio_read(&mut self, _mem: &GuestMemory, _offset: u64, _size: u8) -> u64 {
        0
    }

    /// A write; a queue notify processes that queue at once (the stub polls the used
    /// ring, it needs no interrupt).
    pub fn mmio_write(&mut self, _mem: &GuestMemory, _offset: u64, _size: u8, _value: u64) {}

    /// Emit a partial last line (at stop).
    pub fn flush(&mut self) {}
}
