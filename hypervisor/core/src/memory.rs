//! Guest-physical memory: the layout of RAM around the legacy VGA hole and the PCI hole,
//! and the host mappings that back it.
//!
//! Layout (the same for every backend):
//!
//! | guest-physical range          | what                                   |
//! | ----------------------------- | -------------------------------------- |
//! | `[0, 0xa0000)`                | RAM (conventional memory)              |
//! | `[0xa0000, 0xc0000)`          | hole: legacy VGA window (MMIO exits)   |
//! | `[0xc0000, low_end)`          | RAM                                    |
//! | `[low_end, 4 GiB)`            | PCI hole, platform MMIO                |
//! | `[4 GiB, 4 GiB + high)`       | RAM that did not fit below the hole    |
//!
//! `low_end = min(memory, PCI_HOLE_START)`. The bytes of the VGA hole are lost (as in
//! QEMU and Xen): the guest's total RAM is `memory - 128 KiB`.
//!
//! [`GuestMemory`] owns one anonymous mapping for `[0, low_end)` (the hole's bytes are
//! mapped but never given to the guest) and one for the high part. Every access through
//! it is bounds-checked against the RAM ranges: an access that touches the VGA hole, the
//! PCI hole or anything past the end is refused as a whole.

use hypervisor_abi::pvh::PCI_HOLE_START;

/// Start of the legacy VGA window (end of conventional RAM).
pub const VGA_HOLE_START: u64 = 0xa_0000;
/// End of the legacy VGA window; RAM resumes here (option ROM/BIOS area and up).
pub const VGA_HOLE_END: u64 = 0xc_0000;
/// RAM above the PCI hole starts here.
pub const HIGH_RAM_START: u64 = 1 << 32;
/// Smallest guest this layout accepts: the firmware owns [1 MiB, 8 MiB) and needs room
/// above it for its tables and the modules.
pub const MIN_MEMORY: u64 = 16 << 20;
/// Largest guest: far beyond anything this project boots, small enough that every
/// address computation stays well inside u64 and within 46-bit guest-physical space.
pub const MAX_MEMORY: u64 = 1 << 40;

/// One contiguous range of guest RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RamRange {
    pub gpa: u64,
    pub size: u64,
}

impl RamRange {
    pub fn end(&self) -> u64 {
        self.gpa + self.size
    }
}

/// Where RAM is for a given memory size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Total memory the config asked for, in bytes.
    pub memory: u64,
    /// End of RAM below 4 GiB (exclusive).
    pub low_end: u64,
    /// Bytes of RAM placed from 4 GiB up.
    pub high_size: u64,
}

/// Why a layout cannot be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayoutError {
    TooSmall { memory: u64 },
    TooLarge { memory: u64 },
}

impl std::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayoutError::TooSmall { memory } => write!(
                f,
                "memory = {} MiB is too small (at least {} MiB)",
                memory >> 20,
                MIN_MEMORY >> 20
            ),
            LayoutError::TooLarge { memory } => write!(
                f,
                "memory = {} MiB is too large (at most {} MiB)",
                memory >> 20,
                MAX_MEMORY >> 20
            ),
        }
    }
}

impl Layout {
    /// The layout for `memory` bytes of guest RAM.
    pub fn new(memory: u64) -> Result<Layout, LayoutError> {
        if memory < MIN_MEMORY {
            return Err(LayoutError::TooSmall { memory });
        }
        if memory > MAX_MEMORY {
            return Err(LayoutError::TooLarge { memory });
        }
        let low_end = memory.min(PCI_HOLE_START);
        Ok(Layout {
            memory,
            low_end,
            high_size: memory - low_end,
        })
    }

    /// The layout for a size in MiB (as in the guest config).
    pub fn from_mib(mib: u64) -> Result<Layout, LayoutError> {
        let memory = mib
            .checked_mul(1 << 20)
            .ok_or(LayoutError::TooLarge { memory: u64::MAX })?;
        Layout::new(memory)
    }

    /// RAM ranges in ascending address order (2 or 3 of them).
    pub fn ram_ranges(&self) -> impl Iterator<Item = RamRange> + use<> {
        let low = [
            RamRange {
                gpa: 0,
                size: VGA_HOLE_START,
            },
            RamRange {
                gpa: VGA_HOLE_END,
                size: self.low_end - VGA_HOLE_END,
            },
        ];
        let high = (self.high_size > 0).then_some(RamRange {
            gpa: HIGH_RAM_START,
            size: self.high_size,
        });
        low.into_iter().chain(high)
    }

    /// Whether `[gpa, gpa + len)` lies entirely inside one RAM range.
    pub fn is_ram(&self, gpa: u64, len: u64) -> bool {
        self.ram_ranges()
            .any(|r| gpa >= r.gpa && gpa.checked_add(len).is_some_and(|end| end <= r.end()))
    }

    /// RAM below 4 GiB as the machine (CMOS sizes) counts it: everything up to `low_end`.
    pub fn ram_below_4g(&self) -> u64 {
        self.low_end
    }

    pub fn ram_above_4g(&self) -> u64 {
        self.high_size
    }
}

/// An anonymous, private, zero-filled host mapping.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(len: u64) -> std::io::Result<Mapping> {
        let len =
            usize::try_from(len).map_err(|_| std::io::Error::from_raw_os_error(libc::ENOMEM))?;
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing; no
        // existing memory is affected. The result is checked for MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len came from a successful mmap and are unmapped exactly once.
        // Nothing borrows the mapping past the owning GuestMemory's lifetime.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

/// A RAM range with its host address.
#[derive(Clone, Copy, Debug)]
pub struct HostRegion {
    pub gpa: u64,
    pub size: u64,
    pub host: *mut u8,
}

/// A guest-physical access that is not entirely inside guest RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfRange {
    pub gpa: u64,
    pub len: u64,
}

/// Guest RAM backed by host mappings.
pub struct GuestMemory {
    layout: Layout,
    regions: [Option<HostRegion>; 3],
    _low: Mapping,
    _high: Option<Mapping>,
}

// SAFETY: the mappings are owned for the lifetime of the value and only accessed through
// bounds-checked raw copies. Concurrent access by vCPUs and device threads is the nature
// of guest memory (as in every VMM); the host never forms references into it.
unsafe impl Send for GuestMemory {}
// SAFETY: see above; all accessors take &self and copy bytes with raw pointers.
unsafe impl Sync for GuestMemory {}

impl GuestMemory {
    /// Map zero-filled RAM for `layout`.
    pub fn new(layout: Layout) -> std::io::Result<GuestMemory> {
        let low = Mapping::new(layout.low_end)?;
        let high = if layout.high_size > 0 {
            Some(Mapping::new(layout.high_size)?)
        } else {
            None
        };
        let mut regions = [None; 3];
        for (i, r) in layout.ram_ranges().enumerate() {
            let host = if r.gpa >= HIGH_RAM_START {
                high.as_ref().map_or(std::ptr::null_mut(), |m| m.ptr)
            } else {
                // SAFETY: r.gpa < low_end = the low mapping's length.
                unsafe { low.ptr.add(r.gpa as usize) }
            };
            regions[i] = Some(HostRegion {
                gpa: r.gpa,
                size: r.size,
                host,
            });
        }
        Ok(GuestMemory {
            layout,
            regions,
            _low: low,
            _high: high,
        })
    }

    /// Flat RAM `[0, size)` with no holes (a stub domain's own memory). `size` must be
    /// a non-zero multiple of 4 KiB. Its [`GuestMemory::layout`] is nominal (`memory` =
    /// `low_end` = `size`); the accessors use the one flat region.
    pub fn flat(size: u64) -> std::io::Result<GuestMemory> {
        if size == 0 || !size.is_multiple_of(4096) {
            return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
        }
        let low = Mapping::new(size)?;
        let regions = [
            Some(HostRegion {
                gpa: 0,
                size,
                host: low.ptr,
            }),
            None,
            None,
        ];
        Ok(GuestMemory {
            layout: Layout {
                memory: size,
                low_end: size,
                high_size: 0,
            },
            regions,
            _low: low,
            _high: None,
        })
    }

    /// Number of 4 KiB pages of RAM holding a non-zero byte (what a guest actually
    /// touched; the mappings are zero-filled on demand).
    pub fn nonzero_pages(&self) -> u64 {
        let mut n = 0;
        for r in self.regions() {
            let mut off = 0u64;
            while off < r.size {
                let len = 4096.min(r.size - off) as usize;
                // SAFETY: [host + off, + len) lies inside the region's live mapping; the
                // bytes are only read (a racing writer may make the answer stale, never
                // unsound for u8 reads through a raw slice copy).
                let mut page = [0u8; 4096];
                unsafe {
                    std::ptr::copy_nonoverlapping(r.host.add(off as usize), page.as_mut_ptr(), len)
                };
                if page[..len].iter().any(|&b| b != 0) {
                    n += 1;
                }
                off += 4096;
            }
        }
        n
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The RAM regions with their host addresses (for KVM memory slots).
    pub fn regions(&self) -> impl Iterator<Item = &HostRegion> {
        self.regions.iter().flatten()
    }

    /// Host pointer for `[gpa, gpa + len)` if it lies entirely inside one RAM region.
    #[inline]
    fn host_range(&self, gpa: u64, len: usize) -> Result<*mut u8, OutOfRange> {
        let oor = OutOfRange {
            gpa,
            len: len as u64,
        };
        let end = gpa.checked_add(len as u64).ok_or(oor)?;
        for r in self.regions() {
            if gpa >= r.gpa && end <= r.gpa + r.size {
                // SAFETY: gpa - r.gpa < r.size, inside the region's mapping.
                return Ok(unsafe { r.host.add((gpa - r.gpa) as usize) });
            }
        }
        Err(oor)
    }

    /// Copy guest RAM at `gpa` into `buf`.
    #[inline]
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        let src = self.host_range(gpa, buf.len())?;
        // SAFETY: src..src+len is inside a live mapping (checked above); buf is a distinct
        // host buffer, so the ranges cannot overlap.
        unsafe { std::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copy `buf` into guest RAM at `gpa`.
    #[inline]
    pub fn write(&self, gpa: u64, buf: &[u8]) -> Result<(), OutOfRange> {
        let dst = self.host_range(gpa, buf.len())?;
        // SAFETY: as in `read`, with the direction reversed.
        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), dst, buf.len()) };
        Ok(())
    }

    /// Host pointer for a naturally aligned `size`-byte (1, 2, 4, 8) access of RAM.
    #[inline]
    fn aligned(&self, gpa: u64, size: u8) -> Option<*mut u8> {
        if !matches!(size, 1 | 2 | 4 | 8) || gpa & (size as u64 - 1) != 0 {
            return None;
        }
        let p = self.host_range(gpa, size as usize).ok()?;
        // The mappings are page-aligned and regions start on page boundaries, so this
        // holds whenever `gpa` is aligned; checked anyway (atomics need it).
        (p as usize).is_multiple_of(size as usize).then_some(p)
    }

    /// Load `size` bytes (1, 2, 4, 8) of RAM at a naturally aligned `gpa` as one host
    /// access (never torn by a concurrent store of another vCPU). `None`: not RAM or
    /// not aligned.
    #[inline]
    pub fn load(&self, gpa: u64, size: u8) -> Option<u64> {
        let p = self.aligned(gpa, size)?;
        // SAFETY: `p` is inside a live mapping and aligned for `size` (checked by
        // `aligned`); guest memory is shared mutable memory by nature, accessed only
        // through raw pointers, never through references.
        Some(unsafe { crate::atomic_mem::load(p, size, std::sync::atomic::Ordering::Relaxed) })
    }

    /// Store the low `size` bytes of `v` at a naturally aligned `gpa` as one host
    /// access. `false` (nothing stored): not RAM or not aligned.
    #[inline]
    pub fn store(&self, gpa: u64, size: u8, v: u64) -> bool {
        let Some(p) = self.aligned(gpa, size) else {
            return false;
        };
        // SAFETY: as in `load`.
        unsafe { crate::atomic_mem::store(p, size, v, std::sync::atomic::Ordering::Relaxed) };
        true
    }

    /// Atomic compare-and-exchange of `size` bytes at a naturally aligned `gpa` (the
    /// emu backend's LOCKed instructions): `Some(Ok)` = `new` stored, `Some(Err(v))` =
    /// RAM held `v`, nothing stored; `None` = not RAM or not aligned.
    pub fn cmpxchg(&self, gpa: u64, size: u8, old: u64, new: u64) -> Option<Result<(), u64>> {
        let p = self.aligned(gpa, size)?;
        // SAFETY: as in `load`.
        Some(unsafe { crate::atomic_mem::cmpxchg(p, size, old, new) })
    }

    /// Zero `len` bytes of guest RAM at `gpa`.
    pub fn zero(&self, gpa: u64, len: u64) -> Result<(), OutOfRange> {
        let n = usize::try_from(len).map_err(|_| OutOfRange { gpa, len })?;
        let dst = self.host_range(gpa, n)?;
        // SAFETY: dst..dst+n is inside a live mapping (checked above).
        unsafe { std::ptr::write_bytes(dst, 0, n) };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_guest_has_two_low_ranges() {
        let l = Layout::from_mib(256).unwrap();
        assert_eq!(l.low_end, 256 << 20);
        assert_eq!(l.high_size, 0);
        let r: Vec<_> = l.ram_ranges().collect();
        assert_eq!(
            r,
            [
                RamRange {
                    gpa: 0,
                    size: 0xa0000
                },
                RamRange {
                    gpa: 0xc0000,
                    size: (256 << 20) - 0xc0000
                }
            ]
        );
    }

    #[test]
    fn large_guest_splits_at_the_pci_hole() {
        let l = Layout::from_mib(4096).unwrap();
        assert_eq!(l.low_end, PCI_HOLE_START);
        assert_eq!(l.high_size, (4096 << 20) - PCI_HOLE_START);
        let r: Vec<_> = l.ram_ranges().collect();
        assert_eq!(r.len(), 3);
        assert_eq!(r[2].gpa, 1 << 32);
        assert_eq!(r[2].size, 512 << 20);
        assert_eq!(l.ram_below_4g() + l.ram_above_4g(), 4096 << 20);
        // Exactly at the hole: no high RAM.
        let l = Layout::new(PCI_HOLE_START).unwrap();
        assert_eq!(l.high_size, 0);
        assert_eq!(l.ram_ranges().count(), 2);
    }

    #[test]
    fn sizes_out_of_range_are_errors() {
        assert!(matches!(
            Layout::from_mib(8),
            Err(LayoutError::TooSmall { .. })
        ));
        assert!(matches!(
            Layout::from_mib(u64::MAX),
            Err(LayoutError::TooLarge { .. })
        ));
        assert!(matches!(
            Layout::new(MAX_MEMORY + 1),
            Err(LayoutError::TooLarge { .. })
        ));
    }

    #[test]
    fn is_ram_excludes_holes() {
        let l = Layout::from_mib(64).unwrap();
        assert!(l.is_ram(0, 0xa0000));
        assert!(!l.is_ram(0x9ffff, 2));
        assert!(!l.is_ram(0xa0000, 1));
        assert!(!l.is_ram(0xbffff, 1));
        assert!(l.is_ram(0xc0000, 1));
        assert!(l.is_ram((64 << 20) - 1, 1));
        assert!(!l.is_ram(64 << 20, 1));
        assert!(!l.is_ram(u64::MAX, 2));
    }

    #[test]
    fn memory_accesses_are_bounds_checked() {
        let m = GuestMemory::new(Layout::from_mib(16).unwrap()).unwrap();
        m.write(0x1000, b"hello").unwrap();
        let mut b = [0u8; 5];
        m.read(0x1000, &mut b).unwrap();
        assert_eq!(&b, b"hello");
        // Across the VGA hole, inside it, past the end, wrapping: refused.
        assert!(m.write(0x9fffe, &[1, 2, 3]).is_err());
        assert!(m.read(0xa0000, &mut b).is_err());
        assert!(m.write((16 << 20) - 4, &[0; 5]).is_err());
        assert!(m.write(u64::MAX - 1, &[0; 5]).is_err());
        assert!(m.zero(0xc0000, 1 << 20).is_ok());
        assert!(m.zero(0, u64::MAX).is_err());
        // The last byte of RAM is fine.
        m.write((16 << 20) - 1, &[7]).unwrap();
    }

    #[test]
    fn high_memory_is_reachable() {
        // Mapped with MAP_NORESERVE: only touched pages cost host memory.
        let m = GuestMemory::new(Layout::from_mib(4096 + 64).unwrap()).unwrap();
        m.write(1 << 32, b"hi").unwrap();
        let mut b = [0u8; 2];
        m.read(1 << 32, &mut b).unwrap();
        assert_eq!(&b, b"hi");
        assert!(m.read(PCI_HOLE_START, &mut b).is_err());
        assert_eq!(m.regions().count(), 3);
    }
}
