//! i8042 PS/2 controller (data port 0x60, status/command port 0x64) with a minimal PS/2
//! keyboard and a plain PS/2 mouse behind it.
//!
//! Controller model:
//! * Commands and data bytes are processed as they are written, so IBF always reads 0.
//! * Output: a one-byte output buffer (status OBF, AUX OBF for mouse-lane bytes) fed from
//!   one bounded queue shared by the controller, the keyboard and the mouse. Bytes a
//!   device sends while its interface is disabled (command byte bits 4/5, 0xAD/0xA7) wait
//!   in the queue — other bytes may pass them — and move up once it is re-enabled;
//!   controller replies (0x20, 0xAA, 0xD0, ...) and the 0xD2/0xD3 echoes always get
//!   through. The buffer plus the queue hold at most [`OUTPUT_CAPACITY`] bytes, fewer
//!   than the 16 that SeaBIOS's and Linux's flush loops read before they declare the
//!   controller dead; bytes that do not fit are dropped. Host keystrokes stop being
//!   accepted a few bytes earlier so that a flooded queue still has room for replies.
//! * IRQ1 / IRQ12 are levels: high while the output buffer holds a byte of that lane and
//!   the command byte enables that interrupt. A read of 0x60 drops the line; if another
//!   byte moves up, the line rises again, giving edge-triggered PICs a fresh edge.
//! * Output port (0xD0/0xD1): bit 0 clear resets the machine, bit 1 gates A20. Pulse
//!   commands 0xF0-0xFF reset the machine when they pulse bit 0 (0xFE).
//! * Translation (command byte bit 6): keyboard bytes are converted from scancode set 2
//!   to set 1 with the 8042's table, 0xF0 becoming the break bit of the next byte. This
//!   happens as the keyboard's bytes enter the controller.
//!
//! Keyboard: [`I8042::key_input`] takes the bytes a scancode-set-2 keyboard puts on the
//! wire (make `1C`, break `F0 1C`, `E0` prefixes). The keyboard answers reset (0xFF:
//! FA AA), identify (0xF2: FA AB 83, so AB 41 once translated), echo, LEDs, typematic,
//! scancode set, enable/disable/defaults; unknown commands get 0xFE (resend).
//!
//! Mouse: a plain three-byte PS/2 mouse (ID 0): reset answers FA AA 00, status request
//! FA + three status bytes, unknown commands 0xFE. That is what psmouse expects of a
//! generic mouse — every vendor probe fails quickly on a NAK or a non-matching reply —
//! and what i8042's AUX probe (loopback, 0xA9 test, AUXDIS toggling, IRQ12 via 0xD3)
//! accepts. No host mouse input exists yet, so it never streams packets.
use crate::platform::PowerRequest;
use crate::{Platform, PortIo, Width, snapshot::*};

/// Data port.
pub const PORT_DATA: u16 = 0x60;
/// Status (read) / command (write) port.
pub const PORT_STATUS: u16 = 0x64;
/// Keyboard IRQ.
pub const KBD_IRQ: u32 = 1;
/// Mouse (aux) IRQ.
pub const AUX_IRQ: u32 = 12;

/// Bytes the output buffer and queue hold together.
pub const OUTPUT_CAPACITY: usize = 15;
/// Host keystrokes are accepted only while fewer bytes than this are queued.
const HOST_KEY_LIMIT: usize = OUTPUT_CAPACITY - 4;
/// Queue slots (the output buffer is the remaining one).
const QUEUE_LEN: usize = OUTPUT_CAPACITY - 1;

// Status register.
const STR_OBF: u8 = 0x01;
const STR_SYS: u8 = 0x04;
const STR_CMD: u8 = 0x08;
/// Keyboard inhibit switch: set = not inhibited (Linux warns "Keylock active" if clear).
const STR_KEYLOCK: u8 = 0x10;
const STR_AUXDATA: u8 = 0x20;

// Command byte (controller RAM byte 0).
const CTR_KBDINT: u8 = 0x01;
const CTR_AUXINT: u8 = 0x02;
const CTR_SYS: u8 = 0x04;
const CTR_KBDDIS: u8 = 0x10;
const CTR_AUXDIS: u8 = 0x20;
const CTR_XLATE: u8 = 0x40;

// Output port.
const OUT_RESET: u8 = 0x01;
const OUT_A20: u8 = 0x02;
const OUT_KBD_OBF: u8 = 0x10;
const OUT_AUX_OBF: u8 = 0x20;

// Device replies.
const ACK: u8 = 0xfa;
const RESEND: u8 = 0xfe;
const BAT_OK: u8 = 0xaa;

// Controller commands.
const CMD_READ_RAM: u8 = 0x20; // ..=0x3f
const CMD_WRITE_RAM: u8 = 0x60; // ..=0x7f
const CMD_PASSWORD_TEST: u8 = 0xa4;
const CMD_AUX_DISABLE: u8 = 0xa7;
const CMD_AUX_ENABLE: u8 = 0xa8;
const CMD_AUX_TEST: u8 = 0xa9;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_KBD_TEST: u8 = 0xab;
const CMD_KBD_DISABLE: u8 = 0xad;
const CMD_KBD_ENABLE: u8 = 0xae;
const CMD_READ_OUTPUT: u8 = 0xd0;
const CMD_WRITE_OUTPUT: u8 = 0xd1;
const CMD_WRITE_KBD_OBUF: u8 = 0xd2;
const CMD_WRITE_AUX_OBUF: u8 = 0xd3;
const CMD_WRITE_AUX: u8 = 0xd4;
const CMD_A20_OFF: u8 = 0xdd;
const CMD_A20_ON: u8 = 0xdf;

/// Where an output byte came from; decides its lane (IRQ1/IRQ12, AUX OBF) and whether a
/// disabled interface holds it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Src {
    /// Controller reply or 0xD2 echo: keyboard lane, never held back.
    Ctrl = 0,
    /// 0xD3 echo: mouse lane, never held back.
    CtrlAux = 1,
    /// The keyboard: held back while the keyboard interface is disabled.
    Kbd = 2,
    /// The mouse: held back while the aux interface is disabled.
    Aux = 3,
}

impl Src {
    fn from_u8(v: u8) -> Option<Src> {
        match v {
            0 => Some(Src::Ctrl),
            1 => Some(Src::CtrlAux),
            2 => Some(Src::Kbd),
            3 => Some(Src::Aux),
            _ => None,
        }
    }
    fn is_aux(self) -> bool {
        matches!(self, Src::CtrlAux | Src::Aux)
    }
}

/// Scancode set 2 → set 1 translation of bytes below 0x80 (the 8042's table); above,
/// only 0x83 (F7) and 0x84 (SysRq) change.
#[rustfmt::skip]
const XLATE_LOW: [u8; 128] = [
    0xff, 0x43, 0x41, 0x3f, 0x3d, 0x3b, 0x3c, 0x58, 0x64, 0x44, 0x42, 0x40, 0x3e, 0x0f, 0x29, 0x59,
    0x65, 0x38, 0x2a, 0x70, 0x1d, 0x10, 0x02, 0x5a, 0x66, 0x71, 0x2c, 0x1f, 0x1e, 0x11, 0x03, 0x5b,
    0x67, 0x2e, 0x2d, 0x20, 0x12, 0x05, 0x04, 0x5c, 0x68, 0x39, 0x2f, 0x21, 0x14, 0x13, 0x06, 0x5d,
    0x69, 0x31, 0x30, 0x23, 0x22, 0x15, 0x07, 0x5e, 0x6a, 0x72, 0x32, 0x24, 0x16, 0x08, 0x09, 0x5f,
    0x6b, 0x33, 0x25, 0x17, 0x18, 0x0b, 0x0a, 0x60, 0x6c, 0x34, 0x35, 0x26, 0x27, 0x19, 0x0c, 0x61,
    0x6d, 0x73, 0x28, 0x74, 0x1a, 0x0d, 0x62, 0x6e, 0x3a, 0x36, 0x1c, 0x1b, 0x75, 0x2b, 0x63, 0x76,
    0x55, 0x56, 0x77, 0x78, 0x79, 0x7a, 0x0e, 0x7b, 0x7c, 0x4f, 0x7d, 0x4b, 0x47, 0x7e, 0x7f, 0x6f,
    0x52, 0x53, 0x50, 0x4c, 0x4d, 0x48, 0x01, 0x45, 0x57, 0x4e, 0x51, 0x4a, 0x37, 0x49, 0x46, 0x54,
];

fn translate(b: u8) -> u8 {
    match b {
        0x83 => 0x41,
        0x84 => 0x54,
        _ => XLATE_LOW.get(b as usize).copied().unwrap_or(b),
    }
}

// Keyboard defaults.
const KBD_DEFAULT_SET: u8 = 2;
/// 10.9 characters/s after 500 ms.
const KBD_DEFAULT_TYPEMATIC: u8 = 0x2b;

// Mouse status byte bits and defaults.
const MOUSE_REMOTE: u8 = 0x40;
const MOUSE_ENABLED: u8 = 0x20;
const MOUSE_SCALE21: u8 = 0x10;
const MOUSE_DEFAULT_RATE: u8 = 100;
const MOUSE_DEFAULT_RESOLUTION: u8 = 2;

#[derive(Clone, Debug)]
pub struct I8042 {
    // --- controller ---
    /// Internal RAM; byte 0 is the command byte (CTR).
    ram: [u8; 32],
    /// Output port (bits 4-5 are driven from the output buffer when read).
    outport: u8,
    /// A20 gate as the output port drives it (bit 1 of `outport`).
    a20: bool,
    /// Status SYS flag (set by self test, written through CTR bit 2).
    sys: bool,
    /// Last write went to the command port (status bit 3).
    last_was_cmd: bool,
    /// Controller command waiting for its data byte (0 = none).
    pending_cmd: u8,
    /// Output buffer: the byte port 0x60 returns (kept after reading), whether it is
    /// full, and its source.
    obf_byte: u8,
    obf_full: bool,
    obf_src: Src,
    /// Bytes waiting for the output buffer, oldest first.
    queue: [(u8, Src); QUEUE_LEN],
    queue_len: u8,
    /// Translation saw 0xF0: the next keyboard byte is a break code.
    xlate_break: bool,
    // --- keyboard ---
    kbd_scanning: bool,
    kbd_set: u8,
    kbd_leds: u8,
    kbd_typematic: u8,
    /// Keyboard command waiting for its argument (0xED, 0xF0, 0xF3; 0 = none).
    kbd_pending: u8,
    /// Last byte the keyboard sent (for 0xFE resend).
    kbd_last: u8,
    // --- mouse ---
    mouse_status: u8,
    mouse_resolution: u8,
    mouse_rate: u8,
    mouse_wrap: bool,
    /// Mouse command waiting for its argument (0xE8, 0xF3; 0 = none).
    mouse_pending: u8,
    mouse_last: u8,
    // --- derived (recomputed on load) ---
    irq1: bool,
    irq12: bool,
}

impl Default for I8042 {
    fn default() -> Self {
        Self::new()
    }
}

impl I8042 {
    pub fn new() -> Self {
        let mut ram = [0u8; 32];
        // What SeaBIOS leaves behind (translation on, mouse off, keyboard IRQ on), so a
        // directly booted kernel finds a BIOS-initialised controller.
        ram[0] = CTR_XLATE | CTR_AUXDIS | CTR_KBDINT;
        Self {
            ram,
            outport: 0xc0 | 0x0c | OUT_A20 | OUT_RESET,
            a20: true,
            sys: false,
            last_was_cmd: false,
            pending_cmd: 0,
            obf_byte: 0,
            obf_full: false,
            obf_src: Src::Ctrl,
            queue: [(0, Src::Ctrl); QUEUE_LEN],
            queue_len: 0,
            xlate_break: false,
            kbd_scanning: true,
            kbd_set: KBD_DEFAULT_SET,
            kbd_leds: 0,
            kbd_typematic: KBD_DEFAULT_TYPEMATIC,
            kbd_pending: 0,
            kbd_last: 0,
            mouse_status: 0,
            mouse_resolution: MOUSE_DEFAULT_RESOLUTION,
            mouse_rate: MOUSE_DEFAULT_RATE,
            mouse_wrap: false,
            mouse_pending: 0,
            mouse_last: 0,
            irq1: false,
            irq12: false,
        }
    }

    /// Gate A20 as the controller's output port drives it.
    pub fn a20(&self) -> bool {
        self.a20
    }

    /// The controller command byte.
    pub fn command_byte(&self) -> u8 {
        self.ram[0]
    }

    /// Keyboard LED state (bit 0 Scroll, 1 Num, 2 Caps Lock).
    pub fn leds(&self) -> u8 {
        self.kbd_leds
    }

    /// Scancode set the guest selected on the keyboard (1-3). [`I8042::key_input`] bytes
    /// are set 2; a front end may consult this to produce another set.
    pub fn scancode_set(&self) -> u8 {
        self.kbd_set
    }

    /// A scancode from the host keyboard (a set-2 byte as on the wire). Dropped while the
    /// keyboard has scanning disabled or the output queue is nearly full.
    pub fn key_input(&mut self, p: &mut dyn Platform, scancode: u8) {
        if !self.kbd_scanning || self.output_len() >= HOST_KEY_LIMIT {
            return;
        }
        self.kbd_send(scancode);
        self.refill(p);
    }

    /// Drive IRQ1 and IRQ12 to the levels the state implies, unconditionally (after a
    /// restore, when the platform's lines may not match).
    pub fn sync_irqs(&mut self, p: &mut dyn Platform) {
        let (k, a) = self.lines();
        self.irq1 = k;
        self.irq12 = a;
        p.set_irq(KBD_IRQ, k);
        p.set_irq(AUX_IRQ, a);
    }

    fn ctr(&self) -> u8 {
        self.ram[0]
    }

    fn output_len(&self) -> usize {
        self.queue_len as usize + self.obf_full as usize
    }

    fn enqueue(&mut self, b: u8, src: Src) {
        if self.output_len() >= OUTPUT_CAPACITY {
            return;
        }
        if let Some(slot) = self.queue.get_mut(self.queue_len as usize) {
            *slot = (b, src);
            self.queue_len += 1;
        }
    }

    fn deliverable(&self, src: Src) -> bool {
        match src {
            Src::Ctrl | Src::CtrlAux => true,
            Src::Kbd => self.ctr() & CTR_KBDDIS == 0,
            Src::Aux => self.ctr() & CTR_AUXDIS == 0,
        }
    }

    /// Move the oldest deliverable byte into an empty output buffer, then update IRQs.
    fn refill(&mut self, p: &mut dyn Platform) {
        if !self.obf_full {
            let len = (self.queue_len as usize).min(QUEUE_LEN);
            let found = self
                .queue
                .iter()
                .take(len)
                .position(|&(_, s)| self.deliverable(s));
            if let Some(i) = found {
                let (b, s) = self.queue[i];
                self.queue.copy_within(i + 1..len, i);
                self.queue[len - 1] = (0, Src::Ctrl);
                self.queue_len -= 1;
                self.obf_byte = b;
                self.obf_src = s;
                self.obf_full = true;
            }
        }
        self.update_irqs(p);
    }

    fn lines(&self) -> (bool, bool) {
        if !self.obf_full {
            return (false, false);
        }
        if self.obf_src.is_aux() {
            (false, self.ctr() & CTR_AUXINT != 0)
        } else {
            (self.ctr() & CTR_KBDINT != 0, false)
        }
    }

    fn update_irqs(&mut self, p: &mut dyn Platform) {
        let (k, a) = self.lines();
        if k != self.irq1 {
            self.irq1 = k;
            p.set_irq(KBD_IRQ, k);
        }
        if a != self.irq12 {
            self.irq12 = a;
            p.set_irq(AUX_IRQ, a);
        }
    }

    fn status(&self) -> u8 {
        let mut s = STR_KEYLOCK;
        if self.obf_full {
            s |= STR_OBF;
            if self.obf_src.is_aux() {
                s |= STR_AUXDATA;
            }
        }
        if self.sys {
            s |= STR_SYS;
        }
        if self.last_was_cmd {
            s |= STR_CMD;
        }
        s
    }

    fn read_data(&mut self, p: &mut dyn Platform) -> u8 {
        let b = self.obf_byte;
        if self.obf_full {
            self.obf_full = false;
            // Drop the line first so that a following byte makes a new edge.
            self.update_irqs(p);
            self.refill(p);
        }
        b
    }

    fn set_ctr(&mut self, v: u8) {
        self.ram[0] = v;
        self.sys = v & CTR_SYS != 0;
    }

    fn write_outport(&mut self, p: &mut dyn Platform, v: u8) {
        self.outport = v;
        self.a20 = v & OUT_A20 != 0;
        if v & OUT_RESET == 0 {
            p.power(PowerRequest::Reset);
        }
    }

    fn write_command(&mut self, p: &mut dyn Platform, cmd: u8) {
        self.last_was_cmd = true;
        // A new command abandons one still waiting for its data byte.
        self.pending_cmd = 0;
        match cmd {
            CMD_READ_RAM..=0x3f => {
                let v = self.ram[(cmd & 0x1f) as usize];
                self.enqueue(v, Src::Ctrl);
            }
            CMD_WRITE_RAM..=0x7f
            | CMD_WRITE_OUTPUT
            | CMD_WRITE_KBD_OBUF
            | CMD_WRITE_AUX_OBUF
            | CMD_WRITE_AUX => self.pending_cmd = cmd,
            CMD_PASSWORD_TEST => self.enqueue(0xf1, Src::Ctrl), // no password installed
            CMD_AUX_DISABLE => self.ram[0] |= CTR_AUXDIS,
            CMD_AUX_ENABLE => self.ram[0] &= !CTR_AUXDIS,
            CMD_AUX_TEST | CMD_KBD_TEST => self.enqueue(0x00, Src::Ctrl),
            CMD_SELF_TEST => {
                self.sys = true;
                self.enqueue(0x55, Src::Ctrl);
            }
            CMD_KBD_DISABLE => self.ram[0] |= CTR_KBDDIS,
            CMD_KBD_ENABLE => self.ram[0] &= !CTR_KBDDIS,
            CMD_READ_OUTPUT => {
                let mut v = self.outport & !(OUT_KBD_OBF | OUT_AUX_OBF);
                if self.obf_full {
                    v |= if self.obf_src.is_aux() {
                        OUT_AUX_OBF
                    } else {
                        OUT_KBD_OBF
                    };
                }
                self.enqueue(v, Src::Ctrl);
            }
            CMD_A20_OFF => self.outport &= !OUT_A20,
            CMD_A20_ON => self.outport |= OUT_A20,
            // Pulse output port lines (those whose bit is 0) for ~6 us; bit 0 is reset,
            // so 0xFE reboots. Pulses of the other lines have no effect here.
            0xf0..=0xff if cmd & OUT_RESET == 0 => p.power(PowerRequest::Reset),
            // 0xA1 version, 0xC0 input port, 0xE0 test inputs and the rest: not
            // implemented, no reply (real controllers differ widely here).
            _ => {}
        }
        self.a20 = self.outport & OUT_A20 != 0;
        self.refill(p);
    }

    fn write_data(&mut self, p: &mut dyn Platform, v: u8) {
        self.last_was_cmd = false;
        let cmd = core::mem::take(&mut self.pending_cmd);
        match cmd {
            0x60 => self.set_ctr(v),
            0x61..=0x7f => self.ram[(cmd & 0x1f) as usize] = v,
            CMD_WRITE_OUTPUT => self.write_outport(p, v),
            CMD_WRITE_KBD_OBUF => self.enqueue(v, Src::Ctrl),
            CMD_WRITE_AUX_OBUF => self.enqueue(v, Src::CtrlAux),
            CMD_WRITE_AUX => self.mouse_write(v),
            _ => {
                // Sending to the keyboard releases its clock line: the interface is
                // enabled again (what BIOSes and QEMU do).
                self.ram[0] &= !CTR_KBDDIS;
                self.kbd_write(v);
            }
        }
        self.refill(p);
    }

    // ---- keyboard ----

    /// A byte from the keyboard into the controller (translated if enabled).
    fn kbd_send(&mut self, b: u8) {
        self.kbd_last = b;
        if self.ctr() & CTR_XLATE == 0 {
            self.enqueue(b, Src::Kbd);
            return;
        }
        if b == 0xf0 {
            self.xlate_break = true;
            return;
        }
        let mut t = translate(b);
        if core::mem::take(&mut self.xlate_break) {
            t |= 0x80;
        }
        self.enqueue(t, Src::Kbd);
    }

    fn kbd_defaults(&mut self) {
        self.kbd_set = KBD_DEFAULT_SET;
        self.kbd_typematic = KBD_DEFAULT_TYPEMATIC;
    }

    fn kbd_write(&mut self, v: u8) {
        let pending = core::mem::take(&mut self.kbd_pending);
        match pending {
            0xed => {
                self.kbd_leds = v & 0x07;
                self.kbd_send(ACK);
                return;
            }
            0xf3 => {
                self.kbd_typematic = v & 0x7f;
                self.kbd_send(ACK);
                return;
            }
            0xf0 => {
                match v {
                    0 => {
                        self.kbd_send(ACK);
                        self.kbd_send(self.kbd_set);
                    }
                    1..=3 => {
                        self.kbd_set = v;
                        self.kbd_send(ACK);
                    }
                    _ => self.kbd_send(RESEND),
                }
                return;
            }
            _ => {}
        }
        match v {
            0xed | 0xf0 | 0xf3 => {
                self.kbd_pending = v;
                self.kbd_send(ACK);
            }
            0xee => self.kbd_send(0xee),
            0xf2 => {
                self.kbd_send(ACK);
                self.kbd_send(0xab);
                self.kbd_send(0x83);
            }
            0xf4 => {
                self.kbd_scanning = true;
                self.kbd_send(ACK);
            }
            0xf5 => {
                self.kbd_defaults();
                self.kbd_scanning = false;
                self.kbd_send(ACK);
            }
            0xf6 => {
                self.kbd_defaults();
                self.kbd_scanning = true;
                self.kbd_send(ACK);
            }
            // Set-3 "all keys" modes: accepted, no effect on set 2.
            0xf7..=0xfa => self.kbd_send(ACK),
            0xfe => self.kbd_send(self.kbd_last),
            0xff => {
                // Reset: the keyboard drops what it had not sent yet, then BAT.
                self.drop_queued(Src::Kbd);
                self.xlate_break = false;
                self.kbd_defaults();
                self.kbd_leds = 0;
                self.kbd_scanning = true;
                self.kbd_send(ACK);
                self.kbd_send(BAT_OK);
            }
            _ => self.kbd_send(RESEND),
        }
    }

    /// Remove queued (not yet in the output buffer) bytes of one source.
    fn drop_queued(&mut self, src: Src) {
        let len = (self.queue_len as usize).min(QUEUE_LEN);
        let mut kept = [(0u8, Src::Ctrl); QUEUE_LEN];
        let mut n = 0usize;
        for (slot, &e) in kept
            .iter_mut()
            .zip(self.queue.iter().take(len).filter(|e| e.1 != src))
        {
            *slot = e;
            n += 1;
        }
        self.queue = kept;
        self.queue_len = n as u8;
    }

    // ---- mouse ----

    fn mouse_send(&mut self, b: u8) {
        self.mouse_last = b;
        self.enqueue(b, Src::Aux);
    }

    fn mouse_defaults(&mut self) {
        self.mouse_status = 0;
        self.mouse_resolution = MOUSE_DEFAULT_RESOLUTION;
        self.mouse_rate = MOUSE_DEFAULT_RATE;
    }

    fn mouse_write(&mut self, v: u8) {
        if self.mouse_wrap && v != 0xec && v != 0xff {
            // Wrap (echo) mode: everything but "reset wrap" and "reset" comes back.
            self.mouse_send(v);
            return;
        }
        let pending = core::mem::take(&mut self.mouse_pending);
        match pending {
            0xf3 => {
                self.mouse_rate = v;
                self.mouse_send(ACK);
                return;
            }
            0xe8 => {
                if v <= 3 {
                    self.mouse_resolution = v;
                    self.mouse_send(ACK);
                } else {
                    self.mouse_send(RESEND);
                }
                return;
            }
            _ => {}
        }
        match v {
            0xe6 => {
                self.mouse_status &= !MOUSE_SCALE21;
                self.mouse_send(ACK);
            }
            0xe7 => {
                self.mouse_status |= MOUSE_SCALE21;
                self.mouse_send(ACK);
            }
            0xe8 | 0xf3 => {
                self.mouse_pending = v;
                self.mouse_send(ACK);
            }
            0xe9 => {
                self.mouse_send(ACK);
                self.mouse_send(self.mouse_status);
                self.mouse_send(self.mouse_resolution);
                self.mouse_send(self.mouse_rate);
            }
            0xea => {
                self.mouse_status &= !MOUSE_REMOTE;
                self.mouse_send(ACK);
            }
            0xeb => {
                // Read data: a packet with no motion and no buttons.
                self.mouse_send(ACK);
                self.mouse_send(0x08);
                self.mouse_send(0);
                self.mouse_send(0);
            }
            0xec => {
                self.mouse_wrap = false;
                self.mouse_send(ACK);
            }
            0xee => {
                self.mouse_wrap = true;
                self.mouse_send(ACK);
            }
            0xf0 => {
                self.mouse_status |= MOUSE_REMOTE;
                self.mouse_send(ACK);
            }
            0xf2 => {
                self.mouse_send(ACK);
                self.mouse_send(0x00);
            }
            0xf4 => {
                self.mouse_status |= MOUSE_ENABLED;
                self.mouse_send(ACK);
            }
            0xf5 => {
                self.mouse_status &= !MOUSE_ENABLED;
                self.mouse_send(ACK);
            }
            0xf6 => {
                self.mouse_defaults();
                self.mouse_send(ACK);
            }
            0xfe => self.mouse_send(self.mouse_last),
            0xff => {
                self.drop_queued(Src::Aux);
                self.mouse_defaults();
                self.mouse_wrap = false;
                self.mouse_send(ACK);
                self.mouse_send(BAT_OK);
                self.mouse_send(0x00);
            }
            _ => self.mouse_send(RESEND),
        }
    }
}

impl PortIo for I8042 {
    /// 0x60 and 0x64 are byte ports with other devices next to them (0x61, 0x65): a wide
    /// access touches only the addressed byte, the other lanes float high.
    fn pio_read(&mut self, p: &mut dyn Platform, port: u16, w: Width) -> u32 {
        let open = w.mask() as u32 & !0xff;
        let b = match port {
            PORT_DATA => self.read_data(p),
            PORT_STATUS => self.status(),
            _ => 0xff,
        };
        open | b as u32
    }

    fn pio_write(&mut self, p: &mut dyn Platform, port: u16, _w: Width, v: u32) {
        match port {
            PORT_DATA => self.write_data(p, v as u8),
            PORT_STATUS => self.write_command(p, v as u8),
            _ => {}
        }
    }
}

/// Commands that wait for a data byte on port 0x60.
fn valid_pending_cmd(c: u8) -> bool {
    matches!(
        c,
        0 | 0x60
            ..=0x7f | CMD_WRITE_OUTPUT | CMD_WRITE_KBD_OBUF | CMD_WRITE_AUX_OBUF | CMD_WRITE_AUX
    )
}

impl Snapshot for I8042 {
    const NAME: &'static str = "i8042";
    const VERSION: u16 = 1;

    // v1 body:
    //   ram[32], outport, flags (bit 0 sys, 1 last_was_cmd, 2 obf_full, 3 xlate_break),
    //   pending_cmd, obf_byte, obf_src,
    //   queue_len, queue[QUEUE_LEN] as (byte, src) pairs, unused pairs zero,
    //   kbd: scanning (bool), set, leds, typematic, pending, last,
    //   mouse: status, resolution, rate, wrap (bool), pending, last.
    // A20 follows from the output port; the IRQ levels from the output buffer and CTR.
    fn save(&self, w: &mut RecordWriter) {
        w.bytes(&self.ram);
        w.u8(self.outport);
        let flags = self.sys as u8
            | (self.last_was_cmd as u8) << 1
            | (self.obf_full as u8) << 2
            | (self.xlate_break as u8) << 3;
        w.u8(flags);
        w.u8(self.pending_cmd);
        w.u8(self.obf_byte);
        w.u8(self.obf_src as u8);
        w.u8(self.queue_len);
        for &(b, s) in &self.queue {
            w.u8(b);
            w.u8(s as u8);
        }
        w.bool(self.kbd_scanning);
        w.u8(self.kbd_set);
        w.u8(self.kbd_leds);
        w.u8(self.kbd_typematic);
        w.u8(self.kbd_pending);
        w.u8(self.kbd_last);
        w.u8(self.mouse_status);
        w.u8(self.mouse_resolution);
        w.u8(self.mouse_rate);
        w.bool(self.mouse_wrap);
        w.u8(self.mouse_pending);
        w.u8(self.mouse_last);
    }

    fn load(&mut self, _v: u16, r: &mut RecordReader<'_>) -> Result<(), LoadError> {
        let bad = |field| LoadError::Invalid {
            name: Self::NAME,
            field,
        };
        let mut ram = [0u8; 32];
        r.bytes(&mut ram)?;
        let outport = r.u8()?;
        let flags = r.u8()?;
        if flags & !0x0f != 0 {
            return Err(bad("flags"));
        }
        let pending_cmd = r.u8()?;
        if !valid_pending_cmd(pending_cmd) {
            return Err(bad("pending_cmd"));
        }
        let obf_byte = r.u8()?;
        let obf_src = Src::from_u8(r.u8()?).ok_or(bad("obf_src"))?;
        let queue_len = r.u8()?;
        if queue_len as usize > QUEUE_LEN {
            return Err(bad("queue_len"));
        }
        let mut queue = [(0u8, Src::Ctrl); QUEUE_LEN];
        for (i, slot) in queue.iter_mut().enumerate() {
            let b = r.u8()?;
            let s = Src::from_u8(r.u8()?).ok_or(bad("queue_src"))?;
            if i >= queue_len as usize && (b != 0 || s != Src::Ctrl) {
                return Err(bad("queue_padding"));
            }
            *slot = (b, s);
        }
        let obf_full = flags & 0x04 != 0;
        if queue_len as usize + obf_full as usize > OUTPUT_CAPACITY {
            return Err(bad("queue_len"));
        }
        let kbd_scanning = r.bool(Self::NAME, "kbd_scanning")?;
        let kbd_set = r.u8()?;
        if !(1..=3).contains(&kbd_set) {
            return Err(bad("kbd_set"));
        }
        let kbd_leds = r.u8()?;
        if kbd_leds & !0x07 != 0 {
            return Err(bad("kbd_leds"));
        }
        let kbd_typematic = r.u8()?;
        if kbd_typematic & 0x80 != 0 {
            return Err(bad("kbd_typematic"));
        }
        let kbd_pending = r.u8()?;
        if !matches!(kbd_pending, 0 | 0xed | 0xf0 | 0xf3) {
            return Err(bad("kbd_pending"));
        }
        let kbd_last = r.u8()?;
        let mouse_status = r.u8()?;
        if mouse_status & !(MOUSE_REMOTE | MOUSE_ENABLED | MOUSE_SCALE21) != 0 {
            return Err(bad("mouse_status"));
        }
        let mouse_resolution = r.u8()?;
        if mouse_resolution > 3 {
            return Err(bad("mouse_resolution"));
        }
        let mouse_rate = r.u8()?;
        let mouse_wrap = r.bool(Self::NAME, "mouse_wrap")?;
        let mouse_pending = r.u8()?;
        if !matches!(mouse_pending, 0 | 0xe8 | 0xf3) {
            return Err(bad("mouse_pending"));
        }
        let mouse_last = r.u8()?;

        self.ram = ram;
        self.outport = outport;
        self.a20 = outport & OUT_A20 != 0;
        self.sys = flags & 0x01 != 0;
        self.last_was_cmd = flags & 0x02 != 0;
        self.obf_full = obf_full;
        self.xlate_break = flags & 0x08 != 0;
        self.pending_cmd = pending_cmd;
        self.obf_byte = obf_byte;
        self.obf_src = obf_src;
        self.queue = queue;
        self.queue_len = queue_len;
        self.kbd_scanning = kbd_scanning;
        self.kbd_set = kbd_set;
        self.kbd_leds = kbd_leds;
        self.kbd_typematic = kbd_typematic;
        self.kbd_pending = kbd_pending;
        self.kbd_last = kbd_last;
        self.mouse_status = mouse_status;
        self.mouse_resolution = mouse_resolution;
        self.mouse_rate = mouse_rate;
        self.mouse_wrap = mouse_wrap;
        self.mouse_pending = mouse_pending;
        self.mouse_last = mouse_last;
        let (k, a) = self.lines();
        self.irq1 = k;
        self.irq12 = a;
        Ok(())
    }
}

crate::snapshot_tests!(
    i8042_snapshot,
    I8042,
    {
        let mut p = crate::testing::MockPlatform::new();
        let mut k = I8042::new();
        // Mouse enabled and configured, keyboard LEDs set, A20 off, a keystroke and a
        // mouse reply waiting, keyboard interface disabled with bytes held back, and a
        // controller command waiting for its data byte.
        k.pio_write(&mut p, 0x64, Width::B1, 0xa8);
        k.pio_write(&mut p, 0x64, Width::B1, 0xd4);
        k.pio_write(&mut p, 0x60, Width::B1, 0xf3);
        k.pio_write(&mut p, 0x64, Width::B1, 0xd4);
        k.pio_write(&mut p, 0x60, Width::B1, 40);
        k.pio_write(&mut p, 0x60, Width::B1, 0xed);
        k.pio_write(&mut p, 0x60, Width::B1, 0x05);
        k.pio_write(&mut p, 0x64, Width::B1, 0xd1);
        k.pio_write(&mut p, 0x60, Width::B1, 0xcd);
        k.key_input(&mut p, 0xf0);
        k.key_input(&mut p, 0x1c);
        k.pio_read(&mut p, 0x60, Width::B1);
        k.pio_write(&mut p, 0x64, Width::B1, 0xad);
        k.key_input(&mut p, 0x1c);
        k.pio_write(&mut p, 0x64, Width::B1, 0x60);
        k
    },
    I8042::new()
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MockPlatform;
    use alloc::vec::Vec;

    fn setup() -> (I8042, MockPlatform) {
        (I8042::new(), MockPlatform::new())
    }

    fn status(k: &mut I8042, p: &mut MockPlatform) -> u8 {
        k.pio_read(p, PORT_STATUS, Width::B1) as u8
    }

    fn cmd(k: &mut I8042, p: &mut MockPlatform, c: u8) {
        assert_eq!(status(k, p) & 0x02, 0, "IBF must be clear");
        k.pio_write(p, PORT_STATUS, Width::B1, c as u32);
    }

    fn data(k: &mut I8042, p: &mut MockPlatform, v: u8) {
        assert_eq!(status(k, p) & 0x02, 0, "IBF must be clear");
        k.pio_write(p, PORT_DATA, Width::B1, v as u32);
    }

    /// Read one byte like i8042_wait_read + read_data; None if OBF never sets.
    fn read(k: &mut I8042, p: &mut MockPlatform) -> Option<(u8, bool)> {
        let s = status(k, p);
        if s & STR_OBF == 0 {
            return None;
        }
        Some((
            k.pio_read(p, PORT_DATA, Width::B1) as u8,
            s & STR_AUXDATA != 0,
        ))
    }

    fn read_all(k: &mut I8042, p: &mut MockPlatform) -> Vec<u8> {
        let mut v = Vec::new();
        while let Some((b, _)) = read(k, p) {
            v.push(b);
            assert!(v.len() <= 16, "runaway output");
        }
        v
    }

    /// Linux i8042_flush(): at most 16 reads while OBF is set.
    fn linux_flush(k: &mut I8042, p: &mut MockPlatform) -> usize {
        let mut i = 0;
        while status(k, p) & STR_OBF != 0 && i < 16 {
            k.pio_read(p, PORT_DATA, Width::B1);
            i += 1;
        }
        i
    }

    #[test]
    fn seabios_ps2_keyboard_setup() {
        let (mut k, mut p) = setup();
        // i8042_flush: fewer than 16 bytes pending.
        assert!(linux_flush(&mut k, &mut p) < 16);
        cmd(&mut k, &mut p, 0xaa);
        assert_eq!(read(&mut k, &mut p), Some((0x55, false)));
        cmd(&mut k, &mut p, 0xab);
        assert_eq!(read(&mut k, &mut p), Some((0x00, false)));
        // (The power-on command byte enables IRQ1, so the replies above interrupted.)
        p.irq_log.clear();

        // ps2_kbd_command(RESET_BAT): CTR with both ports disabled and no IRQs, then
        // the keyboard port enabled, then the command.
        let kbd_cmd = |k: &mut I8042, p: &mut MockPlatform, c: &[u8], ctr: u8| {
            cmd(k, p, 0x60);
            data(k, p, (ctr | 0x30) & !0x03);
            cmd(k, p, 0x60);
            data(k, p, (ctr | 0x20) & !0x13);
            let mut got = Vec::new();
            for &b in c {
                data(k, p, b);
                got.extend(read_all(k, p));
            }
            cmd(k, p, 0x60);
            data(k, p, ctr);
            got
        };
        assert_eq!(kbd_cmd(&mut k, &mut p, &[0xff], 0x30), [0xfa, 0xaa]);
        assert_eq!(kbd_cmd(&mut k, &mut p, &[0xf5], 0x30), [0xfa]);
        assert_eq!(kbd_cmd(&mut k, &mut p, &[0xf0, 0x02], 0x30), [0xfa, 0xfa]);
        assert_eq!(kbd_cmd(&mut k, &mut p, &[0xf4], 0x61), [0xfa]);
        assert_eq!(k.command_byte(), 0x61);
        assert!(
            p.irq_log.iter().all(|&(_, l)| !l),
            "IRQs were off throughout"
        );

        // A key press now interrupts on IRQ1, translated to set 1 ('A' = 0x1c → 0x1e).
        k.key_input(&mut p, 0x1c);
        assert!(p.irq(KBD_IRQ));
        assert_eq!(read(&mut k, &mut p), Some((0x1e, false)));
        assert!(!p.irq(KBD_IRQ));
        k.key_input(&mut p, 0xf0);
        k.key_input(&mut p, 0x1c);
        assert_eq!(read(&mut k, &mut p), Some((0x9e, false)));
        // handle_09 re-enables the keyboard after each key.
        cmd(&mut k, &mut p, 0xae);
        assert_eq!(read(&mut k, &mut p), None);
    }

    /// Linux i8042_controller_check, _selftest, _init and i8042_check_aux, in order.
    #[test]
    fn linux_i8042_probe() {
        let (mut k, mut p) = setup();
        k.key_input(&mut p, 0x1c); // something in the buffer at boot
        assert_ne!(linux_flush(&mut k, &mut p), 16, "controller found");
        cmd(&mut k, &mut p, 0xaa);
        assert_eq!(read(&mut k, &mut p), Some((0x55, false)));
        // Read CTR, no keylock.
        cmd(&mut k, &mut p, 0x20);
        let (ctr, _) = read(&mut k, &mut p).unwrap();
        assert_eq!(ctr, 0x61);
        assert_ne!(status(&mut k, &mut p) & STR_KEYLOCK, 0);
        let ctr = (ctr | CTR_KBDDIS) & !CTR_KBDINT;
        cmd(&mut k, &mut p, 0x60);
        data(&mut k, &mut p, ctr);
        cmd(&mut k, &mut p, 0x20);
        assert_eq!(read(&mut k, &mut p), Some((ctr, false)));

        // check_aux: flush, AUX_LOOP must come back on the aux lane.
        linux_flush(&mut k, &mut p);
        cmd(&mut k, &mut p, 0xd3);
        data(&mut k, &mut p, 0x5a);
        assert_eq!(read(&mut k, &mut p), Some((0x5a, true)));
        // Bit assignment test: 0xA7 / 0xA8 must toggle CTR bit 5.
        cmd(&mut k, &mut p, 0xa7);
        cmd(&mut k, &mut p, 0x20);
        assert_ne!(read(&mut k, &mut p).unwrap().0 & CTR_AUXDIS, 0);
        cmd(&mut k, &mut p, 0xa8);
        cmd(&mut k, &mut p, 0x20);
        assert_eq!(read(&mut k, &mut p).unwrap().0 & CTR_AUXDIS, 0);
        // IRQ12 delivery test: enable aux + its interrupt, loop 0xA5.
        let ctr = (ctr & !CTR_AUXDIS) | CTR_AUXINT;
        cmd(&mut k, &mut p, 0x60);
        data(&mut k, &mut p, ctr);
        cmd(&mut k, &mut p, 0xd3);
        data(&mut k, &mut p, 0xa5);
        assert!(p.irq(AUX_IRQ));
        assert!(!p.irq(KBD_IRQ));
        assert_eq!(read(&mut k, &mut p), Some((0xa5, true)));
        assert!(!p.irq(AUX_IRQ));

        // MUX detection must fail: the third loop byte comes back unchanged.
        for b in [0xf0, 0x56, 0xa4] {
            cmd(&mut k, &mut p, 0xd3);
            data(&mut k, &mut p, b);
            assert_eq!(read(&mut k, &mut p), Some((b, true)));
        }

        // Keyboard port enable, atkbd probe: GETID translated, LEDs, enable.
        let ctr = (ctr & !CTR_KBDDIS) | CTR_KBDINT;
        cmd(&mut k, &mut p, 0x60);
        data(&mut k, &mut p, ctr);
        data(&mut k, &mut p, 0xf2);
        assert_eq!(read_all(&mut k, &mut p), [0xfa, 0xab, 0x41]);
        data(&mut k, &mut p, 0xed);
        data(&mut k, &mut p, 0x02);
        assert_eq!(read_all(&mut k, &mut p), [0xfa, 0xfa]);
        assert_eq!(k.leds(), 0x02);
        data(&mut k, &mut p, 0xf3);
        data(&mut k, &mut p, 0x00);
        data(&mut k, &mut p, 0xf4);
        assert_eq!(read_all(&mut k, &mut p), [0xfa, 0xfa, 0xfa]);
        data(&mut k, &mut p, 0x99);
        assert_eq!(read_all(&mut k, &mut p), [0xfe]);
    }

    #[test]
    fn psmouse_probe_sees_a_generic_mouse() {
        let (mut k, mut p) = setup();
        cmd(&mut k, &mut p, 0xa8);
        let aux = |k: &mut I8042, p: &mut MockPlatform, bytes: &[u8]| {
            let mut got = Vec::new();
            for &b in bytes {
                cmd(k, p, 0xd4);
                data(k, p, b);
                while let Some((b, is_aux)) = read(k, p) {
                    assert!(is_aux, "mouse bytes carry AUX OBF");
                    got.push(b);
                }
            }
            got
        };
        assert_eq!(aux(&mut k, &mut p, &[0xff]), [0xfa, 0xaa, 0x00]);
        assert_eq!(aux(&mut k, &mut p, &[0xf2]), [0xfa, 0x00]);
        // IntelliMouse knock: still ID 0 (no wheel).
        assert_eq!(
            aux(&mut k, &mut p, &[0xf3, 200, 0xf3, 100, 0xf3, 80, 0xf2]),
            [0xfa, 0xfa, 0xfa, 0xfa, 0xfa, 0xfa, 0xfa, 0x00]
        );
        // Synaptics identify: E8 x4 then E9; the middle byte must not be 0x47.
        let got = aux(
            &mut k,
            &mut p,
            &[0xe6, 0xe8, 0, 0xe8, 0, 0xe8, 0, 0xe8, 0, 0xe9],
        );
        assert_eq!(got.len(), 13);
        assert_ne!(got[11], 0x47);
        // Vendor-specific commands are refused.
        assert_eq!(aux(&mut k, &mut p, &[0xe1]), [0xfe]);
        assert_eq!(aux(&mut k, &mut p, &[0xf4]), [0xfa]);
        assert_eq!(aux(&mut k, &mut p, &[0xe9]), [0xfa, 0x20, 0x00, 80]);
        // Wrap mode echoes until reset-wrap.
        assert_eq!(aux(&mut k, &mut p, &[0xee, 0x12, 0xec]), [0xfa, 0x12, 0xfa]);
    }

    #[test]
    fn disabled_keyboard_holds_bytes_but_replies_pass() {
        let (mut k, mut p) = setup();
        cmd(&mut k, &mut p, 0xad);
        k.key_input(&mut p, 0x1c);
        assert_eq!(status(&mut k, &mut p) & STR_OBF, 0);
        cmd(&mut k, &mut p, 0x20);
        assert_eq!(read(&mut k, &mut p), Some((0x71, false)));
        assert_eq!(read(&mut k, &mut p), None);
        cmd(&mut k, &mut p, 0xae);
        assert_eq!(read(&mut k, &mut p), Some((0x1e, false)));
    }

    #[test]
    fn irq_edges_between_consecutive_bytes() {
        let (mut k, mut p) = setup();
        k.key_input(&mut p, 0x1c);
        k.key_input(&mut p, 0x32);
        assert_eq!(p.irq_log, [(1, true)]);
        k.pio_read(&mut p, PORT_DATA, Width::B1);
        assert_eq!(p.irq_log, [(1, true), (1, false), (1, true)]);
        k.pio_read(&mut p, PORT_DATA, Width::B1);
        assert!(!p.irq(KBD_IRQ));
        // A stale read returns the last byte and changes nothing.
        assert_eq!(k.pio_read(&mut p, PORT_DATA, Width::B1), 0x30);
        assert_eq!(p.irq_log.len(), 4);
        // Interrupt disabled in CTR: OBF set, line low.
        cmd(&mut k, &mut p, 0x60);
        data(&mut k, &mut p, 0x60);
        k.key_input(&mut p, 0x1c);
        assert_ne!(status(&mut k, &mut p) & STR_OBF, 0);
        assert!(!p.irq(KBD_IRQ));
    }

    #[test]
    fn translation_table_spot_checks() {
        // Set 2 -> set 1: A, Esc, Enter, Space, F1, F7, SysRq, keypad 0, and ACK/BAT/ID.
        for (s2, s1) in [
            (0x1c, 0x1e),
            (0x76, 0x01),
            (0x5a, 0x1c),
            (0x29, 0x39),
            (0x05, 0x3b),
            (0x83, 0x41),
            (0x84, 0x54),
            (0x70, 0x52),
            (0xfa, 0xfa),
            (0xaa, 0xaa),
            (0xab, 0xab),
            (0xe0, 0xe0),
        ] {
            assert_eq!(translate(s2), s1, "{s2:#x}");
        }
    }

    #[test]
    fn untranslated_mode_passes_set2() {
        let (mut k, mut p) = setup();
        cmd(&mut k, &mut p, 0x60);
        data(&mut k, &mut p, 0x01);
        k.key_input(&mut p, 0xf0);
        k.key_input(&mut p, 0x1c);
        assert_eq!(read_all(&mut k, &mut p), [0xf0, 0x1c]);
        data(&mut k, &mut p, 0xf2);
        assert_eq!(read_all(&mut k, &mut p), [0xfa, 0xab, 0x83]);
        data(&mut k, &mut p, 0xf0);
        data(&mut k, &mut p, 0x00);
        assert_eq!(read_all(&mut k, &mut p), [0xfa, 0xfa, 0x02]);
        data(&mut k, &mut p, 0xf5);
        k.key_input(&mut p, 0x1c);
        assert_eq!(read_all(&mut k, &mut p), [0xfa], "scanning disabled");
    }

    #[test]
    fn output_port_a20_and_reset() {
        let (mut k, mut p) = setup();
        assert!(k.a20());
        // Linux boot a20.c: D1 DF, then the null command FF (no reset: bit 0 set).
        cmd(&mut k, &mut p, 0xd1);
        data(&mut k, &mut p, 0xdd);
        assert!(!k.a20());
        cmd(&mut k, &mut p, 0xd1);
        data(&mut k, &mut p, 0xdf);
        cmd(&mut k, &mut p, 0xff);
        assert!(k.a20());
        assert!(p.power.is_empty());
        cmd(&mut k, &mut p, 0xd0);
        assert_eq!(read(&mut k, &mut p).unwrap().0 & 0x03, 0x03);
        // Classic reboot.
        cmd(&mut k, &mut p, 0xfe);
        assert_eq!(p.power, [PowerRequest::Reset]);
        // Output port with bit 0 clear.
        cmd(&mut k, &mut p, 0xd1);
        data(&mut k, &mut p, 0x02);
        assert_eq!(p.power, [PowerRequest::Reset, PowerRequest::Reset]);
    }

    #[test]
    fn flood_stays_within_flush_limits() {
        let (mut k, mut p) = setup();
        for i in 0..100u8 {
            k.key_input(&mut p, i & 0x7f);
        }
        // Still room for a controller reply.
        cmd(&mut k, &mut p, 0x20);
        let got = read_all(&mut k, &mut p);
        assert!(got.len() < 16);
        assert_eq!(*got.last().unwrap(), 0x61);
        // SeaBIOS's flush (16 reads, then it must see OBF clear) succeeds.
        for _ in 0..100 {
            k.key_input(&mut p, 0x1c);
            cmd(&mut k, &mut p, 0xaa);
        }
        assert!(linux_flush(&mut k, &mut p) < 16);
    }

    #[test]
    fn hammer_both_ports() {
        let (mut k, mut p) = setup();
        let mut seed = 0x0bad_5eed_1234_4321u64;
        for i in 0..200_000u32 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let port = [PORT_DATA, PORT_STATUS, 0x61, 0x65][(seed % 4) as usize];
            let w = [Width::B1, Width::B2, Width::B4][((seed >> 8) % 3) as usize];
            let mut v = (seed >> 16) as u32;
            if port == PORT_STATUS && v & 0xf0 == 0xf0 {
                v |= 1; // keep resets rare but let the rest through
            }
            match (seed >> 48) % 5 {
                0 | 1 => k.pio_write(&mut p, port, w, v),
                2 | 3 => {
                    let r = k.pio_read(&mut p, port, w);
                    assert_eq!(r & !(w.mask() as u32), 0);
                }
                _ => k.key_input(&mut p, v as u8),
            }
            assert!(k.output_len() <= OUTPUT_CAPACITY);
            let (a, b) = k.lines();
            assert_eq!((k.irq1, k.irq12), (a, b));
            assert_eq!((p.irq(KBD_IRQ), p.irq(AUX_IRQ)), (a, b));
            assert!((1..=3).contains(&k.kbd_set));
            if i % 1000 == 0 {
                let rec = save_record(&k, 0);
                let mut n = I8042::new();
                load_record(&mut n, &rec).expect("live state always loads");
                assert_eq!(save_record(&n, 0), rec);
            }
        }
    }
}
