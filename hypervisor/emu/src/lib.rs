//! The `emu` backend: a software x86-64 CPU. Not implemented yet (issue [2]); the
//! hypervisor core refuses `cpu_backend = "emu"` with a clear message until it lands.

/// Why the emu backend cannot run a guest yet.
pub const NOT_YET: &str =
    "the emu CPU backend is not implemented yet (planned in issue [2]); use cpu_backend = \"kvm\"";

/// Whether this build has a working software CPU.
pub const AVAILABLE: bool = false;
