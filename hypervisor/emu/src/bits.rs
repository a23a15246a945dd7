//! BT/BTS/BTR/BTC, BSF/BSR and BSWAP.

use crate::cpu::{CF, Cpu, ZF};
use crate::exec::Exception;
use crate::flags::{bits, mask, sext};
use crate::mem::Memory;
use crate::ops::{addr_size, mem_operand, op_size, read_mem, read_op, write_mem, write_op};
use iced_x86::{Instruction, Mnemonic, OpKind};

/// BT*: CF := selected bit; BTS/BTR/BTC then set/clear/complement it. OF/SF/AF/PF are
/// undefined and left unchanged; ZF is unaffected.
///
/// With a register bit offset and a memory operand the offset is a signed value of the
/// operand size that can address outside the operand: the accessed unit is at
/// `ea + (offset >> log2(bits)) * bytes`. With an immediate offset (or a register
/// destination) the offset is taken modulo the operand width.
pub(crate) fn bt(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    i: &Instruction,
    m: Mnemonic,
) -> Result<(), Exception> {
    let size = op_size(i, 0);
    let nb = bits(size) as u64;
    let off = read_op(cpu, mem, i, 1)?;
    let (val, bit, addr) = if i.op0_kind() == OpKind::Memory && i.op1_kind() == OpKind::Register {
        let soff = sext(off, size) as i64;
        let unit = soff >> nb.trailing_zeros();
        let (s, off) = mem_operand(cpu, i)?;
        let a = off.wrapping_add((unit as u64).wrapping_mul(size as u64))
            & crate::flags::mask(addr_size(cpu, i));
        (
            read_mem(cpu, mem, s, a, size)?,
            (soff as u64) & (nb - 1),
            Some((s, a)),
        )
    } else {
        (read_op(cpu, mem, i, 0)? & mask(size), off & (nb - 1), None)
    };
    let cf = (val >> bit) & 1 != 0;
    let new = match m {
        Mnemonic::Bts => val | (1 << bit),
        Mnemonic::Btr => val & !(1 << bit),
        Mnemonic::Btc => val ^ (1 << bit),
        _ => val,
    };
    if m != Mnemonic::Bt {
        match addr {
            Some((s, a)) => write_mem(cpu, mem, s, a, size, new)?,
            None => write_op(cpu, mem, i, 0, new)?,
        }
    }
    cpu.set_flags(CF, if cf { CF } else { 0 });
    Ok(())
}

/// BSF/BSR: a zero source sets ZF and leaves the destination unchanged (as AMD
/// documents and Intel does); otherwise ZF = 0 and the destination is the bit index.
/// CF/OF/SF/AF/PF are undefined and left unchanged.
pub(crate) fn bsf_bsr(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    i: &Instruction,
    m: Mnemonic,
) -> Result<(), Exception> {
    let size = op_size(i, 0);
    let s = read_op(cpu, mem, i, 1)? & mask(size);
    if s == 0 {
        cpu.set_flags(ZF, ZF);
        return Ok(());
    }
    let idx = if m == Mnemonic::Bsf {
        s.trailing_zeros()
    } else {
        63 - s.leading_zeros()
    } as u64;
    write_op(cpu, mem, i, 0, idx)?;
    cpu.set_flags(ZF, 0);
    Ok(())
}

/// BSWAP r32/r64 (the 16-bit form is undefined: it yields 0, as on current hardware).
pub(crate) fn bswap(cpu: &mut Cpu, i: &Instruction) -> Result<(), Exception> {
    let r = i.op0_register();
    let size = crate::ops::reg_size(r);
    let v = crate::ops::read_reg(cpu, r)?;
    let res = match size {
        4 => (v as u32).swap_bytes() as u64,
        8 => v.swap_bytes(),
        2 => 0,
        _ => return Err(Exception::InvalidOpcode),
    };
    crate::ops::write_reg(cpu, r, res)
}
