//! Architectural register state of one vCPU: general registers, RFLAGS, segment
//! registers with their descriptor caches, descriptor-table registers, control and debug
//! registers, the MSRs the CPU owns, and the derived mode (real / protected / long,
//! 16/32/64-bit code, CPL).

use crate::mmu::Tlb;

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
pub const IOPL: u64 = 3 << 12;
pub const NT: u64 = 1 << 14;
pub const RF: u64 = 1 << 16;
pub const VM: u64 = 1 << 17;
pub const AC: u64 = 1 << 18;
pub const VIF: u64 = 1 << 19;
pub const VIP: u64 = 1 << 20;
pub const ID: u64 = 1 << 21;
/// The six arithmetic status flags.
pub const STATUS: u64 = CF | PF | AF | ZF | SF | OF;
/// RFLAGS bit 1 always reads as 1.
pub const RFLAGS_FIXED: u64 = 1 << 1;

/// CR0 bits.
pub const CR0_PE: u64 = 1 << 0;
pub const CR0_MP: u64 = 1 << 1;
pub const CR0_EM: u64 = 1 << 2;
pub const CR0_TS: u64 = 1 << 3;
pub const CR0_ET: u64 = 1 << 4;
pub const CR0_NE: u64 = 1 << 5;
pub const CR0_WP: u64 = 1 << 16;
pub const CR0_AM: u64 = 1 << 18;
pub const CR0_NW: u64 = 1 << 29;
pub const CR0_CD: u64 = 1 << 30;
pub const CR0_PG: u64 = 1 << 31;
/// CR4 bits.
pub const CR4_TSD: u64 = 1 << 2;
pub const CR4_PSE: u64 = 1 << 4;
pub const CR4_PAE: u64 = 1 << 5;
pub const CR4_PGE: u64 = 1 << 7;
pub const CR4_OSFXSR: u64 = 1 << 9;
pub const CR4_OSXMMEXCPT: u64 = 1 << 10;
/// EFER bits.
pub const EFER_SCE: u64 = 1 << 0;
pub const EFER_LME: u64 = 1 << 8;
pub const EFER_LMA: u64 = 1 << 10;
pub const EFER_NXE: u64 = 1 << 11;

/// GPR indices (the ModRM/REX numbering).
pub const RAX: usize = 0;
pub const RCX: usize = 1;
pub const RDX: usize = 2;
pub const RBX: usize = 3;
pub const RSP: usize = 4;
pub const RBP: usize = 5;
pub const RSI: usize = 6;
pub const RDI: usize = 7;

/// Segment register indices (encoding order, as iced's `Register::ES..GS`).
pub const ES: usize = 0;
pub const CS: usize = 1;
pub const SS: usize = 2;
pub const DS: usize = 3;
pub const FS: usize = 4;
pub const GS: usize = 5;

/// Segment attribute bits, in the VMX access-rights layout: type in bits 0..4, S (code
/// or data) 4, DPL 5..7, P 7, AVL 12, L 13, D/B 14, G 15; bit 16 marks a segment loaded
/// with a null selector (unusable).
pub const ATTR_S: u32 = 1 << 4;
pub const ATTR_P: u32 = 1 << 7;
pub const ATTR_L: u32 = 1 << 13;
pub const ATTR_DB: u32 = 1 << 14;
pub const ATTR_G: u32 = 1 << 15;
pub const ATTR_UNUSABLE: u32 = 1 << 16;

/// A segment register: the selector and its descriptor cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub selector: u16,
    pub base: u64,
    /// Byte-granular limit (already scaled by G).
    pub limit: u32,
    pub attr: u32,
}

impl Segment {
    pub const fn new(selector: u16, base: u64, limit: u32, attr: u32) -> Self {
        Segment {
            selector,
            base,
            limit,
            attr,
        }
    }
    /// A real-mode segment: base = selector * 16, the rest of the cache kept.
    pub fn real(&self, selector: u16) -> Self {
        Segment {
            selector,
            base: (selector as u64) << 4,
            limit: self.limit,
            // Loaded, present, DPL 0; the D/B and limit stay (big real mode).
            attr: (self.attr & !(ATTR_UNUSABLE | (3 << 5))) | ATTR_P | ATTR_S,
        }
    }
    #[inline]
    pub fn typ(&self) -> u32 {
        self.attr & 0xf
    }
    #[inline]
    pub fn dpl(&self) -> u8 {
        ((self.attr >> 5) & 3) as u8
    }
    #[inline]
    pub fn present(&self) -> bool {
        self.attr & ATTR_P != 0
    }
    #[inline]
    pub fn db(&self) -> bool {
        self.attr & ATTR_DB != 0
    }
    #[inline]
    pub fn l(&self) -> bool {
        self.attr & ATTR_L != 0
    }
    #[inline]
    pub fn unusable(&self) -> bool {
        self.attr & ATTR_UNUSABLE != 0
    }
    #[inline]
    pub fn is_code(&self) -> bool {
        self.attr & ATTR_S != 0 && self.attr & 8 != 0
    }
}

/// GDTR / IDTR.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Table {
    pub base: u64,
    pub limit: u16,
}

/// The MSRs the CPU implements itself (EFER and the segment bases live elsewhere in
/// [`Cpu`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Msrs {
    pub star: u64,
    pub lstar: u64,
    pub cstar: u64,
    pub sfmask: u64,
    pub kernel_gs_base: u64,
    pub sysenter_cs: u64,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    pub pat: u64,
    pub tsc_aux: u64,
    pub misc_enable: u64,
    /// Added to `Bus::tsc` for RDTSC/IA32_TSC; a write to IA32_TSC adjusts it.
    pub tsc_offset: u64,
    pub mtrr_def_type: u64,
    /// MTRRfix64K_00000, 16K_80000, 16K_A0000, 4K_C0000 .. 4K_F8000.
    pub mtrr_fixed: [u64; 11],
    /// IA32_MTRR_PHYSBASE0/PHYSMASK0 .. 7.
    pub mtrr_var: [u64; 16],
}

/// Power-on PAT.
pub const PAT_RESET: u64 = 0x0007_0406_0007_0406;

/// One vCPU's register state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cpu {
    /// RAX..R15 in encoding order.
    pub gpr: [u64; 16],
    pub rip: u64,
    pub rflags: u64,
    /// ES, CS, SS, DS, FS, GS (index with [`ES`]..[`GS`]). FS/GS bases are also the
    /// IA32_FS_BASE / IA32_GS_BASE MSRs.
    pub seg: [Segment; 6],
    pub ldtr: Segment,
    pub tr: Segment,
    pub gdtr: Table,
    pub idtr: Table,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    /// CR8 (task priority). Kept locally; the interrupt controller does not see it.
    pub cr8: u64,
    pub efer: u64,
    /// DR0..DR7 (DR4/DR5 alias DR6/DR7). Storage only: no breakpoints.
    pub dr: [u64; 8],
    pub msr: Msrs,
    /// HLT executed; cleared by an interrupt.
    pub halted: bool,
    /// Interrupt shadow (after STI, MOV SS, POP SS): no external interrupt before the
    /// next instruction.
    pub shadow: bool,
    /// x87/SSE registers.
    pub fpu: crate::fpu::FpuState,
    /// Translation cache (not architectural state: ignored by `==`).
    pub tlb: Tlb,
}

impl Default for Cpu {
    fn default() -> Self {
        Self::new()
    }
}

const CODE64: u32 = 0x9b | ATTR_L | ATTR_G;
const CODE32: u32 = 0x9b | ATTR_DB | ATTR_G;
const DATA32: u32 = 0x93 | ATTR_DB | ATTR_G;

impl Cpu {
    fn blank() -> Self {
        Cpu {
            gpr: [0; 16],
            rip: 0,
            rflags: RFLAGS_FIXED,
            seg: [Segment::default(); 6],
            ldtr: Segment::new(0, 0, 0xffff, 0x82),
            tr: Segment::new(0, 0, 0xffff, 0x8b),
            gdtr: Table {
                base: 0,
                limit: 0xffff,
            },
            idtr: Table {
                base: 0,
                limit: 0xffff,
            },
            cr0: 0,
            cr2: 0,
            cr3: 0,
            cr4: 0,
            cr8: 0,
            efer: 0,
            dr: [0, 0, 0, 0, 0xffff_0ff0, 0x400, 0xffff_0ff0, 0x400],
            msr: Msrs {
                pat: PAT_RESET,
                misc_enable: 1,
                ..Msrs::default()
            },
            halted: false,
            shadow: false,
            fpu: crate::fpu::FpuState::default(),
            tlb: Tlb::default(),
        }
    }

    /// The interpreter's test state: 64-bit code, flat segments, paging OFF (linear =
    /// physical; not a state real hardware can reach, since long mode needs paging),
    /// all-zero GPRs, RFLAGS = 2.
    pub fn new() -> Self {
        let mut c = Self::blank();
        c.seg = [Segment::new(0x10, 0, u32::MAX, DATA32); 6];
        c.seg[CS] = Segment::new(0x08, 0, u32::MAX, CODE64);
        c.cr0 = CR0_PE | CR0_ET;
        // SSE enabled, as every 64-bit OS has it (the user-mode differential tests).
        c.cr4 = CR4_OSFXSR | CR4_OSXMMEXCPT;
        c.efer = EFER_LME | EFER_LMA;
        c
    }

    /// The PVH boot state: 32-bit flat protected mode, paging off, EBX = start info.
    pub fn pvh_entry(entry: u64, start_info: u64) -> Self {
        let mut c = Self::blank();
        c.seg = [Segment::new(0x10, 0, u32::MAX, DATA32); 6];
        c.seg[CS] = Segment::new(0x08, 0, u32::MAX, CODE32);
        c.tr = Segment::new(0, 0, 0x67, 0x8b);
        c.ldtr = Segment::new(0, 0, 0, ATTR_UNUSABLE);
        c.cr0 = CR0_PE | CR0_ET;
        c.rip = entry;
        c.gpr[RBX] = start_info;
        c
    }

    /// Architectural power-on / INIT state: real mode at f000:fff0 (linear fffffff0).
    pub fn reset() -> Self {
        let mut c = Self::blank();
        c.seg = [Segment::new(0, 0, 0xffff, 0x93); 6];
        c.seg[CS] = Segment::new(0xf000, 0xffff_0000, 0xffff, 0x9b);
        c.rip = 0xfff0;
        c.cr0 = CR0_ET | CR0_NW | CR0_CD;
        c.gpr[RDX] = 0x600;
        c.idtr.limit = 0x3ff;
        c
    }

    /// An application processor after INIT and a start-up IPI with `vector`: the reset
    /// state, executing real-mode code at `vector * 0x1000` (CS = vector << 8, IP = 0).
    pub fn startup(vector: u8) -> Self {
        let mut c = Self::reset();
        let sel = (vector as u16) << 8;
        c.seg[CS] = Segment::new(sel, (sel as u64) << 4, 0xffff, 0x9b);
        c.rip = 0;
        c
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

    /// CR0.PE.
    #[inline]
    pub fn protected(&self) -> bool {
        self.cr0 & CR0_PE != 0
    }

    /// EFER.LMA (long mode active: IA-32e).
    #[inline]
    pub fn long_mode(&self) -> bool {
        self.efer & EFER_LMA != 0
    }

    /// 64-bit mode (long mode with a 64-bit code segment).
    #[inline]
    pub fn mode64(&self) -> bool {
        self.long_mode() && self.seg[CS].l()
    }

    /// Default code size of the current code segment: 16, 32 or 64.
    #[inline]
    pub fn bitness(&self) -> u32 {
        if self.mode64() {
            64
        } else if self.seg[CS].db() {
            32
        } else {
            16
        }
    }

    /// Current privilege level (the SS.DPL, as VMX defines it; 0 in real mode).
    #[inline]
    pub fn cpl(&self) -> u8 {
        if !self.protected() {
            0
        } else if self.rflags & VM != 0 {
            3
        } else {
            self.seg[SS].dpl()
        }
    }

    #[inline]
    pub fn iopl(&self) -> u8 {
        ((self.rflags >> 12) & 3) as u8
    }

    /// The mask of an instruction pointer in the current code size.
    #[inline]
    pub fn ip_mask(&self) -> u64 {
        match self.bitness() {
            64 => u64::MAX,
            32 => 0xffff_ffff,
            _ => 0xffff,
        }
    }
}
