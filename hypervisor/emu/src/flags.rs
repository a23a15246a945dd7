//! Arithmetic flag computation shared by the instruction families. Sizes are in bytes
//! (1, 2, 4, 8); values are carried in `u64` and masked to the operand size.

use crate::cpu::{AF, CF, OF, PF, SF, ZF};
use iced_x86::ConditionCode;

#[inline]
pub(crate) fn mask(size: usize) -> u64 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

#[inline]
pub(crate) fn bits(size: usize) -> u32 {
    (size.clamp(1, 8) * 8) as u32
}

#[inline]
pub(crate) fn sign(size: usize) -> u64 {
    1u64 << (bits(size) - 1)
}

/// Sign-extend the low `size` bytes of `v` to 64 bits.
#[inline]
pub(crate) fn sext(v: u64, size: usize) -> u64 {
    let sh = 64 - bits(size);
    (((v << sh) as i64) >> sh) as u64
}

/// ZF, SF and PF of a result.
#[inline]
pub(crate) fn szp(res: u64, size: usize) -> u64 {
    let r = res & mask(size);
    let mut f = 0;
    if r == 0 {
        f |= ZF;
    }
    if r & sign(size) != 0 {
        f |= SF;
    }
    if (r as u8).count_ones().is_multiple_of(2) {
        f |= PF;
    }
    f
}

/// `a + b + carry`: result and all six status flags.
#[inline]
pub(crate) fn add(a: u64, b: u64, carry: bool, size: usize) -> (u64, u64) {
    let m = mask(size);
    let (a, b) = (a & m, b & m);
    let wide = a as u128 + b as u128 + carry as u128;
    let res = (wide as u64) & m;
    let mut f = szp(res, size);
    if wide >> bits(size) != 0 {
        f |= CF;
    }
    if (a ^ res) & (b ^ res) & sign(size) != 0 {
        f |= OF;
    }
    if (a ^ b ^ res) & 0x10 != 0 {
        f |= AF;
    }
    (res, f)
}

/// `a - b - borrow`: result and all six status flags.
#[inline]
pub(crate) fn sub(a: u64, b: u64, borrow: bool, size: usize) -> (u64, u64) {
    let m = mask(size);
    let (a, b) = (a & m, b & m);
    let res = a.wrapping_sub(b).wrapping_sub(borrow as u64) & m;
    let mut f = szp(res, size);
    if (a as u128) < b as u128 + borrow as u128 {
        f |= CF;
    }
    if (a ^ b) & (a ^ res) & sign(size) != 0 {
        f |= OF;
    }
    if (a ^ b ^ res) & 0x10 != 0 {
        f |= AF;
    }
    (res, f)
}

/// Flags of AND/OR/XOR/TEST: CF = OF = 0, AF (undefined) = 0.
#[inline]
pub(crate) fn logic(res: u64, size: usize) -> u64 {
    szp(res, size)
}

/// Evaluate a condition code against RFLAGS.
#[inline]
pub(crate) fn cond(cc: ConditionCode, rf: u64) -> bool {
    let cf = rf & CF != 0;
    let zf = rf & ZF != 0;
    let sf = rf & SF != 0;
    let of = rf & OF != 0;
    let pf = rf & PF != 0;
    match cc {
        ConditionCode::None => true,
        ConditionCode::o => of,
        ConditionCode::no => !of,
        ConditionCode::b => cf,
        ConditionCode::ae => !cf,
        ConditionCode::e => zf,
        ConditionCode::ne => !zf,
        ConditionCode::be => cf || zf,
        ConditionCode::a => !cf && !zf,
        ConditionCode::s => sf,
        ConditionCode::ns => !sf,
        ConditionCode::p => pf,
        ConditionCode::np => !pf,
        ConditionCode::l => sf != of,
        ConditionCode::ge => sf == of,
        ConditionCode::le => zf || sf != of,
        ConditionCode::g => !zf && sf == of,
    }
}
