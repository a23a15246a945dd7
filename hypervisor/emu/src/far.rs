//! Far control transfers: JMP/CALL ptr16:16/32 and m16:16/32/64 (directly to a code
//! segment or through a 16/32-bit or long-mode call gate, with the stack switch and
//! parameter copy of a CALL to an inner privilege level), RETF (same and outer
//! privilege). Real mode loads CS as selector * 16. Task switches are refused
//! ([`Exception::Unsupported`]).

use crate::cpu::{CS, Cpu, RSP, SS};
use crate::exec::Exception;
use crate::flags::mask;
use crate::mem::Memory;
use crate::ops;
use crate::seg;
use iced_x86::{Code, Instruction, OpKind};

/// Operand size and (selector, offset) of a far JMP/CALL.
fn far_target(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    i: &Instruction,
) -> Result<(usize, u16, u64), Exception> {
    match i.op0_kind() {
        OpKind::FarBranch16 => Ok((2, i.far_branch_selector(), i.far_branch16() as u64)),
        OpKind::FarBranch32 => Ok((4, i.far_branch_selector(), i.far_branch32() as u64)),
        OpKind::Memory => {
            let size = match i.code() {
                Code::Jmp_m1616 | Code::Call_m1616 => 2,
                Code::Jmp_m1632 | Code::Call_m1632 => 4,
                _ => 8,
            };
            let (s, off) = ops::mem_operand(cpu, i)?;
            let o = ops::read_mem(cpu, mem, s, off, size)?;
            let am = mask(ops::addr_size(cpu, i));
            let sel = ops::read_mem(cpu, mem, s, off.wrapping_add(size as u64) & am, 2)?;
            Ok((size, sel as u16, o))
        }
        _ => Err(Exception::InvalidOpcode),
    }
}

/// Where a protected-mode far JMP/CALL goes.
enum Target {
    Code(seg::Desc),
    Gate(seg::Desc),
}

/// Check a code segment for a direct far JMP/CALL at the current CPL (or find a gate).
fn check_code_target(cpu: &mut Cpu, mem: &mut dyn Memory, sel: u16) -> Result<Target, Exception> {
    let gp = Exception::GeneralProtection((sel & 0xfffc) as u32);
    if sel & 0xfffc == 0 {
        return Err(Exception::GeneralProtection(0));
    }
    let d = seg::read_desc(cpu, mem, sel)?;
    if !d.s() {
        return match d.typ() {
            0xc => Ok(Target::Gate(d)),
            4 if !cpu.long_mode() => Ok(Target::Gate(d)),
            5 | 1 | 9 => Err(Exception::Unsupported(
                "hardware task switch (far JMP/CALL to a TSS or task gate)",
            )),
            _ => Err(gp),
        };
    }
    if !d.is_code() {
        return Err(gp);
    }
    let cpl = cpu.cpl();
    let rpl = (sel & 3) as u8;
    let ok = if d.typ() & 4 != 0 {
        d.dpl() <= cpl
    } else {
        rpl <= cpl && d.dpl() == cpl
    };
    if !ok {
        return Err(gp);
    }
    if !d.present() {
        return Err(Exception::NotPresent((sel & 0xfffc) as u32));
    }
    check_long_cs(cpu, &d, sel)?;
    Ok(Target::Code(d))
}

/// In long mode a code segment may not have both L and D set.
fn check_long_cs(cpu: &Cpu, d: &seg::Desc, sel: u16) -> Result<(), Exception> {
    let flags = (d.raw >> 52) & 0xf;
    if cpu.long_mode() && flags & 2 != 0 && flags & 4 != 0 {
        return Err(Exception::GeneralProtection((sel & 0xfffc) as u32));
    }
    Ok(())
}

/// The new RIP must be inside the new CS (non-64-bit) or canonical.
fn check_rip(cpu: &Cpu, rip: u64) -> Result<(), Exception> {
    if cpu.mode64() {
        if !ops::canonical(rip) {
            return Err(Exception::GeneralProtection(0));
        }
    } else if rip > cpu.seg[CS].limit as u64 {
        return Err(Exception::GeneralProtection(0));
    }
    Ok(())
}

pub(crate) fn jmp_call(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    i: &Instruction,
    call: bool,
) -> Result<(), Exception> {
    let (size, sel, off) = far_target(cpu, mem, i)?;
    let off = off & mask(size);
    let saved_rsp = cpu.gpr[RSP];
    let saved_seg = cpu.seg;
    let ret_ip = cpu.rip;
    let r = (|| {
        if !cpu.protected() || cpu.rflags & crate::cpu::VM != 0 {
            if call {
                ops::push(cpu, mem, size, cpu.seg[CS].selector as u64)?;
                ops::push(cpu, mem, size, ret_ip)?;
            }
            let new = cpu.seg[CS].real(sel);
            if off > new.limit as u64 {
                return Err(Exception::GeneralProtection(0));
            }
            cpu.seg[CS] = new;
            cpu.rip = off;
            return Ok(());
        }
        let d = match check_code_target(cpu, mem, sel)? {
            Target::Code(d) => d,
            Target::Gate(g) => return through_gate(cpu, mem, g, sel, call, ret_ip),
        };
        if call {
            ops::push(cpu, mem, size, cpu.seg[CS].selector as u64)?;
            ops::push(cpu, mem, size, ret_ip)?;
        }
        let cpl = cpu.cpl();
        seg::load_cs(cpu, mem, sel, d, cpl);
        check_rip(cpu, off)?;
        cpu.rip = off;
        Ok(())
    })();
    if r.is_err() {
        cpu.gpr[RSP] = saved_rsp;
        cpu.seg = saved_seg;
    }
    r
}

/// JMP/CALL through a call gate (the caller restores state on error).
fn through_gate(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    g: seg::Desc,
    gsel: u16,
    call: bool,
    ret_ip: u64,
) -> Result<(), Exception> {
    let cpl = cpu.cpl();
    let gp_gate = Exception::GeneralProtection((gsel & 0xfffc) as u32);
    if g.dpl() < cpl || g.dpl() < (gsel & 3) as u8 {
        return Err(gp_gate);
    }
    if !g.present() {
        return Err(Exception::NotPresent((gsel & 0xfffc) as u32));
    }
    let long = cpu.long_mode();
    let (size, mut target) = if long {
        (8, g.gate_offset())
    } else if g.typ() == 0xc {
        (4, g.gate_offset())
    } else {
        (2, g.gate_offset() & 0xffff)
    };
    if long {
        let hi = ops::read_sys(cpu, mem, g.addr.wrapping_add(8), 8)?;
        if (hi >> 40) & 0x1f != 0 {
            return Err(gp_gate);
        }
        target |= (hi & 0xffff_ffff) << 32;
    }
    let csel = g.gate_selector();
    if csel & 0xfffc == 0 {
        return Err(Exception::GeneralProtection(0));
    }
    let gp_code = Exception::GeneralProtection((csel & 0xfffc) as u32);
    let d = seg::read_desc(cpu, mem, csel)?;
    if !d.is_code() || d.dpl() > cpl {
        return Err(gp_code);
    }
    if !d.present() {
        return Err(Exception::NotPresent((csel & 0xfffc) as u32));
    }
    let flags = (d.raw >> 52) & 0xf;
    if long && (flags & 2 == 0 || flags & 4 != 0) {
        return Err(gp_code);
    }
    let conforming = d.typ() & 4 != 0;
    let old_cs = cpu.seg[CS].selector as u64;
    if !call {
        if !conforming && d.dpl() != cpl {
            return Err(gp_code);
        }
        seg::load_cs(cpu, mem, csel, d, cpl);
    } else if !conforming && d.dpl() < cpl {
        // CALL to an inner level: the new stack comes from the TSS.
        let new_cpl = d.dpl();
        let old_ss = cpu.seg[SS].selector as u64;
        let old_sp = cpu.gpr[RSP];
        if long {
            let tr = cpu.tr;
            let o = 4 + new_cpl as u64 * 8;
            if !tr.present() || o + 7 > tr.limit as u64 {
                return Err(Exception::InvalidTss((tr.selector & 0xfffc) as u32));
            }
            let sp = ops::read_sys(cpu, mem, tr.base.wrapping_add(o), 8)?;
            let mut n = seg::null_segment(new_cpl as u16);
            n.attr |= (new_cpl as u32) << 5;
            cpu.seg[SS] = n;
            seg::load_cs(cpu, mem, csel, d, new_cpl);
            cpu.gpr[RSP] = sp;
            for v in [old_ss, old_sp, old_cs, ret_ip] {
                ops::push(cpu, mem, 8, v)?;
            }
        } else {
            // Copy the gate's parameter count of stack words to the new stack.
            let count = ((g.raw >> 32) & 0x1f) as usize;
            let mut params = [0u64; 32];
            for (k, p) in params.iter_mut().enumerate().take(count) {
                *p = ops::peek(cpu, mem, (k * size) as u64, size)?;
            }
            let (ss, sp) = crate::interrupt::tss_stack(cpu, mem, new_cpl)?;
            seg::load_data_at(cpu, mem, SS, ss, new_cpl).map_err(|e| match e {
                Exception::GeneralProtection(_) | Exception::StackFault(_) => {
                    Exception::InvalidTss((ss & 0xfffc) as u32)
                }
                e => e,
            })?;
            cpu.gpr[RSP] = sp;
            ops::push(cpu, mem, size, old_ss)?;
            ops::push(cpu, mem, size, old_sp)?;
            for k in (0..count).rev() {
                ops::push(cpu, mem, size, params[k])?;
            }
            ops::push(cpu, mem, size, old_cs)?;
            ops::push(cpu, mem, size, ret_ip)?;
            seg::load_cs(cpu, mem, csel, d, new_cpl);
        }
    } else {
        ops::push(cpu, mem, size, old_cs)?;
        ops::push(cpu, mem, size, ret_ip)?;
        seg::load_cs(cpu, mem, csel, d, cpl);
    }
    check_rip(cpu, target)?;
    cpu.rip = target;
    Ok(())
}

pub(crate) fn retf(cpu: &mut Cpu, mem: &mut dyn Memory, i: &Instruction) -> Result<(), Exception> {
    let size = match i.code() {
        Code::Retfw | Code::Retfw_imm16 => 2,
        Code::Retfd | Code::Retfd_imm16 => 4,
        _ => 8,
    };
    let imm = if i.op_count() > 0 {
        i.immediate(0) & 0xffff
    } else {
        0
    };
    let off = ops::peek(cpu, mem, 0, size)?;
    let sel = ops::peek(cpu, mem, size as u64, size)? as u16;
    let sp_after = cpu.gpr[RSP].wrapping_add(2 * size as u64 + imm);
    if !cpu.protected() || cpu.rflags & crate::cpu::VM != 0 {
        let new = cpu.seg[CS].real(sel);
        if off > new.limit as u64 {
            return Err(Exception::GeneralProtection(0));
        }
        cpu.seg[CS] = new;
        cpu.rip = off;
        ops::set_sp(cpu, sp_after);
        return Ok(());
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
    check_long_cs(cpu, &d, sel)?;
    let saved = (cpu.seg, cpu.gpr[RSP]);
    let r = (|| {
        if rpl == cpl {
            seg::load_cs(cpu, mem, sel, d, cpl);
            check_rip(cpu, off & mask(size))?;
            ops::set_sp(cpu, sp_after);
        } else {
            // Outer privilege: the caller's SS:rSP follow the return address.
            let new_sp = ops::peek(cpu, mem, 2 * size as u64 + imm, size)?;
            let new_ss = ops::peek(cpu, mem, 3 * size as u64 + imm, size)? as u16;
            seg::load_data_at(cpu, mem, SS, new_ss, rpl)?;
            seg::load_cs(cpu, mem, sel, d, rpl);
            check_rip(cpu, off & mask(size))?;
            cpu.gpr[RSP] = if cpu.mode64() || cpu.seg[SS].db() {
                new_sp.wrapping_add(imm)
            } else {
                (cpu.gpr[RSP] & !0xffff) | (new_sp.wrapping_add(imm) & 0xffff)
            };
            seg::null_outer_segments(cpu);
        }
        cpu.rip = off & mask(size);
        Ok(())
    })();
    if r.is_err() {
        cpu.seg = saved.0;
        cpu.gpr[RSP] = saved.1;
    }
    r
}
