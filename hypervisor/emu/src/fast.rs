//! Pre-classified forms of the most frequent instructions (MOV, the ALU group, LEA,
//! MOVZX/MOVSX, INC/DEC/NEG/NOT, SHL/SHR/SAR, Jcc/JMP/CALL/RET, PUSH/POP,
//! CMOVcc/SETcc, NOPs).
//!
//! [`classify`] runs once when an instruction enters the decode cache and records what
//! its execution needs: GPR numbers, operand sizes, the effective-address parts, the
//! immediate or branch target. [`exec`] then runs it without iced accessor calls or the
//! mnemonic dispatch. Everything else (and anything with an unusual operand) is
//! [`Kind::Slow`]: [`exec::execute`]. The semantics, including the order of memory
//! accesses and the fault rules (RIP and all state unchanged on an exception), are
//! exactly those of the general path; the differential tests run both.

use crate::cpu::{AF, CF, Cpu, OF, RSP, STATUS};
use crate::exec::{self, Exception, write_sized_gpr};
use crate::flags::{add, bits, cond, logic, mask, sext, sign, sub, szp};
use crate::mem::Memory;
use crate::ops;
use iced_x86::{Code, ConditionCode, Instruction, Mnemonic, OpKind, Register};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    Slow,
    Mov,
    Movzx,
    Movsx,
    Lea,
    Add,
    Adc,
    Sub,
    Sbb,
    Cmp,
    And,
    Or,
    Xor,
    Test,
    Inc,
    Dec,
    Neg,
    Not,
    Jcc,
    Jmp,
    Call,
    Ret,
    Push,
    Pop,
    Cmov,
    Setcc,
    Nop,
    Shl,
    Shr,
    Sar,
}

/// Operand locations: GPR 0..=15 (the low `size` bytes), AH/CH/DH/BH, the memory
/// operand, the immediate (or branch target).
const HIGH: u8 = 16;
const MEM: u8 = 32;
const IMM: u8 = 33;
const NONE: u8 = 0xff;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Fast {
    pub kind: Kind,
    /// Operand size of the destination (bytes).
    size: u8,
    /// Source size (MOVZX/MOVSX), or the stack size (PUSH/POP/CALL/RET).
    ssize: u8,
    dst: u8,
    src: u8,
    seg: u8,
    base: u8,
    index: u8,
    scale: u8,
    cc: ConditionCode,
    /// Address-size mask of the effective address.
    amask: u64,
    /// Displacement (absolute address for RIP-relative operands).
    disp: u64,
    /// Immediate, branch target, or RET's extra stack release.
    imm: u64,
    /// RIP after the instruction (masked to the code size).
    pub next: u64,
    /// Where and in which code size it was decoded (the decode cache checks both).
    pub ip: u64,
    pub bitness: u8,
    /// Offset of its first byte in its physical page (set by the decode cache).
    pub off: u16,
}

impl Fast {
    pub(crate) const SLOW: Fast = Fast {
        kind: Kind::Slow,
        size: 0,
        ssize: 0,
        dst: NONE,
        src: NONE,
        seg: 0,
        base: NONE,
        index: NONE,
        scale: 0,
        cc: ConditionCode::None,
        amask: 0,
        disp: 0,
        imm: 0,
        next: 0,
        ip: 0,
        bitness: 0,
        off: 0,
    };
}

/// A general register operand: its location code and size.
fn reg(r: Register) -> Option<(u8, usize)> {
    let l = ops::reg_loc(r)?;
    Some((
        if l.high {
            HIGH + l.idx as u8
        } else {
            l.idx as u8
        },
        l.size,
    ))
}

/// Classify a decoded instruction (`cpu` in the mode it was decoded for).
pub(crate) fn classify(cpu: &Cpu, i: &Instruction) -> Fast {
    let (ip_mask, bitness) = match i.code_size() {
        iced_x86::CodeSize::Code64 => (u64::MAX, 64),
        iced_x86::CodeSize::Code32 => (0xffff_ffff, 32),
        _ => (0xffff, 16),
    };
    let base = Fast {
        next: i.next_ip() & ip_mask,
        ip: i.ip(),
        bitness,
        cc: i.condition_code(),
        ..Fast::SLOW
    };
    classify_inner(cpu, i, base).unwrap_or(base)
}

fn classify_inner(cpu: &Cpu, i: &Instruction, base: Fast) -> Option<Fast> {
    use Mnemonic as M;
    if i.has_lock_prefix() {
        return None;
    }
    let m = i.mnemonic();
    let kind = match m {
        M::Mov => Kind::Mov,
        M::Movzx => Kind::Movzx,
        M::Movsx | M::Movsxd => Kind::Movsx,
        M::Lea => Kind::Lea,
        M::Add => Kind::Add,
        M::Adc => Kind::Adc,
        M::Sub => Kind::Sub,
        M::Sbb => Kind::Sbb,
        M::Cmp => Kind::Cmp,
        M::And => Kind::And,
        M::Or => Kind::Or,
        M::Xor => Kind::Xor,
        M::Test => Kind::Test,
        M::Inc => Kind::Inc,
        M::Dec => Kind::Dec,
        M::Neg => Kind::Neg,
        M::Not => Kind::Not,
        M::Jo
        | M::Jno
        | M::Jb
        | M::Jae
        | M::Je
        | M::Jne
        | M::Jbe
        | M::Ja
        | M::Js
        | M::Jns
        | M::Jp
        | M::Jnp
        | M::Jl
        | M::Jge
        | M::Jle
        | M::Jg => Kind::Jcc,
        M::Jmp => Kind::Jmp,
        M::Call => Kind::Call,
        M::Ret => Kind::Ret,
        M::Push => Kind::Push,
        M::Pop => Kind::Pop,
        M::Cmovo
        | M::Cmovno
        | M::Cmovb
        | M::Cmovae
        | M::Cmove
        | M::Cmovne
        | M::Cmovbe
        | M::Cmova
        | M::Cmovs
        | M::Cmovns
        | M::Cmovp
        | M::Cmovnp
        | M::Cmovl
        | M::Cmovge
        | M::Cmovle
        | M::Cmovg => Kind::Cmov,
        M::Seto
        | M::Setno
        | M::Setb
        | M::Setae
        | M::Sete
        | M::Setne
        | M::Setbe
        | M::Seta
        | M::Sets
        | M::Setns
        | M::Setp
        | M::Setnp
        | M::Setl
        | M::Setge
        | M::Setle
        | M::Setg => Kind::Setcc,
        M::Nop | M::Pause | M::Lfence | M::Mfence | M::Sfence | M::Endbr32 | M::Endbr64 => {
            Kind::Nop
        }
        M::Shl | M::Sal => Kind::Shl,
        M::Shr => Kind::Shr,
        M::Sar => Kind::Sar,
        _ => return None,
    };
    let mut f = Fast { kind, ..base };
    if kind == Kind::Nop {
        // No operand is touched (the multi-byte NOP's memory operand included).
        return Some(f);
    }
    // Operand locations and sizes.
    let n = i.op_count();
    if n > 2 {
        return None;
    }
    let mut locs = [NONE; 2];
    let mut sizes = [0usize; 2];
    for k in 0..n.min(2) {
        let (loc, size) = match i.op_kind(k) {
            OpKind::Register => reg(i.op_register(k))?,
            OpKind::Memory => {
                let size = i.memory_size().size();
                // LEA only computes the address (iced gives it no memory size).
                if kind != Kind::Lea && !matches!(size, 1 | 2 | 4 | 8) {
                    return None;
                }
                (MEM, size)
            }
            OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64 => {
                f.imm = i.immediate(k);
                (IMM, ops::op_size(i, k))
            }
            OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
                f.imm = i.near_branch_target();
                (IMM, 0)
            }
            _ => return None,
        };
        locs[k as usize] = loc;
        sizes[k as usize] = size;
    }
    if locs.contains(&MEM) {
        let s = ops::sreg_index(i.memory_segment())?;
        let base = i.memory_base();
        let index = i.memory_index();
        let asz = ops::addr_size(cpu, i);
        f.seg = s as u8;
        f.amask = mask(asz);
        f.disp = i.memory_displacement64();
        if base != Register::None && base != Register::RIP && base != Register::EIP {
            let (b, bs) = reg(base)?;
            if b >= HIGH || bs != asz {
                return None;
            }
            f.base = b;
        }
        if index != Register::None {
            let (x, xs) = reg(index)?;
            if x >= HIGH || xs != asz {
                return None;
            }
            f.index = x;
            f.scale = i.memory_index_scale() as u8;
        }
    }
    f.dst = locs[0];
    f.src = locs[1];
    f.size = sizes[0] as u8;
    match kind {
        Kind::Mov
        | Kind::Add
        | Kind::Adc
        | Kind::Sub
        | Kind::Sbb
        | Kind::Cmp
        | Kind::And
        | Kind::Or
        | Kind::Xor
        | Kind::Test
        | Kind::Cmov => {
            if n != 2 || f.dst == IMM || sizes[1] != sizes[0] {
                return None;
            }
        }
        Kind::Movzx | Kind::Movsx => {
            if n != 2 || f.dst == MEM || f.src == IMM {
                return None;
            }
            f.ssize = sizes[1] as u8;
        }
        Kind::Lea => {
            if n != 2 || f.src != MEM || f.dst == MEM {
                return None;
            }
        }
        Kind::Inc | Kind::Dec | Kind::Neg | Kind::Not | Kind::Setcc => {
            if n != 1 || f.dst == IMM {
                return None;
            }
        }
        Kind::Jcc => {
            if n != 1 || f.dst != IMM || i.op0_kind() == OpKind::Register {
                return None;
            }
        }
        Kind::Jmp | Kind::Call => {
            if n != 1
                || !matches!(
                    i.op0_kind(),
                    OpKind::NearBranch16
                        | OpKind::NearBranch32
                        | OpKind::NearBranch64
                        | OpKind::Register
                        | OpKind::Memory
                )
            {
                return None;
            }
            if matches!(
                i.code(),
                Code::Jmp_m1616
                    | Code::Jmp_m1632
                    | Code::Jmp_m1664
                    | Code::Call_m1616
                    | Code::Call_m1632
                    | Code::Call_m1664
            ) {
                return None;
            }
            if kind == Kind::Call {
                let size = (-i.stack_pointer_increment()) as usize;
                if !matches!(size, 2 | 4 | 8) {
                    return None;
                }
                f.ssize = size as u8;
            }
            if f.dst != IMM {
                // Indirect: the target is read from the operand.
                f.src = f.dst;
            }
        }
        Kind::Ret => {
            let size = match i.code() {
                Code::Retnw | Code::Retnw_imm16 => 2,
                Code::Retnd | Code::Retnd_imm16 => 4,
                Code::Retnq | Code::Retnq_imm16 => 8,
                _ => return None,
            }
            .min((i.stack_pointer_increment() as usize).max(2));
            f.ssize = size as u8;
            f.imm = if n > 0 { i.immediate(0) & 0xffff } else { 0 };
        }
        Kind::Push => {
            let size = (-i.stack_pointer_increment()) as usize;
            if n != 1 || !matches!(size, 2 | 4 | 8) {
                return None;
            }
            f.ssize = size as u8;
        }
        Kind::Pop => {
            let size = i.stack_pointer_increment() as usize;
            if n != 1 || !matches!(size, 2 | 4 | 8) || f.dst >= MEM {
                return None;
            }
            f.ssize = size as u8;
        }
        Kind::Shl | Kind::Shr | Kind::Sar => {
            // The count: an immediate (1 included) or CL.
            if n != 2 || f.dst == IMM || !(f.src == IMM || f.src == 1 && sizes[1] == 1) {
                return None;
            }
        }
        Kind::Nop => {}
        Kind::Slow => return None,
    }
    Some(f)
}

#[inline(always)]
fn ea(cpu: &Cpu, f: &Fast) -> u64 {
    let mut a = f.disp;
    if f.base != NONE {
        a = a.wrapping_add(cpu.gpr[f.base as usize & 15]);
    }
    if f.index != NONE {
        a = a.wrapping_add(cpu.gpr[f.index as usize & 15].wrapping_mul(f.scale as u64));
    }
    a & f.amask
}

/// Read the operand at `loc`, zero-extended from `size`.
#[inline(always)]
fn rd(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    f: &Fast,
    loc: u8,
    size: usize,
) -> Result<u64, Exception> {
    match loc {
        0..=15 => Ok(cpu.gpr[loc as usize] & mask(size)),
        16..=19 => Ok((cpu.gpr[(loc - HIGH) as usize] >> 8) & 0xff),
        MEM => {
            let off = ea(cpu, f);
            ops::read_mem(cpu, mem, f.seg as usize, off, size)
        }
        _ => Ok(f.imm & mask(size)),
    }
}

/// Write the operand at `loc` (GPR write rules; memory writes `size` bytes).
#[inline(always)]
fn wr(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    f: &Fast,
    loc: u8,
    size: usize,
    v: u64,
) -> Result<(), Exception> {
    match loc {
        0..=15 => {
            write_sized_gpr(cpu, loc as usize, size, v);
            Ok(())
        }
        16..=19 => {
            let r = &mut cpu.gpr[(loc - HIGH) as usize];
            *r = (*r & !0xff00) | ((v & 0xff) << 8);
            Ok(())
        }
        MEM => {
            let off = ea(cpu, f);
            ops::write_mem(cpu, mem, f.seg as usize, off, size, v)
        }
        _ => Err(Exception::InvalidOpcode),
    }
}

/// Execute `i` (classified as `f`): on success RIP is the next instruction or the
/// branch target; on error RIP and all state are unchanged.
#[inline]
pub(crate) fn exec(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    f: &Fast,
    i: &Instruction,
) -> Result<(), Exception> {
    if f.kind == Kind::Slow {
        return exec::execute_slow(cpu, mem, i);
    }
    exec_fast(cpu, mem, f)
}

/// [`exec`] of an instruction that is not [`Kind::Slow`].
#[inline(always)]
pub(crate) fn exec_fast(cpu: &mut Cpu, mem: &mut dyn Memory, f: &Fast) -> Result<(), Exception> {
    let rip = cpu.rip;
    cpu.rip = f.next;
    let r = run(cpu, mem, f);
    if r.is_err() {
        cpu.rip = rip;
    }
    r
}

#[inline(always)]
fn run(cpu: &mut Cpu, mem: &mut dyn Memory, f: &Fast) -> Result<(), Exception> {
    let size = f.size as usize;
    match f.kind {
        Kind::Mov => {
            let v = rd(cpu, mem, f, f.src, size)?;
            wr(cpu, mem, f, f.dst, size, v)
        }
        Kind::Add
        | Kind::Adc
        | Kind::Sub
        | Kind::Sbb
        | Kind::Cmp
        | Kind::And
        | Kind::Or
        | Kind::Xor
        | Kind::Test => {
            let a = rd(cpu, mem, f, f.dst, size)?;
            let b = rd(cpu, mem, f, f.src, size)?;
            let cf = cpu.rflags & CF != 0;
            let (res, fl) = match f.kind {
                Kind::Add => add(a, b, false, size),
                Kind::Adc => add(a, b, cf, size),
                Kind::Sub | Kind::Cmp => sub(a, b, false, size),
                Kind::Sbb => sub(a, b, cf, size),
                Kind::And | Kind::Test => (a & b, logic(a & b, size)),
                Kind::Or => (a | b, logic(a | b, size)),
                _ => (a ^ b, logic(a ^ b, size)),
            };
            if !matches!(f.kind, Kind::Cmp | Kind::Test) {
                wr(cpu, mem, f, f.dst, size, res)?;
            }
            cpu.set_flags(STATUS, fl);
            Ok(())
        }
        Kind::Inc | Kind::Dec | Kind::Neg | Kind::Not => {
            let a = rd(cpu, mem, f, f.dst, size)?;
            let (res, fl, which) = match f.kind {
                Kind::Inc => {
                    let (r, fl) = add(a, 1, false, size);
                    (r, fl, STATUS & !CF)
                }
                Kind::Dec => {
                    let (r, fl) = sub(a, 1, false, size);
                    (r, fl, STATUS & !CF)
                }
                Kind::Neg => {
                    let (r, fl) = sub(0, a, false, size);
                    (r, fl, STATUS)
                }
                _ => (!a & mask(size), 0, 0),
            };
            wr(cpu, mem, f, f.dst, size, res)?;
            cpu.set_flags(which, fl);
            Ok(())
        }
        Kind::Movzx => {
            let s = f.ssize as usize;
            let v = rd(cpu, mem, f, f.src, s)? & mask(s);
            wr(cpu, mem, f, f.dst, size, v)
        }
        Kind::Movsx => {
            let s = f.ssize as usize;
            let v = sext(rd(cpu, mem, f, f.src, s)?, s);
            wr(cpu, mem, f, f.dst, size, v)
        }
        Kind::Lea => {
            let a = ea(cpu, f);
            wr(cpu, mem, f, f.dst, size, a)
        }
        Kind::Jcc => {
            if cond(f.cc, cpu.rflags) {
                exec::near_jump(cpu, f.imm)?;
            }
            Ok(())
        }
        Kind::Jmp => {
            let t = if f.dst == IMM {
                f.imm
            } else {
                rd(cpu, mem, f, f.src, size)?
            };
            exec::near_jump(cpu, t)
        }
        Kind::Call => {
            let target = if f.dst == IMM {
                f.imm
            } else {
                rd(cpu, mem, f, f.src, size)?
            };
            let s = f.ssize as usize;
            exec::check_near_target(cpu, target & mask(s))?;
            ops::push(cpu, mem, s, cpu.rip)?;
            cpu.rip = target & mask(s);
            Ok(())
        }
        Kind::Ret => {
            let s = f.ssize as usize;
            let target = ops::peek(cpu, mem, 0, s)?;
            exec::check_near_target(cpu, target)?;
            let sp = cpu.gpr[RSP];
            ops::set_sp(cpu, sp.wrapping_add(s as u64).wrapping_add(f.imm));
            cpu.rip = target;
            Ok(())
        }
        Kind::Push => {
            let v = if f.dst == IMM {
                f.imm
            } else {
                rd(cpu, mem, f, f.dst, size)?
            };
            ops::push(cpu, mem, f.ssize as usize, v)
        }
        Kind::Pop => {
            let s = f.ssize as usize;
            let v = ops::peek(cpu, mem, 0, s)?;
            let sp = cpu.gpr[RSP].wrapping_add(s as u64);
            ops::set_sp(cpu, sp);
            // A register destination: cannot fault.
            wr(cpu, mem, f, f.dst, size, v)
        }
        Kind::Cmov => {
            let s = rd(cpu, mem, f, f.src, size)?;
            let v = if cond(f.cc, cpu.rflags) {
                s
            } else {
                rd(cpu, mem, f, f.dst, size)?
            };
            wr(cpu, mem, f, f.dst, size, v)
        }
        Kind::Setcc => {
            let v = cond(f.cc, cpu.rflags) as u64;
            wr(cpu, mem, f, f.dst, size, v)
        }
        Kind::Shl | Kind::Shr | Kind::Sar => {
            // As shift::shift: the count masked to 5 (6) bits; a zero count changes no
            // flag but still writes a register destination; AF is cleared.
            let a = rd(cpu, mem, f, f.dst, size)?;
            let count = (rd(cpu, mem, f, f.src, 1)? & if size == 8 { 0x3f } else { 0x1f }) as u32;
            if count == 0 {
                if f.dst < MEM {
                    wr(cpu, mem, f, f.dst, size, a)?;
                }
                return Ok(());
            }
            let nb = bits(size);
            let msk = mask(size);
            let sgn = sign(size);
            let (res, fl) = match f.kind {
                Kind::Shl => {
                    let wide = (a as u128) << count;
                    let res = (wide as u64) & msk;
                    let cf = (wide >> nb) & 1 != 0;
                    let mut fl = szp(res, size);
                    if cf {
                        fl |= CF;
                    }
                    if ((res & sgn != 0) as u8 ^ cf as u8) != 0 {
                        fl |= OF;
                    }
                    (res, fl)
                }
                Kind::Shr => {
                    let res = if count >= nb { 0 } else { a >> count };
                    let cf = count <= nb && (a >> (count - 1)) & 1 != 0;
                    let mut fl = szp(res, size);
                    if cf {
                        fl |= CF;
                    }
                    if a & sgn != 0 {
                        fl |= OF;
                    }
                    (res, fl)
                }
                _ => {
                    let sv = sext(a, size) as i64;
                    let res = ((sv >> count.min(63)) as u64) & msk;
                    let cf = (sv >> (count - 1).min(63)) & 1 != 0;
                    let mut fl = szp(res, size);
                    if cf {
                        fl |= CF;
                    }
                    (res, fl)
                }
            };
            wr(cpu, mem, f, f.dst, size, res)?;
            cpu.set_flags(STATUS, fl & !AF);
            Ok(())
        }
        Kind::Nop => Ok(()),
        Kind::Slow => Err(Exception::InvalidOpcode),
    }
}
