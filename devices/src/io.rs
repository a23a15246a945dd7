//! Register access shapes shared by every device.
//!
//! Accesses are values plus a [`Width`], never byte slices: a width can only be 1, 2, 4
//! or 8 bytes, so no device can be handed a 3-byte or empty access, and Xen's `ioreq_t`
//! (`data` + `size`) and KVM's exits map onto it directly. Rep/string I/O is split into
//! single accesses by the dispatcher; devices never see a count.

use crate::platform::Platform;

/// Width of one register access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Width {
    B1 = 1,
    B2 = 2,
    B4 = 4,
    B8 = 8,
}

impl Width {
    /// Size in bytes.
    pub const fn bytes(self) -> u32 {
        self as u32
    }

    /// The width for a byte count, if it is one of 1, 2, 4, 8.
    pub const fn from_bytes(n: u64) -> Option<Width> {
        match n {
            1 => Some(Width::B1),
            2 => Some(Width::B2),
            4 => Some(Width::B4),
            8 => Some(Width::B8),
            _ => None,
        }
    }

    /// All-ones value of this width (what open bus reads return).
    pub const fn mask(self) -> u64 {
        match self {
            Width::B1 => 0xff,
            Width::B2 => 0xffff,
            Width::B4 => 0xffff_ffff,
            Width::B8 => u64::MAX,
        }
    }
}

/// A device that decodes x86 port I/O. `port` is the absolute port number; the machine
/// only routes ports the device claimed. Reads return a value of `width` (upper bits
/// ignored by the caller); port I/O is at most 4 bytes wide.
pub trait PortIo {
    fn pio_read(&mut self, p: &mut dyn Platform, port: u16, width: Width) -> u32;
    fn pio_write(&mut self, p: &mut dyn Platform, port: u16, width: Width, value: u32);
}

/// A device that decodes memory-mapped I/O. `offset` is relative to the region base.
pub trait Mmio {
    fn mmio_read(&mut self, p: &mut dyn Platform, offset: u64, width: Width) -> u64;
    fn mmio_write(&mut self, p: &mut dyn Platform, offset: u64, width: Width, value: u64);
}

/// Split a value written with `width` at byte `offset` of a little-endian register file
/// into (byte offset, byte) pairs. Helper for devices with byte-addressed registers.
pub fn bytes_of(value: u64, width: Width) -> impl Iterator<Item = (u32, u8)> {
    (0..width.bytes()).map(move |i| (i, (value >> (8 * i)) as u8))
}
