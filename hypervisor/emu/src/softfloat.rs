//! IEEE 754 binary32/binary64 arithmetic in software, bit-exact with SSE.
//!
//! Rust gives no safe way to change the host rounding mode or read the host exception
//! flags, so every operation computes its exact result as an integer mantissa times a
//! power of two (plus a sticky bit) and rounds that once, in the MXCSR rounding mode,
//! raising the MXCSR exception flags (IE DE ZE OE UE PE) the way SSE does: tininess is
//! detected after rounding, FTZ flushes tiny results, DAZ zeroes denormal inputs, NaN
//! operands propagate quieted (first operand first) and invalid operations return the
//! negative "QNaN indefinite".

use core::cmp::Ordering;

pub(crate) const IE: u32 = 1;
pub(crate) const DE: u32 = 2;
pub(crate) const ZE: u32 = 4;
pub(crate) const OE: u32 = 8;
pub(crate) const UE: u32 = 16;
pub(crate) const PE: u32 = 32;

/// Rounding control (MXCSR.RC / FCW.RC encoding).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Round {
    Nearest,
    Down,
    Up,
    Zero,
}

impl Round {
    pub(crate) fn from_rc(rc: u32) -> Round {
        match rc & 3 {
            0 => Round::Nearest,
            1 => Round::Down,
            2 => Round::Up,
            _ => Round::Zero,
        }
    }
}

/// A binary interchange format: fraction bits and exponent bits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Fmt {
    pub frac: u32,
    pub ebits: u32,
    /// Fraction bits results are rounded to (less than `frac` only for the x87
    /// precision control).
    pub prec: u32,
}

pub(crate) const F32: Fmt = Fmt {
    frac: 23,
    ebits: 8,
    prec: 23,
};
pub(crate) const F64: Fmt = Fmt {
    frac: 52,
    ebits: 11,
    prec: 52,
};
/// x87 double extended with the explicit integer bit dropped (the x87 code adds and
/// removes it); `prec` 52 or 23 gives the x87 precision control's rounding.
pub(crate) const X80: Fmt = Fmt {
    frac: 63,
    ebits: 15,
    prec: 63,
};

impl Fmt {
    fn bias(self) -> i32 {
        (1 << (self.ebits - 1)) - 1
    }
    fn emax_field(self) -> u128 {
        (1 << self.ebits) - 1
    }
    pub(crate) fn sign_bit(self) -> u128 {
        1 << (self.frac + self.ebits)
    }
    fn frac_mask(self) -> u128 {
        (1 << self.frac) - 1
    }
    fn quiet_bit(self) -> u128 {
        1 << (self.frac - 1)
    }
    fn exp_field(self, v: u128) -> u128 {
        (v >> self.frac) & self.emax_field()
    }
    pub(crate) fn is_nan(self, v: u128) -> bool {
        self.exp_field(v) == self.emax_field() && v & self.frac_mask() != 0
    }
    pub(crate) fn is_snan(self, v: u128) -> bool {
        self.is_nan(v) && v & self.quiet_bit() == 0
    }
    fn is_inf(self, v: u128) -> bool {
        self.exp_field(v) == self.emax_field() && v & self.frac_mask() == 0
    }
    fn is_zero(self, v: u128) -> bool {
        v & (self.sign_bit() - 1) == 0
    }
    pub(crate) fn is_denormal(self, v: u128) -> bool {
        self.exp_field(v) == 0 && v & self.frac_mask() != 0
    }
    fn sign(self, v: u128) -> bool {
        v & self.sign_bit() != 0
    }
    fn quiet(self, v: u128) -> u128 {
        v | self.quiet_bit()
    }
    /// The "QNaN floating-point indefinite".
    pub(crate) fn indefinite(self) -> u128 {
        self.sign_bit() | (self.emax_field() << self.frac) | self.quiet_bit()
    }
    fn inf(self, sign: bool) -> u128 {
        (self.emax_field() << self.frac) | if sign { self.sign_bit() } else { 0 }
    }
    fn max_finite(self, sign: bool) -> u128 {
        self.inf(sign) - 1
    }
    fn zero(self, sign: bool) -> u128 {
        if sign { self.sign_bit() } else { 0 }
    }
    /// Total order key of a non-NaN value (both zeros equal).
    fn key(self, v: u128) -> i128 {
        let mag = (v & (self.sign_bit() - 1)) as i128;
        if self.sign(v) { -mag } else { mag }
    }
    /// A finite non-zero value as (mantissa, exponent): value = mant * 2^exp.
    fn finite(self, v: u128) -> (u64, i32) {
        let e = self.exp_field(v) as i32;
        let f = (v & self.frac_mask()) as u64;
        if e == 0 {
            (f, 1 - self.bias() - self.frac as i32)
        } else {
            (f | (1 << self.frac), e - self.bias() - self.frac as i32)
        }
    }
}

/// The MXCSR controls an operation needs, and the exception flags it raised.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Env {
    pub round: Round,
    pub ftz: bool,
    pub daz: bool,
    /// Underflow masked: UE then needs an inexact tiny result.
    pub um: bool,
    pub flags: u32,
    /// The last rounding increased the magnitude (the x87 reports it in C1).
    pub up: bool,
}

impl Env {
    pub(crate) fn from_mxcsr(mxcsr: u32) -> Env {
        Env {
            round: Round::from_rc(mxcsr >> 13),
            ftz: mxcsr & (1 << 15) != 0,
            daz: mxcsr & (1 << 6) != 0,
            um: mxcsr & (1 << 11) != 0,
            flags: 0,
            up: false,
        }
    }

    /// Apply DAZ to an input; otherwise note a denormal operand (DE is decided by
    /// the caller, since NaN and invalid results suppress it).
    fn input(&mut self, f: Fmt, v: u128, denormal: &mut bool) -> u128 {
        if f.is_denormal(v) {
            if self.daz {
                return f.zero(f.sign(v));
            }
            *denormal = true;
        }
        v
    }

    /// Round `mant * 2^exp` (+ a sticky fraction below `mant` if `sticky`) to `f`.
    pub(crate) fn round_pack(
        &mut self,
        f: Fmt,
        sign: bool,
        exp: i32,
        mant: u128,
        sticky: bool,
    ) -> u128 {
        if mant == 0 {
            // Callers never pass a sticky fraction with a zero mantissa.
            return f.zero(sign);
        }
        // Put the leading one at bit 125 so at least two guard bits exist below
        // the rounding point whatever the format.
        let lz = mant.leading_zeros() as i32;
        let sh = lz - 2;
        let (mant, exp) = if sh >= 0 {
            (mant << sh, exp - sh)
        } else {
            // Only bits that become sticky are dropped.
            let lost = mant & ((1u128 << -sh) - 1) != 0;
            return self.round_pack_norm(f, sign, exp - sh, mant >> -sh, sticky || lost);
        };
        self.round_pack_norm(f, sign, exp, mant, sticky)
    }

    fn round_pack_norm(&mut self, f: Fmt, sign: bool, exp: i32, mant: u128, sticky: bool) -> u128 {
        let frac = f.frac as i32;
        let prec = f.prec.min(f.frac) as i32;
        let emin = 1 - f.bias();
        let e = 125 + exp; // unbiased exponent of the value
        // Exponent of the result's last bit: `prec` bits below the leading one, and
        // for tiny values `prec` bits below 2^emin (the x87 rounds a denormal with
        // reduced precision control at that coarser quantum too).
        let q = e.max(emin) - prec;
        let (m, inexact) = round_at(mant, sticky, q - exp, self.round, sign);
        self.up = m << (q - exp).clamp(0, 127) > mant;
        // Tininess after rounding: rounded to `prec` bits with an unbounded
        // exponent, is the value still below 2^emin?
        let tiny = e < emin && {
            let qu = e - prec;
            let (mu, _) = round_at(mant, sticky, qu - exp, self.round, sign);
            let need = emin - qu;
            need >= 127 || mu >> need == 0
        };
        if tiny && self.ftz && self.um {
            self.flags |= UE | PE;
            self.up = false;
            return f.zero(sign);
        }
        if inexact {
            self.flags |= PE;
        }
        if tiny && (inexact || !self.um) {
            self.flags |= UE;
        }
        if m == 0 {
            return f.zero(sign);
        }
        // Re-express m at the format's quantum for the result's exponent (rounding
        // may have carried into a new leading bit).
        let er = (127 - m.leading_zeros() as i32) + q;
        let qf = (er - frac).max(emin - frac);
        let m = if q >= qf {
            m << (q - qf)
        } else {
            m >> (qf - q)
        };
        if er + f.bias() >= f.emax_field() as i32 {
            self.flags |= OE | PE;
            let to_inf = match self.round {
                Round::Nearest => true,
                Round::Zero => false,
                Round::Up => !sign,
                Round::Down => sign,
            };
            self.up = to_inf;
            return if to_inf {
                f.inf(sign)
            } else {
                // The largest finite value with `prec` fraction bits.
                let drop = (1u128 << (f.frac - prec as u32)) - 1;
                f.max_finite(sign) & !drop
            };
        }
        // Subnormals: qf is the minimum quantum, the field is 1 - 1 = 0 and m alone is
        // the encoding; normals: adding m carries its leading one into the exponent.
        let biased = qf + frac + f.bias();
        let bits = ((biased as u128 - 1) << f.frac) + m;
        bits | f.zero(sign)
    }

    /// Two-operand NaN/denormal preamble: returns the NaN result if there is one.
    fn nan2(&mut self, f: Fmt, a: u128, b: u128) -> Option<u128> {
        if f.is_nan(a) || f.is_nan(b) {
            if f.is_snan(a) || f.is_snan(b) {
                self.flags |= IE;
            }
            return Some(if f.is_nan(a) { f.quiet(a) } else { f.quiet(b) });
        }
        None
    }

    fn invalid(&mut self, f: Fmt) -> u128 {
        self.flags |= IE;
        f.indefinite()
    }

    pub(crate) fn add(&mut self, f: Fmt, a: u128, b: u128, subtract: bool) -> u128 {
        if let Some(n) = self.nan2(f, a, b) {
            return n;
        }
        let mut den = false;
        let a = self.input(f, a, &mut den);
        let b = self.input(f, b, &mut den);
        let b = if subtract { b ^ f.sign_bit() } else { b };
        let (sa, sb) = (f.sign(a), f.sign(b));
        if f.is_inf(a) || f.is_inf(b) {
            if f.is_inf(a) && f.is_inf(b) && sa != sb {
                return self.invalid(f);
            }
            self.de(den);
            return if f.is_inf(a) { a } else { b };
        }
        self.de(den);
        if f.is_zero(a) && f.is_zero(b) {
            let neg = if self.round == Round::Down {
                sa || sb
            } else {
                sa && sb
            };
            return f.zero(neg);
        }
        if f.is_zero(a) {
            return self.round_value(f, b);
        }
        if f.is_zero(b) {
            return self.round_value(f, a);
        }
        let (ma, ea) = normalize(f.finite(a));
        let (mb, eb) = normalize(f.finite(b));
        // Larger exponent first.
        let ((ma, ea, sa), (mb, eb, sb)) = if ea >= eb {
            ((ma, ea, sa), (mb, eb, sb))
        } else {
            ((mb, eb, sb), (ma, ea, sa))
        };
        let d = ea - eb;
        // 62 guard bits below a's last bit; b's bits shifted out become sticky (and,
        // when b is subtracted, one unit less plus a sticky fraction).
        let x = (ma as u128) << 62;
        let wide = (mb as u128) << 62;
        let (y, sticky) = if d >= 127 {
            (0, true)
        } else {
            (wide >> d, wide & ((1u128 << d) - 1) != 0)
        };
        let exp = ea - 62;
        if sa == sb {
            return self.round_pack(f, sa, exp, x + y, sticky);
        }
        if sticky {
            return self.round_pack(f, sa, exp, x - y - 1, true);
        }
        match x.cmp(&y) {
            Ordering::Greater => self.round_pack(f, sa, exp, x - y, false),
            Ordering::Less => self.round_pack(f, sb, exp, y - x, false),
            Ordering::Equal => f.zero(self.round == Round::Down),
        }
    }

    /// A finite non-zero value passed through (it can only need FTZ, never rounding).
    fn round_value(&mut self, f: Fmt, v: u128) -> u128 {
        let (m, e) = f.finite(v);
        self.round_pack(f, f.sign(v), e, m as u128, false)
    }

    fn de(&mut self, den: bool) {
        if den {
            self.flags |= DE;
        }
    }

    pub(crate) fn mul(&mut self, f: Fmt, a: u128, b: u128) -> u128 {
        if let Some(n) = self.nan2(f, a, b) {
            return n;
        }
        let mut den = false;
        let a = self.input(f, a, &mut den);
        let b = self.input(f, b, &mut den);
        let sign = f.sign(a) != f.sign(b);
        if f.is_inf(a) || f.is_inf(b) {
            if f.is_zero(a) || f.is_zero(b) {
                return self.invalid(f);
            }
            self.de(den);
            return f.inf(sign);
        }
        self.de(den);
        if f.is_zero(a) || f.is_zero(b) {
            return f.zero(sign);
        }
        let (ma, ea) = f.finite(a);
        let (mb, eb) = f.finite(b);
        self.round_pack(f, sign, ea + eb, ma as u128 * mb as u128, false)
    }

    pub(crate) fn div(&mut self, f: Fmt, a: u128, b: u128) -> u128 {
        if let Some(n) = self.nan2(f, a, b) {
            return n;
        }
        let mut den = false;
        let a = self.input(f, a, &mut den);
        let b = self.input(f, b, &mut den);
        let sign = f.sign(a) != f.sign(b);
        if f.is_inf(a) {
            if f.is_inf(b) {
                return self.invalid(f);
            }
            self.de(den);
            return f.inf(sign);
        }
        if f.is_inf(b) {
            self.de(den);
            return f.zero(sign);
        }
        if f.is_zero(b) {
            if f.is_zero(a) {
                return self.invalid(f);
            }
            // A denormal dividend is not reported next to the division by zero.
            self.flags |= ZE;
            return f.inf(sign);
        }
        self.de(den);
        if f.is_zero(a) {
            return f.zero(sign);
        }
        let (ma, ea) = normalize(f.finite(a));
        let (mb, eb) = normalize(f.finite(b));
        // 64-65 quotient bits from the first step, 8 more from the second: binary80
        // needs guard bits below its 64.
        let (n, d) = ((ma as u128) << 64, mb as u128);
        let (q1, r1) = (n / d, n % d);
        let (q2, r2) = ((r1 << 8) / d, (r1 << 8) % d);
        self.round_pack(f, sign, ea - eb - 72, (q1 << 8) | q2, r2 != 0)
    }

    pub(crate) fn sqrt(&mut self, f: Fmt, a: u128) -> u128 {
        if f.is_nan(a) {
            if f.is_snan(a) {
                self.flags |= IE;
            }
            return f.quiet(a);
        }
        let mut den = false;
        let a = self.input(f, a, &mut den);
        if f.is_zero(a) {
            return a;
        }
        if f.sign(a) {
            return self.invalid(f);
        }
        self.de(den);
        if f.is_inf(a) {
            return a;
        }
        let (m, e) = normalize(f.finite(a));
        // m * 2^e with the leading one at bit 63; scale by 2^k (k even-adjusted) so the
        // root has about 68 bits: enough guard bits even for binary80.
        let k = if (e - 72).rem_euclid(2) == 0 { 72 } else { 73 };
        let (r, exact) = isqrt_scaled(m, k as u32);
        self.round_pack(f, false, (e - k) / 2, r, !exact)
    }

    /// MINxx/MAXxx: `b` unless `a` is strictly smaller (larger); any NaN is IE and
    /// returns `b` as is.
    pub(crate) fn min_max(&mut self, f: Fmt, a: u128, b: u128, max: bool) -> u128 {
        // DAZ applies even to the operand returned because the other is a NaN.
        let mut den = false;
        let a = self.input(f, a, &mut den);
        let b = self.input(f, b, &mut den);
        if f.is_nan(a) || f.is_nan(b) {
            self.flags |= IE;
            return b;
        }
        self.de(den);
        let o = f.key(a).cmp(&f.key(b));
        let want = if max {
            Ordering::Greater
        } else {
            Ordering::Less
        };
        if o == want { a } else { b }
    }

    /// Ordered comparison; `None` is unordered. IE for SNaNs, or any NaN if `signal`.
    pub(crate) fn compare(&mut self, f: Fmt, a: u128, b: u128, signal: bool) -> Option<Ordering> {
        if f.is_nan(a) || f.is_nan(b) {
            if signal || f.is_snan(a) || f.is_snan(b) {
                self.flags |= IE;
            }
            return None;
        }
        let mut den = false;
        let a = self.input(f, a, &mut den);
        let b = self.input(f, b, &mut den);
        self.de(den);
        Some(f.key(a).cmp(&f.key(b)))
    }

    /// Float to signed integer of `bits` (32 or 64); out of range is IE and the
    /// "integer indefinite" (only the sign bit set).
    pub(crate) fn float_to_int(&mut self, f: Fmt, a: u128, bits: u32, truncate: bool) -> u64 {
        self.up = false;
        let indefinite = 1u64 << (bits - 1);
        if f.is_nan(a) || f.is_inf(a) {
            self.flags |= IE;
            return indefinite;
        }
        // Denormal inputs are not DE here: they just round to 0 (PE).
        let mut den = false;
        let a = self.input(f, a, &mut den);
        if f.is_zero(a) {
            return 0;
        }
        let sign = f.sign(a);
        let (m, e) = f.finite(a);
        let mode = if truncate { Round::Zero } else { self.round };
        let (mag, inexact) = if e >= 0 {
            if e > 64 {
                self.flags |= IE;
                return indefinite;
            }
            ((m as u128) << e, false)
        } else {
            let (r, inexact) = round_at((m as u128) << 2, false, 2 - e, mode, sign);
            self.up = (r << (2 - e).min(127)) > (m as u128) << 2;
            (r, inexact)
        };
        let limit = if sign {
            1u128 << (bits - 1)
        } else {
            (1u128 << (bits - 1)) - 1
        };
        if mag > limit {
            self.flags |= IE;
            return indefinite;
        }
        if inexact {
            self.flags |= PE;
        }
        let v = if sign {
            (mag as u64).wrapping_neg()
        } else {
            mag as u64
        };
        v & (u64::MAX >> (64 - bits))
    }

    /// Round to an integral value in the current mode (x87 FRNDINT); PE if inexact.
    pub(crate) fn round_integral(&mut self, f: Fmt, a: u128) -> u128 {
        self.up = false;
        if f.is_nan(a) {
            if f.is_snan(a) {
                self.flags |= IE;
            }
            return f.quiet(a);
        }
        let mut den = false;
        let a = self.input(f, a, &mut den);
        self.de(den);
        if f.is_inf(a) || f.is_zero(a) {
            return a;
        }
        let sign = f.sign(a);
        let (m, e) = f.finite(a);
        if e >= 0 {
            return a;
        }
        let (r, inexact) = round_at((m as u128) << 2, false, 2 - e, self.round, sign);
        if inexact {
            self.flags |= PE;
            self.up = (r << (2 - e).min(127)) > (m as u128) << 2;
        }
        if r == 0 {
            return f.zero(sign);
        }
        let (flags, up) = (self.flags, self.up);
        let v = self.round_pack(f, sign, 0, r, false);
        // Exact repacking: keep this rounding's PE and direction.
        (self.flags, self.up) = (flags, up);
        v
    }

    /// RCPxx/RSQRTxx: architecturally an approximation with relative error at
    /// most 1.5 * 2^-12; this returns the correctly rounded (to nearest) value,
    /// which is within that bound. No MXCSR flags; denormal inputs are zeros and
    /// tiny results are flushed, as the hardware does.
    pub(crate) fn approx_recip(f: Fmt, a: u128, sqrt: bool) -> u128 {
        let mut e = Env {
            round: Round::Nearest,
            ftz: true,
            daz: true,
            um: true,
            flags: 0,
            up: false,
        };
        let one = ((f.bias() as u128) << f.frac) & !f.sign_bit();
        if f.is_nan(a) {
            return f.quiet(a);
        }
        let a = if f.is_denormal(a) {
            f.zero(f.sign(a))
        } else {
            a
        };
        if sqrt {
            if f.is_zero(a) {
                return f.inf(f.sign(a));
            }
            if f.sign(a) {
                return f.indefinite();
            }
            let r = e.sqrt(f, a);
            e.div(f, one, r)
        } else {
            e.div(f, one, a)
        }
    }

    pub(crate) fn int_to_float(&mut self, f: Fmt, v: i64) -> u128 {
        if v == 0 {
            return 0;
        }
        self.round_pack(f, v < 0, 0, v.unsigned_abs() as u128, false)
    }

    /// Convert between F32 and F64.
    pub(crate) fn convert(&mut self, from: Fmt, to: Fmt, a: u128) -> u128 {
        if from.is_nan(a) {
            if from.is_snan(a) {
                self.flags |= IE;
            }
            let payload = a & from.frac_mask();
            let p = if to.frac >= from.frac {
                payload << (to.frac - from.frac)
            } else {
                payload >> (from.frac - to.frac)
            };
            return to.quiet(to.inf(from.sign(a)) | p);
        }
        let mut den = false;
        let a = self.input(from, a, &mut den);
        let sign = from.sign(a);
        if from.is_inf(a) {
            return to.inf(sign);
        }
        if from.is_zero(a) {
            return to.zero(sign);
        }
        self.de(den);
        let (m, e) = from.finite(a);
        self.round_pack(to, sign, e, m as u128, false)
    }
}

/// Shift a finite mantissa so its leading one is at bit 63.
fn normalize((m, e): (u64, i32)) -> (u64, i32) {
    let s = m.leading_zeros() as i32;
    (m << s, e - s)
}

/// Round `mant` (+ sticky) right by `shift` bits in `mode`; (result, inexact).
fn round_at(mant: u128, sticky: bool, shift: i32, mode: Round, sign: bool) -> (u128, bool) {
    if shift <= 0 {
        // Callers keep at least two bits below the rounding point; a sticky
        // fraction then cannot need rounding here.
        return (mant << (-shift).min(127), sticky);
    }
    let (m, rem, half) = if shift >= 128 {
        (0, mant, None)
    } else {
        (
            mant >> shift,
            mant & ((1u128 << shift) - 1),
            Some(1u128 << (shift - 1)),
        )
    };
    let inexact = rem != 0 || sticky;
    let up = match mode {
        Round::Nearest => match half {
            Some(h) => rem > h || (rem == h && (sticky || m & 1 == 1)),
            // The leading one sits below the rounding point's half: round down.
            None => false,
        },
        Round::Zero => false,
        Round::Up => inexact && !sign,
        Round::Down => inexact && sign,
    };
    (m + up as u128, inexact)
}

/// Floor of sqrt(m * 2^k) for k < 128, and whether it is exact. Bitwise, with the
/// 256-bit square kept as (high, low) halves.
fn isqrt_scaled(m: u64, k: u32) -> (u128, bool) {
    let n = if k <= 64 {
        (0, (m as u128) << k)
    } else {
        ((m as u128) >> (128 - k), (m as u128) << k)
    };
    let square = |c: u128| -> (u128, u128) {
        let (ch, cl) = (c >> 64, c & u64::MAX as u128);
        let cross = 2 * ch * cl; // ch is small: no overflow
        let (lo, carry) = (cl * cl).overflowing_add(cross << 64);
        (ch * ch + (cross >> 64) + carry as u128, lo)
    };
    let bits = (64 + k).div_ceil(2);
    let mut r = 0u128;
    for b in (0..=bits).rev() {
        let c = r | (1u128 << b);
        if square(c) <= n {
            r = c;
        }
    }
    (r, square(r) == n)
}
