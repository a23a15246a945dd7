//! ACPI table builders (ACPI 6.5 §5.2): RSDP, XSDT, RSDT, FADT, FACS, MADT, DSDT.
//!
//! Everything is written little-endian into a caller-provided byte area that will live
//! at guest-physical `base`; every table gets a correct checksum. The layout choices
//! follow Xen's `tools/libacpi` (facts only, see research/xen-hvm.md §3):
//!
//! * FADT revision 4 (244 bytes, the ACPI 2.0..4.0 layout), PM block at the "V1"
//!   ports, SCI on ISA IRQ 9, SMI_CMD 0xb2 with ACPI_ENABLE 0xf1 / ACPI_DISABLE 0xf0,
//!   reset register 0xcf9 <- 6, flags WBINVD | PROC_C1 | FIX_RTC | RESET_REG_SUP |
//!   USE_PLATFORM_CLOCK. Unlike Xen (whose PM timer is its own 32-bit one) we do *not*
//!   set TMR_VAL_EXT: the PIIX4 timer we emulate is 24 bits wide.
//! * MADT: one enabled xAPIC entry per vCPU (APIC ID = vCPU index), IOAPIC id 1 at
//!   0xfec00000 with GSI base 0, LINT1 = NMI on all processors, and interrupt source
//!   overrides (see [`INTERRUPT_OVERRIDES`] for the polarity decision).

use crate::aml::{self, Aml};
use crate::platform as p;

pub const HEADER_LEN: usize = 36;
pub const RSDP_LEN: usize = 36;
pub const FADT_LEN: usize = 244;
pub const FADT_REVISION: u8 = 4;
pub const FACS_LEN: usize = 64;

pub const OEM_ID: &[u8; 6] = b"CHASIS";
pub const OEM_TABLE_ID: &[u8; 8] = b"CHASSIS ";
pub const OEM_REVISION: u32 = 1;
pub const CREATOR_ID: &[u8; 4] = b"CHFW";
pub const CREATOR_REVISION: u32 = 1;

/// FADT fixed feature flags (ACPI 6.5 Table 5.10).
pub mod fadt_flags {
    pub const WBINVD: u32 = 1 << 0;
    pub const PROC_C1: u32 = 1 << 2;
    pub const FIX_RTC: u32 = 1 << 6;
    pub const TMR_VAL_EXT: u32 = 1 << 8;
    pub const RESET_REG_SUP: u32 = 1 << 10;
    pub const USE_PLATFORM_CLOCK: u32 = 1 << 15;
}

/// IAPC_BOOT_ARCH: LEGACY_DEVICES | 8042.
pub const IAPC_BOOT_ARCH: u16 = 0x0003;

/// MPS INTI flags (ACPI 6.5 Table 5.50): polarity bits 0-1, trigger mode bits 2-3.
pub mod inti {
    pub const CONFORMING: u16 = 0x0000;
    pub const ACTIVE_HIGH: u16 = 0x0001;
    pub const ACTIVE_LOW: u16 = 0x0003;
    pub const EDGE: u16 = 0x0004;
    pub const LEVEL: u16 = 0x000c;
}

/// Interrupt source overrides: (ISA IRQ, GSI, flags).
///
/// * IRQ0 -> GSI2 (the PIT on the IOAPIC's pin 2), bus-conforming (ISA: edge, high).
/// * IRQ9 -> GSI9 level, active-high: the SCI, as QEMU describes it.
/// * IRQs 5, 10, 11 (the PIIX3 PIRQ links) level, active-low, as Xen's libacpi does.
///   This matches what Linux applies to a static-GSI `_PRT` entry (level, active-low)
///   and to the first user of a legacy pin, so the MADT and the DSDT never disagree
///   (a disagreement makes Linux refuse the shared IRQ with -EBUSY).
///
/// Polarity is descriptive only on this platform: the device model drives a PCI INTx
/// line as a *logical* level (KVM_IRQ_LINE level 1 = asserted, as KVM documents it,
/// whatever the pin's polarity), so the hypervisor's IOAPIC must not invert a line
/// whose redirection entry says active-low. KVM's in-kernel IOAPIC already behaves so;
/// the software IOAPIC of the `emu` backend must do the same.
pub const INTERRUPT_OVERRIDES: [(u8, u32, u16); 5] = [
    (0, 2, inti::CONFORMING),
    (5, 5, inti::LEVEL | inti::ACTIVE_LOW),
    (9, 9, inti::LEVEL | inti::ACTIVE_HIGH),
    (10, 10, inti::LEVEL | inti::ACTIVE_LOW),
    (11, 11, inti::LEVEL | inti::ACTIVE_LOW),
];

/// Sum of all bytes, mod 256.
pub fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
}

/// The byte that makes `bytes` (with that byte currently 0) sum to zero.
pub fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(sum(bytes))
}

/// Sets the checksum byte at `at` so that the whole slice sums to zero.
pub fn fix_checksum(bytes: &mut [u8], at: usize) {
    if at < bytes.len() {
        bytes[at] = 0;
        bytes[at] = checksum(bytes);
    }
}

fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
fn put64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// The common 36-byte system description table header (checksum left at 0).
pub fn write_header(b: &mut [u8], sig: &[u8; 4], len: u32, rev: u8) {
    b[0..4].copy_from_slice(sig);
    put32(b, 4, len);
    b[8] = rev;
    b[9] = 0;
    b[10..16].copy_from_slice(OEM_ID);
    b[16..24].copy_from_slice(OEM_TABLE_ID);
    put32(b, 24, OEM_REVISION);
    b[28..32].copy_from_slice(CREATOR_ID);
    put32(b, 32, CREATOR_REVISION);
}

/// Generic Address Structure (12 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gas {
    pub space: u8,
    pub bit_width: u8,
    pub bit_offset: u8,
    pub access_size: u8,
    pub address: u64,
}

impl Gas {
    pub const SYSTEM_IO: u8 = 1;
    pub fn io(port: u16, bit_width: u8, access_size: u8) -> Gas {
        Gas {
            space: Self::SYSTEM_IO,
            bit_width,
            bit_offset: 0,
            access_size,
            address: port as u64,
        }
    }
    pub fn write(&self, b: &mut [u8], off: usize) {
        b[off] = self.space;
        b[off + 1] = self.bit_width;
        b[off + 2] = self.bit_offset;
        b[off + 3] = self.access_size;
        put64(b, off + 4, self.address);
    }
}

/// RSDP revision 2 (36 bytes) pointing at both the RSDT and the XSDT.
pub fn rsdp(rsdt: u32, xsdt: u64) -> [u8; RSDP_LEN] {
    let mut b = [0u8; RSDP_LEN];
    b[0..8].copy_from_slice(b"RSD PTR ");
    b[9..15].copy_from_slice(OEM_ID);
    b[15] = 2;
    put32(&mut b, 16, rsdt);
    put32(&mut b, 20, RSDP_LEN as u32);
    put64(&mut b, 24, xsdt);
    b[8] = checksum(&b[..20]);
    b[32] = checksum(&b);
    b
}

/// FADT (revision 4, 244 bytes) into `b[..FADT_LEN]`.
pub fn write_fadt(b: &mut [u8], facs: u64, dsdt: u64) {
    let b = &mut b[..FADT_LEN];
    b.fill(0);
    write_header(b, b"FACP", FADT_LEN as u32, FADT_REVISION);
    put32(b, 36, facs as u32); // FIRMWARE_CTRL
    put32(b, 40, dsdt as u32); // DSDT
    b[45] = 0; // Preferred_PM_Profile: unspecified
    put16(b, 46, p::SCI_IRQ as u16);
    put32(b, 48, p::SMI_CMD as u32);
    b[52] = p::ACPI_ENABLE;
    b[53] = p::ACPI_DISABLE;
    put32(b, 56, p::PM1A_EVT as u32);
    put32(b, 64, p::PM1A_CNT as u32);
    put32(b, 76, p::PM_TMR as u32);
    put32(b, 80, p::GPE0_BASE as u32);
    b[88] = 4; // PM1_EVT_LEN
    b[89] = 2; // PM1_CNT_LEN
    b[91] = 4; // PM_TMR_LEN
    b[92] = p::GPE0_LEN;
    put16(b, 96, 0x0fff); // P_LVL2_LAT > 100: no C2
    put16(b, 98, 0x0fff); // P_LVL3_LAT > 1000: no C3
    b[108] = 0x32; // CENTURY: CMOS index of the century byte
    put16(b, 109, IAPC_BOOT_ARCH);
    put32(
        b,
        112,
        fadt_flags::WBINVD
            | fadt_flags::PROC_C1
            | fadt_flags::FIX_RTC
            | fadt_flags::RESET_REG_SUP
            | fadt_flags::USE_PLATFORM_CLOCK,
    );
    Gas::io(p::RESET_PORT, 8, 1).write(b, 116);
    b[128] = p::RESET_VALUE;
    put64(b, 132, facs); // X_FIRMWARE_CTRL
    put64(b, 140, dsdt); // X_DSDT
    Gas::io(p::PM1A_EVT, 32, 0).write(b, 148);
    Gas::io(p::PM1A_CNT, 16, 0).write(b, 172);
    Gas::io(p::PM_TMR, 32, 0).write(b, 208);
    Gas::io(p::GPE0_BASE, 8 * p::GPE0_LEN, 0).write(b, 220);
    fix_checksum(b, 9);
}

/// FACS (64 bytes, no checksum) into `b[..FACS_LEN]`.
pub fn write_facs(b: &mut [u8]) {
    let b = &mut b[..FACS_LEN];
    b.fill(0);
    b[0..4].copy_from_slice(b"FACS");
    put32(b, 4, FACS_LEN as u32);
    b[32] = 2; // Version
}

/// MADT length for `vcpus` processors.
pub fn madt_len(vcpus: u32) -> usize {
    HEADER_LEN + 8 + 8 * vcpus as usize + 12 + 10 * INTERRUPT_OVERRIDES.len() + 6
}

/// MADT (revision 3) into `b[..madt_len(vcpus)]`; `vcpus` is clamped to 1..=MAX_VCPUS.
pub fn write_madt(b: &mut [u8], vcpus: u32) -> usize {
    let vcpus = vcpus.clamp(1, p::MAX_VCPUS);
    let len = madt_len(vcpus);
    let b = &mut b[..len];
    b.fill(0);
    write_header(b, b"APIC", len as u32, 3);
    put32(b, 36, p::LAPIC_ADDR);
    put32(b, 40, 1); // PCAT_COMPAT: dual 8259s present
    let mut o = 44;
    for cpu in 0..vcpus {
        b[o] = 0; // Processor Local APIC
        b[o + 1] = 8;
        b[o + 2] = cpu as u8; // ACPI Processor UID
        b[o + 3] = cpu as u8; // APIC ID
        put32(b, o + 4, 1); // Enabled
        o += 8;
    }
    b[o] = 1; // I/O APIC
    b[o + 1] = 12;
    b[o + 2] = p::IOAPIC_ID;
    put32(b, o + 4, p::IOAPIC_ADDR);
    put32(b, o + 8, 0); // GSI base
    o += 12;
    for (irq, gsi, flags) in INTERRUPT_OVERRIDES {
        b[o] = 2; // Interrupt Source Override
        b[o + 1] = 10;
        b[o + 2] = 0; // ISA
        b[o + 3] = irq;
        put32(b, o + 4, gsi);
        put16(b, o + 8, flags);
        o += 10;
    }
    b[o] = 4; // Local APIC NMI
    b[o + 1] = 6;
    b[o + 2] = 0xff; // all processors
    put16(b, o + 3, inti::CONFORMING);
    b[o + 5] = 1; // LINT1
    fix_checksum(b, 9);
    len
}

/// DSDT (revision 2: 64-bit integers) into `b`; returns its length, or None if `b` is
/// too small.
pub fn write_dsdt(b: &mut [u8], link_irqs: [u8; 4]) -> Option<usize> {
    if b.len() < HEADER_LEN {
        return None;
    }
    let (hdr, body) = b.split_at_mut(HEADER_LEN);
    let mut a = Aml::new(body);
    aml::write_dsdt_body(&mut a, link_irqs);
    if a.failed() {
        return None;
    }
    let len = HEADER_LEN + a.len();
    write_header(hdr, b"DSDT", len as u32, 2);
    fix_checksum(&mut b[..len], 9);
    Some(len)
}

/// Where each table went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Placed {
    pub addr: u64,
    pub len: u32,
}

/// The result of [`build`]: the RSDP bytes (to be copied to its scan address) and the
/// placement of every table inside the area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tables {
    pub rsdp: [u8; RSDP_LEN],
    pub xsdt: Placed,
    pub rsdt: Placed,
    pub fadt: Placed,
    pub dsdt: Placed,
    pub facs: Placed,
    pub madt: Placed,
    /// Bytes of the area used (from its start).
    pub used: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// The area is too small or would reach beyond 4 GiB (RSDT entries are 32-bit).
    NoRoom,
}

struct Bump {
    base: u64,
    off: usize,
    cap: usize,
}

impl Bump {
    fn take(&mut self, len: usize, align: usize) -> Result<usize, AcpiError> {
        let start = self
            .off
            .checked_next_multiple_of(align)
            .ok_or(AcpiError::NoRoom)?;
        let end = start.checked_add(len).ok_or(AcpiError::NoRoom)?;
        if end > self.cap {
            return Err(AcpiError::NoRoom);
        }
        self.off = end;
        Ok(start)
    }
    fn addr(&self, off: usize) -> u64 {
        self.base + off as u64
    }
}

/// Builds every table into `area` (which the guest sees at physical `base`).
pub fn build(
    area: &mut [u8],
    base: u64,
    vcpus: u32,
    link_irqs: [u8; 4],
) -> Result<Tables, AcpiError> {
    if base
        .checked_add(area.len() as u64)
        .is_none_or(|e| e > p::FOUR_GIB)
    {
        return Err(AcpiError::NoRoom);
    }
    let mut bump = Bump {
        base,
        off: 0,
        cap: area.len(),
    };
    let facs_off = bump.take(FACS_LEN, 64)?;
    write_facs(&mut area[facs_off..]);

    // The DSDT is written in place with whatever room is left, then trimmed.
    let dsdt_off = bump.take(0, 16)?;
    let dsdt_len = write_dsdt(&mut area[dsdt_off..], link_irqs).ok_or(AcpiError::NoRoom)?;
    bump.take(dsdt_len, 1)?;

    let fadt_off = bump.take(FADT_LEN, 16)?;
    write_fadt(
        &mut area[fadt_off..],
        bump.addr(facs_off),
        bump.addr(dsdt_off),
    );

    let madt_len = madt_len(vcpus.clamp(1, p::MAX_VCPUS));
    let madt_off = bump.take(madt_len, 16)?;
    write_madt(&mut area[madt_off..], vcpus);

    let entries = [bump.addr(fadt_off), bump.addr(madt_off)];

    let xsdt_len = HEADER_LEN + 8 * entries.len();
    let xsdt_off = bump.take(xsdt_len, 16)?;
    {
        let x = &mut area[xsdt_off..xsdt_off + xsdt_len];
        write_header(x, b"XSDT", xsdt_len as u32, 1);
        for (i, e) in entries.iter().enumerate() {
            put64(x, HEADER_LEN + 8 * i, *e);
        }
        fix_checksum(x, 9);
    }

    let rsdt_len = HEADER_LEN + 4 * entries.len();
    let rsdt_off = bump.take(rsdt_len, 16)?;
    {
        let r = &mut area[rsdt_off..rsdt_off + rsdt_len];
        write_header(r, b"RSDT", rsdt_len as u32, 1);
        for (i, e) in entries.iter().enumerate() {
            put32(r, HEADER_LEN + 4 * i, *e as u32);
        }
        fix_checksum(r, 9);
    }

    let placed = |off: usize, len: usize| Placed {
        addr: base + off as u64,
        len: len as u32,
    };
    Ok(Tables {
        rsdp: rsdp(bump.addr(rsdt_off) as u32, bump.addr(xsdt_off)),
        xsdt: placed(xsdt_off, xsdt_len),
        rsdt: placed(rsdt_off, rsdt_len),
        fadt: placed(fadt_off, FADT_LEN),
        dsdt: placed(dsdt_off, dsdt_len),
        facs: placed(facs_off, FACS_LEN),
        madt: placed(madt_off, madt_len),
        used: bump.off,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u64 = 0xdfff_0000;

    fn built(vcpus: u32) -> (Vec<u8>, Tables) {
        let mut area = vec![0xa5u8; p::ACPI_AREA_SIZE as usize];
        let t = build(&mut area, BASE, vcpus, [5, 10, 11, 5]).unwrap();
        (area, t)
    }

    fn table(area: &[u8], t: Placed) -> &[u8] {
        let off = (t.addr - BASE) as usize;
        &area[off..off + t.len as usize]
    }

    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
    }

    #[test]
    fn checksums_are_zero_and_lengths_match() {
        let (area, t) = built(4);
        for (sig, pl) in [
            (b"XSDT", t.xsdt),
            (b"RSDT", t.rsdt),
            (b"FACP", t.fadt),
            (b"DSDT", t.dsdt),
            (b"APIC", t.madt),
        ] {
            let b = table(&area, pl);
            assert_eq!(&b[0..4], sig);
            assert_eq!(u32_at(b, 4), pl.len);
            assert_eq!(sum(b), 0, "{}", core::str::from_utf8(sig).unwrap());
        }
        let facs = table(&area, t.facs);
        assert_eq!(&facs[0..4], b"FACS");
        assert_eq!(t.facs.addr % 64, 0);
        assert!(t.used <= area.len());
    }

    #[test]
    fn rsdp_checksums_and_pointers() {
        let (_, t) = built(1);
        let r = t.rsdp;
        assert_eq!(&r[0..8], b"RSD PTR ");
        assert_eq!(sum(&r[..20]), 0);
        assert_eq!(sum(&r), 0);
        assert_eq!(r[15], 2);
        assert_eq!(u32_at(&r, 16) as u64, t.rsdt.addr);
        assert_eq!(u32_at(&r, 20), 36);
        assert_eq!(u64_at(&r, 24), t.xsdt.addr);
    }

    #[test]
    fn root_tables_point_at_fadt_and_madt() {
        let (area, t) = built(2);
        let x = table(&area, t.xsdt);
        assert_eq!(u64_at(x, 36), t.fadt.addr);
        assert_eq!(u64_at(x, 44), t.madt.addr);
        let r = table(&area, t.rsdt);
        assert_eq!(u32_at(r, 36) as u64, t.fadt.addr);
        assert_eq!(u32_at(r, 40) as u64, t.madt.addr);
    }

    #[test]
    fn fadt_fields() {
        let (area, t) = built(1);
        let f = table(&area, t.fadt);
        assert_eq!(f.len(), 244);
        assert_eq!(f[8], 4);
        assert_eq!(u32_at(f, 36) as u64, t.facs.addr);
        assert_eq!(u32_at(f, 40) as u64, t.dsdt.addr);
        assert_eq!(u64_at(f, 132), t.facs.addr);
        assert_eq!(u64_at(f, 140), t.dsdt.addr);
        assert_eq!(u16::from_le_bytes([f[46], f[47]]), 9);
        assert_eq!(u32_at(f, 48), 0xb2);
        assert_eq!((f[52], f[53]), (0xf1, 0xf0));
        assert_eq!(u32_at(f, 56), 0xb000);
        assert_eq!(u32_at(f, 64), 0xb004);
        assert_eq!(u32_at(f, 76), 0xb008);
        assert_eq!(u32_at(f, 80), 0xafe0);
        assert_eq!((f[88], f[89], f[91], f[92]), (4, 2, 4, 4));
        let flags = u32_at(f, 112);
        assert_eq!(flags & fadt_flags::TMR_VAL_EXT, 0, "24-bit PM timer");
        assert_ne!(flags & fadt_flags::RESET_REG_SUP, 0);
        assert_ne!(flags & fadt_flags::WBINVD, 0);
        assert_ne!(flags & fadt_flags::PROC_C1, 0);
        // RESET_REG: SystemIO, 8 bits, offset 0, byte access, 0xcf9; value 6.
        assert_eq!(&f[116..120], &[1, 8, 0, 1]);
        assert_eq!(u64_at(f, 120), 0xcf9);
        assert_eq!(f[128], 6);
        // X_PM1a_EVT / X_PM1a_CNT / X_PM_TMR / X_GPE0.
        assert_eq!((f[148], f[149], u64_at(f, 152)), (1, 32, 0xb000));
        assert_eq!((f[172], f[173], u64_at(f, 176)), (1, 16, 0xb004));
        assert_eq!((f[208], f[209], u64_at(f, 212)), (1, 32, 0xb008));
        assert_eq!((f[220], f[221], u64_at(f, 224)), (1, 32, 0xafe0));
    }

    #[test]
    fn madt_entries() {
        let (area, t) = built(3);
        let m = table(&area, t.madt);
        assert_eq!(u32_at(m, 36), 0xfee0_0000);
        assert_eq!(u32_at(m, 40), 1);
        let mut o = 44;
        let mut lapics = vec![];
        let mut isos = vec![];
        let mut ioapic = None;
        let mut nmi = false;
        while o < m.len() {
            let (ty, len) = (m[o], m[o + 1] as usize);
            assert!(len >= 2 && o + len <= m.len());
            match ty {
                0 => lapics.push((m[o + 2], m[o + 3], u32_at(m, o + 4))),
                1 => ioapic = Some((m[o + 2], u32_at(m, o + 4), u32_at(m, o + 8))),
                2 => isos.push((
                    m[o + 3],
                    u32_at(m, o + 4),
                    u16::from_le_bytes([m[o + 8], m[o + 9]]),
                )),
                4 => nmi = m[o + 2] == 0xff && m[o + 5] == 1,
                _ => panic!("unexpected entry {ty}"),
            }
            o += len;
        }
        assert_eq!(o, m.len());
        assert_eq!(lapics, vec![(0, 0, 1), (1, 1, 1), (2, 2, 1)]);
        assert_eq!(ioapic, Some((1, 0xfec0_0000, 0)));
        assert_eq!(
            isos,
            vec![
                (0, 2, 0),
                (5, 5, 0xf),
                (9, 9, 0xd),
                (10, 10, 0xf),
                (11, 11, 0xf)
            ]
        );
        assert!(nmi);
    }

    #[test]
    fn vcpu_count_is_clamped() {
        let (area, t) = built(0);
        assert_eq!(t.madt.len as usize, madt_len(1));
        assert_eq!(sum(table(&area, t.madt)), 0);
        let (area, t) = built(100_000);
        assert_eq!(t.madt.len as usize, madt_len(p::MAX_VCPUS));
        assert_eq!(sum(table(&area, t.madt)), 0);
    }

    #[test]
    fn too_small_or_too_high_areas_fail_cleanly() {
        let mut small = [0u8; 512];
        assert_eq!(
            build(&mut small, BASE, 1, [5, 10, 11, 5]),
            Err(AcpiError::NoRoom)
        );
        let mut area = vec![0u8; 0x10000];
        assert_eq!(
            build(&mut area, 0xffff_8000, 1, [5, 10, 11, 5]),
            Err(AcpiError::NoRoom)
        );
    }

    #[test]
    fn dsdt_body_is_the_aml_encoder_output() {
        let (area, t) = built(1);
        let d = table(&area, t.dsdt);
        assert_eq!(d[8], 2);
        let mut buf = vec![0u8; 4096];
        let mut a = Aml::new(&mut buf);
        aml::write_dsdt_body(&mut a, [5, 10, 11, 5]);
        assert_eq!(&d[36..], a.bytes());
        // \_S5 first.
        assert_eq!(
            &d[36..49],
            &[0x08, 0x5c, b'_', b'S', b'5', b'_', 0x12, 6, 4, 0, 0, 0, 0]
        );
    }

    /// If Debian's acpica-tools are installed, `iasl -d` must disassemble our DSDT and
    /// find what we put in it.
    #[test]
    fn iasl_disassembles_dsdt_if_available() {
        use std::process::Command;
        if Command::new("iasl").arg("-v").output().is_err() {
            eprintln!("iasl not installed; skipping");
            return;
        }
        let (area, t) = built(2);
        let dir = std::env::temp_dir().join(format!("chassis-fw-iasl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, pl) in [("dsdt", t.dsdt), ("facp", t.fadt), ("apic", t.madt)] {
            let aml = dir.join(format!("{name}.dat"));
            std::fs::write(&aml, table(&area, pl)).unwrap();
            let out = Command::new("iasl")
                .arg("-d")
                .arg(&aml)
                .current_dir(&dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "iasl -d {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let dsl = std::fs::read_to_string(dir.join(format!("{name}.dsl"))).unwrap();
            match name {
                "dsdt" => {
                    assert!(dsl.contains("Name (\\_S5, Package (0x04)"), "{dsl}");
                    assert!(dsl.contains("Device (PCI0)"), "{dsl}");
                    assert!(dsl.contains("EisaId (\"PNP0A03\")"), "{dsl}");
                    assert!(dsl.contains("Name (_PRT, Package (0x7C)"), "{dsl}");
                    assert!(dsl.contains("0x001FFFFF"), "{dsl}");
                    assert!(dsl.contains("WordBusNumber (ResourceProducer"), "{dsl}");
                    assert!(dsl.contains("0xFEBFFFFF"), "{dsl}");
                    assert!(!dsl.contains("Unknown"), "{dsl}");
                }
                "facp" => {
                    assert!(dsl.contains("[FACP]"), "{dsl}");
                    assert!(!dsl.contains("Invalid"), "{dsl}");
                }
                _ => assert!(dsl.contains("Interrupt Source Override"), "{dsl}"),
            }
        }
        if std::env::var_os("CHASSIS_FW_KEEP").is_some() {
            eprintln!("disassembly kept in {}", dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
