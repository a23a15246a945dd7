//! Hand-written cases for what the differential harness cannot run natively (the
//! stack: PUSH/POP/CALL/RET; RIP-relative and FS-based addressing) and for the
//! interpreter's own contract (fault atomicity, #UD for unimplemented instructions,
//! REP chunking, instruction fetch faults).

use hypervisor_emu::cpu::{Cpu, RAX, RBX, RCX, RDI, RDX, RSP};
use hypervisor_emu::exec::{Exception, step};
use hypervisor_emu::mem::{Fault, FlatMemory, Memory};

const BASE: u64 = 0x1000;
const STACK_TOP: u64 = 0x8000;

fn setup(code: &[u8]) -> (Cpu, FlatMemory) {
    let mut mem = FlatMemory::new(BASE, 0x10000);
    mem.data[..code.len()].copy_from_slice(code);
    let mut cpu = Cpu::new();
    cpu.rip = BASE;
    cpu.gpr[RSP] = STACK_TOP;
    (cpu, mem)
}

fn run(cpu: &mut Cpu, mem: &mut FlatMemory, n: usize) {
    for k in 0..n {
        if let Err(e) = step(cpu, mem) {
            panic!("step {k} at {:#x}: {e:?}", cpu.rip);
        }
    }
}

#[test]
fn push_pop_immediates_and_sizes() {
    // push rax; push -1 (imm8); pop rcx; pop rdx; push ax (66 50); pop ax (66 58)
    let (mut cpu, mut mem) = setup(&[0x50, 0x6a, 0xff, 0x59, 0x5a, 0x66, 0x50, 0x66, 0x58]);
    cpu.gpr[RAX] = 0x1122_3344_5566_7788;
    run(&mut cpu, &mut mem, 4);
    assert_eq!(cpu.gpr[RCX], u64::MAX);
    assert_eq!(cpu.gpr[RDX], 0x1122_3344_5566_7788);
    assert_eq!(cpu.gpr[RSP], STACK_TOP);
    run(&mut cpu, &mut mem, 1);
    assert_eq!(cpu.gpr[RSP], STACK_TOP - 2);
    assert_eq!(mem.read_u16(STACK_TOP - 2).unwrap(), 0x7788);
    run(&mut cpu, &mut mem, 1);
    assert_eq!(cpu.gpr[RSP], STACK_TOP);
}

#[test]
fn push_rsp_pushes_old_value_and_pop_rsp_loads() {
    // push rsp; pop rsp
    let (mut cpu, mut mem) = setup(&[0x54, 0x5c]);
    run(&mut cpu, &mut mem, 1);
    assert_eq!(mem.read_u64(STACK_TOP - 8).unwrap(), STACK_TOP);
    run(&mut cpu, &mut mem, 1);
    assert_eq!(cpu.gpr[RSP], STACK_TOP);
}

#[test]
fn pop_to_rsp_based_memory_uses_incremented_rsp() {
    // pop qword [rsp] (8f 04 24): address computed after the increment
    let (mut cpu, mut mem) = setup(&[0x8f, 0x04, 0x24]);
    cpu.gpr[RSP] = STACK_TOP - 16;
    mem.write_u64(STACK_TOP - 16, 0xdead).unwrap();
    run(&mut cpu, &mut mem, 1);
    assert_eq!(cpu.gpr[RSP], STACK_TOP - 8);
    assert_eq!(mem.read_u64(STACK_TOP - 8).unwrap(), 0xdead);
}

#[test]
fn call_ret_and_ret_imm() {
    // 0x1000: call 0x1009; 0x1005: nop x4; 0x1009: ret
    let (mut cpu, mut mem) = setup(&[0xe8, 0x04, 0, 0, 0, 0x90, 0x90, 0x90, 0x90, 0xc3]);
    run(&mut cpu, &mut mem, 1);
    assert_eq!(cpu.rip, 0x1009);
    assert_eq!(cpu.gpr[RSP], STACK_TOP - 8);
    assert_eq!(mem.read_u64(STACK_TOP - 8).unwrap(), 0x1005);
    run(&mut cpu, &mut mem, 1);
    assert_eq!(cpu.rip, 0x1005);
    assert_eq!(cpu.gpr[RSP], STACK_TOP);

    // ret 0x10
    let (mut cpu, mut mem) = setup(&[0xc2, 0x10, 0x00]);
    cpu.gpr[RSP] = STACK_TOP - 0x20;
    mem.write_u64(STACK_TOP - 0x20, 0x2000).unwrap();
    run(&mut cpu, &mut mem, 1);
    assert_eq!(cpu.rip, 0x2000);
    assert_eq!(cpu.gpr[RSP], STACK_TOP - 0x20 + 8 + 0x10);
}

#[test]
fn indirect_jmp_and_call() {
    // call rax (ff d0) then, at the target, jmp qword [rbx] (ff 23)
    let (mut cpu, mut mem) = setup(&[0xff, 0xd0]);
    cpu.gpr[RAX] = 0x1100;
    mem.write(0x1100, &[0xff, 0x23]).unwrap();
    cpu.gpr[RBX] = 0x3000;
    mem.write_u64(0x3000, 0x1234).unwrap();
    run(&mut cpu, &mut mem, 1);
    assert_eq!(cpu.rip, 0x1100);
    assert_eq!(mem.read_u64(STACK_TOP - 8).unwrap(), 0x1002);
    run(&mut cpu, &mut mem, 1);
    assert_eq!(cpu.rip, 0x1234);
}

#[test]
fn rip_relative_and_fs_based_operands() {
    // lea rax, [rip+0x10]; mov rcx, fs:[rbx] (64 48 8b 0b)
    let (mut cpu, mut mem) = setup(&[0x48, 0x8d, 0x05, 0x10, 0, 0, 0, 0x64, 0x48, 0x8b, 0x0b]);
    cpu.seg[hypervisor_emu::cpu::FS].base = 0x4000;
    cpu.gpr[RBX] = 0x10;
    mem.write_u64(0x4010, 0xfeed_f00d).unwrap();
    run(&mut cpu, &mut mem, 2);
    assert_eq!(cpu.gpr[RAX], 0x1007 + 0x10);
    assert_eq!(cpu.gpr[RCX], 0xfeed_f00d);
}

#[test]
fn high_byte_registers_and_rex() {
    // mov ah, 0x12 (b4 12); with REX (40 b4 34) it is spl
    let (mut cpu, mut mem) = setup(&[0xb4, 0x12, 0x40, 0xb4, 0x34]);
    cpu.gpr[RSP] = 0xff00;
    run(&mut cpu, &mut mem, 2);
    assert_eq!(cpu.gpr[RAX], 0x1200);
    assert_eq!(cpu.gpr[RSP], 0xff34);
}

#[test]
fn lock_prefix_rules() {
    // lock add rax, rbx: #UD; lock add [rbx], eax: fine
    let (mut cpu, mut mem) = setup(&[0xf0, 0x48, 0x01, 0xd8, 0xf0, 0x01, 0x03]);
    assert_eq!(step(&mut cpu, &mut mem), Err(Exception::InvalidOpcode));
    assert_eq!(cpu.rip, BASE);
    cpu.rip += 4;
    cpu.gpr[RBX] = 0x3000;
    cpu.gpr[RAX] = 5;
    run(&mut cpu, &mut mem, 1);
    assert_eq!(mem.read_u32(0x3000).unwrap(), 5);
}

#[test]
fn unimplemented_and_invalid_are_ud_without_side_effects() {
    for code in [
        &[0x0f, 0x0b][..],
        // RDRAND, XGETBV: not offered.
        &[0x0f, 0xc7, 0xf0],
        &[0x0f, 0x01, 0xd0],
        // SYSCALL with EFER.SCE = 0.
        &[0x0f, 0x05],
        &[0x66, 0x0f, 0x38, 0x00, 0xc0], // pshufb: SSSE3 is not advertised
        &[0xd9, 0xf0],                   // f2xm1: outside the x87 subset
    ] {
        let (mut cpu, mut mem) = setup(code);
        let before = cpu.clone();
        assert_eq!(
            step(&mut cpu, &mut mem),
            Err(Exception::InvalidOpcode),
            "{code:02x?}"
        );
        assert_eq!(cpu, before);
    }
}

#[test]
fn faults_leave_state_unchanged() {
    // add [rbx], rax with rbx outside memory; xchg [rbx], rcx; div rcx with rcx = 0
    for code in [&[0x48, 0x01, 0x03][..], &[0x48, 0x87, 0x0b]] {
        let (mut cpu, mut mem) = setup(code);
        cpu.gpr[RBX] = 0xdead_0000;
        cpu.gpr[RCX] = 7;
        let before = cpu.clone();
        assert_eq!(
            step(&mut cpu, &mut mem),
            Err(Exception::Unbacked(Fault {
                addr: 0xdead_0000,
                write: false
            }))
        );
        assert_eq!(cpu, before);
    }
    let (mut cpu, mut mem) = setup(&[0x48, 0xf7, 0xf1]);
    cpu.gpr[RAX] = 10;
    let before = cpu.clone();
    assert_eq!(step(&mut cpu, &mut mem), Err(Exception::DivideError));
    assert_eq!(cpu, before);
}

#[test]
fn rep_stos_runs_in_chunks_and_resumes() {
    // rep stosb with 10000 iterations
    let (mut cpu, mut mem) = setup(&[0xf3, 0xaa]);
    cpu.gpr[RCX] = 10_000;
    cpu.gpr[RDI] = 0x4000;
    cpu.gpr[RAX] = 0xab;
    let mut steps = 0;
    while cpu.rip == BASE {
        run(&mut cpu, &mut mem, 1);
        steps += 1;
        assert!(steps < 10);
    }
    assert!(steps > 1, "a long REP must yield between chunks");
    assert_eq!(cpu.gpr[RCX], 0);
    assert_eq!(cpu.gpr[RDI], 0x4000 + 10_000);
    assert!(mem.data[0x3000..0x3000 + 10_000].iter().all(|&b| b == 0xab));
}

#[test]
fn rep_movs_fault_keeps_completed_iterations() {
    // rep movsq; the destination runs off the end of memory after 2 elements
    let (mut cpu, mut mem) = setup(&[0xf3, 0x48, 0xa5]);
    let end = BASE + 0x10000;
    cpu.gpr[RCX] = 5;
    cpu.gpr[hypervisor_emu::cpu::RSI] = 0x2000;
    cpu.gpr[RDI] = end - 16;
    let r = step(&mut cpu, &mut mem);
    assert!(
        matches!(r, Err(Exception::Unbacked(Fault { write: true, .. }))),
        "{r:?}"
    );
    assert_eq!(cpu.rip, BASE);
    assert_eq!(cpu.gpr[RCX], 3);
    assert_eq!(cpu.gpr[RDI], end);
}

#[test]
fn fetch_fault_at_end_of_memory() {
    let (mut cpu, mut mem) = setup(&[]);
    let end = BASE + 0x10000;
    // a 3-byte instruction whose last byte is past the end
    mem.write(end - 2, &[0x48, 0x01]).unwrap();
    cpu.rip = end - 2;
    assert_eq!(
        step(&mut cpu, &mut mem),
        Err(Exception::Unbacked(Fault {
            addr: end,
            write: false
        }))
    );
    // a complete 1-byte instruction right at the end still runs
    mem.write(end - 1, &[0x90]).unwrap();
    cpu.rip = end - 1;
    assert_eq!(step(&mut cpu, &mut mem), Ok(()));
    assert_eq!(cpu.rip, end);
    let _ = RDX;
}

#[test]
fn cet_and_bmi_encodings_execute_as_on_a_cpu_without_them() {
    // endbr64; rep bsf eax, ecx (tzcnt encoding); rep bsr edx, ecx (lzcnt); popcnt ebx, ecx
    let (mut cpu, mut mem) = setup(&[
        0xf3, 0x0f, 0x1e, 0xfa, 0xf3, 0x0f, 0xbc, 0xc1, 0xf3, 0x0f, 0xbd, 0xd1, 0xf3, 0x0f, 0xb8,
        0xd9,
    ]);
    cpu.gpr[RCX] = 0x0ff0;
    run(&mut cpu, &mut mem, 4);
    assert_eq!(cpu.gpr[RAX], 4);
    assert_eq!(cpu.gpr[RDX], 11);
    assert_eq!(cpu.gpr[RBX], 8);
    assert_eq!(cpu.rip, BASE + 16);
}
