//! Issue [4]: how the hypervisor contains a stub domain that misbehaves, with the real
//! `chassis-stubdom` image on the software CPU. The stub obeys a test-only start-up hook
//! (`stubdomain_selftest`, `hypervisor_abi::stubdom::SelfTest`):
//!
//! * it reads stub-physical memory it has no mapping for: the access faults inside the
//!   stub domain (its own #PF handler), which reports it and gives up;
//! * it maps a page just past its guest's memory window and writes to it: the
//!   hypervisor's backstop refuses the access (nothing of the host behind it is reachable)
//!   and reports it;
//! * it stops answering: the guest's vCPU gives up waiting after the response timeout;
//! * it panics.
//!
//! Each time the guest is stopped with a clear message naming the stub domain, `chassis`
//! exits non-zero by itself (no signal, no hang), and nothing of the guest ran on.

use chassis_tests::{TempDir, chassis_create, skip_without_emu, tail};
use std::fs;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(120);

/// The firmware diagnostic boot in stubdom mode with self-test `n`; (run, COM1 log).
fn run_selftest(n: u32) -> (chassis_tests::RunResult, String) {
    let tmp = TempDir::new(&format!("stub-selftest-{n}"));
    let com1 = tmp.path().join("com1.log");
    let cfg = tmp.path().join("diag.cfg");
    fs::write(
        &cfg,
        format!(
            "# written by tests/tests/stubdom.rs\n\
             name = \"selftest\"\n\
             type = \"hvm\"\n\
             memory = 64\n\
             vcpus = 1\n\
             serial = \"file:{}\"\n\
             on_poweroff = \"destroy\"\n\
             cpu_backend = \"emu\"\n\
             device_model_stubdomain_override = 1\n\
             stubdomain_selftest = {n}\n\
             stubdomain_response_timeout = 3\n",
            com1.display()
        ),
    )
    .expect("write config");
    let run = chassis_create(&cfg, TIMEOUT);
    let log = fs::read_to_string(&com1).unwrap_or_default();
    (run, log)
}

/// The checks every contained failure must pass; `what` must appear in stderr.
fn check_contained(n: u32, what: &[&str]) {
    let (run, log) = run_selftest(n);
    let context = format!(
        "{}\n--- COM1 (tail) ---\n{}",
        run.describe(),
        tail(&log, 20)
    );
    assert!(!run.timed_out, "chassis hung\n{context}");
    let code = run.status.and_then(|s| s.code());
    assert!(
        matches!(code, Some(c) if c != 0),
        "chassis must exit non-zero by itself (not by a signal): {code:?}\n{context}"
    );
    assert!(
        run.stderr.contains("selftest-dm"),
        "the report does not name the stub domain\n{context}"
    );
    for w in what {
        assert!(
            run.stderr.contains(w),
            "the report does not say {w:?}\n{context}"
        );
    }
    assert!(
        !log.contains("powered off") && !log.contains("PCI 00:"),
        "the guest ran on after its device model failed\n{context}"
    );
}

#[test]
fn stub_touching_unmapped_memory_faults_inside_the_stub_and_is_reported() {
    if skip_without_emu("stub_touching_unmapped_memory_faults_inside_the_stub_and_is_reported") {
        return;
    }
    check_contained(1, &["page fault", "0x70000000"]);
}

#[test]
fn stub_touching_memory_past_its_guest_is_refused_by_the_hypervisor() {
    if skip_without_emu("stub_touching_memory_past_its_guest_is_refused_by_the_hypervisor") {
        return;
    }
    check_contained(2, &["outside its memory"]);
}

#[test]
fn stub_that_stops_answering_stops_its_guest() {
    if skip_without_emu("stub_that_stops_answering_stops_its_guest") {
        return;
    }
    check_contained(3, &["did not answer"]);
}

#[test]
fn stub_that_panics_stops_its_guest() {
    if skip_without_emu("stub_that_panics_stops_its_guest") {
        return;
    }
    check_contained(4, &["crashed", "panic"]);
}
