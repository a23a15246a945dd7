//! The guest side of the stub-domain boundary against stub domains written in Rust
//! (threads that serve the shared pages the way `chassis-stubdom` does, through the same
//! doorbell): round trips, the buffered ring, timer expiry and console input through the
//! platform slot, deterministic equivalence with process mode, timeouts, stops, and a
//! hostile stub scribbling over the pages.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chassis_devices::io::Width;
use chassis_devices::machine::{Machine, MachineConfig};
use chassis_devices::platform::{CharSink, DmaError, Platform, PowerRequest, TimerId};
use chassis_devices::profile::QEMU_XEN;
use hypervisor_abi::bufioreq;
use hypervisor_abi::evtchn;
use hypervisor_abi::hypercall::{
    CHAR_SINK_DEBUGCON, SHUTDOWN_POWEROFF, SHUTDOWN_REBOOT, SHUTDOWN_SUSPEND, StubOp,
};
use hypervisor_abi::ioreq::{
    IOREQ_SIZE, IoReq, IoReqType, STATE_BYTE_OFFSET, STATE_IOREQ_READY, STATE_IORESP_READY,
};

use super::link::{StubChannel, StubKick, StubLink};
use super::ops::StubOps;
use super::shared;
use crate::DomainExit;
use crate::device_model::DeviceModel;
use crate::emu::EmuVm;
use crate::emu::clock::GuestClock;
use crate::memory::{GuestMemory, Layout};
use crate::platform::{CharOut, PlatformState, lock};

fn mcfg() -> MachineConfig {
    MachineConfig {
        profile: &QEMU_XEN,
        ram_below_4g: 16 << 20,
        ram_above_4g: 0,
        vcpus: 1,
        serial_ports: 1,
        boot: Default::default(),
    }
}

/// The stub side's `Platform`: everything through the doorbell, as the unikernel does.
struct StubSide<'o, 'r, 'a> {
    ops: &'o StubOps<'r, 'a>,
}

impl StubSide<'_, '_, '_> {
    fn call(&self, op: StubOp, a0: u64, a1: u64, a2: u64) -> i64 {
        self.ops.call(op.raw() as u64, a0, a1, a2)
    }
}

impl Platform for StubSide<'_, '_, '_> {
    fn set_irq(&mut self, gsi: u32, level: bool) {
        self.call(StubOp::SetIsaIrqLevel, gsi as u64, level as u64, 0);
    }
    fn dma_read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        self.ops
            .st
            .mem
            .read(gpa, buf)
            .map_err(|_| DmaError::OutOfRange {
                gpa,
                len: buf.len() as u64,
            })
    }
    fn dma_write(&mut self, gpa: u64, buf: &[u8]) -> Result<(), DmaError> {
        self.ops
            .st
            .mem
            .write(gpa, buf)
            .map_err(|_| DmaError::OutOfRange {
                gpa,
                len: buf.len() as u64,
            })
    }
    fn now_ns(&self) -> u64 {
        self.call(StubOp::Now, 0, 0, 0) as u64
    }
    fn wall_clock_base_ns(&self) -> u64 {
        self.ops.st.clock.wall_clock_base_ns()
    }
    fn set_timer(&mut self, timer: TimerId, deadline_ns: Option<u64>) {
        self.call(
            StubOp::SetTimer,
            timer.index() as u64,
            deadline_ns.unwrap_or(u64::MAX),
            0,
        );
    }
    fn char_out(&mut self, sink: CharSink, bytes: &[u8]) {
        let s = match sink {
            CharSink::Serial(i) => i as u64,
            CharSink::DebugCon => CHAR_SINK_DEBUGCON,
        };
        self.ops.stub_mem.write(0x1000, bytes).unwrap();
        self.call(StubOp::CharOut, s, 0x1000, bytes.len() as u64);
    }
    fn power(&mut self, request: PowerRequest) {
        let r = match request {
            PowerRequest::PowerOff => SHUTDOWN_POWEROFF,
            PowerRequest::Reset => SHUTDOWN_REBOOT,
            PowerRequest::Suspend => SHUTDOWN_SUSPEND,
        };
        self.call(StubOp::Shutdown, r as u64, 0, 0);
    }
}

/// Atomically clear and return a u64 word of the shared area.
fn swap64(p: &shared::SharedPages, off: usize) -> u64 {
    loop {
        let v = p.load(off, 8, Ordering::SeqCst).unwrap_or(0);
        if p.cmpxchg(off, 8, v, 0) == Some(Ok(())) {
            return v;
        }
    }
}

/// Serve one request of `slot` if it is READY.
fn serve_slot(ch: &StubChannel, m: &mut Machine, p: &mut StubSide, slot: u32) {
    let off = slot as usize * IOREQ_SIZE;
    let st = ch
        .pages
        .load(off + STATE_BYTE_OFFSET, 1, Ordering::Acquire)
        .unwrap_or(0) as u8;
    if st & 0xf != STATE_IOREQ_READY {
        return;
    }
    let mut b = [0u8; IOREQ_SIZE];
    ch.pages.read(off, &mut b);
    let r = IoReq::decode(&b);
    let mut data = r.data;
    if let (Ok(ty), Some(w)) = (r.validate(), Width::from_bytes(r.size as u64)) {
        match ty {
            IoReqType::Pio if r.is_read() => data = m.pio_read(p, r.addr as u16, w) as u64,
            IoReqType::Pio => m.pio_write(p, r.addr as u16, w, r.data_masked() as u32),
            IoReqType::Copy if r.is_read() => {
                data = m.mmio_read(p, r.addr, w).unwrap_or(w.mask());
            }
            IoReqType::Copy => {
                m.mmio_write(p, r.addr, w, r.data_masked());
            }
            IoReqType::ChassisTimer => m.on_timer(p, TimerId::ALL[r.addr as usize]),
            IoReqType::ChassisCharIn => {
                let bytes = r.data.to_le_bytes();
                data = m.serial_input(p, r.addr as usize, &bytes[..r.count as usize]) as u64;
            }
            _ => {}
        }
    }
    ch.pages.store(off + 8, 8, data, Ordering::Relaxed);
    ch.pages.store(
        off + STATE_BYTE_OFFSET,
        1,
        ((st & 0xf0) | STATE_IORESP_READY) as u64,
        Ordering::Release,
    );
    p.call(StubOp::IoreqDone, slot as u64, 0, 0);
}

/// A stub domain in Rust: Ready, then on every upcall take the event bits, drain the
/// buffered ring, serve the ready slots; until the domain stops.
fn rust_stub(ch: &StubChannel, st: &PlatformState, stub_mem: &GuestMemory) {
    let mut m = Machine::new(&MachineConfig::decode(&config_bytes(ch)).unwrap());
    let ops = StubOps { ch, st, stub_mem };
    let mut p = StubSide { ops: &ops };
    p.call(StubOp::Ready, 0, 0, 0);
    let ev = shared::EVTCHN;
    while !st.stopping() {
        ch.park_stub(st);
        ch.upcall.store(false, Ordering::SeqCst);
        ch.pages
            .store(ev + evtchn::UPCALL_PENDING_OFFSET, 1, 0, Ordering::SeqCst);
        let sel = swap64(&ch.pages, ev + evtchn::PENDING_SEL_OFFSET);
        for w in 0..16 {
            if sel & (1 << w) != 0 {
                swap64(&ch.pages, ev + evtchn::PENDING_OFFSET + w * 8);
            }
        }
        // Buffered writes first: they precede any synchronous request.
        loop {
            let b = shared::BUFIOREQ;
            let rp = ch.pages.load(b, 4, Ordering::SeqCst).unwrap() as u32;
            let wp = ch.pages.load(b + 4, 4, Ordering::Acquire).unwrap() as u32;
            if rp == wp {
                break;
            }
            let mut page = [0u8; bufioreq::PAGE_SIZE];
            ch.pages.read(b, &mut page);
            let w = bufioreq::dequeue(&mut page).unwrap().unwrap();
            let n = if w.size == 8 { 2 } else { 1 };
            // Atomic add (the producer may canonicalise both pointers meanwhile).
            loop {
                let cur = ch.pages.load(b, 4, Ordering::SeqCst).unwrap();
                if ch
                    .pages
                    .cmpxchg(b, 4, cur, (cur as u32).wrapping_add(n) as u64)
                    == Some(Ok(()))
                {
                    break;
                }
            }
            m.pio_write(
                &mut p,
                w.addr as u16,
                Width::from_bytes(w.size as u64).unwrap(),
                w.data as u32,
            );
        }
        for slot in 0..ch.slots() {
            serve_slot(ch, &mut m, &mut p, slot);
        }
    }
}

fn config_bytes(ch: &StubChannel) -> Vec<u8> {
    let mut b = vec![0u8; 4096];
    ch.pages.read(shared::CONFIG, &mut b);
    // The encoded length is known to the stub from its start info; here, trim zeros
    // by decoding growing prefixes.
    (1..=b.len())
        .find(|&n| MachineConfig::decode(&b[..n]).is_ok())
        .map(|n| b[..n].to_vec())
        .unwrap_or_default()
}

/// Stops the domain when dropped (so a failing assertion does not leave a stub
/// thread serving forever inside a scope).
struct StopOnDrop<'s, 'a>(&'s PlatformState<'a>);
impl Drop for StopOnDrop<'_, '_> {
    fn drop(&mut self) {
        if !self.0.stopping() {
            self.0.finish(Ok(DomainExit::Crashed("test ended".into())));
        }
    }
}

fn channel(nr: u32, timeout: Duration, buffered: bool) -> Arc<StubChannel> {
    let ch = Arc::new(StubChannel::new("t-dm".into(), nr, timeout, buffered));
    ch.pages.write(shared::CONFIG, &mcfg().encode().unwrap());
    ch
}

struct Rig {
    guest: GuestMemory,
    stub: GuestMemory,
    vm: EmuVm,
}

fn rig() -> Rig {
    Rig {
        guest: GuestMemory::new(Layout::from_mib(16).unwrap()).unwrap(),
        stub: GuestMemory::flat(2 << 20).unwrap(),
        vm: EmuVm::new(1),
    }
}

fn state<'a>(r: &'a Rig, clock: GuestClock, com1: CharOut, e9: CharOut) -> PlatformState<'a> {
    PlatformState::with_clock(&r.guest, &*r.vm.irq, com1, e9, clock, Some(&r.vm.written))
}

#[test]
fn round_trips_timers_and_console_input() {
    let r = rig();
    let st = state(&r, GuestClock::host(), CharOut::Null, CharOut::Null);
    let ch = channel(1, Duration::from_secs(5), false);
    st.set_kicks(vec![Arc::new(StubKick(ch.clone()))]);
    let dm = DeviceModel::Stub(StubLink::new(ch.clone()));
    std::thread::scope(|s| {
        s.spawn(|| rust_stub(&ch, &st, &r.stub));
        let _stop = StopOnDrop(&st);
        assert!(ch.wait_ready(&st, Duration::from_secs(5)));
        // CMOS register 0x0e round trip; unclaimed ports read all ones.
        dm.pio_out(&st, 0, 0x70, 1, &[0x0e]);
        dm.pio_out(&st, 0, 0x71, 1, &[0x5a]);
        dm.pio_out(&st, 0, 0x70, 1, &[0x0e]);
        let mut b = [0u8; 1];
        dm.pio_in(&st, 0, 0x71, 1, &mut b);
        assert_eq!(b, [0x5a]);
        let mut w = [0u8; 4];
        dm.pio_in(&st, 0, 0x2e8, 2, &mut w);
        assert_eq!(w, [0xff; 4], "two 16-bit elements");
        // String I/O: one request per element (0xcf8 latches dwords).
        dm.pio_out(&st, 0, 0xcf8, 4, &[0, 0, 0, 0x80, 8, 0, 0, 0x80]);
        let mut x = [0u8; 4];
        dm.pio_in(&st, 0, 0xcf8, 4, &mut x);
        assert_eq!(u32::from_le_bytes(x), 0x8000_0008);
        // MMIO nothing decodes reads all ones.
        let mut m = [0u8; 8];
        dm.mmio_read(&st, 0, 0xdead_0000, &mut m);
        assert_eq!(m, [0xff; 8]);
        // The RTC's periodic timer: armed through SetTimer, fired through the platform
        // slot, raising IRQ 8 through SetIsaIrqLevel.
        dm.pio_out(&st, 0, 0x70, 1, &[0x0a]);
        dm.pio_out(&st, 0, 0x71, 1, &[0x26]);
        dm.pio_out(&st, 0, 0x70, 1, &[0x0b]);
        dm.pio_out(&st, 0, 0x71, 1, &[0x42]);
        // Reading register C clears a periodic flag already latched (register A runs
        // from power-on), which re-arms the timer.
        dm.pio_out(&st, 0, 0x70, 1, &[0x0c]);
        dm.pio_in(&st, 0, 0x71, 1, &mut b);
        let armed = lock(&st.timers).earliest();
        let (id, deadline) = armed.expect("RTC armed");
        while st.now_ns() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
        assert_eq!(id, TimerId::RtcPeriodic);
        dm.on_timer(&st, id);
        // The expiry reached the stub's RTC: register C has the periodic flag, and
        // IRQ 8 went through SetIsaIrqLevel to the PIC.
        dm.pio_out(&st, 0, 0x70, 1, &[0x0c]);
        dm.pio_in(&st, 0, 0x71, 1, &mut b);
        assert_ne!(b[0] & 0x40, 0, "PF");
        assert!(r.vm.irq.interrupt_pending(0));
        // Console input: COM1 takes its FIFO's worth (16 bytes), in 8-byte requests.
        dm.pio_out(&st, 0, 0x3fa, 1, &[0x01]);
        let taken = dm.serial_input(&st, 0, &[b'x'; 40]);
        assert_eq!(taken, 16);
        assert_eq!(dm.serial_input(&st, 7, b"x"), 0);
        assert!(!st.stopping());
        st.finish(Ok(DomainExit::PowerOff));
    });
    assert!(ch.requests.load(Ordering::Relaxed) >= 15);
}

/// Prints the measured cost of one synchronous round trip (host thread stub; the
/// emulated stub adds its own instructions on top).
#[test]
fn round_trip_cost() {
    let r = rig();
    let st = state(&r, GuestClock::host(), CharOut::Null, CharOut::Null);
    let ch = channel(1, Duration::from_secs(5), false);
    st.set_kicks(vec![Arc::new(StubKick(ch.clone()))]);
    let link = StubLink::new(ch.clone());
    std::thread::scope(|s| {
        s.spawn(|| rust_stub(&ch, &st, &r.stub));
        let _stop = StopOnDrop(&st);
        assert!(ch.wait_ready(&st, Duration::from_secs(5)));
        const N: u32 = 20_000;
        let t = Instant::now();
        for _ in 0..N {
            assert_eq!(link.pio_read(&st, 0, 0xcf8, 4), 0);
        }
        let per = t.elapsed() / N;
        eprintln!("stub round trip (host-thread stub, spin then futex): {per:?}");
        st.finish(Ok(DomainExit::PowerOff));
        assert!(per < Duration::from_millis(5), "{per:?}");
    });
}

#[test]
fn buffered_writes_arrive_in_order_and_full_ring_falls_back() {
    let dir = std::env::temp_dir().join(format!("sd-buf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let e9 = dir.join("e9.log");
    let r = rig();
    let st = state(
        &r,
        GuestClock::host(),
        CharOut::Null,
        CharOut::open(&crate::CharTarget::File(e9.clone()), "e9").unwrap(),
    );
    let ch = channel(1, Duration::from_secs(5), true);
    st.set_kicks(vec![Arc::new(StubKick(ch.clone()))]);
    let link = StubLink::new(ch.clone());
    let text: Vec<u8> = (0..2000u32).map(|i| b'a' + (i % 26) as u8).collect();
    std::thread::scope(|s| {
        // The stub starts late: the ring fills (511) and the rest goes synchronously.
        let h = s.spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            rust_stub(&ch, &st, &r.stub)
        });
        let _stop = StopOnDrop(&st);
        for &c in &text[..600] {
            link.pio_write(&st, 0, 0xe9, 1, c as u32);
        }
        assert!(ch.wait_ready(&st, Duration::from_secs(5)));
        for &c in &text[600..] {
            link.pio_write(&st, 0, 0xe9, 1, c as u32);
        }
        // A synchronous request after them drains the ring first.
        assert_eq!(link.pio_read(&st, 0, 0xcf8, 4), 0);
        st.finish(Ok(DomainExit::PowerOff));
        h.join().unwrap();
    });
    let got = std::fs::read(&e9).unwrap();
    assert_eq!(got, text);
    assert!(ch.posted.load(Ordering::Relaxed) >= 511);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_silent_stub_times_out_with_a_clear_stop() {
    let r = rig();
    let st = state(&r, GuestClock::host(), CharOut::Null, CharOut::Null);
    let ch = channel(2, Duration::from_millis(200), false);
    let link = StubLink::new(ch.clone());
    let t = Instant::now();
    assert_eq!(link.mmio_read(&st, 1, 0xfed0_0000, 4), 0xffff_ffff);
    assert!(t.elapsed() >= Duration::from_millis(200));
    assert!(st.stopping());
    assert_eq!(
        st.take_outcome().unwrap().unwrap(),
        DomainExit::Crashed(
            "stub domain 't-dm' did not answer vCPU 1's mmio request within 0.2 s".into()
        )
    );
    // Once stopped, every request returns at once.
    let t = Instant::now();
    assert_eq!(link.pio_read(&st, 0, 0x70, 1), 0xff);
    link.on_timer(&st, TimerId::RtcUpdate);
    assert!(t.elapsed() < Duration::from_millis(50));
    // The platform slot's requests say whose they were.
    let st = state(&r, GuestClock::host(), CharOut::Null, CharOut::Null);
    link.on_timer(&st, TimerId::RtcUpdate);
    assert_eq!(
        st.take_outcome().unwrap().unwrap(),
        DomainExit::Crashed(
            "stub domain 't-dm' did not answer the platform's timer request within 0.2 s".into()
        )
    );
}

#[test]
fn a_stop_wakes_waiters_at_once() {
    let r = rig();
    let st = state(&r, GuestClock::host(), CharOut::Null, CharOut::Null);
    let ch = channel(1, Duration::from_secs(30), false);
    st.set_kicks(vec![Arc::new(StubKick(ch.clone()))]);
    let link = StubLink::new(ch.clone());
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            let t = Instant::now();
            let v = link.pio_read(&st, 0, 0x71, 1);
            (v, t.elapsed())
        });
        std::thread::sleep(Duration::from_millis(100));
        st.finish(Ok(DomainExit::Reset));
        let (v, took) = h.join().unwrap();
        assert_eq!(v, 0xff);
        assert!(took < Duration::from_secs(2), "{took:?}");
    });
    assert_eq!(st.take_outcome().unwrap().unwrap(), DomainExit::Reset);
}

#[test]
fn garbage_from_a_hostile_stub_neither_panics_nor_hangs() {
    let r = rig();
    for round in 0..6u64 {
        let st = state(&r, GuestClock::host(), CharOut::Null, CharOut::Null);
        let ch = channel(2, Duration::from_millis(100), round % 2 == 0);
        st.set_kicks(vec![Arc::new(StubKick(ch.clone()))]);
        let link = StubLink::new(ch.clone());
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            // Scribble over the ioreq, ring and event pages, ring the doorbells.
            s.spawn(|| {
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ round;
                while !done.load(Ordering::SeqCst) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let off = (x % (3 * shared::PAGE as u64)) as usize & !7;
                    // Mostly plausible states, so waiters see answers too.
                    let v = if x & 1 == 0 {
                        (x >> 8) & !(0xffu64 << 48) | (((x >> 60) & 3) << 48)
                    } else {
                        x >> 3
                    };
                    ch.pages.store(off, 8, v, Ordering::SeqCst);
                    ch.ioreq_done((x >> 32) % 4);
                    std::hint::spin_loop();
                }
            });
            let t = Instant::now();
            let mut n = 0;
            while !st.stopping() && t.elapsed() < Duration::from_secs(2) {
                let c = Instant::now();
                match n % 6 {
                    0 => {
                        link.pio_read(&st, 0, 0x71, 1);
                    }
                    1 => link.pio_write(&st, 1, 0xe9, 1, 0x41),
                    2 => {
                        link.mmio_read(&st, 1, 0xfec0_0000, 8);
                    }
                    3 => link.on_timer(&st, TimerId::PmTimerOverflow),
                    4 => {
                        assert!(link.serial_input(&st, 0, b"abcdefghijk") <= 11);
                    }
                    _ => link.mmio_write(&st, 0, 0xa_0000, 2, 0x1234),
                }
                assert!(c.elapsed() < Duration::from_secs(1), "one call hung");
                n += 1;
            }
            done.store(true, Ordering::SeqCst);
        });
        // Whatever happened, it ended in a stop with a stub-domain report, or the
        // scribbles happened to answer everything for 2 s.
        if let Some(Ok(DomainExit::Crashed(m))) = st.take_outcome() {
            assert!(m.starts_with("stub domain 't-dm' "), "{m}");
        }
    }
}

/// Deterministic time: a guest retires exactly the same instructions and prints the same
/// COM1 bytes with its devices in a stub domain as in process mode (guest time is frozen
/// while it waits; all effects are synchronous).
#[test]
fn deterministic_stubdom_matches_process_mode() {
    if !hypervisor_emu::AVAILABLE {
        return;
    }
    // COM1 "KKK", PMBA = 0xb001 + PMIOSE, then poll the ACPI PM timer (0xb008) until
    // it passes 0x40 ticks (each read sees the exact guest time), print 'T', ACPI S5.
    #[rustfmt::skip]
    let payload: &[u8] = &[
        0x66, 0xba, 0xf8, 0x03, 0xb0, 0x4b, 0xee, 0xee, 0xee, // COM1 KKK
        0x66, 0xba, 0xf8, 0x0c, 0xb8, 0x40, 0x0b, 0x00, 0x80, 0xef, // PMBA
        0x66, 0xba, 0xfc, 0x0c, 0xb8, 0x01, 0xb0, 0x00, 0x00, 0xef,
        0x66, 0xba, 0xf8, 0x0c, 0xb8, 0x80, 0x0b, 0x00, 0x80, 0xef, // PMIOSE
        0x66, 0xba, 0xfc, 0x0c, 0xb0, 0x01, 0xee,
        0x66, 0xba, 0x08, 0xb0, //             mov $0xb008,%dx
        0xed, //                            1: in (%dx),%eax
        0x83, 0xf8, 0x40, //                   cmp $0x40,%eax
        0x72, 0xfa, //                         jb 1b
        0x66, 0xba, 0xf8, 0x03, 0xb0, 0x54, 0xee, // COM1 'T'
        0xb0, 0xf1, 0xe6, 0xb2, //             ACPI enable
        0x66, 0xba, 0x04, 0xb0, 0x66, 0xb8, 0x00, 0x20, 0x66, 0xef, // S5
        0x0f, 0x0b,
    ];
    let dir = std::env::temp_dir().join(format!("sd-det-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |stub: bool| -> (u64, u64, Vec<u8>, DomainExit) {
        let r = rig();
        r.guest.write(0x10_0000, payload).unwrap();
        let com1 = dir.join(if stub { "stub.log" } else { "proc.log" });
        let st = state(
            &r,
            GuestClock::deterministic(),
            CharOut::open(&crate::CharTarget::File(com1.clone()), "com1").unwrap(),
            CharOut::Null,
        );
        let ch = channel(1, Duration::from_secs(10), false);
        let dm = if stub {
            DeviceModel::Stub(StubLink::new(ch.clone()))
        } else {
            DeviceModel::Process(Mutex::new(Machine::new(&mcfg())))
        };
        st.set_kicks(vec![r.vm.kicker(), Arc::new(StubKick(ch.clone()))]);
        let mut v = crate::emu::boot::pvh_vcpu(0x10_0000, 0x6000);
        std::thread::scope(|s| {
            if stub {
                s.spawn(|| rust_stub(&ch, &st, &r.stub));
                assert!(ch.wait_ready(&st, Duration::from_secs(5)));
            }
            crate::emu::vcpu::run_vcpu(&st, &dm, &r.vm, 0, &mut v);
        });
        let out = std::fs::read(&com1).unwrap();
        let exit = st.take_outcome().unwrap().unwrap();
        (v.retired(), st.now_ns(), out, exit)
    };
    let p = run(false);
    let s = run(true);
    assert_eq!(p.3, DomainExit::PowerOff);
    assert_eq!(p.2, b"KKKT");
    assert_eq!(s, p, "stub mode differs from process mode");
    assert!(p.0 > 100, "the PM timer loop ran: {p:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Halt polling adapts: a park that an event ended soon after doubles the window (up to
/// the max), a long idle halves it (down to the min).
#[test]
fn stub_halt_poll_window_adapts() {
    use crate::stubdom::link::next_stub_poll;
    let us = Duration::from_micros;
    assert_eq!(next_stub_poll(40, us(60)), 80);
    assert_eq!(next_stub_poll(300, us(350)), 400);
    assert_eq!(next_stub_poll(400, us(100)), 400);
    assert_eq!(next_stub_poll(400, Duration::from_millis(50)), 200);
    assert_eq!(next_stub_poll(10, Duration::from_secs(1)), 10);
    assert_eq!(next_stub_poll(15, Duration::from_secs(1)), 10);
}
