//! Intel 82441FX PCI and Memory Controller (PMC), the i440FX host bridge at 00:00.0.
//!
//! Follows the 82441FX datasheet (Intel 290549-001) for the register set and write
//! masks, and QEMU `hw/pci-host/i440fx.c` for what a Xen/QEMU guest sees at reset
//! (everything zero except SMRAM = 0x02; command and status zero).
//!
//! A virtual machine has no DRAM controller to program, so the DRAM registers (DRB,
//! DRAMC, DRAMT, ...) are plain storage: firmware may write them and read them back.
//! Two registers have meaning for the machine:
//!
//! * **PAM0–PAM6** (0x59–0x5f) choose, per segment of 0xC0000–0xFFFFF, whether reads
//!   and writes go to DRAM or to the PCI bus (ROM). SeaBIOS's QEMU path writes 0x30/0x33
//!   to make its shadow writable and 0x10/0x11 to lock it; [`I440Fx::pam_segments`]
//!   describes the current state for the machine's memory map.
//! * **SMRAM** (0x72): D_OPEN, D_CLS, D_LCK, G_SMRAME are writable; C_BASE_SEG is
//!   hard-wired to 010b (0xA0000). Setting D_LCK clears D_OPEN and makes D_LCK, D_OPEN
//!   and G_SMRAME read-only until reset (datasheet §3.2.21); D_CLS stays writable.
//!
//! Config writes that change PAM or SMRAM return `true` from `cfg_write`, like BAR
//! changes, so the machine recomputes its memory map.
use crate::{Platform, Width, pci::*, snapshot::*};

/// First PAM register (PAM0).
pub const PAM0: usize = 0x59;
/// Number of PAM registers (PAM0..PAM6).
pub const PAM_COUNT: usize = 7;
/// System management RAM control.
pub const SMRAM: usize = 0x72;

/// SMRAM bits.
pub const SMRAM_D_OPEN: u8 = 1 << 6;
pub const SMRAM_D_CLS: u8 = 1 << 5;
pub const SMRAM_D_LCK: u8 = 1 << 4;
pub const SMRAM_G_SMRAME: u8 = 1 << 3;
/// C_BASE_SEG: hard-wired 010b, SMRAM at 0xA0000–0xBFFFF.
pub const SMRAM_C_BASE_SEG: u8 = 0x02;
const SMRAM_WMASK: u8 = SMRAM_D_OPEN | SMRAM_D_CLS | SMRAM_D_LCK | SMRAM_G_SMRAME;
const SMRAM_WMASK_LOCKED: u8 = SMRAM_D_CLS;

/// Number of PAM segments: the 64 KiB BIOS area plus twelve 16 KiB segments.
pub const PAM_SEGMENTS: usize = 13;

/// Device-specific registers: (offset, write mask, reset value). Everything at 0x40 and
/// above that is not listed is reserved: read-only zero.
const REGS: &[(u8, u8, u8)] = &[
    (0x50, 0xff, 0x00), // PMCCFG (low)
    (0x51, 0xff, 0x00), // PMCCFG (high)
    (0x52, 0xff, 0x00), // DETURBO
    (0x53, 0xff, 0x00), // DBC
    (0x54, 0xff, 0x00), // AXC
    (0x55, 0xff, 0x00), // DRAMR (low)
    (0x56, 0xff, 0x00), // DRAMR (high)
    (0x57, 0xff, 0x00), // DRAMC
    (0x58, 0xff, 0x00), // DRAMT
    (0x59, 0x30, 0x00), // PAM0: low nibble reserved, high nibble = 0xF0000-0xFFFFF
    (0x5a, 0x33, 0x00), // PAM1..PAM6: bits 0/1 and 4/5 = RE/WE of two segments
    (0x5b, 0x33, 0x00),
    (0x5c, 0x33, 0x00),
    (0x5d, 0x33, 0x00),
    (0x5e, 0x33, 0x00),
    (0x5f, 0x33, 0x00),
    (0x60, 0xff, 0x00), // DRB0..DRB7
    (0x61, 0xff, 0x00),
    (0x62, 0xff, 0x00),
    (0x63, 0xff, 0x00),
    (0x64, 0xff, 0x00),
    (0x65, 0xff, 0x00),
    (0x66, 0xff, 0x00),
    (0x67, 0xff, 0x00),
    (0x68, 0xff, 0x00), // FDHC
    (0x70, 0xff, 0x00), // MTT
    (0x71, 0xff, 0x00), // CLT
    (0x72, SMRAM_WMASK, SMRAM_C_BASE_SEG),
    (0x90, 0xff, 0x00), // ERRCMD
];

fn reg_spec(off: usize) -> (u8, u8) {
    REGS.iter()
        .find(|(o, _, _)| *o as usize == off)
        .map(|&(_, m, r)| (m, r))
        .unwrap_or((0, 0))
}

/// Where accesses to one PAM segment go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PamSegment {
    /// Guest-physical base of the segment.
    pub base: u32,
    /// Segment size in bytes.
    pub size: u32,
    /// RE: reads are served by DRAM (else forwarded to PCI, i.e. the BIOS ROM).
    pub read_dram: bool,
    /// WE: writes go to DRAM (else forwarded to PCI, i.e. dropped for a ROM).
    pub write_dram: bool,
}

#[derive(Clone, Debug)]
pub struct I440Fx {
    cfg: ConfigSpace,
}

impl I440Fx {
    pub fn new(id: &PciIdent) -> Self {
        let mut cfg = ConfigSpace::new(id);
        for &(off, mask, reset) in REGS {
            cfg.set_u8(off as usize, reset);
            cfg.set_wmask_u8(off as usize, mask);
        }
        Self { cfg }
    }

    /// Raw PAM register `n` (0..7), 0 for other indices.
    pub fn pam(&self, n: usize) -> u8 {
        if n < PAM_COUNT {
            self.cfg.u8(PAM0 + n)
        } else {
            0
        }
    }

    /// PAM segment `i` (0 = 0xF0000 64 KiB BIOS area, 1..=12 = 16 KiB segments from
    /// 0xC0000 up to 0xEC000).
    pub fn pam_segment(&self, i: usize) -> Option<PamSegment> {
        let (base, size, reg, shift) = match i {
            0 => (0xf_0000u32, 0x1_0000u32, PAM0, 4),
            1..=12 => {
                let k = (i - 1) as u32;
                (
                    0xc_0000 + k * 0x4000,
                    0x4000,
                    PAM0 + 1 + (i - 1) / 2,
                    4 * (k % 2),
                )
            }
            _ => return None,
        };
        let bits = self.cfg.u8(reg) >> shift;
        Some(PamSegment {
            base,
            size,
            read_dram: bits & 1 != 0,
            write_dram: bits & 2 != 0,
        })
    }

    /// All PAM segments, in the order of [`I440Fx::pam_segment`].
    pub fn pam_segments(&self) -> [PamSegment; PAM_SEGMENTS] {
        let mut out = [PamSegment {
            base: 0,
            size: 0,
            read_dram: false,
            write_dram: false,
        }; PAM_SEGMENTS];
        for (i, s) in out.iter_mut().enumerate() {
            if let Some(seg) = self.pam_segment(i) {
                *s = seg;
            }
        }
        out
    }

    /// The SMRAM control register.
    pub fn smram(&self) -> u8 {
        self.cfg.u8(SMRAM)
    }

    /// SMRAM is visible to non-SMM accesses at 0xA0000 (D_OPEN set). While closed the
    /// range belongs to the PCI bus (legacy VGA). chassis has no SMM, so only this
    /// matters to the memory map.
    pub fn smram_open(&self) -> bool {
        self.smram() & SMRAM_D_OPEN != 0
    }

    /// D_LCK has been set since reset.
    pub fn smram_locked(&self) -> bool {
        self.smram() & SMRAM_D_LCK != 0
    }

    fn apply_smram_lock(&mut self) {
        if self.smram_locked() {
            let v = self.smram() & !SMRAM_D_OPEN;
            self.cfg.set_u8(SMRAM, v);
            self.cfg.set_wmask_u8(SMRAM, SMRAM_WMASK_LOCKED);
        } else {
            self.cfg.set_wmask_u8(SMRAM, SMRAM_WMASK);
        }
    }

    fn memory_regs(&self) -> [u8; PAM_COUNT + 1] {
        let mut r = [0u8; PAM_COUNT + 1];
        for (i, b) in r.iter_mut().take(PAM_COUNT).enumerate() {
            *b = self.cfg.u8(PAM0 + i);
        }
        r[PAM_COUNT] = self.smram();
        r
    }
}

impl PciFunction for I440Fx {
    fn config(&self) -> &ConfigSpace {
        &self.cfg
    }
    fn cfg_write(&mut self, _p: &mut dyn Platform, off: u8, w: Width, v: u32) -> bool {
        let before = self.memory_regs();
        let remap = self.cfg.write(off, w, v);
        self.apply_smram_lock();
        remap || self.memory_regs() != before
    }
}

/// Record body (v1): the 256-byte configuration space. PAM, SMRAM and the DRAM
/// registers live there; the SMRAM lock state follows from D_LCK.
impl Snapshot for I440Fx {
    const NAME: &'static str = "i440fx";
    const VERSION: u16 = 1;
    fn save(&self, w: &mut RecordWriter) {
        w.bytes(self.cfg.raw());
    }
    fn load(&mut self, _v: u16, r: &mut RecordReader<'_>) -> Result<(), LoadError> {
        let mut raw = [0u8; 256];
        r.bytes(&mut raw)?;
        // Read-only bits of the device-specific registers must be what this build
        // defines (reserved PAM bits zero, C_BASE_SEG = 010b, unused bytes zero).
        for (off, &b) in raw.iter().enumerate().skip(0x40) {
            let (mask, reset) = reg_spec(off);
            if b & !mask != reset & !mask {
                let field = match off {
                    PAM0..=0x5f => "pam",
                    SMRAM => "smram",
                    _ => "config",
                };
                return Err(LoadError::Invalid {
                    name: Self::NAME,
                    field,
                });
            }
        }
        let smram = raw[SMRAM];
        if smram & SMRAM_D_LCK != 0 && smram & SMRAM_D_OPEN != 0 {
            // Setting D_LCK clears D_OPEN; the two can never be seen together.
            return Err(LoadError::Invalid {
                name: Self::NAME,
                field: "smram",
            });
        }
        // Restore through the unlocked mask, whatever state `self` was in.
        self.cfg.set_wmask_u8(SMRAM, SMRAM_WMASK);
        self.cfg.restore_raw(&raw);
        self.apply_smram_lock();
        Ok(())
    }
}

crate::snapshot_tests!(
    i440fx_snapshot,
    I440Fx,
    {
        let mut d = I440Fx::new(&crate::profile::QEMU_XEN.host_bridge);
        let mut p = crate::testing::MockPlatform::new();
        d.cfg_write(&mut p, 0x59, Width::B1, 0x30);
        d.cfg_write(&mut p, 0x5a, Width::B4, 0x1133_3311);
        d.cfg_write(&mut p, 0x60, Width::B4, 0x1010_0804);
        d.cfg_write(&mut p, 0x72, Width::B1, 0x0a);
        d.cfg_write(&mut p, 0x72, Width::B1, 0x1a);
        d
    },
    I440Fx::new(&crate::profile::QEMU_XEN.host_bridge)
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{QEMU_XEN, QEMU_XEN_TRADITIONAL};
    use crate::snapshot::{load_record, save_record};
    use crate::testing::MockPlatform;

    fn dev() -> (I440Fx, MockPlatform) {
        (I440Fx::new(&QEMU_XEN.host_bridge), MockPlatform::new())
    }

    #[test]
    fn identity_and_reset_values() {
        for prof in crate::profile::ALL {
            let d = I440Fx::new(&prof.host_bridge);
            let c = d.config();
            assert_eq!(c.read(0, Width::B4), 0x1237_8086);
            assert_eq!(c.read(0x08, Width::B4), 0x0600_0002);
            assert_eq!(c.u8(HEADER_TYPE), 0);
            assert_eq!(c.u16(COMMAND), 0);
            assert_eq!(c.u8(SMRAM), 0x02);
            for n in 0..PAM_COUNT {
                assert_eq!(d.pam(n), 0);
            }
        }
        let t = I440Fx::new(&QEMU_XEN_TRADITIONAL.host_bridge);
        assert_eq!(t.config().u32(SUBSYSTEM_VENDOR_ID), 0);
    }

    #[test]
    fn seabios_shadow_sequence() {
        // SeaBIOS make_bios_writable: PAM0 = 0x30, PAM1..6 = 0x33 (byte writes),
        // then make_bios_readonly: 0x10 / 0x11.
        let (mut d, mut p) = dev();
        assert!(
            d.pam_segments()
                .iter()
                .all(|s| !s.read_dram && !s.write_dram)
        );
        assert!(d.cfg_write(&mut p, 0x59, Width::B1, 0x30));
        for r in 0x5a..=0x5f {
            d.cfg_write(&mut p, r, Width::B1, 0x33);
        }
        assert!(d.pam_segments().iter().all(|s| s.read_dram && s.write_dram));
        d.cfg_write(&mut p, 0x59, Width::B1, 0x10);
        for r in 0x5a..=0x5f {
            d.cfg_write(&mut p, r, Width::B1, 0x11);
        }
        for s in d.pam_segments() {
            assert!(s.read_dram && !s.write_dram, "{s:?}");
        }
        // Reserved bits stay zero; an unchanged rewrite reports no remap.
        assert!(!d.cfg_write(&mut p, 0x59, Width::B1, 0xdf));
        assert_eq!(d.pam(0), 0x10);
        d.cfg_write(&mut p, 0x5a, Width::B1, 0xff);
        assert_eq!(d.pam(1), 0x33);
    }

    #[test]
    fn pam_segment_geometry() {
        let (mut d, mut p) = dev();
        let segs = d.pam_segments();
        assert_eq!((segs[0].base, segs[0].size), (0xf_0000, 0x1_0000));
        assert_eq!((segs[1].base, segs[1].size), (0xc_0000, 0x4000));
        assert_eq!(segs[12].base, 0xe_c000);
        let mut end = 0xc_0000;
        for s in &segs[1..] {
            assert_eq!(s.base, end);
            end += s.size;
        }
        assert_eq!(end, 0xf_0000);
        // PAM3 high nibble = 0xD4000-0xD7FFF, write-only.
        d.cfg_write(&mut p, 0x5c, Width::B1, 0x20);
        let s = d.pam_segment(6).unwrap();
        assert_eq!(s.base, 0xd_4000);
        assert!(!s.read_dram && s.write_dram);
        assert!(!d.pam_segment(5).unwrap().write_dram);
        assert_eq!(d.pam_segment(13), None);
        assert_eq!(d.pam(7), 0);
    }

    #[test]
    fn smram_open_close_lock_like_seabios() {
        let (mut d, mut p) = dev();
        // piix4_apmc_smm_setup: open the window (0x02 | 0x48)...
        assert!(d.cfg_write(&mut p, 0x72, Width::B1, 0x4a));
        assert!(d.smram_open());
        // ... then close it and enable SMRAM (0x02 | 0x08).
        d.cfg_write(&mut p, 0x72, Width::B1, 0x0a);
        assert!(!d.smram_open());
        assert_eq!(d.smram(), 0x0a);
        // C_BASE_SEG and bit 7 are read-only.
        d.cfg_write(&mut p, 0x72, Width::B1, 0x85);
        assert_eq!(d.smram() & 0x87, 0x02);
        // D_LCK together with D_OPEN: D_OPEN is cleared, the lock sticks.
        d.cfg_write(&mut p, 0x72, Width::B1, 0x5a);
        assert_eq!(d.smram(), 0x1a);
        assert!(d.smram_locked());
        d.cfg_write(&mut p, 0x72, Width::B1, 0x40);
        assert_eq!(d.smram(), 0x1a, "locked: D_OPEN, D_LCK, G_SMRAME read-only");
        d.cfg_write(&mut p, 0x72, Width::B1, 0x3a);
        assert_eq!(d.smram(), 0x3a, "D_CLS stays writable");
    }

    #[test]
    fn dram_registers_are_storage_and_reserved_are_zero() {
        let (mut d, mut p) = dev();
        d.cfg_write(&mut p, 0x60, Width::B4, 0x2010_0804);
        assert_eq!(d.config().read(0x60, Width::B4), 0x2010_0804);
        d.cfg_write(&mut p, 0x80, Width::B4, 0xffff_ffff);
        assert_eq!(d.config().read(0x80, Width::B4), 0);
        d.cfg_write(&mut p, 0x00, Width::B4, 0);
        assert_eq!(d.config().read(0, Width::B4), 0x1237_8086);
    }

    #[test]
    fn restore_undoes_a_live_lock() {
        let (mut d, mut p) = dev();
        d.cfg_write(&mut p, 0x72, Width::B1, 0x4a);
        let open = save_record(&d, 0);
        d.cfg_write(&mut p, 0x72, Width::B1, 0x1a);
        assert!(d.smram_locked());
        load_record(&mut d, &open).unwrap();
        assert_eq!(d.smram(), 0x4a);
        d.cfg_write(&mut p, 0x72, Width::B1, 0x0a);
        assert_eq!(d.smram(), 0x0a, "unlocked again after restore");
    }

    #[test]
    fn load_rejects_impossible_registers() {
        let (d, _) = dev();
        let good = save_record(&d, 0);
        let at = |off: usize| crate::snapshot::HEADER_LEN + off;
        for (off, v) in [
            (0x59, 0x01u8),
            (0x5a, 0x44),
            (0x72, 0x03),
            (0x72, 0x52),
            (0x80, 1),
        ] {
            let mut b = good.clone();
            b[at(off)] = v;
            let mut f = I440Fx::new(&QEMU_XEN.host_bridge);
            assert!(
                matches!(load_record(&mut f, &b), Err(LoadError::Invalid { .. })),
                "offset {off:#x} value {v:#x}"
            );
        }
    }

    #[test]
    fn hammer_config_space() {
        let (mut d, mut p) = dev();
        let mut s = 0x1234_5678_9abc_def0u64;
        for _ in 0..20000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let off = (s >> 8) as u8;
            let w = [Width::B1, Width::B2, Width::B4][(s % 3) as usize];
            if s & 1 == 0 {
                d.cfg_write(&mut p, off, w, (s >> 32) as u32);
            } else {
                let _ = d.cfg_read(off, w);
            }
            assert!(!(d.smram_locked() && d.smram_open()));
            let _ = d.pam_segments();
        }
        assert_eq!(d.config().read(0, Width::B4), 0x1237_8086);
    }
}
