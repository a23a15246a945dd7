//! Decoding and execution of one instruction in 64-bit mode.
//!
//! [`decode_at`] turns guest bytes at RIP into an [`Instruction`]; [`execute`] runs an
//! already-decoded instruction. [`step`] is the two together. Keeping them apart is what
//! lets a decoded-instruction cache (keyed by physical page, later) skip decoding.
//!
//! Fault semantics: when [`execute`] returns an error, RIP still points at the
//! instruction and no register or memory state was changed, except for REP string
//! instructions, which (as on hardware) keep the iterations already completed.

use crate::cpu::{CF, Cpu, DF, RAX, RCX, RDX, RSP};
use crate::flags::{cond, mask, sext};
use crate::mem::{Fault, Memory};
use crate::ops::{ea_offset, op_size, read_op, write_op};
use crate::{alu, bits, muldiv, shift, string};
use iced_x86::{Code, Decoder, DecoderError, DecoderOptions, Instruction, Mnemonic, OpKind};

/// An architectural exception raised by an instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exception {
    /// #DE: divide by zero or quotient overflow.
    DivideError,
    /// #UD: undefined, or not implemented by this interpreter yet.
    InvalidOpcode,
    /// #GP(0) (reserved for the system side; not raised by the integer core yet).
    GeneralProtection,
    /// A memory access failed (becomes #PF/#GP once paging exists).
    PageFault(Fault),
}

impl From<Fault> for Exception {
    fn from(f: Fault) -> Self {
        Exception::PageFault(f)
    }
}

/// Fetch and decode the instruction at `cpu.rip` (64-bit mode).
pub fn decode_at(cpu: &Cpu, mem: &mut dyn Memory) -> Result<Instruction, Exception> {
    let mut buf = [0u8; 15];
    let mut n = 0usize;
    let mut fetch_fault = None;
    while n < buf.len() {
        match mem.read_u8(cpu.rip.wrapping_add(n as u64)) {
            Ok(b) => buf[n] = b,
            Err(f) => {
                fetch_fault = Some(f);
                break;
            }
        }
        n += 1;
    }
    let mut dec = Decoder::with_ip(64, &buf[..n], cpu.rip, DecoderOptions::NONE);
    let instr = dec.decode();
    if instr.is_invalid() {
        if let (DecoderError::NoMoreBytes, Some(f)) = (dec.last_error(), fetch_fault) {
            return Err(Exception::PageFault(Fault {
                addr: f.addr,
                write: false,
            }));
        }
        return Err(Exception::InvalidOpcode);
    }
    Ok(instr)
}

/// Decode and execute one instruction.
pub fn step(cpu: &mut Cpu, mem: &mut dyn Memory) -> Result<(), Exception> {
    let instr = decode_at(cpu, mem)?;
    execute(cpu, mem, &instr)
}

/// Execute one decoded instruction. On success RIP is the next instruction (or the
/// branch target); on error RIP is unchanged.
pub fn execute(cpu: &mut Cpu, mem: &mut dyn Memory, i: &Instruction) -> Result<(), Exception> {
    let rip = cpu.rip;
    cpu.rip = i.next_ip();
    let r = dispatch(cpu, mem, i);
    if r.is_err() {
        cpu.rip = rip;
    }
    r
}

fn lockable(m: Mnemonic) -> bool {
    use Mnemonic::*;
    matches!(
        m,
        Add | Adc
            | Sub
            | Sbb
            | And
            | Or
            | Xor
            | Inc
            | Dec
            | Neg
            | Not
            | Xchg
            | Xadd
            | Cmpxchg
            | Bts
            | Btr
            | Btc
    )
}

fn dispatch(cpu: &mut Cpu, mem: &mut dyn Memory, i: &Instruction) -> Result<(), Exception> {
    use Mnemonic::*;
    let m = i.mnemonic();
    if i.has_lock_prefix() && (!lockable(m) || i.op0_kind() != OpKind::Memory) {
        return Err(Exception::InvalidOpcode);
    }
    if string::is_string(i) {
        return string::exec(cpu, mem, i);
    }
    match m {
        Add | Adc | Sub | Sbb | Cmp | And | Or | Xor | Test => alu::binary(cpu, mem, i, m),
        Inc | Dec | Neg | Not => alu::unary(cpu, mem, i, m),
        Shl | Sal | Shr | Sar | Rol | Ror | Rcl | Rcr => shift::shift(cpu, mem, i, m),
        Shld | Shrd => shift::double(cpu, mem, i, m),
        Mul | Imul | Div | Idiv => muldiv::exec(cpu, mem, i, m),
        Bt | Bts | Btr | Btc => bits::bt(cpu, mem, i, m),
        Bsf | Bsr => bits::bsf_bsr(cpu, mem, i, m),
        Bswap => bits::bswap(cpu, i),
        Mov => {
            // Plain GPR/memory/immediate moves only; segment, control and debug
            // register moves fail operand access with #UD.
            let v = read_op(cpu, mem, i, 1)?;
            write_op(cpu, mem, i, 0, v)
        }
        Movzx => {
            let v = read_op(cpu, mem, i, 1)? & mask(op_size(i, 1));
            write_op(cpu, mem, i, 0, v)
        }
        Movsx | Movsxd => {
            let v = sext(read_op(cpu, mem, i, 1)?, op_size(i, 1));
            write_op(cpu, mem, i, 0, v)
        }
        Lea => {
            if i.op1_kind() != OpKind::Memory {
                return Err(Exception::InvalidOpcode);
            }
            let a = ea_offset(cpu, i)?;
            write_op(cpu, mem, i, 0, a)
        }
        Xchg => {
            let a = read_op(cpu, mem, i, 0)?;
            let b = read_op(cpu, mem, i, 1)?;
            // Memory (if any) is operand 0; write it first so a fault changes nothing.
            write_op(cpu, mem, i, 0, b)?;
            write_op(cpu, mem, i, 1, a)
        }
        Xadd => {
            let size = op_size(i, 0);
            let d = read_op(cpu, mem, i, 0)?;
            let s = read_op(cpu, mem, i, 1)?;
            let (sum, f) = crate::flags::add(d, s, false, size);
            if i.op0_kind() == OpKind::Memory {
                write_op(cpu, mem, i, 0, sum)?;
                write_op(cpu, mem, i, 1, d)?;
            } else {
                // TEMP := SRC + DEST; SRC := DEST; DEST := TEMP (same register: the sum).
                write_op(cpu, mem, i, 1, d)?;
                write_op(cpu, mem, i, 0, sum)?;
            }
            cpu.set_flags(crate::cpu::STATUS, f);
            Ok(())
        }
        Cmpxchg => {
            let size = op_size(i, 0);
            let d = read_op(cpu, mem, i, 0)?;
            let s = read_op(cpu, mem, i, 1)?;
            let acc = cpu.gpr[RAX] & mask(size);
            let (_, f) = crate::flags::sub(acc, d, false, size);
            if acc == d {
                write_op(cpu, mem, i, 0, s)?;
            } else {
                if i.op0_kind() == OpKind::Memory {
                    // The processor always writes the destination back.
                    write_op(cpu, mem, i, 0, d)?;
                }
                write_acc(cpu, size, d);
            }
            cpu.set_flags(crate::cpu::STATUS, f);
            Ok(())
        }
        Cbw | Cwde | Cdqe => {
            let size = match m {
                Cbw => 2,
                Cwde => 4,
                _ => 8,
            };
            let v = sext(cpu.gpr[RAX], size / 2);
            write_acc(cpu, size, v);
            Ok(())
        }
        Cwd | Cdq | Cqo => {
            let size = match m {
                Cwd => 2,
                Cdq => 4,
                _ => 8,
            };
            let neg = sext(cpu.gpr[RAX], size) >> 63 != 0;
            let v = if neg { u64::MAX } else { 0 };
            write_sized_gpr(cpu, RDX, size, v);
            Ok(())
        }
        Clc | Stc | Cmc => {
            let v = match m {
                Clc => 0,
                Stc => CF,
                _ => !cpu.rflags & CF,
            };
            cpu.set_flags(CF, v);
            Ok(())
        }
        Cld => {
            cpu.set_flags(DF, 0);
            Ok(())
        }
        Std => {
            cpu.set_flags(DF, DF);
            Ok(())
        }
        Nop | Pause => Ok(()),
        Seto | Setno | Setb | Setae | Sete | Setne | Setbe | Seta | Sets | Setns | Setp | Setnp
        | Setl | Setge | Setle | Setg => {
            let v = cond(i.condition_code(), cpu.rflags) as u64;
            write_op(cpu, mem, i, 0, v)
        }
        Cmovo | Cmovno | Cmovb | Cmovae | Cmove | Cmovne | Cmovbe | Cmova | Cmovs | Cmovns
        | Cmovp | Cmovnp | Cmovl | Cmovge | Cmovle | Cmovg => {
            let s = read_op(cpu, mem, i, 1)?;
            // A 32-bit CMOV writes (and so zero-extends) the destination either way.
            let v = if cond(i.condition_code(), cpu.rflags) {
                s
            } else {
                read_op(cpu, mem, i, 0)?
            };
            write_op(cpu, mem, i, 0, v)
        }
        Jo | Jno | Jb | Jae | Je | Jne | Jbe | Ja | Js | Jns | Jp | Jnp | Jl | Jge | Jle | Jg => {
            if cond(i.condition_code(), cpu.rflags) {
                cpu.rip = branch_target(i)?;
            }
            Ok(())
        }
        Jmp => {
            cpu.rip = branch_target_or_op(cpu, mem, i)?;
            Ok(())
        }
        Loop | Loope | Loopne | Jrcxz | Jecxz => {
            let addr32 = matches!(
                i.code(),
                Code::Loop_rel8_64_ECX
                    | Code::Loope_rel8_64_ECX
                    | Code::Loopne_rel8_64_ECX
                    | Code::Jecxz_rel8_64
            );
            let size = if addr32 { 4 } else { 8 };
            let mut c = cpu.gpr[RCX] & mask(size);
            let taken = if matches!(m, Jrcxz | Jecxz) {
                c == 0
            } else {
                c = c.wrapping_sub(1) & mask(size);
                write_sized_gpr(cpu, RCX, size, c);
                let zf = cpu.flag(crate::cpu::ZF);
                c != 0
                    && match m {
                        Loope => zf,
                        Loopne => !zf,
                        _ => true,
                    }
            };
            if taken {
                cpu.rip = branch_target(i)?;
            }
            Ok(())
        }
        Call => {
            let target = branch_target_or_op(cpu, mem, i)?;
            push(cpu, mem, 8, i.next_ip())?;
            cpu.rip = target;
            Ok(())
        }
        Ret => {
            let size = if matches!(i.code(), Code::Retnw | Code::Retnw_imm16) {
                2
            } else {
                8
            };
            let rsp = cpu.gpr[RSP];
            let target = mem.read_sized(rsp, size)?;
            let extra = if i.op_count() > 0 {
                i.immediate(0) & 0xffff
            } else {
                0
            };
            cpu.gpr[RSP] = rsp.wrapping_add(size as u64).wrapping_add(extra);
            cpu.rip = target;
            Ok(())
        }
        Push => {
            let size = op_size(i, 0);
            if size != 2 && size != 8 {
                return Err(Exception::InvalidOpcode);
            }
            let v = read_op(cpu, mem, i, 0)?;
            push(cpu, mem, size, v)
        }
        Pop => {
            let size = op_size(i, 0);
            if size != 2 && size != 8 {
                return Err(Exception::InvalidOpcode);
            }
            let rsp = cpu.gpr[RSP];
            let v = mem.read_sized(rsp, size)?;
            // The destination address is computed with RSP already incremented.
            let saved = cpu.gpr[RSP];
            cpu.gpr[RSP] = rsp.wrapping_add(size as u64);
            if let Err(e) = write_op(cpu, mem, i, 0, v) {
                cpu.gpr[RSP] = saved;
                return Err(e);
            }
            Ok(())
        }
        _ if crate::sse::handles(m) => crate::sse::exec(cpu, mem, i),
        _ if crate::x87::handles(m) => crate::x87::exec(cpu, mem, i),
        _ => Err(Exception::InvalidOpcode),
    }
}

fn branch_target(i: &Instruction) -> Result<u64, Exception> {
    match i.op0_kind() {
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
            Ok(i.near_branch_target())
        }
        _ => Err(Exception::InvalidOpcode),
    }
}

/// Target of a near JMP/CALL: relative, or register/memory indirect (64-bit only).
fn branch_target_or_op(cpu: &Cpu, mem: &mut dyn Memory, i: &Instruction) -> Result<u64, Exception> {
    match i.op0_kind() {
        OpKind::Register | OpKind::Memory => {
            if op_size(i, 0) != 8 {
                return Err(Exception::InvalidOpcode);
            }
            read_op(cpu, mem, i, 0)
        }
        _ => branch_target(i),
    }
}

fn push(cpu: &mut Cpu, mem: &mut dyn Memory, size: usize, v: u64) -> Result<(), Exception> {
    let rsp = cpu.gpr[RSP].wrapping_sub(size as u64);
    mem.write_sized(rsp, size, v)?;
    cpu.gpr[RSP] = rsp;
    Ok(())
}

/// Write the low `size` bytes of GPR `idx` with the 32-bit zero-extension rule.
pub(crate) fn write_sized_gpr(cpu: &mut Cpu, idx: usize, size: usize, v: u64) {
    let old = cpu.gpr[idx];
    cpu.gpr[idx] = match size {
        1 => (old & !0xff) | (v & 0xff),
        2 => (old & !0xffff) | (v & 0xffff),
        4 => v & 0xffff_ffff,
        _ => v,
    };
}

/// Write AL/AX/EAX/RAX.
pub(crate) fn write_acc(cpu: &mut Cpu, size: usize, v: u64) {
    write_sized_gpr(cpu, RAX, size, v);
}
