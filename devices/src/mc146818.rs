//! MC146818 RTC + CMOS. STUB: to be implemented (API fixed).
use crate::{Platform, PortIo, TimerId, Width, snapshot::*};

#[derive(Clone, Debug)]
pub struct Mc146818 {
    irq: u8,
}

impl Mc146818 {
    pub fn new(irq: u8) -> Self {
        Self { irq }
    }
    /// Store the memory-size bytes firmware reads (0x15-0x18, 0x30/0x31, 0x34/0x35, 0x5b-0x5d).
    pub fn set_memory_size(&mut self, _below_4g: u64, _above_4g: u64) {}
    /// CMOS 0x5f = number of CPUs - 1 (SeaBIOS/QEMU convention).
    pub fn set_cpu_count(&mut self, _n: u32) {}
    pub fn on_timer(&mut self, _p: &mut dyn Platform, _id: TimerId) {
        let _ = self.irq;
    }
}

impl PortIo for Mc146818 {
    fn pio_read(&mut self, _p: &mut dyn Platform, _port: u16, _w: Width) -> u32 {
        0xff
    }
    fn pio_write(&mut self, _p: &mut dyn Platform, _port: u16, _w: Width, _v: u32) {}
}

impl Snapshot for Mc146818 {
    const NAME: &'static str = "mc146818";
    const VERSION: u16 = 1;
    fn save(&self, _w: &mut RecordWriter) {}
    fn load(&mut self, _v: u16, _r: &mut RecordReader<'_>) -> Result<(), LoadError> {
        Ok(())
    }
}
