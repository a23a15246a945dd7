//! QEMU's firmware configuration interface (fw_cfg), I/O-port flavour, without DMA.
//!
//! This is how chassis configures SeaBIOS: SeaBIOS probes fw_cfg even on its Xen path
//! (research/firmware-boot.md §1.6) and reads its boot settings from it (`bootorder`,
//! `etc/show-boot-menu`, `etc/boot-fail-wait`, ...). Behaviour follows QEMU's
//! docs/specs/fw_cfg.rst and what SeaBIOS's `qemu_cfg_init` (src/fw/paravirt.c) expects:
//!
//! * Selector, port 0x510: a 16-bit write selects an item by key and resets the data
//!   offset to 0. Bit 14 of the key (QEMU's "write channel") does not select another
//!   item: keys are looked up with it masked off, as QEMU does. Keys with no item select
//!   an empty item.
//! * Data, port 0x511: each 8-bit read returns the next byte of the selected item, and 0
//!   once the offset reached the item's end (the offset then stays at the end). Writes are
//!   ignored (QEMU dropped data-port writes in v2.4). Like QEMU's combined x86 region, an
//!   8-bit read of 0x510 also returns a data byte.
//! * Accesses QEMU's region refuses (16/32-bit reads, 32-bit writes, a 16-bit write at
//!   0x511) do nothing; such reads return all ones.
//! * No DMA interface: the ID item (key 0x0001) reports only bit 0 ("traditional
//!   interface"), so SeaBIOS never touches 0x514. Every byte is one port read.
//!
//! Items: 0x0000 signature `"QEMU"`, 0x0001 ID (u32 LE = 1), 0x0003 RAM size (u64 LE),
//! 0x0005 CPU count (u16 LE), 0x000e boot menu (u16 LE; SeaBIOS reads it as the
//! romfile `etc/show-boot-menu`), 0x000f max CPUs (u16 LE), 0x0019 the file directory, and
//! files at 0x0020 upward. The directory is a big-endian u32 count, then per file a
//! big-endian u32 size, a big-endian u16 select key, a reserved u16 and a NUL-padded
//! 56-byte name; files are sorted by name (byte order) and numbered in that order, as
//! QEMU does for current machine types.
//!
//! State: the items are configuration, built by [`crate::machine::Machine::new`] from the
//! machine config and rebuilt from it on restore; the record holds only the guest-visible
//! cursor (selected key and data offset), and a loaded offset must lie within the item the
//! restored configuration has under that key.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use crate::snapshot::{LoadError, RecordReader, RecordWriter, Snapshot};
use crate::{Platform, PortIo, Width};

/// Selector register (16-bit writes).
pub const SELECTOR_PORT: u16 = 0x510;
/// Data register (8-bit reads).
pub const DATA_PORT: u16 = 0x511;

/// Item keys (QEMU's `FW_CFG_*`).
pub mod key {
    pub const SIGNATURE: u16 = 0x0000;
    pub const ID: u16 = 0x0001;
    pub const RAM_SIZE: u16 = 0x0003;
    pub const NB_CPUS: u16 = 0x0005;
    pub const BOOT_MENU: u16 = 0x000e;
    pub const MAX_CPUS: u16 = 0x000f;
    pub const FILE_DIR: u16 = 0x0019;
    /// Key of the first file; file `i` (in name order) has key `FILE_FIRST + i`.
    pub const FILE_FIRST: u16 = 0x0020;
    /// The "write channel" bit; ignored when looking an item up.
    pub const WRITE_CHANNEL: u16 = 0x4000;
}

/// The ID item: bit 0 = traditional (port) interface; bit 1 (DMA) is never set here.
pub const ID_TRADITIONAL: u32 = 1;
const ID_BYTES: [u8; 4] = ID_TRADITIONAL.to_le_bytes();
/// Most files a machine publishes.
pub const MAX_FILES: usize = 64;
/// Size of the name field of a directory entry, terminating NUL included: names are at
/// most `NAME_FIELD_LEN - 1` bytes.
pub const NAME_FIELD_LEN: usize = 56;
/// Cap on the summed size of all files (one SeaBIOS option ROM is at most a few hundred
/// KiB; without DMA every byte is one port exit, so large files are impractical anyway).
pub const MAX_TOTAL_FILE_BYTES: usize = 16 << 20;
/// Size of one directory entry.
const DIR_ENTRY_LEN: usize = 64;

/// Why [`FwCfg::add_file`] refused a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FwCfgError {
    /// Already [`MAX_FILES`] files.
    TooManyFiles,
    /// Empty name, a NUL byte in it, or no room for the terminating NUL.
    BadName,
    /// A file of this name exists.
    DuplicateName,
    /// The files would exceed [`MAX_TOTAL_FILE_BYTES`].
    TooLarge,
}

impl fmt::Display for FwCfgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FwCfgError::TooManyFiles => write!(f, "more than {MAX_FILES} fw_cfg files"),
            FwCfgError::BadName => write!(
                f,
                "fw_cfg file names must be 1..={} bytes without NUL",
                NAME_FIELD_LEN - 1
            ),
            FwCfgError::DuplicateName => write!(f, "duplicate fw_cfg file name"),
            FwCfgError::TooLarge => {
                write!(
                    f,
                    "fw_cfg files exceed {MAX_TOTAL_FILE_BYTES} bytes in total"
                )
            }
        }
    }
}

/// Everything the guest can read: fixed after the machine is built.
#[derive(Clone, Debug)]
struct Items {
    ram_size: [u8; 8],
    cpus: [u8; 2],
    boot_menu: [u8; 2],
    /// (name, contents), sorted by name.
    files: Vec<(String, Vec<u8>)>,
    file_bytes: usize,
    dir: Vec<u8>,
}

impl Items {
    fn rebuild_dir(&mut self) {
        let mut dir = Vec::with_capacity(4 + DIR_ENTRY_LEN * self.files.len());
        dir.extend_from_slice(&(self.files.len() as u32).to_be_bytes());
        for (i, (name, data)) in self.files.iter().enumerate() {
            dir.extend_from_slice(&(data.len() as u32).to_be_bytes());
            dir.extend_from_slice(&(key::FILE_FIRST + i as u16).to_be_bytes());
            dir.extend_from_slice(&[0, 0]);
            let mut field = [0u8; NAME_FIELD_LEN];
            field[..name.len()].copy_from_slice(name.as_bytes());
            dir.extend_from_slice(&field);
        }
        self.dir = dir;
    }

    /// The item under `selector` (empty when there is none).
    fn get(&self, selector: u16) -> &[u8] {
        match selector & !key::WRITE_CHANNEL {
            key::SIGNATURE => b"QEMU",
            key::ID => &ID_BYTES,
            key::RAM_SIZE => &self.ram_size,
            key::NB_CPUS | key::MAX_CPUS => &self.cpus,
            key::BOOT_MENU => &self.boot_menu,
            key::FILE_DIR => &self.dir,
            k if k >= key::FILE_FIRST => match self.files.get((k - key::FILE_FIRST) as usize) {
                Some((_, data)) => data,
                None => &[],
            },
            _ => &[],
        }
    }
}

/// The fw_cfg device. Cloning is cheap: the items are shared.
#[derive(Clone, Debug)]
pub struct FwCfg {
    items: Arc<Items>,
    selector: u16,
    offset: u32,
}

impl FwCfg {
    /// A device with the fixed items for `cpus` CPUs (also the max-CPU count: no CPU
    /// hot-plug) and `ram_size` bytes of guest RAM, boot menu off, no files.
    pub fn new(cpus: u32, ram_size: u64) -> Self {
        let mut items = Items {
            ram_size: ram_size.to_le_bytes(),
            cpus: (cpus.min(u16::MAX as u32) as u16).to_le_bytes(),
            boot_menu: [0, 0],
            files: Vec::new(),
            file_bytes: 0,
            dir: Vec::new(),
        };
        items.rebuild_dir();
        FwCfg {
            items: Arc::new(items),
            selector: key::SIGNATURE,
            offset: 0,
        }
    }

    /// Set the legacy boot-menu item (key 0x000e).
    pub fn set_boot_menu(&mut self, show: bool) {
        Arc::make_mut(&mut self.items).boot_menu = (show as u16).to_le_bytes();
    }

    /// Publish a file. Names are compared as bytes; the directory stays sorted by name,
    /// so adding a file renumbers the keys of the files after it (build time only).
    pub fn add_file(&mut self, name: &str, bytes: &[u8]) -> Result<(), FwCfgError> {
        let items = &self.items;
        if name.is_empty() || name.len() >= NAME_FIELD_LEN || name.as_bytes().contains(&0) {
            return Err(FwCfgError::BadName);
        }
        if items.files.len() >= MAX_FILES {
            return Err(FwCfgError::TooManyFiles);
        }
        let pos = match items
            .files
            .binary_search_by(|(n, _)| n.as_bytes().cmp(name.as_bytes()))
        {
            Ok(_) => return Err(FwCfgError::DuplicateName),
            Err(pos) => pos,
        };
        if bytes.len() > MAX_TOTAL_FILE_BYTES - items.file_bytes {
            return Err(FwCfgError::TooLarge);
        }
        let items = Arc::make_mut(&mut self.items);
        items
            .files
            .insert(pos, (String::from(name), bytes.to_vec()));
        items.file_bytes += bytes.len();
        items.rebuild_dir();
        Ok(())
    }

    /// The key under which file `name` is published.
    pub fn file_key(&self, name: &str) -> Option<u16> {
        let i = self.items.files.iter().position(|(n, _)| n == name)?;
        Some(key::FILE_FIRST + i as u16)
    }

    /// The selected key, as last written to the selector port.
    pub fn selector(&self) -> u16 {
        self.selector
    }

    /// Offset of the next data byte within the selected item.
    pub fn offset(&self) -> u32 {
        self.offset
    }

    /// Write the selector: select `key`, offset 0.
    pub fn select(&mut self, key: u16) {
        self.selector = key;
        self.offset = 0;
    }

    /// Read one data byte: the next byte of the selected item, 0 past its end.
    pub fn read_data(&mut self) -> u8 {
        match self.items.get(self.selector).get(self.offset as usize) {
            Some(&b) => {
                self.offset += 1;
                b
            }
            None => 0,
        }
    }
}

impl PortIo for FwCfg {
    fn pio_read(&mut self, _p: &mut dyn Platform, port: u16, w: Width) -> u32 {
        match (port, w) {
            (SELECTOR_PORT | DATA_PORT, Width::B1) => self.read_data() as u32,
            _ => w.mask() as u32,
        }
    }

    fn pio_write(&mut self, _p: &mut dyn Platform, port: u16, w: Width, v: u32) {
        if (port, w) == (SELECTOR_PORT, Width::B2) {
            self.select(v as u16);
        }
        // Data writes and refused shapes: nothing.
    }
}

impl Snapshot for FwCfg {
    const NAME: &'static str = "fwcfg";
    const VERSION: u16 = 1;
    // v1 body: selector (u16), data offset (u32). The items are configuration, rebuilt
    // from the machine config, and are not saved.
    fn save(&self, w: &mut RecordWriter) {
        w.u16(self.selector);
        w.u32(self.offset);
    }
    fn load(&mut self, _v: u16, r: &mut RecordReader<'_>) -> Result<(), LoadError> {
        let selector = r.u16()?;
        let offset = r.u32()?;
        // The offset never passes the end of the selected item; a larger one comes from
        // another configuration or a corrupt stream.
        if offset as usize > self.items.get(selector).len() {
            return Err(LoadError::Invalid {
                name: Self::NAME,
                field: "offset",
            });
        }
        self.selector = selector;
        self.offset = offset;
        Ok(())
    }
}

#[cfg(test)]
fn sample() -> FwCfg {
    let mut f = FwCfg::new(4, 512 << 20);
    f.add_file("etc/show-boot-menu", &0u16.to_le_bytes())
        .unwrap();
    f.add_file("bootorder", b"/pci@i0cf8/ide@1,1/drive@0/disk@0\n")
        .unwrap();
    f.add_file("etc/boot-fail-wait", &u32::MAX.to_le_bytes())
        .unwrap();
    f
}

crate::snapshot_tests!(
    fw_cfg_snapshot,
    FwCfg,
    {
        // Mid-way through the bootorder file.
        let mut f = sample();
        f.select(f.file_key("bootorder").unwrap());
        for _ in 0..7 {
            f.read_data();
        }
        f
    },
    sample()
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{load_record, save_record};
    use crate::testing::MockPlatform;

    fn select(f: &mut FwCfg, p: &mut MockPlatform, key: u16) {
        f.pio_write(p, SELECTOR_PORT, Width::B2, key as u32);
    }

    fn read(f: &mut FwCfg, p: &mut MockPlatform, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| f.pio_read(p, DATA_PORT, Width::B1) as u8)
            .collect()
    }

    /// What SeaBIOS's `qemu_cfg_init` and a later `romfile_loadint` do, by port access.
    #[test]
    fn seabios_init_sequence() {
        let mut f = sample();
        let mut p = MockPlatform::new();
        select(&mut f, &mut p, key::SIGNATURE);
        assert_eq!(read(&mut f, &mut p, 4), b"QEMU");
        select(&mut f, &mut p, key::ID);
        let id = u32::from_le_bytes(read(&mut f, &mut p, 4).try_into().unwrap());
        assert_eq!(id, 1, "traditional interface only, no DMA bit");
        select(&mut f, &mut p, key::BOOT_MENU);
        assert_eq!(read(&mut f, &mut p, 2), [0, 0]);
        select(&mut f, &mut p, key::MAX_CPUS);
        assert_eq!(read(&mut f, &mut p, 2), [4, 0]);
        select(&mut f, &mut p, key::NB_CPUS);
        assert_eq!(read(&mut f, &mut p, 2), [4, 0]);
        select(&mut f, &mut p, key::RAM_SIZE);
        assert_eq!(read(&mut f, &mut p, 8), (512u64 << 20).to_le_bytes());

        // The directory: count, then entries read back to back.
        select(&mut f, &mut p, key::FILE_DIR);
        let count = u32::from_be_bytes(read(&mut f, &mut p, 4).try_into().unwrap());
        assert_eq!(count, 3);
        let mut found = Vec::new();
        for _ in 0..count {
            let e = read(&mut f, &mut p, 64);
            let size = u32::from_be_bytes(e[0..4].try_into().unwrap());
            let sel = u16::from_be_bytes(e[4..6].try_into().unwrap());
            assert_eq!(&e[6..8], [0, 0]);
            let end = e[8..].iter().position(|&b| b == 0).unwrap();
            assert!(e[8 + end..].iter().all(|&b| b == 0), "name is NUL-padded");
            found.push((
                String::from_utf8(e[8..8 + end].to_vec()).unwrap(),
                sel,
                size,
            ));
        }
        // Sorted by name, keys from 0x20 upward.
        let names: Vec<_> = found.iter().map(|(n, s, _)| (n.as_str(), *s)).collect();
        assert_eq!(
            names,
            [
                ("bootorder", 0x20),
                ("etc/boot-fail-wait", 0x21),
                ("etc/show-boot-menu", 0x22)
            ]
        );
        // The directory is exhausted: further reads are 0.
        assert_eq!(read(&mut f, &mut p, 3), [0, 0, 0]);

        // Find a file by name and read it.
        let (_, sel, size) = found.iter().find(|(n, ..)| n == "bootorder").unwrap();
        select(&mut f, &mut p, *sel);
        assert_eq!(
            read(&mut f, &mut p, *size as usize),
            b"/pci@i0cf8/ide@1,1/drive@0/disk@0\n"
        );
        let (_, sel, size) = found
            .iter()
            .find(|(n, ..)| n == "etc/boot-fail-wait")
            .unwrap();
        select(&mut f, &mut p, *sel);
        assert_eq!(read(&mut f, &mut p, *size as usize), [0xff; 4]);
    }

    #[test]
    fn reads_past_the_end_are_zero_and_stop_the_offset() {
        let mut f = FwCfg::new(1, 0);
        let mut p = MockPlatform::new();
        select(&mut f, &mut p, key::SIGNATURE);
        assert_eq!(read(&mut f, &mut p, 10), b"QEMU\0\0\0\0\0\0");
        assert_eq!(f.offset(), 4);
        // Reselecting starts over.
        select(&mut f, &mut p, key::SIGNATURE);
        assert_eq!(read(&mut f, &mut p, 1), b"Q");
        // An empty directory has a count of 0 and nothing after it.
        select(&mut f, &mut p, key::FILE_DIR);
        assert_eq!(read(&mut f, &mut p, 6), [0; 6]);
    }

    #[test]
    fn hostile_selectors_select_empty_items() {
        let mut f = sample();
        let mut p = MockPlatform::new();
        for k in [
            0x0002, 0x0004, 0x0018, 0x001a, 0x0023, 0x003f, 0x3fff, 0x8000, 0x8003, 0xbfff, 0xc000,
            0xffff,
        ] {
            select(&mut f, &mut p, k);
            assert_eq!(read(&mut f, &mut p, 16), [0; 16], "key {k:#x}");
            assert_eq!(f.offset(), 0);
        }
        // The write-channel bit does not select something else (QEMU masks it too).
        select(&mut f, &mut p, key::WRITE_CHANNEL | key::SIGNATURE);
        assert_eq!(read(&mut f, &mut p, 4), b"QEMU");
    }

    #[test]
    fn writes_and_refused_shapes_do_nothing() {
        let mut f = sample();
        let mut p = MockPlatform::new();
        select(&mut f, &mut p, key::SIGNATURE);
        f.pio_write(&mut p, DATA_PORT, Width::B1, 0x55);
        f.pio_write(&mut p, SELECTOR_PORT, Width::B1, 0x19);
        f.pio_write(&mut p, SELECTOR_PORT, Width::B4, 0x19);
        f.pio_write(&mut p, DATA_PORT, Width::B2, 0x19);
        assert_eq!(f.pio_read(&mut p, DATA_PORT, Width::B2), 0xffff);
        assert_eq!(f.pio_read(&mut p, DATA_PORT, Width::B4), 0xffff_ffff);
        assert_eq!(f.pio_read(&mut p, SELECTOR_PORT, Width::B2), 0xffff);
        assert_eq!((f.selector(), f.offset()), (0, 0));
        // A byte read of the selector port reads data, like QEMU's combined region.
        assert_eq!(f.pio_read(&mut p, SELECTOR_PORT, Width::B1), b'Q' as u32);
        assert_eq!(read(&mut f, &mut p, 3), b"EMU");
    }

    #[test]
    fn add_file_is_bounded() {
        let mut f = FwCfg::new(1, 0);
        assert_eq!(f.add_file("", b"x"), Err(FwCfgError::BadName));
        assert_eq!(f.add_file("a\0b", b"x"), Err(FwCfgError::BadName));
        let long = "n".repeat(NAME_FIELD_LEN);
        assert_eq!(f.add_file(&long, b"x"), Err(FwCfgError::BadName));
        // 55 bytes + NUL fit.
        f.add_file(&long[..NAME_FIELD_LEN - 1], b"x").unwrap();
        assert_eq!(
            f.add_file(&long[..NAME_FIELD_LEN - 1], b"y"),
            Err(FwCfgError::DuplicateName)
        );
        let big = alloc::vec![0u8; MAX_TOTAL_FILE_BYTES];
        assert_eq!(f.add_file("big", &big), Err(FwCfgError::TooLarge));
        f.add_file("big", &big[..MAX_TOTAL_FILE_BYTES - 1]).unwrap();
        assert_eq!(f.add_file("one-more", b"z"), Err(FwCfgError::TooLarge));
        f.add_file("empty", b"").unwrap();
        let mut g = FwCfg::new(1, 0);
        for i in 0..MAX_FILES {
            g.add_file(&alloc::format!("opt/f{i:02}"), b"").unwrap();
        }
        assert_eq!(g.add_file("opt/last", b""), Err(FwCfgError::TooManyFiles));
        assert_eq!(g.file_key("opt/f00"), Some(0x20));
        assert_eq!(g.file_key("opt/f63"), Some(0x20 + 63));
    }

    #[test]
    fn files_are_sorted_by_name_whatever_the_insertion_order() {
        let mut f = FwCfg::new(1, 0);
        for n in ["zeta", "alpha", "etc/b", "etc/a", "Alpha"] {
            f.add_file(n, n.as_bytes()).unwrap();
        }
        let keys: Vec<_> = ["Alpha", "alpha", "etc/a", "etc/b", "zeta"]
            .iter()
            .map(|n| f.file_key(n).unwrap())
            .collect();
        assert_eq!(keys, [0x20, 0x21, 0x22, 0x23, 0x24]);
        let mut p = MockPlatform::new();
        select(&mut f, &mut p, 0x22);
        assert_eq!(read(&mut f, &mut p, 5), b"etc/a");
    }

    #[test]
    fn load_checks_the_offset_against_the_item() {
        let mut f = sample();
        // At the end of the signature: allowed.
        f.select(key::SIGNATURE);
        for _ in 0..4 {
            f.read_data();
        }
        let bytes = save_record(&f, 0);
        let mut g = sample();
        load_record(&mut g, &bytes).unwrap();
        assert_eq!((g.selector(), g.offset()), (0, 4));
        // One past the end, or any offset on an empty key: refused, device unchanged.
        for (sel, off) in [(key::SIGNATURE, 5u32), (0x0002, 1), (0x1234, u32::MAX)] {
            let mut b = bytes.clone();
            b[24..26].copy_from_slice(&sel.to_le_bytes());
            b[26..30].copy_from_slice(&off.to_le_bytes());
            let mut g = sample();
            assert!(matches!(
                load_record(&mut g, &b),
                Err(LoadError::Invalid {
                    field: "offset",
                    ..
                })
            ));
            assert_eq!((g.selector(), g.offset()), (0, 0));
        }
        // A cursor inside a file that the restoring configuration lacks is refused too.
        let mut f = sample();
        f.select(f.file_key("etc/show-boot-menu").unwrap());
        f.read_data();
        let bytes = save_record(&f, 0);
        let mut bare = FwCfg::new(4, 512 << 20);
        assert!(load_record(&mut bare, &bytes).is_err());
    }

    #[test]
    fn hammer_never_panics_and_offset_stays_in_bounds() {
        let mut f = sample();
        let mut p = MockPlatform::new();
        let mut seed = 0x0bad_cafe_f00d_5eedu64;
        let ports = [SELECTOR_PORT, DATA_PORT, 0x512, 0x514, 0x50f];
        for _ in 0..50_000u32 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let port = ports[(seed % ports.len() as u64) as usize];
            let w = [Width::B1, Width::B2, Width::B4][((seed >> 8) % 3) as usize];
            // Bias the selector towards real keys.
            let v = if seed & (1 << 40) != 0 {
                ((seed >> 16) % 0x28) as u32
            } else {
                (seed >> 16) as u32
            };
            if seed & (1 << 41) != 0 {
                f.pio_write(&mut p, port, w, v);
            } else {
                let r = f.pio_read(&mut p, port, w);
                assert_eq!(r & !(w.mask() as u32), 0);
            }
            assert!(f.offset() as usize <= f.items.get(f.selector()).len());
        }
        // Whatever happened, the state saves and loads into a fresh device.
        let bytes = save_record(&f, 0);
        load_record(&mut sample(), &bytes).unwrap();
    }
}
