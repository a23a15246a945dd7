//! The `emu` backend: a software x86-64 CPU (issue [2]).
//!
//! Real mode, 16/32-bit protected mode and long mode; paging (2-level, PAE, 4-level) with
//! a TLB; exception and interrupt delivery; the integer and system instructions
//! firmware, SeaBIOS and Linux use. Files, one concern each:
//! [`cpu`] (register state and mode), `seg` (descriptors, segment loads), `mmu`
//! (paging, TLB), `ops` (operands, segmented memory, stack), [`exec`] (decode,
//! dispatch), the integer families (`alu`, `shift`, `muldiv`, `bits`, `string`,
//! `flags`, `legacy`), `far` (far transfers), `interrupt` (delivery, IRET), `system`
//! (privileged and I/O instructions), `msr`, `decode_cache`, [`vcpu`] (the run loop),
//! [`bus`] (what the CPU needs from the machine) and [`mem`] (the physical memory and
//! platform trait the interpreter runs against).
//!
//! The interpreter never panics on any instruction bytes: anything it does not
//! implement is #UD delivered to the guest.
//!
//! Not implemented (by design for now): hardware task switches (task gates, far
//! JMP/CALL to a TSS, IRET with NT) and virtual-8086 mode — these end the run
//! with `RunExit::Shutdown` and a clear reason instead of being emulated wrongly; NMI,
//! SMM, debug breakpoints (DR0-7 are storage; TF single-step works), alignment checks,
//! PCID, XSAVE, CET (ENDBR and the shadow-stack reads are NOPs, as on CPUs without
//! it), RDRAND/RDSEED, BMI (TZCNT/LZCNT encodings run as BSF/BSR). The CPUID table is
//! the Bus's: it must not advertise more than this.
#![forbid(unsafe_code)]

mod alu;
mod atomic;
mod bits;
pub mod bus;
pub mod cpu;
mod decode_cache;
pub mod exec;
mod far;
mod fast;
mod flags;
pub mod fpu;
mod interrupt;
mod legacy;
pub mod mem;
pub mod mmu;
mod msr;
mod muldiv;
pub mod ops;
mod seg;
mod shift;
mod softfloat;
mod sse;
mod string;
mod system;
pub mod vcpu;
mod x87;

pub use bus::Bus;
pub use cpu::Cpu;
pub use exec::{Exception, execute, step};
pub use mem::{Fault, FlatMemory, Memory};
pub use vcpu::{EmuVcpu, RunExit};

/// Why the emu backend cannot run a guest (kept for callers; see [`AVAILABLE`]).
pub const NOT_YET: &str =
    "the emu CPU backend is not implemented yet (planned in issue [2]); use cpu_backend = \"kvm\"";

/// Whether the toolstack may offer `cpu_backend = "emu"`. The CPU itself works; this
/// flips to `true` together with hypervisor-core's Bus implementation and run loop
/// (until then `hypervisor_core::domain::run` refuses the backend with [`NOT_YET`]).
pub const AVAILABLE: bool = true;
