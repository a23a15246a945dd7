//! Issue [1], "Must show": on the kvm backend a config without `kernel` boots
//! chassis-firmware alone in its diagnostic mode; it prints the PCI functions it found and
//! the ACPI tables it wrote over COM1, then powers off through PIIX4 S5, and `chassis`
//! exits 0. The printed IDs must be exactly what the chipset profile says.
//!
//! Needs `target/release/chassis` (`make build`) and a read-write /dev/kvm; without
//! /dev/kvm it prints `SKIPPED: no /dev/kvm` and passes. Runs in both device-model modes.

use chassis_devices::profile::ALL;
use chassis_tests::{chassis_bin, check_diagnostic_boot, mode_matrix, skip_without_kvm};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(120);

mode_matrix! {
fn firmware_diagnostic_boot_matches_every_profile(mode) {
    if skip_without_kvm(&format!("firmware_diagnostic_boot_matches_every_profile ({})", mode.name())) {
        return;
    }
    chassis_bin(); // fail early with "run make build first"
    let mut failures = Vec::new();
    for profile in ALL {
        let problems = check_diagnostic_boot(profile, "kvm", mode.config_line(), TIMEOUT);
        if !problems.is_empty() {
            failures.push(format!(
                "=== profile {} ===\n{}",
                profile.name,
                problems.join("\n")
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}
}
