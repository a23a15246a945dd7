//! Boot to the init marker: Debian's kernel and the test initramfs (`make setup`:
//! `cache/paths.env`), chassis `emu` (`chassis create`, one vCPU, host time) vs QEMU
//! (the device model in process mode and in a stub domain) vs QEMU
//! `-M pc -accel tcg` with the same kernel, initramfs, command line and memory, in the
//! same run. Time = from starting the process to the arrival of
//! `CHASSIS-MARKER: init reached` on its COM1 (stdout); median of the runs. The init
//! powers off right after, so each run also ends by itself.
//!
//! What each side does before the marker differs in one way worth knowing: chassis
//! unpacks the bzImage on the host and enters the kernel proper, QEMU boots SeaBIOS and
//! runs the kernel's own decompressor under TCG.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{Ctx, median, ratio};

const MARKER: &str = "CHASSIS-MARKER: init reached";
const CMDLINE: &str = "console=ttyS0";
const MEMORY_MIB: u32 = 256;
const LIMIT: Duration = Duration::from_secs(900);

/// One boot: time to the marker, time to exit, and (chassis) retired instructions.
struct Boot {
    marker: Duration,
    total: Duration,
    instructions: Option<u64>,
    /// Stubdom mode: `--stats`' stub-domain line (requests, its instructions, RAM).
    stub: Option<String>,
}

/// Run `cmd` with stdout piped; time the marker's arrival; kill after [`LIMIT`].
fn boot(what: &str, mut cmd: Command) -> Result<Boot, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    let mut out = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        let mut seen = None;
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            if seen.is_none() && String::from_utf8_lossy(&all).contains(MARKER) {
                seen = Some(start.elapsed());
            }
        }
        let _ = tx.send((seen, all));
    });
    let mut err = child.stderr.take().ok_or("no stderr")?;
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            break st;
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{what}: no exit within {LIMIT:?}; killed"));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let total = start.elapsed();
    let (seen, all) = rx.recv().map_err(|e| e.to_string())?;
    let stderr = err_thread.join().unwrap_or_default();
    let Some(marker) = seen else {
        let s = String::from_utf8_lossy(&all);
        let tail: String = s
            .chars()
            .rev()
            .take(600)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(format!(
            "{what}: no init marker ({status}); COM1 tail: {tail:?}; stderr: {}",
            stderr.trim()
        ));
    };
    // `chassis --stats`: "chassis: stats: instructions N ...".
    let instructions = stderr
        .split("instructions ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok());
    let stub = stderr
        .lines()
        .find_map(|l| l.strip_prefix("chassis: stats: stub domain: "))
        .map(str::to_string);
    Ok(Boot {
        marker,
        total,
        instructions,
        stub,
    })
}

fn paths() -> Option<(PathBuf, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("cache/paths.env")).ok()?;
    let get = |k: &str| {
        text.lines()
            .filter_map(|l| l.split_once('='))
            .find(|(n, _)| n.trim() == k)
            .map(|(_, v)| PathBuf::from(v.trim()))
    };
    Some((get("KERNEL")?, get("INITRD")?))
}

/// Run the comparison; prints its own table. `false` if a row failed.
pub fn run(ctx: &Ctx, runs: usize, qemu: bool) -> bool {
    println!();
    println!(
        "chassis-bench: boot to the init marker (Debian kernel + test initramfs, {MEMORY_MIB} MiB, 1 vCPU, \"{CMDLINE}\")"
    );
    let Some((kernel, initrd)) = paths() else {
        println!("  cache/paths.env missing (run make setup): skipped");
        return false;
    };
    println!("  time from process start to \"{MARKER}\" on COM1, median of {runs} runs");
    let cfg = ctx.dir.join("linux.cfg");
    let written = std::fs::write(
        &cfg,
        format!(
            "name = \"bench-linux\"\ntype = \"hvm\"\nmemory = {MEMORY_MIB}\nvcpus = 1\n\
             kernel = \"{}\"\nramdisk = \"{}\"\nextra = \"{CMDLINE}\"\nserial = \"stdio\"\n\
             on_poweroff = \"destroy\"\ncpu_backend = \"emu\"\n",
            kernel.display(),
            initrd.display()
        ),
    );
    if let Err(e) = written {
        println!("  cannot write {}: {e}", cfg.display());
        return false;
    }
    let chassis = || {
        let mut c = Command::new(&ctx.chassis_bin);
        c.args(["create", "-q", "--stats"])
            .arg(&cfg)
            .arg("device_model_stubdomain_override=0");
        boot("chassis emu", c)
    };
    let chassis_stub = || {
        let mut c = Command::new(&ctx.chassis_bin);
        c.args(["create", "-q", "--stats"])
            .arg(&cfg)
            .arg("device_model_stubdomain_override=1")
            .env("CHASSIS_STUBDOM", &ctx.stubdom_image);
        boot("chassis emu stubdom", c)
    };
    let tcg = || {
        let mut c = Command::new(&ctx.qemu);
        c.args(["-M", "pc", "-accel", "tcg", "-m"])
            .arg(MEMORY_MIB.to_string())
            .args(["-nographic", "-no-reboot", "-kernel"])
            .arg(&kernel)
            .arg("-initrd")
            .arg(&initrd)
            .args(["-append", CMDLINE]);
        boot("QEMU tcg", c)
    };
    let mut plan: Vec<(&str, &dyn Fn() -> Result<Boot, String>)> =
        vec![("chassis emu, process mode (`chassis create`)", &chassis)];
    if ctx.stubdom_image.is_file() {
        plan.push((
            "chassis emu, stubdom mode (`chassis create`)",
            &chassis_stub,
        ));
    } else {
        println!(
            "  {} not built (make build): stubdom row skipped",
            ctx.stubdom_image.display()
        );
    }
    if qemu {
        plan.push(("QEMU -accel tcg", &tcg));
    }
    let mut ok = true;
    let mut rows = Vec::new();
    for (name, f) in plan {
        let mut m = Vec::new();
        let mut t = Vec::new();
        let mut insns = None;
        let mut stub = None;
        for r in 0..runs {
            match f() {
                Ok(b) => {
                    eprintln!(
                        "  {name} run {}/{runs}: marker at {:.2} s, exit at {:.2} s",
                        r + 1,
                        b.marker.as_secs_f64(),
                        b.total.as_secs_f64()
                    );
                    m.push(b.marker);
                    t.push(b.total);
                    insns = b.instructions.or(insns);
                    stub = b.stub.or(stub);
                }
                Err(e) => {
                    eprintln!("  {name}: FAILED: {e}");
                    ok = false;
                    break;
                }
            }
        }
        if m.len() == runs {
            rows.push((name, median(m), median(t), insns, stub));
        }
    }
    let base = rows
        .first()
        .filter(|r| r.0.starts_with("chassis"))
        .map(|r| r.1);
    println!();
    println!(
        "| backend | to marker (median) | to exit (median) | ratio to chassis emu process mode | guest instructions | stub domain (last run) |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for (name, m, t, insns, stub) in &rows {
        println!(
            "| {name} | {:.2} s | {:.2} s | {} | {} | {} |",
            m.as_secs_f64(),
            t.as_secs_f64(),
            base.map_or("-".into(), |b| ratio(m.as_secs_f64() / b.as_secs_f64())),
            insns.map_or("-".into(), |n| format!("{:.2} G", n as f64 / 1e9)),
            stub.as_deref().unwrap_or("-"),
        );
    }
    ok
}
