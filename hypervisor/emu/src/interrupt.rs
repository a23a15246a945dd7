//! Exception and interrupt delivery (real-mode IVT, protected-mode IDT with privilege
//! change through the TSS, long-mode IDT with IST), IRET, and the exception classes that
//! decide double and triple faults.

use crate::cpu::{AC, CS, Cpu, IF, NT, RF, RSP, SS, Segment, TF, VM};
use crate::exec::Exception;
use crate::mem::Memory;
use crate::ops;
use crate::seg;
use iced_x86::{Code, Instruction};

/// How an event relates to double faults.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Class {
    Benign,
    Contributory,
    PageFault,
    DoubleFault,
}

pub(crate) fn class(e: &Exception) -> Class {
    match e {
        Exception::SoftInt(_) => Class::Benign,
        _ => match e.vector() {
            Some(0 | 10 | 11 | 12 | 13) => Class::Contributory,
            Some(14) => Class::PageFault,
            Some(8) => Class::DoubleFault,
            _ => Class::Benign,
        },
    }
}

/// Whether `second`, raised while delivering `first`, makes a double fault.
pub(crate) fn is_double(first: Class, second: Class) -> bool {
    matches!(
        (first, second),
        (Class::Contributory, Class::Contributory)
            | (Class::PageFault, Class::Contributory)
            | (Class::PageFault, Class::PageFault)
    )
}

/// Deliver vector `vector` with the return address in `cpu.rip`. `soft`: INT n / INT3 /
/// INTO (gate DPL is checked, EXT = 0). On error the CPU state is as before the
/// attempt, and the error is the exception the delivery itself raised.
pub(crate) fn deliver(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    vector: u8,
    code: Option<u32>,
    soft: bool,
) -> Result<(), Exception> {
    if cpu.rflags & VM != 0 {
        return Err(Exception::Unsupported("interrupt in virtual-8086 mode"));
    }
    let saved = (cpu.seg, cpu.gpr[RSP], cpu.rip, cpu.rflags);
    let r = if !cpu.protected() {
        real(cpu, mem, vector)
    } else if cpu.long_mode() {
        long(cpu, mem, vector, code, soft)
    } else {
        legacy(cpu, mem, vector, code, soft)
    };
    match r {
        Ok(()) => {
            cpu.halted = false;
            Ok(())
        }
        Err(e) => {
            (cpu.seg, cpu.gpr[RSP], cpu.rip, cpu.rflags) = saved;
            Err(e)
        }
    }
}

fn real(cpu: &mut Cpu, mem: &mut dyn Memory, vector: u8) -> Result<(), Exception> {
    let off = vector as u64 * 4;
    if off + 3 > cpu.idtr.limit as u64 {
        return Err(Exception::GeneralProtection(off as u32 * 2 + 2));
    }
    let ent = ops::read_sys(cpu, mem, cpu.idtr.base.wrapping_add(off), 4)?;
    let flags = cpu.rflags;
    ops::push(cpu, mem, 2, flags)?;
    ops::push(cpu, mem, 2, cpu.seg[CS].selector as u64)?;
    ops::push(cpu, mem, 2, cpu.rip)?;
    cpu.rflags &= !(IF | TF | AC | RF);
    cpu.seg[CS] = cpu.seg[CS].real((ent >> 16) as u16);
    cpu.rip = ent & 0xffff;
    Ok(())
}

/// IDT error code for vector `v`.
fn idt_err(v: u8, soft: bool) -> u32 {
    v as u32 * 8 + 2 + (!soft) as u32
}

/// Look up and check the gate's target code segment; returns it and the new CPL.
fn gate_target(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    sel: u16,
    soft: bool,
) -> Result<(seg::Desc, u8), Exception> {
    let ext = (!soft) as u32;
    if sel & 0xfffc == 0 {
        return Err(Exception::GeneralProtection(ext));
    }
    let gp = Exception::GeneralProtection((sel & 0xfffc) as u32 | ext);
    let d = seg::read_desc(cpu, mem, sel).map_err(|e| match e {
        Exception::GeneralProtection(c) => Exception::GeneralProtection(c | ext),
        e => e,
    })?;
    let cpl = cpu.cpl();
    if !d.is_code() || d.dpl() > cpl {
        return Err(gp);
    }
    if !d.present() {
        return Err(Exception::NotPresent((sel & 0xfffc) as u32 | ext));
    }
    let new_cpl = if d.typ() & 4 != 0 { cpl } else { d.dpl() };
    Ok((d, new_cpl))
}

fn legacy(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    vector: u8,
    code: Option<u32>,
    soft: bool,
) -> Result<(), Exception> {
    let off = vector as u64 * 8;
    if off + 7 > cpu.idtr.limit as u64 {
        return Err(Exception::GeneralProtection(idt_err(vector, soft)));
    }
    let raw = ops::read_sys(cpu, mem, cpu.idtr.base.wrapping_add(off), 8)?;
    let g = seg::Desc { raw, addr: 0 };
    let typ = g.typ();
    if g.s() || !matches!(typ, 5 | 6 | 7 | 0xe | 0xf) {
        return Err(Exception::GeneralProtection(idt_err(vector, soft)));
    }
    let cpl = cpu.cpl();
    if soft && g.dpl() < cpl {
        return Err(Exception::GeneralProtection(idt_err(vector, true)));
    }
    if !g.present() {
        return Err(Exception::NotPresent(idt_err(vector, soft)));
    }
    if typ == 5 {
        return Err(Exception::Unsupported(
            "task gate in the IDT (hardware task switch)",
        ));
    }
    let (d, new_cpl) = gate_target(cpu, mem, g.gate_selector(), soft)?;
    let size = if typ & 8 != 0 { 4 } else { 2 };
    let old_flags = cpu.rflags;
    let old_cs = cpu.seg[CS].selector;
    if new_cpl < cpl {
        let (ss, sp) = tss_stack(cpu, mem, new_cpl)?;
        let old_ss = cpu.seg[SS].selector;
        let old_sp = cpu.gpr[RSP];
        seg::load_data_at(cpu, mem, SS, ss, new_cpl).map_err(|e| match e {
            Exception::GeneralProtection(_) | Exception::StackFault(_) => {
                Exception::InvalidTss((ss & 0xfffc) as u32)
            }
            e => e,
        })?;
        cpu.gpr[RSP] = sp;
        ops::push(cpu, mem, size, old_ss as u64)?;
        ops::push(cpu, mem, size, old_sp)?;
    }
    ops::push(cpu, mem, size, old_flags)?;
    ops::push(cpu, mem, size, old_cs as u64)?;
    ops::push(cpu, mem, size, cpu.rip)?;
    if let Some(c) = code {
        ops::push(cpu, mem, size, c as u64)?;
    }
    seg::load_cs(cpu, mem, g.gate_selector(), d, new_cpl);
    let mut target = g.gate_offset();
    if size == 2 {
        target &= 0xffff;
    }
    if target > cpu.seg[CS].limit as u64 {
        return Err(Exception::GeneralProtection(0));
    }
    cpu.rip = target;
    cpu.rflags &= !(TF | NT | RF | VM);
    if typ & 1 == 0 {
        cpu.rflags &= !IF;
    }
    Ok(())
}

/// SS:ESP for privilege level `pl` from a 16- or 32-bit TSS.
pub(crate) fn tss_stack(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    pl: u8,
) -> Result<(u16, u64), Exception> {
    let tr = cpu.tr;
    let ts = Exception::InvalidTss((tr.selector & 0xfffc) as u32);
    if !tr.present() || tr.unusable() {
        return Err(ts);
    }
    let t32 = tr.typ() & 8 != 0;
    let (sp_off, ss_off, sp_size) = if t32 {
        (4 + pl as u64 * 8, 8 + pl as u64 * 8, 4)
    } else {
        (2 + pl as u64 * 4, 4 + pl as u64 * 4, 2)
    };
    if ss_off + 1 > tr.limit as u64 {
        return Err(ts);
    }
    let sp = ops::read_sys(cpu, mem, tr.base.wrapping_add(sp_off), sp_size)?;
    let ss = ops::read_sys(cpu, mem, tr.base.wrapping_add(ss_off), 2)? as u16;
    Ok((ss, sp))
}

fn long(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    vector: u8,
    code: Option<u32>,
    soft: bool,
) -> Result<(), Exception> {
    let off = vector as u64 * 16;
    if off + 15 > cpu.idtr.limit as u64 {
        return Err(Exception::GeneralProtection(idt_err(vector, soft)));
    }
    let lo = ops::read_sys(cpu, mem, cpu.idtr.base.wrapping_add(off), 8)?;
    let hi = ops::read_sys(cpu, mem, cpu.idtr.base.wrapping_add(off + 8), 8)?;
    let g = seg::Desc { raw: lo, addr: 0 };
    let typ = g.typ();
    if g.s() || !matches!(typ, 0xe | 0xf) {
        return Err(Exception::GeneralProtection(idt_err(vector, soft)));
    }
    let cpl = cpu.cpl();
    if soft && g.dpl() < cpl {
        return Err(Exception::GeneralProtection(idt_err(vector, true)));
    }
    if !g.present() {
        return Err(Exception::NotPresent(idt_err(vector, soft)));
    }
    let sel = g.gate_selector();
    let (d, new_cpl) = gate_target(cpu, mem, sel, soft)?;
    let flags = (d.raw >> 52) & 0xf;
    if flags & 2 == 0 || flags & 4 != 0 {
        // The handler must be 64-bit code.
        return Err(Exception::GeneralProtection(
            (sel & 0xfffc) as u32 | (!soft) as u32,
        ));
    }
    let target = g.gate_offset() | ((hi & 0xffff_ffff) << 32);
    let ist = (lo >> 32) & 7;
    let old_ss = cpu.seg[SS].selector;
    let old_sp = cpu.gpr[RSP];
    let old_flags = cpu.rflags;
    let old_cs = cpu.seg[CS].selector;
    let mut sp = old_sp;
    if ist != 0 || new_cpl < cpl {
        let tr = cpu.tr;
        let ts = Exception::InvalidTss((tr.selector & 0xfffc) as u32);
        let o = if ist != 0 {
            0x24 + (ist - 1) * 8
        } else {
            4 + new_cpl as u64 * 8
        };
        if !tr.present() || o + 7 > tr.limit as u64 {
            return Err(ts);
        }
        sp = ops::read_sys(cpu, mem, tr.base.wrapping_add(o), 8)?;
        if !ops::canonical(sp) {
            return Err(Exception::StackFault(0));
        }
    }
    if new_cpl < cpl {
        let mut n = seg::null_segment(new_cpl as u16);
        n.attr |= (new_cpl as u32) << 5;
        cpu.seg[SS] = n;
    }
    // The frame is pushed in 64-bit mode on a 16-byte aligned stack.
    seg::load_cs(cpu, mem, sel, d, new_cpl);
    cpu.gpr[RSP] = sp & !0xf;
    ops::push(cpu, mem, 8, old_ss as u64)?;
    ops::push(cpu, mem, 8, old_sp)?;
    ops::push(cpu, mem, 8, old_flags)?;
    ops::push(cpu, mem, 8, old_cs as u64)?;
    ops::push(cpu, mem, 8, cpu.rip)?;
    if let Some(c) = code {
        ops::push(cpu, mem, 8, c as u64)?;
    }
    if !ops::canonical(target) {
        return Err(Exception::GeneralProtection(0));
    }
    cpu.rip = target;
    cpu.rflags &= !(TF | NT | RF | VM);
    if typ & 1 == 0 {
        cpu.rflags &= !IF;
    }
    Ok(())
}

/// The RFLAGS bits a POPF/IRET may change at this CPL/IOPL (before the operand-size cut).
pub(crate) fn writable_flags(cpu: &Cpu) -> u64 {
    use crate::cpu::*;
    let mut m = STATUS | TF | DF | NT | AC | ID;
    let cpl = cpu.cpl();
    if !cpu.protected() || cpl == 0 {
        m |= IOPL | IF;
    } else if cpl <= cpu.iopl() {
        m |= IF;
    }
    m
}

pub(crate) fn iret(cpu: &mut Cpu, mem: &mut dyn Memory, i: &Instruction) -> Result<(), Exception> {
    let size = match i.code() {
        Code::Iretw => 2,
        Code::Iretd => 4,
        _ => 8,
    };
    let ip = ops::peek(cpu, mem, 0, size)?;
    let sel = ops::peek(cpu, mem, size as u64, size)? as u16;
    let fl = ops::peek(cpu, mem, 2 * size as u64, size)?;
    let cut = crate::flags::mask(size);
    let mut wm = writable_flags(cpu) & cut;
    if !cpu.protected() {
        let new = cpu.seg[CS].real(sel);
        if ip & cut > new.limit as u64 {
            return Err(Exception::GeneralProtection(0));
        }
        cpu.seg[CS] = new;
        cpu.rip = ip & cut;
        wm |= RF & cut;
        cpu.rflags = (cpu.rflags & !wm) | (fl & wm) | crate::cpu::RFLAGS_FIXED;
        let sp = cpu.gpr[RSP].wrapping_add(3 * size as u64);
        ops::set_sp(cpu, sp);
        return Ok(());
    }
    if cpu.rflags & VM != 0 {
        return Err(Exception::Unsupported("IRET in virtual-8086 mode"));
    }
    if cpu.rflags & NT != 0 && !cpu.long_mode() {
        return Err(Exception::Unsupported("IRET with NT set (task return)"));
    }
    if fl & VM != 0 && cpu.cpl() == 0 && size == 4 && !cpu.long_mode() {
        return Err(Exception::Unsupported("IRET to virtual-8086 mode"));
    }
    let gp = Exception::GeneralProtection((sel & 0xfffc) as u32);
    if sel & 0xfffc == 0 {
        return Err(Exception::GeneralProtection(0));
    }
    let cpl = cpu.cpl();
    let rpl = (sel & 3) as u8;
    if rpl < cpl {
        return Err(gp);
    }
    let d = seg::read_desc(cpu, mem, sel)?;
    if !d.is_code() {
        return Err(gp);
    }
    let ok = if d.typ() & 4 != 0 {
        d.dpl() <= rpl
    } else {
        d.dpl() == rpl
    };
    if !ok {
        return Err(gp);
    }
    if !d.present() {
        return Err(Exception::NotPresent((sel & 0xfffc) as u32));
    }
    let saved: ([Segment; 6], u64) = (cpu.seg, cpu.gpr[RSP]);
    let r = (|| {
        let outer = rpl > cpl || (cpu.mode64() && size == 8);
        if outer {
            let new_sp = ops::peek(cpu, mem, 3 * size as u64, size)?;
            let new_ss = ops::peek(cpu, mem, 4 * size as u64, size)? as u16;
            seg::load_data_at(cpu, mem, SS, new_ss, rpl)?;
            seg::load_cs(cpu, mem, sel, d, rpl);
            cpu.gpr[RSP] = if cpu.mode64() || cpu.seg[SS].db() {
                new_sp & if cpu.mode64() { u64::MAX } else { 0xffff_ffff }
            } else {
                (cpu.gpr[RSP] & !0xffff) | (new_sp & 0xffff)
            };
        } else {
            seg::load_cs(cpu, mem, sel, d, rpl);
            let sp = cpu.gpr[RSP].wrapping_add(3 * size as u64);
            ops::set_sp(cpu, sp);
        }
        let target = ip & cut;
        if cpu.mode64() {
            if !ops::canonical(target) {
                return Err(Exception::GeneralProtection(0));
            }
        } else if target > cpu.seg[CS].limit as u64 {
            return Err(Exception::GeneralProtection(0));
        }
        cpu.rip = target;
        if rpl > cpl {
            seg::null_outer_segments(cpu);
        }
        Ok(())
    })();
    if r.is_err() {
        cpu.seg = saved.0;
        cpu.gpr[RSP] = saved.1;
        return r;
    }
    wm |= RF & cut;
    cpu.rflags = (cpu.rflags & !wm) | (fl & wm) | crate::cpu::RFLAGS_FIXED;
    Ok(())
}
