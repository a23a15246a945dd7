//! The ioreq server: the stub domain's hot path.
//!
//! Each [`Server::turn`] drains the buffered ring (posted writes), then scans the ioreq
//! slots: `0..nr_vcpus` are the guest vCPUs', slot `ioreq::platform_slot(nr_vcpus)` is
//! the hypervisor's own (timer expiries, console input). A slot in state
//! `STATE_IOREQ_READY` is copied out once (32 volatile bytes), decoded, validated,
//! marked `INPROCESS`, performed on the [`Machine`], answered (`data` for reads, then
//! the state byte = `IORESP_READY` behind a release fence) and rung
//! ([`StubOp::IoreqDone`]). Nothing here allocates or logs per request; malformed
//! requests are answered (reads with all ones), counted, and logged only the first
//! [`MALFORMED_LOG_LIMIT`] times.
//!
//! Shared memory is reached through raw pointers with volatile/atomic accesses only:
//! the hypervisor writes these pages concurrently, so no Rust reference to them lives
//! across a point where the other side may write. The buffered ring is consumed with
//! `hypervisor_abi::bufioreq::dequeue`'s checks, but through atomics, advancing
//! `read_pointer` with an atomic add ([`SharedPages`]' `ring_take`).

use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering, fence};

use chassis_devices::io::Width;
use chassis_devices::machine::Machine;
use chassis_devices::platform::{Platform, TimerId};
use hypervisor_abi::bufioreq::{self, BufIoReq, BufferedWrite, RingError};
use hypervisor_abi::evtchn;
use hypervisor_abi::hypercall::StubOp;
use hypervisor_abi::ioreq::{
    self, IOREQ_SIZE, IOREQ_TYPE_COPY, IOREQ_TYPE_PIO, IoReq, IoReqError, IoReqType,
    STATE_BYTE_OFFSET, STATE_IOREQ_INPROCESS, STATE_IOREQ_READY, STATE_IORESP_READY,
};

use crate::hypercall::Hypercall;
use crate::platform::StubPlatform;

/// Malformed requests logged before going quiet (they are still counted).
pub const MALFORMED_LOG_LIMIT: u64 = 8;

/// The three shared pages.
#[derive(Clone, Copy, Debug)]
pub struct SharedPages {
    ioreq: *mut u8,
    /// Null when the guest has no buffered ring.
    bufioreq: *mut u8,
    evtchn: *mut u8,
}

impl SharedPages {
    /// # Safety
    /// Each non-null pointer must be a mapped, 4 KiB-aligned, 4 KiB page that stays
    /// valid as long as the value is used. `bufioreq` may be null.
    pub const unsafe fn new(ioreq: *mut u8, bufioreq: *mut u8, evtchn: *mut u8) -> Self {
        SharedPages {
            ioreq,
            bufioreq,
            evtchn,
        }
    }

    /// The slot's state nibble (one volatile byte read).
    #[inline(always)]
    fn state(&self, slot: u32) -> u8 {
        let off = slot as usize * IOREQ_SIZE + STATE_BYTE_OFFSET;
        // SAFETY: slot < SLOTS_PER_PAGE (the server's slot count is checked), so the
        // byte is inside the page.
        unsafe { core::ptr::read_volatile(self.ioreq.add(off)) & 0x0f }
    }

    /// The whole slot, each byte fetched exactly once.
    #[inline(always)]
    fn copy_slot(&self, slot: u32) -> [u8; IOREQ_SIZE] {
        let base = self.ioreq.wrapping_add(slot as usize * IOREQ_SIZE) as *const u64;
        let mut out = [0u8; IOREQ_SIZE];
        for i in 0..IOREQ_SIZE / 8 {
            // SAFETY: in the page, 8-aligned (page and slots are).
            let w = unsafe { core::ptr::read_volatile(base.add(i)) };
            out[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        out
    }

    #[inline(always)]
    fn put_data(&self, slot: u32, data: u64) {
        let p = self.ioreq.wrapping_add(slot as usize * IOREQ_SIZE + 8) as *mut u64;
        // SAFETY: in the page, 8-aligned.
        unsafe { core::ptr::write_volatile(p, data) };
    }

    /// Publish the state byte after everything written before it.
    #[inline(always)]
    fn put_state(&self, slot: u32, byte: u8) {
        fence(Ordering::Release);
        let off = slot as usize * IOREQ_SIZE + STATE_BYTE_OFFSET;
        // SAFETY: in the page.
        unsafe { core::ptr::write_volatile(self.ioreq.add(off), byte) };
    }

    #[inline(always)]
    fn ring_nonempty(&self) -> bool {
        if self.bufioreq.is_null() {
            return false;
        }
        // SAFETY: the pointers are the page's first two u32s.
        let (r, w) = unsafe {
            (
                core::ptr::read_volatile(self.bufioreq as *const u32),
                core::ptr::read_volatile((self.bufioreq as *const u32).add(1)),
            )
        };
        r != w
    }

    /// The ring's pointers as atomics (the page is 4 KiB aligned).
    fn ring_pointer(&self, off: usize) -> &AtomicU32 {
        // SAFETY: offsets 0 and 4 of the (non-null, checked by callers) ring page.
        unsafe { AtomicU32::from_ptr(self.bufioreq.add(off) as *mut u32) }
    }

    fn ring_slot(&self, pointer: u32) -> BufIoReq {
        let off = bufioreq::SLOTS_OFFSET
            + (pointer % bufioreq::IOREQ_BUFFER_SLOT_NUM) as usize * bufioreq::BUF_IOREQ_SIZE;
        // SAFETY: the slot index is reduced mod 511, so the 8 bytes are in the page
        // (8 + 511 * 8 = 4096); 8-aligned.
        let v = unsafe { core::ptr::read_volatile(self.bufioreq.add(off) as *const u64) };
        BufIoReq::decode(&v.to_le_bytes())
    }

    /// Consumer side of the buffered ring: [`bufioreq::take_next`], the step
    /// `bufioreq::dequeue` also takes, except that `read_pointer` is advanced with an
    /// atomic add: the hypervisor folds both pointers back by whole rounds
    /// with one 64-bit compare-and-swap while the stub runs (Xen's atomic mode), and
    /// an add composes with that where a plain store of `read + n` would undo it.
    fn ring_take(&self) -> Result<Option<BufferedWrite>, RingError> {
        if self.bufioreq.is_null() {
            return Ok(None);
        }
        let rp = self.ring_pointer(bufioreq::READ_POINTER_OFFSET);
        // Both pointers in one load: read separately, a fold by the producer between
        // the two loads would pair an unfolded read with a folded write. Acquire: the
        // slots were written before the write pointer (release on the other side).
        // SAFETY: offset 0 of the 4 KiB-aligned ring page holds the two u32 pointers.
        let both =
            unsafe { AtomicU64::from_ptr(self.bufioreq as *mut u64) }.load(Ordering::Acquire);
        let (used, r) =
            bufioreq::take_next(both as u32, (both >> 32) as u32, |p| self.ring_slot(p));
        // Copied out: hand the slots back before acting.
        if used != 0 {
            rp.fetch_add(used, Ordering::Release);
        }
        r
    }

    fn evtchn_word(&self, off: usize) -> &AtomicU64 {
        // SAFETY: off is one of the page's u64 fields (callers pass constants / words
        // below BITMAP_WORDS); the page is 8-aligned and shared only atomically.
        unsafe { AtomicU64::from_ptr(self.evtchn.add(off) as *mut u64) }
    }

    /// Receiver side of the event-channel page: clear `upcall_pending`, take the
    /// selector, clear the pending bits of the selected words. Every port of the stub
    /// means "look at the slots", so which ports fired does not matter.
    pub fn ack_events(&self) {
        if self.evtchn.is_null() {
            return;
        }
        // SAFETY: a byte of the page.
        let up = unsafe { AtomicU8::from_ptr(self.evtchn.add(evtchn::UPCALL_PENDING_OFFSET)) };
        up.store(0, Ordering::SeqCst);
        let mut sel = self
            .evtchn_word(evtchn::PENDING_SEL_OFFSET)
            .swap(0, Ordering::SeqCst);
        while sel != 0 {
            let w = sel.trailing_zeros() as usize;
            sel &= sel - 1;
            if w < evtchn::BITMAP_WORDS {
                self.evtchn_word(evtchn::PENDING_OFFSET + w * 8)
                    .swap(0, Ordering::SeqCst);
            }
        }
    }

    /// Whether the hypervisor flagged events since the last [`SharedPages::ack_events`].
    pub fn upcall_pending(&self) -> bool {
        if self.evtchn.is_null() {
            return false;
        }
        // SAFETY: a byte of the page.
        unsafe { core::ptr::read_volatile(self.evtchn.add(evtchn::UPCALL_PENDING_OFFSET)) != 0 }
    }
}

/// What the server has seen (all counters only grow).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Synchronous requests answered (malformed ones included).
    pub requests: u64,
    /// Buffered writes applied.
    pub buffered: u64,
    /// Requests refused (answered with all ones / nothing).
    pub malformed: u64,
    /// Buffered-ring entries skipped or resynchronisations.
    pub ring_errors: u64,
    /// Rep transfers stopped at a guest address outside guest RAM.
    pub dma_errors: u64,
    /// Request kinds answered without a device (PCI config ioreqs).
    pub unsupported: u64,
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    Invalid(IoReqError),
    /// A chassis-private type in a vCPU's slot.
    PrivateInVcpuSlot,
    /// A vCPU request type in the platform slot.
    VcpuTypeInPlatformSlot,
    /// A timer index with no timer.
    NoSuchTimer(u64),
}

/// All ones of a request's size (what an unanswerable read returns).
fn all_ones(size: u32) -> u64 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

/// The device model's server loop state.
pub struct Server<H: Hypercall> {
    pub machine: Machine,
    pub platform: StubPlatform<H>,
    pages: SharedPages,
    nr_vcpus: u32,
    pub stats: Stats,
    /// Where PM_TMR decodes, as last told to the hypervisor (0 = nowhere).
    pm_timer_port: u16,
}

impl<H: Hypercall> Server<H> {
    /// `nr_vcpus` guest vCPUs (1..=`ioreq::MAX_STUB_VCPUS`; larger values are clamped,
    /// the start info has already refused them).
    pub fn new(
        machine: Machine,
        platform: StubPlatform<H>,
        pages: SharedPages,
        nr_vcpus: u32,
    ) -> Self {
        Server {
            machine,
            platform,
            pages,
            nr_vcpus: nr_vcpus.min(ioreq::MAX_STUB_VCPUS),
            stats: Stats::default(),
            pm_timer_port: 0,
        }
    }

    pub fn pages(&self) -> &SharedPages {
        &self.pages
    }

    /// One pass over the buffered ring and every slot. Returns whether anything was
    /// handled (the caller keeps polling while it is).
    pub fn turn(&mut self) -> bool {
        let mut did = self.drain_buffered();
        let last = ioreq::platform_slot(self.nr_vcpus);
        for slot in 0..=last {
            if self.pages.state(slot) == STATE_IOREQ_READY {
                self.handle(slot);
                did = true;
            }
        }
        did
    }

    /// Apply every posted write queued now. Returns whether there were any.
    #[inline(always)]
    pub fn drain_buffered(&mut self) -> bool {
        // The common case, an empty ring, is two loads and no call.
        self.pages.ring_nonempty() && self.drain_nonempty()
    }

    /// The consumer side of the ring. Both pointers are read as one 64-bit atomic and
    /// `read_pointer` only ever moves by an atomic add: the hypervisor (the producer)
    /// subtracts whole rounds of 511 from both pointers with one 64-bit compare-and-
    /// swap to keep them from wrapping (Xen's atomic buffered-ioreq mode), and a plain
    /// store of our own copy of `read_pointer` would undo that and lose the ring.
    #[inline(never)]
    fn drain_nonempty(&mut self) -> bool {
        let mut handled = 0u64;
        let mut errors = 0u64;
        // At most one ring's worth per call: a producer that keeps adding cannot keep
        // the server here.
        for _ in 0..bufioreq::IOREQ_BUFFER_SLOT_NUM {
            match self.pages.ring_take() {
                Ok(None) => break,
                Ok(Some(w)) => {
                    apply_buffered(&mut self.machine, &mut self.platform, w);
                    handled += 1;
                }
                Err(RingError::BadPointers { .. }) => {
                    errors += 1;
                    break;
                }
                Err(_) => errors += 1,
            }
        }
        if errors != 0 {
            let before = self.stats.ring_errors;
            self.stats.ring_errors += errors;
            if before < MALFORMED_LOG_LIMIT {
                log::warn!("buffered ioreq ring: {errors} bad entries skipped");
            }
        }
        self.stats.buffered += handled;
        handled != 0 || errors != 0
    }

    /// Serve the request in `slot` (whose state was seen READY). Out of line, so the
    /// polling path of [`Server::turn`] stays a few instructions.
    #[inline(never)]
    fn handle(&mut self, slot: u32) {
        // Everything the hypervisor wrote before READY is visible after this.
        fence(Ordering::Acquire);
        let raw = self.pages.copy_slot(slot);
        let flags = raw[STATE_BYTE_OFFSET] & 0xf0;
        let req = IoReq::decode(&raw);
        self.pages.put_state(slot, flags | STATE_IOREQ_INPROCESS);
        // Posted writes queued before this request happen before it.
        self.drain_buffered();
        let data = match self.perform(slot, &req) {
            Ok(d) => d,
            Err(why) => self.malformed(slot, &req, why),
        };
        if let Some(d) = data {
            self.pages.put_data(slot, d);
        }
        if req.dir == ioreq::IOREQ_WRITE {
            self.sync_pm_timer_port();
        }
        self.pages.put_state(slot, flags | STATE_IORESP_READY);
        self.stats.requests += 1;
        self.platform.hc.call(StubOp::IoreqDone, slot as u64, 0, 0);
    }

    /// A write may have moved the PM block (PMBA/PMIOSE in PCI config space): the
    /// hypervisor answers PM_TMR reads itself, so it learns the new port before the
    /// guest can read there (before this request completes).
    fn sync_pm_timer_port(&mut self) {
        let port = self.machine.pm.pm_timer_port().unwrap_or(0);
        if port != self.pm_timer_port {
            self.pm_timer_port = port;
            self.platform
                .hc
                .call(StubOp::SetPmTimerPort, port as u64, 0, 0);
        }
    }

    fn malformed(&mut self, slot: u32, req: &IoReq, why: Malformed) -> Option<u64> {
        self.stats.malformed += 1;
        if self.stats.malformed <= MALFORMED_LOG_LIMIT {
            log::warn!(
                "malformed ioreq in slot {slot} ({why:?}): type {:#x} addr {:#x} size {} count {} dir {}{}",
                req.ty,
                req.addr,
                req.size,
                req.count,
                req.dir,
                if self.stats.malformed == MALFORMED_LOG_LIMIT {
                    " (further ones are counted, not logged)"
                } else {
                    ""
                }
            );
        }
        req.is_read().then(|| all_ones(req.size))
    }

    /// Do the request; `Ok(Some(v))` = write `v` to the slot's data field.
    fn perform(&mut self, slot: u32, req: &IoReq) -> Result<Option<u64>, Malformed> {
        let ty = req.validate().map_err(Malformed::Invalid)?;
        let private = matches!(ty, IoReqType::ChassisTimer | IoReqType::ChassisCharIn);
        let platform_slot = slot == ioreq::platform_slot(self.nr_vcpus);
        if private && !platform_slot {
            return Err(Malformed::PrivateInVcpuSlot);
        }
        if !private && platform_slot {
            return Err(Malformed::VcpuTypeInPlatformSlot);
        }
        // validate() allows only 1/2/4/8 (≤ 4 for PIO).
        let width =
            Width::from_bytes(req.size as u64).ok_or(Malformed::Invalid(IoReqError::BadSize {
                ty: req.ty,
                size: req.size,
            }))?;
        let (m, p) = (&mut self.machine, &mut self.platform);
        Ok(match ty {
            IoReqType::Pio if !req.data_is_ptr => {
                let port = req.addr as u16;
                if req.is_read() {
                    Some(m.pio_read(p, port, width) as u64)
                } else {
                    m.pio_write(p, port, width, req.data_masked() as u32);
                    None
                }
            }
            IoReqType::Copy if !req.data_is_ptr => {
                if req.is_read() {
                    Some(m.mmio_read(p, req.addr, width).unwrap_or(width.mask()))
                } else {
                    m.mmio_write(p, req.addr, width, req.data_masked());
                    None
                }
            }
            IoReqType::Pio | IoReqType::Copy => {
                if !rep_transfer(m, p, req, ty, width) {
                    self.stats.dma_errors += 1;
                }
                None
            }
            IoReqType::PciConfig => {
                // chassis's hypervisor decodes 0xcf8/0xcfc itself as port I/O; a
                // config-space ioreq has no device here.
                self.stats.unsupported += 1;
                req.is_read().then(|| width.mask())
            }
            IoReqType::TimeOffset | IoReqType::Invalidate => None,
            IoReqType::ChassisTimer => {
                let id = *TimerId::ALL
                    .get(req.addr as usize)
                    .ok_or(Malformed::NoSuchTimer(req.addr))?;
                m.on_timer(p, id);
                None
            }
            IoReqType::ChassisCharIn => {
                let bytes = req.data.to_le_bytes();
                let n = (req.count as usize).min(bytes.len());
                let taken = m.serial_input(p, req.addr as usize, &bytes[..n]);
                Some(taken as u64)
            }
        })
    }
}

/// `count` repetitions between the device (`addr`, a port or an MMIO address) and guest
/// memory (`data`, a guest-physical address), each through the bounds-checked window.
/// Returns false when a guest address was outside guest RAM (the rest is dropped, as
/// a DMA error).
fn rep_transfer<H: Hypercall>(
    m: &mut Machine,
    p: &mut StubPlatform<H>,
    req: &IoReq,
    ty: IoReqType,
    width: Width,
) -> bool {
    let size = req.size as usize;
    for i in 0..req.count {
        let Some(gpa) = req.rep_address(req.data, i) else {
            return false;
        };
        let dev = match ty {
            IoReqType::Pio => req.addr,
            _ => match req.rep_address(req.addr, i) {
                Some(a) => a,
                None => return false,
            },
        };
        if req.is_read() {
            let v = match ty {
                IoReqType::Pio => m.pio_read(p, dev as u16, width) as u64,
                _ => m.mmio_read(p, dev, width).unwrap_or(width.mask()),
            };
            if p.dma_write(gpa, &v.to_le_bytes()[..size]).is_err() {
                return false;
            }
        } else {
            let mut b = [0u8; 8];
            if p.dma_read(gpa, &mut b[..size]).is_err() {
                return false;
            }
            let v = u64::from_le_bytes(b);
            match ty {
                IoReqType::Pio => m.pio_write(p, dev as u16, width, v as u32),
                _ => {
                    m.mmio_write(p, dev, width, v);
                }
            }
        }
    }
    true
}

/// A posted write off the ring (`bufioreq::dequeue` has validated it).
fn apply_buffered<H: Hypercall>(m: &mut Machine, p: &mut StubPlatform<H>, w: BufferedWrite) {
    let Some(width) = Width::from_bytes(w.size as u64) else {
        return;
    };
    match w.ty {
        IOREQ_TYPE_PIO => m.pio_write(p, w.addr as u16, width, w.data as u32),
        IOREQ_TYPE_COPY => {
            m.mmio_write(p, w.addr as u64, width, w.data);
        }
        // TIMEOFFSET: nothing to do.
        _ => {}
    }
}

// `Platform` is used through `&mut dyn` by the machine; keep the import visible for
// the trait methods called above.
#[allow(unused)]
fn _assert_platform<H: Hypercall>(p: &mut StubPlatform<H>) -> &mut dyn Platform {
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::GuestWindow;
    use crate::platform::tests::MockHc;
    use chassis_devices::machine::{BootOptions, MachineConfig};
    use chassis_devices::profile;
    use hypervisor_abi::ioreq::{
        IOREQ_READ, IOREQ_TYPE_CHASSIS_CHAR_IN, IOREQ_TYPE_CHASSIS_TIMER, IOREQ_TYPE_INVALIDATE,
        IOREQ_TYPE_PCI_CONFIG, IOREQ_WRITE,
    };
    extern crate std;
    use std::boxed::Box;
    use std::vec;
    use std::vec::Vec;

    #[repr(C, align(4096))]
    struct Page([u8; 4096]);

    struct Rig {
        server: Server<MockHc>,
        ioreq: Box<Page>,
        buf: Box<Page>,
        ev: Box<Page>,
        guest: Vec<u8>,
    }

    const VCPUS: u32 = 2;

    fn rig() -> Rig {
        let mut ioreq = Box::new(Page([0; 4096]));
        let mut buf = Box::new(Page([0; 4096]));
        let mut ev = Box::new(Page([0; 4096]));
        let mut guest = vec![0u8; 0x10000];
        let machine = Machine::new(&MachineConfig {
            profile: profile::by_name("qemu-xen").unwrap(),
            ram_below_4g: 512 << 20,
            ram_above_4g: 0,
            vcpus: VCPUS,
            serial_ports: 1,
            boot: BootOptions::default(),
        });
        // SAFETY: the boxes and the vec live in the rig with the server, and are never
        // moved out of their heap allocations.
        let (pages, window) = unsafe {
            (
                SharedPages::new(ioreq.0.as_mut_ptr(), buf.0.as_mut_ptr(), ev.0.as_mut_ptr()),
                GuestWindow::new(guest.as_mut_ptr(), guest.len() as u64),
            )
        };
        let platform = StubPlatform::new(MockHc::default(), window, 0, u64::MAX);
        Rig {
            server: Server::new(machine, platform, pages, VCPUS),
            ioreq,
            buf,
            ev,
            guest,
        }
    }

    fn pio(port: u64, size: u32, dir: u8, data: u64) -> IoReq {
        IoReq {
            addr: port,
            data,
            count: 1,
            size,
            state: STATE_IOREQ_READY,
            dir,
            ty: IOREQ_TYPE_PIO,
            ..Default::default()
        }
    }

    impl Rig {
        /// Post `req` in `slot`, run one turn, return the slot as answered.
        fn run(&mut self, slot: u32, req: IoReq) -> IoReq {
            assert!(ioreq::write_slot(&mut self.ioreq.0, slot, &req.encode()));
            assert!(self.server.turn());
            let out = IoReq::decode(&ioreq::read_slot(&self.ioreq.0, slot).unwrap());
            assert_eq!(out.state, STATE_IORESP_READY);
            assert_eq!(
                (out.dir, out.df, out.data_is_ptr, out.ty),
                (req.dir, req.df, req.data_is_ptr, req.ty)
            );
            let calls = self.server.platform.hc.take();
            assert_eq!(
                calls.last(),
                Some(&(StubOp::IoreqDone, slot as u64, 0, 0)),
                "{calls:?}"
            );
            out
        }

        fn cfg_read(&mut self, slot: u32, devfn: u8, off: u8) -> u32 {
            let a = 0x8000_0000u64 | (devfn as u64) << 8 | off as u64;
            self.run(slot, pio(0xcf8, 4, IOREQ_WRITE, a));
            self.run(slot, pio(0xcfc, 4, IOREQ_READ, 0)).data as u32
        }
    }

    #[test]
    fn pio_reads_the_chipset() {
        let mut r = rig();
        // i440FX host bridge and PIIX3 ISA bridge IDs, through vCPU 0 and 1's slots.
        assert_eq!(r.cfg_read(0, 0x00, 0), 0x1237_8086);
        assert_eq!(r.cfg_read(1, 0x08, 0), 0x7000_8086);
        // A byte read of the PIIX3's class code (ISA bridge = 06 01 00).
        r.run(0, pio(0xcf8, 4, IOREQ_WRITE, 0x8000_0808));
        assert_eq!(r.run(0, pio(0xcfe, 2, IOREQ_READ, 0)).data, 0x0601);
        // Nothing decodes port 0x1234: open bus, masked to the size.
        assert_eq!(r.run(0, pio(0x1234, 2, IOREQ_READ, 0)).data, 0xffff);
        assert_eq!(r.server.stats.requests, 7);
        assert_eq!(r.server.stats.malformed, 0);
        // Nothing left: a turn with every slot answered does nothing.
        assert!(!r.server.turn());
    }

    #[test]
    fn pm_block_moves_are_told_to_the_hypervisor_before_the_write_completes() {
        let mut r = rig();
        let pm = 0x0b; // 00:01.3, devfn 0x0b
        let cfg = |off: u64| 0x8000_0000u64 | pm << 8 | off;
        // PMBA alone decodes nothing: no call.
        r.run(0, pio(0xcf8, 4, IOREQ_WRITE, cfg(0x40)));
        r.run(0, pio(0xcfc, 4, IOREQ_WRITE, 0xb001));
        // PMIOSE on: PM_TMR at 0xb008, said before IoreqDone.
        r.run(0, pio(0xcf8, 4, IOREQ_WRITE, cfg(0x80)));
        assert!(ioreq::write_slot(
            &mut r.ioreq.0,
            0,
            &pio(0xcfc, 1, IOREQ_WRITE, 1).encode()
        ));
        assert!(r.server.turn());
        assert_eq!(
            r.server.platform.hc.take(),
            [
                (StubOp::SetPmTimerPort, 0xb008, 0, 0),
                (StubOp::IoreqDone, 0, 0, 0)
            ]
        );
        // Off again: port 0.
        r.run(0, pio(0xcf8, 4, IOREQ_WRITE, cfg(0x80)));
        assert!(ioreq::write_slot(
            &mut r.ioreq.0,
            0,
            &pio(0xcfc, 1, IOREQ_WRITE, 0).encode()
        ));
        assert!(r.server.turn());
        assert_eq!(
            r.server.platform.hc.take().first(),
            Some(&(StubOp::SetPmTimerPort, 0, 0, 0))
        );
    }

    #[test]
    fn rtc_reads_time_through_the_doorbell() {
        let mut r = rig();
        r.server.platform.hc.now.set(3_000_000_000);
        r.run(0, pio(0x70, 1, IOREQ_WRITE, 0x00)); // seconds
        let secs = r.run(0, pio(0x71, 1, IOREQ_READ, 0xdead)).data;
        assert!(secs <= 0x59, "BCD seconds {secs:#x}");
    }

    #[test]
    fn malformed_requests_are_answered_and_counted() {
        let mut r = rig();
        let mut bad_size = pio(0x80, 3, IOREQ_READ, 0);
        bad_size.data = 5;
        assert_eq!(r.run(0, bad_size).data, u64::MAX);
        let mut unknown = pio(0x80, 4, IOREQ_READ, 0);
        unknown.ty = 0x55;
        assert_eq!(r.run(1, unknown).data, 0xffff_ffff);
        // A private type in a vCPU's slot.
        let mut timer = pio(2, 1, IOREQ_WRITE, 0);
        timer.ty = IOREQ_TYPE_CHASSIS_TIMER;
        r.run(0, timer);
        // A vCPU type in the platform slot.
        assert_eq!(r.run(VCPUS, pio(0xcfc, 1, IOREQ_READ, 0)).data, 0xff);
        // Port beyond 16 bits, a write: no data written back.
        let big = pio(0x1_0000, 1, IOREQ_WRITE, 0x77);
        assert_eq!(r.run(0, big).data, 0x77);
        // Timer index 3 does not exist.
        let mut t3 = timer;
        t3.addr = 3;
        r.run(VCPUS, t3);
        // PCI config ioreqs are answered, counted as unsupported.
        let mut pci = pio(0x10, 4, IOREQ_READ, 0);
        pci.ty = IOREQ_TYPE_PCI_CONFIG;
        assert_eq!(r.run(0, pci).data, 0xffff_ffff);
        assert_eq!(r.server.stats.malformed, 6);
        assert_eq!(r.server.stats.unsupported, 1);
        // The machine still works.
        assert_eq!(r.cfg_read(0, 0x00, 0), 0x1237_8086);
    }

    #[test]
    fn random_slots_never_panic() {
        let mut r = rig();
        let mut s = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for i in 0..3000 {
            let mut raw = [0u8; IOREQ_SIZE];
            for c in raw.chunks_mut(8) {
                c.copy_from_slice(&next().to_le_bytes());
            }
            // Keep it READY, and mostly plausible.
            raw[30] = (raw[30] & 0xf0) | STATE_IOREQ_READY;
            if i % 2 == 0 {
                raw[31] = [0, 1, 2, 7, 8, 0x80, 0x81][(next() % 7) as usize];
                raw[20..24].copy_from_slice(&(1u32 << (next() % 4)).to_le_bytes());
                raw[16..20].copy_from_slice(&((next() % 9) as u32).to_le_bytes());
                if next() % 2 == 0 {
                    raw[0..8].copy_from_slice(&(next() % 0x20000).to_le_bytes());
                    raw[8..16].copy_from_slice(&(next() % 0x20000).to_le_bytes());
                }
            }
            let slot = (next() % (VCPUS as u64 + 1)) as u32;
            assert!(ioreq::write_slot(&mut r.ioreq.0, slot, &raw));
            r.server.turn();
            assert_eq!(
                ioreq::slot_state(&r.ioreq.0, slot),
                Some(STATE_IORESP_READY)
            );
        }
        assert_eq!(r.server.stats.requests, 3000);
    }

    #[test]
    fn platform_slot_timer_and_char_in() {
        let mut r = rig();
        let mut t = pio(TimerId::PmTimerOverflow.index() as u64, 1, IOREQ_WRITE, 0);
        t.ty = IOREQ_TYPE_CHASSIS_TIMER;
        r.run(VCPUS, t);
        let mut c = pio(0, 1, IOREQ_WRITE, u64::from_le_bytes(*b"hi\0\0\0\0\0\0"));
        c.ty = IOREQ_TYPE_CHASSIS_CHAR_IN;
        c.count = 2;
        assert_eq!(r.run(VCPUS, c).data, 1, "COM1 without FIFO holds one byte");
        // COM1's receive buffer register now holds 'h' (DLAB clear after reset).
        assert_eq!(r.run(0, pio(0x3f8, 1, IOREQ_READ, 0)).data, b'h' as u64);
        // UART 1 does not exist (serial_ports = 1): nothing taken.
        c.addr = 1;
        assert_eq!(r.run(VCPUS, c).data, 0);
        assert_eq!(r.server.stats.malformed, 0);
    }

    #[test]
    fn time_offset_and_invalidate_are_just_answered() {
        let mut r = rig();
        let mut inv = pio(0, 1, IOREQ_WRITE, 9);
        inv.ty = IOREQ_TYPE_INVALIDATE;
        assert_eq!(r.run(1, inv).data, 9);
        assert_eq!(r.server.stats.malformed, 0);
    }

    #[test]
    fn rep_pio_moves_through_the_window() {
        let mut r = rig();
        r.run(0, pio(0xcf8, 4, IOREQ_WRITE, 0x8000_0000));
        // rep insd, 2 × 4 bytes to guest 0x100.
        let mut ins = pio(0xcfc, 4, IOREQ_READ, 0x100);
        ins.data_is_ptr = true;
        ins.count = 2;
        r.run(0, ins);
        assert_eq!(
            &r.guest[0x100..0x108],
            &[0x86, 0x80, 0x37, 0x12, 0x86, 0x80, 0x37, 0x12]
        );
        // Backwards (df) from 0x204.
        ins.df = true;
        ins.data = 0x204;
        r.run(0, ins);
        assert_eq!(
            &r.guest[0x200..0x208],
            &[0x86, 0x80, 0x37, 0x12, 0x86, 0x80, 0x37, 0x12]
        );
        // rep outsd from guest memory to 0xcf8 (last write wins: PIIX3 vendor/device).
        r.guest[0x300..0x304].copy_from_slice(&0x8000_0000u32.to_le_bytes());
        r.guest[0x304..0x308].copy_from_slice(&0x8000_0800u32.to_le_bytes());
        let mut outs = pio(0xcf8, 4, IOREQ_WRITE, 0x300);
        outs.data_is_ptr = true;
        outs.count = 2;
        r.run(0, outs);
        assert_eq!(r.run(0, pio(0xcfc, 4, IOREQ_READ, 0)).data, 0x7000_8086);
        // Running off the end of guest RAM stops the transfer, answers normally.
        ins.df = false;
        ins.data = r.guest.len() as u64 - 4;
        r.run(0, ins);
        assert_eq!(r.server.stats.dma_errors, 1);
        assert_eq!(r.server.stats.malformed, 0);
    }

    #[test]
    fn mmio_nothing_decodes_reads_all_ones() {
        let mut r = rig();
        let mut rd = pio(0xfeb0_0000, 8, IOREQ_READ, 0);
        rd.ty = IOREQ_TYPE_COPY;
        assert_eq!(r.run(0, rd).data, u64::MAX);
        rd.size = 2;
        assert_eq!(r.run(0, rd).data, 0xffff);
        let mut wr = rd;
        wr.dir = IOREQ_WRITE;
        r.run(0, wr);
        // rep movs from an undecoded MMIO range into guest memory: all ones.
        let mut movs = rd;
        movs.data_is_ptr = true;
        movs.count = 3;
        movs.data = 0x40;
        r.run(0, movs);
        assert_eq!(&r.guest[0x40..0x46], &[0xff; 6]);
        assert_eq!(r.server.stats.malformed, 0);
    }

    fn post(r: &mut Rig, port: u64, size: u32, data: u64) {
        let req = pio(port, size, IOREQ_WRITE, data);
        bufioreq::enqueue(&mut r.buf.0, &req).unwrap();
    }

    #[test]
    fn buffered_writes_apply_before_the_next_request() {
        let mut r = rig();
        // The address latch is set through the ring, the data read synchronously: the
        // ring must be drained first.
        post(&mut r, 0xcf8, 4, 0x8000_0800);
        assert_eq!(r.run(0, pio(0xcfc, 4, IOREQ_READ, 0)).data, 0x7000_8086);
        assert_eq!(r.server.stats.buffered, 1);
        // Posted on its own: a turn drains it.
        post(&mut r, 0xcf8, 4, 0x8000_0000);
        assert!(r.server.turn());
        assert_eq!(r.server.stats.buffered, 2);
        assert!(!r.server.turn());
        assert_eq!(r.run(0, pio(0xcfc, 4, IOREQ_READ, 0)).data, 0x1237_8086);
        // No hypercall for buffered writes.
        assert!(r.server.platform.hc.take().is_empty());
    }

    #[test]
    fn corrupt_ring_is_reset_not_fatal() {
        let mut r = rig();
        // write_pointer far ahead of read_pointer: garbage.
        r.buf.0[4..8].copy_from_slice(&5000u32.to_le_bytes());
        assert!(r.server.turn());
        assert_eq!(r.server.stats.ring_errors, 1);
        assert_eq!(
            bufioreq::read_pointer(&r.buf.0),
            bufioreq::write_pointer(&r.buf.0)
        );
        // The producer folds the pointers back (the consumer only ever adds).
        bufioreq::canonicalize(&mut r.buf.0);
        assert!(bufioreq::read_pointer(&r.buf.0) < bufioreq::IOREQ_BUFFER_SLOT_NUM);
        // A read on the ring (not a write) is skipped.
        let mut slot = bufioreq::BufIoReq {
            ty: IOREQ_TYPE_PIO,
            dir: IOREQ_READ,
            size_code: 0,
            addr: 0x80,
            ..Default::default()
        }
        .encode();
        let w = bufioreq::write_pointer(&r.buf.0);
        let off = 8 + (w % 511) as usize * 8;
        r.buf.0[off..off + 8].copy_from_slice(&slot);
        r.buf.0[4..8].copy_from_slice(&(w + 1).to_le_bytes());
        r.server.turn();
        assert_eq!(r.server.stats.ring_errors, 2);
        // And the ring works afterwards.
        slot.fill(0);
        post(&mut r, 0xcf8, 4, 0x8000_0800);
        assert_eq!(r.run(0, pio(0xcfc, 4, IOREQ_READ, 0)).data, 0x7000_8086);
    }

    /// The server on one thread, a producer on another, as across the domain boundary:
    /// the producer writes the slot, publishes READY with release, polls for
    /// IORESP_READY with acquire and reads the answer; buffered writes interleave.
    #[test]
    fn concurrent_producer() {
        use core::sync::atomic::{AtomicBool, AtomicU8};
        use std::sync::Arc;
        struct SendRig(Rig);
        // SAFETY: the rig's pages are shared with the producer only through atomics and
        // the slot protocol; the server itself is used by one thread.
        unsafe impl Send for SendRig {}
        let mut r = rig();
        let ioreq = r.ioreq.0.as_mut_ptr() as usize;
        let buf = r.buf.0.as_mut_ptr() as usize;
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let mut rig = SendRig(r);
        let server = std::thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                if !rig.0.server.turn() {
                    // Two spinning threads on a loaded host: let the other one run.
                    std::thread::yield_now();
                }
            }
            rig
        });
        let state = |slot: usize| {
            // SAFETY: the state byte of a slot in the page, shared atomically.
            unsafe { AtomicU8::from_ptr((ioreq + slot * 32 + STATE_BYTE_OFFSET) as *mut u8) }
        };
        for i in 0..2000u64 {
            let devfn = if i % 2 == 0 { 0 } else { 0x08 };
            // Latch through the ring, read synchronously.
            let w = pio(0xcf8, 4, IOREQ_WRITE, 0x8000_0000 | devfn << 8);
            // SAFETY: the ring page; the consumer only moves read_pointer.
            let page = unsafe { &mut *(buf as *mut [u8; 4096]) };
            while bufioreq::enqueue(page, &w).is_err() {
                std::thread::yield_now();
            }
            fence(Ordering::Release);
            let mut req = pio(0xcfc, 4, IOREQ_READ, 0).encode();
            req[STATE_BYTE_OFFSET] = 0;
            // SAFETY: slot 0 of the ioreq page; the server does not touch it while the
            // state is not READY.
            unsafe {
                core::ptr::copy_nonoverlapping(req.as_ptr(), ioreq as *mut u8, 30);
                core::ptr::write_volatile((ioreq + 31) as *mut u8, req[31]);
            }
            state(0).store(STATE_IOREQ_READY | 1 << 5, Ordering::Release);
            while state(0).load(Ordering::Acquire) & 0xf != STATE_IORESP_READY {
                std::thread::yield_now();
            }
            // SAFETY: the answer's data field, written before IORESP_READY.
            let data = unsafe { core::ptr::read_volatile((ioreq + 8) as *const u64) };
            let want = if devfn == 0 { 0x1237_8086 } else { 0x7000_8086 };
            assert_eq!(data, want, "request {i}");
            state(0).store(0, Ordering::Relaxed);
        }
        stop.store(true, Ordering::Relaxed);
        let rig = server.join().unwrap();
        assert_eq!(rig.0.server.stats.requests, 2000);
        assert_eq!(rig.0.server.stats.buffered, 2000);
        assert_eq!(rig.0.server.stats.malformed, 0);
    }

    #[test]
    fn ring_pointers_far_from_zero_and_folded_between_takes() {
        let mut r = rig();
        // Pointers two rounds in: slot 3 holds the entry.
        let base = 2 * bufioreq::IOREQ_BUFFER_SLOT_NUM + 3;
        r.buf.0[0..4].copy_from_slice(&base.to_le_bytes());
        r.buf.0[4..8].copy_from_slice(&base.to_le_bytes());
        post(&mut r, 0xcf8, 4, 0x8000_0800);
        post(&mut r, 0x80, 1, 0x55);
        // The producer canonicalises between the consumer's takes: the consumer's
        // atomic add keeps read and write consistent.
        assert!(r.server.pages().ring_take().unwrap().is_some());
        bufioreq::canonicalize(&mut r.buf.0);
        assert_eq!(bufioreq::read_pointer(&r.buf.0), 4);
        assert!(r.server.pages().ring_take().unwrap().is_some());
        assert_eq!(bufioreq::read_pointer(&r.buf.0), 5);
        assert_eq!(bufioreq::write_pointer(&r.buf.0), 5);
        assert_eq!(r.server.pages().ring_take(), Ok(None));
        // An 8-byte write takes two slots, wrapping the ring's end.
        let end = bufioreq::IOREQ_BUFFER_SLOT_NUM - 1;
        r.buf.0[0..4].copy_from_slice(&end.to_le_bytes());
        r.buf.0[4..8].copy_from_slice(&end.to_le_bytes());
        let mut q = pio(0xa_0000, 8, IOREQ_WRITE, 0x1122_3344_5566_7788);
        q.ty = IOREQ_TYPE_COPY;
        bufioreq::enqueue(&mut r.buf.0, &q).unwrap();
        let w = r.server.pages().ring_take().unwrap().unwrap();
        assert_eq!((w.size, w.data), (8, 0x1122_3344_5566_7788));
        assert_eq!(bufioreq::read_pointer(&r.buf.0), end + 2);
    }

    #[test]
    fn events_are_acknowledged() {
        let r = rig();
        let mut ev = r.ev;
        for port in [3u32, 70, 1000] {
            evtchn::set_pending(&mut ev.0, port).unwrap();
        }
        // SAFETY: the page is ours.
        let pages = unsafe {
            SharedPages::new(
                r.ioreq.0.as_ptr() as *mut u8,
                core::ptr::null_mut(),
                ev.0.as_mut_ptr(),
            )
        };
        assert!(pages.upcall_pending());
        pages.ack_events();
        assert!(!pages.upcall_pending());
        assert!(ev.0.iter().all(|&b| b == 0));
        // Delivered again after the ack (the sender sees the bit clear).
        assert!(evtchn::set_pending(&mut ev.0, 3).unwrap());
    }
}
