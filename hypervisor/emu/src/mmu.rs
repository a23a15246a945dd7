//! Linear → physical translation: 32-bit (with PSE 4 MiB pages), PAE and 4-level paging,
//! U/S, R/W with CR0.WP, NX, Accessed/Dirty updates, #PF error codes, and a small
//! direct-mapped TLB in front of the walk.

use crate::cpu::{CR0_PG, CR0_WP, CR4_PAE, CR4_PGE, CR4_PSE, Cpu, EFER_NXE};
use crate::exec::Exception;
use crate::mem::Memory;

/// What an access wants.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Access {
    Read,
    Write,
    Exec,
}

const TLB_SIZE: usize = 256;
const VALID: u64 = 1;

/// TLB entry permission bits (effective over all levels).
const T_W: u8 = 1;
const T_U: u8 = 2;
const T_X: u8 = 4;
const T_D: u8 = 8;
const T_G: u8 = 16;

#[derive(Clone, Copy, Default)]
struct Entry {
    /// Linear page | VALID; 0 = empty.
    tag: u64,
    phys: u64,
    perm: u8,
}

/// The translation cache. Not architectural state: compares equal to any other TLB.
#[derive(Clone)]
pub struct Tlb {
    e: Box<[Entry; TLB_SIZE]>,
}

impl Default for Tlb {
    fn default() -> Self {
        Tlb {
            e: Box::new([Entry::default(); TLB_SIZE]),
        }
    }
}

impl PartialEq for Tlb {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for Tlb {}

impl core::fmt::Debug for Tlb {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Tlb")
    }
}

impl Tlb {
    /// Drop everything (CR0/CR4 paging changes, CR3 with global pages honoured below).
    pub fn flush_all(&mut self) {
        for e in self.e.iter_mut() {
            e.tag = 0;
        }
    }
    /// Drop all but global entries (a CR3 write with CR4.PGE).
    pub fn flush_non_global(&mut self) {
        for e in self.e.iter_mut() {
            if e.perm & T_G == 0 {
                e.tag = 0;
            }
        }
    }
    /// INVLPG.
    pub fn flush_page(&mut self, lin: u64) {
        let e = &mut self.e[slot(lin)];
        if e.tag == (lin & !0xfff) | VALID {
            e.tag = 0;
        }
    }
}

#[inline]
fn slot(lin: u64) -> usize {
    ((lin >> 12) as usize) & (TLB_SIZE - 1)
}

/// CR3 was written.
pub(crate) fn cr3_written(cpu: &mut Cpu) {
    if cpu.cr4 & CR4_PGE != 0 {
        cpu.tlb.flush_non_global();
    } else {
        cpu.tlb.flush_all();
    }
}

fn pf(lin: u64, code: u32) -> Exception {
    Exception::PageFault { addr: lin, code }
}

/// Translate one linear address. `user` is a CPL-3 access that is not an implicit
/// supervisor access (descriptor tables, TSS, delivery stacks).
#[inline]
pub(crate) fn translate(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    lin: u64,
    acc: Access,
    user: bool,
) -> Result<u64, Exception> {
    if cpu.cr0 & CR0_PG == 0 {
        return Ok(if cpu.long_mode() {
            lin
        } else {
            lin & 0xffff_ffff
        });
    }
    let e = &cpu.tlb.e[slot(lin)];
    if e.tag == (lin & !0xfff) | VALID && permitted(cpu, e.perm, acc, user) {
        return Ok(e.phys | (lin & 0xfff));
    }
    translate_miss(cpu, mem, lin, acc, user)
}

/// The TLB missed (or lacks a permission/D bit): walk and refill.
#[inline(never)]
fn translate_miss(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    lin: u64,
    acc: Access,
    user: bool,
) -> Result<u64, Exception> {
    let s = slot(lin);
    let (phys_page, perm) = walk(cpu, mem, lin, acc, user)?;
    cpu.tlb.e[s] = Entry {
        tag: (lin & !0xfff) | VALID,
        phys: phys_page,
        perm,
    };
    Ok(phys_page | (lin & 0xfff))
}

#[inline]
fn permitted(cpu: &Cpu, perm: u8, acc: Access, user: bool) -> bool {
    if user && perm & T_U == 0 {
        return false;
    }
    match acc {
        Access::Read => true,
        // A cached entry without D must re-walk to set D.
        Access::Write => perm & T_D != 0 && (perm & T_W != 0 || (!user && cpu.cr0 & CR0_WP == 0)),
        Access::Exec => perm & T_X != 0,
    }
}

const P: u64 = 1;
const RW: u64 = 2;
const US: u64 = 4;
const A: u64 = 1 << 5;
const D: u64 = 1 << 6;
const PS: u64 = 1 << 7;
const G: u64 = 1 << 8;
const NX: u64 = 1 << 63;
/// Physical-address bits of an entry (52-bit MAXPHYADDR).
const ADDR: u64 = 0x000f_ffff_ffff_f000;

/// Walk the page tables; on success set A (and D for writes) and return the physical
/// 4 KiB page and the effective permissions.
fn walk(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    lin: u64,
    acc: Access,
    user: bool,
) -> Result<(u64, u8), Exception> {
    let write = acc == Access::Write;
    let nxe = cpu.efer & EFER_NXE != 0;
    let mut code = 0u32;
    if write {
        code |= 2;
    }
    if user {
        code |= 4;
    }
    if acc == Access::Exec && nxe {
        code |= 16;
    }
    // Entries visited (physical address, value, size) so A/D go in only on success.
    let mut visited: [(u64, u64, bool); 4] = [(0, 0, false); 4];
    let mut nvis = 0usize;
    let mut rw = true;
    let mut us = true;
    let mut nx = false;
    // Table accesses use `walk_read`/`walk_write`, not `read`/`write`: inside a LOCKed
    // instruction `mem` is the LOCK wrapper, which records reads as the operand's old
    // value and turns writes into compare-and-swaps against them. Through it, the
    // entries read here filled its record (leaving the operand unrecorded), and the
    // A/D store below compared against an entry value recorded before A was set or
    // not recorded at all: the swap "lost" or "needed serialising", the error was
    // ignored here (best effort), the operand store then went through, and the
    // wrapper ran the whole instruction a second time. A/D also never reached memory
    // while the TLB already cached the entry as dirty.
    let rd = |mem: &mut dyn Memory, a: u64, wide: bool| -> u64 {
        let mut b = [0u8; 8];
        let n = if wide { 8 } else { 4 };
        // Page tables outside RAM read as not present.
        match mem.walk_read(a, &mut b[..n]) {
            Ok(()) => u64::from_le_bytes(b),
            Err(_) => 0,
        }
    };
    let (page, offset_mask, leaf_val);
    if cpu.cr4 & CR4_PAE == 0 {
        // 2-level 32-bit paging.
        let lin = lin & 0xffff_ffff;
        let pde_a = (cpu.cr3 & 0xffff_f000) + ((lin >> 22) & 0x3ff) * 4;
        let pde = rd(mem, pde_a, false);
        if pde & P == 0 {
            return Err(pf(lin, code));
        }
        rw &= pde & RW != 0;
        us &= pde & US != 0;
        visited[nvis] = (pde_a, pde, false);
        nvis += 1;
        if pde & PS != 0 && cpu.cr4 & CR4_PSE != 0 {
            // PSE-36: bits 13..21 are physical bits 32..40.
            page = (pde & 0xffc0_0000) | (((pde >> 13) & 0xff) << 32);
            offset_mask = 0x3f_ffff;
            leaf_val = pde;
        } else {
            let pte_a = (pde & 0xffff_f000) + ((lin >> 12) & 0x3ff) * 4;
            let pte = rd(mem, pte_a, false);
            if pte & P == 0 {
                return Err(pf(lin, code));
            }
            rw &= pte & RW != 0;
            us &= pte & US != 0;
            visited[nvis] = (pte_a, pte, false);
            nvis += 1;
            page = pte & 0xffff_f000;
            offset_mask = 0xfff;
            leaf_val = pte;
        }
    } else {
        let rsvd = |e: u64| e & NX != 0 && !nxe;
        let mut table;
        let mut level;
        if cpu.long_mode() {
            table = cpu.cr3 & ADDR;
            level = 4;
        } else {
            let lin32 = lin & 0xffff_ffff;
            let pdpte_a = (cpu.cr3 & 0xffff_ffe0) + ((lin32 >> 30) & 3) * 8;
            let pdpte = rd(mem, pdpte_a, true);
            if pdpte & P == 0 {
                return Err(pf(lin, code));
            }
            // PAE PDPTEs carry no R/W, U/S, NX; bits 1,2,5..8 and 63 are reserved.
            if pdpte & 0x1e6 != 0 || pdpte & NX != 0 {
                return Err(pf(lin, code | 1 | 8));
            }
            table = pdpte & ADDR;
            level = 2;
        }
        loop {
            let idx = (lin >> (12 + 9 * (level - 1))) & 0x1ff;
            let ea = table + idx * 8;
            let e = rd(mem, ea, true);
            if e & P == 0 {
                return Err(pf(lin, code));
            }
            if rsvd(e)
                || (level == 4 && e & PS != 0)
                || (level == 3 && e & PS != 0 && !cpu.long_mode())
            {
                return Err(pf(lin, code | 1 | 8));
            }
            rw &= e & RW != 0;
            us &= e & US != 0;
            nx |= nxe && e & NX != 0;
            visited[nvis] = (ea, e, true);
            nvis += 1;
            if level == 1 || e & PS != 0 {
                let shift = 12 + 9 * (level - 1);
                let m = (1u64 << shift) - 1;
                // For large pages bit 12 is PAT, not address.
                page = e & ADDR & !m;
                offset_mask = m;
                leaf_val = e;
                break;
            }
            table = e & ADDR;
            level -= 1;
        }
    }
    // Permission check.
    let denied = (user && !us)
        || (write && !rw && (user || cpu.cr0 & CR0_WP != 0))
        || (acc == Access::Exec && nx);
    if denied {
        return Err(pf(lin, code | 1));
    }
    // Accessed bits on every level, Dirty on the leaf for a write.
    for (k, &(a, v, wide)) in visited[..nvis].iter().enumerate() {
        let mut nv = v | A;
        if write && k == nvis - 1 {
            nv |= D;
        }
        if nv != v {
            // Best effort: a table in non-RAM ignores it.
            let n = if wide { 8 } else { 4 };
            let _ = mem.walk_write(a, &nv.to_le_bytes()[..n]);
        }
    }
    let dirty = write || leaf_val & D != 0;
    let mut perm = 0u8;
    if rw {
        perm |= T_W;
    }
    if us {
        perm |= T_U;
    }
    if !nx {
        perm |= T_X;
    }
    if dirty {
        perm |= T_D;
    }
    if leaf_val & G != 0 && cpu.cr4 & CR4_PGE != 0 {
        perm |= T_G;
    }
    let phys = (page | (lin & offset_mask)) & !0xfff;
    Ok((phys, perm))
}

/// Read linear memory (split at page boundaries; all pages translated before any read).
pub(crate) fn read_lin(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    lin: u64,
    buf: &mut [u8],
    user: bool,
) -> Result<(), Exception> {
    access_lin(
        cpu,
        mem,
        lin,
        buf.len(),
        Access::Read,
        user,
        |mem, pa, r| mem.read(pa, &mut buf[r]),
    )
}

/// Write linear memory: every page is translated (and checked) before any byte is
/// stored, so a faulting write changes nothing.
pub(crate) fn write_lin(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    lin: u64,
    buf: &[u8],
    user: bool,
) -> Result<(), Exception> {
    access_lin(
        cpu,
        mem,
        lin,
        buf.len(),
        Access::Write,
        user,
        |mem, pa, r| mem.write(pa, &buf[r]),
    )
}

fn access_lin(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    lin: u64,
    len: usize,
    acc: Access,
    user: bool,
    mut f: impl FnMut(&mut dyn Memory, u64, core::ops::Range<usize>) -> Result<(), crate::mem::Fault>,
) -> Result<(), Exception> {
    let wrap = if cpu.long_mode() {
        u64::MAX
    } else {
        0xffff_ffff
    };
    let lin = lin & wrap;
    let first = 0x1000 - (lin & 0xfff) as usize;
    if len <= first {
        let pa = translate(cpu, mem, lin, acc, user)?;
        return f(mem, pa, 0..len).map_err(Exception::Unbacked);
    }
    // Crosses pages: translate all first (len is small: at most a few pages).
    let mut pages = [0u64; 4];
    let mut n = 0;
    let mut off = 0usize;
    while off < len {
        if n == pages.len() {
            return Err(Exception::GeneralProtection(0));
        }
        let a = lin.wrapping_add(off as u64) & wrap;
        pages[n] = translate(cpu, mem, a, acc, user)?;
        off += 0x1000 - (a & 0xfff) as usize;
        n += 1;
    }
    let mut off = 0usize;
    for &pa in &pages[..n] {
        let chunk = (0x1000 - (pa & 0xfff) as usize).min(len - off);
        f(mem, pa, off..off + chunk).map_err(Exception::Unbacked)?;
        off += chunk;
    }
    Ok(())
}
