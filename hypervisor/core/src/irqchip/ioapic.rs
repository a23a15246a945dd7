//! I/O APIC, modelled on the Intel 82093AA datasheet, as pure logic.
//!
//! Used by the `emu` backend (`crate::emu::irqchip`); on `kvm` the IOAPIC is KVM's
//! in-kernel one. The caller routes: [`Ioapic::set_irq`] and [`Ioapic::mmio_write`] return a
//! [`Delivery`] message that the caller hands to the matching local APICs
//! (`lapic::Lapic::is_destination` / `deliver`), and the LAPICs' EOI broadcasts come
//! back through [`Ioapic::eoi`].
//!
//! Choices (documented, checked by the tests):
//! * Registers at [`IOAPIC_BASE`] (0xfec00000): IOREGSEL at 0x00, IOWIN at 0x10, both
//!   32-bit. Indirect registers: ID (0x00, bits 24-27), VER (0x01), ARB (0x02, reads the
//!   ID: the 82093AA loads its arbitration ID from it), redirection table 0x10-0x3f.
//! * **24 pins** ([`IOAPIC_PINS`]), as on the 82093AA, QEMU and KVM: the i440FX/PIIX
//!   machine has 16 ISA IRQs and four PCI links routed onto ISA IRQs, so 24 is plenty and
//!   matches the firmware's MADT (GSI base 0). Xen's vIOAPIC has 48 pins; no guest here
//!   needs them.
//! * **Version 0x11** ([`IOAPIC_VERSION`], as hvmloader declares): VER reads 0x00170011.
//!   There is **no EOI register** (that arrived with version 0x20): a write to offset 0x40
//!   is ignored, and level-triggered interrupts end only through the local APICs' EOI
//!   broadcast ([`Ioapic::eoi`]). Linux, seeing version 0x11, either relies on the
//!   broadcast or clears Remote IRR by flipping the entry to edge and back, which this
//!   model honours (switching an entry to edge clears Remote IRR, as QEMU and KVM do).
//! * **Line levels are logical**: `set_irq(pin, true)` means "asserted", and the polarity
//!   bit (13) is stored and read back but never inverts the line. This is KVM's
//!   convention; the firmware's MADT declares the PCI-routed ISA IRQs 5/10/11 active-low,
//!   Linux programs those entries active-low, and the device model still drives
//!   asserted = true. Inverting here would leave those lines permanently "asserted".
//! * Edge-triggered entries deliver on a 0 -> 1 transition while unmasked; an edge that
//!   arrives while masked is lost (82093AA). Level-triggered entries deliver while the
//!   line is asserted, unmasked and Remote IRR is clear, then set Remote IRR; an EOI of
//!   the vector clears it and re-delivers if the line is still asserted. Unmasking an
//!   asserted level-triggered entry delivers.
//! * Delivery is instantaneous, so Delivery Status (bit 12) always reads 0. Reserved
//!   delivery modes (0b011, 0b110) deliver nothing.
//! * Accesses other than aligned 32-bit ones: reads return the addressed bytes of the
//!   32-bit register (0 outside IOREGSEL/IOWIN); a 1-byte write to IOREGSEL selects a
//!   register; every other write is ignored. Nothing panics.

use chassis_devices::io::Width;
use chassis_devices::snapshot::{LoadError, RecordReader, RecordWriter, Snapshot};

use super::lapic::{DeliveryMode, DestMode};

/// Guest-physical address of the register window.
pub const IOAPIC_BASE: u64 = 0xfec0_0000;
/// Size of the register window claimed.
pub const IOAPIC_SIZE: u64 = 0x1000;
/// Number of input pins (redirection entries).
pub const IOAPIC_PINS: usize = 24;
/// The version register's version field.
pub const IOAPIC_VERSION: u32 = 0x11;

const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;

const REG_ID: u8 = 0x00;
const REG_VER: u8 = 0x01;
const REG_ARB: u8 = 0x02;
const REG_REDTBL: u8 = 0x10;

const RTE_MASKED: u64 = 1 << 16;
const RTE_LEVEL: u64 = 1 << 15;
const RTE_REMOTE_IRR: u64 = 1 << 14;
const RTE_DEST_LOGICAL: u64 = 1 << 11;
/// Guest-writable bits: vector, delivery mode, dest mode, polarity, trigger, mask,
/// destination (bits 56-63).
const RTE_WRITABLE: u64 = 0xff00_0000_0001_afff;
/// Every bit an entry can hold (writable + Remote IRR).
const RTE_VALID: u64 = RTE_WRITABLE | RTE_REMOTE_IRR;
const RTE_RESET: u64 = RTE_MASKED;

/// An interrupt message for the local APICs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The input pin that produced it.
    pub pin: u8,
    pub vector: u8,
    /// Destination field (bits 56-63).
    pub dest: u8,
    pub dest_mode: DestMode,
    pub mode: DeliveryMode,
    pub level_triggered: bool,
}

/// The IOAPIC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ioapic {
    /// 4-bit IOAPIC ID.
    id: u8,
    ioregsel: u8,
    redtbl: [u64; IOAPIC_PINS],
    /// Logical line level per pin (bit n = pin n asserted).
    levels: u32,
}

impl Default for Ioapic {
    fn default() -> Self {
        Self::new()
    }
}

impl Ioapic {
    /// Power-up state: ID 0, every entry masked.
    pub fn new() -> Ioapic {
        Ioapic {
            id: 0,
            ioregsel: 0,
            redtbl: [RTE_RESET; IOAPIC_PINS],
            levels: 0,
        }
    }

    /// The 4-bit IOAPIC ID.
    pub fn id(&self) -> u8 {
        self.id
    }

    /// Redirection entry of `pin` (0 for a pin that does not exist).
    pub fn entry(&self, pin: usize) -> u64 {
        self.redtbl.get(pin).copied().unwrap_or(0)
    }

    fn level(&self, pin: usize) -> bool {
        pin < IOAPIC_PINS && self.levels & (1 << pin) != 0
    }

    /// The message entry `pin` sends, if its delivery mode is not reserved.
    fn message(&self, pin: usize) -> Option<Delivery> {
        let e = *self.redtbl.get(pin)?;
        let mode = match DeliveryMode::from_bits((e >> 8) as u32)? {
            DeliveryMode::StartUp => return None,
            m => m,
        };
        Some(Delivery {
            pin: pin as u8,
            vector: e as u8,
            dest: (e >> 56) as u8,
            dest_mode: if e & RTE_DEST_LOGICAL != 0 {
                DestMode::Logical
            } else {
                DestMode::Physical
            },
            mode,
            level_triggered: e & RTE_LEVEL != 0,
        })
    }

    /// Deliver from a level-triggered entry if it may: unmasked, line asserted, Remote
    /// IRR clear. Sets Remote IRR.
    fn service_level(&mut self, pin: usize) -> Option<Delivery> {
        let e = *self.redtbl.get(pin)?;
        if e & RTE_LEVEL == 0 || e & RTE_MASKED != 0 || e & RTE_REMOTE_IRR != 0 {
            return None;
        }
        if !self.level(pin) {
            return None;
        }
        let msg = self.message(pin)?;
        if let Some(slot) = self.redtbl.get_mut(pin) {
            *slot |= RTE_REMOTE_IRR;
        }
        Some(msg)
    }

    /// Drive input `pin` to a logical level (true = asserted, whatever the entry's
    /// polarity). Returns the message to deliver, if any. Pins beyond 23 are ignored.
    pub fn set_irq(&mut self, pin: usize, level: bool) -> Option<Delivery> {
        if pin >= IOAPIC_PINS {
            return None;
        }
        let was = self.level(pin);
        if level {
            self.levels |= 1 << pin;
        } else {
            self.levels &= !(1 << pin);
        }
        let e = *self.redtbl.get(pin)?;
        if e & RTE_LEVEL != 0 {
            self.service_level(pin)
        } else if !was && level && e & RTE_MASKED == 0 {
            self.message(pin)
        } else {
            None
        }
    }

    /// EOI broadcast from a local APIC for `vector`: clear Remote IRR on every
    /// level-triggered entry with that vector and re-deliver those whose line is still
    /// asserted.
    pub fn eoi(&mut self, vector: u8) -> Vec<Delivery> {
        let mut out = Vec::new();
        for pin in 0..IOAPIC_PINS {
            let Some(e) = self.redtbl.get_mut(pin) else {
                continue;
            };
            if *e as u8 != vector || *e & RTE_LEVEL == 0 || *e & RTE_REMOTE_IRR == 0 {
                continue;
            }
            *e &= !RTE_REMOTE_IRR;
            if let Some(d) = self.service_level(pin) {
                out.push(d);
            }
        }
        out
    }

    fn read_indirect(&self, reg: u8) -> u32 {
        match reg {
            REG_ID | REG_ARB => ((self.id & 0xf) as u32) << 24,
            REG_VER => ((IOAPIC_PINS as u32 - 1) << 16) | IOAPIC_VERSION,
            REG_REDTBL..=0x3f => {
                let idx = (reg - REG_REDTBL) as usize;
                let e = self.entry(idx / 2);
                if idx.is_multiple_of(2) {
                    e as u32
                } else {
                    (e >> 32) as u32
                }
            }
            _ => 0,
        }
    }

    fn write_indirect(&mut self, reg: u8, v: u32) -> Option<Delivery> {
        match reg {
            REG_ID => {
                self.id = ((v >> 24) & 0xf) as u8;
                None
            }
            REG_REDTBL..=0x3f => {
                let idx = (reg - REG_REDTBL) as usize;
                let pin = idx / 2;
                let old = *self.redtbl.get(pin)?;
                let merged = if idx.is_multiple_of(2) {
                    (old & !0xffff_ffff) | v as u64
                } else {
                    (old & 0xffff_ffff) | ((v as u64) << 32)
                };
                let mut new = (merged & RTE_WRITABLE) | (old & RTE_REMOTE_IRR);
                if new & RTE_LEVEL == 0 {
                    // Edge trigger has no Remote IRR (Linux's EOI for version 0x11
                    // IOAPICs relies on this).
                    new &= !RTE_REMOTE_IRR;
                }
                if let Some(slot) = self.redtbl.get_mut(pin) {
                    *slot = new;
                }
                self.service_level(pin)
            }
            // VER and ARB are read-only; other indices do not exist.
            _ => None,
        }
    }

    /// Read `width` bytes at `offset` in the register window.
    pub fn mmio_read(&mut self, offset: u64, width: Width) -> u64 {
        let reg = match offset & !3 {
            IOREGSEL => self.ioregsel as u32,
            IOWIN => self.read_indirect(self.ioregsel),
            _ => 0,
        };
        ((reg as u64) >> ((offset & 3) * 8)) & width.mask()
    }

    /// Write `width` bytes at `offset`. Returns a message to deliver when the write
    /// unmasked (or re-armed) an asserted level-triggered entry.
    pub fn mmio_write(&mut self, offset: u64, width: Width, value: u64) -> Option<Delivery> {
        match (offset, width) {
            (IOREGSEL, Width::B4 | Width::B1) => {
                self.ioregsel = value as u8;
                None
            }
            (IOWIN, Width::B4) => self.write_indirect(self.ioregsel, value as u32),
            // 0x40 (EOI) exists only from version 0x20; everything else is ignored.
            _ => None,
        }
    }
}

impl Snapshot for Ioapic {
    const NAME: &'static str = "ioapic";
    const VERSION: u16 = 1;

    fn save(&self, w: &mut RecordWriter) {
        w.u8(self.id);
        w.u8(self.ioregsel);
        w.u32(self.levels);
        w.u8(IOAPIC_PINS as u8);
        for e in self.redtbl {
            w.u64(e);
        }
    }

    fn load(&mut self, _version: u16, r: &mut RecordReader<'_>) -> Result<(), LoadError> {
        let bad = |field| LoadError::Invalid {
            name: Self::NAME,
            field,
        };
        self.id = r.u8()?;
        if self.id > 0xf {
            return Err(bad("id"));
        }
        self.ioregsel = r.u8()?;
        self.levels = r.u32()?;
        if self.levels >> IOAPIC_PINS != 0 {
            return Err(bad("levels"));
        }
        if r.u8()? as usize != IOAPIC_PINS {
            return Err(bad("pins"));
        }
        for slot in self.redtbl.iter_mut() {
            let e = r.u64()?;
            if e & !RTE_VALID != 0 {
                return Err(bad("redirection entry"));
            }
            if e & RTE_REMOTE_IRR != 0 && e & RTE_LEVEL == 0 {
                return Err(bad("remote irr"));
            }
            *slot = e;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irqchip::lapic::{Accepted, Lapic, Output};
    use chassis_devices::snapshot::{HEADER_LEN, load_record, save_record};

    fn write_reg(io: &mut Ioapic, reg: u8, v: u32) -> Option<Delivery> {
        io.mmio_write(IOREGSEL, Width::B4, reg as u64);
        io.mmio_write(IOWIN, Width::B4, v as u64)
    }

    fn read_reg(io: &mut Ioapic, reg: u8) -> u32 {
        io.mmio_write(IOREGSEL, Width::B4, reg as u64);
        io.mmio_read(IOWIN, Width::B4) as u32
    }

    /// Program pin `pin` the way Linux's ioapic_write_entry does: high dword first,
    /// then low.
    fn program(io: &mut Ioapic, pin: u8, low: u32, dest: u8) -> Option<Delivery> {
        write_reg(io, 0x11 + 2 * pin, (dest as u32) << 24);
        write_reg(io, 0x10 + 2 * pin, low)
    }

    #[test]
    fn power_up_and_identification() {
        let mut io = Ioapic::new();
        assert_eq!(read_reg(&mut io, REG_VER), 0x0017_0011);
        assert_eq!(read_reg(&mut io, REG_ID), 0);
        for pin in 0..24u8 {
            assert_eq!(read_reg(&mut io, 0x10 + 2 * pin), 0x1_0000);
            assert_eq!(read_reg(&mut io, 0x11 + 2 * pin), 0);
        }
        assert_eq!(read_reg(&mut io, 0x40), 0);
        // VER is read-only.
        write_reg(&mut io, REG_VER, 0);
        assert_eq!(read_reg(&mut io, REG_VER), 0x0017_0011);
        // IOREGSEL reads back.
        io.mmio_write(IOREGSEL, Width::B4, 0x21);
        assert_eq!(io.mmio_read(IOREGSEL, Width::B4), 0x21);
    }

    /// hvmloader's apic_setup: ID := 1, pin 0 ExtINT to LAPIC 0 (virtual wire through
    /// the IOAPIC); the PIC's INTR on pin 0 then reaches the BSP as ExtINT.
    #[test]
    fn hvmloader_apic_setup() {
        let mut io = Ioapic::new();
        write_reg(&mut io, REG_ID, 1 << 24);
        assert_eq!(read_reg(&mut io, REG_ID), 1 << 24);
        assert_eq!(read_reg(&mut io, REG_ARB), 1 << 24);
        assert_eq!(io.id(), 1);
        write_reg(&mut io, 0x10, 7 << 8);
        write_reg(&mut io, 0x11, 0);
        assert_eq!(read_reg(&mut io, 0x10), 0x700);
        let d = io.set_irq(0, true).expect("ExtINT delivered");
        assert_eq!(d.mode, DeliveryMode::ExtInt);
        assert_eq!((d.dest, d.dest_mode), (0, DestMode::Physical));
        let mut bsp = Lapic::new(0, true);
        assert!(bsp.is_destination(d.dest_mode, d.dest));
        assert_eq!(bsp.deliver(d.mode, d.vector, false), Accepted::ExtInt);
        // Held high: no new edge.
        assert_eq!(io.set_irq(0, true), None);
        assert_eq!(io.set_irq(0, false), None);
        assert!(io.set_irq(0, true).is_some());
    }

    /// Linux's setup_IO_APIC for the PIT on GSI 2 (edge, high) and the LAPIC path.
    #[test]
    fn edge_triggered_pulses() {
        let mut io = Ioapic::new();
        assert_eq!(program(&mut io, 2, 0x30, 0x01), None);
        let d = io.set_irq(2, true).unwrap();
        assert_eq!(
            d,
            Delivery {
                pin: 2,
                vector: 0x30,
                dest: 1,
                dest_mode: DestMode::Physical,
                mode: DeliveryMode::Fixed,
                level_triggered: false,
            }
        );
        assert_eq!(io.set_irq(2, false), None);
        assert!(io.set_irq(2, true).is_some());
        io.set_irq(2, false);
        // Masked: the edge is lost, and unmasking does not replay it.
        program(&mut io, 2, 0x30 | 0x1_0000, 0x01);
        assert_eq!(io.set_irq(2, true), None);
        assert_eq!(program(&mut io, 2, 0x30, 0x01), None);
        // Out-of-range pins are ignored.
        assert_eq!(io.set_irq(24, true), None);
        assert_eq!(io.set_irq(usize::MAX, true), None);
    }

    /// A PCI interrupt on ISA IRQ 11: level, active-low as the MADT says (the polarity
    /// bit does not invert the logical level), logical flat destination. Remote IRR is
    /// set on delivery and cleared by the LAPIC's EOI broadcast; a line still asserted
    /// at EOI is delivered again.
    #[test]
    fn level_triggered_with_remote_irr_and_eoi() {
        let mut io = Ioapic::new();
        let mut cpu = Lapic::new(0, true);
        cpu.mmio_write(0xf0, Width::B4, 0x1ff, 0);
        cpu.mmio_write(0xd0, Width::B4, 0x0100_0000, 0);
        let low = 0x41 | (1 << 15) | (1 << 13) | (1 << 11) | (1 << 8);
        assert_eq!(program(&mut io, 11, low, 0x01), None);
        let d = io.set_irq(11, true).expect("asserted line delivers");
        assert!(d.level_triggered);
        assert_eq!(d.mode, DeliveryMode::LowestPriority);
        assert_eq!(d.dest_mode, DestMode::Logical);
        assert_ne!(read_reg(&mut io, 0x10 + 22) & (1 << 14), 0, "remote IRR");
        assert!(cpu.is_destination(d.dest_mode, d.dest));
        assert_eq!(cpu.deliver(d.mode, d.vector, true), Accepted::Interrupt);
        // While Remote IRR is set nothing more is sent.
        assert_eq!(io.set_irq(11, true), None);
        assert_eq!(cpu.acknowledge(), 0x41);
        // Driver clears the device's interrupt, then the kernel EOIs.
        io.set_irq(11, false);
        let Some(Output::EoiBroadcast(v)) = cpu.mmio_write(0xb0, Width::B4, 0, 0) else {
            panic!("level EOI must be broadcast");
        };
        assert_eq!(io.eoi(v), vec![]);
        assert_eq!(read_reg(&mut io, 0x10 + 22) & (1 << 14), 0);
        // Again, but the line is still asserted at EOI: re-delivered.
        let d = io.set_irq(11, true).unwrap();
        cpu.deliver(d.mode, d.vector, true);
        cpu.acknowledge();
        let Some(Output::EoiBroadcast(v)) = cpu.eoi().map(Output::EoiBroadcast) else {
            panic!()
        };
        let again = io.eoi(v);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].vector, 0x41);
        assert_ne!(read_reg(&mut io, 0x10 + 22) & (1 << 14), 0);
        // An EOI for another vector changes nothing.
        assert_eq!(io.eoi(0x42), vec![]);
        assert_ne!(read_reg(&mut io, 0x10 + 22) & (1 << 14), 0);
    }

    /// Linux on a version 0x11 IOAPIC without EOI broadcast: flip the entry to edge
    /// (masked) and back to level to clear Remote IRR.
    #[test]
    fn edge_flip_clears_remote_irr() {
        let mut io = Ioapic::new();
        let low = 0x51 | (1 << 15);
        program(&mut io, 5, low, 0);
        assert!(io.set_irq(5, true).is_some());
        assert_ne!(read_reg(&mut io, 0x1a) & (1 << 14), 0);
        // Guest writes cannot set or clear Remote IRR directly.
        write_reg(&mut io, 0x1a, low & !(1 << 14));
        assert_ne!(read_reg(&mut io, 0x1a) & (1 << 14), 0);
        write_reg(&mut io, 0x1a, 0x51 | (1 << 16));
        assert_eq!(read_reg(&mut io, 0x1a) & (1 << 14), 0);
        // Back to level, unmasked, line still high: delivered again.
        let d = write_reg(&mut io, 0x1a, low).expect("unmask of asserted level line");
        assert_eq!(d.vector, 0x51);
    }

    #[test]
    fn masked_level_line_delivers_on_unmask() {
        let mut io = Ioapic::new();
        program(&mut io, 10, 0x61 | (1 << 15) | (1 << 16), 0);
        assert_eq!(io.set_irq(10, true), None);
        let d = program(&mut io, 10, 0x61 | (1 << 15), 0).unwrap();
        assert_eq!(d.vector, 0x61);
        // Reserved delivery mode: nothing is sent.
        let mut io = Ioapic::new();
        program(&mut io, 3, 0x71 | (3 << 8), 0);
        assert_eq!(io.set_irq(3, true), None);
    }

    #[test]
    fn odd_accesses_do_not_panic_or_apply() {
        let mut io = Ioapic::new();
        write_reg(&mut io, REG_ID, 0x0f00_0000);
        io.mmio_write(IOREGSEL, Width::B1, 0x00);
        assert_eq!(io.mmio_read(IOWIN + 3, Width::B1), 0x0f);
        assert_eq!(io.mmio_read(IOWIN, Width::B8), 0x0f00_0000);
        io.mmio_write(IOWIN, Width::B2, 0);
        io.mmio_write(IOWIN + 1, Width::B4, 0);
        io.mmio_write(0x40, Width::B4, 0x30);
        assert_eq!(read_reg(&mut io, REG_ID), 0x0f00_0000);
        // High bits of the ID field beyond 4 bits are dropped.
        write_reg(&mut io, REG_ID, 0xff00_0000);
        assert_eq!(io.id(), 0xf);
        // Non-destination bits of the high dword are reserved.
        write_reg(&mut io, 0x11, 0xffff_ffff);
        assert_eq!(read_reg(&mut io, 0x11), 0xff00_0000);
        write_reg(&mut io, 0x10, 0xffff_ffff);
        assert_eq!(read_reg(&mut io, 0x10), 0x1_afff);
    }

    #[test]
    fn hammer_random_accesses() {
        let mut seed = 0xdead_beef_cafe_f00du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut io = Ioapic::new();
        for _ in 0..200_000 {
            let r = next();
            let v = next();
            let width = [Width::B1, Width::B2, Width::B4, Width::B8][(r & 3) as usize];
            let off = if r & 4 == 0 { (r >> 8) & 0x1f } else { r >> 8 };
            match (r >> 32) % 6 {
                0 => {
                    io.mmio_read(off, width);
                }
                1 => {
                    io.set_irq((v % 40) as usize, v & 0x100 != 0);
                }
                2 => {
                    io.eoi(v as u8);
                }
                3 => {
                    io.mmio_write(IOREGSEL, Width::B4, v % 0x48);
                }
                _ => {
                    io.mmio_write(off % 0x48, width, v);
                }
            }
        }
        let bytes = save_record(&io, 0);
        let mut fresh = Ioapic::new();
        load_record(&mut fresh, &bytes).expect("hammered state loads");
        assert_eq!(fresh, io);
    }

    fn interesting() -> Ioapic {
        let mut io = Ioapic::new();
        write_reg(&mut io, REG_ID, 1 << 24);
        program(&mut io, 0, 0x700, 0);
        program(&mut io, 9, 0x39 | (1 << 15) | (1 << 13), 0xff);
        program(&mut io, 14, 0x3e, 1);
        io.set_irq(9, true);
        io.set_irq(14, true);
        io.mmio_write(IOREGSEL, Width::B4, 0x13);
        io
    }

    #[test]
    fn snapshot_round_trip() {
        let io = interesting();
        let bytes = save_record(&io, 0);
        let mut fresh = Ioapic::new();
        assert!(load_record(&mut fresh, &bytes).unwrap().is_empty());
        assert_eq!(fresh, io);
        assert_eq!(save_record(&fresh, 0), bytes);
    }

    #[test]
    fn snapshot_truncated_oversized_and_invalid_are_refused() {
        let io = interesting();
        let bytes = save_record(&io, 0);
        let body_len = u32::from_le_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]) as usize;
        for cut in 0..HEADER_LEN + body_len {
            let mut b = bytes[..cut].to_vec();
            if cut >= HEADER_LEN {
                b[20..24].copy_from_slice(&((cut - HEADER_LEN) as u32).to_le_bytes());
                while b.len() % 8 != 0 {
                    b.push(0);
                }
            }
            let mut fresh = Ioapic::new();
            assert!(load_record(&mut fresh, &b).is_err(), "cut {cut} accepted");
            assert_eq!(fresh, Ioapic::new());
        }
        let mut b = bytes[..HEADER_LEN + body_len].to_vec();
        b.push(0);
        b[20..24].copy_from_slice(&(body_len as u32 + 1).to_le_bytes());
        while b.len() % 8 != 0 {
            b.push(0);
        }
        let mut fresh = Ioapic::new();
        assert!(matches!(
            load_record(&mut fresh, &b),
            Err(LoadError::TrailingBytes { .. })
        ));
        let mut huge = bytes.clone();
        huge[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            load_record(&mut fresh, &huge),
            Err(LoadError::Oversized { .. })
        ));
        // ID beyond 4 bits.
        let mut b = bytes.clone();
        b[HEADER_LEN] = 0x10;
        assert!(matches!(
            load_record(&mut fresh, &b),
            Err(LoadError::Invalid { field: "id", .. })
        ));
        // Remote IRR on an edge-triggered entry (pin 14, low dword byte 1 bit 6).
        let mut b = bytes.clone();
        b[HEADER_LEN + 7 + 14 * 8 + 1] |= 0x40;
        assert!(matches!(
            load_record(&mut fresh, &b),
            Err(LoadError::Invalid {
                field: "remote irr",
                ..
            })
        ));
        // A pin count other than 24.
        let mut b = bytes.clone();
        b[HEADER_LEN + 6] = 48;
        assert!(matches!(
            load_record(&mut fresh, &b),
            Err(LoadError::Invalid { field: "pins", .. })
        ));
        assert_eq!(fresh, Ioapic::new());
    }
}
