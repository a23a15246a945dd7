//! chassis-firmware: hvmloader's job, in Rust, running inside the guest.
//!
//! This library holds the pure logic, free of any hardware access so that it builds and
//! unit-tests on the host:
//!
//! * [`aml`]: a tiny AML encoder (ACPI 6.x §20) and the DSDT body we ship;
//! * [`acpi`]: RSDP/XSDT/RSDT/FADT/FACS/MADT/DSDT builders with correct checksums;
//! * [`e820`]: building, sorting and merging a memory map from hostile input;
//! * [`pci`]: PIRQ routing, the barber-pole interrupt swizzle, BAR sizing and placement;
//! * [`bzimage`]: Linux bzImage header parsing, load placement and `boot_params`.
//!
//! The binary (`src/main.rs`) is the hardware glue: PVH entry, port I/O, memory writes.
//! Nothing in here may panic on guest-controlled or toolstack-controlled input.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod acpi;
pub mod aml;
pub mod bzimage;
pub mod e820;
pub mod fmt;
pub mod pci;
pub mod seabios;

/// Platform constants the firmware programs and describes (xen-hvm.md §2.3, §3.1).
pub mod platform {
    /// ISA IRQs wired to PCI INTx (5, 10, 11), as Xen's hvmloader.
    pub const PCI_ISA_IRQ_MASK: u16 = 0x0c20;
    /// PIIX4 PM block (Xen "V1" location): PM1a_EVT, PM1a_CNT = +4, PM_TMR = +8.
    pub const PM_BASE: u16 = 0xb000;
    pub const PM1A_EVT: u16 = PM_BASE;
    pub const PM1A_CNT: u16 = PM_BASE + 4;
    pub const PM_TMR: u16 = PM_BASE + 8;
    pub const GPE0_BASE: u16 = 0xafe0;
    pub const GPE0_LEN: u8 = 4;
    /// APM/SMI command port and the PIIX4 "ACPI enable/disable" commands.
    pub const SMI_CMD: u16 = 0xb2;
    pub const ACPI_ENABLE: u8 = 0xf1;
    pub const ACPI_DISABLE: u8 = 0xf0;
    /// ISA IRQ of the SCI.
    pub const SCI_IRQ: u8 = 9;
    /// PM1 control bits.
    pub const PM1_SCI_EN: u16 = 1 << 0;
    pub const PM1_SLP_TYP_SHIFT: u16 = 10;
    pub const PM1_SLP_TYP_MASK: u16 = 7 << 10;
    pub const PM1_SLP_EN: u16 = 1 << 13;
    /// Reset control register (PIIX3 RCR) and the value that resets the system.
    pub const RESET_PORT: u16 = 0xcf9;
    pub const RESET_VALUE: u8 = 6;
    pub const IOAPIC_ADDR: u32 = 0xfec0_0000;
    pub const IOAPIC_ID: u8 = 1;
    pub const LAPIC_ADDR: u32 = 0xfee0_0000;
    /// Where the RSDP goes (the BIOS read-only area OSes scan).
    pub const RSDP_ADDR: u64 = 0x000f_0000;
    /// The BIOS area reserved in the e820.
    pub const BIOS_AREA_START: u64 = 0x000f_0000;
    pub const BIOS_AREA_END: u64 = 0x0010_0000;
    /// Reserved up to 4 GiB from the IOAPIC (IOAPIC, HPET, LAPIC, KVM private pages).
    pub const HIGH_RESERVED_START: u64 = 0xfec0_0000;
    pub const FOUR_GIB: u64 = 0x1_0000_0000;
    /// Size of the ACPI table area carved from the top of low RAM.
    pub const ACPI_AREA_SIZE: u64 = 0x1_0000;
    /// Most vCPUs the MADT describes (xAPIC entries; Xen's HVM_MAX_VCPUS).
    pub const MAX_VCPUS: u32 = 128;
    /// Low pages the firmware owns for a direct Linux boot (below the PVH start info at
    /// 0x8000, above the real-mode IVT/BDA).
    pub const BOOT_PARAMS_ADDR: u64 = 0x7000;
    pub const KERNEL_CMDLINE_ADDR: u64 = 0x6000;
    pub const KERNEL_CMDLINE_MAX: usize = 4096;
}
