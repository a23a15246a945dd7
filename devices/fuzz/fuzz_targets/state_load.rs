//! `Machine::load` on arbitrary bytes: it must return Ok or Err, never panic. When it
//! accepts the bytes, the loaded machine must survive guest accesses and timer expiries
//! (load validates every field the devices rely on at run time), and what it then saves
//! must load again into a fresh machine and save back to the same bytes.
//!
//! Input: byte 0 picks the machine (bit 0 profile, bit 1 RAM above 4G, bits 2-3 serial
//! ports, bit 7 mode). Mode 0: the rest is the state stream as is. Mode 1: the rest
//! patches a valid saved state (3-byte patches: offset u16 LE, XOR value), so the
//! fuzzer reaches the device decoders without first having to find the framing.
#![no_main]

use chassis_devices::Width;
use chassis_devices::machine::{Machine, MachineConfig};
use chassis_devices::platform::TimerId;
use chassis_devices::profile;
use chassis_devices::testing::MockPlatform;
use libfuzzer_sys::fuzz_target;

fn machine(sel: u8) -> Machine {
    Machine::new(&MachineConfig {
        profile: profile::ALL[(sel & 1) as usize],
        ram_below_4g: 512 << 20,
        ram_above_4g: if sel & 2 != 0 { 1 << 30 } else { 0 },
        vcpus: 1,
        serial_ports: (sel >> 2) % 3,
        boot: Default::default(),
    })
}

/// Ports the loaded devices decode (plus their neighbours), read at every width.
const PORTS: &[u16] = &[
    0x10, 0x12, 0x60, 0x64, 0x70, 0x71, 0x80, 0x92, 0xb2, 0xcf8, 0xcf9, 0xcfc, 0xcfe, 0x4d0, 0x4d1,
    0xb000, 0xb002, 0xb004, 0xb008, 0xafe0, 0xafe2, 0x3f8, 0x3f9, 0x3fa, 0x3fb, 0x3fc, 0x3fd,
    0x3fe, 0x3ff, 0x2f8, 0x2fa, 0x2fd, 0xc000, 0xc001,
];

fn exercise(m: &mut Machine, p: &mut MockPlatform) {
    for step in 0..2u64 {
        for &port in PORTS {
            for w in [Width::B1, Width::B2, Width::B4] {
                m.pio_read(p, port, w);
            }
        }
        // Every CMOS index and every PCI config dword of the four functions.
        for i in 0..=255u32 {
            m.pio_write(p, 0x70, Width::B1, i);
            m.pio_read(p, 0x71, Width::B1);
        }
        for devfn in [0x00u32, 0x08, 0x0b, 0x10, 0x18] {
            for off in (0..256u32).step_by(4) {
                m.pio_write(p, 0xcf8, Width::B4, 0x8000_0000 | devfn << 8 | off);
                m.pio_read(p, 0xcfc, Width::B4);
            }
        }
        if let Some(v) = m.mmio_read(p, 0, Width::B4) {
            let _ = v;
        }
        for id in TimerId::ALL {
            if let Some(d) = p.timer(id) {
                p.now_ns = p.now_ns.max(d);
            }
            m.on_timer(p, id);
        }
        p.now_ns += 1_000_000_000 * (step + 1);
        m.serial_input(p, 0, b"fuzz");
        m.serial_input(p, 1, b"fuzz");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let state = if sel & 0x80 == 0 {
        rest.to_vec()
    } else {
        let mut s = machine(sel).save();
        for c in rest.chunks_exact(3) {
            let off = u16::from_le_bytes([c[0], c[1]]) as usize;
            if !s.is_empty() {
                let i = off % s.len();
                s[i] ^= c[2];
            }
        }
        s
    };
    let mut p = MockPlatform::new();
    let mut m = machine(sel);
    if m.load(&mut p, &state).is_err() {
        return;
    }
    let saved = m.save();
    let mut q = MockPlatform::new();
    let mut n = machine(sel);
    if let Err(e) = n.load(&mut q, &saved) {
        panic!("a state the machine accepted and re-saved does not load again: {e}");
    }
    assert_eq!(n.save(), saved, "save -> load -> save is not stable");
    exercise(&mut m, &mut p);
});
