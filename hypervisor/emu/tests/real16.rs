//! 16-bit real-mode code as SeaBIOS writes it: 16-bit addressing modes with their
//! default segments, XLAT, PUSHA/POPA, BCD, LES, ENTER/LEAVE, LOOP on CX, far CALL and
//! RETF, CMPXCHG8B, operand-size-prefixed CALL/RET.

mod common;

use common::*;
use hypervisor_emu::cpu::*;
use hypervisor_emu::{EmuVcpu, RunExit};
use iced_x86::code_asm::*;

#[test]
fn real_mode_integer_forms() {
    let mut bus = TestBus::new(0x10_0000);
    let main = asm(16, 0x1000, |a| {
        // XLAT through DS:BX.
        a.mov(bx, 0x10u32)?;
        a.mov(al, 3u32)?;
        a.xlatb()?;
        a.out(0x90, al)?;
        // [bp+si+2] defaults to SS.
        a.mov(bp, 0x20u32)?;
        a.mov(si, 4u32)?;
        a.mov(ax, word_ptr(bp + si + 2))?;
        a.out(0x91, ax)?;
        // PUSHA/POPA round trip.
        a.pusha()?;
        a.xor(ax, ax)?;
        a.popa()?;
        a.out(0x92, ax)?;
        // DAA after 0x79 + 0x35.
        a.mov(al, 0x79u32)?;
        a.add(al, 0x35)?;
        a.daa()?;
        a.out(0x93, al)?;
        a.lahf()?;
        a.mov(al, ah)?;
        a.out(0x94, al)?;
        // AAM / AAD.
        a.mov(ax, 0x35u32)?;
        a.aam(10)?;
        a.out(0x95, ax)?;
        a.aad(10)?;
        a.out(0x96, ax)?;
        // LES DI, [0x40].
        a.les(di, word_ptr(0x40))?;
        a.mov(ax, es)?;
        a.out(0x97, ax)?;
        a.mov(ax, di)?;
        a.out(0x98, ax)?;
        // ENTER/LEAVE on a 16-bit stack.
        a.mov(bp, 0x55u32)?;
        a.enter(4, 0)?;
        a.mov(ax, sp)?;
        a.out(0x99, ax)?;
        a.leave()?;
        a.mov(ax, bp)?;
        a.out(0x9a, ax)?;
        // LOOP counts CX only.
        a.mov(ecx, 0x1_0003u32)?;
        a.xor(dx, dx)?;
        let mut l = a.create_label();
        a.set_label(&mut l)?;
        a.inc(dx)?;
        a.loop_(l)?;
        a.mov(ax, dx)?;
        a.out(0x9b, ax)?;
        a.mov(eax, ecx)?;
        a.out(0x9c, eax)?;
        // far CALL 0100:0800 (= 0x1800), RETF.
        a.db(&[0x9a, 0x00, 0x08, 0x00, 0x01])?;
        // CMPXCHG8B [0x50]: equal, so ECX:EBX is stored.
        a.mov(eax, 0x2222_2222u32)?;
        a.mov(edx, 0x1111_1111u32)?;
        a.mov(ebx, 0x4444_4444u32)?;
        a.mov(ecx, 0x3333_3333u32)?;
        a.cmpxchg8b(qword_ptr(0x50))?;
        // 0x66 CALL / RET (calll/retl).
        a.db(&[0x66, 0xe8])?;
        a.dd(&[0])?; // rel32, patched below
        a.mov(ax, sp)?;
        a.out(0x9f, ax)?;
        a.hlt()
    });
    // The calll's rel32 is relative to the end of the 6-byte instruction: patch it.
    let mut main = main;
    let pos = main.windows(2).position(|w| w == [0x66, 0xe8]).unwrap();
    let next = 0x1000 + pos as u32 + 6;
    main[pos + 2..pos + 6].copy_from_slice(&(0x1900u32.wrapping_sub(next)).to_le_bytes());
    bus.load(0x1000, &main);
    let far = asm(16, 0x0800, |a| {
        a.mov(ax, cs)?;
        a.out(0x9d, ax)?;
        a.retf()
    });
    bus.load(0x1800, &far);
    let near32 = asm(16, 0x1900, |a| {
        a.mov(ax, sp)?;
        a.out(0x9e, ax)?;
        a.db(&[0x66, 0xc3])
    });
    bus.load(0x1900, &near32);
    // DS = 0x300 (0x3000), SS = 0x200 (0x2000).
    bus.ram[0x3013] = 0x77;
    bus.load(0x2026, &0xbeefu16.to_le_bytes());
    bus.load(0x3040, &[0x78, 0x56, 0x34, 0x12]);
    bus.put_u64(0x3050, 0x1111_1111_2222_2222);

    let mut c = Cpu::reset();
    c.seg[CS] = Segment::new(0, 0, 0xffff, 0x9b);
    c.seg[DS] = Segment::new(0x300, 0x3000, 0xffff, 0x93);
    c.seg[SS] = Segment::new(0x200, 0x2000, 0xffff, 0x93);
    c.rip = 0x1000;
    c.gpr[RSP] = 0x100;
    let mut v = EmuVcpu::new(c);
    let e = v.run(&mut bus, 1000);
    assert_eq!(
        e,
        RunExit::Halted {
            interrupts_enabled: false
        },
        "{}",
        v.summary()
    );
    let want = vec![
        (0x90, 1, 0x77),
        (0x91, 2, 0xbeef),
        (0x92, 2, 0xbeef),
        (0x93, 1, 0x14),
        (0x94, 1, 0x17),
        (0x95, 2, 0x0503),
        (0x96, 2, 0x0035),
        (0x97, 2, 0x1234),
        (0x98, 2, 0x5678),
        (0x99, 2, 0x100 - 2 - 4),
        (0x9a, 2, 0x55),
        (0x9b, 2, 3),
        (0x9c, 4, 0x1_0000),
        (0x9d, 2, 0x100),
        (0x9e, 2, 0x100 - 4),
        (0x9f, 2, 0x100),
    ];
    assert_eq!(bus.outs, want);
    assert_eq!(bus.u64_at(0x3050), 0x3333_3333_4444_4444);
    assert_eq!(v.cpu.seg[CS].selector, 0);
}

#[test]
fn startup_ipi_state_runs_real_mode_code_at_the_vector_page() {
    let mut bus = TestBus::new(0x10_0000);
    let code = asm(16, 0, |a| {
        a.mov(ax, cs)?;
        a.out(0x90, ax)?;
        a.cli()?;
        a.hlt()
    });
    bus.load(0x9a000, &code);
    let mut v = EmuVcpu::new(Cpu::startup(0x9a));
    assert_eq!(
        v.run(&mut bus, 100),
        RunExit::Halted {
            interrupts_enabled: false
        }
    );
    assert_eq!(bus.outs, vec![(0x90, 2, 0x9a00)]);
}
