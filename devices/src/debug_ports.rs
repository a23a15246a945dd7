//! Debug console ports 0xe9 / 0x402 and the POST code latch at port 0x80.
//!
//! * 0xe9 is the Bochs/Xen debug console (SeaBIOS and Xen's hvmloader print to it), 0x402
//!   is where QEMU's `isa-debugcon` conventionally sits (OVMF prints there). Both behave
//!   the same: a write sends one byte to [`CharSink::DebugCon`], a read returns 0xe9 — the
//!   value SeaBIOS probes for before it trusts the port.
//! * 0x80 is the POST code port: the last byte written is latched and reads return it.
//!   Linux hammers it as an I/O delay (`outb` to 0x80), so it must stay cheap.
//!
//! Wider accesses: all three are byte ports. An ISA bus splits a 16/32-bit cycle into
//! byte cycles on consecutive ports, and the ports next to ours (0xea, 0x403, 0x81 = DMA
//! page register) are not ours. So only the addressed byte (the low byte of the value)
//! is decoded: a word write to 0xe9 emits exactly one character — what QEMU's byte-wide
//! `isa-debugcon` does too — and the upper byte lanes of a read float (all ones).
use crate::platform::CharSink;
use crate::{Platform, PortIo, Width, snapshot::*};

/// Bochs/Xen debug console port.
pub const PORT_E9: u16 = 0xe9;
/// QEMU debugcon port.
pub const PORT_DEBUGCON: u16 = 0x402;
/// POST code port.
pub const PORT_POST: u16 = 0x80;
/// What a read of a debug console port returns ("a debug port is here").
pub const DEBUGCON_READBACK: u8 = 0xe9;

#[derive(Clone, Debug, Default)]
pub struct DebugPorts {
    post: u8,
}

impl DebugPorts {
    pub fn new() -> Self {
        Self::default()
    }
    /// Last value written to port 0x80.
    pub fn post_code(&self) -> u8 {
        self.post
    }

    /// The byte lane at `port` itself; the other lanes of a wide read float high.
    fn read_byte(&self, port: u16) -> u8 {
        match port {
            PORT_E9 | PORT_DEBUGCON => DEBUGCON_READBACK,
            PORT_POST => self.post,
            _ => 0xff,
        }
    }
}

impl PortIo for DebugPorts {
    fn pio_read(&mut self, _p: &mut dyn Platform, port: u16, w: Width) -> u32 {
        let open = w.mask() as u32 & !0xff;
        open | self.read_byte(port) as u32
    }

    fn pio_write(&mut self, p: &mut dyn Platform, port: u16, _w: Width, v: u32) {
        let byte = v as u8;
        match port {
            PORT_E9 | PORT_DEBUGCON => p.char_out(CharSink::DebugCon, &[byte]),
            PORT_POST => self.post = byte,
            _ => {}
        }
    }
}

impl Snapshot for DebugPorts {
    const NAME: &'static str = "debugports";
    const VERSION: u16 = 1;
    // v1 body: post code (u8). The debug console itself has no state.
    fn save(&self, w: &mut RecordWriter) {
        w.u8(self.post);
    }
    fn load(&mut self, _v: u16, r: &mut RecordReader<'_>) -> Result<(), LoadError> {
        // Every byte value is a valid POST code.
        self.post = r.u8()?;
        Ok(())
    }
}

crate::snapshot_tests!(
    debug_ports_snapshot,
    DebugPorts,
    {
        let mut d = DebugPorts::new();
        d.post = 0x3c;
        d
    },
    DebugPorts::new()
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MockPlatform;

    #[test]
    fn seabios_probe_and_print() {
        // SeaBIOS only uses the debug port if a read returns 0xe9.
        let mut d = DebugPorts::new();
        let mut p = MockPlatform::new();
        assert_eq!(d.pio_read(&mut p, PORT_E9, Width::B1), 0xe9);
        for &b in b"SeaBIOS\n" {
            d.pio_write(&mut p, PORT_E9, Width::B1, b as u32);
        }
        assert_eq!(p.debug_out, b"SeaBIOS\n");
    }

    #[test]
    fn qemu_debugcon_port_behaves_the_same() {
        let mut d = DebugPorts::new();
        let mut p = MockPlatform::new();
        assert_eq!(d.pio_read(&mut p, PORT_DEBUGCON, Width::B1), 0xe9);
        d.pio_write(&mut p, PORT_DEBUGCON, Width::B1, b'x' as u32);
        assert_eq!(p.debug_out, b"x");
    }

    #[test]
    fn wide_writes_emit_only_the_low_byte() {
        let mut d = DebugPorts::new();
        let mut p = MockPlatform::new();
        d.pio_write(&mut p, PORT_E9, Width::B2, 0x4241);
        d.pio_write(&mut p, PORT_DEBUGCON, Width::B4, 0x4443_4243);
        assert_eq!(p.debug_out, b"AC");
        assert_eq!(d.pio_read(&mut p, PORT_E9, Width::B2), 0xffe9);
        assert_eq!(d.pio_read(&mut p, PORT_E9, Width::B4), 0xffff_ffe9);
    }

    #[test]
    fn post_code_latches_last_byte() {
        let mut d = DebugPorts::new();
        let mut p = MockPlatform::new();
        assert_eq!(d.pio_read(&mut p, PORT_POST, Width::B1), 0);
        d.pio_write(&mut p, PORT_POST, Width::B1, 0x55);
        d.pio_write(&mut p, PORT_POST, Width::B2, 0x12aa);
        assert_eq!(d.post_code(), 0xaa);
        assert_eq!(d.pio_read(&mut p, PORT_POST, Width::B1), 0xaa);
        assert_eq!(d.pio_read(&mut p, PORT_POST, Width::B2), 0xffaa);
        // The delay writes Linux does to 0x80 never reach the console.
        assert!(p.debug_out.is_empty());
    }

    #[test]
    fn hammer_every_port_width_and_value() {
        let mut d = DebugPorts::new();
        let mut p = MockPlatform::new();
        let mut seed = 0x1234_5678_9abc_def0u64;
        let ports = [PORT_E9, PORT_DEBUGCON, PORT_POST, 0, 0xffff, 0x81];
        for i in 0..20_000u32 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let port = ports[(seed % ports.len() as u64) as usize];
            let w = [Width::B1, Width::B2, Width::B4][((seed >> 8) % 3) as usize];
            let v = (seed >> 16) as u32;
            if i % 2 == 0 {
                d.pio_write(&mut p, port, w, v);
            } else {
                let r = d.pio_read(&mut p, port, w);
                assert_eq!(r & !(w.mask() as u32), 0);
            }
        }
        // One byte per console write at most.
        assert!(p.debug_out.len() <= 10_000);
    }
}
