//! MOVS/STOS/LODS/SCAS/CMPS/INS/OUTS with REP/REPE/REPNE, DF, 16-, 32- or 64-bit
//! addressing (rSI/rDI/rCX of the address size), DS:rSI overridable, ES:rDI not.
//!
//! A REP instruction runs at most [`MAX_ITERATIONS`] iterations per call; if it is not
//! finished RIP is left on the instruction so the caller can take interrupts and call
//! again (as hardware does between iterations). A fault in iteration k keeps the
//! k-1 iterations done before it, with RIP on the instruction.

use crate::cpu::{Cpu, DF, ES, RAX, RCX, RDI, RDX, RSI, STATUS, ZF};
use crate::exec::{Exception, write_sized_gpr};
use crate::flags::{mask, sub};
use crate::mem::Memory;
use crate::ops::{read_mem, sreg_index, write_mem};
use crate::system::{port_in, port_out};
use iced_x86::{Code, Instruction, OpKind};

pub const MAX_ITERATIONS: u64 = 4096;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Movs,
    Stos,
    Lods,
    Scas,
    Cmps,
    Ins,
    Outs,
}

fn classify(i: &Instruction) -> Option<(Op, usize)> {
    use Code::*;
    Some(match i.code() {
        Movsb_m8_m8 => (Op::Movs, 1),
        Movsw_m16_m16 => (Op::Movs, 2),
        Movsd_m32_m32 => (Op::Movs, 4),
        Movsq_m64_m64 => (Op::Movs, 8),
        Stosb_m8_AL => (Op::Stos, 1),
        Stosw_m16_AX => (Op::Stos, 2),
        Stosd_m32_EAX => (Op::Stos, 4),
        Stosq_m64_RAX => (Op::Stos, 8),
        Lodsb_AL_m8 => (Op::Lods, 1),
        Lodsw_AX_m16 => (Op::Lods, 2),
        Lodsd_EAX_m32 => (Op::Lods, 4),
        Lodsq_RAX_m64 => (Op::Lods, 8),
        Scasb_AL_m8 => (Op::Scas, 1),
        Scasw_AX_m16 => (Op::Scas, 2),
        Scasd_EAX_m32 => (Op::Scas, 4),
        Scasq_RAX_m64 => (Op::Scas, 8),
        Cmpsb_m8_m8 => (Op::Cmps, 1),
        Cmpsw_m16_m16 => (Op::Cmps, 2),
        Cmpsd_m32_m32 => (Op::Cmps, 4),
        Cmpsq_m64_m64 => (Op::Cmps, 8),
        Insb_m8_DX => (Op::Ins, 1),
        Insw_m16_DX => (Op::Ins, 2),
        Insd_m32_DX => (Op::Ins, 4),
        Outsb_DX_m8 => (Op::Outs, 1),
        Outsw_DX_m16 => (Op::Outs, 2),
        Outsd_DX_m32 => (Op::Outs, 4),
        _ => return None,
    })
}

#[inline]
pub(crate) fn is_string(i: &Instruction) -> bool {
    // Every string instruction has an rSI/rDI memory operand first or second: a cheap
    // filter before the full classification.
    const fn stringy(k: OpKind) -> bool {
        matches!(
            k,
            OpKind::MemorySegSI
                | OpKind::MemorySegESI
                | OpKind::MemorySegRSI
                | OpKind::MemoryESDI
                | OpKind::MemoryESEDI
                | OpKind::MemoryESRDI
        )
    }
    (stringy(i.op0_kind()) || stringy(i.op1_kind())) && classify(i).is_some()
}

pub(crate) fn exec(cpu: &mut Cpu, mem: &mut dyn Memory, i: &Instruction) -> Result<(), Exception> {
    let (op, size) = classify(i).ok_or(Exception::InvalidOpcode)?;
    let mut asz = 8;
    for n in 0..i.op_count() {
        match i.op_kind(n) {
            OpKind::MemorySegSI | OpKind::MemoryESDI => asz = 2,
            OpKind::MemorySegESI | OpKind::MemoryESEDI => asz = 4,
            _ => {}
        }
    }
    let amask = mask(asz);
    let step = if cpu.flag(DF) {
        (size as u64).wrapping_neg()
    } else {
        size as u64
    };
    let src = sreg_index(i.memory_segment()).unwrap_or(crate::cpu::DS);
    let rep = i.has_rep_prefix() || i.has_repne_prefix();
    let compare = matches!(op, Op::Scas | Op::Cmps);
    let mut done = 0u64;
    loop {
        if rep {
            if cpu.gpr[RCX] & amask == 0 {
                return Ok(());
            }
            if done == MAX_ITERATIONS {
                cpu.rip = i.ip();
                return Ok(());
            }
        }
        let si = cpu.gpr[RSI] & amask;
        let di = cpu.gpr[RDI] & amask;
        let acc = cpu.gpr[RAX] & mask(size);
        match op {
            Op::Movs => {
                let v = read_mem(cpu, mem, src, si, size)?;
                write_mem(cpu, mem, ES, di, size, v)?;
                write_sized_gpr(cpu, RSI, asz, si.wrapping_add(step));
                write_sized_gpr(cpu, RDI, asz, di.wrapping_add(step));
            }
            Op::Stos => {
                write_mem(cpu, mem, ES, di, size, acc)?;
                write_sized_gpr(cpu, RDI, asz, di.wrapping_add(step));
            }
            Op::Lods => {
                let v = read_mem(cpu, mem, src, si, size)?;
                write_sized_gpr(cpu, RAX, size, v);
                write_sized_gpr(cpu, RSI, asz, si.wrapping_add(step));
            }
            Op::Scas => {
                let v = read_mem(cpu, mem, ES, di, size)?;
                let (_, f) = sub(acc, v, false, size);
                cpu.set_flags(STATUS, f);
                write_sized_gpr(cpu, RDI, asz, di.wrapping_add(step));
            }
            Op::Cmps => {
                let a = read_mem(cpu, mem, src, si, size)?;
                let b = read_mem(cpu, mem, ES, di, size)?;
                let (_, f) = sub(a, b, false, size);
                cpu.set_flags(STATUS, f);
                write_sized_gpr(cpu, RSI, asz, si.wrapping_add(step));
                write_sized_gpr(cpu, RDI, asz, di.wrapping_add(step));
            }
            Op::Ins => {
                let port = cpu.gpr[RDX] as u16;
                // The destination is checked before the port is read.
                crate::ops::linear(cpu, ES, di, size, true)?;
                let v = port_in(cpu, mem, port, size as u8)?;
                write_mem(cpu, mem, ES, di, size, v as u64)?;
                write_sized_gpr(cpu, RDI, asz, di.wrapping_add(step));
            }
            Op::Outs => {
                let port = cpu.gpr[RDX] as u16;
                let v = read_mem(cpu, mem, src, si, size)?;
                port_out(cpu, mem, port, size as u8, v as u32)?;
                write_sized_gpr(cpu, RSI, asz, si.wrapping_add(step));
            }
        }
        if !rep {
            return Ok(());
        }
        let c = (cpu.gpr[RCX] & amask).wrapping_sub(1);
        write_sized_gpr(cpu, RCX, asz, c);
        done += 1;
        if compare {
            let zf = cpu.flag(ZF);
            if (i.has_repe_prefix() && !zf) || (i.has_repne_prefix() && zf) {
                return Ok(());
            }
        }
        // A port or MMIO access asked the run loop to stop: end the chunk here (RIP
        // stays on the instruction if iterations remain).
        if mem.stop_pending() {
            if cpu.gpr[RCX] & amask != 0 {
                cpu.rip = i.ip();
            }
            return Ok(());
        }
    }
}
