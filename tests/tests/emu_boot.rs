//! Real boots on the software CPU (`cpu_backend = "emu"`), through the `chassis` binary:
//! no /dev/kvm needed, so these run on every machine.
//!
//! * The firmware diagnostic boot of every chipset profile (the checks of
//!   firmware_diagnostic.rs), and once more in deterministic mode.
//! * Debian's SeaBIOS down its Xen path reaching its boot attempt (as seabios.rs on kvm),
//!   with the `vmcall` hypercall page.
//! * Deterministic mode: two SeaBIOS boots stopped at the boot prompt
//!   (`--stop-on-output "Booting from"`), one per device-model mode, retire exactly the
//!   same number of instructions (`--stats`) and print byte-identical debug-console logs.
//!
//! Every boot runs in both device-model modes (`mode_matrix!`).
//!
//! Needs the release `chassis` (`make build`; `CHASSIS_BIN` or `CARGO_TARGET_DIR` point
//! elsewhere) and, for SeaBIOS, `cache/x/seabios/.../bios-256k.bin` (`make setup`).
//! Until the emu CPU core exists (`hypervisor_emu::AVAILABLE`) they print `SKIPPED` and
//! pass.

use chassis_devices::profile::{ALL, QEMU_XEN};
use chassis_tests::{
    Mode, RunResult, TempDir, chassis_bin, check_diagnostic_boot, mode_matrix, repo_root,
    run_with_timeout, skip_without_emu, tail,
};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const DIAG_TIMEOUT: Duration = Duration::from_secs(120);
const SEABIOS_TIMEOUT: Duration = Duration::from_secs(300);
const SEABIOS: &str = "cache/x/seabios/usr/share/seabios/bios-256k.bin";

fn seabios_or_skip(test: &str) -> Option<PathBuf> {
    let p = repo_root().join(SEABIOS);
    if p.is_file() {
        return Some(p);
    }
    eprintln!();
    eprintln!("**********************************************************************");
    eprintln!("SKIPPED: {test}: no SeaBIOS in cache/ (run make setup): {SEABIOS} is missing");
    eprintln!("**********************************************************************");
    eprintln!();
    None
}

mode_matrix! {
fn firmware_diagnostic_boot_on_emu_matches_every_profile(mode) {
    if skip_without_emu("firmware_diagnostic_boot_on_emu_matches_every_profile") {
        return;
    }
    chassis_bin();
    let mut failures = Vec::new();
    let runs = ALL
        .iter()
        .map(|p| (*p, ""))
        .chain([(&QEMU_XEN, "deterministic = 1")]);
    for (profile, extra) in runs {
        let extra = format!("{extra}\n{}", mode.config_line());
        let problems = check_diagnostic_boot(profile, "emu", &extra, DIAG_TIMEOUT);
        if !problems.is_empty() {
            failures.push(format!(
                "=== profile {} on emu {extra} ===\n{}",
                profile.name,
                problems.join("\n")
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}
}

/// A SeaBIOS config on emu; COM1 and the debug console go to files in `dir`.
fn seabios_cfg(dir: &Path, bios: &Path, extra: &str) -> PathBuf {
    let cfg = dir.join("seabios.cfg");
    fs::write(
        &cfg,
        format!(
            "# written by tests/tests/emu_boot.rs\n\
             name = \"seabios-emu\"\n\
             type = \"hvm\"\n\
             memory = 64\n\
             bios = \"seabios\"\n\
             bios_path_override = \"{}\"\n\
             serial = \"file:{}\"\n\
             debugcon = \"file:{}\"\n\
             cpu_backend = \"emu\"\n\
             {extra}\n",
            bios.display(),
            dir.join("com1.log").display(),
            dir.join("debugcon.log").display(),
        ),
    )
    .expect("write config");
    cfg
}

mode_matrix! {
fn seabios_reaches_its_boot_attempt_on_emu(mode) {
    if skip_without_emu("seabios_reaches_its_boot_attempt_on_emu") {
        return;
    }
    let Some(bios) = seabios_or_skip("seabios_reaches_its_boot_attempt_on_emu") else {
        return;
    };
    let tmp = TempDir::new(&format!("seabios-emu-{}", mode.tag()));
    let cfg = seabios_cfg(tmp.path(), &bios, mode.config_line());
    let debugcon = tmp.path().join("debugcon.log");
    // chassis stops by itself at "No bootable device"; the test also stops it (its own
    // child, by handle) once a boot attempt is logged, as seabios.rs does on kvm.
    let mut child = Command::new(chassis_bin())
        .arg("create")
        .arg("--stop-on-output")
        .arg("No bootable device")
        .arg(&cfg)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chassis");
    let done = |log: &str| {
        log.contains("Found Xen hypervisor signature")
            && log.contains("xen: copy BIOS tables")
            && (log.contains("No bootable device") || log.contains("Booting from"))
    };
    let start = Instant::now();
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
        if start.elapsed() > SEABIOS_TIMEOUT {
            break (log, None);
        }
        thread::sleep(Duration::from_millis(100));
    };
    let elapsed = start.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    let serial = fs::read_to_string(tmp.path().join("com1.log")).unwrap_or_default();
    let context = format!(
        "after {elapsed:?} (chassis exited early: {exited:?})\n--- stderr ---\n{}\n\
         --- debugcon (tail) ---\n{}\n--- COM1 (tail) ---\n{}",
        tail(&stderr, 10),
        tail(&log, 40),
        tail(&serial, 20)
    );
    assert!(
        done(&log),
        "SeaBIOS did not reach its boot attempt on emu within {SEABIOS_TIMEOUT:?}\n{context}"
    );
    assert!(
        log.contains("Allocated Xen hypercall page at"),
        "no hypercall page\n{context}"
    );
    assert!(
        log.contains("Detected Xen v4.17-chassis"),
        "the vmcall xen_version hypercall did not answer\n{context}"
    );
    assert!(log.contains("Copying ACPI RSDP"), "no RSDP\n{context}");
    assert!(
        log.contains("Using pmtimer, ioport 0xb008"),
        "no PM timer\n{context}"
    );
    eprintln!(
        "SeaBIOS on emu ({}) reached its boot attempt in {elapsed:.1?}",
        mode.name()
    );
}
}

/// `chassis create --stats --stop-on-output STOP` of a deterministic SeaBIOS boot:
/// (run result, instructions, debugcon log).
fn deterministic_boot(bios: &Path, stop: &str, mode: Mode) -> (RunResult, Option<u64>, String) {
    let tmp = TempDir::new(&format!("seabios-det-{}", mode.tag()));
    let cfg = seabios_cfg(
        tmp.path(),
        bios,
        &format!("deterministic = 1\n{}", mode.config_line()),
    );
    let mut cmd = Command::new(chassis_bin());
    cmd.arg("create")
        .arg("--stats")
        .arg("--stop-on-output")
        .arg(stop)
        .arg(&cfg)
        .current_dir(repo_root());
    let run = run_with_timeout(cmd, SEABIOS_TIMEOUT);
    let instructions = run
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("chassis: stats: instructions "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok());
    let log = fs::read_to_string(tmp.path().join("debugcon.log")).unwrap_or_default();
    (run, instructions, log)
}

/// The same deterministic boot in process mode and in stubdom mode, side by side: every
/// guest-visible effect of the stub domain is synchronous and guest time stands still
/// while it works, so the guest cannot tell the modes apart: same instruction count,
/// same bytes (and each mode is deterministic, or the two would not agree).
#[test]
fn deterministic_seabios_boots_retire_identical_instruction_counts() {
    const TEST: &str = "deterministic_seabios_boots_retire_identical_instruction_counts";
    if skip_without_emu(TEST) {
        return;
    }
    let Some(bios) = seabios_or_skip(TEST) else {
        return;
    };
    const STOP: &str = "Booting from";
    let ((a, ia, la), (b, ib, lb)) = thread::scope(|s| {
        let a = s.spawn(|| deterministic_boot(&bios, STOP, Mode::Process));
        let b = s.spawn(|| deterministic_boot(&bios, STOP, Mode::Stubdom));
        (a.join().expect("process"), b.join().expect("stubdom"))
    });
    for (mode, r, i, l) in [(Mode::Process, &a, ia, &la), (Mode::Stubdom, &b, ib, &lb)] {
        assert!(
            r.success() && i.is_some_and(|n| n > 0) && l.ends_with(STOP),
            "{} run did not stop at {STOP:?}: {i:?} instructions\n{}\n--- debugcon ---\n{}",
            mode.name(),
            r.describe(),
            tail(l, 30)
        );
    }
    assert_eq!(
        ia, ib,
        "instruction counts differ between process and stubdom mode"
    );
    assert_eq!(
        la, lb,
        "debug console output differs between process and stubdom mode"
    );
    eprintln!(
        "deterministic SeaBIOS to {STOP:?}: {} instructions, {:.1?} and {:.1?}",
        ia.unwrap_or(0),
        a.elapsed,
        b.elapsed
    );
}
