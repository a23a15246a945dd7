//! Synchronous I/O requests: Xen's `ioreq_t` and the shared ioreq page
//! (Xen `public/hvm/ioreq.h`; research/xen-hvm.md §1.1, §1.2, §1.6).
//!
//! One 32-byte slot per vCPU, [`SLOTS_PER_PAGE`] slots per 4 KiB page, indexed by vCPU
//! id. The slot lives in memory both sides can write, so the consumer copies the whole
//! slot out as bytes once ([`read_slot`]), decodes the copy ([`IoReq::decode`]) and
//! checks it ([`IoReq::validate`]) before acting on any field: no field is fetched
//! twice from shared memory (XSA-197).
//!
//! Layout (little endian, offsets in bytes):
//!
//! | off | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | `addr` |
//! | 8 | 8 | `data` |
//! | 16 | 4 | `count` |
//! | 20 | 4 | `size` |
//! | 24 | 4 | `vp_eport` |
//! | 28 | 2 | pad |
//! | 30 | 1 | bits 0–3 `state`, 4 `data_is_ptr`, 5 `dir`, 6 `df`, 7 pad |
//! | 31 | 1 | `type` |

use core::fmt;

/// Bytes in one slot.
pub const IOREQ_SIZE: usize = 32;
/// Bytes in the shared ioreq page.
pub const PAGE_SIZE: usize = 4096;
/// Slots in one page (= Xen's `HVM_MAX_VCPUS`).
pub const SLOTS_PER_PAGE: usize = PAGE_SIZE / IOREQ_SIZE;

/// `dir` values.
pub const IOREQ_WRITE: u8 = 0;
pub const IOREQ_READ: u8 = 1;

/// `state` values.
pub const STATE_IOREQ_NONE: u8 = 0;
pub const STATE_IOREQ_READY: u8 = 1;
pub const STATE_IOREQ_INPROCESS: u8 = 2;
pub const STATE_IORESP_READY: u8 = 3;

/// `type` values.
pub const IOREQ_TYPE_PIO: u8 = 0;
pub const IOREQ_TYPE_COPY: u8 = 1;
pub const IOREQ_TYPE_PCI_CONFIG: u8 = 2;
pub const IOREQ_TYPE_TIMEOFFSET: u8 = 7;
pub const IOREQ_TYPE_INVALIDATE: u8 = 8;
/// chassis-private: a device timer expired (stub domains only, and only in the platform
/// slot, [`platform_slot`]). `addr` = the timer's index (`chassis_devices::platform::TimerId`),
/// size 1, count 1, write. No data in the response.
pub const IOREQ_TYPE_CHASSIS_TIMER: u8 = 0x80;
/// chassis-private: host input bytes for a UART (platform slot only). `addr` = UART
/// index (0 = COM1, < 4), size 1, count = bytes (1..=8) packed little endian in `data`,
/// write. The response's `data` is how many bytes the UART took (0..=count).
pub const IOREQ_TYPE_CHASSIS_CHAR_IN: u8 = 0x81;

/// The slot after the last vCPU's (index = number of guest vCPUs) carries the
/// hypervisor's own requests to a stub domain (timer expiries, console input): they have
/// no vCPU, and must be ordered with the vCPUs' requests by the same loop. So a stub
/// domain serves at most [`MAX_STUB_VCPUS`] vCPUs.
pub const fn platform_slot(nr_vcpus: u32) -> u32 {
    nr_vcpus
}

/// Guest vCPUs a stub domain can serve (one slot is the platform's).
pub const MAX_STUB_VCPUS: u32 = SLOTS_PER_PAGE as u32 - 1;

/// Xen splits string I/O into requests of at most this many repetitions.
pub const MAX_REPS: u32 = 4096;

/// Byte offset of the state/flags byte within a slot (the one a consumer polls).
pub const STATE_BYTE_OFFSET: usize = 30;

const STATE_MASK: u8 = 0x0f;
const DATA_IS_PTR: u8 = 1 << 4;
const DIR_BIT: u8 = 1 << 5;
const DF_BIT: u8 = 1 << 6;
const PAD1_BIT: u8 = 1 << 7;

/// Request kinds a device model handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoReqType {
    Pio,
    Copy,
    PciConfig,
    TimeOffset,
    Invalidate,
    /// [`IOREQ_TYPE_CHASSIS_TIMER`].
    ChassisTimer,
    /// [`IOREQ_TYPE_CHASSIS_CHAR_IN`].
    ChassisCharIn,
}

impl IoReqType {
    pub const fn from_raw(t: u8) -> Option<Self> {
        match t {
            IOREQ_TYPE_PIO => Some(Self::Pio),
            IOREQ_TYPE_COPY => Some(Self::Copy),
            IOREQ_TYPE_PCI_CONFIG => Some(Self::PciConfig),
            IOREQ_TYPE_TIMEOFFSET => Some(Self::TimeOffset),
            IOREQ_TYPE_INVALIDATE => Some(Self::Invalidate),
            IOREQ_TYPE_CHASSIS_TIMER => Some(Self::ChassisTimer),
            IOREQ_TYPE_CHASSIS_CHAR_IN => Some(Self::ChassisCharIn),
            _ => None,
        }
    }
    pub const fn raw(self) -> u8 {
        match self {
            Self::Pio => IOREQ_TYPE_PIO,
            Self::Copy => IOREQ_TYPE_COPY,
            Self::PciConfig => IOREQ_TYPE_PCI_CONFIG,
            Self::TimeOffset => IOREQ_TYPE_TIMEOFFSET,
            Self::Invalidate => IOREQ_TYPE_INVALIDATE,
            Self::ChassisTimer => IOREQ_TYPE_CHASSIS_TIMER,
            Self::ChassisCharIn => IOREQ_TYPE_CHASSIS_CHAR_IN,
        }
    }
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoReqError {
    UnknownType(u8),
    UnknownState(u8),
    /// Zero, not a power of two, or too wide for the type (PIO and PCI config > 4,
    /// anything else > 8).
    BadSize {
        ty: u8,
        size: u32,
    },
    /// Zero, above [`MAX_REPS`], or not 1 where the type allows only single accesses.
    BadCount {
        ty: u8,
        count: u32,
    },
    /// A port above 0xffff, or a PCI config register offset above 0xfff.
    BadAddress {
        ty: u8,
        addr: u64,
    },
    /// The `count × size` run starting at `addr` (or at `data`, for `data_is_ptr`)
    /// wraps the 64-bit address space in the direction `df` says.
    BadRange,
}

impl fmt::Display for IoReqError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownType(t) => write!(f, "unknown ioreq type {t}"),
            Self::UnknownState(s) => write!(f, "unknown ioreq state {s}"),
            Self::BadSize { ty, size } => write!(f, "bad size {size} for ioreq type {ty}"),
            Self::BadCount { ty, count } => write!(f, "bad count {count} for ioreq type {ty}"),
            Self::BadAddress { ty, addr } => {
                write!(f, "bad address {addr:#x} for ioreq type {ty}")
            }
            Self::BadRange => write!(f, "ioreq range wraps the address space"),
        }
    }
}

/// A decoded slot, field for field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoReq {
    pub addr: u64,
    pub data: u64,
    pub count: u32,
    pub size: u32,
    pub vp_eport: u32,
    pub pad0: u16,
    /// 4 bits.
    pub state: u8,
    pub data_is_ptr: bool,
    /// [`IOREQ_READ`] or [`IOREQ_WRITE`] (1 bit).
    pub dir: u8,
    pub df: bool,
    pub pad1: bool,
    pub ty: u8,
}

impl IoReq {
    /// Wire bytes of this slot. `state` and `dir` are truncated to their bit widths.
    pub fn encode(&self) -> [u8; IOREQ_SIZE] {
        let mut b = [0u8; IOREQ_SIZE];
        b[0..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..16].copy_from_slice(&self.data.to_le_bytes());
        b[16..20].copy_from_slice(&self.count.to_le_bytes());
        b[20..24].copy_from_slice(&self.size.to_le_bytes());
        b[24..28].copy_from_slice(&self.vp_eport.to_le_bytes());
        b[28..30].copy_from_slice(&self.pad0.to_le_bytes());
        b[30] = (self.state & STATE_MASK)
            | if self.data_is_ptr { DATA_IS_PTR } else { 0 }
            | if self.dir & 1 != 0 { DIR_BIT } else { 0 }
            | if self.df { DF_BIT } else { 0 }
            | if self.pad1 { PAD1_BIT } else { 0 };
        b[31] = self.ty;
        b
    }

    /// Decode a slot copied out of shared memory. Never fails: every bit pattern is a
    /// decodable slot; [`IoReq::validate`] says whether it is a request to act on.
    pub fn decode(b: &[u8; IOREQ_SIZE]) -> Self {
        let u64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(a)
        };
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let flags = b[30];
        IoReq {
            addr: u64_at(0),
            data: u64_at(8),
            count: u32_at(16),
            size: u32_at(20),
            vp_eport: u32_at(24),
            pad0: u16::from_le_bytes([b[28], b[29]]),
            state: flags & STATE_MASK,
            data_is_ptr: flags & DATA_IS_PTR != 0,
            dir: (flags & DIR_BIT != 0) as u8,
            df: flags & DF_BIT != 0,
            pad1: flags & PAD1_BIT != 0,
            ty: b[31],
        }
    }

    /// The request type, if known.
    pub fn req_type(&self) -> Option<IoReqType> {
        IoReqType::from_raw(self.ty)
    }

    pub fn is_read(&self) -> bool {
        self.dir == IOREQ_READ
    }

    /// Check everything a device model relies on: known type and state, a size of
    /// 1/2/4/8 within the type's limit, a count of 1..=[`MAX_REPS`] (exactly 1 for
    /// PCI config, single PIO, time offset and invalidate), ports ≤ 0xffff, and runs
    /// that do not wrap. Returns the type.
    pub fn validate(&self) -> Result<IoReqType, IoReqError> {
        let ty = self.req_type().ok_or(IoReqError::UnknownType(self.ty))?;
        if self.state > STATE_IORESP_READY {
            return Err(IoReqError::UnknownState(self.state));
        }
        let max_size = match ty {
            IoReqType::Pio | IoReqType::PciConfig => 4,
            IoReqType::Copy | IoReqType::TimeOffset | IoReqType::Invalidate => 8,
            IoReqType::ChassisTimer | IoReqType::ChassisCharIn => 1,
        };
        if self.size == 0 || !self.size.is_power_of_two() || self.size > max_size {
            return Err(IoReqError::BadSize {
                ty: self.ty,
                size: self.size,
            });
        }
        let single = match ty {
            IoReqType::Pio => !self.data_is_ptr,
            IoReqType::Copy => false,
            IoReqType::PciConfig
            | IoReqType::TimeOffset
            | IoReqType::Invalidate
            | IoReqType::ChassisTimer => true,
            IoReqType::ChassisCharIn => false,
        };
        let private = matches!(ty, IoReqType::ChassisTimer | IoReqType::ChassisCharIn);
        if private && (self.data_is_ptr || self.dir != IOREQ_WRITE) {
            return Err(IoReqError::BadCount {
                ty: self.ty,
                count: self.count,
            });
        }
        let max_count = match ty {
            IoReqType::ChassisCharIn => 8,
            _ => MAX_REPS,
        };
        if self.count == 0 || self.count > max_count || (single && self.count != 1) {
            return Err(IoReqError::BadCount {
                ty: self.ty,
                count: self.count,
            });
        }
        match ty {
            IoReqType::Pio if self.addr > 0xffff => {
                return Err(IoReqError::BadAddress {
                    ty: self.ty,
                    addr: self.addr,
                });
            }
            // addr = SBDF << 32 | register; extended config space is 4 KiB.
            IoReqType::PciConfig if self.addr & 0xffff_ffff > 0xfff => {
                return Err(IoReqError::BadAddress {
                    ty: self.ty,
                    addr: self.addr,
                });
            }
            // Timer indices and UART numbers are small.
            IoReqType::ChassisTimer | IoReqType::ChassisCharIn if self.addr > 3 => {
                return Err(IoReqError::BadAddress {
                    ty: self.ty,
                    addr: self.addr,
                });
            }
            _ => {}
        }
        // Last byte touched is start ± (count-1)*size, plus size-1 forwards.
        let span = (self.count as u64 - 1) * self.size as u64;
        let fits = |start: u64| -> bool {
            let last = if self.df {
                start.checked_sub(span)
            } else {
                start.checked_add(span)
            };
            match last {
                Some(l) => l.checked_add(self.size as u64 - 1).is_some(),
                None => false,
            }
        };
        let addr_is_memory = matches!(ty, IoReqType::Copy);
        if (addr_is_memory && !fits(self.addr)) || (self.data_is_ptr && !fits(self.data)) {
            return Err(IoReqError::BadRange);
        }
        Ok(ty)
    }

    /// `data` truncated to `size` bytes (what a write carries, what a read returns).
    pub fn data_masked(&self) -> u64 {
        match self.size {
            1 => self.data & 0xff,
            2 => self.data & 0xffff,
            4 => self.data & 0xffff_ffff,
            _ => self.data,
        }
    }

    /// Byte address of repetition `i` starting from `base` (`addr` or `data`), stepping
    /// by `size` backwards when `df`. `None` when `i ≥ count` or the step wraps.
    pub fn rep_address(&self, base: u64, i: u32) -> Option<u64> {
        if i >= self.count {
            return None;
        }
        let step = (i as u64).checked_mul(self.size as u64)?;
        if self.df {
            base.checked_sub(step)
        } else {
            base.checked_add(step)
        }
    }
}

/// Byte offset of vCPU `vcpu`'s slot in the page.
pub fn slot_offset(vcpu: u32) -> Option<usize> {
    let v = vcpu as usize;
    (v < SLOTS_PER_PAGE).then_some(v * IOREQ_SIZE)
}

/// Copy vCPU `vcpu`'s slot out of a page (one fetch of every byte).
pub fn read_slot(page: &[u8; PAGE_SIZE], vcpu: u32) -> Option<[u8; IOREQ_SIZE]> {
    let off = slot_offset(vcpu)?;
    let src = page.get(off..off + IOREQ_SIZE)?;
    let mut out = [0u8; IOREQ_SIZE];
    out.copy_from_slice(src);
    Some(out)
}

/// Write vCPU `vcpu`'s slot. Returns false for a vCPU beyond the page.
pub fn write_slot(page: &mut [u8; PAGE_SIZE], vcpu: u32, slot: &[u8; IOREQ_SIZE]) -> bool {
    let Some(off) = slot_offset(vcpu) else {
        return false;
    };
    match page.get_mut(off..off + IOREQ_SIZE) {
        Some(dst) => {
            dst.copy_from_slice(slot);
            true
        }
        None => false,
    }
}

/// The state nibble of vCPU `vcpu`'s slot.
pub fn slot_state(page: &[u8; PAGE_SIZE], vcpu: u32) -> Option<u8> {
    let off = slot_offset(vcpu)?;
    page.get(off + STATE_BYTE_OFFSET).map(|b| b & STATE_MASK)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A C-layout mirror of `struct ioreq` to check offsets against `repr(C)` rules.
    #[repr(C)]
    struct CIoreq {
        addr: u64,
        data: u64,
        count: u32,
        size: u32,
        vp_eport: u32,
        pad: u16,
        bits: u8,
        ty: u8,
    }

    #[test]
    fn layout_matches_xen() {
        use core::mem::{offset_of, size_of};
        assert_eq!(size_of::<CIoreq>(), IOREQ_SIZE);
        assert_eq!(offset_of!(CIoreq, data), 8);
        assert_eq!(offset_of!(CIoreq, count), 16);
        assert_eq!(offset_of!(CIoreq, size), 20);
        assert_eq!(offset_of!(CIoreq, vp_eport), 24);
        assert_eq!(offset_of!(CIoreq, pad), 28);
        assert_eq!(offset_of!(CIoreq, bits), STATE_BYTE_OFFSET);
        assert_eq!(offset_of!(CIoreq, ty), 31);
        assert_eq!(SLOTS_PER_PAGE, 128);

        let r = IoReq {
            addr: 0x0102_0304_0506_0708,
            data: 0x1112_1314_1516_1718,
            count: 0x2122_2324,
            size: 4,
            vp_eport: 0x3132_3334,
            state: STATE_IOREQ_READY,
            dir: IOREQ_READ,
            ty: IOREQ_TYPE_COPY,
            ..Default::default()
        };
        let b = r.encode();
        assert_eq!(b[0], 0x08);
        assert_eq!(b[7], 0x01);
        assert_eq!(b[8], 0x18);
        assert_eq!(&b[16..20], &[0x24, 0x23, 0x22, 0x21]);
        assert_eq!(&b[20..24], &[4, 0, 0, 0]);
        assert_eq!(&b[24..28], &[0x34, 0x33, 0x32, 0x31]);
        assert_eq!(b[30], 0x21, "state 1 | dir (0x20)");
        assert_eq!(b[31], 1);
        // The gcc bitfield values from xen-hvm.md §1.2.
        let bit = |f: fn(&mut IoReq)| {
            let mut r = IoReq::default();
            f(&mut r);
            r.encode()[30]
        };
        assert_eq!(bit(|r| r.state = 0xf), 0x0f);
        assert_eq!(bit(|r| r.data_is_ptr = true), 0x10);
        assert_eq!(bit(|r| r.dir = 1), 0x20);
        assert_eq!(bit(|r| r.df = true), 0x40);
        assert_eq!(bit(|r| r.pad1 = true), 0x80);
    }

    #[test]
    fn every_slot_pattern_round_trips() {
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            let mut b = [0u8; IOREQ_SIZE];
            for x in b.iter_mut() {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                *x = s as u8;
            }
            let r = IoReq::decode(&b);
            assert_eq!(r.encode(), b);
            let _ = r.validate();
        }
    }

    fn pio(size: u32) -> IoReq {
        IoReq {
            addr: 0xcfc,
            count: 1,
            size,
            state: STATE_IOREQ_READY,
            ty: IOREQ_TYPE_PIO,
            ..Default::default()
        }
    }

    #[test]
    fn validate_sizes() {
        for size in [1, 2, 4] {
            assert_eq!(pio(size).validate(), Ok(IoReqType::Pio));
        }
        for size in [0, 3, 8, 16, u32::MAX] {
            assert!(matches!(
                pio(size).validate(),
                Err(IoReqError::BadSize { .. })
            ));
        }
        let copy = |size| IoReq {
            addr: 0xfee0_0000,
            count: 1,
            size,
            ty: IOREQ_TYPE_COPY,
            ..Default::default()
        };
        assert!(copy(8).validate().is_ok());
        assert!(copy(16).validate().is_err());
        assert!(copy(6).validate().is_err());
        let pci = IoReq {
            addr: (0x10u64 << 32) | 0x40,
            count: 1,
            size: 8,
            ty: IOREQ_TYPE_PCI_CONFIG,
            ..Default::default()
        };
        assert!(matches!(pci.validate(), Err(IoReqError::BadSize { .. })));
        assert!(IoReq { size: 4, ..pci }.validate().is_ok());
        assert!(matches!(
            IoReq {
                size: 4,
                addr: 0x1000,
                ..pci
            }
            .validate(),
            Err(IoReqError::BadAddress { .. })
        ));
    }

    #[test]
    fn validate_counts_types_states_addresses() {
        assert!(matches!(
            IoReq { count: 0, ..pio(1) }.validate(),
            Err(IoReqError::BadCount { .. })
        ));
        assert!(matches!(
            IoReq { count: 2, ..pio(1) }.validate(),
            Err(IoReqError::BadCount { .. })
        ));
        // rep outsb: data_is_ptr, many reps.
        let rep = IoReq {
            count: 4096,
            data_is_ptr: true,
            data: 0x10_0000,
            ..pio(1)
        };
        assert!(rep.validate().is_ok());
        assert!(IoReq { count: 4097, ..rep }.validate().is_err());
        assert_eq!(
            IoReq { ty: 3, ..pio(1) }.validate(),
            Err(IoReqError::UnknownType(3))
        );
        assert_eq!(
            IoReq { state: 4, ..pio(1) }.validate(),
            Err(IoReqError::UnknownState(4))
        );
        assert!(matches!(
            IoReq {
                addr: 0x1_0000,
                ..pio(1)
            }
            .validate(),
            Err(IoReqError::BadAddress { .. })
        ));
        // rep movs backwards from near zero wraps.
        let movs = IoReq {
            addr: 0xa0000,
            data: 8,
            count: 16,
            size: 4,
            data_is_ptr: true,
            df: true,
            ty: IOREQ_TYPE_COPY,
            ..Default::default()
        };
        assert_eq!(movs.validate(), Err(IoReqError::BadRange));
        assert!(IoReq { df: false, ..movs }.validate().is_ok());
        let top = IoReq {
            addr: u64::MAX - 2,
            data: 0,
            count: 1,
            size: 4,
            ty: IOREQ_TYPE_COPY,
            ..Default::default()
        };
        assert_eq!(top.validate(), Err(IoReqError::BadRange));
        // Time offset: Xen sends size 8, count 1.
        let t = IoReq {
            size: 8,
            count: 1,
            data: (-3600i64) as u64,
            ty: IOREQ_TYPE_TIMEOFFSET,
            ..Default::default()
        };
        assert_eq!(t.validate(), Ok(IoReqType::TimeOffset));
    }

    #[test]
    fn rep_addresses() {
        let r = IoReq {
            addr: 0x1000,
            count: 3,
            size: 4,
            df: true,
            ty: IOREQ_TYPE_COPY,
            ..Default::default()
        };
        assert_eq!(r.rep_address(r.addr, 2), Some(0x1000 - 8));
        assert_eq!(r.rep_address(r.addr, 3), None);
        assert_eq!(r.rep_address(4, 2), None);
        assert_eq!(
            IoReq {
                data: 0x1_2345,
                ..pio(1)
            }
            .data_masked(),
            0x45
        );
    }

    #[test]
    fn page_slots() {
        let mut page = [0u8; PAGE_SIZE];
        let r = IoReq {
            vp_eport: 7,
            ..pio(2)
        };
        assert!(write_slot(&mut page, 127, &r.encode()));
        assert!(!write_slot(&mut page, 128, &r.encode()));
        assert_eq!(slot_offset(127), Some(4064));
        assert_eq!(slot_offset(u32::MAX), None);
        assert_eq!(slot_state(&page, 127), Some(STATE_IOREQ_READY));
        assert_eq!(slot_state(&page, 0), Some(STATE_IOREQ_NONE));
        assert_eq!(IoReq::decode(&read_slot(&page, 127).unwrap()), r);
        assert_eq!(read_slot(&page, 128), None);
    }
}
