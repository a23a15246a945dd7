//! Single host accesses of 1, 2, 4 or 8 bytes to memory another party writes at the same
//! time (guest RAM under other vCPUs, the pages shared with a stub domain): atomics of
//! the access's width, so a value is never torn. Callers check range and alignment.

use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering};

/// Load `size` bytes at `p` (sizes other than 1, 2, 4 read 8).
///
/// # Safety
/// `p` must point into a live mapping with `size` bytes readable, aligned to `size`,
/// and that memory must only be accessed through raw pointers or atomics.
#[inline(always)]
pub unsafe fn load(p: *mut u8, size: u8, o: Ordering) -> u64 {
    // SAFETY: the caller's contract.
    unsafe {
        match size {
            1 => AtomicU8::from_ptr(p).load(o) as u64,
            2 => AtomicU16::from_ptr(p.cast()).load(o) as u64,
            4 => AtomicU32::from_ptr(p.cast()).load(o) as u64,
            _ => AtomicU64::from_ptr(p.cast()).load(o),
        }
    }
}

/// Store the low `size` bytes of `v` at `p`.
///
/// # Safety
/// As [`load`], writable.
#[inline(always)]
pub unsafe fn store(p: *mut u8, size: u8, v: u64, o: Ordering) {
    // SAFETY: the caller's contract.
    unsafe {
        match size {
            1 => AtomicU8::from_ptr(p).store(v as u8, o),
            2 => AtomicU16::from_ptr(p.cast()).store(v as u16, o),
            4 => AtomicU32::from_ptr(p.cast()).store(v as u32, o),
            _ => AtomicU64::from_ptr(p.cast()).store(v, o),
        }
    }
}

/// Compare-and-exchange of `size` bytes at `p` (SeqCst): `Ok` = `new` stored,
/// `Err(v)` = memory held `v`, nothing stored.
///
/// # Safety
/// As [`store`].
#[inline(always)]
pub unsafe fn cmpxchg(p: *mut u8, size: u8, old: u64, new: u64) -> Result<(), u64> {
    let sc = Ordering::SeqCst;
    // SAFETY: the caller's contract.
    unsafe {
        match size {
            1 => AtomicU8::from_ptr(p)
                .compare_exchange(old as u8, new as u8, sc, sc)
                .map(|_| ())
                .map_err(|v| v as u64),
            2 => AtomicU16::from_ptr(p.cast())
                .compare_exchange(old as u16, new as u16, sc, sc)
                .map(|_| ())
                .map_err(|v| v as u64),
            4 => AtomicU32::from_ptr(p.cast())
                .compare_exchange(old as u32, new as u32, sc, sc)
                .map(|_| ())
                .map_err(|v| v as u64),
            _ => AtomicU64::from_ptr(p.cast())
                .compare_exchange(old, new, sc, sc)
                .map(|_| ()),
        }
    }
}
