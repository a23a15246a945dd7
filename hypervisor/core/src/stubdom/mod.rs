//! Stub-domain mode: the device model runs in a VM of its own (`chassis-stubdom`), and
//! this side of the boundary turns guest exits into Xen-style ioreqs.
//!
//! * [`link`]: the guest side ([`StubLink`]): ioreqs in the shared page, event-channel
//!   signalling, waiting for answers, the buffered ring, the platform slot.
//! * [`ops`]: the stub's doorbell hypercall (`StubOp`), argument-checked.
//! * [`bus`]: what the stub's software CPU sees; everything outside its memory map stops
//!   the domain with a report.
//! * [`vm`]: building (RAM, image, hypercall page, start info) and running the stub.
//! * [`shared`]: the shared pages as host atomics, and the futex both sides park on.
//! * [`virtio_console`]: the host end of the stub domain's virtio-mmio console; its
//!   `log` lines come out prefixed with the stub domain's name.
//!
//! What the stub domain can rely on (emu backend), beyond the `hypervisor_abi` contract:
//! * Entry: 32-bit flat protected mode, paging off, IF = 0, EIP = the ELF entry, EBX =
//!   `map::START_INFO` (as PVH). The hypercall page is filled (`vmcall` stubs; the
//!   doorbell at byte 0x800). Doorbell registers: 64-bit RDI = op, RSI/RDX/R10 = args;
//!   32-bit EBX = op, ECX/EDX/ESI = args (Xen's 32-bit order). Result in RAX.
//! * Interrupts: there is no PIC, LAPIC or IOAPIC (their ports and MMIO are outside the
//!   map, so touching them stops the domain). The only interrupt is the event-channel
//!   upcall on `map::UPCALL_VECTOR`: an edge, raised by each signal, taken when IF = 1;
//!   no EOI. `sti; hlt` waits for it; `hlt` with IF = 0 also returns once an event
//!   arrives (the stub then looks at the event-channel page itself).
//! * Time: RDTSC = guest ns (1 GHz, the same clock as `StubOp::Now`). No MSRs of its own
//!   (RDMSR/WRMSR of anything the CPU does not implement itself is #GP).
//! * Answering: write `data`, then the state byte = IORESP_READY (release), then
//!   `IoreqDone(slot)` (the host spins briefly, then parks on that doorbell). Serve the
//!   buffered ring before the synchronous slots, and advance its `read_pointer` with an
//!   atomic add (the host canonicalises both pointers with one 64-bit cmpxchg).
//! * The guest window maps guest RAM only: an access to a hole (VGA, PCI) or past the
//!   window stops the domain like any other access outside the map.
pub mod bus;
pub mod link;
pub mod ops;
pub mod shared;
pub mod virtio_console;
pub mod vm;

pub use link::{StubChannel, StubKick, StubLink};

#[cfg(test)]
mod tests;
