//! PIIX3 PCI-ISA bridge. STUB: to be implemented (API fixed).
use crate::{Platform, PortIo, Width, pci::*, snapshot::*};

#[derive(Clone, Debug)]
pub struct Piix3 {
    cfg: ConfigSpace,
}

impl Piix3 {
    pub fn new(id: &PciIdent) -> Self {
        Self {
            cfg: ConfigSpace::new(id),
        }
    }
    /// ISA IRQ that PIRQ link `link` (0..4 = A..D) is routed to, if enabled.
    pub fn pirq_route(&self, _link: u8) -> Option<u8> {
        None
    }
    /// Gate A20 as port 0x92 bit 1 drives it.
    pub fn a20(&self) -> bool {
        true
    }
}

impl PciFunction for Piix3 {
    fn config(&self) -> &ConfigSpace {
        &self.cfg
    }
    fn cfg_write(&mut self, _p: &mut dyn Platform, off: u8, w: Width, v: u32) -> bool {
        self.cfg.write(off, w, v)
    }
}

/// Ports: ELCR 0x4d0/0x4d1, reset control 0xcf9, system control port A 0x92.
impl PortIo for Piix3 {
    fn pio_read(&mut self, _p: &mut dyn Platform, _port: u16, _w: Width) -> u32 {
        0xff
    }
    fn pio_write(&mut self, _p: &mut dyn Platform, _port: u16, _w: Width, _v: u32) {}
}

impl Snapshot for Piix3 {
    const NAME: &'static str = "piix3";
    const VERSION: u16 = 1;
    fn save(&self, _w: &mut RecordWriter) {}
    fn load(&mut self, _v: u16, _r: &mut RecordReader<'_>) -> Result<(), LoadError> {
        Ok(())
    }
}
