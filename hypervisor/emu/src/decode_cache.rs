//! Decoded instructions cached by guest-PHYSICAL address and decode mode, per 4 KiB
//! page, with a bitmap of the pages that hold cached code so every RAM store can check
//! cheaply whether it must drop a page (self-modifying code, SeaBIOS relocating itself,
//! Linux patching its text).

use crate::fast::Fast;
use iced_x86::Instruction;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A multiplicative hash for integer keys (the default SipHash costs more than the
/// interpretation of a simple instruction).
#[derive(Default)]
pub(crate) struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 ^= self.0 >> 29;
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(v as u64);
    }
}

type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

/// Pages below 4 GiB tracked in the bitmap; above that a set.
const BITMAP_PAGES: u64 = 1 << 20;
/// Bound on cached pages: past it everything is dropped (a guest cannot grow the cache
/// without limit; each page costs 8 KiB of index plus its instructions).
const MAX_PAGES: usize = 8192;

/// The decoded instructions of one physical page: offset → 1-based index into `instrs`.
/// One instruction per offset; its decode mode and IP are checked on use (a different
/// mode or a second mapping of the page re-decodes and replaces it).
struct PageCode {
    index: Box<[u16; 4096]>,
    /// The classifications (all the run loop reads for most instructions) apart from
    /// the full decodings (read only for the general path).
    fast: Vec<Fast>,
    instrs: Vec<Instruction>,
}

pub(crate) struct DecodeCache {
    /// Physical page number → slot in `slots`.
    pages: IntMap<u64, usize>,
    slots: Vec<PageCode>,
    free: Vec<usize>,
    /// The last page looked up (most instructions follow one in the same page).
    last: Option<(u64, usize)>,
    /// Position after the last hit in its page's records: straight-line code was
    /// usually decoded in execution order, so the next instruction is often there.
    next: usize,
    bitmap: Vec<u64>,
    high: IntMap<u64, ()>,
}

impl Default for DecodeCache {
    fn default() -> Self {
        DecodeCache {
            pages: IntMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            last: None,
            next: 0,
            bitmap: vec![0; (BITMAP_PAGES / 64) as usize],
            high: IntMap::default(),
        }
    }
}

impl DecodeCache {
    #[inline]
    fn slot(&mut self, pn: u64) -> Option<usize> {
        if let Some((p, s)) = self.last
            && p == pn
        {
            return Some(s);
        }
        let s = *self.pages.get(&pn)?;
        self.last = Some((pn, s));
        Some(s)
    }

    /// The cached instruction at `phys` decoded in `bitness` at offset `rip`: its
    /// classification and a handle for [`DecodeCache::instr`].
    #[inline(always)]
    pub fn lookup(&mut self, phys: u64, bitness: u32, rip: u64) -> Option<(Fast, usize)> {
        let s = self.slot(phys >> 12)?;
        let pc = &self.slots[s];
        let off = (phys & 0xfff) as u16;
        // A page holds one record per offset, so a record of this page with this
        // offset is the one the index would give.
        if let Some(f) = pc.fast.get(self.next)
            && f.off == off
            && f.ip == rip
            && f.bitness as u32 == bitness
        {
            let k = self.next;
            self.next = k + 1;
            return Some((*f, (s << 16) | k));
        }
        let k = (pc.index[off as usize] as usize).checked_sub(1)?;
        let f = *pc.fast.get(k)?;
        self.next = k + 1;
        (f.ip == rip && f.bitness as u32 == bitness).then_some((f, (s << 16) | k))
    }

    /// The full decoding behind a [`DecodeCache::lookup`] handle (no store since).
    #[inline]
    pub fn instr(&self, handle: usize) -> Option<Instruction> {
        self.slots
            .get(handle >> 16)?
            .instrs
            .get(handle & 0xffff)
            .copied()
    }

    pub fn insert(&mut self, phys: u64, mut i: (Instruction, Fast)) {
        i.1.off = (phys & 0xfff) as u16;
        let pn = phys >> 12;
        let s = match self.slot(pn) {
            Some(s) => s,
            None => {
                if self.pages.len() >= MAX_PAGES {
                    self.clear();
                }
                let s = match self.free.pop() {
                    Some(s) => s,
                    None => {
                        self.slots.push(PageCode {
                            index: Box::new([0; 4096]),
                            fast: Vec::new(),
                            instrs: Vec::new(),
                        });
                        self.slots.len() - 1
                    }
                };
                self.pages.insert(pn, s);
                self.mark(pn);
                self.last = Some((pn, s));
                s
            }
        };
        let pc = &mut self.slots[s];
        let off = (phys & 0xfff) as usize;
        match pc.index[off] {
            0 if pc.instrs.len() < u16::MAX as usize => {
                pc.instrs.push(i.0);
                pc.fast.push(i.1);
                pc.index[off] = pc.instrs.len() as u16;
            }
            0 => {}
            k => {
                pc.instrs[k as usize - 1] = i.0;
                pc.fast[k as usize - 1] = i.1;
            }
        }
    }

    fn mark(&mut self, pn: u64) {
        if pn < BITMAP_PAGES {
            self.bitmap[(pn / 64) as usize] |= 1 << (pn % 64);
        } else {
            self.high.insert(pn, ());
        }
    }

    /// Whether physical page number `pn` holds cached code.
    #[inline]
    pub fn is_code(&self, pn: u64) -> bool {
        if pn < BITMAP_PAGES {
            self.bitmap[(pn / 64) as usize] & (1 << (pn % 64)) != 0
        } else {
            self.high.contains_key(&pn)
        }
    }

    /// Drop the page holding physical address `gpa`.
    pub fn invalidate(&mut self, gpa: u64) {
        let pn = gpa >> 12;
        if !self.is_code(pn) {
            return;
        }
        if let Some(s) = self.pages.remove(&pn) {
            let pc = &mut self.slots[s];
            pc.index.fill(0);
            pc.instrs.clear();
            pc.fast.clear();
            self.free.push(s);
        }
        if self.last.is_some_and(|(p, _)| p == pn) {
            self.last = None;
        }
        if pn < BITMAP_PAGES {
            self.bitmap[(pn / 64) as usize] &= !(1 << (pn % 64));
        } else {
            self.high.remove(&pn);
        }
    }

    /// A store to `[gpa, gpa + len)`.
    #[inline]
    pub fn written(&mut self, gpa: u64, len: usize) {
        let first = gpa >> 12;
        let last = gpa.wrapping_add(len.max(1) as u64 - 1) >> 12;
        if self.is_code(first) {
            self.invalidate(gpa);
        }
        if last != first && self.is_code(last) {
            self.invalidate(last << 12);
        }
    }

    pub fn clear(&mut self) {
        self.pages.clear();
        self.slots.clear();
        self.free.clear();
        self.last = None;
        self.high.clear();
        self.bitmap.iter_mut().for_each(|w| *w = 0);
    }
}
