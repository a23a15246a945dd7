//! Debian's kernel (the bzImage's 64-bit entry) on the software CPU with the state our
//! firmware hands over: identity-mapped 4 GiB, 64-bit CS 0x10, DS 0x18, RSI =
//! boot_params, and nothing else (no PIT, APIC, ACPI; the test bus's CPUID). With
//! `earlyprintk=ttyS0` it reports on COM1: with EMU_LINUX_BUDGET=9000000000 (about ten
//! minutes) the decompressor runs, the kernel starts and gets through memory setup and
//! SLUB init ("Poking KASLR using i8254", where it waits on the missing PIT). Ignored:
//! `EMU_LINUX_IMAGE=path cargo test --release -p hypervisor-emu --test
//! linux_decompressor -- --ignored --nocapture`.

mod common;

use common::TestBus;
use hypervisor_emu::cpu::*;
use hypervisor_emu::{EmuVcpu, RunExit};

#[test]
#[ignore]
fn decompressor_runs() {
    let path =
        std::env::var("EMU_LINUX_IMAGE").unwrap_or_else(|_| "/work/main/cache/vmlinuz".into());
    let Ok(img) = std::fs::read(&path) else {
        eprintln!("no kernel image at {path}; skipped");
        return;
    };
    let mut bus = TestBus::new(256 << 20);
    let setup_sects = if img[0x1f1] == 0 {
        4
    } else {
        img[0x1f1] as usize
    };
    let pm = &img[(setup_sects + 1) * 512..];
    let load = 0x100_0000u64;
    bus.load(load, pm);
    // boot_params at 0x10000: the setup header, loader type, command line, e820.
    let bp = 0x10000u64;
    let hdr_end = 0x202 + img[0x201] as usize;
    bus.load(bp + 0x1f1, &img[0x1f1..hdr_end]);
    bus.ram[(bp + 0x210) as usize] = 0xff; // type_of_loader
    let cmdline = b"nokaslr earlyprintk=ttyS0 console=ttyS0\0";
    bus.load(0x20000, cmdline);
    bus.put_u32(bp + 0x228, 0x20000);
    bus.ram[(bp + 0x1e8) as usize] = 2;
    let e820 = |bus: &mut TestBus, k: u64, addr: u64, size: u64, t: u32| {
        let o = bp + 0x2d0 + 20 * k;
        bus.put_u64(o, addr);
        bus.put_u64(o + 8, size);
        bus.put_u32(o + 16, t);
    };
    e820(&mut bus, 0, 0, 0x9f000, 1);
    e820(&mut bus, 1, 0x100000, (256 << 20) - 0x100000, 1);
    // Identity map of 4 GiB with 2 MiB pages at 0x1000 (PML4), 0x2000 (PDPT), 0x3000.. (PDs).
    bus.put_u64(0x1000, 0x2003);
    for k in 0..4u64 {
        bus.put_u64(0x2000 + 8 * k, (0x3000 + 0x1000 * k) | 3);
    }
    for k in 0..2048u64 {
        bus.put_u64(0x3000 + 8 * k, (k << 21) | 0x83);
    }
    // GDT: 0x10 64-bit code, 0x18 data.
    bus.put_u64(0x8010, 0x00af9b000000ffff);
    bus.put_u64(0x8018, 0x00cf93000000ffff);
    let mut c = Cpu::new();
    c.seg = [Segment::new(0x18, 0, u32::MAX, 0x93 | ATTR_DB | ATTR_G); 6];
    c.seg[CS] = Segment::new(0x10, 0, u32::MAX, 0x9b | ATTR_L | ATTR_G);
    c.gdtr = Table {
        base: 0x8000,
        limit: 0x1f,
    };
    c.cr0 = CR0_PE | CR0_ET | CR0_PG | CR0_WP;
    c.cr4 = CR4_PAE;
    c.cr3 = 0x1000;
    c.rip = load + 0x200;
    c.gpr[RSI] = bp;
    c.gpr[RSP] = 0x9000;
    let mut v = EmuVcpu::new(c);
    let t = std::time::Instant::now();
    let mut exit = RunExit::Budget;
    let limit: u64 = std::env::var("EMU_LINUX_BUDGET")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000_000);
    while v.retired() < limit {
        exit = v.run(&mut bus, 10_000_000);
        if !matches!(exit, RunExit::Budget) {
            break;
        }
    }
    let serial: String = bus
        .outs
        .iter()
        .filter(|o| o.0 == 0x3f8)
        .map(|o| o.2 as u8 as char)
        .collect();
    eprintln!(
        "--- COM1 ---\n{serial}\n--- {exit:?} after {} instructions in {:?}\n{}",
        v.retired(),
        t.elapsed(),
        v.summary()
    );
}
