//! PVH entry (32-bit flat protected mode, paging off, EBX = hvm_start_info), the switch
//! to long mode, the Linux hand-off and the triple-fault exit.
//!
//! Long mode set-up: identity map of the first 4 GiB with 2 MiB pages (PML4 + PDPT +
//! 4 PDs = 6 pages, NOBITS, written here), PAE, EFER.LME, CR0.PG, and a GDT whose
//! selectors are what the Linux 64-bit boot protocol wants: 0x10 = 64-bit code
//! (__BOOT_CS), 0x18 = flat data (__BOOT_DS). 0x08 is a flat 32-bit code segment.
//! Loops are short: on a PVM /dev/kvm every instruction here is emulated.

use core::arch::global_asm;

global_asm!(
    r#"
    /* XEN_ELFNOTE_PHYS32_ENTRY (18): name "Xen", 4-byte descriptor = 32-bit entry. */
    .section .note.Xen, "a", @note
    .balign 4
    .long 4
    .long 4
    .long 18
    .asciz "Xen"
    .balign 4
    .long pvh_start32
    .balign 4

    .section .noinit.pagetables, "aw", @nobits
    .balign 4096
    fw_page_tables:
    .skip 6 * 4096

    .section .noinit.stack, "aw", @nobits
    .balign 16
    .skip 64 * 1024
    fw_stack_top:

    .section .rodata.fw_gdt, "a", @progbits
    .balign 16
    fw_gdt:
    .quad 0
    .quad 0x00cf9b000000ffff    /* 0x08: code, 32-bit, flat */
    .quad 0x00af9b000000ffff    /* 0x10: code, 64-bit (L=1) */
    .quad 0x00cf93000000ffff    /* 0x18: data, flat, writable */
    fw_gdt_end:
    .balign 8
    .word 0, 0, 0
    fw_gdt_ptr:
    .word fw_gdt_end - fw_gdt - 1
    .quad fw_gdt
    .balign 8
    .word 0, 0, 0
    fw_null_idt_ptr:
    .word 0
    .quad 0

    .section .text.entry, "ax", @progbits
    .code32
    .global pvh_start32
    pvh_start32:
    cli
    cld
    movl $fw_stack_top, %esp

    /* Zero the 6 table pages (EBX, the start info pointer, is left alone). */
    movl $fw_page_tables, %edi
    xorl %eax, %eax
    movl $(6 * 4096 / 4), %ecx
    rep stosl

    /* PML4[0] -> PDPT (present, writable). */
    movl $(fw_page_tables + 0x1000 + 3), %eax
    movl %eax, fw_page_tables

    /* PDPT[0..4] -> PD0..PD3. */
    movl $(fw_page_tables + 0x2000 + 3), %eax
    movl $(fw_page_tables + 0x1000), %edi
    movl $4, %ecx
1:  movl %eax, (%edi)
    addl $0x1000, %eax
    addl $8, %edi
    loop 1b

    /* PD entries: 2048 x 2 MiB pages (present, writable, PS), identity. */
    movl $0x83, %eax
    movl $(fw_page_tables + 0x2000), %edi
    movl $2048, %ecx
2:  movl %eax, (%edi)
    addl $0x200000, %eax
    addl $8, %edi
    loop 2b

    movl %cr4, %eax
    orl $0x20, %eax                 /* CR4.PAE */
    movl %eax, %cr4
    movl $fw_page_tables, %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx          /* EFER */
    rdmsr
    orl $0x100, %eax                /* EFER.LME */
    wrmsr
    lgdt fw_gdt_ptr
    movl %cr0, %eax
    orl $0x80000001, %eax           /* CR0.PG | CR0.PE */
    movl %eax, %cr0
    ljmp $0x10, $fw_start64

    .code64
    fw_start64:
    movl $0x18, %eax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movq $fw_stack_top, %rsp

    /* Zero .bss (Rust statics); the loader may not have. */
    movq $__bss_start, %rdi
    movq $__bss_end, %rcx
    subq %rdi, %rcx
    xorl %eax, %eax
    rep stosb

    movl %ebx, %edi                 /* start info gpa, zero-extended */
    xorl %ebp, %ebp
    call chassis_main
3:  cli
    hlt
    jmp 3b

    /* fw_jump_linux(entry: rdi, boot_params: rsi): 64-bit boot protocol hand-off. */
    .global fw_jump_linux
    fw_jump_linux:
    cli
    lgdt fw_gdt_ptr
    movl $0x18, %eax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorl %eax, %eax
    movw %ax, %fs
    movw %ax, %gs
    xorl %ebx, %ebx
    xorl %ebp, %ebp
    movq %rdi, %rax
    xorl %edi, %edi
    jmpq *%rax

    /* fw_rm_tramp: copied to REAL_MODE_TRAMPOLINE (0x7000) and entered there from long
       mode: compatibility mode (0x08), paging and EFER.LME off, 16-bit protected mode
       (0x10/0x18), PE off, real mode, IDT = IVT (limit 0x3ff, base 0), jump to the
       reset vector f000:fff0. Addresses are absolute for the copy at 0x7000. */
    .section .rodata.fw_rm_tramp, "a", @progbits
    .balign 16
    .global fw_rm_tramp_start
    fw_rm_tramp_start:
    .code64
    cli
    lgdt (0x7000 + rmt_gdt_ptr - fw_rm_tramp_start)
    pushq $0x08
    pushq $(0x7000 + rmt_c32 - fw_rm_tramp_start)
    lretq
    .code32
    rmt_c32:
    movl %cr0, %eax
    andl $0x7fffffff, %eax          /* CR0.PG off: leaves long mode */
    movl %eax, %cr0
    movl $0xc0000080, %ecx
    rdmsr
    andl $0xfffffeff, %eax          /* EFER.LME off */
    wrmsr
    movl %cr4, %eax
    andl $0xffffffdf, %eax          /* CR4.PAE off */
    movl %eax, %cr4
    xorl %eax, %eax
    movl %eax, %cr3
    movl $0x18, %eax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %fs
    movw %ax, %gs
    movw %ax, %ss
    ljmp $0x10, $(0x7000 + rmt_p16 - fw_rm_tramp_start)
    .code16
    rmt_p16:
    movl %cr0, %eax
    andl $0xfffffffe, %eax          /* CR0.PE off */
    movl %eax, %cr0
    ljmp $0, $(0x7000 + rmt_r16 - fw_rm_tramp_start)
    rmt_r16:
    xorw %ax, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %fs
    movw %ax, %gs
    movw %ax, %ss
    movw $0x7000, %sp
    lidtl (0x7000 + rmt_idt - fw_rm_tramp_start)
    ljmp $0xf000, $0xfff0
    .balign 8
    rmt_gdt:
    .quad 0
    .quad 0x00cf9b000000ffff    /* 0x08: code, 32-bit, flat */
    .quad 0x00009b000000ffff    /* 0x10: code, 16-bit, base 0, limit 64 KiB */
    .quad 0x000093000000ffff    /* 0x18: data, 16-bit, base 0, limit 64 KiB */
    rmt_gdt_end:
    rmt_gdt_ptr:
    .word rmt_gdt_end - rmt_gdt - 1
    .quad 0x7000 + rmt_gdt - fw_rm_tramp_start
    rmt_idt:
    .word 0x3ff
    .long 0
    .global fw_rm_tramp_end
    fw_rm_tramp_end:
    .code64

    .section .text.entry, "ax", @progbits
    /* fw_triple_fault(): an IDT of limit 0, then an exception: #GP, #DF, shutdown. */
    .global fw_triple_fault
    fw_triple_fault:
    cli
    lidt fw_null_idt_ptr
    int3
    ud2
4:  hlt
    jmp 4b
    "#,
    options(att_syntax)
);

unsafe extern "C" {
    fn fw_jump_linux(entry: u64, boot_params: u64) -> !;
    fn fw_triple_fault() -> !;
    static fw_rm_tramp_start: u8;
    static fw_rm_tramp_end: u8;
}

/// Where the real-mode trampoline is copied and run (the Linux boot-params page, unused
/// on the SeaBIOS path; below SeaBIOS's info structure users and the start info).
pub const REAL_MODE_TRAMPOLINE: u64 = 0x7000;

/// Leaves long mode for real mode and jumps to the reset vector f000:fff0, interrupts
/// off, IDT = the real-mode IVT.
///
/// # Safety
/// A BIOS image must be in place below 1 MiB, and the page at
/// [`REAL_MODE_TRAMPOLINE`] free to overwrite.
pub unsafe fn enter_bios_reset_vector() -> ! {
    // The assembler symbols delimit the trampoline bytes in .rodata.
    let (start, end) = (
        &raw const fw_rm_tramp_start as usize,
        &raw const fw_rm_tramp_end as usize,
    );
    // SAFETY: the caller guarantees the destination page; the source is our image.
    unsafe {
        let code = core::slice::from_raw_parts(start as *const u8, end - start);
        crate::rt::mem::write_bytes(REAL_MODE_TRAMPOLINE, code);
        core::arch::asm!("jmp {0}", in(reg) REAL_MODE_TRAMPOLINE, options(noreturn));
    }
}

/// Enters a Linux kernel's 64-bit entry with RSI = `boot_params`, CS = 0x10,
/// DS/ES/SS = 0x18, interrupts off.
///
/// # Safety
/// `entry` must be the 64-bit entry of a kernel loaded per the boot protocol, and
/// `boot_params` a filled zero page; both identity-mapped.
pub unsafe fn jump_linux(entry: u64, boot_params: u64) -> ! {
    // SAFETY: guaranteed by the caller.
    unsafe { fw_jump_linux(entry, boot_params) }
}

/// Forces a triple fault so the hypervisor stops the domain with an error.
pub fn triple_fault() -> ! {
    // SAFETY: never returns; touches no Rust-visible state.
    unsafe { fw_triple_fault() }
}
