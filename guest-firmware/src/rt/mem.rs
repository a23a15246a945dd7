//! Guest-physical memory access. Paging identity-maps the first 4 GiB (entry.rs), so a
//! physical address below 4 GiB is also a valid pointer.

use chassis_firmware::platform::FOUR_GIB;

/// Whether `[addr, addr + len)` lies below 4 GiB (and does not wrap).
pub fn mapped(addr: u64, len: u64) -> bool {
    addr.checked_add(len).is_some_and(|end| end <= FOUR_GIB) && addr != 0
}

/// Borrows guest-physical memory as bytes.
///
/// # Safety
/// The range must be mapped (see [`mapped`]), backed by memory, and not written
/// through another reference while the slice lives.
pub unsafe fn slice(addr: u64, len: usize) -> &'static [u8] {
    // SAFETY: the caller guarantees the range is identity-mapped RAM.
    unsafe { core::slice::from_raw_parts(addr as usize as *const u8, len) }
}

/// Borrows guest-physical memory mutably.
///
/// # Safety
/// As [`slice`], and no other reference to the range may exist.
pub unsafe fn slice_mut(addr: u64, len: usize) -> &'static mut [u8] {
    // SAFETY: the caller guarantees exclusive access to identity-mapped RAM.
    unsafe { core::slice::from_raw_parts_mut(addr as usize as *mut u8, len) }
}

/// Reads a `T` (plain old data) from guest-physical memory.
///
/// # Safety
/// As [`slice`], for `size_of::<T>()` bytes; any bit pattern must be a valid `T`.
pub unsafe fn read<T: Copy>(addr: u64) -> T {
    // SAFETY: the caller guarantees the range is mapped; unaligned reads are allowed.
    unsafe { core::ptr::read_unaligned(addr as usize as *const T) }
}

/// Copies bytes to guest-physical memory with volatile stores (the target may be
/// memory the compiler knows nothing about, e.g. the BIOS area).
///
/// # Safety
/// The destination range must be mapped RAM that nothing else references.
pub unsafe fn write_bytes(addr: u64, data: &[u8]) {
    for (i, b) in data.iter().enumerate() {
        // SAFETY: the caller guarantees the destination range.
        unsafe { core::ptr::write_volatile((addr as usize + i) as *mut u8, *b) }
    }
}
