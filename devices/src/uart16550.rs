//! 16550A UART (COM1 0x3f8/IRQ4, COM2 0x2f8/IRQ3; base and IRQ come from the profile).
//!
//! Registers (offset from base; DLAB = LCR bit 7):
//!
//! | off | read               | write          |
//! |-----|--------------------|----------------|
//! | 0   | RBR (DLAB: DLL)    | THR (DLAB: DLL)|
//! | 1   | IER (DLAB: DLM)    | IER (DLAB: DLM)|
//! | 2   | IIR                | FCR            |
//! | 3   | LCR                | LCR            |
//! | 4   | MCR                | MCR            |
//! | 5   | LSR                | — (ignored)    |
//! | 6   | MSR                | — (ignored)    |
//! | 7   | SCR                | SCR            |
//!
//! Model choices:
//! * Transmit is instantaneous: a THR write goes straight to the host
//!   (`CharSink::Serial(index)`), or into the RX FIFO in loopback mode, so THRE and TEMT
//!   always read 1. Every THR write re-arms the THRE interrupt (the byte moved on at
//!   once), as a real 16550 does when its shift register is idle.
//! * THRE interrupt: armed when IER.ETBEI goes 0→1 (the THR is always empty) and after
//!   every THR write; cleared by an IIR read that reports it, or by clearing ETBEI. This
//!   is what Linux's 8250 start-up probes for (its `UART_BUG_THRE` / `UART_BUG_TXEN`
//!   tests) and what its TX path relies on.
//! * There is no per-UART timer, so the character-timeout condition is taken to be met
//!   as soon as data below the trigger level sits in the FIFO: IIR reports 0x0C (timeout)
//!   below the trigger level and 0x04 at or above it. Drivers treat both the same, and
//!   no received byte can get stuck unreported.
//! * Host input ([`Uart16550::receive`]) never overruns: it takes what fits (16 bytes with
//!   FIFOs on, 1 without) and the host retries the rest. Only loopback transmits can
//!   overrun (LSR.OE), as on hardware. In loopback the serial input is disconnected, so
//!   `receive` accepts nothing.
//! * Modem inputs when not in loopback: CTS, DSR and DCD asserted, RI clear (a null-modem
//!   link that is always up). In loopback they follow RTS, DTR, OUT1, OUT2.
//! * The interrupt line is gated by MCR.OUT2, as on PC serial cards (Linux sets OUT2 when
//!   it opens a port). The gate follows the register bit in loopback too, so guests can
//!   run interrupt-driven loopback self tests.
//! * Parity/framing errors and break are not generated; LSR bits 2-4 and 7 read 0.
use crate::platform::CharSink;
use crate::{Platform, PortIo, Width, snapshot::*};

/// RX FIFO depth of a 16550A.
pub const FIFO_SIZE: usize = 16;

// Register offsets.
const RBR_THR: u16 = 0;
const IER: u16 = 1;
const IIR_FCR: u16 = 2;
const LCR: u16 = 3;
const MCR: u16 = 4;
const LSR: u16 = 5;
const MSR: u16 = 6;
const SCR: u16 = 7;

// IER bits.
const IER_RDI: u8 = 0x01;
const IER_THRI: u8 = 0x02;
const IER_RLSI: u8 = 0x04;
const IER_MSI: u8 = 0x08;
const IER_MASK: u8 = 0x0f;

// IIR values.
const IIR_NO_INT: u8 = 0x01;
const IIR_MSI: u8 = 0x00;
const IIR_THRI: u8 = 0x02;
const IIR_RDI: u8 = 0x04;
const IIR_RLSI: u8 = 0x06;
const IIR_RX_TIMEOUT: u8 = 0x0c;
const IIR_FIFO_ENABLED: u8 = 0xc0;

// FCR bits.
const FCR_ENABLE: u8 = 0x01;
const FCR_CLEAR_RX: u8 = 0x02;
const FCR_DMA: u8 = 0x08;
const FCR_TRIGGER: u8 = 0xc0;
/// FCR bits the UART remembers (the clear bits self-clear; bits 4-5 are reserved and
/// the 64-byte-FIFO bit 5 of a 16750 does not exist here, so IIR bit 5 reads 0).
const FCR_STORED: u8 = FCR_ENABLE | FCR_DMA | FCR_TRIGGER;

// LCR bits.
const LCR_DLAB: u8 = 0x80;

// MCR bits.
const MCR_DTR: u8 = 0x01;
const MCR_RTS: u8 = 0x02;
const MCR_OUT1: u8 = 0x04;
const MCR_OUT2: u8 = 0x08;
const MCR_LOOP: u8 = 0x10;
const MCR_MASK: u8 = 0x1f;

// LSR bits.
const LSR_DR: u8 = 0x01;
const LSR_OE: u8 = 0x02;
const LSR_THRE: u8 = 0x20;
const LSR_TEMT: u8 = 0x40;

// MSR bits.
const MSR_DCTS: u8 = 0x01;
const MSR_DDSR: u8 = 0x02;
const MSR_TERI: u8 = 0x04;
const MSR_DDCD: u8 = 0x08;
const MSR_DELTAS: u8 = 0x0f;
const MSR_CTS: u8 = 0x10;
const MSR_DSR: u8 = 0x20;
const MSR_RI: u8 = 0x40;
const MSR_DCD: u8 = 0x80;
/// Modem inputs outside loopback: the line is up and the peer ready.
const MSR_EXTERNAL: u8 = MSR_CTS | MSR_DSR | MSR_DCD;

#[derive(Clone, Debug)]
pub struct Uart16550 {
    index: u8,
    base: u16,
    irq: u8,
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    dll: u8,
    dlm: u8,
    /// FIFO control as last written, masked with `FCR_STORED`; 0 when FIFOs are off.
    fcr: u8,
    /// Receive FIFO as a ring: `rx_len` bytes starting at `rx_head`.
    rx: [u8; FIFO_SIZE],
    rx_head: u8,
    rx_len: u8,
    /// LSR.OE, cleared by reading LSR.
    overrun: bool,
    /// MSR delta bits 0-3, cleared by reading MSR.
    msr_delta: u8,
    /// A THRE interrupt is armed (see the module docs).
    thr_ipending: bool,
    /// The level last driven on `irq` (derived: recomputed on load, not saved).
    irq_level: bool,
}

impl Uart16550 {
    pub fn new(index: u8, base: u16, irq: u8) -> Self {
        Self {
            index,
            base,
            irq,
            ier: 0,
            lcr: 0,
            mcr: 0,
            scr: 0,
            // 9600 baud with the PC's 1.8432 MHz clock; firmware reprograms it anyway.
            dll: 0x0c,
            dlm: 0,
            fcr: 0,
            rx: [0; FIFO_SIZE],
            rx_head: 0,
            rx_len: 0,
            overrun: false,
            msr_delta: 0,
            thr_ipending: false,
            irq_level: false,
        }
    }
    pub fn base(&self) -> u16 {
        self.base
    }
    /// ISA IRQ this UART drives.
    pub fn irq(&self) -> u8 {
        self.irq
    }
    /// Index of the UART (0 = COM1), also its `CharSink::Serial` index.
    pub fn index(&self) -> u8 {
        self.index
    }
    /// Current divisor latch (DLM:DLL); the baud rate is 115200 / divisor.
    pub fn divisor(&self) -> u16 {
        u16::from_le_bytes([self.dll, self.dlm])
    }
    /// Whether the IRQ line is asserted.
    pub fn irq_level(&self) -> bool {
        self.irq_level
    }
    /// Drive the IRQ line to the level the registers imply, unconditionally. For use after
    /// a restore, when the platform's view of the line may not match the device's.
    pub fn sync_irq(&mut self, p: &mut dyn Platform) {
        self.irq_level = self.line();
        p.set_irq(self.irq as u32, self.irq_level);
    }

    /// Bytes from the host side (keyboard/pty) into the receive FIFO; returns how many fit.
    pub fn receive(&mut self, p: &mut dyn Platform, bytes: &[u8]) -> usize {
        if self.mcr & MCR_LOOP != 0 {
            // The serial input is disconnected in loopback mode.
            return 0;
        }
        let room = self.rx_capacity().saturating_sub(self.rx_len as usize);
        let n = bytes.len().min(room);
        for &b in bytes.iter().take(n) {
            self.rx_push(b);
        }
        if n > 0 {
            self.update_irq(p);
        }
        n
    }

    fn fifo_enabled(&self) -> bool {
        self.fcr & FCR_ENABLE != 0
    }

    /// Receive holding capacity: the FIFO, or the single RBR in 16450 mode.
    fn rx_capacity(&self) -> usize {
        if self.fifo_enabled() { FIFO_SIZE } else { 1 }
    }

    fn rx_trigger(&self) -> u8 {
        match self.fcr >> 6 {
            0 => 1,
            1 => 4,
            2 => 8,
            _ => 14,
        }
    }

    /// Append a byte if there is room; returns false (and changes nothing) if full.
    fn rx_push(&mut self, b: u8) -> bool {
        if self.rx_len as usize >= self.rx_capacity() {
            return false;
        }
        let tail = (self.rx_head as usize + self.rx_len as usize) % FIFO_SIZE;
        if let Some(slot) = self.rx.get_mut(tail) {
            *slot = b;
        }
        self.rx_len += 1;
        true
    }

    fn rx_pop(&mut self) -> Option<u8> {
        if self.rx_len == 0 {
            return None;
        }
        let b = self.rx.get(self.rx_head as usize % FIFO_SIZE).copied();
        self.rx_head = ((self.rx_head as usize + 1) % FIFO_SIZE) as u8;
        self.rx_len -= 1;
        b
    }

    fn rx_clear(&mut self) {
        self.rx = [0; FIFO_SIZE];
        self.rx_head = 0;
        self.rx_len = 0;
    }

    /// A byte arriving on the (looped-back) serial input: overruns when full.
    fn rx_from_line(&mut self, b: u8) {
        if self.rx_push(b) {
            return;
        }
        self.overrun = true;
        if !self.fifo_enabled() {
            // 16450 mode: the new character overwrites the unread one in RBR.
            let head = self.rx_head as usize % FIFO_SIZE;
            if let Some(slot) = self.rx.get_mut(head) {
                *slot = b;
            }
        }
        // FIFO mode: the character in the shift register is lost, the FIFO is kept.
    }

    /// Modem status inputs (MSR bits 4-7).
    fn modem_lines(&self) -> u8 {
        if self.mcr & MCR_LOOP == 0 {
            return MSR_EXTERNAL;
        }
        let m = self.mcr;
        let mut lines = 0;
        if m & MCR_RTS != 0 {
            lines |= MSR_CTS;
        }
        if m & MCR_DTR != 0 {
            lines |= MSR_DSR;
        }
        if m & MCR_OUT1 != 0 {
            lines |= MSR_RI;
        }
        if m & MCR_OUT2 != 0 {
            lines |= MSR_DCD;
        }
        lines
    }

    fn lsr(&self) -> u8 {
        let mut v = LSR_THRE | LSR_TEMT;
        if self.rx_len > 0 {
            v |= LSR_DR;
        }
        if self.overrun {
            v |= LSR_OE;
        }
        v
    }

    /// The highest-priority pending interrupt, as IIR bits 0-3.
    fn pending(&self) -> u8 {
        if self.ier & IER_RLSI != 0 && self.overrun {
            IIR_RLSI
        } else if self.ier & IER_RDI != 0 && self.rx_len > 0 {
            if self.fifo_enabled() && self.rx_len < self.rx_trigger() {
                IIR_RX_TIMEOUT
            } else {
                IIR_RDI
            }
        } else if self.ier & IER_THRI != 0 && self.thr_ipending {
            IIR_THRI
        } else if self.ier & IER_MSI != 0 && self.msr_delta != 0 {
            IIR_MSI
        } else {
            IIR_NO_INT
        }
    }

    /// The level the IRQ pin should have: an interrupt pending and OUT2 enabling the
    /// PC's interrupt buffer.
    fn line(&self) -> bool {
        self.pending() != IIR_NO_INT && self.mcr & MCR_OUT2 != 0
    }

    fn update_irq(&mut self, p: &mut dyn Platform) {
        let level = self.line();
        if level != self.irq_level {
            self.irq_level = level;
            p.set_irq(self.irq as u32, level);
        }
    }

    fn read_reg(&mut self, p: &mut dyn Platform, off: u16) -> u8 {
        let dlab = self.lcr & LCR_DLAB != 0;
        match off {
            RBR_THR if dlab => self.dll,
            RBR_THR => {
                let b = self.rx_pop().unwrap_or(0);
                self.update_irq(p);
                b
            }
            IER if dlab => self.dlm,
            IER => self.ier,
            IIR_FCR => {
                let id = self.pending();
                if id == IIR_THRI {
                    // Reading IIR while it reports THRE acknowledges it.
                    self.thr_ipending = false;
                    self.update_irq(p);
                }
                let fifo = if self.fifo_enabled() {
                    IIR_FIFO_ENABLED
                } else {
                    0
                };
                id | fifo
            }
            LCR => self.lcr,
            MCR => self.mcr,
            LSR => {
                let v = self.lsr();
                self.overrun = false;
                self.update_irq(p);
                v
            }
            MSR => {
                let v = self.modem_lines() | self.msr_delta;
                self.msr_delta = 0;
                self.update_irq(p);
                v
            }
            SCR => self.scr,
            _ => 0xff,
        }
    }

    fn write_reg(&mut self, p: &mut dyn Platform, off: u16, v: u8) {
        let dlab = self.lcr & LCR_DLAB != 0;
        match off {
            RBR_THR if dlab => self.dll = v,
            RBR_THR => {
                if self.mcr & MCR_LOOP != 0 {
                    self.rx_from_line(v);
                } else {
                    p.char_out(CharSink::Serial(self.index), &[v]);
                }
                // The byte left THR at once: THR is empty again, which re-arms THRE
                // (an interrupt source only while ETBEI is enabled).
                self.thr_ipending = self.ier & IER_THRI != 0;
            }
            IER if dlab => self.dlm = v,
            IER => {
                let new = v & IER_MASK;
                let rising = new & !self.ier;
                self.ier = new;
                if rising & IER_THRI != 0 {
                    // Enabling ETBEI with THR empty raises THRE immediately.
                    self.thr_ipending = true;
                }
                if new & IER_THRI == 0 {
                    self.thr_ipending = false;
                }
            }
            IIR_FCR => self.write_fcr(v),
            LCR => self.lcr = v,
            MCR => {
                let before = self.modem_lines();
                self.mcr = v & MCR_MASK;
                let after = self.modem_lines();
                let changed = before ^ after;
                if changed & MSR_CTS != 0 {
                    self.msr_delta |= MSR_DCTS;
                }
                if changed & MSR_DSR != 0 {
                    self.msr_delta |= MSR_DDSR;
                }
                if changed & MSR_DCD != 0 {
                    self.msr_delta |= MSR_DDCD;
                }
                if before & MSR_RI != 0 && after & MSR_RI == 0 {
                    self.msr_delta |= MSR_TERI;
                }
            }
            // LSR and MSR are read-only (their factory-test writes are not emulated).
            LSR | MSR => {}
            SCR => self.scr = v,
            _ => {}
        }
        self.update_irq(p);
    }

    fn write_fcr(&mut self, v: u8) {
        let enable = v & FCR_ENABLE;
        if enable != self.fcr & FCR_ENABLE {
            // Switching between 16450 and FIFO mode resets the FIFOs.
            self.rx_clear();
        }
        if enable == 0 {
            // With FCR0 clear the other bits cannot be programmed.
            self.fcr = 0;
            return;
        }
        if v & FCR_CLEAR_RX != 0 {
            self.rx_clear();
        }
        // FCR bit 2 (clear TX FIFO) has nothing to clear: transmit is instantaneous.
        self.fcr = v & FCR_STORED;
    }
}

impl PortIo for Uart16550 {
    /// Byte registers: a wide access is split into byte cycles on consecutive ports, as
    /// the ISA bus does; lanes beyond the UART's 8 ports float high.
    fn pio_read(&mut self, p: &mut dyn Platform, port: u16, w: Width) -> u32 {
        let mut v = 0u32;
        for i in 0..w.bytes() {
            let off = port.wrapping_sub(self.base).wrapping_add(i as u16);
            let b = if off < 8 { self.read_reg(p, off) } else { 0xff };
            v |= (b as u32) << (8 * i);
        }
        v
    }

    fn pio_write(&mut self, p: &mut dyn Platform, port: u16, w: Width, v: u32) {
        for i in 0..w.bytes() {
            let off = port.wrapping_sub(self.base).wrapping_add(i as u16);
            if off < 8 {
                self.write_reg(p, off, (v >> (8 * i)) as u8);
            }
        }
    }
}

impl Snapshot for Uart16550 {
    const NAME: &'static str = "uart16550";
    const VERSION: u16 = 1;

    // v1 body (19 + FIFO_SIZE bytes):
    //   ier, lcr, mcr, scr, dll, dlm, fcr, msr_delta   (u8 each)
    //   overrun, thr_ipending                          (bool each)
    //   rx_len (u8), rx FIFO contents in order, zero padded to FIFO_SIZE bytes.
    // Index, base and IRQ are machine configuration, not state; the IRQ level is derived.
    fn save(&self, w: &mut RecordWriter) {
        w.u8(self.ier);
        w.u8(self.lcr);
        w.u8(self.mcr);
        w.u8(self.scr);
        w.u8(self.dll);
        w.u8(self.dlm);
        w.u8(self.fcr);
        w.u8(self.msr_delta);
        w.bool(self.overrun);
        w.bool(self.thr_ipending);
        w.u8(self.rx_len);
        let mut fifo = [0u8; FIFO_SIZE];
        for (i, slot) in fifo.iter_mut().enumerate().take(self.rx_len as usize) {
            *slot = self.rx[(self.rx_head as usize + i) % FIFO_SIZE];
        }
        w.bytes(&fifo);
    }

    fn load(&mut self, _v: u16, r: &mut RecordReader<'_>) -> Result<(), LoadError> {
        let bad = |field| LoadError::Invalid {
            name: Self::NAME,
            field,
        };
        let ier = r.u8()?;
        let lcr = r.u8()?;
        let mcr = r.u8()?;
        let scr = r.u8()?;
        let dll = r.u8()?;
        let dlm = r.u8()?;
        let fcr = r.u8()?;
        let msr_delta = r.u8()?;
        let overrun = r.bool(Self::NAME, "overrun")?;
        let thr_ipending = r.bool(Self::NAME, "thr_ipending")?;
        let rx_len = r.u8()?;
        let mut fifo = [0u8; FIFO_SIZE];
        r.bytes(&mut fifo)?;

        if ier & !IER_MASK != 0 {
            return Err(bad("ier"));
        }
        if mcr & !MCR_MASK != 0 {
            return Err(bad("mcr"));
        }
        if fcr & !FCR_STORED != 0 || (fcr & FCR_ENABLE == 0 && fcr != 0) {
            return Err(bad("fcr"));
        }
        if msr_delta & !MSR_DELTAS != 0 {
            return Err(bad("msr_delta"));
        }
        let capacity = if fcr & FCR_ENABLE != 0 { FIFO_SIZE } else { 1 };
        if rx_len as usize > capacity {
            return Err(bad("rx_len"));
        }
        if fifo.iter().skip(rx_len as usize).any(|&b| b != 0) {
            return Err(bad("rx_fifo"));
        }
        if thr_ipending && ier & IER_THRI == 0 {
            // Disabling ETBEI disarms THRE; an armed THRE with it off never happens.
            return Err(bad("thr_ipending"));
        }

        self.ier = ier;
        self.lcr = lcr;
        self.mcr = mcr;
        self.scr = scr;
        self.dll = dll;
        self.dlm = dlm;
        self.fcr = fcr;
        self.msr_delta = msr_delta;
        self.overrun = overrun;
        self.thr_ipending = thr_ipending;
        self.rx = fifo;
        self.rx_head = 0;
        self.rx_len = rx_len;
        self.irq_level = self.line();
        Ok(())
    }
}

crate::snapshot_tests!(
    uart16550_snapshot,
    Uart16550,
    {
        let mut p = crate::testing::MockPlatform::new();
        let mut u = Uart16550::new(0, 0x3f8, 4);
        // 115200 8N1, FIFO on with trigger 8, OUT2 + RTS + DTR, RX/THRE/MSI enabled,
        // a few bytes waiting and a modem status change pending.
        u.pio_write(&mut p, 0x3fb, Width::B1, 0x83);
        u.pio_write(&mut p, 0x3f8, Width::B1, 0x01);
        u.pio_write(&mut p, 0x3f9, Width::B1, 0x00);
        u.pio_write(&mut p, 0x3fb, Width::B1, 0x03);
        u.pio_write(&mut p, 0x3fa, Width::B1, 0x81);
        u.pio_write(&mut p, 0x3fc, Width::B1, 0x1b);
        u.pio_write(&mut p, 0x3f8, Width::B1, 0x55);
        u.pio_write(&mut p, 0x3f8, Width::B1, 0xaa);
        u.pio_write(&mut p, 0x3fc, Width::B1, 0x0b);
        u.pio_write(&mut p, 0x3f9, Width::B1, 0x0b);
        u.pio_write(&mut p, 0x3ff, Width::B1, 0x5a);
        u.receive(&mut p, b"hi");
        u.pio_read(&mut p, 0x3f8, Width::B1);
        u
    },
    Uart16550::new(0, 0x3f8, 4)
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MockPlatform;
    use alloc::vec::Vec;

    const BASE: u16 = 0x3f8;
    const IRQ: u32 = 4;

    fn setup() -> (Uart16550, MockPlatform) {
        (Uart16550::new(0, BASE, IRQ as u8), MockPlatform::new())
    }

    fn rd(u: &mut Uart16550, p: &mut MockPlatform, off: u16) -> u8 {
        u.pio_read(p, BASE + off, Width::B1) as u8
    }

    fn wr(u: &mut Uart16550, p: &mut MockPlatform, off: u16, v: u8) {
        u.pio_write(p, BASE + off, Width::B1, v as u32)
    }

    /// Linux 8250 autoconfig(), step by step, for a port at boot.
    #[test]
    fn linux_autoconfig_detects_a_16550a() {
        let (mut u, mut p) = setup();
        // IER existence test: 0 then 0x0f must read back (low nibble).
        let saved_ier = rd(&mut u, &mut p, 1);
        wr(&mut u, &mut p, 1, 0);
        assert_eq!(rd(&mut u, &mut p, 1) & 0x0f, 0);
        wr(&mut u, &mut p, 1, 0x0f);
        assert_eq!(rd(&mut u, &mut p, 1) & 0x0f, 0x0f);
        wr(&mut u, &mut p, 1, saved_ier);

        let save_mcr = rd(&mut u, &mut p, 4);
        let save_lcr = rd(&mut u, &mut p, 3);
        // Loopback test: LOOP | OUT2 | RTS must show DCD | CTS.
        wr(&mut u, &mut p, 4, 0x10 | 0x0a);
        assert_eq!(rd(&mut u, &mut p, 6) & 0xf0, 0x90);
        wr(&mut u, &mut p, 4, save_mcr);

        // EFR clear attempt (LCR=0xbf makes offset 2 the FCR on a 16550A), then FIFO
        // detection through IIR bits 6-7.
        wr(&mut u, &mut p, 3, 0xbf);
        wr(&mut u, &mut p, 2, 0);
        wr(&mut u, &mut p, 3, 0);
        wr(&mut u, &mut p, 2, 0x01);
        assert_eq!(rd(&mut u, &mut p, 2) >> 6, 3, "16550A FIFO bits");

        // autoconfig_16550a: no EFR with DLAB set (reads IIR, which is nonzero) ...
        wr(&mut u, &mut p, 3, 0x80);
        assert_ne!(rd(&mut u, &mut p, 2), 0);
        wr(&mut u, &mut p, 3, 0xbf);
        assert_ne!(rd(&mut u, &mut p, 2), 0);
        // ... not a NatSemi part (offset 2 under LCR=0xe0 does not track MCR.LOOP) ...
        wr(&mut u, &mut p, 3, 0);
        let mcr = rd(&mut u, &mut p, 4);
        wr(&mut u, &mut p, 3, 0xe0);
        let excr1 = rd(&mut u, &mut p, 2);
        assert_eq!((excr1 ^ mcr) & 0x10, 0);
        wr(&mut u, &mut p, 3, 0);
        wr(&mut u, &mut p, 4, mcr ^ 0x10);
        wr(&mut u, &mut p, 3, 0xe0);
        let excr1 = rd(&mut u, &mut p, 2);
        wr(&mut u, &mut p, 3, 0);
        wr(&mut u, &mut p, 4, mcr);
        assert_eq!((excr1 ^ mcr) & 0x10, 0, "must not look like a NS16550A");
        // ... not a 16750 (IIR bit 5 stays clear with FCR bit 5, DLAB on or off) ...
        wr(&mut u, &mut p, 3, 0);
        wr(&mut u, &mut p, 2, 0x21);
        let s1 = rd(&mut u, &mut p, 2) >> 5;
        wr(&mut u, &mut p, 2, 0x01);
        wr(&mut u, &mut p, 3, 0x80);
        wr(&mut u, &mut p, 2, 0x21);
        let s2 = rd(&mut u, &mut p, 2) >> 5;
        wr(&mut u, &mut p, 2, 0x01);
        wr(&mut u, &mut p, 3, 0);
        assert_eq!((s1, s2), (6, 6));
        // ... not an XScale (IER bit 6 is not writable).
        wr(&mut u, &mut p, 1, 0x40);
        assert_eq!(rd(&mut u, &mut p, 1) & 0x40, 0);
        wr(&mut u, &mut p, 1, 0);

        wr(&mut u, &mut p, 3, save_lcr);
        // Reset: clear FIFOs, read RX, IER off.
        wr(&mut u, &mut p, 4, save_mcr);
        wr(&mut u, &mut p, 2, 0x01);
        wr(&mut u, &mut p, 2, 0x07);
        wr(&mut u, &mut p, 2, 0);
        rd(&mut u, &mut p, 0);
        wr(&mut u, &mut p, 1, 0);
        assert!(p.irq_log.is_empty(), "probing must not raise the IRQ");
        assert!(p.serial_out[0].is_empty());
    }

    /// Linux size_fifo(): loopback at divisor 1, write 256 bytes, count what comes back.
    #[test]
    fn linux_size_fifo_counts_16() {
        let (mut u, mut p) = setup();
        wr(&mut u, &mut p, 2, 0x07);
        wr(&mut u, &mut p, 4, 0x10);
        wr(&mut u, &mut p, 3, 0x80);
        wr(&mut u, &mut p, 0, 1);
        wr(&mut u, &mut p, 1, 0);
        wr(&mut u, &mut p, 3, 0x03);
        for i in 0..256u32 {
            wr(&mut u, &mut p, 0, i as u8);
        }
        let mut got = Vec::new();
        while rd(&mut u, &mut p, 5) & LSR_DR != 0 && got.len() < 256 {
            got.push(rd(&mut u, &mut p, 0));
        }
        assert_eq!(got, (0..16).collect::<Vec<u8>>());
        assert!(p.serial_out[0].is_empty(), "loopback must not transmit");
    }

    /// serial8250_do_startup(): clear FIFOs, clear interrupts, THRE re-assert test, OUT2,
    /// TX-enable test.
    #[test]
    fn linux_startup_thre_tests_pass() {
        let (mut u, mut p) = setup();
        wr(&mut u, &mut p, 2, 0x01);
        wr(&mut u, &mut p, 2, 0x07);
        wr(&mut u, &mut p, 2, 0);
        rd(&mut u, &mut p, 5);
        rd(&mut u, &mut p, 0);
        rd(&mut u, &mut p, 2);
        rd(&mut u, &mut p, 6);
        assert_ne!(rd(&mut u, &mut p, 5), 0xff, "LSR safety check");

        // UART_BUG_THRE test.
        assert_ne!(rd(&mut u, &mut p, 5) & LSR_THRE, 0);
        wr(&mut u, &mut p, 1, IER_THRI);
        let iir1 = rd(&mut u, &mut p, 2);
        wr(&mut u, &mut p, 1, 0);
        wr(&mut u, &mut p, 1, IER_THRI);
        let iir = rd(&mut u, &mut p, 2);
        wr(&mut u, &mut p, 1, 0);
        assert_eq!(iir1 & 0x0f, IIR_THRI);
        assert_eq!(
            iir & 0x0f,
            IIR_THRI,
            "THRE must re-assert (no UART_BUG_THRE)"
        );

        // 8 bits, OUT2 | DTR | RTS.
        wr(&mut u, &mut p, 3, 0x03);
        wr(&mut u, &mut p, 4, 0x0b);
        // UART_BUG_TXEN test.
        wr(&mut u, &mut p, 1, IER_THRI);
        let lsr = rd(&mut u, &mut p, 5);
        let iir = rd(&mut u, &mut p, 2);
        wr(&mut u, &mut p, 1, 0);
        assert!(!(lsr & LSR_TEMT != 0 && iir & IIR_NO_INT != 0));
        assert!(!p.irq(IRQ));
    }

    /// An interrupt-driven transmit as serial8250_tx_chars() does it.
    #[test]
    fn thre_interrupt_driven_transmit() {
        let (mut u, mut p) = setup();
        wr(&mut u, &mut p, 3, 0x03);
        wr(&mut u, &mut p, 2, 0x81);
        wr(&mut u, &mut p, 4, 0x0b);
        wr(&mut u, &mut p, 1, IER_RDI | IER_RLSI);
        assert!(!p.irq(IRQ));
        // start_tx: enable THRI -> interrupt.
        wr(&mut u, &mut p, 1, IER_RDI | IER_RLSI | IER_THRI);
        assert!(p.irq(IRQ));
        let msg = b"hello, world";
        let mut sent = 0;
        for _ in 0..10 {
            let iir = rd(&mut u, &mut p, 2);
            if iir & IIR_NO_INT != 0 {
                break;
            }
            assert_eq!(iir, 0xc0 | IIR_THRI);
            assert!(!p.irq(IRQ), "IIR read acknowledged THRE");
            assert_ne!(rd(&mut u, &mut p, 5) & LSR_THRE, 0);
            for &b in msg.iter().skip(sent).take(FIFO_SIZE / 2) {
                wr(&mut u, &mut p, 0, b);
                sent += 1;
            }
            if sent == msg.len() {
                // stop_tx
                wr(&mut u, &mut p, 1, IER_RDI | IER_RLSI);
            }
        }
        assert_eq!(p.serial_out[0], msg);
        assert!(!p.irq(IRQ));
    }

    #[test]
    fn out2_gates_the_irq_line() {
        let (mut u, mut p) = setup();
        wr(&mut u, &mut p, 1, IER_THRI);
        assert!(!p.irq(IRQ), "OUT2 clear: line stays low");
        wr(&mut u, &mut p, 4, MCR_OUT2);
        assert!(p.irq(IRQ));
        wr(&mut u, &mut p, 4, 0);
        assert!(!p.irq(IRQ));
        // Only changes are driven.
        assert_eq!(p.irq_log, [(IRQ, true), (IRQ, false)]);
    }

    #[test]
    fn receive_fifo_trigger_and_timeout() {
        let (mut u, mut p) = setup();
        wr(&mut u, &mut p, 2, 0x81); // FIFO, trigger 8
        wr(&mut u, &mut p, 4, 0x0b);
        wr(&mut u, &mut p, 1, IER_RDI);
        assert_eq!(u.receive(&mut p, b"abc"), 3);
        assert!(p.irq(IRQ));
        assert_eq!(rd(&mut u, &mut p, 2), 0xc0 | IIR_RX_TIMEOUT);
        assert_eq!(u.receive(&mut p, b"defgh"), 5);
        assert_eq!(rd(&mut u, &mut p, 2), 0xc0 | IIR_RDI);
        // Fill beyond the FIFO: the host is told how much fit.
        assert_eq!(u.receive(&mut p, &[b'x'; 20]), 8);
        assert_eq!(u.receive(&mut p, b"y"), 0);
        assert_eq!(rd(&mut u, &mut p, 5) & (LSR_DR | LSR_OE), LSR_DR);
        let mut got = Vec::new();
        while rd(&mut u, &mut p, 5) & LSR_DR != 0 {
            got.push(rd(&mut u, &mut p, 0));
        }
        assert_eq!(&got[..8], b"abcdefgh");
        assert_eq!(got.len(), 16);
        assert_eq!(rd(&mut u, &mut p, 2), 0xc1);
        assert!(!p.irq(IRQ));
    }

    #[test]
    fn non_fifo_mode_holds_one_byte() {
        let (mut u, mut p) = setup();
        wr(&mut u, &mut p, 4, 0x08);
        wr(&mut u, &mut p, 1, IER_RDI);
        assert_eq!(u.receive(&mut p, b"ab"), 1);
        assert_eq!(rd(&mut u, &mut p, 2), IIR_RDI);
        assert_eq!(rd(&mut u, &mut p, 0), b'a');
        assert!(!p.irq(IRQ));
        // Loopback overrun in 16450 mode: the new byte replaces the old one.
        wr(&mut u, &mut p, 4, 0x18);
        wr(&mut u, &mut p, 0, 1);
        wr(&mut u, &mut p, 0, 2);
        wr(&mut u, &mut p, 1, IER_RDI | IER_RLSI);
        assert_eq!(rd(&mut u, &mut p, 2), IIR_RLSI);
        assert_eq!(rd(&mut u, &mut p, 5) & (LSR_DR | LSR_OE), LSR_DR | LSR_OE);
        assert_eq!(rd(&mut u, &mut p, 5) & LSR_OE, 0, "OE clears on read");
        assert_eq!(rd(&mut u, &mut p, 2), IIR_RDI);
        assert_eq!(rd(&mut u, &mut p, 0), 2);
    }

    #[test]
    fn interrupt_priorities() {
        let (mut u, mut p) = setup();
        wr(&mut u, &mut p, 2, 0x01);
        wr(&mut u, &mut p, 4, MCR_LOOP | MCR_OUT2);
        // Overrun the FIFO through loopback, with modem deltas pending too.
        for i in 0..17u8 {
            wr(&mut u, &mut p, 0, i);
        }
        wr(&mut u, &mut p, 4, MCR_LOOP | MCR_OUT2 | MCR_RTS);
        wr(&mut u, &mut p, 1, IER_MASK);
        assert_eq!(rd(&mut u, &mut p, 2), 0xc0 | IIR_RLSI);
        rd(&mut u, &mut p, 5);
        assert_eq!(rd(&mut u, &mut p, 2), 0xc0 | IIR_RDI);
        for _ in 0..16 {
            rd(&mut u, &mut p, 0);
        }
        assert_eq!(rd(&mut u, &mut p, 2), 0xc0 | IIR_THRI);
        let msr = rd(&mut u, &mut p, 2);
        assert_eq!(msr, 0xc0 | IIR_MSI);
        let msr = rd(&mut u, &mut p, 6);
        assert_eq!(msr & 0xf0, MSR_CTS | MSR_DCD);
        // Entering loopback dropped DSR (DCD stayed up via OUT2); RTS then raised CTS.
        assert_eq!(msr & MSR_DELTAS, MSR_DCTS | MSR_DDSR);
        assert_eq!(rd(&mut u, &mut p, 2), 0xc1);
        assert!(!p.irq(IRQ));
    }

    #[test]
    fn loopback_modem_lines_and_ri_trailing_edge() {
        let (mut u, mut p) = setup();
        assert_eq!(rd(&mut u, &mut p, 6), MSR_EXTERNAL);
        wr(&mut u, &mut p, 4, MCR_LOOP | MCR_OUT1 | MCR_DTR);
        rd(&mut u, &mut p, 6);
        wr(&mut u, &mut p, 4, MCR_LOOP | MCR_DTR);
        assert_eq!(rd(&mut u, &mut p, 6), MSR_DSR | MSR_TERI);
        assert_eq!(rd(&mut u, &mut p, 6), MSR_DSR);
        assert_eq!(u.receive(&mut p, b"x"), 0, "input disconnected in loopback");
        wr(&mut u, &mut p, 4, 0);
        assert_eq!(rd(&mut u, &mut p, 6) & 0xf0, MSR_EXTERNAL);
    }

    #[test]
    fn divisor_latch_and_scratch() {
        let (mut u, mut p) = setup();
        wr(&mut u, &mut p, 3, 0x83);
        wr(&mut u, &mut p, 0, 0x01);
        wr(&mut u, &mut p, 1, 0x02);
        assert_eq!(rd(&mut u, &mut p, 0), 0x01);
        assert_eq!(rd(&mut u, &mut p, 1), 0x02);
        wr(&mut u, &mut p, 3, 0x03);
        assert_eq!(u.divisor(), 0x0201);
        assert_eq!(rd(&mut u, &mut p, 1), 0, "IER untouched by DLM writes");
        assert!(p.serial_out[0].is_empty(), "DLL writes are not transmitted");
        wr(&mut u, &mut p, 7, 0xa5);
        assert_eq!(rd(&mut u, &mut p, 7), 0xa5);
        // A word access covers two consecutive registers.
        u.pio_write(&mut p, BASE + 6, Width::B2, 0x5a00);
        assert_eq!(rd(&mut u, &mut p, 7), 0x5a);
        assert_eq!(u.pio_read(&mut p, BASE + 7, Width::B4), 0xffff_ff5a);
    }

    #[test]
    fn fifo_enable_toggle_clears_rx() {
        let (mut u, mut p) = setup();
        wr(&mut u, &mut p, 2, 0x01);
        u.receive(&mut p, b"abc");
        wr(&mut u, &mut p, 2, 0xc1); // trigger change only: data kept
        assert_eq!(rd(&mut u, &mut p, 5) & LSR_DR, LSR_DR);
        wr(&mut u, &mut p, 2, 0x00);
        assert_eq!(rd(&mut u, &mut p, 5) & LSR_DR, 0);
        assert_eq!(rd(&mut u, &mut p, 2), 0x01);
    }

    #[test]
    fn hammer_every_register() {
        let mut p = MockPlatform::new();
        let mut u = Uart16550::new(1, 0x2f8, 3);
        let mut seed = 0xdead_beef_cafe_f00du64;
        for i in 0..200_000u32 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let port = 0x2f8 + (seed % 8) as u16;
            let w = [Width::B1, Width::B2, Width::B4][((seed >> 8) % 3) as usize];
            let v = (seed >> 16) as u32;
            match (seed >> 48) % 5 {
                0 | 1 => u.pio_write(&mut p, port, w, v),
                2 | 3 => {
                    let r = u.pio_read(&mut p, port, w);
                    assert_eq!(r & !(w.mask() as u32), 0);
                }
                _ => {
                    let n = (seed >> 40) as usize % 40;
                    let buf = [(seed >> 24) as u8; 40];
                    assert!(u.receive(&mut p, &buf[..n]) <= FIFO_SIZE);
                }
            }
            assert!(u.rx_len as usize <= u.rx_capacity());
            assert!((u.rx_head as usize) < FIFO_SIZE);
            assert_eq!(u.ier & !IER_MASK, 0);
            assert_eq!(u.irq_level, u.line());
            assert_eq!(p.irq(3), u.irq_level);
            if i % 1000 == 0 {
                let rec = save_record(&u, 1);
                let mut v = Uart16550::new(1, 0x2f8, 3);
                load_record(&mut v, &rec).expect("live state always loads");
                assert_eq!(save_record(&v, 1), rec);
            }
        }
    }
}
