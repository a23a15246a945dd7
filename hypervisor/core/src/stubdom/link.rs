//! The guest side of the stub-domain boundary: guest accesses, timer expiries and
//! console input become ioreqs in the shared page, the stub domain is signalled through
//! its event-channel page and woken, and the caller waits for the answer.
//!
//! Ports (fixed by this hypervisor, told to the stub in its start info): vCPU `i`'s ioreq
//! port is `1 + i`, the buffered ring's is `nr_vcpus + 1`, the platform slot's is
//! `nr_vcpus + 2`.
//!
//! Send: every byte of the slot but the state byte, then the state byte (READY) with
//! release; then the port's pending bit, its selector bit and `upcall_pending` (atomics,
//! in that order); then the host-side upcall line, and a futex wake if the stub's CPU is
//! parked in HLT. Wait: spin on the state byte (acquire) for [`SPIN`], poll it with
//! yields up to 2 ms (the emulated stub needs tens of µs per request), then park on the
//! slot's doorbell (bumped by `StubOp::IoreqDone`) in short timed waits, until
//! IORESP_READY, a stop of the domain (the access then reads all ones) or the response
//! timeout (which stops the domain with a report). On IORESP_READY the slot is copied
//! out once, only `data` is used (masked to the access size), and the state goes back to
//! NONE. The stub is not trusted beyond that: any other state it writes is waited out,
//! an invalid one stops the domain.
//!
//! Buffered writes (host time only): guest writes to the debug console (0xe9) and the
//! POST port (0x80) are posted to the buffered ring and not waited for; a full ring
//! falls back to a synchronous request. In deterministic mode every access is
//! synchronous, so the guest's instruction stream cannot depend on when the stub thread
//! runs.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chassis_devices::platform::TimerId;
use hypervisor_abi::bufioreq;
use hypervisor_abi::evtchn;
use hypervisor_abi::ioreq::{
    IOREQ_READ, IOREQ_SIZE, IOREQ_TYPE_CHASSIS_CHAR_IN, IOREQ_TYPE_CHASSIS_TIMER, IOREQ_TYPE_COPY,
    IOREQ_TYPE_PIO, IOREQ_WRITE, IoReq, STATE_BYTE_OFFSET, STATE_IOREQ_NONE, STATE_IOREQ_READY,
    STATE_IORESP_READY, platform_slot,
};

use crate::DomainExit;
use crate::backend::Kick;
use crate::platform::{PlatformState, lock};
use crate::stubdom::shared::{self, SharedPages, futex_wait, futex_wake};

/// How long a waiter spins on the state byte before parking (`CHASSIS_STUB_SPIN_US`
/// overrides it, for tuning).
pub const SPIN: Duration = Duration::from_micros(40);
fn spin_limit() -> Duration {
    static S: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *S.get_or_init(|| {
        std::env::var("CHASSIS_STUB_SPIN_US")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_micros)
            .unwrap_or(SPIN)
    })
}

/// How long a waiter keeps polling (yielding the core between looks) before parking.
const BUSY_POLL: Duration = Duration::from_millis(2);

/// A halted stub CPU is polled natively before its thread parks, like KVM's halt
/// polling: the window starts at [`SPIN`], doubles (up to the max) whenever the stub
/// had to park but was woken within the max, because a longer poll would have caught
/// that event without a futex round trip, and halves (down to the min) after a long
/// idle period, so an idle stub does not keep a core busy.
const STUB_POLL_MIN_US: u32 = 10;
const STUB_POLL_MAX_US: u32 = 400;

/// The next halt-poll window after a halt that the window `poll_us` did not catch and
/// that waited `waited` in all.
pub(crate) fn next_stub_poll(poll_us: u32, waited: Duration) -> u32 {
    if waited < Duration::from_micros(u64::from(STUB_POLL_MAX_US)) {
        poll_us.saturating_mul(2).min(STUB_POLL_MAX_US)
    } else {
        (poll_us / 2).max(STUB_POLL_MIN_US)
    }
}

/// Longest single park (the waiter re-checks stop and timeout after each).
const PARK_SLICE: Duration = Duration::from_millis(20);

/// Ports of the fixed allocation.
pub fn ioreq_port(vcpu: u32) -> u32 {
    1 + vcpu
}
pub fn bufioreq_port(nr_vcpus: u32) -> u32 {
    nr_vcpus + 1
}
pub fn platform_port(nr_vcpus: u32) -> u32 {
    nr_vcpus + 2
}

/// Who is waiting, for reports.
#[derive(Clone, Copy, Debug)]
enum Who {
    Vcpu(u32, &'static str),
    Platform(&'static str),
}

impl std::fmt::Display for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Who::Vcpu(n, what) => write!(f, "vCPU {n}'s {what} request"),
            Who::Platform(what) => write!(f, "the platform's {what} request"),
        }
    }
}

/// What both sides of one stub domain share: the pages, the doorbells, the counters.
pub struct StubChannel {
    /// The stub domain's name (`<guest>-dm`).
    pub name: String,
    pub pages: SharedPages,
    pub nr_vcpus: u32,
    pub response_timeout: Duration,
    /// Post 0xe9/0x80 writes to the buffered ring (host time only).
    pub buffered: bool,
    /// Bumped whenever the stub is signalled (its CPU parks on it in HLT).
    event_seq: AtomicU32,
    /// The upcall line: raised by a signal, taken by the stub CPU's interrupt
    /// acknowledge.
    pub upcall: AtomicBool,
    /// The stub's CPU is parked (a signal must wake it).
    stub_parked: AtomicBool,
    /// The stub's current halt-poll window in µs ([`next_stub_poll`]).
    stub_poll_us: AtomicU32,
    /// Per slot (vCPUs, then the platform slot): bumped by `IoreqDone`.
    done: Box<[AtomicU32]>,
    /// The platform slot has one user at a time (timer thread, console thread,
    /// deterministic vCPU 0).
    platform: Mutex<()>,
    /// One producer at a time on the buffered ring.
    ring: Mutex<()>,
    /// 1 once the stub said `Ready`.
    ready: AtomicU32,
    /// Synchronous requests answered.
    pub requests: AtomicU64,
    /// Writes posted to the buffered ring.
    pub posted: AtomicU64,
    /// Where the guest's PM_TMR decodes (0 = nowhere), as the stub last said
    /// (`StubOp::SetPmTimerPort`): reads of it are answered here.
    pub pm_timer_port: AtomicU32,
    /// PM_TMR reads answered here.
    pub pm_timer_reads: AtomicU64,
}

impl StubChannel {
    pub fn new(
        name: String,
        nr_vcpus: u32,
        response_timeout: Duration,
        buffered: bool,
    ) -> StubChannel {
        StubChannel {
            name,
            pages: SharedPages::new(),
            nr_vcpus,
            response_timeout,
            buffered,
            event_seq: AtomicU32::new(0),
            upcall: AtomicBool::new(false),
            stub_parked: AtomicBool::new(false),
            stub_poll_us: AtomicU32::new(SPIN.as_micros() as u32),
            done: (0..=nr_vcpus).map(|_| AtomicU32::new(0)).collect(),
            platform: Mutex::new(()),
            ring: Mutex::new(()),
            ready: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            posted: AtomicU64::new(0),
            pm_timer_port: AtomicU32::new(0),
            pm_timer_reads: AtomicU64::new(0),
        }
    }

    /// Number of ioreq slots in use (vCPUs + the platform slot).
    pub fn slots(&self) -> u32 {
        self.nr_vcpus + 1
    }

    /// Raise the upcall line and wake the stub's CPU if parked.
    pub fn raise_upcall(&self) {
        self.upcall.store(true, Ordering::SeqCst);
        self.event_seq.fetch_add(1, Ordering::SeqCst);
        if self.stub_parked.load(Ordering::SeqCst) {
            futex_wake(&self.event_seq);
        }
    }

    /// Signal `port`: pending bit, selector, `upcall_pending`, then the upcall (unless
    /// the stub masked the port: then the event only latches).
    pub fn signal(&self, port: u32) {
        if !evtchn::valid_port(port) {
            return;
        }
        let word = (port / 64) as usize;
        let bit = 1u64 << (port % 64);
        let p = &self.pages;
        p.fetch_or64(shared::EVTCHN + evtchn::PENDING_OFFSET + word * 8, bit);
        let mask = p
            .load(
                shared::EVTCHN + evtchn::MASK_OFFSET + word * 8,
                8,
                Ordering::SeqCst,
            )
            .unwrap_or(0);
        if mask & bit != 0 {
            return;
        }
        p.fetch_or64(shared::EVTCHN + evtchn::PENDING_SEL_OFFSET, 1 << word);
        p.store(
            shared::EVTCHN + evtchn::UPCALL_PENDING_OFFSET,
            1,
            1,
            Ordering::SeqCst,
        );
        self.raise_upcall();
    }

    /// Stub side: `IoreqDone(slot)`. False for a slot that does not exist.
    pub fn ioreq_done(&self, slot: u64) -> bool {
        match self.done.get(slot as usize) {
            Some(d) if slot < self.slots() as u64 => {
                d.fetch_add(1, Ordering::SeqCst);
                futex_wake(d);
                true
            }
            _ => false,
        }
    }

    /// Stub side: `Ready`.
    pub fn set_ready(&self) {
        self.ready.store(1, Ordering::SeqCst);
        futex_wake(&self.ready);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) != 0
    }

    /// Wait for `Ready`; false on a stop of the domain or after `timeout`.
    pub fn wait_ready(&self, st: &PlatformState, timeout: Duration) -> bool {
        let t0 = Instant::now();
        loop {
            if self.is_ready() {
                return true;
            }
            if st.stopping() {
                return false;
            }
            let left = timeout.saturating_sub(t0.elapsed());
            if left.is_zero() {
                return false;
            }
            futex_wait(&self.ready, 0, left.min(PARK_SLICE));
        }
    }

    /// Stub side: park the stub's CPU (HLT) until the upcall is raised or the domain
    /// stops. Spins briefly first (a request usually follows a response closely).
    pub fn park_stub(&self, st: &PlatformState) {
        let t0 = Instant::now();
        let poll_us = self.stub_poll_us.load(Ordering::Relaxed);
        let poll = Duration::from_micros(u64::from(poll_us));
        while t0.elapsed() < poll {
            if self.upcall.load(Ordering::SeqCst) || st.stopping() {
                return;
            }
            std::hint::spin_loop();
        }
        self.park_stub_thread(st);
        self.stub_poll_us
            .store(next_stub_poll(poll_us, t0.elapsed()), Ordering::Relaxed);
    }

    fn park_stub_thread(&self, st: &PlatformState) {
        self.stub_parked.store(true, Ordering::SeqCst);
        loop {
            let seq = self.event_seq.load(Ordering::SeqCst);
            if self.upcall.load(Ordering::SeqCst) || st.stopping() {
                break;
            }
            futex_wait(&self.event_seq, seq, Duration::from_millis(100));
        }
        self.stub_parked.store(false, Ordering::SeqCst);
    }

    /// Wake everyone parked on this channel (a stop of the domain).
    pub fn wake_all(&self) {
        self.event_seq.fetch_add(1, Ordering::SeqCst);
        futex_wake(&self.event_seq);
        for d in self.done.iter() {
            d.fetch_add(1, Ordering::SeqCst);
            futex_wake(d);
        }
        futex_wake(&self.ready);
    }

    /// Write `req` into `slot` (state byte last, release) and signal `port`.
    fn post(&self, slot: u32, req: &IoReq, port: u32) {
        let b = req.encode();
        let off = slot as usize * IOREQ_SIZE;
        let p = &self.pages;
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
        p.store(off, 8, u64_at(0), Ordering::Relaxed);
        p.store(off + 8, 8, u64_at(8), Ordering::Relaxed);
        p.store(off + 16, 8, u64_at(16), Ordering::Relaxed);
        p.store(
            off + 24,
            4,
            u32::from_le_bytes([b[24], b[25], b[26], b[27]]) as u64,
            Ordering::Relaxed,
        );
        p.store(
            off + 28,
            2,
            u16::from_le_bytes([b[28], b[29]]) as u64,
            Ordering::Relaxed,
        );
        p.store(off + 31, 1, b[31] as u64, Ordering::Relaxed);
        p.store(
            off + STATE_BYTE_OFFSET,
            1,
            b[STATE_BYTE_OFFSET] as u64,
            Ordering::Release,
        );
        self.signal(port);
    }

    fn state(&self, slot: u32) -> u8 {
        let off = slot as usize * IOREQ_SIZE + STATE_BYTE_OFFSET;
        (self.pages.load(off, 1, Ordering::Acquire).unwrap_or(0) as u8) & 0x0f
    }

    /// Copy the slot out once, free it, return its `data`.
    fn take(&self, slot: u32) -> u64 {
        let off = slot as usize * IOREQ_SIZE;
        let mut b = [0u8; IOREQ_SIZE];
        for i in 0..4 {
            let w = self
                .pages
                .load(off + i * 8, 8, Ordering::Relaxed)
                .unwrap_or(0);
            b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        self.pages.store(
            off + STATE_BYTE_OFFSET,
            1,
            STATE_IOREQ_NONE as u64,
            Ordering::Release,
        );
        self.requests.fetch_add(1, Ordering::Relaxed);
        IoReq::decode(&b).data
    }

    /// Send `req` in `slot` and wait for the answer: `Some(data)`, or `None` when the
    /// domain stopped (or stops now: timeout, invalid state).
    fn call(&self, st: &PlatformState, slot: u32, port: u32, req: IoReq, who: Who) -> Option<u64> {
        if st.stopping() {
            return None;
        }
        self.post(slot, &req, port);
        let t0 = Instant::now();
        let mut spins = 0u32;
        loop {
            match self.state(slot) {
                STATE_IORESP_READY => return Some(self.take(slot)),
                s if s > STATE_IORESP_READY => return self.bad_state(st, s, who),
                _ => {}
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) {
                if st.stopping() {
                    return None;
                }
                let waited = t0.elapsed();
                if waited >= spin_limit() {
                    // The stub's CPU is working on it (or being woken for it): keep
                    // polling but give the core away between looks; parking would add
                    // a wake-up to every slow answer.
                    if waited >= BUSY_POLL {
                        break;
                    }
                    std::thread::yield_now();
                    continue;
                }
            }
            std::hint::spin_loop();
        }
        let doorbell = &self.done[slot as usize];
        loop {
            let seq = doorbell.load(Ordering::SeqCst);
            match self.state(slot) {
                STATE_IORESP_READY => return Some(self.take(slot)),
                s if s > STATE_IORESP_READY => return self.bad_state(st, s, who),
                _ => {}
            }
            if st.stopping() {
                return None;
            }
            let waited = t0.elapsed();
            if waited >= self.response_timeout {
                st.finish(Ok(DomainExit::Crashed(format!(
                    "stub domain '{}' did not answer {who} within {} s",
                    self.name,
                    self.response_timeout.as_secs_f64()
                ))));
                return None;
            }
            futex_wait(
                doorbell,
                seq,
                (self.response_timeout - waited).min(PARK_SLICE),
            );
        }
    }

    fn bad_state(&self, st: &PlatformState, s: u8, who: Who) -> Option<u64> {
        st.finish(Ok(DomainExit::Crashed(format!(
            "stub domain '{}' put an invalid state ({s}) into the ioreq slot of {who}",
            self.name
        ))));
        None
    }

    /// Post a write to the buffered ring. False: not eligible, or no room.
    fn post_buffered(&self, req: &IoReq) -> bool {
        if !bufioreq::eligible(req) {
            return false;
        }
        let _g = lock(&self.ring);
        let p = &self.pages;
        let b = shared::BUFIOREQ;
        let read = p
            .load(b + bufioreq::READ_POINTER_OFFSET, 4, Ordering::Acquire)
            .unwrap_or(0) as u32;
        let write = p
            .load(b + bufioreq::WRITE_POINTER_OFFSET, 4, Ordering::Relaxed)
            .unwrap_or(0) as u32;
        let qw = req.size == 8;
        if write.wrapping_sub(read) >= bufioreq::IOREQ_BUFFER_SLOT_NUM - qw as u32 {
            return false;
        }
        let mut slot = bufioreq::BufIoReq {
            ty: req.ty,
            pad: false,
            dir: IOREQ_WRITE,
            size_code: req.size.trailing_zeros() as u8,
            addr: req.addr as u32,
            data: req.data as u32,
        };
        let slot_off = |ptr: u32| {
            b + bufioreq::SLOTS_OFFSET
                + (ptr % bufioreq::IOREQ_BUFFER_SLOT_NUM) as usize * bufioreq::BUF_IOREQ_SIZE
        };
        p.store(
            slot_off(write),
            8,
            u64::from_le_bytes(slot.encode()),
            Ordering::Relaxed,
        );
        if qw {
            slot.data = (req.data >> 32) as u32;
            p.store(
                slot_off(write.wrapping_add(1)),
                8,
                u64::from_le_bytes(slot.encode()),
                Ordering::Relaxed,
            );
        }
        let new_write = write.wrapping_add(1 + qw as u32);
        p.store(
            b + bufioreq::WRITE_POINTER_OFFSET,
            4,
            new_write as u64,
            Ordering::Release,
        );
        // Keep the free-running pointers away from 2^32 (Xen's atomic mode: both
        // pointers in one cmpxchg; the consumer advances read_pointer with an atomic
        // add, so a racing consumer makes this fail and it is retried next time).
        let n = read / bufioreq::IOREQ_BUFFER_SLOT_NUM;
        if n != 0 && new_write >= read {
            let sub = n * bufioreq::IOREQ_BUFFER_SLOT_NUM;
            let old = read as u64 | (new_write as u64) << 32;
            let new = (read - sub) as u64 | ((new_write - sub) as u64) << 32;
            let _ = p.cmpxchg(b, 8, old, new);
        }
        self.posted.fetch_add(1, Ordering::Relaxed);
        self.signal(bufioreq_port(self.nr_vcpus));
        true
    }
}

/// The guest-side handle ([`crate::device_model::DeviceModel::Stub`]).
#[derive(Clone)]
pub struct StubLink {
    pub ch: Arc<StubChannel>,
}

fn mask(size: u8) -> u64 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

impl StubLink {
    pub fn new(ch: Arc<StubChannel>) -> StubLink {
        StubLink { ch }
    }

    fn vcpu_call(
        &self,
        st: &PlatformState,
        vcpu: u32,
        req: IoReq,
        what: &'static str,
    ) -> Option<u64> {
        if vcpu >= self.ch.nr_vcpus {
            return None;
        }
        self.ch
            .call(st, vcpu, ioreq_port(vcpu), req, Who::Vcpu(vcpu, what))
    }

    fn req(&self, vcpu: u32, ty: u8, addr: u64, size: u8, dir: u8, data: u64) -> IoReq {
        IoReq {
            addr,
            data: data & mask(size),
            count: 1,
            size: size as u32,
            vp_eport: ioreq_port(vcpu),
            state: STATE_IOREQ_READY,
            dir,
            ty,
            ..Default::default()
        }
    }

    /// A port read of `size` (1, 2, 4) bytes; all ones if the domain stops. Reads of
    /// the PM timer are answered here from guest time (the same function of guest time
    /// the device uses, so the value is the one the stub would give).
    pub fn pio_read(&self, st: &PlatformState, vcpu: u32, port: u16, size: u8) -> u64 {
        let tmr = self.ch.pm_timer_port.load(Ordering::Relaxed);
        if tmr != 0 {
            let off = (port as u32).wrapping_sub(tmr);
            if off < 4 && off + size as u32 <= 4 {
                self.ch.pm_timer_reads.fetch_add(1, Ordering::Relaxed);
                let now = chassis_devices::platform::Platform::now_ns(&st.handle());
                let v = chassis_devices::piix4_pm::pm_timer_at(now) >> (8 * off);
                return v as u64 & mask(size);
            }
        }
        let req = self.req(vcpu, IOREQ_TYPE_PIO, port as u64, size, IOREQ_READ, 0);
        self.vcpu_call(st, vcpu, req, "port")
            .map_or(mask(size), |d| d & mask(size))
    }

    pub fn pio_write(&self, st: &PlatformState, vcpu: u32, port: u16, size: u8, value: u32) {
        let req = self.req(
            vcpu,
            IOREQ_TYPE_PIO,
            port as u64,
            size,
            IOREQ_WRITE,
            value as u64,
        );
        if self.ch.buffered && matches!(port, 0xe9 | 0x80) && self.ch.post_buffered(&req) {
            return;
        }
        self.vcpu_call(st, vcpu, req, "port");
    }

    pub fn mmio_read(&self, st: &PlatformState, vcpu: u32, addr: u64, size: u8) -> u64 {
        let req = self.req(vcpu, IOREQ_TYPE_COPY, addr, size, IOREQ_READ, 0);
        self.vcpu_call(st, vcpu, req, "mmio")
            .map_or(mask(size), |d| d & mask(size))
    }

    pub fn mmio_write(&self, st: &PlatformState, vcpu: u32, addr: u64, size: u8, value: u64) {
        let req = self.req(vcpu, IOREQ_TYPE_COPY, addr, size, IOREQ_WRITE, value);
        self.vcpu_call(st, vcpu, req, "mmio");
    }

    fn platform_call(&self, st: &PlatformState, req: IoReq, what: &'static str) -> Option<u64> {
        let _g = lock(&self.ch.platform);
        let n = self.ch.nr_vcpus;
        self.ch.call(
            st,
            platform_slot(n),
            platform_port(n),
            req,
            Who::Platform(what),
        )
    }

    /// Device timer `id` expired: an `IOREQ_TYPE_CHASSIS_TIMER` request.
    pub fn on_timer(&self, st: &PlatformState, id: TimerId) {
        let req = IoReq {
            addr: id.index() as u64,
            count: 1,
            size: 1,
            vp_eport: platform_port(self.ch.nr_vcpus),
            state: STATE_IOREQ_READY,
            dir: IOREQ_WRITE,
            ty: IOREQ_TYPE_CHASSIS_TIMER,
            ..Default::default()
        };
        self.platform_call(st, req, "timer");
    }

    /// Console input for UART `index`, up to 8 bytes a request; returns the bytes the
    /// UART took.
    pub fn serial_input(&self, st: &PlatformState, index: usize, bytes: &[u8]) -> usize {
        if index >= 4 {
            return 0;
        }
        let mut taken = 0;
        for chunk in bytes.chunks(8) {
            let mut d = [0u8; 8];
            d[..chunk.len()].copy_from_slice(chunk);
            let req = IoReq {
                addr: index as u64,
                data: u64::from_le_bytes(d),
                count: chunk.len() as u32,
                size: 1,
                vp_eport: platform_port(self.ch.nr_vcpus),
                state: STATE_IOREQ_READY,
                dir: IOREQ_WRITE,
                ty: IOREQ_TYPE_CHASSIS_CHAR_IN,
                ..Default::default()
            };
            let Some(n) = self.platform_call(st, req, "console input") else {
                break;
            };
            // The stub's answer is only a count; never more than was offered.
            let n = (n as usize).min(chunk.len());
            taken += n;
            if n < chunk.len() {
                break;
            }
        }
        taken
    }
}

/// Wakes the stub's CPU and every waiter when the domain stops.
pub struct StubKick(pub Arc<StubChannel>);

impl Kick for StubKick {
    fn kick(&self) {
        self.0.wake_all();
    }
}
