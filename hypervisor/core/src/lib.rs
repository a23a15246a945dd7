//! hypervisor-core (being built)
