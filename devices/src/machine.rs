//! The whole emulated PC of one guest, built from one config value.
//!
//! Process mode and stubdom mode both call [`Machine::new`] with the same
//! [`MachineConfig`], so the two can never drift; the machine's saved state is the
//! concatenation of its devices' records, identical in both modes. Dispatch is a plain
//! match on addresses: the set of devices is fixed by the generation profile, and PCI
//! BARs and the PIIX4 PM block are looked up from the functions' own config space at
//! access time, so there is no address map to keep in sync.

use alloc::string::String;
use alloc::vec::Vec;

use crate::debug_ports::DebugPorts;
use crate::fw_cfg::{FwCfg, FwCfgError};
use crate::i440fx::I440Fx;
use crate::i8042::I8042;
use crate::io::{Mmio, PortIo, Width};
use crate::mc146818::Mc146818;
use crate::pci::{BarKind, ConfigAddress, PciFunction};
use crate::piix3::Piix3;
use crate::piix4_pm::{PM_BLOCK_LEN, Piix4Pm};
use crate::platform::{Platform, TimerId};
use crate::profile::Profile;
use crate::snapshot::{
    LoadError, NAME_LEN, RecordReader, RecordWriter, Snapshot, load_record, save_record,
    split_record,
};
use crate::uart16550::Uart16550;
use crate::xen_platform::XenPlatform;

/// Everything the machine builder needs; derived from the guest config.
#[derive(Clone, Debug)]
pub struct MachineConfig {
    pub profile: &'static Profile,
    /// Guest RAM below the PCI hole and above 4 GiB, in bytes.
    pub ram_below_4g: u64,
    pub ram_above_4g: u64,
    pub vcpus: u32,
    /// Number of 16550 UARTs (0..=2): COM1, COM2.
    pub serial_ports: u8,
    /// What SeaBIOS is told through fw_cfg.
    pub boot: BootOptions,
}

/// Boot settings SeaBIOS reads from fw_cfg files. The default is what a non-interactive
/// boot wants: no boot menu (SeaBIOS otherwise waits 2.5 s at "Press ESC for boot
/// menu"), no reboot after a failed boot, SeaBIOS's own device order.
///
/// No `etc/e820` file is published: SeaBIOS then adds RAM above 4 GiB from CMOS
/// 0x5b-0x5d, which the RTC holds at exactly the RAM the e820 of the guest firmware
/// lists there, so re-adding it changes nothing (SeaBIOS's e820 insert replaces
/// overlapping ranges).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootOptions {
    /// `etc/show-boot-menu` (u16 LE; also the legacy key 0x000e): 1 = show the menu.
    pub show_boot_menu: bool,
    /// `etc/boot-fail-wait` (u32 LE, ms): after "No bootable device", reboot after this
    /// long; `None` = never (published as 0xffffffff, QEMU's default; SeaBIOS's own
    /// default without the file would be a reboot after 60 s).
    pub boot_fail_wait_ms: Option<u32>,
    /// `bootorder`: newline-separated OpenFirmware device paths, published as given.
    pub bootorder: Option<String>,
}

impl BootOptions {
    /// The fw_cfg device these options and the machine's CPU and RAM sizes describe.
    pub fn fw_cfg(&self, cpus: u32, ram_size: u64) -> Result<FwCfg, FwCfgError> {
        let mut f = FwCfg::new(cpus, ram_size);
        f.set_boot_menu(self.show_boot_menu);
        f.add_file(
            "etc/show-boot-menu",
            &(self.show_boot_menu as u16).to_le_bytes(),
        )?;
        let wait = self.boot_fail_wait_ms.unwrap_or(u32::MAX);
        f.add_file("etc/boot-fail-wait", &wait.to_le_bytes())?;
        if let Some(order) = &self.bootorder {
            f.add_file("bootorder", order.as_bytes())?;
        }
        Ok(f)
    }
}

/// Reads from ports or addresses nothing decodes return all ones (open bus).
pub const OPEN_BUS: u32 = 0xffff_ffff;

pub struct Machine {
    pub profile: &'static Profile,
    config_address: ConfigAddress,
    pub host_bridge: I440Fx,
    pub isa_bridge: Piix3,
    pub pm: Piix4Pm,
    pub xen_platform: XenPlatform,
    pub rtc: Mc146818,
    pub kbd: I8042,
    pub debug: DebugPorts,
    pub serial: Vec<Uart16550>,
    pub fw_cfg: FwCfg,
}

/// The 0xcf8 address latch is guest-visible state: a guest saved between its 0xcf8 write
/// and the 0xcfc access that follows must reach the same register after restore.
impl Snapshot for ConfigAddress {
    const NAME: &'static str = "pcihost";
    const VERSION: u16 = 1;
    // v1 body: the CONFIG_ADDRESS latch (u32); every value is one a guest can write.
    fn save(&self, w: &mut RecordWriter) {
        w.u32(self.0);
    }
    fn load(&mut self, _v: u16, r: &mut RecordReader<'_>) -> Result<(), LoadError> {
        self.0 = r.u32()?;
        Ok(())
    }
}

/// A PCI function slot on bus 0.
enum Slot {
    HostBridge,
    IsaBridge,
    Pm,
    XenPlatform,
}

impl Machine {
    /// The machine `cfg` describes. A `bootorder` too large for fw_cfg (over
    /// [`crate::fw_cfg::MAX_TOTAL_FILE_BYTES`]; check with [`BootOptions::fw_cfg`]) is
    /// left out rather than failing the build.
    pub fn new(cfg: &MachineConfig) -> Self {
        let p = cfg.profile;
        let ram = cfg.ram_below_4g.saturating_add(cfg.ram_above_4g);
        let fw_cfg = cfg.boot.fw_cfg(cfg.vcpus, ram).unwrap_or_else(|_| {
            let mut b = cfg.boot.clone();
            b.bootorder = None;
            // The fixed files alone are a few bytes and always fit.
            b.fw_cfg(cfg.vcpus, ram)
                .unwrap_or_else(|_| FwCfg::new(cfg.vcpus, ram))
        });
        let mut rtc = Mc146818::new(8);
        rtc.set_memory_size(cfg.ram_below_4g, cfg.ram_above_4g);
        rtc.set_cpu_count(cfg.vcpus);
        let serial = p
            .com
            .iter()
            .take(cfg.serial_ports as usize)
            .enumerate()
            .map(|(i, s)| Uart16550::new(i as u8, s.base, s.irq))
            .collect();
        Machine {
            profile: p,
            config_address: ConfigAddress::default(),
            host_bridge: I440Fx::new(&p.host_bridge),
            isa_bridge: Piix3::new(&p.isa_bridge),
            pm: Piix4Pm::new(&p.pm, &p.pm_layout),
            xen_platform: XenPlatform::new(&p.xen_platform),
            rtc,
            kbd: I8042::new(),
            debug: DebugPorts::new(),
            serial,
            fw_cfg,
        }
    }

    fn slot(&self, bus: u8, devfn: u8) -> Option<Slot> {
        if bus != 0 {
            return None;
        }
        match devfn {
            0x00 => Some(Slot::HostBridge),
            0x08 => Some(Slot::IsaBridge),
            d if d == self.profile.pm_devfn => Some(Slot::Pm),
            d if d == self.profile.xen_platform_devfn => Some(Slot::XenPlatform),
            _ => None,
        }
    }

    fn function(&mut self, slot: Slot) -> &mut dyn PciFunction {
        match slot {
            Slot::HostBridge => &mut self.host_bridge,
            Slot::IsaBridge => &mut self.isa_bridge,
            Slot::Pm => &mut self.pm,
            Slot::XenPlatform => &mut self.xen_platform,
        }
    }

    /// The port-I/O device that decodes `port`, if any.
    fn port_device(&mut self, port: u16) -> Option<&mut dyn PortIo> {
        // Fixed ports first, before any config-space lookup: 0x80 (Linux's I/O delay)
        // and the other legacy ports are the hottest exits.
        match port {
            0x60 | 0x64 => return Some(&mut self.kbd),
            0x70 | 0x71 => return Some(&mut self.rtc),
            0x80 | 0xe9 | 0x402 => return Some(&mut self.debug),
            0x510 | 0x511 => return Some(&mut self.fw_cfg),
            0x92 | 0x4d0 | 0x4d1 => return Some(&mut self.isa_bridge),
            0x10..=0x1f => return Some(&mut self.xen_platform),
            _ => {}
        }
        let (gpe_base, gpe_len) = self.pm.gpe0_block();
        let smi = self.pm.smi_cmd_port();
        if let Some(base) = self.pm.pm_io_base() {
            if port.wrapping_sub(base) < PM_BLOCK_LEN {
                return Some(&mut self.pm);
            }
        }
        if port.wrapping_sub(gpe_base) < gpe_len || port == smi || port == smi.wrapping_add(1) {
            return Some(&mut self.pm);
        }
        let platform_io = self
            .xen_platform
            .config()
            .decoded_bars()
            .find(|(_, b)| b.kind == BarKind::Io)
            .map(|(_, b)| b);
        if let Some(b) = platform_io {
            if (port as u64).wrapping_sub(b.base) < b.size {
                return Some(&mut self.xen_platform);
            }
        }
        let uart = self
            .serial
            .iter()
            .position(|u| port.wrapping_sub(u.base()) < 8)?;
        Some(&mut self.serial[uart])
    }

    /// A guest port read of `width` (1, 2 or 4 bytes).
    pub fn pio_read(&mut self, p: &mut dyn Platform, port: u16, width: Width) -> u32 {
        let mask = width.mask() as u32;
        match (port, width) {
            (0xcf8, Width::B4) => return self.config_address.0,
            (0xcf9, Width::B1) => return self.isa_bridge.pio_read(p, port, width) & mask,
            (0xcfc..=0xcff, _) => {
                let Some(t) = self.config_address.target(port) else {
                    return mask;
                };
                return match self.slot(t.bus, t.devfn) {
                    Some(s) => self.function(s).cfg_read(t.offset, width) & mask,
                    None => mask,
                };
            }
            _ => {}
        }
        match self.port_device(port) {
            Some(d) => d.pio_read(p, port, width) & mask,
            None => OPEN_BUS & mask,
        }
    }

    /// A guest port write of `width` (1, 2 or 4 bytes).
    pub fn pio_write(&mut self, p: &mut dyn Platform, port: u16, width: Width, value: u32) {
        let value = value & width.mask() as u32;
        match (port, width) {
            (0xcf8, Width::B4) => {
                self.config_address = ConfigAddress(value);
                return;
            }
            (0xcf9, Width::B1) => return self.isa_bridge.pio_write(p, port, width, value),
            (0xcfc..=0xcff, _) => {
                if let Some(t) = self.config_address.target(port) {
                    if let Some(s) = self.slot(t.bus, t.devfn) {
                        self.function(s).cfg_write(p, t.offset, width, value);
                    }
                }
                return;
            }
            _ => {}
        }
        if let Some(d) = self.port_device(port) {
            d.pio_write(p, port, width, value);
        }
    }

    /// A guest MMIO read; `None` when nothing decodes `addr` (the caller answers open bus).
    pub fn mmio_read(&mut self, p: &mut dyn Platform, addr: u64, width: Width) -> Option<u64> {
        let bar = self.platform_mmio(addr)?;
        Some(self.xen_platform.mmio_read(p, addr - bar, width) & width.mask())
    }

    /// A guest MMIO write; returns false when nothing decodes `addr`.
    pub fn mmio_write(
        &mut self,
        p: &mut dyn Platform,
        addr: u64,
        width: Width,
        value: u64,
    ) -> bool {
        match self.platform_mmio(addr) {
            Some(bar) => {
                self.xen_platform
                    .mmio_write(p, addr - bar, width, value & width.mask());
                true
            }
            None => false,
        }
    }

    fn platform_mmio(&self, addr: u64) -> Option<u64> {
        self.xen_platform
            .config()
            .decoded_bars()
            .find(|(_, b)| {
                matches!(b.kind, BarKind::Mem32 { .. }) && addr.wrapping_sub(b.base) < b.size
            })
            .map(|(_, b)| b.base)
    }

    /// A timer armed through [`Platform::set_timer`] expired.
    pub fn on_timer(&mut self, p: &mut dyn Platform, id: TimerId) {
        match id {
            TimerId::RtcPeriodic | TimerId::RtcUpdate => self.rtc.on_timer(p, id),
            TimerId::PmTimerOverflow => self.pm.on_timer(p, id),
        }
    }

    /// Host input for UART `index`; returns the bytes accepted (the rest must be retried).
    pub fn serial_input(&mut self, p: &mut dyn Platform, index: usize, bytes: &[u8]) -> usize {
        match self.serial.get_mut(index) {
            Some(u) => u.receive(p, bytes),
            None => 0,
        }
    }

    /// Gate A20 as the guest last set it: on when the i8042 output port or port 0x92
    /// enables it (the two gates are ORed on PIIX-era boards).
    pub fn a20(&self) -> bool {
        self.kbd.a20() || self.isa_bridge.a20()
    }

    /// The state of every device as a sequence of framed records.
    pub fn save(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(save_record(&self.config_address, 0));
        out.extend(save_record(&self.host_bridge, 0));
        out.extend(save_record(&self.isa_bridge, 0));
        out.extend(save_record(&self.pm, 0));
        out.extend(save_record(&self.xen_platform, 0));
        out.extend(save_record(&self.rtc, 0));
        out.extend(save_record(&self.kbd, 0));
        out.extend(save_record(&self.debug, 0));
        out.extend(save_record(&self.fw_cfg, 0));
        for (i, u) in self.serial.iter().enumerate() {
            out.extend(save_record(u, i as u16));
        }
        out
    }

    /// Restore from [`Machine::save`] output. Each record goes to the device its name and
    /// instance say; a record for a device this machine lacks is an error, not skipped.
    /// On error, devices loaded before the bad record keep their new state: callers
    /// restore into a fresh machine and discard it on failure. After a successful load
    /// every interrupt line is re-driven and every timer re-armed through `p`.
    pub fn load(&mut self, p: &mut dyn Platform, data: &[u8]) -> Result<(), LoadError> {
        self.load_records(data)?;
        self.rtc.post_load(p);
        self.pm.post_load(p);
        self.kbd.sync_irqs(p);
        for u in &mut self.serial {
            u.sync_irq(p);
        }
        Ok(())
    }

    fn load_records(&mut self, mut data: &[u8]) -> Result<(), LoadError> {
        while !data.is_empty() {
            let (h, _, _) = split_record(data)?;
            let is = |n: &str| {
                let mut b = [0u8; NAME_LEN];
                b[..n.len()].copy_from_slice(n.as_bytes());
                b == h.name
            };
            data = if is(ConfigAddress::NAME) {
                load_record(&mut self.config_address, data)?
            } else if is(I440Fx::NAME) {
                load_record(&mut self.host_bridge, data)?
            } else if is(Piix3::NAME) {
                load_record(&mut self.isa_bridge, data)?
            } else if is(Piix4Pm::NAME) {
                load_record(&mut self.pm, data)?
            } else if is(XenPlatform::NAME) {
                load_record(&mut self.xen_platform, data)?
            } else if is(Mc146818::NAME) {
                load_record(&mut self.rtc, data)?
            } else if is(I8042::NAME) {
                load_record(&mut self.kbd, data)?
            } else if is(DebugPorts::NAME) {
                load_record(&mut self.debug, data)?
            } else if is(FwCfg::NAME) {
                load_record(&mut self.fw_cfg, data)?
            } else if is(Uart16550::NAME) {
                match self.serial.get_mut(h.instance as usize) {
                    Some(u) => load_record(u, data)?,
                    None => {
                        return Err(LoadError::Invalid {
                            name: Uart16550::NAME,
                            field: "instance",
                        });
                    }
                }
            } else {
                return Err(LoadError::WrongName {
                    expected: "a device of this machine",
                    found: h.name,
                });
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{QEMU_XEN, QEMU_XEN_TRADITIONAL};
    use crate::testing::MockPlatform;

    fn machine(profile: &'static Profile) -> Machine {
        Machine::new(&MachineConfig {
            profile,
            ram_below_4g: 512 << 20,
            ram_above_4g: 0,
            vcpus: 1,
            serial_ports: 1,
            boot: BootOptions::default(),
        })
    }

    fn cfg_read32(m: &mut Machine, p: &mut MockPlatform, devfn: u8, off: u8) -> u32 {
        m.pio_write(
            p,
            0xcf8,
            Width::B4,
            0x8000_0000 | (devfn as u32) << 8 | off as u32,
        );
        m.pio_read(p, 0xcfc, Width::B4)
    }

    #[test]
    fn pci_scan_finds_exactly_the_profile() {
        for profile in crate::profile::ALL {
            let mut m = machine(profile);
            let mut p = MockPlatform::new();
            let mut found = Vec::new();
            for devfn in 0..=255u8 {
                let id = cfg_read32(&mut m, &mut p, devfn, 0);
                if id != 0xffff_ffff {
                    found.push((devfn, id));
                }
            }
            let want: Vec<_> = profile
                .pci_functions()
                .iter()
                .map(|(d, i)| (*d, (i.device as u32) << 16 | i.vendor as u32))
                .collect();
            assert_eq!(found, want, "{}", profile.name);
        }
    }

    #[test]
    fn generations_put_the_platform_device_in_different_slots() {
        let mut p = MockPlatform::new();
        let mut a = machine(&QEMU_XEN);
        let mut b = machine(&QEMU_XEN_TRADITIONAL);
        assert_eq!(cfg_read32(&mut a, &mut p, 0x10, 0), 0x0001_5853);
        assert_eq!(cfg_read32(&mut b, &mut p, 0x10, 0), 0xffff_ffff);
        assert_eq!(cfg_read32(&mut b, &mut p, 0x18, 0), 0x0001_5853);
    }

    #[test]
    fn unclaimed_ports_read_open_bus() {
        let mut m = machine(&QEMU_XEN);
        let mut p = MockPlatform::new();
        assert_eq!(m.pio_read(&mut p, 0x2e8, Width::B1), 0xff);
        assert_eq!(m.pio_read(&mut p, 0x1234, Width::B2), 0xffff);
        m.pio_write(&mut p, 0x1234, Width::B4, 0);
        assert_eq!(m.mmio_read(&mut p, 0xdead_0000, Width::B4), None);
    }

    #[test]
    fn machine_state_round_trips() {
        let mut m = machine(&QEMU_XEN);
        let mut p = MockPlatform::new();
        cfg_read32(&mut m, &mut p, 0x08, 0x60);
        m.pio_write(&mut p, 0xcfc, Width::B1, 11);
        let saved = m.save();
        let mut n = machine(&QEMU_XEN);
        n.load(&mut p, &saved).unwrap();
        assert_eq!(n.save(), saved);
        let mut bad = machine(&QEMU_XEN);
        assert!(bad.load(&mut p, &saved[..saved.len() - 8]).is_err());
    }

    #[test]
    fn restore_keeps_the_config_address_latch() {
        // Found by the machine_io fuzz target: a guest saved between its 0xcf8 write and
        // the 0xcfc read read 0xffffffff (latch 0) after restore instead of the ID.
        let mut m = machine(&QEMU_XEN);
        let mut p = MockPlatform::new();
        m.pio_write(&mut p, 0xcf8, Width::B4, 0x8000_0000);
        let saved = m.save();
        let mut n = machine(&QEMU_XEN);
        n.load(&mut p, &saved).unwrap();
        assert_eq!(n.pio_read(&mut p, 0xcf8, Width::B4), 0x8000_0000);
        assert_eq!(n.pio_read(&mut p, 0xcfc, Width::B4), 0x1237_8086);
    }

    /// Reads `n` bytes of fw_cfg item `key` through the machine's ports.
    fn fw_cfg_read(m: &mut Machine, p: &mut MockPlatform, key: u16, n: usize) -> Vec<u8> {
        m.pio_write(p, 0x510, Width::B2, key as u32);
        (0..n)
            .map(|_| m.pio_read(p, 0x511, Width::B1) as u8)
            .collect()
    }

    /// The value of fw_cfg file `name`, found through the directory as SeaBIOS does.
    fn fw_cfg_file(m: &mut Machine, p: &mut MockPlatform, name: &str) -> Option<Vec<u8>> {
        let count = u32::from_be_bytes(fw_cfg_read(m, p, 0x19, 4).try_into().unwrap());
        let dir = fw_cfg_read(m, p, 0x19, 4 + 64 * count as usize);
        let e = dir[4..].chunks(64).find(|e| {
            let n = &e[8..];
            n.starts_with(name.as_bytes()) && n[name.len()] == 0
        })?;
        let size = u32::from_be_bytes(e[0..4].try_into().unwrap()) as usize;
        let key = u16::from_be_bytes([e[4], e[5]]);
        Some(fw_cfg_read(m, p, key, size))
    }

    #[test]
    fn both_generations_configure_seabios_through_fw_cfg() {
        for profile in crate::profile::ALL {
            let mut m = machine(profile);
            let mut p = MockPlatform::new();
            assert_eq!(
                fw_cfg_read(&mut m, &mut p, 0, 4),
                b"QEMU",
                "{}",
                profile.name
            );
            assert_eq!(fw_cfg_read(&mut m, &mut p, 1, 4), [1, 0, 0, 0]);
            assert_eq!(
                fw_cfg_read(&mut m, &mut p, 3, 8),
                (512u64 << 20).to_le_bytes()
            );
            assert_eq!(
                fw_cfg_file(&mut m, &mut p, "etc/show-boot-menu").unwrap(),
                [0, 0]
            );
            assert_eq!(fw_cfg_read(&mut m, &mut p, 0x0e, 2), [0, 0]);
            assert_eq!(
                fw_cfg_file(&mut m, &mut p, "etc/boot-fail-wait").unwrap(),
                [0xff; 4]
            );
            assert_eq!(fw_cfg_file(&mut m, &mut p, "bootorder"), None);
            assert_eq!(fw_cfg_file(&mut m, &mut p, "etc/e820"), None);
        }
    }

    #[test]
    fn boot_options_reach_fw_cfg() {
        let mut m = Machine::new(&MachineConfig {
            profile: &QEMU_XEN,
            ram_below_4g: 3 << 30,
            ram_above_4g: 1 << 30,
            vcpus: 2,
            serial_ports: 1,
            boot: BootOptions {
                show_boot_menu: true,
                boot_fail_wait_ms: Some(5000),
                bootorder: Some("/pci@i0cf8/ide@1,1/drive@1/disk@0\n".into()),
            },
        });
        let mut p = MockPlatform::new();
        assert_eq!(
            fw_cfg_read(&mut m, &mut p, 3, 8),
            (4u64 << 30).to_le_bytes()
        );
        assert_eq!(fw_cfg_read(&mut m, &mut p, 5, 2), [2, 0]);
        assert_eq!(fw_cfg_read(&mut m, &mut p, 0x0e, 2), [1, 0]);
        assert_eq!(
            fw_cfg_file(&mut m, &mut p, "etc/show-boot-menu").unwrap(),
            [1, 0]
        );
        assert_eq!(
            fw_cfg_file(&mut m, &mut p, "etc/boot-fail-wait").unwrap(),
            5000u32.to_le_bytes()
        );
        assert_eq!(
            fw_cfg_file(&mut m, &mut p, "bootorder").unwrap(),
            b"/pci@i0cf8/ide@1,1/drive@1/disk@0\n"
        );
    }

    #[test]
    fn restore_keeps_the_fw_cfg_cursor() {
        let mut m = machine(&QEMU_XEN);
        let mut p = MockPlatform::new();
        assert_eq!(fw_cfg_read(&mut m, &mut p, 0, 2), b"QE");
        let saved = m.save();
        let mut n = machine(&QEMU_XEN);
        n.load(&mut p, &saved).unwrap();
        assert_eq!(n.pio_read(&mut p, 0x511, Width::B1), b'M' as u32);
        assert_eq!(n.pio_read(&mut p, 0x511, Width::B1), b'U' as u32);
    }

    #[test]
    fn restore_redrives_interrupt_lines() {
        // COM1 with OUT2 and the THR-empty interrupt enabled holds IRQ 4 high; a machine
        // restored from its state on another host must raise the line again.
        let mut m = machine(&QEMU_XEN);
        let mut p = MockPlatform::new();
        m.pio_write(&mut p, 0x3fc, Width::B1, 0x08); // MCR: OUT2
        m.pio_write(&mut p, 0x3f9, Width::B1, 0x02); // IER: THRE
        assert!(p.irq(4));
        let saved = m.save();
        let mut q = MockPlatform::new();
        let mut n = machine(&QEMU_XEN);
        n.load(&mut q, &saved).unwrap();
        assert!(q.irq(4), "restored UART did not re-raise its line");
    }
}
