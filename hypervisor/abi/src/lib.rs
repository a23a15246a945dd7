//! hypervisor-abi: the fixed layouts shared across a domain boundary.
//!
//! Tiny, `no_std`, versioned by module. Everything here is a wire format: field order,
//! sizes and offsets are checked by tests and never change within a module version.
//! Decoders take bytes copied out of shared memory and validate them; nothing here
//! panics on any input.
//!
//! * [`pvh`]: the PVH start info the guest firmware boots from.
//! * [`ioreq`]: Xen's synchronous `ioreq_t` slots (one per vCPU).
//! * [`bufioreq`]: Xen's buffered (posted-write) ioreq ring.
//! * [`evtchn`]: chassis's event-channel page for stub domains.
//! * [`stubdom`]: the stub-domain start-info page.
//! * [`hypercall`]: Xen hypercall numbers and the chassis stub-domain doorbell.
#![no_std]
#![forbid(unsafe_code)]

pub mod bufioreq;
pub mod evtchn;
pub mod hypercall;
pub mod ioreq;
pub mod pvh;
pub mod stubdom;
