//! COM1 (16550 at 0x3f8): the firmware's console.

use super::io::{inb, outb};
use core::fmt;

const BASE: u16 = 0x3f8;
const THR: u16 = BASE;
const DLL: u16 = BASE;
const IER: u16 = BASE + 1;
const DLM: u16 = BASE + 1;
const FCR: u16 = BASE + 2;
const LCR: u16 = BASE + 3;
const MCR: u16 = BASE + 4;
const LSR: u16 = BASE + 5;
const LSR_THRE: u8 = 1 << 5;
/// Bounded wait for THRE: an absent UART reads 0xff (THRE set), a present emulated one
/// is always ready; never hang on a broken one.
const SPIN: u32 = 10_000;

/// 115200 8N1, FIFOs on and cleared, DTR/RTS, no interrupts.
pub fn init() {
    outb(LCR, 0x80);
    outb(DLL, 1);
    outb(DLM, 0);
    outb(LCR, 0x03);
    outb(IER, 0);
    outb(FCR, 0x07);
    outb(MCR, 0x03);
}

pub fn put(b: u8) {
    for _ in 0..SPIN {
        if inb(LSR) & LSR_THRE != 0 {
            break;
        }
    }
    outb(THR, b);
}

/// `core::fmt` sink for COM1.
pub struct Com1;

impl fmt::Write for Com1 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            put(b);
        }
        Ok(())
    }
}

/// Prints one line (`\n`-terminated) to COM1.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = writeln!($crate::rt::serial::Com1, $($arg)*);
    }};
}
