//! The `emu` backend: a software x86-64 CPU (issue [2]).
//!
//! What exists today is the 64-bit-mode integer core: register state ([`cpu`]), a guest
//! linear-memory trait ([`mem`]) and an interpreter that executes one decoded
//! instruction at a time ([`exec`]), with the instruction families split by file
//! (`alu`, `shift`, `muldiv`, `bits`, `string`, `flags`). Decoding (`iced-x86`) is kept
//! separate from execution ([`exec::decode_at`] / [`exec::execute`]) so a decoded-code
//! cache keyed by physical page can sit between them later. There is no run loop, no
//! paging, no real/protected mode and no exception delivery yet, so the hypervisor core
//! still refuses `cpu_backend = "emu"`: [`AVAILABLE`] stays `false`.
//!
//! The interpreter never panics on any instruction bytes: anything it does not
//! implement is [`exec::Exception::InvalidOpcode`].
#![forbid(unsafe_code)]

mod alu;
mod bits;
pub mod bus;
pub mod cpu;
pub mod exec;
mod flags;
pub mod fpu;
pub mod mem;
mod muldiv;
mod ops;
mod shift;
mod softfloat;
mod sse;
mod string;
pub mod vcpu;
mod x87;

pub use bus::Bus;
pub use cpu::Cpu;
pub use vcpu::{EmuVcpu, RunExit};
pub use exec::{Exception, execute, step};
pub use mem::{Fault, FlatMemory, Memory};

/// Why the emu backend cannot run a guest yet.
pub const NOT_YET: &str =
    "the emu CPU backend is not implemented yet (planned in issue [2]); use cpu_backend = \"kvm\"";

/// Whether this build has a working software CPU.
pub const AVAILABLE: bool = false;
