//! The system side through `EmuVcpu::run` and a test Bus: interrupts and exceptions in
//! each mode, privilege changes, paging faults, double/triple faults, port I/O, the
//! decode cache's invalidation.

mod common;

use common::*;
use hypervisor_emu::cpu::*;
use hypervisor_emu::{EmuVcpu, RunExit};
use iced_x86::code_asm::*;

const GDT: u64 = 0xc000;
const IDT: u64 = 0x6000;
const TSS: u64 = 0x5000;

fn gate32(sel: u16, off: u32, typ: u8, dpl: u8) -> u64 {
    (off as u64 & 0xffff)
        | ((sel as u64) << 16)
        | (((0x80 | (dpl << 5) | typ) as u64) << 40)
        | (((off >> 16) as u64) << 48)
}

fn set_gate64(bus: &mut TestBus, v: u8, sel: u16, off: u64, dpl: u8, ist: u8) {
    let lo = gate32(sel, off as u32, 0xe, dpl) | ((ist as u64) << 32);
    bus.put_u64(IDT + v as u64 * 16, lo);
    bus.put_u64(IDT + v as u64 * 16 + 8, off >> 32);
}

/// 32-bit flat protected mode: GDT 0x08 code0, 0x10 data0, 0x18 code3, 0x20 data3,
/// 0x28 32-bit TSS (ESP0 = 0x9000, SS0 = 0x10); IDT at 0x6000 (empty, 256 entries).
fn pm32(code: &[u8]) -> (TestBus, Cpu) {
    let mut bus = TestBus::new(0x20_0000);
    let gdt = [
        0,
        desc(0, 0xfffff, 0x9b, 0xc),
        desc(0, 0xfffff, 0x93, 0xc),
        desc(0, 0xfffff, 0xfb, 0xc),
        desc(0, 0xfffff, 0xf3, 0xc),
        desc(TSS as u32, 0x67, 0x89, 0),
    ];
    for (k, d) in gdt.iter().enumerate() {
        bus.put_u64(GDT + 8 * k as u64, *d);
    }
    bus.put_u32(TSS + 4, 0x9000);
    bus.put_u32(TSS + 8, 0x10);
    bus.load(0x1000, code);
    let mut c = Cpu::pvh_entry(0x1000, 0);
    c.gdtr = Table {
        base: GDT,
        limit: 0x2f,
    };
    c.idtr = Table {
        base: IDT,
        limit: 0x7ff,
    };
    c.gpr[RSP] = 0x8000;
    (bus, c)
}

fn run(bus: &mut TestBus, c: Cpu, budget: u64) -> (EmuVcpu, RunExit) {
    let mut v = EmuVcpu::new(c);
    let e = v.run(bus, budget);
    (v, e)
}

const HALTED_CLI: RunExit = RunExit::Halted {
    interrupts_enabled: false,
};

#[test]
fn real_mode_external_interrupt_wakes_hlt_and_irets() {
    let mut bus = TestBus::new(0x10_0000);
    // IVT[8] = 0000:2000.
    bus.put_u32(8 * 4, 0x2000);
    let main = asm(16, 0x1000, |a| {
        a.sti()?;
        a.hlt()?;
        a.mov(al, bl)?;
        a.out(0x81, al)?;
        a.cli()?;
        a.hlt()
    });
    bus.load(0x1000, &main);
    let handler = asm(16, 0x2000, |a| {
        a.inc(bx)?;
        a.out(0x20, al)?;
        a.iret()
    });
    bus.load(0x2000, &handler);
    let mut c = Cpu::reset();
    c.seg[CS] = Segment::new(0, 0, 0xffff, 0x9b);
    c.rip = 0x1000;
    c.gpr[RSP] = 0x7000;
    let mut v = EmuVcpu::new(c);
    assert_eq!(
        v.run(&mut bus, 1000),
        RunExit::Halted {
            interrupts_enabled: true
        }
    );
    assert_eq!(v.retired(), 2);
    // Still halted without an interrupt.
    assert_eq!(
        v.run(&mut bus, 1000),
        RunExit::Halted {
            interrupts_enabled: true
        }
    );
    bus.irq = Some(8);
    assert_eq!(v.run(&mut bus, 1000), HALTED_CLI, "{}", v.summary());
    assert_eq!(bus.acks, 1);
    assert_eq!(bus.outs, vec![(0x20, 1, 0), (0x81, 1, 1)]);
    assert_eq!(v.cpu.gpr[RSP], 0x7000);
    // The IRET restored IF (then CLI cleared it).
    assert!(!v.cpu.flag(IF));
}

#[test]
fn protected_mode_int_from_ring3_switches_to_the_tss_stack() {
    let code = asm(32, 0x1000, |a| {
        a.mov(ax, 0x28u32)?;
        a.ltr(ax)?;
        a.push(0x23)?;
        a.push(0x8000)?;
        a.pushfd()?;
        a.push(0x1b)?;
        a.push(0x2000)?;
        a.iretd()
    });
    let (mut bus, c) = pm32(&code);
    let user = asm(32, 0x2000, |a| {
        a.mov(eax, 0x11u32)?;
        a.int(0x80)
    });
    bus.load(0x2000, &user);
    bus.put_u64(IDT + 0x80 * 8, gate32(0x08, 0x3000, 0xe, 3));
    let handler = asm(32, 0x3000, |a| {
        a.mov(eax, dword_ptr(esp + 4))?;
        a.out(0x90, eax)?;
        a.mov(eax, dword_ptr(esp + 16))?;
        a.out(0x91, eax)?;
        a.mov(eax, dword_ptr(esp))?;
        a.out(0x92, eax)?;
        a.hlt()
    });
    bus.load(0x3000, &handler);
    let (v, e) = run(&mut bus, c, 1000);
    assert_eq!(e, HALTED_CLI, "{}", v.summary());
    assert_eq!(
        bus.outs,
        vec![(0x90, 4, 0x1b), (0x91, 4, 0x23), (0x92, 4, 0x2007)]
    );
    assert_eq!(v.cpu.gpr[RSP], 0x9000 - 20);
    assert_eq!(v.cpu.cpl(), 0);
    // A ring-3 INT through a DPL-0 gate is #GP(vector * 8 + 2).
    let (mut bus, c) = pm32(&code);
    bus.load(0x2000, &user);
    bus.put_u64(IDT + 0x80 * 8, gate32(0x08, 0x3000, 0xe, 0));
    bus.put_u64(IDT + 13 * 8, gate32(0x08, 0x3100, 0xe, 0));
    let gp = asm(32, 0x3100, |a| {
        a.pop(eax)?;
        a.out(0x93, eax)?;
        a.hlt()
    });
    bus.load(0x3100, &gp);
    let (v, e) = run(&mut bus, c, 1000);
    assert_eq!(e, HALTED_CLI, "{}", v.summary());
    assert_eq!(bus.outs, vec![(0x93, 4, 0x80 * 8 + 2)]);
}

#[test]
fn long_mode_ist_stack_and_frame() {
    let mut bus = TestBus::new(0x20_0000);
    let gdt = [
        0,
        0x00af9b000000ffffu64,
        0x00cf93000000ffff,
        0,
        0,
        desc(TSS as u32, 0x67, 0x89, 0),
        0,
    ];
    for (k, d) in gdt.iter().enumerate() {
        bus.put_u64(GDT + 8 * k as u64, *d);
    }
    bus.put_u64(TSS + 0x24, 0xa008); // IST1 (not 16-byte aligned: the CPU aligns)
    set_gate64(&mut bus, 3, 0x08, 0x3000, 3, 1);
    let code = asm(64, 0x1000, |a| {
        a.mov(ax, 0x28u32)?;
        a.ltr(ax)?;
        a.int3()?;
        a.hlt()
    });
    bus.load(0x1000, &code);
    let handler = asm(64, 0x3000, |a| {
        a.mov(rax, qword_ptr(rsp))?;
        a.out(0x90, eax)?;
        a.iretq()
    });
    bus.load(0x3000, &handler);
    let mut c = Cpu::new();
    c.gdtr = Table {
        base: GDT,
        limit: 0x37,
    };
    c.idtr = Table {
        base: IDT,
        limit: 0xfff,
    };
    c.rip = 0x1000;
    c.gpr[RSP] = 0x8000;
    let (v, e) = run(&mut bus, c, 1000);
    assert_eq!(e, HALTED_CLI, "{}", v.summary());
    // Return address after the INT3 (code_asm encodes `int3` as CD 03 at 0x1007).
    assert_eq!(bus.outs, vec![(0x90, 4, 0x1009)]);
    // Frame on the IST stack: SS, RSP, RFLAGS, CS, RIP below 0xa000.
    assert_eq!(bus.u64_at(0xa000 - 16), 0x8000);
    assert_eq!(bus.u64_at(0xa000 - 32), 0x08);
    assert_eq!(v.cpu.gpr[RSP], 0x8000);
}

#[test]
fn page_fault_error_code_cr2_and_accessed_dirty_bits() {
    // 32-bit paging: PD at 0x20000, PT at 0x21000 identity-mapping the first MiB; the
    // page at 0x50000 read-only.
    let code = asm(32, 0x1000, |a| {
        a.mov(eax, 0x20000u32)?;
        a.mov(cr3, eax)?;
        a.mov(eax, cr0)?;
        a.or(eax, 0x8001_0000u32 as i32)?;
        a.mov(cr0, eax)?;
        a.mov(eax, dword_ptr(0x40000))?;
        a.mov(dword_ptr(0x41000), eax)?;
        a.mov(dword_ptr(0x50010), eax)?;
        a.hlt()
    });
    let (mut bus, c) = pm32(&code);
    bus.put_u32(0x20000, 0x21000 | 7);
    for k in 0..256u32 {
        let flags = if k == 0x50 { 1 } else { 3 };
        bus.put_u32(0x21000 + 4 * k as u64, (k << 12) | flags);
    }
    bus.put_u64(IDT + 14 * 8, gate32(0x08, 0x3000, 0xe, 0));
    let handler = asm(32, 0x3000, |a| {
        a.pop(eax)?;
        a.out(0x90, eax)?;
        a.mov(eax, cr2)?;
        a.out(0x91, eax)?;
        a.hlt()
    });
    bus.load(0x3000, &handler);
    let (v, e) = run(&mut bus, c, 1000);
    assert_eq!(e, HALTED_CLI, "{}", v.summary());
    // Present + write, supervisor.
    assert_eq!(bus.outs, vec![(0x90, 4, 3), (0x91, 4, 0x50010)]);
    assert_eq!(v.cpu.cr2, 0x50010);
    assert_eq!(bus.u32_at(0x21000 + 4 * 0x40) & 0x60, 0x20, "read: A only");
    assert_eq!(
        bus.u32_at(0x21000 + 4 * 0x41) & 0x60,
        0x60,
        "write: A and D"
    );
    assert_eq!(
        bus.u32_at(0x21000 + 4 * 0x50) & 0x60,
        0,
        "faulting write: neither"
    );
    assert_ne!(bus.u32_at(0x20000) & 0x20, 0, "PDE accessed");
}

#[test]
fn null_and_out_of_limit_selector_loads_are_gp_with_selector_error_codes() {
    for (sel, want) in [(0u16, 0u32), (0x7f8, 0x7f8), (0x08, 0x08)] {
        // MOV SS with null, beyond the GDT limit, and with a code segment.
        let code = asm(32, 0x1000, |a| {
            a.mov(ax, sel as u32)?;
            a.mov(ss, ax)?;
            a.hlt()
        });
        let (mut bus, c) = pm32(&code);
        bus.put_u64(IDT + 13 * 8, gate32(0x08, 0x3000, 0xe, 0));
        let handler = asm(32, 0x3000, |a| {
            a.pop(eax)?;
            a.out(0x90, eax)?;
            a.hlt()
        });
        bus.load(0x3000, &handler);
        let (v, e) = run(&mut bus, c, 100);
        assert_eq!(e, HALTED_CLI, "{}", v.summary());
        assert_eq!(bus.outs, vec![(0x90, 4, want)], "selector {sel:#x}");
    }
    // A null DS is fine until used: then #GP(0).
    let code = asm(32, 0x1000, |a| {
        a.xor(eax, eax)?;
        a.mov(ds, ax)?;
        a.out(0x91, al)?;
        a.mov(eax, dword_ptr(0x100))?;
        a.hlt()
    });
    let (mut bus, c) = pm32(&code);
    bus.put_u64(IDT + 13 * 8, gate32(0x08, 0x3000, 0xe, 0));
    let handler = asm(32, 0x3000, |a| {
        a.pop(eax)?;
        a.out(0x90, eax)?;
        a.hlt()
    });
    bus.load(0x3000, &handler);
    let (_, e) = run(&mut bus, c, 100);
    assert_eq!(e, HALTED_CLI);
    assert_eq!(bus.outs, vec![(0x91, 1, 0), (0x90, 4, 0)]);
}

#[test]
fn triple_fault_is_shutdown_with_registers() {
    let code = asm(32, 0x1000, |a| a.ud2());
    let (mut bus, mut c) = pm32(&code);
    c.idtr.limit = 0;
    let (v, e) = run(&mut bus, c, 100);
    match e {
        RunExit::Shutdown(s) => {
            assert!(s.contains("triple fault"), "{s}");
            assert!(s.contains("cs=0x0008:0x1000"), "{s}");
        }
        e => panic!("{e:?} {}", v.summary()),
    }
    // It stays shut down until reset.
    let mut v = v;
    assert!(matches!(v.run(&mut bus, 10), RunExit::Shutdown(_)));
    assert!(v.shutdown_reason().is_some());
    let (_, mut c) = pm32(&[]);
    c.idtr.limit = 0;
    bus.load(0x1000, &[0xf4]);
    v.reset(c);
    assert_eq!(v.run(&mut bus, 10), HALTED_CLI);
}

#[test]
fn fault_storm_through_a_garbage_idt_ends_quickly() {
    for (base, bitness) in [(0xffff_0000u64, 32), (0x1_0000, 32), (0xffff_0000, 64)] {
        let code = asm(bitness, 0x1000, |a| a.ud2());
        let (mut bus, mut c) = pm32(&code);
        if bitness == 64 {
            let r = c.rip;
            c = Cpu::new();
            c.rip = r;
            c.gdtr = Table {
                base: GDT,
                limit: 0x2f,
            };
        }
        // Garbage: unbacked (all ones) or pseudo-random bytes.
        let mut s = 0x1234_5678u32;
        for k in 0..0x1000u64 {
            s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
            bus.ram[(0x1_0000 + k) as usize] = (s >> 16) as u8;
        }
        c.idtr = Table {
            base,
            limit: 0xffff,
        };
        let (v, e) = run(&mut bus, c, 100_000);
        assert!(
            matches!(e, RunExit::Shutdown(_)) || v.retired() < 100_000,
            "{e:?}"
        );
    }
}

#[test]
fn port_io_reaches_the_bus_with_ports_and_sizes() {
    let code = asm(32, 0x1000, |a| {
        a.mov(dx, 0x60u32)?;
        a.in_(al, dx)?;
        a.in_(ax, 0x61)?;
        a.in_(eax, dx)?;
        a.mov(ax, 0x1234u32)?;
        a.out(0x70, ax)?;
        a.mov(edi, 0x5100u32)?;
        a.mov(ecx, 4u32)?;
        a.rep().insb()?;
        a.mov(esi, 0x5100u32)?;
        a.mov(ecx, 2u32)?;
        a.rep().outsw()?;
        // An MMIO store above RAM.
        a.mov(dword_ptr(0x30_0000), eax)?;
        a.hlt()
    });
    let (mut bus, c) = pm32(&code);
    bus.in_value = |p| 0xabcd_0000 | p as u32;
    let (v, e) = run(&mut bus, c, 1000);
    assert_eq!(e, HALTED_CLI, "{}", v.summary());
    assert_eq!(
        bus.ins,
        vec![
            (0x60, 1),
            (0x61, 2),
            (0x60, 4),
            (0x60, 1),
            (0x60, 1),
            (0x60, 1),
            (0x60, 1)
        ]
    );
    assert_eq!(&bus.ram[0x5100..0x5104], &[0x60; 4]);
    assert_eq!(
        bus.outs,
        vec![(0x70, 2, 0x1234), (0x60, 2, 0x6060), (0x60, 2, 0x6060)]
    );
    assert_eq!(bus.mmio, vec![(0x30_0000, true, 4)]);
    assert_eq!(v.cpu.gpr[RDI], 0x5104);
}

#[test]
fn ring3_port_access_checks_the_tss_io_bitmap() {
    let code = asm(32, 0x1000, |a| {
        a.mov(ax, 0x28u32)?;
        a.ltr(ax)?;
        a.push(0x23)?;
        a.push(0x8000)?;
        a.push(0x2)?;
        a.push(0x1b)?;
        a.push(0x2000)?;
        a.iretd()
    });
    let (mut bus, c) = pm32(&code);
    // I/O bitmap at TSS+0x68 (within a raised limit): port 0x80 allowed, 0x81 not.
    bus.load(TSS + 0x66, &0x68u16.to_le_bytes());
    for k in 0..0x20u64 {
        bus.ram[(TSS + 0x68 + k) as usize] = 0xff;
    }
    bus.ram[(TSS + 0x68 + 0x10) as usize] = 0xfe;
    bus.put_u64(GDT + 0x28, desc(TSS as u32, 0x68 + 0x20, 0x89, 0));
    let user = asm(32, 0x2000, |a| {
        a.out(0x80, al)?;
        a.out(0x81, al)?;
        a.hlt()
    });
    bus.load(0x2000, &user);
    bus.put_u64(IDT + 13 * 8, gate32(0x08, 0x3000, 0xe, 0));
    let handler = asm(32, 0x3000, |a| {
        a.pop(eax)?;
        a.pop(eax)?;
        a.out(0x90, eax)?;
        a.hlt()
    });
    bus.load(0x3000, &handler);
    let (v, e) = run(&mut bus, c, 1000);
    assert_eq!(e, HALTED_CLI, "{}", v.summary());
    assert_eq!(bus.outs[0].0, 0x80);
    // #GP at the second OUT (EIP 0x2002).
    assert_eq!(bus.outs[1], (0x90, 4, 0x2002));
}

#[test]
fn self_modifying_code_and_written_pages_invalidate_the_decode_cache() {
    // mov al, 1; out 0x90, al; mov byte [0x1001], 2; dec ecx; jnz 0x1000; hlt
    let code = asm(64, 0x1000, |a| {
        let mut top = a.create_label();
        a.set_label(&mut top)?;
        a.mov(al, 1u32)?;
        a.out(0x90, al)?;
        a.mov(byte_ptr(0x1001), 2u32)?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.out(0x91, al)?;
        a.jmp(top)
    });
    let mut bus = TestBus::new(0x10_0000);
    bus.load(0x1000, &code);
    bus.stop_port = Some(0x91);
    let mut c = Cpu::new();
    c.rip = 0x1000;
    c.gpr[RCX] = 2;
    let mut v = EmuVcpu::new(c);
    assert_eq!(v.run(&mut bus, 1000), RunExit::Stopped);
    assert_eq!(bus.outs, vec![(0x90, 1, 1), (0x90, 1, 2), (0x91, 1, 2)]);
    // Behind the CPU's back (DMA): reported through take_written_code_pages.
    bus.ram[0x1001] = 7;
    bus.written_code.push(0x1000);
    bus.outs.clear();
    v.cpu.gpr[RCX] = 1;
    assert_eq!(v.run(&mut bus, 1000), RunExit::Stopped);
    assert_eq!(bus.outs[0], (0x90, 1, 7));
}

#[test]
fn hypercall_and_msrs() {
    let code = asm(32, 0x1000, |a| {
        a.mov(eax, 5u32)?;
        a.vmcall()?;
        a.mov(ecx, 0x277u32)?;
        a.rdmsr()?;
        a.out(0x90, eax)?;
        a.mov(ecx, 0x10u32)?;
        a.mov(eax, 1000u32)?;
        a.xor(edx, edx)?;
        a.wrmsr()?;
        a.rdtsc()?;
        a.out(0x91, eax)?;
        a.hlt()
    });
    let (mut bus, c) = pm32(&code);
    let (v, e) = run(&mut bus, c, 1000);
    assert_eq!(e, HALTED_CLI, "{}", v.summary());
    assert_eq!(bus.hypercalls, vec![5]);
    assert_eq!(bus.outs[0], (0x90, 4, PAT_RESET as u32));
    // TSC = bus tsc (10 per instruction) + offset set at instruction 9 to read 1000.
    assert_eq!(bus.outs[1], (0x91, 4, 1000 + 10));
}

#[test]
fn syscall_sysret_swapgs_round_trip() {
    let mut bus = TestBus::new(0x20_0000);
    let gdt = [
        0,
        0x00af9b000000ffffu64, // 0x08 kernel code
        0x00cf93000000ffff,    // 0x10 kernel data
        0x00cff3000000ffff,    // 0x18 user data
        0x00affb000000ffff,    // 0x20 user code (64-bit)
    ];
    for (k, d) in gdt.iter().enumerate() {
        bus.put_u64(GDT + 8 * k as u64, *d);
    }
    let kernel = asm(64, 0x1000, |a| {
        let wr = |a: &mut CodeAssembler, msr: u32, v: u64| -> Result<(), IcedError> {
            a.mov(ecx, msr)?;
            a.mov(eax, v as u32)?;
            a.mov(edx, (v >> 32) as u32)?;
            a.wrmsr()
        };
        wr(a, 0xc000_0080, 0x501)?; // EFER: SCE | LME | LMA
        wr(a, 0xc000_0081, (0x10u64 << 48) | (0x08 << 32))?;
        wr(a, 0xc000_0082, 0x3000)?;
        wr(a, 0xc000_0102, 0x1234)?;
        a.mov(rcx, 0x2000u64)?;
        a.mov(r11, 0x202u64)?;
        a.sysretq()
    });
    bus.load(0x1000, &kernel);
    let user = asm(64, 0x2000, |a| {
        a.mov(eax, 7u32)?;
        a.syscall()
    });
    bus.load(0x2000, &user);
    let entry = asm(64, 0x3000, |a| {
        a.swapgs()?;
        a.mov(ecx, 0xc000_0101u32)?;
        a.mov(rbx, rcx)?;
        a.rdmsr()?;
        a.out(0x90, eax)?;
        a.mov(rax, r11)?;
        a.out(0x91, eax)?;
        a.mov(eax, 0x2007u32)?;
        a.hlt()
    });
    bus.load(0x3000, &entry);
    let mut c = Cpu::new();
    c.gdtr = Table {
        base: GDT,
        limit: 0x27,
    };
    c.rip = 0x1000;
    let (v, e) = run(&mut bus, c, 1000);
    // SFMASK is 0: IF from the user's RFLAGS stays set.
    assert_eq!(
        e,
        RunExit::Halted {
            interrupts_enabled: true
        },
        "{}",
        v.summary()
    );
    assert_eq!(bus.outs, vec![(0x90, 4, 0x1234), (0x91, 4, 0x202)]);
    assert_eq!(v.cpu.seg[CS].selector, 0x08);
    assert_eq!(v.cpu.cpl(), 0);
    assert_eq!(v.cpu.msr.kernel_gs_base, 0);
}

#[test]
fn pae_paging_with_a_2m_page_and_an_nx_fetch_fault() {
    let code = asm(32, 0x1000, |a| {
        a.mov(ecx, 0xc000_0080u32)?;
        a.rdmsr()?;
        a.or(eax, 0x800)?; // NXE
        a.wrmsr()?;
        a.mov(eax, cr4)?;
        a.or(eax, 0x20)?;
        a.mov(cr4, eax)?;
        a.mov(eax, 0x20000u32)?;
        a.mov(cr3, eax)?;
        a.mov(eax, cr0)?;
        a.or(eax, 0x8000_0000u32 as i32)?;
        a.mov(cr0, eax)?;
        a.mov(eax, dword_ptr(0x20_0010))?;
        a.out(0x92, eax)?;
        a.mov(eax, 0x40000u32)?;
        a.jmp(eax)
    });
    let (mut bus, c) = pm32(&code);
    bus.put_u64(0x20000, 0x21000 | 1);
    bus.put_u64(0x21000, 0x22000 | 3);
    bus.put_u64(0x21008, 0x83); // 2 MiB page at 2 MiB -> physical 0
    for k in 0..256u64 {
        let nx = if k == 0x40 { 1 << 63 } else { 0 };
        bus.put_u64(0x22000 + 8 * k, (k << 12) | 3 | nx);
    }
    bus.put_u32(0x10, 0xfeed);
    bus.put_u64(IDT + 14 * 8, gate32(0x08, 0x3000, 0xe, 0));
    let handler = asm(32, 0x3000, |a| {
        a.pop(eax)?;
        a.out(0x90, eax)?;
        a.mov(eax, cr2)?;
        a.out(0x91, eax)?;
        a.hlt()
    });
    bus.load(0x3000, &handler);
    let (v, e) = run(&mut bus, c, 1000);
    assert_eq!(e, HALTED_CLI, "{}", v.summary());
    // The 2 MiB page read physical 0x10; the fetch fault is present + I/D.
    assert_eq!(
        bus.outs,
        vec![(0x92, 4, 0xfeed), (0x90, 4, 0x11), (0x91, 4, 0x40000)]
    );
    assert_eq!(bus.u64_at(0x21008) & 0x60, 0x20);
}

#[test]
fn pse_4m_pages_alias_and_set_dirty() {
    let code = asm(32, 0x1000, |a| {
        a.mov(eax, cr4)?;
        a.or(eax, 0x10)?; // PSE
        a.mov(cr4, eax)?;
        a.mov(eax, 0x20000u32)?;
        a.mov(cr3, eax)?;
        a.mov(eax, cr0)?;
        a.or(eax, 0x8000_0000u32 as i32)?;
        a.mov(cr0, eax)?;
        a.mov(eax, dword_ptr(0x40_5000))?;
        a.out(0x90, eax)?;
        a.mov(dword_ptr(0x40_5004), eax)?;
        a.mov(eax, dword_ptr(0x5004))?;
        a.out(0x91, eax)?;
        a.hlt()
    });
    let (mut bus, c) = pm32(&code);
    bus.put_u32(0x20000, 0x83);
    bus.put_u32(0x20004, 0x83);
    bus.put_u32(0x5000, 0xcafe);
    let (v, e) = run(&mut bus, c, 1000);
    assert_eq!(e, HALTED_CLI, "{}", v.summary());
    assert_eq!(bus.outs, vec![(0x90, 4, 0xcafe), (0x91, 4, 0xcafe)]);
    assert_eq!(bus.u32_at(0x20004) & 0x60, 0x60);
}

#[test]
fn trap_flag_single_steps_through_db() {
    let code = asm(32, 0x1000, |a| {
        a.pushfd()?;
        a.or(dword_ptr(esp), 0x100)?;
        a.popfd()?;
        a.nop()?;
        a.nop()?;
        a.pushfd()?;
        a.and(dword_ptr(esp), !0x100)?;
        a.popfd()?;
        a.hlt()
    });
    let (mut bus, c) = pm32(&code);
    bus.put_u64(IDT + 8, gate32(0x08, 0x3000, 0xe, 0));
    let handler = asm(32, 0x3000, |a| {
        a.inc(ebx)?;
        a.iretd()
    });
    bus.load(0x3000, &handler);
    let (v, e) = run(&mut bus, c, 1000);
    assert_eq!(e, HALTED_CLI, "{}", v.summary());
    // nop, nop, pushfd, and, popfd.
    assert_eq!(v.cpu.gpr[RBX], 5);
    assert_ne!(v.cpu.dr[6] & (1 << 14), 0);
}

/// 32-bit paging identity-mapping the first MiB except the page at 0x50000.
fn paged_with_hole(code: &[u8]) -> (TestBus, Cpu) {
    let (mut bus, mut c) = pm32(code);
    bus.put_u32(0x20000, 0x21000 | 3);
    for k in 0..256u32 {
        let flags = if k == 0x50 { 0 } else { 3 };
        bus.put_u32(0x21000 + 4 * k as u64, (k << 12) | flags);
    }
    c.cr3 = 0x20000;
    c.cr0 |= CR0_PG;
    bus.put_u64(IDT + 14 * 8, gate32(0x08, 0x3000, 0xe, 0));
    let handler = asm(32, 0x3000, |a| {
        a.pop(eax)?;
        a.out(0x90, eax)?;
        a.mov(eax, cr2)?;
        a.out(0x91, eax)?;
        a.hlt()
    });
    bus.load(0x3000, &handler);
    (bus, c)
}

#[test]
fn accesses_straddling_a_missing_page_fault_on_the_second_page_and_change_nothing() {
    // An instruction whose last bytes are on the missing page.
    let (mut bus, mut c) = paged_with_hole(&[]);
    bus.load(0x4fffd, &[0xb8, 0x78, 0x56, 0x34, 0x12]);
    c.rip = 0x4fffd;
    let (v, e) = run(&mut bus, c, 100);
    assert_eq!(e, HALTED_CLI, "{}", v.summary());
    assert_eq!(bus.outs, vec![(0x90, 4, 0), (0x91, 4, 0x50000)]);
    // A 4-byte store across the boundary: #PF(W) for the second page, no byte written.
    let code = asm(32, 0x1000, |a| {
        a.mov(dword_ptr(0x4fffe), 0xaabb_ccddu32)?;
        a.hlt()
    });
    let (mut bus, c) = paged_with_hole(&code);
    bus.ram[0x4fffe] = 0x11;
    bus.ram[0x4ffff] = 0x22;
    let (v, e) = run(&mut bus, c, 100);
    assert_eq!(e, HALTED_CLI, "{}", v.summary());
    assert_eq!(bus.outs, vec![(0x90, 4, 2), (0x91, 4, 0x50000)]);
    assert_eq!(&bus.ram[0x4fffe..0x50000], &[0x11, 0x22]);
}

#[test]
fn arpl_raises_the_rpl() {
    let code = asm(32, 0x1000, |a| {
        a.mov(ax, 0x10u32)?;
        a.mov(cx, 3u32)?;
        a.arpl(ax, cx)?;
        a.setz(bl)?;
        a.arpl(ax, cx)?;
        a.setz(bh)?;
        a.hlt()
    });
    let (mut bus, c) = pm32(&code);
    let (v, e) = run(&mut bus, c, 100);
    assert_eq!(e, HALTED_CLI, "{}", v.summary());
    assert_eq!(v.cpu.gpr[RAX] & 0xffff, 0x13);
    assert_eq!(v.cpu.gpr[RBX] & 0xffff, 0x0001);
}

#[test]
fn accesses_at_the_end_of_ram_split_into_ram_bytes_and_mmio_and_fetch_stops_there() {
    // RAM ends at 2 MiB. The last RAM byte holds HLT; the code before it loads a dword
    // straddling the end of RAM.
    let code = asm(32, 0x1000, |a| {
        a.mov(eax, dword_ptr(0x1f_fffe))?;
        a.mov(ebx, 0x1f_ffffu32)?;
        a.jmp(ebx)
    });
    let (mut bus, c) = pm32(&code);
    bus.ram[0x1f_fffe] = 0x34;
    bus.ram[0x1f_ffff] = 0xf4;
    let (v, e) = run(&mut bus, c, 100);
    assert_eq!(e, HALTED_CLI, "{}", v.summary());
    assert_eq!(v.cpu.gpr[RAX], 0xffff_f434);
    // One 2-byte MMIO read for the part past RAM; no prefetch into MMIO.
    assert_eq!(bus.mmio, vec![(0x20_0000, false, 2)]);
}

#[test]
fn call_gate_to_ring0_copies_parameters_and_retf_returns_to_ring3() {
    let code = asm(32, 0x1000, |a| {
        a.mov(ax, 0x28u32)?;
        a.ltr(ax)?;
        a.push(0x23)?;
        a.push(0x8000)?;
        a.push(0x3002)?; // IOPL 3: ring 3 may use OUT
        a.push(0x1b)?;
        a.push(0x2000)?;
        a.iretd()
    });
    let (mut bus, mut c) = pm32(&code);
    c.gdtr.limit = 0x37;
    // 0x30: 32-bit call gate, DPL 3, two parameters, to 0x08:0x3000.
    bus.put_u64(GDT + 0x30, gate32(0x08, 0x3000, 0xc, 3) | (2 << 32));
    let user = asm(32, 0x2000, |a| {
        a.push(0x1111)?;
        a.push(0x2222)?;
        a.db(&[0x9a, 0, 0, 0, 0, 0x30, 0])?; // call 0x30:0
        a.mov(eax, esp)?;
        a.out(0x93, eax)?;
        a.hlt()
    });
    bus.load(0x2000, &user);
    let kernel = asm(32, 0x3000, |a| {
        a.mov(eax, dword_ptr(esp + 8))?;
        a.out(0x90, eax)?;
        a.mov(eax, dword_ptr(esp + 12))?;
        a.out(0x91, eax)?;
        a.mov(eax, dword_ptr(esp + 20))?;
        a.out(0x92, eax)?;
        a.mov(eax, dword_ptr(esp + 4))?;
        a.out(0x94, eax)?;
        a.retf_1(8)
    });
    bus.load(0x3000, &kernel);
    bus.put_u64(IDT + 13 * 8, gate32(0x08, 0x3100, 0xe, 0));
    bus.load(0x3100, &[0xfa, 0xf4]);
    let (v, e) = run(&mut bus, c, 1000);
    assert_eq!(e, HALTED_CLI, "{}", v.summary());
    assert_eq!(
        bus.outs,
        vec![
            (0x90, 4, 0x2222),
            (0x91, 4, 0x1111),
            (0x92, 4, 0x23),
            (0x94, 4, 0x1b),
            (0x93, 4, 0x8000)
        ]
    );
}

#[test]
fn long_mode_call_gate_to_ring0_and_retfq_back() {
    let mut bus = TestBus::new(0x20_0000);
    let gdt = [
        0,
        0x00af9b000000ffffu64, // 0x08 kernel code (64-bit)
        0x00cf93000000ffff,    // 0x10 kernel data
        0x00cff3000000ffff,    // 0x18 user data
        0x00affb000000ffff,    // 0x20 user code (64-bit)
        desc(TSS as u32, 0x67, 0x89, 0),
        0,
        gate32(0x08, 0x3000, 0xc, 3), // 0x38: 64-bit call gate (16 bytes)
        0,
    ];
    for (k, d) in gdt.iter().enumerate() {
        bus.put_u64(GDT + 8 * k as u64, *d);
    }
    bus.put_u64(TSS + 4, 0x9000);
    let code = asm(64, 0x1000, |a| {
        a.mov(ax, 0x28u32)?;
        a.ltr(ax)?;
        a.push(0x1b)?;
        a.push(0x8000)?;
        a.push(0x3002)?;
        a.push(0x23)?;
        a.push(0x2000)?;
        a.iretq()
    });
    bus.load(0x1000, &code);
    // call far [0x5800] (m16:32 = 0x003b:00000000)
    bus.load(0x2000, &[0xff, 0x1c, 0x25, 0x00, 0x58, 0x00, 0x00]);
    let user_rest = asm(64, 0x2007, |a| {
        a.mov(eax, esp)?;
        a.out(0x93, eax)?;
        a.hlt()
    });
    bus.load(0x2007, &user_rest);
    bus.load(0x5804, &0x3bu16.to_le_bytes());
    let kernel = asm(64, 0x3000, |a| {
        a.mov(rax, qword_ptr(rsp + 8))?;
        a.out(0x90, eax)?;
        a.mov(rax, qword_ptr(rsp + 24))?;
        a.out(0x91, eax)?;
        a.mov(rax, qword_ptr(rsp + 16))?;
        a.out(0x92, eax)?;
        a.mov(eax, ss)?;
        a.out(0x95, eax)?;
        a.db(&[0x48, 0xcb]) // retfq
    });
    bus.load(0x3000, &kernel);
    set_gate64(&mut bus, 13, 0x08, 0x3100, 0, 0);
    bus.load(0x3100, &[0xfa, 0xf4]);
    let mut c = Cpu::new();
    c.gdtr = Table {
        base: GDT,
        limit: 0x47,
    };
    c.idtr = Table {
        base: IDT,
        limit: 0xfff,
    };
    c.rip = 0x1000;
    c.gpr[RSP] = 0x7000;
    let (v, e) = run(&mut bus, c, 1000);
    assert_eq!(e, HALTED_CLI, "{}", v.summary());
    assert_eq!(
        bus.outs,
        vec![
            (0x90, 4, 0x23),
            (0x91, 4, 0x1b),
            (0x92, 4, 0x8000),
            (0x95, 4, 0),
            (0x93, 4, 0x8000)
        ]
    );
}

/// Speed of the run loop on a simple loop (run with `--ignored --nocapture`).
#[test]
#[ignore]
fn speed() {
    let code = asm(32, 0x1000, |a| {
        let mut l = a.create_label();
        a.set_label(&mut l)?;
        a.add(eax, dword_ptr(0x5000))?;
        a.mov(dword_ptr(0x5004), eax)?;
        a.inc(ebx)?;
        a.dec(ecx)?;
        a.jnz(l)?;
        a.hlt()
    });
    let (mut bus, mut c) = pm32(&code);
    c.gpr[RCX] = 2_000_000;
    let t = std::time::Instant::now();
    let (v, e) = run(&mut bus, c, 100_000_000);
    let dt = t.elapsed();
    assert_eq!(e, HALTED_CLI);
    eprintln!(
        "{} instructions in {dt:?}: {:.1} M/s",
        v.retired(),
        v.retired() as f64 / dt.as_secs_f64() / 1e6
    );
}
