//! The stub domain's doorbell ([`hypervisor_abi::hypercall::HYPERVISOR_CHASSIS_STUB`])
//! behind a trait, so the server and the platform run against a recording mock on the
//! host and against the hypercall page in the image.

use hypervisor_abi::hypercall::StubOp;

/// One `HYPERVISOR_CHASSIS_STUB` call: RDI = `op`, RSI/RDX/R10 = `a0`/`a1`/`a2`;
/// returns RAX.
pub trait Hypercall {
    fn call(&self, op: StubOp, a0: u64, a1: u64, a2: u64) -> u64;
}

impl<H: Hypercall + ?Sized> Hypercall for &H {
    fn call(&self, op: StubOp, a0: u64, a1: u64, a2: u64) -> u64 {
        (**self).call(op, a0, a1, a2)
    }
}
