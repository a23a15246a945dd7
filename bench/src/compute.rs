//! Guest instruction throughput: chassis `emu` side by side with QEMU TCG on one fixed
//! compute workload, in the same run.
//!
//! The payload (32-bit flat protected mode, PVH entry, no paging) runs a loop of
//! [`LOOP_INSNS`] integer instructions (ALU, rotate, a read-modify-write and a load on a
//! 4 KiB buffer, the loop branch) `n` times, writes the final EAX to COM1 as eight hex
//! digits (the checksum: chassis and QEMU must agree) and powers off through PIIX4 S5.
//! Instructions per second = (instructions at N2 - at N1) / (t(N2) - t(N1)): the fixed
//! costs (process and SeaBIOS start for QEMU, our set-up) cancel. chassis counts its
//! retired instructions itself; for QEMU the difference is the known
//! `LOOP_INSNS * (N2 - N1)`. Nothing here asserts a speed.

use std::path::PathBuf;
use std::time::Duration;

use hypervisor_core::Backend;

use crate::{Ctx, Sample, median, pvh_elf, ratio, run_inproc, run_qemu_with};

/// Instructions per loop iteration.
pub const LOOP_INSNS: u64 = 10;

/// The guest code, loaded at FIRMWARE_BASE. Assembled by hand; GNU as listing next to
/// the bytes (offsets in hex).
fn payload(n: u32) -> Vec<u8> {
    assert!(n > 0);
    let mut p = crate::pm_prologue();
    p.push(0xb9); // 2c: mov $n,%ecx
    p.extend_from_slice(&n.to_le_bytes());
    p.extend_from_slice(&[
        0x31, 0xc0, //                         31: xor %eax,%eax
        0xbb, 0x78, 0x56, 0x34, 0x12, //       33: mov $0x12345678,%ebx
        0xbe, 0x00, 0x00, 0x20, 0x00, //       38: mov $0x200000,%esi    (a 4 KiB buffer)
        0x01, 0xd8, //                         3d: 1: add %ebx,%eax
        0xc1, 0xc3, 0x05, //                   3f: rol $5,%ebx
        0x31, 0xc3, //                         42: xor %eax,%ebx
        0x89, 0xc2, //                         44: mov %eax,%edx
        0x81, 0xe2, 0xfc, 0x0f, 0x00, 0x00, // 46: and $0xffc,%edx
        0x01, 0x1c, 0x16, //                   4c: add %ebx,(%esi,%edx,1)
        0x8b, 0x3c, 0x16, //                   4f: mov (%esi,%edx,1),%edi
        0x01, 0xf8, //                         52: add %edi,%eax
        0x49, //                               54: dec %ecx
        0x75, 0xe6, //                         55: jnz 1b
        0x89, 0xc5, //                         57: mov %eax,%ebp
        0x66, 0xba, 0xf8, 0x03, //             59: mov $0x3f8,%dx
        0xb0, b'>', //                         5d: mov $'>',%al
        0xee, //                               5f: out %al,(%dx)
        0xb9, 0x08, 0x00, 0x00, 0x00, //       60: mov $8,%ecx
        0xc1, 0xc5, 0x04, //                   65: 2: rol $4,%ebp
        0x89, 0xe8, //                         68: mov %ebp,%eax
        0x83, 0xe0, 0x0f, //                   6a: and $0xf,%eax
        0x04, 0x30, //                         6d: add $'0',%al
        0x3c, 0x39, //                         6f: cmp $'9',%al
        0x76, 0x02, //                         71: jbe 3f
        0x04, 0x07, //                         73: add $7,%al            ('A'-'9'-1)
        0xee, //                               75: 3: out %al,(%dx)
        0x49, //                               76: dec %ecx
        0x75, 0xec, //                         77: jnz 2b
        0xb0, b'\n', //                        79: mov $'\n',%al
        0xee,  //                               7b: out %al,(%dx)
        0xb0, 0xf1, //                         7c: mov $0xf1,%al         (ACPI enable)
        0xe6, 0xb2, //                         7e: out %al,$0xb2         (SMI_CMD)
        0x66, 0xba, 0x04, 0xb0, //             80: mov $0xb004,%dx       (PM1a_CNT)
        0x66, 0xb8, 0x00, 0x20, //             84: mov $0x2000,%ax       (SLP_EN, S5)
        0x66, 0xef, //                         88: out %ax,(%dx)
        0xb9, 0x00, 0x00, 0x00, 0x01, //       8a: mov $0x1000000,%ecx
        0x49, //                               8f: 4: dec %ecx
        0x75, 0xfd, //                         90: jnz 4b
        0x66, 0xba, 0xf8, 0x03, //             92: mov $0x3f8,%dx
        0xb0, b'!', //                         96: mov $'!',%al
        0xee, //                               98: out %al,(%dx)
        0x0f, 0x0b, //                         99: ud2
    ]);
    p
}

/// The checksum the guest printed after `>`.
fn checksum(out: &[u8]) -> Option<String> {
    let s = String::from_utf8_lossy(out);
    let at = s.rfind('>')?;
    let hex: String = s[at + 1..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    (hex.len() == 8).then_some(hex)
}

fn payload_path(ctx: &Ctx, n: u32) -> PathBuf {
    let p = ctx.dir.join(format!("compute-{n}.elf"));
    if !p.exists() {
        std::fs::write(&p, pvh_elf(&payload(n))).expect("write payload");
    }
    p
}

/// One measured backend.
pub struct Row {
    pub name: &'static str,
    pub n: (u32, u32),
    pub t: (Duration, Duration),
    /// Guest instructions per second of the loop.
    pub ips: f64,
    /// The checksums printed at N1 and N2.
    pub sums: (String, String),
}

fn measure(
    name: &'static str,
    n: (u32, u32),
    runs: usize,
    f: &dyn Fn(u32) -> Result<Sample, String>,
) -> Result<Row, String> {
    let (mut w1, mut w2) = (Vec::new(), Vec::new());
    let mut insns = (None, None);
    let mut sums = (String::new(), String::new());
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
        sums = (
            checksum(&a.out).ok_or(format!("{name}: no checksum in the output"))?,
            checksum(&b.out).ok_or(format!("{name}: no checksum in the output"))?,
        );
        insns = (a.instructions, b.instructions);
        w1.push(a.wall);
        w2.push(b.wall);
    }
    let t = (median(w1), median(w2));
    let dt = t.1.as_secs_f64() - t.0.as_secs_f64();
    let di = match insns {
        (Some(a), Some(b)) => {
            let expect = LOOP_INSNS * u64::from(n.1 - n.0);
            if b - a != expect {
                eprintln!(
                    "  {name}: retired {} more instructions at N2, the loop has {expect}",
                    b - a
                );
            }
            (b - a) as f64
        }
        _ => (LOOP_INSNS * u64::from(n.1 - n.0)) as f64,
    };
    Ok(Row {
        name,
        n,
        t,
        ips: if dt > 0.0 { di / dt } else { f64::NAN },
        sums,
    })
}

/// Run the throughput comparison; prints its own table. `false` if a row failed.
pub fn run(ctx: &Ctx, runs: usize, qemu: bool) -> bool {
    println!();
    println!(
        "chassis-bench: guest instruction throughput ({LOOP_INSNS}-instruction integer loop, 32-bit, no paging)"
    );
    println!(
        "  instr/s = (instructions at N2 - at N1) / (median t(N2) - median t(N1)), {runs} runs each"
    );
    // Loop counts: a few seconds of loop for each; TCG runs ~100x faster than an
    // interpreter, so it gets longer loops.
    let emu_n = (200_000, 2_000_000);
    let tcg_n = (2_000_000, 40_000_000);
    let mut rows = Vec::new();
    let mut ok = true;
    let emu = |n| run_inproc(ctx, &payload_path(ctx, n), Backend::Emu);
    let tcg = |n| run_qemu_with(ctx, "tcg", &payload_path(ctx, n));
    let mut plan: Vec<(
        &'static str,
        (u32, u32),
        &dyn Fn(u32) -> Result<Sample, String>,
    )> = vec![("chassis emu (in-process)", emu_n, &emu)];
    if qemu {
        plan.push(("QEMU -accel tcg", tcg_n, &tcg));
    }
    for (name, n, f) in plan {
        eprintln!("{name}: N = {} and {}", n.0, n.1);
        match measure(name, n, runs, f) {
            Ok(r) => rows.push(r),
            Err(e) => {
                eprintln!("  {name}: FAILED: {e}");
                ok = false;
            }
        }
    }
    // The same loop count must give the same checksum on every backend.
    let sums: Vec<(u32, &str, &str)> = rows
        .iter()
        .flat_map(|r| [(r.n.0, r.name, &*r.sums.0), (r.n.1, r.name, &*r.sums.1)])
        .collect();
    for (i, a) in sums.iter().enumerate() {
        for b in &sums[i + 1..] {
            if a.0 == b.0 && a.2 != b.2 {
                eprintln!(
                    "  CHECKSUM MISMATCH at N={}: {} {} vs {} {}",
                    a.0, a.1, a.2, b.1, b.2
                );
                ok = false;
            }
        }
    }
    let base = rows
        .first()
        .filter(|r| r.name.starts_with("chassis"))
        .map(|r| r.ips);
    println!();
    println!(
        "| backend | N1 / N2 | t(N1) / t(N2) | guest instr/s | instr/s vs chassis emu | checksums |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for r in &rows {
        println!(
            "| {} | {} / {} | {:.3} s / {:.3} s | {:.1} M | {} | {} / {} |",
            r.name,
            r.n.0,
            r.n.1,
            r.t.0.as_secs_f64(),
            r.t.1.as_secs_f64(),
            r.ips / 1e6,
            base.map_or("-".into(), |b| ratio(r.ips / b)),
            r.sums.0,
            r.sums.1
        );
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_the_eight_hex_digits_after_the_marker() {
        assert_eq!(checksum(b"<>DEADBEEF\n").as_deref(), Some("DEADBEEF"));
        assert_eq!(checksum(b"<>DEAD\n"), None);
        assert_eq!(checksum(b"no marker"), None);
    }

    #[test]
    fn loop_count_lands_in_the_mov_immediate() {
        let p = payload(0x0102_0304);
        assert_eq!(&p[0x2c..0x31], &[0xb9, 4, 3, 2, 1]);
        // The backward branch lands on the loop head at 0x3d.
        assert_eq!(p[0x55], 0x75);
        assert_eq!(0x57i64 + i64::from(p[0x56] as i8), 0x3d);
    }
}
