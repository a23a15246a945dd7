//! Issue [2], the Xen-path SeaBIOS hand-over, on the kvm backend: with `bios = "seabios"`
//! and no `kernel`, chassis-firmware sets up PCI/ACPI/e820, writes `xen_seabios_info`,
//! copies Debian's unmodified `bios-256k.bin` below 1 MiB and enters it at f000:fff0.
//! SeaBIOS must find the Xen CPUID signature, get its hypercall page (WRMSR) and answer
//! from `xen_version` (the hypercall path), copy our ACPI tables, and reach its boot
//! attempt ("Booting from" / "No bootable device": there are no disks yet). Its debug
//! output on port 0xe9 is captured with `debugcon = "file:..."`.
//!
//! Needs `target/release/chassis` (`make build`), a read-write /dev/kvm and
//! `cache/x/seabios/.../bios-256k.bin` (`make setup`); without either it prints
//! `SKIPPED: ...` and passes. The domain does not power off by itself (SeaBIOS retries the
//! boot after 60 s), so the test kills it once the boot attempt is logged.

use chassis_tests::{TempDir, chassis_bin, mode_matrix, repo_root, skip_without_kvm, tail};
use std::fs;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(120);
const SEABIOS: &str = "cache/x/seabios/usr/share/seabios/bios-256k.bin";

mode_matrix! {
fn seabios_reaches_its_boot_attempt_on_kvm(mode) {
    if skip_without_kvm(&format!("seabios_reaches_its_boot_attempt_on_kvm ({})", mode.name())) {
        return;
    }
    if !repo_root().join(SEABIOS).is_file() {
        eprintln!();
        eprintln!("**********************************************************************");
        eprintln!("SKIPPED: no SeaBIOS in cache/ (run make setup): {SEABIOS} is missing");
        eprintln!("**********************************************************************");
        eprintln!();
        return;
    }
    let tmp = TempDir::new(&format!("seabios-{}", mode.tag()));
    let debugcon = tmp.path().join("debugcon.log");
    let com1 = tmp.path().join("com1.log");
    let cfg_path = tmp.path().join("seabios.cfg");
    fs::write(
        &cfg_path,
        format!(
            "# written by tests/tests/seabios.rs\n\
             name = \"seabios\"\n\
             type = \"hvm\"\n\
             memory = 128\n\
             bios = \"seabios\"\n\
             serial = \"file:{}\"\n\
             debugcon = \"file:{}\"\n\
             cpu_backend = \"kvm\"\n\
             {}\n",
            com1.display(),
            debugcon.display(),
            mode.config_line()
        ),
    )
    .expect("write config");

    // The default image path (relative to target/release/chassis) is what is tested,
    // unless the binary lives outside the repository (CHASSIS_BIN, CARGO_TARGET_DIR):
    // then the image is named explicitly.
    let bin = chassis_bin();
    let mut cmd = Command::new(&bin);
    if bin.starts_with(repo_root()) {
        cmd.env_remove("CHASSIS_SEABIOS");
    } else {
        cmd.env("CHASSIS_SEABIOS", repo_root().join(SEABIOS));
    }
    let mut child = cmd
        .arg("create")
        .arg(&cfg_path)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chassis");

    let start = Instant::now();
    let done = |log: &str| {
        log.contains("Found Xen hypervisor signature")
            && log.contains("xen: copy BIOS tables")
            && (log.contains("No bootable device") || log.contains("Booting from"))
    };
    let (log, exited) = loop {
        let log = fs::read_to_string(&debugcon).unwrap_or_default();
        if done(&log) {
            break (log, None);
        }
        if let Ok(Some(status)) = child.try_wait() {
            break (
                fs::read_to_string(&debugcon).unwrap_or_default(),
                Some(status),
            );
        }
        if start.elapsed() > TIMEOUT {
            break (log, None);
        }
        thread::sleep(Duration::from_millis(100));
    };
    let elapsed = start.elapsed();
    // Our own child, by its handle.
    let _ = child.kill();
    let _ = child.wait();

    let serial = fs::read_to_string(&com1).unwrap_or_default();
    let context = format!(
        "after {elapsed:?} (chassis exited early: {exited:?})\n--- debugcon {} (tail) ---\n{}\n--- COM1 {} (tail) ---\n{}",
        debugcon.display(),
        tail(&log, 40),
        com1.display(),
        tail(&serial, 20)
    );
    assert!(
        done(&log),
        "SeaBIOS did not reach its boot attempt within {TIMEOUT:?}\n{context}"
    );
    assert!(
        serial.contains("chassis-firmware: handing over to SeaBIOS (262144 bytes at 0xc0000)"),
        "no hand-over line on COM1\n{context}"
    );
    // The hypercall page (WRMSR) and xen_version(XENVER_extraversion) worked.
    assert!(
        log.contains("Allocated Xen hypercall page at"),
        "no hypercall page\n{context}"
    );
    assert!(
        log.contains("Detected Xen v4.17-chassis"),
        "the xen_version hypercall did not answer\n{context}"
    );
    // SeaBIOS took our RSDP and found the FADT's PM timer.
    assert!(
        log.contains("Copying ACPI RSDP"),
        "no RSDP copied\n{context}"
    );
    assert!(
        log.contains("Using pmtimer, ioport 0xb008"),
        "no PM timer from the FADT\n{context}"
    );
}
}
