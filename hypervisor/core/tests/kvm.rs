//! The kvm backend end to end: tiny hand-assembled 32-bit payloads, wrapped in a minimal
//! ELF, booted through `run_domain` on /dev/kvm.
//!
//! /dev/kvm on the machines this project is tested on is the PVM flavour, which emulates
//! every guest instruction at about 1 M instructions/s, so the payloads are a few dozen
//! instructions. A test that needs /dev/kvm prints `SKIPPED: no /dev/kvm` and passes when
//! it cannot be opened.
//!
//! The payloads (tests/common) were assembled with GNU as (`as --32`).

mod common;

use std::time::Instant;

use common::*;
use hypervisor_core::{
    Backend, DomainConfig, DomainExit, Error, run_domain, run_domain_with_stats,
};

fn config(tmp: &Tmp, payload: &[u8], vcpus: u32) -> DomainConfig {
    config_for(Backend::Kvm, tmp, payload, vcpus)
}

fn kvm_or_skip() -> bool {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        eprintln!("SKIPPED: no /dev/kvm");
        return false;
    }
    true
}

#[test]
fn xen_cpuid_hypercall_page_and_xen_version() {
    if !kvm_or_skip() {
        return;
    }
    let tmp = Tmp::new("xen");
    let cfg = config(&tmp, XEN_HYPERCALLS, 1);
    assert_eq!(run_domain(&cfg).expect("run_domain"), DomainExit::Reset);
}

#[test]
fn serial_then_acpi_s5_powers_off() {
    if !kvm_or_skip() {
        return;
    }
    let tmp = Tmp::new("s5");
    let cfg = config(&tmp, SERIAL_THEN_S5, 1);
    let exit = run_domain(&cfg).expect("run_domain");
    let com1 = std::fs::read_to_string(tmp.0.join("com1.log")).unwrap_or_default();
    assert_eq!(
        exit,
        DomainExit::PowerOff,
        "COM1 got {com1:?} (needs the 16550 and PIIX4 PM devices)"
    );
    assert_eq!(com1, "KKK");
}

#[test]
fn pio_round_trips_are_counted() {
    if !kvm_or_skip() {
        return;
    }
    let tmp = Tmp::new("pio");
    const N: u32 = 2000;
    let cfg = config(&tmp, &pio_loop(N), 1);
    let t = Instant::now();
    let (exit, stats) = run_domain_with_stats(&cfg).expect("run_domain");
    let total = t.elapsed();
    assert_eq!(exit, DomainExit::Reset);
    // N reads of 0x80 and the write to 0xcf9.
    assert_eq!(stats.exits.pio, N as u64 + 1);
    assert_eq!(stats.exits.mmio, 0);
    eprintln!(
        "{N} PIO round trips: {:?} in the guest, {:?} per exit ({total:?} with set-up)",
        stats.elapsed,
        stats.elapsed / (N + 1)
    );
}

#[test]
fn string_io_keeps_the_access_size() {
    if !kvm_or_skip() {
        return;
    }
    let tmp = Tmp::new("strio");
    let cfg = config(&tmp, &string_io(), 1);
    let (exit, stats) = run_domain_with_stats(&cfg).expect("run_domain");
    assert_eq!(exit, DomainExit::Reset);
    // rep outsl, in, rep insw, out: 4 to 6 exits (KVM may split a string instruction
    // into one exit per element; PVM does for one of the two here).
    assert!((4..=6).contains(&stats.exits.pio), "{:?}", stats.exits);
}

#[test]
fn triple_fault_is_a_crash_with_registers() {
    if !kvm_or_skip() {
        return;
    }
    let tmp = Tmp::new("triple");
    let cfg = config(&tmp, &UD2, 1);
    match run_domain(&cfg).expect("run_domain") {
        DomainExit::Crashed(msg) => {
            assert!(msg.contains("triple fault"), "{msg}");
            assert!(msg.contains("RIP=0x"), "{msg}");
            assert!(msg.contains("CS=0x8"), "{msg}");
            assert!(msg.contains("CR0=0x11"), "{msg}");
        }
        other => panic!("expected a crash, got {other:?}"),
    }
}

#[test]
fn application_processors_wait_and_still_stop() {
    if !kvm_or_skip() {
        return;
    }
    // vCPUs 1..3 sit in wait-for-SIPI inside KVM_RUN; the reset from vCPU 0 must still
    // get every thread out.
    let tmp = Tmp::new("smp");
    let cfg = config(&tmp, &pio_loop(10), 4);
    let t = Instant::now();
    let (exit, stats) = run_domain_with_stats(&cfg).expect("run_domain");
    assert_eq!(exit, DomainExit::Reset);
    assert_eq!(stats.exits.pio, 11);
    assert!(t.elapsed().as_secs() < 30);
}

#[test]
fn emu_backend_is_refused_clearly() {
    if hypervisor_emu::AVAILABLE {
        return; // tests/emu.rs runs it
    }
    let tmp = Tmp::new("emu");
    let mut cfg = config(&tmp, &UD2, 1);
    cfg.backend = Backend::Emu;
    match run_domain(&cfg) {
        Err(Error::BackendUnavailable(msg)) => assert_eq!(msg, hypervisor_emu::NOT_YET),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_inputs_are_errors_before_kvm() {
    let tmp = Tmp::new("bad");
    let mut cfg = config(&tmp, &UD2, 1);
    cfg.firmware = tmp.0.join("missing.elf");
    assert!(matches!(
        run_domain(&cfg),
        Err(Error::Io {
            what: "firmware",
            ..
        })
    ));
    std::fs::write(tmp.0.join("junk.elf"), b"not an elf").unwrap();
    cfg.firmware = tmp.0.join("junk.elf");
    match run_domain(&cfg) {
        Err(e @ Error::BadImage { .. }) => assert!(e.to_string().contains("junk.elf")),
        other => panic!("{other:?}"),
    }
    let mut cfg = config(&tmp, &UD2, 1);
    cfg.memory_mib = 4;
    assert!(matches!(run_domain(&cfg), Err(Error::Config(_))));
    let mut cfg = config(&tmp, &UD2, 1);
    cfg.cmdline = "x".repeat(5000);
    assert!(matches!(run_domain(&cfg), Err(Error::Config(_))));
    let mut cfg = config(&tmp, &UD2, 1);
    let big = tmp.0.join("big");
    std::fs::write(&big, vec![0u8; 40 << 20]).unwrap();
    cfg.kernel = Some(big);
    match run_domain(&cfg) {
        Err(Error::BadImage { what, why, .. }) => {
            assert_eq!(what, "kernel");
            assert!(why.contains("does not fit"), "{why}");
        }
        other => panic!("{other:?}"),
    }
}
