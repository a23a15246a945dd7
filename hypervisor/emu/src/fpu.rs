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

/// An FXRSTOR image with MXCSR bits outside MXCSR_MASK (#GP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReservedMxcsr;

/// FXSAVE writes bytes 0..416 (header, ST0-7, XMM0-15); 416..512 are left alone.
pub const FXSAVE_WRITTEN: usize = 416;

impl FpuState {
    /// TOP of the x87 register stack.
    pub fn top(&self) -> usize {
        ((self.fsw >> 11) & 7) as usize
    }

    /// The FXSAVE image (64-bit layout; the 32-bit layout differs only in the
    /// FIP/FCS/FDP/FDS fields, which are zero here: the last x87 instruction and
    /// operand pointers and the opcode are not tracked).
    pub fn fxsave(&self) -> [u8; 512] {
        let mut b = [0u8; 512];
        b[0..2].copy_from_slice(&self.fcw.to_le_bytes());
        b[2..4].copy_from_slice(&self.fsw.to_le_bytes());
        b[4] = self.ftw;
        b[24..28].copy_from_slice(&self.mxcsr.to_le_bytes());
        b[28..32].copy_from_slice(&crate::sse::MXCSR_MASK.to_le_bytes());
        // ST(k) in stack order, not physical order.
        for k in 0..8 {
            let r = &self.st[(self.top() + k) & 7];
            b[32 + 16 * k..32 + 16 * k + 10].copy_from_slice(&r[..10]);
        }
        for (k, x) in self.xmm.iter().enumerate() {
            b[160 + 16 * k..176 + 16 * k].copy_from_slice(&x.to_le_bytes());
        }
        b
    }

    /// Load an FXSAVE image; `Err` (#GP) if it sets MXCSR bits outside MXCSR_MASK.
    pub fn fxrstor(&mut self, b: &[u8; 512]) -> Result<(), ReservedMxcsr> {
        let word = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let mxcsr = u32::from_le_bytes([b[24], b[25], b[26], b[27]]);
        if mxcsr & !crate::sse::MXCSR_MASK != 0 {
            return Err(ReservedMxcsr);
        }
        self.mxcsr = mxcsr;
        self.fcw = word(0);
        self.fsw = word(2);
        self.ftw = b[4];
        let top = self.top();
        for k in 0..8 {
            let mut r = [0u8; 16];
            r[..10].copy_from_slice(&b[32 + 16 * k..32 + 16 * k + 10]);
            self.st[(top + k) & 7] = r;
        }
        for (k, x) in self.xmm.iter_mut().enumerate() {
            let mut v = [0u8; 16];
            v.copy_from_slice(&b[160 + 16 * k..176 + 16 * k]);
            *x = u128::from_le_bytes(v);
        }
        Ok(())
    }
}
