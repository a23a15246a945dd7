//! LOCKed read-modify-writes (and XCHG with memory) in long mode under 4-level paging
//! whose entries lack Accessed/Dirty: the page walks of the locked access store A/D into
//! the page tables, and the instruction must still take effect exactly once (a no_std
//! guest saw `AtomicBool::swap` run twice until it preset A/D in every PTE).

mod common;

use common::*;
use hypervisor_emu::cpu::*;
use hypervisor_emu::{EmuVcpu, RunExit};
use iced_x86::code_asm::*;

const PML4: u64 = 0x10000;
const PDPT: u64 = 0x11000;
const PD: u64 = 0x12000;

const P: u64 = 1;
const RW: u64 = 2;
const A: u64 = 1 << 5;
const D: u64 = 1 << 6;
const PS: u64 = 1 << 7;

/// Where things are. Linear = physical everywhere: the first MiB in 4 KiB pages (the
/// page table at `pt`), 2..4 MiB as one 2 MiB page.
#[derive(Clone, Copy, Debug)]
struct Layout {
    name: &'static str,
    pt: u64,
    code: u64,
    operand: u64,
}

const LAYOUTS: [Layout; 4] = [
    Layout {
        name: "4 KiB page",
        pt: 0x13000,
        code: 0x1000,
        operand: 0x5000,
    },
    Layout {
        name: "2 MiB page",
        pt: 0x13000,
        code: 0x1000,
        operand: 0x20_0100,
    },
    // The A/D stores of the operand's walk go to the operand's own page.
    Layout {
        name: "operand in the page table's page",
        pt: 0x13000,
        code: 0x1000,
        operand: 0x13800,
    },
    // ... and to the page the instruction was decoded from.
    Layout {
        name: "page table in the code page",
        pt: 0x1000,
        code: 0x1800,
        operand: 0x5000,
    },
];

/// One locked instruction on `[rdi]`: initial memory/RAX/RCX, then the results of
/// exactly ONE execution (memory, RAX, RCX, ZF, CF; the flags start clear).
struct Op {
    name: &'static str,
    emit: fn(&mut CodeAssembler) -> Result<(), IcedError>,
    init: (u64, u64, u64),
    want: (u64, u64, u64, bool, bool),
}

const OPS: [Op; 6] = [
    // AtomicBool::swap(true) on a false flag.
    Op {
        name: "xchg byte",
        emit: |a| a.xchg(byte_ptr(rdi), al),
        init: (0, 1, 0),
        want: (1, 0, 0, false, false),
    },
    Op {
        name: "xchg qword",
        emit: |a| a.xchg(qword_ptr(rdi), rax),
        init: (0x1111, 0x2222, 0),
        want: (0x2222, 0x1111, 0, false, false),
    },
    Op {
        name: "lock xadd",
        emit: |a| a.lock().xadd(qword_ptr(rdi), rax),
        init: (5, 3, 0),
        want: (8, 5, 0, false, false),
    },
    Op {
        name: "lock cmpxchg",
        emit: |a| a.lock().cmpxchg(qword_ptr(rdi), rcx),
        init: (5, 5, 9),
        want: (9, 5, 9, true, false),
    },
    Op {
        name: "lock inc",
        emit: |a| a.lock().inc(qword_ptr(rdi)),
        init: (5, 0, 0),
        want: (6, 0, 0, false, false),
    },
    Op {
        name: "lock bts",
        emit: |a| a.lock().bts(dword_ptr(rdi), 4),
        init: (1, 0, 0),
        want: (0x11, 0, 0, false, false),
    },
];

/// Paging entry addresses of `lin`: (leaf, the upper levels).
fn entries(l: &Layout, lin: u64) -> (u64, Vec<u64>) {
    if lin >= 0x20_0000 {
        (PD + 8 * (lin >> 21), vec![PML4, PDPT])
    } else {
        (l.pt + 8 * (lin >> 12), vec![PML4, PDPT, PD])
    }
}

/// Run `op` once in the given situation; `Err` describes what went wrong.
fn run_case(
    l: &Layout,
    op: &Op,
    leaf: u64,
    others: u64,
    warm: bool,
    atomics: bool,
) -> Result<(), String> {
    let mut bus = TestBus::new(0x40_0000);
    bus.atomics = atomics;
    let upper = P | RW | others;
    bus.put_u64(PML4, PDPT | upper);
    bus.put_u64(PDPT, PD | upper);
    bus.put_u64(PD, l.pt | upper);
    bus.put_u64(PD + 8, 0x20_0000 | PS | upper);
    for k in 0..256u64 {
        bus.put_u64(l.pt + 8 * k, (k << 12) | upper);
    }
    let (leaf_a, uppers) = entries(l, l.operand);
    bus.put_u64(leaf_a, (bus.u64_at(leaf_a) & !(A | D)) | leaf);
    let code = asm(64, l.code, |a| {
        if warm {
            // A plain read first: the TLB then holds the page without D.
            a.mov(rdx, qword_ptr(rdi))?;
        }
        (op.emit)(a)?;
        a.hlt()
    });
    bus.load(l.code, &code);
    bus.put_u64(l.operand, op.init.0);

    let mut c = Cpu::new();
    c.cr0 |= CR0_PG | CR0_WP;
    c.cr4 |= CR4_PAE;
    c.cr3 = PML4;
    c.rip = l.code;
    c.gpr[RDI] = l.operand;
    c.gpr[RAX] = op.init.1;
    c.gpr[RCX] = op.init.2;
    let mut v = EmuVcpu::new(c);
    let exit = v.run(&mut bus, 100);
    let mut bad = Vec::new();
    if exit
        != (RunExit::Halted {
            interrupts_enabled: false,
        })
    {
        bad.push(format!("exit {exit:?} ({})", v.summary()));
    }
    let got = (
        bus.u64_at(l.operand),
        v.cpu.gpr[RAX],
        v.cpu.gpr[RCX],
        v.cpu.flag(ZF),
        v.cpu.flag(CF),
    );
    if got != op.want {
        bad.push(format!(
            "(mem, rax, rcx, zf, cf) = {got:x?}, one execution gives {:x?}",
            op.want
        ));
    }
    let e = bus.u64_at(leaf_a);
    if e & (A | D) != A | D {
        bad.push(format!("leaf entry {e:#x} lacks A/D"));
    }
    for a in uppers {
        if bus.u64_at(a) & A == 0 {
            bad.push(format!("entry at {a:#x} = {:#x} lacks A", bus.u64_at(a)));
        }
    }
    // Nothing else touches memory: one compare-and-swap (the operand's), never lost.
    if atomics && (bus.cas_ok, bus.cas_lost) != (1, 0) {
        bad.push(format!(
            "{} swaps stored, {} lost",
            bus.cas_ok, bus.cas_lost
        ));
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("; "))
    }
}

fn matrix(atomics: bool) {
    let mut failures = Vec::new();
    let mut n = 0;
    for l in &LAYOUTS {
        for op in &OPS {
            for leaf in [0, A, A | D] {
                for others in [0, A | D] {
                    for warm in [false, true] {
                        n += 1;
                        if let Err(e) = run_case(l, op, leaf, others, warm, atomics) {
                            failures.push(format!(
                                "{}, {}, leaf A/D {:#x}, others {:#x}, warm TLB {warm}: {e}",
                                l.name, op.name, leaf, others
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The compare-and-swap path (`Bus::ram_cmpxchg` available, as in `hypervisor-core`).
#[test]
fn locked_rmw_runs_once_while_the_walk_sets_accessed_dirty() {
    matrix(true);
}

/// The serialised path (no `ram_cmpxchg`).
#[test]
fn serialised_locked_rmw_runs_once_while_the_walk_sets_accessed_dirty() {
    matrix(false);
}
