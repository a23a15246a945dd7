//! The instructions that exist only outside 64-bit mode, against the host CPU: a forked
//! child switches to compatibility mode (Linux's 32-bit user code segment 0x23) and runs
//! DAA/DAS/AAA/AAS/AAM/AAD over every AL, CF, AF and two AH values, storing AX and
//! EFLAGS; the interpreter runs the same 32-bit code. Defined flags and AX must match.
//! Skipped (with a message) when the host has no 32-bit code segment.

use hypervisor_emu::cpu::Cpu;
use hypervisor_emu::{Bus, EmuVcpu, RunExit};
use iced_x86::code_asm::*;

const N: u32 = 2048;
/// (name, mnemonic emitter, flags defined after it)
const OPS: [(&str, u64); 8] = [
    ("daa", 0x8d5 & !0x800),
    ("das", 0x8d5 & !0x800),
    ("aaa", 0x11),
    ("aas", 0x11),
    ("aam10", 0xc4),
    ("aam7", 0xc4),
    ("aad10", 0xc4),
    ("aad3", 0xc4),
];

fn emit(a: &mut CodeAssembler, k: usize) -> Result<(), IcedError> {
    match k {
        0 => a.daa(),
        1 => a.das(),
        2 => a.aaa(),
        3 => a.aas(),
        4 => a.aam(10),
        5 => a.aam(7),
        6 => a.aad(10),
        _ => a.aad(3),
    }
}

/// 32-bit code at `ip`: for every op and every ECX < N, AL = ECX[0..8], CF = ECX[8],
/// AF = ECX[9], AH = ECX[10], run the op, store EAX and EFLAGS at `data`.
fn body(a: &mut CodeAssembler, data: u32) -> Result<(), IcedError> {
    for k in 0..OPS.len() {
        a.xor(ecx, ecx)?;
        let mut l = a.create_label();
        a.set_label(&mut l)?;
        a.mov(edx, ecx)?;
        a.shr(edx, 8)?;
        a.and(edx, 1)?;
        a.mov(ebx, ecx)?;
        a.shr(ebx, 9)?;
        a.and(ebx, 1)?;
        a.shl(ebx, 4)?;
        a.or(edx, ebx)?;
        a.or(edx, 2)?;
        a.push(edx)?;
        a.popfd()?;
        a.mov(eax, ecx)?;
        a.and(eax, 0x4ff)?;
        emit(a, k)?;
        a.pushfd()?;
        a.pop(edx)?;
        let base = data + k as u32 * N * 8;
        a.mov(dword_ptr(ecx * 8 + base as i32), eax)?;
        a.mov(dword_ptr(ecx * 8 + (base + 4) as i32), edx)?;
        a.inc(ecx)?;
        a.cmp(ecx, N as i32)?;
        a.jb(l)?;
    }
    Ok(())
}

struct Mem {
    code_base: u64,
    code: Vec<u8>,
    data_base: u64,
    data: Vec<u8>,
    stack_base: u64,
    stack: Vec<u8>,
}

impl Mem {
    fn slice(&mut self, gpa: u64, len: usize) -> Option<&mut [u8]> {
        for (base, v) in [
            (self.code_base, &mut self.code),
            (self.data_base, &mut self.data),
            (self.stack_base, &mut self.stack),
        ] {
            if gpa >= base && gpa + len as u64 <= base + v.len() as u64 {
                let o = (gpa - base) as usize;
                return Some(&mut v[o..o + len]);
            }
        }
        None
    }
}

impl Bus for Mem {
    fn ram_read(&mut self, gpa: u64, buf: &mut [u8]) -> bool {
        self.slice(gpa, buf.len())
            .map(|s| buf.copy_from_slice(s))
            .is_some()
    }
    fn ram_write(&mut self, gpa: u64, buf: &[u8]) -> bool {
        self.slice(gpa, buf.len())
            .map(|s| s.copy_from_slice(buf))
            .is_some()
    }
    fn mmio_read(&mut self, _t: u64, _gpa: u64, buf: &mut [u8]) {
        buf.fill(0xff);
    }
    fn mmio_write(&mut self, _t: u64, _gpa: u64, _buf: &[u8]) {}
    fn pio_in(&mut self, _t: u64, _port: u16, _size: u8) -> u32 {
        u32::MAX
    }
    fn pio_out(&mut self, _t: u64, _port: u16, _size: u8, _value: u32) {}
    fn cpuid(&mut self, _leaf: u32, _subleaf: u32) -> [u32; 4] {
        [0; 4]
    }
    fn rdmsr(&mut self, _t: u64, _msr: u32) -> Option<u64> {
        None
    }
    fn wrmsr(&mut self, _t: u64, _msr: u32, _value: u64) -> bool {
        false
    }
    fn tsc(&mut self, t: u64) -> u64 {
        t
    }
    fn hypercall(&mut self, _t: u64, _gpr: &mut [u64; 16], _long_mode: bool) {}
    fn interrupt_pending(&mut self, _t: u64) -> bool {
        false
    }
    fn acknowledge_interrupt(&mut self, _t: u64) -> Option<u8> {
        None
    }
    fn take_written_code_pages(&mut self, _f: &mut dyn FnMut(u64)) {}
    fn stop_requested(&mut self) -> bool {
        false
    }
}

fn map(len: usize, prot: i32, flags: i32) -> *mut u8 {
    // SAFETY: anonymous mapping, checked.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            flags | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert!(p != libc::MAP_FAILED);
    p as *mut u8
}

/// Run 32-bit `body` (assembled at the same address for both) natively in compatibility
/// mode and in the interpreter; `data_len` bytes at the returned data address are the
/// results. `None` when the host cannot run 32-bit code. `init` fills the data area
/// before both runs.
fn run_both(
    data_len: usize,
    body: &dyn Fn(&mut CodeAssembler, u32) -> Result<(), IcedError>,
    init: &dyn Fn(u32, &mut [u8]),
) -> Option<(Vec<u8>, Vec<u8>)> {
    let code_p = map(
        0x10000,
        libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
        libc::MAP_PRIVATE | libc::MAP_32BIT,
    );
    let stack_p = map(
        0x4000,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_32BIT,
    );
    let data_p = map(
        data_len + 16,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_SHARED | libc::MAP_32BIT,
    );
    let (code, stack, data) = (code_p as u64, stack_p as u64, data_p as u64);
    let saved_rsp = data + data_len as u64;
    let entry32 = code + 0x100;
    let mut initial = vec![0u8; data_len];
    init(data as u32, &mut initial);
    // SAFETY: the data mapping is data_len + 16 bytes.
    unsafe { std::ptr::copy_nonoverlapping(initial.as_ptr(), data_p, data_len) };
    // The 32-bit part: load DS/ES (64-bit Linux leaves them null, which compatibility
    // mode cannot use), the body, then a far return to the 64-bit exit at `exit`.
    let native = |exit: u32| {
        let mut a = CodeAssembler::new(32).unwrap();
        a.mov(ax, ss).unwrap();
        a.mov(ds, ax).unwrap();
        a.mov(es, ax).unwrap();
        body(&mut a, data as u32).unwrap();
        a.push(0x33).unwrap();
        a.push(exit as i32).unwrap();
        a.retf().unwrap();
        a.assemble(entry32).unwrap()
    };
    // A placeholder with an imm32 of the same size gives the length.
    let exit64 = (entry32 + native(0x7fff_0000).len() as u64 + 15) & !15;
    let native32 = native(exit64 as u32);
    assert!(entry32 + native32.len() as u64 <= exit64);
    let enter64 = {
        let mut a = CodeAssembler::new(64).unwrap();
        for r in [rbx, rbp, r12, r13, r14, r15] {
            a.push(r).unwrap();
        }
        a.mov(rax, saved_rsp).unwrap();
        a.mov(qword_ptr(rax), rsp).unwrap();
        a.mov(rsp, stack + 0x3000).unwrap();
        a.push(0x23).unwrap();
        a.push(entry32 as i32).unwrap();
        a.db(&[0x48, 0xcb]).unwrap(); // retfq
        a.assemble(code).unwrap()
    };
    let leave64 = {
        let mut a = CodeAssembler::new(64).unwrap();
        a.mov(rax, saved_rsp).unwrap();
        a.mov(rsp, qword_ptr(rax)).unwrap();
        for r in [r15, r14, r13, r12, rbp, rbx] {
            a.pop(r).unwrap();
        }
        a.cld().unwrap();
        a.ret().unwrap();
        a.assemble(exit64).unwrap()
    };
    assert!(enter64.len() < 0x100);
    assert!(exit64 - code + leave64.len() as u64 <= 0x10000);
    // SAFETY: all within the code mapping.
    unsafe {
        std::ptr::copy_nonoverlapping(enter64.as_ptr(), code_p, enter64.len());
        std::ptr::copy_nonoverlapping(native32.as_ptr(), code_p.add(0x100), native32.len());
        std::ptr::copy_nonoverlapping(
            leave64.as_ptr(),
            code_p.add((exit64 - code) as usize),
            leave64.len(),
        );
    }
    // SAFETY: fork; the child only runs the generated code and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: the entry is the 64-bit trampoline written above.
        let f: extern "C" fn() = unsafe { std::mem::transmute(code_p) };
        f();
        // SAFETY: leaving the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waiting for our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        eprintln!("compat: no 32-bit code segment on this host (status {status:#x}); skipped");
        return None;
    }
    // SAFETY: the shared data mapping, written by the child.
    let native: Vec<u8> = unsafe { std::slice::from_raw_parts(data_p, data_len) }.to_vec();

    // The interpreter: the same addresses and body (its flat segments need no loads).
    let mut bus = Mem {
        code_base: entry32,
        code: {
            let mut a = CodeAssembler::new(32).unwrap();
            body(&mut a, data as u32).unwrap();
            a.hlt().unwrap();
            a.assemble(entry32).unwrap()
        },
        data_base: data,
        data: initial,
        stack_base: stack,
        stack: vec![0; 0x4000],
    };
    let mut c = Cpu::pvh_entry(entry32, 0);
    c.gpr[4] = stack + 0x3000;
    let mut v = EmuVcpu::new(c);
    let e = v.run(&mut bus, 50_000_000);
    assert_eq!(
        e,
        RunExit::Halted {
            interrupts_enabled: false
        },
        "{}",
        v.summary()
    );
    Some((native, bus.data))
}

#[test]
fn bcd_instructions_match_the_host_in_compatibility_mode() {
    let dlen = OPS.len() * N as usize * 8;
    let Some((native, interp)) = run_both(dlen, &body, &|_, _| {}) else {
        return;
    };
    let rd = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let mut bad = 0;
    for (k, (name, defined)) in OPS.iter().enumerate() {
        for n in 0..N as usize {
            let o = (k * N as usize + n) * 8;
            let (nax, nfl) = (rd(&native, o) & 0xffff, rd(&native, o + 4) as u64 & defined);
            let (iax, ifl) = (rd(&interp, o) & 0xffff, rd(&interp, o + 4) as u64 & defined);
            if (nax, nfl) != (iax, ifl) {
                if bad < 20 {
                    eprintln!(
                        "{name} input {n:#x}: native ax={nax:#06x} fl={nfl:#x}, interp ax={iax:#06x} fl={ifl:#x}"
                    );
                }
                bad += 1;
            }
        }
    }
    assert_eq!(bad, 0, "{bad} mismatches");
}

// ---------------------------------------------------------------------------------------
// Register-state programs: 32-bit code snippets run from M random register states.

const M: usize = 256;
const STATE: usize = 40;
const IN: usize = 0;
const OUT: usize = M * STATE;
const SCR: usize = 2 * M * STATE;
const SCR_LEN: usize = 0x200;
const CTL: usize = SCR + SCR_LEN;
const PLEN: usize = CTL + 16;

type Snippet = fn(&mut CodeAssembler, u32) -> Result<(), IcedError>;
type Fixup = fn(&mut [u32; 9], u32, u32);

/// The harness around a snippet: for each state i: load EAX..EDI and EFLAGS from
/// IN[i], run the snippet, store the registers (ESP too) and EFLAGS to OUT[i].
fn program(a: &mut CodeAssembler, data: u32, snippet: Snippet) -> Result<(), IcedError> {
    let d = |off: usize| (data as usize + off) as u64;
    let scr = data + SCR as u32;
    let mut top = a.create_label();
    a.mov(dword_ptr(d(CTL)), 0)?;
    a.set_label(&mut top)?;
    a.mov(eax, dword_ptr(d(CTL)))?;
    a.imul_3(eax, eax, STATE as i32)?;
    a.add(eax, (data as usize + IN) as i32)?;
    a.push(dword_ptr(eax + 32))?;
    a.popfd()?;
    a.mov(ecx, dword_ptr(eax + 4))?;
    a.mov(edx, dword_ptr(eax + 8))?;
    a.mov(ebx, dword_ptr(eax + 12))?;
    a.mov(ebp, dword_ptr(eax + 20))?;
    a.mov(esi, dword_ptr(eax + 24))?;
    a.mov(edi, dword_ptr(eax + 28))?;
    a.mov(eax, dword_ptr(eax))?;
    a.mov(dword_ptr(d(CTL + 4)), esp)?;
    snippet(a, scr)?;
    a.mov(dword_ptr(d(CTL + 8)), esp)?;
    a.mov(esp, dword_ptr(d(CTL + 4)))?;
    a.pushfd()?;
    a.push(eax)?;
    a.mov(eax, dword_ptr(d(CTL)))?;
    a.imul_3(eax, eax, STATE as i32)?;
    a.add(eax, (data as usize + OUT) as i32)?;
    a.pop(dword_ptr(eax))?;
    a.mov(dword_ptr(eax + 4), ecx)?;
    a.mov(dword_ptr(eax + 8), edx)?;
    a.mov(dword_ptr(eax + 12), ebx)?;
    a.mov(dword_ptr(eax + 20), ebp)?;
    a.mov(dword_ptr(eax + 24), esi)?;
    a.mov(dword_ptr(eax + 28), edi)?;
    a.pop(dword_ptr(eax + 32))?;
    a.mov(ecx, dword_ptr(d(CTL + 8)))?;
    a.mov(dword_ptr(eax + 16), ecx)?;
    a.inc(dword_ptr(d(CTL)))?;
    a.cmp(dword_ptr(d(CTL)), M as i32)?;
    a.jb(top)
}

fn no_fixup(_: &mut [u32; 9], _: u32, _: u32) {}

/// (name, snippet, register fix-up, flags that must match)
const PROGRAMS: &[(&str, Snippet, Fixup, u32)] = &[
    (
        "pushad/pops",
        |a, _| {
            a.pushad()?;
            for r in [eax, ecx, edx, ebx, ebp, ebp, esi, edi] {
                a.pop(r)?;
            }
            Ok(())
        },
        no_fixup,
        0xcd5,
    ),
    (
        "pushaw/popaw",
        |a, _| {
            a.pusha()?;
            a.pop(ax)?;
            a.pop(cx)?;
            a.popa()?;
            a.pop(dx)?;
            a.pop(bx)?;
            a.pushad()?;
            a.popad()
        },
        no_fixup,
        0xcd5,
    ),
    (
        "enter/leave",
        |a, _| {
            a.mov(ebp, esp)?;
            a.sub(ebp, 64)?;
            a.enter(12, 0)?;
            a.mov(eax, esp)?;
            a.mov(ecx, ebp)?;
            a.leave()?;
            a.enter(8, 3)?;
            a.mov(edx, esp)?;
            a.mov(ebx, dword_ptr(esp + 8))?;
            a.leave()
        },
        no_fixup,
        0xcd5,
    ),
    (
        "lea16",
        |a, _| {
            a.lea(ax, word_ptr(bx + si + 0x1234))?;
            a.lea(ecx, dword_ptr(bp + di - 3))?;
            a.lea(dx, word_ptr(bx + 0x7fff))?;
            a.lea(edi, dword_ptr(si))
        },
        no_fixup,
        0xcd5,
    ),
    ("xlat", |a, _| a.xlatb(), |r, scr, _| r[3] = scr, 0xcd5),
    (
        "lahf/sahf/cbw..",
        |a, _| {
            a.lahf()?;
            a.mov(cl, ah)?;
            a.xor(ah, 0xd5u32 as i32)?;
            a.sahf()?;
            a.cbw()?;
            a.cwd()?;
            a.cwde()?;
            a.cdq()
        },
        no_fixup,
        0xcd5,
    ),
    (
        "strings",
        |a, _| {
            a.movsb()?;
            a.lodsd()?;
            a.stosw()?;
            a.rep().movsb()?;
            a.cmpsb()
        },
        |r, scr, v| {
            r[6] = scr + 0x80 + (v & 0x3f);
            r[7] = scr + 0x100 + ((v >> 8) & 0x3f);
            r[1] = (v >> 16) & 15;
        },
        0xcd5,
    ),
    (
        "repe cmps/repne scas",
        |a, _| {
            a.repe().cmpsb()?;
            a.mov(ecx, 8u32)?;
            a.repne().scasb()
        },
        |r, scr, v| {
            r[6] = scr + 0x80 + (v & 0x3f);
            r[7] = scr + 0x80 + ((v >> 8) & 0x3f);
            r[1] = (v >> 16) & 31;
            r[8] &= !0x400;
        },
        0xcd5,
    ),
    (
        "loop",
        |a, _| {
            let mut l = a.create_label();
            a.set_label(&mut l)?;
            a.add(eax, ebx)?;
            a.loop_(l)?;
            a.mov(ecx, 3u32)?;
            let mut m = a.create_label();
            a.set_label(&mut m)?;
            a.inc(edx)?;
            a.cmp(edx, esi)?;
            a.loopne(m)
        },
        |r, _, v| r[1] = (v & 31) + 1,
        0xcd5,
    ),
    (
        "16-bit ops",
        |a, _| {
            a.inc(ax)?;
            a.dec(cx)?;
            a.xchg(ax, dx)?;
            a.imul_3(bx, cx, 7)?;
            a.add(si, di)?;
            a.adc(bp, ax)?;
            a.neg(dx)?;
            a.movzx(edi, cl)?;
            a.movsx(esi, dx)?;
            a.bswap(ebx)?;
            a.sete(al)?;
            a.setb(ah)
        },
        no_fixup,
        0xcd5 & !0x10,
    ),
    (
        "push/pop mixed",
        |a, _| {
            a.push(ax)?;
            a.push(0x1234)?;
            a.db(&[0x66, 0x6a, 0x55])?;
            a.push(ecx)?;
            a.pop(edx)?;
            a.pop(bx)?;
            a.pop(esi)?;
            a.pop(word_ptr(esp - 8))?;
            a.mov(edi, dword_ptr(esp - 10))
        },
        no_fixup,
        0xcd5,
    ),
    (
        "cmpxchg8b",
        |a, scr| {
            a.test(ebp, 1)?;
            let mut skip = a.create_label();
            a.jz(skip)?;
            a.mov(eax, dword_ptr(scr as u64))?;
            a.mov(edx, dword_ptr(scr as u64 + 4))?;
            a.set_label(&mut skip)?;
            a.cmpxchg8b(qword_ptr(scr as u64))
        },
        no_fixup,
        0x40,
    ),
];

fn fill_inputs(name: &str, fix: Fixup) -> impl Fn(u32, &mut [u8]) {
    let seed = name.bytes().fold(0x9e37_79b9u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    move |data, buf: &mut [u8]| {
        let mut s = seed | 1;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let scr = data + SCR as u32;
        for i in 0..M {
            let mut r = [0u32; 9];
            for (k, x) in r.iter_mut().enumerate() {
                let v = next();
                *x = match v % 4 {
                    0 => (v >> 8) as u32 & 0xff,
                    1 => [0, u32::MAX, 0x8000_0000, 0x7fff_ffff, 0xffff, 0x8000]
                        [(v >> 8) as usize % 6],
                    _ => (v >> 16) as u32,
                };
                if k == 8 {
                    *x = (*x & 0xcd5) | 2;
                }
            }
            fix(&mut r, scr, next() as u32);
            for (k, x) in r.iter().enumerate() {
                let o = IN + i * STATE + 4 * k;
                buf[o..o + 4].copy_from_slice(&x.to_le_bytes());
            }
        }
        for k in 0..SCR_LEN {
            buf[SCR + k] = (next() % 7) as u8;
        }
    }
}

#[test]
fn legacy_register_programs_match_the_host_in_compatibility_mode() {
    let rd = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let mut bad = 0;
    for &(name, snippet, fix, defined) in PROGRAMS {
        let body = move |a: &mut CodeAssembler, data: u32| program(a, data, snippet);
        let Some((native, interp)) = run_both(PLEN, &body, &fill_inputs(name, fix)) else {
            return;
        };
        // The native side really ran: every state has a stored EFLAGS (bit 1 set).
        assert!(
            (0..M).all(|i| rd(&native, OUT + i * STATE + 32) & 2 != 0),
            "{name}"
        );
        for i in 0..M {
            let o = OUT + i * STATE;
            for k in 0..9 {
                let mut n = rd(&native, o + 4 * k);
                let mut v = rd(&interp, o + 4 * k);
                if k == 8 {
                    n &= defined;
                    v &= defined;
                }
                if n != v {
                    if bad < 20 {
                        let input: Vec<u32> = (0..9)
                            .map(|j| rd(&native, IN + i * STATE + 4 * j))
                            .collect();
                        eprintln!(
                            "{name} state {i} reg {k}: native {n:#x} interp {v:#x}; input {input:x?}"
                        );
                    }
                    bad += 1;
                }
            }
        }
        if native[SCR..SCR + SCR_LEN] != interp[SCR..SCR + SCR_LEN] {
            eprintln!("{name}: scratch memory differs");
            bad += 1;
        }
    }
    assert_eq!(bad, 0, "{bad} mismatches");
}
