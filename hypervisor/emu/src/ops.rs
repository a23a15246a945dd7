//! Operand access: registers (with the 8-bit-high and 32-bit-zero-extension rules),
//! effective addresses per address size, segment checks (base, limit, type, canonical
//! form), memory of any size through the MMU, immediates, and the stack.

use crate::cpu::{CS, Cpu, RSP, SS};
use crate::exec::Exception;
use crate::flags::mask;
use crate::mem::Memory;
use crate::mmu;
use iced_x86::{Instruction, OpKind, Register};

/// Where a general register lives: GPR index, size in bytes, and whether it is one of
/// AH/CH/DH/BH (bits 8..16 of GPR 0..3).
#[derive(Clone, Copy)]
pub(crate) struct RegLoc {
    pub idx: usize,
    pub size: usize,
    pub high: bool,
}

/// GPR location of every iced register, computed at compile time: bit 7 valid, bit 6
/// high byte, bits 4..6 log2(size), bits 0..4 index.
static REG_TABLE: [u8; 256] = build_reg_table();

const fn build_reg_table() -> [u8; 256] {
    let mut t = [0u8; 256];
    let al = Register::AL as usize;
    let mut i = 0;
    while i < 20 {
        t[al + i] = match i {
            0..=3 => 0x80 | i as u8,
            4..=7 => 0x80 | 0x40 | (i - 4) as u8,
            _ => 0x80 | (i - 4) as u8,
        };
        i += 1;
    }
    let bases = [
        (Register::AX as usize, 1u8),
        (Register::EAX as usize, 2),
        (Register::RAX as usize, 3),
    ];
    let mut b = 0;
    while b < 3 {
        let (base, lg) = bases[b];
        let mut k = 0;
        while k < 16 {
            t[base + k] = 0x80 | (lg << 4) | k as u8;
            k += 1;
        }
        b += 1;
    }
    t
}

#[inline]
pub(crate) fn reg_loc(r: Register) -> Option<RegLoc> {
    let e = REG_TABLE[(r as usize) & 0xff];
    (e & 0x80 != 0).then_some(RegLoc {
        idx: (e & 0xf) as usize,
        size: 1 << ((e >> 4) & 3),
        high: e & 0x40 != 0,
    })
}

#[inline]
pub(crate) fn read_loc(cpu: &Cpu, l: RegLoc) -> u64 {
    let v = cpu.gpr[l.idx];
    if l.high {
        (v >> 8) & 0xff
    } else {
        v & mask(l.size)
    }
}

#[inline]
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

/// Segment register index (ES..GS) of an iced register.
#[inline]
pub(crate) fn sreg_index(r: Register) -> Option<usize> {
    let n = (r as u32).wrapping_sub(Register::ES as u32) as usize;
    (n < 6).then_some(n)
}

#[inline]
pub(crate) fn read_reg(cpu: &Cpu, r: Register) -> Result<u64, Exception> {
    match r {
        Register::RIP | Register::EIP => Ok(cpu.rip),
        _ => {
            if let Some(s) = sreg_index(r) {
                return Ok(cpu.seg[s].selector as u64);
            }
            reg_loc(r)
                .map(|l| read_loc(cpu, l))
                .ok_or(Exception::InvalidOpcode)
        }
    }
}

#[inline]
pub(crate) fn write_reg(cpu: &mut Cpu, r: Register, v: u64) -> Result<(), Exception> {
    let l = reg_loc(r).ok_or(Exception::InvalidOpcode)?;
    write_loc(cpu, l, v);
    Ok(())
}

/// Size of a general register in bytes (2 for a segment register, 0 otherwise).
#[inline]
pub(crate) fn reg_size(r: Register) -> usize {
    if sreg_index(r).is_some() {
        return 2;
    }
    reg_loc(r).map_or(0, |l| l.size)
}

/// Address size (2, 4, 8) of the instruction's memory operand.
#[inline]
pub(crate) fn addr_size(cpu: &Cpu, i: &Instruction) -> usize {
    let base = i.memory_base();
    let index = i.memory_index();
    for r in [base, index] {
        match r {
            Register::None => {}
            Register::RIP => return 8,
            Register::EIP => return 4,
            _ => {
                if let Some(l) = reg_loc(r) {
                    return l.size;
                }
            }
        }
    }
    // No registers: the displacement has the address size (iced's rule).
    match i.memory_displ_size() {
        n @ (2 | 4 | 8) => n as usize,
        _ => (cpu.bitness() / 8) as usize,
    }
}

/// Effective address (offset within the segment, wrapped to the address size) of the
/// instruction's memory operand.
#[inline]
pub(crate) fn ea_offset(cpu: &Cpu, i: &Instruction) -> Result<u64, Exception> {
    let base = i.memory_base();
    let index = i.memory_index();
    // For RIP/EIP-relative operands iced already returns the absolute address.
    let mut a = i.memory_displacement64();
    if base != Register::None && base != Register::RIP && base != Register::EIP {
        let l = reg_loc(base).ok_or(Exception::InvalidOpcode)?;
        a = a.wrapping_add(read_loc(cpu, l));
    }
    if index != Register::None {
        let l = reg_loc(index).ok_or(Exception::InvalidOpcode)?;
        a = a.wrapping_add(read_loc(cpu, l).wrapping_mul(i.memory_index_scale() as u64));
    }
    Ok(a & mask(addr_size(cpu, i)))
}

/// The instruction's memory operand: segment register index and offset.
#[inline]
pub(crate) fn mem_operand(cpu: &Cpu, i: &Instruction) -> Result<(usize, u64), Exception> {
    let s = sreg_index(i.memory_segment()).unwrap_or(crate::cpu::DS);
    Ok((s, ea_offset(cpu, i)?))
}

/// #GP(0), or #SS(0) for a stack-segment access.
#[inline]
fn seg_fault(s: usize) -> Exception {
    if s == SS {
        Exception::StackFault(0)
    } else {
        Exception::GeneralProtection(0)
    }
}

#[inline]
pub(crate) fn canonical(a: u64) -> bool {
    ((a as i64) << 16 >> 16) as u64 == a
}

/// Segment translation and checks: `off` within segment `s` → linear address.
#[inline]
pub(crate) fn linear(
    cpu: &Cpu,
    s: usize,
    off: u64,
    size: usize,
    write: bool,
) -> Result<u64, Exception> {
    if cpu.mode64() {
        let lin = if s >= crate::cpu::FS {
            off.wrapping_add(cpu.seg[s].base)
        } else {
            off
        };
        let last = lin.wrapping_add(size.max(1) as u64 - 1);
        if !canonical(lin) || !canonical(last) {
            return Err(seg_fault(s));
        }
        return Ok(lin);
    }
    let sg = &cpu.seg[s];
    if cpu.protected() && cpu.rflags & crate::cpu::VM == 0 {
        if sg.unusable() || !sg.present() {
            return Err(seg_fault(s));
        }
        let t = sg.typ();
        let ok = if t & 8 != 0 {
            // Code: never writable; readable only with R.
            !write && t & 2 != 0
        } else {
            !write || t & 2 != 0
        };
        if !ok {
            return Err(seg_fault(s));
        }
        if t & 8 == 0 && t & 4 != 0 {
            // Expand-down data: valid offsets are limit+1 ..= 0xffff / 0xffffffff.
            let upper = if sg.db() { 0xffff_ffffu64 } else { 0xffff };
            let end = off.wrapping_add(size.max(1) as u64 - 1);
            if off <= sg.limit as u64 || end > upper || end < off {
                return Err(seg_fault(s));
            }
            return Ok(sg.base.wrapping_add(off) & 0xffff_ffff);
        }
    }
    let end = off.wrapping_add(size.max(1) as u64 - 1);
    if end > sg.limit as u64 || end < off {
        return Err(seg_fault(s));
    }
    Ok(sg.base.wrapping_add(off) & 0xffff_ffff)
}

#[inline]
fn user(cpu: &Cpu) -> bool {
    cpu.cpl() == 3
}

/// Read `buf.len()` bytes at `seg:off` (any size: the SSE/x87 code uses this for 10-,
/// 16- and 512-byte operands). `seg` is an iced segment register (ES..GS).
pub fn read_mem_bytes(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    seg: Register,
    off: u64,
    buf: &mut [u8],
) -> Result<(), Exception> {
    let s = sreg_index(seg).ok_or(Exception::InvalidOpcode)?;
    let lin = linear(cpu, s, off, buf.len(), false)?;
    let u = user(cpu);
    mmu::read_lin(cpu, mem, lin, buf, u)
}

/// Write `buf` at `seg:off`; nothing is stored if any part faults.
pub fn write_mem_bytes(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    seg: Register,
    off: u64,
    buf: &[u8],
) -> Result<(), Exception> {
    let s = sreg_index(seg).ok_or(Exception::InvalidOpcode)?;
    let lin = linear(cpu, s, off, buf.len(), true)?;
    let u = user(cpu);
    mmu::write_lin(cpu, mem, lin, buf, u)
}

/// The instruction's memory operand as (segment register, offset), for
/// [`read_mem_bytes`] / [`write_mem_bytes`].
pub fn memory_operand(cpu: &Cpu, i: &Instruction) -> Result<(Register, u64), Exception> {
    let (s, off) = mem_operand(cpu, i)?;
    Ok((seg_register(s), off))
}

/// iced register of segment index `s`.
pub(crate) fn seg_register(s: usize) -> Register {
    [
        Register::ES,
        Register::CS,
        Register::SS,
        Register::DS,
        Register::FS,
        Register::GS,
    ][s.min(5)]
}

/// Read `size` (1..=8) bytes at segment `s` : `off`, zero-extended.
#[inline]
pub(crate) fn read_mem(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    s: usize,
    off: u64,
    size: usize,
) -> Result<u64, Exception> {
    let n = size.clamp(1, 8);
    let lin = linear(cpu, s, off, n, false)?;
    let u = user(cpu);
    let mut b = [0u8; 8];
    mmu::read_lin(cpu, mem, lin, &mut b[..n], u)?;
    Ok(u64::from_le_bytes(b))
}

/// Write the low `size` (1..=8) bytes of `v` at segment `s` : `off`.
#[inline]
pub(crate) fn write_mem(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    s: usize,
    off: u64,
    size: usize,
    v: u64,
) -> Result<(), Exception> {
    let n = size.clamp(1, 8);
    let lin = linear(cpu, s, off, n, true)?;
    let u = user(cpu);
    let b = v.to_le_bytes();
    mmu::write_lin(cpu, mem, lin, &b[..n], u)
}

/// Supervisor (implicit) read of linear memory: descriptor tables, TSS, IDT.
pub(crate) fn read_sys(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    lin: u64,
    size: usize,
) -> Result<u64, Exception> {
    let mut b = [0u8; 8];
    let n = size.clamp(1, 8);
    mmu::read_lin(cpu, mem, lin, &mut b[..n], false)?;
    Ok(u64::from_le_bytes(b))
}

pub(crate) fn write_sys(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    lin: u64,
    size: usize,
    v: u64,
) -> Result<(), Exception> {
    let b = v.to_le_bytes();
    mmu::write_lin(cpu, mem, lin, &b[..size.clamp(1, 8)], false)
}

/// Size in bytes of operand `n`.
#[inline]
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
#[inline]
pub(crate) fn read_op(
    cpu: &mut Cpu,
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
            let (s, off) = mem_operand(cpu, i)?;
            read_mem(cpu, mem, s, off, size)
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
#[inline]
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
            let (s, off) = mem_operand(cpu, i)?;
            write_mem(cpu, mem, s, off, size, v)
        }
        _ => Err(Exception::InvalidOpcode),
    }
}

// ---------------------------------------------------------------------------------------
// The stack.

/// Width of the stack pointer: 8 in 64-bit mode, else 4 or 2 from SS.B.
#[inline]
pub(crate) fn stack_width(cpu: &Cpu) -> usize {
    if cpu.mode64() {
        8
    } else if cpu.seg[SS].db() {
        4
    } else {
        2
    }
}

/// Set the stack pointer, touching only the bits of the stack width.
#[inline]
pub(crate) fn set_sp(cpu: &mut Cpu, v: u64) {
    let w = stack_width(cpu);
    let m = mask(w);
    cpu.gpr[RSP] = if w == 4 {
        v & m
    } else {
        (cpu.gpr[RSP] & !m) | (v & m)
    };
}

pub(crate) fn push(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    size: usize,
    v: u64,
) -> Result<(), Exception> {
    let m = mask(stack_width(cpu));
    let sp = cpu.gpr[RSP].wrapping_sub(size as u64) & m;
    write_mem(cpu, mem, SS, sp, size, v)?;
    set_sp(cpu, sp);
    Ok(())
}

pub(crate) fn pop(cpu: &mut Cpu, mem: &mut dyn Memory, size: usize) -> Result<u64, Exception> {
    let m = mask(stack_width(cpu));
    let sp = cpu.gpr[RSP] & m;
    let v = read_mem(cpu, mem, SS, sp, size)?;
    set_sp(cpu, sp.wrapping_add(size as u64));
    Ok(v)
}

/// Read the stack at `sp + delta` without moving it.
pub(crate) fn peek(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    delta: u64,
    size: usize,
) -> Result<u64, Exception> {
    let m = mask(stack_width(cpu));
    let sp = cpu.gpr[RSP].wrapping_add(delta) & m;
    read_mem(cpu, mem, SS, sp, size)
}

/// Code fetch check: `off` within CS (or canonical in 64-bit mode) → linear.
pub(crate) fn code_linear(cpu: &Cpu, off: u64) -> Result<u64, Exception> {
    if cpu.mode64() {
        if !canonical(off) {
            return Err(Exception::GeneralProtection(0));
        }
        return Ok(off);
    }
    let cs = &cpu.seg[CS];
    if off > cs.limit as u64 {
        return Err(Exception::GeneralProtection(0));
    }
    Ok(cs.base.wrapping_add(off) & 0xffff_ffff)
}
