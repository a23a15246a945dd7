//! MUL/IMUL (one, two and three operands) and DIV/IDIV.
//!
//! MUL/IMUL define only CF and OF; SF/ZF/PF are set from the low half of the result and
//! AF is cleared (all undefined). DIV/IDIV leave the flags unchanged (all undefined) and
//! raise #DE on a zero divisor or a quotient that does not fit.

use crate::cpu::{AF, CF, Cpu, OF, RAX, RDX, STATUS};
use crate::exec::{Exception, write_sized_gpr};
use crate::flags::{bits, mask, sext, szp};
use crate::mem::Memory;
use crate::ops::{op_size, read_op, write_op};
use iced_x86::{Instruction, Mnemonic};

/// Split a double-width value into the accumulator pair (AX for 8-bit, else rDX:rAX).
fn write_pair(cpu: &mut Cpu, size: usize, lo: u64, hi: u64) {
    if size == 1 {
        write_sized_gpr(cpu, RAX, 2, (lo & 0xff) | ((hi & 0xff) << 8));
    } else {
        write_sized_gpr(cpu, RAX, size, lo);
        write_sized_gpr(cpu, RDX, size, hi);
    }
}

fn read_pair(cpu: &Cpu, size: usize) -> u128 {
    let nb = bits(size);
    if size == 1 {
        (cpu.gpr[RAX] & 0xffff) as u128
    } else {
        (((cpu.gpr[RDX] & mask(size)) as u128) << nb) | (cpu.gpr[RAX] & mask(size)) as u128
    }
}

pub(crate) fn exec(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    i: &Instruction,
    m: Mnemonic,
) -> Result<(), Exception> {
    let size = op_size(i, 0);
    let nb = bits(size);
    let msk = mask(size);
    match (m, i.op_count()) {
        (Mnemonic::Mul, 1) => {
            let s = read_op(cpu, mem, i, 0)? & msk;
            let p = (cpu.gpr[RAX] & msk) as u128 * s as u128;
            let lo = (p as u64) & msk;
            let hi = ((p >> nb) as u64) & msk;
            write_pair(cpu, size, lo, hi);
            let cfof = if hi != 0 { CF | OF } else { 0 };
            cpu.set_flags(STATUS, cfof | szp(lo, size));
            Ok(())
        }
        (Mnemonic::Imul, 1) => {
            let s = sext(read_op(cpu, mem, i, 0)?, size) as i64 as i128;
            let a = sext(cpu.gpr[RAX], size) as i64 as i128;
            let p = a * s;
            let lo = (p as u64) & msk;
            let hi = ((p >> nb) as u64) & msk;
            write_pair(cpu, size, lo, hi);
            let fits = sext(lo, size) as i64 as i128 == p;
            let cfof = if fits { 0 } else { CF | OF };
            cpu.set_flags(STATUS, cfof | szp(lo, size));
            Ok(())
        }
        (Mnemonic::Imul, 2) | (Mnemonic::Imul, 3) => {
            let (x, y) = if i.op_count() == 2 {
                (read_op(cpu, mem, i, 0)?, read_op(cpu, mem, i, 1)?)
            } else {
                (read_op(cpu, mem, i, 1)?, read_op(cpu, mem, i, 2)?)
            };
            let p = sext(x, size) as i64 as i128 * sext(y, size) as i64 as i128;
            let lo = (p as u64) & msk;
            let fits = sext(lo, size) as i64 as i128 == p;
            write_op(cpu, mem, i, 0, lo)?;
            let cfof = if fits { 0 } else { CF | OF };
            cpu.set_flags(STATUS, (cfof | szp(lo, size)) & !AF);
            Ok(())
        }
        (Mnemonic::Div, 1) => {
            let d = (read_op(cpu, mem, i, 0)? & msk) as u128;
            if d == 0 {
                return Err(Exception::DivideError);
            }
            let n = read_pair(cpu, size);
            let q = n / d;
            let r = n % d;
            if q > msk as u128 {
                return Err(Exception::DivideError);
            }
            write_pair(cpu, size, q as u64, r as u64);
            Ok(())
        }
        (Mnemonic::Idiv, 1) => {
            let d = sext(read_op(cpu, mem, i, 0)?, size) as i64 as i128;
            if d == 0 {
                return Err(Exception::DivideError);
            }
            let raw = read_pair(cpu, size);
            // Sign-extend the 2*nb-bit dividend.
            let sh = 128 - 2 * nb;
            let n = ((raw << sh) as i128) >> sh;
            let q = n.checked_div(d).ok_or(Exception::DivideError)?;
            let r = n.checked_rem(d).ok_or(Exception::DivideError)?;
            let lo_lim = -(1i128 << (nb - 1));
            let hi_lim = (1i128 << (nb - 1)) - 1;
            if q < lo_lim || q > hi_lim {
                return Err(Exception::DivideError);
            }
            write_pair(cpu, size, q as u64, r as u64);
            Ok(())
        }
        _ => Err(Exception::InvalidOpcode),
    }
}
