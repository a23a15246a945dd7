//! The host end of a stub domain's virtio console (virtio-mmio, version 2 "modern"
//! register layout; virtio 1.2 §4.2.2 MMIO device register layout, §2.7 split
//! virtqueues, §5.3 console device).
//!
//! The stub domain's `log` output arrives on the transmit queue (queue 1, port 0's
//! transmitq); each complete line goes to `sink` as `"[<name>] <line>"`. The receive
//! queue (0) accepts buffers and never fills them: the stub takes no console input.
//! A queue notify is processed at once, inside the MMIO write, so the stub can poll the
//! used ring; no interrupt is wired (the interrupt status bit is still kept for a
//! driver that looks).
//!
//! The stub domain is not trusted: every ring index, descriptor index, length and
//! address is checked; a chain is at most `queue size` descriptors long; anything
//! impossible marks the device `DEVICE_NEEDS_RESET` and stops processing until the
//! driver resets it. Nothing here panics on any register or memory content.

use crate::memory::GuestMemory;

/// "virt".
pub const MAGIC: u32 = 0x7472_6976;
pub const VERSION: u32 = 2;
/// virtio device id of a console.
pub const DEVICE_ID: u32 = 3;
/// "CHSD" (chassis), the vendor id this device reports.
pub const VENDOR_ID: u32 = u32::from_le_bytes(*b"CHSD");
/// VIRTIO_F_VERSION_1: the only feature offered.
pub const F_VERSION_1: u64 = 1 << 32;
/// Largest queue the device accepts.
pub const QUEUE_NUM_MAX: u32 = 256;
/// Longest line handed to the sink; longer ones are cut into pieces of this size.
pub const MAX_LINE: usize = 1024;
/// Bytes taken from one descriptor chain; the rest of a longer chain is dropped.
pub const MAX_CHAIN_BYTES: u64 = 64 * 1024;

/// Register offsets (virtio 1.2 §4.2.2).
pub mod reg {
    pub const MAGIC: u64 = 0x000;
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const VENDOR_ID: u64 = 0x00c;
    pub const DEVICE_FEATURES: u64 = 0x010;
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    pub const DRIVER_FEATURES: u64 = 0x020;
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    pub const QUEUE_SEL: u64 = 0x030;
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    pub const QUEUE_NUM: u64 = 0x038;
    pub const QUEUE_READY: u64 = 0x044;
    pub const QUEUE_NOTIFY: u64 = 0x050;
    pub const INTERRUPT_STATUS: u64 = 0x060;
    pub const INTERRUPT_ACK: u64 = 0x064;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    /// Device config: cols u16, rows u16, max_nr_ports u32, emerg_wr u32.
    pub const CONFIG: u64 = 0x100;
    pub const CONFIG_LEN: u64 = 12;
}

/// Device status bits (virtio 1.2 §2.1).
pub mod status {
    pub const ACKNOWLEDGE: u32 = 1;
    pub const DRIVER: u32 = 2;
    pub const DRIVER_OK: u32 = 4;
    pub const FEATURES_OK: u32 = 8;
    pub const DEVICE_NEEDS_RESET: u32 = 0x40;
    pub const FAILED: u32 = 0x80;
}

const TX_QUEUE: usize = 1;
const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;
const DESC_F_INDIRECT: u16 = 4;
const INT_USED_BUFFER: u32 = 1;

#[derive(Clone, Copy, Debug, Default)]
struct Queue {
    num: u32,
    ready: bool,
    desc: u64,
    driver: u64,
    device: u64,
    /// Next avail ring entry to take.
    last_avail: u16,
    /// Our used index.
    used_idx: u16,
}

fn set_low(v: &mut u64, low: u64) {
    *v = (*v & !0xffff_ffff) | (low & 0xffff_ffff);
}

fn set_high(v: &mut u64, high: u64) {
    *v = (*v & 0xffff_ffff) | (high & 0xffff_ffff) << 32;
}

/// Something the driver put in memory that cannot be right.
struct Broken;

fn rd16(mem: &GuestMemory, gpa: u64) -> Result<u16, Broken> {
    let mut b = [0u8; 2];
    mem.read(gpa, &mut b).map_err(|_| Broken)?;
    Ok(u16::from_le_bytes(b))
}

/// A virtio-mmio console: the stub domain's transmit queue becomes complete lines handed
/// to `sink` with `"[<name>] "` in front.
/// Text from the stub domain as it may reach the host's terminal and logs: lossy UTF-8,
/// tabs as spaces, every other control character (escape sequences!) as `?`.
pub fn printable(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .chars()
        .map(|c| match c {
            '\t' => ' ',
            c if c.is_control() => '?',
            c => c,
        })
        .collect()
}

pub struct VirtioConsole {
    name: String,
    sink: Box<dyn FnMut(&str) + Send>,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    queues: [Queue; 2],
    interrupt_status: u32,
    /// Bytes of the line being collected.
    line: Vec<u8>,
}

impl VirtioConsole {
    /// `name` is the stub domain's name (e.g. `guest-dm`).
    pub fn new(name: &str, sink: Box<dyn FnMut(&str) + Send>) -> Self {
        VirtioConsole {
            name: name.into(),
            sink,
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            queues: [Queue::default(); 2],
            interrupt_status: 0,
            line: Vec::new(),
        }
    }

    /// The device status register (for tests and diagnostics).
    pub fn status(&self) -> u32 {
        self.status
    }

    fn reset(&mut self) {
        self.status = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.queue_sel = 0;
        self.queues = [Queue::default(); 2];
        self.interrupt_status = 0;
    }

    fn queue(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    /// A read of `size` (1, 2, 4, 8) bytes at `offset` in the register window; `mem` is
    /// the stub domain's RAM (where its queues live).
    pub fn mmio_read(&mut self, _mem: &GuestMemory, offset: u64, size: u8) -> u64 {
        if offset >= reg::CONFIG {
            // Device config: cols = rows = max_nr_ports = 0.
            return 0;
        }
        if size != 4 {
            return 0;
        }
        let v = match offset {
            reg::MAGIC => MAGIC,
            reg::VERSION => VERSION,
            reg::DEVICE_ID => DEVICE_ID,
            reg::VENDOR_ID => VENDOR_ID,
            reg::DEVICE_FEATURES => match self.device_features_sel {
                0 => F_VERSION_1 as u32,
                1 => (F_VERSION_1 >> 32) as u32,
                _ => 0,
            },
            reg::QUEUE_NUM_MAX => {
                if (self.queue_sel as usize) < self.queues.len() {
                    QUEUE_NUM_MAX
                } else {
                    0
                }
            }
            reg::QUEUE_READY => self.queue().is_some_and(|q| q.ready) as u32,
            reg::INTERRUPT_STATUS => self.interrupt_status,
            reg::STATUS => self.status,
            reg::CONFIG_GENERATION => 0,
            _ => 0,
        };
        v as u64
    }

    /// A write; a queue notify processes that queue at once (the stub polls the used
    /// ring, it needs no interrupt).
    pub fn mmio_write(&mut self, mem: &GuestMemory, offset: u64, size: u8, value: u64) {
        // Device config is read-only here (emerg_wr needs VIRTIO_CONSOLE_F_EMERG_WRITE,
        // which is not offered).
        if offset >= reg::CONFIG || size != 4 {
            return;
        }
        let v = value & 0xffff_ffff;
        // Queue set-up is only allowed before DRIVER_OK (and while the queue is not
        // ready), as the spec requires of drivers.
        let setup = self.status & status::DRIVER_OK == 0;
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = v as u32,
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = v as u32,
            reg::DRIVER_FEATURES => {
                if self.status & status::FEATURES_OK == 0 {
                    match self.driver_features_sel {
                        0 => set_low(&mut self.driver_features, v),
                        1 => set_high(&mut self.driver_features, v),
                        _ => {}
                    }
                }
            }
            reg::QUEUE_SEL => self.queue_sel = v as u32,
            reg::QUEUE_NUM => {
                if let Some(q) = self.queue() {
                    if !q.ready {
                        q.num = v as u32;
                    }
                }
            }
            reg::QUEUE_READY => {
                if let Some(q) = self.queue() {
                    if v == 0 {
                        *q = Queue::default();
                    } else if setup && q.num.is_power_of_two() && q.num <= QUEUE_NUM_MAX {
                        q.ready = true;
                        q.last_avail = 0;
                        q.used_idx = 0;
                    }
                }
            }
            reg::QUEUE_DESC_LOW
            | reg::QUEUE_DESC_HIGH
            | reg::QUEUE_DRIVER_LOW
            | reg::QUEUE_DRIVER_HIGH
            | reg::QUEUE_DEVICE_LOW
            | reg::QUEUE_DEVICE_HIGH => {
                if let Some(q) = self.queue() {
                    if !q.ready {
                        match offset {
                            reg::QUEUE_DESC_LOW => set_low(&mut q.desc, v),
                            reg::QUEUE_DESC_HIGH => set_high(&mut q.desc, v),
                            reg::QUEUE_DRIVER_LOW => set_low(&mut q.driver, v),
                            reg::QUEUE_DRIVER_HIGH => set_high(&mut q.driver, v),
                            reg::QUEUE_DEVICE_LOW => set_low(&mut q.device, v),
                            _ => set_high(&mut q.device, v),
                        }
                    }
                }
            }
            reg::QUEUE_NOTIFY => {
                if v as usize == TX_QUEUE {
                    self.process_tx(mem);
                }
                // Queue 0 (receive): buffers stay available; the stub gets no input.
            }
            reg::INTERRUPT_ACK => self.interrupt_status &= !(v as u32),
            reg::STATUS => self.write_status(v as u32),
            _ => {}
        }
    }

    fn write_status(&mut self, v: u32) {
        if v == 0 {
            self.reset();
            return;
        }
        let mut v = v & 0xff;
        if v & status::FEATURES_OK != 0 && self.status & status::FEATURES_OK == 0 {
            // Refuse features we did not offer (the driver sees FEATURES_OK clear).
            if self.driver_features & !F_VERSION_1 != 0 || self.driver_features & F_VERSION_1 == 0 {
                v &= !status::FEATURES_OK;
            }
        }
        // The device's own bit stays as the device set it.
        self.status =
            (v & !status::DEVICE_NEEDS_RESET) | (self.status & status::DEVICE_NEEDS_RESET);
    }

    fn live(&self) -> bool {
        self.status & status::DRIVER_OK != 0
            && self.status & (status::DEVICE_NEEDS_RESET | status::FAILED) == 0
    }

    /// Take every chain the driver made available on the transmit queue.
    fn process_tx(&mut self, mem: &GuestMemory) {
        if !self.live() {
            return;
        }
        let Some(&q) = self.queues.get(TX_QUEUE) else {
            return;
        };
        if !q.ready {
            return;
        }
        match self.drain_queue(mem, q) {
            Ok((last_avail, used_idx, any)) => {
                self.queues[TX_QUEUE].last_avail = last_avail;
                self.queues[TX_QUEUE].used_idx = used_idx;
                if any {
                    self.interrupt_status |= INT_USED_BUFFER;
                }
            }
            Err(Broken) => {
                self.status |= status::DEVICE_NEEDS_RESET;
                self.flush();
            }
        }
    }

    /// Returns the new (last_avail, used_idx) and whether anything was used.
    fn drain_queue(&mut self, mem: &GuestMemory, q: Queue) -> Result<(u16, u16, bool), Broken> {
        let num = q.num as u16;
        let avail_idx = rd16(mem, q.driver.checked_add(2).ok_or(Broken)?)?;
        let pending = avail_idx.wrapping_sub(q.last_avail);
        if pending as u32 > q.num {
            return Err(Broken);
        }
        let (mut last_avail, mut used_idx) = (q.last_avail, q.used_idx);
        for _ in 0..pending {
            let slot = (last_avail % num) as u64;
            let head = rd16(mem, q.driver.checked_add(4 + 2 * slot).ok_or(Broken)?)?;
            self.take_chain(mem, &q, head)?;
            // Used element: id = head, len = 0 (the device wrote nothing).
            let used_slot = (used_idx % num) as u64;
            let mut elem = [0u8; 8];
            elem[..4].copy_from_slice(&(head as u32).to_le_bytes());
            let at = q.device.checked_add(4 + 8 * used_slot).ok_or(Broken)?;
            mem.write(at, &elem).map_err(|_| Broken)?;
            used_idx = used_idx.wrapping_add(1);
            // Publish the element before the index.
            std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
            let at = q.device.checked_add(2).ok_or(Broken)?;
            mem.write(at, &used_idx.to_le_bytes()).map_err(|_| Broken)?;
            last_avail = last_avail.wrapping_add(1);
        }
        Ok((last_avail, used_idx, pending != 0))
    }

    /// Collect the bytes of the chain starting at descriptor `head`.
    fn take_chain(&mut self, mem: &GuestMemory, q: &Queue, head: u16) -> Result<(), Broken> {
        let mut idx = head;
        let mut taken = 0u64;
        // A chain visits at most `num` descriptors; a longer one loops.
        for _ in 0..q.num {
            if idx as u32 >= q.num {
                return Err(Broken);
            }
            let mut d = [0u8; 16];
            let at = q.desc.checked_add(16 * idx as u64).ok_or(Broken)?;
            mem.read(at, &mut d).map_err(|_| Broken)?;
            let addr = u64::from_le_bytes(d[0..8].try_into().map_err(|_| Broken)?);
            let len = u32::from_le_bytes(d[8..12].try_into().map_err(|_| Broken)?) as u64;
            let flags = u16::from_le_bytes([d[12], d[13]]);
            let next = u16::from_le_bytes([d[14], d[15]]);
            if flags & DESC_F_INDIRECT != 0 {
                // Not negotiated.
                return Err(Broken);
            }
            if flags & DESC_F_WRITE == 0 {
                // Device-readable: the bytes to print (capped per chain).
                let n = len.min(MAX_CHAIN_BYTES - taken);
                let mut off = 0;
                let mut buf = [0u8; 256];
                while off < n {
                    let k = (n - off).min(buf.len() as u64) as usize;
                    let src = addr.checked_add(off).ok_or(Broken)?;
                    mem.read(src, &mut buf[..k]).map_err(|_| Broken)?;
                    self.take_bytes(&buf[..k]);
                    off += k as u64;
                }
                taken += n;
            }
            if flags & DESC_F_NEXT == 0 {
                return Ok(());
            }
            idx = next;
        }
        Err(Broken)
    }

    fn take_bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            match b {
                b'\n' => self.emit(),
                b'\r' => {}
                _ => {
                    self.line.push(b);
                    if self.line.len() >= MAX_LINE {
                        self.emit();
                    }
                }
            }
        }
    }

    fn emit(&mut self) {
        let raw = std::mem::take(&mut self.line);
        let text = printable(&raw);
        (self.sink)(&format!("[{}] {}", self.name, text));
        // Keep the allocation for the next line.
        self.line = raw;
        self.line.clear();
    }

    /// Emit a partial last line (at stop).
    pub fn flush(&mut self) {
        if !self.line.is_empty() {
            self.emit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::Layout;
    use std::sync::{Arc, Mutex};

    const DESC: u64 = 0x10_0000;
    const AVAIL: u64 = 0x10_1000;
    const USED: u64 = 0x10_2000;
    const RX_DESC: u64 = 0x11_0000;
    const DATA: u64 = 0x20_0000;
    const QSIZE: u32 = 4;

    struct Rig {
        mem: GuestMemory,
        dev: VirtioConsole,
        lines: Arc<Mutex<Vec<String>>>,
        next_desc: u16,
        avail_idx: u16,
    }

    fn rig() -> Rig {
        let mem = GuestMemory::new(Layout::new(16 << 20).unwrap()).unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        let dev = VirtioConsole::new("g-dm", Box::new(move |s| l.lock().unwrap().push(s.into())));
        Rig {
            mem,
            dev,
            lines,
            next_desc: 0,
            avail_idx: 0,
        }
    }

    impl Rig {
        fn r(&mut self, off: u64) -> u32 {
            self.dev.mmio_read(&self.mem, off, 4) as u32
        }
        fn w(&mut self, off: u64, v: u64) {
            self.dev.mmio_write(&self.mem, off, 4, v);
        }
        fn setup_queue(&mut self, q: u64, desc: u64, avail: u64, used: u64) {
            self.w(reg::QUEUE_SEL, q);
            assert_eq!(self.r(reg::QUEUE_NUM_MAX), QUEUE_NUM_MAX);
            assert_eq!(self.r(reg::QUEUE_READY), 0);
            self.w(reg::QUEUE_NUM, QSIZE as u64);
            self.w(reg::QUEUE_DESC_LOW, desc);
            self.w(reg::QUEUE_DESC_HIGH, 0);
            self.w(reg::QUEUE_DRIVER_LOW, avail);
            self.w(reg::QUEUE_DRIVER_HIGH, 0);
            self.w(reg::QUEUE_DEVICE_LOW, used);
            self.w(reg::QUEUE_DEVICE_HIGH, 0);
            self.w(reg::QUEUE_READY, 1);
            assert_eq!(self.r(reg::QUEUE_READY), 1);
        }
        /// The initialisation sequence of virtio 1.2 §3.1.1, as virtio-drivers does it.
        fn init(&mut self) {
            assert_eq!(self.r(reg::MAGIC), MAGIC);
            assert_eq!(self.r(reg::VERSION), 2);
            assert_eq!(self.r(reg::DEVICE_ID), 3);
            self.w(reg::STATUS, 0);
            self.w(reg::STATUS, (status::ACKNOWLEDGE | status::DRIVER) as u64);
            self.w(reg::DEVICE_FEATURES_SEL, 0);
            let lo = self.r(reg::DEVICE_FEATURES) as u64;
            self.w(reg::DEVICE_FEATURES_SEL, 1);
            let hi = self.r(reg::DEVICE_FEATURES) as u64;
            assert_eq!(hi << 32 | lo, F_VERSION_1);
            self.w(reg::DRIVER_FEATURES_SEL, 0);
            self.w(reg::DRIVER_FEATURES, 0);
            self.w(reg::DRIVER_FEATURES_SEL, 1);
            self.w(reg::DRIVER_FEATURES, 1);
            self.w(
                reg::STATUS,
                (status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK) as u64,
            );
            assert!(self.r(reg::STATUS) & status::FEATURES_OK != 0);
            self.setup_queue(0, RX_DESC, RX_DESC + 0x1000, RX_DESC + 0x2000);
            self.setup_queue(1, DESC, AVAIL, USED);
            self.w(
                reg::STATUS,
                (status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK)
                    as u64,
            );
            // An RX buffer, as the driver posts one; it must never be filled.
            self.mem
                .write(RX_DESC, &desc_bytes(0x30_0000, 4096, DESC_F_WRITE, 0))
                .unwrap();
            self.mem
                .write(RX_DESC + 0x1000 + 4, &0u16.to_le_bytes())
                .unwrap();
            self.mem
                .write(RX_DESC + 0x1000 + 2, &1u16.to_le_bytes())
                .unwrap();
            self.w(reg::QUEUE_NOTIFY, 0);
        }
        /// Put a chain of `parts` on the TX queue and notify; returns the head.
        fn send(&mut self, parts: &[&[u8]]) -> u16 {
            let head = self.next_desc;
            let mut at = DATA + head as u64 * 0x1000;
            for (i, p) in parts.iter().enumerate() {
                let idx = (head + i as u16) % QSIZE as u16;
                let last = i + 1 == parts.len();
                self.mem.write(at, p).unwrap();
                let next = (idx + 1) % QSIZE as u16;
                let flags = if last { 0 } else { DESC_F_NEXT };
                self.mem
                    .write(
                        DESC + 16 * idx as u64,
                        &desc_bytes(at, p.len() as u32, flags, next),
                    )
                    .unwrap();
                at += p.len() as u64;
            }
            self.next_desc = (head + parts.len() as u16) % QSIZE as u16;
            let slot = self.avail_idx % QSIZE as u16;
            self.mem
                .write(AVAIL + 4 + 2 * slot as u64, &head.to_le_bytes())
                .unwrap();
            self.avail_idx = self.avail_idx.wrapping_add(1);
            self.mem
                .write(AVAIL + 2, &self.avail_idx.to_le_bytes())
                .unwrap();
            self.w(reg::QUEUE_NOTIFY, 1);
            head
        }
        fn used_idx(&self) -> u16 {
            let mut b = [0u8; 2];
            self.mem.read(USED + 2, &mut b).unwrap();
            u16::from_le_bytes(b)
        }
        fn used_elem(&self, i: u16) -> (u32, u32) {
            let mut b = [0u8; 8];
            self.mem
                .read(USED + 4 + 8 * (i % QSIZE as u16) as u64, &mut b)
                .unwrap();
            (
                u32::from_le_bytes(b[..4].try_into().unwrap()),
                u32::from_le_bytes(b[4..].try_into().unwrap()),
            )
        }
        fn lines(&self) -> Vec<String> {
            self.lines.lock().unwrap().clone()
        }
    }

    fn desc_bytes(addr: u64, len: u32, flags: u16, next: u16) -> [u8; 16] {
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..].copy_from_slice(&next.to_le_bytes());
        d
    }

    #[test]
    fn lines_come_out_prefixed_and_descriptors_are_used() {
        let mut r = rig();
        r.init();
        let h = r.send(&[b"INFO  hello\nsecond "]);
        assert_eq!(r.used_idx(), 1);
        assert_eq!(r.used_elem(0), (h as u32, 0));
        assert_eq!(r.lines(), ["[g-dm] INFO  hello"]);
        // A chain of three descriptors finishing the line, then another.
        let h = r.send(&[b"half", b" and", b" more\r\nx\n"]);
        assert_eq!(r.used_idx(), 2);
        assert_eq!(r.used_elem(1), (h as u32, 0));
        assert_eq!(
            r.lines(),
            [
                "[g-dm] INFO  hello",
                "[g-dm] second half and more",
                "[g-dm] x"
            ]
        );
        assert!(r.r(reg::INTERRUPT_STATUS) & 1 != 0);
        r.w(reg::INTERRUPT_ACK, 1);
        assert_eq!(r.r(reg::INTERRUPT_STATUS), 0);
        // The RX buffer was never used.
        let mut b = [0u8; 2];
        r.mem.read(RX_DESC + 0x2000 + 2, &mut b).unwrap();
        assert_eq!(u16::from_le_bytes(b), 0);
        // Partial line at stop.
        r.send(&[b"tail"]);
        r.dev.flush();
        assert_eq!(r.lines().last().unwrap(), "[g-dm] tail");
        assert_eq!(r.dev.status() & status::DEVICE_NEEDS_RESET, 0);
    }

    #[test]
    fn long_lines_are_cut_and_controls_replaced() {
        let mut r = rig();
        r.init();
        let long = vec![b'a'; MAX_LINE + 10];
        r.send(&[&long, b"\n\x07b\tc\xff\n"]);
        let l = r.lines();
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].len(), "[g-dm] ".len() + MAX_LINE);
        assert_eq!(l[1], format!("[g-dm] {}", "a".repeat(10)));
        assert_eq!(l[2], "[g-dm] ?b c\u{fffd}");
    }

    #[test]
    fn bad_addresses_need_reset_until_the_driver_resets() {
        let mut r = rig();
        r.init();
        // A descriptor pointing outside the stub's RAM.
        r.mem
            .write(DESC, &desc_bytes(0xffff_ffff_0000, 16, 0, 0))
            .unwrap();
        r.mem.write(AVAIL + 4, &0u16.to_le_bytes()).unwrap();
        r.mem.write(AVAIL + 2, &1u16.to_le_bytes()).unwrap();
        r.w(reg::QUEUE_NOTIFY, 1);
        assert!(r.r(reg::STATUS) & status::DEVICE_NEEDS_RESET != 0);
        assert_eq!(r.used_idx(), 0);
        // Further notifies do nothing; a reset and re-init bring it back.
        r.w(reg::QUEUE_NOTIFY, 1);
        r.w(reg::STATUS, 0);
        assert_eq!(r.r(reg::STATUS), 0);
        r.next_desc = 0;
        r.avail_idx = 0;
        r.mem.write(USED + 2, &0u16.to_le_bytes()).unwrap();
        r.init();
        r.send(&[b"back\n"]);
        assert_eq!(r.lines(), ["[g-dm] back"]);
    }

    #[test]
    fn hostile_rings_are_refused() {
        // A descriptor chain that loops on itself.
        let mut r = rig();
        r.init();
        r.mem.write(DATA, b"loop").unwrap();
        r.mem
            .write(DESC, &desc_bytes(DATA, 4, DESC_F_NEXT, 0))
            .unwrap();
        r.mem.write(AVAIL + 2, &1u16.to_le_bytes()).unwrap();
        r.w(reg::QUEUE_NOTIFY, 1);
        assert!(r.dev.status() & status::DEVICE_NEEDS_RESET != 0);
        // An avail index far ahead of what the queue can hold.
        let mut r = rig();
        r.init();
        r.mem.write(AVAIL + 2, &100u16.to_le_bytes()).unwrap();
        r.w(reg::QUEUE_NOTIFY, 1);
        assert!(r.dev.status() & status::DEVICE_NEEDS_RESET != 0);
        // A head index beyond the queue, an indirect descriptor.
        for (head, flags) in [(7u16, 0u16), (0, DESC_F_INDIRECT)] {
            let mut r = rig();
            r.init();
            r.mem.write(DESC, &desc_bytes(DATA, 4, flags, 0)).unwrap();
            r.mem.write(AVAIL + 4, &head.to_le_bytes()).unwrap();
            r.mem.write(AVAIL + 2, &1u16.to_le_bytes()).unwrap();
            r.w(reg::QUEUE_NOTIFY, 1);
            assert!(r.dev.status() & status::DEVICE_NEEDS_RESET != 0);
        }
    }

    #[test]
    fn refuses_unoffered_features_and_late_queue_changes() {
        let mut r = rig();
        r.w(reg::STATUS, (status::ACKNOWLEDGE | status::DRIVER) as u64);
        r.w(reg::DRIVER_FEATURES_SEL, 0);
        r.w(reg::DRIVER_FEATURES, 1 << 5); // VIRTIO_CONSOLE_F_MULTIPORT... not offered
        r.w(reg::DRIVER_FEATURES_SEL, 1);
        r.w(reg::DRIVER_FEATURES, 1);
        r.w(
            reg::STATUS,
            (status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK) as u64,
        );
        assert_eq!(r.r(reg::STATUS) & status::FEATURES_OK, 0);
        // Queue sizes that are not powers of two are not made ready.
        let mut r = rig();
        r.w(reg::QUEUE_SEL, 1);
        r.w(reg::QUEUE_NUM, 3);
        r.w(reg::QUEUE_READY, 1);
        assert_eq!(r.r(reg::QUEUE_READY), 0);
        // Queue 2 does not exist.
        r.w(reg::QUEUE_SEL, 2);
        assert_eq!(r.r(reg::QUEUE_NUM_MAX), 0);
        // Config space is all zero, non-32-bit register accesses read 0.
        assert_eq!(r.dev.mmio_read(&r.mem, reg::CONFIG, 2), 0);
        assert_eq!(r.dev.mmio_read(&r.mem, reg::MAGIC, 2), 0);
        assert_eq!(r.dev.mmio_read(&r.mem, reg::MAGIC, 8), 0);
    }

    #[test]
    fn random_register_traffic_never_panics() {
        let mut r = rig();
        r.init();
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let offsets = [
            reg::STATUS,
            reg::QUEUE_SEL,
            reg::QUEUE_NUM,
            reg::QUEUE_READY,
            reg::QUEUE_NOTIFY,
            reg::QUEUE_DESC_LOW,
            reg::QUEUE_DRIVER_LOW,
            reg::QUEUE_DEVICE_LOW,
            reg::QUEUE_DESC_HIGH,
            reg::DRIVER_FEATURES,
            reg::INTERRUPT_ACK,
        ];
        for i in 0..20000 {
            // Scribble on the rings and descriptors now and then.
            if i % 7 == 0 {
                let at = [DESC, AVAIL, USED][(next() % 3) as usize] + next() % 64;
                let _ = r.mem.write(at, &next().to_le_bytes());
            }
            let off = if next() % 4 == 0 {
                next() % 0x200
            } else {
                offsets[(next() % offsets.len() as u64) as usize]
            };
            let size = [1u8, 2, 4, 8][(next() % 4) as usize];
            let v = match next() % 3 {
                0 => next() % 8,
                1 => next() & 0xff_ffff,
                _ => next(),
            };
            if next() % 2 == 0 {
                r.dev.mmio_write(&r.mem, off, size, v);
            } else {
                r.dev.mmio_read(&r.mem, off, size);
            }
            if i % 1000 == 0 {
                r.init();
            }
        }
        r.dev.flush();
    }
}
