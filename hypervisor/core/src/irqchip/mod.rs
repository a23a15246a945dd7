//! The platform interrupt controllers and timers that the `emu` backend runs in our own
//! code; on `kvm` they are KVM's in-kernel ones. Pure logic, driven by the caller: the
//! `emu` backend wires them together and to its vCPUs in `crate::emu::irqchip`.

pub mod ioapic;
pub mod lapic;
pub mod pic;
pub mod pit;
