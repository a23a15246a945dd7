//! Stub-domain mode: the device model runs in a VM of its own (`chassis-stubdom`), and
//! this side of the boundary turns guest exits into Xen-style ioreqs.
//!
//! * [`virtio_console`]: the host end of the stub domain's virtio-mmio console; its
//!   `log` lines come out prefixed with the stub domain's name.
pub mod virtio_console;
