//! Architectural register state of one vCPU.

/// RFLAGS bits.
pub const CF: u64 = 1 << 0;
pub const PF: u64 = 1 << 2;
pub const AF: u64 = 1 << 4;
pub const ZF: u64 = 1 << 6;
pub const SF: u64 = 1 << 7;
pub const TF: u64 = 1 << 8;
pub const IF: u64 = 1 << 9;
pub const DF: u64 = 1 << 10;
pub const OF: u64 = 1 << 11;
/// The six arithmetic status flags.
pub const STATUS: u64 = CF | PF | AF | ZF | SF | OF;
/// RFLAGS bit 1 always reads as 1.
pub const RFLAGS_FIXED: u64 = 1 << 1;

/// GPR indices (the ModRM/REX numbering).
pub const RAX: usize = 0;
pub const RCX: usize = 1;
pub const RDX: usize = 2;
pub const RBX: usize = 3;
pub const RSP: usize = 4;
pub const RBP: usize = 5;
pub const RSI: usize = 6;
pub const RDI: usize = 7;

/// One vCPU's register state.
///
/// Only the 64-bit user-visible integer state is used by the interpreter today. The
/// segment bases and control registers are placeholders for the system side (real and
/// protected mode, paging, long-mode activation): they are carried, not interpreted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cpu {
    /// RAX..R15 in encoding order.
    pub gpr: [u64; 16],
    pub rip: u64,
    pub rflags: u64,
    /// FS/GS bases: added to FS:/GS:-prefixed memory operands in 64-bit mode.
    pub fs_base: u64,
    pub gs_base: u64,
    /// Placeholder: CR0 (PE/PG decide the mode once modes exist).
    pub cr0: u64,
    /// Placeholder: CR3 (page-table root once paging exists).
    pub cr3: u64,
    /// Placeholder: CR4 (PAE/PSE/... once paging exists).
    pub cr4: u64,
    /// Placeholder: IA32_EFER (LME/LMA/NXE once long-mode entry exists).
    pub efer: u64,
    /// x87/SSE registers.
    pub fpu: crate::fpu::FpuState,
}

impl Default for Cpu {
    fn default() -> Self {
        Self::new()
    }
}

impl Cpu {
    /// All-zero GPRs, RFLAGS = 2.
    pub fn new() -> Self {
        Cpu {
            gpr: [0; 16],
            rip: 0,
            rflags: RFLAGS_FIXED,
            fs_base: 0,
            gs_base: 0,
            cr0: 0,
            cr3: 0,
            cr4: 0,
            efer: 0,
            fpu: crate::fpu::FpuState::default(),
        }
    }

    /// Replace the flags in `which` by the corresponding bits of `values`.
    #[inline]
    pub fn set_flags(&mut self, which: u64, values: u64) {
        self.rflags = (self.rflags & !which) | (values & which) | RFLAGS_FIXED;
    }

    #[inline]
    pub fn flag(&self, f: u64) -> bool {
        self.rflags & f != 0
    }
}
