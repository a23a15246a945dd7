//! chassis-stubdom, the image: the device model of one guest in a VM of its own.
//!
//! Entered in 32-bit protected mode (rt/entry.rs) with EBX = the start-info page. In
//! order: IDT; start info (checked); the stub's own page tables (only what the
//! hypervisor backs); heap; virtio console and `log`; machine config (checked) and
//! `Machine::new`, the same function process mode uses; one summary line; the
//! start-up self-test, if any; `StubOp::Ready`; the ioreq server loop.
//!
//! Console lines (the host prefixes `[<stub name>] `):
//!
//! ```text
//! INFO  chassis-stubdom: guest 3, 1 vCPUs, profile qemu-xen, guest RAM 512 MiB, ...
//! WARN  malformed ioreq in slot 0 (...)             (first few only)
//! ERROR chassis-stubdom: exception 14 (#PF page fault): error code 0x0, cr2 ..., rip ...
//! ```
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "chassis-stubdom is a bare-metal image: build it with \
         `cargo build --profile stubdom -p chassis-stubdom --target x86_64-unknown-none`"
    );
}

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
#[path = "rt/mod.rs"]
mod rt;

#[cfg(target_os = "none")]
mod stub {
    use crate::fatal;
    use crate::rt::{self, Doorbell, console, entry, idt};
    use chassis_devices::machine::{Machine, MachineConfig};
    use chassis_stubdom::heap::StubHeap;
    use chassis_stubdom::paging::{CACHE_DISABLE, PAGE_4K, PagePool, PageTables, WRITABLE};
    use chassis_stubdom::platform::{GuestWindow, StubPlatform};
    use chassis_stubdom::server::{Server, SharedPages};
    use hypervisor_abi::hypercall::StubOp;
    use hypervisor_abi::stubdom::{SelfTest, StubStartInfo, map};

    #[global_allocator]
    static HEAP: StubHeap = StubHeap::empty();

    /// Idle polling before sleeping on the upcall: at most this many empty turns (a
    /// turn with two slots is about 70 instructions; on `emu` every one is interpreted,
    /// and the hypervisor spins natively before parking a halted stub anyway)...
    const SPIN_TURNS: u32 = 32;
    /// ...and at most this long by the TSC (guest nanoseconds on the software CPU,
    /// where every polled instruction costs host time; cycles on hardware). Long enough
    /// to catch a guest's back-to-back port accesses, short enough that an idle stub
    /// does not keep a host core busy.
    const SPIN_TSC: u64 = 100_000;
    /// The boot map covers this much (rt/entry.rs).
    const BOOT_MAP_END: u64 = 1 << 30;
    /// An address nothing maps (SelfTest::TouchOutside).
    const OUTSIDE: u64 = 0x7000_0000;

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo) -> ! {
        match info.location() {
            Some(l) => fatal!("panic at {}:{}: {}", l.file(), l.line(), info.message()),
            None => fatal!("panic: {}", info.message()),
        }
    }

    fn page_up(v: u64) -> u64 {
        v.div_ceil(PAGE_4K) * PAGE_4K
    }

    /// Build and load the stub's own tables. Returns (first free byte after the
    /// tables, table pages used).
    fn build_page_tables(si: &StubStartInfo, image_end: u64) -> (u64, usize) {
        let ram = si.stub_ram_size;
        let mut pool = PagePool::new(image_end, ram.min(BOOT_MAP_END));
        let mut pt = match PageTables::new(&mut pool) {
            Ok(p) => p,
            Err(e) => fatal!("page tables: {e:?}"),
        };
        let guard = entry::stack_guard();
        let mut map = |what: &str, base: u64, size: u64, flags: u64| {
            if let Err(e) = pt.map(base, size, flags) {
                fatal!("mapping {what} {base:#x}+{size:#x}: {e:?}");
            }
        };
        // RAM, but not page 0 (null pointers fault) nor the stack guard.
        map("RAM", PAGE_4K, guard - PAGE_4K, WRITABLE);
        map("RAM", guard + PAGE_4K, ram - guard - PAGE_4K, WRITABLE);
        map("ioreq page", si.ioreq_page_gpa, PAGE_4K, WRITABLE);
        if si.bufioreq_page_gpa != 0 {
            map("bufioreq page", si.bufioreq_page_gpa, PAGE_4K, WRITABLE);
        }
        map("evtchn page", si.evtchn_page_gpa, PAGE_4K, WRITABLE);
        map("config page", si.config_page_gpa, PAGE_4K, 0);
        if si.hypercall_page_gpa + PAGE_4K > ram {
            map("hypercall page", si.hypercall_page_gpa, PAGE_4K, 0);
        }
        for d in si.virtio_devices() {
            let end = page_up(d.base + d.size);
            map(
                "virtio window",
                d.base,
                end - d.base,
                WRITABLE | CACHE_DISABLE,
            );
        }
        map(
            "guest window",
            si.guest_ram_base,
            si.guest_ram_size,
            WRITABLE,
        );
        if si.selftest == SelfTest::TouchPastGuest {
            // Test only: one page past the guest's memory, so the hypervisor's
            // backstop (not our tables) has to catch the write.
            map(
                "self-test page",
                si.guest_ram_base + si.guest_ram_size,
                PAGE_4K,
                WRITABLE,
            );
        }
        let root = pt.root();
        // SAFETY: the new tables map the code, the stack, the data and the pool itself
        // exactly as the boot map did (identity), so execution continues.
        unsafe { core::arch::asm!("mov cr3, {}", in(reg) root, options(nostack)) };
        (pool.next_free(), pool.used)
    }

    #[unsafe(no_mangle)]
    extern "C" fn stub_main(start_info_gpa: u64) -> ! {
        idt::init();

        // The start info: a copy, decoded and checked once.
        if start_info_gpa != map::START_INFO {
            fatal!(
                "start info at {start_info_gpa:#x}, expected {:#x}",
                map::START_INFO
            );
        }
        let mut page = [0u8; 4096];
        // SAFETY: the start-info page is in RAM, under the boot map.
        unsafe {
            core::ptr::copy_nonoverlapping(
                start_info_gpa as *const u8,
                page.as_mut_ptr(),
                page.len(),
            )
        };
        let si = match StubStartInfo::from_bytes(&page) {
            Ok(s) => s,
            Err(e) => fatal!("start info refused: {e:?}"),
        };
        rt::set_hypercall_page(si.hypercall_page_gpa);
        let (image_start, image_end) = entry::image_range();
        if si.stub_ram_size > map::MAX_RAM || image_end + 16 * PAGE_4K > si.stub_ram_size {
            fatal!(
                "stub RAM {:#x} too small for the image (ends at {image_end:#x})",
                si.stub_ram_size
            );
        }

        let (heap_start, table_pages) = build_page_tables(&si, image_end);
        let heap_start = page_up(heap_start);
        // SAFETY: [heap_start, stub RAM end) is mapped RAM nothing else uses.
        unsafe {
            HEAP.init(
                heap_start as *mut u8,
                (si.stub_ram_size - heap_start) as usize,
            )
        };

        let console_err = match si.virtio.get(si.console_device as usize) {
            // SAFETY: the window is mapped (above) and is a console per the start info.
            Some(Some(d)) => unsafe { console::init(d.base, d.size) }.err(),
            _ => Some("no console device"),
        };

        // The machine config: exactly config_len bytes of the read-only page.
        let mut cfg_bytes = [0u8; 4096];
        let n = (si.config_len as usize).min(cfg_bytes.len());
        // SAFETY: the config page is mapped (above); n ≤ 4096.
        unsafe {
            core::ptr::copy_nonoverlapping(
                si.config_page_gpa as *const u8,
                cfg_bytes.as_mut_ptr(),
                n,
            )
        };
        let cfg = match MachineConfig::decode(&cfg_bytes[..n]) {
            Ok(c) => c,
            Err(e) => fatal!("machine config refused: {e:?}"),
        };
        let machine = Machine::new(&cfg);

        // SAFETY: the window is mapped (above) for exactly guest_ram_size bytes.
        let window = unsafe { GuestWindow::new(si.guest_ram_base as *mut u8, si.guest_ram_size) };
        let platform = StubPlatform::new(Doorbell, window, si.wall_clock_base_ns, si.stub_ram_size);
        // SAFETY: the shared pages are mapped (above); bufioreq is null when absent.
        let pages = unsafe {
            SharedPages::new(
                si.ioreq_page_gpa as *mut u8,
                if si.bufioreq_page_gpa == 0 {
                    core::ptr::null_mut()
                } else {
                    si.bufioreq_page_gpa as *mut u8
                },
                si.evtchn_page_gpa as *mut u8,
            )
        };
        let mut server = Server::new(machine, platform, pages, si.nr_vcpus);

        let heap = HEAP.stats();
        log::info!(
            "chassis-stubdom: guest {}, {} vCPUs, profile {}, guest RAM {} MiB, stub RAM {} KiB: \
             image {} KiB at {image_start:#x}, page tables {} KiB, heap {} KiB used (high water \
             {} KiB) of {} KiB, stack {} KiB used",
            si.guest_domid,
            si.nr_vcpus,
            cfg.profile.name,
            (cfg.ram_below_4g + cfg.ram_above_4g) >> 20,
            si.stub_ram_size >> 10,
            (image_end - image_start) >> 10,
            table_pages * 4,
            heap.used.div_ceil(1024),
            heap.high_water.div_ceil(1024),
            heap.size >> 10,
            entry::stack_high_water().div_ceil(1024),
        );
        if let Some(e) = console_err {
            // Without a console nobody sees the lines above: say why once on the debug
            // console sink, and go on (crashes are still reported with their message).
            let mut buf = [0u8; 160];
            let mut f = chassis_stubdom::fmtbuf::FmtBuf::new(&mut buf);
            let _ = core::fmt::write(
                &mut f,
                format_args!("chassis-stubdom: no log console: {e}\n"),
            );
            rt::hypercall(
                StubOp::CharOut,
                hypervisor_abi::hypercall::CHAR_SINK_DEBUGCON,
                f.as_bytes().as_ptr() as u64,
                f.len() as u64,
            );
        }

        match si.selftest {
            SelfTest::TouchOutside => {
                log::warn!("self-test: reading unmapped {OUTSIDE:#x}");
                // SAFETY: deliberately faults (our #PF handler reports it).
                let v = unsafe { core::ptr::read_volatile(OUTSIDE as *const u8) };
                fatal!("self-test: read of {OUTSIDE:#x} returned {v}");
            }
            SelfTest::TouchPastGuest => {
                let at = si.guest_ram_base + si.guest_ram_size;
                log::warn!("self-test: writing past the guest window at {at:#x}");
                // SAFETY: deliberately outside what the hypervisor backs.
                unsafe { core::ptr::write_volatile(at as *mut u8, 0x5a) };
                fatal!("self-test: write past the guest window at {at:#x} went through");
            }
            _ => {}
        }

        rt::hypercall(StubOp::Ready, 0, 0, 0);

        match si.selftest {
            SelfTest::Hang => {
                log::warn!("self-test: hanging with interrupts off");
                rt::cli();
                loop {
                    core::hint::spin_loop();
                }
            }
            SelfTest::Panic => panic!("self-test: panic after Ready"),
            _ => {}
        }

        serve(&mut server)
    }

    /// The server loop: poll while busy, then sleep on the upcall.
    fn serve(server: &mut Server<Doorbell>) -> ! {
        let mut idle = 0u32;
        let mut idle_since = 0u64;
        let mut next_report = 1u64 << 16;
        rt::sti();
        loop {
            if server.turn() {
                idle = 0;
                continue;
            }
            if idle == 0 {
                idle_since = rt::rdtsc();
            }
            idle += 1;
            if idle < SPIN_TURNS && rt::rdtsc().wrapping_sub(idle_since) < SPIN_TSC {
                core::hint::spin_loop();
                continue;
            }
            idle = 0;
            rt::cli();
            server.pages().ack_events();
            if server.turn() {
                rt::sti();
                continue;
            }
            // Idle: a progress line every power of two from 64 Ki requests (never on
            // the request path).
            if server.stats.requests >= next_report {
                next_report = server.stats.requests.saturating_mul(2);
                let h = HEAP.stats();
                log::info!(
                    "chassis-stubdom: {:?}, heap high water {} KiB, stack {} KiB",
                    server.stats,
                    h.high_water.div_ceil(1024),
                    entry::stack_high_water().div_ceil(1024)
                );
            }
            rt::sti_hlt();
        }
    }
}
