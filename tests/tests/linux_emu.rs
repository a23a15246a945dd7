//! Debian's Linux kernel on the software CPU (issue [3]): the stock
//! `linux-image-*-amd64` bzImage and the busybox initramfs from `make setup`, booted
//! through `chassis create` with `cpu_backend = "emu"`, `deterministic = 1` and one vCPU,
//! in process mode and in stubdom mode side by side: both identical to the instruction
//! and the byte; and with two vCPUs on host time in each mode (Linux must bring up CPU 1
//! through INIT/SIPI).
//! The host unpacks the kernel (xz + x86 BCJ), the firmware enters it, and the init must
//! print its marker and the PCI functions Linux enumerated (exactly the profile's), then
//! `poweroff -f` must end the domain through ACPI S5 with exit status 0.
//!
//! This is the slowest test of the suite (about two minutes with two host cores: ~1.7 G
//! interpreted instructions per boot); it runs everywhere, no /dev/kvm needed.

use chassis_devices::profile::QEMU_XEN;
use chassis_tests::{
    Mode, RunResult, TempDir, chassis_bin, mode_matrix, paths_env, run_with_timeout,
    skip_without_emu, tail,
};
use std::fs;
use std::process::Command;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(1200);

/// One deterministic boot of `vcpus` vCPUs; (the run, the COM1 log, the instruction
/// count from `--stats`).
fn boot(tag: &str, vcpus: u32, extra: &str) -> (RunResult, String, Option<u64>, TempDir) {
    let env = paths_env();
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let (Some(kernel), Some(initrd)) = (get("KERNEL"), get("INITRD")) else {
        panic!("cache/paths.env has no KERNEL/INITRD: run `make setup`");
    };
    let tmp = TempDir::new(tag);
    let com1 = tmp.path().join("com1.log");
    let cfg = tmp.path().join("linux.cfg");
    fs::write(
        &cfg,
        format!(
            "# written by tests/tests/linux_emu.rs\n\
             name = \"{tag}\"\n\
             type = \"hvm\"\n\
             memory = 256\n\
             vcpus = {vcpus}\n\
             kernel = \"{kernel}\"\n\
             ramdisk = \"{initrd}\"\n\
             extra = \"console=ttyS0\"\n\
             serial = \"file:{}\"\n\
             on_poweroff = \"destroy\"\n\
             device_model_version = \"{}\"\n\
             cpu_backend = \"emu\"\n\
             {extra}\n",
            com1.display(),
            QEMU_XEN.name
        ),
    )
    .expect("write config");
    let mut cmd = Command::new(chassis_bin());
    cmd.arg("create").arg("--stats").arg(&cfg);
    let run = run_with_timeout(cmd, TIMEOUT);
    let log = fs::read_to_string(&com1).unwrap_or_default();
    let insns = run
        .stderr
        .split("instructions ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok());
    (run, log, insns, tmp)
}

/// The checks every Linux boot must pass: marker, PCI list = the profile's, power-off,
/// exit 0.
fn check_boot(run: &RunResult, log: &str) {
    let context = || format!("{}\n--- COM1 (tail) ---\n{}", run.describe(), tail(log, 40));
    assert!(
        log.contains("CHASSIS-MARKER: init reached"),
        "the init marker never appeared\n{}",
        context()
    );
    // The PCI functions Linux found: exactly the profile's, in slot order.
    let listed: Vec<&str> = log
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != "PCI-BEGIN")
        .skip(1)
        .take_while(|l| *l != "PCI-END")
        .collect();
    let expected: Vec<String> = QEMU_XEN
        .pci_functions()
        .iter()
        .map(|(devfn, id)| {
            format!(
                "PCI 00:{:02x}.{} {:04x}:{:04x}",
                devfn >> 3,
                devfn & 7,
                id.vendor,
                id.device
            )
        })
        .collect();
    assert_eq!(listed, expected, "PCI list\n{}", context());
    assert!(
        run.success(),
        "chassis did not exit 0 after poweroff -f\n{}",
        context()
    );
    assert!(
        run.stderr.contains("powered off") || run.stdout.contains("powered off"),
        "no power-off message\n{}",
        context()
    );
}

/// Two deterministic boots side by side (one per host core), one per device-model
/// mode: each passes the checks, and they retire the same number of instructions and
/// print the same COM1 bytes (kernel timestamps included). So each mode is
/// deterministic, and the guest cannot tell a stub domain from process mode.
#[test]
fn debian_kernel_boots_to_init_and_powers_off_on_emu_identically_in_both_modes() {
    if skip_without_emu(
        "debian_kernel_boots_to_init_and_powers_off_on_emu_identically_in_both_modes",
    ) {
        return;
    }
    let det = |m: Mode| format!("deterministic = 1\n{}", m.config_line());
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| boot("linux-det-proc", 1, &det(Mode::Process)));
        let b = s.spawn(|| boot("linux-det-stub", 1, &det(Mode::Stubdom)));
        (
            a.join().expect("process boot"),
            b.join().expect("stubdom boot"),
        )
    });
    eprintln!("process mode: {}", a.0.stderr.trim());
    eprintln!("stubdom mode: {}", b.0.stderr.trim());
    check_boot(&a.0, &a.1);
    check_boot(&b.0, &b.1);
    assert!(a.2.is_some(), "no instruction count in --stats output");
    assert_eq!(
        a.2, b.2,
        "process and stubdom mode retired different instruction counts"
    );
    assert!(
        a.1 == b.1,
        "process and stubdom mode printed different COM1 logs"
    );
}

mode_matrix! {
/// The same boot with two vCPUs (host time: deterministic mode takes one vCPU only).
/// Linux must start CPU 1 through INIT/SIPI and run SMP to init and power-off.
fn debian_kernel_boots_smp_with_two_vcpus_on_emu(mode) {
    if skip_without_emu("debian_kernel_boots_smp_with_two_vcpus_on_emu") {
        return;
    }
    let tag = format!("linux-emu-smp-{}", mode.tag());
    let (run, log, _, _tmp) = boot(&tag, 2, mode.config_line());
    check_boot(&run, &log);
    assert!(
        log.contains("smp: Brought up 1 node, 2 CPUs"),
        "CPU 1 did not come up\n--- COM1 (tail) ---\n{}",
        tail(&log, 60)
    );
}
}
