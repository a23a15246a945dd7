//! The hand-over to SeaBIOS down its Xen path (research/firmware-boot.md §1.3, §1.8): the
//! `xen_seabios_info` structure SeaBIOS looks for at 0x1000, the tables and e820 arrays it
//! points to, and where the BIOS image goes (its end at 1 MiB).

use crate::e820::Entry;

/// Where SeaBIOS looks for [`Info`] (`INFO_PHYSICAL_ADDRESS`).
pub const INFO_ADDR: u64 = 0x1000;
/// Size of the structure (`sizeof(struct xen_seabios_info)`).
pub const INFO_LEN: usize = 32;
/// The table-pointer array (u32 each), right after the structure.
pub const TABLES_ADDR: u64 = 0x1020;
/// Most table pointers (hvmloader passes at most 4).
pub const MAX_TABLES: usize = 4;
/// The e820 array (20-byte entries), up to [`E820_LIMIT`].
pub const E820_ADDR: u64 = 0x1100;
pub const E820_LIMIT: u64 = 0x2000;
/// Most e820 entries that fit in `[E820_ADDR, E820_LIMIT)`.
pub const MAX_E820: usize = ((E820_LIMIT - E820_ADDR) / 20) as usize;
/// The image ends at 1 MiB; its reset vector is f000:fff0.
pub const BIOS_END: u64 = 0x10_0000;
/// Largest image: 256 KiB (bios-256k.bin), from 0xc0000 up.
pub const BIOS_MAX: u64 = 0x4_0000;
/// The signature, NUL included.
pub const SIGNATURE: &[u8; 14] = b"XenHVMSeaBIOS\0";

/// Where a BIOS image of `len` bytes goes, or `None` if it cannot be a BIOS image (empty,
/// larger than 256 KiB, or not a multiple of 16 bytes so the reset vector would not be at
/// its end).
pub fn load_addr(len: u64) -> Option<u64> {
    (len != 0 && len <= BIOS_MAX && len % 16 == 0).then(|| BIOS_END - len)
}

/// `struct xen_seabios_info` with its checksum (bytes 0..32 sum to 0 mod 256).
pub fn info(tables: u32, tables_nr: u32, e820: u32, e820_nr: u32) -> [u8; INFO_LEN] {
    let mut b = [0u8; INFO_LEN];
    b[..14].copy_from_slice(SIGNATURE);
    b[14] = INFO_LEN as u8;
    b[16..20].copy_from_slice(&tables.to_le_bytes());
    b[20..24].copy_from_slice(&tables_nr.to_le_bytes());
    b[24..28].copy_from_slice(&e820.to_le_bytes());
    b[28..32].copy_from_slice(&e820_nr.to_le_bytes());
    let sum = b.iter().fold(0u8, |s, x| s.wrapping_add(*x));
    b[15] = 0u8.wrapping_sub(sum);
    b
}

/// The e820 array as SeaBIOS reads it; `out` must hold `20 * min(entries, MAX_E820)`
/// bytes. Returns the number of entries written.
pub fn e820_bytes(entries: &[Entry], out: &mut [u8]) -> usize {
    let mut n = 0;
    for (e, chunk) in entries.iter().zip(out.chunks_exact_mut(20)).take(MAX_E820) {
        chunk.copy_from_slice(&e.to_bytes());
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e820::{RAM, RESERVED};

    #[test]
    fn info_layout_and_checksum() {
        let b = info(0x1020, 1, 0x1100, 5);
        assert_eq!(&b[..14], b"XenHVMSeaBIOS\0");
        assert_eq!(b[14], 32);
        assert_eq!(b.iter().fold(0u8, |s, x| s.wrapping_add(*x)), 0);
        assert_eq!(u32::from_le_bytes(b[16..20].try_into().unwrap()), 0x1020);
        assert_eq!(u32::from_le_bytes(b[20..24].try_into().unwrap()), 1);
        assert_eq!(u32::from_le_bytes(b[24..28].try_into().unwrap()), 0x1100);
        assert_eq!(u32::from_le_bytes(b[28..32].try_into().unwrap()), 5);
    }

    #[test]
    fn load_addresses() {
        assert_eq!(load_addr(256 << 10), Some(0xc0000));
        assert_eq!(load_addr(128 << 10), Some(0xe0000));
        assert_eq!(load_addr(0), None);
        assert_eq!(load_addr((256 << 10) + 16), None);
        assert_eq!(load_addr(1000), None);
        assert_eq!(load_addr(u64::MAX), None);
    }

    #[test]
    fn e820_array() {
        let es = [
            Entry::new(0, 0x9_f000, RAM),
            Entry::new(0xc_0000, 0x4_0000, RESERVED),
        ];
        let mut out = [0u8; 40];
        assert_eq!(e820_bytes(&es, &mut out), 2);
        assert_eq!(&out[20..28], &0xc_0000u64.to_le_bytes());
        assert_eq!(&out[36..40], &2u32.to_le_bytes());
        let mut short = [0u8; 30];
        assert_eq!(e820_bytes(&es, &mut short), 1);
        assert!(MAX_E820 * 20 <= (E820_LIMIT - E820_ADDR) as usize);
    }
}
