//! The e820 memory map handed to the OS: built from the PVH start-info memmap plus the
//! firmware's own reservations, sorted, with overlaps resolved and neighbours merged.
//!
//! Input is untrusted: entries may overlap, have zero size, or wrap past 2^64. Nothing
//! here panics; a wrapping entry is clipped at 2^64 - 1, zero-sized ones are dropped,
//! and where entries overlap the "strongest" type wins (reserved > unusable > NVS >
//! ACPI > RAM), so a reservation always punches a hole into RAM.

pub const RAM: u32 = 1;
pub const RESERVED: u32 = 2;
pub const ACPI: u32 = 3;
pub const NVS: u32 = 4;
pub const UNUSABLE: u32 = 5;

/// Most entries the output map holds (the `boot_params` e820 table size).
pub const MAX_ENTRIES: usize = 128;
/// Most input entries considered (start-info allows 64; plus our reservations).
pub const MAX_INPUT: usize = 96;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}

impl Entry {
    pub const fn new(addr: u64, size: u64, kind: u32) -> Entry {
        Entry { addr, size, kind }
    }
    /// Exclusive end, clipped at u64::MAX.
    pub fn end(&self) -> u64 {
        self.addr.saturating_add(self.size)
    }
    /// The wire form in `boot_params.e820_table` and SeaBIOS's table (20 bytes).
    pub fn to_bytes(&self) -> [u8; 20] {
        let mut b = [0u8; 20];
        b[0..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..16].copy_from_slice(&self.size.to_le_bytes());
        b[16..20].copy_from_slice(&self.kind.to_le_bytes());
        b
    }
}

/// Name printed for a type.
pub fn kind_name(kind: u32) -> &'static str {
    match kind {
        RAM => "ram",
        RESERVED => "reserved",
        ACPI => "acpi",
        NVS => "nvs",
        UNUSABLE => "unusable",
        _ => "other",
    }
}

/// `E820 0x0000000000000000-0x000000000009ffff ram` (inclusive end).
impl core::fmt::Display for Entry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "E820 {:#018x}-{:#018x} {}",
            self.addr,
            self.end().saturating_sub(1),
            kind_name(self.kind)
        )
    }
}

/// Overlap strength: higher wins.
fn rank(kind: u32) -> u32 {
    match kind {
        RAM => 0,
        ACPI => 1,
        NVS => 2,
        UNUSABLE => 3,
        _ => 4,
    }
}

/// A sorted, merged, non-overlapping map.
#[derive(Clone, Copy, Debug)]
pub struct Map {
    entries: [Entry; MAX_ENTRIES],
    len: usize,
    /// Something did not fit (input beyond MAX_INPUT or output beyond MAX_ENTRIES).
    pub truncated: bool,
}

impl Default for Map {
    fn default() -> Self {
        Map {
            entries: [Entry::default(); MAX_ENTRIES],
            len: 0,
            truncated: false,
        }
    }
}

impl Map {
    pub fn entries(&self) -> &[Entry] {
        &self.entries[..self.len]
    }

    fn push(&mut self, e: Entry) {
        if let Some(last) = self.len.checked_sub(1).map(|i| &mut self.entries[i])
            && last.kind == e.kind
            && last.end() == e.addr
        {
            last.size += e.size;
            return;
        }
        if self.len == MAX_ENTRIES {
            self.truncated = true;
            return;
        }
        self.entries[self.len] = e;
        self.len += 1;
    }

    /// Builds the map from `sources` (each a slice of entries; later slices are not
    /// "stronger": only the type ranking decides).
    pub fn build(sources: &[&[Entry]]) -> Map {
        let mut map = Map::default();
        let mut input = [Entry::default(); MAX_INPUT];
        let mut n = 0;
        for e in sources.iter().flat_map(|s| s.iter()) {
            if e.size == 0 || e.end() <= e.addr {
                continue;
            }
            if n == MAX_INPUT {
                map.truncated = true;
                break;
            }
            input[n] = *e;
            n += 1;
        }
        let input = &input[..n];

        let mut bounds = [0u64; 2 * MAX_INPUT];
        for (i, e) in input.iter().enumerate() {
            bounds[2 * i] = e.addr;
            bounds[2 * i + 1] = e.end();
        }
        let bounds = &mut bounds[..2 * n];
        bounds.sort_unstable();

        let mut prev: Option<u64> = None;
        for &b in bounds.iter() {
            if let Some(start) = prev
                && b > start
            {
                // The elementary interval [start, b): strongest covering type, if any.
                let winner = input
                    .iter()
                    .filter(|e| e.addr <= start && e.end() >= b)
                    .map(|e| e.kind)
                    .max_by_key(|k| (rank(*k), *k));
                if let Some(kind) = winner {
                    map.push(Entry::new(start, b - start, kind));
                }
            }
            prev = Some(b);
        }
        map
    }

    /// The type covering `addr`, if any.
    pub fn kind_at(&self, addr: u64) -> Option<u32> {
        self.entries()
            .iter()
            .find(|e| e.addr <= addr && addr < e.end())
            .map(|e| e.kind)
    }

    /// Whether `[addr, addr + size)` lies entirely inside one RAM entry.
    pub fn is_ram(&self, addr: u64, size: u64) -> bool {
        let Some(end) = addr.checked_add(size) else {
            return false;
        };
        self.entries()
            .iter()
            .any(|e| e.kind == RAM && e.addr <= addr && end <= e.end())
    }
}

/// Whether `[a, a + a_len)` and `[b, b + b_len)` overlap (saturating, never panics).
pub fn overlaps(a: u64, a_len: u64, b: u64, b_len: u64) -> bool {
    a_len != 0 && b_len != 0 && a < b.saturating_add(b_len) && b < a.saturating_add(a_len)
}

/// Picks `size` bytes (4 KiB aligned) as high as possible in RAM below 4 GiB and at or
/// above `floor`, avoiding every `[start, end)` range in `avoid`. `map` should be the
/// merged map (so RAM entries never overlap reservations).
pub fn carve_top(map: &Map, size: u64, floor: u64, avoid: &[(u64, u64)]) -> Option<u64> {
    const PAGE: u64 = 0x1000;
    let size = size.checked_next_multiple_of(PAGE)?;
    let mut best: Option<u64> = None;
    for e in map.entries().iter().filter(|e| e.kind == RAM) {
        let lo = e.addr.max(floor);
        let hi = e.end().min(crate::platform::FOUR_GIB) & !(PAGE - 1);
        let Some(mut cand) = hi.checked_sub(size) else {
            continue;
        };
        // Each step moves the candidate wholly below one conflicting range, which then
        // can never conflict again: at most avoid.len() steps, then a clear answer.
        for _ in 0..=avoid.len() {
            if cand < lo {
                break;
            }
            match avoid
                .iter()
                .find(|(s, t)| overlaps(cand, size, *s, t.saturating_sub(*s)))
            {
                None => {
                    if best.is_none_or(|b| cand > b) {
                        best = Some(cand);
                    }
                    break;
                }
                Some((s, _)) => match (s & !(PAGE - 1)).checked_sub(size) {
                    Some(c) => cand = c,
                    None => break,
                },
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(a: u64, s: u64, k: u32) -> Entry {
        Entry::new(a, s, k)
    }

    fn check_sorted_disjoint(m: &Map) {
        for w in m.entries().windows(2) {
            assert!(w[0].end() <= w[1].addr, "{:?}", m.entries());
            assert!(
                !(w[0].end() == w[1].addr && w[0].kind == w[1].kind),
                "unmerged"
            );
        }
        for x in m.entries() {
            assert!(x.size > 0);
        }
    }

    #[test]
    fn typical_pvh_map() {
        let memmap = [e(0, 0xa0000, RAM), e(0x100000, 0xdff0_0000, RAM)];
        let ours = [
            e(0xf0000, 0x10000, RESERVED),
            e(0xdfff_0000, 0x10000, ACPI),
            e(0xfec0_0000, 0x140_0000, RESERVED),
        ];
        let m = Map::build(&[&memmap, &ours]);
        check_sorted_disjoint(&m);
        assert_eq!(
            m.entries(),
            &[
                e(0, 0xa0000, RAM),
                e(0xf0000, 0x10000, RESERVED),
                e(0x100000, 0xdfef_0000, RAM),
                e(0xdfff_0000, 0x10000, ACPI),
                e(0xfec0_0000, 0x140_0000, RESERVED),
            ]
        );
        let s = format!("{}", m.entries()[0]);
        assert_eq!(s, "E820 0x0000000000000000-0x000000000009ffff ram");
        assert_eq!(
            format!("{}", m.entries()[3]),
            "E820 0x00000000dfff0000-0x00000000dfffffff acpi"
        );
    }

    #[test]
    fn unsorted_overlapping_and_adjacent_inputs() {
        let input = [
            e(0x200000, 0x100000, RAM),
            e(0x100000, 0x100000, RAM),
            e(0x180000, 0x10000, RESERVED),
            e(0x150000, 0x100000, RAM),
        ];
        let m = Map::build(&[&input]);
        check_sorted_disjoint(&m);
        assert_eq!(
            m.entries(),
            &[
                e(0x100000, 0x80000, RAM),
                e(0x180000, 0x10000, RESERVED),
                e(0x190000, 0x170000, RAM),
            ]
        );
    }

    #[test]
    fn hostile_entries_never_panic() {
        let input = [
            e(0, 0, RAM),
            e(u64::MAX, 0, RAM),
            e(u64::MAX, 1, RAM),
            e(u64::MAX - 10, 100, RAM),
            e(0x1000, u64::MAX, RESERVED),
            e(5, 7, 0),
            e(5, 7, 0xffff_ffff),
        ];
        let m = Map::build(&[&input]);
        check_sorted_disjoint(&m);
        // The wrapping reservation covers everything from 0x1000 to the top.
        assert_eq!(m.kind_at(0x2000), Some(RESERVED));
        assert_eq!(m.kind_at(u64::MAX - 5), Some(RESERVED));
        assert_eq!(m.kind_at(6), Some(0xffff_ffff));
        assert_eq!(m.kind_at(0x800), None);
        for x in m.entries() {
            let _ = format!("{x}");
        }
    }

    #[test]
    fn too_many_entries_truncate() {
        let many: Vec<Entry> = (0..200u64).map(|i| e(i * 0x2000, 0x1000, RAM)).collect();
        let m = Map::build(&[&many]);
        assert!(m.truncated);
        assert_eq!(m.entries().len(), MAX_INPUT);
        check_sorted_disjoint(&m);
        // Alternating types so nothing merges and the output limit is hit too.
        let alt: Vec<Entry> = (0..90u64)
            .map(|i| e(i * 0x1000, 0x1000, if i % 2 == 0 { RAM } else { RESERVED }))
            .collect();
        let m = Map::build(&[&alt]);
        assert!(!m.truncated);
        assert_eq!(m.entries().len(), 90);
    }

    #[test]
    fn ram_queries() {
        let m = Map::build(&[&[e(0x100000, 0x100000, RAM), e(0x180000, 0x1000, RESERVED)]]);
        assert!(m.is_ram(0x100000, 0x80000));
        assert!(!m.is_ram(0x100000, 0x81000));
        assert!(!m.is_ram(u64::MAX, 2));
        assert!(overlaps(0, 10, 9, 1));
        assert!(!overlaps(0, 10, 10, 1));
        assert!(!overlaps(0, 0, 0, 10));
        assert!(overlaps(u64::MAX - 1, 100, u64::MAX - 1, 100));
    }

    #[test]
    fn carve_top_avoids_modules() {
        let m = Map::build(&[&[e(0, 0xa0000, RAM), e(0x100000, 0x3ff0_0000, RAM)]]);
        // No obstacles: the top 64 KiB of low RAM.
        assert_eq!(carve_top(&m, 0x10000, 0x80_0000, &[]), Some(0x3fff_0000));
        // A module at the very top pushes the area below it.
        let avoid = [(0x3f00_0000u64, 0x4000_0000u64)];
        assert_eq!(carve_top(&m, 0x10000, 0x80_0000, &avoid), Some(0x3eff_0000));
        // Unaligned obstacle.
        let avoid = [(0x3fff_f123u64, 0x3fff_f200u64)];
        assert_eq!(carve_top(&m, 0x10000, 0x80_0000, &avoid), Some(0x3ffe_f000));
        // Nothing above the floor.
        assert_eq!(carve_top(&m, 0x10000, 0x4000_0000, &[]), None);
        // Obstacles everywhere.
        let avoid = [(0u64, u64::MAX)];
        assert_eq!(carve_top(&m, 0x10000, 0x80_0000, &avoid), None);
        // RAM above 4 GiB is never used.
        let m = Map::build(&[&[e(0x1_0000_0000, 0x1000_0000, RAM)]]);
        assert_eq!(carve_top(&m, 0x10000, 0, &[]), None);
        // Sizes that overflow.
        assert_eq!(carve_top(&m, u64::MAX, 0, &[]), None);
    }
}
