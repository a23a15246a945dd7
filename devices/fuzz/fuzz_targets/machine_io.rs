//! Guest operations on a whole `Machine`: port and MMIO accesses, timer expiries, time
//! advancing, serial input, and save -> load into a fresh machine.
//!
//! Oracles: no panic anywhere; a restored machine saves the same bytes as the machine it
//! was saved from; and after a save/load the original and the restored machine run the
//! rest of the input side by side ("twins") and must answer every guest read the same
//! and end in the same saved state.
//!
//! Input: byte 0 picks the machine (bit 0 profile, bits 1-2 serial ports, bit 3 RAM above
//! 4 GiB, bits 4-7 vCPUs - 1); then operations, one opcode byte each followed by its
//! operands (missing operand bytes read as 0).
#![no_main]

use chassis_devices::Width;
use chassis_devices::machine::{Machine, MachineConfig};
use chassis_devices::pci::BarKind;
use chassis_devices::pci::PciFunction;
use chassis_devices::platform::TimerId;
use chassis_devices::profile;
use chassis_devices::testing::MockPlatform;
use libfuzzer_sys::fuzz_target;

/// Port ranges the machine decodes (or that neighbour what it decodes).
const PORT_RANGES: &[(u16, u16)] = &[
    (0xcf8, 8),      // PCI config mechanism #1 (+ 0xcf9 reset control)
    (0x60, 1),       // i8042 data
    (0x64, 1),       // i8042 command/status
    (0x70, 2),       // RTC index/data
    (0x3f8, 8),      // COM1
    (0x2f8, 8),      // COM2
    (0x4d0, 2),      // ELCR
    (0x92, 1),       // port 92 (fast A20)
    (0xcf9, 1),      // reset control
    (0xb000, 0x40),  // PIIX4 PM block (default PMBA)
    (0xafe0, 4),     // GPE0
    (0xb2, 2),       // SMI command
    (0x10, 0x10),    // Xen platform fixed ports
    (0xc000, 0x100), // where firmware puts the Xen platform I/O BAR
    (0x80, 1),       // POST code
    (0xe9, 1),       // debug console
];

/// PCI functions worth addressing: the four slots of both profiles and an empty one.
const DEVFNS: &[u8] = &[0x00, 0x08, 0x0b, 0x10, 0x18, 0x20];

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        (self.u32() as u64) | (self.u32() as u64) << 32
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn port(&mut self) -> u16 {
        let s = self.u8();
        if s >= 0xf0 {
            return self.u16();
        }
        let (base, len) = PORT_RANGES[s as usize % PORT_RANGES.len()];
        base.wrapping_add(self.u8() as u16 % len)
    }
    fn pio_width(&mut self) -> Width {
        [Width::B1, Width::B2, Width::B4][self.u8() as usize % 3]
    }
    fn mmio_width(&mut self) -> Width {
        [Width::B1, Width::B2, Width::B4, Width::B8][self.u8() as usize % 4]
    }
}

/// Guest time is capped far below u64::MAX (2^60 ns is 36 years of uptime).
const MAX_NS: u64 = 1 << 60;

struct Twin {
    m: Machine,
    p: MockPlatform,
}

fn config(sel: u8) -> MachineConfig {
    MachineConfig {
        profile: profile::ALL[(sel & 1) as usize],
        ram_below_4g: 512 << 20,
        ram_above_4g: if sel & 8 != 0 { 1 << 30 } else { 0 },
        vcpus: 1 + (sel >> 4) as u32,
        serial_ports: (sel >> 1) % 4, // 3 asks for more UARTs than the profile has
        boot: Default::default(),
    }
}

/// An MMIO address: inside the Xen platform memory BAR of machine 0 (when decoded) or
/// anywhere.
fn mmio_addr(inp: &mut Input, m: &Machine) -> u64 {
    let s = inp.u8();
    if s & 1 == 0 {
        let bar = m
            .xen_platform
            .config()
            .decoded_bars()
            .find(|(_, b)| matches!(b.kind, BarKind::Mem32 { .. }))
            .map(|(_, b)| b.base);
        if let Some(base) = bar {
            return base.wrapping_add(inp.u16() as u64);
        }
    }
    inp.u64()
}

fn restore_from(cfg: &MachineConfig, src: &Twin) -> Twin {
    let saved = src.m.save();
    let mut p = MockPlatform::new();
    p.now_ns = src.p.now_ns;
    p.wall_base_ns = src.p.wall_base_ns;
    let mut m = Machine::new(cfg);
    if let Err(e) = m.load(&mut p, &saved) {
        panic!("a machine's own saved state does not load into a fresh machine: {e}");
    }
    assert_eq!(m.save(), saved, "save -> load -> save changed the state");
    Twin { m, p }
}

fn same<T: PartialEq + core::fmt::Debug>(vals: &[T], what: core::fmt::Arguments) {
    if let Some(first) = vals.first() {
        for v in &vals[1..] {
            assert_eq!(
                first, v,
                "restored machine diverged from the original: {what}"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let cfg = config(inp.u8());
    let mut twins = vec![Twin {
        m: Machine::new(&cfg),
        p: MockPlatform::new(),
    }];
    let mut ops = 0;
    while !inp.0.is_empty() && ops < 4096 {
        ops += 1;
        match inp.u8() % 11 {
            0 | 1 => {
                let (port, w) = (inp.port(), inp.pio_width());
                let v: Vec<u32> = twins
                    .iter_mut()
                    .map(|t| t.m.pio_read(&mut t.p, port, w))
                    .collect();
                assert_eq!(v[0] & !(w.mask() as u32), 0, "read wider than its width");
                same(&v, format_args!("pio_read({port:#x}, {w:?})"));
            }
            2 | 3 => {
                let (port, w, val) = (inp.port(), inp.pio_width(), inp.u32());
                for t in &mut twins {
                    t.m.pio_write(&mut t.p, port, w, val);
                }
            }
            4 => {
                // A whole PCI config access: address then data, as firmware does it.
                let devfn = DEVFNS[inp.u8() as usize % DEVFNS.len()] as u32;
                let off = inp.u8() as u32;
                let w = inp.pio_width();
                let write = inp.u8() & 1 != 0;
                let val = inp.u32();
                let addr = 0x8000_0000 | devfn << 8 | (off & 0xfc);
                let port = 0xcfc + (off & 3) as u16;
                let mut v = Vec::new();
                for t in &mut twins {
                    t.m.pio_write(&mut t.p, 0xcf8, Width::B4, addr);
                    if write {
                        t.m.pio_write(&mut t.p, port, w, val);
                    } else {
                        v.push(t.m.pio_read(&mut t.p, port, w));
                    }
                }
                same(&v, format_args!("config read {devfn:#x}:{off:#x} {w:?}"));
            }
            5 => {
                let addr = mmio_addr(&mut inp, &twins[0].m);
                let w = inp.mmio_width();
                let v: Vec<_> = twins
                    .iter_mut()
                    .map(|t| t.m.mmio_read(&mut t.p, addr, w))
                    .collect();
                if let Some(x) = v[0] {
                    assert_eq!(x & !w.mask(), 0, "MMIO read wider than its width");
                }
                same(&v, format_args!("mmio_read({addr:#x}, {w:?})"));
            }
            6 => {
                let addr = mmio_addr(&mut inp, &twins[0].m);
                let (w, val) = (inp.mmio_width(), inp.u64());
                let v: Vec<_> = twins
                    .iter_mut()
                    .map(|t| t.m.mmio_write(&mut t.p, addr, w, val))
                    .collect();
                same(&v, format_args!("mmio_write({addr:#x}, {w:?})"));
            }
            7 => {
                // A timer expiry. Mostly as a platform delivers it: time moves to the
                // armed deadline first; sometimes spurious (unarmed or early).
                let s = inp.u8();
                let id = TimerId::ALL[s as usize % TimerId::ALL.len()];
                if s & 0x80 == 0 {
                    let deadline = twins[0].p.timer(id);
                    if let Some(d) = deadline {
                        let now = d.min(MAX_NS).max(twins[0].p.now_ns);
                        for t in &mut twins {
                            t.p.now_ns = now;
                        }
                    }
                }
                for t in &mut twins {
                    t.m.on_timer(&mut t.p, id);
                }
            }
            8 => {
                let s = inp.u8();
                let ns = match s % 4 {
                    0 => inp.u8() as u64,
                    1 => inp.u16() as u64 * 1000,
                    2 => inp.u32() as u64,
                    _ => inp.u16() as u64 * 1_000_000_000,
                };
                for t in &mut twins {
                    t.p.now_ns = t.p.now_ns.saturating_add(ns).min(MAX_NS);
                }
            }
            9 => {
                let index = inp.u8() as usize % 3;
                let n = inp.u8() as usize % 32;
                let bytes = inp.bytes(n).to_vec();
                let v: Vec<_> = twins
                    .iter_mut()
                    .map(|t| t.m.serial_input(&mut t.p, index, &bytes))
                    .collect();
                assert!(v[0] <= bytes.len(), "serial_input accepted more than given");
                same(
                    &v,
                    format_args!("serial_input({index}, {} bytes)", bytes.len()),
                );
            }
            _ => {
                // Save -> load into a fresh machine, which then runs side by side with
                // the original (replacing an earlier twin).
                let restored = restore_from(&cfg, &twins[0]);
                twins.truncate(1);
                twins.push(restored);
            }
        }
        let a20: Vec<_> = twins.iter().map(|t| t.m.a20()).collect();
        same(&a20, format_args!("a20"));
    }
    let saves: Vec<_> = twins.iter().map(|t| t.m.save()).collect();
    same(&saves, format_args!("final saved state"));
    restore_from(&cfg, &twins[0]);
});
