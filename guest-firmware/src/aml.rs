//! A tiny AML encoder (ACPI 6.5 §20.2, "AML Grammar Definition") and the DSDT body.
//!
//! Only what the DSDT needs: names, packages, scopes, devices, integers, strings and
//! EISA IDs. Encoding is written into a caller-provided buffer; running out of room or
//! an invalid name sets a sticky error flag instead of panicking.

/// Opcodes (ACPI 6.5 §20.2.2 - §20.2.5).
pub mod op {
    pub const ZERO: u8 = 0x00;
    pub const ONE: u8 = 0x01;
    pub const NAME: u8 = 0x08;
    pub const BYTE_PREFIX: u8 = 0x0a;
    pub const WORD_PREFIX: u8 = 0x0b;
    pub const DWORD_PREFIX: u8 = 0x0c;
    pub const STRING_PREFIX: u8 = 0x0d;
    pub const QWORD_PREFIX: u8 = 0x0e;
    pub const SCOPE: u8 = 0x10;
    pub const BUFFER: u8 = 0x11;
    pub const PACKAGE: u8 = 0x12;
    pub const DUAL_NAME_PREFIX: u8 = 0x2e;
    pub const MULTI_NAME_PREFIX: u8 = 0x2f;
    pub const EXT_PREFIX: u8 = 0x5b;
    pub const ROOT_CHAR: u8 = 0x5c;
    pub const PARENT_PREFIX: u8 = 0x5e;
    /// `ExtOpPrefix DeviceOp`.
    pub const EXT_DEVICE: u8 = 0x82;
}

/// Position of an open package-length construct (Package, Scope, Device).
#[derive(Clone, Copy, Debug)]
pub struct Mark(usize);

/// AML byte-stream writer over a fixed buffer.
pub struct Aml<'a> {
    buf: &'a mut [u8],
    pos: usize,
    error: bool,
}

impl<'a> Aml<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        Aml {
            buf,
            pos: 0,
            error: false,
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }

    /// True once anything did not fit or was not encodable; the output is then invalid.
    pub fn failed(&self) -> bool {
        self.error
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.pos]
    }

    fn byte(&mut self, b: u8) {
        match self.buf.get_mut(self.pos) {
            Some(slot) => {
                *slot = b;
                self.pos += 1;
            }
            None => self.error = true,
        }
    }

    fn put(&mut self, s: &[u8]) {
        for &b in s {
            self.byte(b);
        }
    }

    /// A NameString (§20.2.2): `\`-rooted or `^`-prefixed, segments separated by `.`,
    /// each 1..=4 characters of `A-Z 0-9 _` (the first not a digit), padded with `_`.
    pub fn name_string(&mut self, path: &str) {
        let mut rest = path.as_bytes();
        if let [b'\\', tail @ ..] = rest {
            self.byte(op::ROOT_CHAR);
            rest = tail;
        } else {
            while let [b'^', tail @ ..] = rest {
                self.byte(op::PARENT_PREFIX);
                rest = tail;
            }
        }
        if rest.is_empty() {
            self.byte(0x00); // NullName
            return;
        }
        let count = rest.split(|&c| c == b'.').count();
        match count {
            1 => {}
            2 => self.byte(op::DUAL_NAME_PREFIX),
            3..=255 => {
                self.byte(op::MULTI_NAME_PREFIX);
                self.byte(count as u8);
            }
            _ => {
                self.error = true;
                return;
            }
        }
        for seg in rest.split(|&c| c == b'.') {
            self.name_seg(seg);
        }
    }

    fn name_seg(&mut self, seg: &[u8]) {
        let valid = !seg.is_empty()
            && seg.len() <= 4
            && !seg[0].is_ascii_digit()
            && seg
                .iter()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_');
        if !valid {
            self.error = true;
            return;
        }
        for i in 0..4 {
            self.byte(*seg.get(i).unwrap_or(&b'_'));
        }
    }

    /// The shortest integer encoding (ZeroOp, OneOp, Byte/Word/DWord/QWordConst).
    pub fn integer(&mut self, v: u64) {
        match v {
            0 => self.byte(op::ZERO),
            1 => self.byte(op::ONE),
            2..=0xff => {
                self.byte(op::BYTE_PREFIX);
                self.byte(v as u8);
            }
            0x100..=0xffff => {
                self.byte(op::WORD_PREFIX);
                self.put(&(v as u16).to_le_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                self.byte(op::DWORD_PREFIX);
                self.put(&(v as u32).to_le_bytes());
            }
            _ => {
                self.byte(op::QWORD_PREFIX);
                self.put(&v.to_le_bytes());
            }
        }
    }

    /// A String (ASCII 0x01..=0x7f, NUL-terminated).
    pub fn string(&mut self, s: &str) {
        if s.bytes().any(|c| c == 0 || c > 0x7f) {
            self.error = true;
            return;
        }
        self.byte(op::STRING_PREFIX);
        self.put(s.as_bytes());
        self.byte(0);
    }

    /// `Buffer () { bytes }`: BufferOp PkgLength BufferSize ByteList.
    pub fn buffer(&mut self, bytes: &[u8]) {
        self.byte(op::BUFFER);
        let m = Mark(self.pos);
        self.integer(bytes.len() as u64);
        self.put(bytes);
        self.end(m);
    }

    /// `EISAID("PNP0A03")`: the 32-bit compressed EISA ID, as iasl emits it (a DWord).
    pub fn eisa_id(&mut self, id: &str) {
        match eisa_id(id) {
            Some(v) => self.integer(v as u64),
            None => self.error = true,
        }
    }

    /// `Name(path, ...)`: the caller writes the data object next.
    pub fn name(&mut self, path: &str) {
        self.byte(op::NAME);
        self.name_string(path);
    }

    /// Opens `Package(count) { ... }`; close it with [`Aml::end`].
    pub fn begin_package(&mut self, count: u8) -> Mark {
        self.byte(op::PACKAGE);
        let m = Mark(self.pos);
        self.byte(count);
        m
    }

    /// Opens `Scope(path) { ... }`; close it with [`Aml::end`].
    pub fn begin_scope(&mut self, path: &str) -> Mark {
        self.byte(op::SCOPE);
        let m = Mark(self.pos);
        self.name_string(path);
        m
    }

    /// Opens `Device(path) { ... }`; close it with [`Aml::end`].
    pub fn begin_device(&mut self, path: &str) -> Mark {
        self.byte(op::EXT_PREFIX);
        self.byte(op::EXT_DEVICE);
        let m = Mark(self.pos);
        self.name_string(path);
        m
    }

    /// Closes a construct: inserts its PkgLength (§20.2.4) at the mark, counting the
    /// PkgLength bytes themselves, in the fewest bytes that hold it.
    pub fn end(&mut self, mark: Mark) {
        if self.error || mark.0 > self.pos {
            self.error = true;
            return;
        }
        let body = self.pos - mark.0;
        let Some((n, total)) = pkg_length_size(body) else {
            self.error = true;
            return;
        };
        if self.pos + n > self.buf.len() {
            self.error = true;
            return;
        }
        self.buf.copy_within(mark.0..self.pos, mark.0 + n);
        let enc = encode_pkg_length(total, n);
        self.buf[mark.0..mark.0 + n].copy_from_slice(&enc[..n]);
        self.pos += n;
    }
}

/// For a body of `body` bytes: (PkgLength byte count, encoded total length).
pub fn pkg_length_size(body: usize) -> Option<(usize, u32)> {
    // One byte holds 0..=63; n bytes (n >= 2) hold 4 + 8*(n-1) bits.
    for (n, max) in [
        (1usize, 0x3fusize),
        (2, 0xfff),
        (3, 0xf_ffff),
        (4, 0xfff_ffff),
    ] {
        let total = body.checked_add(n)?;
        if total <= max {
            return Some((n, total as u32));
        }
    }
    None
}

/// PkgLength in exactly `n` bytes (1..=4) for a total that fits.
pub fn encode_pkg_length(total: u32, n: usize) -> [u8; 4] {
    let mut out = [0u8; 4];
    if n <= 1 {
        out[0] = (total & 0x3f) as u8;
    } else {
        out[0] = (((n - 1) as u8) << 6) | (total & 0xf) as u8;
        for (i, slot) in out.iter_mut().enumerate().take(n).skip(1) {
            *slot = (total >> (4 + 8 * (i - 1))) as u8;
        }
    }
    out
}

/// Compresses an EISA ID ("ABC1234"): three letters, 5 bits each, then four hex digits,
/// packed big-endian into bytes 0..4 of a little-endian DWord.
pub fn eisa_id(id: &str) -> Option<u32> {
    let b = id.as_bytes();
    if b.len() != 7 || !b[..3].iter().all(|c| c.is_ascii_uppercase()) {
        return None;
    }
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let l = |c: u8| (c - 0x40) & 0x1f;
    let d: [u8; 4] = [hex(b[3])?, hex(b[4])?, hex(b[5])?, hex(b[6])?];
    let bytes = [
        (l(b[0]) << 2) | (l(b[1]) >> 3),
        ((l(b[1]) & 7) << 5) | l(b[2]),
        (d[0] << 4) | d[1],
        (d[2] << 4) | d[3],
    ];
    Some(u32::from_le_bytes(bytes))
}

use hypervisor_abi::pvh::{PCI_HOLE_START, PCI_MMIO_END};

/// Length of [`pci0_crs`].
pub const PCI0_CRS_LEN: usize = 16 + 8 + 16 + 16 + 26 + 26 + 2;

/// The host bridge's `_CRS` (ACPI 6.5 §6.4 resource descriptors), what the OS may use
/// below it; without it Linux finds no bridge windows and refuses every BAR:
///
/// ```text
/// WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, 0x00, 0xFF, 0, 0x100)
/// IO (Decode16, 0x0CF8, 0x0CF8, 0x01, 0x08)
/// WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,
///         0, 0x0000, 0x0CF7, 0, 0x0CF8)
/// WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,
///         0, 0x0D00, 0xFFFF, 0, 0xF300)
/// DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, Cacheable, ReadWrite,
///         0, 0x000A0000, 0x000BFFFF, 0, 0x00020000)
/// DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite,
///         0, mem_min, mem_max, 0, mem_max - mem_min + 1)
/// EndTag
/// ```
pub fn pci0_crs(mem_min: u32, mem_max: u32) -> [u8; PCI0_CRS_LEN] {
    // General flags: producer, positive decode, min and max fixed.
    const GEN: u8 = 0x0c;
    let mut b = [0u8; PCI0_CRS_LEN];
    let mut o = 0;
    let word =
        |b: &mut [u8; PCI0_CRS_LEN], o: &mut usize, ty: u8, tflags: u8, min: u16, max: u16| {
            let len = max.wrapping_sub(min).wrapping_add(1);
            b[*o..*o + 6].copy_from_slice(&[0x88, 0x0d, 0x00, ty, GEN, tflags]);
            b[*o + 6..*o + 8].copy_from_slice(&0u16.to_le_bytes());
            b[*o + 8..*o + 10].copy_from_slice(&min.to_le_bytes());
            b[*o + 10..*o + 12].copy_from_slice(&max.to_le_bytes());
            b[*o + 12..*o + 14].copy_from_slice(&0u16.to_le_bytes());
            b[*o + 14..*o + 16].copy_from_slice(&len.to_le_bytes());
            *o += 16;
        };
    word(&mut b, &mut o, 2, 0, 0x00, 0xff);
    b[o..o + 8].copy_from_slice(&[0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08]);
    o += 8;
    word(&mut b, &mut o, 1, 0x03, 0x0000, 0x0cf7);
    word(&mut b, &mut o, 1, 0x03, 0x0d00, 0xffff);
    let dword = |b: &mut [u8; PCI0_CRS_LEN], o: &mut usize, tflags: u8, min: u32, max: u32| {
        let len = max.wrapping_sub(min).wrapping_add(1);
        b[*o..*o + 6].copy_from_slice(&[0x87, 0x17, 0x00, 0, GEN, tflags]);
        for (i, v) in [0, min, max, 0, len].iter().enumerate() {
            b[*o + 6 + 4 * i..*o + 10 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        *o += 26;
    };
    // Memory type flags: bit 0 read/write, bits 1-2 cacheability.
    dword(&mut b, &mut o, 0x03, 0x000a_0000, 0x000b_ffff);
    dword(&mut b, &mut o, 0x01, mem_min, mem_max);
    // End tag with a zero checksum ("treat as valid").
    b[o] = 0x79;
    b[o + 1] = 0;
    b
}

/// The DSDT body (everything after the 36-byte table header):
///
/// ```text
/// Name (\_S5, Package (4) { 0, 0, 0, 0 })      // Xen's "V1" S5: SLP_TYP 0
/// Scope (\_SB) {
///   Device (PCI0) {
///     Name (_HID, EisaId ("PNP0A03"))
///     Name (_ADR, 0)
///     Name (_UID, 0)
///     Name (_CRS, ResourceTemplate () { ... })  // see pci0_crs
///     Name (_PRT, Package (124) {               // dev 1..31, INTA..INTD
///       Package (4) { (dev << 16) | 0xFFFF, pin, 0, gsi }, ...
///     })
///   }
/// }
/// ```
///
/// `_PRT` uses static GSIs (Source = 0): pin `p` (0 = INTA) of device `d` goes to the
/// ISA IRQ of PIIX3 link `(p + d) & 3`, which is the same number as a GSI on the IOAPIC
/// (GSI n = ISA IRQ n except IRQ0) and as a PIC IRQ in PIC mode.
pub fn write_dsdt_body(aml: &mut Aml, link_irqs: [u8; 4]) {
    aml.name("\\_S5");
    let pkg = aml.begin_package(4);
    for _ in 0..4 {
        aml.integer(0);
    }
    aml.end(pkg);

    let sb = aml.begin_scope("\\_SB");
    let dev = aml.begin_device("PCI0");
    aml.name("_HID");
    aml.eisa_id("PNP0A03");
    aml.name("_ADR");
    aml.integer(0);
    aml.name("_UID");
    aml.integer(0);
    aml.name("_CRS");
    aml.buffer(&pci0_crs(PCI_HOLE_START as u32, (PCI_MMIO_END - 1) as u32));
    write_prt(aml, link_irqs);
    aml.end(dev);
    aml.end(sb);
}

/// `Name (_PRT, Package { ... })` for devices 1..=31, pins INTA..INTD.
pub fn write_prt(aml: &mut Aml, link_irqs: [u8; 4]) {
    aml.name("_PRT");
    let prt = aml.begin_package(31 * 4);
    for dev in 1u64..32 {
        for pin in 0u64..4 {
            let entry = aml.begin_package(4);
            aml.integer((dev << 16) | 0xffff);
            aml.integer(pin);
            aml.integer(0);
            let link = ((pin + dev) & 3) as usize;
            aml.integer(link_irqs[link] as u64);
            aml.end(entry);
        }
    }
    aml.end(prt);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(f: impl FnOnce(&mut Aml)) -> Vec<u8> {
        let mut buf = [0u8; 8192];
        let mut a = Aml::new(&mut buf);
        f(&mut a);
        assert!(!a.failed());
        a.bytes().to_vec()
    }

    #[test]
    fn integers_use_the_shortest_form() {
        assert_eq!(enc(|a| a.integer(0)), [0x00]);
        assert_eq!(enc(|a| a.integer(1)), [0x01]);
        assert_eq!(enc(|a| a.integer(5)), [0x0a, 0x05]);
        assert_eq!(enc(|a| a.integer(0x1ff)), [0x0b, 0xff, 0x01]);
        assert_eq!(enc(|a| a.integer(0x1ffff)), [0x0c, 0xff, 0xff, 0x01, 0x00]);
        assert_eq!(
            enc(|a| a.integer(0x1_0000_0000)),
            [0x0e, 0, 0, 0, 0, 1, 0, 0, 0]
        );
    }

    #[test]
    fn name_strings() {
        assert_eq!(enc(|a| a.name_string("_HID")), b"_HID");
        assert_eq!(enc(|a| a.name_string("\\_S5")), b"\\_S5_");
        assert_eq!(enc(|a| a.name_string("\\_SB.PCI0")), b"\\\x2e_SB_PCI0");
        assert_eq!(enc(|a| a.name_string("A.B.C")), b"\x2f\x03A___B___C___");
        assert_eq!(enc(|a| a.name_string("^^FOO")), b"^^FOO_");
        assert_eq!(enc(|a| a.name_string("\\")), b"\\\x00");
    }

    #[test]
    fn bad_names_fail_without_panicking() {
        for bad in ["lower", "TOOLONG", "1ABC", "A..B", "A-B", "\\."] {
            let mut buf = [0u8; 64];
            let mut a = Aml::new(&mut buf);
            a.name_string(bad);
            assert!(a.failed(), "{bad}");
        }
    }

    #[test]
    fn strings_and_eisa_ids() {
        assert_eq!(enc(|a| a.string("Xen")), b"\x0dXen\x00");
        // iasl: Name (_HID, EisaId ("PNP0A03")) -> 08 5F 48 49 44 0C 41 D0 0A 03
        assert_eq!(
            enc(|a| {
                a.name("_HID");
                a.eisa_id("PNP0A03")
            }),
            [0x08, b'_', b'H', b'I', b'D', 0x0c, 0x41, 0xd0, 0x0a, 0x03]
        );
        assert_eq!(eisa_id("PNP0A03"), Some(0x030a_d041));
        assert_eq!(eisa_id("PNP0C0F"), Some(0x0f0c_d041));
        assert_eq!(eisa_id("pnp0a03"), None);
        assert_eq!(eisa_id("PNP0A0"), None);
        assert_eq!(eisa_id("PNP0A0G"), None);
    }

    #[test]
    fn s5_package_matches_iasl() {
        // iasl: Name (\_S5, Package (0x04) { Zero, Zero, Zero, Zero })
        assert_eq!(
            enc(|a| {
                a.name("\\_S5");
                let p = a.begin_package(4);
                for _ in 0..4 {
                    a.integer(0);
                }
                a.end(p);
            }),
            [
                0x08, 0x5c, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0, 0, 0, 0
            ]
        );
    }

    #[test]
    fn pkg_length_encodings() {
        assert_eq!(pkg_length_size(0), Some((1, 1)));
        assert_eq!(pkg_length_size(62), Some((1, 63)));
        assert_eq!(pkg_length_size(62 + 1), Some((2, 65)));
        assert_eq!(pkg_length_size(0xfff - 2), Some((2, 0xfff)));
        assert_eq!(pkg_length_size(0xfff - 1), Some((3, 0x1001)));
        assert_eq!(pkg_length_size(0x0fff_fff0), Some((4, 0x0fff_fff4)));
        assert_eq!(pkg_length_size(0x0fff_fffc), None);
        assert_eq!(encode_pkg_length(0x3f, 1)[0], 0x3f);
        // 0x1234 in 3 bytes: lead 0x80|4, then 0x23, 0x01.
        assert_eq!(&encode_pkg_length(0x1234, 3)[..3], &[0x84, 0x23, 0x01]);
        // 0x65 in 2 bytes: lead 0x40|5, then 0x06.
        assert_eq!(&encode_pkg_length(0x65, 2)[..2], &[0x45, 0x06]);
    }

    #[test]
    fn scope_and_device_lengths() {
        // Scope (\_SB) { Device (PCI0) { Name (_ADR, Zero) } }
        let b = enc(|a| {
            let s = a.begin_scope("\\_SB");
            let d = a.begin_device("PCI0");
            a.name("_ADR");
            a.integer(0);
            a.end(d);
            a.end(s);
        });
        let expect = [
            0x10, 0x13, 0x5c, b'_', b'S', b'B', b'_', // Scope, len 0x13, \_SB_
            0x5b, 0x82, 0x0b, b'P', b'C', b'I', b'0', // Device, len 0x0b, PCI0
            0x08, b'_', b'A', b'D', b'R', 0x00, // Name (_ADR, Zero)
        ];
        assert_eq!(b, expect);
    }

    #[test]
    fn prt_entries() {
        let b = enc(|a| write_prt(a, [5, 10, 11, 5]));
        // Name (_PRT, Package (0x7C) {  -> 08 _PRT 12 <2-byte len> 7C
        assert_eq!(&b[..5], b"\x08_PRT");
        assert_eq!(b[5], 0x12);
        let (n, total) = pkg_length_size(b.len() - 6 - 2).unwrap();
        assert_eq!(n, 2);
        assert_eq!(&b[6..8], &encode_pkg_length(total, 2)[..2]);
        assert_eq!(b[8], 124);
        // First entry: Package (4) { 0x0001FFFF, Zero, Zero, 0x0A } (dev 1 INTA -> link B)
        let first = [
            0x12, 0x0b, 0x04, 0x0c, 0xff, 0xff, 0x01, 0x00, 0x00, 0x00, 0x0a, 10,
        ];
        assert_eq!(&b[9..9 + first.len()], &first);
        // Second entry: dev 1 INTB -> link C = 11.
        let second = [
            0x12, 0x0b, 0x04, 0x0c, 0xff, 0xff, 0x01, 0x00, 0x01, 0x00, 0x0a, 11,
        ];
        assert_eq!(&b[21..21 + second.len()], &second);
        // Every entry is 12 bytes except pins 2 and 3 (BytePrefix for the pin): 13.
        assert_eq!(b.len(), 9 + 31 * (12 + 12 + 13 + 13));
    }

    #[test]
    fn pci0_crs_bytes() {
        let b = pci0_crs(0xe000_0000, 0xfebf_ffff);
        // WordBusNumber 0..0xff.
        assert_eq!(
            &b[0..16],
            &[0x88, 0x0d, 0, 2, 0x0c, 0, 0, 0, 0, 0, 0xff, 0, 0, 0, 0, 1]
        );
        assert_eq!(&b[16..24], &[0x47, 1, 0xf8, 0x0c, 0xf8, 0x0c, 1, 8]);
        assert_eq!(
            &b[24..40],
            &[
                0x88, 0x0d, 0, 1, 0x0c, 3, 0, 0, 0, 0, 0xf7, 0x0c, 0, 0, 0xf8, 0x0c
            ]
        );
        assert_eq!(
            &b[40..56],
            &[
                0x88, 0x0d, 0, 1, 0x0c, 3, 0, 0, 0, 0x0d, 0xff, 0xff, 0, 0, 0, 0xf3
            ]
        );
        assert_eq!(&b[56..62], &[0x87, 0x17, 0, 0, 0x0c, 3]);
        assert_eq!(&b[66..70], &0xa_0000u32.to_le_bytes());
        assert_eq!(&b[70..74], &0xb_ffffu32.to_le_bytes());
        assert_eq!(&b[78..82], &0x2_0000u32.to_le_bytes());
        assert_eq!(&b[82..88], &[0x87, 0x17, 0, 0, 0x0c, 1]);
        assert_eq!(&b[92..96], &0xe000_0000u32.to_le_bytes());
        assert_eq!(&b[96..100], &0xfebf_ffffu32.to_le_bytes());
        assert_eq!(&b[104..108], &0x1ec0_0000u32.to_le_bytes());
        assert_eq!(&b[108..110], &[0x79, 0]);
    }

    #[test]
    fn buffers() {
        // Buffer (0x03) { 1, 2, 3 } -> 11 06 0A 03 01 02 03
        assert_eq!(
            enc(|a| a.buffer(&[1, 2, 3])),
            [0x11, 0x06, 0x0a, 0x03, 1, 2, 3]
        );
        assert_eq!(enc(|a| a.buffer(&[])), [0x11, 0x02, 0x00]);
    }

    #[test]
    fn overflow_is_sticky_not_a_panic() {
        let mut buf = [0u8; 40];
        let mut a = Aml::new(&mut buf);
        write_dsdt_body(&mut a, [5, 10, 11, 5]);
        assert!(a.failed());
        assert!(a.len() <= 40);
    }
}
