//! Shared by the backend tests (kvm.rs, emu.rs): a minimal ELF wrapper for hand-assembled
//! PVH payloads, temporary directories, a domain config, and the payloads both backends
//! run. The payloads were assembled with GNU as (`as --32`); the listing is next to the
//! bytes.
#![allow(dead_code)]

use std::path::PathBuf;

use chassis_devices::profile::QEMU_XEN;
use hypervisor_abi::pvh::FIRMWARE_BASE;
use hypervisor_core::{Backend, CharTarget, DomainConfig};

/// A minimal ELF64 x86-64 executable: `image` loaded at FIRMWARE_BASE (one PT_LOAD with
/// a page of memory at least), entry at its first byte.
pub fn elf(image: &[u8]) -> Vec<u8> {
    let mut e = vec![0u8; 64 + 56];
    e[0..4].copy_from_slice(b"\x7fELF");
    e[4] = 2; // ELFCLASS64
    e[5] = 1; // little endian
    e[6] = 1;
    e[16] = 2; // ET_EXEC
    e[18] = 62; // EM_X86_64
    e[20] = 1;
    e[24..32].copy_from_slice(&FIRMWARE_BASE.to_le_bytes());
    e[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    e[52] = 64;
    e[54] = 56;
    e[56] = 1;
    let ph = &mut e[64..120];
    ph[0] = 1; // PT_LOAD
    ph[4] = 7;
    ph[8..16].copy_from_slice(&120u64.to_le_bytes());
    ph[16..24].copy_from_slice(&FIRMWARE_BASE.to_le_bytes());
    ph[24..32].copy_from_slice(&FIRMWARE_BASE.to_le_bytes());
    ph[32..40].copy_from_slice(&(image.len() as u64).to_le_bytes());
    ph[40..48].copy_from_slice(&(image.len() as u64).max(0x1000).to_le_bytes());
    e.extend_from_slice(image);
    e
}

pub struct Tmp(pub PathBuf);
impl Tmp {
    pub fn new(name: &str) -> Tmp {
        let d = std::env::temp_dir().join(format!(
            "hypervisor-core-test-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Tmp(d)
    }
}
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn config_for(backend: Backend, tmp: &Tmp, payload: &[u8], vcpus: u32) -> DomainConfig {
    let fw = tmp.0.join("payload.elf");
    std::fs::write(&fw, elf(payload)).unwrap();
    DomainConfig {
        name: "test".into(),
        memory_mib: 32,
        vcpus,
        profile: &QEMU_XEN,
        backend,
        firmware: fw,
        kernel: None,
        ramdisk: None,
        bios: None,
        cmdline: String::new(),
        serial: CharTarget::File(tmp.0.join("com1.log")),
        debugcon: CharTarget::Null,
        deterministic: false,
        stop_on_output: None,
        stubdom: None,
    }
}

/// `ud2` with the reset-state IDT (base 0, zeroed RAM): #UD → #GP → #DF → triple fault.
pub const UD2: [u8; 2] = [0x0f, 0x0b];

/// Print "KKK" on COM1, program the PIIX4 PM block at 0xb000 through PCI config
/// (00:01.3: PMBA 0x40 = 0xb001, PMIOSE 0x80 = 1), enable ACPI (SMI_CMD 0xb2 = 0xf1),
/// then SLP_TYP=0 (S5 in chassis' DSDT) | SLP_EN to PM1a_CNT (0xb004). If the power-off
/// does not happen, the trailing ud2 crashes the VM instead of hanging.
pub const SERIAL_THEN_S5: &[u8] = &[
    0x66, 0xba, 0xf8, 0x03, //             mov $0x3f8,%dx
    0xb0, 0x4b, //                         mov $'K',%al
    0xee, 0xee, 0xee, //                   out %al,(%dx) x3
    0x66, 0xba, 0xf8, 0x0c, //             mov $0xcf8,%dx
    0xb8, 0x40, 0x0b, 0x00, 0x80, //       mov $0x80000b40,%eax
    0xef, //                               out %eax,(%dx)
    0x66, 0xba, 0xfc, 0x0c, //             mov $0xcfc,%dx
    0xb8, 0x01, 0xb0, 0x00, 0x00, //       mov $0xb001,%eax
    0xef, //                               out %eax,(%dx)
    0x66, 0xba, 0xf8, 0x0c, //             mov $0xcf8,%dx
    0xb8, 0x80, 0x0b, 0x00, 0x80, //       mov $0x80000b80,%eax
    0xef, //                               out %eax,(%dx)
    0x66, 0xba, 0xfc, 0x0c, //             mov $0xcfc,%dx
    0xb0, 0x01, //                         mov $1,%al
    0xee, //                               out %al,(%dx)
    0xb0, 0xf1, //                         mov $0xf1,%al
    0xe6, 0xb2, //                         out %al,$0xb2
    0x66, 0xba, 0x04, 0xb0, //             mov $0xb004,%dx
    0x66, 0xb8, 0x00, 0x20, //             mov $0x2000,%ax
    0x66, 0xef, //                         out %ax,(%dx)
    0x0f, 0x0b, //                         ud2
];

/// `n` reads of port 0x80, then a CPU reset through 0xcf9 (PIIX3 RCR, RST_CPU).
pub fn pio_loop(n: u32) -> Vec<u8> {
    let mut p = vec![0xb9]; //             mov $n,%ecx
    p.extend_from_slice(&n.to_le_bytes());
    p.extend_from_slice(&[
        0xe4, 0x80, //                     1: in $0x80,%al
        0x49, //                           dec %ecx
        0x75, 0xfb, //                     jnz 1b
        0xb0, 0x06, //                     mov $6,%al
        0x66, 0xba, 0xf9, 0x0c, //         mov $0xcf9,%dx
        0xee, //                           out %al,(%dx)
    ]);
    p.extend_from_slice(&UD2);
    p
}

/// String I/O keeps its element size: `rep outsl` of two dwords to 0xcf8 (only dword
/// writes latch CONFIG_ADDRESS; the second selects 00:00.0), `in` the vendor/device dword
/// (i440FX 8086:1237), then `rep insw` of two words from 0xcfc must store 0x8086 twice.
/// Success resets through 0xcf9; any mismatch runs into ud2 (a crash).
pub fn string_io() -> Vec<u8> {
    let mut p = vec![
        0xbe, 0x00, 0x01, 0x10, 0x00, //   mov $0x100100,%esi
        0xb9, 0x02, 0x00, 0x00, 0x00, //   mov $2,%ecx
        0x66, 0xba, 0xf8, 0x0c, //         mov $0xcf8,%dx
        0xf3, 0x6f, //                     rep outsl
        0x66, 0xba, 0xfc, 0x0c, //         mov $0xcfc,%dx
        0xed, //                           in (%dx),%eax
        0x3d, 0x86, 0x80, 0x37, 0x12, //   cmp $0x12378086,%eax
        0x75, 0x20, //                     jne fail
        0xbf, 0x08, 0x01, 0x10, 0x00, //   mov $0x100108,%edi
        0xb9, 0x02, 0x00, 0x00, 0x00, //   mov $2,%ecx
        0x66, 0xf3, 0x6d, //               rep insw
        0x81, 0x3d, 0x08, 0x01, 0x10, 0x00, 0x86, 0x80, 0x86,
        0x80, // cmpl $0x80868086,0x100108
        0x75, 0x07, //                     jne fail
        0xb0, 0x06, //                     mov $6,%al
        0x66, 0xba, 0xf9, 0x0c, //         mov $0xcf9,%dx
        0xee, //                           out %al,(%dx)
        0x0f, 0x0b, //                     fail: ud2
    ];
    p.resize(0x100, 0xf4);
    // The dwords for rep outsl at 0x100100: ISA bridge ID, then host bridge ID.
    p.extend_from_slice(&0x8000_0800u32.to_le_bytes());
    p.extend_from_slice(&0x8000_0000u32.to_le_bytes());
    p
}

/// The Xen interface SeaBIOS uses: CPUID 0x40000000 = max leaf 0x40000002 and "XenV...",
/// 0x40000100 = "KVMK..." (KVM's leaves moved up), 0x40000002 EBX = the hypercall MSR;
/// WRMSR of the page address 0x200000 fills the hypercall page; stub 17 (`xen_version`,
/// at page + 17 * 32) with EBX = 1 (extraversion) writes "-chassis" to ECX = 0x300000 and
/// returns 0, EBX = 0 returns 0x00040011 (4.17), EBX = 99 returns -ENOSYS. Success resets
/// through 0xcf9; any mismatch runs into ud2 (a crash). Assembled with `as --32`.
pub const XEN_HYPERCALLS: &[u8] = &[
    0xbc, 0x00, 0x00, 0x18, 0x00, //        mov $0x180000,%esp
    0xb8, 0x00, 0x00, 0x00, 0x40, //        mov $0x40000000,%eax
    0x0f, 0xa2, //                          cpuid
    0x3d, 0x02, 0x00, 0x00, 0x40, //        cmp $0x40000002,%eax
    0x75, 0x72, //                          jne 85 (fail)
    0x81, 0xfb, 0x58, 0x65, 0x6e, 0x56, //  cmp $0x566e6558,%ebx
    0x75, 0x6a, //                          jne 85 (fail)
    0xb8, 0x00, 0x01, 0x00, 0x40, //        mov $0x40000100,%eax
    0x0f, 0xa2, //                          cpuid
    0x81, 0xfb, 0x4b, 0x56, 0x4d, 0x4b, //  cmp $0x4b4d564b,%ebx
    0x75, 0x5b, //                          jne 85 (fail)
    0xb8, 0x02, 0x00, 0x00, 0x40, //        mov $0x40000002,%eax
    0x0f, 0xa2, //                          cpuid
    0x89, 0xd9, //                          mov %ebx,%ecx
    0xb8, 0x00, 0x00, 0x20, 0x00, //        mov $0x200000,%eax
    0x31, 0xd2, //                          xor %edx,%edx
    0x0f, 0x30, //                          wrmsr
    0xbb, 0x01, 0x00, 0x00, 0x00, //        mov $0x1,%ebx
    0xb9, 0x00, 0x00, 0x30, 0x00, //        mov $0x300000,%ecx
    0xb8, 0x20, 0x02, 0x20, 0x00, //        mov $0x200220,%eax
    0xff, 0xd0, //                          call *%eax
    0x85, 0xc0, //                          test %eax,%eax
    0x75, 0x34, //                          jne 85 (fail)
    0x81, 0x3d, 0x00, 0x00, 0x30, 0x00, 0x2d, 0x63, 0x68, 0x61,
    // ^ cmpl $0x6168632d,0x300000
    0x75, 0x28, //                          jne 85 (fail)
    0x31, 0xdb, //                          xor %ebx,%ebx
    0xb8, 0x20, 0x02, 0x20, 0x00, //        mov $0x200220,%eax
    0xff, 0xd0, //                          call *%eax
    0x3d, 0x11, 0x00, 0x04, 0x00, //        cmp $0x40011,%eax
    0x75, 0x18, //                          jne 85 (fail)
    0xbb, 0x63, 0x00, 0x00, 0x00, //        mov $0x63,%ebx
    0xb8, 0x20, 0x02, 0x20, 0x00, //        mov $0x200220,%eax
    0xff, 0xd0, //                          call *%eax
    0x83, 0xf8, 0xda, //                    cmp $0xffffffda,%eax
    0x75, 0x07, //                          jne 85 (fail)
    0xb0, 0x06, //                          mov $0x6,%al
    0x66, 0xba, 0xf9, 0x0c, //              mov $0xcf9,%dx
    0xee, //                                out %al,(%dx)
    0x0f, 0x0b, //                          ud2
];

/// `cli; hlt`: a vCPU nothing can wake.
pub const CLI_HLT: [u8; 2] = [0xfa, 0xf4];

/// `sti; hlt` with nothing programmed: waits for an interrupt no one will send.
pub const STI_HLT: [u8; 2] = [0xfb, 0xf4];

/// `1: jmp 1b`: a vCPU spinning without any access.
pub const JMP_SELF: [u8; 2] = [0xeb, 0xfe];

/// IRQ 0 from the 8254 through the 8259A, 100 ticks at 1 kHz taken from `sti; hlt`, then
/// 'T' on COM1 and a reset. Assembled with `as --32` and linked with
/// `ld -m elf_i386 -Ttext=0x100000 --oformat binary` (the zero tail of the IDT dropped:
/// the ELF's memory size covers it). Source:
pub const PIT_TICKS: &[u8] = &[
    // # PIT IRQ 0 through the 8259A: 100 ticks of channel 0 at ~1 kHz, each taken from
    // # `sti; hlt`; then 'T' on COM1 and a reset through 0xcf9.
    //         .code32
    //         .globl _start
    // _start:
    //         mov $0x180000, %esp
    //         lgdt gdtr
    //         # Interrupt gate for vector 0x20 -> handler, selector 0x08.
    //         mov $handler, %eax
    //         mov $idt + 0x20 * 8, %edi
    //         mov %ax, (%edi)
    //         movw $0x08, 2(%edi)
    //         movw $0x8e00, 4(%edi)
    //         shr $16, %eax
    //         mov %ax, 6(%edi)
    //         lidt idtr
    //         # 8259A pair: vectors 0x20/0x28, cascade on IR2, 8086 mode; only IRQ 0 unmasked.
    //         mov $0x11, %al
    //         out %al, $0x20
    //         out %al, $0xa0
    //         mov $0x20, %al
    //         out %al, $0x21
    //         mov $0x28, %al
    //         out %al, $0xa1
    //         mov $4, %al
    //         out %al, $0x21
    //         mov $2, %al
    //         out %al, $0xa1
    //         mov $1, %al
    //         out %al, $0x21
    //         out %al, $0xa1
    //         mov $0xfe, %al
    //         out %al, $0x21
    //         mov $0xff, %al
    //         out %al, $0xa1
    //         # PIT channel 0: mode 2, lobyte/hibyte, 1193 (0x4a9) counts = 1.000 ms.
    //         mov $0x34, %al
    //         out %al, $0x43
    //         mov $0xa9, %al
    //         out %al, $0x40
    //         mov $0x04, %al
    //         out %al, $0x40
    //         xor %ebx, %ebx
    // 1:      sti
    //         hlt
    //         cli
    //         cmp $100, %ebx
    //         jb 1b
    //         mov $0x3f8, %dx
    //         mov $'T', %al
    //         out %al, (%dx)
    //         mov $6, %al
    //         mov $0xcf9, %dx
    //         out %al, (%dx)
    //         ud2
    // handler:
    //         inc %ebx
    //         push %eax
    //         mov $0x20, %al
    //         out %al, $0x20
    //         pop %eax
    //         iret
    //         .p2align 3
    // gdt:    .quad 0
    //         .quad 0x00cf9a000000ffff
    //         .quad 0x00cf92000000ffff
    // gdtr:   .word 3 * 8 - 1
    //         .long gdt
    //         .p2align 3
    // idtr:   .word 0x21 * 8 - 1
    //         .long idt
    //         .p2align 3
    // idt:    .fill 0x21 * 8, 1, 0
    0xbc, 0x00, 0x00, 0x18, 0x00, 0x0f, 0x01, 0x15, 0xa0, 0x00, 0x10, 0x00, 0xb8, 0x7d, 0x00, 0x10,
    0x00, 0xbf, 0xb0, 0x01, 0x10, 0x00, 0x66, 0x89, 0x07, 0x66, 0xc7, 0x47, 0x02, 0x08, 0x00, 0x66,
    0xc7, 0x47, 0x04, 0x00, 0x8e, 0xc1, 0xe8, 0x10, 0x66, 0x89, 0x47, 0x06, 0x0f, 0x01, 0x1d, 0xa8,
    0x00, 0x10, 0x00, 0xb0, 0x11, 0xe6, 0x20, 0xe6, 0xa0, 0xb0, 0x20, 0xe6, 0x21, 0xb0, 0x28, 0xe6,
    0xa1, 0xb0, 0x04, 0xe6, 0x21, 0xb0, 0x02, 0xe6, 0xa1, 0xb0, 0x01, 0xe6, 0x21, 0xe6, 0xa1, 0xb0,
    0xfe, 0xe6, 0x21, 0xb0, 0xff, 0xe6, 0xa1, 0xb0, 0x34, 0xe6, 0x43, 0xb0, 0xa9, 0xe6, 0x40, 0xb0,
    0x04, 0xe6, 0x40, 0x31, 0xdb, 0xfb, 0xf4, 0xfa, 0x83, 0xfb, 0x64, 0x72, 0xf8, 0x66, 0xba, 0xf8,
    0x03, 0xb0, 0x54, 0xee, 0xb0, 0x06, 0x66, 0xba, 0xf9, 0x0c, 0xee, 0x0f, 0x0b, 0x43, 0x50, 0xb0,
    0x20, 0xe6, 0x20, 0x58, 0xcf, 0x8d, 0x76, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0x00, 0x00, 0x00, 0x9a, 0xcf, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x92, 0xcf, 0x00,
    0x17, 0x00, 0x88, 0x00, 0x10, 0x00, 0x66, 0x90, 0x07, 0x01, 0xb0, 0x00, 0x10, 0x00, 0x66, 0x90,
];

/// The LAPIC timer: periodic, vector 0x30, 1 ms at the 1 GHz bus clock, 50 ticks from
/// `sti; hlt`, EOI each; then 'A' on COM1 and a reset. Built as [`PIT_TICKS`]. Source:
pub const LAPIC_TICKS: &[u8] = &[
    // # LAPIC timer: software-enable the APIC, periodic timer vector 0x30 every 1 000 000
    // # bus clocks (1 ms at 1 GHz, divide by 1), 50 ticks from `sti; hlt` with an EOI each;
    // # then 'A' on COM1 and a reset through 0xcf9.
    //         .code32
    //         .globl _start
    // _start:
    //         mov $0x180000, %esp
    //         lgdt gdtr
    //         mov $handler, %eax
    //         mov $idt + 0x30 * 8, %edi
    //         mov %ax, (%edi)
    //         movw $0x08, 2(%edi)
    //         movw $0x8e00, 4(%edi)
    //         shr $16, %eax
    //         mov %ax, 6(%edi)
    //         lidt idtr
    //         # Mask the 8259A (it is in virtual wire mode on LINT0).
    //         mov $0xff, %al
    //         out %al, $0x21
    //         out %al, $0xa1
    //         movl $0x1ff, 0xfee000f0
    //         movl $0xb, 0xfee003e0
    //         movl $0x20030, 0xfee00320
    //         movl $1000000, 0xfee00380
    //         xor %ebx, %ebx
    // 1:      sti
    //         hlt
    //         cli
    //         cmp $50, %ebx
    //         jb 1b
    //         mov $0x3f8, %dx
    //         mov $'A', %al
    //         out %al, (%dx)
    //         mov $6, %al
    //         mov $0xcf9, %dx
    //         out %al, (%dx)
    //         ud2
    // handler:
    //         inc %ebx
    //         movl $0, 0xfee000b0
    //         iret
    //         .p2align 3
    // gdt:    .quad 0
    //         .quad 0x00cf9a000000ffff
    //         .quad 0x00cf92000000ffff
    // gdtr:   .word 3 * 8 - 1
    //         .long gdt
    //         .p2align 3
    // idtr:   .word 0x31 * 8 - 1
    //         .long idt
    //         .p2align 3
    // idt:    .fill 0x31 * 8, 1, 0
    0xbc, 0x00, 0x00, 0x18, 0x00, 0x0f, 0x01, 0x15, 0xa0, 0x00, 0x10, 0x00, 0xb8, 0x7b, 0x00, 0x10,
    0x00, 0xbf, 0x30, 0x02, 0x10, 0x00, 0x66, 0x89, 0x07, 0x66, 0xc7, 0x47, 0x02, 0x08, 0x00, 0x66,
    0xc7, 0x47, 0x04, 0x00, 0x8e, 0xc1, 0xe8, 0x10, 0x66, 0x89, 0x47, 0x06, 0x0f, 0x01, 0x1d, 0xa8,
    0x00, 0x10, 0x00, 0xb0, 0xff, 0xe6, 0x21, 0xe6, 0xa1, 0xc7, 0x05, 0xf0, 0x00, 0xe0, 0xfe, 0xff,
    0x01, 0x00, 0x00, 0xc7, 0x05, 0xe0, 0x03, 0xe0, 0xfe, 0x0b, 0x00, 0x00, 0x00, 0xc7, 0x05, 0x20,
    0x03, 0xe0, 0xfe, 0x30, 0x00, 0x02, 0x00, 0xc7, 0x05, 0x80, 0x03, 0xe0, 0xfe, 0x40, 0x42, 0x0f,
    0x00, 0x31, 0xdb, 0xfb, 0xf4, 0xfa, 0x83, 0xfb, 0x32, 0x72, 0xf8, 0x66, 0xba, 0xf8, 0x03, 0xb0,
    0x41, 0xee, 0xb0, 0x06, 0x66, 0xba, 0xf9, 0x0c, 0xee, 0x0f, 0x0b, 0x43, 0xc7, 0x05, 0xb0, 0x00,
    0xe0, 0xfe, 0x00, 0x00, 0x00, 0x00, 0xcf, 0x90, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0x00, 0x00, 0x00, 0x9a, 0xcf, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x92, 0xcf, 0x00,
    0x17, 0x00, 0x88, 0x00, 0x10, 0x00, 0x66, 0x90, 0x87, 0x01, 0xb0, 0x00, 0x10, 0x00, 0x66, 0x90,
];

/// The RTC's periodic interrupt (IRQ 8 through the slave 8259A) at 1024 Hz, 50 ticks
/// from `sti; hlt`, then 'R' on COM1 and a reset. Built as [`PIT_TICKS`]. Source:
pub const RTC_TICKS: &[u8] = &[
    // # RTC periodic interrupt (IRQ 8 through the slave 8259A) at 1024 Hz: 50 ticks taken
    // # from `sti; hlt`, each acknowledged by reading register C and EOIs to both PICs; then
    // # 'R' on COM1 and a reset through 0xcf9. On host time the ticks come from the timer
    // # thread, so this checks that a device interrupt wakes a halted vCPU.
    //         .code32
    //         .globl _start
    // _start:
    //         mov $0x180000, %esp
    //         lgdt gdtr
    //         mov $handler, %eax
    //         mov $idt + 0x28 * 8, %edi
    //         mov %ax, (%edi)
    //         movw $0x08, 2(%edi)
    //         movw $0x8e00, 4(%edi)
    //         shr $16, %eax
    //         mov %ax, 6(%edi)
    //         lidt idtr
    //         mov $0x11, %al
    //         out %al, $0x20
    //         out %al, $0xa0
    //         mov $0x20, %al
    //         out %al, $0x21
    //         mov $0x28, %al
    //         out %al, $0xa1
    //         mov $4, %al
    //         out %al, $0x21
    //         mov $2, %al
    //         out %al, $0xa1
    //         mov $1, %al
    //         out %al, $0x21
    //         out %al, $0xa1
    //         # Master: only the cascade (IR2); slave: only IRQ 8.
    //         mov $0xfb, %al
    //         out %al, $0x21
    //         mov $0xfe, %al
    //         out %al, $0xa1
    //         # RTC register A: rate 6 (1024 Hz); register B: PIE | 24h.
    //         mov $0x0a, %al
    //         out %al, $0x70
    //         mov $0x26, %al
    //         out %al, $0x71
    //         mov $0x0b, %al
    //         out %al, $0x70
    //         mov $0x42, %al
    //         out %al, $0x71
    //         xor %ebx, %ebx
    // 1:      sti
    //         hlt
    //         cli
    //         cmp $50, %ebx
    //         jb 1b
    //         mov $0x3f8, %dx
    //         mov $'R', %al
    //         out %al, (%dx)
    //         mov $6, %al
    //         mov $0xcf9, %dx
    //         out %al, (%dx)
    //         ud2
    // handler:
    //         inc %ebx
    //         push %eax
    //         mov $0x0c, %al
    //         out %al, $0x70
    //         in $0x71, %al
    //         mov $0x20, %al
    //         out %al, $0xa0
    //         out %al, $0x20
    //         pop %eax
    //         iret
    //         .p2align 3
    // gdt:    .quad 0
    //         .quad 0x00cf9a000000ffff
    //         .quad 0x00cf92000000ffff
    // gdtr:   .word 3 * 8 - 1
    //         .long gdt
    //         .p2align 3
    // idtr:   .word 0x29 * 8 - 1
    //         .long idt
    //         .p2align 3
    // idt:    .fill 0x29 * 8, 1, 0
    0xbc, 0x00, 0x00, 0x18, 0x00, 0x0f, 0x01, 0x15, 0xb0, 0x00, 0x10, 0x00, 0xb8, 0x81, 0x00, 0x10,
    0x00, 0xbf, 0x00, 0x02, 0x10, 0x00, 0x66, 0x89, 0x07, 0x66, 0xc7, 0x47, 0x02, 0x08, 0x00, 0x66,
    0xc7, 0x47, 0x04, 0x00, 0x8e, 0xc1, 0xe8, 0x10, 0x66, 0x89, 0x47, 0x06, 0x0f, 0x01, 0x1d, 0xb8,
    0x00, 0x10, 0x00, 0xb0, 0x11, 0xe6, 0x20, 0xe6, 0xa0, 0xb0, 0x20, 0xe6, 0x21, 0xb0, 0x28, 0xe6,
    0xa1, 0xb0, 0x04, 0xe6, 0x21, 0xb0, 0x02, 0xe6, 0xa1, 0xb0, 0x01, 0xe6, 0x21, 0xe6, 0xa1, 0xb0,
    0xfb, 0xe6, 0x21, 0xb0, 0xfe, 0xe6, 0xa1, 0xb0, 0x0a, 0xe6, 0x70, 0xb0, 0x26, 0xe6, 0x71, 0xb0,
    0x0b, 0xe6, 0x70, 0xb0, 0x42, 0xe6, 0x71, 0x31, 0xdb, 0xfb, 0xf4, 0xfa, 0x83, 0xfb, 0x32, 0x72,
    0xf8, 0x66, 0xba, 0xf8, 0x03, 0xb0, 0x52, 0xee, 0xb0, 0x06, 0x66, 0xba, 0xf9, 0x0c, 0xee, 0x0f,
    0x0b, 0x43, 0x50, 0xb0, 0x0c, 0xe6, 0x70, 0xe4, 0x71, 0xb0, 0x20, 0xe6, 0xa0, 0xe6, 0x20, 0x58,
    0xcf, 0x8d, 0xb4, 0x26, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0x00, 0x00, 0x00, 0x9a, 0xcf, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x92, 0xcf, 0x00,
    0x17, 0x00, 0x98, 0x00, 0x10, 0x00, 0x66, 0x90, 0x47, 0x01, 0xc0, 0x00, 0x10, 0x00, 0x66, 0x90,
];
