//! ADD/ADC/SUB/SBB/CMP/AND/OR/XOR/TEST and INC/DEC/NEG/NOT.

use crate::cpu::{CF, Cpu, STATUS};
use crate::exec::Exception;
use crate::flags::{add, logic, mask, sub};
use crate::mem::Memory;
use crate::ops::{op_size, read_op, write_op};
use iced_x86::{Instruction, Mnemonic};

pub(crate) fn binary(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    i: &Instruction,
    m: Mnemonic,
) -> Result<(), Exception> {
    let size = op_size(i, 0);
    let a = read_op(cpu, mem, i, 0)? & mask(size);
    let b = read_op(cpu, mem, i, 1)? & mask(size);
    let cf = cpu.flag(CF);
    let (res, f) = match m {
        Mnemonic::Add => add(a, b, false, size),
        Mnemonic::Adc => add(a, b, cf, size),
        Mnemonic::Sub | Mnemonic::Cmp => sub(a, b, false, size),
        Mnemonic::Sbb => sub(a, b, cf, size),
        Mnemonic::And | Mnemonic::Test => (a & b, logic(a & b, size)),
        Mnemonic::Or => (a | b, logic(a | b, size)),
        Mnemonic::Xor => (a ^ b, logic(a ^ b, size)),
        _ => return Err(Exception::InvalidOpcode),
    };
    if !matches!(m, Mnemonic::Cmp | Mnemonic::Test) {
        write_op(cpu, mem, i, 0, res)?;
    }
    cpu.set_flags(STATUS, f);
    Ok(())
}

pub(crate) fn unary(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    i: &Instruction,
    m: Mnemonic,
) -> Result<(), Exception> {
    let size = op_size(i, 0);
    let a = read_op(cpu, mem, i, 0)? & mask(size);
    let (res, f, which) = match m {
        Mnemonic::Inc => {
            let (r, f) = add(a, 1, false, size);
            (r, f, STATUS & !CF)
        }
        Mnemonic::Dec => {
            let (r, f) = sub(a, 1, false, size);
            (r, f, STATUS & !CF)
        }
        Mnemonic::Neg => {
            let (r, f) = sub(0, a, false, size);
            (r, f, STATUS)
        }
        Mnemonic::Not => (!a & mask(size), 0, 0),
        _ => return Err(Exception::InvalidOpcode),
    };
    write_op(cpu, mem, i, 0, res)?;
    cpu.set_flags(which, f);
    Ok(())
}
