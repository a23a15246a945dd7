//! The CPUID profile of `emu` vCPUs: a plain x86-64 baseline that says only what the
//! software CPU implements (DESIGN.md: SSE2, no AVX, no XSAVE, no PCID), so Linux and
//! glibc take their simplest paths. Widen it only together with the CPU and a test.
//!
//! * Vendor `GenuineIntel`, family 6 model 15 stepping 11 (a Core 2: 64-bit, none of the
//!   newer model-specific quirk paths; Linux's "PAT erratum" only covers models < 15).
//! * Leaf 1 EDX: FPU PSE TSC MSR PAE CX8 APIC SEP MTRR PGE CMOV PAT CLFLUSH FXSR SSE SSE2
//!   (+ HTT with more than one vCPU); ECX: only the hypervisor bit. No MCE/MCA (no
//!   machine-check MSRs), no VME/DE/PSE-36, no SSE3 and later, no x2APIC, no TSC-deadline,
//!   no XSAVE/AVX, no PCID. EBX: CLFLUSH line 64 bytes, logical processor count, initial
//!   APIC ID. APIC is cleared while the vCPU's APIC is hardware-disabled.
//! * Leaf 2: no descriptors (use leaf 4); leaf 4: 32 KiB L1d and L1i, 4 MiB L2.
//! * Extended: 0x80000001 EDX SYSCALL NX LM, ECX LAHF/SAHF; brand string; 0x80000006 the
//!   L2; 0x80000007 invariant TSC (the TSC is guest ns at a constant 1 GHz); 0x80000008:
//!   40 physical, 48 linear address bits.
//! * The hypervisor range: Xen's leaves and KVM's signature at 0x40000100 with no feature
//!   leaf (`xen_hypercall::cpuid_leaves(None)`): no paravirtual KVM features exist here.
//! * Leaves above the maximum, or not listed: all zero.

use crate::xen_hypercall::{self, CpuidLeaf};

/// Basic leaves go up to 4; extended up to 0x80000008.
pub const MAX_BASIC_LEAF: u32 = 4;
pub const MAX_EXTENDED_LEAF: u32 = 0x8000_0008;

/// Family 6, model 15 (0xf), stepping 11.
pub const SIGNATURE: u32 = 0x0000_06fb;

pub mod edx1 {
    pub const FPU: u32 = 1 << 0;
    pub const PSE: u32 = 1 << 3;
    pub const TSC: u32 = 1 << 4;
    pub const MSR: u32 = 1 << 5;
    pub const PAE: u32 = 1 << 6;
    pub const CX8: u32 = 1 << 8;
    pub const APIC: u32 = 1 << 9;
    pub const SEP: u32 = 1 << 11;
    pub const MTRR: u32 = 1 << 12;
    pub const PGE: u32 = 1 << 13;
    pub const CMOV: u32 = 1 << 15;
    pub const PAT: u32 = 1 << 16;
    pub const CLFLUSH: u32 = 1 << 19;
    pub const FXSR: u32 = 1 << 24;
    pub const SSE: u32 = 1 << 25;
    pub const SSE2: u32 = 1 << 26;
    pub const HTT: u32 = 1 << 28;
}

pub mod ecx1 {
    pub const SSE3: u32 = 1 << 0;
    pub const PCID: u32 = 1 << 17;
    pub const X2APIC: u32 = 1 << 21;
    pub const TSC_DEADLINE: u32 = 1 << 24;
    pub const XSAVE: u32 = 1 << 26;
    pub const OSXSAVE: u32 = 1 << 27;
    pub const AVX: u32 = 1 << 28;
    pub const HYPERVISOR: u32 = 1 << 31;
}

pub mod ext {
    /// 0x80000001 EDX.
    pub const SYSCALL: u32 = 1 << 11;
    pub const NX: u32 = 1 << 20;
    pub const LM: u32 = 1 << 29;
    /// 0x80000001 ECX.
    pub const LAHF_LM: u32 = 1 << 0;
    /// 0x80000007 EDX.
    pub const INVARIANT_TSC: u32 = 1 << 8;
}

const BASE_EDX1: u32 = edx1::FPU
    | edx1::PSE
    | edx1::TSC
    | edx1::MSR
    | edx1::PAE
    | edx1::CX8
    | edx1::APIC
    | edx1::SEP
    | edx1::MTRR
    | edx1::PGE
    | edx1::CMOV
    | edx1::PAT
    | edx1::CLFLUSH
    | edx1::FXSR
    | edx1::SSE
    | edx1::SSE2;

const BRAND: &[u8; 48] =
    b"chassis emu x86-64 CPU\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";

/// The table of one VM; [`CpuidProfile::leaf`] adds the per-vCPU parts.
#[derive(Clone, Debug)]
pub struct CpuidProfile {
    vcpus: u32,
    hypervisor: Vec<CpuidLeaf>,
}

fn words(b: &[u8]) -> [u32; 4] {
    let w = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    [w(0), w(4), w(8), w(12)]
}

impl CpuidProfile {
    pub fn new(vcpus: u32) -> CpuidProfile {
        CpuidProfile {
            vcpus: vcpus.clamp(1, 255),
            hypervisor: xen_hypercall::cpuid_leaves(None),
        }
    }

    /// CPUID(`leaf`, `subleaf`) for vCPU `apic_id`; `apic_enabled` = IA32_APIC_BASE.EN.
    pub fn leaf(&self, leaf: u32, subleaf: u32, apic_id: u32, apic_enabled: bool) -> [u32; 4] {
        // The vendor string is EBX, EDX, ECX.
        let (vb, vd, vc) = {
            let s = b"GenuineIntel";
            let w = |i: usize| u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
            (w(0), w(4), w(8))
        };
        match leaf {
            0 => [MAX_BASIC_LEAF, vb, vc, vd],
            1 => {
                let ebx = (8 << 8) | (self.vcpus << 16) | ((apic_id & 0xff) << 24);
                let mut edx = BASE_EDX1;
                if self.vcpus > 1 {
                    edx |= edx1::HTT;
                }
                if !apic_enabled {
                    edx &= !edx1::APIC;
                }
                [SIGNATURE, ebx, ecx1::HYPERVISOR, edx]
            }
            // One iteration, no descriptors but the "null" ones: caches are in leaf 4.
            2 => [0x0000_0001, 0, 0, 0],
            4 => {
                // EAX: type (1 data, 2 code, 3 unified), level << 5, self-initialising
                // (bit 8), cores sharing - 1 in 25:14 = 0, cores - 1 in 31:26 = 0.
                // EBX: ways - 1 << 22 | partitions - 1 << 12 | line - 1; ECX: sets - 1.
                let cache = |ty: u32, level: u32, ways: u32, size: u32| {
                    let sets = size / (ways * 64);
                    [ty | level << 5 | 1 << 8, (ways - 1) << 22 | 63, sets - 1, 0]
                };
                match subleaf {
                    0 => cache(1, 1, 8, 32 << 10),
                    1 => cache(2, 1, 8, 32 << 10),
                    2 => cache(3, 2, 16, 4 << 20),
                    _ => [0; 4],
                }
            }
            0x8000_0000 => [MAX_EXTENDED_LEAF, 0, 0, 0],
            0x8000_0001 => [0, 0, ext::LAHF_LM, ext::SYSCALL | ext::NX | ext::LM],
            0x8000_0002..=0x8000_0004 => {
                let i = (leaf - 0x8000_0002) as usize * 16;
                words(&BRAND[i..i + 16])
            }
            // L2: 4 MiB, 16-way (encoding 8), 64-byte lines.
            0x8000_0006 => [0, 0, (4096 << 16) | (8 << 12) | 64, 0],
            0x8000_0007 => [0, 0, 0, ext::INVARIANT_TSC],
            0x8000_0008 => [40 | (48 << 8), 0, 0, 0],
            l if xen_hypercall::is_hypervisor_leaf(l) => self
                .hypervisor
                .iter()
                .find(|h| h.function == l)
                .map_or([0; 4], |h| [h.eax, h.ebx, h.ecx, h.edx]),
            _ => [0; 4],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(ws: &[u32]) -> Vec<u8> {
        ws.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    #[test]
    fn vendor_signature_and_hypervisor_leaves() {
        let p = CpuidProfile::new(1);
        let l0 = p.leaf(0, 0, 0, true);
        assert_eq!(l0[0], MAX_BASIC_LEAF);
        assert_eq!(string(&[l0[1], l0[3], l0[2]]), b"GenuineIntel");
        let x = p.leaf(0x4000_0000, 0, 0, true);
        assert_eq!(x[0], 0x4000_0002);
        assert_eq!(string(&x[1..]), b"XenVMMXenVMM");
        assert_eq!(p.leaf(0x4000_0002, 0, 0, true)[..2], [1, 0x4000_0200]);
        let k = p.leaf(0x4000_0100, 0, 0, true);
        assert_eq!(k[0], 0x4000_0100, "no KVM feature leaf");
        assert_eq!(string(&k[1..]), b"KVMKVMKVM\0\0\0");
        assert_eq!(p.leaf(0x4000_0101, 0, 0, true), [0; 4]);
        let brand: Vec<u8> = (0..3)
            .flat_map(|i| string(&p.leaf(0x8000_0002 + i, 0, 0, true)))
            .collect();
        assert!(brand.starts_with(b"chassis emu x86-64 CPU\0"));
    }

    #[test]
    fn baseline_features_only() {
        let p = CpuidProfile::new(1);
        let [eax, ebx, ecx, edx] = p.leaf(1, 0, 0, true);
        assert_eq!((eax >> 8) & 0xf, 6);
        assert_eq!(((eax >> 4) & 0xf) | ((eax >> 12) & 0xf0), 15);
        assert_eq!((ebx >> 8) & 0xff, 8, "CLFLUSH line size in 8-byte units");
        assert_eq!(ecx, ecx1::HYPERVISOR, "no SSE3+, x2APIC, XSAVE, AVX, PCID");
        for bad in [
            ecx1::SSE3,
            ecx1::PCID,
            ecx1::X2APIC,
            ecx1::TSC_DEADLINE,
            ecx1::XSAVE,
            ecx1::OSXSAVE,
            ecx1::AVX,
        ] {
            assert_eq!(ecx & bad, 0);
        }
        for need in [
            edx1::FPU,
            edx1::TSC,
            edx1::MSR,
            edx1::PAE,
            edx1::CX8,
            edx1::APIC,
            edx1::SEP,
            edx1::PGE,
            edx1::CMOV,
            edx1::PAT,
            edx1::FXSR,
            edx1::SSE,
            edx1::SSE2,
        ] {
            assert_ne!(edx & need, 0, "{need:#x}");
        }
        assert_eq!(edx & edx1::HTT, 0);
        // No leaf 7 (AVX2, ...) or 0xd (XSAVE) exists.
        assert_eq!(p.leaf(7, 0, 0, true), [0; 4]);
        assert_eq!(p.leaf(0xd, 0, 0, true), [0; 4]);
        let e1 = p.leaf(0x8000_0001, 0, 0, true);
        assert_eq!(e1[3], ext::SYSCALL | ext::NX | ext::LM);
        assert_eq!(e1[2], ext::LAHF_LM);
        assert_eq!(p.leaf(0x8000_0008, 0, 0, true)[0], 0x3028);
        assert_eq!(p.leaf(0x8000_0009, 0, 0, true), [0; 4]);
    }

    #[test]
    fn per_vcpu_parts() {
        let p = CpuidProfile::new(4);
        let [_, ebx, _, edx] = p.leaf(1, 0, 3, true);
        assert_eq!(ebx >> 24, 3, "initial APIC ID");
        assert_eq!((ebx >> 16) & 0xff, 4);
        assert_ne!(edx & edx1::HTT, 0);
        assert_eq!(p.leaf(1, 0, 0, false)[3] & edx1::APIC, 0);
        // Leaf 4: L1d 32 KiB 8-way, then L1i, L2, then the null entry.
        let l1d = p.leaf(4, 0, 0, true);
        assert_eq!(l1d[0] & 0x1f, 1);
        let size = |l: [u32; 4]| ((l[1] >> 22) + 1) * ((l[1] & 0xfff) + 1) * (l[2] + 1);
        assert_eq!(size(l1d), 32 << 10);
        assert_eq!(size(p.leaf(4, 2, 0, true)), 4 << 20);
        assert_eq!(p.leaf(4, 3, 0, true)[0] & 0x1f, 0);
    }
}
