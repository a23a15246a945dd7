//! The stub-domain unikernel: not built yet (issue [4]). Stub-domain mode is refused by
//! the toolstack with a clear message until it lands.
#![no_std]
