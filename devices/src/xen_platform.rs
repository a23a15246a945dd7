//! The Xen platform PCI device (5853:0001 rev 1, class 0xff8000), identity from the
//! generation profile.
//!
//! Protocol: Xen `docs/misc/hvm-emulated-unplug.pandoc` and research/xen-hvm.md §2.5;
//! port-level behaviour as QEMU `hw/i386/xen/xen_platform.c` and qemu-xen-traditional
//! `hw/xen_platform.c` implement it.
//!
//! * BAR0: 256 bytes of I/O, byte registers: offset 0 = platform flags (bit 0
//!   `PFFLAG_ROM_LOCK`), offset 8 = log byte; every other byte reads 0xff.
//! * BAR1: 16 MiB prefetchable memory the guest uses as a place to map grant tables and
//!   foreign pages; reads 0, writes are ignored.
//! * Fixed ports 0x10–0x1f, decoded by access width (not split into bytes):
//!   - read16 0x10: magic 0x49d2 (never blacklisted here); read8 0x12: protocol 1;
//!     read8 0x10: platform flags; everything else reads all ones.
//!   - write16 0x10: unplug mask (bit 0 IDE/SCSI disks, 1 NICs, 2 IDE except primary
//!     master, 3 NVMe). Unplugging is one-way, so successive masks accumulate.
//!   - write16 0x12: product number; write32 0x10: build number; write8 0x10: flags;
//!     write8 0x12: log byte.
//!
//! Guest log bytes are hostile input headed for the host's logs, so they are
//! * line-buffered in a fixed [`LOG_LINE_MAX`]-byte buffer (a longer line is emitted in
//!   pieces, as QEMU does with its 4 KiB buffer);
//! * sanitised: anything but printable ASCII becomes `?` (no terminal escapes or NULs
//!   reach a log viewer), `\r` is dropped;
//! * rate-limited by a token bucket in guest time ([`LOG_BURST_BYTES`] burst,
//!   [`LOG_RATE_BYTES_PER_SEC`] refill, the same shape as trad's 128 KiB / 256 B/s
//!   limiter, smaller burst): a line that does not fit is dropped whole and counted, and
//!   the count is reported before the next line that gets through.
//!
//! Each line goes to `CharSink::DebugCon` as `xen-platform: <line>\n`. The log buffer and
//! bucket are not device state: they are not saved and restart empty/full on restore.
use crate::platform::CharSink;
use crate::{Mmio, Platform, PortIo, Width, pci::*, snapshot::*};

/// First fixed I/O port of the unplug protocol.
pub const FIXED_PORT_BASE: u16 = 0x10;
/// Number of fixed ports (0x10..=0x1f).
pub const FIXED_PORT_LEN: u16 = 16;
/// read16 0x10 when the drivers may load.
pub const MAGIC: u16 = 0x49d2;
/// read16 0x10 when the drivers are blacklisted (not used by chassis).
pub const MAGIC_BLACKLISTED: u16 = 0xd249;
/// read8 0x12.
pub const PROTOCOL_VERSION: u8 = 1;
/// Platform flag: the 0xC0000–0xFFFFF ROM area is read-only.
pub const PFFLAG_ROM_LOCK: u8 = 1;

pub const UNPLUG_ALL_IDE_DISKS: u16 = 1 << 0;
pub const UNPLUG_ALL_NICS: u16 = 1 << 1;
pub const UNPLUG_AUX_IDE_DISKS: u16 = 1 << 2;
pub const UNPLUG_NVME_DISKS: u16 = 1 << 3;
/// Every unplug bit the protocol defines; others are ignored.
pub const UNPLUG_KNOWN: u16 =
    UNPLUG_ALL_IDE_DISKS | UNPLUG_ALL_NICS | UNPLUG_AUX_IDE_DISKS | UNPLUG_NVME_DISKS;

pub const BAR0_SIZE: u32 = 0x100;
pub const BAR1_SIZE: u32 = 16 << 20;
/// BAR0 register offsets.
pub const BAR0_FLAGS: u64 = 0;
pub const BAR0_LOG: u64 = 8;

/// Longest log line emitted in one piece.
pub const LOG_LINE_MAX: usize = 120;
/// Token-bucket depth in bytes of emitted output.
pub const LOG_BURST_BYTES: u64 = 16 * 1024;
/// Token-bucket refill rate.
pub const LOG_RATE_BYTES_PER_SEC: u64 = 256;
const NS_PER_TOKEN: u64 = 1_000_000_000 / LOG_RATE_BYTES_PER_SEC;
const LOG_PREFIX: &[u8] = b"xen-platform: ";

/// The guest log: a bounded line buffer behind a token bucket.
#[derive(Clone, Debug)]
struct GuestLog {
    line: [u8; LOG_LINE_MAX],
    len: usize,
    tokens: u64,
    /// Guest time up to which tokens have been credited.
    credited_ns: u64,
    dropped: u32,
}

impl GuestLog {
    fn new() -> Self {
        GuestLog {
            line: [0; LOG_LINE_MAX],
            len: 0,
            tokens: LOG_BURST_BYTES,
            credited_ns: 0,
            dropped: 0,
        }
    }

    fn push(&mut self, p: &mut dyn Platform, b: u8) {
        match b {
            b'\n' => self.flush(p),
            b'\r' => {}
            _ => {
                if self.len >= LOG_LINE_MAX {
                    self.flush(p);
                }
                let c = if (0x20..0x7f).contains(&b) { b } else { b'?' };
                if let Some(slot) = self.line.get_mut(self.len) {
                    *slot = c;
                    self.len += 1;
                }
            }
        }
    }

    fn refill(&mut self, now: u64) {
        if now < self.credited_ns {
            // Time went backwards (restored into a younger machine): restart the clock.
            self.credited_ns = now;
            return;
        }
        let earned = (now - self.credited_ns) / NS_PER_TOKEN;
        if self.tokens.saturating_add(earned) >= LOG_BURST_BYTES {
            self.tokens = LOG_BURST_BYTES;
            self.credited_ns = now;
        } else {
            self.tokens += earned;
            self.credited_ns += earned * NS_PER_TOKEN;
        }
    }

    fn flush(&mut self, p: &mut dyn Platform) {
        let len = self.len.min(LOG_LINE_MAX);
        self.len = 0;
        self.refill(p.now_ns());
        let cost = (LOG_PREFIX.len() + len + 1) as u64;
        if self.tokens < cost {
            self.dropped = self.dropped.saturating_add(1);
            return;
        }
        self.tokens -= cost;
        let mut out = [0u8; 64 + LOG_LINE_MAX];
        if self.dropped != 0 {
            let n = fmt_dropped(&mut out, self.dropped);
            p.char_out(CharSink::DebugCon, out.get(..n).unwrap_or(&[]));
            self.dropped = 0;
        }
        let mut n = 0;
        for &b in LOG_PREFIX.iter().chain(self.line.iter().take(len)) {
            if let Some(o) = out.get_mut(n) {
                *o = b;
                n += 1;
            }
        }
        if let Some(o) = out.get_mut(n) {
            *o = b'\n';
            n += 1;
        }
        p.char_out(CharSink::DebugCon, out.get(..n).unwrap_or(&[]));
    }
}

/// "xen-platform: [N lines dropped]\n" into `out` (which is ≥ 64 bytes); returns length.
fn fmt_dropped(out: &mut [u8], count: u32) -> usize {
    let mut digits = [0u8; 10];
    let mut d = 0;
    let mut c = count;
    loop {
        if let Some(slot) = digits.get_mut(d) {
            *slot = b'0' + (c % 10) as u8;
        }
        d += 1;
        c /= 10;
        if c == 0 || d >= digits.len() {
            break;
        }
    }
    let mut n = 0;
    let mut put = |b: u8| {
        if let Some(o) = out.get_mut(n) {
            *o = b;
            n += 1;
        }
    };
    LOG_PREFIX.iter().for_each(|&b| put(b));
    put(b'[');
    for i in (0..d).rev() {
        put(digits.get(i).copied().unwrap_or(b'0'));
    }
    b" lines dropped]\n".iter().for_each(|&b| put(b));
    n
}

#[derive(Clone, Debug)]
pub struct XenPlatform {
    cfg: ConfigSpace,
    flags: u8,
    unplug: u16,
    product: u16,
    build: u32,
    log: GuestLog,
}

impl XenPlatform {
    pub fn new(id: &PciIdent) -> Self {
        let mut cfg = ConfigSpace::new(id)
            .with_bar(
                0,
                BarSpec {
                    kind: BarKind::Io,
                    size: BAR0_SIZE,
                },
            )
            .with_bar(
                1,
                BarSpec {
                    kind: BarKind::Mem32 { prefetchable: true },
                    size: BAR1_SIZE,
                },
            );
        // QEMU and trad start with I/O and memory decode on.
        cfg.set_u16(COMMAND, COMMAND_IO | COMMAND_MEMORY);
        Self {
            cfg,
            flags: 0,
            unplug: 0,
            product: 0,
            build: 0,
            log: GuestLog::new(),
        }
    }

    /// Every device class the guest's PV drivers asked to unplug (`UNPLUG_*` bits).
    pub fn unplug_mask(&self) -> u16 {
        self.unplug
    }

    /// Platform flags (`PFFLAG_*`).
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// The guest asked for the 0xC0000–0xFFFFF ROM area to be read-only.
    pub fn rom_locked(&self) -> bool {
        self.flags & PFFLAG_ROM_LOCK != 0
    }

    /// PV driver product number last written to port 0x12 (1 = Citrix/XenServer).
    pub fn driver_product(&self) -> u16 {
        self.product
    }

    /// PV driver build number last written to port 0x10.
    pub fn driver_build(&self) -> u32 {
        self.build
    }

    fn set_flags(&mut self, v: u8) {
        self.flags = v & PFFLAG_ROM_LOCK;
    }

    fn bar0_offset(&self, port: u16) -> Option<u64> {
        let (_, b) = self
            .cfg
            .decoded_bars()
            .find(|(i, b)| *i == 0 && b.kind == BarKind::Io)?;
        let off = (port as u64).checked_sub(b.base)?;
        (off < b.size).then_some(off)
    }

    fn fixed_read(&self, off: u16, w: Width) -> u32 {
        match (w, off) {
            (Width::B1, 0) => self.flags as u32,
            (Width::B1, 2) => PROTOCOL_VERSION as u32,
            (Width::B2, 0) => MAGIC as u32,
            _ => w.mask() as u32,
        }
    }

    fn fixed_write(&mut self, p: &mut dyn Platform, off: u16, w: Width, v: u32) {
        match (w, off) {
            (Width::B1, 0) => self.set_flags(v as u8),
            (Width::B1, 2) => self.log.push(p, v as u8),
            (Width::B2, 0) => self.unplug |= v as u16 & UNPLUG_KNOWN,
            (Width::B2, 2) => self.product = v as u16,
            (Width::B4, 0) => self.build = v,
            _ => {}
        }
    }

    fn bar0_read_byte(&self, off: u64) -> u8 {
        match off {
            BAR0_FLAGS => self.flags,
            _ => 0xff,
        }
    }

    fn bar0_write_byte(&mut self, p: &mut dyn Platform, off: u64, v: u8) {
        match off {
            BAR0_FLAGS => self.set_flags(v),
            BAR0_LOG => self.log.push(p, v),
            _ => {}
        }
    }
}

impl PciFunction for XenPlatform {
    fn config(&self) -> &ConfigSpace {
        &self.cfg
    }
    fn cfg_write(&mut self, _p: &mut dyn Platform, off: u8, w: Width, v: u32) -> bool {
        self.cfg.write(off, w, v)
    }
}

/// Ports: the fixed unplug ports 0x10-0x1f and BAR0 (256 bytes of I/O).
impl PortIo for XenPlatform {
    fn pio_read(&mut self, _p: &mut dyn Platform, port: u16, w: Width) -> u32 {
        let fixed = port.wrapping_sub(FIXED_PORT_BASE);
        if fixed < FIXED_PORT_LEN {
            return self.fixed_read(fixed, w);
        }
        if let Some(off) = self.bar0_offset(port) {
            // BAR0 registers are bytes: a wider access is split.
            let mut v = 0u32;
            for i in 0..w.bytes().min(4) {
                let o = off + i as u64;
                let b = if o < BAR0_SIZE as u64 {
                    self.bar0_read_byte(o)
                } else {
                    0xff
                };
                v |= (b as u32) << (8 * i);
            }
            return v;
        }
        w.mask() as u32
    }
    fn pio_write(&mut self, p: &mut dyn Platform, port: u16, w: Width, v: u32) {
        let fixed = port.wrapping_sub(FIXED_PORT_BASE);
        if fixed < FIXED_PORT_LEN {
            return self.fixed_write(p, fixed, w, v);
        }
        if let Some(off) = self.bar0_offset(port) {
            for i in 0..w.bytes().min(4) {
                let o = off + i as u64;
                if o < BAR0_SIZE as u64 {
                    self.bar0_write_byte(p, o, (v >> (8 * i)) as u8);
                }
            }
        }
    }
}

/// BAR1: 16 MiB MMIO that reads 0 and ignores writes.
impl Mmio for XenPlatform {
    fn mmio_read(&mut self, _p: &mut dyn Platform, _off: u64, _w: Width) -> u64 {
        0
    }
    fn mmio_write(&mut self, _p: &mut dyn Platform, _off: u64, _w: Width, _v: u64) {}
}

/// Record body (v1): config space (256 bytes), flags (u8), unplug mask (u16), product
/// number (u16), build number (u32). The guest log is not state (see module docs).
impl Snapshot for XenPlatform {
    const NAME: &'static str = "xenplatform";
    const VERSION: u16 = 1;
    fn save(&self, w: &mut RecordWriter) {
        w.bytes(self.cfg.raw());
        w.u8(self.flags);
        w.u16(self.unplug);
        w.u16(self.product);
        w.u32(self.build);
    }
    fn load(&mut self, _v: u16, r: &mut RecordReader<'_>) -> Result<(), LoadError> {
        let invalid = |field| LoadError::Invalid {
            name: Self::NAME,
            field,
        };
        let mut raw = [0u8; 256];
        r.bytes(&mut raw)?;
        if raw.iter().skip(0x40).any(|&b| b != 0) {
            return Err(invalid("config"));
        }
        let flags = r.u8()?;
        if flags & !PFFLAG_ROM_LOCK != 0 {
            return Err(invalid("flags"));
        }
        let unplug = r.u16()?;
        if unplug & !UNPLUG_KNOWN != 0 {
            return Err(invalid("unplug_mask"));
        }
        let product = r.u16()?;
        let build = r.u32()?;
        self.cfg.restore_raw(&raw);
        self.flags = flags;
        self.unplug = unplug;
        self.product = product;
        self.build = build;
        self.log = GuestLog::new();
        Ok(())
    }
}

crate::snapshot_tests!(
    xen_platform_snapshot,
    XenPlatform,
    {
        let mut d = XenPlatform::new(&crate::profile::QEMU_XEN.xen_platform);
        let mut p = crate::testing::MockPlatform::new();
        d.cfg_write(&mut p, 0x10, Width::B4, 0xc000);
        d.cfg_write(&mut p, 0x14, Width::B4, 0xf000_0000);
        d.cfg_write(&mut p, 0x3c, Width::B1, 11);
        d.pio_write(&mut p, 0x12, Width::B2, 1);
        d.pio_write(&mut p, 0x10, Width::B4, 0x1234_5678);
        d.pio_write(&mut p, 0x10, Width::B2, 3);
        d.pio_write(&mut p, 0x10, Width::B1, 1);
        d.pio_write(&mut p, 0x12, Width::B1, b'x' as u32);
        d
    },
    XenPlatform::new(&crate::profile::QEMU_XEN.xen_platform)
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{QEMU_XEN, QEMU_XEN_TRADITIONAL};
    use crate::snapshot::{HEADER_LEN, load_record, save_record};
    use crate::testing::MockPlatform;
    use alloc::vec::Vec;

    fn dev() -> (XenPlatform, MockPlatform) {
        (
            XenPlatform::new(&QEMU_XEN.xen_platform),
            MockPlatform::new(),
        )
    }

    /// Place the BARs like hvmloader/SeaBIOS: size, assign, enable decode.
    fn placed() -> (XenPlatform, MockPlatform) {
        let (mut d, mut p) = dev();
        d.cfg_write(&mut p, 0x04, Width::B2, 0);
        d.cfg_write(&mut p, 0x10, Width::B4, 0xffff_ffff);
        assert_eq!(d.cfg_read(0x10, Width::B4), 0xffff_ff01);
        d.cfg_write(&mut p, 0x14, Width::B4, 0xffff_ffff);
        assert_eq!(d.cfg_read(0x14, Width::B4), 0xff00_0008);
        d.cfg_write(&mut p, 0x10, Width::B4, 0xc100);
        d.cfg_write(&mut p, 0x14, Width::B4, 0xf000_0000);
        d.cfg_write(&mut p, 0x04, Width::B2, 0x7);
        (d, p)
    }

    #[test]
    fn identity() {
        for prof in crate::profile::ALL {
            let d = XenPlatform::new(&prof.xen_platform);
            let c = d.config();
            assert_eq!(c.read(0, Width::B4), 0x0001_5853);
            assert_eq!(c.read(0x08, Width::B4), 0xff80_0001);
            assert_eq!(c.read(0x2c, Width::B4), 0x0001_5853);
            assert_eq!(c.u8(INTERRUPT_PIN), 1);
            assert_eq!(c.u8(HEADER_TYPE), 0);
            assert_eq!(c.u16(COMMAND), 3);
        }
        assert_eq!(
            XenPlatform::new(&QEMU_XEN_TRADITIONAL.xen_platform)
                .config()
                .raw(),
            XenPlatform::new(&QEMU_XEN.xen_platform).config().raw()
        );
    }

    /// The sequence of Linux's `xen_unplug_emulated_devices` / Windows PV drivers.
    #[test]
    fn unplug_protocol_as_drivers_drive_it() {
        let (mut d, mut p) = dev();
        assert_eq!(d.pio_read(&mut p, 0x10, Width::B2), 0x49d2);
        assert_eq!(d.pio_read(&mut p, 0x12, Width::B1), 1);
        d.pio_write(&mut p, 0x12, Width::B2, 1); // product: Citrix PV drivers
        d.pio_write(&mut p, 0x10, Width::B4, 0x0004_1234); // build number
        assert_eq!(
            d.pio_read(&mut p, 0x10, Width::B2),
            0x49d2,
            "not blacklisted"
        );
        d.pio_write(&mut p, 0x10, Width::B2, 0x0003);
        assert_eq!(d.unplug_mask(), UNPLUG_ALL_IDE_DISKS | UNPLUG_ALL_NICS);
        d.pio_write(&mut p, 0x10, Width::B2, 0xfff8);
        assert_eq!(d.unplug_mask(), 0x000b, "accumulates; unknown bits ignored");
        assert_eq!(d.driver_product(), 1);
        assert_eq!(d.driver_build(), 0x0004_1234);
        // Other widths/offsets read all ones.
        assert_eq!(d.pio_read(&mut p, 0x10, Width::B4), 0xffff_ffff);
        assert_eq!(d.pio_read(&mut p, 0x11, Width::B2), 0xffff);
        assert_eq!(d.pio_read(&mut p, 0x13, Width::B1), 0xff);
        assert_eq!(d.pio_read(&mut p, 0x1f, Width::B1), 0xff);
        // Byte write at 0x10 is the flags register, as in QEMU.
        d.pio_write(&mut p, 0x10, Width::B1, 0xff);
        assert!(d.rom_locked());
        assert_eq!(d.pio_read(&mut p, 0x10, Width::B1), 1);
    }

    #[test]
    fn log_lines_go_to_debugcon() {
        let (mut d, mut p) = dev();
        for &b in b"XENVBD: hello\r\n" {
            d.pio_write(&mut p, 0x12, Width::B1, b as u32);
        }
        assert_eq!(p.debug_out, b"xen-platform: XENVBD: hello\n");
        p.debug_out.clear();
        // Escape sequences and NULs are neutralised.
        for &b in b"\x1b[2Jx\x00\n" {
            d.pio_write(&mut p, 0x12, Width::B1, b as u32);
        }
        assert_eq!(p.debug_out, b"xen-platform: ?[2Jx?\n");
        // Nothing is emitted before the newline.
        p.debug_out.clear();
        d.pio_write(&mut p, 0x12, Width::B1, b'a' as u32);
        assert!(p.debug_out.is_empty());
    }

    #[test]
    fn long_lines_are_split() {
        let (mut d, mut p) = dev();
        for _ in 0..LOG_LINE_MAX + 5 {
            d.pio_write(&mut p, 0x12, Width::B1, b'z' as u32);
        }
        d.pio_write(&mut p, 0x12, Width::B1, b'\n' as u32);
        let lines: Vec<&[u8]> = p.debug_out.split(|&b| b == b'\n').collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].len(), LOG_PREFIX.len() + LOG_LINE_MAX);
        assert_eq!(lines[1].len(), LOG_PREFIX.len() + 5);
    }

    #[test]
    fn log_is_throttled_and_recovers() {
        let (mut d, mut p) = dev();
        let line = [b'y'; 99];
        let mut emitted = 0;
        for _ in 0..1000 {
            for &b in &line {
                d.pio_write(&mut p, 0x12, Width::B1, b as u32);
            }
            d.pio_write(&mut p, 0x12, Width::B1, b'\n' as u32);
        }
        emitted += p.debug_out.len();
        assert!(emitted as u64 <= LOG_BURST_BYTES, "burst bound: {emitted}");
        assert!(emitted as u64 > LOG_BURST_BYTES / 2);
        // A minute later the bucket has refilled; the drop count is reported once.
        p.debug_out.clear();
        p.advance(60_000_000_000);
        for &b in b"back\n" {
            d.pio_write(&mut p, 0x12, Width::B1, b as u32);
        }
        let s = core::str::from_utf8(&p.debug_out).unwrap();
        assert!(s.starts_with("xen-platform: ["), "{s}");
        assert!(s.contains(" lines dropped]\nxen-platform: back\n"), "{s}");
        let start = "xen-platform: [".len();
        let end = start + s[start..].find(' ').unwrap();
        let dropped: u32 = s[start..end].parse().unwrap();
        assert!(dropped > 800 && dropped < 1000, "{dropped}");
    }

    #[test]
    fn fmt_dropped_edges() {
        let mut out = [0u8; 64];
        let n = fmt_dropped(&mut out, u32::MAX);
        assert_eq!(&out[..n], b"xen-platform: [4294967295 lines dropped]\n");
        let n = fmt_dropped(&mut out, 0);
        assert_eq!(&out[..n], b"xen-platform: [0 lines dropped]\n");
    }

    #[test]
    fn bar0_registers() {
        let (mut d, mut p) = placed();
        assert_eq!(d.pio_read(&mut p, 0xc100, Width::B1), 0);
        d.pio_write(&mut p, 0xc100, Width::B1, 1);
        assert!(d.rom_locked());
        assert_eq!(d.pio_read(&mut p, 0xc100, Width::B2), 0xff01);
        assert_eq!(d.pio_read(&mut p, 0xc101, Width::B1), 0xff);
        assert_eq!(d.pio_read(&mut p, 0xc1ff, Width::B4), 0xffff_ffff);
        d.pio_write(&mut p, 0xc100, Width::B1, 0xfe);
        assert!(!d.rom_locked());
        for &b in b"ok\n" {
            d.pio_write(&mut p, 0xc108, Width::B1, b as u32);
        }
        assert_eq!(p.debug_out, b"xen-platform: ok\n");
        // Decode off: the BAR does not answer.
        d.cfg_write(&mut p, 0x04, Width::B2, 0);
        assert_eq!(d.pio_read(&mut p, 0xc100, Width::B1), 0xff);
        d.pio_write(&mut p, 0xc100, Width::B1, 1);
        assert!(!d.rom_locked());
    }

    #[test]
    fn bar1_reads_zero() {
        let (mut d, mut p) = placed();
        assert_eq!(d.mmio_read(&mut p, 0, Width::B8), 0);
        d.mmio_write(&mut p, 4, Width::B4, 1);
        assert_eq!(d.mmio_read(&mut p, 4, Width::B4), 0);
        assert_eq!(d.unplug_mask(), 0);
    }

    #[test]
    fn load_rejects_impossible_state() {
        let (d, _) = dev();
        let good = save_record(&d, 0);
        for (at, v) in [(0x40usize, 1u8), (256, 2), (257, 0x10), (258, 0x01)] {
            let mut b = good.clone();
            b[HEADER_LEN + at] = v;
            let mut f = XenPlatform::new(&QEMU_XEN.xen_platform);
            assert!(
                matches!(load_record(&mut f, &b), Err(LoadError::Invalid { .. })),
                "body byte {at}"
            );
        }
    }

    #[test]
    fn hammer() {
        let (mut d, mut p) = placed();
        let mut s = 0x0123_4567_89ab_cdefu64;
        for _ in 0..50000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let w = [Width::B1, Width::B2, Width::B4, Width::B8][(s % 4) as usize];
            let port = match (s >> 3) % 3 {
                0 => 0x10 + (s >> 8) as u16 % 16,
                1 => 0xc100 + (s >> 8) as u16 % 0x110,
                _ => (s >> 8) as u16,
            };
            let v = (s >> 24) as u32;
            match (s >> 5) % 5 {
                0 | 1 => d.pio_write(&mut p, port, w, v),
                2 => {
                    let _ = d.pio_read(&mut p, port, w);
                }
                3 => {
                    d.cfg_write(&mut p, (s >> 8) as u8, w, v);
                }
                _ => {
                    d.mmio_write(&mut p, s >> 16, w, s);
                    assert_eq!(d.mmio_read(&mut p, s >> 20, w), 0);
                }
            }
            p.advance(s % 100_000);
            assert_eq!(d.unplug_mask() & !UNPLUG_KNOWN, 0);
            assert_eq!(d.flags() & !PFFLAG_ROM_LOCK, 0);
        }
        assert!(
            p.debug_out
                .iter()
                .all(|&b| b == b'\n' || (0x20..0x7f).contains(&b))
        );
    }
}
