//! Hypercall numbers: the Xen ones chassis implements for guests and firmware
//! (Xen `xen/include/public/xen.h`, `version.h`, `event_channel.h`, `sched.h`,
//! `hvm/hvm_op.h`, `hvm/dm_op.h`), and the chassis-private stub-domain doorbell.
//!
//! Register convention (Xen x86-64 HVM): number in RAX, arguments in RDI, RSI, RDX,
//! R10, R8; result in RAX (0 or a negative errno). SeaBIOS's Xen path calls through the
//! hypercall page at 32 bytes per number.

/// `__HYPERVISOR_*` numbers.
pub const HYPERVISOR_MEMORY_OP: u32 = 12;
pub const HYPERVISOR_XEN_VERSION: u32 = 17;
pub const HYPERVISOR_SCHED_OP: u32 = 29;
pub const HYPERVISOR_EVENT_CHANNEL_OP: u32 = 32;
pub const HYPERVISOR_HVM_OP: u32 = 34;
pub const HYPERVISOR_DM_OP: u32 = 41;

/// Bytes per entry of the hypercall page (entry `n` at `page + n * 32`).
pub const HYPERCALL_PAGE_STRIDE: usize = 32;

/// `XENVER_*` commands of `xen_version` (SeaBIOS uses version, extraversion and
/// get_features).
pub const XENVER_VERSION: u32 = 0;
pub const XENVER_EXTRAVERSION: u32 = 1;
pub const XENVER_COMPILE_INFO: u32 = 2;
pub const XENVER_CAPABILITIES: u32 = 3;
pub const XENVER_CHANGESET: u32 = 4;
pub const XENVER_PLATFORM_PARAMETERS: u32 = 5;
pub const XENVER_GET_FEATURES: u32 = 6;
pub const XENVER_PAGESIZE: u32 = 7;
/// `xen_extraversion_t` is a 16-byte string.
pub const XENVER_EXTRAVERSION_LEN: usize = 16;

/// `EVTCHNOP_*` commands of `event_channel_op`.
pub const EVTCHNOP_BIND_INTERDOMAIN: u32 = 0;
pub const EVTCHNOP_CLOSE: u32 = 3;
pub const EVTCHNOP_SEND: u32 = 4;
pub const EVTCHNOP_ALLOC_UNBOUND: u32 = 6;
pub const EVTCHNOP_UNMASK: u32 = 9;

/// `SCHEDOP_*` commands of `sched_op`.
pub const SCHEDOP_YIELD: u32 = 0;
pub const SCHEDOP_BLOCK: u32 = 1;
pub const SCHEDOP_SHUTDOWN: u32 = 2;
pub const SCHEDOP_POLL: u32 = 3;

/// `SHUTDOWN_*` reasons (`sched.h`).
pub const SHUTDOWN_POWEROFF: u32 = 0;
pub const SHUTDOWN_REBOOT: u32 = 1;
pub const SHUTDOWN_SUSPEND: u32 = 2;
pub const SHUTDOWN_CRASH: u32 = 3;

/// `HVMOP_*` commands of `hvm_op`.
pub const HVMOP_SET_PARAM: u32 = 0;
pub const HVMOP_GET_PARAM: u32 = 1;

/// `XEN_DMOP_*` operations of `dm_op` (research/xen-hvm.md §1.4).
pub const XEN_DMOP_CREATE_IOREQ_SERVER: u32 = 1;
pub const XEN_DMOP_GET_IOREQ_SERVER_INFO: u32 = 2;
pub const XEN_DMOP_MAP_IO_RANGE_TO_IOREQ_SERVER: u32 = 3;
pub const XEN_DMOP_UNMAP_IO_RANGE_FROM_IOREQ_SERVER: u32 = 4;
pub const XEN_DMOP_SET_IOREQ_SERVER_STATE: u32 = 5;
pub const XEN_DMOP_DESTROY_IOREQ_SERVER: u32 = 6;
pub const XEN_DMOP_TRACK_DIRTY_VRAM: u32 = 7;
pub const XEN_DMOP_SET_PCI_INTX_LEVEL: u32 = 8;
pub const XEN_DMOP_SET_ISA_IRQ_LEVEL: u32 = 9;
pub const XEN_DMOP_SET_PCI_LINK_ROUTE: u32 = 10;
pub const XEN_DMOP_MODIFIED_MEMORY: u32 = 11;
pub const XEN_DMOP_SET_MEM_TYPE: u32 = 12;
pub const XEN_DMOP_INJECT_EVENT: u32 = 13;
pub const XEN_DMOP_INJECT_MSI: u32 = 14;
pub const XEN_DMOP_REMOTE_SHUTDOWN: u32 = 16;

/// The chassis stub-domain doorbell: one hypercall number outside Xen's range
/// (0..=55, the last being `__HYPERVISOR_arch_7`), accepted only from a stub domain
/// and only about its own guest. RDI = [`StubOp`], RSI/RDX/R10 = `arg0`/`arg1`/`arg2`
/// as each op documents; RAX = 0 or a negative errno (or the op's value). A guest
/// issuing it gets -ENOSYS like any unknown number. The stub domain calls it through
/// its hypercall page (entry `HYPERVISOR_CHASSIS_STUB`, at byte 0x800), whose stubs the
/// hypervisor writes for the backend (`vmcall` on emu, an `out` on kvm).
pub const HYPERVISOR_CHASSIS_STUB: u32 = 0x40;

// Outside everything Xen defines (arch_7 = 55), and its hypercall-page entry still
// fits in one 4 KiB page.
const _: () = assert!(
    HYPERVISOR_CHASSIS_STUB > 55
        && (HYPERVISOR_CHASSIS_STUB as usize + 1) * HYPERCALL_PAGE_STRIDE <= 4096
);

/// Operations of [`HYPERVISOR_CHASSIS_STUB`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum StubOp {
    /// The device model finished set-up and bound its event channels; the guest may
    /// start. No arguments.
    Ready = 1,
    /// The response in vCPU `arg0`'s ioreq slot is ready (state IORESP_READY). The
    /// doorbell form of sending on that vCPU's ioreq port.
    IoreqDone = 2,
    /// Drive ISA IRQ `arg0` to level `arg1` (0/1) (cf. `XEN_DMOP_set_isa_irq_level`).
    SetIsaIrqLevel = 3,
    /// Drive INTx pin `arg1` (0..4 = A..D) of PCI device `arg0` (slot) to `arg2`
    /// (cf. `XEN_DMOP_set_pci_intx_level`).
    SetPciIntxLevel = 4,
    /// Route PIRQ link `arg0` (0..4) to ISA IRQ `arg1` (0 = disabled)
    /// (cf. `XEN_DMOP_set_pci_link_route`).
    SetPciLinkRoute = 5,
    /// Inject an MSI: address `arg0`, data `arg1` (cf. `XEN_DMOP_inject_msi`).
    InjectMsi = 6,
    /// The device model wrote guest pages `arg0 .. arg0 + arg1` (gfns) behind the
    /// guest's back; mark them dirty (cf. `XEN_DMOP_modified_memory`).
    ModifiedMemory = 7,
    /// Make guest range 0xC0000–0xFFFFF read-only (`arg0` = 1) or writable (0) — the
    /// Xen platform device's ROM lock (cf. `XEN_DMOP_set_mem_type`).
    SetRomLock = 8,
    /// The guest asked the machine to shut down: `arg0` = a `SHUTDOWN_*` reason
    /// (cf. `XEN_DMOP_remote_shutdown`).
    Shutdown = 9,
    /// Guest time: RAX = nanoseconds since the guest started (the clock the guest's
    /// own timers use; instruction counts in deterministic mode). No arguments.
    Now = 10,
    /// Arm device timer `arg0` (a `TimerId` index) at guest time `arg1` ns, or cancel
    /// it with `arg1` = `u64::MAX`. Expiry arrives as an `IOREQ_TYPE_CHASSIS_TIMER`
    /// request in the platform slot.
    SetTimer = 11,
    /// Character output of a device: `arg0` = sink ([`CHAR_SINK_DEBUGCON`] or a UART
    /// index 0..4), `arg1` = stub-physical address of the bytes, `arg2` = length
    /// (at most [`CHAR_OUT_MAX`]); the bytes must lie in the stub's own RAM.
    CharOut = 12,
    /// The stub domain cannot go on: `arg0` = stub-physical address of a UTF-8 message,
    /// `arg1` = its length (at most [`CRASH_MSG_MAX`], in the stub's RAM). The
    /// hypervisor stops the guest and reports the message. Does not return.
    Crash = 13,
    /// The guest's ACPI PM timer register (PM_TMR) now decodes at port `arg0`
    /// (0 = nowhere: PMIOSE off). The hypervisor then answers guest reads of that port
    /// itself from guest time, as Xen's hypervisor does, so the hottest clock register
    /// of a Linux guest does not cross to the stub domain; its value is a pure function
    /// of guest time (`chassis_devices::piix4_pm::pm_timer_at`), the same in both modes.
    SetPmTimerPort = 14,
}

/// [`StubOp::CharOut`] sink for the debug console (port 0xe9).
pub const CHAR_SINK_DEBUGCON: u64 = 0x100;
/// Most bytes of one [`StubOp::CharOut`].
pub const CHAR_OUT_MAX: u64 = 4096;
/// Most bytes of a [`StubOp::Crash`] message.
pub const CRASH_MSG_MAX: u64 = 1024;

impl StubOp {
    pub const ALL: [StubOp; 14] = [
        StubOp::Ready,
        StubOp::IoreqDone,
        StubOp::SetIsaIrqLevel,
        StubOp::SetPciIntxLevel,
        StubOp::SetPciLinkRoute,
        StubOp::InjectMsi,
        StubOp::ModifiedMemory,
        StubOp::SetRomLock,
        StubOp::Shutdown,
        StubOp::Now,
        StubOp::SetTimer,
        StubOp::CharOut,
        StubOp::Crash,
        StubOp::SetPmTimerPort,
    ];

    pub const fn raw(self) -> u32 {
        self as u32
    }

    pub fn from_raw(v: u32) -> Option<Self> {
        Self::ALL.iter().copied().find(|op| op.raw() == v)
    }
}

impl TryFrom<u32> for StubOp {
    type Error = u32;
    fn try_from(v: u32) -> Result<Self, u32> {
        Self::from_raw(v).ok_or(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_xen_public_headers() {
        assert_eq!(HYPERVISOR_MEMORY_OP, 12);
        assert_eq!(HYPERVISOR_XEN_VERSION, 17);
        assert_eq!(HYPERVISOR_SCHED_OP, 29);
        assert_eq!(HYPERVISOR_EVENT_CHANNEL_OP, 32);
        assert_eq!(HYPERVISOR_HVM_OP, 34);
        assert_eq!(HYPERVISOR_DM_OP, 41);
        assert_eq!(
            (XENVER_VERSION, XENVER_EXTRAVERSION, XENVER_GET_FEATURES),
            (0, 1, 6)
        );
        assert_eq!(EVTCHNOP_SEND, 4);
    }

    #[test]
    fn stub_ops_round_trip() {
        for (i, op) in StubOp::ALL.iter().enumerate() {
            assert_eq!(op.raw(), i as u32 + 1, "dense, frozen numbering");
            assert_eq!(StubOp::try_from(op.raw()), Ok(*op));
        }
        assert_eq!(StubOp::try_from(0), Err(0));
        assert_eq!(StubOp::from_raw(15), None);
        assert_eq!(StubOp::from_raw(u32::MAX), None);
    }
}
