//! Issue [1], "Must show": on the kvm backend a config without `kernel` boots
//! chassis-firmware alone in its diagnostic mode; it prints the PCI functions it found and
//! the ACPI tables it wrote over COM1, then powers off through PIIX4 S5, and `chassis`
//! exits 0. The printed IDs must be exactly what the chipset profile says.
//!
//! Needs `target/release/chassis` (`make build`) and a read-write /dev/kvm; without
//! /dev/kvm it prints `SKIPPED: no /dev/kvm` and passes.

use chassis_devices::profile::{ALL, Profile};
use chassis_tests::{
    TempDir, chassis_bin, chassis_create, format_pci, parse_pci_lines, skip_without_kvm, tail,
};
use std::fs;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(120);
const POWER_OFF_LINE: &str = "chassis-firmware: diagnostic boot done, powering off";
const ACPI_TABLES: [&str; 3] = ["FACP", "DSDT", "APIC"];

/// Boot one profile's diagnostic firmware; returns the problems found (empty = pass).
fn check_profile(profile: &Profile) -> Vec<String> {
    let tmp = TempDir::new(profile.name);
    let log_path = tmp.path().join("com1.log");
    let cfg_path = tmp.path().join("diag.cfg");
    let cfg = format!(
        "# written by tests/tests/firmware_diagnostic.rs\n\
         name = \"diag-{name}\"\n\
         type = \"hvm\"\n\
         memory = 256\n\
         vcpus = 1\n\
         serial = \"file:{log}\"\n\
         on_poweroff = \"destroy\"\n\
         device_model_version = \"{name}\"\n\
         cpu_backend = \"kvm\"\n",
        name = profile.name,
        log = log_path.display(),
    );
    fs::write(&cfg_path, cfg).expect("write config");

    let run = chassis_create(&cfg_path, TIMEOUT);
    let mut problems = Vec::new();
    let log = fs::read_to_string(&log_path).unwrap_or_else(|e| {
        problems.push(format!(
            "cannot read the COM1 log {}: {e} (does chassis honour serial = \"file:...\"?)",
            log_path.display()
        ));
        String::new()
    });
    let context = || {
        format!(
            "{}\n--- COM1 ({}) (tail) ---\n{}",
            run.describe(),
            log_path.display(),
            tail(&log, 60)
        )
    };

    if run.timed_out {
        problems.push(format!(
            "chassis did not finish within {TIMEOUT:?} (killed)"
        ));
    } else if !run.success() {
        problems.push("chassis create did not exit 0".to_string());
    }

    // PCI: exactly the profile's functions, in slot order.
    let expected: Vec<String> = profile
        .pci_functions()
        .iter()
        .map(|(devfn, ident)| format_pci(*devfn, ident, None))
        .collect();
    let found = parse_pci_lines(&log);
    let found_cmp: Vec<String> = found
        .iter()
        .map(|l| {
            // Compare everything but the IRQ (routing is the firmware's choice).
            let ident = chassis_devices::pci::PciIdent {
                vendor: l.vendor,
                device: l.device,
                revision: l.revision,
                class: l.class,
                subsystem_vendor: l.subsystem_vendor,
                subsystem: l.subsystem,
                header_type: 0,
                interrupt_pin: l.pin,
            };
            if l.bus != 0 {
                format!("bus {:02x}: {}", l.bus, format_pci(l.devfn(), &ident, None))
            } else {
                format_pci(l.devfn(), &ident, None)
            }
        })
        .collect();
    if found_cmp != expected {
        problems.push(format!(
            "PCI functions differ from profile {}:\n  expected (irq not compared):\n    {}\n  found:\n    {}",
            profile.name,
            expected.join("\n    "),
            if found_cmp.is_empty() {
                "(no PCI lines)".to_string()
            } else {
                found_cmp.join("\n    ")
            }
        ));
    }
    // A function with an interrupt pin must have been routed, one without must not.
    for l in &found {
        if (l.pin == 0) != l.irq.is_none() {
            problems.push(format!(
                "PCI {:02x}:{:02x}.{}: pin {} but irq {:?}",
                l.bus, l.dev, l.func, l.pin, l.irq
            ));
        }
    }

    // ACPI tables the firmware wrote.
    for sig in ACPI_TABLES {
        let want = format!("ACPI {sig}");
        if !log.lines().any(|l| {
            let l = l.trim();
            l == want || l.starts_with(&format!("{want} "))
        }) {
            problems.push(format!("no `{want}` line"));
        }
    }

    // The last thing printed is the power-off line.
    let last = log.lines().map(str::trim).rfind(|l| !l.is_empty());
    if last != Some(POWER_OFF_LINE) {
        problems.push(format!(
            "COM1 log does not end with `{POWER_OFF_LINE}` (last line: {last:?})"
        ));
    }

    if !problems.is_empty() {
        problems.push(context());
        // Keep the temp dir (config + log) for inspection.
        std::mem::forget(tmp);
    } else {
        eprintln!(
            "{}: {} PCI functions, ACPI {:?}, powered off in {:.1} s",
            profile.name,
            found.len(),
            ACPI_TABLES,
            run.elapsed.as_secs_f64()
        );
    }
    problems
}

#[test]
fn firmware_diagnostic_boot_matches_every_profile() {
    if skip_without_kvm("firmware_diagnostic_boot_matches_every_profile") {
        return;
    }
    chassis_bin(); // fail early with "run make build first"
    let mut failures = Vec::new();
    for profile in ALL {
        let problems = check_profile(profile);
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
