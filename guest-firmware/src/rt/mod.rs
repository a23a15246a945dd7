//! Hardware glue for the guest image: entry, port I/O, console, memory access.

pub mod entry;
pub mod io;
pub mod mem;
pub mod serial;
