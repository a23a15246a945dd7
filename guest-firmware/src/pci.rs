//! PCI set-up logic as hvmloader does it (research/xen-hvm.md §2.3, §4.3): PIRQ link
//! routing, the "barber pole" INTx swizzle, BAR size decoding and BAR placement.

use core::fmt;

/// Config-space offsets.
pub mod cfg {
    pub const VENDOR: u8 = 0x00;
    pub const COMMAND: u8 = 0x04;
    pub const REVISION: u8 = 0x08;
    pub const HEADER_TYPE: u8 = 0x0e;
    pub const BAR0: u8 = 0x10;
    pub const SUBSYS_VENDOR: u8 = 0x2c;
    pub const ROM: u8 = 0x30;
    pub const BRIDGE_ROM: u8 = 0x38;
    pub const INTERRUPT_LINE: u8 = 0x3c;
    pub const INTERRUPT_PIN: u8 = 0x3d;
    /// PIIX3 PIRQ route control registers (PIRQRC[A:D]).
    pub const PIIX3_PIRQRC: u8 = 0x60;
    /// PIIX4 PM: PMBA (PM base address) and PMREGMISC (bit 0 = PMIOSE).
    pub const PIIX4_PMBA: u8 = 0x40;
    pub const PIIX4_PMREGMISC: u8 = 0x80;
    /// PIIX IDE timing registers (bit 15 = IDE decode enable).
    pub const IDE_TIM_PRI: u8 = 0x40;
    pub const IDE_TIM_SEC: u8 = 0x42;
}

pub mod command {
    pub const IO: u16 = 1 << 0;
    pub const MEMORY: u16 = 1 << 1;
    pub const BUS_MASTER: u16 = 1 << 2;
}

/// devfn of the PIIX3 ISA bridge (00:01.0).
pub const PIIX3_DEVFN: u8 = 0x08;

/// The ISA IRQ of each PIRQ link (A..D): consecutive IRQs from `mask`, cycling, as
/// hvmloader does (mask 0x0c20 gives 5, 10, 11, 5). An empty mask gives all zeros
/// (0x80 would disable the route; 0 is what an absent mask means to us).
pub fn pirq_routes(mask: u16) -> [u8; 4] {
    let mut irqs = [0u8; 16];
    let mut n = 0;
    for irq in 0..16u8 {
        if mask & (1 << irq) != 0 {
            irqs[n] = irq;
            n += 1;
        }
    }
    let mut out = [0u8; 4];
    if n > 0 {
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = irqs[i % n];
        }
    }
    out
}

/// PIRQ link (0 = A) that INTx pin `pin` (1 = INTA .. 4 = INTD) of device `dev` is wired
/// to: the barber pole `((pin - 1) + dev) & 3`. None for pin 0 (no interrupt) or > 4.
pub fn intx_link(dev: u8, pin: u8) -> Option<u8> {
    match pin {
        1..=4 => Some(((pin - 1).wrapping_add(dev)) & 3),
        _ => None,
    }
}

/// ISA IRQ for `pin` of `dev` given the link routes.
pub fn intx_irq(dev: u8, pin: u8, routes: [u8; 4]) -> Option<u8> {
    intx_link(dev, pin).map(|l| routes[l as usize])
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    Io,
    Mem32,
    Mem64,
    Rom,
}

/// What the low BAR dword says the BAR is (never Rom).
pub fn bar_kind(lo: u32) -> BarKind {
    if lo & 1 != 0 {
        BarKind::Io
    } else if (lo >> 1) & 3 == 2 {
        BarKind::Mem64
    } else {
        BarKind::Mem32
    }
}

/// Size of a BAR from what reads back after writing all ones (`hi` only for Mem64;
/// for a ROM BAR, `lo` is the read-back of 0xfffff800). 0 = not implemented.
pub fn bar_size(kind: BarKind, lo: u32, hi: u32) -> u64 {
    let mask: u64 = match kind {
        // I/O BARs may implement only 16 bits; the upper half reads as 0.
        BarKind::Io => {
            let m = lo & !0x3;
            if m == 0 {
                return 0;
            }
            let m = if m & 0xffff_0000 == 0 {
                m | 0xffff_0000
            } else {
                m
            };
            0xffff_ffff_0000_0000 | m as u64
        }
        BarKind::Mem32 => {
            let m = lo & !0xf;
            if m == 0 {
                return 0;
            }
            0xffff_ffff_0000_0000 | m as u64
        }
        BarKind::Mem64 => {
            let m = ((hi as u64) << 32) | (lo & !0xf) as u64;
            if m == 0 {
                return 0;
            }
            m
        }
        BarKind::Rom => {
            let m = lo & 0xffff_f800;
            if m == 0 {
                return 0;
            }
            0xffff_ffff_0000_0000 | m as u64
        }
    };
    // The lowest set bit of the mask is the size.
    mask & mask.wrapping_neg()
}

/// One BAR to place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarReq {
    pub devfn: u8,
    /// 0..=5, or [`ROM_INDEX`].
    pub index: u8,
    pub kind: BarKind,
    pub size: u64,
}

pub const ROM_INDEX: u8 = 6;

/// A placement decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    pub req: BarReq,
    pub addr: u64,
}

impl BarReq {
    fn is_io(&self) -> bool {
        self.kind == BarKind::Io
    }
}

/// Windows BARs go into.
#[derive(Clone, Copy, Debug)]
pub struct Windows {
    pub mem_start: u64,
    pub mem_end: u64,
    pub io_start: u64,
    pub io_end: u64,
}

/// Places BARs, largest first, each naturally aligned (sizes that are not powers of
/// two, from a broken device, are aligned to the next power of two), memory BARs
/// (incl. 64-bit and ROM) in `[mem_start, mem_end)`, I/O BARs in `[io_start, io_end)`.
/// `reqs` is sorted in place (size descending, then devfn, then index) and `out[i]`
/// gets the address for `reqs[i]`, or None if it did not fit.
pub fn allocate(reqs: &mut [BarReq], w: Windows, out: &mut [Option<u64>]) {
    reqs.sort_unstable_by(|a, b| {
        b.size
            .cmp(&a.size)
            .then(a.devfn.cmp(&b.devfn))
            .then(a.index.cmp(&b.index))
    });
    let mut mem = w.mem_start;
    let mut io = w.io_start;
    for (i, r) in reqs.iter().enumerate() {
        let Some(slot) = out.get_mut(i) else {
            break;
        };
        *slot = None;
        let min = match r.kind {
            BarKind::Io => 4,
            BarKind::Rom => 0x800,
            _ => 16,
        };
        let Some(align) = r.size.max(min).checked_next_power_of_two() else {
            continue;
        };
        let (cursor, end) = if r.is_io() {
            (&mut io, w.io_end)
        } else {
            (&mut mem, w.mem_end)
        };
        let Some(base) = cursor.checked_next_multiple_of(align) else {
            continue;
        };
        match base.checked_add(r.size.max(min)) {
            Some(top) if top <= end => {
                *slot = Some(base);
                *cursor = top;
            }
            _ => {}
        }
    }
}

/// `00:02.0` style bus:device.function for bus 0.
pub struct Bdf(pub u8);

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00:{:02x}.{}", self.0 >> 3, self.0 & 7)
    }
}

/// What the firmware prints for each function found:
/// `PCI 00:02.0 5853:0001 rev 01 class ff8000 subsys 5853:0001 pin A irq 5`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionLine {
    pub devfn: u8,
    pub vendor: u16,
    pub device: u16,
    pub revision: u8,
    /// 24-bit class code (class, subclass, prog-if).
    pub class: u32,
    pub subsys_vendor: u16,
    pub subsys: u16,
    /// 0 = none, 1..=4 = INTA..INTD.
    pub pin: u8,
    pub irq: Option<u8>,
}

impl fmt::Display for FunctionLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PCI {} {:04x}:{:04x} rev {:02x} class {:06x} subsys {:04x}:{:04x} pin ",
            Bdf(self.devfn),
            self.vendor,
            self.device,
            self.revision,
            self.class & 0xff_ffff,
            self.subsys_vendor,
            self.subsys
        )?;
        match self.pin {
            1..=4 => write!(f, "{}", (b'A' + self.pin - 1) as char)?,
            _ => f.write_str("-")?,
        }
        match (self.pin, self.irq) {
            (1..=4, Some(irq)) => write!(f, " irq {irq}"),
            _ => f.write_str(" irq -"),
        }
    }
}

/// `BAR 00:02.0 0 io 0xc000 size 0x100`, `BAR 00:02.0 1 mem 0xe0000000 size 0x1000000`,
/// `BAR 00:03.0 rom mem 0xe1000000 size 0x10000`.
impl fmt::Display for Placed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BAR {} ", Bdf(self.req.devfn))?;
        if self.req.index == ROM_INDEX {
            f.write_str("rom")?;
        } else {
            write!(f, "{}", self.req.index)?;
        }
        let space = if self.req.is_io() { "io" } else { "mem" };
        write!(f, " {space} {:#x} size {:#x}", self.addr, self.req.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Windows = Windows {
        mem_start: 0xe000_0000,
        mem_end: 0xfec0_0000,
        io_start: 0xc000,
        io_end: 0x10000,
    };

    #[test]
    fn hvmloader_pirq_routing() {
        assert_eq!(pirq_routes(0x0c20), [5, 10, 11, 5]);
        assert_eq!(pirq_routes(0x0800), [11, 11, 11, 11]);
        assert_eq!(pirq_routes(0), [0, 0, 0, 0]);
        assert_eq!(pirq_routes(0xffff), [0, 1, 2, 3]);
    }

    #[test]
    fn barber_pole() {
        let r = pirq_routes(0x0c20);
        // Xen platform device at 00:02.0 pin A -> link C -> 11; 00:03.0 pin A -> link D.
        assert_eq!(intx_link(2, 1), Some(2));
        assert_eq!(intx_irq(2, 1, r), Some(11));
        assert_eq!(intx_irq(3, 1, r), Some(5));
        assert_eq!(intx_irq(1, 1, r), Some(10));
        assert_eq!(intx_irq(1, 4, r), Some(5));
        assert_eq!(intx_irq(31, 4, r), Some(11));
        assert_eq!(intx_link(255, 4), Some(2));
        assert_eq!(intx_irq(1, 0, r), None);
        assert_eq!(intx_irq(1, 5, r), None);
        assert_eq!(intx_irq(1, 0xff, r), None);
    }

    #[test]
    fn bar_sizes() {
        assert_eq!(bar_kind(0xffff_ff01), BarKind::Io);
        assert_eq!(bar_kind(0xff00_0008), BarKind::Mem32);
        assert_eq!(bar_kind(0xffff_f00c), BarKind::Mem64);
        assert_eq!(bar_size(BarKind::Io, 0xffff_ff01, 0), 0x100);
        assert_eq!(bar_size(BarKind::Io, 0x0000_fff1, 0), 0x10);
        assert_eq!(bar_size(BarKind::Io, 0x0000_0001, 0), 0);
        assert_eq!(bar_size(BarKind::Mem32, 0xff00_0008, 0), 0x100_0000);
        assert_eq!(bar_size(BarKind::Mem32, 0, 0), 0);
        assert_eq!(
            bar_size(BarKind::Mem64, 0xfe00_000c, 0xffff_ffff),
            0x200_0000
        );
        assert_eq!(
            bar_size(BarKind::Mem64, 0x0000_000c, 0xffff_fff0),
            0x10_0000_0000
        );
        assert_eq!(bar_size(BarKind::Mem64, 0xc, 0), 0);
        assert_eq!(bar_size(BarKind::Rom, 0xffff_0000, 0), 0x1_0000);
        assert_eq!(bar_size(BarKind::Rom, 0x0000_07ff, 0), 0);
        // Hostile: non-contiguous masks give the lowest set bit.
        assert_eq!(bar_size(BarKind::Mem32, 0x8000_1000, 0), 0x1000);
    }

    #[test]
    fn allocation_is_sorted_and_naturally_aligned() {
        let mut reqs = [
            BarReq {
                devfn: 0x10,
                index: 0,
                kind: BarKind::Io,
                size: 0x100,
            },
            BarReq {
                devfn: 0x10,
                index: 1,
                kind: BarKind::Mem32,
                size: 0x100_0000,
            },
            BarReq {
                devfn: 0x18,
                index: 0,
                kind: BarKind::Mem32,
                size: 0x1000,
            },
            BarReq {
                devfn: 0x18,
                index: ROM_INDEX,
                kind: BarKind::Rom,
                size: 0x1_0000,
            },
            BarReq {
                devfn: 0x09,
                index: 4,
                kind: BarKind::Io,
                size: 0x10,
            },
            BarReq {
                devfn: 0x20,
                index: 0,
                kind: BarKind::Mem64,
                size: 0x200_0000,
            },
        ];
        let mut out = [None; 6];
        allocate(&mut reqs, W, &mut out);
        let placed: Vec<(u8, u8, u64)> = reqs
            .iter()
            .zip(out)
            .map(|(r, a)| (r.devfn, r.index, a.unwrap()))
            .collect();
        assert_eq!(
            placed,
            vec![
                (0x20, 0, 0xe000_0000),
                (0x10, 1, 0xe200_0000),
                (0x18, ROM_INDEX, 0xe300_0000),
                (0x18, 0, 0xe301_0000),
                (0x10, 0, 0xc000),
                (0x09, 4, 0xc100),
            ]
        );
        for (r, a) in reqs.iter().zip(out) {
            assert_eq!(a.unwrap() % r.size, 0);
        }
    }

    #[test]
    fn allocation_failures_are_none() {
        let mut reqs = [
            BarReq {
                devfn: 0x10,
                index: 0,
                kind: BarKind::Mem64,
                size: 1 << 40,
            },
            BarReq {
                devfn: 0x10,
                index: 1,
                kind: BarKind::Io,
                size: 0x8000,
            },
            BarReq {
                devfn: 0x10,
                index: 2,
                kind: BarKind::Mem32,
                size: 0x1000,
            },
            BarReq {
                devfn: 0x10,
                index: 3,
                kind: BarKind::Mem32,
                size: u64::MAX,
            },
            BarReq {
                devfn: 0x10,
                index: 4,
                kind: BarKind::Mem32,
                size: 0x3000,
            },
        ];
        let mut out = [Some(1); 5];
        allocate(&mut reqs, W, &mut out);
        let by_index = |i: u8| {
            let p = reqs.iter().position(|r| r.index == i).unwrap();
            out[p]
        };
        assert_eq!(by_index(3), None);
        assert_eq!(by_index(0), None);
        assert_eq!(
            by_index(1),
            None,
            "0x8000 does not fit in 0xc000..0x10000 aligned"
        );
        assert_eq!(by_index(4), Some(0xe000_0000), "aligned to 0x4000");
        assert_eq!(by_index(2), Some(0xe000_3000));
        // Short output slice: no panic.
        let mut out = [None; 1];
        allocate(&mut reqs, W, &mut out);
    }

    #[test]
    fn line_formats() {
        let l = FunctionLine {
            devfn: 0x10,
            vendor: 0x5853,
            device: 1,
            revision: 1,
            class: 0xff8000,
            subsys_vendor: 0x5853,
            subsys: 1,
            pin: 1,
            irq: Some(5),
        };
        assert_eq!(
            l.to_string(),
            "PCI 00:02.0 5853:0001 rev 01 class ff8000 subsys 5853:0001 pin A irq 5"
        );
        let l = FunctionLine {
            devfn: 0,
            pin: 0,
            irq: None,
            class: 0x060000,
            ..l
        };
        assert_eq!(
            l.to_string(),
            "PCI 00:00.0 5853:0001 rev 01 class 060000 subsys 5853:0001 pin - irq -"
        );
        let l = FunctionLine {
            devfn: 0x0b,
            pin: 7,
            irq: Some(9),
            ..l
        };
        assert!(l.to_string().starts_with("PCI 00:01.3 "));
        assert!(l.to_string().ends_with("pin - irq -"));
        let p = Placed {
            req: BarReq {
                devfn: 0x10,
                index: 0,
                kind: BarKind::Io,
                size: 0x100,
            },
            addr: 0xc000,
        };
        assert_eq!(p.to_string(), "BAR 00:02.0 0 io 0xc000 size 0x100");
        let p = Placed {
            req: BarReq {
                devfn: 0x10,
                index: 1,
                kind: BarKind::Mem32,
                size: 0x100_0000,
            },
            addr: 0xe000_0000,
        };
        assert_eq!(p.to_string(), "BAR 00:02.0 1 mem 0xe0000000 size 0x1000000");
        let p = Placed {
            req: BarReq {
                devfn: 0x18,
                index: ROM_INDEX,
                kind: BarKind::Rom,
                size: 0x1_0000,
            },
            addr: 0xe100_0000,
        };
        assert_eq!(p.to_string(), "BAR 00:03.0 rom mem 0xe1000000 size 0x10000");
    }
}
