//! The vCPU backend interface: what the domain run loop needs from `kvm`. (The `emu`
//! backend runs its CPU through `hypervisor_emu::Bus` instead, see `crate::emu`, but its
//! device accesses become the same [`Exit`] records for the same dispatcher.)
//!
//! A backend runs a vCPU until the guest does something the device model must handle and
//! reports it as an [`Exit`]: an access record (port or MMIO, with its size and data)
//! that borrows the backend's own buffer, so the hot path neither allocates nor copies.
//! The dispatcher completes reads by filling the buffer in place; the backend hands the
//! result to the guest on the next [`Vcpu::run`].

use std::sync::Arc;

use crate::Error;

/// Why [`Vcpu::run`] returned.
#[derive(Debug)]
pub enum Exit<'a> {
    /// `data.len() / size` port reads of `size` (1, 2 or 4) bytes each from `port`, to be
    /// written into `data` in order (string I/O: `rep insb/insw/insd`).
    PioIn {
        port: u16,
        size: u8,
        data: &'a mut [u8],
    },
    /// `data.len() / size` port writes of `size` bytes each to `port`.
    PioOut { port: u16, size: u8, data: &'a [u8] },
    /// An MMIO read of `data.len()` bytes at `addr`; fill `data` (little endian).
    MmioRead { addr: u64, data: &'a mut [u8] },
    /// An MMIO write of `data` at `addr`.
    MmioWrite { addr: u64, data: &'a [u8] },
    /// Nothing happened in the guest: a kick or a signal. Check for stop, run again.
    Interrupted,
    /// The guest triple-faulted (KVM_EXIT_SHUTDOWN).
    Shutdown,
    /// The CPU refused to enter the guest (invalid guest state).
    FailEntry { reason: u64, cpu: u32 },
    /// The backend could not emulate or deliver something.
    InternalError { suberror: u32 },
    /// A backend-level system event (reset, shutdown, crash) with its type.
    SystemEvent { kind: u32 },
    /// HLT reached userspace (only without an in-kernel LAPIC; never with this backend).
    Hlt,
    /// Anything else, with the backend's raw reason number.
    Other { reason: u32 },
}

/// One virtual CPU.
pub trait Vcpu: Send {
    /// The vCPU index (= initial APIC ID).
    fn id(&self) -> u32;
    /// Run until the next exit. Errors are backend failures (an ioctl failed), not guest
    /// events.
    fn run(&mut self) -> Result<Exit<'_>, Error>;
    /// A handle other threads use to make a running or about-to-run [`Vcpu::run`] return
    /// [`Exit::Interrupted`] promptly.
    fn kicker(&self) -> Arc<dyn Kick>;
    /// Registers that say where the vCPU is (for crash reports): at least RIP, CS, CR0.
    fn state_summary(&mut self) -> String;
}

/// Makes a vCPU leave guest mode.
pub trait Kick: Send + Sync {
    /// Request an exit. Idempotent; the vCPU's next `run` (or the current one) returns
    /// `Exit::Interrupted`.
    fn kick(&self);
    /// Called on the thread that will call `run`, before the first run.
    fn bind_thread(&self) {}
    /// Called on the same thread after its last run; after this, `kick` does not touch
    /// the thread.
    fn unbind_thread(&self) {}
}

/// The VM's interrupt controllers, as devices see them: one level per GSI.
pub trait IrqLines: Send + Sync {
    fn set_irq_line(&self, gsi: u32, level: bool) -> Result<(), Error>;
}
