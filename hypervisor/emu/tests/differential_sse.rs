//! Differential test of the SSE/SSE2 and x87 subset against the host CPU.
//!
//! Same approach as `differential.rs`: every generated case runs natively in a forked
//! child (a faulting case kills only the child) and in the interpreter from the same
//! GPRs, flags, XMM registers, MXCSR and 1 KiB data area; all of those must match
//! afterwards (RSP excepted). Register and memory contents are biased towards float
//! edge cases (±0, ±inf, QNaN/SNaN with payloads, denormals, values next to rounding
//! boundaries and integer-conversion limits) and integer edges; MXCSR gets random
//! rounding modes, FTZ, DAZ and sticky flags (exceptions stay masked: an unmasked one
//! is #XM natively and a placeholder #UD here).
//!
//! x87 cases start with FNINIT (the child's x87 state is shared between cases), load
//! a random control word, run loads/arithmetic/compares, and store the status word
//! and every stack register to memory, so the comparison of the data area covers them.
//!
//! Harness rules: generated code never names RSP or RBX (the data pointer every
//! memory operand is based on). Seed: `EMU_DIFF_SEED`; cases per template:
//! `EMU_DIFF_CASES` (sequence cases scale with it).

#![allow(clippy::needless_range_loop)]

use hypervisor_emu::cpu::{self, Cpu};
use hypervisor_emu::exec::{self, Exception};
use hypervisor_emu::mem::{Fault, FlatMemory, Memory};
use std::collections::BTreeMap;

const DATA_SIZE: usize = 1024;
const SLOT: usize = 320;
const NREGS: usize = 16;
/// State block (u64 words): 16 GPRs, RFLAGS, call target, MXCSR, pad, 16 XMM x 2.
const W_RFLAGS: usize = 16;
const W_TARGET: usize = 17;
const W_MXCSR: usize = 18;
const W_XMM: usize = 20;
const STATE_WORDS: usize = W_XMM + 32;

// ---------------------------------------------------------------------------------------
// Native execution.

core::arch::global_asm!(
    ".globl emu_sse_native_run",
    "emu_sse_native_run:",
    "push rbx",
    "push rbp",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "push rdi",
    "push qword ptr [rdi + 136]",
    "ldmxcsr [rdi + 144]",
    "movdqu xmm0, [rdi + 160]",
    "movdqu xmm1, [rdi + 176]",
    "movdqu xmm2, [rdi + 192]",
    "movdqu xmm3, [rdi + 208]",
    "movdqu xmm4, [rdi + 224]",
    "movdqu xmm5, [rdi + 240]",
    "movdqu xmm6, [rdi + 256]",
    "movdqu xmm7, [rdi + 272]",
    "movdqu xmm8, [rdi + 288]",
    "movdqu xmm9, [rdi + 304]",
    "movdqu xmm10, [rdi + 320]",
    "movdqu xmm11, [rdi + 336]",
    "movdqu xmm12, [rdi + 352]",
    "movdqu xmm13, [rdi + 368]",
    "movdqu xmm14, [rdi + 384]",
    "movdqu xmm15, [rdi + 400]",
    "push qword ptr [rdi + 128]",
    "popfq",
    "mov rax, [rdi + 0]",
    "mov rcx, [rdi + 8]",
    "mov rdx, [rdi + 16]",
    "mov rbx, [rdi + 24]",
    "mov rbp, [rdi + 40]",
    "mov rsi, [rdi + 48]",
    "mov r8, [rdi + 64]",
    "mov r9, [rdi + 72]",
    "mov r10, [rdi + 80]",
    "mov r11, [rdi + 88]",
    "mov r12, [rdi + 96]",
    "mov r13, [rdi + 104]",
    "mov r14, [rdi + 112]",
    "mov r15, [rdi + 120]",
    "mov rdi, [rdi + 56]",
    "call qword ptr [rsp]",
    "push rax",
    "mov rax, [rsp + 16]",
    "pop qword ptr [rax + 0]",
    "mov [rax + 8], rcx",
    "mov [rax + 16], rdx",
    "mov [rax + 24], rbx",
    "mov [rax + 40], rbp",
    "mov [rax + 48], rsi",
    "mov [rax + 56], rdi",
    "mov [rax + 64], r8",
    "mov [rax + 72], r9",
    "mov [rax + 80], r10",
    "mov [rax + 88], r11",
    "mov [rax + 96], r12",
    "mov [rax + 104], r13",
    "mov [rax + 112], r14",
    "mov [rax + 120], r15",
    "pushfq",
    "pop qword ptr [rax + 128]",
    "stmxcsr [rax + 144]",
    "movdqu [rax + 160], xmm0",
    "movdqu [rax + 176], xmm1",
    "movdqu [rax + 192], xmm2",
    "movdqu [rax + 208], xmm3",
    "movdqu [rax + 224], xmm4",
    "movdqu [rax + 240], xmm5",
    "movdqu [rax + 256], xmm6",
    "movdqu [rax + 272], xmm7",
    "movdqu [rax + 288], xmm8",
    "movdqu [rax + 304], xmm9",
    "movdqu [rax + 320], xmm10",
    "movdqu [rax + 336], xmm11",
    "movdqu [rax + 352], xmm12",
    "movdqu [rax + 368], xmm13",
    "movdqu [rax + 384], xmm14",
    "movdqu [rax + 400], xmm15",
    "add rsp, 16",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbp",
    "pop rbx",
    "cld",
    "sub rsp, 8",
    "mov dword ptr [rsp], 0x1f80",
    "ldmxcsr [rsp]",
    "add rsp, 8",
    "ret",
);

unsafe extern "sysv64" {
    fn emu_sse_native_run(state: *mut u64);
}

#[derive(Clone, Debug, PartialEq)]
struct State {
    regs: [u64; NREGS],
    rflags: u64,
    mxcsr: u32,
    xmm: [u128; 16],
    data: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Done(Box<State>),
    Fault(&'static str),
}

fn exc_name(e: Exception) -> &'static str {
    // #GP and page faults are both SIGSEGV natively.
    match e {
        Exception::DivideError => "#DE/#XM",
        Exception::InvalidOpcode => "#UD",
        _ => "#GP/memfault",
    }
}

fn sig_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGFPE => "#DE/#XM",
        libc::SIGILL => "#UD",
        libc::SIGSEGV | libc::SIGBUS => "#GP/memfault",
        _ => "other-signal",
    }
}

struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(len: usize, prot: i32, flags: i32) -> Mapping {
        // SAFETY: anonymous mapping; checked for failure.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                flags | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(ptr != libc::MAP_FAILED, "mmap failed");
        Mapping {
            ptr: ptr as *mut u8,
            len,
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: we own the mapping.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

fn to_words(s: &State, target: u64) -> [u64; STATE_WORDS] {
    let mut w = [0u64; STATE_WORDS];
    w[..NREGS].copy_from_slice(&s.regs);
    w[W_RFLAGS] = s.rflags;
    w[W_TARGET] = target;
    w[W_MXCSR] = s.mxcsr as u64;
    for k in 0..16 {
        w[W_XMM + 2 * k] = s.xmm[k] as u64;
        w[W_XMM + 2 * k + 1] = (s.xmm[k] >> 64) as u64;
    }
    w
}

fn from_words(w: &[u64; STATE_WORDS], data: Vec<u8>) -> State {
    let mut regs = [0u64; NREGS];
    regs.copy_from_slice(&w[..NREGS]);
    let mut xmm = [0u128; 16];
    for k in 0..16 {
        xmm[k] = w[W_XMM + 2 * k] as u128 | ((w[W_XMM + 2 * k + 1] as u128) << 64);
    }
    State {
        regs,
        rflags: w[W_RFLAGS],
        mxcsr: w[W_MXCSR] as u32,
        xmm,
        data,
    }
}

struct Native {
    code: Mapping,
    data: Mapping,
}

impl Native {
    fn new(ncases: usize) -> Native {
        let code = Mapping::new(
            (ncases * SLOT).max(4096),
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
            libc::MAP_PRIVATE,
        );
        let data = Mapping::new(
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_32BIT,
        );
        Native { code, data }
    }
    fn slot_addr(&self, k: usize) -> u64 {
        self.code.ptr as u64 + (k * SLOT) as u64
    }
    fn data_addr(&self) -> u64 {
        self.data.ptr as u64
    }

    /// Run every case natively; one child process until a case faults, then a new one.
    fn run(&self, cases: &[Case]) -> Vec<Outcome> {
        let n = cases.len();
        for (k, c) in cases.iter().enumerate() {
            assert!(c.code.len() < SLOT);
            // SAFETY: the slot lies inside the code mapping.
            unsafe {
                let p = self.code.ptr.add(k * SLOT);
                std::ptr::copy_nonoverlapping(c.code.as_ptr(), p, c.code.len());
                *p.add(c.code.len()) = 0xc3; // ret
            }
        }
        let rec = STATE_WORDS * 8 + DATA_SIZE;
        let shared = Mapping::new(
            8 + n * rec,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
        );
        let progress = shared.ptr as *mut u64;
        // SAFETY: inside the shared mapping.
        let out = |k: usize| -> *mut u8 { unsafe { shared.ptr.add(8 + k * rec) } };
        let mut results: Vec<Option<Outcome>> = vec![None; n];
        let mut start = 0;
        while start < n {
            // SAFETY: the child only touches memory mapped before the fork and our own
            // code, then _exits.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                unsafe {
                    let rl = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    libc::setrlimit(libc::RLIMIT_CORE, &rl);
                    for s in [
                        libc::SIGFPE,
                        libc::SIGSEGV,
                        libc::SIGBUS,
                        libc::SIGILL,
                        libc::SIGTRAP,
                    ] {
                        libc::signal(s, libc::SIG_DFL);
                    }
                    for k in start..n {
                        *progress = k as u64;
                        let c = &cases[k];
                        std::ptr::copy_nonoverlapping(
                            c.state.data.as_ptr(),
                            self.data.ptr,
                            DATA_SIZE,
                        );
                        let mut w = to_words(&c.state, self.slot_addr(k));
                        emu_sse_native_run(w.as_mut_ptr());
                        let o = out(k);
                        std::ptr::copy_nonoverlapping(w.as_ptr() as *const u8, o, STATE_WORDS * 8);
                        std::ptr::copy_nonoverlapping(
                            self.data.ptr,
                            o.add(STATE_WORDS * 8),
                            DATA_SIZE,
                        );
                    }
                    libc::_exit(0);
                }
            }
            let mut status = 0;
            // SAFETY: waiting for our own child.
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            assert_eq!(r, pid);
            let reached = if libc::WIFEXITED(status) {
                n
            } else {
                // SAFETY: the child is gone; the shared page is ours.
                unsafe { *progress as usize }
            };
            for k in start..reached {
                let mut w = [0u64; STATE_WORDS];
                let mut data = vec![0u8; DATA_SIZE];
                // SAFETY: written by the child for case k.
                unsafe {
                    let o = out(k);
                    std::ptr::copy_nonoverlapping(o, w.as_mut_ptr() as *mut u8, STATE_WORDS * 8);
                    std::ptr::copy_nonoverlapping(
                        o.add(STATE_WORDS * 8),
                        data.as_mut_ptr(),
                        DATA_SIZE,
                    );
                }
                results[k] = Some(Outcome::Done(Box::new(from_words(&w, data))));
            }
            if reached < n {
                let name = if libc::WIFSIGNALED(status) {
                    sig_name(libc::WTERMSIG(status))
                } else {
                    "other-exit"
                };
                results[reached] = Some(Outcome::Fault(name));
                start = reached + 1;
            } else {
                start = n;
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every case has an outcome"))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// The interpreter side.

struct CaseMem {
    code: FlatMemory,
    data: FlatMemory,
}

impl Memory for CaseMem {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
        if addr >= self.code.base && addr < self.code.base + self.code.data.len() as u64 {
            self.code.read(addr, buf)
        } else {
            self.data.read(addr, buf)
        }
    }
    fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), Fault> {
        self.data.write(addr, buf)
    }
}

fn interpret(case: &Case, code_addr: u64, data_addr: u64) -> Outcome {
    let mut code = FlatMemory::new(code_addr, case.code.len() + 1);
    code.data[..case.code.len()].copy_from_slice(&case.code);
    code.data[case.code.len()] = 0xc3;
    let mut data = FlatMemory::new(data_addr, DATA_SIZE);
    data.data.copy_from_slice(&case.state.data);
    let mut mem = CaseMem { code, data };
    let mut c = Cpu::new();
    c.gpr = case.state.regs;
    c.rflags = case.state.rflags;
    c.fpu.mxcsr = case.state.mxcsr;
    c.fpu.xmm = case.state.xmm;
    // The native child's x87 state before FNINIT is whatever the previous case left;
    // every x87 case starts with FNINIT.
    c.rip = code_addr;
    let end = code_addr + case.code.len() as u64;
    for _ in 0..64 {
        if c.rip == end {
            return Outcome::Done(Box::new(State {
                regs: c.gpr,
                rflags: c.rflags,
                mxcsr: c.fpu.mxcsr,
                xmm: c.fpu.xmm,
                data: mem.data.data,
            }));
        }
        if let Err(e) = exec::step(&mut c, &mut mem) {
            return Outcome::Fault(exc_name(e));
        }
    }
    Outcome::Fault("runaway")
}

// ---------------------------------------------------------------------------------------
// Values.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }

    /// An interesting binary64 bit pattern.
    fn f64_bits(&mut self) -> u64 {
        const E: [u64; 24] = [
            0x0000_0000_0000_0000, // +0
            0x8000_0000_0000_0000, // -0
            0x7ff0_0000_0000_0000, // +inf
            0xfff0_0000_0000_0000, // -inf
            0x7ff8_0000_0000_0000, // QNaN
            0xfff8_0000_0000_0000, // indefinite
            0x7ff0_0000_0000_0001, // SNaN
            0x7ff4_dead_beef_0000, // SNaN with payload
            0x7ffc_1234_5678_9abc, // QNaN with payload
            0x0000_0000_0000_0001, // min denormal
            0x800f_ffff_ffff_ffff, // -max denormal
            0x0010_0000_0000_0000, // min normal
            0x7fef_ffff_ffff_ffff, // max
            0x3ff0_0000_0000_0000, // 1
            0xbff8_0000_0000_0000, // -1.5
            0x3fe0_0000_0000_0000, // 0.5
            0x4004_0000_0000_0000, // 2.5
            0x41e0_0000_0000_0000, // 2^31
            0xc1e0_0000_0000_0000, // -2^31
            0x41df_ffff_ffc0_0000, // 2^31 - 1
            0x43e0_0000_0000_0000, // 2^63
            0xc3e0_0000_0000_0000, // -2^63
            0x3ff0_0000_0000_0001, // 1 + ulp
            0x3690_0000_0000_0000, // tiny normal (f32 underflow)
        ];
        match self.below(6) {
            0 | 1 => self.pick(&E),
            2 => {
                // Random sign/exponent near the interesting ranges, random mantissa.
                let exp = self.pick(&[
                    0u64, 1, 2, 0x3ff, 0x400, 0x3fe, 0x380, 0x36a, 0x47f, 0x7fe, 0x41e, 0x43e,
                ]);
                let exp = (exp + self.below(5)).saturating_sub(2).min(0x7ff);
                (self.next() & 0x800f_ffff_ffff_ffff) | (exp << 52)
            }
            3 => {
                // A small integer or simple fraction.
                let v = (self.below(2001) as f64 - 1000.0) / self.pick(&[1.0, 2.0, 4.0, 3.0, 10.0]);
                v.to_bits()
            }
            4 => self.pick(&E) ^ (self.next() & 0xf),
            _ => self.next(),
        }
    }

    fn f32_bits(&mut self) -> u32 {
        const E: [u32; 22] = [
            0x0000_0000,
            0x8000_0000,
            0x7f80_0000,
            0xff80_0000,
            0x7fc0_0000,
            0xffc0_0000,
            0x7f80_0001,
            0x7fa0_1234,
            0x7fe0_4321,
            0x0000_0001,
            0x807f_ffff,
            0x0080_0000,
            0x7f7f_ffff,
            0x3f80_0000,
            0xbfc0_0000,
            0x3f00_0000,
            0x4020_0000,
            0x4f00_0000, // 2^31
            0xcf00_0000, // -2^31
            0x5f00_0000, // 2^63
            0x4effffff,
            0x3f80_0001,
        ];
        match self.below(6) {
            0 | 1 => self.pick(&E),
            2 => {
                let exp = self.pick(&[0u32, 1, 2, 0x7f, 0x80, 0x7e, 0x9e, 0xbe, 0xfe, 0x20, 0x60]);
                let exp = (exp + self.below(5) as u32).saturating_sub(2).min(0xff);
                (self.next() as u32 & 0x807f_ffff) | (exp << 23)
            }
            3 => ((self.below(2001) as f32 - 1000.0) / self.pick(&[1.0, 2.0, 4.0, 3.0, 10.0]))
                .to_bits(),
            4 => self.pick(&E) ^ (self.next() as u32 & 0xf),
            _ => self.next() as u32,
        }
    }

    fn int_bits(&mut self) -> u64 {
        const E: [u64; 12] = [
            0,
            1,
            u64::MAX,
            0x7f,
            0x80,
            0xff,
            0x7fff,
            0x8000,
            0x7fff_ffff,
            0x8000_0000,
            0x7fff_ffff_ffff_ffff,
            0x8000_0000_0000_0000,
        ];
        match self.below(3) {
            0 => self.pick(&E),
            1 => self.below(300).wrapping_sub(150),
            _ => self.next(),
        }
    }

    /// 64 bits of lane data: one f64, two f32, integers, or byte patterns.
    fn lane64(&mut self) -> u64 {
        match self.below(5) {
            0 | 1 => self.f64_bits(),
            2 => self.f32_bits() as u64 | ((self.f32_bits() as u64) << 32),
            3 => self.int_bits(),
            _ => {
                // Bytes from a tiny alphabet (string-function style data: equal
                // bytes, zero bytes, high bits).
                let mut v = 0u64;
                for k in 0..8 {
                    v |= self.pick(&[0u64, 0x41, 0x61, 0x80, 0xff, 0x7f, 0x01]) << (8 * k);
                }
                v
            }
        }
    }

    fn xmm(&mut self) -> u128 {
        self.lane64() as u128 | ((self.lane64() as u128) << 64)
    }

    fn mxcsr(&mut self) -> u32 {
        let mut m = 0x1f80;
        if self.chance(2) {
            m |= (self.below(4) as u32) << 13;
        }
        if self.chance(4) {
            m |= 1 << 15; // FTZ
        }
        if self.chance(4) {
            m |= 1 << 6; // DAZ
        }
        if self.chance(3) {
            m |= self.below(64) as u32;
        }
        m
    }
}

// ---------------------------------------------------------------------------------------
// Templates.

#[derive(Clone, Copy, PartialEq)]
enum RegF {
    /// ModRM.reg names an XMM register.
    X,
    /// ModRM.reg names a GPR (size by REX.W).
    G,
    /// ModRM.reg is an opcode extension.
    D(u8),
}

#[derive(Clone, Copy, PartialEq)]
enum RmF {
    /// XMM register or memory.
    XM,
    /// XMM register only.
    X,
    /// Memory only.
    M,
    /// GPR or memory.
    GM,
}

#[derive(Clone, Copy, PartialEq)]
enum ImmF {
    No,
    Any,
    /// CMPxx predicate (0-7).
    Cmp,
    /// Shift count (mostly in range).
    Shift,
}

#[derive(Clone, Copy)]
struct T {
    fam: &'static str,
    /// Mandatory prefix (0x66/0xf2/0xf3) or 0.
    pre: u8,
    /// Opcode byte after 0x0f.
    op: u8,
    reg: RegF,
    rm: RmF,
    imm: ImmF,
    /// REX.W chosen at random (GPR-size forms).
    w: bool,
}

const fn t(fam: &'static str, pre: u8, op: u8, reg: RegF, rm: RmF, imm: ImmF, w: bool) -> T {
    T {
        fam,
        pre,
        op,
        reg,
        rm,
        imm,
        w,
    }
}

fn templates() -> Vec<T> {
    use ImmF as I;
    use RegF as R;
    use RmF as M;
    let mut v = vec![
        // Moves.
        t("mov", 0x66, 0x6e, R::X, M::GM, I::No, true),
        t("mov", 0x66, 0x7e, R::X, M::GM, I::No, true),
        t("mov", 0xf3, 0x7e, R::X, M::XM, I::No, false),
        t("mov", 0x66, 0xd6, R::X, M::XM, I::No, false),
        t("mov", 0x66, 0x6f, R::X, M::XM, I::No, false),
        t("mov", 0xf3, 0x6f, R::X, M::XM, I::No, false),
        t("mov", 0x66, 0x7f, R::X, M::XM, I::No, false),
        t("mov", 0xf3, 0x7f, R::X, M::XM, I::No, false),
        t("mov", 0, 0x28, R::X, M::XM, I::No, false),
        t("mov", 0, 0x29, R::X, M::XM, I::No, false),
        t("mov", 0, 0x10, R::X, M::XM, I::No, false),
        t("mov", 0, 0x11, R::X, M::XM, I::No, false),
        t("mov", 0x66, 0x28, R::X, M::XM, I::No, false),
        t("mov", 0x66, 0x29, R::X, M::XM, I::No, false),
        t("mov", 0x66, 0x10, R::X, M::XM, I::No, false),
        t("mov", 0x66, 0x11, R::X, M::XM, I::No, false),
        t("mov", 0xf3, 0x10, R::X, M::XM, I::No, false),
        t("mov", 0xf3, 0x11, R::X, M::XM, I::No, false),
        t("mov", 0xf2, 0x10, R::X, M::XM, I::No, false),
        t("mov", 0xf2, 0x11, R::X, M::XM, I::No, false),
        t("movlh", 0, 0x12, R::X, M::XM, I::No, false),
        t("movlh", 0, 0x13, R::X, M::M, I::No, false),
        t("movlh", 0, 0x16, R::X, M::XM, I::No, false),
        t("movlh", 0, 0x17, R::X, M::M, I::No, false),
        t("movlh", 0x66, 0x12, R::X, M::M, I::No, false),
        t("movlh", 0x66, 0x13, R::X, M::M, I::No, false),
        t("movlh", 0x66, 0x16, R::X, M::M, I::No, false),
        t("movlh", 0x66, 0x17, R::X, M::M, I::No, false),
        t("movnt", 0x66, 0xe7, R::X, M::M, I::No, false),
        t("movnt", 0, 0x2b, R::X, M::M, I::No, false),
        t("movnt", 0x66, 0x2b, R::X, M::M, I::No, false),
        t("movnt", 0, 0xc3, R::G, M::M, I::No, true),
        // MXCSR.
        t("mxcsr", 0, 0xae, R::D(2), M::M, I::No, false),
        t("mxcsr", 0, 0xae, R::D(3), M::M, I::No, false),
        // Moves of masks and words.
        t("movmsk/pextrw", 0x66, 0xd7, R::G, M::X, I::No, true),
        t("movmsk/pextrw", 0, 0x50, R::G, M::X, I::No, true),
        t("movmsk/pextrw", 0x66, 0x50, R::G, M::X, I::No, true),
        t("movmsk/pextrw", 0x66, 0xc5, R::G, M::X, I::Any, true),
        t("movmsk/pextrw", 0x66, 0xc4, R::X, M::GM, I::Any, false),
        // Shuffles.
        t("shuffle", 0x66, 0x70, R::X, M::XM, I::Any, false),
        t("shuffle", 0xf3, 0x70, R::X, M::XM, I::Any, false),
        t("shuffle", 0xf2, 0x70, R::X, M::XM, I::Any, false),
        t("shuffle", 0, 0xc6, R::X, M::XM, I::Any, false),
        t("shuffle", 0x66, 0xc6, R::X, M::XM, I::Any, false),
        // Shifts by immediate.
        t("shift", 0x66, 0x73, R::D(7), M::X, I::Shift, false),
        t("shift", 0x66, 0x73, R::D(3), M::X, I::Shift, false),
        t("shift", 0x66, 0x73, R::D(6), M::X, I::Shift, false),
        t("shift", 0x66, 0x73, R::D(2), M::X, I::Shift, false),
        t("shift", 0x66, 0x71, R::D(6), M::X, I::Shift, false),
        t("shift", 0x66, 0x71, R::D(2), M::X, I::Shift, false),
        t("shift", 0x66, 0x71, R::D(4), M::X, I::Shift, false),
        t("shift", 0x66, 0x72, R::D(6), M::X, I::Shift, false),
        t("shift", 0x66, 0x72, R::D(2), M::X, I::Shift, false),
        t("shift", 0x66, 0x72, R::D(4), M::X, I::Shift, false),
        // Scalar/packed compares setting RFLAGS.
        t("comis", 0, 0x2e, R::X, M::XM, I::No, false),
        t("comis", 0x66, 0x2e, R::X, M::XM, I::No, false),
        t("comis", 0, 0x2f, R::X, M::XM, I::No, false),
        t("comis", 0x66, 0x2f, R::X, M::XM, I::No, false),
        // Conversions.
        t("cvt", 0xf2, 0x2a, R::X, M::GM, I::No, true),
        t("cvt", 0xf3, 0x2a, R::X, M::GM, I::No, true),
        t("cvt", 0xf2, 0x2d, R::G, M::XM, I::No, true),
        t("cvt", 0xf2, 0x2c, R::G, M::XM, I::No, true),
        t("cvt", 0xf3, 0x2d, R::G, M::XM, I::No, true),
        t("cvt", 0xf3, 0x2c, R::G, M::XM, I::No, true),
        t("cvt", 0xf2, 0x5a, R::X, M::XM, I::No, false),
        t("cvt", 0xf3, 0x5a, R::X, M::XM, I::No, false),
        t("cvt", 0, 0x5b, R::X, M::XM, I::No, false),
        t("cvt", 0x66, 0x5b, R::X, M::XM, I::No, false),
        t("cvt", 0xf3, 0x5b, R::X, M::XM, I::No, false),
        t("cvt", 0xf3, 0xe6, R::X, M::XM, I::No, false),
        t("cvt", 0xf2, 0xe6, R::X, M::XM, I::No, false),
        t("cvt", 0x66, 0xe6, R::X, M::XM, I::No, false),
        t("cvt", 0, 0x5a, R::X, M::XM, I::No, false),
        t("cvt", 0x66, 0x5a, R::X, M::XM, I::No, false),
    ];
    // Logic.
    for (pre, op) in [
        (0x66, 0xef),
        (0x66, 0xeb),
        (0x66, 0xdb),
        (0x66, 0xdf),
        (0, 0x57),
        (0x66, 0x57),
        (0, 0x54),
        (0x66, 0x54),
        (0, 0x55),
        (0x66, 0x55),
        (0, 0x56),
        (0x66, 0x56),
    ] {
        v.push(t("logic", pre, op, R::X, M::XM, I::No, false));
    }
    // Integer SIMD (66 0F xx /r).
    for op in [
        0x74, 0x75, 0x76, 0x64, 0x65, 0x66, 0xda, 0xde, 0xea, 0xee, 0xfc, 0xfd, 0xfe, 0xd4, 0xf8,
        0xf9, 0xfa, 0xfb, 0xdc, 0xdd, 0xd8, 0xd9, 0xec, 0xed, 0xe8, 0xe9, 0xe0, 0xe3, 0xf6, 0xd5,
        0xe5, 0xe4, 0xf4, 0xf5,
    ] {
        v.push(t("int-simd", 0x66, op, R::X, M::XM, I::No, false));
    }
    // Shifts by XMM/m128.
    for op in [0xf1, 0xf2, 0xf3, 0xd1, 0xd2, 0xd3, 0xe1, 0xe2] {
        v.push(t("shift", 0x66, op, R::X, M::XM, I::No, false));
    }
    // Unpacks and packs.
    for op in [0x60, 0x61, 0x62, 0x6c, 0x68, 0x69, 0x6a, 0x6d, 0x14, 0x15] {
        v.push(t("unpack/pack", 0x66, op, R::X, M::XM, I::No, false));
    }
    for op in [0x14, 0x15] {
        v.push(t("unpack/pack", 0, op, R::X, M::XM, I::No, false));
    }
    for op in [0x67, 0x63, 0x6b] {
        v.push(t("unpack/pack", 0x66, op, R::X, M::XM, I::No, false));
    }
    // Float arithmetic in all four flavours.
    for op in [0x58, 0x5c, 0x59, 0x5e, 0x51, 0x5d, 0x5f] {
        for pre in [0, 0x66, 0xf3, 0xf2] {
            v.push(t("float", pre, op, R::X, M::XM, I::No, false));
        }
    }
    for pre in [0, 0x66, 0xf3, 0xf2] {
        v.push(t("cmp", pre, 0xc2, R::X, M::XM, I::Cmp, false));
    }
    v
}

#[derive(Clone)]
struct Case {
    family: &'static str,
    code: Vec<u8>,
    state: State,
}

/// Pick a GPR number other than RSP and RBX.
fn gpr(rng: &mut Rng) -> u8 {
    loop {
        let r = rng.below(16) as u8;
        if r != 3 && r != 4 {
            return r;
        }
    }
}

/// Encode one instance of `tp`; returns the data offset its memory operand uses.
fn encode(tp: &T, rng: &mut Rng, code: &mut Vec<u8>) -> Option<usize> {
    let mut rex = 0u8;
    let w = tp.w && rng.chance(2);
    if w {
        rex |= 8;
    }
    let reg = match tp.reg {
        RegF::X => rng.below(16) as u8,
        RegF::G => gpr(rng),
        RegF::D(d) => d,
    };
    if reg >= 8 {
        rex |= 4;
    }
    let memform = match tp.rm {
        RmF::M => true,
        RmF::X => false,
        _ => rng.chance(3),
    };
    let mut modrm = Vec::new();
    let mut off = None;
    if memform {
        // [rbx + disp]: mostly 16-byte aligned, sometimes not (#GP for the aligned
        // forms), disp8 or disp32.
        let mut d = (rng.below(60) as i64 - 30) * 16;
        if rng.chance(8) {
            d += 1 + rng.below(15) as i64;
        }
        let d = d.clamp(-512, 512 - 16);
        off = Some((512 + d) as usize);
        if (-128..128).contains(&d) && rng.chance(2) {
            modrm.push(0x40 | ((reg & 7) << 3) | 3);
            modrm.push(d as i8 as u8);
        } else {
            modrm.push(0x80 | ((reg & 7) << 3) | 3);
            modrm.extend_from_slice(&(d as i32).to_le_bytes());
        }
    } else {
        let r = match tp.rm {
            RmF::GM => gpr(rng),
            _ => rng.below(16) as u8,
        };
        if r >= 8 {
            rex |= 1;
        }
        modrm.push(0xc0 | ((reg & 7) << 3) | (r & 7));
    }
    if tp.pre != 0 {
        code.push(tp.pre);
    }
    if rex != 0 || rng.chance(4) {
        code.push(0x40 | rex);
    }
    code.extend_from_slice(&[0x0f, tp.op]);
    code.extend_from_slice(&modrm);
    match tp.imm {
        ImmF::No => {}
        ImmF::Any => code.push(rng.next() as u8),
        ImmF::Cmp => code.push(if rng.chance(8) {
            rng.next() as u8 & 0x1f
        } else {
            rng.below(8) as u8
        }),
        ImmF::Shift => code.push(rng.pick(&[0u8, 1, 3, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 200])),
    }
    off
}

fn random_state(rng: &mut Rng, data_addr: u64) -> State {
    let mut regs = [0u64; NREGS];
    for r in regs.iter_mut() {
        *r = if rng.chance(2) {
            rng.int_bits()
        } else {
            rng.lane64()
        };
    }
    regs[cpu::RBX] = data_addr + 512;
    regs[cpu::RSP] = 0;
    let mut rflags = cpu::RFLAGS_FIXED;
    for f in [cpu::CF, cpu::PF, cpu::AF, cpu::ZF, cpu::SF, cpu::OF] {
        if rng.chance(2) {
            rflags |= f;
        }
    }
    let mut xmm = [0u128; 16];
    for x in xmm.iter_mut() {
        *x = rng.xmm();
    }
    let mut data = vec![0u8; DATA_SIZE];
    for k in 0..DATA_SIZE / 8 {
        data[8 * k..8 * k + 8].copy_from_slice(&rng.lane64().to_le_bytes());
    }
    State {
        regs,
        rflags,
        mxcsr: rng.mxcsr(),
        xmm,
        data,
    }
}

fn sse_case(pick: &[&T], rng: &mut Rng, data_addr: u64, family: &'static str) -> Case {
    let mut state = random_state(rng, data_addr);
    let mut code = Vec::new();
    for tp in pick {
        let off = encode(tp, rng, &mut code);
        // LDMXCSR: a loadable value (masks set); single cases sometimes a reserved bit.
        if let (RegF::D(2), Some(o)) = (tp.reg, off)
            && tp.op == 0xae
            && o + 4 <= DATA_SIZE
        {
            let mut v = rng.mxcsr();
            if pick.len() == 1 && rng.chance(3) {
                // Not bit 17: AMD's MXCSR_MASK allows it (misaligned-SSE mode).
                v |= 1 << rng.pick(&[16u32, 18, 20, 24, 31]);
            }
            state.data[o..o + 4].copy_from_slice(&v.to_le_bytes());
        }
    }
    Case {
        family,
        code,
        state,
    }
}

// x87 sequences ---------------------------------------------------------------------------

/// Memory slots used by the x87 cases (offsets into the data area, [rbx + off - 512]).
const X87_IN: usize = 0; // 0..256: operands
const X87_OUT: usize = 768; // 768..1024: results

fn x87_modrm(code: &mut Vec<u8>, op: &[u8], digit: u8, off: usize) {
    code.extend_from_slice(op);
    code.push(0x80 | (digit << 3) | 3);
    code.extend_from_slice(&((off as i32) - 512).to_le_bytes());
}

/// FXSAVE (or FXSAVE64) to [rbx + d], then zero FOP/FIP/FDP (bytes 6..24), which the
/// interpreter does not track.
fn fxsave_at(code: &mut Vec<u8>, rng: &mut Rng, d: i32) {
    if rng.chance(2) {
        code.push(0x48);
    }
    code.extend_from_slice(&[0x0f, 0xae, 0x83]);
    code.extend_from_slice(&d.to_le_bytes());
    if d % 16 != 0 {
        return;
    }
    code.extend_from_slice(&[0x66, 0xc7, 0x83]); // mov word [rbx + d + 6], 0
    code.extend_from_slice(&(d + 6).to_le_bytes());
    code.extend_from_slice(&[0, 0]);
    for o in [8, 16] {
        code.extend_from_slice(&[0x48, 0xc7, 0x83]); // mov qword [rbx + d + o], 0
        code.extend_from_slice(&(d + o).to_le_bytes());
        code.extend_from_slice(&[0, 0, 0, 0]);
    }
    // MXCSR_MASK is host-specific (AMD adds bit 17, its misaligned-SSE mode).
    code.extend_from_slice(&[0xc7, 0x83]); // mov dword [rbx + d + 28], 0
    code.extend_from_slice(&(d + 28).to_le_bytes());
    code.extend_from_slice(&[0, 0, 0, 0]);
}

/// FNINIT and clear all eight physical registers (the native child's x87 state is
/// shared between cases; FXSAVE stores empty registers' stale contents too).
fn x87_reset(code: &mut Vec<u8>) {
    code.extend_from_slice(&[0xdb, 0xe3]);
    for _ in 0..8 {
        code.extend_from_slice(&[0xd9, 0xee]); // fldz
    }
    for _ in 0..8 {
        code.extend_from_slice(&[0xdd, 0xd8]); // fstp st(0)
    }
}

/// FXSAVE, clobber XMM registers and MXCSR, FXRSTOR (sometimes of a patched image),
/// FXSAVE again: the registers and both images are compared.
fn fxsave_case(rng: &mut Rng, data_addr: u64) -> Case {
    let state = random_state(rng, data_addr);
    let mut code = Vec::new();
    x87_reset(&mut code);
    let d = if rng.chance(8) { -512 + 8 } else { -512 };
    fxsave_at(&mut code, rng, d);
    for _ in 0..3 {
        let r = rng.below(16) as u8;
        code.extend_from_slice(&[0x66, 0x40 | if r >= 8 { 5 } else { 0 }, 0x0f, 0xef]);
        code.push(0xc0 | ((r & 7) << 3) | (r & 7)); // pxor xmmR, xmmR
    }
    if rng.chance(3) {
        // Patch the saved MXCSR (sometimes with a reserved bit: #GP).
        let mut v = rng.mxcsr();
        if rng.chance(3) {
            v |= 1 << 20;
        }
        code.extend_from_slice(&[0xc7, 0x83]);
        code.extend_from_slice(&(d + 24).to_le_bytes());
        code.extend_from_slice(&v.to_le_bytes());
    }
    if rng.chance(2) {
        code.push(0x48);
    }
    code.extend_from_slice(&[0x0f, 0xae, 0x8b]); // fxrstor [rbx + d]
    code.extend_from_slice(&d.to_le_bytes());
    fxsave_at(&mut code, rng, 0);
    Case {
        family: "fxsave/fxrstor",
        code,
        state,
    }
}

fn x87_case(rng: &mut Rng, data_addr: u64) -> Case {
    let mut state = random_state(rng, data_addr);
    let mut code = Vec::new();
    x87_reset(&mut code);
    // Control word: all exceptions masked, random precision and rounding control.
    let cw: u16 =
        0x037f & !(3 << 8) | (rng.pick(&[3u16, 3, 2, 0]) << 8) | ((rng.below(4) as u16) << 10);
    let cw = if rng.chance(3) { 0x037f } else { cw };
    state.data[X87_IN..X87_IN + 2].copy_from_slice(&cw.to_le_bytes());
    x87_modrm(&mut code, &[0xd9], 5, X87_IN); // fldcw
    // Operands: f32, f64, 80-bit, integers.
    for k in 0..16 {
        let o = X87_IN + 16 + 16 * k;
        let v: u128 = match k % 4 {
            0 => rng.f32_bits() as u128,
            1 => rng.f64_bits() as u128,
            2 => {
                // 80-bit: from an f64 pattern widened, or random with the J bit.
                let mant = rng.next() | (1 << 63);
                let exp = rng.pick(&[
                    0x3fffu128, 0x4000, 0x3ffe, 0x403e, 0x401e, 0x0001, 0x7ffe, 0x3c00,
                ]);
                let exp = if rng.chance(8) { 0 } else { exp };
                let mant = if exp == 0 { mant >> 1 } else { mant };
                ((rng.below(2) as u128) << 79) | (exp << 64) | mant as u128
            }
            _ => rng.int_bits() as u128,
        };
        state.data[o..o + 10].copy_from_slice(&v.to_le_bytes()[..10]);
    }
    let mut depth = 0usize;
    let load = |rng: &mut Rng, code: &mut Vec<u8>| {
        let k = rng.below(16) as usize;
        let o = X87_IN + 16 + 16 * k;
        match (k % 4, rng.below(3)) {
            (0, _) => x87_modrm(code, &[0xd9], 0, o), // fld m32
            (1, _) => x87_modrm(code, &[0xdd], 0, o), // fld m64
            (2, _) => x87_modrm(code, &[0xdb], 5, o), // fld m80
            (_, 0) => x87_modrm(code, &[0xdf], 0, o), // fild m16
            (_, 1) => x87_modrm(code, &[0xdb], 0, o), // fild m32
            _ => x87_modrm(code, &[0xdf], 5, o),      // fild m64
        }
    };
    let n = 1 + rng.below(3) as usize;
    for _ in 0..n {
        if rng.chance(5) {
            code.extend_from_slice(&[0xd9, rng.pick(&[0xe8u8, 0xee, 0xeb])]); // fld1/fldz/fldpi
        } else {
            load(rng, &mut code);
        }
        depth += 1;
    }
    let ops = rng.below(4) as usize;
    for _ in 0..ops {
        let sel = rng.below(11);
        match sel {
            0..=3 if depth >= 2 => {
                // fadd/fmul/fsub/fsubr/fdiv/fdivr st(0), st(i) or st(i), st(0), or the P form.
                let op = rng.below(8) as u8;
                let op = if op == 2 || op == 3 { 0 } else { op }; // not fcom/fcomp
                let i = 1 + rng.below(depth as u64 - 1) as u8;
                match rng.below(3) {
                    0 => code.extend_from_slice(&[0xd8, 0xc0 | (op << 3) | i]),
                    1 => code.extend_from_slice(&[0xdc, 0xc0 | (op << 3) | i]),
                    _ => {
                        code.extend_from_slice(&[0xde, 0xc0 | (op << 3) | i]);
                        depth -= 1;
                    }
                }
            }
            4 | 5 => {
                // Arithmetic with a memory operand (m32/m64 float, m16/m32 int).
                let op = rng.pick(&[0u8, 1, 4, 5, 6, 7]);
                let k = rng.below(16) as usize;
                let o = X87_IN + 16 + 16 * k;
                let opc = match k % 4 {
                    0 => 0xd8,
                    1 => 0xdc,
                    3 => rng.pick(&[0xdau8, 0xde]),
                    _ => 0xdc,
                };
                x87_modrm(&mut code, &[opc], op, if k % 4 == 2 { o - 16 } else { o });
                if depth == 0 {
                    depth = 0;
                }
            }
            6 if depth >= 2 => {
                // fcomi/fucomi/fxch/fcom/fucom with st(1).
                let b = rng.pick(&[0xdbu8, 0xdb, 0xd9, 0xd8, 0xdd]);
                let m = match b {
                    0xdb => rng.pick(&[0xf0u8, 0xe8]),
                    0xd9 => 0xc8,
                    0xd8 => 0xd0,
                    _ => 0xe0,
                } | 1;
                code.extend_from_slice(&[b, m]);
            }
            7 => code.extend_from_slice(&[0xd9, rng.pick(&[0xe0u8, 0xe1, 0xe4, 0xe5, 0xfa, 0xfc])]), // fchs/fabs/ftst/fxam/fsqrt
            8 => {
                let o = X87_IN + 16 + 16 * (rng.below(4) as usize * 4 + rng.pick(&[0usize, 1]));
                let opc = if ((o - X87_IN - 16) / 16).is_multiple_of(4) {
                    0xd8
                } else {
                    0xdc
                };
                x87_modrm(&mut code, &[opc], rng.pick(&[2u8, 3]), o); // fcom/fcomp m
                if code[code.len() - 5] & 0x38 == 0x18 {
                    depth -= 1;
                }
            }
            9 => {
                // Register moves: fld/fst/fstp/fxch/fcmovcc/ffree with st(i).
                let i = rng.below(depth as u64) as u8;
                match rng.below(6) {
                    0 if depth < 8 => {
                        code.extend_from_slice(&[0xd9, 0xc0 | i]);
                        depth += 1;
                    }
                    1 => code.extend_from_slice(&[0xdd, 0xd0 | i]),
                    2 => code.extend_from_slice(&[0xd9, 0xc8 | i]),
                    3 => code.extend_from_slice(&[
                        rng.pick(&[0xdau8, 0xdb]),
                        0xc0 | ((rng.below(4) as u8) << 3) | i,
                    ]),
                    4 if i > 0 => {
                        code.extend_from_slice(&[0xdd, 0xd8 | i]);
                        depth -= 1;
                    }
                    _ => code.extend_from_slice(&[0xd9, 0xe1]),
                }
            }
            _ => {}
        }
        if depth == 0 {
            break;
        }
    }
    // Sometimes an FXSAVE image of the live stack (tags, TOP, ST order), or an
    // FNSAVE image (full tag word; it reinitialises the FPU) restored by FRSTOR.
    match rng.below(4) {
        0 | 1 => fxsave_at(&mut code, rng, 256 - 512),
        2 => {
            x87_modrm(&mut code, &[0xdd], 6, 256); // fnsave [rbx-256]
            for o in [12, 20] {
                code.extend_from_slice(&[0x48, 0xc7, 0x83]); // zero FIP..FDS
                code.extend_from_slice(&(o - 256i32).to_le_bytes());
                code.extend_from_slice(&[0, 0, 0, 0]);
            }
            code.extend_from_slice(&[0xdf, 0xe0]); // fnstsw ax: after FNINIT
            x87_modrm(&mut code, &[0xdd], 4, 256); // frstor [rbx-256]
        }
        _ => {}
    }
    // Store: status word, then pop everything in a random format.
    x87_modrm(&mut code, &[0xdd], 7, X87_OUT); // fnstsw m16
    code.extend_from_slice(&[0xdf, 0xe0]); // fnstsw ax
    for k in 0..depth {
        let o = X87_OUT + 16 + 16 * k;
        match rng.below(6) {
            0 => x87_modrm(&mut code, &[0xd9], 3, o), // fstp m32
            1 => x87_modrm(&mut code, &[0xdd], 3, o), // fstp m64
            2 => x87_modrm(&mut code, &[0xdf], 3, o), // fistp m16
            3 => x87_modrm(&mut code, &[0xdb], 3, o), // fistp m32
            4 => x87_modrm(&mut code, &[0xdf], 7, o), // fistp m64
            _ => x87_modrm(&mut code, &[0xdb], 7, o), // fstp m80
        }
    }
    x87_modrm(&mut code, &[0xdd], 7, X87_OUT + 8); // fnstsw m16 (after the pops)
    x87_modrm(&mut code, &[0xd9], 7, X87_OUT + 12); // fnstcw
    Case {
        family: "x87",
        code,
        state,
    }
}

fn compare(case: &Case, native: &Outcome, interp: &Outcome) -> Result<(), String> {
    let show = || {
        let mut d = iced_x86::Decoder::new(64, &case.code, iced_x86::DecoderOptions::NONE);
        let text: Vec<String> = d.iter().map(|i| format!("{:?}", i.code())).collect();
        let regs = if std::env::var_os("EMU_DIFF_VERBOSE").is_some() {
            let slots: Vec<String> = (0..17)
                .map(|k| {
                    let o = 16 * k;
                    let mut b = [0u8; 16];
                    b[..10].copy_from_slice(&case.state.data[o..o + 10]);
                    format!("{:#x}@{}", u128::from_le_bytes(b), o as i64 - 512)
                })
                .collect();
            format!(
                " xmm {:x?} gpr {:x?} x87-slots {slots:?}",
                case.state.xmm, case.state.regs
            )
        } else {
            String::new()
        };
        format!(
            "code {:02x?} [{}] mxcsr {:#x}{regs}",
            case.code,
            text.join("; "),
            case.state.mxcsr
        )
    };
    let (n, i) = match (native, interp) {
        (Outcome::Fault(a), Outcome::Fault(b)) if a == b => return Ok(()),
        (Outcome::Done(n), Outcome::Done(i)) => (n, i),
        (a, b) => {
            let s = |o: &Outcome| match o {
                Outcome::Done(_) => "completed".to_string(),
                Outcome::Fault(f) => f.to_string(),
            };
            return Err(format!(
                "outcome: native {} interp {}; {}",
                s(a),
                s(b),
                show()
            ));
        }
    };
    for r in 0..NREGS {
        if r != cpu::RSP && n.regs[r] != i.regs[r] {
            return Err(format!(
                "GPR{r}: native {:#x} interp {:#x}; {}",
                n.regs[r],
                i.regs[r],
                show()
            ));
        }
    }
    let m = cpu::STATUS | cpu::DF;
    if n.rflags & m != i.rflags & m {
        return Err(format!(
            "flags: native {:#x} interp {:#x}; {}",
            n.rflags & m,
            i.rflags & m,
            show()
        ));
    }
    if n.mxcsr != i.mxcsr {
        return Err(format!(
            "mxcsr: native {:#x} interp {:#x}; {}",
            n.mxcsr,
            i.mxcsr,
            show()
        ));
    }
    for k in 0..16 {
        if n.xmm[k] != i.xmm[k] {
            return Err(format!(
                "xmm{k}: native {:#034x} interp {:#034x}; {}",
                n.xmm[k],
                i.xmm[k],
                show()
            ));
        }
    }
    if n.data != i.data {
        let k = (0..DATA_SIZE)
            .find(|&k| n.data[k] != i.data[k])
            .unwrap_or(0);
        let a = k & !7;
        return Err(format!(
            "data[{k}]: native {:02x?} interp {:02x?}; {}",
            &n.data[a..a + 16],
            &i.data[a..a + 16],
            show()
        ));
    }
    Ok(())
}

#[test]
fn sse_x87_differential_against_host_cpu() {
    let seed = std::env::var("EMU_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x55e2_d1ff_0bad_cafeu64);
    let per_template: usize = std::env::var("EMU_DIFF_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let mut rng = Rng(seed | 1);
    let all = templates();
    let n_seq = per_template * 50;
    let n_x87 = per_template * 30;
    let n_fx = per_template * 3;
    let native = Native::new(all.len() * per_template + n_seq + n_x87 + n_fx);
    let data_addr = native.data_addr();
    let mut cases = Vec::new();
    for tp in &all {
        for _ in 0..per_template {
            cases.push(sse_case(&[tp], &mut rng, data_addr, tp.fam));
        }
    }
    for _ in 0..n_seq {
        let len = 2 + rng.below(4) as usize;
        let pick: Vec<&T> = (0..len)
            .map(|_| &all[rng.below(all.len() as u64) as usize])
            .collect();
        cases.push(sse_case(&pick, &mut rng, data_addr, "sequence(2-5)"));
    }
    for _ in 0..n_x87 {
        cases.push(x87_case(&mut rng, data_addr));
    }
    for _ in 0..n_fx {
        cases.push(fxsave_case(&mut rng, data_addr));
    }
    let started = std::time::Instant::now();
    let outcomes = native.run(&cases);
    let native_time = started.elapsed();

    #[derive(Default)]
    struct Stats {
        matched: usize,
        faults: usize,
        failed: usize,
    }
    let mut stats: BTreeMap<&str, Stats> = BTreeMap::new();
    let mut failures = Vec::new();
    for (k, case) in cases.iter().enumerate() {
        let res = interpret(case, native.slot_addr(k), data_addr);
        let s = stats.entry(case.family).or_default();
        match compare(case, &outcomes[k], &res) {
            Ok(()) => {
                s.matched += 1;
                if matches!(outcomes[k], Outcome::Fault(_)) {
                    s.faults += 1;
                }
            }
            Err(e) => {
                s.failed += 1;
                if s.failed <= 4 {
                    failures.push(format!("[{}] {e}", case.family));
                }
            }
        }
    }
    eprintln!(
        "differential_sse: {} cases, native run {:?}, seed {seed:#x}",
        cases.len(),
        native_time
    );
    eprintln!(
        "{:<16} {:>8} {:>16} {:>7}",
        "family", "matched", "(of which fault)", "FAILED"
    );
    for (fam, s) in &stats {
        eprintln!(
            "{fam:<16} {:>8} {:>16} {:>7}",
            s.matched, s.faults, s.failed
        );
    }
    for f in &failures {
        eprintln!("{f}");
    }
    assert!(
        failures.is_empty(),
        "{} mismatches against the host CPU",
        stats.values().map(|s| s.failed).sum::<usize>()
    );
}
