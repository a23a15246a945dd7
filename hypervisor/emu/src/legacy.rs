//! The integer instructions 16/32-bit code uses beyond the 64-bit core: PUSHF/POPF,
//! LAHF/SAHF, PUSHA/POPA, ENTER/LEAVE, XLAT, LDS/LES/LFS/LGS/LSS, BCD arithmetic,
//! CMPXCHG8B/16B, BOUND. Anything else goes on to the system instructions and then to
//! the SSE/x87 units; what nobody knows is #UD.

use crate::cpu::*;
use crate::exec::{Exception, write_sized_gpr};
use crate::flags::{mask, szp};
use crate::interrupt::writable_flags;
use crate::mem::Memory;
use crate::ops::{self, read_op, write_op};
use crate::{seg, system};
use iced_x86::{Code, Instruction, Mnemonic, OpKind};

pub(crate) fn exec(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    i: &Instruction,
    m: Mnemonic,
) -> Result<(), Exception> {
    use Mnemonic::*;
    match m {
        Pushf | Pushfd | Pushfq => {
            let size = (-i.stack_pointer_increment()) as usize;
            // The pushed image never has VM or RF set.
            let v = cpu.rflags & !(VM | RF);
            ops::push(cpu, mem, size, v)
        }
        Popf | Popfd | Popfq => {
            let size = i.stack_pointer_increment() as usize;
            if cpu.rflags & VM != 0 {
                return Err(Exception::Unsupported("POPF in virtual-8086 mode"));
            }
            let v = ops::peek(cpu, mem, 0, size)?;
            let wm = writable_flags(cpu) & mask(size);
            let sp = cpu.gpr[RSP].wrapping_add(size as u64);
            ops::set_sp(cpu, sp);
            cpu.rflags = (cpu.rflags & !wm) | (v & wm) | RFLAGS_FIXED;
            Ok(())
        }
        Lahf => {
            let ah = (cpu.rflags & (SF | ZF | AF | PF | CF)) | RFLAGS_FIXED;
            cpu.gpr[RAX] = (cpu.gpr[RAX] & !0xff00) | ((ah & 0xff) << 8);
            Ok(())
        }
        Sahf => {
            let ah = (cpu.gpr[RAX] >> 8) & 0xff;
            cpu.set_flags(SF | ZF | AF | PF | CF, ah);
            Ok(())
        }
        Pusha | Pushad => {
            let size = if m == Pusha { 2 } else { 4 };
            let saved = cpu.gpr[RSP];
            let sp0 = cpu.gpr[RSP];
            for r in [RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI] {
                let v = if r == RSP { sp0 } else { cpu.gpr[r] };
                if let Err(e) = ops::push(cpu, mem, size, v) {
                    cpu.gpr[RSP] = saved;
                    return Err(e);
                }
            }
            Ok(())
        }
        Popa | Popad => {
            let size = if m == Popa { 2 } else { 4 };
            let mut vals = [0u64; 8];
            for (k, v) in vals.iter_mut().enumerate() {
                *v = ops::peek(cpu, mem, (k * size) as u64, size)?;
            }
            // Popped in order DI, SI, BP, (SP skipped), BX, DX, CX, AX.
            for (k, r) in [RDI, RSI, RBP, RSP, RBX, RDX, RCX, RAX]
                .into_iter()
                .enumerate()
            {
                if r != RSP {
                    write_sized_gpr(cpu, r, size, vals[k]);
                }
            }
            let sp = cpu.gpr[RSP].wrapping_add(8 * size as u64);
            ops::set_sp(cpu, sp);
            Ok(())
        }
        Enter => enter(cpu, mem, i),
        Leave => {
            let size = match i.code() {
                Code::Leavew => 2,
                Code::Leaved => 4,
                _ => 8,
            };
            let saved = cpu.gpr[RSP];
            ops::set_sp(cpu, cpu.gpr[RBP]);
            match ops::pop(cpu, mem, size) {
                Ok(v) => {
                    write_sized_gpr(cpu, RBP, size, v);
                    Ok(())
                }
                Err(e) => {
                    cpu.gpr[RSP] = saved;
                    Err(e)
                }
            }
        }
        Xlatb => {
            let v = read_op(cpu, mem, i, 0)?;
            write_sized_gpr(cpu, RAX, 1, v);
            Ok(())
        }
        Lds | Les | Lfs | Lgs | Lss => {
            if i.op1_kind() != OpKind::Memory {
                return Err(Exception::InvalidOpcode);
            }
            let size = ops::op_size(i, 0);
            let (s, off) = ops::mem_operand(cpu, i)?;
            let am = mask(ops::addr_size(cpu, i));
            let o = ops::read_mem(cpu, mem, s, off, size)?;
            let sel = ops::read_mem(cpu, mem, s, off.wrapping_add(size as u64) & am, 2)? as u16;
            let sr = match m {
                Lds => DS,
                Les => ES,
                Lfs => FS,
                Lgs => GS,
                _ => SS,
            };
            seg::load_data(cpu, mem, sr, sel)?;
            write_op(cpu, mem, i, 0, o)
        }
        Daa | Das => {
            let al = cpu.gpr[RAX] & 0xff;
            let cf = cpu.flag(CF);
            let af = cpu.flag(AF);
            let mut v = al;
            let mut ncf = false;
            let mut naf = false;
            if (al & 0xf) > 9 || af {
                v = if m == Daa {
                    v.wrapping_add(6)
                } else {
                    v.wrapping_sub(6)
                } & 0xff;
                naf = true;
                // DAS keeps this step's borrow; DAA's CF is decided by the step below.
                ncf = m == Das && al < 6;
            }
            if al > 0x99 || cf {
                v = if m == Daa {
                    v.wrapping_add(0x60)
                } else {
                    v.wrapping_sub(0x60)
                } & 0xff;
                ncf = true;
            }
            write_sized_gpr(cpu, RAX, 1, v);
            let f = szp(v, 1) | if ncf { CF } else { 0 } | if naf { AF } else { 0 };
            cpu.set_flags(STATUS, f);
            Ok(())
        }
        Aaa | Aas => {
            let ax = cpu.gpr[RAX] & 0xffff;
            let v = if (ax & 0xf) > 9 || cpu.flag(AF) {
                let nv = if m == Aaa {
                    ax.wrapping_add(0x106)
                } else {
                    // AX - 6, then AH - 1 (the borrow of AL - 6 reaches AH).
                    ax.wrapping_sub(0x106)
                };
                cpu.set_flags(AF | CF, AF | CF);
                nv
            } else {
                cpu.set_flags(AF | CF, 0);
                ax
            };
            write_sized_gpr(cpu, RAX, 2, v & 0xff0f);
            Ok(())
        }
        Aam => {
            let base = i.immediate8() as u64;
            if base == 0 {
                return Err(Exception::DivideError);
            }
            let al = cpu.gpr[RAX] & 0xff;
            let v = ((al / base) << 8) | (al % base);
            write_sized_gpr(cpu, RAX, 2, v);
            cpu.set_flags(STATUS, szp(v & 0xff, 1));
            Ok(())
        }
        Aad => {
            let base = i.immediate8() as u64;
            let ax = cpu.gpr[RAX];
            let v = ((ax & 0xff) + ((ax >> 8) & 0xff) * base) & 0xff;
            write_sized_gpr(cpu, RAX, 2, v);
            cpu.set_flags(STATUS, szp(v, 1));
            Ok(())
        }
        Cmpxchg8b | Cmpxchg16b => {
            let (s, off) = ops::mem_operand(cpu, i)?;
            let half = if m == Cmpxchg8b { 4 } else { 8 };
            if half == 8 && off & 15 != 0 {
                return Err(Exception::GeneralProtection(0));
            }
            let hm = mask(half);
            let am = mask(ops::addr_size(cpu, i));
            let lo = ops::read_mem(cpu, mem, s, off, half)?;
            let hi = ops::read_mem(cpu, mem, s, off.wrapping_add(half as u64) & am, half)?;
            let eq = lo == cpu.gpr[RAX] & hm && hi == cpu.gpr[RDX] & hm;
            let mut buf = [0u8; 16];
            let (nlo, nhi) = if eq {
                (cpu.gpr[RBX], cpu.gpr[RCX])
            } else {
                (lo, hi)
            };
            buf[..half].copy_from_slice(&nlo.to_le_bytes()[..half]);
            buf[half..2 * half].copy_from_slice(&nhi.to_le_bytes()[..half]);
            // The destination is always written (locked read-modify-write).
            ops::write_mem_bytes(cpu, mem, ops::seg_register(s), off, &buf[..2 * half])?;
            if eq {
                cpu.rflags |= ZF;
            } else {
                cpu.rflags &= !ZF;
                write_sized_gpr(cpu, RAX, half, lo);
                write_sized_gpr(cpu, RDX, half, hi);
            }
            Ok(())
        }
        Arpl => {
            if !cpu.protected() || cpu.rflags & VM != 0 {
                return Err(Exception::InvalidOpcode);
            }
            let d = read_op(cpu, mem, i, 0)?;
            let src = read_op(cpu, mem, i, 1)?;
            if d & 3 < src & 3 {
                write_op(cpu, mem, i, 0, (d & !3) | (src & 3))?;
                cpu.rflags |= ZF;
            } else {
                cpu.rflags &= !ZF;
            }
            Ok(())
        }
        Bound => {
            let size = ops::op_size(i, 0);
            let idx = crate::flags::sext(read_op(cpu, mem, i, 0)?, size) as i64;
            let (s, off) = ops::mem_operand(cpu, i)?;
            let am = mask(ops::addr_size(cpu, i));
            let lo = crate::flags::sext(ops::read_mem(cpu, mem, s, off, size)?, size) as i64;
            let hi = crate::flags::sext(
                ops::read_mem(cpu, mem, s, off.wrapping_add(size as u64) & am, size)?,
                size,
            ) as i64;
            if idx < lo || idx > hi {
                return Err(Exception::Vector(5));
            }
            Ok(())
        }
        _ => {
            if let Some(r) = system::exec(cpu, mem, i, m) {
                return r;
            }
            // SSE/x87: dispatched to crate::sse / crate::x87 once merged.
            Err(Exception::InvalidOpcode)
        }
    }
}

fn enter(cpu: &mut Cpu, mem: &mut dyn Memory, i: &Instruction) -> Result<(), Exception> {
    let size = match i.code() {
        Code::Enterw_imm16_imm8 => 2,
        Code::Enterd_imm16_imm8 => 4,
        _ => 8,
    };
    let alloc = i.immediate16() as u64;
    let level = (i.immediate8_2nd() & 31) as u64;
    let saved = (cpu.gpr[RSP], cpu.gpr[RBP]);
    let r = (|| {
        ops::push(cpu, mem, size, cpu.gpr[RBP])?;
        let frame = cpu.gpr[RSP];
        if level > 0 {
            let sw = mask(ops::stack_width(cpu));
            let mut bp = cpu.gpr[RBP];
            for _ in 1..level {
                bp = bp.wrapping_sub(size as u64) & sw;
                let v = ops::read_mem(cpu, mem, SS, bp, size)?;
                ops::push(cpu, mem, size, v)?;
            }
            ops::push(cpu, mem, size, frame)?;
        }
        let sp = cpu.gpr[RSP].wrapping_sub(alloc);
        // The new stack top must be writable (checked like a push).
        let sw = mask(ops::stack_width(cpu));
        if alloc > 0 {
            ops::linear(cpu, SS, sp & sw, 1, true)?;
        }
        write_sized_gpr(cpu, RBP, size, frame);
        ops::set_sp(cpu, sp);
        Ok(())
    })();
    if r.is_err() {
        (cpu.gpr[RSP], cpu.gpr[RBP]) = saved;
    }
    r
}
