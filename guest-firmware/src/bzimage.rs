//! Linux bzImage direct boot through the 64-bit boot protocol
//! (Documentation/arch/x86/boot.rst): header parsing, load placement and the
//! `boot_params` ("zero page") contents.
//!
//! The image is untrusted input: every offset is bounds-checked and nothing panics.

use crate::e820;

/// Offsets in the image / in `boot_params` (the setup header sits at the same offset in
/// both).
pub mod off {
    pub const SETUP_SECTS: usize = 0x1f1;
    pub const JUMP: usize = 0x200;
    pub const HEADER_MAGIC: usize = 0x202;
    pub const VERSION: usize = 0x206;
    pub const KERNEL_VERSION: usize = 0x20e;
    pub const TYPE_OF_LOADER: usize = 0x210;
    pub const LOADFLAGS: usize = 0x211;
    pub const RAMDISK_IMAGE: usize = 0x218;
    pub const RAMDISK_SIZE: usize = 0x21c;
    pub const CMD_LINE_PTR: usize = 0x228;
    pub const INITRD_ADDR_MAX: usize = 0x22c;
    pub const KERNEL_ALIGNMENT: usize = 0x230;
    pub const RELOCATABLE_KERNEL: usize = 0x234;
    pub const XLOADFLAGS: usize = 0x236;
    pub const CMDLINE_SIZE: usize = 0x238;
    pub const PREF_ADDRESS: usize = 0x258;
    pub const INIT_SIZE: usize = 0x260;
    /// boot_params-only fields.
    pub const ACPI_RSDP_ADDR: usize = 0x070;
    pub const EXT_RAMDISK_IMAGE: usize = 0x0c0;
    pub const EXT_RAMDISK_SIZE: usize = 0x0c4;
    pub const EXT_CMD_LINE_PTR: usize = 0x0c8;
    pub const E820_ENTRIES: usize = 0x1e8;
    pub const E820_TABLE: usize = 0x2d0;
    /// Where the setup header copy must stop (edd_mbr_sig_buffer follows).
    pub const HEADER_LIMIT: usize = 0x290;
}

pub const HDRS: u32 = 0x5372_6448; // "HdrS"
pub const MIN_PROTOCOL: u16 = 0x020c;
pub const RSDP_PROTOCOL: u16 = 0x020e;
pub const XLF_KERNEL_64: u16 = 1 << 0;
pub const LOADED_HIGH: u8 = 1 << 0;
pub const TYPE_OF_LOADER_UNDEFINED: u8 = 0xff;
pub const BOOT_PARAMS_SIZE: usize = 4096;
pub const E820_MAX_ZEROPAGE: usize = 128;
/// Offset of the 64-bit entry point in the protected-mode code.
pub const ENTRY_64_OFFSET: u64 = 0x200;
/// Longest version string we accept.
const VERSION_MAX: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BzError {
    /// Shorter than the setup header we need.
    TooSmall,
    /// No "HdrS" at 0x202: not a bzImage.
    NotBzImage,
    /// Boot protocol older than 2.12.
    OldProtocol(u16),
    /// xloadflags lacks XLF_KERNEL_64.
    No64BitEntry,
    /// loadflags lacks LOADED_HIGH (a zImage).
    NotLoadedHigh,
    /// The setup header claims to end beyond the image or before init_size.
    BadHeaderLength,
    /// setup_sects puts the protected-mode code at or beyond the image end.
    NoPayload,
    /// No place in RAM for the kernel (pref_address is taken and it is not relocatable,
    /// or nothing fits).
    NoRoom,
}

impl core::fmt::Display for BzError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BzError::TooSmall => f.write_str("kernel image too small for a setup header"),
            BzError::NotBzImage => f.write_str("kernel image has no HdrS signature"),
            BzError::OldProtocol(v) => {
                write!(f, "kernel boot protocol {}.{:02} < 2.12", v >> 8, v & 0xff)
            }
            BzError::No64BitEntry => f.write_str("kernel has no 64-bit entry (XLF_KERNEL_64)"),
            BzError::NotLoadedHigh => f.write_str("kernel is not a bzImage (LOADED_HIGH clear)"),
            BzError::BadHeaderLength => f.write_str("kernel setup header length is invalid"),
            BzError::NoPayload => f.write_str("kernel image has no protected-mode code"),
            BzError::NoRoom => f.write_str("no free RAM to load the kernel at"),
        }
    }
}

fn rd8(b: &[u8], o: usize) -> Option<u8> {
    b.get(o).copied()
}
fn rd16(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(o..o.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn rd32(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(o..o.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn rd64(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(o..o.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// What the firmware needs to know about a bzImage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kernel<'a> {
    pub protocol: u16,
    /// Offset of the protected-mode code in the image: (setup_sects or 4, + 1) * 512.
    pub pm_offset: usize,
    /// Length of the protected-mode code (to the end of the image).
    pub pm_len: usize,
    /// End of the setup header in the image (0x202 + byte at 0x201), clamped to 0x290.
    pub header_end: usize,
    pub loadflags: u8,
    pub xloadflags: u16,
    pub relocatable: bool,
    pub kernel_alignment: u32,
    pub pref_address: u64,
    pub init_size: u32,
    pub cmdline_size: u32,
    pub initrd_addr_max: u32,
    /// The human-readable version string, if present and printable.
    pub version: Option<&'a [u8]>,
}

/// Parses and checks a bzImage's setup header.
pub fn parse(image: &[u8]) -> Result<Kernel<'_>, BzError> {
    let need = off::INIT_SIZE + 4;
    if image.len() < need {
        return Err(BzError::TooSmall);
    }
    let r8 = |o| rd8(image, o).ok_or(BzError::TooSmall);
    let r16 = |o| rd16(image, o).ok_or(BzError::TooSmall);
    let r32 = |o| rd32(image, o).ok_or(BzError::TooSmall);
    if r32(off::HEADER_MAGIC)? != HDRS {
        return Err(BzError::NotBzImage);
    }
    let protocol = r16(off::VERSION)?;
    if protocol < MIN_PROTOCOL {
        return Err(BzError::OldProtocol(protocol));
    }
    let header_end = off::HEADER_MAGIC + r8(off::JUMP + 1)? as usize;
    if header_end < need || header_end > image.len() {
        return Err(BzError::BadHeaderLength);
    }
    let loadflags = r8(off::LOADFLAGS)?;
    if loadflags & LOADED_HIGH == 0 {
        return Err(BzError::NotLoadedHigh);
    }
    let xloadflags = r16(off::XLOADFLAGS)?;
    if xloadflags & XLF_KERNEL_64 == 0 {
        return Err(BzError::No64BitEntry);
    }
    let sects = match r8(off::SETUP_SECTS)? {
        0 => 4,
        n => n as usize,
    };
    let pm_offset = (sects + 1) * 512;
    if pm_offset >= image.len() || pm_offset < header_end {
        return Err(BzError::NoPayload);
    }
    let version = match r16(off::KERNEL_VERSION)? {
        0 => None,
        kv => version_string(&image[..pm_offset], kv as usize + 0x200),
    };
    Ok(Kernel {
        protocol,
        pm_offset,
        pm_len: image.len() - pm_offset,
        header_end: header_end.min(off::HEADER_LIMIT),
        loadflags,
        xloadflags,
        relocatable: r8(off::RELOCATABLE_KERNEL)? != 0,
        kernel_alignment: r32(off::KERNEL_ALIGNMENT)?,
        pref_address: rd64(image, off::PREF_ADDRESS).ok_or(BzError::TooSmall)?,
        init_size: r32(off::INIT_SIZE)?,
        cmdline_size: r32(off::CMDLINE_SIZE)?,
        initrd_addr_max: r32(off::INITRD_ADDR_MAX)?,
        version,
    })
}

/// NUL-terminated printable string at `at` within `setup` (the real-mode part).
fn version_string(setup: &[u8], at: usize) -> Option<&[u8]> {
    let tail = setup.get(at..)?;
    let tail = &tail[..tail.len().min(VERSION_MAX)];
    let nul = tail.iter().position(|&c| c == 0)?;
    let s = &tail[..nul];
    (!s.is_empty() && s.iter().all(|c| (0x20..0x7f).contains(c))).then_some(s)
}

impl Kernel<'_> {
    /// Bytes the kernel needs at its load address (the larger of init_size and the
    /// protected-mode code), page aligned.
    pub fn span(&self) -> u64 {
        (self.init_size as u64)
            .max(self.pm_len as u64)
            .next_multiple_of(0x1000)
    }

    /// Most command-line bytes (without the NUL) the kernel accepts.
    pub fn cmdline_max(&self) -> usize {
        self.cmdline_size as usize
    }

    /// Chooses where to copy the protected-mode code: `pref_address` if
    /// `[pref, pref + span)` is RAM below 4 GiB and clear of every `avoid` range;
    /// otherwise, for a relocatable kernel, the lowest `kernel_alignment`-aligned
    /// address that is (preferring addresses at or above `pref_address`).
    pub fn choose_load_addr(&self, map: &e820::Map, avoid: &[(u64, u64)]) -> Result<u64, BzError> {
        let span = self.span();
        let ok = |a: u64| {
            a >= 0x10_0000
                && a.checked_add(span)
                    .is_some_and(|end| end <= crate::platform::FOUR_GIB)
                && map.is_ram(a, span)
                && !avoid
                    .iter()
                    .any(|(s, e)| e820::overlaps(a, span, *s, e.saturating_sub(*s)))
        };
        if ok(self.pref_address) {
            return Ok(self.pref_address);
        }
        if !self.relocatable {
            return Err(BzError::NoRoom);
        }
        let align = match self.kernel_alignment {
            a if a.is_power_of_two() && a >= 0x1000 => a as u64,
            _ => 0x20_0000,
        };
        let starts = map
            .entries()
            .iter()
            .filter(|e| e.kind == e820::RAM)
            .map(|e| e.addr)
            .chain(avoid.iter().map(|(_, e)| *e))
            .chain(core::iter::once(self.pref_address));
        let mut best_high: Option<u64> = None;
        let mut best_low: Option<u64> = None;
        for s in starts {
            let Some(c) = s.checked_next_multiple_of(align) else {
                continue;
            };
            if !ok(c) {
                continue;
            }
            let slot = if c >= self.pref_address {
                &mut best_high
            } else {
                &mut best_low
            };
            if slot.is_none_or(|b| c < b) {
                *slot = Some(c);
            }
        }
        best_high.or(best_low).ok_or(BzError::NoRoom)
    }
}

/// Truncates a command line at its first NUL and to `max` bytes.
pub fn cmdline_bytes(raw: &[u8], max: usize) -> &[u8] {
    let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
    &raw[..end.min(max)]
}

/// What the loader tells the kernel.
#[derive(Clone, Copy, Debug)]
pub struct BootSetup<'a> {
    pub cmdline_addr: u64,
    /// (address, size) of the initial ramdisk.
    pub ramdisk: Option<(u64, u64)>,
    pub e820: &'a [e820::Entry],
    pub rsdp: u64,
}

fn put(b: &mut [u8], o: usize, v: &[u8]) {
    if let Some(dst) = o.checked_add(v.len()).and_then(|end| b.get_mut(o..end)) {
        dst.copy_from_slice(v);
    }
}

/// Fills a `boot_params` page: zeroed, the image's setup header copied in, then the
/// loader's fields. Returns how many e820 entries were written.
pub fn fill_boot_params(
    bp: &mut [u8; BOOT_PARAMS_SIZE],
    image: &[u8],
    k: &Kernel,
    s: &BootSetup,
) -> usize {
    bp.fill(0);
    if let Some(hdr) = image.get(off::SETUP_SECTS..k.header_end) {
        bp[off::SETUP_SECTS..k.header_end].copy_from_slice(hdr);
    }
    bp[off::TYPE_OF_LOADER] = TYPE_OF_LOADER_UNDEFINED;
    put(
        bp,
        off::CMD_LINE_PTR,
        &(s.cmdline_addr as u32).to_le_bytes(),
    );
    put(
        bp,
        off::EXT_CMD_LINE_PTR,
        &((s.cmdline_addr >> 32) as u32).to_le_bytes(),
    );
    let (rd_addr, rd_size) = s.ramdisk.unwrap_or((0, 0));
    put(bp, off::RAMDISK_IMAGE, &(rd_addr as u32).to_le_bytes());
    put(
        bp,
        off::EXT_RAMDISK_IMAGE,
        &((rd_addr >> 32) as u32).to_le_bytes(),
    );
    put(bp, off::RAMDISK_SIZE, &(rd_size as u32).to_le_bytes());
    put(
        bp,
        off::EXT_RAMDISK_SIZE,
        &((rd_size >> 32) as u32).to_le_bytes(),
    );
    let n = s.e820.len().min(E820_MAX_ZEROPAGE);
    bp[off::E820_ENTRIES] = n as u8;
    for (i, e) in s.e820.iter().take(n).enumerate() {
        put(bp, off::E820_TABLE + 20 * i, &e.to_bytes());
    }
    if k.protocol >= RSDP_PROTOCOL {
        put(bp, off::ACPI_RSDP_ADDR, &s.rsdp.to_le_bytes());
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e820::{Entry, Map, RAM};

    /// A synthetic bzImage: 4 setup sectors + 1 boot sector, `pm` bytes of payload.
    fn image(pm: usize) -> Vec<u8> {
        let mut b = vec![0u8; 5 * 512 + pm];
        b[off::SETUP_SECTS] = 4;
        b[0x1fe] = 0x55;
        b[0x1ff] = 0xaa;
        b[off::JUMP] = 0xeb;
        b[off::JUMP + 1] = 0x6a; // header ends at 0x26c
        b[off::HEADER_MAGIC..off::HEADER_MAGIC + 4].copy_from_slice(b"HdrS");
        b[off::VERSION..off::VERSION + 2].copy_from_slice(&0x020fu16.to_le_bytes());
        b[off::KERNEL_VERSION..off::KERNEL_VERSION + 2].copy_from_slice(&0x0300u16.to_le_bytes());
        let v = b"6.1.0-test (builder@host) #1 SMP\0";
        b[0x500..0x500 + v.len()].copy_from_slice(v);
        b[off::LOADFLAGS] = 0x81;
        b[off::KERNEL_ALIGNMENT..off::KERNEL_ALIGNMENT + 4]
            .copy_from_slice(&0x20_0000u32.to_le_bytes());
        b[off::RELOCATABLE_KERNEL] = 1;
        b[off::XLOADFLAGS..off::XLOADFLAGS + 2].copy_from_slice(&0x7fu16.to_le_bytes());
        b[off::CMDLINE_SIZE..off::CMDLINE_SIZE + 4].copy_from_slice(&2047u32.to_le_bytes());
        b[off::INITRD_ADDR_MAX..off::INITRD_ADDR_MAX + 4]
            .copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        b[off::PREF_ADDRESS..off::PREF_ADDRESS + 8].copy_from_slice(&0x100_0000u64.to_le_bytes());
        b[off::INIT_SIZE..off::INIT_SIZE + 4].copy_from_slice(&0x200_0000u32.to_le_bytes());
        b
    }

    #[test]
    fn parses_a_good_header() {
        let img = image(0x1000);
        let k = parse(&img).unwrap();
        assert_eq!(k.protocol, 0x020f);
        assert_eq!(k.pm_offset, 5 * 512);
        assert_eq!(k.pm_len, 0x1000);
        assert_eq!(k.header_end, 0x26c);
        assert!(k.relocatable);
        assert_eq!(k.pref_address, 0x100_0000);
        assert_eq!(k.span(), 0x200_0000);
        assert_eq!(k.version, Some(&b"6.1.0-test (builder@host) #1 SMP"[..]));
    }

    #[test]
    fn rejects_bad_headers() {
        assert_eq!(parse(&[]), Err(BzError::TooSmall));
        assert_eq!(parse(&[0u8; 0x263]), Err(BzError::TooSmall));
        let good = image(0x1000);

        let mut b = good.clone();
        b[off::HEADER_MAGIC] = b'X';
        assert_eq!(parse(&b), Err(BzError::NotBzImage));

        let mut b = good.clone();
        b[off::VERSION..off::VERSION + 2].copy_from_slice(&0x020bu16.to_le_bytes());
        assert_eq!(parse(&b), Err(BzError::OldProtocol(0x020b)));

        let mut b = good.clone();
        b[off::XLOADFLAGS] = 0x02;
        assert_eq!(parse(&b), Err(BzError::No64BitEntry));

        let mut b = good.clone();
        b[off::LOADFLAGS] = 0x80;
        assert_eq!(parse(&b), Err(BzError::NotLoadedHigh));

        let mut b = good.clone();
        b[off::JUMP + 1] = 0x10;
        assert_eq!(parse(&b), Err(BzError::BadHeaderLength));

        // setup_sects = 0 means 4: same as the good image.
        let mut b = good.clone();
        b[off::SETUP_SECTS] = 0;
        assert_eq!(parse(&b).unwrap().pm_offset, 5 * 512);

        // setup_sects beyond the image.
        let mut b = good.clone();
        b[off::SETUP_SECTS] = 0xff;
        assert_eq!(parse(&b), Err(BzError::NoPayload));

        // Truncated right after the header: no payload.
        assert_eq!(parse(&good[..0x300]), Err(BzError::NoPayload));
        // Header claims to extend past the (truncated) image.
        assert_eq!(parse(&good[..0x268]), Err(BzError::BadHeaderLength));
    }

    #[test]
    fn hostile_version_strings_are_dropped() {
        let mut b = image(0x100);
        // Points past the setup area.
        b[off::KERNEL_VERSION..off::KERNEL_VERSION + 2].copy_from_slice(&0xfff0u16.to_le_bytes());
        assert_eq!(parse(&b).unwrap().version, None);
        // Unterminated within the limit.
        let mut b = image(0x100);
        b[0x500..0x500 + 300].fill(b'A');
        assert_eq!(parse(&b).unwrap().version, None);
        // Non-printable.
        let mut b = image(0x100);
        b[0x502] = 0x07;
        assert_eq!(parse(&b).unwrap().version, None);
    }

    #[test]
    fn every_truncation_of_a_good_image_is_handled() {
        let img = image(0x40);
        for len in 0..img.len() {
            let _ = parse(&img[..len]);
        }
        // And random-ish corruption of every header byte.
        for i in 0x1f0..0x270 {
            for v in [0u8, 0xff, 0x80] {
                let mut b = img.clone();
                b[i] = v;
                if let Ok(k) = parse(&b) {
                    let mut bp = [0u8; BOOT_PARAMS_SIZE];
                    let s = BootSetup {
                        cmdline_addr: 0,
                        ramdisk: None,
                        e820: &[],
                        rsdp: 0,
                    };
                    fill_boot_params(&mut bp, &b, &k, &s);
                    let _ = k.span();
                }
            }
        }
    }

    fn ram_map() -> Map {
        Map::build(&[&[
            Entry::new(0, 0xa0000, RAM),
            Entry::new(0x10_0000, 0x3ff0_0000, RAM),
        ]])
    }

    #[test]
    fn load_address_prefers_pref_address() {
        let img = image(0x1000);
        let k = parse(&img).unwrap();
        let fw = (0x10_0000u64, 0x80_0000u64);
        assert_eq!(k.choose_load_addr(&ram_map(), &[fw]), Ok(0x100_0000));
    }

    #[test]
    fn load_address_moves_around_modules_when_relocatable() {
        let img = image(0x1000);
        let k = parse(&img).unwrap();
        let fw = (0x10_0000u64, 0x80_0000u64);
        // The bzImage module itself sits at 0x800000..0x1a00000, over pref_address.
        let module = (0x80_0000u64, 0x1a0_0000u64);
        assert_eq!(
            k.choose_load_addr(&ram_map(), &[fw, module]),
            Ok(0x1a0_0000)
        );
        // Not relocatable: a clear error.
        let mut img2 = img.clone();
        img2[off::RELOCATABLE_KERNEL] = 0;
        let k2 = parse(&img2).unwrap();
        assert_eq!(
            k2.choose_load_addr(&ram_map(), &[fw, module]),
            Err(BzError::NoRoom)
        );
        // Not enough RAM anywhere.
        let small = Map::build(&[&[Entry::new(0x10_0000, 0x100_0000, RAM)]]);
        assert_eq!(k.choose_load_addr(&small, &[fw]), Err(BzError::NoRoom));
        // Hostile alignment falls back to 2 MiB.
        let mut img3 = img.clone();
        img3[off::KERNEL_ALIGNMENT..off::KERNEL_ALIGNMENT + 4].copy_from_slice(&3u32.to_le_bytes());
        let k3 = parse(&img3).unwrap();
        let module = (0x80_0000u64, 0x190_0001u64);
        assert_eq!(
            k3.choose_load_addr(&ram_map(), &[fw, module]),
            Ok(0x1a0_0000)
        );
        // Hostile pref_address near the top of the address space.
        let mut img4 = img.clone();
        img4[off::PREF_ADDRESS..off::PREF_ADDRESS + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let k4 = parse(&img4).unwrap();
        assert_eq!(k4.choose_load_addr(&ram_map(), &[fw]), Ok(0x80_0000));
    }

    #[test]
    fn boot_params_fields() {
        let img = image(0x1000);
        let k = parse(&img).unwrap();
        let map = ram_map();
        let s = BootSetup {
            cmdline_addr: 0x6000,
            ramdisk: Some((0x1_2345_6000, 0x1_0000_0010)),
            e820: map.entries(),
            rsdp: 0xf0000,
        };
        let mut bp = [0xaau8; BOOT_PARAMS_SIZE];
        assert_eq!(fill_boot_params(&mut bp, &img, &k, &s), 2);
        // Header copied up to 0x26c (except the loader's fields), zero after.
        assert_eq!(&bp[0x1f1..0x210], &img[0x1f1..0x210]);
        assert_eq!(&bp[0x211..0x218], &img[0x211..0x218]);
        assert_eq!(&bp[0x22c..0x26c], &img[0x22c..0x26c]);
        assert_eq!(&bp[0x202..0x206], b"HdrS");
        assert_eq!(bp[0x210], 0xff);
        assert_eq!(bp[0x1ef], 0, "sentinel");
        assert_eq!(rd32(&bp, 0x228), Some(0x6000));
        assert_eq!(rd32(&bp, 0x0c8), Some(0));
        assert_eq!(rd32(&bp, 0x218), Some(0x2345_6000));
        assert_eq!(rd32(&bp, 0x0c0), Some(1));
        assert_eq!(rd32(&bp, 0x21c), Some(0x10));
        assert_eq!(rd32(&bp, 0x0c4), Some(1));
        assert_eq!(bp[0x1e8], 2);
        assert_eq!(rd64(&bp, 0x2d0), Some(0));
        assert_eq!(rd64(&bp, 0x2d8), Some(0xa0000));
        assert_eq!(rd32(&bp, 0x2e0), Some(1));
        assert_eq!(rd64(&bp, 0x2e4), Some(0x10_0000));
        assert_eq!(rd64(&bp, 0x070), Some(0xf0000));
        assert!(bp[0x26c..0x290].iter().all(|&b| b == 0));
    }

    #[test]
    fn e820_table_is_capped_at_128() {
        let img = image(0x10);
        let k = parse(&img).unwrap();
        let many = [Entry::new(0, 1, RAM); 200];
        let s = BootSetup {
            cmdline_addr: 0,
            ramdisk: None,
            e820: &many,
            rsdp: 0,
        };
        let mut bp = [0u8; BOOT_PARAMS_SIZE];
        assert_eq!(fill_boot_params(&mut bp, &img, &k, &s), 128);
        assert_eq!(bp[0x1e8], 128);
        assert_eq!(0x2d0 + 128 * 20, 0xcd0);
    }

    #[test]
    fn cmdlines() {
        assert_eq!(cmdline_bytes(b"console=ttyS0\0junk", 100), b"console=ttyS0");
        assert_eq!(cmdline_bytes(b"console=ttyS0", 7), b"console");
        assert_eq!(cmdline_bytes(b"", 7), b"");
    }
}
