//! The platform interrupt controllers and timers that the `emu` backend (issue [2]) runs
//! in our own code; on `kvm` they are KVM's in-kernel ones. Pure logic, driven by the
//! caller: nothing here is wired into a run loop yet.

pub mod ioapic;
pub mod lapic;
pub mod pic;
pub mod pit;
