//! Debian's Linux kernel on the software CPU (issue [3], first half): the stock
//! `linux-image-*-amd64` bzImage and the busybox initramfs from `make setup`, booted
//! through `chassis create` with `cpu_backend = "emu"`, `deterministic = 1` and one vCPU,
//! and again with two vCPUs on host time (Linux must bring up CPU 1).
//! The host unpacks the kernel (xz + x86 BCJ), the firmware enters it, and the init must
//! print its marker and the PCI functions Linux enumerated (exactly the profile's), then
//! `poweroff -f` must end the domain through ACPI S5 with exit status 0.
//!
//! This is the slowest test of the suite (a few minutes: ~1.7 G interpreted
//! instructions); it runs everywhere, no /dev/kvm needed.

use chassis_devices::profile::QEMU_XEN;
use chassis_tests::{TempDir, chassis_bin, paths_env, run_with_timeout, skip_without_emu, tail};
use std::fs;
use std::process::Command;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(1200);

#[test]
fn debian_kernel_boots_to_init_and_powers_off_on_emu() {
    if skip_without_emu("debian_kernel_boots_to_init_and_powers_off_on_emu") {
        return;
    }
    boot("linux-emu", 1, true);
}

/// The same boot with two vCPUs (host time: deterministic mode takes one vCPU only).
/// Linux must start CPU 1 through INIT/SIPI and run SMP to init and power-off.
#[test]
fn debian_kernel_boots_smp_with_two_vcpus_on_emu() {
    if skip_without_emu("debian_kernel_boots_smp_with_two_vcpus_on_emu") {
        return;
    }
    let log = boot("linux-emu-smp", 2, false);
    assert!(
        log.contains("smp: Brought up 1 node, 2 CPUs"),
        "CPU 1 did not come up\n--- COM1 (tail) ---\n{}",
        tail(&log, 60)
    );
}

/// Boot the kernel with `vcpus` vCPUs; check the marker, the PCI list and the clean
/// power-off; return the COM1 log.
fn boot(name: &str, vcpus: u32, deterministic: bool) -> String {
    let env = paths_env();
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let (Some(kernel), Some(initrd)) = (get("KERNEL"), get("INITRD")) else {
        panic!("cache/paths.env has no KERNEL/INITRD: run `make setup`");
    };
    let tmp = TempDir::new(name);
    let com1 = tmp.path().join("com1.log");
    let cfg = tmp.path().join("linux.cfg");
    fs::write(
        &cfg,
        format!(
            "# written by tests/tests/linux_emu.rs\n\
             name = \"{name}\"\n\
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
             deterministic = {}\n",
            com1.display(),
            QEMU_XEN.name,
            deterministic as u8
        ),
    )
    .expect("write config");
    let mut cmd = Command::new(chassis_bin());
    cmd.arg("create").arg("--stats").arg(&cfg);
    let run = run_with_timeout(cmd, TIMEOUT);
    let log = fs::read_to_string(&com1).unwrap_or_default();
    let context = || {
        format!(
            "{}\n--- COM1 (tail) ---\n{}",
            run.describe(),
            tail(&log, 40)
        )
    };
    eprintln!("{}", run.stderr.trim());

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
    log
}
