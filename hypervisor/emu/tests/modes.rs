//! Mode switches as our firmware does them: PVH entry (32-bit flat protected mode) →
//! 4-level paging with 2 MiB pages → long mode → port I/O → the SeaBIOS trampoline
//! (compatibility mode, paging and LME off, 16-bit protected mode, real mode) → the
//! reset vector f000:fff0.

mod common;

use common::*;
use hypervisor_emu::cpu::{CS, Cpu};
use hypervisor_emu::{EmuVcpu, RunExit};
use iced_x86::code_asm::*;

const PT: u64 = 0x10000;

#[test]
fn pvh_to_long_mode_to_real_mode_and_reset_vector() {
    let mut bus = TestBus::new(0x20_0000);
    // GDT at 0x3000 (like fw_gdt): 0x08 code32, 0x10 code64, 0x18 data.
    for (k, d) in [
        0,
        0x00cf9b000000ffffu64,
        0x00af9b000000ffff,
        0x00cf93000000ffff,
    ]
    .iter()
    .enumerate()
    {
        bus.put_u64(0x3000 + 8 * k as u64, *d);
    }
    // GDT pointer at 0x3040: limit, 8-byte base.
    bus.load(0x3040, &31u16.to_le_bytes());
    bus.put_u64(0x3042, 0x3000);

    let entry32 = asm(32, 0x1000, |a| {
        a.cli()?;
        a.cld()?;
        a.mov(esp, 0x8000u32)?;
        a.mov(edi, PT as u32)?;
        a.xor(eax, eax)?;
        a.mov(ecx, 6 * 1024u32)?;
        a.rep().stosd()?;
        a.mov(dword_ptr(PT), (PT + 0x1000 + 3) as u32)?;
        a.mov(eax, (PT + 0x2000 + 3) as u32)?;
        a.mov(edi, (PT + 0x1000) as u32)?;
        a.mov(ecx, 4u32)?;
        let mut l1 = a.create_label();
        a.set_label(&mut l1)?;
        a.mov(dword_ptr(edi), eax)?;
        a.add(eax, 0x1000)?;
        a.add(edi, 8)?;
        a.loop_(l1)?;
        a.mov(eax, 0x83u32)?;
        a.mov(edi, (PT + 0x2000) as u32)?;
        a.mov(ecx, 2048u32)?;
        let mut l2 = a.create_label();
        a.set_label(&mut l2)?;
        a.mov(dword_ptr(edi), eax)?;
        a.add(eax, 0x20_0000)?;
        a.add(edi, 8)?;
        a.loop_(l2)?;
        a.mov(eax, cr4)?;
        a.or(eax, 0x20)?;
        a.mov(cr4, eax)?;
        a.mov(eax, PT as u32)?;
        a.mov(cr3, eax)?;
        a.mov(ecx, 0xc000_0080u32)?;
        a.rdmsr()?;
        a.or(eax, 0x100)?;
        a.wrmsr()?;
        a.lgdt(ptr(0x3040u64))?;
        a.mov(eax, cr0)?;
        a.or(eax, 0x8000_0001u32 as i32)?;
        a.mov(cr0, eax)?;
        a.db(&ljmp32(0x10, 0x2000))
    });
    bus.load(0x1000, &entry32);

    let main64 = asm(64, 0x2000, |a| {
        a.mov(eax, 0x18u32)?;
        a.mov(ds, ax)?;
        a.mov(es, ax)?;
        a.mov(ss, ax)?;
        a.mov(fs, ax)?;
        a.mov(gs, ax)?;
        a.mov(rsp, 0x9000u64)?;
        // RBX (start info) survived the switch: report its low byte.
        a.mov(dx, 0x3f8u32)?;
        a.mov(al, bl)?;
        a.out(dx, al)?;
        a.mov(rax, 0x7000u64)?;
        a.jmp(rax)
    });
    bus.load(0x2000, &main64);

    // The trampoline's GDT at 0x7f00 and pointer at 0x7f40; real-mode IDT pointer 0x7f50.
    for (k, d) in [
        0,
        0x00cf9b000000ffffu64,
        0x00009b000000ffff,
        0x000093000000ffff,
    ]
    .iter()
    .enumerate()
    {
        bus.put_u64(0x7f00 + 8 * k as u64, *d);
    }
    bus.load(0x7f40, &31u16.to_le_bytes());
    bus.put_u64(0x7f42, 0x7f00);
    bus.load(0x7f50, &0x3ffu16.to_le_bytes());
    bus.put_u32(0x7f52, 0);

    let t64 = asm(64, 0x7000, |a| {
        a.cli()?;
        a.lgdt(ptr(0x7f40u64))?;
        a.push(0x08)?;
        a.push(0x7100)?;
        a.db(&[0x48, 0xcb])
    });
    bus.load(0x7000, &t64);
    let c32 = asm(32, 0x7100, |a| {
        a.mov(eax, cr0)?;
        a.and(eax, 0x7fff_ffff)?;
        a.mov(cr0, eax)?;
        a.mov(ecx, 0xc000_0080u32)?;
        a.rdmsr()?;
        a.and(eax, 0xffff_feffu32 as i32)?;
        a.wrmsr()?;
        a.mov(eax, cr4)?;
        a.and(eax, 0xffff_ffdfu32 as i32)?;
        a.mov(cr4, eax)?;
        a.xor(eax, eax)?;
        a.mov(cr3, eax)?;
        a.mov(eax, 0x18u32)?;
        a.mov(ds, ax)?;
        a.mov(es, ax)?;
        a.mov(fs, ax)?;
        a.mov(gs, ax)?;
        a.mov(ss, ax)?;
        a.db(&ljmp32(0x10, 0x7200))
    });
    bus.load(0x7100, &c32);
    let p16 = asm(16, 0x7200, |a| {
        a.mov(eax, cr0)?;
        a.and(eax, 0xffff_fffeu32 as i32)?;
        a.mov(cr0, eax)?;
        a.db(&ljmp16(0, 0x7300))
    });
    bus.load(0x7200, &p16);
    let r16 = asm(16, 0x7300, |a| {
        a.xor(ax, ax)?;
        a.mov(ds, ax)?;
        a.mov(es, ax)?;
        a.mov(fs, ax)?;
        a.mov(gs, ax)?;
        a.mov(ss, ax)?;
        a.mov(sp, 0x7000u32)?;
        a.lidt(ptr(0x7f50u64))?;
        a.db(&ljmp16(0xf000, 0xfff0))
    });
    bus.load(0x7300, &r16);
    // The "BIOS" at f000:fff0: a near call (16-bit stack), a port write, halt.
    let bios = asm(16, 0xfff0, |a| {
        a.call(0xfff8u64)?;
        a.cli()?;
        a.hlt()?;
        a.nop()?;
        a.nop()?;
        a.nop()?;
        a.mov(al, 0x42u32)?;
        a.out(0x80, al)?;
        a.ret()
    });
    bus.load(0xffff0, &bios);

    let mut v = EmuVcpu::new(Cpu::pvh_entry(0x1000, 0x5a));
    let exit = v.run(&mut bus, 100_000);
    assert_eq!(
        exit,
        RunExit::Halted {
            interrupts_enabled: false
        },
        "{}",
        v.summary()
    );
    assert_eq!(bus.outs, vec![(0x3f8, 1, 0x5a), (0x80, 1, 0x42)]);
    let c = &v.cpu;
    assert!(!c.protected() && !c.long_mode());
    assert_eq!(c.seg[CS].selector, 0xf000);
    assert_eq!(c.seg[CS].base, 0xf0000);
    assert_eq!(c.gpr[4] & 0xffff, 0x7000);
    // The page-table walk set Accessed in the PML4 entry.
    assert_ne!(bus.u64_at(PT) & 0x20, 0);
}
