//! chassis-devices: the emulated PC of a chassis guest, as pure logic.
//!
//! Nothing in here knows whether it runs in the host process ("process mode") or in a
//! stub domain: devices reach the outside only through [`Platform`], take register
//! accesses as values with a [`Width`], and save their state as versioned, length-framed
//! records ([`snapshot`]). Every value a device receives comes from the guest and is
//! treated as hostile: no indexing on guest values without a bound, no panics.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod io;
pub mod platform;
pub mod snapshot;

pub mod pci;
pub mod profile;

pub mod debug_ports;
pub mod fw_cfg;
pub mod i440fx;
pub mod i8042;
pub mod mc146818;
pub mod piix3;
pub mod piix4_pm;
pub mod uart16550;
pub mod xen_platform;

pub mod machine;
pub mod machine_config;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use io::{Mmio, PortIo, Width};
pub use platform::{DmaError, Platform, PowerRequest, TimerId};
pub use snapshot::{LoadError, RecordReader, RecordWriter, Snapshot};
