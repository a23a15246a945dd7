//! The x87 FPU subset boot code, firmware and occasional kernel/userland code use:
//! initialisation and status/control words, loads and stores (float, integer,
//! 80-bit), the basic arithmetic, compares, FXCH/FCHS/FABS/FXAM/FTST, FCMOVcc and
//! FNSAVE/FRSTOR (32/64-bit layout).
//!
//! Values are exact 80-bit double extended: arithmetic goes through
//! [`crate::softfloat`] with the FCW rounding and precision control, so there is no
//! detour through f64. Approximations: unsupported encodings (unnormals,
//! pseudo-infinities/NaNs) are invalid operands; C1 is not set for results rounded
//! up; an unmasked exception only sets ES/B (no #MF: the exception enum has no
//! variant for it yet, and the result is stored as if masked); the instruction/operand
//! pointers and opcode are not tracked (FNSAVE/FXSAVE store zeros).

use crate::cpu::{AF, CF, Cpu, OF, PF, RAX, SF as RF_SF, ZF};
use crate::exec::Exception;
use crate::mem::Memory;
use crate::softfloat::{DE, Env, F32, F64, Fmt, IE, Round, X80, ZE};
use crate::sse::{load, store};
use core::cmp::Ordering;
use iced_x86::{Instruction, Mnemonic, OpKind, Register};

const C0: u16 = 1 << 8;
const C1: u16 = 1 << 9;
const C2: u16 = 1 << 10;
const C3: u16 = 1 << 14;
const SF: u16 = 1 << 6;
const ES: u16 = 1 << 7;
const B: u16 = 1 << 15;
const CC: u16 = C0 | C1 | C2 | C3;

const CR0_MP: u64 = 1 << 1;
const CR0_EM: u64 = 1 << 2;
const CR0_TS: u64 = 1 << 3;

/// #NM conditions: CR0.EM or CR0.TS for x87 instructions; CR0.TS with CR0.MP for
/// WAIT.
pub(crate) fn check_available(cpu: &Cpu, wait: bool) -> Result<(), Exception> {
    let nm = if wait {
        cpu.cr0 & CR0_TS != 0 && cpu.cr0 & CR0_MP != 0
    } else {
        cpu.cr0 & (CR0_EM | CR0_TS) != 0
    };
    if nm {
        return Err(Exception::Vector(7)); // #NM
    }
    Ok(())
}

pub(crate) fn handles(m: Mnemonic) -> bool {
    use Mnemonic::*;
    matches!(
        m,
        Fninit
            | Finit
            | Fnstsw
            | Fstsw
            | Fnstcw
            | Fstcw
            | Fldcw
            | Fnclex
            | Fclex
            | Wait
            | Fnop
            | Fld
            | Fst
            | Fstp
            | Fild
            | Fist
            | Fistp
            | Fld1
            | Fldz
            | Fldpi
            | Fldl2e
            | Fldl2t
            | Fldlg2
            | Fldln2
            | Fadd
            | Faddp
            | Fiadd
            | Fsub
            | Fsubp
            | Fisub
            | Fsubr
            | Fsubrp
            | Fisubr
            | Fmul
            | Fmulp
            | Fimul
            | Fdiv
            | Fdivp
            | Fidiv
            | Fdivr
            | Fdivrp
            | Fidivr
            | Fsqrt
            | Fchs
            | Fabs
            | Fxch
            | Fcom
            | Fcomp
            | Fcompp
            | Fucom
            | Fucomp
            | Fucompp
            | Fcomi
            | Fcomip
            | Fucomi
            | Fucomip
            | Ftst
            | Fxam
            | Ffree
            | Fincstp
            | Fdecstp
            | Fcmovb
            | Fcmove
            | Fcmovbe
            | Fcmovu
            | Fcmovnb
            | Fcmovne
            | Fcmovnbe
            | Fcmovnu
            | Fnsave
            | Fsave
            | Frstor
            | Fnstenv
            | Fstenv
            | Fldenv
            | Frndint
    )
}

// ---------------------------------------------------------------------------------
// 80-bit values <-> the softfloat X80 encoding (integer bit implicit).

const EXP_MASK: u128 = 0x7fff;

/// Raw 80-bit value to X80; `None` for encodings the FPU rejects as invalid.
fn unpack80(raw: u128) -> Option<u128> {
    let mant = raw as u64;
    let exp = (raw >> 64) & EXP_MASK;
    let sign = (raw >> 79) & 1;
    let j = mant >> 63;
    let exp = match (exp, j) {
        (0, 1) => 1, // pseudo-denormal: same value as the normal with exponent 1
        (0, _) => 0,
        (_, 0) => return None, // unnormal, pseudo-infinity, pseudo-NaN
        (e, _) => e,
    };
    Some((sign << 78) | (exp << 63) | (mant as u128 & ((1 << 63) - 1)))
}

fn pack80(x: u128) -> u128 {
    let exp = (x >> 63) & EXP_MASK;
    let sign = (x >> 78) & 1;
    let j = (exp != 0) as u128;
    (sign << 79) | (exp << 64) | (j << 63) | (x & ((1 << 63) - 1))
}

/// The real indefinite (negative QNaN) as raw 80 bits.
const INDEFINITE: u128 = 0xffff_c000_0000_0000_0000;

fn is_nan80(raw: u128) -> bool {
    (raw >> 64) & EXP_MASK == EXP_MASK && (raw as u64) << 1 != 0
}

// ---------------------------------------------------------------------------------
// Register stack.

struct Fpu<'a> {
    cpu: &'a mut Cpu,
}

impl Fpu<'_> {
    fn top(&self) -> usize {
        self.cpu.fpu.top()
    }
    fn set_top(&mut self, t: usize) {
        self.cpu.fpu.fsw = (self.cpu.fpu.fsw & !(7 << 11)) | ((t as u16 & 7) << 11);
    }
    fn phys(&self, i: usize) -> usize {
        (self.top() + i) & 7
    }
    fn valid(&self, i: usize) -> bool {
        self.cpu.fpu.ftw & (1 << self.phys(i)) != 0
    }
    fn raw(&self, i: usize) -> u128 {
        let r = &self.cpu.fpu.st[self.phys(i)];
        let mut b = [0u8; 16];
        b[..10].copy_from_slice(&r[..10]);
        u128::from_le_bytes(b)
    }
    fn set(&mut self, i: usize, raw: u128) {
        let p = self.phys(i);
        let mut r = [0u8; 16];
        r[..10].copy_from_slice(&raw.to_le_bytes()[..10]);
        self.cpu.fpu.st[p] = r;
        self.cpu.fpu.ftw |= 1 << p;
    }
    /// ST(i), or a masked stack underflow (IE|SF, C1 clear) giving the indefinite.
    fn get(&mut self, i: usize) -> u128 {
        if self.valid(i) {
            self.raw(i)
        } else {
            self.cpu.fpu.fsw &= !C1;
            self.raise(IE, SF);
            INDEFINITE
        }
    }
    fn push(&mut self, raw: u128) {
        let t = (self.top() + 7) & 7;
        self.set_top(t);
        if self.cpu.fpu.ftw & (1 << t) != 0 {
            // Stack overflow: masked response stores the indefinite.
            self.cpu.fpu.fsw |= C1;
            self.raise(IE, SF);
            self.set(0, INDEFINITE);
        } else {
            self.set(0, raw);
        }
    }
    fn pop(&mut self) {
        let p = self.phys(0);
        self.cpu.fpu.ftw &= !(1 << p);
        self.set_top(self.top() + 1);
    }
    /// Merge exception flags; an unmasked one sets the summary bits.
    fn raise(&mut self, flags: u32, extra: u16) {
        let f = &mut self.cpu.fpu;
        f.fsw |= (flags & 0x3f) as u16 | extra;
        if f.fsw & !f.fcw & 0x3f != 0 {
            f.fsw |= ES | B;
        }
    }
    /// C1 reports an inexact result rounded up.
    fn round_up(&mut self, env: &Env) {
        if env.up && env.flags & crate::softfloat::PE != 0 {
            self.cpu.fpu.fsw |= C1;
        }
    }
    fn env(&self) -> Env {
        let fcw = self.cpu.fpu.fcw as u32;
        Env {
            round: Round::from_rc(fcw >> 10),
            ftz: false,
            daz: false,
            um: fcw & (1 << 4) != 0,
            flags: 0,
            up: false,
        }
    }
    /// X80 with the FCW precision control.
    fn fmt(&self) -> Fmt {
        let prec = match (self.cpu.fpu.fcw >> 8) & 3 {
            0 => 23,
            2 => 52,
            _ => 63,
        };
        Fmt { prec, ..X80 }
    }
}

/// ST register number of operand `n`.
fn st_index(i: &Instruction, n: u32) -> Option<usize> {
    if i.op_kind(n) != OpKind::Register {
        return None;
    }
    let k = (i.op_register(n) as u32).wrapping_sub(Register::ST0 as u32);
    (k < 8).then_some(k as usize)
}

/// The memory operand as raw 80 bits (float or integer per `int`), with the
/// conversion's flags in `env`.
fn load_operand(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    i: &Instruction,
    int: bool,
    env: &mut Env,
) -> Result<u128, Exception> {
    let size = i.memory_size().size();
    let mut b = [0u8; 16];
    if !matches!(size, 2 | 4 | 8 | 10) {
        return Err(Exception::InvalidOpcode);
    }
    load(cpu, mem, i, &mut b[..size], 1)?;
    let v = u128::from_le_bytes(b);
    Ok(match (int, size) {
        (true, 2) => pack80(env.int_to_float(X80, v as u16 as i16 as i64)),
        (true, 4) => pack80(env.int_to_float(X80, v as u32 as i32 as i64)),
        (true, _) => pack80(env.int_to_float(X80, v as u64 as i64)),
        // NaNs keep their signaling bit: the instruction's NaN rules need it.
        (false, 4) if F32.is_nan(v) => nan_to_80(v, 32, 23),
        (false, 8) if F64.is_nan(v) => nan_to_80(v, 64, 52),
        (false, 4) => pack80(env.convert(F32, X80, v)),
        (false, 8) => pack80(env.convert(F64, X80, v)),
        (false, _) => v,
    })
}

/// A binary32/64 NaN widened to 80 bits, payload kept, not quieted.
fn nan_to_80(v: u128, width: u32, frac: u32) -> u128 {
    let sign = (v >> (width - 1)) & 1;
    let payload = v & ((1 << frac) - 1);
    (sign << 79) | (EXP_MASK << 64) | (1 << 63) | (payload << (63 - frac))
}

/// x87 NaN propagation for `a op b` (in computation order): SNaNs are IE; a QNaN
/// wins over an SNaN, otherwise the larger significand, the positive one on a tie;
/// the result is quiet.
fn nan_result(env: &mut Env, a: u128, b: u128) -> Option<u128> {
    let quiet = |x: u128| x | (1 << 62);
    let snan = |x: u128| is_nan80(x) && x & (1 << 62) == 0;
    let (sa, sb) = (snan(a), snan(b));
    if sa || sb {
        env.flags |= IE;
    }
    match (is_nan80(a), is_nan80(b)) {
        (false, false) => None,
        (true, false) => Some(quiet(a)),
        (false, true) => Some(quiet(b)),
        (true, true) if sa == sb => {
            let (ma, mb) = (a as u64, b as u64);
            let pick_a = ma > mb || (ma == mb && a >> 79 == 0);
            Some(quiet(if pick_a { a } else { b }))
        }
        (true, true) => Some(quiet(if sa { b } else { a })),
    }
}

#[derive(Clone, Copy)]
enum Op {
    Add,
    Sub,
    SubR,
    Mul,
    Div,
    DivR,
}

fn arith(env: &mut Env, f: Fmt, op: Op, a: u128, b: u128) -> u128 {
    let (first, second) = match op {
        Op::SubR | Op::DivR => (b, a),
        _ => (a, b),
    };
    if let Some(n) = nan_result(env, first, second) {
        return n;
    }
    let (Some(x), Some(y)) = (unpack80(a), unpack80(b)) else {
        env.flags |= IE;
        return INDEFINITE;
    };
    pack80(match op {
        Op::Add => env.add(f, x, y, false),
        Op::Sub => env.add(f, x, y, true),
        Op::SubR => env.add(f, y, x, true),
        Op::Mul => env.mul(f, x, y),
        Op::Div => env.div(f, x, y),
        Op::DivR => env.div(f, y, x),
    })
}

/// Compare ST(0) with `b`; `None` is unordered (IE for any NaN if `signal`).
fn compare(env: &mut Env, a: u128, b: u128, signal: bool) -> Option<Ordering> {
    let (Some(x), Some(y)) = (unpack80(a), unpack80(b)) else {
        env.flags |= IE;
        return None;
    };
    env.compare(X80, x, y, signal)
}

fn cc_of(o: Option<Ordering>) -> u16 {
    match o {
        None => C3 | C2 | C0,
        Some(Ordering::Greater) => 0,
        Some(Ordering::Less) => C0,
        Some(Ordering::Equal) => C3,
    }
}

/// Full tag word (2 bits per physical register) for FNSAVE.
fn full_tags(cpu: &Cpu) -> u16 {
    let mut t = 0u16;
    for p in 0..8 {
        let tag = if cpu.fpu.ftw & (1 << p) == 0 {
            3
        } else {
            let r = &cpu.fpu.st[p];
            let exp = u16::from_le_bytes([r[8], r[9]]) & 0x7fff;
            let mant = u64::from_le_bytes([r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]]);
            match exp {
                0 if mant == 0 => 1,
                0 | 0x7fff => 2,
                _ if mant >> 63 == 0 => 2,
                _ => 0,
            }
        };
        t |= tag << (2 * p);
    }
    t
}

fn init(cpu: &mut Cpu) {
    cpu.fpu.fcw = 0x037f;
    cpu.fpu.fsw = 0;
    cpu.fpu.ftw = 0;
}

/// Constants as raw 80 bits, rounded per FCW.RC: the truncated 64-bit mantissa
/// and whether round-to-nearest goes up (all the irrational ones are inexact).
fn constant(m: Mnemonic, rc: Round) -> u128 {
    let (exp, mant, nearest_up): (u128, u64, bool) = match m {
        Mnemonic::Fld1 => return (0x3fff << 64) | 0x8000_0000_0000_0000,
        Mnemonic::Fldz => return 0,
        Mnemonic::Fldpi => (0x4000, 0xc90f_daa2_2168_c234, true),
        Mnemonic::Fldl2e => (0x3fff, 0xb8aa_3b29_5c17_f0bb, true),
        Mnemonic::Fldl2t => (0x4000, 0xd49a_784b_cd1b_8afe, false),
        Mnemonic::Fldlg2 => (0x3ffd, 0x9a20_9a84_fbcf_f798, true),
        _ => (0x3ffe, 0xb172_17f7_d1cf_79ab, true), // Fldln2
    };
    let up = match rc {
        Round::Nearest => nearest_up,
        Round::Up => true,
        Round::Down | Round::Zero => false,
    };
    (exp << 64) | (mant + up as u64) as u128
}

/// Execute one x87 instruction.
pub(crate) fn exec(cpu: &mut Cpu, mem: &mut dyn Memory, i: &Instruction) -> Result<(), Exception> {
    use Mnemonic::*;
    let m = i.mnemonic();
    if i.has_lock_prefix() {
        return Err(Exception::InvalidOpcode);
    }
    check_available(cpu, m == Wait)?;
    // A fault leaves the FPU (and RFLAGS, for FCOMI) as they were.
    let (saved, rflags) = (cpu.fpu.clone(), cpu.rflags);
    let r = exec_inner(cpu, mem, i, m);
    if r.is_err() {
        cpu.fpu = saved;
        cpu.rflags = rflags;
    }
    r
}

fn exec_inner(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    i: &Instruction,
    m: Mnemonic,
) -> Result<(), Exception> {
    use Mnemonic::*;
    let has_mem = (0..i.op_count()).any(|n| i.op_kind(n) == OpKind::Memory);
    match m {
        Wait | Fnop => Ok(()),
        Fninit | Finit => {
            init(cpu);
            Ok(())
        }
        Fnclex | Fclex => {
            cpu.fpu.fsw &= !(0xff | B);
            Ok(())
        }
        Fnstsw | Fstsw => {
            let v = cpu.fpu.fsw;
            if has_mem {
                store(cpu, mem, i, &v.to_le_bytes(), 1)
            } else {
                cpu.gpr[RAX] = (cpu.gpr[RAX] & !0xffff) | v as u64;
                Ok(())
            }
        }
        Fnstcw | Fstcw => store(cpu, mem, i, &cpu.fpu.fcw.to_le_bytes(), 1),
        Fldcw => {
            let mut b = [0u8; 2];
            load(cpu, mem, i, &mut b, 1)?;
            // Bit 6 reads as 1; the reserved high bits read as 0.
            cpu.fpu.fcw = (u16::from_le_bytes(b) & 0x1f3f) | 0x40;
            let mut f = Fpu { cpu };
            f.raise(0, 0);
            if f.cpu.fpu.fsw & !f.cpu.fpu.fcw & 0x3f == 0 {
                f.cpu.fpu.fsw &= !(ES | B);
            }
            Ok(())
        }
        Fnstenv | Fstenv => {
            // 28-byte environment (32/64-bit layout); pointers not tracked. Then all
            // exceptions are masked, as the hardware does.
            if i.memory_size().size() != 28 {
                return Err(Exception::InvalidOpcode);
            }
            let mut b = [0u8; 28];
            // The upper halves of the FCW/FSW/FTW doublewords read as ones.
            b[..12].fill(0xff);
            b[0..2].copy_from_slice(&cpu.fpu.fcw.to_le_bytes());
            b[4..6].copy_from_slice(&cpu.fpu.fsw.to_le_bytes());
            b[8..10].copy_from_slice(&full_tags(cpu).to_le_bytes());
            store(cpu, mem, i, &b, 1)?;
            cpu.fpu.fcw |= 0x3f;
            Ok(())
        }
        Fldenv => {
            if i.memory_size().size() != 28 {
                return Err(Exception::InvalidOpcode);
            }
            let mut b = [0u8; 28];
            load(cpu, mem, i, &mut b, 1)?;
            cpu.fpu.fcw = u16::from_le_bytes([b[0], b[1]]);
            cpu.fpu.fsw = u16::from_le_bytes([b[4], b[5]]);
            let tags = u16::from_le_bytes([b[8], b[9]]);
            cpu.fpu.ftw = (0..8).fold(0, |t, p| t | (((tags >> (2 * p)) & 3 != 3) as u8) << p);
            Ok(())
        }
        Fnsave | Fsave => {
            if i.memory_size().size() != 108 {
                return Err(Exception::InvalidOpcode); // 16-bit layout
            }
            let mut b = [0u8; 108];
            // The upper halves of the FCW/FSW/FTW doublewords read as ones.
            b[..12].fill(0xff);
            b[0..2].copy_from_slice(&cpu.fpu.fcw.to_le_bytes());
            b[4..6].copy_from_slice(&cpu.fpu.fsw.to_le_bytes());
            b[8..10].copy_from_slice(&full_tags(cpu).to_le_bytes());
            let top = cpu.fpu.top();
            for k in 0..8 {
                b[28 + 10 * k..38 + 10 * k].copy_from_slice(&cpu.fpu.st[(top + k) & 7][..10]);
            }
            store(cpu, mem, i, &b, 1)?;
            init(cpu);
            Ok(())
        }
        Frstor => {
            if i.memory_size().size() != 108 {
                return Err(Exception::InvalidOpcode);
            }
            let mut b = [0u8; 108];
            load(cpu, mem, i, &mut b, 1)?;
            cpu.fpu.fcw = u16::from_le_bytes([b[0], b[1]]);
            cpu.fpu.fsw = u16::from_le_bytes([b[4], b[5]]);
            let tags = u16::from_le_bytes([b[8], b[9]]);
            cpu.fpu.ftw = (0..8).fold(0, |t, p| t | (((tags >> (2 * p)) & 3 != 3) as u8) << p);
            let top = cpu.fpu.top();
            for k in 0..8 {
                let mut r = [0u8; 16];
                r[..10].copy_from_slice(&b[28 + 10 * k..38 + 10 * k]);
                cpu.fpu.st[(top + k) & 7] = r;
            }
            Ok(())
        }
        _ => stack_op(cpu, mem, i, m, has_mem),
    }
}

/// Instructions that work on the register stack.
fn stack_op(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    i: &Instruction,
    m: Mnemonic,
    has_mem: bool,
) -> Result<(), Exception> {
    use Mnemonic::*;
    let int = matches!(
        m,
        Fild | Fist | Fistp | Fiadd | Fisub | Fisubr | Fimul | Fidiv | Fidivr
    );
    // Memory reads happen first so a fault leaves the FPU untouched.
    let mut env = Fpu { cpu: &mut *cpu }.env();
    let loads = matches!(
        m,
        Fld | Fild
            | Fadd
            | Fiadd
            | Fsub
            | Fisub
            | Fsubr
            | Fisubr
            | Fmul
            | Fimul
            | Fdiv
            | Fidiv
            | Fdivr
            | Fidivr
            | Fcom
            | Fcomp
    );
    // The load's own flags: a denormal memory operand is DE unless the other
    // operand is a NaN (checked below, where that operand is known).
    let mut lenv = env;
    let operand = if has_mem && loads {
        Some(load_operand(cpu, mem, i, int, &mut lenv)?)
    } else {
        None
    };
    let mut f = Fpu { cpu };
    // C1 is cleared by everything but FCOMI/FUCOMI and FCMOVcc (observed on
    // hardware: they leave it alone).
    if !matches!(
        m,
        Fcomi
            | Fcomip
            | Fucomi
            | Fucomip
            | Fcmovb
            | Fcmove
            | Fcmovbe
            | Fcmovu
            | Fcmovnb
            | Fcmovne
            | Fcmovnbe
            | Fcmovnu
    ) {
        f.cpu.fpu.fsw &= !C1;
    }
    if operand.is_some() {
        let other_nan = !matches!(m, Fld | Fild) && f.valid(0) && is_nan80(f.raw(0));
        env.flags |= if other_nan {
            lenv.flags & !DE
        } else {
            lenv.flags
        };
    }
    let sti = |n| st_index(i, n).unwrap_or(1);
    match m {
        Fld | Fild => {
            let v = match operand {
                Some(v) => v,
                None => f.get(sti(0)),
            };
            // FLD m32/m64 of an SNaN: IE, loaded quiet (m80 loads are raw).
            let v = match (operand, i.memory_size().size()) {
                (Some(_), 4 | 8) if is_nan80(v) => {
                    if v & (1 << 62) == 0 {
                        env.flags |= IE;
                    }
                    v | (1 << 62)
                }
                _ => v,
            };
            f.raise(env.flags, 0);
            f.push(v);
        }
        Fld1 | Fldz | Fldpi | Fldl2e | Fldl2t | Fldlg2 | Fldln2 => f.push(constant(m, env.round)),
        Fst | Fstp | Fist | Fistp => {
            let v = f.get(0);
            if has_mem {
                let size = i.memory_size().size();
                let x = unpack80(v);
                let bits: u128 = match (int, size, x) {
                    (false, 10, _) => v,
                    (_, _, None) => {
                        env.flags |= IE;
                        match (int, size) {
                            (true, _) => 1 << (size * 8 - 1),
                            (false, 4) => F32.indefinite(),
                            _ => F64.indefinite(),
                        }
                    }
                    (true, 2 | 4 | 8, Some(x)) => {
                        env.float_to_int(X80, x, size as u32 * 8, false) as u128
                    }
                    // Storing a denormal is not a denormal-operand exception.
                    (false, 4, Some(x)) => env.convert(X80, F32, x),
                    (false, 8, Some(x)) => env.convert(X80, F64, x),
                    _ => return Err(Exception::InvalidOpcode),
                };
                store(f.cpu, mem, i, &bits.to_le_bytes()[..size], 1)?;
                f.raise(env.flags & !DE, 0);
                f.round_up(&env);
            } else {
                let d = sti(0);
                f.set(d, v);
            }
            if matches!(m, Fstp | Fistp) {
                f.pop();
            }
        }
        Fadd | Faddp | Fiadd | Fsub | Fsubp | Fisub | Fsubr | Fsubrp | Fisubr | Fmul | Fmulp
        | Fimul | Fdiv | Fdivp | Fidiv | Fdivr | Fdivrp | Fidivr => {
            let op = match m {
                Fadd | Faddp | Fiadd => Op::Add,
                Fsub | Fsubp | Fisub => Op::Sub,
                Fsubr | Fsubrp | Fisubr => Op::SubR,
                Fmul | Fmulp | Fimul => Op::Mul,
                Fdiv | Fdivp | Fidiv => Op::Div,
                _ => Op::DivR,
            };
            // dst op= src; memory forms and the no-operand forms use ST(0)/ST(1).
            let (d, s) = match operand {
                Some(_) => (0, 0),
                None if i.op_count() == 2 => (sti(0), sti(1)),
                None => (1, 0),
            };
            let a = f.get(d);
            let b = operand.unwrap_or_else(|| f.get(s));
            let fmt = f.fmt();
            let r = arith(&mut env, fmt, op, a, b);
            if env.flags & ZE != 0 {
                env.flags &= !DE; // as SSE: no DE next to a division by zero
            }
            f.raise(env.flags, 0);
            f.round_up(&env);
            f.set(d, r);
            if matches!(m, Faddp | Fsubp | Fsubrp | Fmulp | Fdivp | Fdivrp) {
                f.pop();
            }
        }
        Fsqrt => {
            let a = f.get(0);
            let fmt = f.fmt();
            let r = if let Some(n) = nan_result(&mut env, a, a) {
                n
            } else {
                match unpack80(a) {
                    Some(x) => pack80(env.sqrt(fmt, x)),
                    None => {
                        env.flags |= IE;
                        INDEFINITE
                    }
                }
            };
            f.raise(env.flags, 0);
            f.round_up(&env);
            f.set(0, r);
        }
        Frndint => {
            let a = f.get(0);
            let r = match unpack80(a) {
                Some(x) => pack80(env.round_integral(X80, x)),
                None => {
                    env.flags |= IE;
                    INDEFINITE
                }
            };
            f.raise(env.flags, 0);
            f.round_up(&env);
            f.set(0, r);
        }
        Fchs | Fabs => {
            let a = f.get(0);
            let r = if m == Fchs {
                a ^ (1 << 79)
            } else {
                a & !(1 << 79)
            };
            f.set(0, r);
        }
        Fxch => {
            let k = if i.op_count() == 2 { sti(1) } else { 1 };
            let a = f.get(0);
            let b = f.get(k);
            f.set(0, b);
            f.set(k, a);
        }
        Fcom | Fcomp | Fcompp | Fucom | Fucomp | Fucompp | Ftst | Fcomi | Fcomip | Fucomi
        | Fucomip => {
            let a = f.get(0);
            let b = match (m, operand) {
                (Ftst, _) => 0,
                (_, Some(v)) => v,
                _ if i.op_count() == 2 => f.get(sti(1)),
                _ => f.get(1),
            };
            let signal = matches!(m, Fcom | Fcomp | Fcompp | Ftst | Fcomi | Fcomip);
            let o = compare(&mut env, a, b, signal);
            f.raise(env.flags, 0);
            if matches!(m, Fcomi | Fcomip | Fucomi | Fucomip) {
                let fl = match o {
                    None => ZF | PF | CF,
                    Some(Ordering::Greater) => 0,
                    Some(Ordering::Less) => CF,
                    Some(Ordering::Equal) => ZF,
                };
                f.cpu.set_flags(ZF | PF | CF | OF | RF_SF | AF, fl);
            } else {
                f.cpu.fpu.fsw = (f.cpu.fpu.fsw & !CC) | cc_of(o);
            }
            let pops = match m {
                Fcomp | Fucomp | Fcomip | Fucomip => 1,
                Fcompp | Fucompp => 2,
                _ => 0,
            };
            for _ in 0..pops {
                f.pop();
            }
        }
        Fxam => {
            let raw = f.raw(0);
            let exp = (raw >> 64) & EXP_MASK;
            let mant = raw as u64;
            let cc = if !f.valid(0) {
                C3 | C0
            } else {
                match (exp, mant) {
                    (0, 0) => C3,
                    (0, _) => C3 | C2,
                    (_, x) if x >> 63 == 0 => 0, // unsupported
                    (0x7fff, x) if x << 1 == 0 => C2 | C0,
                    (0x7fff, _) => C0,
                    _ => C2,
                }
            };
            let sign = if raw >> 79 != 0 { C1 } else { 0 };
            f.cpu.fpu.fsw = (f.cpu.fpu.fsw & !CC) | cc | sign;
        }
        Ffree => {
            let p = f.phys(sti(0));
            f.cpu.fpu.ftw &= !(1 << p);
        }
        Fincstp => f.set_top(f.top() + 1),
        Fdecstp => f.set_top(f.top() + 7),
        Fcmovb | Fcmove | Fcmovbe | Fcmovu | Fcmovnb | Fcmovne | Fcmovnbe | Fcmovnu => {
            let r = f.cpu.rflags;
            let (cf, zf, pf) = (r & CF != 0, r & ZF != 0, r & PF != 0);
            let take = match m {
                Fcmovb => cf,
                Fcmove => zf,
                Fcmovbe => cf || zf,
                Fcmovu => pf,
                Fcmovnb => !cf,
                Fcmovne => !zf,
                Fcmovnbe => !cf && !zf,
                _ => !pf,
            };
            let s = f.get(sti(1));
            if take {
                f.set(0, s);
            }
        }
        _ => return Err(Exception::InvalidOpcode),
    }
    Ok(())
}
