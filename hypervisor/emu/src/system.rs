//! System instructions: segment-register and control/debug-register moves with their
//! mode-switch side effects, descriptor-table loads and stores, port I/O with the IOPL /
//! TSS bitmap check, CPUID, MSRs, TSC, HLT, CLI/STI, software interrupts, IRET,
//! hypercalls, SWAPGS and the fast system calls.

use crate::cpu::*;
use crate::exec::{Exception, write_sized_gpr};
use crate::mem::Memory;
use crate::ops::{self, read_op, write_op};
use crate::{interrupt, mmu, msr, seg};
use iced_x86::{Code, Instruction, Mnemonic, OpKind, Register};

fn gp0() -> Exception {
    Exception::GeneralProtection(0)
}

fn need_cpl0(cpu: &Cpu) -> Result<(), Exception> {
    if cpu.cpl() != 0 { Err(gp0()) } else { Ok(()) }
}

/// MOV Sreg / POP Sreg.
pub(crate) fn mov_to_sreg(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    r: Register,
    sel: u16,
) -> Result<(), Exception> {
    let s = ops::sreg_index(r).ok_or(Exception::InvalidOpcode)?;
    if s == CS {
        return Err(Exception::InvalidOpcode);
    }
    seg::load_data(cpu, mem, s, sel)?;
    if s == SS {
        cpu.shadow = true;
    }
    Ok(())
}

fn cr_index(r: Register) -> usize {
    (r as usize).wrapping_sub(Register::CR0 as usize)
}
fn dr_index(r: Register) -> usize {
    (r as usize).wrapping_sub(Register::DR0 as usize)
}

pub(crate) fn mov_from_crdr(cpu: &mut Cpu, i: &Instruction) -> Result<(), Exception> {
    let r = i.op1_register();
    need_cpl0(cpu)?;
    let v = if r.is_cr() {
        match cr_index(r) {
            0 => cpu.cr0,
            2 => cpu.cr2,
            3 => cpu.cr3,
            4 => cpu.cr4,
            8 => cpu.cr8,
            _ => return Err(Exception::InvalidOpcode),
        }
    } else {
        let n = dr_index(r);
        dr_read(cpu, n)?
    };
    ops::write_reg(cpu, i.op0_register(), v)
}

fn dr_read(cpu: &Cpu, n: usize) -> Result<u64, Exception> {
    match n {
        0..=3 => Ok(cpu.dr[n]),
        4 | 5 if cpu.cr4 & (1 << 3) != 0 => Err(Exception::InvalidOpcode),
        4 | 6 => Ok(cpu.dr[6]),
        5 | 7 => Ok(cpu.dr[7]),
        _ => Err(Exception::InvalidOpcode),
    }
}

/// CR4 bits this CPU accepts: VME PVI TSD DE PSE PAE MCE PGE PCE OSFXSR OSXMMEXCPT.
const CR4_VALID: u64 = 0x7ff;

pub(crate) fn mov_to_crdr(
    cpu: &mut Cpu,
    _mem: &mut dyn Memory,
    i: &Instruction,
) -> Result<(), Exception> {
    let r = i.op0_register();
    need_cpl0(cpu)?;
    let v = ops::read_reg(cpu, i.op1_register())?;
    if r.is_dr() {
        let n = dr_index(r);
        if cpu.mode64() && matches!(n, 4..=7) && v >> 32 != 0 {
            return Err(gp0());
        }
        match n {
            0..=3 => cpu.dr[n] = v,
            4 | 5 if cpu.cr4 & (1 << 3) != 0 => return Err(Exception::InvalidOpcode),
            4 | 6 => cpu.dr[6] = (v & 0xffff_ffff) | 0xffff_0ff0,
            5 | 7 => cpu.dr[7] = (v & 0xffff_ffff) | 0x400,
            _ => return Err(Exception::InvalidOpcode),
        }
        return Ok(());
    }
    match cr_index(r) {
        0 => write_cr0(cpu, v),
        2 => {
            cpu.cr2 = v;
            Ok(())
        }
        3 => {
            cpu.cr3 = if cpu.long_mode() {
                v & 0x000f_ffff_ffff_ffff
            } else {
                v & 0xffff_ffff
            };
            mmu::cr3_written(cpu);
            Ok(())
        }
        4 => {
            if v & !CR4_VALID != 0 {
                return Err(gp0());
            }
            if cpu.long_mode() && v & CR4_PAE == 0 {
                return Err(gp0());
            }
            if (v ^ cpu.cr4) & (CR4_PAE | CR4_PSE | CR4_PGE) != 0 {
                cpu.tlb.flush_all();
            }
            cpu.cr4 = v;
            Ok(())
        }
        8 => {
            if v & !0xf != 0 {
                return Err(gp0());
            }
            cpu.cr8 = v;
            Ok(())
        }
        _ => Err(Exception::InvalidOpcode),
    }
}

/// MOV to CR0 (also LMSW, CLTS): reserved bits, PG without PE, NW without CD, and the
/// long-mode activation / deactivation on PG with EFER.LME.
pub(crate) fn write_cr0(cpu: &mut Cpu, v: u64) -> Result<(), Exception> {
    if v >> 32 != 0 {
        return Err(gp0());
    }
    let v = v | CR0_ET;
    if v & CR0_PG != 0 && v & CR0_PE == 0 {
        return Err(gp0());
    }
    if v & CR0_NW != 0 && v & CR0_CD == 0 {
        return Err(gp0());
    }
    let old = cpu.cr0;
    let pg_on = v & CR0_PG != 0 && old & CR0_PG == 0;
    let pg_off = v & CR0_PG == 0 && old & CR0_PG != 0;
    if pg_on && cpu.efer & EFER_LME != 0 {
        if cpu.cr4 & CR4_PAE == 0 {
            return Err(gp0());
        }
        cpu.efer |= EFER_LMA;
    }
    if pg_off && cpu.long_mode() {
        if cpu.mode64() {
            // Paging can only be turned off from compatibility mode.
            return Err(gp0());
        }
        cpu.efer &= !EFER_LMA;
    }
    cpu.cr0 = v;
    if (old ^ v) & (CR0_PG | CR0_WP | CR0_PE) != 0 {
        cpu.tlb.flush_all();
    }
    Ok(())
}

/// Port access check: in protected mode with CPL > IOPL (or VM86) the TSS I/O bitmap
/// must allow every port of the access.
fn io_allowed(cpu: &mut Cpu, mem: &mut dyn Memory, port: u16, size: u8) -> Result<(), Exception> {
    if !cpu.protected() || (cpu.cpl() <= cpu.iopl() && cpu.rflags & VM == 0) {
        return Ok(());
    }
    let tr = cpu.tr;
    if tr.unusable() || !matches!(tr.typ(), 9 | 0xb) || tr.limit < 0x67 {
        return Err(gp0());
    }
    let base = ops::read_sys(cpu, mem, tr.base.wrapping_add(0x66), 2)?;
    let at = base + port as u64 / 8; // both 16-bit: no overflow
    if at + 1 > tr.limit as u64 {
        return Err(gp0());
    }
    let bits = ops::read_sys(cpu, mem, tr.base.wrapping_add(at), 2)?;
    let want = ((1u64 << size) - 1) << (port & 7);
    if bits & want != 0 {
        return Err(gp0());
    }
    Ok(())
}

pub(crate) fn port_in(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    port: u16,
    size: u8,
) -> Result<u32, Exception> {
    io_allowed(cpu, mem, port, size)?;
    Ok(mem.pio_in(port, size))
}

pub(crate) fn port_out(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    port: u16,
    size: u8,
    v: u32,
) -> Result<(), Exception> {
    io_allowed(cpu, mem, port, size)?;
    let v = if size >= 4 {
        v
    } else {
        v & ((1u32 << (size * 8)) - 1)
    };
    mem.pio_out(port, size, v);
    Ok(())
}

/// Port number of IN/OUT's port operand (imm8 or DX).
fn port_of(cpu: &Cpu, i: &Instruction, n: u32) -> u16 {
    match i.op_kind(n) {
        OpKind::Register => cpu.gpr[RDX] as u16,
        _ => i.immediate(n) as u16,
    }
}

fn set_edx_eax(cpu: &mut Cpu, v: u64) {
    cpu.gpr[RAX] = v & 0xffff_ffff;
    cpu.gpr[RDX] = v >> 32;
}

/// System instructions; `None` when `m` is not one of them.
pub(crate) fn exec(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    i: &Instruction,
    m: Mnemonic,
) -> Option<Result<(), Exception>> {
    use Mnemonic::*;
    Some(match m {
        Hlt => need_cpl0(cpu).map(|()| cpu.halted = true),
        Cli | Sti => {
            if cpu.protected() && cpu.cpl() > cpu.iopl() {
                return Some(Err(gp0()));
            }
            if m == Sti {
                if cpu.rflags & IF == 0 {
                    cpu.shadow = true;
                }
                cpu.rflags |= IF;
            } else {
                cpu.rflags &= !IF;
            }
            Ok(())
        }
        In => {
            let size = ops::reg_size(i.op0_register()) as u8;
            let port = port_of(cpu, i, 1);
            port_in(cpu, mem, port, size)
                .map(|v| write_sized_gpr(cpu, RAX, size as usize, v as u64))
        }
        Out => {
            let size = ops::reg_size(i.op1_register()) as u8;
            let port = port_of(cpu, i, 0);
            let v = cpu.gpr[RAX] as u32;
            port_out(cpu, mem, port, size, v)
        }
        Cpuid => {
            let r = mem.cpuid(cpu.gpr[RAX] as u32, cpu.gpr[RCX] as u32);
            for (k, idx) in [RAX, RBX, RCX, RDX].into_iter().enumerate() {
                cpu.gpr[idx] = r[k] as u64;
            }
            Ok(())
        }
        Rdmsr => need_cpl0(cpu).and_then(|()| {
            let v = msr::read(cpu, mem, cpu.gpr[RCX] as u32)?;
            set_edx_eax(cpu, v);
            Ok(())
        }),
        Wrmsr => need_cpl0(cpu).and_then(|()| {
            let v = (cpu.gpr[RDX] << 32) | (cpu.gpr[RAX] & 0xffff_ffff);
            msr::write(cpu, mem, cpu.gpr[RCX] as u32, v)
        }),
        Rdtsc | Rdtscp => {
            if cpu.cr4 & CR4_TSD != 0 && cpu.cpl() != 0 && cpu.protected() {
                return Some(Err(gp0()));
            }
            let v = mem.tsc().wrapping_add(cpu.msr.tsc_offset);
            set_edx_eax(cpu, v);
            if m == Rdtscp {
                cpu.gpr[RCX] = cpu.msr.tsc_aux & 0xffff_ffff;
            }
            Ok(())
        }
        Int => Err(Exception::SoftInt(i.immediate8())),
        Int3 => Err(Exception::SoftInt(3)),
        Int1 => Err(Exception::SoftInt(1)),
        Into => {
            if cpu.flag(OF) {
                Err(Exception::SoftInt(4))
            } else {
                Ok(())
            }
        }
        Iret | Iretd | Iretq => interrupt::iret(cpu, mem, i),
        Vmcall | Vmmcall => {
            let long = cpu.mode64();
            if mem.hypercall(&mut cpu.gpr, long) {
                Ok(())
            } else {
                Err(Exception::InvalidOpcode)
            }
        }
        Lgdt | Lidt => need_cpl0(cpu).and_then(|()| {
            let (s, off) = ops::mem_operand(cpu, i)?;
            let am = crate::flags::mask(ops::addr_size(cpu, i));
            let limit = ops::read_mem(cpu, mem, s, off, 2)? as u16;
            let bsize = if cpu.mode64() { 8 } else { 4 };
            let mut base = ops::read_mem(cpu, mem, s, off.wrapping_add(2) & am, bsize)?;
            if i.code() == Code::Lgdt_m1632_16 || i.code() == Code::Lidt_m1632_16 {
                base &= 0xff_ffff;
            }
            let t = Table { base, limit };
            if m == Lgdt {
                cpu.gdtr = t;
            } else {
                cpu.idtr = t;
            }
            Ok(())
        }),
        Sgdt | Sidt => (|| {
            let t = if m == Sgdt { cpu.gdtr } else { cpu.idtr };
            let (s, off) = ops::mem_operand(cpu, i)?;
            let am = crate::flags::mask(ops::addr_size(cpu, i));
            let bsize = if cpu.mode64() { 8 } else { 4 };
            // Check both parts before writing either.
            ops::linear(cpu, s, off.wrapping_add(2) & am, bsize, true)?;
            ops::write_mem(cpu, mem, s, off, 2, t.limit as u64)?;
            ops::write_mem(cpu, mem, s, off.wrapping_add(2) & am, bsize, t.base)
        })(),
        Lldt | Ltr => (|| {
            if !cpu.protected() || cpu.rflags & VM != 0 {
                return Err(Exception::InvalidOpcode);
            }
            need_cpl0(cpu)?;
            let sel = read_op(cpu, mem, i, 0)? as u16;
            load_system_seg(cpu, mem, sel, m == Ltr)
        })(),
        Sldt | Str => (|| {
            if !cpu.protected() || cpu.rflags & VM != 0 {
                return Err(Exception::InvalidOpcode);
            }
            let sel = if m == Sldt {
                cpu.ldtr.selector
            } else {
                cpu.tr.selector
            };
            store_selector(cpu, mem, i, sel as u64)
        })(),
        Smsw => store_selector(cpu, mem, i, cpu.cr0),
        Lmsw => need_cpl0(cpu).and_then(|()| {
            let v = read_op(cpu, mem, i, 0)? & 0xf;
            // Can set PE, never clear it.
            let nv = (cpu.cr0 & !0xe) | v | (cpu.cr0 & CR0_PE);
            write_cr0(cpu, nv)
        }),
        Clts => need_cpl0(cpu).map(|()| cpu.cr0 &= !CR0_TS),
        Invlpg => need_cpl0(cpu).and_then(|()| {
            let (s, off) = ops::mem_operand(cpu, i)?;
            let lin = if cpu.mode64() && s < FS {
                off
            } else {
                cpu.seg[s].base.wrapping_add(off)
            };
            cpu.tlb.flush_page(lin);
            Ok(())
        }),
        Invd | Wbinvd | Wbnoinvd => need_cpl0(cpu),
        Swapgs => (|| {
            if !cpu.mode64() {
                return Err(Exception::InvalidOpcode);
            }
            need_cpl0(cpu)?;
            core::mem::swap(&mut cpu.seg[GS].base, &mut cpu.msr.kernel_gs_base);
            Ok(())
        })(),
        Syscall => syscall(cpu),
        Sysret | Sysretq => sysret(cpu, i),
        Sysenter => sysenter(cpu),
        Sysexit | Sysexitq => sysexit(cpu, i),
        Verr | Verw | Lar | Lsl => verify(cpu, mem, i, m),
        _ => return None,
    })
}

/// SLDT/STR/SMSW: a register destination takes the operand size, memory 16 bits.
fn store_selector(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    i: &Instruction,
    v: u64,
) -> Result<(), Exception> {
    if i.op0_kind() == OpKind::Register {
        let l = ops::reg_loc(i.op0_register()).ok_or(Exception::InvalidOpcode)?;
        let v = if l.size == 2 {
            v & 0xffff
        } else {
            v & 0xffff_ffff
        };
        write_sized_gpr(cpu, l.idx, l.size, v);
        Ok(())
    } else {
        write_op(cpu, mem, i, 0, v & 0xffff)
    }
}

/// LLDT / LTR.
fn load_system_seg(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    sel: u16,
    tss: bool,
) -> Result<(), Exception> {
    let gp = Exception::GeneralProtection((sel & 0xfffc) as u32);
    if sel & 0xfffc == 0 {
        if tss {
            return Err(gp0());
        }
        cpu.ldtr = seg::null_segment(sel);
        return Ok(());
    }
    if sel & 4 != 0 {
        return Err(gp);
    }
    let mut d = seg::read_desc(cpu, mem, sel)?;
    let ok = !d.s()
        && if tss {
            matches!(d.typ(), 1 | 9) && (!cpu.long_mode() || d.typ() == 9)
        } else {
            d.typ() == 2
        };
    if !ok {
        return Err(gp);
    }
    if !d.present() {
        return Err(Exception::NotPresent((sel & 0xfffc) as u32));
    }
    let mut s = d.segment(sel);
    if cpu.long_mode() {
        s.base |= seg::read_desc_high(cpu, mem, &d, sel)?;
    }
    if tss {
        // Mark busy.
        d.raw |= 2 << 40;
        let _ = ops::write_sys(cpu, mem, d.addr.wrapping_add(5), 1, d.raw >> 40);
        s.attr |= 2;
        cpu.tr = s;
    } else {
        cpu.ldtr = s;
    }
    Ok(())
}

/// VERR/VERW/LAR/LSL: ZF says whether the selector's descriptor is visible and fits.
fn verify(
    cpu: &mut Cpu,
    mem: &mut dyn Memory,
    i: &Instruction,
    m: Mnemonic,
) -> Result<(), Exception> {
    if !cpu.protected() || cpu.rflags & VM != 0 {
        return Err(Exception::InvalidOpcode);
    }
    let src = if matches!(m, Mnemonic::Verr | Mnemonic::Verw) {
        0
    } else {
        1
    };
    let sel = read_op(cpu, mem, i, src)? as u16;
    let d = if sel & 0xfffc == 0 {
        None
    } else {
        match seg::read_desc(cpu, mem, sel) {
            Ok(d) => Some(d),
            Err(Exception::GeneralProtection(_)) => None,
            Err(e) => return Err(e),
        }
    };
    let cpl = cpu.cpl();
    let rpl = (sel & 3) as u8;
    let ok = d.filter(|d| {
        let conforming = d.is_code() && d.typ() & 4 != 0;
        let priv_ok = conforming || (d.dpl() >= cpl && d.dpl() >= rpl);
        match m {
            Mnemonic::Verr => d.s() && priv_ok && (!d.is_code() || d.typ() & 2 != 0),
            Mnemonic::Verw => d.s() && priv_ok && !d.is_code() && d.typ() & 2 != 0,
            _ => {
                priv_ok
                    && (d.s()
                        || matches!(d.typ(), 1 | 2 | 3 | 9 | 0xb)
                        || (m == Mnemonic::Lar && matches!(d.typ(), 4 | 5 | 0xc)))
            }
        }
    });
    match ok {
        Some(d) => {
            cpu.rflags |= ZF;
            match m {
                Mnemonic::Lar => write_op(cpu, mem, i, 0, d.raw >> 32 & 0x00f0_ff00)?,
                Mnemonic::Lsl => write_op(cpu, mem, i, 0, d.segment(sel).limit as u64)?,
                _ => {}
            }
        }
        None => cpu.rflags &= !ZF,
    }
    Ok(())
}

fn flat(sel: u16, code: bool, long: bool, dpl: u8) -> Segment {
    let mut attr = ATTR_P | ATTR_S | ATTR_G | ((dpl as u32) << 5);
    if code {
        attr |= 0xb;
        attr |= if long { ATTR_L } else { ATTR_DB };
    } else {
        attr |= 0x3 | ATTR_DB;
    }
    Segment::new(sel, 0, u32::MAX, attr)
}

fn syscall(cpu: &mut Cpu) -> Result<(), Exception> {
    if cpu.efer & EFER_SCE == 0 || !cpu.protected() {
        return Err(Exception::InvalidOpcode);
    }
    let sel = ((cpu.msr.star >> 32) & 0xfffc) as u16;
    if cpu.long_mode() {
        cpu.gpr[RCX] = cpu.rip;
        cpu.gpr[11] = cpu.rflags & !RF;
        let target = if cpu.mode64() {
            cpu.msr.lstar
        } else {
            cpu.msr.cstar
        };
        cpu.seg[CS] = flat(sel, true, true, 0);
        cpu.seg[SS] = flat(sel.wrapping_add(8), false, false, 0);
        cpu.rip = target;
        cpu.rflags = (cpu.rflags & !cpu.msr.sfmask & !RF) | RFLAGS_FIXED;
    } else {
        cpu.gpr[RCX] = cpu.rip & 0xffff_ffff;
        cpu.seg[CS] = flat(sel, true, false, 0);
        cpu.seg[SS] = flat(sel.wrapping_add(8), false, false, 0);
        cpu.rip = cpu.msr.star & 0xffff_ffff;
        cpu.rflags &= !(IF | VM | RF);
    }
    Ok(())
}

fn sysret(cpu: &mut Cpu, i: &Instruction) -> Result<(), Exception> {
    if cpu.efer & EFER_SCE == 0 || !cpu.protected() {
        return Err(Exception::InvalidOpcode);
    }
    need_cpl0(cpu)?;
    let base = ((cpu.msr.star >> 48) & 0xffff) as u16;
    let to64 = i.code() == Code::Sysretq;
    if cpu.long_mode() {
        let rip = if to64 {
            cpu.gpr[RCX]
        } else {
            cpu.gpr[RCX] & 0xffff_ffff
        };
        if !ops::canonical(rip) {
            return Err(gp0());
        }
        cpu.seg[CS] = if to64 {
            flat(base.wrapping_add(16) | 3, true, true, 3)
        } else {
            flat(base | 3, true, false, 3)
        };
        cpu.rip = rip;
        cpu.rflags = (cpu.gpr[11] & 0x3c_7fd7) | RFLAGS_FIXED;
    } else {
        cpu.seg[CS] = flat(base | 3, true, false, 3);
        cpu.rip = cpu.gpr[RCX] & 0xffff_ffff;
        cpu.rflags |= IF;
    }
    let mut ss = flat(base.wrapping_add(8) | 3, false, false, 3);
    ss.selector = base.wrapping_add(8) | 3;
    cpu.seg[SS] = ss;
    Ok(())
}

fn sysenter(cpu: &mut Cpu) -> Result<(), Exception> {
    if !cpu.protected() {
        return Err(gp0());
    }
    let sel = (cpu.msr.sysenter_cs & 0xfffc) as u16;
    if sel == 0 {
        return Err(gp0());
    }
    let long = cpu.long_mode();
    cpu.seg[CS] = flat(sel, true, long, 0);
    cpu.seg[SS] = flat(sel.wrapping_add(8), false, false, 0);
    cpu.rip = if long {
        cpu.msr.sysenter_eip
    } else {
        cpu.msr.sysenter_eip & 0xffff_ffff
    };
    cpu.gpr[RSP] = if long {
        cpu.msr.sysenter_esp
    } else {
        cpu.msr.sysenter_esp & 0xffff_ffff
    };
    cpu.rflags &= !(IF | VM | RF);
    Ok(())
}

fn sysexit(cpu: &mut Cpu, i: &Instruction) -> Result<(), Exception> {
    if !cpu.protected() {
        return Err(gp0());
    }
    need_cpl0(cpu)?;
    let base = (cpu.msr.sysenter_cs & 0xfffc) as u16;
    if base == 0 {
        return Err(gp0());
    }
    let to64 = i.code() == Code::Sysexitq;
    if to64 {
        cpu.seg[CS] = flat(base.wrapping_add(32) | 3, true, true, 3);
        cpu.seg[SS] = flat(base.wrapping_add(40) | 3, false, false, 3);
        cpu.rip = cpu.gpr[RDX];
        cpu.gpr[RSP] = cpu.gpr[RCX];
    } else {
        cpu.seg[CS] = flat(base.wrapping_add(16) | 3, true, false, 3);
        cpu.seg[SS] = flat(base.wrapping_add(24) | 3, false, false, 3);
        cpu.rip = cpu.gpr[RDX] & 0xffff_ffff;
        cpu.gpr[RSP] = cpu.gpr[RCX] & 0xffff_ffff;
    }
    Ok(())
}
