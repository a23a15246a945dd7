//! Debug console 0xe9 and POST code port 0x80. STUB: to be implemented (API fixed).
use crate::{Platform, PortIo, Width, snapshot::*};

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
}

impl PortIo for DebugPorts {
    fn pio_read(&mut self, _p: &mut dyn Platform, _port: u16, _w: Width) -> u32 {
        0xff
    }
    fn pio_write(&mut self, _p: &mut dyn Platform, _port: u16, _w: Width, _v: u32) {}
}

impl Snapshot for DebugPorts {
    const NAME: &'static str = "debugports";
    const VERSION: u16 = 1;
    fn save(&self, _w: &mut RecordWriter) {}
    fn load(&mut self, _v: u16, _r: &mut RecordReader<'_>) -> Result<(), LoadError> {
        Ok(())
    }
}
