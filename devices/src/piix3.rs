//! Intel 82371SB PIIX3 function 0, the PCI-to-ISA bridge at 00:01.0.
//!
//! Follows the 82371FB/SB datasheet (Intel 290550) for the registers and QEMU
//! `hw/isa/piix.c` (`piix_reset`, `rcr_write`) and `hw/i386/pc.c` (port 92) for the reset
//! values and behaviour a Xen/QEMU guest sees.
//!
//! Configuration space (multi-function header 0x80):
//! * **PIRQRC[A–D]** 0x60–0x63: bit 7 = routing disabled, bits 3:0 = ISA IRQ, bits 6:4
//!   reserved (read 0). Reset 0x80. IRQs 0, 1, 2, 8 and 13 are reserved encodings: a
//!   link pointing there is not routed ([`Piix3::pirq_route`]). hvmloader writes
//!   5/10/11/5, SeaBIOS 10/10/11/11; Linux's PIIX router reads a byte and treats
//!   values ≥ 16 (bit 7 set) as "not routed".
//! * The other registers QEMU resets (IORT, XBCS, TOM, MBIRQ0, MBDMA, PCSC, APICBASE,
//!   DLC, the SMI block) are storage with their reset values; nothing in a VM acts on
//!   them. Linux sets DLC bit 1 (passive release) on this chip. Unlisted bytes from
//!   0x40 up are reserved, read-only zero.
//!
//! Ports ([`PortIo`]), byte registers; wider accesses are split into bytes and bytes
//! outside this device read 0xff:
//! * **ELCR** 0x4d0/0x4d1: edge (0) / level (1) per ISA IRQ. Bits for IRQ 0, 1, 2, 8
//!   and 13 are not writable (always edge), as on the real part and in Xen's vPIC.
//! * **Reset control** 0xcf9: bit 1 SYS_RST (hard vs soft reset; kept), bit 2 RST_CPU.
//!   Writing bit 2 as 1 is the 0→1 transition that starts the reset (the bit itself is
//!   never latched, as in QEMU's `rcr_write`), so both Linux's `0x02` then `0x06`/`0x0e`
//!   sequence and hvmloader's FADT reset value 6 reset the machine.
//! * **System control port A** 0x92: bit 1 = fast A20 gate ([`Piix3::a20`]); writing bit
//!   0 as 1 requests a fast reset (the bit reads back 0, as after the reset it causes).
//!   Bit 1 resets to 0 (QEMU's reset value): the machine ORs this gate with the
//!   i8042's, whose output port starts with A20 enabled, so a VM still starts with A20
//!   on.
//!
//! PCI INTx aggregation for PIC-mode delivery is [`IntxRouter`], owned here so that a
//! PIRQRC rewrite re-drives the ISA lines at once.
use crate::{Platform, PortIo, Width, pci::*, snapshot::*};

/// PIRQRC[A] (B, C, D follow).
pub const PIRQRC: usize = 0x60;
/// PIRQRC bit 7: routing disabled.
pub const PIRQ_DISABLE: u8 = 0x80;
/// Top of memory register.
pub const TOM: usize = 0x69;
/// Deterministic latency control (Linux sets bit 1, passive release).
pub const DLC: usize = 0x82;

/// Edge/level control registers (IRQ 0–7, IRQ 8–15).
pub const ELCR1_PORT: u16 = 0x4d0;
pub const ELCR2_PORT: u16 = 0x4d1;
/// Reset control register.
pub const RCR_PORT: u16 = 0xcf9;
/// System control port A.
pub const PORT92: u16 = 0x92;

/// ELCR bits software can change: not IRQ 0, 1, 2 (master) nor 8, 13 (slave).
pub const ELCR_WMASK: u16 = 0xdef8;
pub const RCR_SYS_RST: u8 = 1 << 1;
pub const RCR_RST_CPU: u8 = 1 << 2;
pub const PORT92_FAST_RESET: u8 = 1 << 0;
pub const PORT92_A20: u8 = 1 << 1;
/// Port A resets with A20 clear: the gate is the OR of this bit and the i8042's, whose
/// output port starts with A20 enabled.
const PORT92_RESET: u8 = 0;

/// Number of PIRQ links (A..D).
pub const PIRQ_LINKS: usize = 4;

/// Device-specific registers: (offset, write mask, reset value). Reset values are
/// QEMU's `piix_reset`; masks are the datasheet's where the reserved bits matter to
/// software (PIRQRC, TOM, DLC), else the whole byte as in QEMU.
const REGS: &[(u8, u8, u8)] = &[
    (0x4c, 0xff, 0x4d), // IORT
    (0x4e, 0xff, 0x03), // XBCS
    (0x4f, 0xff, 0x00),
    (0x60, 0x8f, 0x80), // PIRQRC[A..D]
    (0x61, 0x8f, 0x80),
    (0x62, 0x8f, 0x80),
    (0x63, 0x8f, 0x80),
    (0x69, 0xfe, 0x02), // TOM
    (0x6a, 0xff, 0x00), // MSTAT
    (0x6b, 0xff, 0x00),
    (0x70, 0xff, 0x80), // MBIRQ0
    (0x76, 0xff, 0x0c), // MBDMA0/1
    (0x77, 0xff, 0x0c),
    (0x78, 0xff, 0x02), // PCSC
    (0x79, 0xff, 0x00),
    (0x80, 0xff, 0x00), // APICBASE
    (0x82, 0x0f, 0x00), // DLC
    (0xa0, 0xff, 0x08), // SMICNTL
    (0xa2, 0xff, 0x00), // SMIEN
    (0xa3, 0xff, 0x00),
    (0xa4, 0xff, 0x00), // SEE
    (0xa5, 0xff, 0x00),
    (0xa6, 0xff, 0x00),
    (0xa7, 0xff, 0x00),
    (0xa8, 0xff, 0x0f), // FTMR
    (0xaa, 0xff, 0x00), // SMIREQ
    (0xab, 0xff, 0x00),
    (0xac, 0xff, 0x00), // CTLTMR
    (0xae, 0xff, 0x00), // CTHTMR
];

fn reg_spec(off: usize) -> (u8, u8) {
    REGS.iter()
        .find(|(o, _, _)| *o as usize == off)
        .map(|&(_, m, r)| (m, r))
        .unwrap_or((0, 0))
}

/// An ISA IRQ a PIRQ link may be steered to (3–7, 9–12, 14, 15).
pub const fn valid_isa_irq(irq: u8) -> bool {
    matches!(irq, 3..=7 | 9..=12 | 14 | 15)
}

/// Decode one PIRQRC byte.
pub const fn decode_pirqrc(v: u8) -> Option<u8> {
    let irq = v & 0x0f;
    if v & PIRQ_DISABLE == 0 && valid_isa_irq(irq) {
        Some(irq)
    } else {
        None
    }
}

/// Aggregates PCI INTx lines onto the ISA IRQs the PIRQ links are routed to.
///
/// Each link keeps a bitmask of the sources (device slots 0..32, or any small id a
/// device owns) asserting it. The level of an ISA IRQ is the OR over every link routed
/// there (hvmloader routes LNKA and LNKD both to IRQ 5), and the router calls
/// `set_irq` only when that level changes, so devices may report their INTx level as
/// often as they like. Changing the routes lowers the old IRQ and raises the new one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IntxRouter {
    routes: [Option<u8>; PIRQ_LINKS],
    asserted: [u32; PIRQ_LINKS],
    /// ISA IRQs this router currently drives high.
    driven: u16,
}

impl IntxRouter {
    pub const fn new() -> Self {
        IntxRouter {
            routes: [None; PIRQ_LINKS],
            asserted: [0; PIRQ_LINKS],
            driven: 0,
        }
    }

    /// The PIRQ link (0..4) of interrupt pin `pin` (1..=4 = INTA..INTD) of the device
    /// in `slot`: the "barber's pole" swizzle hvmloader and Xen's DSDT use.
    pub const fn pin_link(slot: u8, pin: u8) -> Option<u8> {
        if pin == 0 || pin > 4 || slot > 31 {
            return None;
        }
        Some((pin - 1 + slot) & 3)
    }

    /// A device drives its INTx on `link` to `level`. `source` (0..32) tells devices on
    /// the same link apart; out-of-range links or sources are ignored.
    pub fn set_intx(&mut self, p: &mut dyn Platform, link: u8, source: u8, level: bool) {
        let Some(mask) = self.asserted.get_mut(link as usize) else {
            return;
        };
        let Some(bit) = 1u32.checked_shl(source as u32) else {
            return;
        };
        if level {
            *mask |= bit;
        } else {
            *mask &= !bit;
        }
        self.sync(p);
    }

    /// New routes (as PIIX3's PIRQRC say); re-drives every affected ISA IRQ.
    pub fn set_routes(&mut self, p: &mut dyn Platform, routes: [Option<u8>; PIRQ_LINKS]) {
        self.routes = routes.map(|r| r.filter(|&irq| valid_isa_irq(irq)));
        self.sync(p);
    }

    pub fn routes(&self) -> [Option<u8>; PIRQ_LINKS] {
        self.routes
    }

    /// Sources asserting `link`.
    pub fn asserted(&self, link: u8) -> u32 {
        self.asserted.get(link as usize).copied().unwrap_or(0)
    }

    /// ISA IRQs (bitmask) the router currently drives high.
    pub fn driven(&self) -> u16 {
        self.driven
    }

    fn wanted(&self) -> u16 {
        let mut w = 0u16;
        for (route, mask) in self.routes.iter().zip(self.asserted.iter()) {
            if let (Some(irq), true) = (route, *mask != 0) {
                w |= 1u16 << (irq & 15);
            }
        }
        w
    }

    fn sync(&mut self, p: &mut dyn Platform) {
        let want = self.wanted();
        let changed = want ^ self.driven;
        for irq in 0..16u32 {
            if changed & (1 << irq) != 0 {
                p.set_irq(irq, want & (1 << irq) != 0);
            }
        }
        self.driven = want;
    }

    /// Restore state without touching any line: the interrupt controllers restore
    /// their own input levels from their own records.
    fn restore(&mut self, routes: [Option<u8>; PIRQ_LINKS], asserted: [u32; PIRQ_LINKS]) {
        self.routes = routes;
        self.asserted = asserted;
        self.driven = self.wanted();
    }
}

#[derive(Clone, Debug)]
pub struct Piix3 {
    cfg: ConfigSpace,
    elcr: u16,
    rcr: u8,
    port92: u8,
    intx: IntxRouter,
}

impl Piix3 {
    pub fn new(id: &PciIdent) -> Self {
        let mut cfg = ConfigSpace::new(id);
        // QEMU piix_reset: I/O, memory and bus master on; DEVSEL medium.
        cfg.set_u16(COMMAND, COMMAND_IO | COMMAND_MEMORY | COMMAND_BUS_MASTER);
        cfg.set_u16(STATUS, 0x0200);
        for &(off, mask, reset) in REGS {
            cfg.set_u8(off as usize, reset);
            cfg.set_wmask_u8(off as usize, mask);
        }
        Self {
            cfg,
            elcr: 0,
            rcr: 0,
            port92: PORT92_RESET,
            intx: IntxRouter::new(),
        }
    }

    /// ISA IRQ that PIRQ link `link` (0..4 = A..D) is routed to, if enabled.
    pub fn pirq_route(&self, link: u8) -> Option<u8> {
        if (link as usize) < PIRQ_LINKS {
            decode_pirqrc(self.cfg.u8(PIRQRC + link as usize))
        } else {
            None
        }
    }

    /// All four routes (what a Xen-style `set_pci_link_route` would be told).
    pub fn pirq_routes(&self) -> [Option<u8>; PIRQ_LINKS] {
        [0u8, 1, 2, 3].map(|l| self.pirq_route(l))
    }

    /// Gate A20 as port 0x92 bit 1 drives it.
    pub fn a20(&self) -> bool {
        self.port92 & PORT92_A20 != 0
    }

    /// ELCR as a 16-bit mask (bit n = ISA IRQ n is level triggered), for the PIC.
    pub fn elcr(&self) -> u16 {
        self.elcr
    }

    /// The reset control register (only SYS_RST is latched).
    pub fn rcr(&self) -> u8 {
        self.rcr
    }

    /// The INTx router (routes follow PIRQRC).
    pub fn intx(&self) -> &IntxRouter {
        &self.intx
    }

    /// A PCI device drives INTx on PIRQ `link`; see [`IntxRouter::set_intx`].
    pub fn set_intx(&mut self, p: &mut dyn Platform, link: u8, source: u8, level: bool) {
        self.intx.set_intx(p, link, source, level);
    }

    fn read_byte(&self, port: u16) -> u8 {
        match port {
            ELCR1_PORT => self.elcr as u8,
            ELCR2_PORT => (self.elcr >> 8) as u8,
            RCR_PORT => self.rcr,
            PORT92 => self.port92,
            _ => 0xff,
        }
    }

    fn write_byte(&mut self, p: &mut dyn Platform, port: u16, v: u8) {
        match port {
            ELCR1_PORT => {
                let m = ELCR_WMASK & 0xff;
                self.elcr = (self.elcr & !m) | (v as u16 & m);
            }
            ELCR2_PORT => {
                let m = ELCR_WMASK & 0xff00;
                self.elcr = (self.elcr & !m) | ((v as u16) << 8 & m);
            }
            RCR_PORT => {
                if v & RCR_RST_CPU != 0 {
                    p.power(crate::PowerRequest::Reset);
                } else {
                    self.rcr = v & RCR_SYS_RST;
                }
            }
            PORT92 => {
                self.port92 = v & !PORT92_FAST_RESET;
                if v & PORT92_FAST_RESET != 0 {
                    p.power(crate::PowerRequest::Reset);
                }
            }
            _ => {}
        }
    }
}

impl PciFunction for Piix3 {
    fn config(&self) -> &ConfigSpace {
        &self.cfg
    }
    fn cfg_write(&mut self, p: &mut dyn Platform, off: u8, w: Width, v: u32) -> bool {
        let before = self.pirq_routes();
        let remap = self.cfg.write(off, w, v);
        let after = self.pirq_routes();
        if after != before {
            self.intx.set_routes(p, after);
        }
        remap
    }
}

/// Ports: ELCR 0x4d0/0x4d1, reset control 0xcf9, system control port A 0x92.
impl PortIo for Piix3 {
    fn pio_read(&mut self, _p: &mut dyn Platform, port: u16, w: Width) -> u32 {
        let mut v = 0u32;
        for i in 0..w.bytes().min(4) {
            v |= (self.read_byte(port.wrapping_add(i as u16)) as u32) << (8 * i);
        }
        v
    }
    fn pio_write(&mut self, p: &mut dyn Platform, port: u16, w: Width, v: u32) {
        for i in 0..w.bytes().min(4) {
            self.write_byte(p, port.wrapping_add(i as u16), (v >> (8 * i)) as u8);
        }
    }
}

/// Record body (v1): config space (256 bytes), ELCR (u16), RCR (u8), port 92 (u8), then
/// the INTx sources asserted on each link (4 × u32). Routes follow from PIRQRC; which
/// ISA lines the router drives follows from both and is recomputed without driving
/// anything (the interrupt controllers restore their own input state).
impl Snapshot for Piix3 {
    const NAME: &'static str = "piix3";
    const VERSION: u16 = 1;
    fn save(&self, w: &mut RecordWriter) {
        w.bytes(self.cfg.raw());
        w.u16(self.elcr);
        w.u8(self.rcr);
        w.u8(self.port92);
        for m in self.intx.asserted {
            w.u32(m);
        }
    }
    fn load(&mut self, _v: u16, r: &mut RecordReader<'_>) -> Result<(), LoadError> {
        let invalid = |field| LoadError::Invalid {
            name: Self::NAME,
            field,
        };
        let mut raw = [0u8; 256];
        r.bytes(&mut raw)?;
        for (off, &b) in raw.iter().enumerate().skip(0x40) {
            let (mask, reset) = reg_spec(off);
            if b & !mask != reset & !mask {
                return Err(invalid(if (0x60..0x64).contains(&off) {
                    "pirqrc"
                } else {
                    "config"
                }));
            }
        }
        let elcr = r.u16()?;
        if elcr & !ELCR_WMASK != 0 {
            return Err(invalid("elcr"));
        }
        let rcr = r.u8()?;
        if rcr & !RCR_SYS_RST != 0 {
            return Err(invalid("rcr"));
        }
        let port92 = r.u8()?;
        if port92 & PORT92_FAST_RESET != 0 {
            return Err(invalid("port92"));
        }
        let mut asserted = [0u32; PIRQ_LINKS];
        for m in asserted.iter_mut() {
            *m = r.u32()?;
        }
        self.cfg.restore_raw(&raw);
        self.elcr = elcr;
        self.rcr = rcr;
        self.port92 = port92;
        let routes = self.pirq_routes();
        self.intx.restore(routes, asserted);
        Ok(())
    }
}

crate::snapshot_tests!(
    piix3_snapshot,
    Piix3,
    {
        let mut d = Piix3::new(&crate::profile::QEMU_XEN.isa_bridge);
        let mut p = crate::testing::MockPlatform::new();
        d.cfg_write(&mut p, 0x60, Width::B4, 0x0b0a_8f05);
        d.cfg_write(&mut p, 0x82, Width::B1, 0x02);
        d.pio_write(&mut p, 0x4d0, Width::B2, 0x0c20);
        d.pio_write(&mut p, 0xcf9, Width::B1, 0x02);
        d.pio_write(&mut p, 0x92, Width::B1, 0x00);
        d.set_intx(&mut p, 0, 3, true);
        d.set_intx(&mut p, 2, 31, true);
        d
    },
    Piix3::new(&crate::profile::QEMU_XEN.isa_bridge)
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PowerRequest;
    use crate::profile::{QEMU_XEN, QEMU_XEN_TRADITIONAL};
    use crate::snapshot::{HEADER_LEN, load_record, save_record};
    use crate::testing::MockPlatform;

    fn dev() -> (Piix3, MockPlatform) {
        (Piix3::new(&QEMU_XEN.isa_bridge), MockPlatform::new())
    }

    #[test]
    fn identity_and_reset_values() {
        for prof in crate::profile::ALL {
            let d = Piix3::new(&prof.isa_bridge);
            let c = d.config();
            assert_eq!(c.read(0, Width::B4), 0x7000_8086);
            assert_eq!(c.read(0x04, Width::B4), 0x0200_0007);
            assert_eq!(c.read(0x08, Width::B4), 0x0601_0000);
            assert_eq!(c.u8(HEADER_TYPE), 0x80, "multi-function");
            assert_eq!(c.read(0x60, Width::B4), 0x8080_8080);
            assert_eq!(c.u8(TOM), 0x02);
            assert_eq!(c.u8(0x4c), 0x4d);
            assert_eq!(c.u8(0x70), 0x80);
            assert_eq!(c.u8(0xa8), 0x0f);
            assert_eq!(d.pirq_routes(), [None; 4]);
            assert_eq!(d.elcr(), 0);
            assert!(
                !d.a20(),
                "port A resets with A20 clear; the i8042 gate holds it open"
            );
        }
        let t = Piix3::new(&QEMU_XEN_TRADITIONAL.isa_bridge);
        assert_eq!(t.config().u32(SUBSYSTEM_VENDOR_ID), 0);
    }

    /// hvmloader `pci_setup`: PIRQ links from PCI_ISA_IRQ_MASK 0x0c20, byte writes,
    /// then ELCR to the same mask, then Interrupt Line from a read of 0x60 + link.
    #[test]
    fn hvmloader_programming() {
        let (mut d, mut p) = dev();
        let mask: u16 = 0x0c20;
        let mut isa_irq = 0u8;
        for link in 0..4u8 {
            loop {
                isa_irq = (isa_irq + 1) & 15;
                if mask & (1 << isa_irq) != 0 {
                    break;
                }
            }
            d.cfg_write(&mut p, 0x60 + link, Width::B1, isa_irq as u32);
        }
        assert_eq!(d.pirq_routes(), [Some(5), Some(10), Some(11), Some(5)]);
        d.pio_write(&mut p, 0x4d0, Width::B1, mask as u32 & 0xff);
        d.pio_write(&mut p, 0x4d1, Width::B1, (mask >> 8) as u32);
        assert_eq!(d.elcr(), 0x0c20);
        assert_eq!(d.pio_read(&mut p, 0x4d0, Width::B1), 0x20);
        assert_eq!(d.pio_read(&mut p, 0x4d1, Width::B1), 0x0c);
        // Xen platform device at 00:02.0, INTA: link (0 + 2) & 3 = C -> IRQ 11.
        let link = IntxRouter::pin_link(2, 1).unwrap();
        assert_eq!(d.cfg_read(0x60 + link, Width::B1), 11);
        assert!(p.irq_log.is_empty(), "programming routes drives no line");
    }

    /// SeaBIOS `piix_isa_bridge_setup`: links to 10, 10, 11, 11, ELCR from them.
    #[test]
    fn seabios_programming() {
        let (mut d, mut p) = dev();
        let irqs = [10u8, 10, 11, 11];
        let mut elcr = [0u8; 2];
        for (i, &irq) in irqs.iter().enumerate() {
            d.cfg_write(&mut p, 0x60 + i as u8, Width::B1, irq as u32);
            elcr[(irq >> 3) as usize] |= 1 << (irq & 7);
        }
        d.pio_write(&mut p, 0x4d0, Width::B1, elcr[0] as u32);
        d.pio_write(&mut p, 0x4d1, Width::B1, elcr[1] as u32);
        assert_eq!(d.elcr(), 0x0c00);
        assert_eq!(d.pirq_routes(), [Some(10), Some(10), Some(11), Some(11)]);
    }

    /// Linux `pirq_piix_get`/`pirq_piix_set`: byte reads, value < 16 means routed.
    #[test]
    fn linux_piix_router() {
        let (mut d, mut p) = dev();
        assert!(d.cfg_read(0x61, Width::B1) >= 16, "disabled reads as >= 16");
        d.cfg_write(&mut p, 0x61, Width::B1, 9);
        assert_eq!(d.cfg_read(0x61, Width::B1), 9);
        assert_eq!(d.pirq_route(1), Some(9));
        // Reserved bits 6:4 read 0; reserved IRQ encodings are not routed.
        d.cfg_write(&mut p, 0x62, Width::B1, 0x7e);
        assert_eq!(d.cfg_read(0x62, Width::B1), 0x0e);
        assert_eq!(d.pirq_route(2), Some(14));
        for bad in [0u32, 1, 2, 8, 13] {
            d.cfg_write(&mut p, 0x63, Width::B1, bad);
            assert_eq!(d.pirq_route(3), None, "irq {bad}");
        }
        d.cfg_write(&mut p, 0x63, Width::B1, 0x8b);
        assert_eq!(d.pirq_route(3), None, "bit 7 disables");
        assert_eq!(d.pirq_route(4), None);
        assert_eq!(d.pirq_route(255), None);
        // Passive release (quirk_passive_release).
        let dlc = d.cfg_read(DLC as u8, Width::B1);
        d.cfg_write(&mut p, DLC as u8, Width::B1, dlc | 2);
        assert_eq!(d.cfg_read(DLC as u8, Width::B1), 2);
        // IDs stay.
        d.cfg_write(&mut p, 0, Width::B4, 0);
        assert_eq!(d.cfg_read(0, Width::B4), 0x7000_8086);
    }

    #[test]
    fn elcr_fixed_bits() {
        let (mut d, mut p) = dev();
        d.pio_write(&mut p, 0x4d0, Width::B1, 0xff);
        d.pio_write(&mut p, 0x4d1, Width::B1, 0xff);
        assert_eq!(d.elcr(), 0xdef8);
        assert_eq!(d.pio_read(&mut p, 0x4d0, Width::B2), 0xdef8);
        d.pio_write(&mut p, 0x4d0, Width::B2, 0);
        assert_eq!(d.elcr(), 0);
        // A word at 0x4d1 reaches 0x4d2, which is not ours.
        assert_eq!(d.pio_read(&mut p, 0x4d1, Width::B2), 0xff00);
    }

    #[test]
    fn reset_control_register() {
        let (mut d, mut p) = dev();
        // Linux BOOT_CF9: read, write SYS_RST, then SYS_RST|RST_CPU (|FULL_RST).
        let cf9 = d.pio_read(&mut p, 0xcf9, Width::B1) & !0x0e;
        d.pio_write(&mut p, 0xcf9, Width::B1, cf9 | 2);
        assert!(p.power.is_empty());
        assert_eq!(d.rcr(), 2);
        assert_eq!(d.pio_read(&mut p, 0xcf9, Width::B1), 2);
        d.pio_write(&mut p, 0xcf9, Width::B1, cf9 | 0x0e);
        assert_eq!(p.power, [PowerRequest::Reset]);
        // hvmloader's FADT RESET_VALUE 6, written again (e.g. after a lost request).
        d.pio_write(&mut p, 0xcf9, Width::B1, 6);
        d.pio_write(&mut p, 0xcf9, Width::B1, 6);
        assert_eq!(p.power.len(), 3);
        d.pio_write(&mut p, 0xcf9, Width::B1, 0xf9 & !4);
        assert_eq!(d.rcr(), 0, "only SYS_RST latches");
        assert_eq!(p.power.len(), 3);
    }

    #[test]
    fn port_92_a20_and_fast_reset() {
        let (mut d, mut p) = dev();
        assert_eq!(d.pio_read(&mut p, 0x92, Width::B1), 0x00);
        assert!(!d.a20());
        d.pio_write(&mut p, 0x92, Width::B1, 0x02);
        assert!(d.a20());
        assert!(p.power.is_empty());
        // Fast init: read-modify-write setting bit 0.
        let v = d.pio_read(&mut p, 0x92, Width::B1);
        d.pio_write(&mut p, 0x92, Width::B1, v | 1);
        assert_eq!(p.power, [PowerRequest::Reset]);
        assert_eq!(d.pio_read(&mut p, 0x92, Width::B1), 0x02);
    }

    #[test]
    fn intx_router_shares_and_reroutes() {
        let (mut d, mut p) = dev();
        d.cfg_write(&mut p, 0x60, Width::B4, 0x050b_0a05); // A=5 B=10 C=11 D=5
        d.set_intx(&mut p, 0, 3, true);
        assert_eq!(p.irq_log, [(5, true)]);
        d.set_intx(&mut p, 0, 3, true);
        d.set_intx(&mut p, 3, 4, true); // D shares IRQ 5
        assert_eq!(p.irq_log.len(), 1, "no edge while the line is already high");
        d.set_intx(&mut p, 0, 3, false);
        assert!(p.irq(5), "LNKD still asserts IRQ 5");
        assert_eq!(p.irq_log.len(), 1);
        // Two sources on one link.
        d.set_intx(&mut p, 1, 5, true);
        d.set_intx(&mut p, 1, 6, true);
        d.set_intx(&mut p, 1, 5, false);
        assert!(p.irq(10));
        // Reroute link D from 5 to 11: IRQ 5 drops, 11 rises.
        p.irq_log.clear();
        d.cfg_write(&mut p, 0x63, Width::B1, 11);
        assert!(!p.irq(5) && p.irq(11));
        assert_eq!(p.irq_log, [(5, false), (11, true)]);
        // Disable link B: IRQ 10 drops; re-enabling raises it again.
        d.cfg_write(&mut p, 0x61, Width::B1, 0x80);
        assert!(!p.irq(10));
        d.cfg_write(&mut p, 0x61, Width::B1, 10);
        assert!(p.irq(10));
        // Hostile arguments are ignored.
        d.set_intx(&mut p, 4, 0, true);
        d.set_intx(&mut p, 0, 32, true);
        d.set_intx(&mut p, 255, 255, true);
        assert_eq!(d.intx().driven(), (1 << 10) | (1 << 11));
    }

    #[test]
    fn pin_link_swizzle() {
        assert_eq!(IntxRouter::pin_link(1, 1), Some(1));
        assert_eq!(IntxRouter::pin_link(3, 4), Some(2));
        assert_eq!(IntxRouter::pin_link(0, 0), None);
        assert_eq!(IntxRouter::pin_link(0, 5), None);
        assert_eq!(IntxRouter::pin_link(32, 1), None);
    }

    #[test]
    fn restore_recomputes_router_without_driving() {
        let (mut d, mut p) = dev();
        d.cfg_write(&mut p, 0x62, Width::B1, 11);
        d.set_intx(&mut p, 2, 2, true);
        let saved = save_record(&d, 0);
        let (mut n, mut q) = dev();
        load_record(&mut n, &saved).unwrap();
        assert!(q.irq_log.is_empty());
        assert_eq!(n.intx().driven(), 1 << 11);
        n.set_intx(&mut q, 2, 2, false);
        assert_eq!(q.irq_log, [(11, false)]);
    }

    #[test]
    fn load_rejects_impossible_state() {
        let (d, _) = dev();
        let good = save_record(&d, 0);
        let body = HEADER_LEN;
        let cases: [(usize, u8); 6] = [
            (body + 0x60, 0x90), // PIRQRC reserved bit
            (body + 0x69, 0x03), // TOM bit 0
            (body + 0xf0, 0x01), // reserved byte
            (body + 256, 0x07),  // ELCR IRQ 0..2
            (body + 258, 0x04),  // RCR RST_CPU latched
            (body + 259, 0x03),  // port 92 fast reset latched
        ];
        for (at, v) in cases {
            let mut b = good.clone();
            b[at] = v;
            let mut f = Piix3::new(&QEMU_XEN.isa_bridge);
            assert!(
                matches!(load_record(&mut f, &b), Err(LoadError::Invalid { .. })),
                "byte {at} = {v:#x}"
            );
        }
    }

    #[test]
    fn hammer_ports_and_config() {
        let (mut d, mut p) = dev();
        let ports = [0x92u16, 0x93, 0x4d0, 0x4d1, 0x4d2, 0xcf9, 0xcf8, 0xffff, 0];
        let mut s = 0xdead_beef_cafe_f00du64;
        for _ in 0..20000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let w = [Width::B1, Width::B2, Width::B4, Width::B8][(s % 4) as usize];
            let v = (s >> 32) as u32;
            match (s >> 2) % 5 {
                0 => d.pio_write(&mut p, ports[(s >> 8) as usize % ports.len()], w, v),
                1 => {
                    let _ = d.pio_read(&mut p, (s >> 16) as u16, w);
                }
                2 => {
                    d.cfg_write(&mut p, (s >> 8) as u8, w, v);
                }
                3 => {
                    let _ = d.cfg_read((s >> 8) as u8, w);
                }
                _ => d.set_intx(
                    &mut p,
                    (s >> 8) as u8 % 6,
                    (s >> 16) as u8 % 40,
                    s & 64 != 0,
                ),
            }
            assert_eq!(d.elcr() & !ELCR_WMASK, 0);
            for l in 0..4 {
                if let Some(irq) = d.pirq_route(l) {
                    assert!(valid_isa_irq(irq));
                }
            }
        }
        // Whatever happened, the lines the router drives are what the mock saw.
        for irq in 0..16 {
            assert_eq!(p.irq(irq), d.intx().driven() & (1 << irq) != 0, "irq {irq}");
        }
    }
}
