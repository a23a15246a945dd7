//! The interpreter must never panic, whatever the bytes: decode and execute random byte
//! strings (biased towards the prefixes and opcodes it implements) against flat memory.
//! More iterations: `EMU_NOPANIC_ITERS` (run it in a debug build too: overflow checks).

use hypervisor_emu::cpu::Cpu;
use hypervisor_emu::exec::step;
use hypervisor_emu::mem::FlatMemory;

const BASE: u64 = 0x10000;
const SIZE: usize = 0x10000;

#[test]
fn random_bytes_never_panic() {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    const INTERESTING: [u8; 24] = [
        0x66, 0x67, 0xf2, 0xf3, 0xf0, 0x48, 0x4f, 0x40, 0x64, 0x65, 0x0f, 0xf6, 0xf7, 0xd3, 0xc1,
        0xa5, 0xaf, 0xa7, 0x0f, 0xba, 0xbc, 0xc7, 0x8f, 0xff,
    ];
    let mut mem = FlatMemory::new(BASE, SIZE);
    let mut executed = 0u64;
    let iters: u64 = std::env::var("EMU_NOPANIC_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    for _ in 0..iters {
        let mut cpu = Cpu::new();
        for (k, r) in cpu.gpr.iter_mut().enumerate() {
            let v = next();
            *r = match v % 4 {
                0 => BASE + (v >> 8) % SIZE as u64,
                1 => v % 64,
                2 => [0, u64::MAX, 1 << 63, 0xffff_ffff][k % 4],
                _ => v,
            };
        }
        cpu.rflags = 2 | (next() & 0xcd5);
        cpu.seg[hypervisor_emu::cpu::FS].base = next() % 3 * BASE;
        let at = (next() % (SIZE as u64 - 32)) as usize;
        for k in 0..32 {
            let v = next();
            mem.data[at + k] = if v % 3 == 0 {
                INTERESTING[(v >> 8) as usize % INTERESTING.len()]
            } else {
                (v >> 16) as u8
            };
        }
        cpu.rip = BASE + at as u64;
        for _ in 0..4 {
            if step(&mut cpu, &mut mem).is_err() {
                break;
            }
            executed += 1;
        }
    }
    eprintln!("no_panic: {executed} instructions executed without a panic");
    assert!(executed > 10_000);
}
