//! [`StubPlatform`]: how the machine's devices reach outside the stub domain. Interrupt
//! lines, timers, character output and power requests become doorbell hypercalls; guest
//! memory is the foreign window the hypervisor maps at `stubdom::map::GUEST_WINDOW`.

use chassis_devices::platform::{CharSink, DmaError, Platform, PowerRequest, TimerId};
use hypervisor_abi::hypercall::{
    CHAR_OUT_MAX, CHAR_SINK_DEBUGCON, SHUTDOWN_POWEROFF, SHUTDOWN_REBOOT, SHUTDOWN_SUSPEND, StubOp,
};

use crate::hypercall::Hypercall;

/// The guest's RAM as the stub sees it: `size` bytes from `base` (a pointer into the
/// foreign window in the image, a host buffer in tests). Every access is checked
/// against `size` before a byte is touched.
#[derive(Clone, Copy, Debug)]
pub struct GuestWindow {
    base: *mut u8,
    size: u64,
}

impl GuestWindow {
    /// # Safety
    /// `base .. base + size` must be mapped and stay valid for the window's lifetime
    /// (bytes in it may change under us: the guest's vCPUs write it concurrently).
    pub const unsafe fn new(base: *mut u8, size: u64) -> Self {
        GuestWindow { base, size }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Offset of `[gpa, gpa + len)` in the window, if entirely inside it.
    fn check(&self, gpa: u64, len: usize) -> Result<usize, DmaError> {
        let oor = DmaError::OutOfRange {
            gpa,
            len: len as u64,
        };
        let end = gpa.checked_add(len as u64).ok_or(oor)?;
        if end > self.size {
            return Err(oor);
        }
        usize::try_from(gpa).map_err(|_| oor)
    }

    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        let off = self.check(gpa, buf.len())?;
        // SAFETY: off + len ≤ size (checked); the window is mapped (constructor
        // contract); `buf` is our own memory, not in the window.
        unsafe { core::ptr::copy_nonoverlapping(self.base.add(off), buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    pub fn write(&self, gpa: u64, buf: &[u8]) -> Result<(), DmaError> {
        let off = self.check(gpa, buf.len())?;
        // SAFETY: as in `read`.
        unsafe { core::ptr::copy_nonoverlapping(buf.as_ptr(), self.base.add(off), buf.len()) };
        Ok(())
    }
}

/// Bytes of the bounce buffer for character output that does not already lie in stub
/// RAM (the hypervisor only reads `CharOut` bytes from there).
const BOUNCE: usize = 256;

/// The machine's [`Platform`] in a stub domain.
pub struct StubPlatform<H: Hypercall> {
    pub hc: H,
    window: GuestWindow,
    wall_clock_base_ns: u64,
    /// Stub RAM `[0, ram_end)`: where `CharOut` bytes may be passed in place.
    ram_end: u64,
    bounce: [u8; BOUNCE],
}

impl<H: Hypercall> StubPlatform<H> {
    /// `ram_end`: the end of the stub's RAM in its (identity-mapped) address space.
    pub fn new(hc: H, window: GuestWindow, wall_clock_base_ns: u64, ram_end: u64) -> Self {
        StubPlatform {
            hc,
            window,
            wall_clock_base_ns,
            ram_end,
            bounce: [0; BOUNCE],
        }
    }

    pub fn window(&self) -> &GuestWindow {
        &self.window
    }

    fn in_ram(&self, bytes: &[u8]) -> bool {
        let start = bytes.as_ptr() as u64;
        start
            .checked_add(bytes.len() as u64)
            .is_some_and(|end| end <= self.ram_end)
    }
}

impl<H: Hypercall> Platform for StubPlatform<H> {
    fn set_irq(&mut self, gsi: u32, level: bool) {
        self.hc
            .call(StubOp::SetIsaIrqLevel, gsi as u64, level as u64, 0);
    }

    fn dma_read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        self.window.read(gpa, buf)
    }

    fn dma_write(&mut self, gpa: u64, buf: &[u8]) -> Result<(), DmaError> {
        self.window.write(gpa, buf)
    }

    fn now_ns(&self) -> u64 {
        self.hc.call(StubOp::Now, 0, 0, 0)
    }

    fn wall_clock_base_ns(&self) -> u64 {
        self.wall_clock_base_ns
    }

    fn set_timer(&mut self, timer: TimerId, deadline_ns: Option<u64>) {
        // u64::MAX cancels; a real deadline of u64::MAX would never fire anyway.
        let d = deadline_ns.unwrap_or(u64::MAX);
        self.hc.call(StubOp::SetTimer, timer.index() as u64, d, 0);
    }

    fn char_out(&mut self, sink: CharSink, bytes: &[u8]) {
        let sink = match sink {
            CharSink::Serial(i) => i as u64,
            CharSink::DebugCon => CHAR_SINK_DEBUGCON,
        };
        if self.in_ram(bytes) {
            for chunk in bytes.chunks(CHAR_OUT_MAX as usize) {
                self.hc.call(
                    StubOp::CharOut,
                    sink,
                    chunk.as_ptr() as u64,
                    chunk.len() as u64,
                );
            }
            return;
        }
        for chunk in bytes.chunks(BOUNCE) {
            self.bounce[..chunk.len()].copy_from_slice(chunk);
            let addr = self.bounce.as_ptr() as u64;
            self.hc
                .call(StubOp::CharOut, sink, addr, chunk.len() as u64);
        }
    }

    fn power(&mut self, request: PowerRequest) {
        let reason = match request {
            PowerRequest::PowerOff => SHUTDOWN_POWEROFF,
            PowerRequest::Reset => SHUTDOWN_REBOOT,
            PowerRequest::Suspend => SHUTDOWN_SUSPEND,
        };
        self.hc.call(StubOp::Shutdown, reason as u64, 0, 0);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    extern crate std;
    use core::cell::{Cell, RefCell};
    use std::vec::Vec;

    /// Records every call; `Now` answers `now`; `CharOut` reads the bytes from the
    /// (host) address it is given.
    #[derive(Default)]
    pub struct MockHc {
        pub calls: RefCell<Vec<(StubOp, u64, u64, u64)>>,
        pub chars: RefCell<Vec<(u64, Vec<u8>)>>,
        pub now: Cell<u64>,
    }

    impl Hypercall for MockHc {
        fn call(&self, op: StubOp, a0: u64, a1: u64, a2: u64) -> u64 {
            self.calls.borrow_mut().push((op, a0, a1, a2));
            match op {
                StubOp::Now => self.now.get(),
                StubOp::CharOut => {
                    // SAFETY: the platform passes a live host buffer of a2 bytes.
                    let b = unsafe { core::slice::from_raw_parts(a1 as *const u8, a2 as usize) };
                    self.chars.borrow_mut().push((a0, b.to_vec()));
                    0
                }
                _ => 0,
            }
        }
    }

    impl MockHc {
        pub fn take(&self) -> Vec<(StubOp, u64, u64, u64)> {
            core::mem::take(&mut *self.calls.borrow_mut())
        }
    }

    fn platform(mem: &mut [u8], ram_end: u64) -> StubPlatform<MockHc> {
        // SAFETY: `mem` outlives the platform in each test.
        let w = unsafe { GuestWindow::new(mem.as_mut_ptr(), mem.len() as u64) };
        StubPlatform::new(MockHc::default(), w, 42, ram_end)
    }

    #[test]
    fn dma_is_bounds_checked() {
        let mut mem = std::vec![0u8; 0x2000];
        let mut p = platform(&mut mem, u64::MAX);
        p.dma_write(0x1ffc, &[1, 2, 3, 4]).unwrap();
        let mut b = [0u8; 4];
        p.dma_read(0x1ffc, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3, 4]);
        assert_eq!(
            p.dma_write(0x1ffd, &[1, 2, 3, 4]),
            Err(DmaError::OutOfRange {
                gpa: 0x1ffd,
                len: 4
            })
        );
        assert!(p.dma_read(u64::MAX - 1, &mut b).is_err());
        assert!(p.dma_read(0x2000, &mut []).is_ok());
        assert!(p.dma_read(0x2001, &mut []).is_err());
        drop(p);
        assert_eq!(&mem[0x1ffc..], &[1, 2, 3, 4]);
    }

    #[test]
    fn doorbells() {
        let mut mem = std::vec![0u8; 0x1000];
        let mut p = platform(&mut mem, u64::MAX);
        p.hc.now.set(1234);
        assert_eq!(p.now_ns(), 1234);
        assert_eq!(p.wall_clock_base_ns(), 42);
        p.set_irq(8, true);
        p.set_timer(TimerId::PmTimerOverflow, Some(99));
        p.set_timer(TimerId::RtcUpdate, None);
        p.power(PowerRequest::Reset);
        p.power(PowerRequest::PowerOff);
        p.power(PowerRequest::Suspend);
        assert_eq!(
            p.hc.take(),
            [
                (StubOp::Now, 0, 0, 0),
                (StubOp::SetIsaIrqLevel, 8, 1, 0),
                (StubOp::SetTimer, 2, 99, 0),
                (StubOp::SetTimer, 1, u64::MAX, 0),
                (StubOp::Shutdown, SHUTDOWN_REBOOT as u64, 0, 0),
                (StubOp::Shutdown, SHUTDOWN_POWEROFF as u64, 0, 0),
                (StubOp::Shutdown, SHUTDOWN_SUSPEND as u64, 0, 0),
            ]
        );
    }

    #[test]
    fn char_out_in_place_or_bounced() {
        let mut mem = std::vec![0u8; 0x1000];
        let data = std::vec![b'x'; 600];
        // "RAM" ends before the data: bounced in 256-byte pieces through the buffer.
        let mut p = platform(&mut mem, 0);
        p.char_out(CharSink::Serial(1), &data);
        p.char_out(CharSink::DebugCon, b"hi");
        let chars = p.hc.chars.borrow().clone();
        assert_eq!(chars.len(), 4);
        assert_eq!(chars[0], (1, std::vec![b'x'; 256]));
        assert_eq!(chars[2], (1, std::vec![b'x'; 88]));
        assert_eq!(chars[3], (CHAR_SINK_DEBUGCON, b"hi".to_vec()));
        let bounce = p.bounce.as_ptr() as u64;
        assert!(p.hc.take().iter().all(|c| c.2 == bounce));
        // Everything is "RAM": passed in place, one call.
        let mut p = platform(&mut mem, u64::MAX);
        p.char_out(CharSink::Serial(0), &data);
        assert_eq!(
            p.hc.take(),
            [(StubOp::CharOut, 0, data.as_ptr() as u64, 600)]
        );
    }
}
