//! 16550A UART. STUB: to be implemented (API fixed).
use crate::{Platform, PortIo, Width, snapshot::*};

#[derive(Clone, Debug)]
pub struct Uart16550 {
    index: u8,
    base: u16,
    irq: u8,
}

impl Uart16550 {
    pub fn new(index: u8, base: u16, irq: u8) -> Self {
        Self { index, base, irq }
    }
    pub fn base(&self) -> u16 {
        self.base
    }
    /// Bytes from the host side (keyboard/pty) into the receive FIFO; returns how many fit.
    pub fn receive(&mut self, _p: &mut dyn Platform, bytes: &[u8]) -> usize {
        let _ = (self.index, self.irq);
        bytes.len()
    }
}

impl PortIo for Uart16550 {
    fn pio_read(&mut self, _p: &mut dyn Platform, _port: u16, _w: Width) -> u32 {
        0xff
    }
    fn pio_write(&mut self, _p: &mut dyn Platform, _port: u16, _w: Width, _v: u32) {}
}

impl Snapshot for Uart16550 {
    const NAME: &'static str = "uart16550";
    const VERSION: u16 = 1;
    fn save(&self, _w: &mut RecordWriter) {}
    fn load(&mut self, _v: u16, _r: &mut RecordReader<'_>) -> Result<(), LoadError> {
        Ok(())
    }
}
