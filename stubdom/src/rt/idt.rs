//! The IDT: every CPU exception (0..32) reports vector, error code, CR2, RIP and RSP
//! and crashes the stub domain through [`super::fatal`]; the upcall vector and every
//! other vector return at once (`iretq`): the main loop re-scans after each HLT, and
//! the stub has no other interrupt source.
//!
//! #PF and #DF run on a stack of their own (IST 1 of a TSS in a GDT of our own), so a
//! stack overflow into the unmapped guard page below the stack is reported instead of
//! ending in a triple fault. The GDT keeps the entry code's selectors (0x08 32-bit
//! code, 0x10 64-bit code, 0x18 data) and adds the TSS at 0x20.

use core::arch::{asm, global_asm};

global_asm!(
    r#"
    .macro STUB_EXC_NOERR n
    .balign 16
    stub_exc_\n:
    pushq $0
    pushq $\n
    jmp stub_exc_common
    .endm
    .macro STUB_EXC_ERR n
    .balign 16
    stub_exc_\n:
    pushq $\n
    jmp stub_exc_common
    .endm

    .section .text.stub_idt, "ax", @progbits
    STUB_EXC_NOERR 0
    STUB_EXC_NOERR 1
    STUB_EXC_NOERR 2
    STUB_EXC_NOERR 3
    STUB_EXC_NOERR 4
    STUB_EXC_NOERR 5
    STUB_EXC_NOERR 6
    STUB_EXC_NOERR 7
    STUB_EXC_ERR 8
    STUB_EXC_NOERR 9
    STUB_EXC_ERR 10
    STUB_EXC_ERR 11
    STUB_EXC_ERR 12
    STUB_EXC_ERR 13
    STUB_EXC_ERR 14
    STUB_EXC_NOERR 15
    STUB_EXC_NOERR 16
    STUB_EXC_ERR 17
    STUB_EXC_NOERR 18
    STUB_EXC_NOERR 19
    STUB_EXC_NOERR 20
    STUB_EXC_ERR 21
    STUB_EXC_NOERR 22
    STUB_EXC_NOERR 23
    STUB_EXC_NOERR 24
    STUB_EXC_NOERR 25
    STUB_EXC_NOERR 26
    STUB_EXC_NOERR 27
    STUB_EXC_NOERR 28
    STUB_EXC_ERR 29
    STUB_EXC_ERR 30
    STUB_EXC_NOERR 31

    stub_exc_common:
    movq %rsp, %rdi
    andq $-16, %rsp
    call stub_exception
    ud2

    .balign 16
    .global stub_irq_return
    stub_irq_return:
    iretq

    .section .rodata.stub_exc_table, "a", @progbits
    .balign 8
    .global stub_exc_table
    stub_exc_table:
    .quad stub_exc_0, stub_exc_1, stub_exc_2, stub_exc_3
    .quad stub_exc_4, stub_exc_5, stub_exc_6, stub_exc_7
    .quad stub_exc_8, stub_exc_9, stub_exc_10, stub_exc_11
    .quad stub_exc_12, stub_exc_13, stub_exc_14, stub_exc_15
    .quad stub_exc_16, stub_exc_17, stub_exc_18, stub_exc_19
    .quad stub_exc_20, stub_exc_21, stub_exc_22, stub_exc_23
    .quad stub_exc_24, stub_exc_25, stub_exc_26, stub_exc_27
    .quad stub_exc_28, stub_exc_29, stub_exc_30, stub_exc_31
    "#,
    options(att_syntax)
);

unsafe extern "C" {
    static stub_exc_table: [u64; 32];
    fn stub_irq_return();
}

#[repr(C, align(16))]
struct Idt([[u64; 2]; 256]);

static mut IDT: Idt = Idt([[0; 2]; 256]);

/// The 64-bit TSS: only IST 1 is used.
#[repr(C, packed(4))]
struct Tss {
    _reserved0: u32,
    rsp: [u64; 3],
    _reserved1: u64,
    ist: [u64; 7],
    _reserved2: u64,
    _reserved3: u16,
    iomap_base: u16,
}

static mut TSS: Tss = Tss {
    _reserved0: 0,
    rsp: [0; 3],
    _reserved1: 0,
    ist: [0; 7],
    _reserved2: 0,
    _reserved3: 0,
    iomap_base: core::mem::size_of::<Tss>() as u16,
};

#[repr(C, align(16))]
struct Gdt([u64; 6]);

/// Written by `ltr` (the busy bit), so not in .rodata.
static mut GDT: Gdt = Gdt([
    0,
    0x00cf_9b00_0000_ffff, // 0x08: code, 32-bit, flat
    0x00af_9b00_0000_ffff, // 0x10: code, 64-bit
    0x00cf_9300_0000_ffff, // 0x18: data, flat
    0,                     // 0x20: TSS (filled in)
    0,
]);
const TSS_SELECTOR: u16 = 0x20;

/// Stack for #PF and #DF.
const IST_STACK: usize = 16 * 1024;
#[repr(C, align(16))]
struct IstStack([u8; IST_STACK]);
static mut IST1: IstStack = IstStack([0; IST_STACK]);

/// 64-bit interrupt gate, present, DPL 0, selector 0x10, IST `ist` (0 = none).
fn gate(handler: u64, ist: u64) -> [u64; 2] {
    let lo = (handler & 0xffff)
        | (0x10 << 16)
        | (ist & 7) << 32
        | (0x8e00u64 << 32)
        | ((handler >> 16) & 0xffff) << 48;
    [lo, handler >> 32]
}

/// Our GDT with a TSS whose IST 1 is [`IST1`]; loaded, and TR set.
///
/// # Safety
/// Once, from [`init`], before interrupts are enabled.
#[allow(clippy::deref_addrof)] // raw-pointer access to `static mut`s, on purpose
unsafe fn load_gdt_tss() {
    // SAFETY: the caller's contract; nothing else uses these statics.
    unsafe {
        let tss = &mut *(&raw mut TSS);
        tss.ist[0] = (&raw const IST1 as u64) + IST_STACK as u64;
        let base = &raw const TSS as u64;
        let limit = (core::mem::size_of::<Tss>() - 1) as u64;
        let gdt = &mut *(&raw mut GDT);
        gdt.0[4] = (limit & 0xffff)
            | (base & 0xff_ffff) << 16
            | 0x89 << 40 // present, 64-bit available TSS
            | ((limit >> 16) & 0xf) << 48
            | ((base >> 24) & 0xff) << 56;
        gdt.0[5] = base >> 32;
        #[repr(C, packed)]
        struct Ptr {
            limit: u16,
            base: u64,
        }
        let ptr = Ptr {
            limit: (core::mem::size_of::<Gdt>() - 1) as u16,
            base: &raw const GDT as u64,
        };
        // Same selectors as the boot GDT: the segment registers stay valid.
        asm!("lgdt [{}]", in(reg) &ptr, options(readonly, nostack, preserves_flags));
        asm!("ltr {0:x}", in(reg) TSS_SELECTOR, options(nomem, nostack, preserves_flags));
    }
}

/// Fill and load the IDT.
#[allow(clippy::deref_addrof)] // raw-pointer access to a `static mut`, on purpose
pub fn init() {
    // SAFETY: called once, before interrupts are enabled; nothing else touches IDT.
    unsafe {
        load_gdt_tss();
        let idt = &mut *(&raw mut IDT);
        let table = &*(&raw const stub_exc_table);
        for (v, e) in idt.0.iter_mut().enumerate() {
            *e = match table.get(v) {
                // #DF and #PF on the IST stack (a stack overflow is a #PF).
                Some(&h) if v == 8 || v == 14 => gate(h, 1),
                Some(&h) => gate(h, 0),
                None => gate(stub_irq_return as *const () as u64, 0),
            };
        }
        #[repr(C, packed)]
        struct Ptr {
            limit: u16,
            base: u64,
        }
        let ptr = Ptr {
            limit: (core::mem::size_of::<Idt>() - 1) as u16,
            base: &raw const IDT as u64,
        };
        asm!("lidt [{}]", in(reg) &ptr, options(readonly, nostack, preserves_flags));
    }
}

/// What the entry stubs push, then the CPU's frame.
#[repr(C)]
pub struct ExceptionFrame {
    pub vector: u64,
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

const NAMES: [&str; 32] = [
    "#DE divide error",
    "#DB debug",
    "NMI",
    "#BP breakpoint",
    "#OF overflow",
    "#BR bound range",
    "#UD invalid opcode",
    "#NM device not available",
    "#DF double fault",
    "coprocessor segment overrun",
    "#TS invalid TSS",
    "#NP segment not present",
    "#SS stack fault",
    "#GP general protection",
    "#PF page fault",
    "reserved 15",
    "#MF x87 error",
    "#AC alignment check",
    "#MC machine check",
    "#XM SIMD error",
    "#VE virtualization",
    "#CP control protection",
    "reserved 22",
    "reserved 23",
    "reserved 24",
    "reserved 25",
    "reserved 26",
    "reserved 27",
    "#HV hypervisor injection",
    "#VC VMM communication",
    "#SX security",
    "reserved 31",
];

#[unsafe(no_mangle)]
extern "C" fn stub_exception(f: &ExceptionFrame) -> ! {
    let cr2: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack, preserves_flags)) };
    let name = NAMES.get(f.vector as usize).copied().unwrap_or("?");
    let guard = super::entry::stack_guard();
    let overflow = if f.vector == 14 && cr2 >= guard && cr2 < guard + 4096 {
        " (stack overflow)"
    } else {
        ""
    };
    super::fatal(format_args!(
        "exception {} ({name}){overflow}: error code {:#x}, cr2 {cr2:#x}, rip {:#x}, rsp {:#x}, rflags {:#x}",
        f.vector, f.error, f.rip, f.rsp, f.rflags
    ))
}
