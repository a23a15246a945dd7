//! Debian's SeaBIOS from its reset vector on a bare machine (RAM, a CMOS that reads 0,
//! no PCI, debug console on port 0x402): how far POST gets exercises real 16/32-bit
//! code: with no timer interrupt it ends halted at "Press ESC for boot menu." (skipped
//! when /usr/share/seabios/bios-256k.bin is absent; output with `-- --nocapture`;
//! `EMU_SEABIOS_TRACE=n` prints the last n instruction addresses).

use hypervisor_emu::cpu::{CS, Cpu, Segment};
use hypervisor_emu::{Bus, EmuVcpu, RunExit};

struct Machine {
    ram: Vec<u8>,
    debug: Vec<u8>,
    cmos_index: u8,
    ports: std::collections::BTreeMap<u16, u64>,
    /// A timer interrupt every n instructions (a crude PIT + PIC).
    timer_every: Option<u64>,
    next_tick: u64,
    ticks: u64,
}

impl Bus for Machine {
    fn ram_read(&mut self, gpa: u64, buf: &mut [u8]) -> bool {
        let (s, e) = (gpa as usize, gpa as usize + buf.len());
        if e <= self.ram.len() {
            buf.copy_from_slice(&self.ram[s..e]);
            true
        } else {
            false
        }
    }
    fn ram_write(&mut self, gpa: u64, buf: &[u8]) -> bool {
        let (s, e) = (gpa as usize, gpa as usize + buf.len());
        if e <= self.ram.len() {
            self.ram[s..e].copy_from_slice(buf);
            true
        } else {
            false
        }
    }
    fn mmio_read(&mut self, _t: u64, _gpa: u64, buf: &mut [u8]) {
        buf.fill(0xff);
    }
    fn mmio_write(&mut self, _t: u64, _gpa: u64, _buf: &[u8]) {}
    fn pio_in(&mut self, _t: u64, port: u16, _size: u8) -> u32 {
        *self.ports.entry(port).or_default() += 1;
        match port {
            0x71 => match self.cmos_index {
                // Extended memory 64 KiB units above 16 MiB: 16 MiB more.
                0x35 => 0x01,
                _ => 0,
            },
            0x402 => 0xe9,
            _ => u32::MAX,
        }
    }
    fn pio_out(&mut self, _t: u64, port: u16, _size: u8, value: u32) {
        *self.ports.entry(port).or_default() += 1;
        match port {
            0x402 => self.debug.push(value as u8),
            0x70 => self.cmos_index = value as u8 & 0x7f,
            _ => {}
        }
    }
    fn cpuid(&mut self, leaf: u32, _subleaf: u32) -> [u32; 4] {
        match leaf {
            0 => [1, 0x756e_6547, 0x6c65_746e, 0x4965_6e69],
            1 => [0x663, 0, 0, 0x0781_abfd],
            _ => [0; 4],
        }
    }
    fn rdmsr(&mut self, _t: u64, _msr: u32) -> Option<u64> {
        Some(0)
    }
    fn wrmsr(&mut self, _t: u64, _msr: u32, _value: u64) -> bool {
        true
    }
    fn tsc(&mut self, t: u64) -> u64 {
        t
    }
    fn hypercall(&mut self, _t: u64, _gpr: &mut [u64; 16], _long_mode: bool) {}
    fn interrupt_pending(&mut self, t: u64) -> bool {
        self.timer_every.is_some_and(|n| t >= self.next_tick.max(n))
    }
    fn acknowledge_interrupt(&mut self, t: u64) -> Option<u8> {
        // IRQ0 through a PIC at base 8 (SeaBIOS's real-mode layout).
        self.next_tick = t + self.timer_every?;
        self.ticks += 1;
        Some(8)
    }
    fn take_written_code_pages(&mut self, _f: &mut dyn FnMut(u64)) {}
    fn stop_requested(&mut self) -> bool {
        false
    }
}

#[test]
fn seabios_post_reaches_the_boot_menu_prompt() {
    let Ok(img) = std::fs::read("/usr/share/seabios/bios-256k.bin") else {
        eprintln!("no SeaBIOS image; skipped");
        return;
    };
    let mut m = Machine {
        ram: vec![0; 32 << 20],
        debug: Vec::new(),
        cmos_index: 0,
        ports: Default::default(),
        timer_every: None,
        next_tick: 0,
        ticks: 0,
    };
    // The image ends at 1 MiB, as our firmware places it.
    m.ram[0x10_0000 - img.len()..0x10_0000].copy_from_slice(&img);
    let mut c = Cpu::reset();
    c.seg[CS] = Segment::new(0xf000, 0xf0000, 0xffff, 0x9b);
    let mut v = EmuVcpu::new(c);
    let t = std::time::Instant::now();
    let mut exit = RunExit::Budget;
    // EMU_SEABIOS_TRACE=n: single-step and print the last n instruction addresses.
    let trace: usize = std::env::var("EMU_SEABIOS_TRACE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if trace > 0 {
        let mut ring = std::collections::VecDeque::new();
        for _ in 0..50_000_000u64 {
            let c = &v.cpu;
            ring.push_back((c.seg[CS].base + c.rip, c.gpr[4], c.gpr[0]));
            if ring.len() > trace {
                ring.pop_front();
            }
            exit = v.run(&mut m, 1);
            if exit != RunExit::Budget {
                break;
            }
        }
        for (ip, sp, ax) in ring {
            eprintln!("{ip:#x} sp={sp:#x} ax={ax:#x}");
        }
    } else {
        for _ in 0..200 {
            exit = v.run(&mut m, 1_000_000);
            if exit != RunExit::Budget {
                break;
            }
        }
    }
    eprintln!(
        "--- SeaBIOS debug output ---\n{}",
        String::from_utf8_lossy(&m.debug)
    );
    eprintln!(
        "--- {exit:?} after {} instructions in {:?}; {}",
        v.retired(),
        t.elapsed(),
        v.summary()
    );
    eprintln!("ports: {:x?}", m.ports);
    let log = String::from_utf8_lossy(&m.debug);
    assert!(log.contains("Relocating init from"), "{log}");
    assert!(log.contains("Press ESC for boot menu."), "{log}");
    assert_eq!(
        exit,
        RunExit::Halted {
            interrupts_enabled: true
        }
    );
}

/// With a timer interrupt (real-mode IRQ0 delivery, HLT wake-ups) the boot menu times
/// out and SeaBIOS tries INT 19h/18h: no disks, so "No bootable device."
#[test]
fn seabios_with_a_timer_gets_past_the_boot_menu() {
    let Ok(img) = std::fs::read("/usr/share/seabios/bios-256k.bin") else {
        return;
    };
    let mut m = Machine {
        ram: vec![0; 32 << 20],
        debug: Vec::new(),
        cmos_index: 0,
        ports: Default::default(),
        timer_every: Some(20_000),
        next_tick: 0,
        ticks: 0,
    };
    m.ram[0x10_0000 - img.len()..0x10_0000].copy_from_slice(&img);
    let mut c = Cpu::reset();
    c.seg[CS] = Segment::new(0xf000, 0xf0000, 0xffff, 0x9b);
    let mut v = EmuVcpu::new(c);
    let mut exit = RunExit::Budget;
    for _ in 0..200 {
        exit = v.run(&mut m, 1_000_000);
        if matches!(exit, RunExit::Shutdown(_)) {
            break;
        }
        if matches!(exit, RunExit::Halted { .. }) {
            // Let time pass to the next tick.
            m.next_tick = v.retired();
        }
    }
    eprintln!("{}", String::from_utf8_lossy(&m.debug));
    eprintln!(
        "{exit:?} {} ticks {}; {}",
        v.retired(),
        m.ticks,
        v.summary()
    );
    let log = String::from_utf8_lossy(&m.debug);
    assert!(log.contains("enter handle_19:"), "{log}");
    assert!(log.contains("No bootable device."), "{log}");
}
