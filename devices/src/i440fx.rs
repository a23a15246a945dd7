//! i440FX host bridge. STUB: to be implemented (API fixed).
use crate::{Platform, Width, pci::*, snapshot::*};

#[derive(Clone, Debug)]
pub struct I440Fx {
    cfg: ConfigSpace,
}

impl I440Fx {
    pub fn new(id: &PciIdent) -> Self {
        Self {
            cfg: ConfigSpace::new(id),
        }
    }
}

impl PciFunction for I440Fx {
    fn config(&self) -> &ConfigSpace {
        &self.cfg
    }
    fn cfg_write(&mut self, _p: &mut dyn Platform, off: u8, w: Width, v: u32) -> bool {
        self.cfg.write(off, w, v)
    }
}

impl Snapshot for I440Fx {
    const NAME: &'static str = "i440fx";
    const VERSION: u16 = 1;
    fn save(&self, _w: &mut RecordWriter) {}
    fn load(&mut self, _v: u16, _r: &mut RecordReader<'_>) -> Result<(), LoadError> {
        Ok(())
    }
}
