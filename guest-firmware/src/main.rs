//! chassis-firmware, the guest image: hvmloader's job for a chassis HVM guest.
//!
//! Entered through PVH (see rt/entry.rs). In order: COM1 console; hvm_start_info;
//! PCI PIRQ/ELCR routing, scan, BAR placement; ACPI tables; e820; then either a
//! diagnostic power-off (no modules) or a direct Linux boot (module 0 = bzImage,
//! module 1 = initrd, start-info cmdline = kernel command line). Any failure prints
//! `chassis-firmware: FATAL: ...` and triple-faults.
//!
//! Console output, one line each (tests parse these):
//!
//! ```text
//! chassis-firmware: start
//! PCI 00:02.0 5853:0001 rev 01 class ff8000 subsys 5853:0001 pin A irq 11
//! BAR 00:02.0 1 mem 0xe0000000 size 0x1000000
//! BAR 00:02.0 0 io 0xc000 size 0x100
//! ACPI RSDP 0x000f0000 rev 2
//! ACPI XSDT 0x... len N          (also RSDT, FACP, DSDT, FACS, APIC)
//! E820 0x0000000000000000-0x000000000009ffff ram
//! chassis-firmware: diagnostic boot done, powering off
//! chassis-firmware: booting Linux <version> cmdline "<cmdline>"
//! ```
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "chassis-firmware is a guest image: build it with \
         `cargo build --profile firmware -p chassis-firmware --target x86_64-unknown-none`"
    );
}

#[cfg(target_os = "none")]
#[path = "rt/mod.rs"]
mod rt;

#[cfg(target_os = "none")]
mod firmware {
    use crate::println;
    use crate::rt::{entry, io, mem, serial};
    use chassis_firmware::bzimage::{self, BootSetup};
    use chassis_firmware::e820::{self, Entry, Map};
    use chassis_firmware::fmt::Escaped;
    use chassis_firmware::pci::{self, BarKind, BarReq, FunctionLine, Placed, cfg, command};
    use chassis_firmware::{acpi, platform as p, seabios};
    use hypervisor_abi::pvh::{
        FIRMWARE_BASE, FIRMWARE_END, HvmMemmapEntry, HvmModlistEntry, HvmStartInfo, MEMMAP_MAX,
        PCI_HOLE_START, PCI_IO_START, PCI_MMIO_END, START_INFO_MAGIC,
    };

    /// Prints `chassis-firmware: FATAL: <message>` and triple-faults.
    macro_rules! fatal {
        ($($arg:tt)*) => {{
            println!("chassis-firmware: FATAL: {}", format_args!($($arg)*));
            entry::triple_fault()
        }};
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo) -> ! {
        match info.location() {
            Some(l) => fatal!("panic at {}:{}: {}", l.file(), l.line(), info.message()),
            None => fatal!("panic: {}", info.message()),
        }
    }

    const MAX_MODULES: usize = 8;
    const MAX_BARS: usize = 128;

    struct StartInfo {
        addr: u64,
        version: u32,
        memmap: [Entry; MEMMAP_MAX],
        memmap_len: usize,
        modules: [HvmModlistEntry; MAX_MODULES],
        nr_modules: usize,
        cmdline: &'static [u8],
    }

    /// NUL-terminated bytes at `addr`, at most `max` long (empty if unmapped).
    fn c_string(addr: u64, max: usize) -> &'static [u8] {
        if addr == 0 || !mem::mapped(addr, max as u64) {
            return &[];
        }
        // SAFETY: mapped below 4 GiB; start-info data is not written while we run.
        let raw = unsafe { mem::slice(addr, max) };
        let end = raw.iter().position(|&c| c == 0).unwrap_or(max);
        &raw[..end]
    }

    fn read_start_info(addr: u64) -> StartInfo {
        if !mem::mapped(addr, HvmStartInfo::SIZE as u64) {
            fatal!("no hvm_start_info (EBX = {addr:#x})");
        }
        // SAFETY: mapped; HvmStartInfo is plain integers.
        let si: HvmStartInfo = unsafe { mem::read(addr) };
        if si.magic != START_INFO_MAGIC {
            fatal!(
                "bad hvm_start_info magic {:#010x} at {addr:#x} (want {START_INFO_MAGIC:#010x})",
                si.magic
            );
        }
        let mut out = StartInfo {
            addr,
            version: si.version,
            memmap: [Entry::default(); MEMMAP_MAX],
            memmap_len: 0,
            modules: [HvmModlistEntry::default(); MAX_MODULES],
            nr_modules: 0,
            cmdline: c_string(si.cmdline_paddr, hypervisor_abi::pvh::CMDLINE_MAX),
        };
        // The memory map exists from version 1 on.
        if si.version >= 1 && si.memmap_paddr != 0 {
            let n = (si.memmap_entries as usize).min(MEMMAP_MAX);
            if n < si.memmap_entries as usize {
                println!(
                    "chassis-firmware: warning: {} memmap entries, using {n}",
                    si.memmap_entries
                );
            }
            for i in 0..n {
                let a = si.memmap_paddr + (i * HvmMemmapEntry::SIZE) as u64;
                if !mem::mapped(a, HvmMemmapEntry::SIZE as u64) {
                    break;
                }
                // SAFETY: mapped; plain integers.
                let e: HvmMemmapEntry = unsafe { mem::read(a) };
                out.memmap[out.memmap_len] = Entry::new(e.addr, e.size, e.kind);
                out.memmap_len += 1;
            }
        }
        if si.modlist_paddr != 0 {
            let n = (si.nr_modules as usize).min(MAX_MODULES);
            for i in 0..n {
                let a = si.modlist_paddr + (i * HvmModlistEntry::SIZE) as u64;
                if !mem::mapped(a, HvmModlistEntry::SIZE as u64) {
                    break;
                }
                // SAFETY: mapped; plain integers.
                out.modules[i] = unsafe { mem::read(a) };
                out.nr_modules += 1;
            }
        }
        out
    }

    /// vCPU count from CMOS 0x5f (= vcpus - 1), 1 if absent.
    fn vcpu_count() -> u32 {
        match io::cmos_read(0x5f) {
            0xff => 1,
            v => (v as u32 + 1).min(p::MAX_VCPUS),
        }
    }

    /// Per-function state kept between the scan and the decode enable.
    #[derive(Clone, Copy, Default)]
    struct Func {
        devfn: u8,
        command: u16,
        class: u32,
        has_bars: bool,
        decode: u16,
    }

    fn bar_offset(index: u8, header_type: u8) -> u8 {
        if index == pci::ROM_INDEX {
            if header_type & 0x7f == 1 {
                cfg::BRIDGE_ROM
            } else {
                cfg::ROM
            }
        } else {
            cfg::BAR0 + 4 * index
        }
    }

    /// Sizes the BARs of one function (decode already off) into `reqs`.
    fn size_bars(devfn: u8, header_type: u8, reqs: &mut [BarReq], n: &mut usize) -> bool {
        let nbars = match header_type & 0x7f {
            0 => 6,
            1 => 2,
            _ => 0,
        };
        let mut found = false;
        let mut push = |r: BarReq, n: &mut usize| {
            if *n < reqs.len() {
                reqs[*n] = r;
                *n += 1;
            } else {
                println!(
                    "chassis-firmware: warning: too many BARs, {} dropped",
                    pci::Bdf(devfn)
                );
            }
        };
        let mut i = 0u8;
        while i < nbars {
            let off = cfg::BAR0 + 4 * i;
            let orig = io::pci::read32(devfn, off);
            io::pci::write32(devfn, off, 0xffff_ffff);
            let lo = io::pci::read32(devfn, off);
            io::pci::write32(devfn, off, orig);
            let kind = pci::bar_kind(lo);
            let mut hi = 0;
            if kind == BarKind::Mem64 && i + 1 < nbars {
                let orig_hi = io::pci::read32(devfn, off + 4);
                io::pci::write32(devfn, off + 4, 0xffff_ffff);
                hi = io::pci::read32(devfn, off + 4);
                io::pci::write32(devfn, off + 4, orig_hi);
            }
            // 0: not implemented; all ones: nothing answers (no function).
            let size = match lo {
                0 | 0xffff_ffff => 0,
                _ => pci::bar_size(kind, lo, hi),
            };
            if size != 0 {
                found = true;
                push(
                    BarReq {
                        devfn,
                        index: i,
                        kind,
                        size,
                    },
                    n,
                );
            }
            i += if kind == BarKind::Mem64 { 2 } else { 1 };
        }
        if nbars > 0 {
            let off = bar_offset(pci::ROM_INDEX, header_type);
            let orig = io::pci::read32(devfn, off);
            io::pci::write32(devfn, off, 0xffff_f800);
            let v = io::pci::read32(devfn, off);
            io::pci::write32(devfn, off, orig & !1);
            let size = if v == 0xffff_ffff {
                0
            } else {
                pci::bar_size(BarKind::Rom, v, 0)
            };
            if size != 0 {
                found = true;
                push(
                    BarReq {
                        devfn,
                        index: pci::ROM_INDEX,
                        kind: BarKind::Rom,
                        size,
                    },
                    n,
                );
            }
        }
        found
    }

    /// PIRQ routing, bus-0 scan, per-device set-up, BAR placement, decode enable.
    fn pci_setup() -> [u8; 4] {
        let routes = pci::pirq_routes(p::PCI_ISA_IRQ_MASK);
        let isa = io::pci::read32(pci::PIIX3_DEVFN, cfg::VENDOR);
        if isa != 0x7000_8086 {
            println!(
                "chassis-firmware: warning: 00:01.0 is {:04x}:{:04x}, not a PIIX3",
                isa & 0xffff,
                isa >> 16
            );
        }
        for (i, irq) in routes.iter().enumerate() {
            io::pci::write8(pci::PIIX3_DEVFN, cfg::PIIX3_PIRQRC + i as u8, *irq);
        }
        io::outb(0x4d0, p::PCI_ISA_IRQ_MASK as u8);
        io::outb(0x4d1, (p::PCI_ISA_IRQ_MASK >> 8) as u8);

        let mut funcs = [Func::default(); 256];
        let mut nfuncs = 0;
        let mut reqs = [BarReq {
            devfn: 0,
            index: 0,
            kind: BarKind::Io,
            size: 0,
        }; MAX_BARS];
        let mut nreqs = 0;

        for dev in 0u8..32 {
            // Function 0 exists whenever any function does (PCI 3.0 §6.2.1).
            if matches!(io::pci::read16(dev << 3, cfg::VENDOR), 0xffff | 0) {
                continue;
            }
            let ht0 = io::pci::read8(dev << 3, cfg::HEADER_TYPE);
            let nfn = if ht0 & 0x80 != 0 { 8 } else { 1 };
            for func in 0..nfn {
                let devfn = dev << 3 | func;
                let id = io::pci::read32(devfn, cfg::VENDOR);
                let (vendor, device) = (id as u16, (id >> 16) as u16);
                if vendor == 0xffff || vendor == 0 {
                    continue;
                }
                let class_rev = io::pci::read32(devfn, cfg::REVISION);
                let class = class_rev >> 8;
                let header_type = io::pci::read8(devfn, cfg::HEADER_TYPE);
                let subsys = if header_type & 0x7f == 0 {
                    io::pci::read32(devfn, cfg::SUBSYS_VENDOR)
                } else {
                    0
                };
                let pin = io::pci::read8(devfn, cfg::INTERRUPT_PIN);
                let mut irq = pci::intx_irq(dev, pin, routes);

                let is_pm = (class >> 8, vendor, device) == (0x0680, 0x8086, 0x7113);
                if is_pm {
                    // PIIX4 PM: SCI on IRQ 9, PM block at 0xb000, PMIOSE on.
                    io::pci::write32(devfn, cfg::PIIX4_PMBA, p::PM_BASE as u32 | 1);
                    io::pci::write8(devfn, cfg::PIIX4_PMREGMISC, 1);
                    irq = Some(p::SCI_IRQ);
                } else if (class >> 8, vendor) == (0x0101, 0x8086) {
                    // PIIX IDE: enable legacy decode on both channels.
                    io::pci::write16(devfn, cfg::IDE_TIM_PRI, 0x8000);
                    io::pci::write16(devfn, cfg::IDE_TIM_SEC, 0x8000);
                }
                if let Some(irq) = irq {
                    io::pci::write8(devfn, cfg::INTERRUPT_LINE, irq);
                }
                println!(
                    "{}",
                    FunctionLine {
                        devfn,
                        vendor,
                        device,
                        revision: class_rev as u8,
                        class,
                        subsys_vendor: subsys as u16,
                        subsys: (subsys >> 16) as u16,
                        pin,
                        irq,
                    }
                );

                let cmd = io::pci::read16(devfn, cfg::COMMAND);
                io::pci::write16(devfn, cfg::COMMAND, cmd & !(command::IO | command::MEMORY));
                let has_bars = size_bars(devfn, header_type, &mut reqs, &mut nreqs);
                funcs[nfuncs] = Func {
                    devfn,
                    command: cmd,
                    class,
                    has_bars,
                    decode: 0,
                };
                nfuncs += 1;
            }
        }

        let mut out = [None; MAX_BARS];
        let windows = pci::Windows {
            mem_start: PCI_HOLE_START,
            mem_end: PCI_MMIO_END,
            io_start: PCI_IO_START as u64,
            io_end: 0x1_0000,
        };
        let reqs = &mut reqs[..nreqs];
        pci::allocate(reqs, windows, &mut out);
        for (r, addr) in reqs.iter().zip(out.iter()) {
            let Some(addr) = *addr else {
                println!(
                    "chassis-firmware: warning: BAR {} {} size {:#x} does not fit, left unassigned",
                    pci::Bdf(r.devfn),
                    r.index,
                    r.size
                );
                continue;
            };
            let f = funcs[..nfuncs].iter_mut().find(|f| f.devfn == r.devfn);
            let header_type = io::pci::read8(r.devfn, cfg::HEADER_TYPE);
            let off = bar_offset(r.index, header_type);
            match r.kind {
                BarKind::Io => io::pci::write32(r.devfn, off, addr as u32),
                BarKind::Mem32 | BarKind::Rom => io::pci::write32(r.devfn, off, addr as u32),
                BarKind::Mem64 => {
                    io::pci::write32(r.devfn, off, addr as u32);
                    io::pci::write32(r.devfn, off + 4, (addr >> 32) as u32);
                }
            }
            if let Some(f) = f {
                f.decode |= if r.kind == BarKind::Io {
                    command::IO
                } else {
                    command::MEMORY
                };
            }
            println!("{}", Placed { req: *r, addr });
        }

        for f in &funcs[..nfuncs] {
            let mut cmd = f.command;
            if f.has_bars {
                cmd &= !(command::IO | command::MEMORY);
                cmd |= f.decode;
                if f.decode != 0 {
                    cmd |= command::BUS_MASTER;
                }
            }
            if f.class >> 8 == 0x0300 {
                // The primary VGA always decodes (legacy VGA ports and memory).
                cmd |= command::IO | command::MEMORY;
            }
            io::pci::write16(f.devfn, cfg::COMMAND, cmd);
        }
        routes
    }

    /// Our reservations: the BIOS area from `bios_start` (0xf0000, or where SeaBIOS's
    /// image starts) to 1 MiB, the platform MMIO below 4 GiB, the ACPI tables.
    fn e820_overrides(acpi: Option<(u64, u64)>, bios_start: u64) -> ([Entry; 3], usize) {
        let mut e = [
            Entry::new(bios_start, p::BIOS_AREA_END - bios_start, e820::RESERVED),
            Entry::new(
                p::HIGH_RESERVED_START,
                p::FOUR_GIB - p::HIGH_RESERVED_START,
                e820::RESERVED,
            ),
            Entry::default(),
        ];
        let mut n = 2;
        if let Some((base, size)) = acpi {
            e[2] = Entry::new(base, size, e820::ACPI);
            n = 3;
        }
        (e, n)
    }

    /// Builds the ACPI tables and the final e820; returns (map, RSDP address). With
    /// `bios_start` (a SeaBIOS hand-over), the BIOS image will cover the F segment, so the
    /// RSDP stays in the ACPI area (SeaBIOS copies it into its F segment itself) and the
    /// reserved BIOS area starts at the image.
    fn acpi_and_e820(
        si: &StartInfo,
        vcpus: u32,
        routes: [u8; 4],
        bios_start: Option<u64>,
    ) -> (Map, u64) {
        let memmap = &si.memmap[..si.memmap_len];
        let reserve_from = bios_start.unwrap_or(p::BIOS_AREA_START);
        let (ov, n) = e820_overrides(None, reserve_from);
        let map0 = Map::build(&[memmap, &ov[..n]]);

        let mut avoid = [(0u64, 0u64); MAX_MODULES];
        for (slot, m) in avoid.iter_mut().zip(&si.modules[..si.nr_modules]) {
            *slot = (m.paddr, m.paddr.saturating_add(m.size));
        }
        let Some(base) = e820::carve_top(&map0, p::ACPI_AREA_SIZE, FIRMWARE_END, &avoid) else {
            fatal!("no RAM below 4 GiB for the ACPI tables");
        };
        // SAFETY: carve_top returned RAM below 4 GiB that no module or firmware uses.
        let area = unsafe { mem::slice_mut(base, p::ACPI_AREA_SIZE as usize) };
        let t = match acpi::build(area, base, vcpus, routes) {
            Ok(t) => t,
            Err(e) => fatal!("building ACPI tables: {e:?}"),
        };

        // The RSDP goes where OSes scan for it; if that area is not writable RAM, a
        // copy at the end of the table area is used (and handed to Linux directly).
        let mut rsdp_addr = p::RSDP_ADDR;
        if bios_start.is_some() {
            rsdp_addr = base + p::ACPI_AREA_SIZE - 64;
            // SAFETY: inside our ACPI area, past what the tables used.
            unsafe { mem::write_bytes(rsdp_addr, &t.rsdp) };
        } else {
            // SAFETY: 0xf0000 is the BIOS area, reserved for us in the e820.
            unsafe { mem::write_bytes(rsdp_addr, &t.rsdp) };
        }
        // SAFETY: as above.
        if unsafe { mem::slice(rsdp_addr, acpi::RSDP_LEN) } != t.rsdp {
            rsdp_addr = base + p::ACPI_AREA_SIZE - 64;
            println!(
                "chassis-firmware: warning: 0xf0000 is not writable, RSDP placed at {rsdp_addr:#x}"
            );
            // SAFETY: inside our ACPI area, past what the tables used.
            unsafe { mem::write_bytes(rsdp_addr, &t.rsdp) };
        }
        println!("ACPI RSDP {rsdp_addr:#010x} rev 2");
        for (sig, pl) in [
            ("XSDT", t.xsdt),
            ("RSDT", t.rsdt),
            ("FACP", t.fadt),
            ("DSDT", t.dsdt),
            ("FACS", t.facs),
            ("APIC", t.madt),
        ] {
            println!("ACPI {sig} {:#010x} len {}", pl.addr, pl.len);
        }

        let (ov, n) = e820_overrides(Some((base, p::ACPI_AREA_SIZE)), reserve_from);
        let map = Map::build(&[memmap, &ov[..n]]);
        if map.truncated {
            println!("chassis-firmware: warning: e820 truncated");
        }
        for e in map.entries() {
            println!("{e}");
        }
        (map, rsdp_addr)
    }

    /// ACPI S5 the way an OS does it on this chipset.
    fn power_off() -> ! {
        let mut cnt = io::inw(p::PM1A_CNT);
        if cnt & p::PM1_SCI_EN == 0 {
            io::outb(p::SMI_CMD, p::ACPI_ENABLE);
            for _ in 0..1000 {
                cnt = io::inw(p::PM1A_CNT);
                if cnt & p::PM1_SCI_EN != 0 {
                    break;
                }
            }
            if cnt & p::PM1_SCI_EN == 0 {
                println!("chassis-firmware: warning: SCI_EN still clear after ACPI_ENABLE");
            }
        }
        // SLP_TYP 0 is Xen's "V1" S5.
        io::outw(p::PM1A_CNT, (cnt & !p::PM1_SLP_TYP_MASK) | p::PM1_SLP_EN);
        for _ in 0..10_000 {
            io::inb(0x80);
        }
        fatal!(
            "ACPI S5 (PM1a_CNT {:#x} <- SLP_EN) did not power off",
            p::PM1A_CNT
        );
    }

    fn boot_linux(si: &StartInfo, map: &Map, rsdp: u64) -> ! {
        let km = si.modules[hypervisor_abi::pvh::MODULE_KERNEL];
        if !mem::mapped(km.paddr, km.size) || km.size > usize::MAX as u64 {
            fatal!(
                "kernel module at {:#x} size {:#x} is not below 4 GiB",
                km.paddr,
                km.size
            );
        }
        // SAFETY: mapped; the module is not written while we read it (we copy the
        // kernel elsewhere, checked not to overlap).
        let image = unsafe { mem::slice(km.paddr, km.size as usize) };
        let k = match bzimage::parse(image) {
            Ok(k) => k,
            Err(e) => fatal!("kernel module: {e}"),
        };
        let initrd = (si.nr_modules > hypervisor_abi::pvh::MODULE_RAMDISK)
            .then(|| si.modules[hypervisor_abi::pvh::MODULE_RAMDISK])
            .filter(|m| m.size != 0);
        // The host may have unpacked the kernel proper already and placed it where the
        // decompressor would (module "vmlinux", entered at its start: startup_64).
        // Otherwise the protected-mode part is copied and its decompressor runs.
        let unpacked = named_module(si, b"vmlinux");
        let entry = if let Some(vm) = unpacked {
            if vm.size < k.span() || !mem::mapped(vm.paddr, vm.size) {
                fatal!(
                    "vmlinux module at {:#x} size {:#x} does not cover the kernel's {:#x} bytes",
                    vm.paddr,
                    vm.size,
                    k.span()
                );
            }
            println!(
                "chassis-firmware: kernel unpacked by the host at {:#x} (init_size {:#x})",
                vm.paddr, vm.size
            );
            vm.paddr
        } else {
            let load = copy_kernel(&k, image, km, initrd, map);
            load + bzimage::ENTRY_64_OFFSET
        };
        let max = k.cmdline_max().min(p::KERNEL_CMDLINE_MAX - 1);
        let cmdline = bzimage::cmdline_bytes(si.cmdline, max);
        if cmdline.len() < si.cmdline.len() {
            println!(
                "chassis-firmware: warning: command line truncated to {} bytes",
                cmdline.len()
            );
        }
        // SAFETY: our low pages below the start info (0x6000..0x8000), not overlapping
        // the start-info cmdline at 0x9000 nor anything the kernel is copied to.
        unsafe {
            mem::write_bytes(p::KERNEL_CMDLINE_ADDR, cmdline);
            mem::write_bytes(p::KERNEL_CMDLINE_ADDR + cmdline.len() as u64, &[0]);
        }
        // SAFETY: as above; 4 KiB page owned by the firmware.
        let bp =
            unsafe { &mut *(p::BOOT_PARAMS_ADDR as usize as *mut [u8; bzimage::BOOT_PARAMS_SIZE]) };
        bzimage::fill_boot_params(
            bp,
            image,
            &k,
            &BootSetup {
                cmdline_addr: p::KERNEL_CMDLINE_ADDR,
                ramdisk: initrd.map(|m| (m.paddr, m.size)),
                e820: map.entries(),
                rsdp,
            },
        );
        if let Some(rd) = initrd {
            println!(
                "chassis-firmware: initrd at {:#x} size {:#x}",
                rd.paddr, rd.size
            );
        }
        match k.version {
            Some(v) => println!(
                "chassis-firmware: booting Linux {} cmdline \"{}\"",
                Escaped(v),
                Escaped(cmdline)
            ),
            None => println!(
                "chassis-firmware: booting Linux cmdline \"{}\"",
                Escaped(cmdline)
            ),
        }
        // SAFETY: kernel copied per the 64-bit boot protocol, zero page filled, and
        // the identity map covers both.
        unsafe { entry::jump_linux(entry, p::BOOT_PARAMS_ADDR) }
    }

    /// Copy the bzImage's protected-mode part (decompressor + payload) to its load
    /// address; returns the address.
    fn copy_kernel(
        k: &bzimage::Kernel<'_>,
        image: &[u8],
        km: HvmModlistEntry,
        initrd: Option<HvmModlistEntry>,
        map: &Map,
    ) -> u64 {
        let mut avoid = [
            (FIRMWARE_BASE, FIRMWARE_END),
            (km.paddr, km.paddr + km.size),
            (0, 0),
        ];
        if let Some(rd) = initrd {
            avoid[2] = (rd.paddr, rd.paddr.saturating_add(rd.size));
        }
        let load = match k.choose_load_addr(map, &avoid) {
            Ok(a) => a,
            Err(e) => fatal!(
                "kernel needs {:#x} bytes at {:#x} (module at {:#x}-{:#x}): {e}",
                k.span(),
                k.pref_address,
                km.paddr,
                km.paddr + km.size
            ),
        };
        if load != k.pref_address {
            println!(
                "chassis-firmware: pref_address {:#x} is taken, loading the relocatable kernel at {load:#x}",
                k.pref_address
            );
        }
        // SAFETY: [load, load + span) is RAM below 4 GiB, clear of the firmware, the
        // modules and the ACPI area (choose_load_addr); the source is the module.
        unsafe {
            core::ptr::copy_nonoverlapping(
                image[k.pm_offset..].as_ptr(),
                load as usize as *mut u8,
                k.pm_len,
            );
        }

        load
    }

    /// The module whose name (its cmdline string) is `name`.
    fn named_module(si: &StartInfo, name: &[u8]) -> Option<HvmModlistEntry> {
        si.modules[..si.nr_modules]
            .iter()
            .find(|m| c_string(m.cmdline_paddr, 64) == name)
            .copied()
    }

    /// The module named "firmware" (the SeaBIOS image), if any.
    fn bios_module(si: &StartInfo) -> Option<HvmModlistEntry> {
        named_module(si, b"firmware")
    }

    /// SeaBIOS's Xen path: info structure at 0x1000 (RSDP, e820), the image copied to end
    /// at 1 MiB, then real mode at f000:fff0.
    fn boot_seabios(m: &HvmModlistEntry, load: u64, map: &Map, rsdp: u64) -> ! {
        if !mem::mapped(m.paddr, m.size) || m.paddr < FIRMWARE_END {
            fatal!(
                "SeaBIOS module at {:#x} size {:#x} is not RAM above the firmware",
                m.paddr,
                m.size
            );
        }
        let Ok(rsdp32) = u32::try_from(rsdp) else {
            fatal!("RSDP at {rsdp:#x} is above 4 GiB");
        };
        println!(
            "chassis-firmware: handing over to SeaBIOS ({} bytes at {load:#x})",
            m.size
        );
        // SAFETY: [0x1000, 0x2000) is low RAM nothing of ours uses (the start info is at
        // 0x8000, the firmware above 1 MiB).
        let e820_area = unsafe {
            mem::slice_mut(
                seabios::E820_ADDR,
                (seabios::E820_LIMIT - seabios::E820_ADDR) as usize,
            )
        };
        let n = seabios::e820_bytes(map.entries(), e820_area);
        if n < map.entries().len() {
            println!("chassis-firmware: warning: SeaBIOS gets {n} e820 entries");
        }
        // SAFETY: as above.
        unsafe {
            mem::write_bytes(seabios::TABLES_ADDR, &rsdp32.to_le_bytes());
            mem::write_bytes(
                seabios::INFO_ADDR,
                &seabios::info(
                    seabios::TABLES_ADDR as u32,
                    1,
                    seabios::E820_ADDR as u32,
                    n as u32,
                ),
            );
        }
        // SAFETY: the module is RAM above the firmware (checked), the destination the
        // BIOS area below 1 MiB, reserved in the e820; they do not overlap.
        unsafe {
            core::ptr::copy_nonoverlapping(
                m.paddr as usize as *const u8,
                load as usize as *mut u8,
                m.size as usize,
            );
        }
        // SAFETY: the image is in place; 0x7000 is free on this path.
        unsafe { entry::enter_bios_reset_vector() }
    }

    #[unsafe(no_mangle)]
    extern "C" fn chassis_main(start_info: u64) -> ! {
        serial::init();
        println!("chassis-firmware: start");
        let si = read_start_info(start_info);
        println!(
            "chassis-firmware: start info at {:#x} version {}: {} modules, {} memmap entries, cmdline \"{}\"",
            si.addr,
            si.version,
            si.nr_modules,
            si.memmap_len,
            Escaped(si.cmdline)
        );
        for (i, m) in si.modules[..si.nr_modules].iter().enumerate() {
            println!(
                "chassis-firmware: module {i} at {:#x} size {:#x} \"{}\"",
                m.paddr,
                m.size,
                Escaped(c_string(m.cmdline_paddr, 64))
            );
        }
        if si.memmap_len == 0 {
            fatal!("hvm_start_info has no memory map");
        }
        let vcpus = vcpu_count();
        println!("chassis-firmware: {vcpus} vCPUs");

        let bios = bios_module(&si).map(|m| match seabios::load_addr(m.size) {
            Some(load) => (m, load),
            None => fatal!(
                "the SeaBIOS module is {:#x} bytes; a BIOS image is at most {:#x} bytes, a multiple of 16",
                m.size,
                seabios::BIOS_MAX
            ),
        });

        let routes = pci_setup();
        let (map, rsdp) = acpi_and_e820(&si, vcpus, routes, bios.map(|b| b.1));

        if let Some((m, load)) = bios {
            boot_seabios(&m, load, &map, rsdp);
        }

        if si.nr_modules == 0 {
            println!("chassis-firmware: diagnostic boot done, powering off");
            power_off();
        }
        boot_linux(&si, &map, rsdp)
    }
}
