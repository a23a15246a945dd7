//! Local APIC in xAPIC mode (Intel SDM vol. 3, chapter "Advanced Programmable Interrupt
//! Controller"), as pure logic: registers, interrupt acceptance and priority, EOI, IPIs
//! and the APIC timer. One [`Lapic`] per vCPU.
//!
//! Used by the `emu` backend (`crate::emu::irqchip`); on `kvm` the local APICs are KVM's
//! in-kernel ones. The caller (`crate::emu::irqchip`) owns all routing: the LAPIC never
//! holds a reference to another vCPU or to the IOAPIC. An ICR write returns an [`Ipi`]
//! message ([`Output::Ipi`]) that the caller matches against every LAPIC with
//! [`Lapic::ipi_targets`] and hands to [`Lapic::deliver`]; an EOI of a level-triggered
//! vector returns [`Output::EoiBroadcast`] for the IOAPIC's `eoi`.
//!
//! Choices (documented, checked by the tests):
//! * Register page at [`LAPIC_BASE`] (0xfee00000). Version register [`LAPIC_VERSION`] =
//!   0x50014: version 0x14, six LVT entries (timer, thermal, performance counters, LINT0,
//!   LINT1, error; no CMCI), bit 24 clear, so no EOI-broadcast suppression (SVR bit 12 is
//!   reserved and every level-triggered EOI is broadcast).
//! * **x2APIC is not supported**: IA32_APIC_BASE.EXTD cannot be set (the write is refused
//!   so the CPU raises #GP) and CPUID.1:ECX bit 21 must not be advertised. The register
//!   page cannot be relocated either (Linux, SeaBIOS and hvmloader never move it).
//! * **APIC bus / timer clock: 1 GHz** ([`APIC_BUS_HZ`], as KVM and QEMU use), so one
//!   timer tick at divide-by-1 is exactly one guest nanosecond and all timer math is exact
//!   integer math on the caller-supplied guest time (`now_ns`). A count of `n` at divider
//!   `d` expires `n * d` ns after it was loaded. Linux's calibration (`calibrate_APIC_clock`
//!   with the PIT/`lapic_cal_handler`) therefore measures 1 000 000 000 Hz.
//! * **TSC-deadline mode** exists only when the LAPIC is built [`Lapic::with_tsc_deadline`]
//!   (and then CPUID.1:ECX bit 24 may be advertised). Without it, LVT timer bit 18 is
//!   reserved (reads 0, writes ignored) and writes to IA32_TSC_DEADLINE are ignored. The
//!   TSC is the CPU's business: the caller converts the deadline to guest ns.
//! * Virtual wire mode: the PIC's INTR reaches the CPU when LVT LINT0 is unmasked ExtINT
//!   or the APIC is hardware-disabled ([`Lapic::accepts_pic_intr`]). As in QEMU and KVM,
//!   the bootstrap processor's LINT0 resets to unmasked ExtINT so the PIC works before any
//!   firmware touches the APIC; hvmloader and SeaBIOS then program the same value.
//! * Fixed/lowest-priority interrupts arriving while the APIC is software-disabled (SVR
//!   bit 8 clear) are dropped, as KVM does. Lowest-priority arbitration is the router's
//!   business; [`Lapic::ipi_targets`] only says whether this APIC is in the set.
//! * The thermal and performance-counter LVTs are plain registers: nothing raises them.
//!   LINT1 (NMI in virtual wire mode) is a register; the caller delivers NMIs itself.
//! * ESR: illegal vectors sent (bit 5) and received (bit 6) and illegal register
//!   addresses (bit 7) are recorded; a write to ESR latches and clears them. An unmasked
//!   error LVT raises its vector once per newly recorded error.
//! * Register accesses: a register is the low dword of its 16-byte slot. Reads of 1, 2, 4
//!   or 8 bytes return the bytes of that slot (the upper 12 bytes read 0); only aligned
//!   4-byte writes take effect, other writes are ignored (as KVM does).
//!
//! No guest-controlled value can panic: no indexing with guest values, checked or
//! saturating arithmetic, no loops over guest-controlled counts.

use chassis_devices::io::Width;
use chassis_devices::snapshot::{LoadError, RecordReader, RecordWriter, Snapshot};

/// Guest-physical address of the register page.
pub const LAPIC_BASE: u64 = 0xfee0_0000;
/// Size of the register page.
pub const LAPIC_SIZE: u64 = 0x1000;
/// Version register: version 0x14, max LVT entry 5 (six LVTs).
pub const LAPIC_VERSION: u32 = 0x0005_0014;
/// APIC bus (timer input) frequency: 1 GHz, one tick per ns at divide-by-1.
pub const APIC_BUS_HZ: u64 = 1_000_000_000;
/// IA32_APIC_BASE.
pub const MSR_APIC_BASE: u32 = 0x1b;
/// IA32_TSC_DEADLINE.
pub const MSR_TSC_DEADLINE: u32 = 0x6e0;

/// IA32_APIC_BASE bits.
const BASE_BSP: u64 = 1 << 8;
const BASE_EXTD: u64 = 1 << 10;
const BASE_EN: u64 = 1 << 11;

// Register offsets.
const REG_ID: u64 = 0x020;
const REG_VERSION: u64 = 0x030;
const REG_TPR: u64 = 0x080;
const REG_APR: u64 = 0x090;
const REG_PPR: u64 = 0x0a0;
const REG_EOI: u64 = 0x0b0;
const REG_RRD: u64 = 0x0c0;
const REG_LDR: u64 = 0x0d0;
const REG_DFR: u64 = 0x0e0;
const REG_SVR: u64 = 0x0f0;
const REG_ISR: u64 = 0x100;
const REG_TMR: u64 = 0x180;
const REG_IRR: u64 = 0x200;
const REG_ESR: u64 = 0x280;
const REG_ICR_LO: u64 = 0x300;
const REG_ICR_HI: u64 = 0x310;
const REG_LVT_TIMER: u64 = 0x320;
const REG_LVT_ERROR: u64 = 0x370;
const REG_TIMER_INITIAL: u64 = 0x380;
const REG_TIMER_CURRENT: u64 = 0x390;
const REG_TIMER_DIVIDE: u64 = 0x3e0;

/// Index of each LVT in [`Lapic::lvt`] (register 0x320 + 0x10 * index).
pub const LVT_TIMER: usize = 0;
pub const LVT_THERMAL: usize = 1;
pub const LVT_PERF: usize = 2;
pub const LVT_LINT0: usize = 3;
pub const LVT_LINT1: usize = 4;
pub const LVT_ERROR: usize = 5;
const LVT_COUNT: usize = 6;

const LVT_MASKED: u32 = 1 << 16;
const LVT_RESET: u32 = LVT_MASKED;
/// Timer mode field (bits 17-18).
const TIMER_MODE_SHIFT: u32 = 17;
const TIMER_PERIODIC: u32 = 1 << 17;
const TIMER_TSC_DEADLINE: u32 = 2 << 17;

const SVR_ENABLE: u32 = 1 << 8;
const SVR_MASK: u32 = 0x3ff;
const ICR_LO_MASK: u32 = 0x000c_cfff;
const ICR_LEVEL_ASSERT: u32 = 1 << 14;
const ICR_TRIGGER_LEVEL: u32 = 1 << 15;
const TDCR_MASK: u32 = 0xb;

const ESR_SEND_ILLEGAL_VECTOR: u32 = 1 << 5;
const ESR_RECV_ILLEGAL_VECTOR: u32 = 1 << 6;
const ESR_ILLEGAL_REGISTER: u32 = 1 << 7;
const ESR_MASK: u32 = ESR_SEND_ILLEGAL_VECTOR | ESR_RECV_ILLEGAL_VECTOR | ESR_ILLEGAL_REGISTER;

/// Interrupt message delivery mode (ICR, LVT and IOAPIC redirection entry bits 8-10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryMode {
    Fixed,
    LowestPriority,
    Smi,
    Nmi,
    Init,
    /// Start-up IPI (SIPI); only from an ICR.
    StartUp,
    /// The vector comes from the 8259 PIC (INTA cycle).
    ExtInt,
}

impl DeliveryMode {
    /// Decode the 3-bit field; `None` for the reserved encoding 0b011.
    pub fn from_bits(bits: u32) -> Option<DeliveryMode> {
        match bits & 7 {
            0 => Some(DeliveryMode::Fixed),
            1 => Some(DeliveryMode::LowestPriority),
            2 => Some(DeliveryMode::Smi),
            4 => Some(DeliveryMode::Nmi),
            5 => Some(DeliveryMode::Init),
            6 => Some(DeliveryMode::StartUp),
            7 => Some(DeliveryMode::ExtInt),
            _ => None,
        }
    }

    /// The 3-bit encoding.
    pub fn bits(self) -> u32 {
        match self {
            DeliveryMode::Fixed => 0,
            DeliveryMode::LowestPriority => 1,
            DeliveryMode::Smi => 2,
            DeliveryMode::Nmi => 4,
            DeliveryMode::Init => 5,
            DeliveryMode::StartUp => 6,
            DeliveryMode::ExtInt => 7,
        }
    }
}

/// How the destination field is interpreted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestMode {
    /// An APIC ID (0xff = broadcast).
    Physical,
    /// A logical destination matched against LDR/DFR (flat or cluster model).
    Logical,
}

/// ICR destination shorthand (bits 18-19).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shorthand {
    /// Use the destination field.
    None,
    SelfOnly,
    AllIncludingSelf,
    AllExcludingSelf,
}

/// An inter-processor interrupt produced by an ICR write, for the caller to route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipi {
    /// APIC ID of the sender (for the self / all-but-self shorthands).
    pub source: u8,
    pub vector: u8,
    pub mode: DeliveryMode,
    pub dest_mode: DestMode,
    /// ICR bits 56-63.
    pub dest: u8,
    pub shorthand: Shorthand,
    pub level_triggered: bool,
}

/// What a register write asks the caller to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Route this IPI ([`Lapic::ipi_targets`], [`Lapic::deliver`]).
    Ipi(Ipi),
    /// A level-triggered vector was EOIed: pass it to the IOAPIC's `eoi`.
    EoiBroadcast(u8),
}

/// What [`Lapic::deliver`] did with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// The vector was set in IRR.
    Interrupt,
    /// Dropped (illegal vector, APIC disabled, reserved mode).
    Dropped,
    /// The CPU must take an NMI.
    Nmi,
    /// The CPU must take an SMI.
    Smi,
    /// The CPU must enter INIT (wait-for-SIPI on an AP; call [`Lapic::init_reset`]).
    Init,
    /// Start-up IPI with this vector (real-mode entry at vector << 12).
    StartUp(u8),
    /// The CPU must fetch the vector from the PIC.
    ExtInt,
}

/// Why an IA32_APIC_BASE write was refused (the CPU raises #GP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApicBaseError {
    /// x2APIC mode (EXTD) is not supported.
    X2ApicUnsupported,
    /// Reserved bits set, or the page moved away from 0xfee00000.
    Invalid,
}

/// A 256-bit vector set (IRR, ISR, TMR).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Bits256([u64; 4]);

impl Bits256 {
    fn word(v: u8) -> usize {
        (v >> 6) as usize & 3
    }
    fn get(&self, v: u8) -> bool {
        self.0
            .get(Self::word(v))
            .is_some_and(|w| w & (1 << (v & 63)) != 0)
    }
    fn set(&mut self, v: u8, on: bool) {
        if let Some(w) = self.0.get_mut(Self::word(v)) {
            if on {
                *w |= 1 << (v & 63);
            } else {
                *w &= !(1 << (v & 63));
            }
        }
    }
    fn highest(&self) -> Option<u8> {
        self.0
            .iter()
            .enumerate()
            .rev()
            .find(|(_, w)| **w != 0)
            .map(|(i, w)| (i as u8) * 64 + (63 - w.leading_zeros() as u8))
    }
    /// Dword `i` (0..8) as the registers show it.
    fn dword(&self, i: u64) -> u32 {
        let w = self.0.get((i / 2) as usize).copied().unwrap_or(0);
        if i.is_multiple_of(2) {
            w as u32
        } else {
            (w >> 32) as u32
        }
    }
}

/// One local APIC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lapic {
    apic_base: u64,
    tsc_deadline_supported: bool,
    id: u8,
    tpr: u32,
    ldr: u32,
    dfr: u32,
    svr: u32,
    /// ESR as read (latched by the last ESR write).
    esr: u32,
    /// Errors recorded since the last ESR write.
    esr_pending: u32,
    icr_lo: u32,
    icr_hi: u32,
    lvt: [u32; LVT_COUNT],
    irr: Bits256,
    isr: Bits256,
    tmr: Bits256,
    /// TMICT.
    timer_initial: u32,
    /// TDCR.
    timer_divide: u32,
    /// Guest ns at which the count was (re)loaded.
    timer_anchor_ns: u64,
    /// Count at `timer_anchor_ns`; 0 = not counting.
    timer_count0: u32,
    /// IA32_TSC_DEADLINE as the guest wrote it; 0 = disarmed.
    tsc_deadline: u64,
    /// The same deadline in guest ns.
    tsc_deadline_ns: u64,
}

impl Lapic {
    /// A LAPIC in its power-up state, enabled in IA32_APIC_BASE, software-disabled.
    pub fn new(apic_id: u8, bsp: bool) -> Lapic {
        let mut l = Lapic {
            apic_base: LAPIC_BASE | BASE_EN | if bsp { BASE_BSP } else { 0 },
            tsc_deadline_supported: false,
            id: apic_id,
            tpr: 0,
            ldr: 0,
            dfr: 0xffff_ffff,
            svr: 0xff,
            esr: 0,
            esr_pending: 0,
            icr_lo: 0,
            icr_hi: 0,
            lvt: [LVT_RESET; LVT_COUNT],
            irr: Bits256::default(),
            isr: Bits256::default(),
            tmr: Bits256::default(),
            timer_initial: 0,
            timer_divide: 0,
            timer_anchor_ns: 0,
            timer_count0: 0,
            tsc_deadline: 0,
            tsc_deadline_ns: 0,
        };
        l.reset_registers();
        l
    }

    /// Enable TSC-deadline timer mode (only if CPUID.1:ECX bit 24 is advertised).
    pub fn with_tsc_deadline(mut self) -> Lapic {
        self.tsc_deadline_supported = true;
        self
    }

    pub fn tsc_deadline_supported(&self) -> bool {
        self.tsc_deadline_supported
    }

    /// The APIC ID (register 0x20 bits 24-31).
    pub fn id(&self) -> u8 {
        self.id
    }

    pub fn is_bsp(&self) -> bool {
        self.apic_base & BASE_BSP != 0
    }

    fn hw_enabled(&self) -> bool {
        self.apic_base & BASE_EN != 0
    }

    /// Hardware- and software-enabled.
    pub fn enabled(&self) -> bool {
        self.hw_enabled() && self.svr & SVR_ENABLE != 0
    }

    /// Power-up register values (ID and IA32_APIC_BASE are kept by the caller).
    fn reset_registers(&mut self) {
        let bsp = self.is_bsp();
        self.tpr = 0;
        self.ldr = 0;
        self.dfr = 0xffff_ffff;
        self.svr = 0xff;
        self.esr = 0;
        self.esr_pending = 0;
        self.icr_lo = 0;
        self.icr_hi = 0;
        self.lvt = [LVT_RESET; LVT_COUNT];
        if bsp {
            // Virtual wire mode from reset, as QEMU and KVM do for the BSP.
            self.lvt[LVT_LINT0] = DeliveryMode::ExtInt.bits() << 8;
        }
        self.irr = Bits256::default();
        self.isr = Bits256::default();
        self.tmr = Bits256::default();
        self.timer_initial = 0;
        self.timer_divide = 0;
        self.timer_anchor_ns = 0;
        self.timer_count0 = 0;
        self.tsc_deadline = 0;
        self.tsc_deadline_ns = 0;
    }

    /// INIT (IPI or INIT signal): registers back to power-up values; the APIC ID and
    /// IA32_APIC_BASE survive.
    pub fn init_reset(&mut self) {
        self.reset_registers();
    }

    // ---- IA32_APIC_BASE / IA32_TSC_DEADLINE ----

    pub fn read_apic_base(&self) -> u64 {
        self.apic_base
    }

    /// WRMSR IA32_APIC_BASE. BSP is read-only; EXTD (x2APIC) and relocation are refused.
    /// Clearing EN hardware-disables the APIC and resets its registers.
    pub fn write_apic_base(&mut self, value: u64) -> Result<(), ApicBaseError> {
        if value & BASE_EXTD != 0 {
            return Err(ApicBaseError::X2ApicUnsupported);
        }
        // The page address (with every bit above it) must stay 0xfee00000; of the low
        // 12 bits only BSP (ignored) and EN exist.
        if value & !0xfff != LAPIC_BASE || value & 0xfff & !(BASE_BSP | BASE_EN) != 0 {
            return Err(ApicBaseError::Invalid);
        }
        let was = self.hw_enabled();
        self.apic_base = LAPIC_BASE | (self.apic_base & BASE_BSP) | (value & BASE_EN);
        if was && !self.hw_enabled() {
            self.reset_registers();
        }
        Ok(())
    }

    /// RDMSR IA32_TSC_DEADLINE: 0 when disarmed, fired, or not in TSC-deadline mode.
    pub fn read_tsc_deadline(&self) -> u64 {
        if self.timer_mode() == TIMER_TSC_DEADLINE {
            self.tsc_deadline
        } else {
            0
        }
    }

    /// WRMSR IA32_TSC_DEADLINE: `tsc` as written (0 disarms), `deadline_ns` the same
    /// moment in guest ns (converted by the caller). Ignored outside TSC-deadline mode.
    pub fn write_tsc_deadline(&mut self, tsc: u64, deadline_ns: u64) {
        if self.timer_mode() != TIMER_TSC_DEADLINE {
            return;
        }
        self.tsc_deadline = tsc;
        self.tsc_deadline_ns = if tsc == 0 { 0 } else { deadline_ns };
    }

    // ---- priorities ----

    /// CR8 reads TPR bits 7:4.
    pub fn tpr(&self) -> u8 {
        self.tpr as u8
    }

    /// CR8 writes (value already shifted into TPR bits 7:4 by the caller) or TPR writes.
    pub fn set_tpr(&mut self, tpr: u8) {
        self.tpr = tpr as u32;
    }

    fn isrv(&self) -> u32 {
        self.isr.highest().map_or(0, |v| v as u32)
    }

    fn irrv(&self) -> u32 {
        self.irr.highest().map_or(0, |v| v as u32)
    }

    /// Processor priority: TPR if its class is at least the in-service class, else the
    /// in-service class.
    pub fn ppr(&self) -> u8 {
        let isrv = self.isrv();
        if (self.tpr & 0xf0) >= (isrv & 0xf0) {
            self.tpr as u8
        } else {
            (isrv & 0xf0) as u8
        }
    }

    /// Arbitration priority (lowest-priority delivery): TPR if its class is at least
    /// the in-service and pending classes, else the highest of the three classes.
    pub fn apr(&self) -> u8 {
        let (tpr, isrv, irrv) = (self.tpr & 0xf0, self.isrv() & 0xf0, self.irrv() & 0xf0);
        if tpr >= isrv && tpr >= irrv {
            self.tpr as u8
        } else {
            tpr.max(isrv).max(irrv) as u8
        }
    }

    // ---- interrupt acceptance ----

    fn record_error(&mut self, bit: u32) {
        let new = bit & !self.esr_pending != 0;
        self.esr_pending |= bit;
        let lvt = self.lvt[LVT_ERROR];
        if new && lvt & LVT_MASKED == 0 && self.enabled() {
            let v = lvt as u8;
            // No recursion: an illegal error vector is recorded, not re-raised.
            if v >= 16 {
                self.set_irr(v, false);
            } else {
                self.esr_pending |= ESR_RECV_ILLEGAL_VECTOR;
            }
        }
    }

    fn set_irr(&mut self, vector: u8, level_triggered: bool) {
        self.irr.set(vector, true);
        self.tmr.set(vector, level_triggered);
    }

    /// Accept a fixed (or lowest-priority) interrupt into IRR, setting TMR for a
    /// level-triggered one. Returns false if it was dropped: vectors 0-15 are illegal
    /// (ESR bit 6), and a disabled APIC accepts nothing.
    pub fn accept(&mut self, vector: u8, level_triggered: bool) -> bool {
        if !self.enabled() {
            return false;
        }
        if vector < 16 {
            self.record_error(ESR_RECV_ILLEGAL_VECTOR);
            return false;
        }
        self.set_irr(vector, level_triggered);
        true
    }

    /// Deliver a routed message (IPI or IOAPIC redirection) to this APIC.
    pub fn deliver(&mut self, mode: DeliveryMode, vector: u8, level_triggered: bool) -> Accepted {
        if !self.hw_enabled() {
            return Accepted::Dropped;
        }
        match mode {
            DeliveryMode::Fixed | DeliveryMode::LowestPriority => {
                if self.accept(vector, level_triggered) {
                    Accepted::Interrupt
                } else {
                    Accepted::Dropped
                }
            }
            DeliveryMode::Nmi => Accepted::Nmi,
            DeliveryMode::Smi => Accepted::Smi,
            DeliveryMode::Init => Accepted::Init,
            DeliveryMode::StartUp => Accepted::StartUp(vector),
            DeliveryMode::ExtInt => Accepted::ExtInt,
        }
    }

    /// The vector the CPU should take at its next interrupt window: the highest IRR
    /// vector whose priority class is above PPR's.
    pub fn pending_vector(&self) -> Option<u8> {
        if !self.enabled() {
            return None;
        }
        let v = self.irr.highest()?;
        if (v & 0xf0) > (self.ppr() & 0xf0) {
            Some(v)
        } else {
            None
        }
    }

    /// INTA: move the pending vector from IRR to ISR and return it; the spurious vector
    /// (SVR bits 0-7) if nothing is deliverable any more.
    pub fn acknowledge(&mut self) -> u8 {
        match self.pending_vector() {
            Some(v) => {
                self.irr.set(v, false);
                self.isr.set(v, true);
                v
            }
            None => self.svr as u8,
        }
    }

    /// EOI: retire the highest in-service vector. Returns it if it was level-triggered
    /// (TMR set): the IOAPIC must see the EOI broadcast.
    pub fn eoi(&mut self) -> Option<u8> {
        let v = self.isr.highest()?;
        self.isr.set(v, false);
        if self.tmr.get(v) { Some(v) } else { None }
    }

    /// Whether the PIC's INTR output reaches this CPU (virtual wire mode): LINT0
    /// unmasked ExtINT, or the APIC hardware-disabled.
    pub fn accepts_pic_intr(&self) -> bool {
        if !self.hw_enabled() {
            return true;
        }
        let lvt0 = self.lvt[LVT_LINT0];
        lvt0 & LVT_MASKED == 0 && (lvt0 >> 8) & 7 == DeliveryMode::ExtInt.bits()
    }

    // ---- destinations ----

    /// Whether a (dest mode, dest) pair addresses this APIC.
    pub fn is_destination(&self, dest_mode: DestMode, dest: u8) -> bool {
        if !self.hw_enabled() {
            return false;
        }
        match dest_mode {
            DestMode::Physical => dest == 0xff || dest == self.id,
            DestMode::Logical => {
                let logical = (self.ldr >> 24) as u8;
                if dest == 0xff {
                    return true;
                }
                if self.dfr >> 28 == 0xf {
                    // Flat model: 8-bit mask.
                    logical & dest != 0
                } else {
                    // Cluster model: cluster in bits 4-7, member mask in bits 0-3.
                    (logical >> 4) == (dest >> 4) && logical & dest & 0xf != 0
                }
            }
        }
    }

    /// Whether an IPI (from any APIC, this one included) targets this APIC.
    pub fn ipi_targets(&self, ipi: &Ipi) -> bool {
        if !self.hw_enabled() {
            return false;
        }
        match ipi.shorthand {
            Shorthand::None => self.is_destination(ipi.dest_mode, ipi.dest),
            Shorthand::SelfOnly => ipi.source == self.id,
            Shorthand::AllIncludingSelf => true,
            Shorthand::AllExcludingSelf => ipi.source != self.id,
        }
    }

    // ---- timer ----

    fn timer_mode(&self) -> u32 {
        let mode = self.lvt[LVT_TIMER] & (3 << TIMER_MODE_SHIFT);
        if !self.tsc_deadline_supported {
            mode & TIMER_PERIODIC
        } else {
            mode
        }
    }

    /// The divider TDCR selects: 2, 4, ... 128, or 1.
    fn divider(&self) -> u64 {
        let code = ((self.timer_divide & 8) >> 1) | (self.timer_divide & 3);
        if code == 7 { 1 } else { 2u64 << code }
    }

    /// Guest ns of the next timer expiry, if the timer is running (masked or not). The
    /// caller arms its host timer for it and calls [`Lapic::poll_timer`] then.
    pub fn next_timer_deadline(&self) -> Option<u64> {
        if !self.hw_enabled() {
            return None;
        }
        if self.timer_mode() == TIMER_TSC_DEADLINE {
            return (self.tsc_deadline != 0).then_some(self.tsc_deadline_ns);
        }
        if self.timer_count0 == 0 {
            return None;
        }
        let span = (self.timer_count0 as u64).checked_mul(self.divider())?;
        self.timer_anchor_ns.checked_add(span)
    }

    /// Process a timer expiry due at or before `now_ns`: sets the timer vector in IRR
    /// (unless LVT timer is masked) and re-arms a periodic timer at the next multiple of
    /// its period (missed periods are coalesced: IRR holds one bit). Returns whether the
    /// timer expired.
    pub fn poll_timer(&mut self, now_ns: u64) -> bool {
        let Some(due) = self.next_timer_deadline() else {
            return false;
        };
        if now_ns < due {
            return false;
        }
        let mode = self.timer_mode();
        if mode == TIMER_TSC_DEADLINE {
            self.tsc_deadline = 0;
            self.tsc_deadline_ns = 0;
        } else if mode == TIMER_PERIODIC && self.timer_initial != 0 {
            let period = self.timer_initial as u64 * self.divider();
            // due <= now, so due + k*period <= now cannot overflow.
            let k = (now_ns - due) / period;
            self.timer_anchor_ns = due + k * period;
            self.timer_count0 = self.timer_initial;
        } else {
            self.timer_count0 = 0;
        }
        let lvt = self.lvt[LVT_TIMER];
        if lvt & LVT_MASKED == 0 {
            self.accept(lvt as u8, false);
        }
        true
    }

    /// TMCCT at `now_ns` (after [`Lapic::poll_timer`]).
    fn current_count(&self, now_ns: u64) -> u32 {
        if self.timer_mode() == TIMER_TSC_DEADLINE || self.timer_count0 == 0 {
            return 0;
        }
        let elapsed = now_ns.saturating_sub(self.timer_anchor_ns) / self.divider();
        (self.timer_count0 as u64).saturating_sub(elapsed) as u32
    }

    fn stop_timer(&mut self) {
        self.timer_initial = 0;
        self.timer_count0 = 0;
        self.tsc_deadline = 0;
        self.tsc_deadline_ns = 0;
    }

    // ---- MMIO ----

    /// The 32-bit register at a 16-byte aligned offset, `None` for reserved offsets.
    fn read_reg(&self, reg: u64, now_ns: u64) -> Option<u32> {
        Some(match reg {
            REG_ID => (self.id as u32) << 24,
            REG_VERSION => LAPIC_VERSION,
            REG_TPR => self.tpr,
            REG_APR => self.apr() as u32,
            REG_PPR => self.ppr() as u32,
            REG_EOI | REG_RRD => 0,
            REG_LDR => self.ldr,
            REG_DFR => self.dfr,
            REG_SVR => self.svr,
            0x100..=0x170 => self.isr.dword((reg - REG_ISR) >> 4),
            0x180..=0x1f0 => self.tmr.dword((reg - REG_TMR) >> 4),
            0x200..=0x270 => self.irr.dword((reg - REG_IRR) >> 4),
            REG_ESR => self.esr,
            REG_ICR_LO => self.icr_lo,
            REG_ICR_HI => self.icr_hi,
            REG_LVT_TIMER..=REG_LVT_ERROR => {
                let i = ((reg - REG_LVT_TIMER) >> 4) as usize;
                let v = self.lvt.get(i).copied().unwrap_or(0);
                if i == LVT_TIMER && !self.tsc_deadline_supported {
                    v & !TIMER_TSC_DEADLINE
                } else {
                    v
                }
            }
            REG_TIMER_INITIAL => self.timer_initial,
            REG_TIMER_CURRENT => self.current_count(now_ns),
            REG_TIMER_DIVIDE => self.timer_divide,
            _ => return None,
        })
    }

    /// Read `width` bytes at `offset` within the register page. A hardware-disabled
    /// APIC reads 0 (the caller should treat the page as unclaimed then).
    pub fn mmio_read(&mut self, offset: u64, width: Width, now_ns: u64) -> u64 {
        if !self.hw_enabled() || offset >= LAPIC_SIZE {
            return 0;
        }
        self.poll_timer(now_ns);
        let slot = offset & !0xf;
        let reg = match self.read_reg(slot, now_ns) {
            Some(v) => v,
            None => {
                self.record_error(ESR_ILLEGAL_REGISTER);
                0
            }
        };
        // The slot as 16 little-endian bytes: the register, then 12 zero bytes.
        let in_slot = offset & 0xf;
        if in_slot >= 4 {
            return 0;
        }
        let v = (reg as u64) >> (in_slot * 8);
        v & width.mask()
    }

    /// Write `width` bytes at `offset`. Only aligned 4-byte writes take effect.
    pub fn mmio_write(
        &mut self,
        offset: u64,
        width: Width,
        value: u64,
        now_ns: u64,
    ) -> Option<Output> {
        if !self.hw_enabled() || offset >= LAPIC_SIZE {
            return None;
        }
        self.poll_timer(now_ns);
        if width != Width::B4 || offset & 0xf != 0 {
            return None;
        }
        self.write_reg(offset, value as u32, now_ns)
    }

    fn write_reg(&mut self, reg: u64, v: u32, now_ns: u64) -> Option<Output> {
        match reg {
            REG_ID => self.id = (v >> 24) as u8,
            REG_TPR => self.tpr = v & 0xff,
            REG_EOI => return self.eoi().map(Output::EoiBroadcast),
            REG_LDR => self.ldr = v & 0xff00_0000,
            REG_DFR => {
                // Models: 1111 flat, 0000 cluster; other encodings are ignored.
                if matches!(v >> 28, 0 | 0xf) {
                    self.dfr = (v & 0xf000_0000) | 0x0fff_ffff;
                }
            }
            REG_SVR => {
                self.svr = v & SVR_MASK;
                if self.svr & SVR_ENABLE == 0 {
                    for l in self.lvt.iter_mut() {
                        *l |= LVT_MASKED;
                    }
                }
            }
            REG_ESR => {
                self.esr = self.esr_pending & ESR_MASK;
                self.esr_pending = 0;
            }
            REG_ICR_LO => return self.write_icr(v).map(Output::Ipi),
            REG_ICR_HI => self.icr_hi = v & 0xff00_0000,
            REG_LVT_TIMER..=REG_LVT_ERROR => {
                let i = ((reg - REG_LVT_TIMER) >> 4) as usize;
                self.write_lvt(i, v);
            }
            REG_TIMER_INITIAL => {
                if self.timer_mode() != TIMER_TSC_DEADLINE {
                    self.timer_initial = v;
                    self.timer_count0 = v;
                    self.timer_anchor_ns = now_ns;
                }
            }
            REG_TIMER_DIVIDE => {
                // Keep the current count; it continues at the new rate from now.
                let cur = self.current_count(now_ns);
                self.timer_divide = v & TDCR_MASK;
                if self.timer_count0 != 0 {
                    self.timer_count0 = cur;
                    self.timer_anchor_ns = now_ns;
                }
            }
            // Read-only registers: writes ignored.
            REG_VERSION | REG_APR | REG_PPR | REG_RRD | REG_TIMER_CURRENT => {}
            0x100..=0x270 => {}
            _ => self.record_error(ESR_ILLEGAL_REGISTER),
        }
        None
    }

    fn write_lvt(&mut self, i: usize, v: u32) {
        let writable = match i {
            LVT_TIMER => {
                let mode_bits = if self.tsc_deadline_supported {
                    3 << TIMER_MODE_SHIFT
                } else {
                    TIMER_PERIODIC
                };
                0x0001_00ff | mode_bits
            }
            LVT_THERMAL | LVT_PERF => 0x0001_07ff,
            LVT_LINT0 | LVT_LINT1 => 0x0001_a7ff,
            _ => 0x0001_00ff,
        };
        let Some(old) = self.lvt.get(i).copied() else {
            return;
        };
        let mut new = (v & writable) | (old & !writable & (1 << 14));
        if self.svr & SVR_ENABLE == 0 {
            new |= LVT_MASKED;
        }
        if i == LVT_TIMER {
            let mut mode = new & (3 << TIMER_MODE_SHIFT);
            if mode == 3 << TIMER_MODE_SHIFT {
                // Reserved mode: keep the old mode.
                new = (new & !(3 << TIMER_MODE_SHIFT)) | (old & (3 << TIMER_MODE_SHIFT));
                mode = old & (3 << TIMER_MODE_SHIFT);
            }
            let was_tsc = old & (3 << TIMER_MODE_SHIFT) == TIMER_TSC_DEADLINE;
            if was_tsc != (mode == TIMER_TSC_DEADLINE) {
                self.stop_timer();
            }
        }
        if let Some(slot) = self.lvt.get_mut(i) {
            *slot = new;
        }
    }

    fn write_icr(&mut self, v: u32) -> Option<Ipi> {
        self.icr_lo = v & ICR_LO_MASK;
        let vector = v as u8;
        let mode = DeliveryMode::from_bits(v >> 8)?;
        if mode == DeliveryMode::ExtInt {
            return None;
        }
        let level_triggered = v & ICR_TRIGGER_LEVEL != 0;
        if mode == DeliveryMode::Init && level_triggered && v & ICR_LEVEL_ASSERT == 0 {
            // INIT level de-assert: only synchronises arbitration IDs; no effect since
            // the Pentium 4.
            return None;
        }
        if matches!(mode, DeliveryMode::Fixed | DeliveryMode::LowestPriority) && vector < 16 {
            self.record_error(ESR_SEND_ILLEGAL_VECTOR);
            return None;
        }
        let shorthand = match (v >> 18) & 3 {
            0 => Shorthand::None,
            1 => Shorthand::SelfOnly,
            2 => Shorthand::AllIncludingSelf,
            _ => Shorthand::AllExcludingSelf,
        };
        Some(Ipi {
            source: self.id,
            vector,
            mode,
            dest_mode: if v & (1 << 11) != 0 {
                DestMode::Logical
            } else {
                DestMode::Physical
            },
            dest: (self.icr_hi >> 24) as u8,
            shorthand,
            level_triggered,
        })
    }

    /// LVT entry `i` ([`LVT_TIMER`] ... [`LVT_ERROR`]).
    pub fn lvt(&self, i: usize) -> u32 {
        self.lvt.get(i).copied().unwrap_or(0)
    }
}

impl Snapshot for Lapic {
    const NAME: &'static str = "lapic";
    const VERSION: u16 = 1;

    fn save(&self, w: &mut RecordWriter) {
        w.u64(self.apic_base);
        w.bool(self.tsc_deadline_supported);
        w.u8(self.id);
        for r in [
            self.tpr,
            self.ldr,
            self.dfr,
            self.svr,
            self.esr,
            self.esr_pending,
            self.icr_lo,
            self.icr_hi,
        ] {
            w.u32(r);
        }
        for l in self.lvt {
            w.u32(l);
        }
        for set in [&self.irr, &self.isr, &self.tmr] {
            for word in set.0 {
                w.u64(word);
            }
        }
        w.u32(self.timer_initial);
        w.u32(self.timer_divide);
        w.u64(self.timer_anchor_ns);
        w.u32(self.timer_count0);
        w.u64(self.tsc_deadline);
        w.u64(self.tsc_deadline_ns);
    }

    fn load(&mut self, _version: u16, r: &mut RecordReader<'_>) -> Result<(), LoadError> {
        let bad = |field| LoadError::Invalid {
            name: Self::NAME,
            field,
        };
        self.apic_base = r.u64()?;
        if self.apic_base & !(BASE_BSP | BASE_EN) != LAPIC_BASE {
            return Err(bad("apic_base"));
        }
        self.tsc_deadline_supported = r.bool(Self::NAME, "tsc_deadline_supported")?;
        self.id = r.u8()?;
        self.tpr = r.u32()?;
        self.ldr = r.u32()?;
        self.dfr = r.u32()?;
        self.svr = r.u32()?;
        self.esr = r.u32()?;
        self.esr_pending = r.u32()?;
        self.icr_lo = r.u32()?;
        self.icr_hi = r.u32()?;
        if self.tpr > 0xff {
            return Err(bad("tpr"));
        }
        if self.ldr & 0x00ff_ffff != 0 {
            return Err(bad("ldr"));
        }
        if self.dfr & 0x0fff_ffff != 0x0fff_ffff || !matches!(self.dfr >> 28, 0 | 0xf) {
            return Err(bad("dfr"));
        }
        if self.svr & !SVR_MASK != 0 {
            return Err(bad("svr"));
        }
        if self.esr & !ESR_MASK != 0 || self.esr_pending & !ESR_MASK != 0 {
            return Err(bad("esr"));
        }
        if self.icr_lo & !ICR_LO_MASK != 0 || self.icr_hi & 0x00ff_ffff != 0 {
            return Err(bad("icr"));
        }
        for i in 0..LVT_COUNT {
            let v = r.u32()?;
            let allowed = match i {
                LVT_TIMER if self.tsc_deadline_supported => 0x0007_00ff,
                LVT_TIMER => 0x0003_00ff,
                LVT_THERMAL | LVT_PERF => 0x0001_07ff,
                LVT_LINT0 | LVT_LINT1 => 0x0001_e7ff,
                _ => 0x0001_00ff,
            };
            if v & !allowed != 0 || (i == LVT_TIMER && v & (3 << TIMER_MODE_SHIFT) == 3 << 17) {
                return Err(bad("lvt"));
            }
            self.lvt[i] = v;
        }
        for set in [&mut self.irr, &mut self.isr, &mut self.tmr] {
            for word in set.0.iter_mut() {
                *word = r.u64()?;
            }
        }
        self.timer_initial = r.u32()?;
        self.timer_divide = r.u32()?;
        self.timer_anchor_ns = r.u64()?;
        self.timer_count0 = r.u32()?;
        self.tsc_deadline = r.u64()?;
        self.tsc_deadline_ns = r.u64()?;
        if self.timer_divide & !TDCR_MASK != 0 {
            return Err(bad("timer_divide"));
        }
        if self.timer_count0 > self.timer_initial {
            return Err(bad("timer_count0"));
        }
        let tsc_mode = self.timer_mode() == TIMER_TSC_DEADLINE;
        if (tsc_mode && (self.timer_initial != 0 || self.timer_count0 != 0))
            || (!tsc_mode && (self.tsc_deadline != 0 || self.tsc_deadline_ns != 0))
            || (self.tsc_deadline == 0 && self.tsc_deadline_ns != 0)
        {
            return Err(bad("timer_mode"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chassis_devices::snapshot::{HEADER_LEN, load_record, save_record};

    const T0: u64 = 1_000_000;

    fn rd(l: &mut Lapic, off: u64, now: u64) -> u32 {
        l.mmio_read(off, Width::B4, now) as u32
    }

    fn wr(l: &mut Lapic, off: u64, v: u32, now: u64) -> Option<Output> {
        l.mmio_write(off, Width::B4, v as u64, now)
    }

    /// What hvmloader's apic_setup and SeaBIOS leave: SVR enabled with vector 0xff,
    /// LINT0 ExtINT, LINT1 NMI.
    fn firmware_setup(l: &mut Lapic) {
        wr(l, REG_SVR, 0x1ff, 0);
        wr(l, 0x350, 7 << 8, 0);
        wr(l, 0x360, 4 << 8, 0);
    }

    #[test]
    fn power_up_state() {
        let mut l = Lapic::new(0, true);
        assert_eq!(rd(&mut l, REG_VERSION, 0), 0x50014);
        assert_eq!(rd(&mut l, REG_ID, 0), 0);
        assert_eq!(rd(&mut l, REG_DFR, 0), 0xffff_ffff);
        assert_eq!(rd(&mut l, REG_SVR, 0), 0xff);
        assert_eq!(rd(&mut l, 0x320, 0), LVT_MASKED);
        // BSP: virtual wire mode from reset, so the PIC works at once.
        assert_eq!(rd(&mut l, 0x350, 0), 0x700);
        assert!(l.accepts_pic_intr());
        assert_eq!(l.read_apic_base(), 0xfee0_0900);
        let ap = Lapic::new(1, false);
        assert!(!ap.accepts_pic_intr());
        assert_eq!(ap.read_apic_base(), 0xfee0_0800);
        // Software-disabled: nothing is accepted.
        let mut l = Lapic::new(0, true);
        assert!(!l.accept(0x30, false));
    }

    #[test]
    fn hvmloader_virtual_wire_mode() {
        let mut l = Lapic::new(0, true);
        firmware_setup(&mut l);
        assert_eq!(rd(&mut l, REG_SVR, 0), 0x1ff);
        assert_eq!(rd(&mut l, 0x350, 0), 0x700);
        assert_eq!(rd(&mut l, 0x360, 0), 0x400);
        assert!(l.accepts_pic_intr());
        // Linux masks LINT0 on an AP / once the IOAPIC takes over.
        wr(&mut l, 0x350, 0x700 | LVT_MASKED, 0);
        assert!(!l.accepts_pic_intr());
        // Hardware-disabled: INTR goes straight to the CPU.
        l.write_apic_base(LAPIC_BASE | BASE_BSP).unwrap();
        assert!(l.accepts_pic_intr());
        assert_eq!(l.mmio_read(REG_VERSION, Width::B4, 0), 0);
    }

    /// Linux's setup_local_APIC order on the BSP (flat logical mode), then
    /// end_local_APIC_setup (ESR, LVTERR, LVTT masked).
    #[test]
    fn linux_setup_local_apic() {
        let mut l = Lapic::new(0, true);
        firmware_setup(&mut l);
        // init_apic_ldr: flat model, logical ID 1 << cpu.
        wr(&mut l, REG_DFR, 0xffff_ffff, 0);
        let ldr = rd(&mut l, REG_LDR, 0) & !0xff00_0000;
        wr(&mut l, REG_LDR, ldr | (1 << 24), 0);
        assert_eq!(rd(&mut l, REG_LDR, 0), 0x0100_0000);
        // TPR := 0.
        let tpr = rd(&mut l, REG_TPR, 0) & !0xff;
        wr(&mut l, REG_TPR, tpr, 0);
        // apic_pending_intr_clear: ISR/IRR all zero.
        for i in 0..8 {
            assert_eq!(rd(&mut l, REG_ISR + i * 0x10, 0), 0);
            assert_eq!(rd(&mut l, REG_IRR + i * 0x10, 0), 0);
        }
        // SPIV: enable, spurious vector 0xff.
        let svr = rd(&mut l, REG_SVR, 0) & !0xff;
        wr(&mut l, REG_SVR, svr | 0x100 | 0xff, 0);
        assert!(l.enabled());
        // LVTPC: NMI.
        wr(&mut l, 0x340, 4 << 8, 0);
        // LVT0: BSP keeps ExtINT (PIC mode while the IOAPIC is being set up).
        let masked = rd(&mut l, 0x350, 0) & LVT_MASKED;
        assert_eq!(masked, 0);
        wr(&mut l, 0x350, 0x700, 0);
        // LVT1: NMI.
        wr(&mut l, 0x360, 0x400, 0);
        // lapic_setup_esr: ESR 0 twice, read, then LVTERR.
        wr(&mut l, REG_ESR, 0, 0);
        wr(&mut l, REG_ESR, 0, 0);
        assert_eq!(rd(&mut l, REG_ESR, 0), 0);
        wr(&mut l, 0x370, 0xfe, 0);
        // LVTT masked with LOCAL_TIMER_VECTOR.
        let lvtt = rd(&mut l, 0x320, 0);
        wr(&mut l, 0x320, lvtt | LVT_MASKED | 0xec, 0);
        assert_eq!(rd(&mut l, 0x320, 0), LVT_MASKED | 0xec);
        assert!(l.is_destination(DestMode::Logical, 0x01));
        assert!(!l.is_destination(DestMode::Logical, 0x02));
        assert!(l.is_destination(DestMode::Physical, 0));
        assert!(l.is_destination(DestMode::Physical, 0xff));

        // An interrupt from the IOAPIC: accept, window, INTA, EOI.
        assert!(l.accept(0x31, false));
        assert_eq!(l.pending_vector(), Some(0x31));
        assert_eq!(rd(&mut l, REG_IRR + 0x10, 0), 1 << 17);
        assert_eq!(l.acknowledge(), 0x31);
        assert_eq!(rd(&mut l, REG_ISR + 0x10, 0), 1 << 17);
        assert_eq!(rd(&mut l, REG_PPR, 0), 0x30);
        assert_eq!(wr(&mut l, REG_EOI, 0, 0), None);
        assert_eq!(rd(&mut l, REG_ISR + 0x10, 0), 0);
        assert_eq!(l.acknowledge(), 0xff, "spurious when nothing pending");
    }

    #[test]
    fn priorities_and_nesting() {
        let mut l = Lapic::new(0, true);
        firmware_setup(&mut l);
        l.accept(0x41, false);
        assert_eq!(l.acknowledge(), 0x41);
        // Same class is blocked, higher class preempts.
        l.accept(0x45, false);
        assert_eq!(l.pending_vector(), None);
        l.accept(0x51, false);
        assert_eq!(l.pending_vector(), Some(0x51));
        assert_eq!(l.acknowledge(), 0x51);
        assert_eq!(l.ppr(), 0x50);
        l.eoi();
        assert_eq!(l.ppr(), 0x40);
        l.eoi();
        assert_eq!(l.pending_vector(), Some(0x45));
        // TPR blocks classes at or below it.
        l.set_tpr(0x40);
        assert_eq!(l.pending_vector(), None);
        assert_eq!(l.apr(), 0x40);
        l.set_tpr(0x30);
        assert_eq!(l.pending_vector(), Some(0x45));
        assert_eq!(l.apr(), 0x40);
        // Illegal vectors are refused and recorded.
        assert!(!l.accept(3, false));
        wr(&mut l, REG_ESR, 0, 0);
        assert_eq!(rd(&mut l, REG_ESR, 0), ESR_RECV_ILLEGAL_VECTOR);
        wr(&mut l, REG_ESR, 0, 0);
        assert_eq!(rd(&mut l, REG_ESR, 0), 0);
    }

    #[test]
    fn level_triggered_eoi_is_broadcast() {
        let mut l = Lapic::new(0, true);
        firmware_setup(&mut l);
        assert_eq!(
            l.deliver(DeliveryMode::Fixed, 0x39, true),
            Accepted::Interrupt
        );
        assert_eq!(rd(&mut l, REG_TMR + 0x10, 0), 1 << 25);
        assert_eq!(l.acknowledge(), 0x39);
        assert_eq!(wr(&mut l, REG_EOI, 0, 0), Some(Output::EoiBroadcast(0x39)));
        // An edge interrupt on the same vector clears TMR again.
        l.accept(0x39, false);
        assert_eq!(rd(&mut l, REG_TMR + 0x10, 0), 0);
        l.acknowledge();
        assert_eq!(l.eoi(), None);
    }

    /// Linux's do_boot_cpu / SeaBIOS smp_setup: INIT assert, INIT de-assert, SIPI, SIPI.
    #[test]
    fn init_sipi_sipi() {
        let mut bsp = Lapic::new(0, true);
        let mut ap = Lapic::new(1, false);
        firmware_setup(&mut bsp);
        wr(&mut bsp, REG_ICR_HI, 1 << 24, 0);
        let init = wr(&mut bsp, REG_ICR_LO, 0xc500, 0);
        let Some(Output::Ipi(init)) = init else {
            panic!("no INIT IPI: {init:?}");
        };
        assert_eq!(init.mode, DeliveryMode::Init);
        assert_eq!(init.dest, 1);
        assert_eq!(init.dest_mode, DestMode::Physical);
        assert!(ap.ipi_targets(&init) && !bsp.ipi_targets(&init));
        assert_eq!(
            ap.deliver(init.mode, init.vector, init.level_triggered),
            Accepted::Init
        );
        ap.init_reset();
        // Delivery status is always idle (Linux polls it).
        assert_eq!(rd(&mut bsp, REG_ICR_LO, 0) & (1 << 12), 0);
        // De-assert: no message.
        wr(&mut bsp, REG_ICR_HI, 1 << 24, 0);
        assert_eq!(wr(&mut bsp, REG_ICR_LO, 0x8500, 0), None);
        for _ in 0..2 {
            wr(&mut bsp, REG_ICR_HI, 1 << 24, 0);
            let sipi = wr(&mut bsp, REG_ICR_LO, 0x0600 | 0x9a, 0);
            let Some(Output::Ipi(sipi)) = sipi else {
                panic!("no SIPI");
            };
            assert_eq!(sipi.mode, DeliveryMode::StartUp);
            assert_eq!(sipi.vector, 0x9a);
            assert!(ap.ipi_targets(&sipi));
            assert_eq!(
                ap.deliver(sipi.mode, sipi.vector, false),
                Accepted::StartUp(0x9a)
            );
        }
        // SeaBIOS: broadcast INIT then SIPI to all but self.
        let Some(Output::Ipi(all)) = wr(&mut bsp, REG_ICR_LO, 0x000c_4500, 0) else {
            panic!()
        };
        assert_eq!(all.shorthand, Shorthand::AllExcludingSelf);
        assert!(ap.ipi_targets(&all) && !bsp.ipi_targets(&all));
        // Self IPI with a fixed vector.
        let Some(Output::Ipi(me)) = wr(&mut bsp, REG_ICR_LO, 0x0004_00f3, 0) else {
            panic!()
        };
        assert!(bsp.ipi_targets(&me) && !ap.ipi_targets(&me));
        assert_eq!(bsp.deliver(me.mode, me.vector, false), Accepted::Interrupt);
        assert_eq!(bsp.pending_vector(), Some(0xf3));
        // Illegal fixed vector: ESR send-illegal, no message.
        assert_eq!(wr(&mut bsp, REG_ICR_LO, 0x0000_0005, 0), None);
        wr(&mut bsp, REG_ESR, 0, 0);
        assert_eq!(rd(&mut bsp, REG_ESR, 0), ESR_SEND_ILLEGAL_VECTOR);
    }

    #[test]
    fn logical_cluster_destinations() {
        let mut l = Lapic::new(5, false);
        wr(&mut l, REG_DFR, 0x0fff_ffff, 0);
        wr(&mut l, REG_LDR, 0x2400_0000, 0);
        assert!(l.is_destination(DestMode::Logical, 0x26));
        assert!(!l.is_destination(DestMode::Logical, 0x14));
        assert!(!l.is_destination(DestMode::Logical, 0x23));
        assert!(l.is_destination(DestMode::Logical, 0xff));
    }

    /// Linux calibrate_APIC_clock: LVTT periodic masked, TDCR /16, TMICT 0xffffffff/16,
    /// TMCCT sampled at PIT ticks. The count falls by exactly ns/16.
    #[test]
    fn linux_calibration_measures_1ghz() {
        let mut l = Lapic::new(0, true);
        firmware_setup(&mut l);
        wr(&mut l, 0x320, 0xec | TIMER_PERIODIC | LVT_MASKED, T0);
        let tdcr = rd(&mut l, REG_TIMER_DIVIDE, T0) & !0xb;
        wr(&mut l, REG_TIMER_DIVIDE, tdcr | 0x3, T0);
        wr(&mut l, REG_TIMER_INITIAL, 0xffff_ffff / 16, T0);
        let t1 = rd(&mut l, REG_TIMER_CURRENT, T0 + 4_000_000);
        // 25 ticks of HZ=250 = 100 ms later.
        let t2 = rd(&mut l, REG_TIMER_CURRENT, T0 + 104_000_000);
        let delta = (t1 - t2) as u64;
        let per_tick = delta * 16 / 25;
        assert_eq!(per_tick * 250, APIC_BUS_HZ);
        // Masked: no interrupt even after expiry.
        l.poll_timer(T0 + 20_000_000_000);
        assert_eq!(l.pending_vector(), None);
    }

    #[test]
    fn periodic_timer_fires_at_exact_times() {
        let mut l = Lapic::new(0, true);
        firmware_setup(&mut l);
        wr(&mut l, REG_TIMER_DIVIDE, 0x0, T0); // divide by 2
        wr(&mut l, 0x320, 0xec | TIMER_PERIODIC, T0);
        wr(&mut l, REG_TIMER_INITIAL, 2_000_000, T0); // 4 ms period
        let mut fires = vec![];
        for _ in 0..5 {
            let due = l.next_timer_deadline().unwrap();
            assert!(!l.poll_timer(due - 1));
            assert_eq!(rd(&mut l, REG_TIMER_CURRENT, due - 2), 1);
            assert!(l.poll_timer(due));
            assert_eq!(rd(&mut l, REG_TIMER_CURRENT, due), 2_000_000);
            assert_eq!(l.acknowledge(), 0xec);
            l.eoi();
            fires.push(due);
        }
        let now = *fires.last().unwrap();
        assert_eq!(
            fires,
            (1..=5).map(|k| T0 + k * 4_000_000).collect::<Vec<_>>()
        );
        // Late poll: missed periods coalesce, the phase is kept.
        assert!(l.poll_timer(now + 10_500_000));
        assert_eq!(l.next_timer_deadline(), Some(now + 12_000_000));
        // One-shot: fires once, then reads 0.
        wr(&mut l, 0x320, 0xed, now);
        wr(&mut l, REG_TIMER_DIVIDE, 0xb, now); // divide by 1
        wr(&mut l, REG_TIMER_INITIAL, 1000, now);
        assert_eq!(l.next_timer_deadline(), Some(now + 1000));
        assert_eq!(rd(&mut l, REG_TIMER_CURRENT, now + 1000), 0);
        assert_eq!(l.next_timer_deadline(), None);
        assert!(l.irr.get(0xed));
        // TMICT = 0 stops the timer.
        wr(&mut l, REG_TIMER_INITIAL, 0, now);
        assert_eq!(l.next_timer_deadline(), None);
    }

    #[test]
    fn tdcr_change_keeps_the_count() {
        let mut l = Lapic::new(0, true);
        firmware_setup(&mut l);
        wr(&mut l, 0x320, 0x40, 0);
        wr(&mut l, REG_TIMER_DIVIDE, 0xb, 0); // 1
        wr(&mut l, REG_TIMER_INITIAL, 1000, 0);
        wr(&mut l, REG_TIMER_DIVIDE, 0x1, 400); // 4
        assert_eq!(rd(&mut l, REG_TIMER_CURRENT, 400), 600);
        assert_eq!(l.next_timer_deadline(), Some(400 + 2400));
    }

    #[test]
    fn tsc_deadline_only_when_supported() {
        let mut l = Lapic::new(0, true);
        firmware_setup(&mut l);
        wr(&mut l, 0x320, 0xec | TIMER_TSC_DEADLINE, 0);
        assert_eq!(rd(&mut l, 0x320, 0), 0xec, "bit 18 reserved");
        l.write_tsc_deadline(5000, 5000);
        assert_eq!(l.read_tsc_deadline(), 0);
        assert_eq!(l.next_timer_deadline(), None);

        let mut l = Lapic::new(0, true).with_tsc_deadline();
        firmware_setup(&mut l);
        wr(&mut l, 0x320, 0xec | TIMER_TSC_DEADLINE, 0);
        wr(&mut l, REG_TIMER_INITIAL, 100, 0);
        assert_eq!(rd(&mut l, REG_TIMER_INITIAL, 0), 0, "TMICT ignored");
        l.write_tsc_deadline(12345, 7000);
        assert_eq!(l.read_tsc_deadline(), 12345);
        assert_eq!(l.next_timer_deadline(), Some(7000));
        assert!(l.poll_timer(7000));
        assert_eq!(l.read_tsc_deadline(), 0);
        assert_eq!(l.pending_vector(), Some(0xec));
        // Back to one-shot: deadline disarmed.
        l.write_tsc_deadline(1, 9000);
        wr(&mut l, 0x320, 0xec, 0);
        assert_eq!(l.next_timer_deadline(), None);
    }

    #[test]
    fn x2apic_and_relocation_are_refused() {
        let mut l = Lapic::new(0, true);
        assert_eq!(
            l.write_apic_base(LAPIC_BASE | BASE_EN | BASE_EXTD | BASE_BSP),
            Err(ApicBaseError::X2ApicUnsupported)
        );
        assert_eq!(
            l.write_apic_base(0xfed0_0000 | BASE_EN),
            Err(ApicBaseError::Invalid)
        );
        assert_eq!(
            l.write_apic_base(LAPIC_BASE | BASE_EN | (1 << 60)),
            Err(ApicBaseError::Invalid)
        );
        // BSP is read-only.
        l.write_apic_base(LAPIC_BASE | BASE_EN).unwrap();
        assert!(l.is_bsp());
    }

    #[test]
    fn narrow_and_odd_accesses() {
        let mut l = Lapic::new(0x12, true);
        assert_eq!(l.mmio_read(REG_ID + 3, Width::B1, 0), 0x12);
        assert_eq!(l.mmio_read(REG_VERSION, Width::B2, 0), 0x0014);
        assert_eq!(l.mmio_read(REG_VERSION, Width::B8, 0), 0x50014);
        assert_eq!(l.mmio_read(REG_VERSION + 4, Width::B4, 0), 0);
        // Non-dword writes are ignored.
        l.mmio_write(REG_TPR, Width::B1, 0x20, 0);
        assert_eq!(l.tpr(), 0);
        // Reserved register: ESR illegal register address.
        wr(&mut l, REG_SVR, 0x1ff, 0);
        rd(&mut l, 0x2f0, 0);
        wr(&mut l, REG_ESR, 0, 0);
        assert_eq!(rd(&mut l, REG_ESR, 0), ESR_ILLEGAL_REGISTER);
    }

    #[test]
    fn hammer_random_accesses() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..4 {
            let mut l = Lapic::new(0, round % 2 == 0);
            if round >= 2 {
                l = l.with_tsc_deadline();
            }
            let mut now = 0u64;
            for _ in 0..100_000 {
                let r = next();
                let off = if r & 1 == 0 {
                    (r >> 8) & 0x3f0
                } else {
                    (r >> 8) & 0xffff
                };
                let width = [Width::B1, Width::B2, Width::B4, Width::B8][((r >> 4) & 3) as usize];
                let width = if r & 2 == 0 { Width::B4 } else { width };
                let value = next();
                now = now.wrapping_add(next() % 5000);
                match (r >> 40) % 10 {
                    0 => {
                        l.mmio_read(off, width, now);
                    }
                    1 => {
                        l.accept(value as u8, value & 0x100 != 0);
                    }
                    2 => {
                        l.acknowledge();
                    }
                    3 => {
                        l.eoi();
                    }
                    4 => {
                        let _ = l.write_apic_base(value);
                    }
                    5 => {
                        l.write_tsc_deadline(value, value >> 3);
                        l.poll_timer(if value & 1 == 0 { now } else { u64::MAX });
                    }
                    _ => {
                        l.mmio_write(off, width, value, now);
                    }
                }
                let _ = l.pending_vector();
                let _ = l.next_timer_deadline();
            }
            // Whatever state the hammer left must survive a save/load.
            let bytes = save_record(&l, 0);
            let mut fresh = Lapic::new(0, false);
            load_record(&mut fresh, &bytes).expect("hammered state loads");
            assert_eq!(fresh, l);
        }
    }

    fn interesting() -> Lapic {
        let mut l = Lapic::new(2, false).with_tsc_deadline();
        firmware_setup(&mut l);
        wr(&mut l, REG_LDR, 0x0400_0000, 0);
        wr(&mut l, 0x320, 0xec | TIMER_PERIODIC, 10);
        wr(&mut l, REG_TIMER_DIVIDE, 0x3, 10);
        wr(&mut l, REG_TIMER_INITIAL, 5000, 10);
        l.accept(0x51, true);
        l.accept(0x61, false);
        l.acknowledge();
        l.set_tpr(0x20);
        wr(&mut l, REG_ICR_HI, 0x0300_0000, 10);
        wr(&mut l, REG_ICR_LO, 0x4041, 10);
        l
    }

    #[test]
    fn snapshot_round_trip() {
        let l = interesting();
        let bytes = save_record(&l, 0);
        let mut fresh = Lapic::new(0, true);
        let rest = load_record(&mut fresh, &bytes).unwrap();
        assert!(rest.is_empty());
        assert_eq!(fresh, l);
        assert_eq!(save_record(&fresh, 0), bytes);
    }

    #[test]
    fn snapshot_truncated_and_oversized_are_refused() {
        let l = interesting();
        let bytes = save_record(&l, 0);
        let body_len = u32::from_le_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]) as usize;
        for cut in 0..HEADER_LEN + body_len {
            let mut b = bytes[..cut].to_vec();
            if cut >= HEADER_LEN {
                b[20..24].copy_from_slice(&((cut - HEADER_LEN) as u32).to_le_bytes());
                while b.len() % 8 != 0 {
                    b.push(0);
                }
            }
            let mut fresh = Lapic::new(0, true);
            assert!(load_record(&mut fresh, &b).is_err(), "cut {cut} accepted");
            assert_eq!(fresh, Lapic::new(0, true));
        }
        let mut b = bytes[..HEADER_LEN + body_len].to_vec();
        b.push(0);
        b[20..24].copy_from_slice(&(body_len as u32 + 1).to_le_bytes());
        while b.len() % 8 != 0 {
            b.push(0);
        }
        let mut fresh = Lapic::new(0, true);
        assert!(matches!(
            load_record(&mut fresh, &b),
            Err(LoadError::TrailingBytes { .. })
        ));
        let mut huge = bytes.clone();
        huge[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            load_record(&mut fresh, &huge),
            Err(LoadError::Oversized { .. })
        ));
        let mut newer = bytes.clone();
        newer[18..20].copy_from_slice(&2u16.to_le_bytes());
        assert!(matches!(
            load_record(&mut fresh, &newer),
            Err(LoadError::UnsupportedVersion { .. })
        ));
    }

    #[test]
    fn snapshot_invalid_fields_are_refused() {
        let l = interesting();
        let bytes = save_record(&l, 0);
        // apic_base with EXTD set (body offset 0).
        let mut b = bytes.clone();
        b[HEADER_LEN + 1] |= 0x04;
        let mut fresh = Lapic::new(0, true);
        assert!(matches!(
            load_record(&mut fresh, &b),
            Err(LoadError::Invalid {
                field: "apic_base",
                ..
            })
        ));
        // Random corruption never panics.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..3000 {
            let mut b = bytes.clone();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let i = HEADER_LEN + (seed as usize % (b.len() - HEADER_LEN));
            b[i] = (seed >> 32) as u8;
            let _ = load_record(&mut fresh, &b);
        }
    }
}
