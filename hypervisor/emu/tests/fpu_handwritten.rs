//! Hand-written tests of the SSE/x87 system side: the FXSAVE image layout and
//! FXRSTOR round trip, alignment and reserved-bit #GPs, x87 probing and basic
//! loads/stores, the CR0/CR4 gates, and no panics on random bytes from the SSE and
//! x87 opcode space (`EMU_NOPANIC_ITERS`; run it in a debug build too).

use hypervisor_emu::cpu::{Cpu, RAX, RBX};
use hypervisor_emu::exec::{Exception, step};
use hypervisor_emu::mem::{FlatMemory, Memory};

const BASE: u64 = 0x1000;
const DATA: u64 = 0x3000;

fn setup(code: &[u8]) -> (Cpu, FlatMemory) {
    let mut mem = FlatMemory::new(BASE, 0x4000);
    mem.data[..code.len()].copy_from_slice(code);
    let mut cpu = Cpu::new();
    cpu.rip = BASE;
    cpu.gpr[RBX] = DATA;
    (cpu, mem)
}

fn run(cpu: &mut Cpu, mem: &mut FlatMemory, n: usize) {
    for k in 0..n {
        let at = cpu.rip;
        step(cpu, mem).unwrap_or_else(|e| panic!("instruction {k} at {at:#x}: {e:?}"));
    }
}

fn sample_state(cpu: &mut Cpu) {
    for (k, x) in cpu.fpu.xmm.iter_mut().enumerate() {
        *x = 0x0123_4567_89ab_cdef_0011_2233_4455_6677u128.rotate_left(k as u32 * 8) ^ k as u128;
    }
    cpu.fpu.mxcsr = 0x3fa1;
    cpu.fpu.fcw = 0x027f;
    cpu.fpu.fsw = (6 << 11) | 0x21;
    cpu.fpu.ftw = 0b1100_0000;
    for (p, r) in cpu.fpu.st.iter_mut().enumerate() {
        for (b, v) in r.iter_mut().take(10).enumerate() {
            *v = (p * 16 + b) as u8;
        }
    }
}

#[test]
fn fxsave_layout_and_fxrstor_round_trip() {
    // fxsave64 [rbx]; fxrstor64 [rbx]; fxsave [rbx+512]
    let code = [
        0x48, 0x0f, 0xae, 0x03, 0x48, 0x0f, 0xae, 0x0b, 0x0f, 0xae, 0x83, 0x00, 0x02, 0x00, 0x00,
    ];
    let (mut cpu, mut mem) = setup(&code);
    sample_state(&mut cpu);
    let saved = cpu.fpu.clone();
    let d = (DATA - BASE) as usize;
    mem.data[d..d + 1024].fill(0xaa);
    run(&mut cpu, &mut mem, 1);
    let img = mem.data[d..d + 512].to_vec();
    assert_eq!(&img[0..2], &0x027fu16.to_le_bytes());
    assert_eq!(&img[2..4], &((6u16 << 11) | 0x21).to_le_bytes());
    assert_eq!(img[4], 0b1100_0000);
    assert_eq!(&img[6..24], &[0; 18], "FOP/FIP/FDP are not tracked: zero");
    assert_eq!(&img[24..28], &0x3fa1u32.to_le_bytes());
    assert_eq!(&img[28..32], &0xffffu32.to_le_bytes(), "MXCSR_MASK");
    // ST(k) is physical register (TOP + k) & 7, 10 bytes plus 6 zero bytes.
    for k in 0..8 {
        let p = (6 + k) & 7;
        assert_eq!(
            &img[32 + 16 * k..42 + 16 * k],
            &saved.st[p][..10],
            "ST({k})"
        );
        assert_eq!(&img[42 + 16 * k..48 + 16 * k], &[0; 6]);
    }
    for k in 0..16 {
        assert_eq!(
            &img[160 + 16 * k..176 + 16 * k],
            &saved.xmm[k].to_le_bytes(),
            "XMM{k}"
        );
    }
    assert!(img[416..].iter().all(|&b| b == 0xaa), "416..512 untouched");
    cpu.fpu = Default::default();
    run(&mut cpu, &mut mem, 2);
    assert_eq!(cpu.fpu, saved);
    assert_eq!(&mem.data[d + 512..d + 928], &img[..416]);
}

#[test]
fn fxsave_fxrstor_alignment_and_reserved_mxcsr() {
    // fxsave [rbx+8] (misaligned): #GP, memory untouched.
    let (mut cpu, mut mem) = setup(&[0x0f, 0xae, 0x43, 0x08]);
    let before = mem.data.clone();
    assert_eq!(
        step(&mut cpu, &mut mem),
        Err(Exception::GeneralProtection(0))
    );
    assert_eq!(cpu.rip, BASE);
    assert_eq!(mem.data, before);
    // fxrstor [rbx] with reserved MXCSR bits: #GP, state untouched.
    let (mut cpu, mut mem) = setup(&[0x0f, 0xae, 0x0b]);
    mem.write_u32(DATA + 24, 0x1_1f80).unwrap();
    mem.write_u16(DATA, 0x1234).unwrap();
    let before = cpu.clone();
    assert_eq!(
        step(&mut cpu, &mut mem),
        Err(Exception::GeneralProtection(0))
    );
    assert_eq!(cpu, before);
    // ldmxcsr [rbx] with a reserved bit: #GP; without: loaded; stmxcsr [rbx+4].
    let (mut cpu, mut mem) = setup(&[0x0f, 0xae, 0x13, 0x0f, 0xae, 0x5b, 0x04]);
    mem.write_u32(DATA, 0x8000_1f80).unwrap();
    assert_eq!(
        step(&mut cpu, &mut mem),
        Err(Exception::GeneralProtection(0))
    );
    mem.write_u32(DATA, 0x7f80).unwrap();
    run(&mut cpu, &mut mem, 2);
    assert_eq!(cpu.fpu.mxcsr, 0x7f80);
    assert_eq!(mem.read_u32(DATA + 4).unwrap(), 0x7f80);
}

#[test]
fn aligned_moves_fault_unaligned_ones_do_not() {
    // movdqa xmm1, [rbx+1]: #GP; movdqu xmm1, [rbx+1]: loads; movaps [rbx+4], xmm1: #GP;
    // pxor xmm1, [rbx+1]: #GP (legacy SSE m128 operands must be aligned).
    for (code, ok) in [
        (&[0x66, 0x0f, 0x6f, 0x4b, 0x01][..], false),
        (&[0xf3, 0x0f, 0x6f, 0x4b, 0x01], true),
        (&[0x0f, 0x29, 0x4b, 0x04], false),
        (&[0x66, 0x0f, 0xef, 0x4b, 0x01], false),
        (&[0x0f, 0x11, 0x4b, 0x04], true),
    ] {
        let (mut cpu, mut mem) = setup(code);
        for k in 0..32 {
            mem.write_u8(DATA + k, k as u8).unwrap();
        }
        let r = step(&mut cpu, &mut mem);
        if ok {
            assert_eq!(r, Ok(()), "{code:02x?}");
        } else {
            assert_eq!(r, Err(Exception::GeneralProtection(0)), "{code:02x?}");
        }
    }
    let (mut cpu, mut mem) = setup(&[0xf3, 0x0f, 0x6f, 0x4b, 0x01]);
    for k in 0..32 {
        mem.write_u8(DATA + k, k as u8).unwrap();
    }
    run(&mut cpu, &mut mem, 1);
    assert_eq!(
        cpu.fpu.xmm[1],
        u128::from_le_bytes(core::array::from_fn(|k| k as u8 + 1))
    );
}

#[test]
fn x87_probe_and_basic_loads_stores() {
    // The classic FPU probe: fninit; fnstsw ax; fnstcw [rbx].
    let (mut cpu, mut mem) = setup(&[0xdb, 0xe3, 0xdf, 0xe0, 0xd9, 0x3b]);
    cpu.gpr[RAX] = 0xffff_ffff_5a5a;
    run(&mut cpu, &mut mem, 3);
    assert_eq!(cpu.gpr[RAX], 0xffff_ffff_0000);
    assert_eq!(mem.read_u16(DATA).unwrap(), 0x037f);
    assert_eq!((cpu.fpu.fsw, cpu.fpu.ftw), (0, 0));

    // fld1; fild dword [rbx]; faddp; fistp dword [rbx+4]  => 1 + 41 = 42
    let (mut cpu, mut mem) = setup(&[
        0xdb, 0xe3, 0xd9, 0xe8, 0xdb, 0x03, 0xde, 0xc1, 0xdb, 0x5b, 0x04,
    ]);
    mem.write_u32(DATA, 41).unwrap();
    run(&mut cpu, &mut mem, 5);
    assert_eq!(mem.read_u32(DATA + 4).unwrap(), 42);
    assert_eq!(cpu.fpu.ftw, 0, "stack empty again");
    assert_eq!(cpu.fpu.fsw & (7 << 11), 0, "TOP back to 0");

    // fld qword [rbx] (2.5); fstp dword [rbx+8]; fld tbyte [rbx+16]; fstp tbyte [rbx+32]
    let (mut cpu, mut mem) = setup(&[
        0xdb, 0xe3, 0xdd, 0x03, 0xd9, 0x5b, 0x08, 0xdb, 0x6b, 0x10, 0xdb, 0x7b, 0x20,
    ]);
    mem.write_u64(DATA, 2.5f64.to_bits()).unwrap();
    let ext = [0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0xff, 0x3f];
    mem.write(DATA + 16, &ext).unwrap();
    run(&mut cpu, &mut mem, 5);
    assert_eq!(mem.read_u32(DATA + 8).unwrap(), 2.5f32.to_bits());
    let mut back = [0u8; 10];
    mem.read(DATA + 32, &mut back).unwrap();
    assert_eq!(back, ext, "m80 loads and stores are exact");

    // fild qword [rbx] (i64::MIN); fistp qword [rbx+8]; then 1e30 (out of range).
    let (mut cpu, mut mem) = setup(&[
        0xdb, 0xe3, 0xdf, 0x2b, 0xdf, 0x7b, 0x08, 0xdd, 0x43, 0x10, 0xdf, 0x7b, 0x18,
    ]);
    mem.write_u64(DATA, i64::MIN as u64).unwrap();
    mem.write_u64(DATA + 16, 1e30f64.to_bits()).unwrap();
    run(&mut cpu, &mut mem, 5);
    assert_eq!(mem.read_u64(DATA + 8).unwrap(), i64::MIN as u64);
    assert_eq!(
        mem.read_u64(DATA + 24).unwrap(),
        1 << 63,
        "integer indefinite"
    );
    assert_eq!(cpu.fpu.fsw & 1, 1, "IE");

    // fstp dword [rbx] on an empty stack: masked underflow stores the indefinite.
    let (mut cpu, mut mem) = setup(&[0xdb, 0xe3, 0xd9, 0x1b]);
    run(&mut cpu, &mut mem, 2);
    assert_eq!(mem.read_u32(DATA).unwrap(), 0xffc0_0000);
    assert_eq!(cpu.fpu.fsw & 0x41, 0x41, "IE and SF");
}

#[test]
fn control_register_gates() {
    const PE: u64 = 1;
    const EM: u64 = 4;
    const TS: u64 = 8;
    const OSFXSR: u64 = 1 << 9;
    let pxor = [0x66, 0x0f, 0xef, 0xc0];
    let fld1 = [0xd9, 0xe8];
    const UD: Option<Exception> = Some(Exception::InvalidOpcode);
    const NM: Option<Exception> = Some(Exception::Vector(7));
    for (cr0, cr4, code, fault) in [
        (0, OSFXSR, &pxor[..], None), // real mode too, once the OS bit is set
        (0, 0, &pxor[..], UD),
        (PE, OSFXSR, &pxor, None),
        (PE, 0, &pxor, UD),
        (PE | EM, OSFXSR, &pxor, UD),
        (PE | TS, OSFXSR, &pxor, NM),
        (PE, 0, &fld1, None),
        (PE | EM, 0, &fld1, NM),
        (PE | TS, 0, &fld1, NM),
    ] {
        let (mut cpu, mut mem) = setup(code);
        cpu.cr0 = cr0;
        cpu.cr4 = cr4;
        let r = step(&mut cpu, &mut mem);
        match fault {
            None => assert_eq!(r, Ok(()), "cr0 {cr0:#x} cr4 {cr4:#x} {code:02x?}"),
            Some(e) => assert_eq!(r, Err(e), "cr0 {cr0:#x} cr4 {cr4:#x} {code:02x?}"),
        }
    }
}

#[test]
fn mmx_register_forms_are_ud() {
    // pxor mm0, mm0; movq mm0, [rbx]; paddb mm1, mm2
    for code in [
        &[0x0f, 0xef, 0xc0][..],
        &[0x0f, 0x6f, 0x03],
        &[0x0f, 0xfc, 0xca],
    ] {
        let (mut cpu, mut mem) = setup(code);
        assert_eq!(step(&mut cpu, &mut mem), Err(Exception::InvalidOpcode));
    }
}

#[test]
fn sse_and_x87_random_bytes_never_panic() {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let iters: u64 = std::env::var("EMU_NOPANIC_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let mut mem = FlatMemory::new(0x10000, 0x10000);
    let mut executed = 0u64;
    for _ in 0..iters {
        let mut cpu = Cpu::new();
        for r in cpu.gpr.iter_mut() {
            let v = next();
            *r = if v % 2 == 0 {
                0x10000 + (v >> 8) % 0x10000
            } else {
                v
            };
        }
        for x in cpu.fpu.xmm.iter_mut() {
            *x = (next() as u128) << 64 | next() as u128;
        }
        cpu.fpu.mxcsr = (next() as u32 & 0xffff) | (0x1f80 * (next() % 2) as u32);
        cpu.fpu.fcw = next() as u16;
        cpu.fpu.fsw = next() as u16;
        cpu.fpu.ftw = next() as u8;
        for r in cpu.fpu.st.iter_mut() {
            r[..8].copy_from_slice(&next().to_le_bytes());
            r[8..10].copy_from_slice(&(next() as u16).to_le_bytes());
        }
        let at = (next() % (0x10000 - 32)) as usize;
        // Prefix + opcode from the SSE (0f xx, 66/f2/f3 0f xx) or x87 (d8-df) space.
        let mut bytes = Vec::new();
        let v = next();
        if v % 3 == 0 {
            bytes.push(0xd8 + (v >> 8) as u8 % 8);
        } else {
            if v % 3 == 1 {
                bytes.push([0x66, 0xf2, 0xf3][(v >> 8) as usize % 3]);
            }
            if v & 0x1000 != 0 {
                bytes.push(0x40 | (v >> 16) as u8 & 0xf);
            }
            bytes.push(0x0f);
        }
        while bytes.len() < 32 {
            bytes.push(next() as u8);
        }
        mem.data[at..at + 32].copy_from_slice(&bytes);
        cpu.rip = 0x10000 + at as u64;
        for _ in 0..3 {
            if step(&mut cpu, &mut mem).is_err() {
                break;
            }
            executed += 1;
        }
    }
    eprintln!("sse/x87 no_panic: {executed} instructions executed");
    assert!(executed > iters / 10);
}

#[test]
fn fnstenv_fldenv_as_glibc_fenv_uses_them() {
    // fninit; fld1; fnstenv [rbx]; fninit; fldenv [rbx]; fnstsw ax
    let (mut cpu, mut mem) = setup(&[
        0xdb, 0xe3, 0xd9, 0xe8, 0xd9, 0x33, 0xdb, 0xe3, 0xd9, 0x23, 0xdf, 0xe0,
    ]);
    run(&mut cpu, &mut mem, 3);
    assert_eq!(mem.read_u16(DATA).unwrap(), 0x037f);
    assert_eq!(
        mem.read_u16(DATA + 4).unwrap(),
        7 << 11,
        "TOP 7 after one push"
    );
    assert_eq!(
        mem.read_u16(DATA + 8).unwrap(),
        0x3fff,
        "R7 valid, the rest empty"
    );
    // feclearexcept-style edit of the saved status word, then reload.
    mem.write_u16(DATA, 0x0372).unwrap();
    run(&mut cpu, &mut mem, 3);
    assert_eq!(cpu.fpu.fcw, 0x0372);
    assert_eq!(cpu.gpr[RAX] & 0xffff, 7 << 11);
    assert_eq!(cpu.fpu.ftw, 0x80);
}

#[test]
fn rcp_and_rsqrt_are_within_the_architectural_error() {
    // rcpps xmm0, xmm1; rsqrtps xmm2, xmm1
    let (mut cpu, mut mem) = setup(&[0x0f, 0x53, 0xc1, 0x0f, 0x52, 0xd1]);
    let xs = [3.0f32, 0.1, 1e-3, 12345.0];
    cpu.fpu.xmm[1] = xs
        .iter()
        .enumerate()
        .fold(0u128, |v, (k, x)| v | (x.to_bits() as u128) << (32 * k));
    let mxcsr = cpu.fpu.mxcsr;
    run(&mut cpu, &mut mem, 2);
    for (k, x) in xs.iter().enumerate() {
        let rcp = f32::from_bits((cpu.fpu.xmm[0] >> (32 * k)) as u32);
        let rsq = f32::from_bits((cpu.fpu.xmm[2] >> (32 * k)) as u32);
        assert!(((rcp * x) - 1.0).abs() <= 1.5 / 4096.0, "rcp {x}");
        assert!(((rsq * x.sqrt()) - 1.0).abs() <= 1.5 / 4096.0, "rsqrt {x}");
    }
    assert_eq!(cpu.fpu.mxcsr, mxcsr, "no MXCSR flags");
}

#[test]
fn unmasked_simd_exception_stops_the_instruction() {
    // divss xmm0, xmm1 with ZM clear and xmm1 = 0: #XM (CR4.OSXMMEXCPT is set),
    // destination unchanged, ZE recorded in MXCSR.
    let (mut cpu, mut mem) = setup(&[0xf3, 0x0f, 0x5e, 0xc1]);
    cpu.fpu.mxcsr = 0x1f80 & !(1 << 9);
    cpu.fpu.xmm[0] = 1.0f32.to_bits() as u128;
    cpu.fpu.xmm[1] = 0;
    assert_eq!(step(&mut cpu, &mut mem), Err(Exception::Vector(19)));
    assert_eq!(cpu.rip, BASE);
    assert_eq!(cpu.fpu.xmm[0], 1.0f32.to_bits() as u128);
    assert_eq!(cpu.fpu.mxcsr & 0x3f, 1 << 2);
    // Masked: inf and ZE.
    cpu.fpu.mxcsr = 0x1f80;
    step(&mut cpu, &mut mem).unwrap();
    assert_eq!(cpu.fpu.xmm[0], f32::INFINITY.to_bits() as u128);
    assert_eq!(cpu.fpu.mxcsr, 0x1f84);
}

#[test]
fn mxcsr_rounding_modes_are_honoured() {
    // divsd xmm0, xmm1: 1/3 in each rounding mode; cvtsd2si eax, xmm2 (2.5).
    let third = 1.0f64 / 3.0;
    let expect = [
        (0u32, third),
        (1, third),                               // down: 1/3 rounds down to nearest too
        (2, f64::from_bits(third.to_bits() + 1)), // up
        (3, third),                               // toward zero
    ];
    for (rc, want) in expect {
        let (mut cpu, mut mem) = setup(&[0xf2, 0x0f, 0x5e, 0xc1, 0xf2, 0x0f, 0x2d, 0xc2]);
        cpu.fpu.mxcsr = 0x1f80 | (rc << 13);
        cpu.fpu.xmm[0] = 1.0f64.to_bits() as u128;
        cpu.fpu.xmm[1] = 3.0f64.to_bits() as u128;
        cpu.fpu.xmm[2] = 2.5f64.to_bits() as u128;
        run(&mut cpu, &mut mem, 2);
        assert_eq!(cpu.fpu.xmm[0] as u64, want.to_bits(), "rc {rc}");
        assert_eq!(
            cpu.gpr[RAX],
            [2, 2, 3, 2][rc as usize],
            "cvtsd2si 2.5, rc {rc}"
        );
        assert_eq!(cpu.fpu.mxcsr & 0x3f, 0x20, "PE only");
    }
}
