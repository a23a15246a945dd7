//! Building and running a stub domain: its RAM, the unikernel image, the hypercall
//! page, the shared pages, the start info (both backends), and on `emu` the thread that
//! runs its software CPU beside the guest's vCPUs (`kvm`: [`crate::stubdom::kvm_vm`]).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hypervisor_abi::ioreq::MAX_STUB_VCPUS;
use hypervisor_abi::stubdom::{
    FLAG_DETERMINISTIC, NO_CONSOLE, SelfTest, StubStartInfo, VirtioKind, VirtioMmioDevice, map,
};
use hypervisor_emu::RunExit;

use crate::emu::boot::pvh_vcpu;
use crate::emu::written::WrittenPages;
use crate::loader::{self, FirmwareImage};
use crate::memory::{GuestMemory, HIGH_RAM_START, Layout};
use crate::platform::PlatformState;
use crate::stubdom::bus::{StubBus, VIRTIO_WINDOW};
use crate::stubdom::link::{self, StubChannel};
use crate::stubdom::shared;
use crate::stubdom::virtio_console::VirtioConsole;
use crate::xen_hypercall::{StubKind, hypercall_page};
use crate::{DomainExit, Error, StubdomConfig};

/// Instructions per slice of the stub's CPU (it re-checks for a stop between slices;
/// a stub that never touches a device still stops within one).
pub const STUB_SLICE: u64 = 200_000;
const TWO_MIB: u64 = 2 << 20;

/// A stub domain ready to start.
pub struct StubVm {
    /// `<guest>-dm`.
    pub name: String,
    /// Its RAM.
    pub mem: GuestMemory,
    pub entry: u64,
    /// Bytes of the guest window.
    pub window: u64,
    /// The start info, but for the wall clock (filled in by [`StubVm::start`]).
    pub info: StubStartInfo,
}

/// What the stub domain did.
#[derive(Clone, Copy, Debug, Default)]
pub struct StubStats {
    pub instructions: u64,
}

/// Stub RAM in bytes for `memory_kb`, checked against the memory map.
pub fn ram_bytes(memory_kb: u64) -> Result<u64, Error> {
    let bytes = memory_kb
        .checked_mul(1024)
        .ok_or_else(|| Error::Config(format!("stubdomain_memkb = {memory_kb} is too large")))?;
    if !bytes.is_multiple_of(4096) {
        return Err(Error::Config(format!(
            "stubdomain_memkb = {memory_kb} is not a multiple of 4 (whole 4 KiB pages)"
        )));
    }
    if bytes < map::MIN_RAM {
        return Err(Error::Config(format!(
            "stubdomain_memkb = {memory_kb} is too small: a stub domain needs at least {} KiB",
            map::MIN_RAM / 1024
        )));
    }
    if bytes >= map::MAX_RAM {
        return Err(Error::Config(format!(
            "stubdomain_memkb = {memory_kb} is too large: stub RAM must stay below {} KiB",
            map::MAX_RAM / 1024
        )));
    }
    Ok(bytes)
}

/// The guest window: the guest's physical space up to its last RAM byte, rounded up to
/// 2 MiB.
pub fn guest_window(layout: &Layout) -> u64 {
    let end = if layout.high_size > 0 {
        HIGH_RAM_START + layout.high_size
    } else {
        layout.low_end
    };
    end.div_ceil(TWO_MIB) * TWO_MIB
}

/// Read and check the unikernel image against a stub RAM of `ram` bytes.
pub fn read_image(path: &Path, ram: u64) -> Result<(Vec<u8>, FirmwareImage), Error> {
    let bytes = std::fs::read(path).map_err(|err| Error::Io {
        what: "stub-domain image",
        path: path.to_path_buf(),
        err,
    })?;
    let elf = loader::parse_elf(
        &bytes,
        map::IMAGE_BASE,
        ram,
        "stub RAM above the image base",
    )
    .map_err(|why| Error::BadImage {
        what: "stub-domain image",
        path: path.to_path_buf(),
        why,
    })?;
    Ok((bytes, elf))
}

/// Build the stub domain of guest `guest_name`: RAM, image, hypercall page, the
/// channel with the config page. `config` is `MachineConfig::encode`'s output.
pub fn build(
    guest_name: &str,
    sc: &StubdomConfig,
    guest_layout: &Layout,
    nr_vcpus: u32,
    config: &[u8],
    deterministic: bool,
    hypercall: StubKind,
) -> Result<(StubVm, Arc<StubChannel>), Error> {
    if nr_vcpus == 0 || nr_vcpus > MAX_STUB_VCPUS {
        return Err(Error::Config(format!(
            "vcpus = {nr_vcpus}: a stub-domain device model serves 1 to {MAX_STUB_VCPUS} vCPUs"
        )));
    }
    if config.is_empty() || config.len() > shared::PAGE {
        return Err(Error::Config(format!(
            "the machine config is {} bytes; it must fit one page",
            config.len()
        )));
    }
    let ram = ram_bytes(sc.memory_kb)?;
    let (bytes, elf) = read_image(&sc.image, ram)?;
    let name = format!("{guest_name}-dm");
    let mem = GuestMemory::flat(ram).map_err(|e| {
        Error::Config(format!(
            "cannot allocate {} KiB for stub domain '{name}': {e}",
            ram / 1024
        ))
    })?;
    loader::load_firmware(&mem, &bytes, &elf).map_err(|why| Error::BadImage {
        what: "stub-domain image",
        path: sc.image.clone(),
        why,
    })?;
    mem.write(map::HYPERCALL_PAGE, &hypercall_page(hypercall))
        .map_err(|_| Error::Config("stub RAM has no room for the hypercall page".into()))?;
    let window = guest_window(guest_layout);
    let selftest = SelfTest::from_raw(sc.selftest).ok_or_else(|| {
        Error::Config(format!(
            "stubdomain_selftest = {}: must be 0 to 4",
            sc.selftest
        ))
    })?;
    let mut info = StubStartInfo::new();
    info.guest_domid = 1;
    info.nr_vcpus = nr_vcpus;
    info.bufioreq_port = link::bufioreq_port(nr_vcpus);
    info.ioreq_page_gpa = map::IOREQ_PAGE;
    info.bufioreq_page_gpa = map::BUFIOREQ_PAGE;
    info.evtchn_page_gpa = map::EVTCHN_PAGE;
    info.guest_ram_base = map::GUEST_WINDOW;
    info.guest_ram_size = window;
    info.stub_ram_size = ram;
    info.console_device = 0;
    info.nr_virtio = 1;
    info.virtio[0] = Some(VirtioMmioDevice {
        base: map::VIRTIO_BASE,
        size: VIRTIO_WINDOW,
        irq: 0,
        kind: VirtioKind::Console,
    });
    for i in 0..nr_vcpus {
        info.ioreq_ports[i as usize] = link::ioreq_port(i);
    }
    info.hypercall_page_gpa = map::HYPERCALL_PAGE;
    info.config_page_gpa = map::CONFIG_PAGE;
    info.config_len = config.len() as u32;
    info.platform_port = link::platform_port(nr_vcpus);
    info.flags = if deterministic { FLAG_DETERMINISTIC } else { 0 };
    info.selftest = selftest;
    info.upcall_vector = map::UPCALL_VECTOR as u32;
    debug_assert!(info.console_device != NO_CONSOLE);
    let ch = Arc::new(StubChannel::new(
        name.clone(),
        nr_vcpus,
        sc.response_timeout,
        !deterministic,
    ));
    ch.pages.write(shared::CONFIG, config);
    Ok((
        StubVm {
            name,
            mem,
            entry: elf.entry,
            window,
            info,
        },
        ch,
    ))
}

impl StubVm {
    /// Write the start info (with the guest platform's wall-clock base), checked.
    pub fn write_start_info(&mut self, wall_clock_base_ns: u64) -> Result<(), Error> {
        self.info.wall_clock_base_ns = wall_clock_base_ns;
        self.info.validate().map_err(|e| {
            Error::Config(format!(
                "stub domain '{}': start info refused ({e:?})",
                self.name
            ))
        })?;
        self.mem
            .write(map::START_INFO, &self.info.to_bytes())
            .map_err(|_| Error::Config("stub RAM has no room for the start info".into()))
    }
}

/// Run the stub domain's CPU until the domain stops. A stub that accesses anything
/// outside its map, shuts its CPU down or crashes stops the whole domain with a report.
pub fn run_stub(
    vm: &StubVm,
    ch: &StubChannel,
    st: &PlatformState,
    written: Option<&WrittenPages>,
) -> StubStats {
    let console = VirtioConsole::new(&vm.name, Box::new(|line: &str| eprintln!("{line}")));
    let mut bus = StubBus::new(ch, st, &vm.mem, vm.window, written, console);
    let mut cpu = pvh_vcpu(vm.entry, map::START_INFO);
    while !st.stopping() {
        let exit = cpu.run(&mut bus, STUB_SLICE);
        if let Some(f) = bus.fault.take() {
            st.finish(Ok(DomainExit::Crashed(format!("{f}: {}", cpu.summary()))));
            break;
        }
        match exit {
            RunExit::Budget | RunExit::Stopped => {}
            RunExit::Shutdown(why) => {
                st.finish(Ok(DomainExit::Crashed(format!(
                    "stub domain '{}' stopped: CPU shutdown: {why}",
                    vm.name
                ))));
                break;
            }
            RunExit::Halted { interrupts_enabled } => {
                ch.park_stub(st);
                if !interrupts_enabled && ch.upcall.swap(false, std::sync::atomic::Ordering::SeqCst)
                {
                    // `cli; hlt` polling: an event resumes it after the HLT (it reads
                    // the event-channel page itself).
                    cpu.cpu.halted = false;
                }
            }
        }
    }
    bus.console.flush();
    StubStats {
        instructions: cpu.retired(),
    }
}

/// How long the guest waits for the stub's `Ready`.
pub fn ready_timeout(sc: &StubdomConfig) -> Duration {
    sc.response_timeout
}

/// After the stub's thread was started (`spawned`), on either backend: wait for its
/// `Ready`; stop the domain when the thread could not start or the stub never got ready.
pub fn await_ready(
    st: &PlatformState,
    svm: &StubVm,
    ch: &StubChannel,
    sc: &StubdomConfig,
    spawned: std::io::Result<()>,
) {
    if let Err(e) = spawned {
        st.finish(Err(Error::Config(format!(
            "cannot start the stub-domain thread: {e}"
        ))));
        return;
    }
    let timeout = ready_timeout(sc);
    if !ch.wait_ready(st, timeout) && !st.stopping() {
        st.finish(Ok(DomainExit::Crashed(format!(
            "stub domain '{}' did not become ready within {} s",
            svm.name,
            timeout.as_secs_f64()
        ))));
    }
}
