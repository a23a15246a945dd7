//! Stub-domain mode: the device model runs in a VM of its own (`chassis-stubdom`), and
//! this side of the boundary turns guest exits into Xen-style ioreqs.
//!
//! * [`link`]: the guest side ([`StubLink`]): ioreqs in the shared page, event-channel
//!   signalling, waiting for answers, the buffered ring, the platform slot.
//! * [`ops`]: the stub's doorbell hypercall (`StubOp`), argument-checked.
//! * [`bus`]: what the stub's software CPU sees; everything outside its memory map stops
//!   the domain with a report.
//! * [`kvm_vm`]: the stub domain as a second KVM VM (`kvm` backend).
//! * [`vm`]: building (RAM, image, hypercall page, start info) and running the stub.
//! * [`shared`]: the shared pages as host atomics, and the futex both sides park on.
//! * [`virtio_console`]: the host end of the stub domain's virtio-mmio console; its
//!   `log` lines come out prefixed with the stub domain's name.
pub mod bus;
pub mod kvm_vm;
pub mod link;
pub mod ops;
pub mod shared;
pub mod virtio_console;
pub mod vm;

pub use link::{StubChannel, StubKick, StubLink};

#[cfg(test)]
mod tests;
