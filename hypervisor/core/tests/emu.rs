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
