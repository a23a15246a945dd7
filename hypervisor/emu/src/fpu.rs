//! x87 FPU and SSE/SSE2 register state and instructions (the subset firmware, boot
//! loaders and Linux use).

/// x87 + SSE state carried by each vCPU (the FXSAVE image's contents).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FpuState {
    /// XMM0..XMM15.
    pub xmm: [u128; 16],
    /// MXCSR (reset value 0x1f80).
    pub mxcsr: u32,
    /// x87 control word (reset 0x037f after FNINIT; 0x0040 at power-on).
    pub fcw: u16,
    /// x87 status word (TOP in bits 11..13).
    pub fsw: u16,
    /// Abridged tag word as FXSAVE stores it (bit set = register valid).
    pub ftw: u8,
    /// ST(i)/MMi physical registers R0..R7 as 80-bit values (low 10 bytes used).
    pub st: [[u8; 16]; 8],
}

impl Default for FpuState {
    fn default() -> Self {
        FpuState {
            xmm: [0; 16],
            mxcsr: 0x1f80,
            fcw: 0x0040,
            fsw: 0,
            ftw: 0,
            st: [[0; 16]; 8],
        }
    }
}
