//! `log` over the virtio console (`virtio-drivers`' MMIO transport and console
//! driver). Physical = virtual (the stub identity-maps its RAM), DMA buffers come from
//! the heap. The host handles a queue notify synchronously, so a send is complete when
//! `send_bytes` returns (it polls the used ring); no virtio interrupt is used.
//!
//! One line per record, sent with one notify. `virtio_drivers`' own records are
//! dropped (they would recurse into the console), and a record logged while the
//! console is busy (a fault inside a send) is dropped too.

use core::alloc::Layout;
use core::cell::UnsafeCell;
use core::fmt::Write;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};

use chassis_stubdom::fmtbuf::FmtBuf;
use log::{Level, LevelFilter, Log, Metadata, Record};
use virtio_drivers::device::console::VirtIOConsole;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

const PAGE: usize = 4096;

pub struct StubHal;

// SAFETY: identity-mapped RAM: the physical address of every heap or stack byte is its
// virtual address; DMA memory is zeroed, page-aligned heap memory.
unsafe impl Hal for StubHal {
    fn dma_alloc(pages: usize, _dir: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let Some(layout) = pages
            .checked_mul(PAGE)
            .and_then(|n| Layout::from_size_align(n.max(PAGE), PAGE).ok())
        else {
            return (0, NonNull::dangling());
        };
        // SAFETY: non-zero size.
        let p = unsafe { alloc::alloc::alloc_zeroed(layout) };
        match NonNull::new(p) {
            Some(nn) => (p as u64, nn),
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        if let Ok(layout) = Layout::from_size_align(pages.max(1) * PAGE, PAGE) {
            // SAFETY: allocated by dma_alloc with this layout.
            unsafe { alloc::alloc::dealloc(vaddr.as_ptr(), layout) };
        }
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8).unwrap_or(NonNull::dangling())
    }

    unsafe fn share(buffer: NonNull<[u8]>, _dir: BufferDirection) -> PhysAddr {
        buffer.as_ptr() as *mut u8 as u64
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _dir: BufferDirection) {}
}

type Console = VirtIOConsole<StubHal, MmioTransport<'static>>;

struct Logger {
    console: UnsafeCell<Option<Console>>,
    busy: AtomicBool,
}

// SAFETY: single vCPU; the `busy` flag keeps a nested call (a fault or a log from
// inside a send) away from the console.
unsafe impl Sync for Logger {}

static LOGGER: Logger = Logger {
    console: UnsafeCell::new(None),
    busy: AtomicBool::new(false),
};

/// Bring up the console at `base` (`size` bytes of registers) and install the logger.
///
/// # Safety
/// `base .. base + size` must be the mapped register window of a virtio-mmio device.
pub unsafe fn init(base: u64, size: u64) -> Result<(), &'static str> {
    let header = NonNull::new(base as *mut VirtIOHeader).ok_or("null window")?;
    // SAFETY: caller.
    let transport = unsafe { MmioTransport::new(header, size as usize) }
        .map_err(|_| "not a virtio-mmio device")?;
    let console = Console::new(transport).map_err(|_| "console set-up failed")?;
    if LOGGER.busy.swap(true, Ordering::Acquire) {
        return Err("busy");
    }
    // SAFETY: busy is held.
    unsafe { *LOGGER.console.get() = Some(console) };
    LOGGER.busy.store(false, Ordering::Release);
    log::set_logger(&LOGGER).map_err(|_| "logger already set")?;
    log::set_max_level(LevelFilter::Info);
    Ok(())
}

/// Send one line (a newline is added), if the console is up and free.
fn send_line(line: &[u8]) {
    if LOGGER.busy.swap(true, Ordering::Acquire) {
        return;
    }
    // SAFETY: busy is held: no other reference to the console exists.
    if let Some(c) = unsafe { &mut *LOGGER.console.get() } {
        let _ = c.send_bytes(line);
    }
    LOGGER.busy.store(false, Ordering::Release);
}

/// A line straight to the console (the fatal path), bypassing `log`'s filter.
pub fn emergency_line(s: &str) {
    let mut buf = [0u8; 1100];
    let mut f = FmtBuf::new(&mut buf);
    let _ = f.write_str(s);
    f.push(b'\n');
    let n = f.len();
    send_line(&buf[..n]);
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= Level::Info && !m.target().starts_with("virtio_drivers")
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let mut buf = [0u8; 512];
        let mut f = FmtBuf::new(&mut buf);
        let _ = write!(f, "{:<5} {}", r.level(), r.args());
        // Keep room for the newline even when the message was cut.
        let n = f.len().min(511);
        buf[n] = b'\n';
        send_line(&buf[..n + 1]);
    }

    fn flush(&self) {}
}
