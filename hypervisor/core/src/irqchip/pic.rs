//! The PC/AT dual Intel 8259A programmable interrupt controller, as pure logic.
//!
//! Used by the `emu` backend (`crate::emu::irqchip`, which also routes ports 0x4d0/0x4d1
//! here); on `kvm` the guest uses KVM's in-kernel PIC.
//!
//! Behaviour follows the 8259A datasheet (Intel 231468); the facts about what guests do
//! with it were checked against Linux `arch/x86/kernel/i8259.c` and SeaBIOS
//! `src/hw/pic.c`, and a few choices the datasheet leaves open follow what QEMU's and
//! KVM's PICs do, because that is what guests have been tested against:
//!
//! * Ports: master 0x20 (A0 = 0) / 0x21 (A0 = 1), slave 0xa0 / 0xa1, the slave's INT
//!   wired to the master's IR2. ELCR 0x4d0/0x4d1 (PIIX edge/level control, bit n = ISA
//!   IRQ n level triggered; IRQ 0, 1, 2, 8 and 13 are always edge, mask 0xdef8 as on the
//!   PIIX3). `chassis-devices`' PIIX3 also decodes 0x4d0/0x4d1: the `emu` bus routes
//!   those ports here and forwards writes to the PIIX3 too, so both copies agree.
//! * Initialization: a write to A0 = 0 with bit 4 set is ICW1 (bit 0 IC4 = ICW4 follows,
//!   bit 1 SNGL = no ICW3, bit 3 LTIM = all lines level triggered, ORed with ELCR). It
//!   clears IMR and ISR, resets the priority to IR0 highest, selects IRR for status
//!   reads, leaves special mask and poll mode, and resets the edge detectors, so an
//!   edge-triggered line that is already high must go low and high again. ICW2 (vector
//!   base, bits 7:3), ICW3 (unless SNGL) and ICW4 (if IC4: bit 1 AEOI, bit 4 SFNM) follow
//!   on A0 = 1; without IC4 all ICW4 functions are 0. Vectors are always in 8086 format
//!   (ICW4 bit 0 is stored but the 8080 CALL format is not modelled); SFNM and the
//!   buffered-mode bits are stored and otherwise ignored. Linux initializes master then
//!   slave (ICW1..ICW4 each, with IMR all-ones around it); SeaBIOS interleaves the two
//!   chips per ICW; both work because each chip has its own sequence state.
//! * Cascade: the master's IR2 input is the slave's INT output, edge detected like any
//!   master line. If the master's ICW3 says IR2 has a slave (and not SNGL), the slave
//!   supplies the vector in the INTA cycle if its ICW3 ID is 2; a slave with another ID
//!   does not answer and the floating bus reads 0xff. A master line other than IR2
//!   marked as having a slave also reads 0xff (no slave is attached there).
//!   `set_irq(2, _)` is ignored: IR2 is the cascade (PC/AT boards route the ISA bus's
//!   IRQ2 pin to IRQ9).
//! * Edge-triggered lines latch IRR on a rising edge and keep it until the INTA (or poll)
//!   that services it, even if the line has gone low (like QEMU and KVM; the datasheet
//!   would require the line to stay high until the first INTA, which would lose the
//!   pulse-style edges emulated devices send). Level-triggered lines: IRR follows the
//!   line.
//! * Priority: eight levels, rotating; `priority_add` is the IR with the highest
//!   priority. An in-service level blocks it and all lower levels; in special mask mode
//!   only unmasked in-service levels block, and a non-specific EOI only clears unmasked
//!   ISR bits.
//! * Spurious interrupts: when INTR was raised but no request is left at INTA time (a
//!   level line dropped, or IMR masked it in between), the master answers IR7's vector
//!   without setting ISR. If the master's IR2 was latched but the slave has nothing, the
//!   master sets ISR bit 2 and the slave answers its IR7 vector (IRQ 15) without
//!   setting its ISR, which is why Linux EOIs the master on a spurious IRQ 15.
//! * Poll (OCW3 bit 2): the next read of either port of that chip returns bit 7 = a
//!   request is pending, bits 2:0 = its IR, and acknowledges it as an INTA would for
//!   that chip alone; 0 when nothing is pending.
//!
//! State is saved as the `i8259` record (see [`Snapshot`]).

use chassis_devices::snapshot::{LoadError, RecordReader, RecordWriter, Snapshot};

pub const MASTER_CMD: u16 = 0x20;
pub const MASTER_DATA: u16 = 0x21;
pub const SLAVE_CMD: u16 = 0xa0;
pub const SLAVE_DATA: u16 = 0xa1;
pub const ELCR1: u16 = 0x4d0;
pub const ELCR2: u16 = 0x4d1;
/// ELCR bits software can change: not IRQ 0, 1, 2 (master) nor 8, 13 (slave).
pub const ELCR_WMASK: u16 = 0xdef8;
/// The master input the slave's INT drives.
pub const CASCADE_IR: u8 = 2;

const ICW1: u8 = 1 << 4;
const ICW1_IC4: u8 = 1 << 0;
const ICW1_SNGL: u8 = 1 << 1;
const ICW1_LTIM: u8 = 1 << 3;
const ICW4_AEOI: u8 = 1 << 1;
const OCW3: u8 = 1 << 3;
const OCW3_RIS: u8 = 1 << 0;
const OCW3_RR: u8 = 1 << 1;
const OCW3_POLL: u8 = 1 << 2;
const OCW3_SMM: u8 = 1 << 5;
const OCW3_ESMM: u8 = 1 << 6;

/// Where a chip is in its initialization sequence.
const INIT_READY: u8 = 0;
const INIT_ICW2: u8 = 1;
const INIT_ICW3: u8 = 2;
const INIT_ICW4: u8 = 3;

/// One 8259A.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Chip {
    irr: u8,
    isr: u8,
    imr: u8,
    /// Current input levels (for edge detection and level-mode IRR).
    line: u8,
    /// Level-triggered inputs (ELCR bits for this chip).
    elcr: u8,
    /// ICW1 as last written (IC4, SNGL, LTIM).
    icw1: u8,
    /// ICW2 & 0xf8.
    vector_base: u8,
    icw3: u8,
    icw4: u8,
    init_state: u8,
    /// The IR with the highest priority (0..8).
    priority_add: u8,
    read_isr: bool,
    poll: bool,
    special_mask: bool,
    rotate_on_aeoi: bool,
}

impl Chip {
    fn new() -> Self {
        Chip {
            irr: 0,
            isr: 0,
            imr: 0,
            line: 0,
            elcr: 0,
            icw1: 0,
            vector_base: 0,
            icw3: 0,
            icw4: 0,
            init_state: INIT_READY,
            priority_add: 0,
            read_isr: false,
            poll: false,
            special_mask: false,
            rotate_on_aeoi: false,
        }
    }

    fn level_mask(&self) -> u8 {
        if self.icw1 & ICW1_LTIM != 0 {
            0xff
        } else {
            self.elcr
        }
    }

    fn auto_eoi(&self) -> bool {
        self.icw4 & ICW4_AEOI != 0
    }

    fn single(&self) -> bool {
        self.icw1 & ICW1_SNGL != 0
    }

    fn set_line(&mut self, ir: u8, level: bool) {
        let m = 1u8 << (ir & 7);
        if self.level_mask() & m != 0 {
            if level {
                self.irr |= m;
            } else {
                self.irr &= !m;
            }
        } else if level && self.line & m == 0 {
            self.irr |= m;
        }
        if level {
            self.line |= m;
        } else {
            self.line &= !m;
        }
    }

    /// Level-triggered IRR bits follow the lines (after ELCR/LTIM changes).
    fn refresh_level_irr(&mut self) {
        let lm = self.level_mask();
        self.irr = (self.irr & !lm) | (self.line & lm);
    }

    /// The highest-priority IR set in `mask`, as (priority index, IR).
    fn highest(&self, mask: u8) -> Option<(u8, u8)> {
        (0u8..8)
            .map(|i| (i, (i + self.priority_add) & 7))
            .find(|&(_, ir)| mask & (1 << ir) != 0)
    }

    /// ISR bits that block lower priorities (and non-specific EOIs consider).
    fn blocking_isr(&self) -> u8 {
        if self.special_mask {
            self.isr & !self.imr
        } else {
            self.isr
        }
    }

    /// The IR this chip would deliver now, if any.
    fn pending(&self) -> Option<u8> {
        let (prio, ir) = self.highest(self.irr & !self.imr)?;
        match self.highest(self.blocking_isr()) {
            Some((busy, _)) if busy <= prio => None,
            _ => Some(ir),
        }
    }

    /// The acknowledge part of an INTA (or poll) for `ir` on this chip.
    fn ack(&mut self, ir: u8) {
        let m = 1u8 << (ir & 7);
        if self.level_mask() & m == 0 {
            self.irr &= !m;
        }
        if self.auto_eoi() {
            if self.rotate_on_aeoi {
                self.priority_add = (ir + 1) & 7;
            }
        } else {
            self.isr |= m;
        }
    }

    fn vector(&self, ir: u8) -> u8 {
        self.vector_base | (ir & 7)
    }

    fn write_icw1(&mut self, v: u8) {
        self.icw1 = v & (ICW1_IC4 | ICW1_SNGL | ICW1_LTIM);
        self.imr = 0;
        self.isr = 0;
        self.priority_add = 0;
        self.read_isr = false;
        self.poll = false;
        self.special_mask = false;
        self.rotate_on_aeoi = false;
        if v & ICW1_IC4 == 0 {
            self.icw4 = 0;
        }
        // Edge detectors reset: latched edges are dropped; a line that is high now has to
        // fall and rise again (its `line` bit stays set, so only a new rising edge
        // latches). Level-triggered requests keep following their lines.
        self.irr = 0;
        self.refresh_level_irr();
        self.init_state = INIT_ICW2;
    }

    fn write_cmd(&mut self, v: u8) {
        if v & ICW1 != 0 {
            self.write_icw1(v);
        } else if v & OCW3 != 0 {
            if v & OCW3_RR != 0 {
                self.read_isr = v & OCW3_RIS != 0;
            }
            if v & OCW3_POLL != 0 {
                self.poll = true;
            }
            if v & OCW3_ESMM != 0 {
                self.special_mask = v & OCW3_SMM != 0;
            }
        } else {
            self.write_ocw2(v);
        }
    }

    fn write_ocw2(&mut self, v: u8) {
        let level = v & 7;
        match v >> 5 {
            // Rotate in automatic EOI mode: clear / set.
            0b000 => self.rotate_on_aeoi = false,
            0b100 => self.rotate_on_aeoi = true,
            // Non-specific EOI, optionally rotating.
            0b001 | 0b101 => {
                if let Some((_, ir)) = self.highest(self.blocking_isr()) {
                    self.isr &= !(1 << ir);
                    if v & 0x80 != 0 {
                        self.priority_add = (ir + 1) & 7;
                    }
                }
            }
            // Specific EOI, optionally rotating.
            0b011 | 0b111 => {
                self.isr &= !(1 << level);
                if v & 0x80 != 0 {
                    self.priority_add = (level + 1) & 7;
                }
            }
            // Set priority: `level` becomes the lowest.
            0b110 => self.priority_add = (level + 1) & 7,
            // 0b010: no operation.
            _ => {}
        }
    }

    fn write_data(&mut self, v: u8) {
        match self.init_state {
            INIT_ICW2 => {
                self.vector_base = v & 0xf8;
                self.init_state = if !self.single() {
                    INIT_ICW3
                } else if self.icw1 & ICW1_IC4 != 0 {
                    INIT_ICW4
                } else {
                    INIT_READY
                };
            }
            INIT_ICW3 => {
                self.icw3 = v;
                self.init_state = if self.icw1 & ICW1_IC4 != 0 {
                    INIT_ICW4
                } else {
                    INIT_READY
                };
            }
            INIT_ICW4 => {
                self.icw4 = v & 0x1f;
                self.init_state = INIT_READY;
            }
            _ => self.imr = v,
        }
    }

    /// A non-poll read.
    fn read(&self, a0: bool) -> u8 {
        if a0 {
            self.imr
        } else if self.read_isr {
            self.isr
        } else {
            self.irr
        }
    }

    fn save(&self, w: &mut RecordWriter) {
        for b in [
            self.irr,
            self.isr,
            self.imr,
            self.line,
            self.elcr,
            self.icw1,
            self.vector_base,
            self.icw3,
            self.icw4,
            self.init_state,
            self.priority_add,
        ] {
            w.u8(b);
        }
        for b in [
            self.read_isr,
            self.poll,
            self.special_mask,
            self.rotate_on_aeoi,
        ] {
            w.bool(b);
        }
    }

    fn load(r: &mut RecordReader<'_>, elcr_mask: u8) -> Result<Self, LoadError> {
        let bad = |field| LoadError::Invalid {
            name: DualPic::NAME,
            field,
        };
        let n = DualPic::NAME;
        let c = Chip {
            irr: r.u8()?,
            isr: r.u8()?,
            imr: r.u8()?,
            line: r.u8()?,
            elcr: r.u8()?,
            icw1: r.u8()?,
            vector_base: r.u8()?,
            icw3: r.u8()?,
            icw4: r.u8()?,
            init_state: r.u8()?,
            priority_add: r.u8()?,
            read_isr: r.bool(n, "read_isr")?,
            poll: r.bool(n, "poll")?,
            special_mask: r.bool(n, "special_mask")?,
            rotate_on_aeoi: r.bool(n, "rotate_on_aeoi")?,
        };
        if c.elcr & !elcr_mask != 0 {
            return Err(bad("elcr"));
        }
        if c.icw1 & !(ICW1_IC4 | ICW1_SNGL | ICW1_LTIM) != 0 {
            return Err(bad("icw1"));
        }
        if c.vector_base & 7 != 0 {
            return Err(bad("vector_base"));
        }
        if c.icw4 & !0x1f != 0 {
            return Err(bad("icw4"));
        }
        if c.init_state > INIT_ICW4 {
            return Err(bad("init_state"));
        }
        if c.priority_add > 7 {
            return Err(bad("priority_add"));
        }
        let lm = c.level_mask();
        if c.irr & lm != c.line & lm {
            return Err(bad("irr"));
        }
        Ok(c)
    }
}

/// The master/slave 8259A pair of a PC, with the PIIX ELCR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DualPic {
    master: Chip,
    slave: Chip,
}

impl Default for DualPic {
    fn default() -> Self {
        Self::new()
    }
}

impl DualPic {
    /// Power-on state: both chips as after an ICW1 with vector base 0, nothing masked,
    /// all lines low and edge triggered. Firmware initializes both before use.
    pub fn new() -> Self {
        DualPic {
            master: Chip::new(),
            slave: Chip::new(),
        }
    }

    /// Drive ISA IRQ `line` (0..16) to `level`. Out-of-range lines and line 2 (the
    /// cascade) are ignored.
    pub fn set_irq(&mut self, line: u8, level: bool) {
        match line {
            0..=7 if line != CASCADE_IR => self.master.set_line(line, level),
            8..=15 => self.slave.set_line(line - 8, level),
            _ => return,
        }
        self.update();
    }

    /// Propagate the slave's INT to the master's IR2.
    fn update(&mut self) {
        let slave_int = self.slave.pending().is_some();
        self.master.set_line(CASCADE_IR, slave_int);
    }

    /// INTR to the CPU.
    pub fn output(&self) -> bool {
        self.master.pending().is_some()
    }

    /// Whether the master's IR2 has a slave the INTA cycle should ask.
    fn cascaded(&self) -> bool {
        !self.master.single() && self.master.icw3 & (1 << CASCADE_IR) != 0
    }

    /// The INTA cycle: returns the vector and updates IRR/ISR on both chips.
    pub fn acknowledge(&mut self) -> u8 {
        let Some(ir) = self.master.pending() else {
            // Spurious: IR7's vector, no ISR bit.
            return self.master.vector(7);
        };
        self.master.ack(ir);
        let has_slave = !self.master.single() && self.master.icw3 & (1 << ir) != 0;
        let vector = if ir == CASCADE_IR && self.cascaded() {
            let v = match self.slave.pending() {
                Some(sir) => {
                    self.slave.ack(sir);
                    self.slave.vector(sir)
                }
                None => self.slave.vector(7),
            };
            if self.slave.icw3 & 7 == CASCADE_IR {
                v
            } else {
                0xff
            }
        } else if has_slave {
            0xff
        } else {
            self.master.vector(ir)
        };
        if ir == CASCADE_IR {
            // INT from the slave is sampled low across the INTA cycle: if it is still
            // (or again) asserted afterwards, that is a new edge on IR2.
            self.master.line &= !(1 << CASCADE_IR);
        }
        self.update();
        vector
    }

    fn chip_mut(&mut self, slave: bool) -> &mut Chip {
        if slave {
            &mut self.slave
        } else {
            &mut self.master
        }
    }

    /// A byte read from one of the PIC or ELCR ports; other ports read 0xff.
    pub fn pio_read(&mut self, port: u16) -> u8 {
        let (slave, a0) = match port {
            MASTER_CMD => (false, false),
            MASTER_DATA => (false, true),
            SLAVE_CMD => (true, false),
            SLAVE_DATA => (true, true),
            ELCR1 => return self.master.elcr,
            ELCR2 => return self.slave.elcr,
            _ => return 0xff,
        };
        let chip = self.chip_mut(slave);
        if chip.poll {
            chip.poll = false;
            let v = match chip.pending() {
                Some(ir) => {
                    chip.ack(ir);
                    0x80 | ir
                }
                None => 0,
            };
            self.update();
            v
        } else {
            chip.read(a0)
        }
    }

    /// A byte written to one of the PIC or ELCR ports; other ports are ignored.
    pub fn pio_write(&mut self, port: u16, v: u8) {
        match port {
            MASTER_CMD => self.master.write_cmd(v),
            MASTER_DATA => self.master.write_data(v),
            SLAVE_CMD => self.slave.write_cmd(v),
            SLAVE_DATA => self.slave.write_data(v),
            ELCR1 => self.set_elcr((self.elcr() & 0xff00) | v as u16),
            ELCR2 => self.set_elcr((self.elcr() & 0x00ff) | (v as u16) << 8),
            _ => return,
        }
        self.update();
    }

    /// ELCR as a 16-bit mask (bit n = IRQ n level triggered).
    pub fn elcr(&self) -> u16 {
        self.master.elcr as u16 | (self.slave.elcr as u16) << 8
    }

    /// Set the ELCR (read-only bits are forced to edge), e.g. to mirror the PIIX3's.
    pub fn set_elcr(&mut self, v: u16) {
        let v = v & ELCR_WMASK;
        self.master.elcr = v as u8;
        self.slave.elcr = (v >> 8) as u8;
        self.master.refresh_level_irr();
        self.slave.refresh_level_irr();
        self.update();
    }

    /// IRR of master (low byte) and slave (high byte), for diagnostics and tests.
    pub fn irr(&self) -> u16 {
        self.master.irr as u16 | (self.slave.irr as u16) << 8
    }

    /// ISR of master (low byte) and slave (high byte).
    pub fn isr(&self) -> u16 {
        self.master.isr as u16 | (self.slave.isr as u16) << 8
    }

    /// IMR of master (low byte) and slave (high byte).
    pub fn imr(&self) -> u16 {
        self.master.imr as u16 | (self.slave.imr as u16) << 8
    }
}

impl Snapshot for DualPic {
    const NAME: &'static str = "i8259";
    const VERSION: u16 = 1;

    /// v1: master then slave, each: irr, isr, imr, line, elcr, icw1, vector_base, icw3,
    /// icw4, init_state, priority_add (u8 each), then read_isr, poll, special_mask,
    /// rotate_on_aeoi (bool each).
    fn save(&self, w: &mut RecordWriter) {
        self.master.save(w);
        self.slave.save(w);
    }

    fn load(&mut self, _version: u16, r: &mut RecordReader<'_>) -> Result<(), LoadError> {
        let master = Chip::load(r, ELCR_WMASK as u8)?;
        let slave = Chip::load(r, (ELCR_WMASK >> 8) as u8)?;
        self.master = master;
        self.slave = slave;
        Ok(())
    }
}

#[cfg(test)]
extern crate alloc;

#[cfg(test)]
fn interesting_pic() -> DualPic {
    let mut p = DualPic::new();
    tests::linux_init(&mut p, false);
    p.pio_write(ELCR2, 0x0c);
    p.set_irq(11, true);
    p.set_irq(1, true);
    p.set_irq(4, true);
    let _ = p.acknowledge();
    p.pio_write(MASTER_CMD, 0x0b);
    p.pio_write(SLAVE_CMD, 0xc4);
    p
}

chassis_devices::snapshot_tests!(pic_snapshot, DualPic, interesting_pic(), DualPic::new());

#[cfg(test)]
mod tests {
    use super::*;
    use chassis_devices::snapshot::{load_record, save_record};

    /// Linux `init_8259A`: mask everything, master ICW1-4, slave ICW1-4, restore masks.
    pub(super) fn linux_init(p: &mut DualPic, auto_eoi: bool) {
        p.pio_write(MASTER_DATA, 0xff);
        p.pio_write(MASTER_CMD, 0x11);
        p.pio_write(MASTER_DATA, 0x30);
        p.pio_write(MASTER_DATA, 1 << 2);
        p.pio_write(MASTER_DATA, if auto_eoi { 0x03 } else { 0x01 });
        p.pio_write(SLAVE_CMD, 0x11);
        p.pio_write(SLAVE_DATA, 0x38);
        p.pio_write(SLAVE_DATA, 2);
        p.pio_write(SLAVE_DATA, 0x01);
        p.pio_write(MASTER_DATA, 0xfb);
        p.pio_write(SLAVE_DATA, 0xff);
    }

    /// SeaBIOS `pic_reset`: the two chips' ICWs interleaved, then IMRs.
    fn seabios_init(p: &mut DualPic) {
        p.pio_write(MASTER_CMD, 0x11);
        p.pio_write(SLAVE_CMD, 0x11);
        p.pio_write(MASTER_DATA, 0x08);
        p.pio_write(SLAVE_DATA, 0x70);
        p.pio_write(MASTER_DATA, 0x04);
        p.pio_write(SLAVE_DATA, 0x02);
        p.pio_write(MASTER_DATA, 0x01);
        p.pio_write(SLAVE_DATA, 0x01);
        p.pio_write(MASTER_DATA, !(1u8 << 2));
        p.pio_write(SLAVE_DATA, 0xff);
    }

    fn pulse(p: &mut DualPic, line: u8) {
        p.set_irq(line, true);
        p.set_irq(line, false);
    }

    #[test]
    fn seabios_init_and_vectors() {
        let mut p = DualPic::new();
        seabios_init(&mut p);
        assert_eq!(p.imr(), 0xfffb);
        assert_eq!(p.pio_read(MASTER_DATA), 0xfb);
        pulse(&mut p, 0);
        assert!(!p.output(), "IR0 is masked");
        p.pio_write(MASTER_DATA, 0xfa);
        assert!(p.output(), "latched edge delivered on unmask");
        assert_eq!(p.acknowledge(), 0x08);
        assert!(!p.output());
        p.pio_write(SLAVE_DATA, 0xfe);
        pulse(&mut p, 8);
        assert!(!p.output(), "IR2 has lower priority than IR0 in service");
        p.pio_write(MASTER_CMD, 0x20);
        assert!(p.output());
        assert_eq!(p.acknowledge(), 0x70);
        assert_eq!(p.isr(), 0x0104);
        // SeaBIOS EOIs slave then master (non-specific).
        p.pio_write(SLAVE_CMD, 0x20);
        p.pio_write(MASTER_CMD, 0x20);
        assert_eq!(p.isr(), 0);
        assert!(!p.output());
    }

    #[test]
    fn linux_init_probe_and_specific_eoi() {
        let mut p = DualPic::new();
        linux_init(&mut p, false);
        // The probe in `probe_8259A`: write a mask, read it back.
        p.pio_write(SLAVE_DATA, 0xff);
        p.pio_write(MASTER_DATA, !(1u8 << 2));
        assert_eq!(p.pio_read(MASTER_DATA), 0xfb);
        p.pio_write(MASTER_DATA, 0x00);
        p.pio_write(SLAVE_DATA, 0x00);
        pulse(&mut p, 12);
        assert_eq!(p.acknowledge(), 0x3c);
        // mask_and_ack_8259A for a slave IRQ: specific EOI slave, then master IR2.
        p.pio_write(SLAVE_CMD, 0x60 + 4);
        p.pio_write(MASTER_CMD, 0x60 + 2);
        assert_eq!(p.isr(), 0);
        // Reading IRR and ISR through OCW3 (i8259A_irq_real).
        p.set_irq(5, true);
        p.pio_write(MASTER_CMD, 0x0a);
        assert_eq!(p.pio_read(MASTER_CMD), 0x20);
        p.pio_write(MASTER_CMD, 0x0b);
        assert_eq!(p.pio_read(MASTER_CMD), 0x00);
        assert_eq!(p.acknowledge(), 0x35);
        assert_eq!(p.pio_read(MASTER_CMD), 0x20, "ISR now");
        // ICW1 clears IMR/ISR and selects IRR.
        p.pio_write(MASTER_CMD, 0x11);
        assert_eq!(p.pio_read(MASTER_CMD), 0);
        assert_eq!(p.isr() & 0xff, 0);
    }

    #[test]
    fn priority_and_nesting() {
        let mut p = DualPic::new();
        linux_init(&mut p, false);
        p.pio_write(MASTER_DATA, 0);
        p.pio_write(SLAVE_DATA, 0);
        p.set_irq(4, true);
        assert_eq!(p.acknowledge(), 0x34);
        p.set_irq(6, true);
        assert!(!p.output(), "lower priority blocked by IR4 in service");
        p.set_irq(1, true);
        assert!(p.output(), "higher priority nests");
        assert_eq!(p.acknowledge(), 0x31);
        p.pio_write(MASTER_CMD, 0x20);
        assert_eq!(p.isr(), 0x10);
        assert!(!p.output());
        p.pio_write(MASTER_CMD, 0x20);
        assert_eq!(p.acknowledge(), 0x36);
    }

    #[test]
    fn rotation_commands() {
        let mut p = DualPic::new();
        linux_init(&mut p, false);
        p.pio_write(MASTER_DATA, 0);
        // Set priority: IR3 lowest, so IR4 highest.
        p.pio_write(MASTER_CMD, 0xc0 | 3);
        p.set_irq(3, true);
        p.set_irq(5, true);
        assert_eq!(p.acknowledge(), 0x35);
        // Rotate on non-specific EOI: IR5 becomes lowest, IR6 highest.
        p.pio_write(MASTER_CMD, 0xa0);
        assert_eq!(p.isr(), 0);
        p.set_irq(7, true);
        assert_eq!(p.acknowledge(), 0x37, "IR7 now outranks IR3");
        // Rotate on specific EOI for IR7: IR0 highest again.
        p.pio_write(MASTER_CMD, 0xe0 | 7);
        p.set_irq(1, true);
        assert_eq!(p.acknowledge(), 0x31);
        p.pio_write(MASTER_CMD, 0x60 | 1);
        assert_eq!(p.acknowledge(), 0x33);
    }

    #[test]
    fn auto_eoi_and_rotate_in_aeoi() {
        let mut p = DualPic::new();
        linux_init(&mut p, true);
        p.pio_write(MASTER_DATA, 0);
        p.pio_write(MASTER_CMD, 0x80); // rotate in AEOI: set
        p.set_irq(0, true);
        p.set_irq(1, true);
        assert_eq!(p.acknowledge(), 0x30);
        assert_eq!(p.isr(), 0, "AEOI sets no ISR bit");
        p.set_irq(0, false);
        p.set_irq(0, true);
        assert_eq!(p.acknowledge(), 0x31, "IR0 rotated to lowest");
        assert_eq!(p.acknowledge(), 0x30);
        p.pio_write(MASTER_CMD, 0x00); // rotate in AEOI: clear
        p.set_irq(0, false);
        p.set_irq(0, true);
        p.set_irq(1, false);
        p.set_irq(1, true);
        assert_eq!(p.acknowledge(), 0x31, "priority stays where it was");
        assert_eq!(p.acknowledge(), 0x30);
        assert!(!p.output());
    }

    #[test]
    fn edge_vs_level() {
        let mut p = DualPic::new();
        seabios_init(&mut p);
        p.pio_write(MASTER_DATA, 0);
        p.pio_write(SLAVE_DATA, 0);
        p.pio_write(ELCR2, 0xff);
        assert_eq!(p.pio_read(ELCR2), 0xde);
        assert_eq!(p.pio_read(ELCR1), 0x00);
        p.pio_write(ELCR1, 0xff);
        assert_eq!(p.elcr(), 0xdef8);
        // Level IRQ 10: IRR follows the line, and it re-requests after EOI while high.
        p.set_irq(10, true);
        assert_eq!(p.acknowledge(), 0x72);
        p.pio_write(SLAVE_CMD, 0x20);
        p.pio_write(MASTER_CMD, 0x20);
        assert!(p.output());
        assert_eq!(p.acknowledge(), 0x72);
        p.pio_write(SLAVE_CMD, 0x20);
        p.pio_write(MASTER_CMD, 0x20);
        // The slave re-raised INT after its EOI (IRQ 10 still high), which latched the
        // master's IR2 edge; the line then drops: a spurious IRQ 15, as on QEMU and KVM.
        p.set_irq(10, false);
        assert_eq!(p.acknowledge(), 0x77);
        p.pio_write(MASTER_CMD, 0x20);
        assert!(!p.output());
        // Edge IRQ 1 (forced edge): a held line requests once.
        p.set_irq(1, true);
        assert_eq!(p.acknowledge(), 0x09);
        p.pio_write(MASTER_CMD, 0x20);
        assert!(!p.output(), "irr {:#x} isr {:#x}", p.irr(), p.isr());
        // LTIM makes the whole chip level triggered.
        let mut q = DualPic::new();
        q.pio_write(MASTER_CMD, 0x19 | ICW1_SNGL);
        q.pio_write(MASTER_DATA, 0x20);
        q.pio_write(MASTER_DATA, 0x01);
        q.set_irq(1, true);
        assert_eq!(q.acknowledge(), 0x21);
        q.pio_write(MASTER_CMD, 0x20);
        assert_eq!(q.acknowledge(), 0x21);
    }

    #[test]
    fn icw1_resets_edge_detection() {
        let mut p = DualPic::new();
        p.set_irq(3, true);
        seabios_init(&mut p);
        p.pio_write(MASTER_DATA, 0);
        assert!(!p.output(), "a line high across ICW1 is not a new edge");
        p.set_irq(3, false);
        p.set_irq(3, true);
        assert_eq!(p.acknowledge(), 0x0b);
    }

    #[test]
    fn spurious_irq7_and_irq15() {
        let mut p = DualPic::new();
        seabios_init(&mut p);
        p.pio_write(MASTER_DATA, 0);
        p.pio_write(SLAVE_DATA, 0);
        p.set_elcr(0x0420);
        // Level IRQ 5 drops between INTR and INTA.
        p.set_irq(5, true);
        assert!(p.output());
        p.set_irq(5, false);
        assert_eq!(p.acknowledge(), 0x0f);
        assert_eq!(p.isr(), 0);
        // Masked in between.
        pulse(&mut p, 6);
        p.pio_write(MASTER_DATA, 0x40);
        assert_eq!(p.acknowledge(), 0x0f);
        p.pio_write(MASTER_DATA, 0);
        assert_eq!(p.acknowledge(), 0x0e);
        p.pio_write(MASTER_CMD, 0x20);
        // Level IRQ 10 on the slave: the master latched the IR2 edge, the slave's request
        // is gone at INTA time: IRQ 15's vector, master ISR2 set, slave ISR clear.
        p.set_irq(10, true);
        p.set_irq(10, false);
        assert!(p.output());
        assert_eq!(p.acknowledge(), 0x77);
        assert_eq!(p.isr(), 0x0004);
        p.pio_write(MASTER_CMD, 0x62);
        assert_eq!(p.isr(), 0);
        assert!(!p.output());
    }

    #[test]
    fn slave_requests_are_not_lost_under_aeoi() {
        let mut p = DualPic::new();
        p.pio_write(MASTER_CMD, 0x11);
        p.pio_write(MASTER_DATA, 0x20);
        p.pio_write(MASTER_DATA, 0x04);
        p.pio_write(MASTER_DATA, 0x03);
        p.pio_write(SLAVE_CMD, 0x11);
        p.pio_write(SLAVE_DATA, 0x28);
        p.pio_write(SLAVE_DATA, 0x02);
        p.pio_write(SLAVE_DATA, 0x03);
        pulse(&mut p, 8);
        pulse(&mut p, 9);
        assert_eq!(p.acknowledge(), 0x28);
        assert!(p.output());
        assert_eq!(p.acknowledge(), 0x29);
        assert!(!p.output());
    }

    #[test]
    fn poll_mode() {
        let mut p = DualPic::new();
        seabios_init(&mut p);
        p.pio_write(MASTER_DATA, 0);
        p.pio_write(SLAVE_DATA, 0);
        p.pio_write(MASTER_CMD, 0x0c);
        assert_eq!(p.pio_read(MASTER_CMD), 0x00, "nothing pending");
        pulse(&mut p, 13);
        p.pio_write(MASTER_CMD, 0x0c);
        assert_eq!(p.pio_read(MASTER_DATA), 0x82, "master reports the cascade");
        p.pio_write(SLAVE_CMD, 0x0c);
        assert_eq!(p.pio_read(SLAVE_CMD), 0x85);
        assert_eq!(p.isr(), 0x2004);
        assert_eq!(p.pio_read(SLAVE_DATA), 0, "poll is one-shot: IMR read");
    }

    #[test]
    fn special_mask_mode() {
        let mut p = DualPic::new();
        seabios_init(&mut p);
        p.pio_write(MASTER_DATA, 0);
        p.set_irq(3, true);
        assert_eq!(p.acknowledge(), 0x0b);
        p.set_irq(6, true);
        assert!(!p.output());
        // Mask IR3 and enter special mask mode: lower IR6 may now interrupt.
        p.pio_write(MASTER_DATA, 0x08);
        p.pio_write(MASTER_CMD, 0x68);
        assert!(p.output());
        assert_eq!(p.acknowledge(), 0x0e);
        // Non-specific EOI clears the unmasked IR6, never the masked IR3.
        p.pio_write(MASTER_CMD, 0x20);
        assert_eq!(p.isr(), 0x08);
        p.pio_write(MASTER_CMD, 0x20);
        assert_eq!(p.isr(), 0x08);
        p.pio_write(MASTER_CMD, 0x48); // leave special mask mode
        p.pio_write(MASTER_CMD, 0x63);
        assert_eq!(p.isr(), 0);
    }

    #[test]
    fn single_mode_and_cascade_quirks() {
        let mut p = DualPic::new();
        // SNGL without ICW4: ICW2 completes the sequence, next data write is IMR.
        p.pio_write(MASTER_CMD, 0x12);
        p.pio_write(MASTER_DATA, 0x40);
        p.pio_write(MASTER_DATA, 0x00);
        assert_eq!(p.imr() & 0xff, 0);
        // No cascade in single mode: a slave request shows as IR2 of the master itself.
        p.pio_write(SLAVE_CMD, 0x11);
        p.pio_write(SLAVE_DATA, 0x48);
        p.pio_write(SLAVE_DATA, 0x02);
        p.pio_write(SLAVE_DATA, 0x01);
        pulse(&mut p, 9);
        assert_eq!(p.acknowledge(), 0x42);
        // A slave with the wrong ID does not answer: the bus floats.
        let mut q = DualPic::new();
        seabios_init(&mut q);
        q.pio_write(SLAVE_CMD, 0x11);
        q.pio_write(SLAVE_DATA, 0x70);
        q.pio_write(SLAVE_DATA, 0x05);
        q.pio_write(SLAVE_DATA, 0x01);
        pulse(&mut q, 8);
        assert_eq!(q.acknowledge(), 0xff);
        // set_irq out of range and on the cascade line are ignored.
        q.set_irq(2, true);
        q.set_irq(16, true);
        q.set_irq(255, true);
        assert_eq!(q.pio_read(0x22), 0xff);
    }

    #[test]
    fn hammer_random_ports() {
        let ports = [
            MASTER_CMD,
            MASTER_DATA,
            SLAVE_CMD,
            SLAVE_DATA,
            ELCR1,
            ELCR2,
            0x22,
        ];
        let mut seed = 0x1234_5678_9abc_def1u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..50 {
            let mut p = DualPic::new();
            if round % 2 == 0 {
                seabios_init(&mut p);
            }
            for _ in 0..5000 {
                let r = next();
                let port = ports[(r % ports.len() as u64) as usize];
                let v = (r >> 8) as u8;
                match (r >> 16) % 6 {
                    0 | 1 => p.pio_write(port, v),
                    2 => {
                        let _ = p.pio_read(port);
                    }
                    3 => p.set_irq((r >> 24) as u8 % 20, r & (1 << 40) != 0),
                    4 => {
                        if p.output() {
                            let _ = p.acknowledge();
                        }
                    }
                    _ => {
                        let _ = p.acknowledge();
                    }
                }
            }
            let bytes = save_record(&p, 0);
            let mut q = DualPic::new();
            load_record(&mut q, &bytes).expect("any reachable state saves and loads");
            assert_eq!(p, q);
        }
    }
}
