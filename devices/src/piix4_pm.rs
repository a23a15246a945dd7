//! PIIX4 ACPI power-management function (PCI 00:01.3; Intel 82371AB datasheet §3.4 and
//! §7, ACPI spec §4.8 fixed hardware registers).
//!
//! Configuration space: PMBA (0x40, I/O base of the 64-byte PM block, bits 15:6
//! writable, bit 0 hard-wired 1), DEVACTB (0x58-0x5b, with 0x5b bit 1 "SMM done"
//! preset as QEMU does when it emulates no SMM), PMREGMISC (0x80 bit 0 = PMIOSE, the
//! PM block decode enable), SMBBA (0x90) and SMBHSTCFG (0xd2) as plain registers (no
//! SMBus is emulated, as in qemu-xen-traditional; the SMBus host stays disabled).
//!
//! PM block at PMBA: PM1a_STS (+0, write-1-to-clear), PM1a_EN (+2), PM1a_CNT (+4), PM_TMR
//! (+8, 24-bit, 3.579545 MHz, derived from platform time), everything else reads 0.
//! Outside it: the GPE0 block at the profile's address (STS half write-1-to-clear, EN
//! half), the APM control port (SMI_CMD: 0xf1 sets SCI_EN, 0xf0 clears it) and the APM
//! status scratch byte after it.
//!
//! Sleep (PM1a_CNT write with SLP_EN): SLP_TYP 0 is Xen's `\_S5` (and `\_S4`) → power
//! off; 1 is `\_S3` from Xen's SSDT_S3 → suspend; other values do nothing (qemu-xen's
//! `acpi_pm1_cnt_write` behaves the same for 0 and 1).
//!
//! SCI (ISA IRQ from the profile) is a level: SCI_EN and (an enabled fixed event or an
//! enabled GPE). TMR_STS is accounted lazily from time, so no timer runs unless TMR_EN
//! (with SCI_EN) needs the overflow interrupt on time.

use crate::{Platform, PortIo, TimerId, Width, pci::*, profile::PmLayout, snapshot::*};

/// Config-space registers.
pub const PMBA: usize = 0x40;
pub const DEVACTB: usize = 0x58;
pub const PMREGMISC: usize = 0x80;
pub const SMBBA: usize = 0x90;
pub const SMBHSTCFG: usize = 0xd2;

/// PM block register offsets.
pub const PM1_STS: u16 = 0x00;
pub const PM1_EN: u16 = 0x02;
pub const PM1_CNT: u16 = 0x04;
pub const PM_TMR: u16 = 0x08;
/// Size of the PM I/O block PMBA decodes.
pub const PM_BLOCK_LEN: u16 = 0x40;

pub const STS_TMR: u16 = 1 << 0;
pub const STS_BM: u16 = 1 << 4;
pub const STS_GBL: u16 = 1 << 5;
pub const STS_PWRBTN: u16 = 1 << 8;
pub const STS_SLPBTN: u16 = 1 << 9;
pub const STS_RTC: u16 = 1 << 10;
pub const STS_WAK: u16 = 1 << 15;
const STS_VALID: u16 = STS_TMR | STS_BM | STS_GBL | STS_PWRBTN | STS_SLPBTN | STS_RTC | STS_WAK;

pub const EN_TMR: u16 = 1 << 0;
pub const EN_GBL: u16 = 1 << 5;
pub const EN_PWRBTN: u16 = 1 << 8;
pub const EN_SLPBTN: u16 = 1 << 9;
pub const EN_RTC: u16 = 1 << 10;
const EN_VALID: u16 = EN_TMR | EN_GBL | EN_PWRBTN | EN_SLPBTN | EN_RTC;
/// Fixed events that raise an SCI when enabled (the EN bits mirror the STS bits).
const SCI_EVENTS: u16 = EN_VALID;

pub const CNT_SCI_EN: u16 = 1 << 0;
pub const CNT_BM_RLD: u16 = 1 << 1;
pub const CNT_GBL_RLS: u16 = 1 << 2;
pub const CNT_SLP_TYP_SHIFT: u16 = 10;
pub const CNT_SLP_TYP: u16 = 7 << CNT_SLP_TYP_SHIFT;
pub const CNT_SLP_EN: u16 = 1 << 13;
/// Bits of PM1a_CNT that hold a value (GBL_RLS and SLP_EN are write-only strobes).
const CNT_STORED: u16 = CNT_SCI_EN | CNT_BM_RLD | CNT_SLP_TYP;

/// SLP_TYP values of Xen's tables (tools/libacpi: `\_S5`/`\_S4` = 0, `\_S3` = 1).
pub const SLP_TYP_S5: u16 = 0;
pub const SLP_TYP_S3: u16 = 1;

/// APM control-port commands (PIIX4 / QEMU `ACPI_ENABLE`, `ACPI_DISABLE`).
pub const APM_ACPI_ENABLE: u8 = 0xf1;
pub const APM_ACPI_DISABLE: u8 = 0xf0;

/// PM timer frequency.
pub const PM_TIMER_HZ: u128 = 3_579_545;
/// The PM timer is 24 bits wide; TMR_STS sets whenever bit 23 changes.
const TMR_BITS: u32 = 24;
const TMR_MASK: u32 = (1 << TMR_BITS) - 1;
const NS_PER_SEC: u128 = 1_000_000_000;

/// Bytes kept per GPE0 half (the V0 layout had 4; room to spare).
const GPE_HALF_MAX: usize = 8;

#[derive(Clone, Debug)]
pub struct Piix4Pm {
    cfg: ConfigSpace,
    layout: PmLayout,
    pm1_sts: u16,
    pm1_en: u16,
    pm1_cnt: u16,
    gpe_sts: [u8; GPE_HALF_MAX],
    gpe_en: [u8; GPE_HALF_MAX],
    /// Last byte written to the APM control (SMI command) port.
    apm_cnt: u8,
    /// APM status scratch byte (SMI command port + 1).
    apm_sts: u8,
    /// Platform time up to which TMR_STS has been accounted.
    tmr_checked_ns: u64,
    /// Level currently driven on the SCI line.
    sci_level: bool,
    /// Overflow deadline armed with the platform. Not saved: see [`Piix4Pm::post_load`].
    armed: Option<u64>,
}

/// Ticks of the PM timer at platform time `ns` (not truncated to 24 bits).
fn pm_ticks(ns: u64) -> u128 {
    ns as u128 * PM_TIMER_HZ / NS_PER_SEC
}

/// PM_TMR at guest time `now_ns` (24 bits): a pure function of guest time, so a
/// hypervisor answering PM_TMR reads itself (stubdom mode) returns exactly what this
/// device would. Reading it has no other effect a guest can see: TMR_STS and the SCI are
/// brought up to date from guest time at the next access to the block or at the
/// overflow timer.
pub fn pm_timer_at(now_ns: u64) -> u32 {
    (pm_ticks(now_ns) & TMR_MASK as u128) as u32
}

impl Piix4Pm {
    pub fn new(id: &PciIdent, layout: &PmLayout) -> Self {
        let mut cfg = ConfigSpace::new(id);
        // Status: medium DEVSEL timing, fast back-to-back capable (as QEMU and trad).
        cfg.set_u16(STATUS, 0x0280);
        // PMBA: I/O space indicator hard-wired, base bits 15:6 writable.
        cfg.set_u32(PMBA, 0x0000_0001);
        cfg.set_wmask_u32(PMBA, 0x0000_ffc0);
        // DEVACTB: device activity enables; 0x5b bit 1 says SMM init is done (no SMM).
        cfg.set_wmask_u32(DEVACTB, 0xffff_ffff);
        cfg.set_u8(DEVACTB + 3, 0x02);
        // PMREGMISC: PMIOSE.
        cfg.set_wmask_u8(PMREGMISC, 0x01);
        // SMBus base (I/O indicator hard-wired, bits 15:4 writable) and host config.
        cfg.set_u32(SMBBA, 0x0000_0001);
        cfg.set_wmask_u32(SMBBA, 0x0000_fff0);
        cfg.set_wmask_u8(SMBHSTCFG, 0x0f);
        Self {
            cfg,
            layout: *layout,
            pm1_sts: 0,
            pm1_en: 0,
            pm1_cnt: layout.pm1_cnt_reset & CNT_STORED,
            gpe_sts: [0; GPE_HALF_MAX],
            gpe_en: [0; GPE_HALF_MAX],
            apm_cnt: 0,
            apm_sts: 0,
            tmr_checked_ns: 0,
            sci_level: false,
            armed: None,
        }
    }

    /// Base of the 64-byte PM I/O block, when PMBA (0x40) is set and PMIOSE (0x80 bit 0) enables it.
    /// A base of 0 is treated as unprogrammed (it would shadow the DMA/PIC ports).
    pub fn pm_io_base(&self) -> Option<u16> {
        if self.cfg.u8(PMREGMISC) & 1 == 0 {
            return None;
        }
        let base = (self.cfg.u32(PMBA) & 0xffc0) as u16;
        (base != 0).then_some(base)
    }

    /// GPE0 block (base, length).
    pub fn gpe0_block(&self) -> (u16, u16) {
        (self.layout.gpe0_base, self.layout.gpe0_len)
    }

    pub fn smi_cmd_port(&self) -> u16 {
        self.layout.smi_cmd_port
    }

    /// Whether SCI_EN is set (ACPI mode).
    pub fn sci_enabled(&self) -> bool {
        self.pm1_cnt & CNT_SCI_EN != 0
    }

    /// The level currently driven on the SCI line.
    pub fn sci_level(&self) -> bool {
        self.sci_level
    }

    /// The power button was pressed (e.g. `chassis trigger <dom> power`): PWRBTN_STS is
    /// set whether or not the guest enabled the event (as Xen's `hvm_acpi_power_button`
    /// does); the SCI follows PWRBTN_EN and SCI_EN.
    pub fn press_power_button(&mut self, p: &mut dyn Platform) {
        self.pm1_sts |= STS_PWRBTN;
        self.update_sci(p);
    }

    /// The machine woke from S3: set WAK_STS for the guest's wake path.
    pub fn wake(&mut self, p: &mut dyn Platform) {
        self.pm1_sts |= STS_WAK;
        self.update_sci(p);
    }

    /// Set general-purpose event `bit` in GPE0_STS (hotplug and similar sources).
    /// Bits beyond the GPE0 block are ignored.
    pub fn raise_gpe(&mut self, p: &mut dyn Platform, bit: u16) {
        let byte = (bit / 8) as usize;
        if byte < self.gpe_half()
            && let Some(s) = self.gpe_sts.get_mut(byte)
        {
            *s |= 1 << (bit % 8);
        }
        self.update_sci(p);
    }

    /// After a state record was loaded: drive the SCI line to the restored level and
    /// re-arm the overflow timer if the restored state needs it.
    pub fn post_load(&mut self, p: &mut dyn Platform) {
        self.armed = None;
        p.set_irq(self.layout.sci_irq as u32, self.sci_level);
        self.rearm(p);
    }

    pub fn on_timer(&mut self, p: &mut dyn Platform, id: TimerId) {
        if id != TimerId::PmTimerOverflow {
            return;
        }
        self.account_tmr(p);
        self.update_sci(p);
        // The platform timer is one-shot: state the new deadline (or none) explicitly.
        let want = self.wanted_deadline(p);
        p.set_timer(TimerId::PmTimerOverflow, want);
        self.armed = want;
    }

    /// The PM timer value now (24 bits).
    pub fn pm_timer(&self, p: &dyn Platform) -> u32 {
        pm_timer_at(p.now_ns())
    }

    /// The port PM_TMR decodes at, if the PM block is on.
    pub fn pm_timer_port(&self) -> Option<u16> {
        self.pm_io_base().map(|b| b + PM_TMR)
    }

    // ---- internals --------------------------------------------------------------

    fn gpe_half(&self) -> usize {
        ((self.layout.gpe0_len / 2) as usize).min(GPE_HALF_MAX)
    }

    /// Set TMR_STS if bit 23 of the timer changed since the last check.
    fn account_tmr(&mut self, p: &dyn Platform) {
        let now = p.now_ns();
        if now > self.tmr_checked_ns
            && pm_ticks(now) >> (TMR_BITS - 1) != pm_ticks(self.tmr_checked_ns) >> (TMR_BITS - 1)
        {
            self.pm1_sts |= STS_TMR;
        }
        self.tmr_checked_ns = now;
    }

    fn compute_sci(&self) -> bool {
        if self.pm1_cnt & CNT_SCI_EN == 0 {
            return false;
        }
        let fixed = self.pm1_sts & self.pm1_en & SCI_EVENTS != 0;
        let gpe = self
            .gpe_sts
            .iter()
            .zip(self.gpe_en.iter())
            .any(|(s, e)| s & e != 0);
        fixed || gpe
    }

    fn update_sci(&mut self, p: &mut dyn Platform) {
        let level = self.compute_sci();
        if level != self.sci_level {
            self.sci_level = level;
            p.set_irq(self.layout.sci_irq as u32, level);
        }
    }

    /// The overflow deadline needed now: only while the overflow would raise an SCI
    /// that is not already pending.
    fn wanted_deadline(&self, p: &dyn Platform) -> Option<u64> {
        if self.pm1_cnt & CNT_SCI_EN == 0
            || self.pm1_en & EN_TMR == 0
            || self.pm1_sts & STS_TMR != 0
        {
            return None;
        }
        let next = ((pm_ticks(p.now_ns()) >> (TMR_BITS - 1)) + 1) << (TMR_BITS - 1);
        let ns = (next * NS_PER_SEC).div_ceil(PM_TIMER_HZ);
        Some(ns.min(u64::MAX as u128) as u64)
    }

    fn rearm(&mut self, p: &mut dyn Platform) {
        let want = self.wanted_deadline(p);
        if want != self.armed {
            p.set_timer(TimerId::PmTimerOverflow, want);
            self.armed = want;
        }
    }

    fn pm_byte(&self, p: &dyn Platform, off: u16) -> u8 {
        let reg16 = |v: u16| (v >> (8 * (off & 1))) as u8;
        match off {
            0..=1 => reg16(self.pm1_sts),
            2..=3 => reg16(self.pm1_en),
            4..=5 => reg16(self.pm1_cnt),
            8..=11 => (self.pm_timer(p) >> (8 * (off - 8))) as u8,
            _ => 0,
        }
    }

    fn gpe_byte(&self, off: u16) -> u8 {
        let half = self.gpe_half();
        let off = off as usize;
        if off < half {
            self.gpe_sts.get(off).copied().unwrap_or(0)
        } else if off < 2 * half {
            self.gpe_en.get(off - half).copied().unwrap_or(0)
        } else {
            0
        }
    }

    fn gpe_write(&mut self, off: u16, b: u8) {
        let half = self.gpe_half();
        let off = off as usize;
        if off < half {
            if let Some(s) = self.gpe_sts.get_mut(off) {
                *s &= !b;
            }
        } else if off < 2 * half
            && let Some(e) = self.gpe_en.get_mut(off - half)
        {
            *e = b;
        }
    }

    /// Which register of this device a port byte belongs to.
    fn decode(&self, port: u16) -> Target {
        if let Some(base) = self.pm_io_base() {
            let off = port.wrapping_sub(base);
            if off < PM_BLOCK_LEN {
                return Target::Pm(off);
            }
        }
        let (gbase, glen) = self.gpe0_block();
        let goff = port.wrapping_sub(gbase);
        if goff < glen {
            return Target::Gpe(goff);
        }
        if port == self.layout.smi_cmd_port {
            return Target::ApmCnt;
        }
        if port == self.layout.smi_cmd_port.wrapping_add(1) {
            return Target::ApmSts;
        }
        Target::None
    }

    /// A PM1a_CNT write (the merged 16-bit value).
    fn write_cnt(&mut self, p: &mut dyn Platform, v: u16) {
        self.pm1_cnt = v & CNT_STORED;
        if v & CNT_SLP_EN != 0 {
            match (v & CNT_SLP_TYP) >> CNT_SLP_TYP_SHIFT {
                SLP_TYP_S5 => p.power(crate::PowerRequest::PowerOff),
                SLP_TYP_S3 => p.power(crate::PowerRequest::Suspend),
                _ => {}
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Target {
    Pm(u16),
    Gpe(u16),
    ApmCnt,
    ApmSts,
    None,
}

impl PciFunction for Piix4Pm {
    fn config(&self) -> &ConfigSpace {
        &self.cfg
    }
    fn cfg_write(&mut self, _p: &mut dyn Platform, off: u8, w: Width, v: u32) -> bool {
        let before = self.pm_io_base();
        let remap = self.cfg.write(off, w, v);
        remap || self.pm_io_base() != before
    }
}

/// Ports: the PM block at pm_io_base(), GPE0, the SMI command port (+1 = APM status).
/// Accesses are split into bytes; bytes that fall outside every block read 0xff.
impl PortIo for Piix4Pm {
    fn pio_read(&mut self, p: &mut dyn Platform, port: u16, w: Width) -> u32 {
        self.account_tmr(p);
        self.update_sci(p);
        let mut v = 0u32;
        for i in 0..w.bytes().min(4) {
            let b = match self.decode(port.wrapping_add(i as u16)) {
                Target::Pm(off) => self.pm_byte(p, off),
                Target::Gpe(off) => self.gpe_byte(off),
                Target::ApmCnt => self.apm_cnt,
                Target::ApmSts => self.apm_sts,
                Target::None => 0xff,
            };
            v |= (b as u32) << (8 * i);
        }
        v
    }

    fn pio_write(&mut self, p: &mut dyn Platform, port: u16, w: Width, v: u32) {
        self.account_tmr(p);
        // Bytes aimed at the 16-bit PM1 registers are merged first so a word written
        // as two bytes, or one byte of it, acts on the whole register once.
        let mut sts_clear = 0u16;
        let (mut en, mut en_hit) = (self.pm1_en, false);
        let (mut cnt, mut cnt_hit) = (self.pm1_cnt, false);
        for i in 0..w.bytes().min(4) {
            let b = (v >> (8 * i)) as u8;
            match self.decode(port.wrapping_add(i as u16)) {
                Target::Pm(off) => {
                    let shift = 8 * (off & 1);
                    let (bv, bm) = ((b as u16) << shift, 0xffu16 << shift);
                    match off {
                        0..=1 => sts_clear |= bv,
                        2..=3 => {
                            en = (en & !bm) | bv;
                            en_hit = true;
                        }
                        4..=5 => {
                            cnt = (cnt & !bm) | bv;
                            cnt_hit = true;
                        }
                        _ => {}
                    }
                }
                Target::Gpe(off) => self.gpe_write(off, b),
                Target::ApmCnt => {
                    self.apm_cnt = b;
                    match b {
                        APM_ACPI_ENABLE => self.pm1_cnt |= CNT_SCI_EN,
                        APM_ACPI_DISABLE => self.pm1_cnt &= !CNT_SCI_EN,
                        _ => {}
                    }
                }
                Target::ApmSts => self.apm_sts = b,
                Target::None => {}
            }
        }
        self.pm1_sts &= !(sts_clear & STS_VALID);
        if en_hit {
            self.pm1_en = en & EN_VALID;
        }
        if cnt_hit {
            self.write_cnt(p, cnt);
        }
        self.update_sci(p);
        self.rearm(p);
    }
}

impl Snapshot for Piix4Pm {
    const NAME: &'static str = "piix4pm";
    const VERSION: u16 = 1;

    /// v1: config space [256], pm1_sts u16, pm1_en u16, pm1_cnt u16, gpe_sts [8],
    /// gpe_en [8], apm_cnt u8, apm_sts u8, tmr_checked_ns u64, sci_level bool.
    fn save(&self, w: &mut RecordWriter) {
        w.bytes(self.cfg.raw());
        w.u16(self.pm1_sts);
        w.u16(self.pm1_en);
        w.u16(self.pm1_cnt);
        w.bytes(&self.gpe_sts);
        w.bytes(&self.gpe_en);
        w.u8(self.apm_cnt);
        w.u8(self.apm_sts);
        w.u64(self.tmr_checked_ns);
        w.bool(self.sci_level);
    }

    fn load(&mut self, _v: u16, r: &mut RecordReader<'_>) -> Result<(), LoadError> {
        let bad = |field| LoadError::Invalid {
            name: Self::NAME,
            field,
        };
        let mut raw = [0u8; 256];
        r.bytes(&mut raw)?;
        let pm1_sts = r.u16()?;
        let pm1_en = r.u16()?;
        let pm1_cnt = r.u16()?;
        let mut gpe_sts = [0u8; GPE_HALF_MAX];
        let mut gpe_en = [0u8; GPE_HALF_MAX];
        r.bytes(&mut gpe_sts)?;
        r.bytes(&mut gpe_en)?;
        let apm_cnt = r.u8()?;
        let apm_sts = r.u8()?;
        let tmr_checked_ns = r.u64()?;
        let sci_level = r.bool(Self::NAME, "sci_level")?;

        if pm1_sts & !STS_VALID != 0 {
            return Err(bad("pm1_sts"));
        }
        if pm1_en & !EN_VALID != 0 {
            return Err(bad("pm1_en"));
        }
        if pm1_cnt & !CNT_STORED != 0 {
            return Err(bad("pm1_cnt"));
        }
        let half = self.gpe_half();
        if gpe_sts.iter().skip(half).any(|&b| b != 0) {
            return Err(bad("gpe_sts"));
        }
        if gpe_en.iter().skip(half).any(|&b| b != 0) {
            return Err(bad("gpe_en"));
        }
        let mut cfg = self.cfg.clone();
        cfg.restore_raw(&raw);
        if cfg.raw() != &raw {
            // A bit the guest can never change differs: not a record of this device.
            return Err(bad("config"));
        }
        let mut next = self.clone();
        next.cfg = cfg;
        next.pm1_sts = pm1_sts;
        next.pm1_en = pm1_en;
        next.pm1_cnt = pm1_cnt;
        next.gpe_sts = gpe_sts;
        next.gpe_en = gpe_en;
        next.apm_cnt = apm_cnt;
        next.apm_sts = apm_sts;
        next.tmr_checked_ns = tmr_checked_ns;
        next.sci_level = sci_level;
        next.armed = None;
        if next.compute_sci() != sci_level {
            return Err(bad("sci_level"));
        }
        *self = next;
        Ok(())
    }
}

#[cfg(test)]
fn interesting_pm() -> Piix4Pm {
    use crate::profile::QEMU_XEN;
    use crate::testing::MockPlatform;
    let mut p = MockPlatform::new();
    let mut d = Piix4Pm::new(&QEMU_XEN.pm, &QEMU_XEN.pm_layout);
    d.cfg_write(&mut p, PMBA as u8, Width::B4, 0xb001);
    d.cfg_write(&mut p, PMREGMISC as u8, Width::B1, 1);
    d.cfg_write(&mut p, INTERRUPT_LINE as u8, Width::B1, 9);
    d.pio_write(&mut p, 0xb2, Width::B1, APM_ACPI_ENABLE as u32);
    d.pio_write(&mut p, 0xb3, Width::B1, 0x5a);
    d.pio_write(&mut p, 0xb002, Width::B2, (EN_PWRBTN | EN_TMR) as u32);
    d.pio_write(&mut p, 0xafe2, Width::B1, 0x04);
    d.raise_gpe(&mut p, 2);
    d.press_power_button(&mut p);
    p.advance(5_000_000_000);
    d.on_timer(&mut p, TimerId::PmTimerOverflow);
    d
}

crate::snapshot_tests!(
    piix4_pm_snapshot,
    Piix4Pm,
    interesting_pm(),
    Piix4Pm::new(
        &crate::profile::QEMU_XEN.pm,
        &crate::profile::QEMU_XEN.pm_layout
    )
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PowerRequest;
    use crate::profile::{QEMU_XEN, QEMU_XEN_TRADITIONAL};
    use crate::testing::MockPlatform;

    fn dev(profile: &crate::profile::Profile) -> Piix4Pm {
        Piix4Pm::new(&profile.pm, &profile.pm_layout)
    }

    /// hvmloader (pci.c): PMBA = 0xb000 | 1, PMREGMISC = 1, interrupt line 9.
    fn hvmloader_setup(d: &mut Piix4Pm, p: &mut MockPlatform) {
        // PMBA alone decodes nothing yet; PMIOSE turns the block on (a remap).
        assert!(!d.cfg_write(p, PMBA as u8, Width::B4, 0xb000 | 1));
        assert!(d.cfg_write(p, PMREGMISC as u8, Width::B1, 1));
        d.cfg_write(p, INTERRUPT_LINE as u8, Width::B1, 9);
    }

    /// hvmloader acpi_enable_sci / Linux acpi_enable: if SCI_EN is clear, write
    /// ACPI_ENABLE to SMI_CMD and poll PM1a_CNT for SCI_EN.
    fn acpi_enable(d: &mut Piix4Pm, p: &mut MockPlatform) {
        if d.pio_read(p, 0xb004, Width::B2) as u16 & CNT_SCI_EN == 0 {
            d.pio_write(p, 0xb2, Width::B1, APM_ACPI_ENABLE as u32);
        }
        assert_ne!(d.pio_read(p, 0xb004, Width::B2) as u16 & CNT_SCI_EN, 0);
    }

    #[test]
    fn config_space_identity_and_pmba() {
        let mut p = MockPlatform::new();
        let mut d = dev(&QEMU_XEN);
        assert_eq!(d.cfg_read(0, Width::B4), 0x7113_8086);
        assert_eq!(d.cfg_read(0x08, Width::B4), 0x0680_0003);
        assert_eq!(d.cfg_read(0x06, Width::B2), 0x0280);
        assert_eq!(d.cfg_read(0x3d, Width::B1), 1);
        assert_eq!(d.cfg_read(0x5b, Width::B1), 0x02);
        assert_eq!(d.cfg_read(PMBA as u8, Width::B4), 1);
        assert_eq!(d.pm_io_base(), None);
        // Sizing-style probe: only bits 15:6 stick, bit 0 stays 1.
        d.cfg_write(&mut p, PMBA as u8, Width::B4, 0xffff_ffff);
        assert_eq!(d.cfg_read(PMBA as u8, Width::B4), 0x0000_ffc1);
        assert_eq!(d.pm_io_base(), None, "PMIOSE still clear");
        hvmloader_setup(&mut d, &mut p);
        assert_eq!(d.pm_io_base(), Some(0xb000));
        assert_eq!(d.cfg_read(INTERRUPT_LINE as u8, Width::B1), 9);
        // Same base again: no remap needed.
        assert!(!d.cfg_write(&mut p, PMBA as u8, Width::B4, 0xb001));
        // Disabling PMIOSE removes the block.
        assert!(d.cfg_write(&mut p, PMREGMISC as u8, Width::B1, 0));
        assert_eq!(d.pm_io_base(), None);
        // The SMBus registers hold values but the host stays as programmed.
        d.cfg_write(&mut p, SMBBA as u8, Width::B4, 0xb100);
        assert_eq!(d.cfg_read(SMBBA as u8, Width::B4), 0xb101);
        // Identity is read-only.
        d.cfg_write(&mut p, 0, Width::B4, 0);
        assert_eq!(d.cfg_read(0, Width::B4), 0x7113_8086);
    }

    #[test]
    fn acpi_enable_through_smi_cmd_per_generation() {
        let mut p = MockPlatform::new();
        let mut q = dev(&QEMU_XEN);
        hvmloader_setup(&mut q, &mut p);
        assert_eq!(q.pio_read(&mut p, 0xb004, Width::B2), 0);
        acpi_enable(&mut q, &mut p);
        assert_eq!(q.pio_read(&mut p, 0xb2, Width::B1), 0xf1);
        q.pio_write(&mut p, 0xb2, Width::B1, APM_ACPI_DISABLE as u32);
        assert!(!q.sci_enabled());
        // Trad starts in ACPI mode.
        let mut t = dev(&QEMU_XEN_TRADITIONAL);
        hvmloader_setup(&mut t, &mut p);
        assert_eq!(t.pio_read(&mut p, 0xb004, Width::B2), 1);
        acpi_enable(&mut t, &mut p);
        assert_eq!(t.pio_read(&mut p, 0xb2, Width::B1), 0, "no SMI needed");
        // APM status is a scratch byte.
        t.pio_write(&mut p, 0xb3, Width::B1, 0xa5);
        assert_eq!(t.pio_read(&mut p, 0xb3, Width::B1), 0xa5);
    }

    /// ACPICA acpi_hw_legacy_sleep: clear all fixed status bits, write SLP_TYP with
    /// SLP_EN clear, then SLP_TYP | SLP_EN (read-modify-write of PM1a_CNT).
    fn linux_sleep(d: &mut Piix4Pm, p: &mut MockPlatform, slp_typ: u16) {
        d.pio_write(p, 0xb000, Width::B2, STS_VALID as u32);
        let cnt = d.pio_read(p, 0xb004, Width::B2) as u16;
        let cnt = (cnt & !(CNT_SLP_TYP | CNT_SLP_EN)) | (slp_typ << CNT_SLP_TYP_SHIFT);
        d.pio_write(p, 0xb004, Width::B2, cnt as u32);
        d.pio_write(p, 0xb004, Width::B2, (cnt | CNT_SLP_EN) as u32);
    }

    #[test]
    fn sleep_states_reach_the_platform() {
        let mut p = MockPlatform::new();
        let mut d = dev(&QEMU_XEN);
        hvmloader_setup(&mut d, &mut p);
        acpi_enable(&mut d, &mut p);
        linux_sleep(&mut d, &mut p, SLP_TYP_S3);
        assert_eq!(p.power, [PowerRequest::Suspend]);
        // SLP_EN is write-only; SLP_TYP and SCI_EN stay.
        assert_eq!(d.pio_read(&mut p, 0xb004, Width::B2), (1 << 10) | 1);
        // Resume: WAK_STS for the wake path, cleared by writing 1.
        d.wake(&mut p);
        assert_ne!(d.pio_read(&mut p, 0xb000, Width::B2) as u16 & STS_WAK, 0);
        d.pio_write(&mut p, 0xb001, Width::B1, 0x80);
        assert_eq!(d.pio_read(&mut p, 0xb000, Width::B2) as u16 & STS_WAK, 0);
        // Unknown SLP_TYP values (Xen's pre-4.1 S3=5, S4=6, S5=7) do nothing.
        for typ in 2..=7 {
            linux_sleep(&mut d, &mut p, typ);
        }
        assert_eq!(p.power.len(), 1);
        linux_sleep(&mut d, &mut p, SLP_TYP_S5);
        assert_eq!(p.power, [PowerRequest::Suspend, PowerRequest::PowerOff]);
        // The stubdom trace Xen documents: 0x0001 then 0x2001 to 0xb004.
        let mut p = MockPlatform::new();
        let mut t = dev(&QEMU_XEN_TRADITIONAL);
        hvmloader_setup(&mut t, &mut p);
        t.pio_write(&mut p, 0xb004, Width::B2, 0x0001);
        assert!(p.power.is_empty());
        t.pio_write(&mut p, 0xb004, Width::B2, 0x2001);
        assert_eq!(p.power, [PowerRequest::PowerOff]);
        // A byte write to the high half alone (pegasos2-style) merges with the low byte.
        t.pio_write(&mut p, 0xb005, Width::B1, 0x24);
        assert_eq!(p.power, [PowerRequest::PowerOff, PowerRequest::Suspend]);
        assert_eq!(t.pio_read(&mut p, 0xb004, Width::B2), 0x0401);
    }

    #[test]
    fn pm_timer_counts_exactly_and_wraps_at_24_bits() {
        let mut p = MockPlatform::new();
        let mut d = dev(&QEMU_XEN);
        hvmloader_setup(&mut d, &mut p);
        assert_eq!(d.pio_read(&mut p, 0xb008, Width::B4), 0);
        p.now_ns = 1_000_000_000;
        assert_eq!(d.pio_read(&mut p, 0xb008, Width::B4), 3_579_545);
        p.now_ns = 1_000;
        assert_eq!(d.pio_read(&mut p, 0xb008, Width::B4), 3); // 3.579545 ticks
        // One full 24-bit period is 2^24 / 3.579545 MHz ~ 4.687 s.
        let period_ns = ((1u128 << 24) * NS_PER_SEC).div_ceil(PM_TIMER_HZ) as u64;
        p.now_ns = period_ns;
        assert_eq!(d.pio_read(&mut p, 0xb008, Width::B4), 0);
        p.now_ns = period_ns - 1;
        assert_eq!(d.pio_read(&mut p, 0xb008, Width::B4), 0x00ff_ffff);
        // Byte and word reads see the same counter.
        p.now_ns = 3_000_000_000;
        let full = d.pio_read(&mut p, 0xb008, Width::B4);
        let lo = d.pio_read(&mut p, 0xb008, Width::B2);
        let hi = d.pio_read(&mut p, 0xb00a, Width::B2);
        assert_eq!(full, lo | hi << 16);
        assert_eq!(hi >> 8, 0, "top byte is 0 (24-bit timer)");
        // Decades of uptime: no overflow, still 24 bits.
        p.now_ns = u64::MAX;
        assert!(d.pio_read(&mut p, 0xb008, Width::B4) <= 0x00ff_ffff);
    }

    #[test]
    fn pm_timer_passes_linux_acpi_pm_triple_read_check() {
        // acpi_pm_read_verified: three back-to-back reads must be ordered (mod wrap).
        let mut p = MockPlatform::new();
        let mut d = dev(&QEMU_XEN);
        hvmloader_setup(&mut d, &mut p);
        let mut last = 0u32;
        for step in 0..20_000u64 {
            let v1 = d.pio_read(&mut p, 0xb008, Width::B4);
            p.advance(step % 977);
            let v2 = d.pio_read(&mut p, 0xb008, Width::B4);
            p.advance(step % 13);
            let v3 = d.pio_read(&mut p, 0xb008, Width::B4);
            // The condition exactly as acpi_pm.c states it.
            #[allow(clippy::nonminimal_bool)]
            let glitch = (v1 > v2 && v1 < v3) || (v2 > v3 && v2 < v1) || (v3 > v1 && v3 < v2);
            assert!(!glitch, "{v1} {v2} {v3}");
            // Monotonic modulo 2^24.
            assert!((v1.wrapping_sub(last) & 0x00ff_ffff) < 0x0080_0000);
            last = v3;
            p.advance(1_000_000);
        }
    }

    #[test]
    fn timer_overflow_raises_sci_only_when_enabled() {
        let mut p = MockPlatform::new();
        let mut d = dev(&QEMU_XEN);
        hvmloader_setup(&mut d, &mut p);
        // TMR_EN without SCI_EN: nothing armed.
        d.pio_write(&mut p, 0xb002, Width::B2, EN_TMR as u32);
        assert_eq!(p.timer(TimerId::PmTimerOverflow), None);
        acpi_enable(&mut d, &mut p);
        d.pio_write(&mut p, 0xb002, Width::B2, EN_TMR as u32);
        let deadline = p.timer(TimerId::PmTimerOverflow).expect("armed");
        // First bit-23 change: 2^23 ticks.
        assert_eq!(
            deadline as u128,
            ((1u128 << 23) * NS_PER_SEC).div_ceil(PM_TIMER_HZ)
        );
        assert_eq!(d.pm_timer(&p), 0);
        p.now_ns = deadline - 1;
        assert_eq!(d.pio_read(&mut p, 0xb000, Width::B2) as u16 & STS_TMR, 0);
        p.now_ns = deadline;
        assert_eq!(d.pm_timer(&p), 1 << 23);
        d.on_timer(&mut p, TimerId::PmTimerOverflow);
        assert!(p.irq(9));
        assert_eq!(p.timer(TimerId::PmTimerOverflow), None, "level pending");
        assert_eq!(
            d.pio_read(&mut p, 0xb000, Width::B2) as u16 & STS_TMR,
            STS_TMR
        );
        // The SCI handler clears TMR_STS: the line drops, the timer re-arms at 2^24.
        d.pio_write(&mut p, 0xb000, Width::B2, STS_TMR as u32);
        assert!(!p.irq(9));
        assert_eq!(
            p.timer(TimerId::PmTimerOverflow).map(|t| t as u128),
            Some(((1u128 << 24) * NS_PER_SEC).div_ceil(PM_TIMER_HZ))
        );
        // Disabling TMR_EN cancels; TMR_STS still latches lazily, without an SCI.
        d.pio_write(&mut p, 0xb002, Width::B2, 0);
        assert_eq!(p.timer(TimerId::PmTimerOverflow), None);
        p.advance(5_000_000_000);
        assert_ne!(d.pio_read(&mut p, 0xb000, Width::B2) as u16 & STS_TMR, 0);
        assert!(!p.irq(9));
    }

    #[test]
    fn power_button_and_gpe_drive_the_sci() {
        let mut p = MockPlatform::new();
        let mut d = dev(&QEMU_XEN);
        hvmloader_setup(&mut d, &mut p);
        d.press_power_button(&mut p);
        assert!(!p.irq(9), "not in ACPI mode");
        // OS: acpi_enable, clear status, enable the power button event.
        acpi_enable(&mut d, &mut p);
        assert!(!p.irq(9));
        d.pio_write(&mut p, 0xb000, Width::B2, STS_PWRBTN as u32);
        d.pio_write(&mut p, 0xb002, Width::B2, EN_PWRBTN as u32);
        d.press_power_button(&mut p);
        assert!(p.irq(9));
        assert_eq!(p.irq_log.iter().filter(|&&(g, l)| g == 9 && l).count(), 1);
        // Byte write of 0x01 to PM1a_STS+1 clears PWRBTN_STS.
        d.pio_write(&mut p, 0xb001, Width::B1, 0x01);
        assert!(!p.irq(9));
        assert_eq!(d.pio_read(&mut p, 0xb000, Width::B2), 0);
        // GPE0: 2 STS bytes then 2 EN bytes at 0xafe0.
        d.raise_gpe(&mut p, 2);
        assert!(!p.irq(9));
        d.pio_write(&mut p, 0xafe2, Width::B1, 0x04);
        assert!(p.irq(9));
        assert_eq!(d.pio_read(&mut p, 0xafe0, Width::B4), 0x0004_0004);
        // Writing 0 to STS changes nothing; writing 1 clears.
        d.pio_write(&mut p, 0xafe0, Width::B1, 0x00);
        assert!(p.irq(9));
        d.pio_write(&mut p, 0xafe0, Width::B1, 0x04);
        assert!(!p.irq(9));
        // Bits beyond the block are ignored.
        d.raise_gpe(&mut p, 16);
        d.raise_gpe(&mut p, u16::MAX);
        assert_eq!(d.pio_read(&mut p, 0xafe0, Width::B2), 0);
        // SCI_EN off masks everything.
        d.raise_gpe(&mut p, 2);
        assert!(p.irq(9));
        d.pio_write(&mut p, 0xb2, Width::B1, APM_ACPI_DISABLE as u32);
        assert!(!p.irq(9));
    }

    #[test]
    fn unused_block_bytes_read_zero_and_outside_reads_open_bus() {
        let mut p = MockPlatform::new();
        let mut d = dev(&QEMU_XEN);
        hvmloader_setup(&mut d, &mut p);
        for off in [6u16, 7, 0x0c, 0x10, 0x20, 0x3f] {
            assert_eq!(d.pio_read(&mut p, 0xb000 + off, Width::B1), 0, "+{off:#x}");
        }
        // A dword at the last byte of the block: one byte inside, three outside.
        assert_eq!(d.pio_read(&mut p, 0xb03f, Width::B4), 0xffff_ff00);
        // PM block disabled: its ports are not ours.
        d.cfg_write(&mut p, PMREGMISC as u8, Width::B1, 0);
        assert_eq!(d.pio_read(&mut p, 0xb004, Width::B2), 0xffff);
    }

    #[test]
    fn state_round_trip_restores_sci_and_timer() {
        let mut p = MockPlatform::new();
        let d = interesting_pm();
        let bytes = save_record(&d, 0);
        let mut q = dev(&QEMU_XEN);
        load_record(&mut q, &bytes).unwrap();
        p.now_ns = 5_000_000_000;
        q.post_load(&mut p);
        assert!(p.irq(9));
        assert_eq!(q.pm_io_base(), Some(0xb000));
        assert_eq!(q.pio_read(&mut p, 0xb3, Width::B1), 0x5a);
        // Inconsistent SCI level refused.
        let mut bad = bytes.clone();
        // Body: config 256, PM1 regs 6, GPE 16, APM 2, timer check 8, then sci_level.
        let sci_at = 24 + 256 + 6 + 16 + 2 + 8;
        assert_eq!(bad[sci_at], 1);
        bad[sci_at] = 0;
        assert!(matches!(
            load_record(&mut q, &bad),
            Err(LoadError::Invalid {
                field: "sci_level",
                ..
            })
        ));
        // A record claiming another device identity is refused.
        let mut bad = bytes.clone();
        bad[24] = 0x86 ^ 0xff;
        assert!(matches!(
            load_record(&mut q, &bad),
            Err(LoadError::Invalid {
                field: "config",
                ..
            })
        ));
    }

    #[test]
    fn hammer_ports_and_config_never_panics() {
        for profile in crate::profile::ALL {
            let mut p = MockPlatform::new();
            let mut d = dev(profile);
            let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ profile.pm.revision as u64;
            let mut next = || {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed
            };
            for _ in 0..200_000 {
                let x = next();
                let w = [Width::B1, Width::B2, Width::B4][(x >> 8) as usize % 3];
                let v = (x >> 16) as u32;
                let base = d.pm_io_base().unwrap_or(0xb000);
                let port = match (x >> 40) % 5 {
                    0 => base.wrapping_add((x >> 44) as u16 % 0x44),
                    1 => 0xafdc + (x >> 44) as u16 % 12,
                    2 => 0xb0 + (x >> 44) as u16 % 6,
                    3 => (x >> 44) as u16,
                    _ => 0xb000 + (x >> 44) as u16 % 0x44,
                };
                match (x >> 60) % 8 {
                    0 => {
                        d.cfg_write(&mut p, (x >> 24) as u8, w, v);
                    }
                    1 => {
                        d.cfg_read((x >> 24) as u8, w);
                    }
                    2 | 3 => d.pio_write(&mut p, port, w, v),
                    4 | 5 => {
                        d.pio_read(&mut p, port, w);
                    }
                    6 => p.advance((x >> 20) % 6_000_000_000),
                    _ => {
                        if let Some(t) = p.timer(TimerId::PmTimerOverflow) {
                            p.now_ns = p.now_ns.max(t);
                        }
                        d.on_timer(&mut p, TimerId::PmTimerOverflow);
                        if x & 0x100 != 0 {
                            d.press_power_button(&mut p);
                        }
                    }
                }
                // The SCI line always matches the registers.
                assert_eq!(p.irq(9), d.compute_sci());
            }
            let bytes = save_record(&d, 0);
            let mut q = dev(profile);
            load_record(&mut q, &bytes).expect("any reachable state saves and loads");
        }
    }
}
