//! Segment descriptors: reading them from the GDT/LDT, turning them into descriptor
//! caches, and the protected-mode checks of segment-register loads (null selectors,
//! types, privilege, presence) with their selector error codes.

use crate::cpu::{ATTR_DB, ATTR_P, ATTR_UNUSABLE, CS, Cpu, SS, Segment};
use crate::exec::Exception;
use crate::mem::Memory;
use crate::ops;

/// A descriptor as read from its table, with where it lives (to set Accessed/Busy).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Desc {
    pub raw: u64,
    /// Linear address of the descriptor.
    pub addr: u64,
}

impl Desc {
    #[inline]
    pub fn access(&self) -> u32 {
        ((self.raw >> 40) & 0xff) as u32
    }
    #[inline]
    pub fn typ(&self) -> u32 {
        self.access() & 0xf
    }
    #[inline]
    pub fn s(&self) -> bool {
        self.access() & 0x10 != 0
    }
    #[inline]
    pub fn dpl(&self) -> u8 {
        ((self.access() >> 5) & 3) as u8
    }
    #[inline]
    pub fn present(&self) -> bool {
        self.access() & 0x80 != 0
    }
    #[inline]
    pub fn is_code(&self) -> bool {
        self.s() && self.typ() & 8 != 0
    }
    /// The descriptor cache for selector `sel` (base bits 32..63 of system descriptors
    /// in long mode are added by the caller).
    pub fn segment(&self, sel: u16) -> Segment {
        let d = self.raw;
        let base = ((d >> 16) & 0xff_ffff) | (((d >> 56) & 0xff) << 24);
        let mut limit = ((d & 0xffff) | (((d >> 48) & 0xf) << 16)) as u32;
        let flags = ((d >> 52) & 0xf) as u32;
        if flags & 8 != 0 {
            limit = (limit << 12) | 0xfff;
        }
        Segment {
            selector: sel,
            base,
            limit,
            attr: self.access() | (flags << 12),
        }
    }
    /// Call/interrupt/trap gate fields: target selector and offset (low 32 bits).
    pub fn gate_selector(&self) -> u16 {
        (self.raw >> 16) as u16
    }
    pub fn gate_offset(&self) -> u64 {
        (self.raw & 0xffff) | ((self.raw >> 32) & 0xffff_0000)
    }
}

/// Read the descriptor of a (non-null) selector. #GP(selector) outside the table.
pub(crate) fn read_desc(cpu: &mut Cpu, mem: &mut dyn Memory, sel: u16) -> Result<Desc, Exception> {
    let err = Exception::GeneralProtection((sel & 0xfffc) as u32);
    let (base, limit) = if sel & 4 != 0 {
        if cpu.ldtr.unusable() || !cpu.ldtr.present() {
            return Err(err);
        }
        (cpu.ldtr.base, cpu.ldtr.limit)
    } else {
        (cpu.gdtr.base, cpu.gdtr.limit as u32)
    };
    let off = (sel & 0xfff8) as u64;
    if off + 7 > limit as u64 {
        return Err(err);
    }
    let addr = base.wrapping_add(off);
    let raw = ops::read_sys(cpu, mem, addr, 8)?;
    Ok(Desc { raw, addr })
}

/// Read the upper half of a 16-byte system descriptor (long mode) and return base 63:32.
pub(crate) fn read_desc_high(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    d: &Desc,
    sel: u16,
) -> Result<u64, Exception> {
    let limit = if sel & 4 != 0 {
        cpu.ldtr.limit as u64
    } else {
        cpu.gdtr.limit as u64
    };
    if (sel & 0xfff8) as u64 + 15 > limit {
        return Err(Exception::GeneralProtection((sel & 0xfffc) as u32));
    }
    let hi = ops::read_sys(cpu, mem, d.addr.wrapping_add(8), 8)?;
    Ok((hi & 0xffff_ffff) << 32)
}

/// Set the Accessed bit of a code/data descriptor (as hardware does on a load).
pub(crate) fn set_accessed(cpu: &mut Cpu, mem: &mut dyn Memory, d: &mut Desc) {
    if d.raw & (1 << 40) == 0 {
        d.raw |= 1 << 40;
        // Best effort: a GDT in ROM stays unchanged.
        let _ = ops::write_sys(cpu, mem, d.addr.wrapping_add(5), 1, d.raw >> 40);
    }
}

/// A segment register loaded with a null selector.
pub(crate) fn null_segment(sel: u16) -> Segment {
    Segment {
        selector: sel,
        base: 0,
        limit: 0,
        attr: ATTR_UNUSABLE,
    }
}

/// Load DS/ES/FS/GS/SS (MOV, POP, LDS..., far returns) with the mode's rules.
pub(crate) fn load_data(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    s: usize,
    sel: u16,
) -> Result<(), Exception> {
    if !cpu.protected() || cpu.rflags & crate::cpu::VM != 0 {
        cpu.seg[s] = cpu.seg[s].real(sel);
        return Ok(());
    }
    let cpl = cpu.cpl();
    load_data_at(cpu, mem, s, sel, cpl)
}

/// [`load_data`] in protected mode, checked against privilege level `cpl` (a far
/// return or IRET to an outer level checks the new SS against the new CPL).
pub(crate) fn load_data_at(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    s: usize,
    sel: u16,
    cpl: u8,
) -> Result<(), Exception> {
    let rpl = (sel & 3) as u8;
    let gp = Exception::GeneralProtection((sel & 0xfffc) as u32);
    if sel & 0xfffc == 0 {
        if s == SS {
            // 64-bit mode allows a null SS below CPL 3 with RPL = CPL.
            if !(cpu.long_mode() && cpl < 3 && rpl == cpl) {
                return Err(Exception::GeneralProtection(0));
            }
            let mut n = null_segment(sel);
            n.attr |= (cpl as u32) << 5 | ATTR_DB;
            cpu.seg[SS] = n;
        } else {
            // FS/GS keep their base in 64-bit mode only through the MSRs; a null load
            // clears it like other CPUs do.
            cpu.seg[s] = null_segment(sel);
        }
        return Ok(());
    }
    let mut d = read_desc(cpu, mem, sel)?;
    if s == SS {
        if rpl != cpl || !d.s() || d.is_code() || d.typ() & 2 == 0 || d.dpl() != cpl {
            return Err(gp);
        }
        if !d.present() {
            return Err(Exception::StackFault((sel & 0xfffc) as u32));
        }
    } else {
        // Data, or readable code.
        if !d.s() || (d.is_code() && d.typ() & 2 == 0) {
            return Err(gp);
        }
        let conforming_code = d.is_code() && d.typ() & 4 != 0;
        if !conforming_code && (rpl > d.dpl() || cpl > d.dpl()) {
            return Err(gp);
        }
        if !d.present() {
            return Err(Exception::NotPresent((sel & 0xfffc) as u32));
        }
    }
    set_accessed(cpu, mem, &mut d);
    let mut seg = d.segment(sel);
    if cpu.mode64() && s >= crate::cpu::FS {
        // Only the low 32 bits of the base come from the descriptor.
        seg.base &= 0xffff_ffff;
    }
    cpu.seg[s] = seg;
    Ok(())
}

/// Check a code-segment descriptor for a direct far JMP/CALL/RET or an interrupt and
/// load CS with it at privilege `new_cpl`.
pub(crate) fn load_cs(cpu: &mut Cpu, mem: &mut dyn Memory, sel: u16, mut d: Desc, new_cpl: u8) {
    set_accessed(cpu, mem, &mut d);
    let mut seg = d.segment((sel & 0xfffc) | new_cpl as u16);
    seg.attr |= ATTR_P;
    cpu.seg[CS] = seg;
}

/// Invalidate DS/ES/FS/GS whose DPL is below the new (outer) CPL after a return to an
/// outer privilege level (data and non-conforming code segments).
pub(crate) fn null_outer_segments(cpu: &mut Cpu) {
    let cpl = cpu.cpl();
    for s in [
        crate::cpu::ES,
        crate::cpu::DS,
        crate::cpu::FS,
        crate::cpu::GS,
    ] {
        let sg = cpu.seg[s];
        let conforming = sg.is_code() && sg.typ() & 4 != 0;
        if !sg.unusable() && !conforming && sg.dpl() < cpl {
            cpu.seg[s] = null_segment(0);
        }
    }
}
