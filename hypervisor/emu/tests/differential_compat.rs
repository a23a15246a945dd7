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

#[test]
fn bcd_instructions_match_the_host_in_compatibility_mode() {
    let dlen = OPS.len() * N as usize * 8;
    let code_p = map(
        0x4000,
        libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
        libc::MAP_PRIVATE | libc::MAP_32BIT,
    );
    let stack_p = map(
        0x4000,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_32BIT,
    );
    let data_p = map(
        dlen + 16,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_SHARED | libc::MAP_32BIT,
    );
    let (code, stack, data) = (code_p as u64, stack_p as u64, data_p as u64);
    let saved_rsp = data + dlen as u64;
    let entry32 = code + 0x100;
    let body_bytes = {
        let mut a = CodeAssembler::new(32).unwrap();
        body(&mut a, data as u32).unwrap();
        a.assemble(entry32).unwrap()
    };
    let exit64 = entry32 + body_bytes.len() as u64 + 32;
    let native32 = {
        let mut a = CodeAssembler::new(32).unwrap();
        // 64-bit Linux leaves DS/ES null, which compatibility mode cannot use.
        a.mov(ax, ss).unwrap();
        a.mov(ds, ax).unwrap();
        a.mov(es, ax).unwrap();
        body(&mut a, data as u32).unwrap();
        a.push(0x33).unwrap();
        a.push(exit64 as i32).unwrap();
        a.retf().unwrap();
        a.assemble(entry32).unwrap()
    };
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
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waiting for our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        eprintln!("compat: no 32-bit code segment on this host (status {status:#x}); skipped");
        return;
    }
    // SAFETY: the shared data mapping, written by the child.
    let native: Vec<u8> = unsafe { std::slice::from_raw_parts(data_p, dlen) }.to_vec();

    let mut bus = Mem {
        code_base: entry32,
        code: {
            let mut a = CodeAssembler::new(32).unwrap();
            body(&mut a, data as u32).unwrap();
            a.hlt().unwrap();
            a.assemble(entry32).unwrap()
        },
        data_base: data,
        data: vec![0; dlen],
        stack_base: stack,
        stack: vec![0; 0x4000],
    };
    let mut c = Cpu::pvh_entry(entry32, 0);
    c.gpr[4] = stack + 0x3000;
    let mut v = EmuVcpu::new(c);
    let e = v.run(&mut bus, 10_000_000);
    assert_eq!(
        e,
        RunExit::Halted {
            interrupts_enabled: false
        },
        "{}",
        v.summary()
    );
    let mut bad = 0;
    for (k, (name, defined)) in OPS.iter().enumerate() {
        for n in 0..N as usize {
            let o = (k * N as usize + n) * 8;
            let rd = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
            let (nax, nfl) = (rd(&native, o) & 0xffff, rd(&native, o + 4) as u64 & defined);
            let (iax, ifl) = (
                rd(&bus.data, o) & 0xffff,
                rd(&bus.data, o + 4) as u64 & defined,
            );
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
