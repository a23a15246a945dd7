//! chassis event-channel page: how the hypervisor tells a stub domain which of its
//! event channels fired.
//!
//! This is chassis's own layout (version 1), modelled on Xen's 2-level ABI
//! (`evtchn_pending[]`, `evtchn_mask[]` in `shared_info`, `evtchn_pending_sel` and
//! `evtchn_upcall_pending` in `vcpu_info`), reduced to what a single-vCPU stub domain
//! needs. One 4 KiB page, little endian:
//!
//! | off | size | field |
//! | --- | --- | --- |
//! | 0x000 | 16 × u64 | `pending`: bit `p % 64` of word `p / 64` = port `p` pending |
//! | 0x080 | 16 × u64 | `mask`: same numbering; a masked port latches pending but raises no upcall |
//! | 0x100 | u64 | `pending_sel`: bit `w` = `pending` word `w` may have unmasked bits |
//! | 0x108 | u8 | `upcall_pending`: 1 = the stub domain has events to look at |
//! | 0x109 | .. | reserved, zero |
//!
//! Port numbers are 1..[`MAX_PORTS`]; port 0 is never allocated (as in Xen), so other
//! layouts may use 0 for "no port".
//!
//! Because the words are little endian, port `p` is also bit `p % 8` of byte
//! `off + p / 8`; the helpers below work byte-wise on a byte page. They describe the
//! protocol; on a live shared page each read-modify-write must be an atomic
//! operation on the containing word (sender: set pending, then set the selector bit,
//! then `upcall_pending`, then notify; receiver: clear `upcall_pending`, swap the
//! selector to 0, then test-and-clear pending bits of the selected words).

/// Bytes in the page.
pub const PAGE_SIZE: usize = 4096;
/// Ports the page can describe (0 is reserved).
pub const MAX_PORTS: u32 = 1024;
/// 64-bit words per bitmap.
pub const BITMAP_WORDS: usize = (MAX_PORTS / 64) as usize;
pub const PENDING_OFFSET: usize = 0x000;
pub const MASK_OFFSET: usize = 0x080;
pub const PENDING_SEL_OFFSET: usize = 0x100;
pub const UPCALL_PENDING_OFFSET: usize = 0x108;
/// First reserved byte.
pub const RESERVED_OFFSET: usize = 0x109;

// The selector has a bit per bitmap word; everything fits in the page.
const _: () = assert!(BITMAP_WORDS <= 64 && RESERVED_OFFSET <= PAGE_SIZE);

/// A port outside 1..MAX_PORTS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadPort(pub u32);

/// Whether `port` can exist.
pub const fn valid_port(port: u32) -> bool {
    port != 0 && port < MAX_PORTS
}

fn locate(base: usize, port: u32) -> Result<(usize, u8), BadPort> {
    if !valid_port(port) {
        return Err(BadPort(port));
    }
    Ok((base + (port / 8) as usize, 1u8 << (port % 8)))
}

fn test_bit(page: &[u8; PAGE_SIZE], base: usize, port: u32) -> Result<bool, BadPort> {
    let (off, bit) = locate(base, port)?;
    Ok(page.get(off).is_some_and(|b| b & bit != 0))
}

/// Set or clear a bit; returns its previous value.
fn change_bit(
    page: &mut [u8; PAGE_SIZE],
    base: usize,
    port: u32,
    set: bool,
) -> Result<bool, BadPort> {
    let (off, bit) = locate(base, port)?;
    let Some(b) = page.get_mut(off) else {
        return Err(BadPort(port));
    };
    let old = *b & bit != 0;
    if set {
        *b |= bit;
    } else {
        *b &= !bit;
    }
    Ok(old)
}

fn raise_upcall(page: &mut [u8; PAGE_SIZE], port: u32) {
    let word = port / 64;
    if let Some(b) = page.get_mut(PENDING_SEL_OFFSET + (word / 8) as usize) {
        *b |= 1 << (word % 8);
    }
    if let Some(b) = page.get_mut(UPCALL_PENDING_OFFSET) {
        *b = 1;
    }
}

pub fn is_pending(page: &[u8; PAGE_SIZE], port: u32) -> Result<bool, BadPort> {
    test_bit(page, PENDING_OFFSET, port)
}

pub fn is_masked(page: &[u8; PAGE_SIZE], port: u32) -> Result<bool, BadPort> {
    test_bit(page, MASK_OFFSET, port)
}

/// Sender: mark `port` pending. Returns true when the receiver must be notified (the
/// port was not already pending and is not masked); the selector and
/// `upcall_pending` are then set too.
pub fn set_pending(page: &mut [u8; PAGE_SIZE], port: u32) -> Result<bool, BadPort> {
    if change_bit(page, PENDING_OFFSET, port, true)? {
        return Ok(false);
    }
    if is_masked(page, port)? {
        return Ok(false);
    }
    raise_upcall(page, port);
    Ok(true)
}

/// Receiver: clear `port`'s pending bit; returns whether it was set.
pub fn test_and_clear(page: &mut [u8; PAGE_SIZE], port: u32) -> Result<bool, BadPort> {
    change_bit(page, PENDING_OFFSET, port, false)
}

/// Mask `port`; returns whether it was already masked.
pub fn mask(page: &mut [u8; PAGE_SIZE], port: u32) -> Result<bool, BadPort> {
    change_bit(page, MASK_OFFSET, port, true)
}

/// Unmask `port`. If an event arrived while it was masked, the upcall is raised
/// again and true is returned (the receiver must look at the page again).
pub fn unmask(page: &mut [u8; PAGE_SIZE], port: u32) -> Result<bool, BadPort> {
    let was_masked = change_bit(page, MASK_OFFSET, port, false)?;
    if was_masked && is_pending(page, port)? {
        raise_upcall(page, port);
        return Ok(true);
    }
    Ok(false)
}

/// Receiver: clear `upcall_pending` and take the selector (returns it, zeroes it).
pub fn take_selector(page: &mut [u8; PAGE_SIZE]) -> u64 {
    let mut sel = [0u8; 8];
    if let Some(s) = page.get_mut(PENDING_SEL_OFFSET..PENDING_SEL_OFFSET + 8) {
        sel.copy_from_slice(s);
        s.fill(0);
    }
    if let Some(b) = page.get_mut(UPCALL_PENDING_OFFSET) {
        *b = 0;
    }
    u64::from_le_bytes(sel)
}

pub fn upcall_pending(page: &[u8; PAGE_SIZE]) -> bool {
    page.get(UPCALL_PENDING_OFFSET).is_some_and(|&b| b != 0)
}

/// The lowest port ≥ `from` that is pending and not masked (a bounded scan of the
/// two bitmaps).
pub fn next_pending(page: &[u8; PAGE_SIZE], from: u32) -> Option<u32> {
    let first_byte = (from.max(1) / 8) as usize;
    for i in first_byte..(MAX_PORTS / 8) as usize {
        let p = page.get(PENDING_OFFSET + i).copied().unwrap_or(0);
        let m = page.get(MASK_OFFSET + i).copied().unwrap_or(0xff);
        let mut live = p & !m;
        while live != 0 {
            let bit = live.trailing_zeros();
            let port = i as u32 * 8 + bit;
            if port >= from && valid_port(port) {
                return Some(port);
            }
            live &= live - 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        assert_eq!(MASK_OFFSET - PENDING_OFFSET, BITMAP_WORDS * 8);
        assert_eq!(PENDING_SEL_OFFSET - MASK_OFFSET, BITMAP_WORDS * 8);
        // Port 70 = bit 6 of little-endian word 1 = bit 6 of byte 8.
        let mut page = [0u8; PAGE_SIZE];
        assert_eq!(set_pending(&mut page, 70), Ok(true));
        let word1 = u64::from_le_bytes(page[8..16].try_into().unwrap());
        assert_eq!(word1, 1 << 6);
        let sel = u64::from_le_bytes(page[0x100..0x108].try_into().unwrap());
        assert_eq!(sel, 1 << 1);
        assert_eq!(page[UPCALL_PENDING_OFFSET], 1);
    }

    #[test]
    fn pending_mask_unmask() {
        let mut page = [0u8; PAGE_SIZE];
        assert_eq!(mask(&mut page, 5), Ok(false));
        assert_eq!(set_pending(&mut page, 5), Ok(false), "masked: no upcall");
        assert!(!upcall_pending(&page));
        assert_eq!(is_pending(&page, 5), Ok(true));
        assert_eq!(next_pending(&page, 0), None, "masked ports are skipped");
        assert_eq!(set_pending(&mut page, 5), Ok(false));
        assert_eq!(unmask(&mut page, 5), Ok(true), "latched event re-raised");
        assert!(upcall_pending(&page));
        assert_eq!(take_selector(&mut page), 1);
        assert!(!upcall_pending(&page));
        assert_eq!(next_pending(&page, 0), Some(5));
        assert_eq!(test_and_clear(&mut page, 5), Ok(true));
        assert_eq!(test_and_clear(&mut page, 5), Ok(false));
        assert_eq!(unmask(&mut page, 5), Ok(false));
        assert_eq!(set_pending(&mut page, 5), Ok(true));
        assert_eq!(set_pending(&mut page, 5), Ok(false), "already pending");
    }

    #[test]
    fn scan_order_and_bounds() {
        let mut page = [0u8; PAGE_SIZE];
        for p in [1023, 64, 3, 200] {
            set_pending(&mut page, p).unwrap();
        }
        let mut seen = [0u32; 4];
        let mut from = 0;
        for s in seen.iter_mut() {
            let p = next_pending(&page, from).unwrap();
            *s = p;
            from = p + 1;
        }
        assert_eq!(seen, [3, 64, 200, 1023]);
        assert_eq!(next_pending(&page, 1024), None);
        assert_eq!(next_pending(&page, u32::MAX), None);
        for bad in [0, 1024, u32::MAX] {
            assert_eq!(set_pending(&mut page, bad), Err(BadPort(bad)));
            assert_eq!(mask(&mut page, bad), Err(BadPort(bad)));
            assert_eq!(unmask(&mut page, bad), Err(BadPort(bad)));
            assert_eq!(test_and_clear(&mut page, bad), Err(BadPort(bad)));
            assert_eq!(is_pending(&page, bad), Err(BadPort(bad)));
        }
        // Port 0's bit, if a hostile writer sets it, is never reported.
        page[0] |= 1;
        assert_eq!(next_pending(&page, 0), Some(3));
    }

    #[test]
    fn garbage_page_is_harmless() {
        let mut page = [0u8; PAGE_SIZE];
        let mut s = 0x1234_5678u64;
        for b in page.iter_mut() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            *b = s as u8;
        }
        let mut from = 0;
        let mut n = 0;
        while let Some(p) = next_pending(&page, from) {
            assert!(valid_port(p) && p >= from);
            from = p + 1;
            n += 1;
            assert!(n <= MAX_PORTS);
        }
        let _ = take_selector(&mut page);
    }
}
