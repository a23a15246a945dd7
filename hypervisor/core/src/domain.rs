//! Building and running one domain in process mode.
//!
//! Start-up: validate the memory size, load and check the firmware ELF and the modules,
//! map guest RAM, write the PVH start info, create the VM and its vCPUs, build the
//! machine. Then one thread per vCPU loops `run()` → dispatch, a timer thread fires
//! device timers, and (for an interactive console) a reader thread feeds stdin to COM1.
//! On `emu` ([`crate::emu`]) every vCPU gets a thread too; the APs wait for INIT/SIPI
//! from the BSP. In deterministic mode (one vCPU only: the interleaving of several
//! vCPU threads is not deterministic) there is no timer thread: vCPU 0 fires the device
//! timers at exact instruction counts.
//! The first power-off, reset or crash stops everything: the stop flag is set, the timer
//! thread woken, every vCPU kicked out of the guest, and all threads joined before
//! [`run`] returns.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chassis_devices::machine::{Machine, MachineConfig};
use hypervisor_abi::pvh::START_INFO_ADDR;

use crate::backend::{Kick, Vcpu};
use crate::device_model::DeviceModel;
use crate::dispatch::{Action, ExitCounts, dispatch};
use crate::emu::EmuVm;
use crate::emu::clock::GuestClock;
use crate::kvm::{BootState, KvmVm};
use crate::loader;
use crate::memory::{GuestMemory, Layout};
use crate::platform::{CharOut, PlatformState, lock};
use crate::stubdom::vm::StubVm;
use crate::stubdom::{StubChannel, StubKick, StubLink};
use crate::{Backend, CharTarget, DomainConfig, DomainExit, Error};

/// What a finished domain did, for diagnostics and benchmarks.
#[derive(Clone, Debug, Default)]
pub struct RunStats {
    /// Exits of all vCPUs together.
    pub exits: ExitCounts,
    /// From the first vCPU start to the last vCPU stop.
    pub elapsed: Duration,
    /// Instructions retired by all vCPUs (`emu` only; 0 on `kvm`).
    pub instructions: u64,
    /// Stubdom mode: instructions the stub domain's CPU retired.
    pub stub_instructions: u64,
    /// Stubdom mode: synchronous ioreqs the stub domain answered.
    pub stub_requests: u64,
    /// Stubdom mode: writes posted to the buffered ring.
    pub stub_buffered: u64,
    /// Stubdom mode: the stub domain's RAM in bytes.
    pub stub_ram_bytes: u64,
    /// Stubdom mode: stub RAM pages actually touched (non-zero at exit).
    pub stub_ram_pages_touched: u64,
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|err| Error::Io {
        what,
        path: path.to_path_buf(),
        err,
    })
}

/// Run `cfg` until the guest powers off, resets or crashes.
pub fn run(cfg: &DomainConfig) -> Result<(DomainExit, RunStats), Error> {
    if cfg.backend == Backend::Emu && !hypervisor_emu::AVAILABLE {
        return Err(Error::BackendUnavailable(hypervisor_emu::NOT_YET.into()));
    }
    if cfg.deterministic && cfg.backend != Backend::Emu {
        return Err(Error::Config(
            "deterministic time needs the emu backend (cpu_backend = \"emu\")".into(),
        ));
    }
    if cfg.deterministic && cfg.vcpus > 1 {
        return Err(Error::Config(format!(
            "deterministic = 1 needs vcpus = 1 (got vcpus = {}): several vCPU threads do \
             not interleave the same way twice; drop deterministic for an SMP guest",
            cfg.vcpus
        )));
    }
    let layout = Layout::from_mib(cfg.memory_mib).map_err(|e| Error::Config(e.to_string()))?;
    if cfg.vcpus == 0 || cfg.vcpus > 255 {
        return Err(Error::Config(format!(
            "vcpus = {}: must be 1 to 255",
            cfg.vcpus
        )));
    }
    if let Some(sc) = &cfg.stubdom {
        if cfg.vcpus > hypervisor_abi::ioreq::MAX_STUB_VCPUS {
            return Err(Error::Config(format!(
                "vcpus = {}: a stub-domain device model serves at most {} vCPUs",
                cfg.vcpus,
                hypervisor_abi::ioreq::MAX_STUB_VCPUS
            )));
        }
        // Checked before anything is allocated: a bad size or image is reported first.
        let ram = crate::stubdom::vm::ram_bytes(sc.memory_kb)?;
        crate::stubdom::vm::read_image(&sc.image, ram)?;
    }
    if cfg.ramdisk.is_some() && cfg.kernel.is_none() {
        return Err(Error::Config("a ramdisk needs a kernel".into()));
    }
    if cfg.bios.is_some() && cfg.kernel.is_some() {
        return Err(Error::Config(
            "a SeaBIOS boot and a direct kernel boot exclude each other".into(),
        ));
    }

    // Images first: a bad path or ELF is reported before anything is allocated.
    let fw_bytes = read_file("firmware", &cfg.firmware)?;
    let fw = loader::parse_firmware(&fw_bytes).map_err(|why| Error::BadImage {
        what: "firmware",
        path: cfg.firmware.clone(),
        why,
    })?;
    let mut modules: Vec<(&'static str, &Path, Vec<u8>)> = Vec::new();
    if let Some(k) = &cfg.kernel {
        modules.push(("kernel", k, read_file("kernel", k)?));
    }
    if let Some(r) = &cfg.ramdisk {
        modules.push(("ramdisk", r, read_file("ramdisk", r)?));
    }
    // SeaBIOS is the one module of its boot; the firmware copies it below 1 MiB.
    if let Some(b) = &cfg.bios {
        modules.push(("SeaBIOS image", b, read_file("SeaBIOS image", b)?));
    }
    let sizes: Vec<u64> = modules.iter().map(|m| m.2.len() as u64).collect();
    let placed = loader::place_modules(layout.low_end, &sizes).map_err(|why| {
        let (what, path) = match why.contains("ramdisk") {
            true => ("ramdisk", modules[1].1),
            false => (modules[0].0, modules[0].1),
        };
        Error::BadImage {
            what,
            path: path.to_path_buf(),
            why,
        }
    })?;

    let mem = GuestMemory::new(layout).map_err(|e| {
        Error::Config(format!(
            "cannot allocate {} MiB of guest memory: {e}",
            cfg.memory_mib
        ))
    })?;
    loader::load_firmware(&mem, &fw_bytes, &fw).map_err(|why| Error::BadImage {
        what: "firmware",
        path: cfg.firmware.clone(),
        why,
    })?;
    drop(fw_bytes);
    for ((what, path, bytes), p) in modules.iter().zip(&placed) {
        mem.write(p.paddr, bytes).map_err(|_| Error::BadImage {
            what,
            path: path.to_path_buf(),
            why: "does not fit in guest RAM".into(),
        })?;
    }
    let mut placed = placed;
    if let (Some(path), Some((_, _, bz))) = (&cfg.kernel, modules.first()) {
        if let Some(vm) = unpack_kernel(&mem, path, bz, &placed)? {
            if placed.len() < 2 {
                // No ramdisk: an empty slot keeps the module indices the firmware knows.
                placed.push(loader::Placement { paddr: 0, size: 0 });
            }
            placed.push(vm);
        }
    }
    drop(modules);
    let names: &[&[u8]] = match cfg.bios {
        Some(_) => &[loader::FIRMWARE_MODULE_NAME],
        None => &loader::MODULE_NAMES,
    };
    loader::write_start_info_named(&mem, &layout, &placed, names, &cfg.cmdline)
        .map_err(Error::Config)?;

    let serial = CharOut::open(&cfg.serial, "serial output")?;
    let debugcon = CharOut::open(&cfg.debugcon, "debug console output")?;
    // One config value for both modes: built here in process mode, encoded into the
    // stub domain's config page in stubdom mode.
    let mcfg = MachineConfig {
        profile: cfg.profile,
        ram_below_4g: layout.ram_below_4g(),
        ram_above_4g: layout.ram_above_4g(),
        vcpus: cfg.vcpus,
        serial_ports: 1,
        boot: Default::default(),
    };
    let (dm, stub) = match &cfg.stubdom {
        None => (DeviceModel::Process(Mutex::new(Machine::new(&mcfg))), None),
        Some(sc) => {
            let bytes = mcfg
                .encode()
                .map_err(|e| Error::Config(format!("cannot encode the machine config: {e:?}")))?;
            let (vm, ch) = crate::stubdom::vm::build(
                &cfg.name,
                sc,
                &layout,
                cfg.vcpus,
                &bytes,
                cfg.deterministic,
                match cfg.backend {
                    Backend::Emu => crate::xen_hypercall::StubKind::Vmcall,
                    Backend::Kvm => crate::xen_hypercall::StubKind::PortOut,
                },
            )?;
            (DeviceModel::Stub(StubLink::new(ch.clone())), Some((vm, ch)))
        }
    };
    let io = Io {
        serial,
        debugcon,
        dm,
        stub,
    };
    match cfg.backend {
        Backend::Kvm => run_kvm(cfg, &mem, fw.entry, io),
        Backend::Emu => run_emu(cfg, &mem, fw.entry, io),
    }
}

/// The character outputs and the device model, built the same way for both backends.
struct Io {
    serial: CharOut,
    debugcon: CharOut,
    dm: DeviceModel,
    /// Stubdom mode: the stub domain and its channel.
    stub: Option<(StubVm, Arc<StubChannel>)>,
}

fn run_kvm(
    cfg: &DomainConfig,
    mem: &GuestMemory,
    entry: u64,
    io: Io,
) -> Result<(DomainExit, RunStats), Error> {
    let vm = KvmVm::new(mem, cfg.vcpus)?;
    let mut vcpus: Vec<Box<dyn Vcpu + '_>> = Vec::with_capacity(cfg.vcpus as usize);
    for id in 0..cfg.vcpus {
        let boot = (id == 0).then_some(BootState {
            entry,
            start_info: START_INFO_ADDR,
        });
        vcpus.push(Box::new(vm.create_vcpu(id, boot)?));
    }
    let Io {
        serial,
        debugcon,
        dm,
        stub,
    } = io;

    let mut state = PlatformState::new(mem, &vm, serial, debugcon);
    if let Some(s) = &cfg.stop_on_output {
        state.set_stop_on_output(s.as_bytes());
    }
    let mut kicks: Vec<Arc<dyn Kick>> = vcpus.iter().map(|v| v.kicker()).collect();
    // Stubdom mode: the stub domain is a second KVM VM, created here so a stop can kick
    // its vCPU too.
    let mut stub = stub;
    let mut kvm_stub = None;
    if let Some((svm, ch)) = &mut stub {
        svm.write_start_info(chassis_devices::platform::Platform::wall_clock_base_ns(
            &state.handle(),
        ))?;
        kicks.push(Arc::new(StubKick(ch.clone())));
    }
    if let Some((svm, ch)) = &stub {
        let ks = crate::stubdom::kvm_vm::KvmStub::new(svm, ch, mem)?;
        kicks.push(ks.kicker());
        kvm_stub = Some(ks);
    }
    state.set_kicks(kicks);
    let machine = dm;

    let started = Instant::now();
    let mut exits = ExitCounts::default();
    std::thread::scope(|s| {
        let st = &state;
        let m = &machine;
        if let (Some((svm, ch)), Some(sc), Some(mut ks)) = (&stub, &cfg.stubdom, kvm_stub) {
            // The stub domain first; the guest starts once it says Ready.
            let h = std::thread::Builder::new()
                .name("stubdom".into())
                .spawn_scoped(s, move || {
                    guarded(st, "stub domain", || ks.run(svm, ch, st));
                });
            crate::stubdom::vm::await_ready(st, svm, ch, sc, h.map(drop));
        }
        s.spawn(move || guarded(st, "timer", || timer_thread(st, m)));
        if cfg.serial == CharTarget::Stdout && console_input_wanted() {
            s.spawn(move || guarded(st, "console", || stdin_thread(st, m)));
        }
        let handles: Vec<_> = vcpus
            .iter_mut()
            .map(|v| {
                std::thread::Builder::new()
                    .name(format!("vcpu{}", v.id()))
                    .spawn_scoped(s, move || {
                        guarded(st, "vcpu", || vcpu_thread(st, m, v.as_mut())).unwrap_or_default()
                    })
            })
            .collect();
        for h in handles {
            match h {
                Ok(h) => exits += h.join().unwrap_or_default(),
                Err(e) => state.finish(Err(Error::Config(format!(
                    "cannot start a vCPU thread: {e}"
                )))),
            }
        }
        // Every vCPU has stopped: make sure the helpers stop too.
        if !state.stopping() {
            state.finish(Ok(DomainExit::Crashed("all vCPUs stopped".into())));
        }
    });
    let mut stats = RunStats {
        exits,
        elapsed: started.elapsed(),
        ..Default::default()
    };
    if let Some((svm, ch)) = &stub {
        stats.stub_requests = ch.requests.load(std::sync::atomic::Ordering::Relaxed);
        stats.stub_buffered = ch.posted.load(std::sync::atomic::Ordering::Relaxed);
        stats.stub_ram_bytes = svm.mem.layout().memory;
        stats.stub_ram_pages_touched = svm.mem.nonzero_pages();
    }
    let outcome = state
        .take_outcome()
        .unwrap_or_else(|| Ok(DomainExit::Crashed("stopped without a reason".into())));
    outcome.map(|e| (e, stats))
}

fn run_emu(
    cfg: &DomainConfig,
    mem: &GuestMemory,
    entry: u64,
    io: Io,
) -> Result<(DomainExit, RunStats), Error> {
    let vm = EmuVm::new(cfg.vcpus);
    let Io {
        serial,
        debugcon,
        dm,
        stub,
    } = io;
    // The BSP starts at the PVH entry; the APs wait for INIT/SIPI from it.
    let mut vcpus: Vec<hypervisor_emu::EmuVcpu> = (0..vm.vcpus())
        .map(|i| {
            if i == 0 {
                crate::emu::boot::pvh_vcpu(entry, START_INFO_ADDR)
            } else {
                hypervisor_emu::EmuVcpu::new(hypervisor_emu::Cpu::reset())
            }
        })
        .collect();
    let clock = if cfg.deterministic {
        GuestClock::deterministic()
    } else {
        GuestClock::host()
    };
    let wall_clock_base = clock.wall_clock_base_ns();
    let mut state =
        PlatformState::with_clock(mem, &*vm.irq, serial, debugcon, clock, Some(&vm.written));
    if let Some(s) = &cfg.stop_on_output {
        state.set_stop_on_output(s.as_bytes());
    }
    let mut stub = stub;
    let mut kicks = vec![vm.kicker()];
    if let Some((svm, ch)) = &mut stub {
        svm.write_start_info(wall_clock_base)?;
        kicks.push(Arc::new(StubKick(ch.clone())));
    }
    state.set_kicks(kicks);
    let machine = dm;

    let started = Instant::now();
    let mut result = crate::emu::vcpu::VcpuStats::default();
    let mut stub_stats = crate::stubdom::vm::StubStats::default();
    std::thread::scope(|s| {
        let st = &state;
        let m = &machine;
        let vm = &vm;
        let mut stub_handle = None;
        if let (Some((svm, ch)), Some(sc)) = (&stub, &cfg.stubdom) {
            // The stub domain first; the guest starts once it says Ready.
            let written = Some(&vm.written);
            let h = std::thread::Builder::new()
                .name("stubdom".into())
                .spawn_scoped(s, move || {
                    guarded(st, "stub domain", || {
                        crate::stubdom::vm::run_stub(svm, ch, st, written)
                    })
                    .unwrap_or_default()
                });
            let spawned = h.map(|h| stub_handle = Some(h));
            crate::stubdom::vm::await_ready(st, svm, ch, sc, spawned);
        }
        if !cfg.deterministic {
            s.spawn(move || guarded(st, "timer", || timer_thread(st, m)));
        }
        if cfg.serial == CharTarget::Stdout && console_input_wanted() {
            // Set before vCPU 0 starts: it may not call a quiet guest dead while input
            // can still arrive.
            st.console_input
                .store(true, std::sync::atomic::Ordering::SeqCst);
            s.spawn(move || guarded(st, "console", || stdin_thread(st, m)));
        }
        let mut handles = Vec::new();
        for (id, v) in vcpus.iter_mut().enumerate() {
            let h = std::thread::Builder::new()
                .name(format!("vcpu{id}"))
                .spawn_scoped(s, move || {
                    guarded(st, "vcpu", || {
                        crate::emu::vcpu::run_vcpu(st, m, vm, id as u32, v)
                    })
                    .unwrap_or_default()
                });
            match h {
                Ok(h) => handles.push(h),
                Err(e) => {
                    state.finish(Err(Error::Config(format!(
                        "cannot start a vCPU thread: {e}"
                    ))));
                    break;
                }
            }
        }
        for h in handles {
            let r = h.join().unwrap_or_default();
            result.counts += r.counts;
            result.instructions += r.instructions;
        }
        if !state.stopping() {
            state.finish(Ok(DomainExit::Crashed("all vCPUs stopped".into())));
        }
        if let Some(h) = stub_handle {
            stub_stats = h.join().unwrap_or_default();
        }
    });
    let mut stats = RunStats {
        exits: result.counts,
        elapsed: started.elapsed(),
        instructions: vcpus.iter().map(|v| v.retired()).sum(),
        ..Default::default()
    };
    if let Some((svm, ch)) = &stub {
        stats.stub_instructions = stub_stats.instructions;
        stats.stub_requests = ch.requests.load(std::sync::atomic::Ordering::Relaxed);
        stats.stub_buffered = ch.posted.load(std::sync::atomic::Ordering::Relaxed);
        stats.stub_ram_bytes = svm.mem.layout().memory;
        stats.stub_ram_pages_touched = svm.mem.nonzero_pages();
    }
    let outcome = state
        .take_outcome()
        .unwrap_or_else(|| Ok(DomainExit::Crashed("stopped without a reason".into())));
    outcome.map(|e| (e, stats))
}

/// Unpack the bzImage `bz` on the host and place the kernel proper where its own
/// decompressor would (`kernel_unpack`): the module "vmlinux" for the firmware. `None`
/// (with a note) when this kernel cannot be unpacked here; then the guest decompresses
/// it itself, as on real hardware.
fn unpack_kernel(
    mem: &GuestMemory,
    path: &Path,
    bz: &[u8],
    modules: &[loader::Placement],
) -> Result<Option<loader::Placement>, Error> {
    let Some((load, span)) = loader::kernel_span(bz) else {
        return Ok(None);
    };
    let elf = match crate::kernel_unpack::unpack(bz) {
        Ok(e) => e,
        Err(e) => {
            eprintln!(
                "chassis: note: kernel '{}': {e}; the kernel's own decompressor will run in the guest",
                path.display()
            );
            return Ok(None);
        }
    };
    let end = load.saturating_add(span);
    let clash = modules
        .iter()
        .find(|m| m.size != 0 && m.paddr < end && load < m.paddr + m.size);
    if load < hypervisor_abi::pvh::FIRMWARE_END || load % (2 << 20) != 0 {
        return Err(Error::BadImage {
            what: "kernel",
            path: path.to_path_buf(),
            why: format!(
                "pref_address {load:#x} is not a 2 MiB aligned address above the firmware"
            ),
        });
    }
    if let Some(m) = clash {
        return Err(Error::Config(format!(
            "guest memory is too small for this kernel: it occupies {load:#x}..{end:#x}, and the boot modules must go at {:#x}..{:#x}; raise `memory`",
            m.paddr,
            m.paddr + m.size
        )));
    }
    loader::place_vmlinux(mem, &elf, load, span).map_err(|why| Error::BadImage {
        what: "kernel",
        path: path.to_path_buf(),
        why,
    })?;
    Ok(Some(loader::Placement {
        paddr: load,
        size: span,
    }))
}

/// Run a thread body; a panic in it becomes a crash of the domain instead of a panic of
/// the caller.
fn guarded<T>(state: &PlatformState, what: &str, f: impl FnOnce() -> T) -> Option<T> {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(e) => {
            let msg = e
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| e.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            state.finish(Ok(DomainExit::Crashed(format!(
                "internal error: the {what} thread panicked: {msg}"
            ))));
            None
        }
    }
}

fn vcpu_thread(state: &PlatformState, dm: &DeviceModel, vcpu: &mut dyn Vcpu) -> ExitCounts {
    struct Unbind<'k>(&'k dyn Kick);
    impl Drop for Unbind<'_> {
        fn drop(&mut self) {
            self.0.unbind_thread();
        }
    }
    let kick = vcpu.kicker();
    kick.bind_thread();
    let _unbind = Unbind(&*kick);

    let mut counts = ExitCounts::default();
    let id = vcpu.id();
    while !state.stopping() {
        let exit = match vcpu.run() {
            Ok(e) => e,
            Err(e) => {
                state.finish(Err(e));
                break;
            }
        };
        if let Action::Crash { what, code } = dispatch(exit, dm, id, state, &mut counts) {
            let regs = vcpu.state_summary();
            let code = code.map(|c| format!(" {c:#x}")).unwrap_or_default();
            state.finish(Ok(DomainExit::Crashed(format!(
                "vCPU {id}: {what}{code}: {regs}"
            ))));
            break;
        }
    }
    counts
}

/// Fire device timers at their deadlines. The timer lock is never held while the machine
/// lock is taken (devices re-arm timers from inside `on_timer`).
fn timer_thread(state: &PlatformState, dm: &DeviceModel) {
    let mut t = lock(&state.timers);
    loop {
        if state.stopping() {
            return;
        }
        let now = state.now_ns();
        match t.earliest() {
            None => t = state.timer_cv.wait(t).unwrap_or_else(|e| e.into_inner()),
            Some((id, deadline)) if deadline <= now => {
                t.deadlines[id.index()] = None;
                drop(t);
                dm.on_timer(state, id);
                t = lock(&state.timers);
            }
            Some((_, deadline)) => {
                t = state
                    .timer_cv
                    .wait_timeout(t, Duration::from_nanos(deadline - now))
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        }
    }
}

/// Whether stdin is something to forward to COM1: a terminal we are in the foreground
/// of (reading from a background terminal would stop the process), or a pipe.
fn console_input_wanted() -> bool {
    // SAFETY: plain libc queries on fd 0 with a zeroed stat buffer.
    unsafe {
        if libc::isatty(0) == 1 {
            return libc::tcgetpgrp(0) == libc::getpgrp();
        }
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(0, &mut st) == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFIFO
    }
}

/// Feed stdin to COM1. Polls with a timeout so it never holds up shutdown.
fn stdin_thread(state: &PlatformState, dm: &DeviceModel) {
    struct Closed<'s, 'a>(&'s PlatformState<'a>);
    impl Drop for Closed<'_, '_> {
        fn drop(&mut self) {
            self.0
                .console_input
                .store(false, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let _closed = Closed(state);
    let mut buf = [0u8; 256];
    while !state.stopping() {
        let mut pfd = libc::pollfd {
            fd: 0,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, 100) };
        if r <= 0 {
            continue;
        }
        // SAFETY: reads into a buffer we own, at most its length.
        let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return; // EOF or error: no more input.
        }
        let mut pending = &buf[..n as usize];
        while !pending.is_empty() && !state.stopping() {
            let took = dm.serial_input(state, 0, pending);
            pending = &pending[took.min(pending.len())..];
            if took == 0 {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::IrqLines;
    use chassis_devices::io::Width;
    use chassis_devices::profile::QEMU_XEN;

    #[derive(Default)]
    struct RecordIrq(Mutex<Vec<(u32, bool)>>);
    impl IrqLines for RecordIrq {
        fn set_irq_line(&self, gsi: u32, level: bool) -> Result<(), Error> {
            lock(&self.0).push((gsi, level));
            Ok(())
        }
    }

    #[test]
    fn timer_thread_fires_device_timers_and_stops() {
        let layout = Layout::from_mib(16).unwrap();
        let mem = GuestMemory::new(layout).unwrap();
        let irq = RecordIrq::default();
        let state = PlatformState::new(&mem, &irq, CharOut::Null, CharOut::Null);
        let machine = DeviceModel::Process(Mutex::new(Machine::new(&MachineConfig {
            profile: &QEMU_XEN,
            ram_below_4g: layout.ram_below_4g(),
            ram_above_4g: 0,
            vcpus: 1,
            serial_ports: 1,
            boot: Default::default(),
        })));
        std::thread::scope(|s| {
            s.spawn(|| timer_thread(&state, &machine));
            // RTC: 1024 Hz periodic interrupt (register A rate 6, register B PIE | 24h).
            {
                let mut m = lock(machine.machine().unwrap());
                let mut p = state.handle();
                m.pio_write(&mut p, 0x70, Width::B1, 0x0a);
                m.pio_write(&mut p, 0x71, Width::B1, 0x26);
                m.pio_write(&mut p, 0x70, Width::B1, 0x0b);
                m.pio_write(&mut p, 0x71, Width::B1, 0x42);
            }
            let t = Instant::now();
            while !lock(&irq.0).contains(&(8, true)) {
                assert!(t.elapsed() < Duration::from_secs(5), "IRQ 8 never rose");
                std::thread::sleep(Duration::from_millis(1));
            }
            // Register C reports the periodic flag (and reading it lowers the line).
            {
                let mut m = lock(machine.machine().unwrap());
                let mut p = state.handle();
                m.pio_write(&mut p, 0x70, Width::B1, 0x0c);
                assert_ne!(m.pio_read(&mut p, 0x71, Width::B1) & 0x40, 0);
            }
            state.finish(Ok(DomainExit::PowerOff));
        });
        assert_eq!(state.take_outcome().unwrap().unwrap(), DomainExit::PowerOff);
    }
}
