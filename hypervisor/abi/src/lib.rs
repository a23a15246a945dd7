//! hypervisor-abi: the fixed layouts shared across a domain boundary.
//!
//! Tiny, `no_std`, versioned by module. Everything here is a wire format: field order,
//! sizes and offsets are checked by tests and never change within a module version.
#![no_std]
#![forbid(unsafe_code)]

pub mod pvh;
