//! Differential test of the integer core against the host CPU.
//!
//! Generated cases (one instruction, or a sequence of 2-4) run natively in a forked child
//! process — a faulting case kills only the child and is reported as its signal — and
//! in the interpreter from the same registers, flags and data page. All GPRs but RSP,
//! the architecturally defined status flags, DF and the 1 KiB data area must match;
//! a native SIGFPE/SIGSEGV/SIGILL must be #DE/a memory fault/#UD in the interpreter.
//!
//! Harness rules: the test code never names RSP (the native stack) or RBX (the data
//! pointer every memory operand is based on); PUSH/POP/CALL/RET are covered by the
//! hand-written tests in `handwritten.rs`. Undefined flags come from iced's per-
//! instruction tables, refined with the actual shift count (OF is defined only for a
//! count of 1; CF after SHL/SHR by at least the operand width is undefined; a zero count
//! changes nothing). A case that reads an undefined flag or leaves an undefined
//! destination (BSF/BSR of 0, 16-bit SHLD/SHRD beyond 16) is counted as skipped.
//!
//! Seed: `EMU_DIFF_SEED` (default fixed); cases per template: `EMU_DIFF_CASES`.

#![allow(clippy::needless_range_loop)]

use hypervisor_emu::cpu::{self, Cpu};
use hypervisor_emu::exec::{self, Exception};
use hypervisor_emu::mem::{Fault, FlatMemory, Memory};
use iced_x86::{Mnemonic, OpKind, Register, RflagsBits};
use std::collections::BTreeMap;

const DATA_SIZE: usize = 1024;
const SLOT: usize = 96;
const NREGS: usize = 16;
/// State block: 16 GPRs, RFLAGS, call target.
const STATE_WORDS: usize = 18;
const OUT_WORDS: usize = 17;

// ---------------------------------------------------------------------------------------
// Native execution.

core::arch::global_asm!(
    ".globl emu_diff_native_run",
    "emu_diff_native_run:",
    "push rbx",
    "push rbp",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "push rdi",
    "push qword ptr [rdi + 136]",
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
    "add rsp, 16",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbp",
    "pop rbx",
    "cld",
    "ret",
);

unsafe extern "sysv64" {
    fn emu_diff_native_run(state: *mut u64);
}

#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Done {
        regs: [u64; NREGS],
        rflags: u64,
        data: Vec<u8>,
    },
    /// #DE, #UD or a memory fault.
    Fault(&'static str),
}

fn exc_name(e: Exception) -> &'static str {
    match e {
        Exception::DivideError => "#DE",
        Exception::InvalidOpcode => "#UD",
        Exception::GeneralProtection(_) => "#GP",
        Exception::Unbacked(_) => "memfault",
        _ => "other",
    }
}

fn sig_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGFPE => "#DE",
        libc::SIGILL => "#UD",
        libc::SIGSEGV | libc::SIGBUS => "memfault",
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
        // Below 4 GiB so 32-bit-addressed string instructions (0x67) reach it.
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
        let out_bytes = 8 + n * (OUT_WORDS * 8 + DATA_SIZE);
        let shared = Mapping::new(
            out_bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
        );
        let progress = shared.ptr as *mut u64;
        let out = |k: usize| -> *mut u8 {
            // SAFETY: inside the shared mapping.
            unsafe { shared.ptr.add(8 + k * (OUT_WORDS * 8 + DATA_SIZE)) }
        };
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
                    let mut state = [0u64; STATE_WORDS];
                    for k in start..n {
                        *progress = k as u64;
                        let c = &cases[k];
                        std::ptr::copy_nonoverlapping(c.data.as_ptr(), self.data.ptr, DATA_SIZE);
                        state[..NREGS].copy_from_slice(&c.regs);
                        state[16] = c.rflags;
                        state[17] = self.slot_addr(k);
                        emu_diff_native_run(state.as_mut_ptr());
                        let o = out(k);
                        std::ptr::copy_nonoverlapping(
                            state.as_ptr() as *const u8,
                            o,
                            OUT_WORDS * 8,
                        );
                        std::ptr::copy_nonoverlapping(
                            self.data.ptr,
                            o.add(OUT_WORDS * 8),
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
            // SAFETY: the child is gone; the shared page is ours.
            let reached = if libc::WIFEXITED(status) {
                n
            } else {
                unsafe { *progress as usize }
            };
            for k in start..reached {
                let mut regs = [0u64; NREGS];
                let mut data = vec![0u8; DATA_SIZE];
                // SAFETY: written by the child for case k.
                unsafe {
                    let o = out(k);
                    std::ptr::copy_nonoverlapping(o, regs.as_mut_ptr() as *mut u8, NREGS * 8);
                    let rflags = (o.add(128) as *const u64).read_unaligned();
                    std::ptr::copy_nonoverlapping(
                        o.add(OUT_WORDS * 8),
                        data.as_mut_ptr(),
                        DATA_SIZE,
                    );
                    results[k] = Some(Outcome::Done { regs, rflags, data });
                }
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

fn iced_to_rflags(b: u32) -> u64 {
    let mut f = 0;
    for (i, r) in [
        (RflagsBits::OF, cpu::OF),
        (RflagsBits::SF, cpu::SF),
        (RflagsBits::ZF, cpu::ZF),
        (RflagsBits::AF, cpu::AF),
        (RflagsBits::CF, cpu::CF),
        (RflagsBits::PF, cpu::PF),
        (RflagsBits::DF, cpu::DF),
    ] {
        if b & i != 0 {
            f |= r;
        }
    }
    f
}

fn gpr_value(c: &Cpu, r: Register) -> u64 {
    let full = r.full_register();
    let idx = full as usize - Register::RAX as usize;
    let v = c.gpr[idx.min(15)];
    if matches!(r, Register::AH | Register::CH | Register::DH | Register::BH) {
        v >> 8
    } else {
        v
    }
}

/// (flags modified, flags left undefined, destination undefined) for `i` about to run
/// on state `c`.
fn flag_effects(i: &iced_x86::Instruction, c: &Cpu) -> (u64, u64, bool) {
    let modified = iced_to_rflags(i.rflags_modified());
    let mut undef = iced_to_rflags(i.rflags_undefined());
    let m = i.mnemonic();
    let shifts = [
        Mnemonic::Shl,
        Mnemonic::Sal,
        Mnemonic::Shr,
        Mnemonic::Sar,
        Mnemonic::Rol,
        Mnemonic::Ror,
        Mnemonic::Rcl,
        Mnemonic::Rcr,
    ];
    let double = matches!(m, Mnemonic::Shld | Mnemonic::Shrd);
    if shifts.contains(&m) || double {
        let size = match i.op0_kind() {
            OpKind::Register => i.op0_register().size(),
            _ => i.memory_size().size(),
        };
        let cop = if double { 2 } else { 1 };
        let raw = match i.op_kind(cop) {
            OpKind::Register => gpr_value(c, i.op_register(cop)),
            _ => i.immediate(cop),
        };
        let count = raw & if size == 8 { 63 } else { 31 };
        if count == 0 {
            return (0, 0, false);
        }
        undef &= !cpu::OF;
        if count != 1 {
            undef |= cpu::OF;
        }
        if matches!(m, Mnemonic::Shl | Mnemonic::Sal | Mnemonic::Shr) && count >= (size * 8) as u64
        {
            undef |= cpu::CF;
        }
        if double && count > (size * 8) as u64 {
            return (modified, undef, true);
        }
    }
    (modified, undef, false)
}

struct InterpResult {
    outcome: Outcome,
    undefined: u64,
    tainted: bool,
}

fn interpret(case: &Case, code_addr: u64, data_addr: u64) -> InterpResult {
    let mut code = FlatMemory::new(code_addr, case.code.len() + 1);
    code.data[..case.code.len()].copy_from_slice(&case.code);
    code.data[case.code.len()] = 0xc3;
    let mut data = FlatMemory::new(data_addr, DATA_SIZE);
    data.data.copy_from_slice(&case.data);
    let mut mem = CaseMem { code, data };
    let mut c = Cpu::new();
    c.gpr = case.regs;
    c.rflags = case.rflags;
    c.rip = code_addr;
    let end = code_addr + case.code.len() as u64;
    let mut undefined = 0u64;
    let mut tainted = false;
    for _ in 0..64 {
        if c.rip == end {
            return InterpResult {
                outcome: Outcome::Done {
                    regs: c.gpr,
                    rflags: c.rflags,
                    data: mem.data.data,
                },
                undefined,
                tainted,
            };
        }
        let i = match exec::decode_at(&mut c, &mut mem) {
            Ok(i) => i,
            Err(e) => {
                return InterpResult {
                    outcome: Outcome::Fault(exc_name(e)),
                    undefined,
                    tainted,
                };
            }
        };
        if iced_to_rflags(i.rflags_read()) & undefined != 0 {
            tainted = true;
        }
        let (modified, undef, dest_undef) = flag_effects(&i, &c);
        if let Err(e) = exec::execute(&mut c, &mut mem, &i) {
            return InterpResult {
                outcome: Outcome::Fault(exc_name(e)),
                undefined,
                tainted,
            };
        }
        if matches!(i.mnemonic(), Mnemonic::Bsf | Mnemonic::Bsr) && c.flag(cpu::ZF) {
            tainted |= true; // destination undefined for a zero source
        }
        tainted |= dest_undef;
        undefined = (undefined & !modified) | undef;
    }
    InterpResult {
        outcome: Outcome::Fault("runaway"),
        undefined,
        tainted,
    }
}

// ---------------------------------------------------------------------------------------
// Case generation.

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
    fn value(&mut self) -> u64 {
        const EDGES: [u64; 20] = [
            0,
            1,
            2,
            u64::MAX,
            0x7f,
            0x80,
            0xff,
            0x7fff,
            0x8000,
            0xffff,
            0x7fff_ffff,
            0x8000_0000,
            0xffff_ffff,
            0x7fff_ffff_ffff_ffff,
            0x8000_0000_0000_0000,
            0x1_0000_0000,
            0xffff_ffff_ffff_fffe,
            0x8000_0000_0000_0001,
            0x0000_0001_ffff_ffff,
            0xffff_ffff_8000_0000,
        ];
        match self.below(4) {
            0 => EDGES[self.below(EDGES.len() as u64) as usize],
            1 => self.below(70),
            2 => EDGES[self.below(EDGES.len() as u64) as usize] ^ (1 << self.below(64)),
            _ => self.next(),
        }
    }
    fn imm8(&mut self) -> u8 {
        const E: [u8; 14] = [0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 63, 0x7f, 0x80];
        if self.chance(2) {
            E[self.below(E.len() as u64) as usize]
        } else {
            self.next() as u8
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Imm {
    No,
    B,
    /// iw/id by operand size.
    Z,
    /// iw/id/io by operand size (MOV r, imm).
    V,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// ModRM with a register operand in the reg field (ext None) or a /digit.
    ModRm(Option<u8>),
    /// No ModRM: accumulator forms, CBW/CWD, flag operations.
    Plain,
    /// Register in the low 3 opcode bits.
    RegInOp,
    /// Short/near branch skipping a 3-byte `inc r10`.
    Branch { rel32: bool, addr32_ok: bool },
    /// String instruction (RSI/RDI/RCX set up by the generator).
    Str,
}

#[derive(Clone, Copy)]
struct T {
    fam: &'static str,
    op: &'static [u8],
    kind: Kind,
    imm: Imm,
    /// Operand sizes allowed: bit 0 = 8, 1 = 16, 2 = 32, 3 = 64. Zero: no size prefix.
    sizes: u8,
    mem: bool,
    reg: bool,
    bitoff: bool,
}

const S8: u8 = 1;
const SW: u8 = 2 | 4 | 8;

fn t(fam: &'static str, op: &'static [u8], kind: Kind, imm: Imm, sizes: u8) -> T {
    let modrm = matches!(kind, Kind::ModRm(_));
    T {
        fam,
        op,
        kind,
        imm,
        sizes,
        mem: modrm,
        reg: modrm,
        bitoff: false,
    }
}

fn templates() -> Vec<T> {
    use Imm::*;
    use Kind::*;
    let mut v = Vec::new();
    // ALU: the six classic forms per operation, plus the 80/81/83 groups.
    const ALU_OPS: [[u8; 6]; 8] = {
        let mut a = [[0u8; 6]; 8];
        let mut k = 0;
        while k < 8 {
            let b = (k * 8) as u8;
            a[k] = [b, b + 1, b + 2, b + 3, b + 4, b + 5];
            k += 1;
        }
        a
    };
    static ALU_BYTES: [[[u8; 1]; 6]; 8] = {
        let mut a = [[[0u8; 1]; 6]; 8];
        let mut k = 0;
        while k < 8 {
            let mut j = 0;
            while j < 6 {
                a[k][j] = [ALU_OPS[k][j]];
                j += 1;
            }
            k += 1;
        }
        a
    };
    for k in 0..8 {
        let o = &ALU_BYTES[k];
        v.push(t("alu", &o[0], ModRm(Option::None), No, S8));
        v.push(t("alu", &o[1], ModRm(Option::None), No, SW));
        v.push(t("alu", &o[2], ModRm(Option::None), No, S8));
        v.push(t("alu", &o[3], ModRm(Option::None), No, SW));
        v.push(t("alu", &o[4], Plain, B, S8));
        v.push(t("alu", &o[5], Plain, Z, SW));
        v.push(t("alu", &[0x80], ModRm(Some(k as u8)), B, S8));
        v.push(t("alu", &[0x81], ModRm(Some(k as u8)), Z, SW));
        v.push(t("alu", &[0x83], ModRm(Some(k as u8)), B, SW));
    }
    v.push(t("alu", &[0x84], ModRm(Option::None), No, S8));
    v.push(t("alu", &[0x85], ModRm(Option::None), No, SW));
    v.push(t("alu", &[0xa8], Plain, B, S8));
    v.push(t("alu", &[0xa9], Plain, Z, SW));
    v.push(t("alu", &[0xf6], ModRm(Some(0)), B, S8));
    v.push(t("alu", &[0xf7], ModRm(Some(0)), Z, SW));
    for d in 0..4u8 {
        v.push(t("incdec/neg/not", &[0xfe], ModRm(Some(d & 1)), No, S8));
        v.push(t("incdec/neg/not", &[0xff], ModRm(Some(d & 1)), No, SW));
        v.push(t(
            "incdec/neg/not",
            &[0xf6],
            ModRm(Some(2 + (d & 1))),
            No,
            S8,
        ));
        v.push(t(
            "incdec/neg/not",
            &[0xf7],
            ModRm(Some(2 + (d & 1))),
            No,
            SW,
        ));
    }
    for d in 0..8u8 {
        let fam = if d < 4 { "rotate" } else { "shift" };
        v.push(t(fam, &[0xd0], ModRm(Some(d)), No, S8));
        v.push(t(fam, &[0xd1], ModRm(Some(d)), No, SW));
        v.push(t(fam, &[0xd2], ModRm(Some(d)), No, S8));
        v.push(t(fam, &[0xd3], ModRm(Some(d)), No, SW));
        v.push(t(fam, &[0xc0], ModRm(Some(d)), B, S8));
        v.push(t(fam, &[0xc1], ModRm(Some(d)), B, SW));
    }
    for op in [&[0x0f, 0xa4], &[0x0f, 0xac]] {
        v.push(t("shld/shrd", op, ModRm(Option::None), B, SW));
    }
    for op in [&[0x0f, 0xa5], &[0x0f, 0xad]] {
        v.push(t("shld/shrd", op, ModRm(Option::None), No, SW));
    }
    for d in 4..8u8 {
        v.push(t("muldiv", &[0xf6], ModRm(Some(d)), No, S8));
        v.push(t("muldiv", &[0xf7], ModRm(Some(d)), No, SW));
    }
    v.push(t("muldiv", &[0x0f, 0xaf], ModRm(Option::None), No, SW));
    v.push(t("muldiv", &[0x69], ModRm(Option::None), Z, SW));
    v.push(t("muldiv", &[0x6b], ModRm(Option::None), B, SW));
    for op in [&[0x0f, 0xa3], &[0x0f, 0xab], &[0x0f, 0xb3], &[0x0f, 0xbb]] {
        let mut x = t("bt", op, ModRm(Option::None), No, SW);
        x.bitoff = true;
        v.push(x);
    }
    for d in 4..8u8 {
        v.push(t("bt", &[0x0f, 0xba], ModRm(Some(d)), B, SW));
    }
    v.push(t("bsf/bsr", &[0x0f, 0xbc], ModRm(Option::None), No, SW));
    v.push(t("bsf/bsr", &[0x0f, 0xbd], ModRm(Option::None), No, SW));
    v.push(t("mov", &[0x88], ModRm(Option::None), No, S8));
    v.push(t("mov", &[0x89], ModRm(Option::None), No, SW));
    v.push(t("mov", &[0x8a], ModRm(Option::None), No, S8));
    v.push(t("mov", &[0x8b], ModRm(Option::None), No, SW));
    v.push(t("mov", &[0xc6], ModRm(Some(0)), B, S8));
    v.push(t("mov", &[0xc7], ModRm(Some(0)), Z, SW));
    v.push(t("mov", &[0xb0], RegInOp, B, S8));
    v.push(t("mov", &[0xb8], RegInOp, V, SW));
    v.push(t("movzx/movsx", &[0x0f, 0xb6], ModRm(Option::None), No, SW));
    v.push(t("movzx/movsx", &[0x0f, 0xb7], ModRm(Option::None), No, SW));
    v.push(t("movzx/movsx", &[0x0f, 0xbe], ModRm(Option::None), No, SW));
    v.push(t("movzx/movsx", &[0x0f, 0xbf], ModRm(Option::None), No, SW));
    v.push(t("movzx/movsx", &[0x63], ModRm(Option::None), No, SW));
    let mut lea = t("lea", &[0x8d], ModRm(Option::None), No, SW);
    lea.reg = false;
    v.push(lea);
    v.push(t("xchg/cmpxchg/xadd", &[0x86], ModRm(Option::None), No, S8));
    v.push(t("xchg/cmpxchg/xadd", &[0x87], ModRm(Option::None), No, SW));
    v.push(t("xchg/cmpxchg/xadd", &[0x90], RegInOp, No, SW));
    v.push(t(
        "xchg/cmpxchg/xadd",
        &[0x0f, 0xb0],
        ModRm(Option::None),
        No,
        S8,
    ));
    v.push(t(
        "xchg/cmpxchg/xadd",
        &[0x0f, 0xb1],
        ModRm(Option::None),
        No,
        SW,
    ));
    v.push(t(
        "xchg/cmpxchg/xadd",
        &[0x0f, 0xc0],
        ModRm(Option::None),
        No,
        S8,
    ));
    v.push(t(
        "xchg/cmpxchg/xadd",
        &[0x0f, 0xc1],
        ModRm(Option::None),
        No,
        SW,
    ));
    v.push(t("bswap", &[0x0f, 0xc8], RegInOp, No, 4 | 8));
    static SETCC: [[u8; 2]; 16] = {
        let mut a = [[0u8; 2]; 16];
        let mut k = 0;
        while k < 16 {
            a[k] = [0x0f, 0x90 + k as u8];
            k += 1;
        }
        a
    };
    static CMOV: [[u8; 2]; 16] = {
        let mut a = [[0u8; 2]; 16];
        let mut k = 0;
        while k < 16 {
            a[k] = [0x0f, 0x40 + k as u8];
            k += 1;
        }
        a
    };
    static JCC8: [[u8; 1]; 16] = {
        let mut a = [[0u8; 1]; 16];
        let mut k = 0;
        while k < 16 {
            a[k] = [0x70 + k as u8];
            k += 1;
        }
        a
    };
    static JCC32: [[u8; 2]; 16] = {
        let mut a = [[0u8; 2]; 16];
        let mut k = 0;
        while k < 16 {
            a[k] = [0x0f, 0x80 + k as u8];
            k += 1;
        }
        a
    };
    for k in 0..16 {
        v.push(t("setcc", &SETCC[k], ModRm(Some(0)), No, S8));
        v.push(t("cmovcc", &CMOV[k], ModRm(Option::None), No, SW));
        v.push(t(
            "jcc",
            &JCC8[k],
            Branch {
                rel32: false,
                addr32_ok: false,
            },
            No,
            0,
        ));
        v.push(t(
            "jcc",
            &JCC32[k],
            Branch {
                rel32: true,
                addr32_ok: false,
            },
            No,
            0,
        ));
    }
    v.push(t(
        "jmp/loop/jrcxz",
        &[0xeb],
        Branch {
            rel32: false,
            addr32_ok: false,
        },
        No,
        0,
    ));
    v.push(t(
        "jmp/loop/jrcxz",
        &[0xe9],
        Branch {
            rel32: true,
            addr32_ok: false,
        },
        No,
        0,
    ));
    for op in [&[0xe0], &[0xe1], &[0xe2], &[0xe3]] {
        v.push(t(
            "jmp/loop/jrcxz",
            op,
            Branch {
                rel32: false,
                addr32_ok: true,
            },
            No,
            0,
        ));
    }
    v.push(t("convert", &[0x98], Plain, No, SW));
    v.push(t("convert", &[0x99], Plain, No, SW));
    for op in [&[0xf8], &[0xf9], &[0xf5], &[0xfc], &[0xfd]] {
        v.push(t("flagops", op, Plain, No, 0));
    }
    for op in [&[0xa4], &[0xaa], &[0xac], &[0xae], &[0xa6]] {
        v.push(t("string", op, Str, No, S8));
    }
    for op in [&[0xa5], &[0xab], &[0xad], &[0xaf], &[0xa7]] {
        v.push(t("string", op, Str, No, SW));
    }
    v
}

#[derive(Clone)]
struct Case {
    family: &'static str,
    code: Vec<u8>,
    regs: [u64; NREGS],
    rflags: u64,
    data: Vec<u8>,
}

/// Encode one instance of `tp` into `code`, adjusting registers it needs.
fn encode(
    tp: &T,
    rng: &mut Rng,
    regs: &mut [u64; NREGS],
    code: &mut Vec<u8>,
    data_addr: u64,
    single: bool,
) {
    let size = {
        let choices: Vec<u8> = (0..4).filter(|b| tp.sizes & (1 << b) != 0).collect();
        if choices.is_empty() {
            0
        } else {
            choices[rng.below(choices.len() as u64) as usize]
        }
    };
    let mut rex = 0u8;
    let mut want_rex = rng.chance(3);
    if size == 1 {
        code.push(0x66);
    }
    if size == 3 {
        rex |= 0x08;
        want_rex = true;
    }
    let imm_bytes = match (tp.imm, size) {
        (Imm::No, _) => 0,
        (Imm::B, _) => 1,
        (Imm::Z, 1) | (Imm::V, 1) => 2,
        (Imm::Z, _) => 4,
        (Imm::V, 3) => 8,
        (Imm::V, _) => 4,
    };
    match tp.kind {
        Kind::ModRm(ext) => {
            let reg = match ext {
                Some(d) => d,
                None => {
                    let r = rng.below(16) as u8;
                    if r >= 8 {
                        rex |= 0x04;
                    }
                    r & 7
                }
            };
            let memform = tp.mem && (!tp.reg || rng.chance(3));
            // Memory forms: [rbx], [rbx+disp8], [rbx+disp32], via SIB with no index,
            // and (single instructions only) with a small index register or 0x67
            // addressing ([ebx+...], RBX's upper half ignored). Sometimes LOCK, which
            // must be #UD on anything but a lockable read-modify-write.
            let mut bytes = Vec::new();
            if memform {
                if rng.chance(8) {
                    code.push(0xf0);
                }
                let form = rng.below(if single { 6 } else { 4 });
                let disp: Vec<u8> = match rng.below(3) {
                    0 => vec![],
                    1 => vec![rng.next() as u8],
                    _ => ((rng.below(256) as i32 - 128).to_le_bytes()).to_vec(),
                };
                let md = match disp.len() {
                    0 => 0x00,
                    1 => 0x40,
                    _ => 0x80,
                };
                match form {
                    0 | 1 => bytes.push(md | (reg << 3) | 3),
                    2 | 3 | 4 if !(form == 4 && tp.bitoff) => {
                        let index = if form == 4 {
                            let mut x = rng.below(16) as usize;
                            while x == cpu::RSP || x == cpu::RBX {
                                x = rng.below(16) as usize;
                            }
                            regs[x] = rng.below(16);
                            if x >= 8 {
                                rex |= 0x02;
                            }
                            (x & 7) as u8
                        } else {
                            4
                        };
                        bytes.push(md | (reg << 3) | 4);
                        bytes.push(((rng.below(4) as u8) << 6) | (index << 3) | 3);
                    }
                    _ => {
                        code.push(0x67);
                        regs[cpu::RBX] = (data_addr + 512) | (rng.next() & 0xffff_ffff_0000_0000);
                        bytes.push(md | (reg << 3) | 3);
                    }
                }
                bytes.extend_from_slice(&disp);
            } else {
                let r = rng.below(16) as u8;
                if r >= 8 {
                    rex |= 0x01;
                }
                bytes.push(0xc0 | (reg << 3) | (r & 7));
            }
            if tp.bitoff && memform {
                let full = (reg + if rex & 0x04 != 0 { 8 } else { 0 }) as usize;
                regs[full] = (rng.below(600) as i64 - 300) as u64;
            }
            if rex != 0 || want_rex {
                code.push(0x40 | rex);
            }
            code.extend_from_slice(tp.op);
            code.extend_from_slice(&bytes);
        }
        Kind::Plain => {
            if rex != 0 || want_rex {
                code.push(0x40 | rex);
            }
            code.extend_from_slice(tp.op);
        }
        Kind::RegInOp => {
            let r = rng.below(16) as u8;
            if r >= 8 {
                rex |= 0x01;
            }
            if rex != 0 || want_rex {
                code.push(0x40 | rex);
            }
            let (last, head) = tp.op.split_last().expect("opcode");
            code.extend_from_slice(head);
            code.push(last + (r & 7));
        }
        Kind::Branch { rel32, addr32_ok } => {
            if addr32_ok && rng.chance(3) {
                code.push(0x67);
            }
            code.extend_from_slice(tp.op);
            if rel32 {
                code.extend_from_slice(&3i32.to_le_bytes());
            } else {
                code.push(3);
            }
            code.extend_from_slice(&[0x49, 0xff, 0xc2]); // inc r10
            regs[1] = if rng.chance(2) {
                rng.below(3)
            } else {
                rng.value()
            };
            return;
        }
        Kind::Str => {
            let addr32 = rng.chance(4);
            let mut pre = Vec::new();
            if addr32 {
                pre.push(0x67);
            }
            match rng.below(3) {
                0 => pre.push(0xf3),
                1 => pre.push(0xf2),
                _ => {}
            }
            // prefixes before the 66 already pushed are fine in any order
            let at = code.len() - usize::from(size == 1);
            for (k, b) in pre.into_iter().enumerate() {
                code.insert(at + k, b);
            }
            if rex != 0 || want_rex {
                code.push(0x40 | rex);
            }
            code.extend_from_slice(tp.op);
            let hi = |rng: &mut Rng| {
                if addr32 {
                    rng.next() & 0xffff_ffff_0000_0000
                } else {
                    0
                }
            };
            regs[6] = hi(rng) | (data_addr + 256 + rng.below(64));
            regs[7] = hi(rng) | (data_addr + 640 + rng.below(64));
            regs[1] = hi(rng) | rng.below(9);
            return;
        }
    }
    for _ in 0..imm_bytes {
        code.push(rng.imm8());
    }
}

/// The decoded instructions must not name RSP or RBX (other than RBX as the base).
fn acceptable(code: &[u8], ip: u64) -> bool {
    let mut d = iced_x86::Decoder::with_ip(64, code, ip, iced_x86::DecoderOptions::NONE);
    while d.can_decode() {
        let i = d.decode();
        if i.is_invalid() {
            return false;
        }
        for n in 0..i.op_count() {
            if i.op_kind(n) == OpKind::Register {
                let f = i.op_register(n).full_register();
                if f == Register::RSP || f == Register::RBX {
                    return false;
                }
            }
        }
        let has_mem = (0..i.op_count()).any(|n| i.op_kind(n) == OpKind::Memory);
        let base_ok = matches!(i.memory_base(), Register::RBX | Register::EBX);
        let index = i.memory_index();
        let index_ok = index == Register::None
            || !matches!(index.full_register(), Register::RSP | Register::RBX);
        if has_mem && !(base_ok && index_ok) {
            return false;
        }
    }
    true
}

fn random_case(templates: &[&T], rng: &mut Rng, data_addr: u64, family: &'static str) -> Case {
    loop {
        let mut regs = [0u64; NREGS];
        for r in regs.iter_mut() {
            *r = rng.value();
        }
        regs[cpu::RBX] = data_addr + 512;
        regs[cpu::RSP] = 0;
        let mut code = Vec::new();
        for tp in templates {
            encode(
                tp,
                rng,
                &mut regs,
                &mut code,
                data_addr,
                templates.len() == 1,
            );
        }
        if !acceptable(&code, 0) {
            continue;
        }
        let mut rflags = cpu::RFLAGS_FIXED;
        for f in [cpu::CF, cpu::PF, cpu::AF, cpu::ZF, cpu::SF, cpu::OF] {
            if rng.chance(2) {
                rflags |= f;
            }
        }
        if rng.chance(4) {
            rflags |= cpu::DF;
        }
        let low_entropy = rng.chance(2);
        let data = (0..DATA_SIZE)
            .map(|_| {
                if low_entropy {
                    (rng.below(2) as u8).wrapping_neg() & 0x81
                } else {
                    rng.next() as u8
                }
            })
            .collect();
        return Case {
            family,
            code,
            regs,
            rflags,
            data,
        };
    }
}

fn compare(case: &Case, native: &Outcome, interp: &InterpResult) -> Result<(), String> {
    let show = || {
        format!(
            "code {:02x?} regs {:x?} rflags {:#x}",
            case.code, case.regs, case.rflags
        )
    };
    match (native, &interp.outcome) {
        (Outcome::Fault(a), Outcome::Fault(b)) if a == b => Ok(()),
        (
            Outcome::Done {
                regs: nr,
                rflags: nf,
                data: nd,
            },
            Outcome::Done {
                regs: ir,
                rflags: iflags,
                data: id,
            },
        ) => {
            for r in 0..NREGS {
                if r != cpu::RSP && nr[r] != ir[r] {
                    return Err(format!(
                        "GPR{r}: native {:#x} interp {:#x}; {}",
                        nr[r],
                        ir[r],
                        show()
                    ));
                }
            }
            let m = (cpu::STATUS & !interp.undefined) | cpu::DF;
            if nf & m != iflags & m {
                return Err(format!(
                    "flags (mask {m:#x}): native {:#x} interp {:#x}; {}",
                    nf & m,
                    iflags & m,
                    show()
                ));
            }
            if nd != id {
                let k = (0..DATA_SIZE).find(|&k| nd[k] != id[k]).unwrap_or(0);
                return Err(format!(
                    "data[{k}]: native {:#x} interp {:#x}; {}",
                    nd[k],
                    id[k],
                    show()
                ));
            }
            Ok(())
        }
        (a, b) => Err(format!(
            "outcome: native {:?} interp {:?}; {}",
            short(a),
            short(b),
            show()
        )),
    }
}

fn short(o: &Outcome) -> String {
    match o {
        Outcome::Done { .. } => "completed".into(),
        Outcome::Fault(f) => f.to_string(),
    }
}

#[test]
fn differential_against_host_cpu() {
    let seed = std::env::var("EMU_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_c0de_1234_5678u64);
    let per_template: usize = std::env::var("EMU_DIFF_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let mut rng = Rng(seed | 1);
    let all = templates();
    let mut cases = Vec::new();
    let seq_ok: Vec<&T> = all
        .iter()
        .filter(|t| !matches!(t.kind, Kind::Str) && !t.bitoff)
        .collect();
    let n_single = all.len() * per_template;
    let n_seq = 3000;
    let native = Native::new(n_single + n_seq);
    let data_addr = native.data_addr();
    for tp in &all {
        for _ in 0..per_template {
            cases.push(random_case(&[tp], &mut rng, data_addr, tp.fam));
        }
    }
    for _ in 0..n_seq {
        let len = 2 + rng.below(3) as usize;
        let pick: Vec<&T> = (0..len)
            .map(|_| seq_ok[rng.below(seq_ok.len() as u64) as usize])
            .collect();
        cases.push(random_case(&pick, &mut rng, data_addr, "sequence(2-4)"));
    }
    let started = std::time::Instant::now();
    let outcomes = native.run(&cases);
    let native_time = started.elapsed();

    #[derive(Default)]
    struct Stats {
        compared: usize,
        faults: usize,
        skipped: usize,
        failed: usize,
    }
    let mut stats: BTreeMap<&str, Stats> = BTreeMap::new();
    let mut failures = Vec::new();
    for (k, case) in cases.iter().enumerate() {
        let res = interpret(case, native.slot_addr(k), data_addr);
        let s = stats.entry(case.family).or_default();
        if res.tainted && !matches!(res.outcome, Outcome::Fault(_)) {
            s.skipped += 1;
            continue;
        }
        match compare(case, &outcomes[k], &res) {
            Ok(()) => {
                s.compared += 1;
                if matches!(outcomes[k], Outcome::Fault(_)) {
                    s.faults += 1;
                }
            }
            Err(e) => {
                s.failed += 1;
                if failures.len() < 25 {
                    failures.push(format!("[{}] {e}", case.family));
                }
            }
        }
    }
    eprintln!(
        "differential: {} cases, native run {:?}, seed {seed:#x}",
        cases.len(),
        native_time
    );
    eprintln!(
        "{:<20} {:>8} {:>14} {:>8} {:>7}",
        "family", "matched", "(of which #DE/fault)", "skipped", "FAILED"
    );
    for (fam, s) in &stats {
        eprintln!(
            "{fam:<20} {:>8} {:>14} {:>8} {:>7}",
            s.compared, s.faults, s.skipped, s.failed
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
    let matched: usize = stats.values().map(|s| s.compared).sum();
    assert!(matched > cases.len() * 9 / 10, "too many skipped cases");
}
