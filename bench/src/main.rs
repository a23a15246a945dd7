//! `chassis-bench`: the PIO round-trip benchmark (`make bench`).
//!
//! One guest payload, a minimal PVH ELF, runs unchanged under
//!
//! * chassis on `kvm`, in this process through `hypervisor_core::run_domain_with_stats`
//!   (which also returns exit counts),
//! * chassis on `kvm` through the CLI (`target/release/chassis create` with a generated
//!   cfg and `CHASSIS_FIRMWARE` = the payload), to include the toolstack's start-up,
//! * QEMU `-M pc -accel kvm` and
//! * QEMU `-M pc -accel tcg` (`-kernel payload.elf`, booted through its PVH note),
//!
//! each with two loop lengths N1 < N2, `runs` times (median). The fixed cost (process
//! start, SeaBIOS in QEMU's case, our set-up) cancels in the difference:
//! per-PIO = (median t(N2) - median t(N1)) / (N2 - N1). As a cross-check the payload
//! writes a marker byte to COM1 right before (`<`) and right after (`>`) the loop; the
//! host timestamps their arrival (a FIFO or a pipe) and divides by N2.
//!
//! Nothing here asserts a time; the output is a table of figures and ratios.
//!
//! Arguments: `pio`, `compute`, `boot` pick benchmarks (default: all three).
//! Environment: `CHASSIS_BENCH_RUNS` (default 3; `CHASSIS_BENCH_BOOT_RUNS` for the boot), `CHASSIS_BIN` (default: `chassis` next
//! to this executable), `QEMU` (default `qemu-system-x86_64`).

mod boot;
mod compute;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chassis_devices::profile::QEMU_XEN;
use hypervisor_abi::pvh::FIRMWARE_BASE;
use hypervisor_core::{
    Backend, CharTarget, DomainConfig, DomainExit, StubdomConfig, run_domain_with_stats,
};

/// XEN_ELFNOTE_PHYS32_ENTRY: the 32-bit PVH entry point, what QEMU's `-kernel` looks for.
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// Port I/O exits the payload makes besides the N reads: 4 PCI config accesses, the
/// three COM1 bytes `<`, `>`, `\n`, SMI_CMD and PM1a_CNT.
const FIXED_PIO: u64 = 9;

/// The start every bench payload shares (offsets 0x00-0x2b): map the PIIX4 PM block at
/// 0xb000 (PMBA, PMIOSE) so the payload can power off through PM1a_CNT, then write `<`
/// to COM1. Leaves DX = 0x3f8.
fn pm_prologue() -> Vec<u8> {
    vec![
        0x66, 0xba, 0xf8, 0x0c, //             00: mov $0xcf8,%dx
        0xb8, 0x40, 0x0b, 0x00, 0x80, //       04: mov $0x80000b40,%eax  (00:01.3, PMBA)
        0xef, //                               09: out %eax,(%dx)
        0x66, 0xba, 0xfc, 0x0c, //             0a: mov $0xcfc,%dx
        0xb8, 0x01, 0xb0, 0x00, 0x00, //       0e: mov $0xb001,%eax
        0xef, //                               13: out %eax,(%dx)
        0x66, 0xba, 0xf8, 0x0c, //             14: mov $0xcf8,%dx
        0xb8, 0x80, 0x0b, 0x00, 0x80, //       18: mov $0x80000b80,%eax  (00:01.3, PMREGMISC)
        0xef, //                               1d: out %eax,(%dx)
        0x66, 0xba, 0xfc, 0x0c, //             1e: mov $0xcfc,%dx
        0xb0, 0x01, //                         22: mov $1,%al            (PMIOSE)
        0xee, //                               24: out %al,(%dx)
        0x66, 0xba, 0xf8, 0x03, //             25: mov $0x3f8,%dx
        0xb0, b'<', //                         29: mov $'<',%al
        0xee, //                               2b: out %al,(%dx)
    ]
}

/// The guest code (32-bit flat protected mode, PVH entry state), loaded at FIRMWARE_BASE.
/// Assembled by hand; GNU as listing next to the bytes (offsets in hex).
///
/// Port 0x80 is read because every PC device model decodes it and does next to nothing
/// on a read: QEMU maps a dummy `ioport80` region there, chassis its debug-port device
/// (which latches POST codes on writes and returns the latch on reads). Neither is the
/// "unassigned port" path.
///
/// After the S5 write a guest that is still running spins for 2^24 iterations (QEMU
/// handles the power-off request asynchronously, so the vCPU may run on briefly), then
/// writes `!` to COM1 and runs into ud2: either means the power-off did not happen.
fn payload(n: u32) -> Vec<u8> {
    assert!(n > 0);
    let mut p = pm_prologue();
    p.push(0xb9); // 2c: mov $n,%ecx
    p.extend_from_slice(&n.to_le_bytes());
    p.extend_from_slice(&[
        0x66, 0xba, 0x80, 0x00, //             31: mov $0x80,%dx
        0xec, //                               35: 1: in (%dx),%al
        0x49, //                               36: dec %ecx
        0x75, 0xfc, //                         37: jnz 1b
        0x66, 0xba, 0xf8, 0x03, //             39: mov $0x3f8,%dx
        0xb0, b'>', //                         3d: mov $'>',%al
        0xee, //                               3f: out %al,(%dx)
        0xb0, b'\n', //                        40: mov $'\n',%al
        0xee,  //                               42: out %al,(%dx)
        0xb0, 0xf1, //                         43: mov $0xf1,%al         (ACPI enable)
        0xe6, 0xb2, //                         45: out %al,$0xb2         (SMI_CMD)
        0x66, 0xba, 0x04, 0xb0, //             47: mov $0xb004,%dx       (PM1a_CNT)
        0x66, 0xb8, 0x00,
        0x20, //             4b: mov $0x2000,%ax       (SLP_EN, SLP_TYP 0 = S5)
        0x66, 0xef, //                         4f: out %ax,(%dx)
        0xb9, 0x00, 0x00, 0x00, 0x01, //       51: mov $0x1000000,%ecx
        0x49, //                               56: 2: dec %ecx
        0x75, 0xfd, //                         57: jnz 2b
        0x66, 0xba, 0xf8, 0x03, //             59: mov $0x3f8,%dx
        0xb0, b'!', //                         5d: mov $'!',%al
        0xee, //                               5f: out %al,(%dx)
        0x0f, 0x0b, //                         60: ud2
    ]);
    p
}

/// A minimal ELF64 x86-64 executable: one PT_LOAD of `code` at FIRMWARE_BASE (a page of
/// memory at least), entry at its first byte, and a PT_NOTE with the Xen PHYS32_ENTRY
/// note (name "Xen", an 8-byte descriptor as in Linux's 64-bit images; QEMU reads a
/// 64-bit value for ELF64). chassis' loader uses e_entry and ignores the note.
fn pvh_elf(code: &[u8]) -> Vec<u8> {
    const EHDR: usize = 64;
    const PHDR: usize = 56;
    let note_off = EHDR + 2 * PHDR;
    let mut note = Vec::new();
    note.extend_from_slice(&4u32.to_le_bytes()); // n_namesz ("Xen\0")
    note.extend_from_slice(&8u32.to_le_bytes()); // n_descsz
    note.extend_from_slice(&XEN_ELFNOTE_PHYS32_ENTRY.to_le_bytes());
    note.extend_from_slice(b"Xen\0");
    note.extend_from_slice(&FIRMWARE_BASE.to_le_bytes());
    let code_off = (note_off + note.len()).next_multiple_of(16);

    let mut e = vec![0u8; code_off];
    e[0..4].copy_from_slice(b"\x7fELF");
    e[4] = 2; // ELFCLASS64
    e[5] = 1; // little endian
    e[6] = 1; // EV_CURRENT
    e[16] = 2; // ET_EXEC
    e[18] = 62; // EM_X86_64
    e[20] = 1; // e_version
    e[24..32].copy_from_slice(&FIRMWARE_BASE.to_le_bytes()); // e_entry
    e[32..40].copy_from_slice(&(EHDR as u64).to_le_bytes()); // e_phoff
    e[52] = EHDR as u8; // e_ehsize
    e[54] = PHDR as u8; // e_phentsize
    e[56] = 2; // e_phnum
    let set = |e: &mut Vec<u8>, i: usize, f: usize, v: u64| {
        e[EHDR + i * PHDR + f..][..8].copy_from_slice(&v.to_le_bytes())
    };
    // PT_LOAD, RWX.
    e[EHDR..EHDR + 4].copy_from_slice(&1u32.to_le_bytes());
    e[EHDR + 4..EHDR + 8].copy_from_slice(&7u32.to_le_bytes());
    set(&mut e, 0, 8, code_off as u64);
    set(&mut e, 0, 16, FIRMWARE_BASE);
    set(&mut e, 0, 24, FIRMWARE_BASE);
    set(&mut e, 0, 32, code.len() as u64);
    set(&mut e, 0, 40, (code.len() as u64).max(0x1000));
    set(&mut e, 0, 48, 16);
    // PT_NOTE, R.
    e[EHDR + PHDR..EHDR + PHDR + 4].copy_from_slice(&4u32.to_le_bytes());
    e[EHDR + PHDR + 4..EHDR + PHDR + 8].copy_from_slice(&4u32.to_le_bytes());
    set(&mut e, 1, 8, note_off as u64);
    set(&mut e, 1, 32, note.len() as u64);
    set(&mut e, 1, 40, note.len() as u64);
    set(&mut e, 1, 48, 4);
    e[note_off..note_off + note.len()].copy_from_slice(&note);
    e.extend_from_slice(code);
    e
}

/// One run: wall time from start to exit, the `<`..`>` time seen by the host, exit counts.
struct Sample {
    wall: Duration,
    marker: Option<Duration>,
    /// Port I/O exits (chassis in-process only).
    pio_exits: Option<u64>,
    other_exits: Option<u64>,
    /// Guest instructions retired (chassis emu in-process only).
    instructions: Option<u64>,
    /// Everything the guest wrote to COM1.
    out: Vec<u8>,
    /// Stubdom mode in-process: what the stub domain used.
    stub: Option<StubUse>,
}

/// The stub domain's footprint and work in one run.
#[derive(Clone, Copy)]
struct StubUse {
    ram_bytes: u64,
    touched_pages: u64,
    requests: u64,
    /// Instructions its CPU retired (`emu`; 0 on `kvm`, which does not count them).
    instructions: u64,
}

/// Reads a COM1 byte stream; sends the arrival time of the first `<` and the first `>`
/// after it, then the whole stream when it ends.
fn watch_markers(mut r: impl Read + Send + 'static) -> mpsc::Receiver<(Option<Duration>, Vec<u8>)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut start = None;
        let mut marker = None;
        let mut buf = [0u8; 4096];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let now = Instant::now();
            for &b in &buf[..n] {
                match b {
                    b'<' if start.is_none() => start = Some(now),
                    b'>' if marker.is_none() => marker = start.map(|s| now - s),
                    _ => {}
                }
            }
            all.extend_from_slice(&buf[..n]);
            // The in-process FIFO never reaches EOF; 0xff is our own end sentinel.
            if all.last() == Some(&0xff) {
                all.pop();
                break;
            }
        }
        let _ = tx.send((marker, all));
    });
    rx
}

/// The guest output must show both markers and no `!` (power-off missed).
fn check_output(what: &str, out: &[u8]) -> Result<(), String> {
    let s = String::from_utf8_lossy(out);
    let (Some(a), Some(b)) = (s.find('<'), s.rfind('>')) else {
        return Err(format!("{what}: COM1 markers missing (got {:?})", tail(&s)));
    };
    if a > b || s[b..].contains('!') {
        return Err(format!(
            "{what}: the guest did not power off (got {:?})",
            tail(&s)
        ));
    }
    Ok(())
}

fn tail(s: &str) -> &str {
    let mut i = s.len().saturating_sub(200);
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

struct Ctx {
    dir: PathBuf,
    chassis_bin: PathBuf,
    /// The stub-domain unikernel (`CHASSIS_STUBDOM`, else where `make build` puts it).
    stubdom_image: PathBuf,
    qemu: String,
}

impl Ctx {
    fn payload_path(&self, n: u32) -> PathBuf {
        let p = self.dir.join(format!("pio-{n}.elf"));
        if !p.exists() {
            std::fs::write(&p, pvh_elf(&payload(n))).expect("write payload");
        }
        p
    }
}

/// chassis on `backend` in this process, the device model in process mode or in a stub
/// domain.
fn run_chassis_inproc(ctx: &Ctx, n: u32, backend: Backend, stub: bool) -> Result<Sample, String> {
    let stubdom = match stub {
        true => Some(StubdomConfig::new(ctx.stubdom_image.clone())),
        false => None,
    };
    run_inproc_with(ctx, &ctx.payload_path(n), backend, stubdom)
}

/// chassis on `backend`, in this process, with `payload` as the firmware.
fn run_inproc(ctx: &Ctx, payload: &Path, backend: Backend) -> Result<Sample, String> {
    run_inproc_with(ctx, payload, backend, None)
}

fn run_inproc_with(
    ctx: &Ctx,
    payload: &Path,
    backend: Backend,
    stubdom: Option<StubdomConfig>,
) -> Result<Sample, String> {
    let fifo = ctx.dir.join("com1.fifo");
    if !fifo.exists() {
        let ok = Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .map_err(|e| e.to_string())?;
        if !ok.success() {
            return Err("mkfifo failed".into());
        }
    }
    // Opened read-write: the device model's open/close never blocks or ends our reader.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .map_err(|e| format!("open fifo: {e}"))?;
    let mut w = f.try_clone().map_err(|e| e.to_string())?;
    let rx = watch_markers(f);
    let cfg = DomainConfig {
        name: "bench".into(),
        memory_mib: 32,
        vcpus: 1,
        profile: &QEMU_XEN,
        backend,
        firmware: payload.to_path_buf(),
        kernel: None,
        ramdisk: None,
        bios: None,
        cmdline: String::new(),
        serial: CharTarget::File(fifo.clone()),
        debugcon: CharTarget::Null,
        deterministic: false,
        stop_on_output: None,
        stubdom,
    };
    let t = Instant::now();
    let r = run_domain_with_stats(&cfg);
    let wall = t.elapsed();
    std::io::Write::write_all(&mut w, &[0xff]).map_err(|e| e.to_string())?;
    let (marker, out) = rx.recv().map_err(|e| e.to_string())?;
    let (exit, stats) = r.map_err(|e| format!("chassis: {e}"))?;
    if exit != DomainExit::PowerOff {
        return Err(format!(
            "chassis: guest ended with {exit:?}, not a power-off"
        ));
    }
    check_output("chassis", &out)?;
    Ok(Sample {
        wall,
        marker,
        pio_exits: Some(stats.exits.pio),
        other_exits: Some(stats.exits.other + stats.exits.mmio),
        instructions: (backend == Backend::Emu).then_some(stats.instructions),
        out,
        stub: (stats.stub_ram_bytes != 0).then_some(StubUse {
            ram_bytes: stats.stub_ram_bytes,
            touched_pages: stats.stub_ram_pages_touched,
            requests: stats.stub_requests,
            instructions: stats.stub_instructions,
        }),
    })
}

/// Run a child process with COM1 on its stdout; kill it (by its own handle) after
/// `limit`.
fn run_child(what: &str, mut cmd: Command, limit: Duration) -> Result<Sample, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let t = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    let rx = watch_markers(child.stdout.take().unwrap());
    let mut stderr = child.stderr.take().unwrap();
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            break st;
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{what}: no exit within {limit:?}; killed"));
        }
        std::thread::sleep(Duration::from_micros(500));
    };
    let wall = t.elapsed();
    let (marker, out) = rx.recv().map_err(|e| e.to_string())?;
    let err = err_thread.join().unwrap_or_default();
    if !status.success() {
        return Err(format!(
            "{what}: exit status {status}; stderr: {}",
            err.trim()
        ));
    }
    check_output(what, &out)?;
    Ok(Sample {
        wall,
        marker,
        pio_exits: None,
        other_exits: None,
        instructions: None,
        stub: None,
        out,
    })
}

fn run_chassis_cli(ctx: &Ctx, n: u32) -> Result<Sample, String> {
    let cfg = ctx.dir.join("bench.cfg");
    if !cfg.exists() {
        std::fs::write(
            &cfg,
            "name = \"bench\"\ntype = \"hvm\"\nmemory = 32\nvcpus = 1\nserial = \"stdio\"\n\
             on_poweroff = \"destroy\"\ndevice_model_version = \"qemu-xen\"\ncpu_backend = \"kvm\"\n\
             device_model_stubdomain_override = 0\n",
        )
        .map_err(|e| e.to_string())?;
    }
    let mut cmd = Command::new(&ctx.chassis_bin);
    cmd.env("CHASSIS_FIRMWARE", ctx.payload_path(n))
        .arg("create")
        .arg("-q")
        .arg(&cfg);
    run_child("chassis create", cmd, Duration::from_secs(120))
}

fn run_qemu(ctx: &Ctx, accel: &str, n: u32) -> Result<Sample, String> {
    run_qemu_with(ctx, accel, &ctx.payload_path(n))
}

/// QEMU `-M pc` with `payload` as its `-kernel` (PVH entry).
fn run_qemu_with(ctx: &Ctx, accel: &str, payload: &Path) -> Result<Sample, String> {
    let mut cmd = Command::new(&ctx.qemu);
    cmd.args([
        "-M",
        "pc",
        "-accel",
        accel,
        "-nographic",
        "-no-reboot",
        "-kernel",
    ])
    .arg(payload);
    run_child(&format!("qemu {accel}"), cmd, Duration::from_secs(120))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

type Runner<'a> = Box<dyn Fn(u32) -> Result<Sample, String> + 'a>;

struct Row {
    name: &'static str,
    n: (u32, u32),
    t1: Duration,
    t2: Duration,
    per_pio_us: f64,
    marker_us: Option<f64>,
    exits_per_in: Option<f64>,
    other_exits: Option<u64>,
    /// Stubdom rows: the stub domain at N1 and at N2.
    stub: Option<(StubUse, StubUse)>,
}

fn measure(name: &'static str, n: (u32, u32), runs: usize, f: Runner) -> Result<Row, String> {
    let (mut w1, mut w2, mut m2) = (Vec::new(), Vec::new(), Vec::new());
    let (mut pio, mut other, mut stub) = ((None, None), None, None);
    // Interleave N1 and N2 so slow drift in the host hits both alike.
    for r in 0..runs {
        let a = f(n.0)?;
        let b = f(n.1)?;
        eprintln!(
            "  {name} run {}/{runs}: N={} {:.3} s, N={} {:.3} s",
            r + 1,
            n.0,
            a.wall.as_secs_f64(),
            n.1,
            b.wall.as_secs_f64()
        );
        w1.push(a.wall);
        w2.push(b.wall);
        if let Some(m) = b.marker {
            m2.push(m);
        }
        pio = (a.pio_exits, b.pio_exits);
        other = b.other_exits;
        stub = a.stub.zip(b.stub);
    }
    let (t1, t2) = (median(w1), median(w2));
    let per_pio_us = (t2.as_secs_f64() - t1.as_secs_f64()) * 1e6 / f64::from(n.1 - n.0);
    let marker_us = (m2.len() == runs).then(|| median(m2).as_secs_f64() * 1e6 / f64::from(n.1));
    let exits_per_in = match pio {
        (Some(a), Some(b)) => {
            if a != u64::from(n.0) + FIXED_PIO || b != u64::from(n.1) + FIXED_PIO {
                eprintln!(
                    "  {name}: PIO exits {a} and {b}, expected N + {FIXED_PIO} ({} and {})",
                    u64::from(n.0) + FIXED_PIO,
                    u64::from(n.1) + FIXED_PIO
                );
            }
            Some((b - a) as f64 / f64::from(n.1 - n.0))
        }
        _ => None,
    };
    Ok(Row {
        name,
        n,
        t1,
        t2,
        per_pio_us,
        marker_us,
        exits_per_in,
        other_exits: other,
        stub,
    })
}

fn ratio(x: f64) -> String {
    if x >= 0.1 {
        format!("{x:.2}x")
    } else {
        format!("{x:.4}x")
    }
}

fn kvm_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

fn qemu_version(qemu: &str) -> Option<String> {
    let out = Command::new(qemu).arg("--version").output().ok()?;
    let s = String::from_utf8_lossy(&out.stdout);
    s.lines().next().map(|l| l.trim().to_string())
}

fn main() {
    let runs: usize = std::env::var("CHASSIS_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&r| r > 0)
        .unwrap_or(3);
    let chassis_bin = std::env::var_os("CHASSIS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().expect("current_exe");
            exe.parent().unwrap_or(Path::new(".")).join("chassis")
        });
    let qemu = std::env::var("QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into());
    let dir = std::env::temp_dir().join(format!("chassis-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let stubdom_image = std::env::var_os("CHASSIS_STUBDOM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            chassis_bin
                .parent()
                .unwrap_or(Path::new("."))
                .join("../x86_64-unknown-none/stubdom/chassis-stubdom")
        });
    let ctx = Ctx {
        dir: dir.clone(),
        chassis_bin,
        stubdom_image,
        qemu: qemu.clone(),
    };

    // `chassis-bench [pio] [compute] [boot]`: the benchmarks to run (default: all).
    let only: Vec<String> = std::env::args().skip(1).collect();
    let want = |b: &str| only.is_empty() || only.iter().any(|a| a == b);
    let kvm = kvm_usable();
    let qv = qemu_version(&qemu);
    println!("chassis-bench: PIO round trip (`in (%dx),%al` from port 0x80 in a dec/jnz loop)");
    println!(
        "  per-PIO = (median t(N2) - median t(N1)) / (N2 - N1), {runs} runs each; t = start to exit (wall)"
    );
    println!("  markers = host-observed time between the COM1 bytes around the loop at N2, / N2");
    match &qv {
        Some(v) => println!("  QEMU: {v}"),
        None => println!("  QEMU: '{qemu}' not found; QEMU rows skipped"),
    }
    if !kvm {
        println!();
        println!("  ***************************************************************");
        println!("  *** /dev/kvm is missing or not read-write for this user:    ***");
        println!("  *** chassis (kvm) and QEMU -accel kvm CANNOT run here; only ***");
        println!("  *** QEMU -accel tcg is measured, and no ratio to chassis.   ***");
        println!("  ***************************************************************");
    }
    println!();

    // Loop lengths: long enough that the loop dominates start-up jitter. Exits on this
    // machine's PVM /dev/kvm cost ~10-20 us, but QEMU's SeaBIOS start-up there takes ~5 s
    // and varies by a few 100 ms, so the kvm rows use 20k/200k (2 s or more of loop);
    // TCG handles an `in` in well under a microsecond and needs 2M for a clear difference.
    // The stub-domain rows cross to another (interpreted, on emu) VM per `in`: 10-100 us,
    // so they use the kvm lengths; kvm stubdom runs the stub's kernel-mode code at PVM's
    // ~1 M instructions/s, so its loop is short.
    let kvm_n = (20_000, 200_000);
    let emu_n = (20_000, 200_000);
    let stub_n = (2_000, 20_000);
    let kvm_stub_n = (200, 2_000);
    let tcg_n = (200_000, 2_000_000);
    let stub_ok = ctx.stubdom_image.is_file();
    if !stub_ok {
        println!(
            "  {} not built (make build): stubdom rows skipped",
            ctx.stubdom_image.display()
        );
    }
    let mut plan: Vec<(&'static str, (u32, u32), Runner)> = Vec::new();
    plan.push((
        "chassis emu, process mode (in-process)",
        emu_n,
        Box::new(|n| run_chassis_inproc(&ctx, n, Backend::Emu, false)),
    ));
    if stub_ok {
        plan.push((
            "chassis emu, stubdom mode (in-process)",
            stub_n,
            Box::new(|n| run_chassis_inproc(&ctx, n, Backend::Emu, true)),
        ));
    }
    if kvm {
        plan.push((
            "chassis kvm (in-process)",
            kvm_n,
            Box::new(|n| run_chassis_inproc(&ctx, n, Backend::Kvm, false)),
        ));
        if stub_ok {
            plan.push((
                "chassis kvm, stubdom mode (in-process)",
                kvm_stub_n,
                Box::new(|n| run_chassis_inproc(&ctx, n, Backend::Kvm, true)),
            ));
        }
        if ctx.chassis_bin.exists() {
            plan.push((
                "chassis kvm (CLI)",
                kvm_n,
                Box::new(|n| run_chassis_cli(&ctx, n)),
            ));
        } else {
            println!("  {} not built; CLI row skipped", ctx.chassis_bin.display());
        }
        if qv.is_some() {
            plan.push((
                "QEMU -accel kvm",
                kvm_n,
                Box::new(|n| run_qemu(&ctx, "kvm", n)),
            ));
        }
    }
    if qv.is_some() {
        plan.push((
            "QEMU -accel tcg",
            tcg_n,
            Box::new(|n| run_qemu(&ctx, "tcg", n)),
        ));
    }

    if !want("pio") {
        plan.clear();
    }
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut failed = false;
    for (name, n, f) in plan {
        eprintln!("{name}: N = {} and {}", n.0, n.1);
        match measure(name, n, runs, f) {
            Ok(r) => rows.push(r),
            Err(e) => {
                eprintln!("  {name}: FAILED: {e}");
                failed = true;
            }
        }
    }

    if !rows.is_empty() {
        // Each row against chassis's process mode on the same kind of CPU: the kvm rows
        // (chassis stubdom, QEMU kvm) against chassis kvm, the others against chassis emu.
        let find = |name: &str| rows.iter().find(|r: &&Row| r.name == name);
        let emu_base = find("chassis emu, process mode (in-process)");
        let kvm_base = find("chassis kvm (in-process)");
        println!();
        println!(
            "| backend | N1 / N2 | start-to-exit t(N1) / t(N2) | per-PIO (difference) | ratio vs chassis process mode (kvm rows: kvm; others: emu) | per-PIO (markers, ratio) | exits per `in` |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- |");
        for r in &rows {
            let b = match r.name.contains("kvm") {
                true => kvm_base,
                false => emu_base,
            };
            let base = b.map(|b| b.per_pio_us);
            let base_m = b.and_then(|b| b.marker_us);
            println!(
                "| {} | {} / {} | {:.3} s / {:.3} s | {:.3} µs | {} | {} | {} |",
                r.name,
                r.n.0,
                r.n.1,
                r.t1.as_secs_f64(),
                r.t2.as_secs_f64(),
                r.per_pio_us,
                base.map_or("-".into(), |b| ratio(r.per_pio_us / b)),
                match (r.marker_us, base_m) {
                    (Some(m), Some(b)) => format!("{m:.3} µs ({})", ratio(m / b)),
                    (Some(m), None) => format!("{m:.3} µs"),
                    _ => "-".into(),
                },
                match (r.exits_per_in, r.other_exits) {
                    (Some(e), Some(o)) => format!("{e:.3} PIO ({o} other/MMIO at N2)"),
                    (Some(e), None) => format!("{e:.3} PIO"),
                    _ => "-".into(),
                },
            );
        }
    }
    let stub_rows: Vec<_> = rows
        .iter()
        .filter_map(|r| r.stub.map(|s| (r.name, r.n, s)))
        .collect();
    if !stub_rows.is_empty() {
        // What a stub domain costs in memory (its RAM is allocated up front and
        // zero-filled on demand: "touched" is what it used) and per request.
        println!();
        println!(
            "| stub domain | RAM | touched (non-zero pages at exit) | requests at N1 / N2 | stub instructions per request |"
        );
        println!("| --- | --- | --- | --- | --- |");
        for (name, n, (a, b)) in stub_rows {
            let per = match b.instructions {
                0 => "- (not counted on kvm)".to_string(),
                _ => format!(
                    "{:.0}",
                    b.instructions.saturating_sub(a.instructions) as f64 / f64::from(n.1 - n.0)
                ),
            };
            println!(
                "| {name} | {} KiB | {} KiB | {} / {} | {per} |",
                b.ram_bytes / 1024,
                b.touched_pages * 4,
                a.requests,
                b.requests,
            );
        }
    }
    if want("compute") && !compute::run(&ctx, runs, qv.is_some()) {
        failed = true;
    }
    let boot_runs = std::env::var("CHASSIS_BENCH_BOOT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&r| r > 0)
        .unwrap_or(runs);
    if want("boot") && !boot::run(&ctx, boot_runs, qv.is_some()) {
        failed = true;
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!();
    println!(
        "chassis-bench: {:.1} s in all",
        started.elapsed().as_secs_f64()
    );
    if failed {
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pio_payload_layout_matches_its_listing() {
        let p = payload(7);
        assert_eq!(&p[0x2c..0x31], &[0xb9, 7, 0, 0, 0]);
        assert_eq!(p[0x35], 0xec, "in (%dx),%al at the loop head");
        assert_eq!(&p[0x37..0x39], &[0x75, 0xfc], "jnz back to 0x35");
        assert_eq!(&p[0x60..0x62], &[0x0f, 0x0b], "ud2 last");
        assert_eq!(p.len(), 0x62);
    }
}
