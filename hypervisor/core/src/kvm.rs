//! The `kvm` backend: hardware virtualization through /dev/kvm (kvm-ioctls).
//!
//! The VM gets the full in-kernel irqchip (PIC + IOAPIC + LAPICs) and a PIT whose speaker
//! port is a dummy, KVM's private TSS and identity-map pages at the fixed addresses of
//! `hypervisor_abi::pvh`, one memory slot per RAM range, and per vCPU the host-supported
//! CPUID with its APIC ID filled in. vCPU 0 starts at the firmware's PVH entry; the
//! others wait for INIT/SIPI in the kernel (their KVM_RUN blocks until then).
//!
//! Port I/O exits are decoded from `kvm_run` directly: kvm-ioctls' `IoIn`/`IoOut` hand
//! out only `size * count` bytes, which loses the access size of string I/O.

use std::io;
use std::mem::offset_of;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Once};

use hypervisor_abi::pvh::{KVM_IDENTITY_MAP_ADDR, KVM_TSS_ADDR};
use kvm_bindings::{
    CpuId, KVM_MAX_CPUID_ENTRIES, KVM_MSR_EXIT_REASON_FILTER, KVM_PIT_SPEAKER_DUMMY,
    kvm_cpuid_entry2, kvm_enable_cap, kvm_pit_config, kvm_run, kvm_segment,
    kvm_userspace_memory_region,
};
use kvm_ioctls::{
    Cap, Kvm, MsrFilterDefaultAction, MsrFilterRange, MsrFilterRangeFlags, VcpuExit, VcpuFd, VmFd,
};

use crate::Error;
use crate::backend::{Exit, IrqLines, Kick, Vcpu};
use crate::memory::GuestMemory;
use crate::xen_hypercall::{self as xen, HypercallRegs};

fn errno_to_io(e: kvm_ioctls::Error) -> io::Error {
    io::Error::from_raw_os_error(e.errno())
}

fn kvm_err(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
    move |e| Error::Kvm {
        op,
        err: errno_to_io(e),
    }
}

/// Where a vCPU starts (PVH, 32-bit flat protected mode).
#[derive(Clone, Copy, Debug)]
pub struct BootState {
    /// EIP.
    pub entry: u64,
    /// EBX: guest-physical address of the start-info structure.
    pub start_info: u64,
}

/// A KVM virtual machine with its memory slots and interrupt controllers.
pub struct KvmVm<'m> {
    _kvm: Kvm,
    vm: VmFd,
    cpuid: CpuId,
    run_size: usize,
    vcpus: u32,
    mem: &'m GuestMemory,
    /// A stub domain's VM ([`KvmVm::new_bare`]): no in-kernel irqchip, so HLT reaches
    /// user space and interrupts are injected with KVM_INTERRUPT; the hypercall port is
    /// handed to the caller instead of the Xen hypercall handler.
    bare: bool,
}

/// One memory slot of a bare VM: `size` bytes at guest-physical `gpa`, backed by host
/// memory at `host`.
#[derive(Clone, Copy, Debug)]
pub struct HostSlot {
    pub gpa: u64,
    pub size: u64,
    pub host: *mut u8,
}

/// KVM_INTERRUPT: _IOW(KVMIO, 0x86, struct kvm_interrupt). kvm-ioctls has no wrapper.
const KVM_INTERRUPT: libc::c_ulong = 0x4004_ae86;

/// Open /dev/kvm, mapping failure to `BackendUnavailable` with the errno text.
pub fn open_kvm() -> Result<Kvm, Error> {
    open_kvm_at(c"/dev/kvm")
}

fn open_kvm_at(path: &std::ffi::CStr) -> Result<Kvm, Error> {
    Kvm::new_with_path(path).map_err(|e| {
        Error::BackendUnavailable(format!(
            "cannot open {}: {}",
            path.to_string_lossy(),
            errno_to_io(e)
        ))
    })
}

/// Whether /dev/kvm can be opened (for tests and diagnostics).
pub fn available() -> bool {
    Kvm::new().is_ok()
}

/// Register `(guest-physical base, size, host address)` ranges as memory slots 0, 1, ...
///
/// # Safety
/// Every host range must stay mapped, readable and writable for as long as the VM
/// exists, and the ranges must not overlap in guest-physical space.
unsafe fn add_memory_slots(
    vm: &VmFd,
    ranges: impl Iterator<Item = (u64, u64, u64)>,
) -> Result<(), Error> {
    for (slot, (gpa, size, host)) in ranges.enumerate() {
        let region = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: gpa,
            memory_size: size,
            userspace_addr: host,
        };
        // SAFETY: forwarded from this function's contract.
        unsafe { vm.set_user_memory_region(region) }
            .map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;
    }
    Ok(())
}

impl<'m> KvmVm<'m> {
    /// Create the VM for `mem` with room for `vcpus` vCPUs.
    pub fn new(mem: &'m GuestMemory, vcpus: u32) -> Result<KvmVm<'m>, Error> {
        let kvm = open_kvm()?;
        let max = kvm.get_max_vcpus();
        if vcpus == 0 || vcpus as usize > max {
            return Err(Error::Config(format!(
                "vcpus = {vcpus}: KVM on this host supports 1 to {max}"
            )));
        }
        let run_size = kvm
            .get_vcpu_mmap_size()
            .map_err(kvm_err("KVM_GET_VCPU_MMAP_SIZE"))?;
        let vm = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
        vm.set_identity_map_address(KVM_IDENTITY_MAP_ADDR)
            .map_err(kvm_err("KVM_SET_IDENTITY_MAP_ADDR"))?;
        vm.set_tss_address(KVM_TSS_ADDR as usize)
            .map_err(kvm_err("KVM_SET_TSS_ADDR"))?;
        vm.create_irq_chip()
            .map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        vm.create_pit2(pit).map_err(kvm_err("KVM_CREATE_PIT2"))?;
        // SAFETY: each host range is a live mapping owned by `mem`, which outlives the VM
        // (the `'m` borrow); the regions do not overlap.
        unsafe { add_memory_slots(&vm, mem.regions().map(|r| (r.gpa, r.size, r.host as u64))) }?;
        let supported = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
        let cpuid = with_xen_leaves(&supported)?;
        trap_hypercall_msr(&vm)?;
        install_kick_handler();
        Ok(KvmVm {
            _kvm: kvm,
            vm,
            cpuid,
            run_size,
            vcpus,
            mem,
            bare: false,
        })
    }

    /// A one-vCPU VM for a stub domain: the given memory slots only (no irqchip, no PIT),
    /// KVM's own CPUID. `mem` is the stub's RAM (for its crash reports and the vCPU).
    ///
    /// # Safety
    /// Every slot's host range must stay mapped, readable and writable for as long as
    /// the VM exists, and slots must not overlap in guest-physical space.
    pub unsafe fn new_bare(mem: &'m GuestMemory, slots: &[HostSlot]) -> Result<KvmVm<'m>, Error> {
        let kvm = open_kvm()?;
        let run_size = kvm
            .get_vcpu_mmap_size()
            .map_err(kvm_err("KVM_GET_VCPU_MMAP_SIZE"))?;
        let vm = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
        vm.set_tss_address(KVM_TSS_ADDR as usize)
            .map_err(kvm_err("KVM_SET_TSS_ADDR"))?;
        // SAFETY: the caller guarantees the host ranges outlive the VM and that slots do
        // not overlap.
        unsafe { add_memory_slots(&vm, slots.iter().map(|r| (r.gpa, r.size, r.host as u64))) }?;
        let cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
        install_kick_handler();
        Ok(KvmVm {
            _kvm: kvm,
            vm,
            cpuid,
            run_size,
            vcpus: 1,
            mem,
            bare: true,
        })
    }

    /// Create vCPU `id`; `boot` = the PVH entry state (vCPU 0), `None` = an AP that
    /// waits for INIT/SIPI.
    pub fn create_vcpu(&self, id: u32, boot: Option<BootState>) -> Result<KvmVcpu<'m>, Error> {
        let fd = self
            .vm
            .create_vcpu(id as u64)
            .map_err(kvm_err("KVM_CREATE_VCPU"))?;
        let mut cpuid = self.cpuid.clone();
        for e in cpuid.as_mut_slice() {
            match e.function {
                1 => {
                    // Initial APIC ID, logical processor count, HTT; hypervisor present.
                    e.ebx = (e.ebx & 0x0000_ffff) | (id << 24) | (self.vcpus.min(255) << 16);
                    if self.vcpus > 1 {
                        e.edx |= 1 << 28;
                    }
                    e.ecx |= 1 << 31;
                }
                0xb | 0x1f => e.edx = id,
                _ => {}
            }
        }
        fd.set_cpuid2(&cpuid).map_err(kvm_err("KVM_SET_CPUID2"))?;
        if let Some(b) = boot {
            set_pvh_state(&fd, b)?;
        }
        let kick = Arc::new(KvmKick::new(&fd)?);
        Ok(KvmVcpu {
            fd,
            id,
            run_size: self.run_size,
            kick,
            mem: self.mem,
            bare: self.bare,
        })
    }
}

impl IrqLines for KvmVm<'_> {
    fn set_irq_line(&self, gsi: u32, level: bool) -> Result<(), Error> {
        self.vm
            .set_irq_line(gsi, level)
            .map_err(kvm_err("KVM_IRQ_LINE"))
    }
}

/// The host-supported CPUID with every hypervisor leaf (KVM's own 0x40000000/1) replaced
/// by the Xen leaves and KVM's moved to 0x40000100 (xen_hypercall.rs).
fn with_xen_leaves(supported: &CpuId) -> Result<CpuId, Error> {
    let kvm_features = supported
        .as_slice()
        .iter()
        .find(|e| e.function == 0x4000_0001)
        .map(|e| [e.eax, e.ebx, e.ecx, e.edx]);
    let mut entries: Vec<kvm_cpuid_entry2> = supported
        .as_slice()
        .iter()
        .filter(|e| !xen::is_hypervisor_leaf(e.function))
        .copied()
        .collect();
    entries.extend(
        xen::cpuid_leaves(kvm_features)
            .into_iter()
            .map(|l| kvm_cpuid_entry2 {
                function: l.function,
                eax: l.eax,
                ebx: l.ebx,
                ecx: l.ecx,
                edx: l.edx,
                ..Default::default()
            }),
    );
    CpuId::from_entries(&entries).map_err(|_| Error::Kvm {
        op: "building the CPUID table",
        err: io::Error::from_raw_os_error(libc::E2BIG),
    })
}

/// Make guest writes of the hypercall-page MSR exit to user space: user-space MSR exits
/// for filtered MSRs, and a filter that allows everything but writes of that MSR.
/// Without the capability the guest's WRMSR faults (#GP), which only SeaBIOS's Xen path
/// notices.
fn trap_hypercall_msr(vm: &VmFd) -> Result<(), Error> {
    if !vm.check_extension(Cap::X86UserSpaceMsr) {
        return Ok(());
    }
    let cap = kvm_enable_cap {
        cap: Cap::X86UserSpaceMsr as u32,
        args: [KVM_MSR_EXIT_REASON_FILTER as u64, 0, 0, 0],
        ..Default::default()
    };
    vm.enable_cap(&cap)
        .map_err(kvm_err("KVM_ENABLE_CAP(X86_USER_SPACE_MSR)"))?;
    let deny = [0u8; 1];
    let range = MsrFilterRange {
        flags: MsrFilterRangeFlags::WRITE,
        base: xen::HYPERCALL_MSR,
        msr_count: 1,
        bitmap: &deny,
    };
    vm.set_msr_filter(MsrFilterDefaultAction::ALLOW, &[range])
        .map_err(kvm_err("KVM_X86_SET_MSR_FILTER"))
}

/// PVH entry: 32-bit flat protected mode, paging off, interrupts off.
fn set_pvh_state(fd: &VcpuFd, b: BootState) -> Result<(), Error> {
    let mut s = fd.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
    let code = kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector: 0x8,
        type_: 0xb, // execute/read, accessed
        present: 1,
        dpl: 0,
        db: 1,
        s: 1,
        l: 0,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    };
    let data = kvm_segment {
        selector: 0x10,
        type_: 0x3, // read/write, accessed
        ..code
    };
    s.cs = code;
    s.ds = data;
    s.es = data;
    s.fs = data;
    s.gs = data;
    s.ss = data;
    s.cr0 = 0x11; // PE | ET
    s.cr3 = 0;
    s.cr4 = 0;
    s.efer = 0;
    fd.set_sregs(&s).map_err(kvm_err("KVM_SET_SREGS"))?;
    let regs = kvm_bindings::kvm_regs {
        rflags: 2,
        rip: b.entry,
        rbx: b.start_info,
        ..Default::default()
    };
    fd.set_regs(&regs).map_err(kvm_err("KVM_SET_REGS"))
}

/// The signal that kicks a vCPU thread out of KVM_RUN; its handler does nothing, it is
/// installed without SA_RESTART so the ioctl returns EINTR.
fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN()
}

extern "C" fn kick_handler(_: libc::c_int) {}

fn install_kick_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; the handler
        // is async-signal-safe (it does nothing).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = kick_handler as *const () as usize;
            sa.sa_flags = 0;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(kick_signal(), &sa, std::ptr::null_mut());
        }
    });
}

/// Kicks one KVM vCPU: sets `kvm_run.immediate_exit` through a mapping of its own (so it
/// stays valid whatever happens to the `VcpuFd`) and signals the vCPU's thread.
pub struct KvmKick {
    map: *mut u8,
    map_len: usize,
    thread: Mutex<Option<libc::pthread_t>>,
}

// SAFETY: `map` is a shared mapping owned by this value; it is only accessed as an atomic
// byte. The thread id is behind a mutex.
unsafe impl Send for KvmKick {}
// SAFETY: see above.
unsafe impl Sync for KvmKick {}

impl KvmKick {
    fn new(fd: &VcpuFd) -> Result<KvmKick, Error> {
        use std::os::fd::AsRawFd;
        let len = 4096;
        // SAFETY: maps the first page of the vCPU's kvm_run (a fresh shared mapping of a
        // file we own); checked for MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::Kvm {
                op: "mmap kvm_run",
                err: io::Error::last_os_error(),
            });
        }
        Ok(KvmKick {
            map: p.cast(),
            map_len: len,
            thread: Mutex::new(None),
        })
    }

    fn immediate_exit(&self) -> &AtomicU8 {
        // SAFETY: the offset is inside the first page of kvm_run, which `map` covers for
        // the lifetime of self; the kernel reads the byte with READ_ONCE.
        unsafe { AtomicU8::from_ptr(self.map.add(offset_of!(kvm_run, immediate_exit))) }
    }
}

impl Drop for KvmKick {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once.
        unsafe {
            libc::munmap(self.map.cast(), self.map_len);
        }
    }
}

impl Kick for KvmKick {
    fn kick(&self) {
        self.immediate_exit().store(1, Ordering::SeqCst);
        let t = self.thread.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = *t {
            // SAFETY: the thread registered itself and unregisters (under this lock)
            // before it exits, so `t` names a live thread.
            unsafe {
                libc::pthread_kill(t, kick_signal());
            }
        }
    }
    fn bind_thread(&self) {
        // SAFETY: pthread_self has no preconditions.
        *self.thread.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(unsafe { libc::pthread_self() });
    }
    fn unbind_thread(&self) {
        *self.thread.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// A KVM vCPU.
pub struct KvmVcpu<'m> {
    fd: VcpuFd,
    id: u32,
    run_size: usize,
    kick: Arc<KvmKick>,
    /// For the Xen hypercall page and hypercall buffers.
    mem: &'m GuestMemory,
    /// A stub domain's vCPU: OUTs to the hypercall port come back as
    /// [`Exit::PioOut`] for the stub-domain doorbell ([`KvmVcpu::regs`]).
    bare: bool,
}

enum Raw {
    Io,
    Mmio,
    /// Handled here (hypercall-page MSR): run again, leaving `immediate_exit` alone.
    Handled,
    /// A Xen hypercall (OUT to `xen::HYPERCALL_PORT`).
    Hypercall,
    Exit(Exit<'static>),
}

impl KvmVcpu<'_> {
    /// The general registers (a stub domain's hypercall arguments).
    pub fn regs(&self) -> Result<kvm_bindings::kvm_regs, Error> {
        self.fd.get_regs().map_err(kvm_err("KVM_GET_REGS"))
    }

    /// Set the general registers (a hypercall's result in RAX).
    pub fn set_regs(&self, regs: &kvm_bindings::kvm_regs) -> Result<(), Error> {
        self.fd.set_regs(regs).map_err(kvm_err("KVM_SET_REGS"))
    }

    /// Inject external interrupt `vector` (bare VMs only, where no in-kernel LAPIC
    /// does it). `Ok(false)`: the vCPU cannot take an interrupt now (IF = 0 or an
    /// interrupt shadow); nothing was injected.
    pub fn inject_interrupt(&mut self, vector: u8) -> Result<bool, Error> {
        if !self.bare || self.fd.get_kvm_run().ready_for_interrupt_injection == 0 {
            return Ok(false);
        }
        use std::os::fd::AsRawFd;
        let irq = kvm_bindings::kvm_interrupt { irq: vector as u32 };
        // SAFETY: KVM_INTERRUPT reads one kvm_interrupt from the pointer, which is valid
        // for the call.
        let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), KVM_INTERRUPT, &irq) };
        if rc != 0 {
            return Err(Error::Kvm {
                op: "KVM_INTERRUPT",
                err: io::Error::last_os_error(),
            });
        }
        Ok(true)
    }

    /// Start in PVH state (32-bit flat protected mode at `b.entry`, EBX = start info).
    pub fn set_boot_state(&self, b: BootState) -> Result<(), Error> {
        set_pvh_state(&self.fd, b)
    }

    /// The hypercall stub's OUT: registers in, result in RAX. KVM completes the OUT (and
    /// advances RIP) on the next KVM_RUN.
    fn xen_hypercall(&mut self) -> Result<(), Error> {
        let mut regs = self.fd.get_regs().map_err(kvm_err("KVM_GET_REGS"))?;
        let sregs = self.fd.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
        let mut r = HypercallRegs {
            rax: regs.rax,
            rbx: regs.rbx,
            rcx: regs.rcx,
            rdx: regs.rdx,
            rsi: regs.rsi,
            rdi: regs.rdi,
            long_mode: sregs.cs.l != 0 && sregs.efer & (1 << 10) != 0,
            paging: sregs.cr0 & (1 << 31) != 0,
        };
        xen::hypercall(&mut r, self.mem);
        regs.rax = r.rax;
        self.fd.set_regs(&regs).map_err(kvm_err("KVM_SET_REGS"))
    }
}

impl Vcpu for KvmVcpu<'_> {
    fn id(&self) -> u32 {
        self.id
    }

    fn run(&mut self) -> Result<Exit<'_>, Error> {
        let raw = match self.fd.run() {
            Ok(VcpuExit::IoOut(xen::HYPERCALL_PORT, d)) if d.len() == 4 && !self.bare => {
                Raw::Hypercall
            }
            Ok(VcpuExit::IoIn(..)) | Ok(VcpuExit::IoOut(..)) => Raw::Io,
            Ok(VcpuExit::X86Wrmsr(w)) => {
                let ok = w.index == xen::HYPERCALL_MSR
                    && xen::write_hypercall_msr(self.mem, w.data, xen::StubKind::PortOut);
                *w.error = u8::from(!ok);
                Raw::Handled
            }
            Ok(VcpuExit::X86Rdmsr(r)) => {
                *r.error = 1;
                Raw::Handled
            }
            Ok(VcpuExit::MmioRead(..)) | Ok(VcpuExit::MmioWrite(..)) => Raw::Mmio,
            Ok(VcpuExit::Intr) => Raw::Exit(Exit::Interrupted),
            Ok(VcpuExit::Shutdown) => Raw::Exit(Exit::Shutdown),
            Ok(VcpuExit::FailEntry(reason, cpu)) => Raw::Exit(Exit::FailEntry { reason, cpu }),
            Ok(VcpuExit::InternalError) => Raw::Exit(Exit::InternalError { suberror: 0 }),
            Ok(VcpuExit::SystemEvent(kind, _)) => Raw::Exit(Exit::SystemEvent { kind }),
            Ok(VcpuExit::Hlt) => Raw::Exit(Exit::Hlt),
            Ok(VcpuExit::Unsupported(r)) => Raw::Exit(Exit::Other { reason: r }),
            Ok(_) => Raw::Exit(Exit::Other { reason: u32::MAX }),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                Raw::Exit(Exit::Interrupted)
            }
            Err(e) => return Err(kvm_err("KVM_RUN")(e)),
        };
        match raw {
            Raw::Handled => return Ok(Exit::Interrupted),
            Raw::Hypercall => {
                self.xen_hypercall()?;
                return Ok(Exit::Interrupted);
            }
            _ => {}
        }
        let run_size = self.run_size;
        let run = self.fd.get_kvm_run();
        match raw {
            Raw::Exit(Exit::Interrupted) => {
                run.immediate_exit = 0;
                Ok(Exit::Interrupted)
            }
            Raw::Exit(Exit::InternalError { .. }) => {
                // SAFETY: exit_reason is KVM_EXIT_INTERNAL_ERROR, so `internal` is the
                // active union member.
                let suberror = unsafe { run.__bindgen_anon_1.internal.suberror };
                Ok(Exit::InternalError { suberror })
            }
            Raw::Exit(e) => Ok(e),
            Raw::Handled | Raw::Hypercall => Ok(Exit::Interrupted),
            Raw::Io => {
                // SAFETY: exit_reason is KVM_EXIT_IO, so `io` is the active union member.
                let io = unsafe { run.__bindgen_anon_1.io };
                let len = io.size as usize * io.count as usize;
                let off = io.data_offset as usize;
                if off.checked_add(len).is_none_or(|end| end > run_size) {
                    return Ok(Exit::Other {
                        reason: kvm_bindings::KVM_EXIT_IO,
                    });
                }
                // SAFETY: [off, off + len) lies inside the kvm_run mapping (run_size bytes,
                // checked above), which lives as long as `self.fd`; the returned slice
                // borrows self mutably, so nothing else touches it meanwhile.
                let data = unsafe {
                    std::slice::from_raw_parts_mut((run as *mut kvm_run as *mut u8).add(off), len)
                };
                Ok(if io.direction == kvm_bindings::KVM_EXIT_IO_IN as u8 {
                    Exit::PioIn {
                        port: io.port,
                        size: io.size,
                        data,
                    }
                } else {
                    Exit::PioOut {
                        port: io.port,
                        size: io.size,
                        data,
                    }
                })
            }
            Raw::Mmio => {
                // SAFETY: exit_reason is KVM_EXIT_MMIO, so `mmio` is the active member.
                let mmio = unsafe { &mut run.__bindgen_anon_1.mmio };
                let len = (mmio.len as usize).min(mmio.data.len());
                let addr = mmio.phys_addr;
                let data = &mut mmio.data[..len];
                Ok(if mmio.is_write != 0 {
                    Exit::MmioWrite { addr, data }
                } else {
                    Exit::MmioRead { addr, data }
                })
            }
        }
    }

    fn kicker(&self) -> Arc<dyn Kick> {
        self.kick.clone()
    }

    fn state_summary(&mut self) -> String {
        let regs = self.fd.get_regs();
        let sregs = self.fd.get_sregs();
        match (regs, sregs) {
            (Ok(r), Ok(s)) => format!(
                "RIP={:#x} CS={:#x} (base {:#x}, type {:#x}, l={} db={}) CR0={:#x} CR3={:#x} CR4={:#x} EFER={:#x} RSP={:#x} RFLAGS={:#x} RAX={:#x} RBX={:#x}",
                r.rip,
                s.cs.selector,
                s.cs.base,
                s.cs.type_,
                s.cs.l,
                s.cs.db,
                s.cr0,
                s.cr3,
                s.cr4,
                s.efer,
                r.rsp,
                r.rflags,
                r.rax,
                r.rbx
            ),
            (Err(e), _) | (_, Err(e)) => format!("(registers unavailable: {})", errno_to_io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_device_is_backend_unavailable_with_errno_text() {
        match open_kvm_at(c"/nonexistent/kvm") {
            Err(Error::BackendUnavailable(msg)) => {
                assert!(msg.starts_with("cannot open /nonexistent/kvm: "), "{msg}");
                assert!(msg.contains("No such file"), "{msg}");
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("opened a missing device"),
        }
    }
}
