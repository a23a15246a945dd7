//! Decoded instructions cached by guest-PHYSICAL address and decode mode, per 4 KiB
//! page, with a bitmap of the pages that hold cached code so every RAM store can check
//! cheaply whether it must drop a page (self-modifying code, SeaBIOS relocating itself,
//! Linux patching its text).

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
/// without limit).
const MAX_PAGES: usize = 16384;

pub(crate) struct DecodeCache {
    /// Physical page number → (offset << 2 | mode) → instruction.
    pages: IntMap<u64, IntMap<u32, Instruction>>,
    bitmap: Vec<u64>,
    high: IntMap<u64, ()>,
}

impl Default for DecodeCache {
    fn default() -> Self {
        DecodeCache {
            pages: IntMap::default(),
            bitmap: vec![0; (BITMAP_PAGES / 64) as usize],
            high: IntMap::default(),
        }
    }
}

#[inline]
fn key(phys: u64, bitness: u32) -> u32 {
    (((phys & 0xfff) as u32) << 2) | (bitness >> 5)
}

impl DecodeCache {
    /// The cached instruction at `phys` decoded in `bitness` at offset `rip` (a hit at
    /// another RIP — the same page mapped twice — is a miss: branch targets differ).
    #[inline]
    pub fn lookup(&self, phys: u64, bitness: u32, rip: u64) -> Option<&Instruction> {
        self.pages
            .get(&(phys >> 12))?
            .get(&key(phys, bitness))
            .filter(|i| i.ip() == rip)
    }

    pub fn insert(&mut self, phys: u64, bitness: u32, i: Instruction) {
        let pn = phys >> 12;
        if !self.pages.contains_key(&pn) {
            if self.pages.len() >= MAX_PAGES {
                self.clear();
            }
            self.mark(pn);
        }
        self.pages
            .entry(pn)
            .or_default()
            .insert(key(phys, bitness), i);
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
        self.pages.remove(&pn);
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
        self.high.clear();
        self.bitmap.iter_mut().for_each(|w| *w = 0);
    }
}
