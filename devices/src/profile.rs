//! Chipset generations: frozen, data-only descriptions of what a guest sees.
//!
//! A profile fixes PCI identities, slots, the ACPI PM block and the ISA devices. Code
//! never asks "which generation is this?"; it reads the profile. Once a profile is
//! released its values never change (checked by fingerprint tests); a new behaviour is a
//! new profile. Values come from research/xen-hvm.md §2.2 and §3.
//!
//! Not in a profile, because every generation has it: the fw_cfg interface at ports
//! 0x510/0x511 ([`crate::fw_cfg`]). It is how chassis configures SeaBIOS (boot order,
//! boot menu, boot-fail wait), so both generations offer it, where real Xen's qemu-xen
//! creates fw_cfg only for a direct kernel boot and qemu-xen-traditional never does.
//! A guest OS ignores it (Linux binds its `qemu_fw_cfg` driver only through ACPI
//! `QEMU0002` or a command-line option; our DSDT has no such device).

use crate::pci::PciIdent;

/// The ACPI power-management layout of a generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmLayout {
    /// PM1a_EVT base the firmware programs into PIIX4 PMBA (config 0x40); PM1a_CNT is
    /// +4, PM_TMR +8 (Xen's "V1" location, 0xb000).
    pub pm_base: u16,
    /// GPE0 block (STS then EN halves).
    pub gpe0_base: u16,
    pub gpe0_len: u16,
    /// PM1a_CNT at reset: trad starts with SCI_EN set, QEMU with it clear.
    pub pm1_cnt_reset: u16,
    /// APM/SMI command port (ACPI enable/disable via 0xf1/0xf0).
    pub smi_cmd_port: u16,
    /// ISA IRQ of the SCI.
    pub sci_irq: u8,
}

/// A 16550 UART position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UartSlot {
    pub base: u16,
    pub irq: u8,
}

/// One chipset generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Profile {
    /// `device_model_version` spelling.
    pub name: &'static str,
    pub host_bridge: PciIdent,
    pub isa_bridge: PciIdent,
    pub pm: PciIdent,
    pub xen_platform: PciIdent,
    /// devfn of the PIIX4 PM function (00:01.3).
    pub pm_devfn: u8,
    /// devfn of the Xen platform device (qemu-xen 00:02.0, trad 00:03.0).
    pub xen_platform_devfn: u8,
    pub pm_layout: PmLayout,
    pub com: [UartSlot; 2],
}

const fn ident(
    vendor: u16,
    device: u16,
    revision: u8,
    class: u32,
    subsys: (u16, u16),
    header_type: u8,
    pin: u8,
) -> PciIdent {
    PciIdent {
        vendor,
        device,
        revision,
        class,
        subsystem_vendor: subsys.0,
        subsystem: subsys.1,
        header_type,
        interrupt_pin: pin,
    }
}

/// QEMU's default subsystem (PCI_SUBVENDOR_ID_REDHAT_QUMRANET / PCI_SUBDEVICE_ID_QEMU).
const QEMU_SUBSYS: (u16, u16) = (0x1af4, 0x1100);
/// Xen's subsystem, stamped by qemu-xen-traditional on its emulated functions.
const XEN_SUBSYS: (u16, u16) = (0x5853, 0x0001);
const NO_SUBSYS: (u16, u16) = (0, 0);

const COM: [UartSlot; 2] = [
    UartSlot {
        base: 0x3f8,
        irq: 4,
    },
    UartSlot {
        base: 0x2f8,
        irq: 3,
    },
];

/// Upstream QEMU as Xen's device model (`xenfv` machine), Xen ≥ 4.3 default.
pub const QEMU_XEN: Profile = Profile {
    name: "qemu-xen",
    host_bridge: ident(0x8086, 0x1237, 0x02, 0x06_00_00, QEMU_SUBSYS, 0x00, 0),
    isa_bridge: ident(0x8086, 0x7000, 0x00, 0x06_01_00, QEMU_SUBSYS, 0x80, 0),
    pm: ident(0x8086, 0x7113, 0x03, 0x06_80_00, QEMU_SUBSYS, 0x00, 1),
    xen_platform: ident(0x5853, 0x0001, 0x01, 0xff_80_00, XEN_SUBSYS, 0x00, 1),
    pm_devfn: 0x0b,
    xen_platform_devfn: 0x10,
    pm_layout: PmLayout {
        pm_base: 0xb000,
        gpe0_base: 0xafe0,
        gpe0_len: 4,
        pm1_cnt_reset: 0,
        smi_cmd_port: 0xb2,
        sci_irq: 9,
    },
    com: COM,
};

/// qemu-xen-traditional (Xen ≤ 4.20), the frozen chassis of older installs.
pub const QEMU_XEN_TRADITIONAL: Profile = Profile {
    name: "qemu-xen-traditional",
    host_bridge: ident(0x8086, 0x1237, 0x02, 0x06_00_00, NO_SUBSYS, 0x00, 0),
    isa_bridge: ident(0x8086, 0x7000, 0x00, 0x06_01_00, NO_SUBSYS, 0x80, 0),
    pm: ident(0x8086, 0x7113, 0x01, 0x06_80_00, NO_SUBSYS, 0x00, 1),
    xen_platform: ident(0x5853, 0x0001, 0x01, 0xff_80_00, XEN_SUBSYS, 0x00, 1),
    pm_devfn: 0x0b,
    xen_platform_devfn: 0x18,
    pm_layout: PmLayout {
        pm_base: 0xb000,
        gpe0_base: 0xafe0,
        gpe0_len: 4,
        pm1_cnt_reset: 1, // SCI_EN
        smi_cmd_port: 0xb2,
        sci_irq: 9,
    },
    com: COM,
};

/// Every generation this build knows, newest default first.
pub const ALL: [&Profile; 2] = [&QEMU_XEN, &QEMU_XEN_TRADITIONAL];

/// Look a generation up by its `device_model_version` name.
pub fn by_name(name: &str) -> Option<&'static Profile> {
    ALL.iter().copied().find(|p| p.name == name)
}

impl Profile {
    /// (devfn, identity) of every PCI function the machine of this profile has, in slot
    /// order: what a guest's PCI scan must find.
    pub fn pci_functions(&self) -> [(u8, PciIdent); 4] {
        let mut f = [
            (0x00, self.host_bridge),
            (0x08, self.isa_bridge),
            (self.pm_devfn, self.pm),
            (self.xen_platform_devfn, self.xen_platform),
        ];
        f.sort_unstable_by_key(|(d, _)| *d);
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_by_xl_name() {
        assert_eq!(by_name("qemu-xen").unwrap().pm.revision, 3);
        assert_eq!(by_name("qemu-xen-traditional").unwrap().pm.revision, 1);
        assert!(by_name("qemu-upstream").is_none());
    }

    #[test]
    fn generations_differ_where_xen_says_they_do() {
        // The "motherboard swap" differences a guest notices (xen-hvm.md §2.4).
        assert_ne!(
            QEMU_XEN.xen_platform_devfn,
            QEMU_XEN_TRADITIONAL.xen_platform_devfn
        );
        assert_ne!(QEMU_XEN.pm.revision, QEMU_XEN_TRADITIONAL.pm.revision);
        assert_ne!(
            QEMU_XEN.pm_layout.pm1_cnt_reset,
            QEMU_XEN_TRADITIONAL.pm_layout.pm1_cnt_reset
        );
    }
}
