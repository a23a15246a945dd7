//! The interpreter must never panic, whatever the bytes: decode and execute random byte
//! strings (biased towards the prefixes and opcodes it implements) against flat memory,
//! in 64-bit, 32-bit protected and 16-bit real mode; and run random bytes through the
//! whole vCPU (exception delivery through random descriptor tables) in each mode.
//! More iterations: `EMU_NOPANIC_ITERS` (run it in a debug build too: overflow checks).

mod common;

use common::TestBus;
use hypervisor_emu::cpu::{CS, Cpu, FS, Segment, Table};

use hypervisor_emu::exec::step;
use hypervisor_emu::mem::FlatMemory;
use hypervisor_emu::{EmuVcpu, RunExit};

const BASE: u64 = 0x10000;
const SIZE: usize = 0x10000;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

const INTERESTING: [u8; 40] = [
    0x66, 0x67, 0xf2, 0xf3, 0xf0, 0x48, 0x4f, 0x40, 0x64, 0x65, 0x0f, 0xf6, 0xf7, 0xd3, 0xc1, 0xa5,
    0xaf, 0xa7, 0x0f, 0xba, 0xbc, 0xc7, 0x8f, 0xff, 0x8e, 0x8c, 0xcf, 0xca, 0xcb, 0xea, 0x9a, 0xcd,
    0x01, 0x00, 0x22, 0x20, 0x6c, 0x6e, 0x17, 0x1f,
];

fn iters() -> u64 {
    std::env::var("EMU_NOPANIC_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000)
}

/// A CPU in mode `m` (0: 64-bit, 1: 32-bit flat protected, 2: real mode at 1000:0).
fn cpu_in(m: u64, rip: u64) -> Cpu {
    match m {
        0 => {
            let mut c = Cpu::new();
            c.rip = rip;
            c
        }
        1 => Cpu::pvh_entry(rip, 0),
        _ => {
            let mut c = Cpu::reset();
            c.seg[CS] = Segment::new(0x1000, 0x10000, 0xffff, 0x9b);
            for s in [0, 2, 3, 4, 5] {
                c.seg[s] = Segment::new(0x1000, 0x10000, 0xffff, 0x93);
            }
            c.rip = rip - 0x10000;
            c
        }
    }
}

fn randomize(cpu: &mut Cpu, r: &mut Rng) {
    for (k, g) in cpu.gpr.iter_mut().enumerate() {
        let v = r.next();
        *g = match v % 4 {
            0 => BASE + (v >> 8) % SIZE as u64,
            1 => v % 64,
            2 => [0, u64::MAX, 1 << 63, 0xffff_ffff][k % 4],
            _ => v,
        };
    }
    cpu.rflags = 2 | (r.next() & 0xcd5);
}

fn fill(buf: &mut [u8], r: &mut Rng) {
    for b in buf.iter_mut() {
        let v = r.next();
        *b = if v.is_multiple_of(3) {
            INTERESTING[(v >> 8) as usize % INTERESTING.len()]
        } else {
            (v >> 16) as u8
        };
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let mut mem = FlatMemory::new(BASE, SIZE);
    let mut executed = [0u64; 3];
    for n in 0..iters() {
        let mode = n % 3;
        let at = (r.next() % (SIZE as u64 - 32)) as usize;
        let mut cpu = cpu_in(mode, BASE + at as u64);
        randomize(&mut cpu, &mut r);
        if mode == 0 {
            cpu.seg[FS].base = r.next() % 3 * BASE;
        }
        fill(&mut mem.data[at..at + 32], &mut r);
        for _ in 0..4 {
            if step(&mut cpu, &mut mem).is_err() {
                break;
            }
            executed[mode as usize] += 1;
        }
    }
    eprintln!("no_panic: {executed:?} instructions (64/32/16-bit) executed without a panic");
    assert!(executed.iter().all(|&e| e > 3_000));
}

#[test]
fn random_bytes_through_the_vcpu_never_panic() {
    let mut r = Rng(0x0123_4567_89ab_cdef);
    let mut bus = TestBus::new(0x4_0000);
    let mut total = 0u64;
    let mut shutdowns = 0u64;
    for n in 0..iters() / 10 {
        let mode = n % 3;
        // Random code, random tables (GDT/IDT/TSS in the same random region).
        let at = BASE + r.next() % (SIZE as u64 - 64);
        fill(&mut bus.ram[at as usize..at as usize + 64], &mut r);
        let mut cpu = cpu_in(mode, at);
        randomize(&mut cpu, &mut r);
        let tbl = BASE + (r.next() % SIZE as u64);
        cpu.gdtr = Table {
            base: tbl,
            limit: (r.next() % 0x400) as u16,
        };
        cpu.idtr = Table {
            base: if mode == 2 {
                0
            } else {
                tbl + (r.next() % 0x800)
            },
            limit: (r.next() % 0x1000) as u16,
        };
        if n % 7 == 0 {
            bus.irq = Some(r.next() as u8);
        }
        // Random fast-system-call MSRs, and sometimes paging over random tables.
        cpu.msr.star = r.next();
        cpu.msr.lstar = r.next() & 0x7fff_ffff_ffff;
        cpu.msr.sysenter_cs = r.next() & 0xffff;
        cpu.efer |= r.next() & 0x801;
        if mode < 2 && n % 3 == 0 {
            cpu.cr3 = BASE + (r.next() % SIZE as u64);
            cpu.cr4 |= r.next() & 0x90;
            if mode == 0 {
                cpu.cr4 |= 0x20;
            }
            cpu.cr0 |= 0x8001_0000;
        }
        let mut v = EmuVcpu::new(cpu);
        let e = v.run(&mut bus, 64);
        total += v.retired();
        if matches!(e, RunExit::Shutdown(_)) {
            shutdowns += 1;
        }
        bus.outs.clear();
        bus.ins.clear();
        bus.mmio.clear();
        bus.hypercalls.clear();
    }
    eprintln!("no_panic vcpu: {total} instructions, {shutdowns} shutdowns");
    assert!(total > 1000);
}
