//! PCI configuration space (type 0 header) and configuration mechanism #1.
//!
//! [`ConfigSpace`] is the 256-byte register file every PCI function here embeds. Which
//! bits a guest may change is data (a write mask and a write-1-to-clear mask), so BAR
//! sizing, read-only IDs and status bits follow from the masks rather than from code in
//! each device. Mechanism #1 ([`ConfigAddress`]) is the 0xcf8 address latch plus the
//! 0xcfc–0xcff data window (PCI Local Bus spec 3.0 §3.2.2.3.2).

use crate::io::Width;

pub const VENDOR_ID: usize = 0x00;
pub const DEVICE_ID: usize = 0x02;
pub const COMMAND: usize = 0x04;
pub const STATUS: usize = 0x06;
pub const REVISION_ID: usize = 0x08;
pub const PROG_IF: usize = 0x09;
pub const SUBCLASS: usize = 0x0a;
pub const CLASS: usize = 0x0b;
pub const HEADER_TYPE: usize = 0x0e;
pub const BAR0: usize = 0x10;
pub const SUBSYSTEM_VENDOR_ID: usize = 0x2c;
pub const SUBSYSTEM_ID: usize = 0x2e;
pub const ROM_BAR: usize = 0x30;
pub const INTERRUPT_LINE: usize = 0x3c;
pub const INTERRUPT_PIN: usize = 0x3d;

pub const COMMAND_IO: u16 = 1 << 0;
pub const COMMAND_MEMORY: u16 = 1 << 1;
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
pub const COMMAND_SERR: u16 = 1 << 8;
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;

/// Identity of a PCI function as a generation profile fixes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciIdent {
    pub vendor: u16,
    pub device: u16,
    pub revision: u8,
    /// class << 16 | subclass << 8 | prog-if
    pub class: u32,
    pub subsystem_vendor: u16,
    pub subsystem: u16,
    /// 0x80 for the first function of a multi-function device.
    pub header_type: u8,
    /// 0 = none, 1..4 = INTA..INTD
    pub interrupt_pin: u8,
}

/// What a base address register decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    Io,
    Mem32 { prefetchable: bool },
}

/// A BAR a device declares: kind and power-of-two size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarSpec {
    pub kind: BarKind,
    pub size: u32,
}

/// A decoded, enabled BAR (address space, base, size), for the machine's address maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarRange {
    pub kind: BarKind,
    pub base: u64,
    pub size: u64,
}

/// A type-0 configuration space with write masks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigSpace {
    regs: [u8; 256],
    /// Bits the guest may write.
    wmask: [u8; 256],
    /// Bits cleared by writing 1 (status registers).
    w1cmask: [u8; 256],
    bars: [Option<BarSpec>; 6],
    rom: Option<u32>,
}

impl ConfigSpace {
    /// A configuration space with the given identity, writable command register (I/O,
    /// memory, bus master, SERR, INTx disable), interrupt line and nothing else.
    pub fn new(id: &PciIdent) -> Self {
        let mut c = ConfigSpace {
            regs: [0; 256],
            wmask: [0; 256],
            w1cmask: [0; 256],
            bars: [None; 6],
            rom: None,
        };
        c.set_u16(VENDOR_ID, id.vendor);
        c.set_u16(DEVICE_ID, id.device);
        c.regs[REVISION_ID] = id.revision;
        c.regs[PROG_IF] = id.class as u8;
        c.regs[SUBCLASS] = (id.class >> 8) as u8;
        c.regs[CLASS] = (id.class >> 16) as u8;
        c.regs[HEADER_TYPE] = id.header_type;
        c.set_u16(SUBSYSTEM_VENDOR_ID, id.subsystem_vendor);
        c.set_u16(SUBSYSTEM_ID, id.subsystem);
        c.regs[INTERRUPT_PIN] = id.interrupt_pin;
        let cmd =
            COMMAND_IO | COMMAND_MEMORY | COMMAND_BUS_MASTER | COMMAND_SERR | COMMAND_INTX_DISABLE;
        c.set_wmask_u16(COMMAND, cmd);
        // Status: signalled/received abort and parity bits are write-1-to-clear.
        c.w1cmask[STATUS + 1] = 0xf9;
        c.wmask[INTERRUPT_LINE] = 0xff;
        c
    }

    /// Declare BAR `index` (0..6). Size must be a power of two (≥ 4 for I/O, ≥ 16 for memory).
    pub fn with_bar(mut self, index: usize, spec: BarSpec) -> Self {
        if index < 6 {
            let off = BAR0 + 4 * index;
            let (low, mask) = match spec.kind {
                BarKind::Io => (1u32, !(spec.size.max(4) - 1) & 0xffff_fffc),
                BarKind::Mem32 { prefetchable } => (
                    (prefetchable as u32) << 3,
                    !(spec.size.max(16) - 1) & 0xffff_fff0,
                ),
            };
            self.set_u32(off, low);
            self.set_wmask_u32(off, mask);
            self.bars[index] = Some(spec);
        }
        self
    }

    /// Declare an expansion ROM BAR of `size` bytes (power of two, ≥ 2 KiB).
    pub fn with_rom(mut self, size: u32) -> Self {
        self.set_wmask_u32(ROM_BAR, (!(size.max(2048) - 1)) | 1);
        self.rom = Some(size);
        self
    }

    /// Make bits of a device-specific register guest-writable.
    pub fn set_wmask_u8(&mut self, off: usize, mask: u8) {
        if let Some(m) = self.wmask.get_mut(off) {
            *m = mask;
        }
    }
    pub fn set_wmask_u16(&mut self, off: usize, mask: u16) {
        self.set_wmask_u8(off, mask as u8);
        self.set_wmask_u8(off + 1, (mask >> 8) as u8);
    }
    pub fn set_wmask_u32(&mut self, off: usize, mask: u32) {
        self.set_wmask_u16(off, mask as u16);
        self.set_wmask_u16(off + 2, (mask >> 16) as u16);
    }
    /// Mark bits of a register write-1-to-clear.
    pub fn set_w1cmask_u8(&mut self, off: usize, mask: u8) {
        if let Some(m) = self.w1cmask.get_mut(off) {
            *m = mask;
        }
    }

    pub fn u8(&self, off: usize) -> u8 {
        self.regs.get(off).copied().unwrap_or(0)
    }
    pub fn u16(&self, off: usize) -> u16 {
        self.u8(off) as u16 | (self.u8(off + 1) as u16) << 8
    }
    pub fn u32(&self, off: usize) -> u32 {
        self.u16(off) as u32 | (self.u16(off + 2) as u32) << 16
    }
    /// Device-side store (ignores the write masks).
    pub fn set_u8(&mut self, off: usize, v: u8) {
        if let Some(r) = self.regs.get_mut(off) {
            *r = v;
        }
    }
    pub fn set_u16(&mut self, off: usize, v: u16) {
        self.set_u8(off, v as u8);
        self.set_u8(off + 1, (v >> 8) as u8);
    }
    pub fn set_u32(&mut self, off: usize, v: u32) {
        self.set_u16(off, v as u16);
        self.set_u16(off + 2, (v >> 16) as u16);
    }

    /// Guest read of `width` bytes at `off` (any alignment inside the 256 bytes; bytes
    /// past the end read as 0xff).
    pub fn read(&self, off: u8, width: Width) -> u32 {
        let mut v = 0u32;
        for i in 0..width.bytes().min(4) {
            let b = match self.regs.get(off as usize + i as usize) {
                Some(&b) => b,
                None => 0xff,
            };
            v |= (b as u32) << (8 * i);
        }
        v
    }

    /// Guest write through the masks. Returns true if a BAR, the ROM BAR or the command
    /// register changed, i.e. the machine must recompute its address maps.
    pub fn write(&mut self, off: u8, width: Width, value: u32) -> bool {
        let mut remap = false;
        for i in 0..width.bytes().min(4) {
            let idx = off as usize + i as usize;
            if idx >= 256 {
                break;
            }
            let b = (value >> (8 * i)) as u8;
            let old = self.regs[idx];
            let w = self.wmask[idx];
            let c = self.w1cmask[idx];
            let new = ((old & !w) | (b & w)) & !(b & c);
            if new != old {
                self.regs[idx] = new;
                if (COMMAND..COMMAND + 2).contains(&idx)
                    || (BAR0..BAR0 + 24).contains(&idx)
                    || (ROM_BAR..ROM_BAR + 4).contains(&idx)
                {
                    remap = true;
                }
            }
        }
        remap
    }

    pub fn command(&self) -> u16 {
        self.u16(COMMAND)
    }

    /// The BARs currently decoded (declared, enabled in the command register, and not
    /// left at address 0 or at the all-ones sizing pattern).
    pub fn decoded_bars(&self) -> impl Iterator<Item = (usize, BarRange)> + '_ {
        let cmd = self.command();
        self.bars.iter().enumerate().filter_map(move |(i, spec)| {
            let spec = (*spec)?;
            let raw = self.u32(BAR0 + 4 * i);
            let (base, enabled) = match spec.kind {
                BarKind::Io => ((raw & 0xffff_fffc) as u64, cmd & COMMAND_IO != 0),
                BarKind::Mem32 { .. } => ((raw & 0xffff_fff0) as u64, cmd & COMMAND_MEMORY != 0),
            };
            let size = spec.size as u64;
            let fits = match spec.kind {
                BarKind::Io => base + size <= 0x1_0000,
                BarKind::Mem32 { .. } => base + size <= 0x1_0000_0000,
            };
            (enabled && base != 0 && fits && base & (size - 1) == 0).then_some((
                i,
                BarRange {
                    kind: spec.kind,
                    base,
                    size,
                },
            ))
        })
    }

    /// The expansion ROM window, if enabled.
    pub fn decoded_rom(&self) -> Option<BarRange> {
        let size = self.rom? as u64;
        let raw = self.u32(ROM_BAR);
        let base = (raw & 0xffff_f800) as u64;
        (raw & 1 != 0
            && self.command() & COMMAND_MEMORY != 0
            && base != 0
            && base + size <= 1 << 32)
            .then_some(BarRange {
                kind: BarKind::Mem32 {
                    prefetchable: false,
                },
                base,
                size,
            })
    }

    /// Raw register bytes (for state records).
    pub fn raw(&self) -> &[u8; 256] {
        &self.regs
    }

    /// Replace the register bytes from a state record, keeping read-only bits (IDs,
    /// BAR type bits) as this build defines them: a record cannot change what the
    /// guest sees as the device's identity.
    pub fn restore_raw(&mut self, saved: &[u8; 256]) {
        for i in 0..256 {
            let w = self.wmask[i] | self.w1cmask[i];
            self.regs[i] = (self.regs[i] & !w) | (saved[i] & w);
        }
    }
}

/// The configuration mechanism #1 address latch at port 0xcf8.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConfigAddress(pub u32);

/// A decoded configuration access target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigTarget {
    pub bus: u8,
    /// device << 3 | function
    pub devfn: u8,
    /// byte offset in the 256-byte space, including the low bits of the data port.
    pub offset: u8,
}

impl ConfigAddress {
    pub const PORT: u16 = 0xcf8;
    pub const DATA: u16 = 0xcfc;

    /// Target of an access to data port `0xcfc + (port & 3)`, if the enable bit is set.
    pub fn target(self, data_port: u16) -> Option<ConfigTarget> {
        if self.0 & 0x8000_0000 == 0 {
            return None;
        }
        Some(ConfigTarget {
            bus: (self.0 >> 16) as u8,
            devfn: (self.0 >> 8) as u8,
            offset: (self.0 as u8 & 0xfc) | (data_port & 3) as u8,
        })
    }
}

/// Convenience: devfn from device and function numbers.
pub const fn devfn(dev: u8, func: u8) -> u8 {
    (dev << 3) | (func & 7)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident() -> PciIdent {
        PciIdent {
            vendor: 0x5853,
            device: 0x0001,
            revision: 1,
            class: 0xff8000,
            subsystem_vendor: 0x5853,
            subsystem: 0x0001,
            header_type: 0,
            interrupt_pin: 1,
        }
    }

    #[test]
    fn ids_are_read_only() {
        let mut c = ConfigSpace::new(&ident());
        c.write(0, Width::B4, 0xdead_beef);
        assert_eq!(c.read(0, Width::B4), 0x0001_5853);
        assert_eq!(c.read(REVISION_ID as u8, Width::B4), 0xff80_0001);
    }

    #[test]
    fn bar_sizing_like_a_bios() {
        // The sequence Linux/SeaBIOS/hvmloader use: write all ones, read back the size
        // mask, restore.
        let mut c = ConfigSpace::new(&ident())
            .with_bar(
                0,
                BarSpec {
                    kind: BarKind::Io,
                    size: 0x100,
                },
            )
            .with_bar(
                1,
                BarSpec {
                    kind: BarKind::Mem32 { prefetchable: true },
                    size: 16 << 20,
                },
            );
        c.write(0x10, Width::B4, 0xffff_ffff);
        assert_eq!(c.read(0x10, Width::B4), 0xffff_ff01);
        c.write(0x14, Width::B4, 0xffff_ffff);
        assert_eq!(c.read(0x14, Width::B4), 0xff00_0008);
        c.write(0x10, Width::B4, 0xc000);
        c.write(0x14, Width::B4, 0xf000_0000);
        assert_eq!(
            c.decoded_bars().count(),
            0,
            "decode off until the command register enables it"
        );
        assert!(c.write(
            COMMAND as u8,
            Width::B2,
            (COMMAND_IO | COMMAND_MEMORY) as u32
        ));
        let bars: alloc::vec::Vec<_> = c.decoded_bars().collect();
        assert_eq!(bars.len(), 2);
        assert_eq!(
            bars[0].1,
            BarRange {
                kind: BarKind::Io,
                base: 0xc000,
                size: 0x100
            }
        );
        assert_eq!(bars[1].1.base, 0xf000_0000);
        // Undeclared BARs stay zero.
        c.write(0x18, Width::B4, 0xffff_ffff);
        assert_eq!(c.read(0x18, Width::B4), 0);
    }

    #[test]
    fn unaligned_and_out_of_range_accesses_do_not_panic() {
        let mut c = ConfigSpace::new(&ident());
        for off in 250..=255u8 {
            c.write(off, Width::B4, 0xffff_ffff);
            let _ = c.read(off, Width::B4);
        }
        assert_eq!(c.read(0xff, Width::B4) >> 8, 0x00ff_ffff);
    }

    #[test]
    fn mechanism_one_decodes_targets() {
        let a = ConfigAddress(0x8000_0800 | 0x40);
        let t = a.target(0xcfe).unwrap();
        assert_eq!((t.bus, t.devfn, t.offset), (0, 8, 0x42));
        assert!(ConfigAddress(0x0000_0800).target(0xcfc).is_none());
    }

    #[test]
    fn restore_keeps_identity() {
        let mut c = ConfigSpace::new(&ident());
        let mut saved = *c.raw();
        saved[0] = 0x12;
        saved[INTERRUPT_LINE] = 11;
        c.restore_raw(&saved);
        assert_eq!(c.u16(VENDOR_ID), 0x5853);
        assert_eq!(c.u8(INTERRUPT_LINE), 11);
    }
}

/// A PCI function on the machine's bus.
pub trait PciFunction {
    fn config(&self) -> &ConfigSpace;
    /// Guest configuration read. Default: the register file.
    fn cfg_read(&mut self, offset: u8, width: Width) -> u32 {
        self.config().read(offset, width)
    }
    /// Guest configuration write. Returns true when decoded address ranges (BARs,
    /// command register, or a device-specific base like PIIX4's PMBA) may have changed.
    fn cfg_write(
        &mut self,
        p: &mut dyn crate::Platform,
        offset: u8,
        width: Width,
        value: u32,
    ) -> bool;
}
