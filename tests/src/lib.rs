//! Helpers for the integration tests (see tests/tests/).
//!
//! The tests run the real `chassis` binary (`target/release/chassis`, built by `make build`)
//! on real images and parse what the guest printed. Everything here is std-only.

use std::fs::{self, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chassis_devices::profile::Profile;

/// Where the device model runs: the two modes every boot test runs in (issue [4]: the
/// test matrix). The mode is one config line; everything else about a boot is the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// In the `chassis` process (`device_model_stubdomain_override = 0`).
    Process,
    /// In a stub domain of its own (`device_model_stubdomain_override = 1`).
    Stubdom,
}

impl Mode {
    pub const ALL: [Mode; 2] = [Mode::Process, Mode::Stubdom];

    /// The config line selecting this mode.
    pub fn config_line(self) -> &'static str {
        match self {
            Mode::Process => "device_model_stubdomain_override = 0",
            Mode::Stubdom => "device_model_stubdomain_override = 1",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Process => "process mode",
            Mode::Stubdom => "stubdom mode",
        }
    }

    /// A short tag for file and domain names.
    pub fn tag(self) -> &'static str {
        match self {
            Mode::Process => "proc",
            Mode::Stubdom => "stub",
        }
    }
}

/// One test body, one `#[test]` per device-model [`Mode`]:
/// `mode_matrix! { fn name(mode) { ... } }` gives `name::process_mode` and
/// `name::stubdom_mode`, so a failure names its mode and both always run.
#[macro_export]
macro_rules! mode_matrix {
    ($(#[$meta:meta])* fn $name:ident($mode:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            fn body($mode: $crate::Mode) $body
            #[test]
            fn process_mode() {
                body($crate::Mode::Process)
            }
            #[test]
            fn stubdom_mode() {
                body($crate::Mode::Stubdom)
            }
        }
    };
}

/// The workspace root (the directory holding `Makefile` and `target/`).
pub fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .expect("tests/ lives inside the workspace")
        .to_path_buf()
}

/// The release `chassis` binary: `$CHASSIS_BIN` if set, else
/// `$CARGO_TARGET_DIR/release/chassis` if that variable is set (a shared build
/// directory), else `<repo>/target/release/chassis`. Panics with a hint when it has not
/// been built.
pub fn chassis_bin() -> PathBuf {
    let bin = if let Some(b) = std::env::var_os("CHASSIS_BIN").filter(|v| !v.is_empty()) {
        PathBuf::from(b)
    } else if let Some(t) = std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        PathBuf::from(t).join("release/chassis")
    } else {
        repo_root().join("target/release/chassis")
    };
    if !bin.is_file() {
        panic!(
            "{} not found: run `make build` first (the integration tests use the release build)",
            bin.display()
        );
    }
    bin
}

/// Whether `/dev/kvm` can be opened read-write by this process.
pub fn kvm_usable() -> bool {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// Print a loud skip notice and return true if the emu CPU core is not in this build
/// (`hypervisor_emu::AVAILABLE`, as the `chassis` binary was built from the same tree).
pub fn skip_without_emu(test: &str) -> bool {
    if hypervisor_emu::AVAILABLE {
        return false;
    }
    eprintln!();
    eprintln!("**********************************************************************");
    eprintln!("SKIPPED: {test}: the emu CPU core is not available in this build");
    eprintln!("**********************************************************************");
    eprintln!();
    true
}

/// Print a loud skip notice on stderr (visible with `--nocapture` and in CI logs of
/// failing runs) and return true if the KVM backend cannot run here.
pub fn skip_without_kvm(test: &str) -> bool {
    if kvm_usable() {
        return false;
    }
    eprintln!();
    eprintln!("**********************************************************************");
    eprintln!("SKIPPED: no /dev/kvm ({test}: cannot open /dev/kvm read-write)");
    eprintln!("**********************************************************************");
    eprintln!();
    true
}

/// A fresh directory under `std::env::temp_dir()`, removed on drop unless the thread is
/// panicking (a failed test keeps its files for inspection; the path is in the message).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "chassis-test-{tag}-{}-{nanos}-{n}",
            std::process::id()
        ));
        fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("kept {} for inspection", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// What a finished (or killed) child process left behind.
#[derive(Debug)]
pub struct RunResult {
    /// `None` when the process was killed at the timeout.
    pub status: Option<ExitStatus>,
    pub timed_out: bool,
    pub elapsed: Duration,
    pub stdout: String,
    pub stderr: String,
}

impl RunResult {
    pub fn success(&self) -> bool {
        !self.timed_out && self.status.is_some_and(|s| s.success())
    }

    /// A short report for assertion messages: status and the tails of both streams.
    pub fn describe(&self) -> String {
        format!(
            "status: {}{} after {:.1} s\n--- stdout (tail) ---\n{}\n--- stderr (tail) ---\n{}",
            match self.status {
                Some(s) => s.to_string(),
                None => "killed".to_string(),
            },
            if self.timed_out { " (TIMEOUT)" } else { "" },
            self.elapsed.as_secs_f64(),
            tail(&self.stdout, 40),
            tail(&self.stderr, 40),
        )
    }
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Run `cmd` with stdin closed and stdout/stderr captured; kill it after `timeout`.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> RunResult {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let drain = |r: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if start.elapsed() >= timeout => {
                timed_out = true;
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for {cmd:?}: {e}"),
        }
    };
    let elapsed = start.elapsed();
    RunResult {
        status,
        timed_out,
        elapsed,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Run `chassis create <cfg>` from the repository root with a timeout.
pub fn chassis_create(cfg: &Path, timeout: Duration) -> RunResult {
    let mut cmd = Command::new(chassis_bin());
    cmd.arg("create").arg(cfg).current_dir(repo_root());
    run_with_timeout(cmd, timeout)
}

/// `cache/paths.env` (written by scripts/setup.sh) as key/value pairs.
pub fn paths_env() -> Vec<(String, String)> {
    let p = repo_root().join("cache/paths.env");
    let text = fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}: run `make setup` first", p.display()));
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// One `PCI ...` line of the firmware's diagnostic output:
/// `PCI 00:02.0 5853:0001 rev 01 class ff8000 subsys 5853:0001 pin A irq 5`
/// (`pin -` / `irq -` when the function has none). Tokens after these are ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciLine {
    pub bus: u8,
    pub dev: u8,
    pub func: u8,
    pub vendor: u16,
    pub device: u16,
    pub revision: u8,
    pub class: u32,
    pub subsystem_vendor: u16,
    pub subsystem: u16,
    /// 0 = none, 1..4 = INTA..INTD
    pub pin: u8,
    pub irq: Option<u8>,
}

impl PciLine {
    /// The function's devfn (dev << 3 | func).
    pub fn devfn(&self) -> u8 {
        (self.dev << 3) | self.func
    }
}

fn hex_pair(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once(':')?;
    Some((
        u16::from_str_radix(a, 16).ok()?,
        u16::from_str_radix(b, 16).ok()?,
    ))
}

/// Parse one line; `None` if it is not a firmware PCI line.
pub fn parse_pci_line(line: &str) -> Option<PciLine> {
    let mut t = line.split_whitespace();
    if t.next()? != "PCI" {
        return None;
    }
    let (bus, devfunc) = t.next()?.split_once(':')?;
    let (dev, func) = devfunc.split_once('.')?;
    let (vendor, device) = hex_pair(t.next()?)?;
    let mut l = PciLine {
        bus: u8::from_str_radix(bus, 16).ok()?,
        dev: u8::from_str_radix(dev, 16).ok()?,
        func: u8::from_str_radix(func, 16).ok()?,
        vendor,
        device,
        revision: 0,
        class: 0,
        subsystem_vendor: 0,
        subsystem: 0,
        pin: 0,
        irq: None,
    };
    let (mut rev, mut class, mut subsys, mut pin, mut irq) = (false, false, false, false, false);
    while let Some(key) = t.next() {
        let v = match key {
            "rev" | "class" | "subsys" | "pin" | "irq" => t.next()?,
            _ => continue,
        };
        match key {
            "rev" => {
                l.revision = u8::from_str_radix(v, 16).ok()?;
                rev = true;
            }
            "class" => {
                l.class = u32::from_str_radix(v, 16).ok()?;
                class = true;
            }
            "subsys" => {
                (l.subsystem_vendor, l.subsystem) = hex_pair(v)?;
                subsys = true;
            }
            "pin" => {
                l.pin = match v {
                    "-" => 0,
                    "A" => 1,
                    "B" => 2,
                    "C" => 3,
                    "D" => 4,
                    _ => return None,
                };
                pin = true;
            }
            _ => {
                l.irq = if v == "-" {
                    None
                } else {
                    Some(v.parse().ok()?)
                };
                irq = true;
            }
        }
    }
    (rev && class && subsys && pin && irq).then_some(l)
}

/// Every firmware PCI line of a log, in order.
pub fn parse_pci_lines(log: &str) -> Vec<PciLine> {
    log.lines().filter_map(parse_pci_line).collect()
}

/// Format a PCI function the way the firmware prints it (for messages and comparisons).
pub fn format_pci(devfn: u8, ident: &chassis_devices::pci::PciIdent, irq: Option<u8>) -> String {
    let pin = match ident.interrupt_pin {
        0 => "-".to_string(),
        p @ 1..=4 => ((b'A' + p - 1) as char).to_string(),
        p => format!("?{p}"),
    };
    format!(
        "PCI 00:{:02x}.{} {:04x}:{:04x} rev {:02x} class {:06x} subsys {:04x}:{:04x} pin {} irq {}",
        devfn >> 3,
        devfn & 7,
        ident.vendor,
        ident.device,
        ident.revision,
        ident.class,
        ident.subsystem_vendor,
        ident.subsystem,
        pin,
        irq.map_or("-".to_string(), |i| i.to_string())
    )
}

/// The firmware's last line in its diagnostic boot.
pub const POWER_OFF_LINE: &str = "chassis-firmware: diagnostic boot done, powering off";
/// The ACPI tables the diagnostic boot must list.
pub const ACPI_TABLES: [&str; 3] = ["FACP", "DSDT", "APIC"];

/// Boot one profile's diagnostic firmware through `chassis create` on `cpu_backend`
/// (`extra` = more config lines, e.g. `deterministic = 1`); returns the problems found
/// (empty = pass). The COM1 log must list exactly the profile's PCI functions, the ACPI
/// tables, and end with the power-off line; `chassis` must exit 0.
pub fn check_diagnostic_boot(
    profile: &Profile,
    cpu_backend: &str,
    extra: &str,
    timeout: Duration,
) -> Vec<String> {
    let tmp = TempDir::new(&format!("{}-{cpu_backend}", profile.name));
    let log_path = tmp.path().join("com1.log");
    let cfg_path = tmp.path().join("diag.cfg");
    let cfg = format!(
        "# written by chassis-tests (check_diagnostic_boot)\n\
         name = \"diag-{name}\"\n\
         type = \"hvm\"\n\
         memory = {memory}\n\
         vcpus = 1\n\
         serial = \"file:{log}\"\n\
         on_poweroff = \"destroy\"\n\
         device_model_version = \"{name}\"\n\
         cpu_backend = \"{cpu_backend}\"\n\
         {extra}\n",
        name = profile.name,
        log = log_path.display(),
        // emu: small and fast; kvm: what the kvm test always used.
        memory = if cpu_backend == "emu" { 128 } else { 256 },
    );
    fs::write(&cfg_path, cfg).expect("write config");

    let run = chassis_create(&cfg_path, timeout);
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
            "chassis did not finish within {timeout:?} (killed)"
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
            "{} on {cpu_backend}: {} PCI functions, ACPI {:?}, powered off in {:.1} s",
            profile.name,
            found.len(),
            ACPI_TABLES,
            run.elapsed.as_secs_f64()
        );
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_firmware_format() {
        let l = parse_pci_line(
            "PCI 00:02.0 5853:0001 rev 01 class ff8000 subsys 5853:0001 pin A irq 5",
        )
        .unwrap();
        assert_eq!((l.bus, l.dev, l.func, l.devfn()), (0, 2, 0, 0x10));
        assert_eq!(
            (l.vendor, l.device, l.revision, l.class),
            (0x5853, 1, 1, 0xff8000)
        );
        assert_eq!(
            (l.subsystem_vendor, l.subsystem, l.pin, l.irq),
            (0x5853, 1, 1, Some(5))
        );

        let l = parse_pci_line(
            "  PCI 00:01.0 8086:7000 rev 00 class 060100 subsys 0000:0000 pin - irq -\r",
        )
        .unwrap();
        assert_eq!((l.devfn(), l.pin, l.irq), (0x08, 0, None));
    }

    #[test]
    fn ignores_other_lines() {
        assert!(parse_pci_line("PCI-BEGIN").is_none());
        assert!(parse_pci_line("PCI 00:01.0 8086:7000").is_none()); // the initramfs format
        assert!(parse_pci_line("ACPI FACP at 0xfc001000").is_none());
        assert!(
            parse_pci_line("PCI 00:01.0 8086:7000 rev zz class 060100 subsys 0:0 pin - irq -")
                .is_none()
        );
    }

    #[test]
    fn format_round_trips_through_the_parser() {
        for p in chassis_devices::profile::ALL {
            for (devfn, ident) in p.pci_functions() {
                let line = format_pci(devfn, &ident, None);
                let l = parse_pci_line(&line).unwrap_or_else(|| panic!("{line}"));
                assert_eq!(l.devfn(), devfn);
                assert_eq!(
                    (l.vendor, l.device, l.revision),
                    (ident.vendor, ident.device, ident.revision)
                );
                assert_eq!(l.pin, ident.interrupt_pin);
            }
        }
    }

    #[test]
    fn run_with_timeout_kills() {
        let mut c = Command::new("sleep");
        c.arg("10");
        let r = run_with_timeout(c, Duration::from_millis(200));
        assert!(r.timed_out && r.status.is_none() && !r.success());
        let r = run_with_timeout(Command::new("true"), Duration::from_secs(10));
        assert!(r.success(), "{}", r.describe());
    }

    #[test]
    fn temp_dirs_are_unique_and_cleaned() {
        let (a, b) = (TempDir::new("x"), TempDir::new("x"));
        assert_ne!(a.path(), b.path());
        let p = a.path().to_path_buf();
        drop(a);
        assert!(!p.exists());
    }
}
