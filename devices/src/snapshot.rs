//! Device state records: versioned, length-framed, little-endian.
//!
//! A record is a 24-byte header — name (16 bytes, NUL padded), instance (u16), version
//! (u16), body length (u32) — then the body, zero-padded to a multiple of 8 bytes (the
//! Xen migration-stream v2 framing). A reader checks the name, refuses versions newer
//! than it knows, and requires the body to be consumed *exactly*: a record whose header
//! says version N but whose body has version N-1's length (the XenServer `piix4acpi`
//! story) is caught as a length mismatch instead of corrupting what follows.
//!
//! Loads are all-or-nothing: [`load_record`] decodes into a copy of the device and only
//! replaces the live device when the whole record decoded and validated.

use alloc::vec::Vec;
use core::fmt;

/// Size of the record header.
pub const HEADER_LEN: usize = 24;
/// Bytes reserved for the record name.
pub const NAME_LEN: usize = 16;
/// Hard cap on one record body: no device here keeps more state than this, and a
/// hostile stream must not make the reader allocate or walk gigabytes.
pub const MAX_BODY_LEN: u32 = 1 << 20;

/// Why a record could not be loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// Fewer bytes than the header or the framed body length.
    Truncated { needed: usize, available: usize },
    /// The record is for another device.
    WrongName {
        expected: &'static str,
        found: [u8; NAME_LEN],
    },
    /// Written by a newer build than this one understands.
    UnsupportedVersion {
        name: &'static str,
        version: u16,
        newest: u16,
    },
    /// The body had bytes the decoder for this version did not consume.
    TrailingBytes {
        name: &'static str,
        version: u16,
        extra: usize,
    },
    /// The body length in the header exceeds [`MAX_BODY_LEN`].
    Oversized { len: u32 },
    /// Nonzero bytes in the alignment padding.
    BadPadding,
    /// A field holds a value the device can never be in.
    Invalid {
        name: &'static str,
        field: &'static str,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Truncated { needed, available } => {
                write!(
                    f,
                    "record truncated: needed {needed} bytes, {available} available"
                )
            }
            LoadError::WrongName { expected, found } => {
                let end = found.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
                let found = core::str::from_utf8(&found[..end]).unwrap_or("<non-utf8>");
                write!(f, "record is for device '{found}', expected '{expected}'")
            }
            LoadError::UnsupportedVersion {
                name,
                version,
                newest,
            } => write!(
                f,
                "record '{name}' has version {version}, this build reads up to {newest}"
            ),
            LoadError::TrailingBytes {
                name,
                version,
                extra,
            } => write!(
                f,
                "record '{name}' v{version} is {extra} bytes longer than that version's layout (mislabeled record?)"
            ),
            LoadError::Oversized { len } => {
                write!(
                    f,
                    "record body of {len} bytes exceeds the {MAX_BODY_LEN}-byte cap"
                )
            }
            LoadError::BadPadding => write!(f, "record padding is not zero"),
            LoadError::Invalid { name, field } => {
                write!(
                    f,
                    "record '{name}': field '{field}' holds an impossible value"
                )
            }
        }
    }
}

/// A device whose state can be saved and restored.
pub trait Snapshot: Clone {
    /// Record name, at most [`NAME_LEN`] bytes, frozen once released.
    const NAME: &'static str;
    /// The record version this build writes (and the newest it reads).
    const VERSION: u16;
    /// Append the body of the current-version record.
    fn save(&self, w: &mut RecordWriter);
    /// Decode a body of `version` (≤ `VERSION`) into `self`. Must validate every field
    /// against the invariants the device relies on at run time. Need not check that the
    /// body was fully consumed: [`load_record`] does.
    fn load(&mut self, version: u16, r: &mut RecordReader<'_>) -> Result<(), LoadError>;
}

/// Little-endian body writer.
#[derive(Default)]
pub struct RecordWriter {
    buf: Vec<u8>,
}

impl RecordWriter {
    pub fn new() -> Self {
        Self { buf: Vec::new() }
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn bool(&mut self, v: bool) {
        self.buf.push(v as u8);
    }
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }
}

/// Little-endian body reader over exactly one record body; every read is bounds-checked.
pub struct RecordReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> RecordReader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], LoadError> {
        let available = self.data.len() - self.pos;
        if n > available {
            return Err(LoadError::Truncated {
                needed: n,
                available,
            });
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub fn u8(&mut self) -> Result<u8, LoadError> {
        Ok(self.take(1)?[0])
    }
    /// A byte that must be 0 or 1.
    pub fn bool(&mut self, name: &'static str, field: &'static str) -> Result<bool, LoadError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(LoadError::Invalid { name, field }),
        }
    }
    pub fn u16(&mut self) -> Result<u16, LoadError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    pub fn u32(&mut self) -> Result<u32, LoadError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn u64(&mut self) -> Result<u64, LoadError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    /// Fill `out` from the body.
    pub fn bytes(&mut self, out: &mut [u8]) -> Result<(), LoadError> {
        out.copy_from_slice(self.take(out.len())?);
        Ok(())
    }
    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }
}

fn name_bytes(name: &str) -> [u8; NAME_LEN] {
    let mut out = [0u8; NAME_LEN];
    let n = name.len().min(NAME_LEN);
    out[..n].copy_from_slice(&name.as_bytes()[..n]);
    out
}

/// Encode `dev` as one framed record (header + body + zero padding).
pub fn save_record<D: Snapshot>(dev: &D, instance: u16) -> Vec<u8> {
    let mut w = RecordWriter::new();
    dev.save(&mut w);
    let body = w.into_inner();
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + 8);
    out.extend_from_slice(&name_bytes(D::NAME));
    out.extend_from_slice(&instance.to_le_bytes());
    out.extend_from_slice(&D::VERSION.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    while out.len() % 8 != 0 {
        out.push(0);
    }
    out
}

/// A parsed record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub name: [u8; NAME_LEN],
    pub instance: u16,
    pub version: u16,
    pub body_len: u32,
}

impl RecordHeader {
    /// Bytes the whole framed record occupies (header + padded body).
    pub fn framed_len(&self) -> usize {
        HEADER_LEN + (self.body_len as usize).div_ceil(8) * 8
    }
}

/// Parse a record header and return it with the body slice and the bytes after the
/// record. Checks the body cap, the framed length and the padding.
pub fn split_record(data: &[u8]) -> Result<(RecordHeader, &[u8], &[u8]), LoadError> {
    if data.len() < HEADER_LEN {
        return Err(LoadError::Truncated {
            needed: HEADER_LEN,
            available: data.len(),
        });
    }
    let mut name = [0u8; NAME_LEN];
    name.copy_from_slice(&data[..NAME_LEN]);
    let instance = u16::from_le_bytes([data[16], data[17]]);
    let version = u16::from_le_bytes([data[18], data[19]]);
    let body_len = u32::from_le_bytes([data[20], data[21], data[22], data[23]]);
    if body_len > MAX_BODY_LEN {
        return Err(LoadError::Oversized { len: body_len });
    }
    let header = RecordHeader {
        name,
        instance,
        version,
        body_len,
    };
    let framed = header.framed_len();
    if data.len() < framed {
        return Err(LoadError::Truncated {
            needed: framed,
            available: data.len(),
        });
    }
    let body_end = HEADER_LEN + body_len as usize;
    if data[body_end..framed].iter().any(|&b| b != 0) {
        return Err(LoadError::BadPadding);
    }
    Ok((header, &data[HEADER_LEN..body_end], &data[framed..]))
}

/// Load one framed record into `dev`, all or nothing. Returns the bytes after the
/// record. `data` may hold further records; bytes beyond this record are not an error.
pub fn load_record<'a, D: Snapshot>(dev: &mut D, data: &'a [u8]) -> Result<&'a [u8], LoadError> {
    let (header, body, rest) = split_record(data)?;
    if header.name != name_bytes(D::NAME) {
        return Err(LoadError::WrongName {
            expected: D::NAME,
            found: header.name,
        });
    }
    if header.version > D::VERSION || header.version == 0 {
        return Err(LoadError::UnsupportedVersion {
            name: D::NAME,
            version: header.version,
            newest: D::VERSION,
        });
    }
    let mut copy = dev.clone();
    let mut r = RecordReader::new(body);
    copy.load(header.version, &mut r)?;
    if r.remaining() != 0 {
        return Err(LoadError::TrailingBytes {
            name: D::NAME,
            version: header.version,
            extra: r.remaining(),
        });
    }
    *dev = copy;
    Ok(rest)
}

/// Generates the tests every device record must pass: a round trip reproduces the
/// saved bytes, and every truncation, an extra byte, a newer version and a foreign name
/// are refused with an error (never a panic) leaving the device unchanged.
///
/// `$make` is an expression producing a device in a *non-default*, interesting state.
#[macro_export]
macro_rules! snapshot_tests {
    ($modname:ident, $ty:ty, $make:expr, $fresh:expr) => {
        #[cfg(test)]
        mod $modname {
            use super::*;
            use alloc::vec::Vec;
            use $crate::snapshot::{HEADER_LEN, LoadError, Snapshot, load_record, save_record};

            #[test]
            fn round_trip_reproduces_state() {
                let dev: $ty = $make;
                let bytes = save_record(&dev, 0);
                let mut fresh: $ty = $fresh;
                let rest = load_record(&mut fresh, &bytes).expect("own record loads");
                assert!(rest.is_empty());
                assert_eq!(
                    save_record(&fresh, 0),
                    bytes,
                    "state changed across save/load"
                );
            }

            #[test]
            fn truncated_records_are_refused() {
                let dev: $ty = $make;
                let bytes = save_record(&dev, 0);
                let body_len =
                    u32::from_le_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]) as usize;
                for cut in 0..HEADER_LEN + body_len {
                    // Shorten both the buffer and, past the header, the declared length, so
                    // the frame is self-consistent and only the body is short.
                    let mut b: Vec<u8> = bytes[..cut].to_vec();
                    if cut >= HEADER_LEN {
                        let short = (cut - HEADER_LEN) as u32;
                        b[20..24].copy_from_slice(&short.to_le_bytes());
                        while b.len() % 8 != 0 {
                            b.push(0);
                        }
                    }
                    let mut fresh: $ty = $fresh;
                    let before = save_record(&fresh, 0);
                    assert!(
                        load_record(&mut fresh, &b).is_err(),
                        "cut at {cut} accepted"
                    );
                    assert_eq!(
                        save_record(&fresh, 0),
                        before,
                        "failed load changed the device"
                    );
                }
            }

            #[test]
            fn oversized_record_is_refused() {
                let dev: $ty = $make;
                let bytes = save_record(&dev, 0);
                let body_len = u32::from_le_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
                let mut b = bytes[..HEADER_LEN + body_len as usize].to_vec();
                b.push(0);
                b[20..24].copy_from_slice(&(body_len + 1).to_le_bytes());
                while b.len() % 8 != 0 {
                    b.push(0);
                }
                let mut fresh: $ty = $fresh;
                assert!(matches!(
                    load_record(&mut fresh, &b),
                    Err(LoadError::TrailingBytes { .. })
                ));
                let mut huge = bytes.clone();
                huge[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
                assert!(matches!(
                    load_record(&mut fresh, &huge),
                    Err(LoadError::Oversized { .. })
                ));
            }

            #[test]
            fn newer_version_and_foreign_name_are_refused() {
                let dev: $ty = $make;
                let mut bytes = save_record(&dev, 0);
                let newer = <$ty as Snapshot>::VERSION + 1;
                bytes[18..20].copy_from_slice(&newer.to_le_bytes());
                let mut fresh: $ty = $fresh;
                assert!(matches!(
                    load_record(&mut fresh, &bytes),
                    Err(LoadError::UnsupportedVersion { .. })
                ));
                let mut bytes = save_record(&dev, 0);
                bytes[0] ^= 0x20;
                assert!(matches!(
                    load_record(&mut fresh, &bytes),
                    Err(LoadError::WrongName { .. })
                ));
            }

            #[test]
            fn random_bodies_never_panic() {
                let dev: $ty = $make;
                let bytes = save_record(&dev, 0);
                let mut seed = 0x9e37_79b9_7f4a_7c15u64;
                for _ in 0..2000 {
                    let mut b = bytes.clone();
                    for _ in 0..4 {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        let i = HEADER_LEN + (seed as usize % (b.len() - HEADER_LEN).max(1));
                        if i < b.len() {
                            b[i] = (seed >> 32) as u8;
                        }
                    }
                    let mut fresh: $ty = $fresh;
                    let _ = load_record(&mut fresh, &b);
                }
            }
        }
    };
}
