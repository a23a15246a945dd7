//! Port I/O, PCI configuration mechanism #1 and CMOS.

use core::arch::asm;

#[inline(always)]
pub fn outb(port: u16, v: u8) {
    // SAFETY: port I/O has no memory effects visible to Rust.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags))
    }
}

#[inline(always)]
pub fn outw(port: u16, v: u16) {
    // SAFETY: as above.
    unsafe {
        asm!("out dx, ax", in("dx") port, in("ax") v, options(nomem, nostack, preserves_flags))
    }
}

#[inline(always)]
pub fn outl(port: u16, v: u32) {
    // SAFETY: as above.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack, preserves_flags))
    }
}

#[inline(always)]
pub fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: as above.
    unsafe {
        asm!("in al, dx", out("al") v, in("dx") port, options(nomem, nostack, preserves_flags))
    }
    v
}

#[inline(always)]
pub fn inw(port: u16) -> u16 {
    let v: u16;
    // SAFETY: as above.
    unsafe {
        asm!("in ax, dx", out("ax") v, in("dx") port, options(nomem, nostack, preserves_flags))
    }
    v
}

#[inline(always)]
pub fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: as above.
    unsafe {
        asm!("in eax, dx", out("eax") v, in("dx") port, options(nomem, nostack, preserves_flags))
    }
    v
}

/// PCI configuration space of bus 0 through 0xcf8/0xcfc.
pub mod pci {
    use super::*;

    const ADDR: u16 = 0xcf8;
    const DATA: u16 = 0xcfc;

    fn select(devfn: u8, reg: u8) {
        outl(
            ADDR,
            0x8000_0000 | (devfn as u32) << 8 | (reg as u32 & 0xfc),
        );
    }

    pub fn read32(devfn: u8, reg: u8) -> u32 {
        select(devfn, reg);
        inl(DATA)
    }
    pub fn read16(devfn: u8, reg: u8) -> u16 {
        select(devfn, reg);
        inw(DATA + (reg as u16 & 2))
    }
    pub fn read8(devfn: u8, reg: u8) -> u8 {
        select(devfn, reg);
        inb(DATA + (reg as u16 & 3))
    }
    pub fn write32(devfn: u8, reg: u8, v: u32) {
        select(devfn, reg);
        outl(DATA, v)
    }
    pub fn write16(devfn: u8, reg: u8, v: u16) {
        select(devfn, reg);
        outw(DATA + (reg as u16 & 2), v)
    }
    pub fn write8(devfn: u8, reg: u8, v: u8) {
        select(devfn, reg);
        outb(DATA + (reg as u16 & 3), v)
    }
}

/// Reads a CMOS/RTC NVRAM byte (NMI left enabled, as hvmloader does).
pub fn cmos_read(index: u8) -> u8 {
    outb(0x70, index & 0x7f);
    inb(0x71)
}
