//! hypervisor-core: domains, guest memory, vCPU backends, the exit dispatcher and the
//! platform pieces Xen keeps in its hypervisor.
//!
//! The toolstack builds a [`DomainConfig`] and calls [`run_domain`], which runs the guest
//! in the foreground until it powers off, resets, crashes or fails.
//!
//! Two vCPU backends ([`Backend`]): `kvm` ([`kvm`]: KVM's in-kernel irqchip and PIT) and
//! `emu` ([`emu`]: the software CPU of `hypervisor-emu`, with our own PIC, PIT, IOAPIC
//! and LAPICs from [`irqchip`], optionally on deterministic instruction-count time).
//! Both send device accesses through [`dispatch`] with the same access records.

use std::fmt;
use std::path::PathBuf;

mod atomic_mem;
pub mod backend;
pub mod device_model;
pub mod dispatch;
pub mod domain;
pub mod emu;
pub mod irqchip;
pub mod kernel_unpack;
pub mod kvm;
pub mod loader;
pub mod memory;
pub mod platform;
pub mod stubdom;
pub mod xen_hypercall;

pub use domain::RunStats;

pub use chassis_devices::profile::Profile;

/// Which vCPU backend runs the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Hardware virtualization through /dev/kvm.
    Kvm,
    /// The software x86-64 CPU (`hypervisor-emu`).
    Emu,
}

/// Where a character stream (COM1, the 0xe9 debug console) goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CharTarget {
    /// Discard.
    Null,
    /// The process's standard output.
    Stdout,
    /// Append to a file (created if missing, truncated at domain start).
    File(PathBuf),
}

/// A domain to run, already validated by the toolstack.
#[derive(Clone, Debug)]
pub struct DomainConfig {
    pub name: String,
    /// Guest RAM in MiB.
    pub memory_mib: u64,
    pub vcpus: u32,
    /// The chipset generation (`device_model_version`).
    pub profile: &'static Profile,
    pub backend: Backend,
    /// The guest-firmware ELF image (PVH entry).
    pub firmware: PathBuf,
    /// Linux bzImage for a direct boot; `None` = SeaBIOS (if `bios` is set) or the
    /// firmware diagnostic boot.
    pub kernel: Option<PathBuf>,
    /// SeaBIOS image (`bios-256k.bin`) the firmware hands over to, passed as the PVH
    /// module "firmware"; only without `kernel`.
    pub bios: Option<PathBuf>,
    pub ramdisk: Option<PathBuf>,
    /// Kernel command line (`extra`).
    pub cmdline: String,
    /// COM1.
    pub serial: CharTarget,
    /// Debug console port 0xe9.
    pub debugcon: CharTarget,
    /// Deterministic time (`emu` only): guest time from vCPU 0's retired instructions
    /// (1 instruction = 1 ns), timers fired at exact instruction counts, HLT skips to
    /// the next deadline, a fixed RTC date. The same image runs the same way twice.
    pub deterministic: bool,
    /// Stop with [`DomainExit::OutputMatched`] once COM1 or the debug console has
    /// printed this string (`chassis create --stop-on-output`; tests and benchmarks).
    pub stop_on_output: Option<String>,
    /// `Some`: the device model runs in a stub domain of its own (stubdom mode);
    /// `None`: in this process (process mode).
    pub stubdom: Option<StubdomConfig>,
}

/// How to run a guest's stub domain (`device_model_stubdomain_override = 1`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StubdomConfig {
    /// The `chassis-stubdom` unikernel ELF.
    pub image: PathBuf,
    /// Stub-domain RAM in KiB (`stubdomain_memkb`).
    pub memory_kb: u64,
    /// How long a guest vCPU waits for the stub domain's answer before the domain is
    /// stopped as hung.
    pub response_timeout: std::time::Duration,
    /// Start-up test hook (`hypervisor_abi::stubdom::SelfTest` as a number; tests only).
    pub selftest: u32,
}

impl StubdomConfig {
    /// Defaults for an image: 4 MiB of RAM, a 10 s answer timeout, no self-test.
    pub fn new(image: PathBuf) -> Self {
        StubdomConfig {
            image,
            memory_kb: hypervisor_abi::stubdom::map::DEFAULT_RAM / 1024,
            response_timeout: std::time::Duration::from_secs(10),
            selftest: 0,
        }
    }
}

/// How a domain ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DomainExit {
    /// ACPI S5 (or another power-off request).
    PowerOff,
    /// The guest asked for a reset.
    Reset,
    /// The guest crashed the virtual machine (triple fault, invalid state); the text says how.
    Crashed(String),
    /// The guest printed [`DomainConfig::stop_on_output`]; the domain was stopped there.
    OutputMatched,
}

/// Why a domain could not be started or kept running.
#[derive(Debug)]
pub enum Error {
    /// A file named by the config could not be read.
    Io {
        what: &'static str,
        path: PathBuf,
        err: std::io::Error,
    },
    /// An image (firmware ELF, kernel) is malformed or does not fit.
    BadImage {
        what: &'static str,
        path: PathBuf,
        why: String,
    },
    /// The config asks for something the machine cannot do (too much/little memory, ...).
    Config(String),
    /// The requested backend is unavailable on this host or in this build.
    BackendUnavailable(String),
    /// A KVM ioctl failed.
    Kvm {
        op: &'static str,
        err: std::io::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { what, path, err } => {
                write!(f, "cannot read {what} '{}': {err}", path.display())
            }
            Error::BadImage { what, path, why } => {
                write!(f, "bad {what} '{}': {why}", path.display())
            }
            Error::Config(s) => write!(f, "{s}"),
            Error::BackendUnavailable(s) => write!(f, "{s}"),
            Error::Kvm { op, err } => write!(f, "KVM {op} failed: {err}"),
        }
    }
}

impl std::error::Error for Error {}

/// Run a domain in the foreground until it stops.
pub fn run_domain(cfg: &DomainConfig) -> Result<DomainExit, Error> {
    domain::run(cfg).map(|(exit, _)| exit)
}

/// [`run_domain`], also returning exit counts and run time.
pub fn run_domain_with_stats(cfg: &DomainConfig) -> Result<(DomainExit, RunStats), Error> {
    domain::run(cfg)
}

/// Whether the kvm backend can run on this host (/dev/kvm opens).
pub fn kvm_available() -> bool {
    kvm::available()
}
