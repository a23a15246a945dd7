//! Hardware glue of the image: entry, IDT, the doorbell instruction sequence, the
//! virtio console and `fatal`.

pub mod console;
pub mod entry;
pub mod idt;

use core::arch::asm;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use chassis_stubdom::fmtbuf::FmtBuf;
use chassis_stubdom::hypercall::Hypercall;
use hypervisor_abi::hypercall::{
    CRASH_MSG_MAX, HYPERCALL_PAGE_STRIDE, HYPERVISOR_CHASSIS_STUB, StubOp,
};
use hypervisor_abi::stubdom::map;

const STUB_ENTRY_OFFSET: u64 = HYPERVISOR_CHASSIS_STUB as u64 * HYPERCALL_PAGE_STRIDE as u64;

/// The doorbell's entry in the hypercall page (the contract's page until the start
/// info says otherwise).
static HC_ENTRY: AtomicU64 = AtomicU64::new(map::HYPERCALL_PAGE + STUB_ENTRY_OFFSET);

pub fn set_hypercall_page(gpa: u64) {
    HC_ENTRY.store(gpa + STUB_ENTRY_OFFSET, Ordering::Relaxed);
}

/// `call` the page's `HYPERVISOR_CHASSIS_STUB` entry (it loads EAX and traps).
#[inline(always)]
pub fn hypercall(op: StubOp, a0: u64, a1: u64, a2: u64) -> u64 {
    let entry = HC_ENTRY.load(Ordering::Relaxed);
    let ret: u64;
    // SAFETY: the hypervisor filled the page before our first instruction; its stub
    // follows the C calling convention for clobbers (we declare all scratch registers).
    unsafe {
        asm!(
            "call {entry}",
            entry = in(reg) entry,
            inlateout("rax") HYPERVISOR_CHASSIS_STUB as u64 => ret,
            inlateout("rdi") op.raw() as u64 => _,
            inlateout("rsi") a0 => _,
            inlateout("rdx") a1 => _,
            inlateout("r10") a2 => _,
            lateout("rcx") _,
            lateout("r8") _,
            lateout("r9") _,
            lateout("r11") _,
        );
    }
    ret
}

/// The doorbell as the library's [`Hypercall`].
#[derive(Clone, Copy)]
pub struct Doorbell;

impl Hypercall for Doorbell {
    #[inline(always)]
    fn call(&self, op: StubOp, a0: u64, a1: u64, a2: u64) -> u64 {
        hypercall(op, a0, a1, a2)
    }
}

/// The time-stamp counter (guest ns on the software CPU).
#[inline(always)]
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reads the TSC; CR4.TSD is clear.
    unsafe {
        asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    (hi as u64) << 32 | lo as u64
}

#[inline(always)]
pub fn cli() {
    // SAFETY: interrupt flag only.
    unsafe { asm!("cli", options(nomem, nostack)) };
}

#[inline(always)]
pub fn sti() {
    // SAFETY: interrupt flag only; every handler is installed.
    unsafe { asm!("sti", options(nomem, nostack)) };
}

/// `sti; hlt`: the one-instruction interrupt shadow of STI makes "enable and sleep"
/// atomic, so an upcall raised after the last scan wakes the HLT.
#[inline(always)]
pub fn sti_hlt() {
    // SAFETY: as `sti`; HLT returns on the next interrupt.
    unsafe { asm!("sti", "hlt", options(nomem, nostack)) };
}

static CRASH_BUF_USED: AtomicBool = AtomicBool::new(false);
static mut CRASH_BUF: [u8; CRASH_MSG_MAX as usize] = [0; CRASH_MSG_MAX as usize];

/// Log `msg` (if the console is up and this is not a fault inside the logger) and stop
/// the stub domain with [`StubOp::Crash`]. Never returns.
#[allow(clippy::deref_addrof)] // raw-pointer access to a `static mut`, on purpose
pub fn fatal(msg: fmt::Arguments) -> ! {
    cli();
    if !CRASH_BUF_USED.swap(true, Ordering::SeqCst) {
        // SAFETY: only the first fatal gets here (the flag), interrupts are off.
        let buf = unsafe { &mut *(&raw mut CRASH_BUF) };
        let mut f = FmtBuf::new(buf);
        let _ = fmt::write(&mut f, format_args!("chassis-stubdom: {msg}"));
        let len = f.len();
        if let Ok(s) = core::str::from_utf8(&buf[..len]) {
            console::emergency_line(s);
        }
        hypercall(StubOp::Crash, buf.as_ptr() as u64, len as u64, 0);
    } else {
        // A fault while reporting a fault: no formatting, no console.
        const MSG: &[u8] = b"chassis-stubdom: fault while reporting a fault";
        hypercall(StubOp::Crash, MSG.as_ptr() as u64, MSG.len() as u64, 0);
    }
    loop {
        // SAFETY: stop here for good if the hypervisor ever returns.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// `fatal` with format arguments.
#[macro_export]
macro_rules! fatal {
    ($($arg:tt)*) => {
        $crate::rt::fatal(format_args!($($arg)*))
    };
}
