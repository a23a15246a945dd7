//! Stubdom mode end to end on the emu backend, with hand-assembled 32-bit stub payloads
//! (`as --32`; listings next to the bytes) standing in for the `chassis-stubdom`
//! unikernel: a stub that serves vCPU 0's ioreq slot by polling, one that touches
//! stub-physical memory outside its map, one that hangs, one that never becomes ready,
//! one that crashes with a message. When the real image is available
//! (`$CHASSIS_STUBDOM`), a guest also runs against it.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use hypervisor_core::{
    Backend, DomainConfig, DomainExit, Error, RunStats, StubdomConfig, run_domain_with_stats,
};

fn emu_or_skip(test: &str) -> bool {
    if !hypervisor_emu::AVAILABLE {
        eprintln!("SKIPPED: {test}: the emu CPU core is not available in this build");
        return false;
    }
    true
}

/// Serve vCPU 0's slot by polling (IF = 0 from the PVH entry; `hlt` parks until an
/// event): a read answers `addr ^ 0xa5`; a write to port 0xf4 is `Shutdown(data)`;
/// then IORESP_READY and `IoreqDone(0)`. Doorbell: EAX = 0x40, EBX = op, ECX, EDX, ESI.
const SERVE_SLOT0: &[u8] = &[
    0xbc, 0x00, 0x00, 0x18, 0x00, //             mov $0x180000,%esp
    0xb8, 0x40, 0x00, 0x00, 0x00, //             mov $0x40,%eax
    0xbb, 0x01, 0x00, 0x00, 0x00, //             mov $0x1,%ebx (Ready)
    0x0f, 0x01, 0xc1, //                         vmcall
    0xa0, 0x1e, 0x00, 0x00, 0x80, //       wait: mov 0x8000001e,%al
    0x24, 0x0f, //                               and $0xf,%al
    0x3c, 0x01, //                               cmp $0x1,%al
    0x74, 0x03, //                               je serve
    0xf4, //                                     hlt
    0xeb, 0xf2, //                               jmp wait
    0xa0, 0x1e, 0x00, 0x00, 0x80, //      serve: mov 0x8000001e,%al
    0xa8, 0x20, //                               test $0x20,%al
    0x74, 0x1b, //                               je write
    0xa1, 0x00, 0x00, 0x00, 0x80, //             mov 0x80000000,%eax
    0x35, 0xa5, 0x00, 0x00, 0x00, //             xor $0xa5,%eax
    0xa3, 0x08, 0x00, 0x00, 0x80, //             mov %eax,0x80000008
    0xc7, 0x05, 0x0c, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, // movl $0,0x8000000c
    0xeb, 0x1f, //                               jmp done
    0xa1, 0x00, 0x00, 0x00, 0x80, //      write: mov 0x80000000,%eax
    0x3d, 0xf4, 0x00, 0x00, 0x00, //             cmp $0xf4,%eax
    0x75, 0x13, //                               jne done
    0xb8, 0x40, 0x00, 0x00, 0x00, //             mov $0x40,%eax
    0xbb, 0x09, 0x00, 0x00, 0x00, //             mov $0x9,%ebx (Shutdown)
    0x8b, 0x0d, 0x08, 0x00, 0x00, 0x80, //       mov 0x80000008,%ecx
    0x0f, 0x01, 0xc1, //                         vmcall
    0xa0, 0x1e, 0x00, 0x00, 0x80, //       done: mov 0x8000001e,%al
    0x24, 0xf0, //                               and $0xf0,%al
    0x0c, 0x03, //                               or $0x3,%al
    0xa2, 0x1e, 0x00, 0x00, 0x80, //             mov %al,0x8000001e
    0xb8, 0x40, 0x00, 0x00, 0x00, //             mov $0x40,%eax
    0xbb, 0x02, 0x00, 0x00, 0x00, //             mov $0x2,%ebx (IoreqDone)
    0x31, 0xc9, //                               xor %ecx,%ecx
    0x0f, 0x01, 0xc1, //                         vmcall
    0xeb, 0x90, //                               jmp wait
];

/// An interrupt-driven stub (32-bit, flat GDT, an IDT gate for the upcall vector 0xf3):
/// Ready, `sti; hlt` forever; the upcall handler clears `upcall_pending`, takes the
/// selector and pending word with `xchg` (atomics on the shared page), and serves vCPU
/// 0's slot: reads answer `addr ^ 0x5a`, a write to port 0xf4 is `Shutdown(data)`; then
/// `iret`. Assembled with `as --32` + `ld -Ttext=0x100000` from:
///
/// ```text
/// _start: mov $0x180000,%esp; lgdt gdtr; lidt idtr
///         mov $0x40,%eax; mov $1,%ebx; vmcall            # Ready
///         sti; 1: hlt; jmp 1b
/// handler: movb $0,0x80002108                            # upcall_pending
///         xor %eax,%eax; xchg %eax,0x80002100            # selector
///         xor %eax,%eax; xchg %eax,0x80002000            # pending ports 0..31
///         movb 0x8000001e,%al; and $0xf,%al; cmp $1,%al; jne out
///         movb 0x8000001e,%al; testb $0x20,%al; jz wr
///         movl 0x80000000,%eax; xor $0x5a,%eax; movl %eax,0x80000008
///         movl $0,0x8000000c; jmp done
/// wr:     movl 0x80000000,%eax; cmp $0xf4,%eax; jne done
///         mov $0x40,%eax; mov $9,%ebx; movl 0x80000008,%ecx; vmcall   # Shutdown
/// done:   movb 0x8000001e,%al; and $0xf0,%al; or $3,%al; movb %al,0x8000001e
///         mov $0x40,%eax; mov $2,%ebx; xor %ecx,%ecx; vmcall          # IoreqDone(0)
/// out:    iret
/// gdt (0xa8): null, code32 0x08, data32 0x10; gdtr (0xc0); idtr (0xc6); idt (0xd0)
/// ```
fn irq_stub() -> Vec<u8> {
    #[rustfmt::skip]
    let mut p = vec![
        0xbc, 0x00, 0x00, 0x18, 0x00, 0x0f, 0x01, 0x15, 0xc0, 0x00, 0x10, 0x00, 0x0f, 0x01, 0x1d, 0xc6,
        0x00, 0x10, 0x00, 0xb8, 0x40, 0x00, 0x00, 0x00, 0xbb, 0x01, 0x00, 0x00, 0x00, 0x0f, 0x01, 0xc1,
        0xfb, 0xf4, 0xeb, 0xfd, 0xc6, 0x05, 0x08, 0x21, 0x00, 0x80, 0x00, 0x31, 0xc0, 0x87, 0x05, 0x00,
        0x21, 0x00, 0x80, 0x31, 0xc0, 0x87, 0x05, 0x00, 0x20, 0x00, 0x80, 0xa0, 0x1e, 0x00, 0x00, 0x80,
        0x24, 0x0f, 0x3c, 0x01, 0x75, 0x5e, 0xa0, 0x1e, 0x00, 0x00, 0x80, 0xa8, 0x20, 0x74, 0x19, 0xa1,
        0x00, 0x00, 0x00, 0x80, 0x83, 0xf0, 0x5a, 0xa3, 0x08, 0x00, 0x00, 0x80, 0xc7, 0x05, 0x0c, 0x00,
        0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0xeb, 0x1f, 0xa1, 0x00, 0x00, 0x00, 0x80, 0x3d, 0xf4, 0x00,
        0x00, 0x00, 0x75, 0x13, 0xb8, 0x40, 0x00, 0x00, 0x00, 0xbb, 0x09, 0x00, 0x00, 0x00, 0x8b, 0x0d,
        0x08, 0x00, 0x00, 0x80, 0x0f, 0x01, 0xc1, 0xa0, 0x1e, 0x00, 0x00, 0x80, 0x24, 0xf0, 0x0c, 0x03,
        0xa2, 0x1e, 0x00, 0x00, 0x80, 0xb8, 0x40, 0x00, 0x00, 0x00, 0xbb, 0x02, 0x00, 0x00, 0x00, 0x31,
        0xc9, 0x0f, 0x01, 0xc1, 0xcf, 0x8d, 0x76, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0xff, 0xff, 0x00, 0x00, 0x00, 0x9a, 0xcf, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x92, 0xcf, 0x00,
        0x17, 0x00, 0xa8, 0x00, 0x10, 0x00, 0xff, 0x07, 0xd0, 0x00, 0x10, 0x00, 0x8d, 0x74, 0x26, 0x00,
    ];
    assert_eq!(p.len(), 0xd0);
    // The IDT: one interrupt gate, vector 0xf3 -> handler 0x100024, CS 0x08.
    let mut idt = vec![0u8; 256 * 8];
    idt[0xf3 * 8..0xf3 * 8 + 8].copy_from_slice(&[0x24, 0x00, 0x08, 0x00, 0x00, 0x8e, 0x10, 0x00]);
    p.extend_from_slice(&idt);
    p
}

/// The guest for [`irq_stub`]: `in $0x70` must read 0x70 ^ 0x5a = 0x2a, then port 0xf4.
const GUEST_IRQ: &[u8] = &[
    0xe4, 0x70, 0x3c, 0x2a, 0x75, 0x04, 0x31, 0xc0, 0xe6, 0xf4, 0x0f, 0x0b,
];

/// Ready, then a read of stub-physical 0x40000000 (nothing is there).
const TOUCH_OUTSIDE: &[u8] = &[
    0xb8, 0x40, 0x00, 0x00, 0x00, //             mov $0x40,%eax
    0xbb, 0x01, 0x00, 0x00, 0x00, //             mov $0x1,%ebx (Ready)
    0x0f, 0x01, 0xc1, //                         vmcall
    0xa1, 0x00, 0x00, 0x00, 0x40, //             mov 0x40000000,%eax
    0xeb, 0xfe, //                               jmp .
];

/// Ready, then spin forever (never answers).
const HANG: &[u8] = &[
    0xb8, 0x40, 0x00, 0x00, 0x00, //             mov $0x40,%eax
    0xbb, 0x01, 0x00, 0x00, 0x00, //             mov $0x1,%ebx (Ready)
    0x0f, 0x01, 0xc1, //                         vmcall
    0xeb, 0xfe, //                               jmp .
];

/// Crash("boom") (EBX = 13, ECX = 0x100100, EDX = 4).
fn crash_payload() -> Vec<u8> {
    let mut p = vec![
        0xb8, 0x40, 0x00, 0x00, 0x00, //         mov $0x40,%eax
        0xbb, 0x0d, 0x00, 0x00, 0x00, //         mov $0xd,%ebx (Crash)
        0xb9, 0x00, 0x01, 0x10, 0x00, //         mov $0x100100,%ecx
        0xba, 0x04, 0x00, 0x00, 0x00, //         mov $0x4,%edx
        0x0f, 0x01, 0xc1, //                     vmcall
        0xeb, 0xfe, //                           jmp .
    ];
    p.resize(0x100, 0xf4);
    p.extend_from_slice(b"boom");
    p
}

/// The guest: `in $0x70` must read 0x70 ^ 0xa5 = 0xd5, then `out %al,$0xf4` with 0
/// (the stub turns it into a power-off); anything else runs into ud2.
const GUEST: &[u8] = &[
    0xe4, 0x70, //                               in $0x70,%al
    0x3c, 0xd5, //                               cmp $0xd5,%al
    0x75, 0x04, //                               jne fail
    0x31, 0xc0, //                               xor %eax,%eax
    0xe6, 0xf4, //                               out %al,$0xf4
    0x0f, 0x0b, //                         fail: ud2
];

/// `jmp .`: a guest that only waits.
const GUEST_SPIN: &[u8] = &[0xeb, 0xfe];

fn stub_config(tmp: &Tmp, guest: &[u8], stub: &[u8]) -> DomainConfig {
    let img = tmp.0.join("stub.elf");
    std::fs::write(&img, elf(stub)).unwrap();
    let mut sc = StubdomConfig::new(img);
    sc.response_timeout = Duration::from_secs(1);
    DomainConfig {
        stubdom: Some(sc),
        ..config_for(Backend::Emu, tmp, guest, 1)
    }
}

fn run(cfg: &DomainConfig) -> (DomainExit, RunStats) {
    run_domain_with_stats(cfg).expect("run_domain")
}

fn crashed(exit: DomainExit) -> String {
    match exit {
        DomainExit::Crashed(m) => m,
        e => panic!("expected a crash, got {e:?}"),
    }
}

#[test]
fn guest_requests_reach_the_stub_and_back() {
    if !emu_or_skip("guest_requests_reach_the_stub_and_back") {
        return;
    }
    let tmp = Tmp::new("sd-serve");
    let (exit, stats) = run(&stub_config(&tmp, GUEST, SERVE_SLOT0));
    assert_eq!(exit, DomainExit::PowerOff, "{stats:?}");
    // The power-off may stop the domain before the second answer is taken.
    assert!((1..=2).contains(&stats.stub_requests), "{stats:?}");
    assert_eq!(stats.exits.pio, 2);
    assert!(stats.stub_instructions > 10, "{stats:?}");
    assert_eq!(stats.stub_ram_bytes, 4 << 20);
    // The image page, the start info, the hypercall page (and the stack: untouched).
    assert!((3..=4).contains(&stats.stub_ram_pages_touched), "{stats:?}");
    // Deterministic mode: the same, all synchronous.
    let cfg = DomainConfig {
        deterministic: true,
        ..stub_config(&tmp, GUEST, SERVE_SLOT0)
    };
    let (exit, d) = run(&cfg);
    assert_eq!(exit, DomainExit::PowerOff);
    assert_eq!(d.instructions, 5, "in, cmp, jne, xor, out");
}

#[test]
fn an_interrupt_driven_stub_serves_through_the_upcall() {
    if !emu_or_skip("an_interrupt_driven_stub_serves_through_the_upcall") {
        return;
    }
    let tmp = Tmp::new("sd-irq");
    for det in [false, true] {
        let cfg = DomainConfig {
            deterministic: det,
            ..stub_config(&tmp, GUEST_IRQ, &irq_stub())
        };
        let (exit, stats) = run(&cfg);
        assert_eq!(exit, DomainExit::PowerOff, "{stats:?}");
        assert!(stats.stub_requests >= 1, "{stats:?}");
    }
}

#[test]
fn an_access_outside_the_stub_memory_stops_the_domain_with_a_report() {
    if !emu_or_skip("an_access_outside_the_stub_memory_stops_the_domain_with_a_report") {
        return;
    }
    let tmp = Tmp::new("sd-outside");
    let t = Instant::now();
    let (exit, _) = run(&stub_config(&tmp, GUEST_SPIN, TOUCH_OUTSIDE));
    let m = crashed(exit);
    assert!(
        m.starts_with(
            "stub domain 'test-dm' accessed stub-physical 0x40000000 outside its memory (read)"
        ),
        "{m}"
    );
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_hung_stub_times_the_guest_out() {
    if !emu_or_skip("a_hung_stub_times_the_guest_out") {
        return;
    }
    let tmp = Tmp::new("sd-hang");
    let t = Instant::now();
    let (exit, _) = run(&stub_config(&tmp, GUEST, HANG));
    assert_eq!(
        crashed(exit),
        "stub domain 'test-dm' did not answer vCPU 0's port request within 1 s"
    );
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(10),
        "{took:?}"
    );
}

#[test]
fn a_stub_that_never_gets_ready_stops_the_domain() {
    if !emu_or_skip("a_stub_that_never_gets_ready_stops_the_domain") {
        return;
    }
    let tmp = Tmp::new("sd-notready");
    // cli is the PVH entry state: hlt parks for good.
    let (exit, stats) = run(&stub_config(&tmp, GUEST, &[0xf4, 0xeb, 0xfd]));
    assert_eq!(
        crashed(exit),
        "stub domain 'test-dm' did not become ready within 1 s"
    );
    assert_eq!(stats.instructions, 0, "the guest never ran");
}

#[test]
fn a_stub_crash_is_reported_with_its_message() {
    if !emu_or_skip("a_stub_crash_is_reported_with_its_message") {
        return;
    }
    let tmp = Tmp::new("sd-crash");
    let (exit, _) = run(&stub_config(&tmp, GUEST, &crash_payload()));
    assert_eq!(crashed(exit), "stub domain 'test-dm' crashed: boom");
}

#[test]
fn bad_stub_configs_are_refused() {
    let tmp = Tmp::new("sd-config");
    let mut cfg = stub_config(&tmp, GUEST, HANG);
    cfg.stubdom.as_mut().unwrap().memory_kb = 1024;
    match run_domain_with_stats(&cfg) {
        Err(Error::Config(m)) => assert!(m.contains("at least 2048 KiB"), "{m}"),
        r => panic!("{r:?}"),
    }
    cfg.stubdom.as_mut().unwrap().memory_kb = 4097;
    assert!(matches!(run_domain_with_stats(&cfg), Err(Error::Config(_))));
    cfg.stubdom.as_mut().unwrap().memory_kb = 4096;
    cfg.stubdom.as_mut().unwrap().image = tmp.0.join("missing");
    assert!(matches!(run_domain_with_stats(&cfg), Err(Error::Io { .. })));
    let img = tmp.0.join("notelf");
    std::fs::write(&img, b"not an ELF").unwrap();
    cfg.stubdom.as_mut().unwrap().image = img;
    assert!(matches!(
        run_domain_with_stats(&cfg),
        Err(Error::BadImage { .. })
    ));
}

/// On kvm the stub domain is a second, bare KVM VM; one that never reports ready is
/// given up on exactly like on emu.
#[test]
fn a_kvm_stub_that_never_gets_ready_stops_the_domain() {
    let usable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !usable {
        eprintln!("SKIPPED: no /dev/kvm (a_kvm_stub_that_never_gets_ready_stops_the_domain)");
        return;
    }
    let tmp = Tmp::new("sd-kvm-notready");
    let mut k = stub_config(&tmp, GUEST, &[0xf4, 0xeb, 0xfd]);
    k.backend = Backend::Kvm;
    let (exit, _) = run(&k);
    assert_eq!(
        crashed(exit),
        "stub domain 'test-dm' did not become ready within 1 s"
    );
}

/// The real unikernel, if built: `$CHASSIS_STUBDOM`, or the Makefile's output path.
fn real_image() -> Option<PathBuf> {
    let p = std::env::var_os("CHASSIS_STUBDOM")
        .map(PathBuf::from)
        .or_else(|| {
            let t = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
            Some(t.join("x86_64-unknown-none/stubdom/chassis-stubdom"))
        })?;
    p.is_file().then_some(p)
}

/// With the real stub domain: the COM1 + ACPI S5 payload powers off, and deterministic
/// mode retires exactly as many guest instructions as process mode and prints the
/// same COM1 bytes.
#[test]
fn real_stub_domain_matches_process_mode() {
    if !emu_or_skip("real_stub_domain_matches_process_mode") {
        return;
    }
    let Some(img) = real_image() else {
        eprintln!("SKIPPED: real_stub_domain_matches_process_mode: no chassis-stubdom image");
        return;
    };
    let tmp = Tmp::new("sd-real");
    let base = DomainConfig {
        deterministic: true,
        ..config_for(Backend::Emu, &tmp, SERIAL_THEN_S5, 1)
    };
    let (pe, ps) = run(&base);
    let p_com1 = std::fs::read(tmp.0.join("com1.log")).unwrap_or_default();
    let mut sc = StubdomConfig::new(img);
    sc.response_timeout = Duration::from_secs(30);
    let (se, ss) = run(&DomainConfig {
        stubdom: Some(sc),
        ..base.clone()
    });
    let s_com1 = std::fs::read(tmp.0.join("com1.log")).unwrap_or_default();
    assert_eq!(pe, DomainExit::PowerOff);
    assert_eq!(se, pe);
    assert_eq!(ss.instructions, ps.instructions);
    assert_eq!(s_com1, p_com1);
    assert_eq!(s_com1, b"KKK");
}
