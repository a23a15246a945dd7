//! The stub's own 4-level page tables: an identity map of exactly what the hypervisor
//! backs (RAM, the shared pages, the virtio windows, the guest window), 2 MiB pages
//! where a range is 2 MiB aligned and large enough, 4 KiB pages at ragged edges.
//! Anything else is left unmapped, so a stray access page-faults inside the stub.
//!
//! The table memory is behind [`TableMem`]: physical pages from the image's page pool
//! on the bare target, a map of arrays in the tests.

pub const PRESENT: u64 = 1;
pub const WRITABLE: u64 = 1 << 1;
pub const WRITE_THROUGH: u64 = 1 << 3;
pub const CACHE_DISABLE: u64 = 1 << 4;
pub const ACCESSED: u64 = 1 << 5;
/// Leaf entries only.
pub const DIRTY: u64 = 1 << 6;
/// PDE: 2 MiB page.
pub const HUGE: u64 = 1 << 7;
pub const NO_EXECUTE: u64 = 1 << 63;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

pub const PAGE_4K: u64 = 0x1000;
pub const PAGE_2M: u64 = 0x20_0000;
/// Highest address a 4-level table translates (48 bits, lower half).
pub const VA_LIMIT: u64 = 1 << 47;

/// Where tables live.
pub trait TableMem {
    /// A zeroed 4 KiB table; its physical address.
    fn alloc_table(&mut self) -> Option<u64>;
    fn read(&self, table: u64, index: usize) -> u64;
    fn write(&mut self, table: u64, index: usize, entry: u64);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// Out of table pages.
    NoMemory,
    /// Not 4 KiB aligned, empty, wrapping or beyond 47 bits.
    BadRange { base: u64, size: u64 },
    /// The range overlaps something already mapped.
    Overlap { addr: u64 },
}

/// A page-table hierarchy under construction.
pub struct PageTables<'a, M: TableMem> {
    mem: &'a mut M,
    root: u64,
}

fn index(va: u64, level: u32) -> usize {
    ((va >> (12 + 9 * level)) & 0x1ff) as usize
}

impl<'a, M: TableMem> PageTables<'a, M> {
    pub fn new(mem: &'a mut M) -> Result<Self, MapError> {
        let root = mem.alloc_table().ok_or(MapError::NoMemory)?;
        Ok(PageTables { mem, root })
    }

    /// The PML4's physical address (for CR3).
    pub fn root(&self) -> u64 {
        self.root
    }

    /// The table an entry at `level` (3 = PML4 .. 1 = PD) points to, created if absent.
    fn next(&mut self, table: u64, idx: usize, va: u64) -> Result<u64, MapError> {
        let e = self.mem.read(table, idx);
        if e & PRESENT != 0 {
            if e & HUGE != 0 {
                return Err(MapError::Overlap { addr: va });
            }
            return Ok(e & ADDR_MASK);
        }
        let t = self.mem.alloc_table().ok_or(MapError::NoMemory)?;
        // Intermediate entries allow everything; the leaf decides. Accessed is preset
        // so the CPU never writes a table entry (see `map`).
        self.mem
            .write(table, idx, t | PRESENT | WRITABLE | ACCESSED);
        Ok(t)
    }

    /// Identity-map `[base, base + size)` with leaf `flags` (PRESENT, ACCESSED and
    /// DIRTY are added: the stub does not use them, and preset bits mean the CPU never
    /// writes a table entry behind an access, which also keeps page walks out of
    /// locked instructions on the software CPU).
    pub fn map(&mut self, base: u64, size: u64, flags: u64) -> Result<(), MapError> {
        let bad = MapError::BadRange { base, size };
        let end = base.checked_add(size).ok_or(bad)?;
        if size == 0
            || !base.is_multiple_of(PAGE_4K)
            || !size.is_multiple_of(PAGE_4K)
            || end > VA_LIMIT
        {
            return Err(bad);
        }
        let flags = (flags | PRESENT | ACCESSED | DIRTY) & !HUGE;
        let mut va = base;
        while va < end {
            let pdpt = self.next(self.root, index(va, 3), va)?;
            let pd = self.next(pdpt, index(va, 2), va)?;
            if va.is_multiple_of(PAGE_2M) && end - va >= PAGE_2M {
                let i = index(va, 1);
                if self.mem.read(pd, i) & PRESENT != 0 {
                    return Err(MapError::Overlap { addr: va });
                }
                self.mem.write(pd, i, va | flags | HUGE);
                va += PAGE_2M;
            } else {
                let pt = self.next(pd, index(va, 1), va)?;
                let i = index(va, 0);
                if self.mem.read(pt, i) & PRESENT != 0 {
                    return Err(MapError::Overlap { addr: va });
                }
                self.mem.write(pt, i, va | flags);
                va += PAGE_4K;
            }
        }
        Ok(())
    }

    /// What `va` translates to and its leaf entry (for tests and diagnostics).
    pub fn translate(&self, va: u64) -> Option<(u64, u64)> {
        if va >= VA_LIMIT {
            return None;
        }
        let mut t = self.root;
        for level in (1..=3).rev() {
            let e = self.mem.read(t, index(va, level));
            if e & PRESENT == 0 {
                return None;
            }
            if level == 1 && e & HUGE != 0 {
                return Some(((e & ADDR_MASK & !(PAGE_2M - 1)) | (va & (PAGE_2M - 1)), e));
            }
            t = e & ADDR_MASK;
        }
        let e = self.mem.read(t, index(va, 0));
        (e & PRESENT != 0).then_some(((e & ADDR_MASK) | (va & 0xfff), e))
    }
}

/// A bump allocator of table pages over a physical range that is identity-mapped
/// while the tables are built (the boot map covers it).
pub struct PagePool {
    next: u64,
    end: u64,
    /// Pages handed out.
    pub used: usize,
}

impl PagePool {
    /// Pages from `[start rounded up, end)`.
    pub fn new(start: u64, end: u64) -> Self {
        PagePool {
            next: start.div_ceil(PAGE_4K) * PAGE_4K,
            end,
            used: 0,
        }
    }
    /// First byte after the pages handed out.
    pub fn next_free(&self) -> u64 {
        self.next
    }
}

impl TableMem for PagePool {
    fn alloc_table(&mut self) -> Option<u64> {
        if self.end.checked_sub(self.next)? < PAGE_4K {
            return None;
        }
        let t = self.next;
        self.next += PAGE_4K;
        self.used += 1;
        // SAFETY: the pool's range is RAM nobody else uses, identity-mapped now.
        unsafe { core::ptr::write_bytes(t as *mut u8, 0, PAGE_4K as usize) };
        Some(t)
    }
    fn read(&self, table: u64, index: usize) -> u64 {
        // SAFETY: tables come from alloc_table; index < 512 (9-bit masks).
        unsafe { core::ptr::read_volatile((table as *const u64).add(index & 0x1ff)) }
    }
    fn write(&mut self, table: u64, index: usize, entry: u64) {
        // SAFETY: as in `read`.
        unsafe { core::ptr::write_volatile((table as *mut u64).add(index & 0x1ff), entry) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::collections::BTreeMap;

    #[derive(Default)]
    struct Fake {
        tables: BTreeMap<u64, [u64; 512]>,
        limit: usize,
    }
    impl TableMem for Fake {
        fn alloc_table(&mut self) -> Option<u64> {
            if self.tables.len() >= self.limit {
                return None;
            }
            let a = 0x1000 * (self.tables.len() as u64 + 1);
            self.tables.insert(a, [0; 512]);
            Some(a)
        }
        fn read(&self, t: u64, i: usize) -> u64 {
            self.tables[&t][i]
        }
        fn write(&mut self, t: u64, i: usize, e: u64) {
            self.tables.get_mut(&t).unwrap()[i] = e;
        }
    }

    #[test]
    fn stub_layout() {
        let mut m = Fake {
            limit: 64,
            ..Default::default()
        };
        let mut pt = PageTables::new(&mut m).unwrap();
        // RAM without page 0, 4 MiB.
        pt.map(0x1000, (4 << 20) - 0x1000, WRITABLE).unwrap();
        // Shared pages and one virtio window.
        pt.map(0x8000_0000, 0x4000, WRITABLE | NO_EXECUTE).unwrap();
        pt.map(0x9000_0000, 0x1000, WRITABLE | CACHE_DISABLE)
            .unwrap();
        // A 512 MiB + 12 KiB guest window at 1 TiB.
        let gw = 1u64 << 40;
        pt.map(gw, (512 << 20) + 0x3000, WRITABLE | NO_EXECUTE)
            .unwrap();
        assert_eq!(pt.translate(0), None);
        assert_eq!(pt.translate(0x1234).unwrap().0, 0x1234);
        let (pa, e) = pt.translate(0x30_0010).unwrap();
        assert_eq!((pa, e & HUGE), (0x30_0010, HUGE));
        assert_eq!(pt.translate(0x40_0000), None);
        assert_eq!(pt.translate(0x8000_3fff).unwrap().0, 0x8000_3fff);
        assert_eq!(pt.translate(0x8000_4000), None);
        assert!(pt.translate(0x9000_0000).unwrap().1 & CACHE_DISABLE != 0);
        let leaf = pt.translate(0x1000).unwrap().1;
        assert_eq!(leaf & (ACCESSED | DIRTY), ACCESSED | DIRTY);
        assert_eq!(pt.translate(0x9000_1000), None);
        assert_eq!(pt.translate(0x7000_0000), None);
        let (pa, e) = pt.translate(gw + (300 << 20) + 5).unwrap();
        assert_eq!(pa, gw + (300 << 20) + 5);
        assert!(e & HUGE != 0 && e & NO_EXECUTE != 0);
        assert!(pt.translate(gw + (512 << 20) + 0x2fff).unwrap().1 & HUGE == 0);
        assert_eq!(pt.translate(gw + (512 << 20) + 0x3000), None);
        // Overlaps are refused.
        assert_eq!(
            pt.map(0x20_0000, 0x1000, WRITABLE),
            Err(MapError::Overlap { addr: 0x20_0000 })
        );
        assert_eq!(
            pt.map(0x5000, 0x1000, WRITABLE),
            Err(MapError::Overlap { addr: 0x5000 })
        );
        // PML4 + PDPT/PD/PT for RAM + PD/2 PTs up high + PDPT/PD/PT for the window.
        assert_eq!(m.tables.len(), 10);
    }

    #[test]
    fn refuses_bad_ranges_and_runs_out_cleanly() {
        let mut m = Fake {
            limit: 3,
            ..Default::default()
        };
        let mut pt = PageTables::new(&mut m).unwrap();
        for (b, s) in [
            (0x1001, 0x1000),
            (0, 0),
            (u64::MAX - 0xfff, 0x1000),
            (VA_LIMIT, 0x1000),
        ] {
            assert!(matches!(pt.map(b, s, 0), Err(MapError::BadRange { .. })));
        }
        assert_eq!(pt.map(0x1000, 0x1000, 0), Err(MapError::NoMemory));
    }
}
