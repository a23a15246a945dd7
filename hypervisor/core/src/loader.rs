//! Loading `guest-firmware` and its modules the PVH way.
//!
//! * The firmware is an ELF64 x86-64 executable. Each `PT_LOAD` segment is copied to its
//!   `p_paddr` and its bss part (`p_memsz - p_filesz`) zeroed; every segment must lie in
//!   `[FIRMWARE_BASE, FIRMWARE_END)`. The image comes from a file the user names, so every
//!   header field is checked before use: a malformed ELF is an error, never a panic or an
//!   out-of-bounds copy.
//! * Modules (kernel, then ramdisk) are placed top-down from the end of low RAM, page
//!   aligned, never below `FIRMWARE_END`.
//! * The start-info page: [`HvmStartInfo`] at `START_INFO_ADDR`, the module names
//!   ("kernel", "ramdisk") right after it, the module list at `MODLIST_ADDR`, the memory
//!   map at `MEMMAP_ADDR`, the command line at `CMDLINE_ADDR`.

use hypervisor_abi::pvh::{
    CMDLINE_ADDR, CMDLINE_MAX, FIRMWARE_BASE, FIRMWARE_END, HvmMemmapEntry, HvmModlistEntry,
    HvmStartInfo, MEMMAP_ADDR, MEMMAP_MAX, MEMMAP_RAM, MODLIST_ADDR, START_INFO_ADDR,
    START_INFO_MAGIC,
};

use crate::memory::{GuestMemory, Layout};

/// Where the module names go: inside the start-info page, between [`HvmStartInfo`] and the
/// module list.
pub const MODULE_NAME_ADDR: [u64; 3] = [
    START_INFO_ADDR + 0x80,
    START_INFO_ADDR + 0x90,
    START_INFO_ADDR + 0xa0,
];
/// The names, NUL-terminated, in module order. "vmlinux" is the kernel proper unpacked
/// on the host and already placed ([`place_vmlinux`]); the firmware finds it by name.
pub const MODULE_NAMES: [&[u8]; 3] = [b"kernel\0", b"ramdisk\0", b"vmlinux\0"];
/// The name of the SeaBIOS module (the only module of a SeaBIOS boot, so it takes the
/// first name slot).
pub const FIRMWARE_MODULE_NAME: &[u8] = b"firmware\0";

const PAGE: u64 = 4096;

const PT_LOAD: u32 = 1;
const ET_EXEC: u16 = 2;
const EM_X86_64: u16 = 62;
const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
/// More program headers than any sane firmware image has; bounds the work on hostile input.
const MAX_PHDRS: usize = 64;

/// One `PT_LOAD` segment, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Guest-physical load address.
    pub paddr: u64,
    /// Byte range of the segment's file contents in the image.
    pub file_offset: usize,
    pub file_size: usize,
    /// Size in memory (file_size plus bss).
    pub mem_size: u64,
}

/// A validated firmware image: where it goes and where it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirmwareImage {
    /// Guest-physical entry point (EIP at start).
    pub entry: u64,
    pub segments: Vec<Segment>,
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

/// Parse and validate a firmware ELF. The error text says what is wrong.
pub fn parse_firmware(image: &[u8]) -> Result<FirmwareImage, String> {
    parse_elf(image, FIRMWARE_BASE, FIRMWARE_END, "the firmware area")
}

/// Parse and validate a static ELF64 x86-64 image whose `PT_LOAD` segments must all lie
/// in `[base, end)` (`area` names that range in errors).
pub fn parse_elf(image: &[u8], base: u64, end: u64, area: &str) -> Result<FirmwareImage, String> {
    if image.len() < EHDR_SIZE {
        return Err(format!(
            "file is {} bytes, shorter than an ELF64 header",
            image.len()
        ));
    }
    if image[0..4] != *b"\x7fELF" {
        return Err("not an ELF file (bad magic)".into());
    }
    if image[4] != 2 {
        return Err("not a 64-bit ELF (EI_CLASS)".into());
    }
    if image[5] != 1 {
        return Err("not a little-endian ELF (EI_DATA)".into());
    }
    let e_type = u16_at(image, 16);
    if e_type != ET_EXEC {
        return Err(format!(
            "ELF type {e_type} is not ET_EXEC (link the firmware static, at its load address)"
        ));
    }
    let machine = u16_at(image, 18);
    if machine != EM_X86_64 {
        return Err(format!("ELF machine {machine} is not x86-64"));
    }
    let e_entry = u64_at(image, 24);
    let e_phoff = u64_at(image, 32);
    let e_phentsize = u16_at(image, 54) as usize;
    let e_phnum = u16_at(image, 56) as usize;
    if e_phentsize != PHDR_SIZE {
        return Err(format!(
            "program header size {e_phentsize} is not {PHDR_SIZE}"
        ));
    }
    if e_phnum == 0 {
        return Err("no program headers".into());
    }
    if e_phnum > MAX_PHDRS {
        return Err(format!("{e_phnum} program headers (more than {MAX_PHDRS})"));
    }
    let ph_end = usize::try_from(e_phoff)
        .ok()
        .and_then(|o| o.checked_add(e_phnum * PHDR_SIZE).map(|e| (o, e)))
        .filter(|&(_, e)| e <= image.len());
    let Some((ph_start, _)) = ph_end else {
        return Err(format!(
            "program headers at offset {e_phoff:#x} ({e_phnum} entries) run past the end of the file ({} bytes)",
            image.len()
        ));
    };

    let mut segments: Vec<Segment> = Vec::new();
    let mut entry = None;
    for i in 0..e_phnum {
        let ph = &image[ph_start + i * PHDR_SIZE..][..PHDR_SIZE];
        if u32_at(ph, 0) != PT_LOAD {
            continue;
        }
        let p_offset = u64_at(ph, 8);
        let p_vaddr = u64_at(ph, 16);
        let p_paddr = u64_at(ph, 24);
        let p_filesz = u64_at(ph, 32);
        let p_memsz = u64_at(ph, 40);
        if p_memsz == 0 {
            continue;
        }
        if p_filesz > p_memsz {
            return Err(format!(
                "segment {i}: p_filesz {p_filesz:#x} exceeds p_memsz {p_memsz:#x}"
            ));
        }
        let file_end = p_offset.checked_add(p_filesz);
        if file_end.is_none_or(|e| e > image.len() as u64) {
            return Err(format!(
                "segment {i}: file range {p_offset:#x}+{p_filesz:#x} runs past the end of the file ({} bytes)",
                image.len()
            ));
        }
        let mem_end = p_paddr.checked_add(p_memsz);
        if p_paddr < base || mem_end.is_none_or(|e| e > end) {
            return Err(format!(
                "segment {i}: [{p_paddr:#x}, +{p_memsz:#x}) is outside {area} [{base:#x}, {end:#x})"
            ));
        }
        let mem_end = p_paddr + p_memsz;
        for (j, s) in segments.iter().enumerate() {
            if p_paddr < s.paddr + s.mem_size && s.paddr < mem_end {
                return Err(format!(
                    "segment {i} [{p_paddr:#x}, {mem_end:#x}) overlaps load segment {j} [{:#x}, {:#x})",
                    s.paddr,
                    s.paddr + s.mem_size
                ));
            }
        }
        // The entry point is a virtual address; translate it through its segment.
        if e_entry >= p_vaddr && e_entry - p_vaddr < p_memsz {
            entry = Some(p_paddr + (e_entry - p_vaddr));
        }
        segments.push(Segment {
            paddr: p_paddr,
            // Both fit in the file length, hence in usize.
            file_offset: p_offset as usize,
            file_size: p_filesz as usize,
            mem_size: p_memsz,
        });
    }
    if segments.is_empty() {
        return Err("no PT_LOAD segments".into());
    }
    let Some(entry) = entry else {
        return Err(format!(
            "entry point {e_entry:#x} is not inside any load segment"
        ));
    };
    Ok(FirmwareImage { entry, segments })
}

/// Copy a parsed image into guest memory (zeroing bss).
pub fn load_firmware(mem: &GuestMemory, image: &[u8], fw: &FirmwareImage) -> Result<(), String> {
    for s in &fw.segments {
        let bytes = image
            .get(s.file_offset..s.file_offset + s.file_size)
            .ok_or("segment file range out of bounds")?;
        mem.write(s.paddr, bytes)
            .map_err(|e| format!("segment at {:#x} is not in guest RAM", e.gpa))?;
        mem.zero(
            s.paddr + s.file_size as u64,
            s.mem_size - s.file_size as u64,
        )
        .map_err(|e| format!("bss at {:#x} is not in guest RAM", e.gpa))?;
    }
    Ok(())
}

/// A placed module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub paddr: u64,
    pub size: u64,
}

/// Place modules of `sizes` (kernel first) top-down from `low_end`, each page aligned and
/// directly below the previous one, never below `FIRMWARE_END`. Errors name the module
/// that does not fit.
pub fn place_modules(low_end: u64, sizes: &[u64]) -> Result<Vec<Placement>, String> {
    let mut top = low_end & !(PAGE - 1);
    let mut out = Vec::with_capacity(sizes.len());
    for (i, &size) in sizes.iter().enumerate() {
        let name = ["kernel", "ramdisk"].get(i).copied().unwrap_or("module");
        let room = top.saturating_sub(FIRMWARE_END);
        if size > room {
            return Err(format!(
                "the {name} ({size} bytes) does not fit in guest RAM: {room} bytes free between {FIRMWARE_END:#x} and {top:#x}"
            ));
        }
        let paddr = (top - size) & !(PAGE - 1);
        if paddr < FIRMWARE_END {
            return Err(format!(
                "the {name} ({size} bytes) does not fit in guest RAM above {FIRMWARE_END:#x}"
            ));
        }
        out.push(Placement { paddr, size });
        top = paddr;
    }
    Ok(out)
}

/// Where the bzImage's boot header says the kernel proper goes: `pref_address` (its
/// link-time physical address) and `init_size` (the memory it needs from there on,
/// bss and early page tables included). `None` for a header older than 2.10.
pub fn kernel_span(bz: &[u8]) -> Option<(u64, u64)> {
    let version = u16::from_le_bytes(bz.get(0x206..0x208)?.try_into().ok()?);
    if bz.get(0x202..0x206)? != b"HdrS" || version < 0x20a {
        return None;
    }
    let pref = u64::from_le_bytes(bz.get(0x258..0x260)?.try_into().ok()?);
    let init = u32::from_le_bytes(bz.get(0x260..0x264)?.try_into().ok()?) as u64;
    Some((pref, init))
}

/// Copy the PT_LOAD segments of an unpacked kernel (`vmlinux`, checked by
/// `kernel_unpack::check_vmlinux`) to `load + (p_paddr - lowest p_paddr)`, as the
/// kernel's own decompressor does, zeroing each segment's bss part. The entry point must
/// be the lowest segment's start (`startup_64`), so the firmware enters at `load`.
/// Everything must fit in `[load, load + span)` and in guest RAM.
pub fn place_vmlinux(mem: &GuestMemory, elf: &[u8], load: u64, span: u64) -> Result<(), String> {
    let rd = |o: usize, n: usize| -> Result<u64, String> {
        let b = elf
            .get(o..o + n)
            .ok_or_else(|| "truncated vmlinux header".to_string())?;
        let mut v = [0u8; 8];
        v[..n].copy_from_slice(b);
        Ok(u64::from_le_bytes(v))
    };
    let entry = rd(24, 8)?;
    let phoff = rd(32, 8)? as usize;
    let phentsize = rd(54, 2)? as usize;
    let phnum = rd(56, 2)? as usize;
    if phentsize < PHDR_SIZE || phnum > MAX_PHDRS {
        return Err("vmlinux program headers are malformed".into());
    }
    let mut loads = Vec::new();
    for k in 0..phnum {
        let ph = phoff + k * phentsize;
        if rd(ph, 4)? as u32 != PT_LOAD {
            continue;
        }
        let off = rd(ph + 8, 8)?;
        let paddr = rd(ph + 24, 8)?;
        let filesz = rd(ph + 32, 8)?;
        let memsz = rd(ph + 40, 8)?;
        if filesz > memsz || off.checked_add(filesz).is_none_or(|e| e > elf.len() as u64) {
            return Err("a vmlinux segment lies outside the file".into());
        }
        loads.push((off as usize, paddr, filesz as usize, memsz));
    }
    let base = loads
        .iter()
        .map(|l| l.1)
        .min()
        .ok_or_else(|| "vmlinux has no PT_LOAD segment".to_string())?;
    if entry != base {
        return Err(format!(
            "vmlinux entry {entry:#x} is not the start of its image ({base:#x})"
        ));
    }
    for (off, paddr, filesz, memsz) in loads {
        let rel = paddr - base;
        if rel.checked_add(memsz).is_none_or(|e| e > span) {
            return Err(format!(
                "vmlinux segment at {paddr:#x} (+{memsz:#x}) exceeds the kernel's init_size {span:#x}"
            ));
        }
        let dst = load + rel;
        let to_ram = |e: crate::memory::OutOfRange| {
            format!(
                "the kernel needs guest RAM at {dst:#x}..{:#x} ({:#x} is not RAM): give the guest more memory",
                dst + memsz,
                e.gpa
            )
        };
        mem.write(dst, &elf[off..off + filesz]).map_err(to_ram)?;
        mem.zero(dst + filesz as u64, memsz - filesz as u64)
            .map_err(to_ram)?;
    }
    Ok(())
}

/// Write the start-info page, module list, memory map and command line. `modules` are
/// the placed modules in order (kernel, ramdisk); their contents are written by the
/// caller.
pub fn write_start_info(
    mem: &GuestMemory,
    layout: &Layout,
    modules: &[Placement],
    cmdline: &str,
) -> Result<(), String> {
    write_start_info_named(mem, layout, modules, &MODULE_NAMES, cmdline)
}

/// [`write_start_info`] with explicit NUL-terminated module names (at most 16 bytes each,
/// one per module).
pub fn write_start_info_named(
    mem: &GuestMemory,
    layout: &Layout,
    modules: &[Placement],
    names: &[&[u8]],
    cmdline: &str,
) -> Result<(), String> {
    if names.len() < modules.len() || names.iter().any(|n| n.len() > 16) {
        return Err("module names: one per module, at most 16 bytes each".into());
    }
    if cmdline.len() + 1 > CMDLINE_MAX {
        return Err(format!(
            "the kernel command line is {} bytes; at most {} fit",
            cmdline.len(),
            CMDLINE_MAX - 1
        ));
    }
    if cmdline.as_bytes().contains(&0) {
        return Err("the kernel command line contains a NUL byte".into());
    }
    if modules.len() > MODULE_NAMES.len() {
        return Err(format!(
            "{} modules (at most {})",
            modules.len(),
            MODULE_NAMES.len()
        ));
    }
    let w = |gpa: u64, b: &[u8]| {
        mem.write(gpa, b)
            .map_err(|e| format!("start info at {:#x} is not in guest RAM", e.gpa))
    };

    let ram: Vec<HvmMemmapEntry> = layout
        .ram_ranges()
        .map(|r| HvmMemmapEntry {
            addr: r.gpa,
            size: r.size,
            kind: MEMMAP_RAM,
            reserved: 0,
        })
        .collect();
    debug_assert!(ram.len() <= MEMMAP_MAX);
    for (i, e) in ram.iter().enumerate() {
        w(
            MEMMAP_ADDR + (i * HvmMemmapEntry::SIZE) as u64,
            &e.to_bytes(),
        )?;
    }

    for (i, m) in modules.iter().enumerate() {
        w(MODULE_NAME_ADDR[i], names[i])?;
        let e = HvmModlistEntry {
            paddr: m.paddr,
            size: m.size,
            cmdline_paddr: MODULE_NAME_ADDR[i],
            reserved: 0,
        };
        w(
            MODLIST_ADDR + (i * HvmModlistEntry::SIZE) as u64,
            &e.to_bytes(),
        )?;
    }

    w(CMDLINE_ADDR, cmdline.as_bytes())?;
    w(CMDLINE_ADDR + cmdline.len() as u64, &[0])?;

    let si = HvmStartInfo {
        magic: START_INFO_MAGIC,
        version: 1,
        flags: 0,
        nr_modules: modules.len() as u32,
        modlist_paddr: if modules.is_empty() { 0 } else { MODLIST_ADDR },
        cmdline_paddr: CMDLINE_ADDR,
        rsdp_paddr: 0,
        memmap_paddr: MEMMAP_ADDR,
        memmap_entries: ram.len() as u32,
        reserved: 0,
    };
    w(START_INFO_ADDR, &si.to_bytes())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal ELF64 x86-64 executable: one header, `segs` as (paddr, file bytes,
    /// memsz), entry at `entry`.
    pub(crate) fn build_elf(entry: u64, segs: &[(u64, &[u8], u64)]) -> Vec<u8> {
        let phoff = EHDR_SIZE;
        let data_off = phoff + segs.len() * PHDR_SIZE;
        let mut e = vec![0u8; data_off];
        e[0..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[6] = 1;
        e[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        e[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        e[20..24].copy_from_slice(&1u32.to_le_bytes());
        e[24..32].copy_from_slice(&entry.to_le_bytes());
        e[32..40].copy_from_slice(&(phoff as u64).to_le_bytes());
        e[52..54].copy_from_slice(&(EHDR_SIZE as u16).to_le_bytes());
        e[54..56].copy_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
        e[56..58].copy_from_slice(&(segs.len() as u16).to_le_bytes());
        let mut off = data_off;
        for (i, (paddr, bytes, memsz)) in segs.iter().enumerate() {
            let ph = &mut e[phoff + i * PHDR_SIZE..][..PHDR_SIZE];
            ph[0..4].copy_from_slice(&PT_LOAD.to_le_bytes());
            ph[4..8].copy_from_slice(&7u32.to_le_bytes());
            ph[8..16].copy_from_slice(&(off as u64).to_le_bytes());
            ph[16..24].copy_from_slice(&paddr.to_le_bytes());
            ph[24..32].copy_from_slice(&paddr.to_le_bytes());
            ph[32..40].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
            ph[40..48].copy_from_slice(&memsz.to_le_bytes());
            off += bytes.len();
        }
        for (_, bytes, _) in segs {
            e.extend_from_slice(bytes);
        }
        e
    }

    fn set_ph(e: &mut [u8], i: usize, field: usize, v: u64) {
        let o = EHDR_SIZE + i * PHDR_SIZE + field;
        e[o..o + 8].copy_from_slice(&v.to_le_bytes());
    }
    const P_OFFSET: usize = 8;
    const P_PADDR: usize = 24;
    const P_FILESZ: usize = 32;
    const P_MEMSZ: usize = 40;

    #[test]
    fn loads_segments_and_zeroes_bss() {
        let code = [0x90u8, 0x90, 0xf4];
        let data = [1u8, 2, 3, 4];
        let elf = build_elf(
            FIRMWARE_BASE,
            &[(FIRMWARE_BASE, &code, 3), (0x20_0000, &data, 0x2000)],
        );
        let fw = parse_firmware(&elf).unwrap();
        assert_eq!(fw.entry, FIRMWARE_BASE);
        assert_eq!(fw.segments.len(), 2);
        let mem = GuestMemory::new(Layout::from_mib(16).unwrap()).unwrap();
        // Dirty the bss area first: the loader must zero it.
        mem.write(0x20_0004, &[0xaa; 16]).unwrap();
        load_firmware(&mem, &elf, &fw).unwrap();
        let mut b = [0u8; 3];
        mem.read(FIRMWARE_BASE, &mut b).unwrap();
        assert_eq!(b, code);
        let mut d = [0xffu8; 24];
        mem.read(0x20_0000, &mut d).unwrap();
        assert_eq!(&d[..4], &data);
        assert!(d[4..].iter().all(|&x| x == 0));
    }

    #[test]
    fn entry_is_translated_through_its_segment() {
        let mut elf = build_elf(0xffff_8000_0010_0010, &[(FIRMWARE_BASE, &[0; 32], 32)]);
        // p_vaddr = high-half address, p_paddr = 1 MiB.
        let o = EHDR_SIZE + 16;
        elf[o..o + 8].copy_from_slice(&0xffff_8000_0010_0000u64.to_le_bytes());
        let fw = parse_firmware(&elf).unwrap();
        assert_eq!(fw.entry, FIRMWARE_BASE + 0x10);
    }

    #[test]
    fn hostile_elfs_are_errors() {
        let good = build_elf(FIRMWARE_BASE, &[(FIRMWARE_BASE, &[0x90; 64], 64)]);
        assert!(parse_firmware(&good).is_ok());

        // Truncated anywhere: an error, never a panic.
        for n in 0..good.len() {
            assert!(parse_firmware(&good[..n]).is_err(), "truncated to {n}");
        }
        // Empty and garbage.
        assert!(parse_firmware(&[]).is_err());
        assert!(parse_firmware(&[0xff; 200]).is_err());

        let bad = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut e = good.clone();
            f(&mut e);
            parse_firmware(&e)
        };
        // Header fields.
        assert!(bad(&|e| e[4] = 1).unwrap_err().contains("64-bit"));
        assert!(bad(&|e| e[5] = 2).unwrap_err().contains("little"));
        assert!(bad(&|e| e[16] = 3).unwrap_err().contains("ET_EXEC"));
        assert!(bad(&|e| e[18] = 3).unwrap_err().contains("x86-64"));
        assert!(bad(&|e| e[54] = 32).is_err());
        assert!(bad(&|e| e[56..58].copy_from_slice(&0u16.to_le_bytes())).is_err());
        assert!(bad(&|e| e[56..58].copy_from_slice(&0xffffu16.to_le_bytes())).is_err());
        assert!(bad(&|e| e[32..40].copy_from_slice(&u64::MAX.to_le_bytes())).is_err());
        assert!(bad(&|e| e[32..40].copy_from_slice(&(u64::MAX - 8).to_le_bytes())).is_err());
        // Entry outside every segment.
        assert!(
            bad(&|e| e[24..32].copy_from_slice(&0u64.to_le_bytes()))
                .unwrap_err()
                .contains("entry")
        );
        // Huge p_filesz, p_offset past the end, offset+size overflow.
        assert!(bad(&|e| set_ph(e, 0, P_FILESZ, u64::MAX)).is_err());
        assert!(
            bad(&|e| {
                set_ph(e, 0, P_FILESZ, 1 << 40);
                set_ph(e, 0, P_MEMSZ, 1 << 40);
            })
            .is_err()
        );
        assert!(bad(&|e| set_ph(e, 0, P_OFFSET, 1 << 20)).is_err());
        assert!(bad(&|e| set_ph(e, 0, P_OFFSET, u64::MAX - 8)).is_err());
        // filesz > memsz.
        assert!(
            bad(&|e| set_ph(e, 0, P_MEMSZ, 8))
                .unwrap_err()
                .contains("exceeds")
        );
        // p_paddr out of range: below the base, beyond the end, wrapping.
        assert!(
            bad(&|e| set_ph(e, 0, P_PADDR, 0x8000))
                .unwrap_err()
                .contains("outside")
        );
        assert!(bad(&|e| set_ph(e, 0, P_PADDR, FIRMWARE_END - 32)).is_err());
        assert!(bad(&|e| set_ph(e, 0, P_PADDR, u64::MAX - 16)).is_err());
        assert!(bad(&|e| set_ph(e, 0, P_MEMSZ, u64::MAX)).is_err());
        // A huge memsz (bss) inside the area is fine up to FIRMWARE_END, not beyond.
        assert!(bad(&|e| set_ph(e, 0, P_MEMSZ, FIRMWARE_END - FIRMWARE_BASE)).is_ok());
        assert!(bad(&|e| set_ph(e, 0, P_MEMSZ, FIRMWARE_END - FIRMWARE_BASE + 1)).is_err());
    }

    #[test]
    fn overlapping_segments_are_errors() {
        let elf = build_elf(
            FIRMWARE_BASE,
            &[
                (FIRMWARE_BASE, &[0; 16], 0x1000),
                (FIRMWARE_BASE + 0xfff, &[0; 16], 16),
            ],
        );
        assert!(parse_firmware(&elf).unwrap_err().contains("overlaps"));
        // Adjacent is fine.
        let elf = build_elf(
            FIRMWARE_BASE,
            &[
                (FIRMWARE_BASE, &[0; 16], 0x1000),
                (FIRMWARE_BASE + 0x1000, &[0; 16], 16),
            ],
        );
        assert!(parse_firmware(&elf).is_ok());
    }

    #[test]
    fn no_load_segments_is_an_error() {
        let mut elf = build_elf(FIRMWARE_BASE, &[(FIRMWARE_BASE, &[0; 16], 16)]);
        elf[EHDR_SIZE] = 6; // PT_PHDR
        assert!(parse_firmware(&elf).unwrap_err().contains("PT_LOAD"));
    }

    #[test]
    fn modules_go_top_down_page_aligned() {
        let low_end = 256 << 20;
        let p = place_modules(low_end, &[5_000_000, 20_000_001]).unwrap();
        assert_eq!(p[0].paddr % PAGE, 0);
        assert!(p[0].paddr + p[0].size <= low_end);
        assert!(low_end - (p[0].paddr + p[0].size) < PAGE);
        assert_eq!(p[1].paddr % PAGE, 0);
        assert!(p[1].paddr + p[1].size <= p[0].paddr);
        assert!(p[0].paddr - (p[1].paddr + p[1].size) < PAGE);
        assert!(p[1].paddr >= FIRMWARE_END);
        // An unaligned low_end is rounded down first.
        let p = place_modules(low_end + 123, &[PAGE]).unwrap();
        assert_eq!(p[0].paddr, low_end - PAGE);
    }

    #[test]
    fn modules_that_do_not_fit_are_errors() {
        let low_end = 16 << 20;
        let room = low_end - FIRMWARE_END;
        assert!(place_modules(low_end, &[room]).is_ok());
        assert!(
            place_modules(low_end, &[room + 1])
                .unwrap_err()
                .contains("kernel")
        );
        assert!(
            place_modules(low_end, &[room - PAGE, PAGE + 1])
                .unwrap_err()
                .contains("ramdisk")
        );
        assert!(place_modules(low_end, &[u64::MAX]).is_err());
        assert!(place_modules(FIRMWARE_END - PAGE, &[1]).is_err());
        assert_eq!(place_modules(low_end, &[]).unwrap(), vec![]);
    }

    #[test]
    fn start_info_is_written() {
        let layout = Layout::from_mib(64).unwrap();
        let mem = GuestMemory::new(layout).unwrap();
        let mods = place_modules(layout.low_end, &[0x1000, 0x2000]).unwrap();
        write_start_info(&mem, &layout, &mods, "console=ttyS0").unwrap();

        let mut si = [0u8; HvmStartInfo::SIZE];
        mem.read(START_INFO_ADDR, &mut si).unwrap();
        let expect = HvmStartInfo {
            magic: START_INFO_MAGIC,
            version: 1,
            flags: 0,
            nr_modules: 2,
            modlist_paddr: MODLIST_ADDR,
            cmdline_paddr: CMDLINE_ADDR,
            rsdp_paddr: 0,
            memmap_paddr: MEMMAP_ADDR,
            memmap_entries: 2,
            reserved: 0,
        };
        assert_eq!(si, expect.to_bytes());

        let mut e = [0u8; HvmModlistEntry::SIZE];
        mem.read(MODLIST_ADDR + HvmModlistEntry::SIZE as u64, &mut e)
            .unwrap();
        assert_eq!(
            e,
            HvmModlistEntry {
                paddr: mods[1].paddr,
                size: 0x2000,
                cmdline_paddr: MODULE_NAME_ADDR[1],
                reserved: 0
            }
            .to_bytes()
        );
        let mut name = [0u8; 8];
        mem.read(MODULE_NAME_ADDR[1], &mut name).unwrap();
        assert_eq!(&name, b"ramdisk\0");
        mem.read(MODULE_NAME_ADDR[0], &mut name[..7]).unwrap();
        assert_eq!(&name[..7], b"kernel\0");

        let mut m = [0u8; HvmMemmapEntry::SIZE];
        mem.read(MEMMAP_ADDR + HvmMemmapEntry::SIZE as u64, &mut m)
            .unwrap();
        assert_eq!(
            m,
            HvmMemmapEntry {
                addr: 0xc0000,
                size: (64 << 20) - 0xc0000,
                kind: MEMMAP_RAM,
                reserved: 0
            }
            .to_bytes()
        );

        let mut c = [0xffu8; 14];
        mem.read(CMDLINE_ADDR, &mut c).unwrap();
        assert_eq!(&c, b"console=ttyS0\0");
        // Names and structures do not collide.
        assert!(MODULE_NAME_ADDR[0] >= START_INFO_ADDR + HvmStartInfo::SIZE as u64);
        assert!(MODULE_NAME_ADDR[1] + 8 <= MODLIST_ADDR);
    }

    #[test]
    fn no_modules_means_no_modlist() {
        let layout = Layout::from_mib(16).unwrap();
        let mem = GuestMemory::new(layout).unwrap();
        write_start_info(&mem, &layout, &[], "").unwrap();
        let mut si = [0u8; HvmStartInfo::SIZE];
        mem.read(START_INFO_ADDR, &mut si).unwrap();
        assert_eq!(u32::from_le_bytes(si[12..16].try_into().unwrap()), 0);
        assert_eq!(u64::from_le_bytes(si[16..24].try_into().unwrap()), 0);
        let mut c = [0xffu8; 1];
        mem.read(CMDLINE_ADDR, &mut c).unwrap();
        assert_eq!(c, [0]);
    }

    #[test]
    fn cmdline_length_is_limited() {
        let layout = Layout::from_mib(16).unwrap();
        let mem = GuestMemory::new(layout).unwrap();
        let max = "x".repeat(CMDLINE_MAX - 1);
        assert!(write_start_info(&mem, &layout, &[], &max).is_ok());
        let mut last = [0xffu8; 1];
        mem.read(CMDLINE_ADDR + CMDLINE_MAX as u64 - 1, &mut last)
            .unwrap();
        assert_eq!(last, [0]);
        let long = "x".repeat(CMDLINE_MAX);
        assert!(
            write_start_info(&mem, &layout, &[], &long)
                .unwrap_err()
                .contains("command line")
        );
        assert!(write_start_info(&mem, &layout, &[], "a\0b").is_err());
    }
}
