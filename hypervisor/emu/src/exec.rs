//! Decoding and execution of one instruction, in 16-, 32- or 64-bit code.
//!
//! [`decode_at`] turns guest bytes at CS:RIP into an [`Instruction`] (decoded with the
//! current code size); [`execute`] runs an already-decoded instruction. [`step`] is the
//! two together, without exception delivery (the run loop in `vcpu` delivers).
//!
//! Fault semantics: when [`execute`] returns an error, RIP still points at the
//! instruction and no register or memory state was changed, except for REP string
//! instructions, which (as on hardware) keep the iterations already completed.

use crate::cpu::{CF, Cpu, DF, RAX, RCX, RDX};
use crate::flags::{cond, mask, sext};
use crate::mem::{Fault, Memory};
use crate::mmu::{self, Access};
use crate::ops::{self, ea_offset, op_size, read_op, write_op};
use crate::{alu, bits, far, legacy, muldiv, shift, string, system};
use iced_x86::{Code, Decoder, DecoderError, DecoderOptions, Instruction, Mnemonic, OpKind};

/// An architectural exception (or software interrupt) raised by an instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exception {
    /// #DE: divide by zero or quotient overflow.
    DivideError,
    /// #UD: undefined, or not implemented by this interpreter.
    InvalidOpcode,
    /// #GP with its error code.
    GeneralProtection(u32),
    /// #SS with its error code.
    StackFault(u32),
    /// #NP with its error code.
    NotPresent(u32),
    /// #TS with its error code.
    InvalidTss(u32),
    /// #PF: the linear address (CR2) and the error code.
    PageFault { addr: u64, code: u32 },
    /// A physical address the [`Memory`] does not back (test memories only).
    Unbacked(Fault),
    /// Another exception by vector (#DB, #BR, #NM, #MF, #AC, #XM); error code 0 for
    /// those that push one.
    Vector(u8),
    /// INT n / INT3 / INTO: a software interrupt, delivered as a trap.
    SoftInt(u8),
    /// Something this CPU refuses to emulate (hardware task switch, virtual-8086
    /// mode): the vCPU shuts down with this reason.
    Unsupported(&'static str),
}

impl Exception {
    /// The vector (`None` for [`Exception::Unsupported`]; `Unbacked` is #GP).
    pub fn vector(&self) -> Option<u8> {
        Some(match self {
            Exception::DivideError => 0,
            Exception::InvalidOpcode => 6,
            Exception::GeneralProtection(_) | Exception::Unbacked(_) => 13,
            Exception::StackFault(_) => 12,
            Exception::NotPresent(_) => 11,
            Exception::InvalidTss(_) => 10,
            Exception::PageFault { .. } => 14,
            Exception::Vector(v) | Exception::SoftInt(v) => *v,
            Exception::Unsupported(_) => return None,
        })
    }

    /// The error code pushed on delivery, if the vector has one.
    pub fn error_code(&self) -> Option<u32> {
        match *self {
            Exception::GeneralProtection(c)
            | Exception::StackFault(c)
            | Exception::NotPresent(c)
            | Exception::InvalidTss(c) => Some(c),
            Exception::PageFault { code, .. } => Some(code),
            Exception::Unbacked(_) => Some(0),
            Exception::Vector(8 | 17) => Some(0),
            _ => None,
        }
    }
}

impl From<Fault> for Exception {
    fn from(f: Fault) -> Self {
        Exception::Unbacked(f)
    }
}

/// A fetched instruction and where it came from.
pub(crate) struct Fetched {
    pub instr: Instruction,
    /// Physical address of the first byte.
    pub phys: u64,
    /// Entirely inside one RAM page: may be cached by physical address.
    pub cacheable: bool,
}

/// Fetch and decode the instruction at CS:RIP with the current code size.
pub(crate) fn fetch_decode(cpu: &mut Cpu, mem: &mut dyn Memory) -> Result<Fetched, Exception> {
    let bitness = cpu.bitness();
    let rip = cpu.rip;
    let lin = ops::code_linear(cpu, rip)?;
    // Bytes available before the CS limit (a 64-bit segment has none).
    let mut max = 15usize;
    if bitness != 64 {
        let left = (cpu.seg[crate::cpu::CS].limit as u64).saturating_sub(rip) + 1;
        max = max.min(left as usize);
    }
    let user = cpu.cpl() == 3;
    let phys = mmu::translate(cpu, mem, lin, Access::Exec, user)?;
    let mut buf = [0u8; 15];
    let first = max.min(0x1000 - (lin & 0xfff) as usize);
    let (got, mut ram, mut late_fault) = fetch_some(mem, phys, &mut buf[..first]);
    if got == 0 {
        return Err(late_fault.unwrap_or(Exception::InvalidOpcode));
    }
    let mut n = got;
    let mut dec = Decoder::with_ip(bitness, &buf[..n], rip, DecoderOptions::NONE);
    let mut instr = dec.decode();
    // The next page is touched only when the instruction really continues there.
    if instr.is_invalid()
        && dec.last_error() == DecoderError::NoMoreBytes
        && got == first
        && first < max
    {
        let lin2 = ops::code_linear(cpu, rip.wrapping_add(first as u64)).map(|l| l & !0xfff);
        match lin2.and_then(|l| mmu::translate(cpu, mem, l, Access::Exec, user)) {
            Ok(p2) => {
                let (got2, r, f) = fetch_some(mem, p2, &mut buf[first..max]);
                ram &= r;
                n += got2;
                late_fault = f;
            }
            Err(e) => late_fault = Some(e),
        }
        dec = Decoder::with_ip(bitness, &buf[..n], rip, DecoderOptions::NONE);
        instr = dec.decode();
    }
    if instr.is_invalid() {
        if dec.last_error() == DecoderError::NoMoreBytes {
            if let Some(e) = late_fault {
                return Err(e);
            }
            // Ran into the CS limit.
            if n < 15 && bitness != 64 {
                return Err(Exception::GeneralProtection(0));
            }
        }
        return Err(Exception::InvalidOpcode);
    }
    Ok(Fetched {
        cacheable: ram && instr.len() <= first,
        instr,
        phys,
    })
}

/// Fetch as many bytes as the memory has (a test memory may end mid-buffer): the count,
/// whether it was all RAM, and the fault that stopped it.
fn fetch_some(mem: &mut dyn Memory, phys: u64, buf: &mut [u8]) -> (usize, bool, Option<Exception>) {
    match mem.fetch(phys, buf) {
        Ok((n, ram)) => (n.min(buf.len()), ram, None),
        Err(_) => {
            let mut ram = true;
            for k in 0..buf.len() {
                match mem.fetch(phys.wrapping_add(k as u64), &mut buf[k..k + 1]) {
                    Ok((1, r)) => ram &= r,
                    Ok(_) => return (k, ram, None),
                    Err(f) => return (k, ram, Some(Exception::Unbacked(f))),
                }
            }
            (buf.len(), ram, None)
        }
    }
}

/// Fetch and decode the instruction at CS:RIP.
pub fn decode_at(cpu: &mut Cpu, mem: &mut dyn Memory) -> Result<Instruction, Exception> {
    fetch_decode(cpu, mem).map(|f| f.instr)
}

/// Decode and execute one instruction (no exception delivery).
pub fn step(cpu: &mut Cpu, mem: &mut dyn Memory) -> Result<(), Exception> {
    let instr = decode_at(cpu, mem)?;
    execute(cpu, mem, &instr)
}

/// Execute one decoded instruction. On success RIP is the next instruction (or the
/// branch target); on error RIP is unchanged. (The run loop caches the classification
/// [`crate::fast`] makes here; this entry point classifies on every call.)
pub fn execute(cpu: &mut Cpu, mem: &mut dyn Memory, i: &Instruction) -> Result<(), Exception> {
    let f = crate::fast::classify(cpu, i);
    crate::fast::exec(cpu, mem, &f, i)
}

/// The general path of [`execute`]: every instruction, by mnemonic.
pub(crate) fn execute_slow(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    i: &Instruction,
) -> Result<(), Exception> {
    let rip = cpu.rip;
    cpu.rip = i.next_ip() & cpu.ip_mask();
    let r = if crate::atomic::is_locked(i) {
        crate::atomic::execute(cpu, mem, i, dispatch)
    } else {
        dispatch(cpu, mem, i)
    };
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
            | Cmpxchg8b
            | Cmpxchg16b
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
        // F3 0F BC/BD on a CPU without BMI1/ABM (not in our CPUID) are BSF/BSR with an
        // ignored REP prefix; compilers emit `rep bsf` for exactly that reason.
        Tzcnt => bits::bsf_bsr(cpu, mem, i, Bsf),
        Lzcnt => bits::bsf_bsr(cpu, mem, i, Bsr),
        Popcnt => {
            let size = op_size(i, 0);
            let v = read_op(cpu, mem, i, 1)? & mask(size);
            write_op(cpu, mem, i, 0, v.count_ones() as u64)?;
            cpu.set_flags(crate::cpu::STATUS, if v == 0 { crate::cpu::ZF } else { 0 });
            Ok(())
        }
        // MOVNTI: a plain store (the non-temporal hint has no architectural effect).
        Movnti => {
            let v = read_op(cpu, mem, i, 1)?;
            write_op(cpu, mem, i, 0, v)
        }
        Bswap => bits::bswap(cpu, i),
        Mov => {
            if i.op0_kind() == OpKind::Register {
                let r = i.op0_register();
                if r.is_segment_register() {
                    let v = read_op(cpu, mem, i, 1)?;
                    return system::mov_to_sreg(cpu, mem, r, v as u16);
                }
                if r.is_cr() || r.is_dr() {
                    return system::mov_to_crdr(cpu, mem, i);
                }
            }
            if i.op1_kind() == OpKind::Register {
                let r = i.op1_register();
                if r.is_cr() || r.is_dr() {
                    return system::mov_from_crdr(cpu, i);
                }
                if r.is_segment_register() && i.op0_kind() == OpKind::Register {
                    // MOV r32, Sreg zero-extends the selector.
                    let v = read_op(cpu, mem, i, 1)?;
                    let l = ops::reg_loc(i.op0_register()).ok_or(Exception::InvalidOpcode)?;
                    let size = if l.size == 8 { 8 } else { l.size.max(4) };
                    write_sized_gpr(cpu, l.idx, if l.size == 2 { 2 } else { size }, v);
                    return Ok(());
                }
            }
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
        // Fences, prefetches, cache hints and the multi-byte NOP: no architectural effect.
        // CET's ENDBR and the shadow-stack reads/increments execute as NOPs on a CPU
        // without CET (IBT-built kernels are full of ENDBR64), as do the reserved NOPs.
        Nop | Pause | Lfence | Mfence | Sfence | Prefetchnta | Prefetcht0 | Prefetcht1
        | Prefetcht2 | Prefetchw | Prefetch | Clflush | Clflushopt | Clwb | Endbr32 | Endbr64
        | Rdsspd | Rdsspq | Incsspd | Incsspq | Reservednop => {
            if matches!(m, Clflush | Clflushopt | Clwb) {
                // Checks the address like a read.
                let (s, off) = ops::mem_operand(cpu, i)?;
                ops::read_mem(cpu, mem, s, off, 1)?;
            }
            Ok(())
        }
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
                near_jump(cpu, branch_target(i)?)?;
            }
            Ok(())
        }
        Jmp => match i.op0_kind() {
            OpKind::FarBranch16 | OpKind::FarBranch32 => far::jmp_call(cpu, mem, i, false),
            OpKind::Memory if is_far_mem(i) => far::jmp_call(cpu, mem, i, false),
            _ => {
                let t = branch_target_or_op(cpu, mem, i)?;
                near_jump(cpu, t)
            }
        },
        Call => match i.op0_kind() {
            OpKind::FarBranch16 | OpKind::FarBranch32 => far::jmp_call(cpu, mem, i, true),
            OpKind::Memory if is_far_mem(i) => far::jmp_call(cpu, mem, i, true),
            _ => {
                let target = branch_target_or_op(cpu, mem, i)?;
                let size = (-i.stack_pointer_increment()) as usize;
                check_near_target(cpu, target & mask(size))?;
                ops::push(cpu, mem, size, cpu.rip)?;
                cpu.rip = target & mask(size);
                Ok(())
            }
        },
        Loop | Loope | Loopne | Jrcxz | Jecxz | Jcxz => {
            use Code::*;
            let size = match i.code() {
                Loop_rel8_16_CX | Loop_rel8_32_CX | Loope_rel8_16_CX | Loope_rel8_32_CX
                | Loopne_rel8_16_CX | Loopne_rel8_32_CX | Jcxz_rel8_16 | Jcxz_rel8_32 => 2,
                Loop_rel8_16_ECX | Loop_rel8_32_ECX | Loop_rel8_64_ECX | Loope_rel8_16_ECX
                | Loope_rel8_32_ECX | Loope_rel8_64_ECX | Loopne_rel8_16_ECX
                | Loopne_rel8_32_ECX | Loopne_rel8_64_ECX | Jecxz_rel8_16 | Jecxz_rel8_32
                | Jecxz_rel8_64 => 4,
                _ => 8,
            };
            let mut c = cpu.gpr[RCX] & mask(size);
            let taken = if matches!(m, Jrcxz | Jecxz | Jcxz) {
                c == 0
            } else {
                c = c.wrapping_sub(1) & mask(size);
                let zf = cpu.flag(crate::cpu::ZF);
                c != 0
                    && match m {
                        Loope => zf,
                        Loopne => !zf,
                        _ => true,
                    }
            };
            if taken {
                near_jump(cpu, branch_target(i)?)?;
            }
            if !matches!(m, Jrcxz | Jecxz | Jcxz) {
                write_sized_gpr(cpu, RCX, size, c);
            }
            Ok(())
        }
        Ret => {
            if matches!(i.code(), Code::Retfw | Code::Retfd | Code::Retfq)
                || matches!(
                    i.code(),
                    Code::Retfw_imm16 | Code::Retfd_imm16 | Code::Retfq_imm16
                )
            {
                return far::retf(cpu, mem, i);
            }
            let size = i.stack_pointer_increment() as usize;
            let size = match i.code() {
                Code::Retnw | Code::Retnw_imm16 => 2,
                Code::Retnd | Code::Retnd_imm16 => 4,
                _ => 8,
            }
            .min(size.max(2));
            let target = ops::peek(cpu, mem, 0, size)?;
            check_near_target(cpu, target)?;
            let extra = if i.op_count() > 0 {
                i.immediate(0) & 0xffff
            } else {
                0
            };
            let sp = cpu.gpr[crate::cpu::RSP];
            ops::set_sp(cpu, sp.wrapping_add(size as u64).wrapping_add(extra));
            cpu.rip = target;
            Ok(())
        }
        Retf => far::retf(cpu, mem, i),
        Push => {
            let size = (-i.stack_pointer_increment()) as usize;
            if !matches!(size, 2 | 4 | 8) {
                return Err(Exception::InvalidOpcode);
            }
            let v = read_op(cpu, mem, i, 0)?;
            ops::push(cpu, mem, size, v)
        }
        Pop => {
            let size = i.stack_pointer_increment() as usize;
            if !matches!(size, 2 | 4 | 8) {
                return Err(Exception::InvalidOpcode);
            }
            let v = ops::peek(cpu, mem, 0, size)?;
            let saved = cpu.gpr[crate::cpu::RSP];
            let sp = saved.wrapping_add(size as u64);
            if i.op0_kind() == OpKind::Register && i.op0_register().is_segment_register() {
                system::mov_to_sreg(cpu, mem, i.op0_register(), v as u16)?;
                ops::set_sp(cpu, sp);
                return Ok(());
            }
            // The destination address is computed with RSP already incremented.
            ops::set_sp(cpu, sp);
            if let Err(e) = write_op(cpu, mem, i, 0, v) {
                cpu.gpr[crate::cpu::RSP] = saved;
                return Err(e);
            }
            Ok(())
        }
        _ if crate::sse::handles(m) => crate::sse::exec(cpu, mem, i),
        _ if crate::x87::handles(m) => crate::x87::exec(cpu, mem, i),
        _ => legacy::exec(cpu, mem, i, m),
    }
}

/// JMP/CALL m16:16/32/64 (iced describes the far pointer by its memory size).
fn is_far_mem(i: &Instruction) -> bool {
    matches!(
        i.code(),
        Code::Jmp_m1616
            | Code::Jmp_m1632
            | Code::Jmp_m1664
            | Code::Call_m1616
            | Code::Call_m1632
            | Code::Call_m1664
    )
}

/// A near branch target must be inside CS (or canonical).
pub(crate) fn check_near_target(cpu: &Cpu, t: u64) -> Result<(), Exception> {
    if cpu.mode64() {
        if !ops::canonical(t) {
            return Err(Exception::GeneralProtection(0));
        }
    } else if t > cpu.seg[crate::cpu::CS].limit as u64 {
        return Err(Exception::GeneralProtection(0));
    }
    Ok(())
}

pub(crate) fn near_jump(cpu: &mut Cpu, t: u64) -> Result<(), Exception> {
    check_near_target(cpu, t)?;
    cpu.rip = t;
    Ok(())
}

fn branch_target(i: &Instruction) -> Result<u64, Exception> {
    match i.op0_kind() {
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
            Ok(i.near_branch_target())
        }
        _ => Err(Exception::InvalidOpcode),
    }
}

/// Target of a near JMP/CALL: relative, or register/memory indirect.
fn branch_target_or_op(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    i: &Instruction,
) -> Result<u64, Exception> {
    match i.op0_kind() {
        OpKind::Register | OpKind::Memory => read_op(cpu, mem, i, 0),
        _ => branch_target(i),
    }
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
