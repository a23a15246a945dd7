//! The emu backend end to end: the same hand-assembled 32-bit PVH payloads as the kvm
//! tests (tests/common), plus timer and halt payloads, booted through `run_domain` on the
//! software CPU. No /dev/kvm needed. Until the CPU core exists
//! (`hypervisor_emu::AVAILABLE`), each test prints `SKIPPED: ...` and passes.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hypervisor_core::{
    Backend, DomainConfig, DomainExit, Error, RunStats, run_domain, run_domain_with_stats,
};

fn emu_or_skip(test: &str) -> bool {
    if !hypervisor_emu::AVAILABLE {
        eprintln!("SKIPPED: {test}: the emu CPU core is not available in this build");
        return false;
    }
    true
}

fn config(tmp: &Tmp, payload: &[u8], vcpus: u32) -> DomainConfig {
    config_for(Backend::Emu, tmp, payload, vcpus)
}

fn deterministic(tmp: &Tmp, payload: &[u8]) -> DomainConfig {
    DomainConfig {
        deterministic: true,
        ..config(tmp, payload, 1)
    }
}

fn com1(tmp: &Tmp) -> String {
    std::fs::read_to_string(tmp.0.join("com1.log")).unwrap_or_default()
}

fn run(cfg: &DomainConfig) -> (DomainExit, RunStats) {
    run_domain_with_stats(cfg).expect("run_domain")
}

#[test]
fn serial_then_acpi_s5_powers_off() {
    if !emu_or_skip("serial_then_acpi_s5_powers_off") {
        return;
    }
    let tmp = Tmp::new("s5");
    let (exit, stats) = run(&config(&tmp, SERIAL_THEN_S5, 1));
    assert_eq!(exit, DomainExit::PowerOff, "COM1 got {:?}", com1(&tmp));
    assert_eq!(com1(&tmp), "KKK");
    assert!(stats.instructions > 10, "{stats:?}");
}

#[test]
fn xen_cpuid_vmcall_hypercall_page_and_xen_version() {
    if !emu_or_skip("xen_cpuid_vmcall_hypercall_page_and_xen_version") {
        return;
    }
    let tmp = Tmp::new("xen");
    let (exit, _) = run(&config(&tmp, XEN_HYPERCALLS, 1));
    assert_eq!(exit, DomainExit::Reset);
}

#[test]
fn pio_loop_is_counted_and_deterministic() {
    if !emu_or_skip("pio_loop_is_counted_and_deterministic") {
        return;
    }
    const N: u64 = 5000;
    let tmp = Tmp::new("pio");
    let cfg = deterministic(&tmp, &pio_loop(N as u32));
    let (exit, a) = run(&cfg);
    assert_eq!(exit, DomainExit::Reset);
    assert_eq!(a.exits.pio, N + 1);
    assert_eq!(a.exits.mmio, 0);
    // mov; N x (in, dec, jnz); mov, mov, out (the reset ends the slice after the OUT).
    assert!(
        (3 * N + 3..=3 * N + 4).contains(&a.instructions),
        "{} instructions",
        a.instructions
    );
    let (_, b) = run(&cfg);
    assert_eq!(a.instructions, b.instructions, "deterministic runs differ");
}

#[test]
fn string_io_keeps_the_access_size() {
    if !emu_or_skip("string_io_keeps_the_access_size") {
        return;
    }
    let tmp = Tmp::new("strio");
    let (exit, stats) = run(&config(&tmp, &string_io(), 1));
    assert_eq!(exit, DomainExit::Reset);
    assert!((4..=6).contains(&stats.exits.pio), "{:?}", stats.exits);
}

#[test]
fn triple_fault_is_a_crash_with_registers() {
    if !emu_or_skip("triple_fault_is_a_crash_with_registers") {
        return;
    }
    let tmp = Tmp::new("triple");
    match run_domain(&config(&tmp, &UD2, 1)).expect("run_domain") {
        DomainExit::Crashed(msg) => {
            assert!(msg.starts_with("vCPU 0: CPU shutdown: "), "{msg}");
            assert!(msg.contains("triple fault"), "{msg}");
            assert!(msg.to_lowercase().contains("rip"), "{msg}");
        }
        other => panic!("expected a crash, got {other:?}"),
    }
}

#[test]
fn halt_with_interrupts_off_is_a_clean_crash() {
    if !emu_or_skip("halt_with_interrupts_off_is_a_clean_crash") {
        return;
    }
    let tmp = Tmp::new("clihlt");
    let t = Instant::now();
    match run_domain(&config(&tmp, &CLI_HLT, 1)).expect("run_domain") {
        DomainExit::Crashed(msg) => {
            assert!(msg.contains("halted with interrupts disabled"), "{msg}");
        }
        other => panic!("expected a crash, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[test]
fn halt_with_nothing_to_wake_it_is_a_clean_crash() {
    if !emu_or_skip("halt_with_nothing_to_wake_it_is_a_clean_crash") {
        return;
    }
    let tmp = Tmp::new("stihlt");
    for cfg in [deterministic(&tmp, &STI_HLT), config(&tmp, &STI_HLT, 1)] {
        let t = Instant::now();
        match run_domain(&cfg).expect("run_domain") {
            DomainExit::Crashed(msg) => {
                assert!(msg.contains("no timer is armed"), "{msg}");
            }
            other => panic!("expected a crash, got {other:?}"),
        }
        // Deterministic: at once; host time: after the grace period.
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    }
}

/// 100 PIT ticks at 1 kHz: about 100 ms of host time, and in deterministic mode the
/// same instruction count every run (HLT skips guest time, so it is also fast).
#[test]
fn pit_irq0_wakes_hlt_on_host_and_deterministic_time() {
    if !emu_or_skip("pit_irq0_wakes_hlt_on_host_and_deterministic_time") {
        return;
    }
    let tmp = Tmp::new("pit");
    let (exit, host) = run(&config(&tmp, PIT_TICKS, 1));
    assert_eq!(exit, DomainExit::Reset, "COM1 {:?}", com1(&tmp));
    assert_eq!(com1(&tmp), "T");
    assert!(
        host.elapsed >= Duration::from_millis(90),
        "100 ticks at 1 kHz took {:?}",
        host.elapsed
    );
    let tmp = Tmp::new("pit-det");
    let cfg = deterministic(&tmp, PIT_TICKS);
    let (exit, a) = run(&cfg);
    assert_eq!(exit, DomainExit::Reset);
    assert_eq!(com1(&tmp), "T");
    let (_, b) = run(&cfg);
    assert_eq!(a.instructions, b.instructions);
    assert_eq!(a.exits, b.exits);
}

#[test]
fn lapic_timer_wakes_hlt_on_host_and_deterministic_time() {
    if !emu_or_skip("lapic_timer_wakes_hlt_on_host_and_deterministic_time") {
        return;
    }
    let tmp = Tmp::new("lapic");
    let (exit, host) = run(&config(&tmp, LAPIC_TICKS, 1));
    assert_eq!(exit, DomainExit::Reset, "COM1 {:?}", com1(&tmp));
    assert_eq!(com1(&tmp), "A");
    assert!(
        host.elapsed >= Duration::from_millis(45),
        "{:?}",
        host.elapsed
    );
    let tmp = Tmp::new("lapic-det");
    let cfg = deterministic(&tmp, LAPIC_TICKS);
    let (exit, a) = run(&cfg);
    assert_eq!(exit, DomainExit::Reset);
    let (_, b) = run(&cfg);
    assert_eq!(a.instructions, b.instructions);
}

/// RTC ticks come from the device timers: on host time from the timer thread, so a
/// halted vCPU must be woken by the interrupt itself (50 ticks at 1024 Hz take ~50 ms;
/// a missed wake-up would cost the 100 ms halt re-check per tick); on deterministic time
/// from the vCPU thread at exact instruction counts.
#[test]
fn rtc_interrupt_wakes_a_halted_vcpu() {
    if !emu_or_skip("rtc_interrupt_wakes_a_halted_vcpu") {
        return;
    }
    let tmp = Tmp::new("rtc");
    let (exit, host) = run(&config(&tmp, RTC_TICKS, 1));
    assert_eq!(exit, DomainExit::Reset, "COM1 {:?}", com1(&tmp));
    assert_eq!(com1(&tmp), "R");
    assert!(
        host.elapsed >= Duration::from_millis(40) && host.elapsed < Duration::from_millis(2500),
        "50 RTC ticks at 1024 Hz took {:?}",
        host.elapsed
    );
    let tmp = Tmp::new("rtc-det");
    let cfg = deterministic(&tmp, RTC_TICKS);
    let (exit, a) = run(&cfg);
    assert_eq!(exit, DomainExit::Reset, "COM1 {:?}", com1(&tmp));
    let (_, b) = run(&cfg);
    assert_eq!(a.instructions, b.instructions);
    assert_eq!(a.exits, b.exits);
}

#[test]
fn stop_on_output_stops_at_the_same_instruction() {
    if !emu_or_skip("stop_on_output_stops_at_the_same_instruction") {
        return;
    }
    let tmp = Tmp::new("stop");
    let cfg = DomainConfig {
        stop_on_output: Some("KK".into()),
        ..deterministic(&tmp, SERIAL_THEN_S5)
    };
    let (exit, a) = run(&cfg);
    assert_eq!(exit, DomainExit::OutputMatched);
    assert_eq!(com1(&tmp), "KK");
    let (_, b) = run(&cfg);
    assert_eq!(a.instructions, b.instructions);
}

#[test]
fn application_processors_wait_and_still_stop() {
    if !emu_or_skip("application_processors_wait_and_still_stop") {
        return;
    }
    let tmp = Tmp::new("smp");
    let t = Instant::now();
    let (exit, stats) = run(&config(&tmp, &pio_loop(10), 4));
    assert_eq!(exit, DomainExit::Reset);
    assert_eq!(stats.exits.pio, 11);
    assert!(t.elapsed() < Duration::from_secs(30));
}

/// SMP: the BSP copies a real-mode trampoline to 0x7000, enables its LAPIC, sends INIT,
/// SIPI(7), SIPI(7) to APIC 1, then both CPUs run N = 200000 rounds of `lock xadd` on a
/// shared counter and of a spinlock (`lock cmpxchg` acquire, plain `mov` release)
/// around a non-atomic increment of a second counter. The AP sets a flag and halts
/// (`cli; hlt`); the BSP waits for the flag and resets (0xcf9) if both counters are
/// exactly 2N, else runs into `ud2` (a crash, EAX/EBX = the counters). Bounded spins.
/// Built from (GNU as, `ld -Ttext 0x100000`, `objcopy -O binary`):
//     N = 200000
//     SPIN = 0x10000000
//     .code32
//     .globl _start
//     _start:
//         cld
//         mov $tramp, %esi
//         mov $0x7000, %edi
//         mov $(tramp_end - tramp), %ecx
//         rep movsb
//         xor %eax, %eax
//         mov %eax, 0x6000
//         mov %eax, 0x6004
//         mov %eax, 0x6008
//         mov %eax, 0x600c
//         movl $0x1ff, 0xfee000f0
//         movl $0x01000000, 0xfee00310
//         movl $0x00004500, 0xfee00300
//         movl $0x00004607, 0xfee00300
//         movl $0x00004607, 0xfee00300
//         mov $N, %ecx
//     loop:
//         mov $1, %eax
//         lock xadd %eax, 0x6000
//         mov $SPIN, %edx
//     acq:
//         xor %eax, %eax
//         mov $1, %ebx
//         lock cmpxchg %ebx, 0x6008
//         je got
//         pause
//         dec %edx
//         jnz acq
//         jmp fail
//     got:
//         mov 0x600c, %eax
//         inc %eax
//         mov %eax, 0x600c
//         movl $0, 0x6008
//         dec %ecx
//         jnz loop
//         mov $SPIN, %edx
//     wait:
//         cmpl $1, 0x6004
//         je check
//         pause
//         dec %edx
//         jnz wait
//         jmp fail
//     check:
//         cmpl $(2*N), 0x6000
//         jne fail
//         cmpl $(2*N), 0x600c
//         jne fail
//         mov $6, %al
//         mov $0xcf9, %dx
//         out %al, %dx
//     fail:
//         mov 0x6000, %eax
//         mov 0x600c, %ebx
//         ud2
//     tramp:
//     .code16
//         cli
//         xor %ax, %ax
//         mov %ax, %ds
//         mov $N, %ecx
//     1:  mov $1, %eax
//         lock xadd %eax, 0x6000
//         mov $SPIN, %edx
//     2:  xor %eax, %eax
//         mov $1, %ebx
//         lock cmpxchg %ebx, 0x6008
//         je 3f
//         pause
//         dec %edx
//         jnz 2b
//         jmp 5f
//     3:  mov 0x600c, %eax
//         inc %eax
//         mov %eax, 0x600c
//         movl $0, 0x6008
//         dec %ecx
//         jnz 1b
//         movl $1, 0x6004
//     5:  hlt
//         jmp 5b
//     tramp_end:
const SMP_COUNTERS: &[u8] = &[
    0xfc, 0xbe, 0xe2, 0x00, 0x10, 0x00, 0xbf, 0x00, 0x70, 0x00, 0x00, 0xb9, 0x5b, 0x00, 0x00, 0x00,
    0xf3, 0xa4, 0x31, 0xc0, 0xa3, 0x00, 0x60, 0x00, 0x00, 0xa3, 0x04, 0x60, 0x00, 0x00, 0xa3, 0x08,
    0x60, 0x00, 0x00, 0xa3, 0x0c, 0x60, 0x00, 0x00, 0xc7, 0x05, 0xf0, 0x00, 0xe0, 0xfe, 0xff, 0x01,
    0x00, 0x00, 0xc7, 0x05, 0x10, 0x03, 0xe0, 0xfe, 0x00, 0x00, 0x00, 0x01, 0xc7, 0x05, 0x00, 0x03,
    0xe0, 0xfe, 0x00, 0x45, 0x00, 0x00, 0xc7, 0x05, 0x00, 0x03, 0xe0, 0xfe, 0x07, 0x46, 0x00, 0x00,
    0xc7, 0x05, 0x00, 0x03, 0xe0, 0xfe, 0x07, 0x46, 0x00, 0x00, 0xb9, 0x40, 0x0d, 0x03, 0x00, 0xb8,
    0x01, 0x00, 0x00, 0x00, 0xf0, 0x0f, 0xc1, 0x05, 0x00, 0x60, 0x00, 0x00, 0xba, 0x00, 0x00, 0x00,
    0x10, 0x31, 0xc0, 0xbb, 0x01, 0x00, 0x00, 0x00, 0xf0, 0x0f, 0xb1, 0x1d, 0x08, 0x60, 0x00, 0x00,
    0x74, 0x07, 0xf3, 0x90, 0x4a, 0x75, 0xea, 0xeb, 0x4c, 0xa1, 0x0c, 0x60, 0x00, 0x00, 0x40, 0xa3,
    0x0c, 0x60, 0x00, 0x00, 0xc7, 0x05, 0x08, 0x60, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x49, 0x75,
    0xbe, 0xba, 0x00, 0x00, 0x00, 0x10, 0x83, 0x3d, 0x04, 0x60, 0x00, 0x00, 0x01, 0x74, 0x07, 0xf3,
    0x90, 0x4a, 0x75, 0xf2, 0xeb, 0x1f, 0x81, 0x3d, 0x00, 0x60, 0x00, 0x00, 0x80, 0x1a, 0x06, 0x00,
    0x75, 0x13, 0x81, 0x3d, 0x0c, 0x60, 0x00, 0x00, 0x80, 0x1a, 0x06, 0x00, 0x75, 0x07, 0xb0, 0x06,
    0x66, 0xba, 0xf9, 0x0c, 0xee, 0xa1, 0x00, 0x60, 0x00, 0x00, 0x8b, 0x1d, 0x0c, 0x60, 0x00, 0x00,
    0x0f, 0x0b, 0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x66, 0xb9, 0x40, 0x0d, 0x03, 0x00, 0x66, 0xb8, 0x01,
    0x00, 0x00, 0x00, 0x66, 0xf0, 0x0f, 0xc1, 0x06, 0x00, 0x60, 0x66, 0xba, 0x00, 0x00, 0x00, 0x10,
    0x66, 0x31, 0xc0, 0x66, 0xbb, 0x01, 0x00, 0x00, 0x00, 0x66, 0xf0, 0x0f, 0xb1, 0x1e, 0x08, 0x60,
    0x74, 0x08, 0xf3, 0x90, 0x66, 0x4a, 0x75, 0xe8, 0xeb, 0x20, 0x66, 0xa1, 0x0c, 0x60, 0x66, 0x40,
    0x66, 0xa3, 0x0c, 0x60, 0x66, 0xc7, 0x06, 0x08, 0x60, 0x00, 0x00, 0x00, 0x00, 0x66, 0x49, 0x75,
    0xbc, 0x66, 0xc7, 0x06, 0x04, 0x60, 0x01, 0x00, 0x00, 0x00, 0xf4, 0xeb, 0xfd,
];

fn smp_counters(vcpus: u32) {
    let tmp = Tmp::new(&format!("smp-lock-{vcpus}"));
    let t = Instant::now();
    let (exit, stats) = run(&config(&tmp, SMP_COUNTERS, vcpus));
    assert_eq!(exit, DomainExit::Reset, "{stats:?}");
    // Both CPUs ran their loops (about 11 instructions a round each).
    assert!(stats.instructions > 2 * 200_000 * 10, "{stats:?}");
    assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());
}

#[test]
fn init_sipi_starts_an_ap_and_locked_instructions_are_atomic() {
    if !emu_or_skip("init_sipi_starts_an_ap_and_locked_instructions_are_atomic") {
        return;
    }
    smp_counters(2);
}

/// A third vCPU never gets a SIPI: it keeps waiting, and the domain still stops.
#[test]
fn an_ap_without_sipi_keeps_waiting_and_the_domain_stops() {
    if !emu_or_skip("an_ap_without_sipi_keeps_waiting_and_the_domain_stops") {
        return;
    }
    smp_counters(3);
}

#[test]
fn deterministic_refuses_several_vcpus() {
    let tmp = Tmp::new("det-smp");
    let cfg = DomainConfig {
        deterministic: true,
        ..config(&tmp, &UD2, 2)
    };
    match run_domain(&cfg) {
        Err(Error::Config(msg)) => assert!(msg.contains("vcpus = 1"), "{msg}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn deterministic_needs_emu() {
    let tmp = Tmp::new("det-kvm");
    let cfg = DomainConfig {
        deterministic: true,
        ..config_for(Backend::Kvm, &tmp, &UD2, 1)
    };
    match run_domain(&cfg) {
        Err(Error::Config(msg)) => assert!(msg.contains("emu"), "{msg}"),
        other => panic!("{other:?}"),
    }
}

/// A jump into MMIO: the CPU fetches from whatever answers there (as hardware does),
/// with no host crash and no hang. Unbacked PCI-hole addresses read all ones (`ff ff` is
/// #UD; with no IDT that escalates to a triple fault); the LAPIC page's registers decode
/// as instructions until execution runs off its end into the unbacked space.
#[test]
fn jumps_into_mmio_end_in_a_clean_stop() {
    if !emu_or_skip("jumps_into_mmio_end_in_a_clean_stop") {
        return;
    }
    for target in [0xe000_0000u32, 0xfee0_0000, 0xfec0_0000] {
        // mov eax, target; jmp eax
        let mut code = vec![0xb8];
        code.extend_from_slice(&target.to_le_bytes());
        code.extend_from_slice(&[0xff, 0xe0]);
        let tmp = Tmp::new("jmp-mmio");
        let t = Instant::now();
        match run(&deterministic(&tmp, &code)).0 {
            DomainExit::Crashed(msg) => {
                eprintln!("{target:#x}: {msg}");
                assert!(msg.contains("vCPU 0"), "{target:#x}: {msg}")
            }
            other => panic!("{target:#x}: expected a clean crash, got {other:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(30), "{target:#x}");
    }
}
