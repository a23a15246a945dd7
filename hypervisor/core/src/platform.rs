//! The [`Platform`] of process mode: devices reach guest memory, the in-kernel interrupt
//! controllers, host time, timers, character backends and power control through it.
//!
//! [`PlatformState`] is shared by every thread of a running domain (vCPUs, the timer
//! thread, the console reader); [`ProcessPlatform`] is the zero-cost `&mut dyn Platform`
//! handle a thread passes into the machine. It also owns stopping: the first power-off,
//! reset, crash or failure records the domain's outcome, sets the stop flag, wakes the
//! timer thread and kicks every vCPU out of the guest.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

use chassis_devices::platform::{CharSink, DmaError, Platform, PowerRequest, TIMER_COUNT, TimerId};

use crate::backend::{IrqLines, Kick};
use crate::emu::clock::GuestClock;
use crate::emu::written::WrittenPages;
use crate::memory::GuestMemory;
use crate::{CharTarget, DomainExit, Error};

/// Lock a mutex, ignoring poisoning: a panicking thread stops the domain anyway, and the
/// others must still be able to shut down.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A host-side character stream.
pub enum CharOut {
    Null,
    /// Standard output, flushed after every write.
    Stdout,
    File(Mutex<File>),
}

impl CharOut {
    /// Open a target; files are truncated now and appended to afterwards.
    pub fn open(target: &CharTarget, what: &'static str) -> Result<CharOut, Error> {
        Ok(match target {
            CharTarget::Null => CharOut::Null,
            CharTarget::Stdout => CharOut::Stdout,
            CharTarget::File(path) => {
                let io = |err| Error::Io {
                    what,
                    path: path.clone(),
                    err,
                };
                File::create(path).map_err(io)?;
                let f = OpenOptions::new().append(true).open(path).map_err(io)?;
                CharOut::File(Mutex::new(f))
            }
        })
    }

    pub fn write(&self, bytes: &[u8]) {
        // Output errors (a closed pipe, a full disk) must not stop the guest.
        match self {
            CharOut::Null => {}
            CharOut::Stdout => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(bytes);
                let _ = out.flush();
            }
            CharOut::File(f) => {
                let _ = lock(f).write_all(bytes);
            }
        }
    }
}

/// Armed timers: absolute deadlines in guest ns.
#[derive(Default)]
pub struct Timers {
    pub deadlines: [Option<u64>; TIMER_COUNT],
}

impl Timers {
    /// The earliest armed timer.
    pub fn earliest(&self) -> Option<(TimerId, u64)> {
        TimerId::ALL
            .iter()
            .filter_map(|&id| self.deadlines[id.index()].map(|d| (id, d)))
            .min_by_key(|&(_, d)| d)
    }
}

/// Stops the domain when a character stream has printed a given string (`chassis create
/// --stop-on-output`, the deterministic-mode tests): a rolling window of the last bytes.
struct OutputWatch {
    pattern: Vec<u8>,
    window: Mutex<Vec<u8>>,
}

impl OutputWatch {
    /// Feed bytes; true once the pattern has appeared.
    fn feed(&self, bytes: &[u8]) -> bool {
        let n = self.pattern.len();
        if n == 0 {
            return false;
        }
        let mut w = lock(&self.window);
        for &b in bytes {
            w.push(b);
            if w.len() > n {
                w.remove(0);
            }
            if w.as_slice() == self.pattern.as_slice() {
                return true;
            }
        }
        false
    }
}

/// Everything the platform of one running domain shares between threads.
pub struct PlatformState<'a> {
    pub mem: &'a GuestMemory,
    irq: &'a dyn IrqLines,
    pub clock: GuestClock,
    pub timers: Mutex<Timers>,
    pub timer_cv: Condvar,
    /// Bumped by every `set_timer` (the emu run loop re-plans its slice).
    pub timer_epoch: AtomicU64,
    /// emu: pages devices wrote, for the CPUs' decoded-code caches.
    written: Option<&'a WrittenPages>,
    /// A console input thread is feeding COM1 (an interrupt may still come from there).
    pub console_input: AtomicBool,
    watch: Option<OutputWatch>,
    serial: CharOut,
    debugcon: CharOut,
    stop: AtomicBool,
    outcome: Mutex<Option<Result<DomainExit, Error>>>,
    kicks: OnceLock<Vec<Arc<dyn Kick>>>,
    /// Host warnings printed about guest S3 requests (at most one: the guest can repeat
    /// the request as often as it likes, from the exit path with the machine locked).
    suspend_warnings: AtomicU32,
}

impl<'a> PlatformState<'a> {
    /// Host time, no DMA tracking, no output watch.
    pub fn new(
        mem: &'a GuestMemory,
        irq: &'a dyn IrqLines,
        serial: CharOut,
        debugcon: CharOut,
    ) -> Self {
        Self::with_clock(mem, irq, serial, debugcon, GuestClock::host(), None)
    }

    /// With a given clock and, on `emu`, the written-pages queues DMA must report to.
    pub fn with_clock(
        mem: &'a GuestMemory,
        irq: &'a dyn IrqLines,
        serial: CharOut,
        debugcon: CharOut,
        clock: GuestClock,
        written: Option<&'a WrittenPages>,
    ) -> Self {
        PlatformState {
            mem,
            irq,
            clock,
            timers: Mutex::new(Timers::default()),
            timer_cv: Condvar::new(),
            timer_epoch: AtomicU64::new(0),
            written,
            console_input: AtomicBool::new(false),
            watch: None,
            serial,
            debugcon,
            stop: AtomicBool::new(false),
            outcome: Mutex::new(None),
            kicks: OnceLock::new(),
            suspend_warnings: AtomicU32::new(0),
        }
    }

    /// Register the vCPU kickers (once, before the vCPU threads start).
    pub fn set_kicks(&self, kicks: Vec<Arc<dyn Kick>>) {
        let _ = self.kicks.set(kicks);
    }

    /// Stop the domain with [`DomainExit::OutputMatched`] once COM1 or the debug console
    /// has printed `pattern` (set before the domain starts).
    pub fn set_stop_on_output(&mut self, pattern: &[u8]) {
        self.watch = (!pattern.is_empty()).then(|| OutputWatch {
            pattern: pattern.to_vec(),
            window: Mutex::new(Vec::with_capacity(pattern.len() + 1)),
        });
    }

    pub fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }

    fn output(&self, out: &CharOut, bytes: &[u8]) {
        out.write(bytes);
        if self.watch.as_ref().is_some_and(|w| w.feed(bytes)) {
            self.finish(Ok(DomainExit::OutputMatched));
        }
    }

    /// Whether the domain is stopping.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Stop the domain with `outcome` (the first outcome wins): record it, set the stop
    /// flag, wake the timer thread, kick every vCPU.
    pub fn finish(&self, outcome: Result<DomainExit, Error>) {
        {
            let mut o = lock(&self.outcome);
            if o.is_none() {
                *o = Some(outcome);
            }
        }
        self.stop.store(true, Ordering::SeqCst);
        {
            let _t = lock(&self.timers);
            self.timer_cv.notify_all();
        }
        if let Some(kicks) = self.kicks.get() {
            for k in kicks {
                k.kick();
            }
        }
    }

    /// The recorded outcome (taken once).
    pub fn take_outcome(&self) -> Option<Result<DomainExit, Error>> {
        lock(&self.outcome).take()
    }

    pub fn handle(&self) -> ProcessPlatform<'_, 'a> {
        ProcessPlatform { s: self }
    }
}

/// The `&mut dyn Platform` a thread hands to the machine.
pub struct ProcessPlatform<'s, 'a> {
    s: &'s PlatformState<'a>,
}

impl Platform for ProcessPlatform<'_, '_> {
    fn set_irq(&mut self, gsi: u32, level: bool) {
        if let Err(e) = self.s.irq.set_irq_line(gsi, level) {
            self.s.finish(Err(e));
        }
    }

    fn dma_read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        self.s.mem.read(gpa, buf).map_err(|e| DmaError::OutOfRange {
            gpa: e.gpa,
            len: e.len,
        })
    }

    fn dma_write(&mut self, gpa: u64, buf: &[u8]) -> Result<(), DmaError> {
        self.s
            .mem
            .write(gpa, buf)
            .map_err(|e| DmaError::OutOfRange {
                gpa: e.gpa,
                len: e.len,
            })?;
        if let Some(w) = self.s.written {
            w.record(gpa, buf.len() as u64);
        }
        Ok(())
    }

    fn now_ns(&self) -> u64 {
        self.s.now_ns()
    }

    fn wall_clock_base_ns(&self) -> u64 {
        self.s.clock.wall_clock_base_ns()
    }

    fn set_timer(&mut self, timer: TimerId, deadline_ns: Option<u64>) {
        let mut t = lock(&self.s.timers);
        t.deadlines[timer.index()] = deadline_ns;
        self.s.timer_epoch.fetch_add(1, Ordering::SeqCst);
        self.s.timer_cv.notify_all();
    }

    fn char_out(&mut self, sink: CharSink, bytes: &[u8]) {
        match sink {
            CharSink::Serial(0) => self.s.output(&self.s.serial, bytes),
            CharSink::Serial(_) => {}
            CharSink::DebugCon => self.s.output(&self.s.debugcon, bytes),
        }
    }

    fn power(&mut self, request: PowerRequest) {
        match request {
            PowerRequest::PowerOff => self.s.finish(Ok(DomainExit::PowerOff)),
            PowerRequest::Reset => self.s.finish(Ok(DomainExit::Reset)),
            PowerRequest::Suspend => {
                // No S3 in process mode yet: the guest sees the write complete and carries
                // on, which Linux reports as a failed suspend. Warn once: a guest looping
                // on PM1a_CNT must not flood (or, on a full pipe, block) host stderr.
                if self
                    .s
                    .suspend_warnings
                    .compare_exchange(0, 1, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
                {
                    eprintln!(
                        "chassis: guest requested ACPI S3 suspend; not supported, ignored (further requests are not reported)"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::memory::Layout;

    pub(crate) struct NoIrq;
    impl IrqLines for NoIrq {
        fn set_irq_line(&self, _: u32, _: bool) -> Result<(), Error> {
            Ok(())
        }
    }

    #[test]
    fn dma_is_bounds_checked_and_power_stops() {
        let mem = GuestMemory::new(Layout::from_mib(16).unwrap()).unwrap();
        let st = PlatformState::new(&mem, &NoIrq, CharOut::Null, CharOut::Null);
        let mut p = st.handle();
        p.dma_write(0x1000, &[1, 2, 3]).unwrap();
        let mut b = [0; 3];
        p.dma_read(0x1000, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3]);
        assert_eq!(
            p.dma_read(0xa0000, &mut b),
            Err(DmaError::OutOfRange {
                gpa: 0xa0000,
                len: 3
            })
        );
        p.set_timer(TimerId::RtcUpdate, Some(50));
        p.set_timer(TimerId::PmTimerOverflow, Some(20));
        assert_eq!(
            lock(&st.timers).earliest(),
            Some((TimerId::PmTimerOverflow, 20))
        );
        assert!(!st.stopping());
        p.power(PowerRequest::Reset);
        p.power(PowerRequest::PowerOff);
        assert!(st.stopping());
        assert_eq!(st.take_outcome().unwrap().unwrap(), DomainExit::Reset);
    }

    #[test]
    fn output_watch_stops_the_domain_once_across_writes() {
        let mem = GuestMemory::new(Layout::from_mib(16).unwrap()).unwrap();
        let written = WrittenPages::new(1);
        let mut st = PlatformState::with_clock(
            &mem,
            &NoIrq,
            CharOut::Null,
            CharOut::Null,
            GuestClock::deterministic(),
            Some(&written),
        );
        st.set_stop_on_output(b"Booting from");
        let mut p = st.handle();
        assert_eq!(p.now_ns(), 0);
        assert_eq!(
            p.wall_clock_base_ns(),
            crate::emu::clock::DETERMINISTIC_WALL_CLOCK_BASE_NS
        );
        for b in b"BootBooting fro" {
            p.char_out(CharSink::DebugCon, &[*b]);
        }
        assert!(!st.stopping());
        p.char_out(CharSink::Serial(0), b"m Hard Disk");
        assert!(st.stopping());
        assert_eq!(
            st.take_outcome().unwrap().unwrap(),
            DomainExit::OutputMatched
        );
        // DMA writes are reported to the emu CPUs.
        p.dma_write(0x3ffe, &[0; 4]).unwrap();
        let mut pages = Vec::new();
        written.take(0, &mut |pg| pages.push(pg));
        assert_eq!(pages, [0x3000, 0x4000]);
    }

    /// A guest that writes SLP_TYP=S3|SLP_EN to PM1a_CNT in a loop gets one host warning,
    /// not one per write, and keeps running.
    #[test]
    fn repeated_guest_s3_requests_warn_once() {
        use chassis_devices::io::Width;
        use chassis_devices::machine::{Machine, MachineConfig};
        use chassis_devices::piix4_pm::{CNT_SLP_EN, CNT_SLP_TYP_SHIFT, SLP_TYP_S3};
        use chassis_devices::profile::QEMU_XEN;

        let mem = GuestMemory::new(Layout::from_mib(16).unwrap()).unwrap();
        let st = PlatformState::new(&mem, &tests::NoIrq, CharOut::Null, CharOut::Null);
        let mut p = st.handle();
        let mut m = Machine::new(&MachineConfig {
            profile: &QEMU_XEN,
            ram_below_4g: 16 << 20,
            ram_above_4g: 0,
            vcpus: 1,
            serial_ports: 1,
            boot: Default::default(),
        });
        // hvmloader: PMBA = 0xb000, PMREGMISC.PMIOSE = 1 on the PM function.
        let cfg = |m: &mut Machine, p: &mut ProcessPlatform, off: u32, w: Width, v: u32| {
            let devfn = QEMU_XEN.pm_devfn as u32;
            m.pio_write(p, 0xcf8, Width::B4, 0x8000_0000 | devfn << 8 | (off & 0xfc));
            m.pio_write(p, 0xcfc + (off & 3) as u16, w, v);
        };
        cfg(&mut m, &mut p, 0x40, Width::B4, 0xb001);
        cfg(&mut m, &mut p, 0x80, Width::B1, 1);
        let s3 = (SLP_TYP_S3 << CNT_SLP_TYP_SHIFT | CNT_SLP_EN) as u32;
        for _ in 0..1000 {
            m.pio_write(&mut p, 0xb004, Width::B2, s3);
        }
        assert_eq!(st.suspend_warnings.load(Ordering::Relaxed), 1);
        assert!(!st.stopping());
    }
}
