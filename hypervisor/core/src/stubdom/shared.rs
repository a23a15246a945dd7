//! The pages the hypervisor shares with a stub domain (ioreq, buffered ring, event
//! channels, machine config), and the futex the two sides park on.
//!
//! The stub domain may write any byte of them at any time, so the host side only ever
//! touches them with atomic loads and stores (never references to plain memory), and
//! copies a slot out once before looking at it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use hypervisor_abi::stubdom::map;

/// Bytes of one shared page.
pub const PAGE: usize = 4096;
/// The shared pages, in stub-physical order from [`map::SHARED_BASE`].
pub const IOREQ: usize = 0;
pub const BUFIOREQ: usize = PAGE;
pub const EVTCHN: usize = 2 * PAGE;
pub const CONFIG: usize = 3 * PAGE;
/// Bytes of the whole shared area.
pub const SIZE: usize = (map::SHARED_END - map::SHARED_BASE) as usize;

/// Whether a `size`-byte atomic at `off` is naturally aligned and inside the area.
#[inline]
fn aligned_in_range(off: usize, size: u8) -> bool {
    matches!(size, 1 | 2 | 4 | 8)
        && off.is_multiple_of(size as usize)
        && off.checked_add(size as usize).is_some_and(|e| e <= SIZE)
}

/// The shared area: 4 pages of atomics, page-aligned so a KVM memory slot can map them
/// into the stub domain as they are (the `kvm` backend).
pub struct SharedPages {
    words: Box<Area>,
}

#[repr(C, align(4096))]
struct Area([AtomicU64; SIZE / 8]);

impl Default for SharedPages {
    fn default() -> Self {
        Self::new()
    }
}

impl SharedPages {
    pub fn new() -> SharedPages {
        SharedPages {
            words: Box::new(Area(std::array::from_fn(|_| AtomicU64::new(0)))),
        }
    }

    fn base(&self) -> *mut u8 {
        self.words.0.as_ptr() as *mut u8
    }

    /// The host address of the area (page-aligned, [`SIZE`] bytes), for a KVM memory
    /// slot. The stub domain then writes it behind our back, which is why every host
    /// access here is atomic.
    pub fn host_base(&self) -> *mut u8 {
        self.base()
    }

    /// Whether `[off, off + len)` lies inside the area.
    #[inline]
    pub fn contains(off: u64, len: u64) -> bool {
        off.checked_add(len).is_some_and(|e| e <= SIZE as u64)
    }

    /// Atomic load of `size` (1, 2, 4, 8) bytes at a naturally aligned `off`; `None`
    /// when out of range or misaligned.
    #[inline]
    pub fn load(&self, off: usize, size: u8, o: Ordering) -> Option<u64> {
        if !aligned_in_range(off, size) {
            return None;
        }
        // SAFETY: in range (checked) and naturally aligned: the area is 8-byte aligned
        // (an array of AtomicU64). The memory is only ever accessed through atomics.
        Some(unsafe { crate::atomic_mem::load(self.base().add(off), size, o) })
    }

    /// Atomic store; false when out of range or misaligned.
    #[inline]
    pub fn store(&self, off: usize, size: u8, v: u64, o: Ordering) -> bool {
        if !aligned_in_range(off, size) {
            return false;
        }
        // SAFETY: as in `load`.
        unsafe { crate::atomic_mem::store(self.base().add(off), size, v, o) };
        true
    }

    /// Atomic compare-and-exchange (`Some(Ok)` stored, `Some(Err(v))` found `v`,
    /// `None` out of range or misaligned).
    pub fn cmpxchg(&self, off: usize, size: u8, old: u64, new: u64) -> Option<Result<(), u64>> {
        if !aligned_in_range(off, size) {
            return None;
        }
        // SAFETY: as in `load`.
        Some(unsafe { crate::atomic_mem::cmpxchg(self.base().add(off), size, old, new) })
    }

    /// Atomic fetch-or of a u64 word (8-aligned `off`); returns the old value.
    pub fn fetch_or64(&self, off: usize, bits: u64) -> u64 {
        match self.words.0.get(off / 8) {
            Some(w) if off.is_multiple_of(8) => w.fetch_or(bits, Ordering::SeqCst),
            _ => 0,
        }
    }

    /// Copy bytes out (byte-wise relaxed atomics); false when out of range.
    pub fn read(&self, off: usize, buf: &mut [u8]) -> bool {
        if !Self::contains(off as u64, buf.len() as u64) {
            return false;
        }
        for (i, b) in buf.iter_mut().enumerate() {
            // Always in range: checked above.
            *b = self.load(off + i, 1, Ordering::Relaxed).unwrap_or(0) as u8;
        }
        true
    }

    /// Copy bytes in (byte-wise relaxed atomics); false when out of range.
    pub fn write(&self, off: usize, buf: &[u8]) -> bool {
        if !Self::contains(off as u64, buf.len() as u64) {
            return false;
        }
        for (i, &b) in buf.iter().enumerate() {
            self.store(off + i, 1, b as u64, Ordering::Relaxed);
        }
        true
    }

    /// A stub-side access of `buf.len()` bytes: aligned 1/2/4/8 as one atomic, else
    /// byte-wise.
    pub fn access_read(&self, off: usize, buf: &mut [u8]) -> bool {
        let n = buf.len();
        if let Some(v) = self.load(off, n as u8, Ordering::SeqCst).filter(|_| n <= 8) {
            buf.copy_from_slice(&v.to_le_bytes()[..n]);
            return true;
        }
        self.read(off, buf)
    }

    pub fn access_write(&self, off: usize, buf: &[u8]) -> bool {
        let n = buf.len();
        if n <= 8 && matches!(n, 1 | 2 | 4 | 8) {
            let mut b = [0u8; 8];
            b[..n].copy_from_slice(buf);
            if self.store(off, n as u8, u64::from_le_bytes(b), Ordering::SeqCst) {
                return true;
            }
        }
        self.write(off, buf)
    }
}

/// Park the calling thread while `word` still holds `expected`, at most `timeout`
/// (spurious wake-ups are possible: callers re-check their condition).
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: FUTEX_WAIT on a live, aligned u32 with a valid timespec; the kernel only
    // reads them.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            &ts as *const libc::timespec,
        );
    }
}

/// Wake every thread parked on `word`.
pub fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE on a live u32; no memory is written.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_alignment() {
        let s = SharedPages::new();
        assert!(s.store(8, 8, 0x1122_3344_5566_7788, Ordering::SeqCst));
        assert_eq!(s.load(8, 4, Ordering::SeqCst), Some(0x5566_7788));
        assert_eq!(s.load(12, 2, Ordering::SeqCst), Some(0x3344));
        assert_eq!(s.load(9, 4, Ordering::SeqCst), None);
        assert_eq!(s.load(SIZE - 4, 8, Ordering::SeqCst), None);
        assert_eq!(s.load(SIZE, 1, Ordering::SeqCst), None);
        assert!(!s.store(usize::MAX - 3, 4, 0, Ordering::SeqCst));
        let mut b = [0u8; 3];
        assert!(s.access_read(9, &mut b));
        assert_eq!(b, [0x77, 0x66, 0x55]);
        assert!(!s.read(SIZE - 1, &mut b));
        assert!(s.access_write(SIZE - 3, &[1, 2, 3]));
        assert!(!s.write(SIZE - 2, &[1, 2, 3]));
        assert_eq!(s.cmpxchg(8, 8, 0, 5), Some(Err(0x1122_3344_5566_7788)));
        assert_eq!(s.cmpxchg(8, 1, 0x88, 5), Some(Ok(())));
        assert_eq!(s.load(8, 1, Ordering::SeqCst), Some(5));
        assert_eq!(s.cmpxchg(9, 2, 0, 0), None);
    }

    #[test]
    fn futex_times_out_and_wakes() {
        let w = AtomicU32::new(0);
        let t = std::time::Instant::now();
        futex_wait(&w, 0, Duration::from_millis(5));
        assert!(t.elapsed() >= Duration::from_millis(4));
        // A changed value returns at once.
        futex_wait(&w, 1, Duration::from_secs(5));
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(10));
                w.store(1, Ordering::SeqCst);
                futex_wake(&w);
            });
            let t = std::time::Instant::now();
            while w.load(Ordering::SeqCst) == 0 {
                futex_wait(&w, 0, Duration::from_secs(5));
            }
            assert!(t.elapsed() < Duration::from_secs(4));
        });
    }
}
