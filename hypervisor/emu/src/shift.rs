//! SHL/SAL/SHR/SAR/ROL/ROR/RCL/RCR and SHLD/SHRD.
//!
//! The count is masked to 5 bits (6 with a 64-bit operand). A masked count of 0 changes
//! neither the operand value nor the flags (a 32-bit register is still zero-extended). OF is architecturally defined only for a masked
//! count of 1; for other counts we compute it with the same formula. AF after a shift
//! (undefined) is cleared.

use crate::cpu::{AF, CF, Cpu, OF, STATUS};
use crate::exec::Exception;
use crate::flags::{bits, mask, sext, sign, szp};
use crate::mem::Memory;
use crate::ops::{op_size, read_op, write_op};
use iced_x86::{Instruction, Mnemonic, OpKind};

fn count_mask(size: usize) -> u64 {
    if size == 8 { 0x3f } else { 0x1f }
}

pub(crate) fn shift(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    i: &Instruction,
    m: Mnemonic,
) -> Result<(), Exception> {
    let size = op_size(i, 0);
    let a = read_op(cpu, mem, i, 0)? & mask(size);
    let count = (read_op(cpu, mem, i, 1)? & count_mask(size)) as u32;
    if count == 0 {
        // Flags are untouched, but a 32-bit register destination is still written,
        // which clears its upper half (as the host CPU does).
        if i.op0_kind() == OpKind::Register {
            write_op(cpu, mem, i, 0, a)?;
        }
        return Ok(());
    }
    let nb = bits(size);
    let msk = mask(size);
    let sgn = sign(size);
    let cf_in = cpu.flag(CF);
    let (res, flags, which) = match m {
        Mnemonic::Shl | Mnemonic::Sal => {
            // count <= 63 and nb <= 64: fits in u128.
            let wide = (a as u128) << count;
            let res = (wide as u64) & msk;
            let cf = (wide >> nb) & 1 != 0;
            let mut f = szp(res, size);
            if cf {
                f |= CF;
            }
            if ((res & sgn != 0) as u8 ^ cf as u8) != 0 {
                f |= OF;
            }
            (res, f, STATUS)
        }
        Mnemonic::Shr => {
            let res = if count >= nb { 0 } else { a >> count };
            let cf = count <= nb && (a >> (count - 1)) & 1 != 0;
            let mut f = szp(res, size);
            if cf {
                f |= CF;
            }
            if a & sgn != 0 {
                f |= OF;
            }
            (res, f, STATUS)
        }
        Mnemonic::Sar => {
            let s = sext(a, size) as i64;
            let res = ((s >> count.min(63)) as u64) & msk;
            let cf = (s >> (count - 1).min(63)) & 1 != 0;
            let mut f = szp(res, size);
            if cf {
                f |= CF;
            }
            (res, f, STATUS)
        }
        Mnemonic::Rol | Mnemonic::Ror => {
            let t = count % nb;
            let res = if t == 0 {
                a
            } else if m == Mnemonic::Rol {
                ((a << t) | (a >> (nb - t))) & msk
            } else {
                ((a >> t) | (a << (nb - t))) & msk
            };
            let (cf, of) = if m == Mnemonic::Rol {
                let cf = res & 1 != 0;
                (cf, (res & sgn != 0) != cf)
            } else {
                let msb = res & sgn != 0;
                (msb, msb != (res & (sgn >> 1) != 0))
            };
            let f = if cf { CF } else { 0 } | if of { OF } else { 0 };
            (res, f, CF | OF)
        }
        Mnemonic::Rcl | Mnemonic::Rcr => {
            let w = nb + 1;
            let t = count % w;
            let wmask: u128 = (1u128 << w) - 1;
            let v: u128 = ((cf_in as u128) << nb) | a as u128;
            let r = if t == 0 {
                v
            } else if m == Mnemonic::Rcl {
                ((v << t) | (v >> (w - t))) & wmask
            } else {
                ((v >> t) | (v << (w - t))) & wmask
            };
            let res = (r as u64) & msk;
            let cf = (r >> nb) & 1 != 0;
            let of = if m == Mnemonic::Rcl {
                (res & sgn != 0) != cf
            } else {
                (res & sgn != 0) != (res & (sgn >> 1) != 0)
            };
            let f = if cf { CF } else { 0 } | if of { OF } else { 0 };
            (res, f, CF | OF)
        }
        _ => return Err(Exception::InvalidOpcode),
    };
    write_op(cpu, mem, i, 0, res)?;
    cpu.set_flags(which, flags & !AF);
    Ok(())
}

/// SHLD/SHRD dest, src, imm8/CL. With a 16-bit operand and a count above 16 the result
/// is undefined; we shift through the 32-bit concatenation and never panic.
pub(crate) fn double(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    i: &Instruction,
    m: Mnemonic,
) -> Result<(), Exception> {
    let size = op_size(i, 0);
    let a = read_op(cpu, mem, i, 0)? & mask(size);
    let b = read_op(cpu, mem, i, 1)? & mask(size);
    let count = (read_op(cpu, mem, i, 2)? & count_mask(size)) as u32;
    if count == 0 {
        // Flags are untouched, but a 32-bit register destination is still written,
        // which clears its upper half (as the host CPU does).
        if i.op0_kind() == OpKind::Register {
            write_op(cpu, mem, i, 0, a)?;
        }
        return Ok(());
    }
    let nb = bits(size);
    let msk = mask(size);
    let sgn = sign(size);
    let (res, cf) = if m == Mnemonic::Shld {
        let wide: u128 = ((a as u128) << nb) | b as u128;
        let r = wide << count;
        let cf = count <= nb && (a >> (nb - count)) & 1 != 0;
        (((r >> nb) as u64) & msk, cf)
    } else {
        let wide: u128 = ((b as u128) << nb) | a as u128;
        (
            (((wide >> count) as u64) & msk),
            (wide >> (count - 1)) & 1 != 0,
        )
    };
    let mut f = szp(res, size);
    if cf {
        f |= CF;
    }
    if (res ^ a) & sgn != 0 {
        f |= OF;
    }
    write_op(cpu, mem, i, 0, res)?;
    cpu.set_flags(STATUS, f);
    Ok(())
}
