//! Xen platform PCI device (5853:0001). STUB: to be implemented (API fixed).
use crate::{Mmio, Platform, PortIo, Width, pci::*, snapshot::*};

#[derive(Clone, Debug)]
pub struct XenPlatform {
    cfg: ConfigSpace,
}

impl XenPlatform {
    pub fn new(id: &PciIdent) -> Self {
        Self {
            cfg: ConfigSpace::new(id),
        }
    }
}

impl PciFunction for XenPlatform {
    fn config(&self) -> &ConfigSpace {
        &self.cfg
    }
    fn cfg_write(&mut self, _p: &mut dyn Platform, off: u8, w: Width, v: u32) -> bool {
        self.cfg.write(off, w, v)
    }
}

/// Ports: the fixed unplug ports 0x10-0x1f and BAR0 (256 bytes of I/O).
impl PortIo for XenPlatform {
    fn pio_read(&mut self, _p: &mut dyn Platform, _port: u16, _w: Width) -> u32 {
        0xff
    }
    fn pio_write(&mut self, _p: &mut dyn Platform, _port: u16, _w: Width, _v: u32) {}
}

/// BAR1: 16 MiB MMIO that reads 0 and ignores writes.
impl Mmio for XenPlatform {
    fn mmio_read(&mut self, _p: &mut dyn Platform, _off: u64, _w: Width) -> u64 {
        0
    }
    fn mmio_write(&mut self, _p: &mut dyn Platform, _off: u64, _w: Width, _v: u64) {}
}

impl Snapshot for XenPlatform {
    const NAME: &'static str = "xenplatform";
    const VERSION: u16 = 1;
    fn save(&self, _w: &mut RecordWriter) {}
    fn load(&mut self, _v: u16, _r: &mut RecordReader<'_>) -> Result<(), LoadError> {
        Ok(())
    }
}
