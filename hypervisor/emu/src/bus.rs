//! What the software CPU needs from the machine around it.
//!
//! `hypervisor-core` implements [`Bus`] for each vCPU: guest RAM, MMIO and port I/O go to
//! the same exit records and dispatcher as the `kvm` backend; the interrupt controllers,
//! CPUID profile, the MSRs the CPU does not own, time and the Xen hypercall live there.
//!
//! Every call that can observe time passes `t`, the number of instructions this vCPU has
//! retired so far. In deterministic mode `hypervisor-core` derives guest time from it, so
//! the same image runs the same way twice; in host-time mode it is ignored.

/// The outside world of one vCPU.
pub trait Bus {
    /// Read guest-physical RAM. `false` when any byte of the range is not RAM; the CPU
    /// then goes to [`Bus::mmio_read`] instead (a range is never split by the CPU
    /// across a RAM/non-RAM boundary except by falling back to byte accesses).
    fn ram_read(&mut self, gpa: u64, buf: &mut [u8]) -> bool;
    /// Write guest-physical RAM. `false` (nothing written) when not all RAM.
    fn ram_write(&mut self, gpa: u64, buf: &[u8]) -> bool;
    /// Read MMIO (or an unbacked address: all ones). `buf.len()` is 1, 2, 4 or 8.
    fn mmio_read(&mut self, t: u64, gpa: u64, buf: &mut [u8]);
    /// Write MMIO (or an unbacked address: dropped). `buf.len()` is 1, 2, 4 or 8.
    fn mmio_write(&mut self, t: u64, gpa: u64, buf: &[u8]);
    /// IN of `size` (1, 2, 4) bytes.
    fn pio_in(&mut self, t: u64, port: u16, size: u8) -> u32;
    /// OUT of the low `size` bytes of `value`.
    fn pio_out(&mut self, t: u64, port: u16, size: u8, value: u32);
    /// CPUID leaf/subleaf: EAX, EBX, ECX, EDX.
    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> [u32; 4];
    /// RDMSR of an MSR the CPU does not implement itself (APIC base, hypervisor MSRs,
    /// ...). `None` = #GP(0).
    fn rdmsr(&mut self, t: u64, msr: u32) -> Option<u64>;
    /// WRMSR of an MSR the CPU does not implement itself. `false` = #GP(0).
    fn wrmsr(&mut self, t: u64, msr: u32, value: u64) -> bool;
    /// The time-stamp counter (before the guest's IA32_TSC adjustments).
    fn tsc(&mut self, t: u64) -> u64;
    /// VMCALL/VMMCALL: a call into the hypervisor (the Xen hypercall page uses it on
    /// this backend). Reads and writes the general registers (RAX..R15 in encoding
    /// order); `long_mode` tells the 64-bit from the 32-bit register convention.
    fn hypercall(&mut self, t: u64, gpr: &mut [u64; 16], long_mode: bool);
    /// Whether a maskable external interrupt (INTR from the LAPIC or the PIC) is
    /// pending. Only asked while RFLAGS.IF = 1 and no interrupt shadow is active.
    fn interrupt_pending(&mut self, t: u64) -> bool;
    /// The CPU takes the pending interrupt: its vector, or `None` if it went away.
    fn acknowledge_interrupt(&mut self, t: u64) -> Option<u8>;
    /// Guest-physical pages (4 KiB aligned) written behind the CPU's back (DMA, other
    /// vCPUs) since the last call; the CPU drops decoded code for them.
    fn take_written_code_pages(&mut self, f: &mut dyn FnMut(u64));
    /// Atomic compare-and-exchange of `size` (1, 2, 4, 8) bytes of RAM at `gpa` (LOCKed
    /// instructions against other vCPUs): `Some(Ok)` = stored, `Some(Err(v))` = the RAM
    /// held `v` (nothing stored), `None` = not RAM or not naturally aligned (the CPU then
    /// serialises the instruction under a process-wide lock).
    fn ram_cmpxchg(
        &mut self,
        _gpa: u64,
        _size: u8,
        _old: u64,
        _new: u64,
    ) -> Option<Result<(), u64>> {
        None
    }
    /// The CPU is about to fetch (and may cache decoded) code from the RAM page holding
    /// `gpa`: stores by other vCPUs to it must then reach this one through
    /// [`Bus::take_written_code_pages`].
    fn code_page_cached(&mut self, _gpa: u64) {}
    /// Asked after every port or MMIO access: whether the run slice must end now (the
    /// access powered the machine off, a stop was requested, ...).
    fn stop_requested(&mut self) -> bool;
}
