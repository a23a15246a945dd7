//! chassis-stubdom: the device model of one guest, in a VM of its own.
//!
//! This library is the part of the unikernel that does not touch hardware, so it is
//! unit-tested on the host (`cargo test -p chassis-stubdom --lib`): the ioreq server
//! ([`server`]), the [`chassis_devices::platform::Platform`] the machine calls
//! ([`platform`]), the page-table builder ([`paging`]), the heap ([`heap`]) and a
//! fixed-buffer formatter ([`fmtbuf`]). The image (`src/main.rs`, built only for
//! `x86_64-unknown-none`) adds the entry, the IDT, the hypercall instruction sequence,
//! the virtio console and the main loop.
//!
//! Everything the stub reads from shared memory is hostile: the start info and the
//! machine config are decoded by checked parsers, ioreq slots are copied out once and
//! validated, the buffered ring's pointers are treated as garbage when they are.
#![no_std]

extern crate alloc;

pub mod fmtbuf;
pub mod heap;
pub mod hypercall;
pub mod paging;
pub mod platform;
pub mod server;
