//! The kvm backend end to end: tiny hand-assembled 32-bit payloads, wrapped in a minimal
//! ELF, booted through `run_domain` on /dev/kvm.
//!
//! /dev/kvm on the machines this project is tested on is the PVM flavour, which emulates
//! every guest instruction at about 1 M instructions/s, so the payloads are a few dozen
//! instructions. A test that needs /dev/kvm prints `SKIPPED: no /dev/kvm` and passes when
//! it cannot be opened.
//!
//! The payloads were assembled with GNU as (`as --32`); the listing is next to the bytes.

use std::path::PathBuf;
use std::time::Instant;

use chassis_devices::profile::QEMU_XEN;
use hypervisor_abi::pvh::FIRMWARE_BASE;
use hypervisor_core::{
    Backend, CharTarget, DomainConfig, DomainExit, Error, run_domain, run_domain_with_stats,
};

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

/// A minimal ELF64 x86-64 executable: `image` loaded at FIRMWARE_BASE (one PT_LOAD with
/// a page of memory at least), entry at its first byte.
fn elf(image: &[u8]) -> Vec<u8> {
    let mut e = vec![0u8; 64 + 56];
    e[0..4].copy_from_slice(b"\x7fELF");
    e[4] = 2; // ELFCLASS64
    e[5] = 1; // little endian
    e[6] = 1;
    e[16] = 2; // ET_EXEC
    e[18] = 62; // EM_X86_64
    e[20] = 1;
    e[24..32].copy_from_slice(&FIRMWARE_BASE.to_le_bytes());
    e[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    e[52] = 64;
    e[54] = 56;
    e[56] = 1;
    let ph = &mut e[64..120];
    ph[0] = 1; // PT_LOAD
    ph[4] = 7;
    ph[8..16].copy_from_slice(&120u64.to_le_bytes());
    ph[16..24].copy_from_slice(&FIRMWARE_BASE.to_le_bytes());
    ph[24..32].copy_from_slice(&FIRMWARE_BASE.to_le_bytes());
    ph[32..40].copy_from_slice(&(image.len() as u64).to_le_bytes());
    ph[40..48].copy_from_slice(&(image.len() as u64).max(0x1000).to_le_bytes());
    e.extend_from_slice(image);
    e
}

struct Tmp(PathBuf);
impl Tmp {
    fn new(name: &str) -> Tmp {
        let d = std::env::temp_dir().join(format!(
            "hypervisor-core-test-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Tmp(d)
    }
}
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(tmp: &Tmp, payload: &[u8], vcpus: u32) -> DomainConfig {
    let fw = tmp.0.join("payload.elf");
    std::fs::write(&fw, elf(payload)).unwrap();
    DomainConfig {
        name: "test".into(),
        memory_mib: 32,
        vcpus,
        profile: &QEMU_XEN,
        backend: Backend::Kvm,
        firmware: fw,
        kernel: None,
        ramdisk: None,
        bios: None,
        cmdline: String::new(),
        serial: CharTarget::File(tmp.0.join("com1.log")),
        debugcon: CharTarget::Null,
        deterministic: false,
        stop_on_output: None,
    }
}

/// `ud2` with the reset-state IDT (base 0, zeroed RAM): #UD → #GP → #DF → triple fault.
const UD2: [u8; 2] = [0x0f, 0x0b];

/// Print "KKK" on COM1, program the PIIX4 PM block at 0xb000 through PCI config
/// (00:01.3: PMBA 0x40 = 0xb001, PMIOSE 0x80 = 1), enable ACPI (SMI_CMD 0xb2 = 0xf1),
/// then SLP_TYP=0 (S5 in chassis' DSDT) | SLP_EN to PM1a_CNT (0xb004). If the power-off
/// does not happen, the trailing ud2 crashes the VM instead of hanging.
const SERIAL_THEN_S5: &[u8] = &[
    0x66, 0xba, 0xf8, 0x03, //             mov $0x3f8,%dx
    0xb0, 0x4b, //                         mov $'K',%al
    0xee, 0xee, 0xee, //                   out %al,(%dx) x3
    0x66, 0xba, 0xf8, 0x0c, //             mov $0xcf8,%dx
    0xb8, 0x40, 0x0b, 0x00, 0x80, //       mov $0x80000b40,%eax
    0xef, //                               out %eax,(%dx)
    0x66, 0xba, 0xfc, 0x0c, //             mov $0xcfc,%dx
    0xb8, 0x01, 0xb0, 0x00, 0x00, //       mov $0xb001,%eax
    0xef, //                               out %eax,(%dx)
    0x66, 0xba, 0xf8, 0x0c, //             mov $0xcf8,%dx
    0xb8, 0x80, 0x0b, 0x00, 0x80, //       mov $0x80000b80,%eax
    0xef, //                               out %eax,(%dx)
    0x66, 0xba, 0xfc, 0x0c, //             mov $0xcfc,%dx
    0xb0, 0x01, //                         mov $1,%al
    0xee, //                               out %al,(%dx)
    0xb0, 0xf1, //                         mov $0xf1,%al
    0xe6, 0xb2, //                         out %al,$0xb2
    0x66, 0xba, 0x04, 0xb0, //             mov $0xb004,%dx
    0x66, 0xb8, 0x00, 0x20, //             mov $0x2000,%ax
    0x66, 0xef, //                         out %ax,(%dx)
    0x0f, 0x0b, //                         ud2
];

/// `n` reads of port 0x80, then a CPU reset through 0xcf9 (PIIX3 RCR, RST_CPU).
fn pio_loop(n: u32) -> Vec<u8> {
    let mut p = vec![0xb9]; //             mov $n,%ecx
    p.extend_from_slice(&n.to_le_bytes());
    p.extend_from_slice(&[
        0xe4, 0x80, //                     1: in $0x80,%al
        0x49, //                           dec %ecx
        0x75, 0xfb, //                     jnz 1b
        0xb0, 0x06, //                     mov $6,%al
        0x66, 0xba, 0xf9, 0x0c, //         mov $0xcf9,%dx
        0xee, //                           out %al,(%dx)
    ]);
    p.extend_from_slice(&UD2);
    p
}

/// String I/O keeps its element size: `rep outsl` of two dwords to 0xcf8 (only dword
/// writes latch CONFIG_ADDRESS; the second selects 00:00.0), `in` the vendor/device dword
/// (i440FX 8086:1237), then `rep insw` of two words from 0xcfc must store 0x8086 twice.
/// Success resets through 0xcf9; any mismatch runs into ud2 (a crash).
fn string_io() -> Vec<u8> {
    let mut p = vec![
        0xbe, 0x00, 0x01, 0x10, 0x00, //   mov $0x100100,%esi
        0xb9, 0x02, 0x00, 0x00, 0x00, //   mov $2,%ecx
        0x66, 0xba, 0xf8, 0x0c, //         mov $0xcf8,%dx
        0xf3, 0x6f, //                     rep outsl
        0x66, 0xba, 0xfc, 0x0c, //         mov $0xcfc,%dx
        0xed, //                           in (%dx),%eax
        0x3d, 0x86, 0x80, 0x37, 0x12, //   cmp $0x12378086,%eax
        0x75, 0x20, //                     jne fail
        0xbf, 0x08, 0x01, 0x10, 0x00, //   mov $0x100108,%edi
        0xb9, 0x02, 0x00, 0x00, 0x00, //   mov $2,%ecx
        0x66, 0xf3, 0x6d, //               rep insw
        0x81, 0x3d, 0x08, 0x01, 0x10, 0x00, 0x86, 0x80, 0x86,
        0x80, // cmpl $0x80868086,0x100108
        0x75, 0x07, //                     jne fail
        0xb0, 0x06, //                     mov $6,%al
        0x66, 0xba, 0xf9, 0x0c, //         mov $0xcf9,%dx
        0xee, //                           out %al,(%dx)
        0x0f, 0x0b, //                     fail: ud2
    ];
    p.resize(0x100, 0xf4);
    // The dwords for rep outsl at 0x100100: ISA bridge ID, then host bridge ID.
    p.extend_from_slice(&0x8000_0800u32.to_le_bytes());
    p.extend_from_slice(&0x8000_0000u32.to_le_bytes());
    p
}

/// The Xen interface SeaBIOS uses: CPUID 0x40000000 = max leaf 0x40000002 and "XenV...",
/// 0x40000100 = "KVMK..." (KVM's leaves moved up), 0x40000002 EBX = the hypercall MSR;
/// WRMSR of the page address 0x200000 fills the hypercall page; stub 17 (`xen_version`,
/// at page + 17 * 32) with EBX = 1 (extraversion) writes "-chassis" to ECX = 0x300000 and
/// returns 0, EBX = 0 returns 0x00040011 (4.17), EBX = 99 returns -ENOSYS. Success resets
/// through 0xcf9; any mismatch runs into ud2 (a crash). Assembled with `as --32`.
const XEN_HYPERCALLS: &[u8] = &[
    0xbc, 0x00, 0x00, 0x18, 0x00, //        mov $0x180000,%esp
    0xb8, 0x00, 0x00, 0x00, 0x40, //        mov $0x40000000,%eax
    0x0f, 0xa2, //                          cpuid
    0x3d, 0x02, 0x00, 0x00, 0x40, //        cmp $0x40000002,%eax
    0x75, 0x72, //                          jne 85 (fail)
    0x81, 0xfb, 0x58, 0x65, 0x6e, 0x56, //  cmp $0x566e6558,%ebx
    0x75, 0x6a, //                          jne 85 (fail)
    0xb8, 0x00, 0x01, 0x00, 0x40, //        mov $0x40000100,%eax
    0x0f, 0xa2, //                          cpuid
    0x81, 0xfb, 0x4b, 0x56, 0x4d, 0x4b, //  cmp $0x4b4d564b,%ebx
    0x75, 0x5b, //                          jne 85 (fail)
    0xb8, 0x02, 0x00, 0x00, 0x40, //        mov $0x40000002,%eax
    0x0f, 0xa2, //                          cpuid
    0x89, 0xd9, //                          mov %ebx,%ecx
    0xb8, 0x00, 0x00, 0x20, 0x00, //        mov $0x200000,%eax
    0x31, 0xd2, //                          xor %edx,%edx
    0x0f, 0x30, //                          wrmsr
    0xbb, 0x01, 0x00, 0x00, 0x00, //        mov $0x1,%ebx
    0xb9, 0x00, 0x00, 0x30, 0x00, //        mov $0x300000,%ecx
    0xb8, 0x20, 0x02, 0x20, 0x00, //        mov $0x200220,%eax
    0xff, 0xd0, //                          call *%eax
    0x85, 0xc0, //                          test %eax,%eax
    0x75, 0x34, //                          jne 85 (fail)
    0x81, 0x3d, 0x00, 0x00, 0x30, 0x00, 0x2d, 0x63, 0x68, 0x61,
    // ^ cmpl $0x6168632d,0x300000
    0x75, 0x28, //                          jne 85 (fail)
    0x31, 0xdb, //                          xor %ebx,%ebx
    0xb8, 0x20, 0x02, 0x20, 0x00, //        mov $0x200220,%eax
    0xff, 0xd0, //                          call *%eax
    0x3d, 0x11, 0x00, 0x04, 0x00, //        cmp $0x40011,%eax
    0x75, 0x18, //                          jne 85 (fail)
    0xbb, 0x63, 0x00, 0x00, 0x00, //        mov $0x63,%ebx
    0xb8, 0x20, 0x02, 0x20, 0x00, //        mov $0x200220,%eax
    0xff, 0xd0, //                          call *%eax
    0x83, 0xf8, 0xda, //                    cmp $0xffffffda,%eax
    0x75, 0x07, //                          jne 85 (fail)
    0xb0, 0x06, //                          mov $0x6,%al
    0x66, 0xba, 0xf9, 0x0c, //              mov $0xcf9,%dx
    0xee, //                                out %al,(%dx)
    0x0f, 0x0b, //                          ud2
];

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
