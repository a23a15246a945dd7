//! SSE/SSE2 instructions (XMM forms only; the MMX-register forms are #UD), MXCSR,
//! FXSAVE/FXRSTOR, fences and prefetches.
//!
//! Legacy-encoded instructions with a 128-bit memory operand need it 16-byte aligned
//! (#GP otherwise) except MOVUPS/MOVUPD/MOVDQU. Floating point goes through
//! [`crate::softfloat`] so results, MXCSR flags and rounding modes are bit-exact.
//!
//! An unmasked SIMD floating-point exception is #XM (#UD with CR4.OSXMMEXCPT clear),
//! raised after the flags of all lanes were merged into MXCSR. Approximation:
//! MXCSR_MASK is 0xffff (no AMD MM bit).

use crate::cpu::{AF, CF, Cpu, OF, PF, SF, ZF};
use crate::exec::Exception;
use crate::mem::Memory;
use crate::ops::{read_reg, reg_size, write_reg};
use crate::softfloat::{Env, F32, F64, Fmt};
use core::cmp::Ordering;
use iced_x86::{Code, Instruction, Mnemonic, OpKind, Register};

const CR0_EM: u64 = 1 << 2;
const CR0_TS: u64 = 1 << 3;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;

/// MXCSR bits software may set (FXSAVE's MXCSR_MASK).
pub const MXCSR_MASK: u32 = 0xffff;

/// Whether SSE instructions may run: #UD with CR0.EM set or CR4.OSFXSR clear, #NM
/// with CR0.TS set.
pub(crate) fn check_available(cpu: &Cpu) -> Result<(), Exception> {
    if cpu.cr0 & CR0_EM != 0 || cpu.cr4 & CR4_OSFXSR == 0 {
        return Err(Exception::InvalidOpcode);
    }
    if cpu.cr0 & CR0_TS != 0 {
        return Err(Exception::Vector(7)); // #NM
    }
    Ok(())
}

/// Read `buf.len()` bytes at the instruction's memory operand; #GP if `align` > 1
/// and the address is not a multiple of it. The x87 code uses this too: it is one of
/// the two places to re-point at the new memory path.
pub(crate) fn load(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    i: &Instruction,
    buf: &mut [u8],
    align: u64,
) -> Result<(), Exception> {
    let (seg, off) = crate::ops::memory_operand(cpu, i)?;
    // Alignment is checked on the linear address; segment bases are 16-aligned in
    // every mode that uses SSE, so the offset decides.
    if align > 1 && off % align != 0 {
        return Err(Exception::GeneralProtection(0));
    }
    crate::ops::read_mem_bytes(cpu, mem, seg, off, buf)
}

/// Write `buf` at the instruction's memory operand (alignment as in [`load`]).
pub(crate) fn store(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    i: &Instruction,
    buf: &[u8],
    align: u64,
) -> Result<(), Exception> {
    let (seg, off) = crate::ops::memory_operand(cpu, i)?;
    if align > 1 && off % align != 0 {
        return Err(Exception::GeneralProtection(0));
    }
    crate::ops::write_mem_bytes(cpu, mem, seg, off, buf)
}

/// Mnemonics this module executes (exec.rs falls back here for them).
pub(crate) fn handles(m: Mnemonic) -> bool {
    use Mnemonic::*;
    matches!(
        m,
        Movd | Movq
            | Movdqa
            | Movdqu
            | Movaps
            | Movups
            | Movapd
            | Movupd
            | Movss
            | Movsd
            | Movlps
            | Movhps
            | Movlpd
            | Movhpd
            | Movlhps
            | Movhlps
            | Movntdq
            | Movntps
            | Movntpd
            | Movnti
            | Pxor
            | Por
            | Pand
            | Pandn
            | Xorps
            | Xorpd
            | Andps
            | Andpd
            | Andnps
            | Andnpd
            | Orps
            | Orpd
            | Pcmpeqb
            | Pcmpeqw
            | Pcmpeqd
            | Pcmpgtb
            | Pcmpgtw
            | Pcmpgtd
            | Pmovmskb
            | Movmskps
            | Movmskpd
            | Pminub
            | Pmaxub
            | Pminsw
            | Pmaxsw
            | Paddb
            | Paddw
            | Paddd
            | Paddq
            | Psubb
            | Psubw
            | Psubd
            | Psubq
            | Paddusb
            | Paddusw
            | Psubusb
            | Psubusw
            | Paddsb
            | Paddsw
            | Psubsb
            | Psubsw
            | Pavgb
            | Pavgw
            | Psadbw
            | Pmullw
            | Pmulhw
            | Pmulhuw
            | Pmuludq
            | Pmaddwd
            | Pslldq
            | Psrldq
            | Psllw
            | Pslld
            | Psllq
            | Psrlw
            | Psrld
            | Psrlq
            | Psraw
            | Psrad
            | Punpcklbw
            | Punpcklwd
            | Punpckldq
            | Punpcklqdq
            | Punpckhbw
            | Punpckhwd
            | Punpckhdq
            | Punpckhqdq
            | Unpcklps
            | Unpckhps
            | Unpcklpd
            | Unpckhpd
            | Pshufd
            | Pshuflw
            | Pshufhw
            | Shufps
            | Shufpd
            | Packuswb
            | Packsswb
            | Packssdw
            | Pinsrw
            | Pextrw
            | Addss
            | Addsd
            | Addps
            | Addpd
            | Subss
            | Subsd
            | Subps
            | Subpd
            | Mulss
            | Mulsd
            | Mulps
            | Mulpd
            | Divss
            | Divsd
            | Divps
            | Divpd
            | Sqrtss
            | Sqrtsd
            | Sqrtps
            | Sqrtpd
            | Rcpss
            | Rcpps
            | Rsqrtss
            | Rsqrtps
            | Minss
            | Minsd
            | Minps
            | Minpd
            | Maxss
            | Maxsd
            | Maxps
            | Maxpd
            | Cmpss
            | Cmpsd
            | Cmpps
            | Cmppd
            | Ucomiss
            | Ucomisd
            | Comiss
            | Comisd
            | Cvtsi2ss
            | Cvtsi2sd
            | Cvtss2si
            | Cvtsd2si
            | Cvttss2si
            | Cvttsd2si
            | Cvtss2sd
            | Cvtsd2ss
            | Cvtdq2ps
            | Cvtdq2pd
            | Cvtps2dq
            | Cvttps2dq
            | Cvtpd2dq
            | Cvttpd2dq
            | Cvtps2pd
            | Cvtpd2ps
            | Ldmxcsr
            | Stmxcsr
            | Fxsave
            | Fxsave64
            | Fxrstor
            | Fxrstor64
            | Lfence
            | Mfence
            | Sfence
            | Prefetchnta
            | Prefetcht0
            | Prefetcht1
            | Prefetcht2
            | Emms
    )
}

fn xmm_index(r: Register) -> Option<usize> {
    let n = (r as u32).wrapping_sub(Register::XMM0 as u32);
    (n < 16).then_some(n as usize)
}

fn is_mmx(r: Register) -> bool {
    (r as u32).wrapping_sub(Register::MM0 as u32) < 8
}

/// XMM register number of operand `n` (#UD if it is not an XMM register).
fn xreg(i: &Instruction, n: u32) -> Result<usize, Exception> {
    if i.op_kind(n) != OpKind::Register {
        return Err(Exception::InvalidOpcode);
    }
    xmm_index(i.op_register(n)).ok_or(Exception::InvalidOpcode)
}

/// Instructions whose 128-bit memory operand may be misaligned.
fn unaligned_ok(m: Mnemonic) -> bool {
    matches!(m, Mnemonic::Movups | Mnemonic::Movupd | Mnemonic::Movdqu)
}

/// Operand `n` as a 128-bit value: an XMM register, a GPR (zero-extended) or the
/// memory operand (its size, zero-extended).
fn src(cpu: &mut Cpu, mem: &mut dyn Memory, i: &Instruction, n: u32) -> Result<u128, Exception> {
    match i.op_kind(n) {
        OpKind::Register => {
            let r = i.op_register(n);
            match xmm_index(r) {
                Some(x) => Ok(cpu.fpu.xmm[x]),
                None => Ok(read_reg(cpu, r)? as u128),
            }
        }
        OpKind::Memory => {
            let size = i.memory_size().size();
            if size == 0 || size > 16 {
                return Err(Exception::InvalidOpcode);
            }
            let align = if size == 16 && !unaligned_ok(i.mnemonic()) {
                16
            } else {
                1
            };
            let mut b = [0u8; 16];
            load(cpu, mem, i, &mut b[..size], align)?;
            Ok(u128::from_le_bytes(b))
        }
        _ => Err(Exception::InvalidOpcode),
    }
}

/// Write the low bytes of `v` to operand 0: XMM (whole register), GPR or memory.
fn dst(cpu: &mut Cpu, mem: &mut dyn Memory, i: &Instruction, v: u128) -> Result<(), Exception> {
    match i.op0_kind() {
        OpKind::Register => {
            let r = i.op0_register();
            match xmm_index(r) {
                Some(x) => {
                    cpu.fpu.xmm[x] = v;
                    Ok(())
                }
                None => write_reg(cpu, r, v as u64),
            }
        }
        OpKind::Memory => {
            let size = i.memory_size().size();
            if size == 0 || size > 16 {
                return Err(Exception::InvalidOpcode);
            }
            let align = if size == 16 && !unaligned_ok(i.mnemonic()) {
                16
            } else {
                1
            };
            store(cpu, mem, i, &v.to_le_bytes()[..size], align)
        }
        _ => Err(Exception::InvalidOpcode),
    }
}

fn mask(w: u32) -> u64 {
    if w >= 64 { u64::MAX } else { (1 << w) - 1 }
}

fn lane(v: u128, w: u32, k: u32) -> u64 {
    (v >> (k * w)) as u64 & mask(w)
}

fn with_lane(v: u128, w: u32, k: u32, x: u64) -> u128 {
    let m = (mask(w) as u128) << (k * w);
    (v & !m) | (((x & mask(w)) as u128) << (k * w))
}

fn sx(x: u64, w: u32) -> i64 {
    ((x << (64 - w)) as i64) >> (64 - w)
}

/// Lane-wise `f` over two vectors of `w`-bit lanes.
fn map2(a: u128, b: u128, w: u32, f: impl Fn(u64, u64) -> u64) -> u128 {
    (0..128 / w).fold(0, |r, k| {
        with_lane(r, w, k, f(lane(a, w, k), lane(b, w, k)))
    })
}

fn sat_s(v: i64, w: u32) -> u64 {
    let hi = (1i64 << (w - 1)) - 1;
    let lo = -(1i64 << (w - 1));
    v.clamp(lo, hi) as u64 & mask(w)
}

fn sat_u(v: i64, w: u32) -> u64 {
    v.clamp(0, mask(w) as i64) as u64
}

/// Narrow `w`-bit signed lanes of `a` then `b` to `w/2` bits with saturation.
fn pack(a: u128, b: u128, w: u32, unsigned: bool) -> u128 {
    let n = 128 / w;
    let h = w / 2;
    let sat = |x: u64| {
        if unsigned {
            sat_u(sx(x, w), h)
        } else {
            sat_s(sx(x, w), h)
        }
    };
    let mut r = 0;
    for k in 0..n {
        r = with_lane(r, h, k, sat(lane(a, w, k)));
        r = with_lane(r, h, n + k, sat(lane(b, w, k)));
    }
    r
}

/// Interleave the low (or high) halves of `a` and `b` in `w`-bit lanes.
fn unpack(a: u128, b: u128, w: u32, high: bool) -> u128 {
    let half = 64 / w;
    let off = if high { half } else { 0 };
    let mut r = 0;
    for k in 0..half {
        r = with_lane(r, w, 2 * k, lane(a, w, off + k));
        r = with_lane(r, w, 2 * k + 1, lane(b, w, off + k));
    }
    r
}

/// Shift count for PSxx: the immediate, or the low 64 bits of the source.
fn shift_count(cpu: &mut Cpu, mem: &mut dyn Memory, i: &Instruction) -> Result<u64, Exception> {
    match i.op1_kind() {
        OpKind::Immediate8 => Ok(i.immediate8() as u64),
        _ => Ok(src(cpu, mem, i, 1)? as u64),
    }
}

/// Run `f` with the MXCSR controls; merge the flags it raised. An unmasked one
/// stops the instruction (see the module comment).
fn float<R>(cpu: &mut Cpu, f: impl FnOnce(&mut Env) -> R) -> Result<R, Exception> {
    let mut env = Env::from_mxcsr(cpu.fpu.mxcsr);
    let r = f(&mut env);
    cpu.fpu.mxcsr |= env.flags;
    if env.flags & !(cpu.fpu.mxcsr >> 7) & 0x3f != 0 {
        // #XM with CR4.OSXMMEXCPT set, #UD without.
        return Err(if cpu.cr4 & CR4_OSXMMEXCPT != 0 {
            Exception::Vector(19)
        } else {
            Exception::InvalidOpcode
        });
    }
    Ok(r)
}

fn fmt_of(m: Mnemonic) -> (Fmt, u32) {
    use Mnemonic::*;
    match m {
        Addss | Subss | Mulss | Divss | Sqrtss | Minss | Maxss | Cmpss | Addps | Subps | Mulps
        | Divps | Sqrtps | Minps | Maxps | Cmpps | Ucomiss | Comiss => (F32, 32),
        _ => (F64, 64),
    }
}

fn arith(env: &mut Env, m: Mnemonic, f: Fmt, a: u64, b: u64, imm: u8) -> u64 {
    use Mnemonic::*;
    let (a, b) = (a as u128, b as u128);
    (match m {
        Addss | Addsd | Addps | Addpd => env.add(f, a, b, false),
        Subss | Subsd | Subps | Subpd => env.add(f, a, b, true),
        Mulss | Mulsd | Mulps | Mulpd => env.mul(f, a, b),
        Divss | Divsd | Divps | Divpd => env.div(f, a, b),
        Sqrtss | Sqrtsd | Sqrtps | Sqrtpd => env.sqrt(f, b),
        Minss | Minsd | Minps | Minpd => env.min_max(f, a, b, false),
        Maxss | Maxsd | Maxps | Maxpd => env.min_max(f, a, b, true),
        _ => {
            // CMPxx: the predicate is imm8[2:0] for the legacy encodings.
            let pred = imm & 7;
            let o = env.compare(f, a, b, matches!(pred, 1 | 2 | 5 | 6));
            let t = match pred {
                0 => o == Some(Ordering::Equal),
                1 => o == Some(Ordering::Less),
                2 => matches!(o, Some(Ordering::Less | Ordering::Equal)),
                3 => o.is_none(),
                4 => o != Some(Ordering::Equal),
                5 => o != Some(Ordering::Less),
                6 => !matches!(o, Some(Ordering::Less | Ordering::Equal)),
                _ => o.is_some(),
            };
            if t { u128::MAX } else { 0 }
        }
    }) as u64
}

fn is_scalar(m: Mnemonic) -> bool {
    use Mnemonic::*;
    matches!(
        m,
        Addss
            | Addsd
            | Subss
            | Subsd
            | Mulss
            | Mulsd
            | Divss
            | Divsd
            | Sqrtss
            | Sqrtsd
            | Minss
            | Minsd
            | Maxss
            | Maxsd
            | Cmpss
            | Cmpsd
    )
}

/// Execute one SSE/SSE2 instruction.
pub(crate) fn exec(cpu: &mut Cpu, mem: &mut dyn Memory, i: &Instruction) -> Result<(), Exception> {
    use Mnemonic::*;
    let m = i.mnemonic();
    if i.has_lock_prefix()
        || (0..i.op_count()).any(|n| i.op_kind(n) == OpKind::Register && is_mmx(i.op_register(n)))
    {
        return Err(Exception::InvalidOpcode);
    }
    // Fences and prefetches touch no SSE state and run even with SSE disabled.
    if matches!(
        m,
        Lfence | Mfence | Sfence | Prefetchnta | Prefetcht0 | Prefetcht1 | Prefetcht2
    ) {
        return Ok(());
    }
    if m == Movnti {
        let v = read_reg(cpu, i.op1_register())?;
        let size = reg_size(i.op1_register());
        return store(cpu, mem, i, &v.to_le_bytes()[..size], 1);
    }
    if m == Emms {
        crate::x87::check_available(cpu, false)?;
        cpu.fpu.ftw = 0;
        return Ok(());
    }
    check_available(cpu)?;
    match m {
        Movd | Movq => {
            if i.op0_kind() == OpKind::Register && xmm_index(i.op0_register()).is_some() {
                // To XMM: zero-extend (MOVQ xmm, xmm takes the low quadword).
                let w = if m == Movd { 32 } else { 64 };
                let v = src(cpu, mem, i, 1)? & mask(w) as u128;
                dst(cpu, mem, i, v)
            } else {
                // To a GPR or memory: dst writes the operand's size.
                let v = src(cpu, mem, i, 1)?;
                dst(cpu, mem, i, v)
            }
        }
        Movdqa | Movdqu | Movaps | Movups | Movapd | Movupd | Movntdq | Movntps | Movntpd => {
            let v = src(cpu, mem, i, 1)?;
            dst(cpu, mem, i, v)
        }
        Movss | Movsd => {
            let w = if m == Movss { 32 } else { 64 };
            let v = src(cpu, mem, i, 1)?;
            match (i.op0_kind(), i.op1_kind()) {
                (OpKind::Register, OpKind::Register) => {
                    let d = xreg(i, 0)?;
                    cpu.fpu.xmm[d] = with_lane(cpu.fpu.xmm[d], w, 0, v as u64);
                    Ok(())
                }
                // Load zero-extends; store writes the low element.
                _ => dst(cpu, mem, i, v & mask(w) as u128),
            }
        }
        Movlps | Movlpd | Movhps | Movhpd => {
            let high = matches!(m, Movhps | Movhpd);
            if i.op0_kind() == OpKind::Memory {
                let x = cpu.fpu.xmm[xreg(i, 1)?];
                dst(cpu, mem, i, lane(x, 64, high as u32) as u128)
            } else {
                let d = xreg(i, 0)?;
                let v = src(cpu, mem, i, 1)? as u64;
                cpu.fpu.xmm[d] = with_lane(cpu.fpu.xmm[d], 64, high as u32, v);
                Ok(())
            }
        }
        Movlhps | Movhlps => {
            let d = xreg(i, 0)?;
            let s = cpu.fpu.xmm[xreg(i, 1)?];
            cpu.fpu.xmm[d] = if m == Movlhps {
                with_lane(cpu.fpu.xmm[d], 64, 1, lane(s, 64, 0))
            } else {
                with_lane(cpu.fpu.xmm[d], 64, 0, lane(s, 64, 1))
            };
            Ok(())
        }
        Pmovmskb | Movmskps | Movmskpd => {
            let s = cpu.fpu.xmm[xreg(i, 1)?];
            let w = match m {
                Pmovmskb => 8,
                Movmskps => 32,
                _ => 64,
            };
            let bits = (0..128 / w).fold(0u64, |r, k| r | ((lane(s, w, k) >> (w - 1)) << k));
            write_reg(cpu, i.op0_register(), bits)
        }
        Pextrw => {
            if !matches!(
                i.code(),
                Code::Pextrw_r32_xmm_imm8 | Code::Pextrw_r64_xmm_imm8
            ) {
                return Err(Exception::InvalidOpcode); // the SSE4.1 form
            }
            let s = cpu.fpu.xmm[xreg(i, 1)?];
            write_reg(
                cpu,
                i.op0_register(),
                lane(s, 16, (i.immediate8() & 7) as u32),
            )
        }
        Pinsrw => {
            let d = xreg(i, 0)?;
            let v = src(cpu, mem, i, 1)? as u64;
            cpu.fpu.xmm[d] = with_lane(cpu.fpu.xmm[d], 16, (i.immediate8() & 7) as u32, v);
            Ok(())
        }
        Pslldq | Psrldq => {
            let d = xreg(i, 0)?;
            let n = i.immediate8() as u32;
            let x = cpu.fpu.xmm[d];
            cpu.fpu.xmm[d] = match (n > 15, m == Pslldq) {
                (true, _) => 0,
                (false, true) => x << (n * 8),
                (false, false) => x >> (n * 8),
            };
            Ok(())
        }
        Psllw | Pslld | Psllq | Psrlw | Psrld | Psrlq | Psraw | Psrad => {
            let d = xreg(i, 0)?;
            let count = shift_count(cpu, mem, i)?;
            let w = match m {
                Psllw | Psrlw | Psraw => 16,
                Pslld | Psrld | Psrad => 32,
                _ => 64,
            };
            let x = cpu.fpu.xmm[d];
            cpu.fpu.xmm[d] = match m {
                Psraw | Psrad => {
                    let c = count.min(w as u64 - 1) as u32;
                    map2(x, 0, w, |a, _| (sx(a, w) >> c) as u64)
                }
                _ if count >= w as u64 => 0,
                Psllw | Pslld | Psllq => map2(x, 0, w, |a, _| a << count),
                _ => map2(x, 0, w, |a, _| a >> count),
            };
            Ok(())
        }
        Pshufd | Pshuflw | Pshufhw | Shufps | Shufpd => {
            let d = xreg(i, 0)?;
            let s = src(cpu, mem, i, 1)?;
            let a = cpu.fpu.xmm[d];
            let imm = i.immediate8() as u32;
            let sel = |k: u32| (imm >> (2 * k)) & 3;
            let mut r = 0;
            match m {
                Pshufd => {
                    for k in 0..4 {
                        r = with_lane(r, 32, k, lane(s, 32, sel(k)));
                    }
                }
                Pshuflw | Pshufhw => {
                    let base = if m == Pshufhw { 4 } else { 0 };
                    r = s;
                    for k in 0..4 {
                        r = with_lane(r, 16, base + k, lane(s, 16, base + sel(k)));
                    }
                }
                Shufps => {
                    for k in 0..4 {
                        let from = if k < 2 { a } else { s };
                        r = with_lane(r, 32, k, lane(from, 32, sel(k)));
                    }
                }
                _ => {
                    r = with_lane(r, 64, 0, lane(a, 64, imm & 1));
                    r = with_lane(r, 64, 1, lane(s, 64, (imm >> 1) & 1));
                }
            }
            cpu.fpu.xmm[d] = r;
            Ok(())
        }
        Ucomiss | Ucomisd | Comiss | Comisd => {
            let (f, w) = fmt_of(m);
            let a = lane(cpu.fpu.xmm[xreg(i, 0)?], w, 0);
            let b = lane(src(cpu, mem, i, 1)?, w, 0);
            let signal = matches!(m, Comiss | Comisd);
            let o = float(cpu, |e| e.compare(f, a as u128, b as u128, signal))?;
            let fl = match o {
                None => ZF | PF | CF,
                Some(Ordering::Greater) => 0,
                Some(Ordering::Less) => CF,
                Some(Ordering::Equal) => ZF,
            };
            cpu.set_flags(ZF | PF | CF | OF | SF | AF, fl);
            Ok(())
        }
        Cvtsi2ss | Cvtsi2sd => {
            let d = xreg(i, 0)?;
            let size = match i.op1_kind() {
                OpKind::Register => reg_size(i.op1_register()),
                _ => i.memory_size().size(),
            };
            let v = src(cpu, mem, i, 1)? as u64;
            let v = if size == 8 {
                v as i64
            } else {
                v as u32 as i32 as i64
            };
            let (f, w) = if m == Cvtsi2ss { (F32, 32) } else { (F64, 64) };
            let r = float(cpu, |e| e.int_to_float(f, v))? as u64;
            cpu.fpu.xmm[d] = with_lane(cpu.fpu.xmm[d], w, 0, r);
            Ok(())
        }
        Cvtss2si | Cvtsd2si | Cvttss2si | Cvttsd2si => {
            let (f, w) = if matches!(m, Cvtss2si | Cvttss2si) {
                (F32, 32)
            } else {
                (F64, 64)
            };
            let a = lane(src(cpu, mem, i, 1)?, w, 0);
            let bits = reg_size(i.op0_register()) as u32 * 8;
            if bits != 32 && bits != 64 {
                return Err(Exception::InvalidOpcode);
            }
            let trunc = matches!(m, Cvttss2si | Cvttsd2si);
            let r = float(cpu, |e| e.float_to_int(f, a as u128, bits, trunc))?;
            write_reg(cpu, i.op0_register(), r)
        }
        Cvtss2sd | Cvtsd2ss => {
            let d = xreg(i, 0)?;
            let s = src(cpu, mem, i, 1)?;
            let r = if m == Cvtss2sd {
                let r = float(cpu, |e| e.convert(F32, F64, lane(s, 32, 0) as u128))? as u64;
                with_lane(cpu.fpu.xmm[d], 64, 0, r)
            } else {
                let r = float(cpu, |e| e.convert(F64, F32, lane(s, 64, 0) as u128))? as u64;
                with_lane(cpu.fpu.xmm[d], 32, 0, r)
            };
            cpu.fpu.xmm[d] = r;
            Ok(())
        }
        Cvtdq2ps | Cvtdq2pd | Cvtps2dq | Cvttps2dq | Cvtpd2dq | Cvttpd2dq | Cvtps2pd | Cvtpd2ps => {
            let d = xreg(i, 0)?;
            let s = src(cpu, mem, i, 1)?;
            let r = float(cpu, |e| {
                let mut r = 0u128;
                match m {
                    Cvtdq2ps => {
                        for k in 0..4 {
                            let v = sx(lane(s, 32, k), 32);
                            r = with_lane(r, 32, k, e.int_to_float(F32, v) as u64);
                        }
                    }
                    Cvtdq2pd => {
                        for k in 0..2 {
                            let v = sx(lane(s, 32, k), 32);
                            r = with_lane(r, 64, k, e.int_to_float(F64, v) as u64);
                        }
                    }
                    Cvtps2dq | Cvttps2dq => {
                        for k in 0..4 {
                            let v = e.float_to_int(F32, lane(s, 32, k) as u128, 32, m == Cvttps2dq);
                            r = with_lane(r, 32, k, v);
                        }
                    }
                    Cvtpd2dq | Cvttpd2dq => {
                        for k in 0..2 {
                            let v = e.float_to_int(F64, lane(s, 64, k) as u128, 32, m == Cvttpd2dq);
                            r = with_lane(r, 32, k, v);
                        }
                    }
                    Cvtps2pd => {
                        for k in 0..2 {
                            r = with_lane(
                                r,
                                64,
                                k,
                                e.convert(F32, F64, lane(s, 32, k) as u128) as u64,
                            );
                        }
                    }
                    _ => {
                        for k in 0..2 {
                            r = with_lane(
                                r,
                                32,
                                k,
                                e.convert(F64, F32, lane(s, 64, k) as u128) as u64,
                            );
                        }
                    }
                }
                r
            })?;
            cpu.fpu.xmm[d] = r;
            Ok(())
        }
        Rcpss | Rcpps | Rsqrtss | Rsqrtps => {
            let d = xreg(i, 0)?;
            let s = src(cpu, mem, i, 1)?;
            let n = if matches!(m, Rcpss | Rsqrtss) { 1 } else { 4 };
            let sqrt = matches!(m, Rsqrtss | Rsqrtps);
            cpu.fpu.xmm[d] = (0..n).fold(cpu.fpu.xmm[d], |r, k| {
                let v = Env::approx_recip(F32, lane(s, 32, k) as u128, sqrt);
                with_lane(r, 32, k, v as u64)
            });
            Ok(())
        }
        Ldmxcsr => {
            let mut b = [0u8; 4];
            load(cpu, mem, i, &mut b, 1)?;
            let v = u32::from_le_bytes(b);
            if v & !MXCSR_MASK != 0 {
                return Err(Exception::GeneralProtection(0));
            }
            cpu.fpu.mxcsr = v;
            Ok(())
        }
        Stmxcsr => store(cpu, mem, i, &cpu.fpu.mxcsr.to_le_bytes(), 1),
        Fxsave | Fxsave64 => {
            let img = cpu.fpu.fxsave();
            store(cpu, mem, i, &img[..crate::fpu::FXSAVE_WRITTEN], 16)
        }
        Fxrstor | Fxrstor64 => {
            let mut img = [0u8; 512];
            load(cpu, mem, i, &mut img, 16)?;
            cpu.fpu
                .fxrstor(&img)
                .map_err(|_| Exception::GeneralProtection(0))
        }
        _ if is_scalar(m) || is_packed_float(m) => {
            let d = xreg(i, 0)?;
            let (f, w) = fmt_of(m);
            let a = cpu.fpu.xmm[d];
            let b = src(cpu, mem, i, 1)?;
            let imm = if i.op_count() > 2 { i.immediate8() } else { 0 };
            let n = if is_scalar(m) { 1 } else { 128 / w };
            let r = float(cpu, |e| {
                (0..n).fold(a, |r, k| {
                    with_lane(r, w, k, arith(e, m, f, lane(a, w, k), lane(b, w, k), imm))
                })
            })?;
            cpu.fpu.xmm[d] = r;
            Ok(())
        }
        _ => {
            let d = xreg(i, 0)?;
            let a = cpu.fpu.xmm[d];
            let b = src(cpu, mem, i, 1)?;
            cpu.fpu.xmm[d] = integer(m, a, b).ok_or(Exception::InvalidOpcode)?;
            Ok(())
        }
    }
}

fn is_packed_float(m: Mnemonic) -> bool {
    use Mnemonic::*;
    matches!(
        m,
        Addps
            | Subps
            | Mulps
            | Divps
            | Sqrtps
            | Minps
            | Maxps
            | Cmpps
            | Addpd
            | Subpd
            | Mulpd
            | Divpd
            | Sqrtpd
            | Minpd
            | Maxpd
            | Cmppd
    )
}

/// Two-operand integer/logic/unpack/pack operations: `a op b`.
fn integer(m: Mnemonic, a: u128, b: u128) -> Option<u128> {
    use Mnemonic::*;
    let all = |t: bool| if t { u64::MAX } else { 0 };
    Some(match m {
        Pxor | Xorps | Xorpd => a ^ b,
        Por | Orps | Orpd => a | b,
        Pand | Andps | Andpd => a & b,
        Pandn | Andnps | Andnpd => !a & b,
        Pcmpeqb => map2(a, b, 8, |x, y| all(x == y)),
        Pcmpeqw => map2(a, b, 16, |x, y| all(x == y)),
        Pcmpeqd => map2(a, b, 32, |x, y| all(x == y)),
        Pcmpgtb => map2(a, b, 8, |x, y| all(sx(x, 8) > sx(y, 8))),
        Pcmpgtw => map2(a, b, 16, |x, y| all(sx(x, 16) > sx(y, 16))),
        Pcmpgtd => map2(a, b, 32, |x, y| all(sx(x, 32) > sx(y, 32))),
        Pminub => map2(a, b, 8, u64::min),
        Pmaxub => map2(a, b, 8, u64::max),
        Pminsw => map2(a, b, 16, |x, y| sx(x, 16).min(sx(y, 16)) as u64),
        Pmaxsw => map2(a, b, 16, |x, y| sx(x, 16).max(sx(y, 16)) as u64),
        Paddb => map2(a, b, 8, u64::wrapping_add),
        Paddw => map2(a, b, 16, u64::wrapping_add),
        Paddd => map2(a, b, 32, u64::wrapping_add),
        Paddq => map2(a, b, 64, u64::wrapping_add),
        Psubb => map2(a, b, 8, u64::wrapping_sub),
        Psubw => map2(a, b, 16, u64::wrapping_sub),
        Psubd => map2(a, b, 32, u64::wrapping_sub),
        Psubq => map2(a, b, 64, u64::wrapping_sub),
        Paddusb => map2(a, b, 8, |x, y| sat_u((x + y) as i64, 8)),
        Paddusw => map2(a, b, 16, |x, y| sat_u((x + y) as i64, 16)),
        Psubusb => map2(a, b, 8, |x, y| sat_u(x as i64 - y as i64, 8)),
        Psubusw => map2(a, b, 16, |x, y| sat_u(x as i64 - y as i64, 16)),
        Paddsb => map2(a, b, 8, |x, y| sat_s(sx(x, 8) + sx(y, 8), 8)),
        Paddsw => map2(a, b, 16, |x, y| sat_s(sx(x, 16) + sx(y, 16), 16)),
        Psubsb => map2(a, b, 8, |x, y| sat_s(sx(x, 8) - sx(y, 8), 8)),
        Psubsw => map2(a, b, 16, |x, y| sat_s(sx(x, 16) - sx(y, 16), 16)),
        Pavgb => map2(a, b, 8, |x, y| (x + y + 1) >> 1),
        Pavgw => map2(a, b, 16, |x, y| (x + y + 1) >> 1),
        Psadbw => map2(a, b, 64, |x, y| {
            (0..8)
                .map(|k| lane(x as u128, 8, k).abs_diff(lane(y as u128, 8, k)))
                .sum()
        }),
        Pmullw => map2(a, b, 16, |x, y| (sx(x, 16) * sx(y, 16)) as u64),
        Pmulhw => map2(a, b, 16, |x, y| ((sx(x, 16) * sx(y, 16)) >> 16) as u64),
        Pmulhuw => map2(a, b, 16, |x, y| (x * y) >> 16),
        Pmuludq => map2(a, b, 64, |x, y| (x & 0xffff_ffff) * (y & 0xffff_ffff)),
        Pmaddwd => map2(a, b, 32, |x, y| {
            let p = |k| sx(lane(x as u128, 16, k), 16) * sx(lane(y as u128, 16, k), 16);
            (p(0) + p(1)) as u64
        }),
        Punpcklbw => unpack(a, b, 8, false),
        Punpcklwd => unpack(a, b, 16, false),
        Punpckldq | Unpcklps => unpack(a, b, 32, false),
        Punpcklqdq | Unpcklpd => unpack(a, b, 64, false),
        Punpckhbw => unpack(a, b, 8, true),
        Punpckhwd => unpack(a, b, 16, true),
        Punpckhdq | Unpckhps => unpack(a, b, 32, true),
        Punpckhqdq | Unpckhpd => unpack(a, b, 64, true),
        Packsswb => pack(a, b, 16, false),
        Packuswb => pack(a, b, 16, true),
        Packssdw => pack(a, b, 32, false),
        _ => return None,
    })
}
