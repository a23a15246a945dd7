//! Entry (32-bit flat protected mode, paging off, EBX = start-info gpa), the switch to
//! long mode on a boot map, then `stub_main`. `stub_main` replaces the boot map with
//! the stub's own tables (`paging`) before it touches anything outside its image.
//!
//! Boot map: the first 1 GiB identity-mapped with 2 MiB pages (PML4 + PDPT + PD, 3
//! NOBITS pages written here): the image, the start-info page and the RAM the final
//! tables are built in. GDT: 0x08 = flat 32-bit code, 0x10 = 64-bit code, 0x18 = flat
//! data. Loops are short: every instruction here may be interpreted.

use core::arch::global_asm;

/// Bytes of stack (above the guard page).
pub const STACK_SIZE: usize = 64 * 1024;
/// What the unused stack is painted with (to measure its high-water mark).
pub const STACK_PAINT: u64 = 0x5354_4b5f_5354_4b5f;

global_asm!(
    r#"
    .section .noinit.boottables, "aw", @nobits
    .balign 4096
    stub_boot_pml4:
    .skip 4096
    stub_boot_pdpt:
    .skip 4096
    stub_boot_pd:
    .skip 4096

    .section .noinit.stack, "aw", @nobits
    .balign 16
    .global stub_stack_bottom
    stub_stack_bottom:
    .skip {stack}
    .global stub_stack_top
    stub_stack_top:

    .section .rodata.stub_gdt, "a", @progbits
    .balign 16
    stub_gdt:
    .quad 0
    .quad 0x00cf9b000000ffff    /* 0x08: code, 32-bit, flat */
    .quad 0x00af9b000000ffff    /* 0x10: code, 64-bit (L=1) */
    .quad 0x00cf93000000ffff    /* 0x18: data, flat, writable */
    stub_gdt_end:
    .balign 8
    .word 0, 0, 0
    stub_gdt_ptr:
    .word stub_gdt_end - stub_gdt - 1
    .quad stub_gdt

    .section .text.entry, "ax", @progbits
    .code32
    .global stub_start32
    stub_start32:
    cli
    cld
    movl $stub_stack_top, %esp

    /* Zero the 3 boot table pages (EBX, the start info pointer, is kept). */
    movl $stub_boot_pml4, %edi
    xorl %eax, %eax
    movl $(3 * 4096 / 4), %ecx
    rep stosl
    movl $(stub_boot_pdpt + 3), %eax
    movl %eax, stub_boot_pml4
    movl $(stub_boot_pd + 3), %eax
    movl %eax, stub_boot_pdpt

    /* PD: 512 x 2 MiB (present, writable, PS), identity. */
    movl $0x83, %eax
    movl $stub_boot_pd, %edi
    movl $512, %ecx
1:  movl %eax, (%edi)
    addl $0x200000, %eax
    addl $8, %edi
    loop 1b

    movl %cr4, %eax
    orl $0x20, %eax                 /* CR4.PAE */
    movl %eax, %cr4
    movl $stub_boot_pml4, %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx          /* EFER */
    rdmsr
    orl $0x100, %eax                /* EFER.LME */
    wrmsr
    lgdt stub_gdt_ptr
    movl %cr0, %eax
    orl $0x80010001, %eax           /* CR0.PG | CR0.WP | CR0.PE */
    movl %eax, %cr0
    ljmp $0x10, $stub_start64

    .code64
    stub_start64:
    movl $0x18, %eax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorl %eax, %eax
    movw %ax, %fs
    movw %ax, %gs

    /* Paint the stack (to measure how deep it got), then use it. */
    movq $stub_stack_bottom, %rdi
    movq $({stack} / 8), %rcx
    movabsq ${paint}, %rax
    rep stosq
    movq $stub_stack_top, %rsp

    /* Zero .bss (Rust statics); the loader may not have. */
    movq $__bss_start, %rdi
    movq $__bss_end, %rcx
    subq %rdi, %rcx
    shrq $3, %rcx
    xorl %eax, %eax
    rep stosq

    movl %ebx, %edi                 /* start info gpa, zero-extended */
    xorl %ebp, %ebp
    call stub_main
2:  cli
    hlt
    jmp 2b
    "#,
    stack = const STACK_SIZE,
    paint = const STACK_PAINT,
    options(att_syntax)
);

unsafe extern "C" {
    static __image_start: u8;
    static __image_end: u8;
    static __stack_guard: u8;
    static stub_stack_bottom: u8;
    static stub_stack_top: u8;
}

/// `[start, end)` of the loaded image, boot tables, guard and stack included.
pub fn image_range() -> (u64, u64) {
    (
        &raw const __image_start as u64,
        &raw const __image_end as u64,
    )
}

/// The 4 KiB page below the stack that the stub's tables leave unmapped.
pub fn stack_guard() -> u64 {
    &raw const __stack_guard as u64
}

/// Bytes of stack ever used (the paint that is gone, from the bottom).
pub fn stack_high_water() -> usize {
    let bottom = &raw const stub_stack_bottom as *const u64;
    let top = &raw const stub_stack_top as u64;
    let words = (top - bottom as u64) as usize / 8;
    let mut untouched = 0;
    while untouched < words {
        // SAFETY: inside the stack, below anything live (we stop at the first
        // overwritten word, and the live part is above it).
        if unsafe { core::ptr::read_volatile(bottom.add(untouched)) } != STACK_PAINT {
            break;
        }
        untouched += 1;
    }
    (words - untouched) * 8
}
