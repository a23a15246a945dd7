//! From xl.cfg keys to a validated [`hypervisor_core::DomainConfig`].
//!
//! Key semantics follow xl.cfg(5) (XEN-4.19; research/xen-hvm.md §6.2). The rule for keys
//! xl knows but chassis does not implement yet: ignore them with a warning, unless the
//! value asks for a guest-visible machine chassis cannot build (no ACPI, disks, NICs,
//! passthrough, ...); those are refused, so a guest never silently gets a different
//! machine than its config describes.
//!
//! Choices where xl's behaviour is not an option (all in the README table):
//! * `memory` defaults to [`DEFAULT_MEMORY_MIB`] (libxl's default is 32 MiB, too small for
//!   a modern HVM guest), within [`MIN_MEMORY_MIB`] ..= [`MAX_MEMORY_MIB`].
//! * A config without `type`/`builder` (a PV guest to xl) runs as HVM, with a warning.
//! * `serial = "pty"` / `"vc"` send COM1 to standard output (`chassis create` runs in the
//!   foreground, like `xl create -c`), with a warning.
//! * Relative paths (`kernel`, `ramdisk`, `serial = "file:..."`, `debugcon = "file:..."`)
//!   resolve against the config file's directory; in `KEY=VALUE` command-line arguments
//!   they resolve against the current directory.
//! * chassis's own keys: `cpu_backend` (`"kvm"`, `"emu"`), `debugcon`, and
//!   `deterministic` (0/1, only with `cpu_backend = "emu"`): guest time from vCPU 0's
//!   retired instructions (1 instruction = 1 ns), timers at exact instruction counts,
//!   HLT skips to the next timer, the RTC starts at 2026-01-01 00:00:00 UTC.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use chassis_devices::profile;
use hypervisor_abi::stubdom::{SelfTest, map};
use hypervisor_core::{Backend, CharTarget, DomainConfig, StubdomConfig};

use crate::config::{Config, Loc, Node, Setting, Value, parse_number};

/// Guest RAM when the config has no `memory` key.
pub const DEFAULT_MEMORY_MIB: u64 = 512;
/// Smallest `memory` accepted: the firmware, its tables and a minimal kernel must fit.
pub const MIN_MEMORY_MIB: u64 = 16;
/// Largest `memory` accepted (64 GiB).
pub const MAX_MEMORY_MIB: u64 = 64 * 1024;
/// Largest `vcpus` accepted.
pub const MAX_VCPUS: u64 = 128;
/// Unknown keys warned about one by one; the rest are counted.
const MAX_UNKNOWN_WARNINGS: usize = 50;
/// What `inputs` calls the stub-domain image.
pub const STUBDOM_WHAT: &str = "stub-domain image";
/// Most seconds `stubdomain_response_timeout` accepts.
pub const MAX_STUBDOM_TIMEOUT_S: u64 = 3600;

/// A located message: `place: msg` (place is `file:line:col`, `file:line` or `file`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diag {
    pub place: Option<String>,
    pub msg: String,
    /// (from the command line, line, column): messages are listed in source order.
    order: (bool, u32, u32),
}

impl Diag {
    fn at(at: Option<&Loc>, line_only: bool, msg: String) -> Diag {
        Diag {
            place: at.map(|l| {
                if line_only {
                    l.line_only()
                } else {
                    l.to_string()
                }
            }),
            msg,
            order: at.map_or((false, 0, 0), |l| {
                (l.source.starts_with('<'), l.line, l.col)
            }),
        }
    }
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.place {
            Some(p) => write!(f, "{p}: {}", self.msg),
            None => write!(f, "{}", self.msg),
        }
    }
}

/// Errors and warnings found while checking a config.
#[derive(Clone, Debug, Default)]
pub struct Diagnostics {
    pub errors: Vec<Diag>,
    pub warnings: Vec<Diag>,
}

/// What the caller knows besides the config.
#[derive(Clone, Debug)]
pub struct Options {
    /// The name of the config file as the user gave it (the `source` of its locations).
    pub source: String,
    /// The directory relative paths in that file resolve against.
    pub base_dir: PathBuf,
    /// The guest-firmware ELF image.
    pub firmware: PathBuf,
    /// `--debugcon FILE` from the command line (overrides the `debugcon` key).
    pub debugcon: Option<PathBuf>,
    /// `--stop-on-output STRING` from the command line.
    pub stop_on_output: Option<String>,
    /// The stub-domain unikernel image (`$CHASSIS_STUBDOM` or next to the executable);
    /// only read with `device_model_stubdomain_override = 1`.
    pub stubdom_image: PathBuf,
}

/// A file the domain will read or write, and the key that named it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRef {
    /// `kernel`, `ramdisk`, `serial output`, `debug console output`.
    pub what: &'static str,
    pub path: PathBuf,
    /// Where the config named it (`None`: the command line's `--debugcon`).
    pub at: Option<Loc>,
}

/// A config that passed every check.
#[derive(Clone, Debug)]
pub struct Checked {
    pub domain: DomainConfig,
    /// Files the domain reads (checked by [`preflight`]).
    pub inputs: Vec<FileRef>,
    /// Files the domain writes.
    pub outputs: Vec<FileRef>,
}

/// The actions of `on_poweroff`, `on_reboot`, `on_crash` (xl.cfg(5)).
const ACTIONS: &[&str] = &[
    "destroy",
    "restart",
    "rename-restart",
    "preserve",
    "coredump-destroy",
    "coredump-restart",
    "soft-reset",
];

/// Keys [`build`] reads itself.
const HANDLED: &[&str] = &[
    "name",
    "type",
    "builder",
    "memory",
    "maxmem",
    "vcpus",
    "maxvcpus",
    "kernel",
    "ramdisk",
    "extra",
    "cmdline",
    "root",
    "serial",
    "on_poweroff",
    "on_reboot",
    "on_crash",
    "device_model_version",
    "device_model_stubdomain_override",
    "cpu_backend",
    "debugcon",
    "deterministic",
];

/// What happens to an xl key chassis does not implement (yet).
#[derive(Clone, Copy)]
enum Policy {
    /// Ignored with a warning.
    Ignore,
    /// Only applies with a stub domain: ignored with a warning.
    Stubdom,
    /// A boolean chassis's machine always has: true is accepted silently, false refused
    /// with "KEY = 0 is not supported: <why>".
    AlwaysOn(&'static str),
    /// Accepted when empty (`[]` or `""`), refused with the message otherwise.
    MustBeEmpty(&'static str),
    /// Refused whatever the value: "key 'KEY' is not supported: <why>".
    Refuse(&'static str),
    /// A key with its own value rules.
    Custom(fn(&Setting) -> Outcome),
}

enum Outcome {
    Accept,
    Warn(String),
    Error(String),
}

const NO_DISKS: &str = "disks are not emulated yet: remove 'disk' or leave the list empty";
const NO_NICS: &str =
    "network interfaces are not emulated yet: remove 'vif' or leave the list empty";
const NO_PASSTHROUGH: &str =
    "device passthrough is not supported: remove the key or leave it empty";

/// xl.cfg keys chassis knows of but does not implement.
const XL_KEYS: &[(&str, Policy)] = &[
    // Platform features our machine always has.
    (
        "acpi",
        Policy::AlwaysOn("the chassis machine always has ACPI (PIIX4 PM and ACPI tables)"),
    ),
    (
        "apic",
        Policy::AlwaysOn("the chassis machine always has local APICs and an IOAPIC"),
    ),
    ("pae", Policy::AlwaysOn("chassis's vCPUs always have PAE")),
    (
        "xen_platform_pci",
        Policy::AlwaysOn("the Xen platform PCI device is part of every chassis profile"),
    ),
    ("acpi_s3", Policy::Ignore),
    ("acpi_s4", Policy::Ignore),
    ("acpi_laptop_slate", Policy::Ignore),
    ("hpet", Policy::Ignore),
    ("viridian", Policy::Ignore),
    ("nx", Policy::Ignore),
    ("timer_mode", Policy::Ignore),
    ("tsc_mode", Policy::Ignore),
    ("localtime", Policy::Ignore),
    ("rtc_timeoffset", Policy::Ignore),
    ("vpmu", Policy::Ignore),
    ("nestedhvm", Policy::Ignore),
    ("altp2m", Policy::Ignore),
    ("hap", Policy::Ignore),
    ("oos", Policy::Ignore),
    ("shadow_memory", Policy::Ignore),
    ("passthrough", Policy::Ignore),
    ("e820_host", Policy::Ignore),
    ("ms_vm_genid", Policy::Ignore),
    (
        "mmio_hole",
        Policy::Refuse("the PCI hole of the chassis machine is fixed (0xe0000000 .. 4 GiB)"),
    ),
    (
        "cpuid",
        Policy::MustBeEmpty("CPUID policies (cpuid = ...) are not supported yet: remove the key"),
    ),
    (
        "vnuma",
        Policy::MustBeEmpty("virtual NUMA topologies are not supported: remove 'vnuma'"),
    ),
    (
        "smbios",
        Policy::MustBeEmpty("custom SMBIOS strings are not supported yet: remove 'smbios'"),
    ),
    (
        "acpi_firmware",
        Policy::Refuse("extra ACPI tables cannot be loaded yet"),
    ),
    (
        "smbios_firmware",
        Policy::Refuse("extra SMBIOS tables cannot be loaded yet"),
    ),
    ("bios", Policy::Custom(bios)),
    ("bios_path_override", Policy::Custom(bios_path_override)),
    ("vendor_device", Policy::Custom(vendor_device)),
    // Graphics, input, sound, USB.
    ("vga", Policy::Ignore),
    ("stdvga", Policy::Ignore),
    ("videoram", Policy::Ignore),
    ("vnc", Policy::Ignore),
    ("vnclisten", Policy::Ignore),
    ("vncdisplay", Policy::Ignore),
    ("vncunused", Policy::Ignore),
    ("vncpasswd", Policy::Ignore),
    ("keymap", Policy::Ignore),
    ("sdl", Policy::Ignore),
    ("opengl", Policy::Ignore),
    ("nographic", Policy::Ignore),
    ("spice", Policy::Ignore),
    ("spicehost", Policy::Ignore),
    ("spiceport", Policy::Ignore),
    ("spicetls_port", Policy::Ignore),
    ("spicedisable_ticketing", Policy::Ignore),
    ("spicepasswd", Policy::Ignore),
    ("spiceagent_mouse", Policy::Ignore),
    ("spicevdagent", Policy::Ignore),
    ("spice_clipboard_sharing", Policy::Ignore),
    ("spiceusbredirection", Policy::Ignore),
    ("spice_image_compression", Policy::Ignore),
    ("spice_streaming_video", Policy::Ignore),
    ("vfb", Policy::Ignore),
    ("vkb", Policy::Ignore),
    ("usb", Policy::Ignore),
    ("usbversion", Policy::Ignore),
    ("usbdevice", Policy::Ignore),
    ("usbctrl", Policy::Ignore),
    ("usbdev", Policy::Ignore),
    ("soundhw", Policy::Ignore),
    // Storage and network.
    ("disk", Policy::MustBeEmpty(NO_DISKS)),
    ("vif", Policy::MustBeEmpty(NO_NICS)),
    ("boot", Policy::Ignore),
    ("hdtype", Policy::Ignore),
    ("channel", Policy::Ignore),
    (
        "vtpm",
        Policy::MustBeEmpty("virtual TPMs are not supported yet: remove 'vtpm'"),
    ),
    ("p9", Policy::Ignore),
    ("pvcalls", Policy::Ignore),
    ("vdispl", Policy::Ignore),
    ("vsnd", Policy::Ignore),
    ("virtio", Policy::Ignore),
    // Passthrough.
    ("pci", Policy::MustBeEmpty(NO_PASSTHROUGH)),
    ("dtdev", Policy::MustBeEmpty(NO_PASSTHROUGH)),
    ("iomem", Policy::MustBeEmpty(NO_PASSTHROUGH)),
    ("ioports", Policy::MustBeEmpty(NO_PASSTHROUGH)),
    ("irqs", Policy::MustBeEmpty(NO_PASSTHROUGH)),
    ("gfx_passthru", Policy::Ignore),
    ("pci_permissive", Policy::Ignore),
    ("pci_msitranslate", Policy::Ignore),
    ("pci_seize", Policy::Ignore),
    ("pci_power_mgmt", Policy::Ignore),
    ("rdm", Policy::Ignore),
    ("rdm_mem_boundary", Policy::Ignore),
    // Host-side placement, scheduling, identity, security.
    ("uuid", Policy::Ignore),
    ("pool", Policy::Ignore),
    ("cpus", Policy::Ignore),
    ("cpus_soft", Policy::Ignore),
    ("cpu_weight", Policy::Ignore),
    ("cap", Policy::Ignore),
    ("seclabel", Policy::Ignore),
    ("init_seclabel", Policy::Ignore),
    ("nomigrate", Policy::Ignore),
    ("driver_domain", Policy::Ignore),
    ("max_grant_frames", Policy::Ignore),
    ("max_maptrack_frames", Policy::Ignore),
    ("max_grant_version", Policy::Ignore),
    ("max_event_channels", Policy::Ignore),
    ("claim_mode", Policy::Ignore),
    ("on_watchdog", Policy::Ignore),
    ("on_soft_reset", Policy::Ignore),
    ("bootloader", Policy::Ignore),
    ("bootloader_args", Policy::Ignore),
    // The QEMU device model and its stub domain.
    ("device_model_override", Policy::Ignore),
    ("device_model_args", Policy::Ignore),
    ("device_model_args_hvm", Policy::Ignore),
    ("device_model_args_pv", Policy::Ignore),
    ("device_model_user", Policy::Ignore),
    ("dm_restrict", Policy::Ignore),
    ("stubdomain_kernel", Policy::Stubdom),
    ("stubdomain_cmdline", Policy::Stubdom),
    ("stubdomain_ramdisk", Policy::Stubdom),
    ("stubdomain_memory", Policy::Stubdom),
    ("stubdomain_memkb", Policy::Stubdom),
    // chassis test hooks of the stub domain.
    ("stubdomain_selftest", Policy::Stubdom),
    ("stubdomain_response_timeout", Policy::Stubdom),
    ("device_model_stubdomain_seclabel", Policy::Stubdom),
    // Other architectures and PV-only keys.
    ("device_tree", Policy::Ignore),
    ("gic_version", Policy::Ignore),
    ("vuart", Policy::Ignore),
    ("tee", Policy::Ignore),
    ("sve", Policy::Ignore),
    ("pvshim", Policy::Ignore),
    ("pvshim_path", Policy::Ignore),
    ("pvshim_cmdline", Policy::Ignore),
    ("pvshim_extra", Policy::Ignore),
];

fn bios(s: &Setting) -> Outcome {
    match &s.value.value {
        Value::Str(v) if v == "seabios" => Outcome::Accept,
        Value::Str(v) if v == "rombios" => Outcome::Warn(
            "bios = \"rombios\" is not supported: chassis boots SeaBIOS (or the kernel directly)"
                .into(),
        ),
        Value::Str(v) if v == "ovmf" => Outcome::Error(
            "bios = \"ovmf\" (UEFI) is not supported yet; use bios = \"seabios\"".into(),
        ),
        Value::Str(v) => Outcome::Error(format!(
            "unknown bios \"{}\"; xl knows rombios, seabios, ovmf",
            v.escape_default()
        )),
        other => Outcome::Error(type_msg("bios", "a string", other)),
    }
}

fn bios_path_override(s: &Setting) -> Outcome {
    match &s.value.value {
        Value::Str(v) if !v.is_empty() => Outcome::Accept,
        Value::Str(_) => Outcome::Error("'bios_path_override' must not be empty".into()),
        other => Outcome::Error(type_msg("bios_path_override", "a string", other)),
    }
}

/// Where Debian's SeaBIOS is unpacked by `make setup`, relative to the repository.
pub const SEABIOS_FROM_REPO: &str = "cache/x/seabios/usr/share/seabios/bios-256k.bin";

/// The SeaBIOS image when neither `bios_path_override` nor `CHASSIS_SEABIOS` names one:
/// in the repository's `cache/`, found the way `chassis` finds the guest firmware (the
/// executable is `<repo>/target/<profile>/chassis`).
pub fn default_seabios() -> PathBuf {
    if let Some(p) = std::env::var_os("CHASSIS_SEABIOS").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let repo = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    repo.join(SEABIOS_FROM_REPO)
}

/// What [`FileRef::what`] says for the SeaBIOS image (preflight adds a hint).
const SEABIOS_WHAT: &str = "SeaBIOS image";

fn vendor_device(s: &Setting) -> Outcome {
    match &s.value.value {
        Value::Str(v) if v.is_empty() || v == "none" => Outcome::Accept,
        Value::Str(v) if v == "xenserver" => Outcome::Error(
            "vendor_device = \"xenserver\" (the XenServer platform device ID) is not supported"
                .into(),
        ),
        Value::Str(v) => Outcome::Error(format!(
            "unknown vendor_device \"{}\"; xl knows none, xenserver",
            v.escape_default()
        )),
        other => Outcome::Error(type_msg("vendor_device", "a string", other)),
    }
}

fn type_msg(key: &str, expected: &str, found: &Value) -> String {
    format!("'{key}' must be {expected}, found {}", found.describe())
}

fn policy(key: &str) -> Option<Policy> {
    XL_KEYS.iter().find(|(k, _)| *k == key).map(|(_, p)| *p)
}

/// Every key chassis knows (read or ignored), for "did you mean".
fn known_keys() -> impl Iterator<Item = &'static str> {
    HANDLED
        .iter()
        .copied()
        .chain(XL_KEYS.iter().map(|(k, _)| *k))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn suggestion(key: &str) -> Option<&'static str> {
    if key.len() > 64 {
        return None;
    }
    let limit = if key.len() <= 4 { 1 } else { 2 };
    known_keys()
        .map(|k| (edit_distance(key, k), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Check a parsed config and turn it into a [`DomainConfig`]. Problems go to `diags`;
/// `None` when there was at least one error.
pub fn build(cfg: &Config, opts: &Options, diags: &mut Diagnostics) -> Option<Checked> {
    let mut b = Builder {
        cfg,
        opts,
        diags,
        errors_before: 0,
    };
    b.errors_before = b.diags.errors.len();
    let r = b.run();
    diags.errors.sort_by_key(|d| d.order);
    diags.warnings.sort_by_key(|d| d.order);
    r
}

struct Builder<'a> {
    cfg: &'a Config,
    opts: &'a Options,
    diags: &'a mut Diagnostics,
    errors_before: usize,
}

impl<'a> Builder<'a> {
    fn error_at(&mut self, at: &Loc, msg: impl Into<String>) {
        self.diags
            .errors
            .push(Diag::at(Some(at), false, msg.into()));
    }

    fn error_file(&mut self, msg: impl Into<String>) {
        let mut d = Diag::at(None, false, msg.into());
        d.place = Some(self.opts.source.clone());
        self.diags.errors.push(d);
    }

    fn warn_at(&mut self, at: &Loc, msg: impl Into<String>) {
        self.diags
            .warnings
            .push(Diag::at(Some(at), true, msg.into()));
    }

    fn warn_file(&mut self, msg: impl Into<String>) {
        let mut d = Diag::at(None, true, msg.into());
        d.place = Some(self.opts.source.clone());
        self.diags.warnings.push(d);
    }

    fn get(&self, key: &str) -> Option<&'a Setting> {
        self.cfg.get(key)
    }

    fn type_error(&mut self, s: &Setting, expected: &str) {
        self.error_at(&s.value.at, type_msg(&s.key, expected, &s.value.value));
    }

    /// The string value of `key`; a type error for anything else.
    fn string(&mut self, key: &str) -> Option<(&'a str, &'a Setting)> {
        let s = self.get(key)?;
        match &s.value.value {
            Value::Str(v) => Some((v.as_str(), s)),
            _ => {
                self.type_error(s, "a string");
                None
            }
        }
    }

    /// The numeric value of `key`: a number, or a string holding one (xl reads both,
    /// and tools like xen-create-image write `memory = '256'`).
    fn number(&mut self, key: &str, expected: &str) -> Option<(u64, &'a Setting)> {
        let s = self.get(key)?;
        let n = match &s.value.value {
            Value::Num { value, .. } => Some(*value),
            Value::Str(v) => parse_number(v.trim()).ok(),
            Value::List(_) => None,
        };
        match n {
            Some(n) => Some((n, s)),
            None => {
                self.type_error(s, expected);
                None
            }
        }
    }

    /// Resolve a path from the config: relative paths in the config file resolve against
    /// its directory; those given on the command line against the current directory.
    fn path(&self, at: &Loc, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() || *at.source != *self.opts.source {
            p.to_path_buf()
        } else {
            self.opts.base_dir.join(p)
        }
    }

    fn run(&mut self) -> Option<Checked> {
        let name = self.name();
        self.guest_type();
        let memory_mib = self.memory();
        let vcpus = self.vcpus();
        let profile = self.profile();
        let backend = self.backend();
        let deterministic = self.deterministic(backend);
        let mut inputs = Vec::new();
        let stubdom = self.stubdom(backend, &mut inputs);
        self.actions();
        let mut outputs = Vec::new();
        let (kernel, ramdisk, cmdline) = self.boot(&mut inputs);
        let bios = self.seabios(kernel.is_some(), &mut inputs);
        let serial = self.serial(&mut outputs);
        let debugcon = self.debugcon(&mut outputs);
        self.other_keys();

        if self.diags.errors.len() > self.errors_before {
            return None;
        }
        Some(Checked {
            domain: DomainConfig {
                name: name?,
                memory_mib,
                vcpus,
                profile,
                backend,
                firmware: self.opts.firmware.clone(),
                kernel,
                ramdisk,
                bios,
                cmdline,
                serial,
                debugcon,
                deterministic,
                stop_on_output: self.opts.stop_on_output.clone(),
                stubdom,
            },
            inputs,
            outputs,
        })
    }

    fn name(&mut self) -> Option<String> {
        let Some((name, s)) = self.string("name") else {
            if self.get("name").is_none() {
                self.error_file("'name' is required (name = \"...\")");
            }
            return None;
        };
        if name.trim().is_empty() {
            self.error_at(&s.value.at, "'name' must not be empty");
            return None;
        }
        if name.chars().any(char::is_control) {
            self.error_at(&s.value.at, "'name' must not contain control characters");
            return None;
        }
        Some(name.to_string())
    }

    fn guest_type(&mut self) {
        let ty = self.string("type");
        let builder = self.string("builder");
        let refuse_pv = |v: &str| {
            format!(
                "type = \"{v}\" is not supported: chassis runs HVM guests only (type = \"hvm\")"
            )
        };
        if let (Some(_), Some((_, b))) = (ty, builder) {
            self.error_at(
                &b.at,
                "both 'type' and the deprecated 'builder' are set; keep only 'type'",
            );
            return;
        }
        match (ty, builder) {
            (Some((v, s)), None) => match v {
                "hvm" => {}
                "pv" | "pvh" => self.error_at(&s.value.at, refuse_pv(v)),
                _ => self.error_at(
                    &s.value.at,
                    format!("unknown type \"{}\"; xl knows hvm, pv, pvh", v.escape_default()),
                ),
            },
            (None, Some((v, s))) => match v {
                "hvm" => self.warn_at(
                    &s.at,
                    "'builder' is deprecated; use type = \"hvm\"",
                ),
                "generic" => self.error_at(
                    &s.value.at,
                    "builder = \"generic\" (a PV guest) is not supported: chassis runs HVM \
                     guests only (type = \"hvm\")",
                ),
                _ => self.error_at(
                    &s.value.at,
                    format!(
                        "unknown builder \"{}\"; xl knows hvm, generic (and prefers type = \"hvm\")",
                        v.escape_default()
                    ),
                ),
            },
            _ => {
                if self.get("type").is_none() && self.get("builder").is_none() {
                    self.warn_file(
                        "no 'type' given: xl would build a PV guest, chassis runs it as HVM \
                         (add type = \"hvm\")",
                    );
                }
            }
        }
    }

    fn memory(&mut self) -> u64 {
        let memory = match self.number("memory", "a number (MiB)") {
            Some((m, s)) => {
                if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&m) {
                    self.error_at(
                        &s.value.at,
                        format!(
                            "memory = {m} MiB is out of range: chassis accepts {MIN_MEMORY_MIB} \
                             .. {MAX_MEMORY_MIB} MiB (64 GiB)"
                        ),
                    );
                }
                m
            }
            None => DEFAULT_MEMORY_MIB,
        };
        if let Some((maxmem, s)) = self.number("maxmem", "a number (MiB)") {
            if maxmem < memory {
                self.error_at(
                    &s.value.at,
                    format!("maxmem = {maxmem} MiB is less than memory = {memory} MiB"),
                );
            } else if maxmem > memory {
                self.error_at(
                    &s.value.at,
                    format!(
                        "maxmem = {maxmem} MiB > memory = {memory} MiB (a pre-ballooned guest, \
                         populate-on-demand) is not supported; remove 'maxmem' or set it equal \
                         to 'memory'"
                    ),
                );
            }
        }
        memory
    }

    fn vcpus(&mut self) -> u32 {
        let vcpus = match self.number("vcpus", "a number") {
            Some((n, s)) => {
                if !(1..=MAX_VCPUS).contains(&n) {
                    self.error_at(
                        &s.value.at,
                        format!("vcpus = {n} is out of range: chassis accepts 1 .. {MAX_VCPUS}"),
                    );
                    1
                } else {
                    n
                }
            }
            None => 1,
        };
        if let Some((max, s)) = self.number("maxvcpus", "a number")
            && max != vcpus
        {
            self.error_at(
                &s.value.at,
                format!(
                    "maxvcpus = {max} differs from vcpus = {vcpus}: vCPU hotplug is not \
                     supported yet; remove 'maxvcpus' or set it equal to 'vcpus'"
                ),
            );
        }
        vcpus as u32
    }

    fn profile(&mut self) -> &'static profile::Profile {
        let default = profile::ALL[0];
        let Some((v, s)) = self.string("device_model_version") else {
            return default;
        };
        match profile::by_name(v) {
            Some(p) => p,
            None => {
                let known: Vec<&str> = profile::ALL.iter().map(|p| p.name).collect();
                self.error_at(
                    &s.value.at,
                    format!(
                        "unknown device_model_version \"{}\"; known: {}",
                        v.escape_default(),
                        known.join(", ")
                    ),
                );
                default
            }
        }
    }

    fn backend(&mut self) -> Backend {
        let Some((v, s)) = self.string("cpu_backend") else {
            return Backend::Kvm;
        };
        match v {
            "kvm" => Backend::Kvm,
            "emu" => {
                if !hypervisor_emu::AVAILABLE {
                    self.error_at(&s.value.at, hypervisor_emu::NOT_YET);
                }
                Backend::Emu
            }
            _ => {
                self.error_at(
                    &s.value.at,
                    format!(
                        "unknown cpu_backend \"{}\"; known: kvm, emu",
                        v.escape_default()
                    ),
                );
                Backend::Kvm
            }
        }
    }

    /// `deterministic = 0/1`: instruction-count time, only on the software CPU.
    fn deterministic(&mut self, backend: Backend) -> bool {
        let Some((v, s)) = self.number("deterministic", "0 or 1") else {
            return false;
        };
        match v {
            0 => false,
            1 if backend == Backend::Emu => true,
            1 => {
                self.error_at(
                    &s.value.at,
                    "deterministic = 1 needs the software CPU: add cpu_backend = \"emu\" \
                     (hardware vCPUs run on host time)",
                );
                false
            }
            _ => {
                self.error_at(&s.value.at, format!("deterministic = {v}: must be 0 or 1"));
                false
            }
        }
    }

    /// `device_model_stubdomain_override` and the stub domain's keys: `Some` for stubdom
    /// mode, which is the default (the whole boot-test matrix passes in both modes);
    /// `0` keeps the device model in the `chassis` process.
    fn stubdom(&mut self, backend: Backend, inputs: &mut Vec<FileRef>) -> Option<StubdomConfig> {
        let key = "device_model_stubdomain_override";
        let at = match self.get(key) {
            None => None,
            Some(_) => {
                // A value of the wrong type is an error already: no device model.
                let (v, s) = self.number(key, "0 or 1")?;
                match v {
                    0 => return None,
                    1 => Some(s.value.at.clone()),
                    _ => {
                        self.error_at(&s.value.at, format!("{key} = {v}: must be 0 or 1"));
                        return None;
                    }
                }
            }
        };
        let _ = backend; // the stub domain runs on the guest's backend, either one
        let mut sc = StubdomConfig::new(self.opts.stubdom_image.clone());
        inputs.push(FileRef {
            what: STUBDOM_WHAT,
            path: sc.image.clone(),
            at,
        });
        // Ours is a built-in unikernel: no kernel, command line or ramdisk of its own.
        for key in [
            "stubdomain_kernel",
            "stubdomain_cmdline",
            "stubdomain_ramdisk",
        ] {
            if let Some(k) = self.get(key) {
                self.error_at(
                    &k.at,
                    format!(
                        "{key} is not supported: the chassis stub domain is a built-in \
                         unikernel (set CHASSIS_STUBDOM to run another image)"
                    ),
                );
            }
        }
        let kb = self.number("stubdomain_memkb", "a size in KiB");
        let mib = self.number("stubdomain_memory", "a size in MiB");
        let min_kb = map::MIN_RAM / 1024;
        let max_kb = map::MAX_RAM / 1024;
        let pick = match (kb, mib) {
            (Some(_), Some((_, m))) => {
                self.error_at(
                    &m.at,
                    "set only one of stubdomain_memkb and stubdomain_memory",
                );
                None
            }
            (Some((k, s)), None) => Some((k, s, "stubdomain_memkb", k.to_string())),
            (None, Some((m, s))) => Some((
                m.saturating_mul(1024),
                s,
                "stubdomain_memory",
                format!("{m} (MiB)"),
            )),
            (None, None) => None,
        };
        if let Some((k, s, key, shown)) = pick {
            if !k.is_multiple_of(4) {
                self.error_at(
                    &s.value.at,
                    format!("{key} = {shown}: must be a whole number of 4 KiB pages"),
                );
            } else if k < min_kb || k >= max_kb {
                self.error_at(
                    &s.value.at,
                    format!(
                        "{key} = {shown}: stub-domain RAM must be at least {min_kb} KiB and \
                         below {max_kb} KiB"
                    ),
                );
            } else {
                sc.memory_kb = k;
            }
        }
        if let Some((t, s)) = self.number("stubdomain_selftest", "0 to 4") {
            if SelfTest::from_raw(t.min(u32::MAX as u64) as u32).is_some() && t <= 4 {
                sc.selftest = t as u32;
            } else {
                self.error_at(
                    &s.value.at,
                    format!("stubdomain_selftest = {t}: must be 0 to 4 (a test hook)"),
                );
            }
        }
        if let Some((t, s)) = self.number("stubdomain_response_timeout", "seconds") {
            if (1..=MAX_STUBDOM_TIMEOUT_S).contains(&t) {
                sc.response_timeout = std::time::Duration::from_secs(t);
            } else {
                self.error_at(
                    &s.value.at,
                    format!(
                        "stubdomain_response_timeout = {t}: must be 1 to \
                         {MAX_STUBDOM_TIMEOUT_S} seconds"
                    ),
                );
            }
        }
        Some(sc)
    }

    fn actions(&mut self) {
        for (key, when) in [
            ("on_poweroff", "powers off"),
            ("on_reboot", "reboots"),
            ("on_crash", "crashes"),
        ] {
            let Some((v, s)) = self.string(key) else {
                continue;
            };
            if v == "destroy" {
                continue;
            }
            let msg = if ACTIONS.contains(&v) {
                format!(
                    "{key} = \"{v}\" is not supported yet: chassis destroys the domain when it \
                     {when}; use {key} = \"destroy\""
                )
            } else {
                format!(
                    "unknown action \"{}\" for {key}; xl knows {}",
                    v.escape_default(),
                    ACTIONS.join(", ")
                )
            };
            self.error_at(&s.value.at, msg);
        }
    }

    /// `kernel`, `ramdisk`, and the command line from `cmdline` or `root` + `extra`
    /// (xl's rule: `cmdline` wins over the other two).
    fn boot(&mut self, inputs: &mut Vec<FileRef>) -> (Option<PathBuf>, Option<PathBuf>, String) {
        let mut file = |b: &mut Self, key: &'static str| -> Option<PathBuf> {
            let (v, s) = b.string(key)?;
            if v.is_empty() {
                b.error_at(&s.value.at, format!("'{key}' must not be empty"));
                return None;
            }
            let p = b.path(&s.value.at, v);
            inputs.push(FileRef {
                what: key,
                path: p.clone(),
                at: Some(s.value.at.clone()),
            });
            Some(p)
        };
        let kernel = file(self, "kernel");
        let ramdisk = file(self, "ramdisk");
        if let (None, Some(s)) = (&kernel, self.get("ramdisk"))
            && self.get("kernel").is_none()
        {
            self.error_at(&s.at, "'ramdisk' needs 'kernel' (a direct kernel boot)");
        }

        let cmdline = self.string("cmdline");
        let root = self.string("root");
        let extra = self.string("extra");
        let line = match (cmdline, root, extra) {
            (Some((c, s)), r, e) => {
                if r.is_some() || e.is_some() {
                    self.warn_at(&s.at, "'cmdline' is set, so 'root' and 'extra' are ignored");
                }
                c.to_string()
            }
            (None, Some((r, _)), Some((e, _))) => format!("root={r} {e}"),
            (None, Some((r, _)), None) => format!("root={r}"),
            (None, None, Some((e, _))) => e.to_string(),
            (None, None, None) => String::new(),
        };
        if self.get("kernel").is_none() {
            for key in ["cmdline", "root", "extra"] {
                if let Some(s) = self.get(key) {
                    self.warn_at(
                        &s.at,
                        format!("'{key}' is ignored: there is no 'kernel' to pass it to"),
                    );
                }
            }
        }
        (kernel, ramdisk, line)
    }

    /// `bios = "seabios"` without `kernel`: the SeaBIOS image to hand over to, from
    /// `bios_path_override`, else `$CHASSIS_SEABIOS`, else the repository's `cache/`.
    /// Without `bios` (or with a kernel) the firmware does not hand over to a BIOS.
    fn seabios(&mut self, has_kernel: bool, inputs: &mut Vec<FileRef>) -> Option<PathBuf> {
        let over = self.get("bios_path_override");
        let bios = self.get("bios");
        let is_seabios =
            bios.is_some_and(|s| matches!(&s.value.value, Value::Str(v) if v == "seabios"));
        if !is_seabios {
            if let Some(s) = over {
                self.warn_at(
                    &s.at,
                    "'bios_path_override' is ignored without bios = \"seabios\"",
                );
            }
            return None;
        }
        if has_kernel {
            if let Some(s) = over {
                self.warn_at(
                    &s.at,
                    "'bios_path_override' is ignored: 'kernel' boots Linux directly",
                );
            }
            return None;
        }
        let (path, at) = match over {
            Some(s) => match &s.value.value {
                Value::Str(v) if !v.is_empty() => (self.path(&s.value.at, v), s.value.at.clone()),
                _ => return None, // reported by other_keys
            },
            None => (default_seabios(), bios?.value.at.clone()),
        };
        inputs.push(FileRef {
            what: SEABIOS_WHAT,
            path: path.clone(),
            at: Some(at),
        });
        Some(path)
    }

    /// A character-stream spelling: `stdio`, `null`/`none`, `file:PATH`, and `pty`/`vc`
    /// (standard output, with a warning).
    fn char_target(
        &mut self,
        key: &str,
        what: &'static str,
        v: &str,
        at: &Loc,
        outputs: &mut Vec<FileRef>,
    ) -> Option<CharTarget> {
        match v {
            "stdio" => return Some(CharTarget::Stdout),
            "null" | "none" => return Some(CharTarget::Null),
            "pty" | "vc" => {
                self.warn_at(
                    at,
                    format!(
                        "{key} = \"{v}\" is not supported yet; the stream goes to standard \
                         output (like \"stdio\")"
                    ),
                );
                return Some(CharTarget::Stdout);
            }
            _ => {}
        }
        if let Some(p) = v.strip_prefix("file:") {
            if p.is_empty() {
                self.error_at(at, format!("{key} = \"file:\" needs a path after 'file:'"));
                return None;
            }
            let path = self.path(at, p);
            outputs.push(FileRef {
                what,
                path: path.clone(),
                at: Some(at.clone()),
            });
            return Some(CharTarget::File(path));
        }
        self.error_at(
            at,
            format!(
                "{key} = \"{}\" is not supported yet; use \"stdio\", \"file:PATH\" or \"null\"",
                v.escape_default()
            ),
        );
        None
    }

    fn serial(&mut self, outputs: &mut Vec<FileRef>) -> CharTarget {
        let Some(s) = self.get("serial") else {
            return CharTarget::Stdout;
        };
        let node: &Node = match &s.value.value {
            Value::Str(_) => &s.value,
            Value::List(items) if items.is_empty() => return CharTarget::Null,
            Value::List(items) if items.len() == 1 => &items[0],
            Value::List(items) => {
                self.error_at(
                    &items[1].at,
                    format!(
                        "serial has {} ports, but only one serial port (COM1) is supported yet",
                        items.len()
                    ),
                );
                return CharTarget::Stdout;
            }
            Value::Num { .. } => {
                self.type_error(s, "a string or a list of one string");
                return CharTarget::Stdout;
            }
        };
        match &node.value {
            Value::Str(v) => self
                .char_target("serial", "serial output", v, &node.at, outputs)
                .unwrap_or(CharTarget::Stdout),
            other => {
                self.error_at(
                    &node.at,
                    format!(
                        "'serial' list items must be strings, found {}",
                        other.describe()
                    ),
                );
                CharTarget::Stdout
            }
        }
    }

    fn debugcon(&mut self, outputs: &mut Vec<FileRef>) -> CharTarget {
        let from_key = self.string("debugcon").and_then(|(v, s)| {
            self.char_target("debugcon", "debug console output", v, &s.value.at, outputs)
        });
        if let Some(p) = &self.opts.debugcon {
            // --debugcon wins; drop the key's output file from the checks.
            outputs.retain(|f| f.what != "debug console output");
            outputs.push(FileRef {
                what: "debug console output",
                path: p.clone(),
                at: None,
            });
            return CharTarget::File(p.clone());
        }
        from_key.unwrap_or(CharTarget::Null)
    }

    fn other_keys(&mut self) {
        // Stubdom mode unless the key says 0.
        let stubdom_asked = self
            .get("device_model_stubdomain_override")
            .is_none_or(|s| match &s.value.value {
                Value::Num { value, .. } => *value != 0,
                Value::Str(v) => parse_number(v).is_ok_and(|n| n != 0),
                Value::List(_) => false,
            });
        let mut unknown = 0usize;
        for s in self.cfg.settings() {
            let key = s.key.as_str();
            if HANDLED.contains(&key) {
                continue;
            }
            let Some(policy) = policy(key) else {
                unknown += 1;
                if unknown <= MAX_UNKNOWN_WARNINGS {
                    let hint = suggestion(key)
                        .map(|k| format!(" (did you mean '{k}'?)"))
                        .unwrap_or_default();
                    self.warn_at(&s.at, format!("unknown key '{key}' is ignored{hint}"));
                }
                continue;
            };
            let ignored = format!("key '{key}' is not supported yet and is ignored");
            match policy {
                Policy::Ignore => self.warn_at(&s.at, ignored),
                Policy::Stubdom => {
                    if !stubdom_asked {
                        self.warn_at(
                            &s.at,
                            format!(
                                "key '{key}' only applies to a stub-domain device model \
                                 (device_model_stubdomain_override = 1) and is ignored"
                            ),
                        );
                    }
                }
                Policy::AlwaysOn(why) => {
                    let v = match &s.value.value {
                        Value::Num { value, .. } => Some(*value),
                        Value::Str(v) => parse_number(v.trim()).ok(),
                        Value::List(_) => None,
                    };
                    match v {
                        None => self.type_error(s, "0 or 1"),
                        Some(0) => {
                            self.error_at(&s.value.at, format!("{key} = 0 is not supported: {why}"))
                        }
                        Some(_) => {}
                    }
                }
                Policy::MustBeEmpty(why) => {
                    let empty = match &s.value.value {
                        Value::List(l) => l.is_empty(),
                        Value::Str(v) => v.is_empty(),
                        Value::Num { .. } => false,
                    };
                    if !empty {
                        self.error_at(&s.value.at, why);
                    }
                }
                Policy::Refuse(why) => {
                    self.error_at(&s.at, format!("key '{key}' is not supported: {why}"))
                }
                Policy::Custom(f) => match f(s) {
                    Outcome::Accept => {}
                    Outcome::Warn(m) => self.warn_at(&s.at, m),
                    Outcome::Error(m) => self.error_at(&s.value.at, m),
                },
            }
        }
        if unknown > MAX_UNKNOWN_WARNINGS {
            self.diags.warnings.push(Diag {
                place: Some(self.opts.source.clone()),
                msg: format!(
                    "{} more unknown keys are ignored",
                    unknown - MAX_UNKNOWN_WARNINGS
                ),
                order: (true, u32::MAX, u32::MAX),
            });
        }
    }
}

/// Check that the files the domain reads can be opened, and that the files it writes
/// have an existing directory, before anything starts. Returns one error per problem.
pub fn preflight(c: &Checked) -> Vec<Diag> {
    let mut out = Vec::new();
    for f in &c.inputs {
        let r = fs::File::open(&f.path).and_then(|h| h.metadata());
        let mut why = match r {
            Ok(m) if m.is_file() => continue,
            Ok(_) => "not a regular file".to_string(),
            Err(e) => e.to_string(),
        };
        if f.what == SEABIOS_WHAT {
            why.push_str(
                " (run `make setup` to fetch Debian's SeaBIOS, or set CHASSIS_SEABIOS or \
                 bios_path_override)",
            );
        }
        if f.what == STUBDOM_WHAT {
            why.push_str(
                " (build it with `make build`, or `cargo build --profile stubdom -p \
                 chassis-stubdom --target x86_64-unknown-none`; or set CHASSIS_STUBDOM; or \
                 set device_model_stubdomain_override = 0 to run the device model in the \
                 chassis process)",
            );
        }
        out.push(Diag::at(
            f.at.as_ref(),
            false,
            format!("cannot read {} '{}': {why}", f.what, f.path.display()),
        ));
    }
    for f in &c.outputs {
        if f.path.is_dir() {
            out.push(Diag::at(
                f.at.as_ref(),
                false,
                format!(
                    "cannot write {} '{}': it is a directory",
                    f.what,
                    f.path.display()
                ),
            ));
            continue;
        }
        let dir = match f.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            out.push(Diag::at(
                f.at.as_ref(),
                false,
                format!(
                    "cannot write {} '{}': directory '{}' does not exist",
                    f.what,
                    f.path.display(),
                    dir.display()
                ),
            ));
        }
    }
    out
}

/// `qemu-xen, kvm, 512 MiB, 1 vCPU`: the start line's summary.
pub fn summary(d: &DomainConfig) -> String {
    let backend = match d.backend {
        Backend::Kvm => "kvm",
        Backend::Emu => "emu",
    };
    let s = if d.vcpus == 1 { "" } else { "s" };
    let dm = match &d.stubdom {
        Some(sc) => format!(", stub domain ({} KiB)", sc.memory_kb),
        None => String::new(),
    };
    format!(
        "{}, {backend}, {} MiB, {} vCPU{s}{dm}",
        d.profile.name, d.memory_mib, d.vcpus
    )
}

fn char_target_text(t: &CharTarget) -> String {
    match t {
        CharTarget::Null => "null".into(),
        CharTarget::Stdout => "stdio".into(),
        CharTarget::File(p) => format!("file:{}", p.display()),
    }
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The resolved domain as xl.cfg text (what `chassis create -n` prints).
pub fn render(d: &DomainConfig) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| {
        out.push_str(&format!("{k} = {v}\n"));
    };
    line("name", quote(&d.name));
    line("type", quote("hvm"));
    line("memory", d.memory_mib.to_string());
    line("vcpus", d.vcpus.to_string());
    line("device_model_version", quote(d.profile.name));
    line(
        "cpu_backend",
        quote(match d.backend {
            Backend::Kvm => "kvm",
            Backend::Emu => "emu",
        }),
    );
    if let Some(k) = &d.kernel {
        line("kernel", quote(&k.to_string_lossy()));
    }
    if let Some(r) = &d.ramdisk {
        line("ramdisk", quote(&r.to_string_lossy()));
    }
    if !d.cmdline.is_empty() {
        line("cmdline", quote(&d.cmdline));
    }
    if let Some(b) = &d.bios {
        line("bios", quote("seabios"));
        line("bios_path_override", quote(&b.to_string_lossy()));
    }
    if d.deterministic {
        line("deterministic", "1".into());
    }
    if d.stubdom.is_none() {
        line("device_model_stubdomain_override", "0".into());
    }
    if let Some(sc) = &d.stubdom {
        line("device_model_stubdomain_override", "1".into());
        line("stubdomain_memkb", sc.memory_kb.to_string());
        if sc.selftest != 0 {
            line("stubdomain_selftest", sc.selftest.to_string());
        }
        line(
            "stubdomain_response_timeout",
            sc.response_timeout.as_secs().to_string(),
        );
    }
    line("serial", quote(&char_target_text(&d.serial)));
    line("debugcon", quote(&char_target_text(&d.debugcon)));
    line("on_poweroff", quote("destroy"));
    line("on_reboot", quote("destroy"));
    line("on_crash", quote("destroy"));
    out.push_str(&format!("# firmware: {}\n", d.firmware.display()));
    if let Some(sc) = &d.stubdom {
        out.push_str(&format!("# stub-domain image: {}\n", sc.image.display()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Options {
        Options {
            source: "demo.cfg".into(),
            base_dir: PathBuf::from("/cfgdir"),
            firmware: PathBuf::from("/fw/chassis-firmware"),
            debugcon: None,
            stop_on_output: None,
            stubdom_image: PathBuf::from("/sd/chassis-stubdom"),
        }
    }

    fn check_with(text: &str, o: &Options) -> (Option<Checked>, Diagnostics) {
        let cfg = Config::parse(&o.source, text.as_bytes()).expect("test config parses");
        let mut d = Diagnostics::default();
        let c = build(&cfg, o, &mut d);
        assert_eq!(c.is_some(), d.errors.is_empty());
        (c, d)
    }

    fn check(text: &str) -> (Option<Checked>, Diagnostics) {
        check_with(text, &opts())
    }

    /// A config with only the given lines after a valid minimal header.
    fn with(lines: &str) -> String {
        format!("name = \"t\"\ntype = \"hvm\"\n{lines}\n")
    }

    fn ok(text: &str) -> (DomainConfig, Vec<String>) {
        let (c, d) = check(text);
        let c = c.unwrap_or_else(|| panic!("errors: {:?}", d.errors));
        (
            c.domain,
            d.warnings.iter().map(ToString::to_string).collect(),
        )
    }

    fn errors(text: &str) -> Vec<String> {
        let (c, d) = check(text);
        assert!(c.is_none(), "expected errors for {text:?}");
        d.errors.iter().map(ToString::to_string).collect()
    }

    fn one_error(text: &str) -> String {
        let e = errors(text);
        assert_eq!(e.len(), 1, "{e:?}");
        e[0].clone()
    }

    #[test]
    fn minimal_config_and_defaults() {
        let (d, w) = ok(&with(""));
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(d.name, "t");
        assert_eq!(d.memory_mib, DEFAULT_MEMORY_MIB);
        assert_eq!(d.vcpus, 1);
        assert_eq!(d.profile.name, "qemu-xen");
        assert_eq!(d.backend, Backend::Kvm);
        assert_eq!(d.firmware, PathBuf::from("/fw/chassis-firmware"));
        assert_eq!(d.kernel, None);
        assert_eq!(d.ramdisk, None);
        assert_eq!(d.cmdline, "");
        assert_eq!(d.serial, CharTarget::Stdout);
        assert_eq!(d.debugcon, CharTarget::Null);
        // Stubdom mode is the default.
        let sc = d.stubdom.clone().expect("a stub domain by default");
        assert_eq!(sc.memory_kb, 4096);
        assert_eq!(
            summary(&d),
            "qemu-xen, kvm, 512 MiB, 1 vCPU, stub domain (4096 KiB)"
        );
        let (p, _) = ok(&with("device_model_stubdomain_override = 0"));
        assert_eq!(summary(&p), "qemu-xen, kvm, 512 MiB, 1 vCPU");
        assert!(render(&p).contains("\ndevice_model_stubdomain_override = 0\n"));
    }

    #[test]
    fn full_config() {
        let (d, w) = ok(&with(
            "memory = 1024\nvcpus = 4\nmaxvcpus = 4\nmaxmem = 1024\n\
             kernel = \"vmlinuz\"\nramdisk = \"/abs/initrd\"\nextra = \"console=ttyS0\"\n\
             serial = [ \"file:logs/com1.log\" ]\ndebugcon = \"file:/tmp/e9.log\"\n\
             on_poweroff = \"destroy\"\non_reboot = \"destroy\"\non_crash = 'destroy'\n\
             device_model_version = \"qemu-xen-traditional\"\n\
             device_model_stubdomain_override = 0\ncpu_backend = \"kvm\"\n\
             acpi = 1\napic = 1\npae = 1\ndisk = []\nvif = [ ]\nxen_platform_pci = 1",
        ));
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(d.memory_mib, 1024);
        assert_eq!(d.vcpus, 4);
        assert_eq!(d.kernel, Some(PathBuf::from("/cfgdir/vmlinuz")));
        assert_eq!(d.ramdisk, Some(PathBuf::from("/abs/initrd")));
        assert_eq!(d.cmdline, "console=ttyS0");
        assert_eq!(d.serial, CharTarget::File("/cfgdir/logs/com1.log".into()));
        assert_eq!(d.debugcon, CharTarget::File("/tmp/e9.log".into()));
        assert_eq!(d.profile.name, "qemu-xen-traditional");
        assert_eq!(summary(&d), "qemu-xen-traditional, kvm, 1024 MiB, 4 vCPUs");
    }

    #[test]
    fn name_is_required_and_checked() {
        assert_eq!(
            one_error("type = \"hvm\""),
            "demo.cfg: 'name' is required (name = \"...\")"
        );
        assert_eq!(
            one_error("name = 5\ntype='hvm'"),
            "demo.cfg:1:8: 'name' must be a string, found the number 5"
        );
        assert_eq!(
            one_error("name = ''\ntype='hvm'"),
            "demo.cfg:1:8: 'name' must not be empty"
        );
        assert_eq!(
            one_error("name = 'a\\nb'\ntype='hvm'"),
            "demo.cfg:1:8: 'name' must not contain control characters"
        );
    }

    #[test]
    fn guest_type() {
        for v in ["pv", "pvh"] {
            assert_eq!(
                one_error(&format!("name='t'\ntype = \"{v}\"")),
                format!(
                    "demo.cfg:2:8: type = \"{v}\" is not supported: chassis runs HVM guests only (type = \"hvm\")"
                )
            );
        }
        assert_eq!(
            one_error("name='t'\ntype = \"xyz\""),
            "demo.cfg:2:8: unknown type \"xyz\"; xl knows hvm, pv, pvh"
        );
        let (_, w) = ok("name='t'\nbuilder = \"hvm\"");
        assert_eq!(
            w,
            ["demo.cfg:2: 'builder' is deprecated; use type = \"hvm\""]
        );
        assert!(
            one_error("name='t'\nbuilder = \"generic\"")
                .starts_with("demo.cfg:2:11: builder = \"generic\" (a PV guest) is not supported")
        );
        assert_eq!(
            one_error("name='t'\ntype='hvm'\nbuilder = \"hvm\""),
            "demo.cfg:3:1: both 'type' and the deprecated 'builder' are set; keep only 'type'"
        );
        let (_, w) = ok("name='t'");
        assert_eq!(
            w,
            [
                "demo.cfg: no 'type' given: xl would build a PV guest, chassis runs it as HVM (add type = \"hvm\")"
            ]
        );
    }

    #[test]
    fn memory_bounds_and_types() {
        assert_eq!(ok(&with("memory = 16")).0.memory_mib, 16);
        assert_eq!(ok(&with("memory = 65536")).0.memory_mib, 65536);
        assert_eq!(ok(&with("memory = 0x400")).0.memory_mib, 1024);
        // xen-create-image writes quoted numbers; xl reads them.
        assert_eq!(ok(&with("memory = '256'")).0.memory_mib, 256);
        assert_eq!(
            one_error(&with("memory = 15")),
            "demo.cfg:3:10: memory = 15 MiB is out of range: chassis accepts 16 .. 65536 MiB (64 GiB)"
        );
        assert!(one_error(&with("memory = 65537")).contains("out of range"));
        assert_eq!(
            one_error(&with("memory = \"lots\"")),
            "demo.cfg:3:10: 'memory' must be a number (MiB), found a string \"lots\""
        );
        assert_eq!(
            one_error(&with("memory = [1]")),
            "demo.cfg:3:10: 'memory' must be a number (MiB), found a list"
        );
        assert_eq!(
            one_error(&with("memory = 512\nmaxmem = 1024")),
            "demo.cfg:4:10: maxmem = 1024 MiB > memory = 512 MiB (a pre-ballooned guest, populate-on-demand) is not supported; remove 'maxmem' or set it equal to 'memory'"
        );
        assert_eq!(
            one_error(&with("memory = 512\nmaxmem = 256")),
            "demo.cfg:4:10: maxmem = 256 MiB is less than memory = 512 MiB"
        );
        assert!(ok(&with("maxmem = 512")).1.is_empty());
    }

    #[test]
    fn vcpus() {
        assert_eq!(ok(&with("vcpus = 128")).0.vcpus, 128);
        assert_eq!(
            one_error(&with("vcpus = 0")),
            "demo.cfg:3:9: vcpus = 0 is out of range: chassis accepts 1 .. 128"
        );
        assert!(one_error(&with("vcpus = 129")).contains("out of range"));
        assert_eq!(
            one_error(&with("vcpus = 2\nmaxvcpus = 4")),
            "demo.cfg:4:12: maxvcpus = 4 differs from vcpus = 2: vCPU hotplug is not supported yet; remove 'maxvcpus' or set it equal to 'vcpus'"
        );
        assert!(one_error(&with("maxvcpus = 2")).contains("maxvcpus = 2 differs from vcpus = 1"));
        assert_eq!(ok(&with("maxvcpus = 1")).0.vcpus, 1);
    }

    #[test]
    fn kernel_command_line() {
        let k = "kernel = 'k'\n";
        assert_eq!(ok(&with(&format!("{k}extra = 'quiet'"))).0.cmdline, "quiet");
        assert_eq!(ok(&with(&format!("{k}cmdline = 'a b'"))).0.cmdline, "a b");
        assert_eq!(
            ok(&with(&format!("{k}root = '/dev/sda1'\nextra = 'ro'")))
                .0
                .cmdline,
            "root=/dev/sda1 ro"
        );
        assert_eq!(
            ok(&with(&format!("{k}root = '/dev/xvda'"))).0.cmdline,
            "root=/dev/xvda"
        );
        let (d, w) = ok(&with(&format!("{k}cmdline = 'c'\nextra = 'e'")));
        assert_eq!(d.cmdline, "c");
        assert_eq!(
            w,
            ["demo.cfg:4: 'cmdline' is set, so 'root' and 'extra' are ignored"]
        );
        let (_, w) = ok(&with("extra = 'console=ttyS0'"));
        assert_eq!(
            w,
            ["demo.cfg:3: 'extra' is ignored: there is no 'kernel' to pass it to"]
        );
        assert_eq!(
            one_error(&with("ramdisk = 'initrd'")),
            "demo.cfg:3:1: 'ramdisk' needs 'kernel' (a direct kernel boot)"
        );
        assert_eq!(
            one_error(&with("kernel = ''")),
            "demo.cfg:3:10: 'kernel' must not be empty"
        );
        assert_eq!(
            one_error(&with("kernel = ['a']")),
            "demo.cfg:3:10: 'kernel' must be a string, found a list"
        );
    }

    #[test]
    fn path_resolution() {
        let (c, _) = check(&with(
            "kernel = 'boot/vmlinuz'\nramdisk = '../initrd'\nserial = 'file:com1.log'\n\
             debugcon = 'file:/abs/e9'",
        ));
        let c = c.unwrap();
        assert_eq!(c.domain.kernel, Some("/cfgdir/boot/vmlinuz".into()));
        assert_eq!(c.domain.ramdisk, Some("/cfgdir/../initrd".into()));
        assert_eq!(c.domain.serial, CharTarget::File("/cfgdir/com1.log".into()));
        assert_eq!(c.domain.debugcon, CharTarget::File("/abs/e9".into()));
        let inputs: Vec<_> = c.inputs.iter().map(|f| (f.what, f.path.clone())).collect();
        assert_eq!(
            inputs,
            [
                (STUBDOM_WHAT, PathBuf::from("/sd/chassis-stubdom")),
                ("kernel", PathBuf::from("/cfgdir/boot/vmlinuz")),
                ("ramdisk", PathBuf::from("/cfgdir/../initrd"))
            ]
        );
        assert_eq!(c.outputs.len(), 2);

        // A config in the current directory: base_dir is empty, paths stay as written.
        let o = Options {
            base_dir: PathBuf::new(),
            ..opts()
        };
        let (c, _) = check_with(&with("kernel = 'vmlinuz'"), &o);
        assert_eq!(c.unwrap().domain.kernel, Some("vmlinuz".into()));

        // Command-line values resolve against the current directory.
        let mut cfg = Config::parse("demo.cfg", with("kernel = 'a'").as_bytes()).unwrap();
        cfg.parse_into("<command line>", b"kernel='rel/k'").unwrap();
        let mut d = Diagnostics::default();
        let c = build(&cfg, &opts(), &mut d).unwrap();
        assert_eq!(c.domain.kernel, Some("rel/k".into()));
    }

    #[test]
    fn serial() {
        let t = |v: &str| ok(&with(&format!("serial = {v}"))).0.serial;
        assert_eq!(t("'stdio'"), CharTarget::Stdout);
        assert_eq!(t("'null'"), CharTarget::Null);
        assert_eq!(t("'none'"), CharTarget::Null);
        assert_eq!(t("[]"), CharTarget::Null);
        assert_eq!(t("['stdio']"), CharTarget::Stdout);
        assert_eq!(
            t("'file:/var/log/x'"),
            CharTarget::File("/var/log/x".into())
        );
        let (d, w) = ok(&with("serial = 'pty'"));
        assert_eq!(d.serial, CharTarget::Stdout);
        assert_eq!(
            w,
            [
                "demo.cfg:3: serial = \"pty\" is not supported yet; the stream goes to standard output (like \"stdio\")"
            ]
        );
        assert_eq!(
            one_error(&with("serial = 'tcp:localhost:4555'")),
            "demo.cfg:3:10: serial = \"tcp:localhost:4555\" is not supported yet; use \"stdio\", \"file:PATH\" or \"null\""
        );
        assert_eq!(
            one_error(&with("serial = ['stdio', 'null']")),
            "demo.cfg:3:20: serial has 2 ports, but only one serial port (COM1) is supported yet"
        );
        assert_eq!(
            one_error(&with("serial = 'file:'")),
            "demo.cfg:3:10: serial = \"file:\" needs a path after 'file:'"
        );
        assert_eq!(
            one_error(&with("serial = 1")),
            "demo.cfg:3:10: 'serial' must be a string or a list of one string, found the number 1"
        );
        assert_eq!(
            one_error(&with("serial = [1]")),
            "demo.cfg:3:11: 'serial' list items must be strings, found the number 1"
        );
    }

    #[test]
    fn debugcon() {
        assert_eq!(
            ok(&with("debugcon = 'stdio'")).0.debugcon,
            CharTarget::Stdout
        );
        assert_eq!(
            ok(&with("debugcon = 'file:e9.log'")).0.debugcon,
            CharTarget::File("/cfgdir/e9.log".into())
        );
        assert!(
            one_error(&with("debugcon = 'tcp:x'"))
                .starts_with("demo.cfg:3:12: debugcon = \"tcp:x\" is not supported yet")
        );
        // --debugcon overrides the key, as given (relative to the current directory).
        let o = Options {
            debugcon: Some("out/e9".into()),
            ..opts()
        };
        let (c, _) = check_with(&with("debugcon = 'file:e9.log'"), &o);
        let c = c.unwrap();
        assert_eq!(c.domain.debugcon, CharTarget::File("out/e9".into()));
        assert_eq!(c.outputs.len(), 1);
        assert_eq!(c.outputs[0].path, PathBuf::from("out/e9"));
    }

    #[test]
    fn lifecycle_actions() {
        for key in ["on_poweroff", "on_reboot", "on_crash"] {
            assert!(ok(&with(&format!("{key} = 'destroy'"))).1.is_empty());
            for action in ["restart", "preserve", "rename-restart", "coredump-destroy"] {
                let e = one_error(&with(&format!("{key} = '{action}'")));
                assert!(
                    e.contains(&format!("{key} = \"{action}\" is not supported yet: chassis destroys the domain when it")),
                    "{e}"
                );
                assert!(e.ends_with(&format!("use {key} = \"destroy\"")), "{e}");
            }
        }
        assert_eq!(
            one_error(&with("on_reboot = 'restart'")),
            "demo.cfg:3:13: on_reboot = \"restart\" is not supported yet: chassis destroys the domain when it reboots; use on_reboot = \"destroy\""
        );
        assert_eq!(
            one_error(&with("on_crash = 'explode'")),
            "demo.cfg:3:12: unknown action \"explode\" for on_crash; xl knows destroy, restart, rename-restart, preserve, coredump-destroy, coredump-restart, soft-reset"
        );
    }

    #[test]
    fn device_model_version() {
        assert_eq!(
            ok(&with("device_model_version = 'qemu-xen'"))
                .0
                .profile
                .name,
            "qemu-xen"
        );
        assert_eq!(
            one_error(&with("device_model_version = 'qemu-dm'")),
            "demo.cfg:3:24: unknown device_model_version \"qemu-dm\"; known: qemu-xen, qemu-xen-traditional"
        );
    }

    #[test]
    fn stub_domain() {
        assert!(
            ok(&with("device_model_stubdomain_override = 0"))
                .1
                .is_empty()
        );
        assert!(
            ok(&with("device_model_stubdomain_override = 0"))
                .0
                .stubdom
                .is_none()
        );
        let emu = "cpu_backend = 'emu'\ndevice_model_stubdomain_override = 1";
        if hypervisor_emu::AVAILABLE {
            let (c, d) = check(&with(emu));
            let c = c.unwrap();
            assert!(d.warnings.is_empty(), "{:?}", d.warnings);
            let sc = c.domain.stubdom.clone().unwrap();
            assert_eq!(sc.image, PathBuf::from("/sd/chassis-stubdom"));
            assert_eq!(sc.memory_kb, 4096);
            assert_eq!(sc.selftest, 0);
            assert_eq!(sc.response_timeout, std::time::Duration::from_secs(10));
            assert!(
                c.inputs
                    .iter()
                    .any(|f| f.what == STUBDOM_WHAT && f.path == sc.image)
            );
            assert!(render(&c.domain).contains("device_model_stubdomain_override = 1\n"));
            assert!(summary(&c.domain).ends_with("stub domain (4096 KiB)"));
            // Sizes, test hooks, timeout.
            let (c, _) = ok(&with(&format!(
                "{emu}\nstubdomain_memkb = 8192\nstubdomain_selftest = 2\nstubdomain_response_timeout = 3"
            )));
            let sc = c.stubdom.unwrap();
            assert_eq!(
                (sc.memory_kb, sc.selftest, sc.response_timeout.as_secs()),
                (8192, 2, 3)
            );
            let (c, _) = ok(&with(&format!("{emu}\nstubdomain_memory = 16")));
            assert_eq!(c.stubdom.unwrap().memory_kb, 16384);
            assert_eq!(
                one_error(&with(&format!("{emu}\nstubdomain_memkb = 1024"))),
                "demo.cfg:5:20: stubdomain_memkb = 1024: stub-domain RAM must be at least 2048 KiB and below 2097152 KiB"
            );
            assert_eq!(
                one_error(&with(&format!("{emu}\nstubdomain_memkb = 4098"))),
                "demo.cfg:5:20: stubdomain_memkb = 4098: must be a whole number of 4 KiB pages"
            );
            assert_eq!(
                one_error(&with(&format!(
                    "{emu}\nstubdomain_memkb = 4096\nstubdomain_memory = 4"
                ))),
                "demo.cfg:6:1: set only one of stubdomain_memkb and stubdomain_memory"
            );
            assert_eq!(
                one_error(&with(&format!("{emu}\nstubdomain_selftest = 5"))),
                "demo.cfg:5:23: stubdomain_selftest = 5: must be 0 to 4 (a test hook)"
            );
            assert_eq!(
                one_error(&with(&format!("{emu}\nstubdomain_response_timeout = 0"))),
                "demo.cfg:5:31: stubdomain_response_timeout = 0: must be 1 to 3600 seconds"
            );
            assert_eq!(
                one_error(&with(&format!("{emu}\nstubdomain_kernel = '/k'"))),
                "demo.cfg:5:1: stubdomain_kernel is not supported: the chassis stub domain is a built-in unikernel (set CHASSIS_STUBDOM to run another image)"
            );
        }
        // On kvm too: the stub domain is a second KVM VM.
        assert!(
            ok(&with("device_model_stubdomain_override = 1"))
                .0
                .stubdom
                .is_some()
        );
        assert_eq!(
            one_error(&with("device_model_stubdomain_override = 2")),
            "demo.cfg:3:36: device_model_stubdomain_override = 2: must be 0 or 1"
        );
        // The stub domain's own keys only warn without one.
        let (_, w) = ok(&with(
            "stubdomain_memkb = 65536\nstubdomain_selftest = 1\ndevice_model_stubdomain_override = 0",
        ));
        assert_eq!(
            w,
            [
                "demo.cfg:3: key 'stubdomain_memkb' only applies to a stub-domain device model (device_model_stubdomain_override = 1) and is ignored",
                "demo.cfg:4: key 'stubdomain_selftest' only applies to a stub-domain device model (device_model_stubdomain_override = 1) and is ignored",
            ]
        );
        // They apply to the default (stubdom) mode without the override key.
        let (d, w) = ok(&with("stubdomain_memkb = 8192"));
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(d.stubdom.unwrap().memory_kb, 8192);
    }

    #[test]
    fn deterministic() {
        let emu = "cpu_backend = 'emu'\ndeterministic = 1";
        if hypervisor_emu::AVAILABLE {
            let (d, w) = ok(&with(emu));
            assert!(d.deterministic && w.is_empty());
            assert!(render(&d).contains("\ndeterministic = 1\n"));
            assert!(
                !ok(&with("cpu_backend = 'emu'\ndeterministic = 0"))
                    .0
                    .deterministic
            );
        }
        assert!(!ok(&with("deterministic = 0")).0.deterministic);
        assert!(!render(&ok(&with("")).0).contains("deterministic"));
        assert_eq!(
            one_error(&with("deterministic = 1")),
            "demo.cfg:3:17: deterministic = 1 needs the software CPU: add cpu_backend = \"emu\" (hardware vCPUs run on host time)"
        );
        assert_eq!(
            one_error(&with("cpu_backend = 'kvm'\ndeterministic = '1'")),
            "demo.cfg:4:17: deterministic = 1 needs the software CPU: add cpu_backend = \"emu\" (hardware vCPUs run on host time)"
        );
        assert_eq!(
            one_error(&with("deterministic = 2")),
            "demo.cfg:3:17: deterministic = 2: must be 0 or 1"
        );
        assert_eq!(
            one_error(&with("deterministic = 'yes'")),
            "demo.cfg:3:17: 'deterministic' must be 0 or 1, found a string \"yes\""
        );
    }

    #[test]
    fn cpu_backend() {
        assert_eq!(ok(&with("cpu_backend = 'kvm'")).0.backend, Backend::Kvm);
        if hypervisor_emu::AVAILABLE {
            assert_eq!(ok(&with("cpu_backend = 'emu'")).0.backend, Backend::Emu);
        } else {
            assert_eq!(
                one_error(&with("cpu_backend = 'emu'")),
                format!("demo.cfg:3:15: {}", hypervisor_emu::NOT_YET)
            );
        }
        assert_eq!(
            one_error(&with("cpu_backend = 'tcg'")),
            "demo.cfg:3:15: unknown cpu_backend \"tcg\"; known: kvm, emu"
        );
    }

    #[test]
    fn unsupported_keys_warn() {
        let (_, w) = ok(&with(
            "vnc = 1\nvga = 'stdvga'\nhpet = 1\nviridian = 1\nboot = 'dc'\nusb = 1\nuuid = 'x'",
        ));
        let keys = ["vnc", "vga", "hpet", "viridian", "boot", "usb", "uuid"];
        assert_eq!(w.len(), keys.len());
        for (i, (w, k)) in w.iter().zip(keys).enumerate() {
            assert_eq!(
                *w,
                format!(
                    "demo.cfg:{}: key '{k}' is not supported yet and is ignored",
                    i + 3
                )
            );
        }
    }

    #[test]
    fn guest_visible_keys_refused() {
        assert_eq!(
            one_error(&with("acpi = 0")),
            "demo.cfg:3:8: acpi = 0 is not supported: the chassis machine always has ACPI (PIIX4 PM and ACPI tables)"
        );
        assert!(
            one_error(&with("apic = 0")).starts_with("demo.cfg:3:8: apic = 0 is not supported")
        );
        assert!(one_error(&with("pae = 0")).starts_with("demo.cfg:3:7: pae = 0 is not supported"));
        assert!(
            one_error(&with("xen_platform_pci = 0"))
                .contains("xen_platform_pci = 0 is not supported")
        );
        assert_eq!(
            one_error(&with("acpi = 'yes'")),
            "demo.cfg:3:8: 'acpi' must be 0 or 1, found a string \"yes\""
        );
        assert_eq!(
            one_error(&with("disk = [ '/srv/guest.img,raw,hda,rw' ]")),
            "demo.cfg:3:8: disks are not emulated yet: remove 'disk' or leave the list empty"
        );
        assert_eq!(
            one_error(&with("vif = [ 'bridge=xenbr0' ]")),
            "demo.cfg:3:7: network interfaces are not emulated yet: remove 'vif' or leave the list empty"
        );
        assert!(one_error(&with("pci = ['01:00.0']")).contains("passthrough is not supported"));
        assert_eq!(
            one_error(&with("mmio_hole = 1024")),
            "demo.cfg:3:1: key 'mmio_hole' is not supported: the PCI hole of the chassis machine is fixed (0xe0000000 .. 4 GiB)"
        );
        assert!(
            one_error(&with("bios = 'ovmf'"))
                .contains("bios = \"ovmf\" (UEFI) is not supported yet")
        );
        assert!(ok(&with("bios = 'seabios'")).1.is_empty());
        assert!(one_error(&with("bios_path_override = 3")).contains("must be a string"));
        assert_eq!(ok(&with("bios = 'rombios'")).1.len(), 1);
        assert!(one_error(&with("vendor_device = 'xenserver'")).contains("is not supported"));
        assert!(ok(&with("vendor_device = 'none'")).1.is_empty());
    }

    #[test]
    fn unknown_keys_warn_with_suggestions() {
        let (_, w) = ok(&with("foo = 1\nmemroy = 512\nvcpu = 2"));
        assert_eq!(
            w,
            [
                "demo.cfg:3: unknown key 'foo' is ignored",
                "demo.cfg:4: unknown key 'memroy' is ignored (did you mean 'memory'?)",
                "demo.cfg:5: unknown key 'vcpu' is ignored (did you mean 'vcpus'?)",
            ]
        );
    }

    #[test]
    fn many_unknown_keys_are_cheap_and_summarised() {
        let mut text = with("");
        for i in 0..100_000 {
            text.push_str(&format!("k{i} = {i}\n"));
        }
        let (_, w) = ok(&text);
        assert_eq!(w.len(), MAX_UNKNOWN_WARNINGS + 1);
        assert_eq!(
            w.last().unwrap(),
            &format!(
                "demo.cfg: {} more unknown keys are ignored",
                100_000 - MAX_UNKNOWN_WARNINGS
            )
        );
    }

    #[test]
    fn all_errors_are_reported_together() {
        let e = errors("memory = 1\nvcpus = 0\ncpu_backend = 'x'\ndisk = ['a']");
        assert_eq!(e.len(), 5, "{e:?}"); // + missing name
        assert!(e[0].contains("'name' is required"));
    }

    #[test]
    fn the_research_example_is_refused_for_the_right_reasons() {
        let text = "name = \"w2k3\"\ntype = \"hvm\"\nmemory = 1024\nvcpus = 2\n\
            disk = [ \"/srv/w2k3.img,raw,hda,rw\", \"/srv/install.iso,,hdc,cdrom\" ]\n\
            vif  = [ \"mac=00:16:3e:00:00:01,model=rtl8139,bridge=xenbr0\" ]\n\
            vga = \"cirrus\"\nvnc = 1\nvnclisten = \"127.0.0.1\"\nserial = \"pty\"\nboot = \"dc\"\n\
            acpi = 1\napic = 1\npae = 1\nhpet = 1\nviridian = 1\non_poweroff = \"destroy\"\n\
            on_reboot = \"restart\"\non_crash = \"destroy\"\ndevice_model_version = \"qemu-xen\"\n\
            device_model_stubdomain_override = 1\n";
        let (c, d) = check(text);
        assert!(c.is_none());
        let e: Vec<String> = d.errors.iter().map(ToString::to_string).collect();
        // The stub domain itself is accepted (on kvm, the default backend).
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].starts_with("demo.cfg:5:8: disks"), "{e:?}");
        assert!(e[1].starts_with("demo.cfg:6:8: network"), "{e:?}");
        assert!(e[2].starts_with("demo.cfg:18:13: on_reboot"), "{e:?}");
        let w: Vec<String> = d.warnings.iter().map(ToString::to_string).collect();
        let lines: Vec<&str> = w.iter().map(|w| w.split(':').nth(1).unwrap()).collect();
        assert_eq!(lines, ["7", "8", "9", "10", "11", "15", "16"], "{w:?}");
    }

    #[test]
    fn preflight_checks_files() {
        let dir = std::env::temp_dir().join(format!("chassis-preflight-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("k"), b"kernel").unwrap();
        let o = Options {
            base_dir: dir.clone(),
            ..opts()
        };
        let (c, _) = check_with(
            &with(
                "kernel = 'k'\nramdisk = 'missing'\nserial = 'file:nodir/com1'\ndebugcon = 'file:e9'\n\
                 device_model_stubdomain_override = 0",
            ),
            &o,
        );
        let e: Vec<String> = preflight(&c.unwrap())
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].starts_with(&format!(
            "demo.cfg:4:11: cannot read ramdisk '{}': No such file or directory",
            dir.join("missing").display()
        )));
        assert_eq!(
            e[1],
            format!(
                "demo.cfg:5:10: cannot write serial output '{}': directory '{}' does not exist",
                dir.join("nodir/com1").display(),
                dir.join("nodir").display()
            )
        );
        let (c, _) = check_with(&with("kernel = '.'"), &o);
        let e = preflight(&c.unwrap());
        // The default stub-domain image (missing here) first, then the kernel.
        assert!(
            e[0].msg
                .contains("set device_model_stubdomain_override = 0"),
            "{e:?}"
        );
        assert!(e[1].msg.ends_with("': not a regular file"), "{e:?}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn seabios_selection() {
        // Without `bios`: the diagnostic boot, whatever else is set.
        let (d, w) = ok(&with("bios_path_override = '/b.bin'"));
        assert_eq!(d.bios, None);
        assert!(w[0].contains("ignored without bios"), "{w:?}");
        // bios = "seabios": the override (relative to the config), else the default.
        let (d, w) = ok(&with(
            "bios = 'seabios'\nbios_path_override = 'sb/bios.bin'",
        ));
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(d.bios, Some(PathBuf::from("/cfgdir/sb/bios.bin")));
        let (c, _) = check(&with("bios = 'seabios'"));
        let c = c.unwrap();
        assert_eq!(c.domain.bios, Some(default_seabios()));
        assert!(c.inputs.iter().any(|f| f.what == SEABIOS_WHAT));
        // A kernel boots directly.
        let (d, _) = ok(&with("bios = 'seabios'\nkernel = '/k'"));
        assert_eq!(d.bios, None);
        // A missing image: preflight says how to get one.
        let (c, _) = check(&with(
            "bios = 'seabios'\nbios_path_override = '/nonexistent/b'\n\
             device_model_stubdomain_override = 0",
        ));
        let e = preflight(&c.unwrap());
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].msg
                .contains("cannot read SeaBIOS image '/nonexistent/b'")
        );
        assert!(e[0].msg.contains("make setup"), "{e:?}");
        // render keeps the choice.
        let (d, _) = ok(&with("bios = 'seabios'\nbios_path_override = '/b.bin'"));
        let text = render(&d);
        assert!(text.contains("bios = \"seabios\"\nbios_path_override = \"/b.bin\"\n"));
    }

    #[test]
    fn render_round_trips() {
        let (d, _) = ok(&with(
            "memory = 300\nkernel = '/k'\nextra = 'a \"b\"'\nserial = 'null'",
        ));
        let text = render(&d);
        let cfg = Config::parse("r", text.as_bytes()).unwrap();
        let mut diags = Diagnostics::default();
        let o = Options {
            source: "r".into(),
            ..opts()
        };
        let again = build(&cfg, &o, &mut diags).unwrap().domain;
        assert!(diags.warnings.is_empty(), "{:?}", diags.warnings);
        assert_eq!(again.memory_mib, 300);
        assert_eq!(again.cmdline, "a \"b\"");
        assert_eq!(again.serial, CharTarget::Null);
        assert_eq!(again.kernel, Some("/k".into()));
    }
}
