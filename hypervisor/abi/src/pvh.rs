//! The PVH boot ABI (Xen `public/arch-x86/hvm/start_info.h`, version 1) and where
//! chassis puts things in guest memory when it starts `guest-firmware`.
//!
//! Entry state (PVH): 32-bit flat protected mode, paging off, interrupts off,
//! CS = 32-bit code (base 0, limit 4 GiB), DS/ES/SS = flat data, EBX = guest-physical
//! address of [`HvmStartInfo`], EIP = the firmware ELF's entry point. The firmware ELF
//! is linked at [`FIRMWARE_BASE`] and loaded by its program headers (p_paddr).

/// `hvm_start_info.magic` ("xEn3" with the 0x80 bit of the last byte cleared).
pub const START_INFO_MAGIC: u32 = 0x336e_c578;

/// Where the hypervisor writes [`HvmStartInfo`].
pub const START_INFO_ADDR: u64 = 0x8000;
/// Where the module list (`[HvmModlistEntry; nr_modules]`) goes.
pub const MODLIST_ADDR: u64 = 0x8100;
/// Where the memory map (`[HvmMemmapEntry; memmap_entries]`, at most 64) goes.
pub const MEMMAP_ADDR: u64 = 0x8400;
pub const MEMMAP_MAX: usize = 64;
/// Where the NUL-terminated kernel command line (`extra`) goes, at most 4 KiB.
pub const CMDLINE_ADDR: u64 = 0x9000;
pub const CMDLINE_MAX: usize = 4096;
/// The firmware image's link and load address (1 MiB, as hvmloader).
pub const FIRMWARE_BASE: u64 = 0x10_0000;
/// The firmware may use up to this address (exclusive) for its image, stack and heap;
/// modules are never placed below it.
pub const FIRMWARE_END: u64 = 0x80_0000;

/// Module order in the list: the kernel (bzImage) first, then the initial ramdisk. The
/// module's own cmdline is the NUL-terminated name ("kernel", "ramdisk").
pub const MODULE_KERNEL: usize = 0;
pub const MODULE_RAMDISK: usize = 1;

/// Memory map entry types (e820 numbering).
pub const MEMMAP_RAM: u32 = 1;
pub const MEMMAP_RESERVED: u32 = 2;
pub const MEMMAP_ACPI: u32 = 3;
pub const MEMMAP_NVS: u32 = 4;

/// `struct hvm_start_info` (version 1: 56 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct HvmStartInfo {
    pub magic: u32,
    pub version: u32,
    pub flags: u32,
    pub nr_modules: u32,
    pub modlist_paddr: u64,
    pub cmdline_paddr: u64,
    pub rsdp_paddr: u64,
    pub memmap_paddr: u64,
    pub memmap_entries: u32,
    pub reserved: u32,
}

/// `struct hvm_modlist_entry` (32 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct HvmModlistEntry {
    pub paddr: u64,
    pub size: u64,
    pub cmdline_paddr: u64,
    pub reserved: u64,
}

/// `struct hvm_memmap_table_entry` (24 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct HvmMemmapEntry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
    pub reserved: u32,
}

impl HvmStartInfo {
    pub const SIZE: usize = 56;
    /// Little-endian wire bytes.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0..4].copy_from_slice(&self.magic.to_le_bytes());
        b[4..8].copy_from_slice(&self.version.to_le_bytes());
        b[8..12].copy_from_slice(&self.flags.to_le_bytes());
        b[12..16].copy_from_slice(&self.nr_modules.to_le_bytes());
        b[16..24].copy_from_slice(&self.modlist_paddr.to_le_bytes());
        b[24..32].copy_from_slice(&self.cmdline_paddr.to_le_bytes());
        b[32..40].copy_from_slice(&self.rsdp_paddr.to_le_bytes());
        b[40..48].copy_from_slice(&self.memmap_paddr.to_le_bytes());
        b[48..52].copy_from_slice(&self.memmap_entries.to_le_bytes());
        b[52..56].copy_from_slice(&self.reserved.to_le_bytes());
        b
    }
}

impl HvmModlistEntry {
    pub const SIZE: usize = 32;
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0..8].copy_from_slice(&self.paddr.to_le_bytes());
        b[8..16].copy_from_slice(&self.size.to_le_bytes());
        b[16..24].copy_from_slice(&self.cmdline_paddr.to_le_bytes());
        b[24..32].copy_from_slice(&self.reserved.to_le_bytes());
        b
    }
}

impl HvmMemmapEntry {
    pub const SIZE: usize = 24;
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..16].copy_from_slice(&self.size.to_le_bytes());
        b[16..20].copy_from_slice(&self.kind.to_le_bytes());
        b[20..24].copy_from_slice(&self.reserved.to_le_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layouts_match_xen_start_info_h() {
        assert_eq!(size_of::<HvmStartInfo>(), HvmStartInfo::SIZE);
        assert_eq!(offset_of!(HvmStartInfo, modlist_paddr), 16);
        assert_eq!(offset_of!(HvmStartInfo, rsdp_paddr), 32);
        assert_eq!(offset_of!(HvmStartInfo, memmap_entries), 48);
        assert_eq!(size_of::<HvmModlistEntry>(), 32);
        assert_eq!(size_of::<HvmMemmapEntry>(), 24);
        let s = HvmStartInfo {
            magic: START_INFO_MAGIC,
            version: 1,
            nr_modules: 2,
            ..Default::default()
        };
        let b = s.to_bytes();
        assert_eq!(&b[0..4], &[0x78, 0xc5, 0x6e, 0x33]);
        assert_eq!(b[12], 2);
    }

    #[test]
    fn fixed_addresses_do_not_overlap() {
        assert!(MODLIST_ADDR >= START_INFO_ADDR + HvmStartInfo::SIZE as u64);
        assert!(MEMMAP_ADDR >= MODLIST_ADDR + 2 * HvmModlistEntry::SIZE as u64);
        assert!(CMDLINE_ADDR >= MEMMAP_ADDR + (MEMMAP_MAX * HvmMemmapEntry::SIZE) as u64);
        assert!(CMDLINE_ADDR + CMDLINE_MAX as u64 <= 0xa000);
    }
}

/// Guest RAM below 4 GiB ends at or before this address; [PCI_HOLE_START, 4 GiB) holds
/// PCI BARs and the platform's MMIO (IOAPIC 0xfec00000, HPET 0xfed00000, LAPIC
/// 0xfee00000). RAM beyond it is placed from 4 GiB up.
pub const PCI_HOLE_START: u64 = 0xe000_0000;
/// The firmware places 32-bit memory BARs in [PCI_HOLE_START, PCI_MMIO_END).
pub const PCI_MMIO_END: u64 = 0xfec0_0000;
/// The firmware places I/O BARs in [PCI_IO_START, 0x10000).
pub const PCI_IO_START: u16 = 0xc000;
/// KVM's TSS (3 pages) and identity-map page live in this reserved range below the
/// IOAPIC, away from anything firmware uses.
pub const KVM_IDENTITY_MAP_ADDR: u64 = 0xfeff_c000;
pub const KVM_TSS_ADDR: u64 = 0xfeff_d000;
