//! The one handle through which a device reaches outside itself.
//!
//! Process mode and stubdom mode each implement [`Platform`] once; tests use
//! `testing::MockPlatform`. Devices never store handles: a `&mut dyn Platform` is passed
//! on every call, so device state stays plain data that snapshots cleanly.

/// Timers a device can arm. Each device owns fixed ids; the machine routes expiry back
/// to the device that armed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerId {
    /// MC146818 periodic interrupt (RTC register A rate).
    RtcPeriodic,
    /// MC146818 once-a-second update cycle (update-ended and alarm interrupts).
    RtcUpdate,
    /// ACPI PM timer overflow (bit 23/31 carry sets TMR_STS).
    PmTimerOverflow,
}

/// Number of distinct [`TimerId`]s (for fixed-size timer tables in platforms).
pub const TIMER_COUNT: usize = 3;

impl TimerId {
    /// Dense index for tables.
    pub const fn index(self) -> usize {
        self as usize
    }
    /// All timer ids, in index order.
    pub const ALL: [TimerId; TIMER_COUNT] = [
        TimerId::RtcPeriodic,
        TimerId::RtcUpdate,
        TimerId::PmTimerOverflow,
    ];
}

/// What the guest asked of the machine as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerRequest {
    /// ACPI S5 (soft off) or another power-off path.
    PowerOff,
    /// System reset (i8042 pulse, 0xcf9, ACPI reset register).
    Reset,
    /// ACPI S3 suspend-to-RAM request.
    Suspend,
}

/// A guest-physical DMA access that the platform refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaError {
    /// The range is not (entirely) guest RAM.
    OutOfRange { gpa: u64, len: u64 },
}

/// Character streams a device can write to (host side backends).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CharSink {
    /// A 16550 UART by index (0 = COM1).
    Serial(u8),
    /// Debug console port 0xe9 (Bochs/Xen/SeaBIOS debug output).
    DebugCon,
}

pub trait Platform {
    /// Drive an interrupt line (ISA IRQ number / GSI) to a level. Devices sharing a line
    /// are ORed by the machine, never here; edge ISA interrupts are a 1 then 0.
    fn set_irq(&mut self, gsi: u32, level: bool);

    /// Read guest-physical memory.
    fn dma_read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), DmaError>;
    /// Write guest-physical memory.
    fn dma_write(&mut self, gpa: u64, buf: &[u8]) -> Result<(), DmaError>;

    /// Monotonic guest time in nanoseconds since the machine was created.
    fn now_ns(&self) -> u64;
    /// Wall-clock time (ns since the Unix epoch) that corresponds to `now_ns() == 0`.
    /// The RTC adds guest time to it, so a deterministic platform gives a fixed date.
    fn wall_clock_base_ns(&self) -> u64;
    /// Arm (Some(absolute deadline in guest ns)) or cancel (None) a timer.
    fn set_timer(&mut self, timer: TimerId, deadline_ns: Option<u64>);

    /// Bytes a device sends out (UART transmit, debug console).
    fn char_out(&mut self, sink: CharSink, bytes: &[u8]);

    /// The guest asked to power off, reset or suspend the machine.
    fn power(&mut self, request: PowerRequest);
}
