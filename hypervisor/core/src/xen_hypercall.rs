//! The little of the Xen HVM ABI that SeaBIOS's Xen path needs (research/firmware-boot.md
//! §1.2): the CPUID leaves, the hypercall page a WRMSR asks for, and the `xen_version`
//! hypercall. Backend-neutral: the `kvm` backend calls it on its MSR-write and port exits,
//! the `emu` backend will call it from its WRMSR/OUT emulation.
//!
//! * CPUID: Xen's signature `XenVMMXenVMM` at 0x40000000 (max leaf 0x40000002), the
//!   version at 0x40000001, {1 hypercall page, MSR 0x40000200} at 0x40000002; and KVM's
//!   signature at 0x40000100 (with KVM's feature leaf at 0x40000101), so Linux, which
//!   keeps the hypervisor with the highest base, picks KVM over Xen (§1.9).
//! * Hypercall page: a write of `gpa | index` to [`HYPERCALL_MSR`] fills the 4 KiB page at
//!   `gpa` with 32-byte stubs ([`StubKind`]). On `kvm` stub `k` is
//!   `mov eax, k; out HYPERCALL_PORT, eax; ret`: `vmcall` cannot be used there (KVM
//!   answers unknown hypercalls itself). On `emu` it is `mov eax, k; vmcall; ret`, which
//!   the software CPU hands to the hypervisor directly (no port, no device model).
//! * On the OUT (or VMCALL), [`hypercall`] reads the registers (32-bit guests: EBX, ECX, EDX, ESI,
//!   EDI; 64-bit guests: RDI, RSI, RDX, R10, R8), performs the call and returns the result
//!   in RAX. Guest buffers are only accessed by guest-physical address (paging off) and
//!   through the bounds-checked [`GuestMemory`] accessors; with paging on, calls that
//!   take a buffer fail with -EFAULT.

use hypervisor_abi::hypercall::{
    HYPERCALL_PAGE_STRIDE, HYPERVISOR_XEN_VERSION, XENVER_EXTRAVERSION, XENVER_EXTRAVERSION_LEN,
    XENVER_GET_FEATURES, XENVER_VERSION,
};

use crate::memory::GuestMemory;

/// Base of the Xen leaves.
pub const XEN_CPUID_BASE: u32 = 0x4000_0000;
/// Base of the KVM leaves (above Xen's: Linux prefers the higher base).
pub const KVM_CPUID_BASE: u32 = 0x4000_0100;
/// The MSR the guest writes the hypercall page address to (CPUID 0x40000002 EBX).
pub const HYPERCALL_MSR: u32 = 0x4000_0200;
/// The port the hypercall stubs write the hypercall number to. No device claims it.
pub const HYPERCALL_PORT: u16 = 0xea;
/// The Xen version we claim: 4.17, Debian 12's.
pub const XEN_MAJOR: u32 = 4;
pub const XEN_MINOR: u32 = 17;
pub const XEN_VERSION_WORD: u32 = XEN_MAJOR << 16 | XEN_MINOR;
/// `XENVER_extraversion`'s answer.
pub const EXTRAVERSION: &[u8] = b"-chassis";
/// The hypercall page is one 4 KiB page.
pub const PAGE_SIZE: usize = 4096;

pub const ENOSYS: i64 = -38;
pub const EFAULT: i64 = -14;

/// One CPUID leaf (subleaf 0; no index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuidLeaf {
    pub function: u32,
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

/// A 12-byte signature as EBX, ECX, EDX.
fn signature(s: &[u8; 12]) -> (u32, u32, u32) {
    let w = |i: usize| u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
    (w(0), w(4), w(8))
}

/// The hypervisor leaves to give the guest. `kvm_features` = KVM's own feature leaf
/// (0x40000001 of KVM_GET_SUPPORTED_CPUID: EAX, EBX, ECX, EDX), moved to 0x40000101.
pub fn cpuid_leaves(kvm_features: Option<[u32; 4]>) -> Vec<CpuidLeaf> {
    let (xb, xc, xd) = signature(b"XenVMMXenVMM");
    let (kb, kc, kd) = signature(b"KVMKVMKVM\0\0\0");
    let mut v = vec![
        CpuidLeaf {
            function: XEN_CPUID_BASE,
            eax: XEN_CPUID_BASE + 2,
            ebx: xb,
            ecx: xc,
            edx: xd,
        },
        CpuidLeaf {
            function: XEN_CPUID_BASE + 1,
            eax: XEN_VERSION_WORD,
            ebx: 0,
            ecx: 0,
            edx: 0,
        },
        CpuidLeaf {
            function: XEN_CPUID_BASE + 2,
            eax: 1,
            ebx: HYPERCALL_MSR,
            ecx: 0,
            edx: 0,
        },
    ];
    v.push(CpuidLeaf {
        function: KVM_CPUID_BASE,
        eax: KVM_CPUID_BASE + u32::from(kvm_features.is_some()),
        ebx: kb,
        ecx: kc,
        edx: kd,
    });
    if let Some([eax, ebx, ecx, edx]) = kvm_features {
        v.push(CpuidLeaf {
            function: KVM_CPUID_BASE + 1,
            eax,
            ebx,
            ecx,
            edx,
        });
    }
    v
}

/// Whether `function` is in the hypervisor range these leaves replace.
pub fn is_hypervisor_leaf(function: u32) -> bool {
    function & 0xffff_0000 == 0x4000_0000
}

/// How a hypercall stub enters the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StubKind {
    /// `out HYPERCALL_PORT, eax` (E7 ib): the `kvm` backend, where the OUT exits to us.
    PortOut,
    /// `vmcall` (0F 01 C1): the `emu` backend, whose CPU calls `Bus::hypercall`.
    Vmcall,
}

/// The contents of the hypercall page: 128 stubs of 32 bytes, stub `k` =
/// `mov eax, k` (B8 imm32), the entry instruction of `kind`, `ret` (C3), padded with
/// `int3`.
pub fn hypercall_page(kind: StubKind) -> [u8; PAGE_SIZE] {
    let mut p = [0xccu8; PAGE_SIZE];
    for (k, stub) in p.chunks_exact_mut(HYPERCALL_PAGE_STRIDE).enumerate() {
        stub[0] = 0xb8;
        stub[1..5].copy_from_slice(&(k as u32).to_le_bytes());
        match kind {
            StubKind::PortOut => {
                stub[5] = 0xe7;
                stub[6] = HYPERCALL_PORT as u8;
                stub[7] = 0xc3;
            }
            StubKind::Vmcall => {
                stub[5..8].copy_from_slice(&[0x0f, 0x01, 0xc1]);
                stub[8] = 0xc3;
            }
        }
    }
    p
}

/// The guest wrote `value` to [`HYPERCALL_MSR`]: fill the page with `kind` stubs.
/// `false` = refuse the write (#GP): a page index other than 0, or the page is not
/// guest RAM.
pub fn write_hypercall_msr(mem: &GuestMemory, value: u64, kind: StubKind) -> bool {
    if value & 0xfff != 0 {
        return false;
    }
    mem.write(value & !0xfff, &hypercall_page(kind)).is_ok()
}

/// The registers a hypercall reads and writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HypercallRegs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    /// The guest is in 64-bit mode (arguments in RDI, RSI, ...).
    pub long_mode: bool,
    /// CR0.PG: buffer arguments are virtual addresses we do not translate.
    pub paging: bool,
}

/// Perform the hypercall in `r.rax` and put the result in `r.rax` (EAX for a 32-bit
/// guest, sign-extended RAX for a 64-bit one). Returns the hypercall's result.
pub fn hypercall(r: &mut HypercallRegs, mem: &GuestMemory) -> i64 {
    let nr = r.rax as u32;
    let (a1, a2) = if r.long_mode {
        (r.rdi, r.rsi)
    } else {
        (r.rbx & 0xffff_ffff, r.rcx & 0xffff_ffff)
    };
    // A guest buffer of `len` bytes at `a2`, or None (paging on / not RAM).
    let buf_ok = |len: usize| !r.paging && mem.layout().is_ram(a2, len as u64);
    let ret = match nr {
        HYPERVISOR_XEN_VERSION => match a1 as u32 {
            XENVER_VERSION => XEN_VERSION_WORD as i64,
            XENVER_EXTRAVERSION => {
                let mut s = [0u8; XENVER_EXTRAVERSION_LEN];
                s[..EXTRAVERSION.len()].copy_from_slice(EXTRAVERSION);
                if buf_ok(s.len()) && mem.write(a2, &s).is_ok() {
                    0
                } else {
                    EFAULT
                }
            }
            XENVER_GET_FEATURES => {
                // struct xen_feature_info { u32 submap_idx; u32 submap; }: no features.
                if buf_ok(8) && mem.write(a2 + 4, &[0; 4]).is_ok() {
                    0
                } else {
                    EFAULT
                }
            }
            _ => ENOSYS,
        },
        _ => ENOSYS,
    };
    r.rax = if r.long_mode {
        ret as u64
    } else {
        (r.rax & !0xffff_ffff) | (ret as u32 as u64)
    };
    ret
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::Layout;

    fn mem() -> GuestMemory {
        GuestMemory::new(Layout::from_mib(16).unwrap()).unwrap()
    }

    #[test]
    fn leaves() {
        let l = cpuid_leaves(Some([1, 2, 3, 4]));
        assert_eq!(l[0].function, 0x4000_0000);
        assert_eq!(l[0].eax, 0x4000_0002);
        let mut sig = Vec::new();
        for w in [l[0].ebx, l[0].ecx, l[0].edx] {
            sig.extend_from_slice(&w.to_le_bytes());
        }
        assert_eq!(sig, b"XenVMMXenVMM");
        assert_eq!(l[1].eax, 0x0004_0011);
        assert_eq!((l[2].eax, l[2].ebx), (1, 0x4000_0200));
        assert_eq!((l[3].function, l[3].eax), (0x4000_0100, 0x4000_0101));
        assert_eq!(l[4].function, 0x4000_0101);
        assert_eq!(cpuid_leaves(None)[3].eax, 0x4000_0100);
        assert!(is_hypervisor_leaf(0x4000_0001) && !is_hypervisor_leaf(0x8000_0000));
    }

    #[test]
    fn page_and_msr() {
        let p = hypercall_page(StubKind::PortOut);
        assert_eq!(
            &p[17 * 32..17 * 32 + 8],
            &[0xb8, 17, 0, 0, 0, 0xe7, 0xea, 0xc3]
        );
        let m = mem();
        assert!(write_hypercall_msr(&m, 0x20_0000, StubKind::PortOut));
        let mut b = [0u8; 8];
        m.read(0x20_0000 + 32, &mut b).unwrap();
        assert_eq!(b, [0xb8, 1, 0, 0, 0, 0xe7, 0xea, 0xc3]);
        for kind in [StubKind::PortOut, StubKind::Vmcall] {
            assert!(
                !write_hypercall_msr(&m, 0x20_0001, kind),
                "second page index"
            );
            assert!(!write_hypercall_msr(&m, 0xa_0000, kind), "VGA hole");
            assert!(!write_hypercall_msr(&m, 0xffff_f000, kind), "beyond RAM");
            assert!(!write_hypercall_msr(&m, u64::MAX & !0xfff, kind));
        }
    }

    /// The emu stubs: `mov eax, k; vmcall; ret`, then int3 padding to the next stub.
    #[test]
    fn vmcall_page() {
        let p = hypercall_page(StubKind::Vmcall);
        for k in [0usize, 17, 127] {
            let s = &p[k * 32..k * 32 + 32];
            assert_eq!(&s[..9], &[0xb8, k as u8, 0, 0, 0, 0x0f, 0x01, 0xc1, 0xc3]);
            assert!(s[9..].iter().all(|&b| b == 0xcc), "stub {k}: {s:02x?}");
        }
        let m = mem();
        assert!(write_hypercall_msr(&m, 0x30_0000, StubKind::Vmcall));
        let mut b = [0u8; 9];
        m.read(0x30_0000 + 2 * 32, &mut b).unwrap();
        assert_eq!(b, [0xb8, 2, 0, 0, 0, 0x0f, 0x01, 0xc1, 0xc3]);
    }

    #[test]
    fn xen_version() {
        let m = mem();
        let mut r = HypercallRegs {
            rax: 17,
            rbx: 0,
            ..Default::default()
        };
        assert_eq!(hypercall(&mut r, &m), 0x0004_0011);
        assert_eq!(r.rax, 0x0004_0011);

        let mut r = HypercallRegs {
            rax: 0xdead_0000_0000_0011,
            rbx: 1,
            rcx: 0x6cfc,
            ..Default::default()
        };
        assert_eq!(hypercall(&mut r, &m), 0);
        assert_eq!(r.rax, 0xdead_0000_0000_0000);
        let mut b = [0xffu8; 16];
        m.read(0x6cfc, &mut b).unwrap();
        assert_eq!(&b, b"-chassis\0\0\0\0\0\0\0\0");

        // Buffers outside RAM, straddling the VGA hole, or with paging on: -EFAULT.
        for (rcx, paging) in [(0xa_0000 - 8, false), (0xffff_fff8, false), (0x6cfc, true)] {
            let mut r = HypercallRegs {
                rax: 17,
                rbx: 1,
                rcx,
                paging,
                ..Default::default()
            };
            assert_eq!(hypercall(&mut r, &m), EFAULT);
            assert_eq!(r.rax as u32 as i32, -14);
        }

        let mut r = HypercallRegs {
            rax: 17,
            rbx: 6,
            rcx: 0x2000,
            ..Default::default()
        };
        m.write(0x2004, &[0xff; 4]).unwrap();
        assert_eq!(hypercall(&mut r, &m), 0);
        let mut b = [0u8; 4];
        m.read(0x2004, &mut b).unwrap();
        assert_eq!(b, [0; 4]);

        // Unknown commands and hypercalls: -ENOSYS; 64-bit results are sign-extended.
        let mut r = HypercallRegs {
            rax: 17,
            rbx: 99,
            ..Default::default()
        };
        assert_eq!(hypercall(&mut r, &m), ENOSYS);
        assert_eq!(r.rax, (-38i32) as u32 as u64);
        let mut r = HypercallRegs {
            rax: 12,
            long_mode: true,
            ..Default::default()
        };
        assert_eq!(hypercall(&mut r, &m), ENOSYS);
        assert_eq!(r.rax as i64, -38);
    }
}
