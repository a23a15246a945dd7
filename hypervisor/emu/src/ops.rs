//! Operand access: registers (with the 8-bit-high and 32-bit-zero-extension rules),
//! effective addresses and immediates, driven by iced's operand description.

use crate::cpu::Cpu;
use crate::exec::Exception;
use crate::flags::mask;
use crate::mem::Memory;
use iced_x86::{Instruction, OpKind, Register};

/// Where a general register lives: GPR index, size in bytes, and whether it is one of
/// AH/CH/DH/BH (bits 8..16 of GPR 0..3).
#[derive(Clone, Copy)]
pub(crate) struct RegLoc {
    pub idx: usize,
    pub size: usize,
    pub high: bool,
}

pub(crate) fn reg_loc(r: Register) -> Option<RegLoc> {
    let n = r as u32;
    let al = Register::AL as u32;
    let ax = Register::AX as u32;
    let eax = Register::EAX as u32;
    let rax = Register::RAX as u32;
    if (al..al + 20).contains(&n) {
        let i = (n - al) as usize;
        return Some(match i {
            4..=7 => RegLoc {
                idx: i - 4,
                size: 1,
                high: true,
            },
            0..=3 => RegLoc {
                idx: i,
                size: 1,
                high: false,
            },
            _ => RegLoc {
                idx: i - 4,
                size: 1,
                high: false,
            },
        });
    }
    for (base, size) in [(ax, 2), (eax, 4), (rax, 8)] {
        if (base..base + 16).contains(&n) {
            return Some(RegLoc {
                idx: (n - base) as usize,
                size,
                high: false,
            });
        }
    }
    None
}

pub(crate) fn read_loc(cpu: &Cpu, l: RegLoc) -> u64 {
    let v = cpu.gpr[l.idx];
    if l.high {
        (v >> 8) & 0xff
    } else {
        v & mask(l.size)
    }
}

pub(crate) fn write_loc(cpu: &mut Cpu, l: RegLoc, v: u64) {
    let old = cpu.gpr[l.idx];
    cpu.gpr[l.idx] = match (l.size, l.high) {
        (1, true) => (old & !0xff00) | ((v & 0xff) << 8),
        (1, false) => (old & !0xff) | (v & 0xff),
        (2, _) => (old & !0xffff) | (v & 0xffff),
        (4, _) => v & 0xffff_ffff,
        _ => v,
    };
}

pub(crate) fn read_reg(cpu: &Cpu, r: Register) -> Result<u64, Exception> {
    match r {
        Register::RIP | Register::EIP => Ok(cpu.rip),
        _ => reg_loc(r)
            .map(|l| read_loc(cpu, l))
            .ok_or(Exception::InvalidOpcode),
    }
}

pub(crate) fn write_reg(cpu: &mut Cpu, r: Register, v: u64) -> Result<(), Exception> {
    let l = reg_loc(r).ok_or(Exception::InvalidOpcode)?;
    write_loc(cpu, l, v);
    Ok(())
}

/// Size of a general register in bytes (0 if not a GPR).
pub(crate) fn reg_size(r: Register) -> usize {
    reg_loc(r).map_or(0, |l| l.size)
}

/// Effective address (offset, no segment base) of the instruction's memory operand.
pub(crate) fn ea_offset(cpu: &Cpu, i: &Instruction) -> Result<u64, Exception> {
    let base = i.memory_base();
    let index = i.memory_index();
    // For RIP/EIP-relative operands iced already returns the absolute address.
    let mut a = i.memory_displacement64();
    let mut addr32 = false;
    if base != Register::None && base != Register::RIP && base != Register::EIP {
        let l = reg_loc(base).ok_or(Exception::InvalidOpcode)?;
        addr32 |= l.size == 4;
        a = a.wrapping_add(read_loc(cpu, l));
    }
    if base == Register::EIP {
        addr32 = true;
    }
    if index != Register::None {
        let l = reg_loc(index).ok_or(Exception::InvalidOpcode)?;
        addr32 |= l.size == 4;
        a = a.wrapping_add(read_loc(cpu, l).wrapping_mul(i.memory_index_scale() as u64));
    }
    if addr32 {
        a &= 0xffff_ffff;
    }
    Ok(a)
}

/// Segment base for a segment register in 64-bit mode (only FS and GS have one).
pub(crate) fn seg_base(cpu: &Cpu, seg: Register) -> u64 {
    match seg {
        Register::FS => cpu.fs_base,
        Register::GS => cpu.gs_base,
        _ => 0,
    }
}

/// Linear address of the instruction's (ModRM/moffs) memory operand.
pub(crate) fn ea(cpu: &Cpu, i: &Instruction) -> Result<u64, Exception> {
    Ok(ea_offset(cpu, i)?.wrapping_add(seg_base(cpu, i.memory_segment())))
}

/// Size in bytes of operand `n`.
pub(crate) fn op_size(i: &Instruction, n: u32) -> usize {
    match i.op_kind(n) {
        OpKind::Register => reg_size(i.op_register(n)),
        OpKind::Memory => i.memory_size().size(),
        OpKind::Immediate8 | OpKind::Immediate8_2nd => 1,
        OpKind::Immediate16 | OpKind::Immediate8to16 => 2,
        OpKind::Immediate32 | OpKind::Immediate8to32 => 4,
        _ => 8,
    }
}

/// Read operand `n` (zero-extended from its size; immediates as iced extends them).
pub(crate) fn read_op(
    cpu: &Cpu,
    mem: &mut dyn Memory,
    i: &Instruction,
    n: u32,
) -> Result<u64, Exception> {
    match i.op_kind(n) {
        OpKind::Register => read_reg(cpu, i.op_register(n)),
        OpKind::Memory => {
            let size = i.memory_size().size();
            if !matches!(size, 1 | 2 | 4 | 8) {
                return Err(Exception::InvalidOpcode);
            }
            let a = ea(cpu, i)?;
            Ok(mem.read_sized(a, size)?)
        }
        OpKind::Immediate8
        | OpKind::Immediate8_2nd
        | OpKind::Immediate16
        | OpKind::Immediate32
        | OpKind::Immediate64
        | OpKind::Immediate8to16
        | OpKind::Immediate8to32
        | OpKind::Immediate8to64
        | OpKind::Immediate32to64 => Ok(i.immediate(n)),
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
            Ok(i.near_branch_target())
        }
        _ => Err(Exception::InvalidOpcode),
    }
}

/// Write operand `n` (register write rules apply; memory writes `size` bytes).
pub(crate) fn write_op(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    i: &Instruction,
    n: u32,
    v: u64,
) -> Result<(), Exception> {
    match i.op_kind(n) {
        OpKind::Register => write_reg(cpu, i.op_register(n), v),
        OpKind::Memory => {
            let size = i.memory_size().size();
            if !matches!(size, 1 | 2 | 4 | 8) {
                return Err(Exception::InvalidOpcode);
            }
            let a = ea(cpu, i)?;
            Ok(mem.write_sized(a, size, v)?)
        }
        _ => Err(Exception::InvalidOpcode),
    }
}
