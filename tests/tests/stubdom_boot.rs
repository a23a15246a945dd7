//! Stubdom mode with the real `chassis-stubdom` unikernel, through the `chassis` binary
//! on the software CPU:
//!
//! deterministic mode: the firmware diagnostic boot retires exactly as many guest
//! instructions and prints the same COM1 bytes in a stub domain as in process mode.
//! (The diagnostic boot of every profile in a stub domain is `emu_boot.rs`'s
//! `stubdom_mode` test.)
//!
//! Needs the image: `$CHASSIS_STUBDOM`, else `<target>/x86_64-unknown-none/stubdom/
//! chassis-stubdom` next to the chassis binary (`make build`); skipped (loudly) without.

use chassis_devices::profile::QEMU_XEN;
use chassis_tests::{TempDir, chassis_bin, repo_root, run_with_timeout, skip_without_emu};
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(300);
const STUBDOM: &str = "device_model_stubdomain_override = 1";
/// Process mode must be asked for: stubdom mode is the default.
const PROCESS: &str = "device_model_stubdomain_override = 0";

fn image_or_skip(test: &str) -> Option<PathBuf> {
    let p = std::env::var_os("CHASSIS_STUBDOM")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let bin = chassis_bin();
            let target = bin.parent().and_then(|d| d.parent()).map(PathBuf::from);
            target
                .unwrap_or_default()
                .join("x86_64-unknown-none/stubdom/chassis-stubdom")
        });
    if p.is_file() {
        return Some(p);
    }
    eprintln!();
    eprintln!("**********************************************************************");
    eprintln!(
        "SKIPPED: {test}: no stub-domain image at {} (make build, or CHASSIS_STUBDOM)",
        p.display()
    );
    eprintln!("**********************************************************************");
    eprintln!();
    None
}

/// `chassis create --stats` of the diagnostic boot, deterministic: (instructions, COM1).
fn deterministic_diag(img: &PathBuf, extra: &str) -> (Option<u64>, String, String) {
    let tmp = TempDir::new(&format!("sd-det-{}", extra.len()));
    let log = tmp.path().join("com1.log");
    let cfg = tmp.path().join("diag.cfg");
    fs::write(
        &cfg,
        format!(
            "name = \"det\"\ntype = \"hvm\"\nmemory = 128\nvcpus = 1\n\
             serial = \"file:{}\"\non_poweroff = \"destroy\"\n\
             device_model_version = \"{}\"\ncpu_backend = \"emu\"\ndeterministic = 1\n{extra}\n",
            log.display(),
            QEMU_XEN.name
        ),
    )
    .unwrap();
    let mut cmd = Command::new(chassis_bin());
    cmd.arg("create")
        .arg("--stats")
        .arg(&cfg)
        .env("CHASSIS_STUBDOM", img)
        .current_dir(repo_root());
    let run = run_with_timeout(cmd, TIMEOUT);
    assert!(run.success(), "{}", run.describe());
    let instructions = run
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("chassis: stats: instructions "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok());
    (
        instructions,
        fs::read_to_string(&log).unwrap_or_default(),
        run.stderr,
    )
}

/// One test (the environment variable below is set for the children, with no other test
/// thread reading the environment meanwhile).
#[test]
fn stub_domain_boots_match_process_mode() {
    const TEST: &str = "stub_domain_boots_match_process_mode";
    if skip_without_emu(TEST) {
        return;
    }
    let Some(img) = image_or_skip(TEST) else {
        return;
    };
    let (pi, plog, perr) = deterministic_diag(&img, PROCESS);
    assert!(
        !perr.contains("stub domain"),
        "process mode ran a stub: {perr}"
    );
    let (si, slog, serr) = deterministic_diag(&img, STUBDOM);
    assert!(pi.is_some_and(|n| n > 1000), "{pi:?}");
    assert_eq!(si, pi, "instruction counts differ: {serr}");
    assert_eq!(slog, plog, "COM1 differs");
    assert!(
        serr.contains("chassis: stats: stub domain: instructions "),
        "{serr}"
    );
}
