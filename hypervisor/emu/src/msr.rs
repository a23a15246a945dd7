//! RDMSR/WRMSR: the MSRs the CPU owns (EFER, the SYSCALL/SYSENTER set, segment bases,
//! PAT, MTRRs, TSC, TSC_AUX, MISC_ENABLE); everything else goes to the platform.

use crate::cpu::{Cpu, EFER_LMA, EFER_LME, EFER_NXE, EFER_SCE, FS, GS};
use crate::exec::Exception;
use crate::mem::Memory;

pub const IA32_TSC: u32 = 0x10;
pub const IA32_MTRRCAP: u32 = 0xfe;
pub const IA32_SYSENTER_CS: u32 = 0x174;
pub const IA32_SYSENTER_ESP: u32 = 0x175;
pub const IA32_SYSENTER_EIP: u32 = 0x176;
pub const IA32_MISC_ENABLE: u32 = 0x1a0;
pub const IA32_PAT: u32 = 0x277;
pub const IA32_MTRR_DEF_TYPE: u32 = 0x2ff;
pub const IA32_EFER: u32 = 0xc000_0080;
pub const IA32_STAR: u32 = 0xc000_0081;
pub const IA32_LSTAR: u32 = 0xc000_0082;
pub const IA32_CSTAR: u32 = 0xc000_0083;
pub const IA32_FMASK: u32 = 0xc000_0084;
pub const IA32_FS_BASE: u32 = 0xc000_0100;
pub const IA32_GS_BASE: u32 = 0xc000_0101;
pub const IA32_KERNEL_GS_BASE: u32 = 0xc000_0102;
pub const IA32_TSC_AUX: u32 = 0xc000_0103;

/// MTRRcap: 8 variable ranges, fixed ranges, write-combining.
const MTRRCAP: u64 = 0x508;

/// Index into `mtrr_fixed` of a fixed-range MTRR.
fn fixed_index(msr: u32) -> Option<usize> {
    match msr {
        0x250 => Some(0),
        0x258 => Some(1),
        0x259 => Some(2),
        0x268..=0x26f => Some(3 + (msr - 0x268) as usize),
        _ => None,
    }
}

pub(crate) fn read(cpu: &mut Cpu, mem: &mut dyn Memory, msr: u32) -> Result<u64, Exception> {
    let m = &cpu.msr;
    Ok(match msr {
        IA32_TSC => mem.tsc().wrapping_add(m.tsc_offset),
        IA32_MTRRCAP => MTRRCAP,
        IA32_SYSENTER_CS => m.sysenter_cs,
        IA32_SYSENTER_ESP => m.sysenter_esp,
        IA32_SYSENTER_EIP => m.sysenter_eip,
        IA32_MISC_ENABLE => m.misc_enable,
        IA32_PAT => m.pat,
        IA32_MTRR_DEF_TYPE => m.mtrr_def_type,
        0x200..=0x20f => m.mtrr_var[(msr - 0x200) as usize],
        IA32_EFER => cpu.efer,
        IA32_STAR => m.star,
        IA32_LSTAR => m.lstar,
        IA32_CSTAR => m.cstar,
        IA32_FMASK => m.sfmask,
        IA32_FS_BASE => cpu.seg[FS].base,
        IA32_GS_BASE => cpu.seg[GS].base,
        IA32_KERNEL_GS_BASE => m.kernel_gs_base,
        IA32_TSC_AUX => m.tsc_aux,
        _ => {
            if let Some(k) = fixed_index(msr) {
                return Ok(m.mtrr_fixed[k]);
            }
            return mem.rdmsr(msr).ok_or(Exception::GeneralProtection(0));
        }
    })
}

fn canonical(v: u64) -> Result<u64, Exception> {
    if crate::ops::canonical(v) {
        Ok(v)
    } else {
        Err(Exception::GeneralProtection(0))
    }
}

pub(crate) fn write(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    msr: u32,
    v: u64,
) -> Result<(), Exception> {
    let gp = Exception::GeneralProtection(0);
    match msr {
        IA32_TSC => {
            let now = mem.tsc();
            cpu.msr.tsc_offset = v.wrapping_sub(now);
        }
        IA32_MTRRCAP => return Err(gp),
        IA32_SYSENTER_CS => cpu.msr.sysenter_cs = v & 0xffff_ffff,
        IA32_SYSENTER_ESP => cpu.msr.sysenter_esp = canonical(v)?,
        IA32_SYSENTER_EIP => cpu.msr.sysenter_eip = canonical(v)?,
        IA32_MISC_ENABLE => cpu.msr.misc_enable = v,
        IA32_PAT => {
            // Each byte must be a valid memory type (0, 1, 4, 5, 6, 7).
            if (0..8).any(|k| matches!((v >> (k * 8)) & 0xff, 2 | 3 | 8..=0xff)) {
                return Err(gp);
            }
            cpu.msr.pat = v;
        }
        IA32_MTRR_DEF_TYPE => {
            if v & !0xcff != 0 {
                return Err(gp);
            }
            cpu.msr.mtrr_def_type = v;
        }
        0x200..=0x20f => cpu.msr.mtrr_var[(msr - 0x200) as usize] = v,
        IA32_EFER => {
            if v & !(EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE) != 0 {
                return Err(gp);
            }
            // LME may not change while paging is on; LMA is read-only.
            if cpu.cr0 & crate::cpu::CR0_PG != 0 && (v ^ cpu.efer) & EFER_LME != 0 {
                return Err(gp);
            }
            let nv = (v & !EFER_LMA) | (cpu.efer & EFER_LMA);
            if (nv ^ cpu.efer) & EFER_NXE != 0 {
                cpu.tlb.flush_all();
            }
            cpu.efer = nv;
        }
        IA32_STAR => cpu.msr.star = v,
        IA32_LSTAR => cpu.msr.lstar = canonical(v)?,
        IA32_CSTAR => cpu.msr.cstar = canonical(v)?,
        IA32_FMASK => cpu.msr.sfmask = v & 0xffff_ffff,
        IA32_FS_BASE => cpu.seg[FS].base = canonical(v)?,
        IA32_GS_BASE => cpu.seg[GS].base = canonical(v)?,
        IA32_KERNEL_GS_BASE => cpu.msr.kernel_gs_base = canonical(v)?,
        IA32_TSC_AUX => cpu.msr.tsc_aux = v & 0xffff_ffff,
        _ => {
            if let Some(k) = fixed_index(msr) {
                cpu.msr.mtrr_fixed[k] = v;
                return Ok(());
            }
            if !mem.wrmsr(msr, v) {
                return Err(gp);
            }
        }
    }
    Ok(())
}
