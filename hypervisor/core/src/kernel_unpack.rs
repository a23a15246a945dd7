//! Host-side unpacking of a bzImage's compressed kernel, as `scripts/extract-vmlinux`
//! does: the x86 boot header (`payload_offset`/`payload_length`, boot protocol 2.08+)
//! locates the compressed `vmlinux` ELF inside the protected-mode part; we decompress it
//! here and hand it to the guest firmware as the module "vmlinux", which places its
//! PT_LOAD segments like the kernel's own decompressor would and enters the kernel
//! proper at `startup_64`.
//!
//! Why: the decompressor stub is the one part of a Linux boot that does nothing but
//! arithmetic (Debian's 8 MB xz payload costs billions of instructions), which a
//! software CPU runs a hundred times slower than the host. The kernel itself is
//! unchanged; QEMU's PVH `-kernel vmlinux` and Firecracker boot uncompressed kernels the
//! same way. Formats: xz (Debian), gzip, zstd; anything else is reported and the guest's
//! own decompressor runs instead.
//!
//! The image comes from the host admin's config, not from the guest, but it is still
//! parsed defensively: every offset is bounds-checked and the output is capped.

use std::fmt;
use std::io::{Read, Write};

/// Largest decompressed kernel accepted (Debian's is ~40 MiB).
pub const MAX_UNPACKED: usize = 512 << 20;

/// Why a bzImage was not unpacked.
#[derive(Debug, PartialEq, Eq)]
pub enum UnpackError {
    /// Not a bzImage with boot protocol 2.08+ (no payload fields).
    NotBzImage(&'static str),
    /// A compression this build does not decode (the guest decompressor can).
    Unsupported(&'static str),
    /// The payload did not decompress.
    Corrupt(String),
    /// The output would exceed [`MAX_UNPACKED`].
    TooLarge,
    /// The payload is not an x86-64 ELF with loadable segments.
    NotElf(&'static str),
}

impl fmt::Display for UnpackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnpackError::NotBzImage(w) => write!(f, "not a bzImage (2.08+): {w}"),
            UnpackError::Unsupported(c) => {
                write!(f, "{c}-compressed payload is not unpacked on the host")
            }
            UnpackError::Corrupt(e) => write!(f, "compressed payload is corrupt: {e}"),
            UnpackError::TooLarge => write!(
                f,
                "payload decompresses to more than {} MiB",
                MAX_UNPACKED >> 20
            ),
            UnpackError::NotElf(w) => write!(f, "payload is not an x86-64 vmlinux ELF: {w}"),
        }
    }
}

fn rd16(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn rd32(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn rd64(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

/// The compressed payload inside a bzImage.
pub fn payload(bz: &[u8]) -> Result<&[u8], UnpackError> {
    let bad = UnpackError::NotBzImage;
    if rd16(bz, 0x1fe) != Some(0xaa55) || bz.get(0x202..0x206) != Some(b"HdrS") {
        return Err(bad("no boot sector signature or HdrS header"));
    }
    let version = rd16(bz, 0x206).ok_or(bad("truncated header"))?;
    if version < 0x208 {
        return Err(bad("boot protocol older than 2.08 has no payload fields"));
    }
    let setup_sects = match bz[0x1f1] {
        0 => 4,
        n => n as usize,
    };
    let pm = (setup_sects + 1) * 512;
    let off = rd32(bz, 0x248).ok_or(bad("truncated header"))? as usize;
    let len = rd32(bz, 0x24c).ok_or(bad("truncated header"))? as usize;
    let start = pm.checked_add(off).ok_or(bad("payload offset overflows"))?;
    let end = start
        .checked_add(len)
        .ok_or(bad("payload length overflows"))?;
    bz.get(start..end)
        .ok_or(bad("payload lies outside the file"))
}

/// A writer that refuses to grow past `limit` bytes (decompression bombs).
struct Capped {
    out: Vec<u8>,
    limit: usize,
}

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len() + buf.len() > self.limit {
            return Err(std::io::Error::other("output limit"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The kernel build appends the uncompressed size (u32 LE) after xz and zstd streams
/// (`size_append`); strip it and return it.
fn strip_size(p: &[u8]) -> (&[u8], Option<u32>) {
    match p.len().checked_sub(4) {
        Some(n) => (&p[..n], rd32(p, n)),
        None => (p, None),
    }
}

/// xz as the kernel build writes it (`scripts/xz_wrap.sh`: one block, the x86 BCJ
/// filter in front of LZMA2, CRC32 check). lzma-rs decodes LZMA2 but not the xz filter
/// chain, so the container is read here: stream header, the block header's filter
/// list, then the LZMA2 data; the BCJ filter is undone afterwards ([`bcj_x86_decode`]).
fn unxz(p: &[u8], limit: usize) -> Result<Vec<u8>, UnpackError> {
    let (stream, size) = strip_size(p);
    let corrupt = |w: &str| UnpackError::Corrupt(format!("xz: {w}"));
    // Stream header: magic (6), flags (2), CRC32 (4).
    let hdr = stream.get(12..).ok_or(corrupt("truncated stream header"))?;
    let hsize = (*hdr.first().ok_or(corrupt("no block"))? as usize + 1) * 4;
    if hdr[0] == 0 {
        return Err(corrupt("no block (empty stream)"));
    }
    let block = hdr.get(..hsize).ok_or(corrupt("truncated block header"))?;
    let flags = block[1];
    if flags & 0x3c != 0 {
        return Err(corrupt("reserved block flags"));
    }
    let filters = (flags & 3) as usize + 1;
    let mut at = 2usize;
    let varint = |at: &mut usize| -> Result<u64, UnpackError> {
        let mut v = 0u64;
        for k in 0..9 {
            let b = *block.get(*at).ok_or(corrupt("truncated varint"))?;
            *at += 1;
            v |= u64::from(b & 0x7f) << (7 * k);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(corrupt("overlong varint"))
    };
    if flags & 0x40 != 0 {
        varint(&mut at)?; // compressed size
    }
    if flags & 0x80 != 0 {
        varint(&mut at)?; // uncompressed size
    }
    let mut bcj = false;
    let mut lzma2 = false;
    for k in 0..filters {
        let id = varint(&mut at)?;
        let props = varint(&mut at)? as usize;
        let last = k + 1 == filters;
        match (id, last) {
            (0x21, true) if props == 1 => lzma2 = true,
            // BCJ x86 without a start offset (a non-zero offset is not used by Linux).
            (0x04, false) if props == 0 => bcj = true,
            (0x04, false) if props == 4 && block.get(at..at + 4) == Some(&[0; 4]) => bcj = true,
            _ => {
                return Err(UnpackError::Unsupported(
                    "xz (filter chain other than [x86 BCJ,] LZMA2)",
                ));
            }
        }
        at += props;
    }
    if !lzma2 {
        return Err(UnpackError::Unsupported("xz (no LZMA2 filter)"));
    }
    let data = stream.get(12 + hsize..).ok_or(corrupt("truncated block"))?;
    let mut w = Capped {
        out: Vec::new(),
        limit,
    };
    let mut r = std::io::BufReader::new(data);
    match lzma_rs::lzma2_decompress(&mut r, &mut w) {
        Ok(()) => {}
        Err(_) if w.out.len() + (1 << 16) > limit => return Err(UnpackError::TooLarge),
        Err(e) => return Err(corrupt(&format!("{e:?}"))),
    }
    let mut out = w.out;
    // A second block would be lost silently: the appended size catches it.
    if size.is_some_and(|n| n as usize != out.len()) {
        return Err(UnpackError::Unsupported("xz (more than one block)"));
    }
    if bcj {
        bcj_x86_decode(&mut out);
    }
    Ok(out)
}

/// Undo xz's x86 branch/call/jump filter over a whole buffer that starts at stream
/// position 0. The encoder turned the relative 32-bit targets of E8 (CALL) and E9 (JMP)
/// into absolute ones where the displacement's top byte is 0x00 or 0xFF; this turns
/// them back. The filter keeps a 3-bit history of recent E8/E9 bytes (`mask`) so that
/// opcode bytes seen inside another candidate's displacement are treated exactly as
/// the encoder treated them.
pub fn bcj_x86_decode(buf: &mut [u8]) {
    // Which history masks allow a conversion, and which displacement byte the history
    // points at.
    const ALLOWED: [bool; 8] = [true, true, true, false, true, false, false, false];
    const BIT_NUM: [u32; 8] = [0, 1, 2, 2, 3, 3, 3, 3];
    let sign_byte = |b: u8| b == 0x00 || b == 0xff;
    if buf.len() <= 4 {
        return;
    }
    let end = buf.len() - 4;
    let mut prev_pos: usize = usize::MAX;
    let mut mask: u32 = 0;
    let mut i = 0usize;
    while i < end {
        if buf[i] & 0xfe != 0xe8 {
            i += 1;
            continue;
        }
        let dist = i.wrapping_sub(prev_pos);
        if dist > 3 {
            mask = 0;
        } else {
            mask = (mask << (dist - 1)) & 7;
            if mask != 0 {
                let b = buf[i + 4 - BIT_NUM[mask as usize] as usize];
                if !ALLOWED[mask as usize] || sign_byte(b) {
                    prev_pos = i;
                    mask = (mask << 1) | 1;
                    i += 1;
                    continue;
                }
            }
        }
        prev_pos = i;
        if sign_byte(buf[i + 4]) {
            let mut src = u32::from_le_bytes([buf[i + 1], buf[i + 2], buf[i + 3], buf[i + 4]]);
            let mut dest;
            loop {
                dest = src.wrapping_sub((i as u32).wrapping_add(5));
                if mask == 0 {
                    break;
                }
                let j = BIT_NUM[mask as usize] * 8;
                if !sign_byte((dest >> (24 - j)) as u8) {
                    break;
                }
                src = dest ^ ((1u32 << (32 - j)) - 1);
            }
            dest &= 0x01ff_ffff;
            dest |= 0u32.wrapping_sub(dest & 0x0100_0000);
            buf[i + 1..i + 5].copy_from_slice(&dest.to_le_bytes());
            i += 5;
        } else {
            mask = (mask << 1) | 1;
            i += 1;
        }
    }
}

fn unzstd(p: &[u8], limit: usize) -> Result<Vec<u8>, UnpackError> {
    let (mut stream, _) = strip_size(p);
    let dec = ruzstd::decoding::StreamingDecoder::new(&mut stream)
        .map_err(|e| UnpackError::Corrupt(format!("zstd: {e}")))?;
    let mut out = Vec::new();
    dec.take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| UnpackError::Corrupt(format!("zstd: {e}")))?;
    if out.len() > limit {
        return Err(UnpackError::TooLarge);
    }
    Ok(out)
}

/// gzip (RFC 1952): skip the header, inflate the raw deflate stream.
fn ungzip(p: &[u8], limit: usize) -> Result<Vec<u8>, UnpackError> {
    let corrupt = |w: &str| UnpackError::Corrupt(format!("gzip: {w}"));
    if p.len() < 18 || p[2] != 8 {
        return Err(corrupt("bad header"));
    }
    let flags = p[3];
    let mut at = 10usize;
    if flags & 4 != 0 {
        let xlen = rd16(p, at).ok_or(corrupt("truncated FEXTRA"))? as usize;
        at += 2 + xlen;
    }
    for bit in [8u8, 16] {
        // FNAME, FCOMMENT: NUL-terminated.
        if flags & bit != 0 {
            let rest = p.get(at..).ok_or(corrupt("truncated header"))?;
            let nul = rest
                .iter()
                .position(|&b| b == 0)
                .ok_or(corrupt("unterminated name"))?;
            at += nul + 1;
        }
    }
    if flags & 2 != 0 {
        at += 2;
    }
    let body = p.get(at..).ok_or(corrupt("truncated header"))?;
    miniz_oxide::inflate::decompress_to_vec_with_limit(body, limit).map_err(|e| {
        if e.status == miniz_oxide::inflate::TINFLStatus::HasMoreOutput {
            UnpackError::TooLarge
        } else {
            corrupt(&format!("{:?}", e.status))
        }
    })
}

/// Check that `elf` is an x86-64 executable with at least one PT_LOAD inside the file.
pub fn check_vmlinux(elf: &[u8]) -> Result<(), UnpackError> {
    let bad = UnpackError::NotElf;
    if elf.get(0..4) != Some(b"\x7fELF") {
        return Err(bad("no ELF magic"));
    }
    if elf.get(4) != Some(&2) || elf.get(5) != Some(&1) || rd16(elf, 18) != Some(62) {
        return Err(bad("not ELF64 little-endian x86-64"));
    }
    let phoff = rd64(elf, 32).ok_or(bad("truncated"))? as usize;
    let phentsize = rd16(elf, 54).ok_or(bad("truncated"))? as usize;
    let phnum = rd16(elf, 56).ok_or(bad("truncated"))? as usize;
    if phentsize < 56 {
        return Err(bad("program header entries too small"));
    }
    let mut loads = 0;
    for k in 0..phnum {
        let ph = phoff
            .checked_add(k * phentsize)
            .ok_or(bad("program headers overflow"))?;
        if rd32(elf, ph) == Some(1) {
            let off = rd64(elf, ph + 8).ok_or(bad("truncated program header"))?;
            let filesz = rd64(elf, ph + 32).ok_or(bad("truncated program header"))?;
            if off.checked_add(filesz).is_none_or(|e| e > elf.len() as u64) {
                return Err(bad("a PT_LOAD segment lies outside the file"));
            }
            loads += 1;
        }
    }
    if loads == 0 {
        return Err(bad("no PT_LOAD segment"));
    }
    Ok(())
}

/// Decompress the kernel of bzImage `bz` into its `vmlinux` ELF.
pub fn unpack(bz: &[u8]) -> Result<Vec<u8>, UnpackError> {
    unpack_with_limit(bz, MAX_UNPACKED)
}

fn unpack_with_limit(bz: &[u8], limit: usize) -> Result<Vec<u8>, UnpackError> {
    let p = payload(bz)?;
    let elf = match p {
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => unxz(p, limit)?,
        [0x1f, 0x8b, ..] => ungzip(p, limit)?,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => unzstd(p, limit)?,
        [b'B', b'Z', b'h', ..] => return Err(UnpackError::Unsupported("bzip2")),
        [0x89, b'L', b'Z', b'O', ..] => return Err(UnpackError::Unsupported("lzo")),
        [0x02, 0x21, 0x4c, 0x18, ..] => return Err(UnpackError::Unsupported("lz4")),
        [0x5d, 0, 0, ..] => return Err(UnpackError::Unsupported("lzma")),
        // An uncompressed payload (CONFIG_KERNEL_UNCOMPRESSED) is the ELF itself.
        [0x7f, b'E', b'L', b'F', ..] => p.to_vec(),
        _ => return Err(UnpackError::Unsupported("unknown")),
    };
    check_vmlinux(&elf)?;
    Ok(elf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 x86-64 with one PT_LOAD of `body`.
    fn tiny_elf(body: &[u8]) -> Vec<u8> {
        let mut e = vec![0u8; 64 + 56];
        e[0..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[18] = 62;
        e[32..40].copy_from_slice(&64u64.to_le_bytes());
        e[54..56].copy_from_slice(&56u16.to_le_bytes());
        e[56..58].copy_from_slice(&1u16.to_le_bytes());
        e[64..68].copy_from_slice(&1u32.to_le_bytes());
        e[64 + 8..64 + 16].copy_from_slice(&120u64.to_le_bytes());
        e[64 + 32..64 + 40].copy_from_slice(&(body.len() as u64).to_le_bytes());
        e.extend_from_slice(body);
        e
    }

    /// A bzImage shell (1 setup sector) around `payload`.
    fn bzimage(payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 1024];
        b[0x1f1] = 1;
        b[0x1fe] = 0x55;
        b[0x1ff] = 0xaa;
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
        b[0x248..0x24c].copy_from_slice(&16u32.to_le_bytes());
        b[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        b.extend_from_slice(&[0x90; 16]);
        b.extend_from_slice(payload);
        b
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut g = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
        g.extend(miniz_oxide::deflate::compress_to_vec(data, 6));
        g.extend_from_slice(&[0; 8]); // CRC32 and ISIZE (not checked)
        g
    }

    #[test]
    fn uncompressed_and_gzip_payloads_unpack_to_the_elf() {
        let elf = tiny_elf(&[0xab; 3000]);
        assert_eq!(unpack(&bzimage(&elf)).unwrap(), elf);
        assert_eq!(unpack(&bzimage(&gzip(&elf))).unwrap(), elf);
    }

    #[test]
    fn xz_payload_with_the_appended_size_unpacks() {
        let elf = tiny_elf(b"kernel text");
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut &elf[..], &mut xz).unwrap();
        xz.extend_from_slice(&(elf.len() as u32).to_le_bytes());
        assert_eq!(unpack(&bzimage(&xz)).unwrap(), elf);
    }

    #[test]
    fn bombs_and_garbage_are_errors_not_panics() {
        let big = tiny_elf(&vec![0u8; 1 << 20]);
        assert_eq!(
            unpack_with_limit(&bzimage(&gzip(&big)), 1 << 16),
            Err(UnpackError::TooLarge)
        );
        assert!(matches!(
            unpack(&bzimage(b"BZh91AY&SY")),
            Err(UnpackError::Unsupported("bzip2"))
        ));
        assert!(matches!(
            unpack(&bzimage(b"\x1f\x8b\x08\0garbage-garbage")),
            Err(UnpackError::Corrupt(_))
        ));
        assert!(matches!(
            unpack(&bzimage(&gzip(b"not an elf at all"))),
            Err(UnpackError::NotElf(_))
        ));
        // Every truncation of a good image is handled.
        let good = bzimage(&gzip(&tiny_elf(&[1; 100])));
        for n in 0..good.len() {
            let _ = unpack(&good[..n]);
        }
        // Payload fields pointing outside the file.
        let mut b = bzimage(b"x");
        b[0x24c..0x250].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(unpack(&b), Err(UnpackError::NotBzImage(_))));
    }

    #[test]
    fn debian_kernel_unpacks_when_present() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../cache/vmlinuz");
        let Ok(bz) = std::fs::read(path) else {
            eprintln!("SKIPPED: no {path} (make setup)");
            return;
        };
        let elf = unpack(&bz).expect("Debian's vmlinuz unpacks");
        assert!(elf.len() > 8 << 20);
        if let Some(out) = std::env::var_os("CHASSIS_DUMP_VMLINUX") {
            std::fs::write(out, &elf).unwrap();
        }
    }
}
