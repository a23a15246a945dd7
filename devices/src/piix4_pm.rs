//! PIIX4 ACPI power-management function. STUB: to be implemented (API fixed).
use crate::{Platform, PortIo, TimerId, Width, pci::*, profile::PmLayout, snapshot::*};

#[derive(Clone, Debug)]
pub struct Piix4Pm {
    cfg: ConfigSpace,
    layout: PmLayout,
}

impl Piix4Pm {
    pub fn new(id: &PciIdent, layout: &PmLayout) -> Self {
        Self {
            cfg: ConfigSpace::new(id),
            layout: *layout,
        }
    }
    /// Base of the 64-byte PM I/O block, when PMBA (0x40) is set and PMIOSE (0x80 bit 0) enables it.
    pub fn pm_io_base(&self) -> Option<u16> {
        None
    }
    /// GPE0 block (base, length).
    pub fn gpe0_block(&self) -> (u16, u16) {
        (self.layout.gpe0_base, self.layout.gpe0_len)
    }
    pub fn smi_cmd_port(&self) -> u16 {
        self.layout.smi_cmd_port
    }
    pub fn on_timer(&mut self, _p: &mut dyn Platform, _id: TimerId) {}
}

impl PciFunction for Piix4Pm {
    fn config(&self) -> &ConfigSpace {
        &self.cfg
    }
    fn cfg_write(&mut self, _p: &mut dyn Platform, off: u8, w: Width, v: u32) -> bool {
        self.cfg.write(off, w, v)
    }
}

/// Ports: the PM block at pm_io_base(), GPE0, the SMI command port (+1 = APM status).
impl PortIo for Piix4Pm {
    fn pio_read(&mut self, _p: &mut dyn Platform, _port: u16, _w: Width) -> u32 {
        0xff
    }
    fn pio_write(&mut self, _p: &mut dyn Platform, _port: u16, _w: Width, _v: u32) {}
}

impl Snapshot for Piix4Pm {
    const NAME: &'static str = "piix4pm";
    const VERSION: u16 = 1;
    fn save(&self, _w: &mut RecordWriter) {}
    fn load(&mut self, _v: u16, _r: &mut RecordReader<'_>) -> Result<(), LoadError> {
        Ok(())
    }
}
