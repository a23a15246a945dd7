//! The stub-domain start-info page (chassis layout, version 1): what the hypervisor
//! tells a device-model stub domain about the guest it serves and its own machine.
//!
//! The hypervisor writes it into the stub domain's memory before the stub's first
//! instruction; the stub decodes it once with [`StubStartInfo::from_bytes`], which
//! checks every field, and never reads the page again. Little endian:
//!
//! | off | size | field |
//! | --- | --- | --- |
//! | 0x000 | 4 | `magic` = [`MAGIC`] ("CHSD") |
//! | 0x004 | 4 | `version` = 1 |
//! | 0x008 | 4 | `size` = [`StubStartInfo::SIZE`] (bytes of this structure) |
//! | 0x00c | 4 | guest domain id |
//! | 0x010 | 4 | number of guest vCPUs (1..=128) |
//! | 0x014 | 4 | buffered-ioreq event-channel port (0 = no buffered ring) |
//! | 0x018 | 8 | ioreq page gpa (in the stub's physical space) |
//! | 0x020 | 8 | buffered ioreq page gpa (0 = none) |
//! | 0x028 | 8 | event-channel page gpa |
//! | 0x030 | 8 | guest-RAM foreign window base (stub gpa) |
//! | 0x038 | 8 | guest-RAM foreign window size |
//! | 0x040 | 8 | stub RAM size |
//! | 0x048 | 4 | console device: index into the virtio list, or [`NO_CONSOLE`] |
//! | 0x04c | 4 | number of virtio-mmio devices (0..=8) |
//! | 0x050 | 8 × 24 | virtio-mmio devices: base u64, size u64, irq u32, kind u32 |
//! | 0x110 | 128 × 4 | per-vCPU ioreq event-channel ports (unused entries 0) |
//! | 0x310 | 8 | hypercall page gpa (the hypervisor filled it before entry) |
//! | 0x318 | 8 | machine-config page gpa (read-only to the stub) |
//! | 0x320 | 4 | machine-config length in bytes (1..=4096) |
//! | 0x324 | 4 | platform-slot event-channel port (timer expiry, console input) |
//! | 0x328 | 8 | wall-clock base: ns since the Unix epoch at guest time 0 |
//! | 0x330 | 4 | flags: bit 0 = deterministic guest time; other bits zero |
//! | 0x334 | 4 | self-test ([`SelfTest`]; 0 in production) |
//! | 0x338 | 4 | upcall vector (32..=255) |
//! | 0x33c | 4 | reserved, zero |
//! | 0x340 | | end |
//!
//! The machine-config page holds `chassis_devices::machine::MachineConfig::encode`'s
//! bytes: the stub domain builds its machine with the same `Machine::new` from the
//! same config value as process mode.
//!
//! All gpas and sizes of pages are 4 KiB aligned. A virtio-mmio device is one
//! register window of at most 4 KiB; `kind` is its virtio device id (1 net, 2 block,
//! 3 console); `irq` is the stub domain's GSI (< [`MAX_STUB_GSI`]).

use crate::evtchn::valid_port;

/// "CHSD" little endian.
pub const MAGIC: u32 = u32::from_le_bytes(*b"CHSD");
pub const VERSION: u32 = 1;
/// Per-vCPU ioreq ports (= ioreq slots per page).
pub const MAX_VCPUS: usize = 128;
pub const MAX_VIRTIO: usize = 8;
/// `console_device` value for "no console".
pub const NO_CONSOLE: u32 = u32::MAX;
/// Interrupt lines of the stub domain's interrupt controller.
pub const MAX_STUB_GSI: u32 = 48;
/// Largest virtio-mmio register window.
pub const MAX_VIRTIO_WINDOW: u64 = 0x1000;
const PAGE: u64 = 4096;

const OFF_VIRTIO: usize = 0x50;
const VIRTIO_ENTRY: usize = 24;
const OFF_PORTS: usize = OFF_VIRTIO + MAX_VIRTIO * VIRTIO_ENTRY;
const OFF_EXT: usize = OFF_PORTS + MAX_VCPUS * 4;

/// The stub domain's physical memory map (chassis, version 1). The hypervisor backs
/// exactly these ranges; any other access by the stub domain faults and stops it (and
/// its guest) with a report.
pub mod map {
    /// Stub RAM starts at 0 and is `stub_ram_size` bytes.
    pub const RAM_BASE: u64 = 0;
    /// The start-info page.
    pub const START_INFO: u64 = 0x1000;
    /// The hypercall page.
    pub const HYPERCALL_PAGE: u64 = 0x2000;
    /// The unikernel's ELF is linked and loaded here (PT_LOAD at p_paddr), entered in
    /// 32-bit flat protected mode with paging off and EBX = [`START_INFO`] (as PVH).
    pub const IMAGE_BASE: u64 = 0x10_0000;
    /// Shared pages, outside stub RAM: the ioreq page, the buffered ring, the
    /// event-channel page, then the machine-config page.
    pub const SHARED_BASE: u64 = 0x8000_0000;
    pub const IOREQ_PAGE: u64 = SHARED_BASE;
    pub const BUFIOREQ_PAGE: u64 = SHARED_BASE + 0x1000;
    pub const EVTCHN_PAGE: u64 = SHARED_BASE + 0x2000;
    pub const CONFIG_PAGE: u64 = SHARED_BASE + 0x3000;
    pub const SHARED_END: u64 = SHARED_BASE + 0x4000;
    /// virtio-mmio register windows, 4 KiB apart.
    pub const VIRTIO_BASE: u64 = 0x9000_0000;
    /// The guest's physical memory as a foreign window: guest gpa `g` is stub gpa
    /// `GUEST_WINDOW + g`, for `g` below the window size (guest RAM ranges only; the
    /// guest's holes in it fault).
    pub const GUEST_WINDOW: u64 = 1 << 40;
    /// The vector the event-channel upcall arrives on.
    pub const UPCALL_VECTOR: u8 = 0xf3;
    /// Smallest and default stub RAM.
    pub const MIN_RAM: u64 = 2 << 20;
    pub const DEFAULT_RAM: u64 = 4 << 20;
    /// Largest stub RAM (it must stay below the shared pages).
    pub const MAX_RAM: u64 = SHARED_BASE;
}

/// Test hooks a stub domain obeys at start-up, so tests can show how the hypervisor
/// contains a misbehaving stub. Production configs never set them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum SelfTest {
    None = 0,
    /// Read a stub-physical address outside everything the hypervisor backs.
    TouchOutside = 1,
    /// Write to the guest window just past the guest's memory.
    TouchPastGuest = 2,
    /// Stop answering requests (spin with interrupts off) after start-up.
    Hang = 3,
    /// Panic after start-up.
    Panic = 4,
}

impl SelfTest {
    pub const fn from_raw(v: u32) -> Option<Self> {
        match v {
            0 => Some(Self::None),
            1 => Some(Self::TouchOutside),
            2 => Some(Self::TouchPastGuest),
            3 => Some(Self::Hang),
            4 => Some(Self::Panic),
            _ => None,
        }
    }
}

/// [`StubStartInfo::flags`] bit: guest time is virtual (instruction counts).
pub const FLAG_DETERMINISTIC: u32 = 1;

const _: () = assert!(StubStartInfo::SIZE <= 4096);

/// virtio device ids the stub domain drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum VirtioKind {
    Net = 1,
    Block = 2,
    Console = 3,
}

impl VirtioKind {
    pub const fn from_raw(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Net),
            2 => Some(Self::Block),
            3 => Some(Self::Console),
            _ => None,
        }
    }
}

/// One virtio-mmio device of the stub domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioMmioDevice {
    pub base: u64,
    pub size: u64,
    pub irq: u32,
    pub kind: VirtioKind,
}

/// Why a start-info page was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartInfoError {
    Truncated {
        needed: usize,
        available: usize,
    },
    BadMagic(u32),
    UnsupportedVersion(u32),
    /// The `size` field is not this version's size.
    BadSize(u32),
    /// A field holds an impossible value.
    Invalid(&'static str),
}

/// The decoded page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StubStartInfo {
    pub guest_domid: u32,
    pub nr_vcpus: u32,
    pub bufioreq_port: u32,
    pub ioreq_page_gpa: u64,
    pub bufioreq_page_gpa: u64,
    pub evtchn_page_gpa: u64,
    pub guest_ram_base: u64,
    pub guest_ram_size: u64,
    pub stub_ram_size: u64,
    pub console_device: u32,
    pub nr_virtio: u32,
    pub virtio: [Option<VirtioMmioDevice>; MAX_VIRTIO],
    pub ioreq_ports: [u32; MAX_VCPUS],
    pub hypercall_page_gpa: u64,
    pub config_page_gpa: u64,
    pub config_len: u32,
    pub platform_port: u32,
    pub wall_clock_base_ns: u64,
    pub flags: u32,
    pub selftest: SelfTest,
    pub upcall_vector: u32,
}

fn rd_u32(b: &[u8], off: usize) -> u32 {
    match b.get(off..off + 4) {
        Some(s) => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

fn rd_u64(b: &[u8], off: usize) -> u64 {
    match b.get(off..off + 8) {
        Some(s) => {
            let mut a = [0u8; 8];
            a.copy_from_slice(s);
            u64::from_le_bytes(a)
        }
        None => 0,
    }
}

fn wr(b: &mut [u8], off: usize, v: &[u8]) {
    if let Some(d) = b.get_mut(off..off + v.len()) {
        d.copy_from_slice(v);
    }
}

fn aligned(v: u64) -> bool {
    v.is_multiple_of(PAGE)
}

impl Default for StubStartInfo {
    fn default() -> Self {
        Self::new()
    }
}

impl StubStartInfo {
    /// Bytes of the encoded structure.
    pub const SIZE: usize = OFF_EXT + 0x30;

    /// An empty (not yet valid) record: no vCPUs, no devices, no console.
    pub const fn new() -> Self {
        StubStartInfo {
            guest_domid: 0,
            nr_vcpus: 0,
            bufioreq_port: 0,
            ioreq_page_gpa: 0,
            bufioreq_page_gpa: 0,
            evtchn_page_gpa: 0,
            guest_ram_base: 0,
            guest_ram_size: 0,
            stub_ram_size: 0,
            console_device: NO_CONSOLE,
            nr_virtio: 0,
            virtio: [None; MAX_VIRTIO],
            ioreq_ports: [0; MAX_VCPUS],
            hypercall_page_gpa: 0,
            config_page_gpa: 0,
            config_len: 0,
            platform_port: 0,
            wall_clock_base_ns: 0,
            flags: 0,
            selftest: SelfTest::None,
            upcall_vector: map::UPCALL_VECTOR as u32,
        }
    }

    /// The virtio devices in list order.
    pub fn virtio_devices(&self) -> impl Iterator<Item = &VirtioMmioDevice> {
        self.virtio.iter().flatten()
    }

    /// Encode. Writes the fields as they are; [`StubStartInfo::validate`] first if
    /// the record is built from untrusted parts.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        wr(&mut b, 0x00, &MAGIC.to_le_bytes());
        wr(&mut b, 0x04, &VERSION.to_le_bytes());
        wr(&mut b, 0x08, &(Self::SIZE as u32).to_le_bytes());
        wr(&mut b, 0x0c, &self.guest_domid.to_le_bytes());
        wr(&mut b, 0x10, &self.nr_vcpus.to_le_bytes());
        wr(&mut b, 0x14, &self.bufioreq_port.to_le_bytes());
        wr(&mut b, 0x18, &self.ioreq_page_gpa.to_le_bytes());
        wr(&mut b, 0x20, &self.bufioreq_page_gpa.to_le_bytes());
        wr(&mut b, 0x28, &self.evtchn_page_gpa.to_le_bytes());
        wr(&mut b, 0x30, &self.guest_ram_base.to_le_bytes());
        wr(&mut b, 0x38, &self.guest_ram_size.to_le_bytes());
        wr(&mut b, 0x40, &self.stub_ram_size.to_le_bytes());
        wr(&mut b, 0x48, &self.console_device.to_le_bytes());
        wr(&mut b, 0x4c, &self.nr_virtio.to_le_bytes());
        for (i, d) in self.virtio.iter().enumerate() {
            if let Some(d) = d {
                let o = OFF_VIRTIO + i * VIRTIO_ENTRY;
                wr(&mut b, o, &d.base.to_le_bytes());
                wr(&mut b, o + 8, &d.size.to_le_bytes());
                wr(&mut b, o + 16, &d.irq.to_le_bytes());
                wr(&mut b, o + 20, &(d.kind as u32).to_le_bytes());
            }
        }
        for (i, p) in self.ioreq_ports.iter().enumerate() {
            wr(&mut b, OFF_PORTS + i * 4, &p.to_le_bytes());
        }
        wr(&mut b, OFF_EXT, &self.hypercall_page_gpa.to_le_bytes());
        wr(&mut b, OFF_EXT + 0x08, &self.config_page_gpa.to_le_bytes());
        wr(&mut b, OFF_EXT + 0x10, &self.config_len.to_le_bytes());
        wr(&mut b, OFF_EXT + 0x14, &self.platform_port.to_le_bytes());
        wr(
            &mut b,
            OFF_EXT + 0x18,
            &self.wall_clock_base_ns.to_le_bytes(),
        );
        wr(&mut b, OFF_EXT + 0x20, &self.flags.to_le_bytes());
        wr(
            &mut b,
            OFF_EXT + 0x24,
            &(self.selftest as u32).to_le_bytes(),
        );
        wr(&mut b, OFF_EXT + 0x28, &self.upcall_vector.to_le_bytes());
        b
    }

    /// Decode and validate. `b` may be longer than [`StubStartInfo::SIZE`] (the whole
    /// page); the bytes after it are ignored.
    pub fn from_bytes(b: &[u8]) -> Result<Self, StartInfoError> {
        if b.len() < Self::SIZE {
            return Err(StartInfoError::Truncated {
                needed: Self::SIZE,
                available: b.len(),
            });
        }
        let magic = rd_u32(b, 0x00);
        if magic != MAGIC {
            return Err(StartInfoError::BadMagic(magic));
        }
        let version = rd_u32(b, 0x04);
        if version != VERSION {
            return Err(StartInfoError::UnsupportedVersion(version));
        }
        let size = rd_u32(b, 0x08);
        if size as usize != Self::SIZE {
            return Err(StartInfoError::BadSize(size));
        }
        let mut s = StubStartInfo {
            guest_domid: rd_u32(b, 0x0c),
            nr_vcpus: rd_u32(b, 0x10),
            bufioreq_port: rd_u32(b, 0x14),
            ioreq_page_gpa: rd_u64(b, 0x18),
            bufioreq_page_gpa: rd_u64(b, 0x20),
            evtchn_page_gpa: rd_u64(b, 0x28),
            guest_ram_base: rd_u64(b, 0x30),
            guest_ram_size: rd_u64(b, 0x38),
            stub_ram_size: rd_u64(b, 0x40),
            console_device: rd_u32(b, 0x48),
            nr_virtio: rd_u32(b, 0x4c),
            ..Self::new()
        };
        if s.nr_virtio as usize > MAX_VIRTIO {
            return Err(StartInfoError::Invalid("nr_virtio"));
        }
        for (i, slot) in s.virtio.iter_mut().enumerate() {
            let o = OFF_VIRTIO + i * VIRTIO_ENTRY;
            let (base, size, irq, kind) = (
                rd_u64(b, o),
                rd_u64(b, o + 8),
                rd_u32(b, o + 16),
                rd_u32(b, o + 20),
            );
            if i < s.nr_virtio as usize {
                let kind =
                    VirtioKind::from_raw(kind).ok_or(StartInfoError::Invalid("virtio kind"))?;
                *slot = Some(VirtioMmioDevice {
                    base,
                    size,
                    irq,
                    kind,
                });
            } else if base != 0 || size != 0 || irq != 0 || kind != 0 {
                return Err(StartInfoError::Invalid("unused virtio entry"));
            }
        }
        for (i, p) in s.ioreq_ports.iter_mut().enumerate() {
            *p = rd_u32(b, OFF_PORTS + i * 4);
        }
        s.hypercall_page_gpa = rd_u64(b, OFF_EXT);
        s.config_page_gpa = rd_u64(b, OFF_EXT + 0x08);
        s.config_len = rd_u32(b, OFF_EXT + 0x10);
        s.platform_port = rd_u32(b, OFF_EXT + 0x14);
        s.wall_clock_base_ns = rd_u64(b, OFF_EXT + 0x18);
        s.flags = rd_u32(b, OFF_EXT + 0x20);
        s.selftest = SelfTest::from_raw(rd_u32(b, OFF_EXT + 0x24))
            .ok_or(StartInfoError::Invalid("selftest"))?;
        s.upcall_vector = rd_u32(b, OFF_EXT + 0x28);
        if rd_u32(b, OFF_EXT + 0x2c) != 0 {
            return Err(StartInfoError::Invalid("reserved"));
        }
        s.validate()?;
        Ok(s)
    }

    /// Check every field against what the stub domain relies on.
    pub fn validate(&self) -> Result<(), StartInfoError> {
        let bad = |f| Err(StartInfoError::Invalid(f));
        if self.nr_vcpus == 0 || self.nr_vcpus > crate::ioreq::MAX_STUB_VCPUS {
            return bad("nr_vcpus");
        }
        let page = |v: u64| v != 0 && aligned(v);
        if !page(self.hypercall_page_gpa) {
            return bad("hypercall_page_gpa");
        }
        if !page(self.config_page_gpa) || self.config_len == 0 || self.config_len > 4096 {
            return bad("config_page");
        }
        if !valid_port(self.platform_port)
            || self.platform_port == self.bufioreq_port
            || self
                .ioreq_ports
                .iter()
                .take(self.nr_vcpus as usize)
                .any(|&p| p == self.platform_port)
        {
            return bad("platform_port");
        }
        if self.flags & !FLAG_DETERMINISTIC != 0 {
            return bad("flags");
        }
        if !(32..=255).contains(&self.upcall_vector) {
            return bad("upcall_vector");
        }
        for (i, &p) in self.ioreq_ports.iter().enumerate() {
            let used = i < self.nr_vcpus as usize;
            if (used && !valid_port(p)) || (!used && p != 0) {
                return bad("ioreq_ports");
            }
        }
        for (i, &p) in self
            .ioreq_ports
            .iter()
            .enumerate()
            .take(self.nr_vcpus as usize)
        {
            if self.ioreq_ports.iter().take(i).any(|&q| q == p) || p == self.bufioreq_port {
                return bad("ioreq_ports");
            }
        }
        if !page(self.ioreq_page_gpa) {
            return bad("ioreq_page_gpa");
        }
        if !page(self.evtchn_page_gpa) {
            return bad("evtchn_page_gpa");
        }
        match self.bufioreq_port {
            0 if self.bufioreq_page_gpa != 0 => return bad("bufioreq_page_gpa"),
            0 => {}
            p if !valid_port(p) => return bad("bufioreq_port"),
            _ if !page(self.bufioreq_page_gpa) => return bad("bufioreq_page_gpa"),
            _ => {}
        }
        if !aligned(self.guest_ram_base)
            || !aligned(self.guest_ram_size)
            || self.guest_ram_size == 0
            || self
                .guest_ram_base
                .checked_add(self.guest_ram_size)
                .is_none()
        {
            return bad("guest_ram_window");
        }
        if !page(self.stub_ram_size) {
            return bad("stub_ram_size");
        }
        if self.nr_virtio as usize > MAX_VIRTIO {
            return bad("nr_virtio");
        }
        for (i, d) in self.virtio.iter().enumerate() {
            let Some(d) = d else {
                if i < self.nr_virtio as usize {
                    return bad("virtio");
                }
                continue;
            };
            if i >= self.nr_virtio as usize {
                return bad("unused virtio entry");
            }
            if !aligned(d.base)
                || d.base == 0
                || d.size == 0
                || d.size > MAX_VIRTIO_WINDOW
                || d.base.checked_add(d.size).is_none()
            {
                return bad("virtio window");
            }
            if d.irq >= MAX_STUB_GSI {
                return bad("virtio irq");
            }
            let overlaps = self.virtio.iter().take(i).flatten().any(|e| {
                d.base < e.base.saturating_add(e.size) && e.base < d.base.saturating_add(d.size)
            });
            if overlaps {
                return bad("virtio window");
            }
        }
        if self.console_device != NO_CONSOLE {
            match self.virtio.get(self.console_device as usize) {
                Some(Some(d)) if d.kind == VirtioKind::Console => {}
                _ => return bad("console_device"),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StubStartInfo {
        let mut s = StubStartInfo::new();
        s.guest_domid = 7;
        s.nr_vcpus = 2;
        s.ioreq_ports[0] = 10;
        s.ioreq_ports[1] = 11;
        s.bufioreq_port = 12;
        s.ioreq_page_gpa = 0x10_0000;
        s.bufioreq_page_gpa = 0x10_1000;
        s.evtchn_page_gpa = 0x10_2000;
        s.guest_ram_base = 0x1_0000_0000;
        s.guest_ram_size = 512 << 20;
        s.stub_ram_size = 32 << 20;
        s.virtio[0] = Some(VirtioMmioDevice {
            base: 0xfeb0_0000,
            size: 0x200,
            irq: 5,
            kind: VirtioKind::Block,
        });
        s.virtio[1] = Some(VirtioMmioDevice {
            base: 0xfeb0_1000,
            size: 0x200,
            irq: 6,
            kind: VirtioKind::Console,
        });
        s.nr_virtio = 2;
        s.console_device = 1;
        s.hypercall_page_gpa = map::HYPERCALL_PAGE;
        s.config_page_gpa = map::CONFIG_PAGE;
        s.config_len = 100;
        s.platform_port = 13;
        s.wall_clock_base_ns = 1_700_000_000_000_000_000;
        s.flags = FLAG_DETERMINISTIC;
        s
    }

    #[test]
    fn layout_offsets() {
        assert_eq!(StubStartInfo::SIZE, 0x340);
        let b = sample().to_bytes();
        assert_eq!(&b[0..4], b"CHSD");
        assert_eq!(b[4], 1);
        assert_eq!(u32::from_le_bytes(b[8..12].try_into().unwrap()), 0x340);
        assert_eq!(b[0x0c], 7);
        assert_eq!(b[0x10], 2);
        assert_eq!(b[0x14], 12);
        assert_eq!(&b[0x18..0x20], &0x10_0000u64.to_le_bytes());
        assert_eq!(&b[0x30..0x38], &0x1_0000_0000u64.to_le_bytes());
        assert_eq!(b[0x48], 1);
        assert_eq!(b[0x4c], 2);
        assert_eq!(&b[0x50..0x58], &0xfeb0_0000u64.to_le_bytes());
        assert_eq!(b[0x50 + 16], 5);
        assert_eq!(b[0x50 + 20], 2);
        assert_eq!(b[0x50 + 24 + 20], 3);
        assert_eq!(b[0x110], 10);
        assert_eq!(b[0x114], 11);
        assert_eq!(&b[0x310..0x318], &0x2000u64.to_le_bytes());
        assert_eq!(&b[0x318..0x320], &0x8000_3000u64.to_le_bytes());
        assert_eq!(b[0x320], 100);
        assert_eq!(b[0x324], 13);
        assert_eq!(b[0x330], 1);
        assert_eq!(b[0x338], 0xf3);
    }

    #[test]
    fn round_trip() {
        let s = sample();
        let mut page = [0u8; 4096];
        page[..StubStartInfo::SIZE].copy_from_slice(&s.to_bytes());
        assert_eq!(StubStartInfo::from_bytes(&page), Ok(s));
        assert_eq!(s.virtio_devices().count(), 2);
        let mut none = s;
        none.console_device = NO_CONSOLE;
        none.bufioreq_port = 0;
        none.bufioreq_page_gpa = 0;
        assert_eq!(StubStartInfo::from_bytes(&none.to_bytes()), Ok(none));
    }

    #[test]
    fn refuses_bad_headers() {
        let b = sample().to_bytes();
        assert!(matches!(
            StubStartInfo::from_bytes(&b[..StubStartInfo::SIZE - 1]),
            Err(StartInfoError::Truncated { .. })
        ));
        assert_eq!(
            StubStartInfo::from_bytes(&[]),
            Err(StartInfoError::Truncated {
                needed: StubStartInfo::SIZE,
                available: 0
            })
        );
        let mut x = b;
        x[0] = b'X';
        assert!(matches!(
            StubStartInfo::from_bytes(&x),
            Err(StartInfoError::BadMagic(_))
        ));
        let mut x = b;
        x[4] = 2;
        assert_eq!(
            StubStartInfo::from_bytes(&x),
            Err(StartInfoError::UnsupportedVersion(2))
        );
        let mut x = b;
        x[8] = 0;
        assert!(matches!(
            StubStartInfo::from_bytes(&x),
            Err(StartInfoError::BadSize(_))
        ));
    }

    #[test]
    fn refuses_bad_fields() {
        let cases: [fn(&mut StubStartInfo); 22] = [
            |s| s.nr_vcpus = 0,
            |s| s.nr_vcpus = 128,
            |s| s.hypercall_page_gpa = 0,
            |s| s.config_len = 4097,
            |s| s.platform_port = 12,
            |s| s.platform_port = 11,
            |s| s.flags = 2,
            |s| s.upcall_vector = 31,
            |s| s.ioreq_ports[1] = 0,
            |s| s.ioreq_ports[1] = 1024,
            |s| s.ioreq_ports[2] = 13,
            |s| s.ioreq_ports[1] = 10,
            |s| s.ioreq_page_gpa = 0x10_0004,
            |s| s.evtchn_page_gpa = 0,
            |s| s.bufioreq_page_gpa = 0,
            |s| s.guest_ram_size = !0xfff,
            |s| s.stub_ram_size = 0,
            |s| s.console_device = 0,
            |s| s.console_device = 2,
            |s| s.virtio[1].as_mut().unwrap().irq = 48,
            |s| s.virtio[1].as_mut().unwrap().base = 0xfeb0_0000,
            |s| s.virtio[0].as_mut().unwrap().size = 0x2000,
        ];
        for (i, f) in cases.iter().enumerate() {
            let mut s = sample();
            f(&mut s);
            assert!(s.validate().is_err(), "case {i}");
            assert!(
                matches!(
                    StubStartInfo::from_bytes(&s.to_bytes()),
                    Err(StartInfoError::Invalid(_))
                ),
                "case {i}"
            );
        }
        // Raw-only corruptions: an unknown virtio kind, a stray unused entry, a count
        // above the table.
        for (off, v) in [(0x50 + 20, 9u8), (0x50 + 2 * 24, 1), (0x4c, 9)] {
            let mut b = sample().to_bytes();
            b[off] = v;
            assert!(matches!(
                StubStartInfo::from_bytes(&b),
                Err(StartInfoError::Invalid(_))
            ));
        }
    }

    #[test]
    fn random_pages_never_panic() {
        let good = sample().to_bytes();
        let mut s = 0xfeed_face_dead_beefu64;
        for _ in 0..5000 {
            let mut b = good;
            for _ in 0..3 {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let i = (s as usize) % b.len();
                b[i] = (s >> 40) as u8;
            }
            if let Ok(info) = StubStartInfo::from_bytes(&b) {
                assert_eq!(info.to_bytes(), b);
            }
        }
    }
}
