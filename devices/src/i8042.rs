//! i8042 keyboard controller. STUB: to be implemented (API fixed).
use crate::{Platform, PortIo, Width, snapshot::*};

#[derive(Clone, Debug, Default)]
pub struct I8042 {
    a20: bool,
}

impl I8042 {
    pub fn new() -> Self {
        Self { a20: true }
    }
    /// Gate A20 as the controller's output port drives it.
    pub fn a20(&self) -> bool {
        self.a20
    }
    /// A scancode from the host keyboard.
    pub fn key_input(&mut self, _p: &mut dyn Platform, _scancode: u8) {}
}

impl PortIo for I8042 {
    fn pio_read(&mut self, _p: &mut dyn Platform, _port: u16, _w: Width) -> u32 {
        0xff
    }
    fn pio_write(&mut self, _p: &mut dyn Platform, _port: u16, _w: Width, _v: u32) {}
}

impl Snapshot for I8042 {
    const NAME: &'static str = "i8042";
    const VERSION: u16 = 1;
    fn save(&self, _w: &mut RecordWriter) {}
    fn load(&mut self, _v: u16, _r: &mut RecordReader<'_>) -> Result<(), LoadError> {
        Ok(())
    }
}
