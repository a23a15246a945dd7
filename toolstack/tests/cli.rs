//! The `chassis` binary end to end, for everything that fails (or stops, with `-n`) before
//! a VM starts: none of these need /dev/kvm or the guest firmware.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// A fresh directory under the temp dir, removed on drop.
struct Tmp(PathBuf);

impl Tmp {
    fn new(tag: &str) -> Tmp {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "chassis-cli-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn chassis(args: &[&str], cwd: &Path, firmware: Option<&Path>) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chassis"));
    cmd.args(args).current_dir(cwd);
    match firmware {
        Some(f) => cmd.env("CHASSIS_FIRMWARE", f),
        None => cmd.env_remove("CHASSIS_FIRMWARE"),
    };
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run chassis");
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// A temp dir with a stand-in firmware file (dry runs check it exists, nothing reads it).
fn setup(tag: &str) -> (Tmp, PathBuf) {
    let t = Tmp::new(tag);
    let fw = t.file("chassis-firmware", "not really an ELF");
    (t, fw)
}

#[test]
fn malformed_file_reports_file_line_col() {
    let (t, fw) = setup("malformed");
    t.file("demo.cfg", "name = \"demo\"\ntype = \"hvm\"\nmemory = ]\n");
    let r = chassis(&["create", "demo.cfg"], &t.0, Some(&fw));
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert_eq!(
        r.stderr,
        "chassis: error: demo.cfg:3:10: expected a value after '=', found ']'\n"
    );
    assert!(r.stdout.is_empty());
}

#[test]
fn python_isms_are_named() {
    let (t, fw) = setup("python");
    t.file("py.cfg", "name = \"demo\"\nvcpus = (1)\n");
    let r = chassis(&["create", "py.cfg"], &t.0, Some(&fw));
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr.starts_with(
            "chassis: error: py.cfg:2:9: unexpected '(' outside a string: xl.cfg is not Python"
        ),
        "{}",
        r.stderr
    );
}

#[test]
fn unknown_key_warns_and_dry_run_prints_the_config() {
    let (t, fw) = setup("unknown");
    t.file(
        "demo.cfg",
        "name = \"demo\"\ntype = \"hvm\"\nfoo = 1\nvnc = 1\nmemory = 256\n",
    );
    let r = chassis(&["create", "-n", "demo.cfg"], &t.0, Some(&fw));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        r.stderr,
        "chassis: warning: demo.cfg:3: unknown key 'foo' is ignored\n\
         chassis: warning: demo.cfg:4: key 'vnc' is not supported yet and is ignored\n"
    );
    assert!(r.stdout.contains("name = \"demo\"\n"), "{}", r.stdout);
    assert!(r.stdout.contains("memory = 256\n"), "{}", r.stdout);
    assert!(r.stdout.contains("device_model_version = \"qemu-xen\"\n"));
}

#[test]
fn stub_domain_needs_its_image() {
    let (t, fw) = setup("stubdom");
    // A missing image is reported with how to get one.
    t.file(
        "e.cfg",
        "name = \"s\"\ntype = \"hvm\"\ncpu_backend = \"emu\"\n\
         device_model_stubdomain_override = 1\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_chassis"))
        .args(["create", "-n", "e.cfg"])
        .current_dir(&t.0)
        .env("CHASSIS_FIRMWARE", &fw)
        .env("CHASSIS_STUBDOM", t.0.join("missing-stubdom"))
        .output()
        .expect("run chassis");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("e.cfg:4:36: cannot read stub-domain image '")
            && stderr.contains("missing-stubdom")
            && stderr.contains("set CHASSIS_STUBDOM"),
        "{stderr}"
    );
    // With an image file, the dry run shows the stub domain.
    let img = t.file("sd", "not really an ELF");
    let out = Command::new(env!("CARGO_BIN_EXE_chassis"))
        .args(["create", "-n", "e.cfg", "stubdomain_memkb=8192"])
        .current_dir(&t.0)
        .env("CHASSIS_FIRMWARE", &fw)
        .env("CHASSIS_STUBDOM", &img)
        .output()
        .expect("run chassis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("device_model_stubdomain_override = 1\n"),
        "{stdout}"
    );
    assert!(stdout.contains("stubdomain_memkb = 8192\n"), "{stdout}");
}

#[test]
fn missing_kernel_names_the_path() {
    let (t, fw) = setup("kernel");
    let cfg = t.file(
        "k.cfg",
        "name = \"k\"\ntype = \"hvm\"\nkernel = \"boot/vmlinuz\"\n",
    );
    // Run from elsewhere: the path resolves against the config's directory.
    let r = chassis(
        &["create", cfg.to_str().unwrap()],
        Path::new("/"),
        Some(&fw),
    );
    assert_eq!(r.code, Some(1));
    let want = format!(
        "chassis: error: {}:3:10: cannot read kernel '{}': No such file or directory",
        cfg.display(),
        t.0.join("boot/vmlinuz").display()
    );
    assert!(r.stderr.starts_with(&want), "{}", r.stderr);
    assert!(!r.stderr.contains("starting domain"));
}

#[test]
fn relative_paths_resolve_against_the_config_directory() {
    let (t, fw) = setup("paths");
    fs::create_dir(t.0.join("boot")).unwrap();
    t.file("boot/vmlinuz", "k");
    let cfg = t.file(
        "p.cfg",
        "name = \"p\"\ntype = \"hvm\"\nkernel = \"boot/vmlinuz\"\nextra = \"console=ttyS0\"\n\
         serial = \"file:com1.log\"\n",
    );
    let r = chassis(
        &["create", "-n", cfg.to_str().unwrap()],
        Path::new("/"),
        Some(&fw),
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout.contains(&format!(
            "kernel = \"{}\"\n",
            t.0.join("boot/vmlinuz").display()
        )),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(&format!(
            "serial = \"file:{}\"\n",
            t.0.join("com1.log").display()
        )),
        "{}",
        r.stdout
    );
}

#[test]
fn command_line_settings_override_the_file() {
    let (t, fw) = setup("override");
    t.file("o.cfg", "name = \"o\"\ntype = \"hvm\"\nmemory = 256\n");
    let r = chassis(
        &["create", "-n", "-f", "o.cfg", "memory=1024", "vcpus=2"],
        &t.0,
        Some(&fw),
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("memory = 1024\n") && r.stdout.contains("vcpus = 2\n"));
    // A bare word is a string there (the shell ate its quotes), checked like one.
    let r = chassis(&["create", "o.cfg", "memory=lots"], &t.0, Some(&fw));
    assert_eq!(r.code, Some(1));
    assert_eq!(
        r.stderr,
        "chassis: error: <command line>:1:8: 'memory' must be a number (MiB), found a string \"lots\"\n"
    );
    let r = chassis(
        &[
            "create",
            "-n",
            "o.cfg",
            "device_model_version=qemu-xen-traditional",
        ],
        &t.0,
        Some(&fw),
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout
            .contains("device_model_version = \"qemu-xen-traditional\"\n")
    );
}

#[test]
fn all_config_errors_are_listed() {
    let (t, fw) = setup("errors");
    t.file(
        "e.cfg",
        "type = \"pv\"\nmemory = 8\ncpu_backend = \"tcg\"\ndisk = [ \"/srv/a.img,raw,hda,rw\" ]\n",
    );
    let r = chassis(&["create", "e.cfg"], &t.0, Some(&fw));
    assert_eq!(r.code, Some(1));
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 5, "{}", r.stderr);
    assert_eq!(
        lines[0],
        "chassis: error: e.cfg: 'name' is required (name = \"...\")"
    );
    assert!(lines[1].starts_with("chassis: error: e.cfg:1:8: type = \"pv\" is not supported"));
    assert!(lines[2].starts_with("chassis: error: e.cfg:2:10: memory = 8 MiB is out of range"));
    assert!(lines[3].starts_with("chassis: error: e.cfg:3:15: unknown cpu_backend"));
    assert_eq!(
        lines[4],
        "chassis: error: e.cfg:4:8: disks are not emulated yet: remove 'disk' or leave the list empty"
    );
}

#[test]
fn emu_backend_refused_until_available() {
    let (t, fw) = setup("emu");
    t.file(
        "e.cfg",
        "name = \"e\"\ntype = \"hvm\"\ncpu_backend = \"emu\"\n",
    );
    let r = chassis(&["create", "-n", "e.cfg"], &t.0, Some(&fw));
    // Whichever way the emu crate says, the answer is consistent and names the key.
    if r.code == Some(1) {
        assert!(
            r.stderr
                .starts_with("chassis: error: e.cfg:3:15: the emu CPU backend"),
            "{}",
            r.stderr
        );
    } else {
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        assert!(r.stdout.contains("cpu_backend = \"emu\""));
    }
}

#[test]
fn deterministic_needs_emu_and_is_rendered() {
    let (t, fw) = setup("det");
    t.file("d.cfg", "name = \"d\"\ntype = \"hvm\"\ndeterministic = 1\n");
    let r = chassis(&["create", "-n", "d.cfg"], &t.0, Some(&fw));
    assert_eq!(r.code, Some(1));
    assert_eq!(
        r.stderr,
        "chassis: error: d.cfg:3:17: deterministic = 1 needs the software CPU: add cpu_backend = \"emu\" (hardware vCPUs run on host time)\n"
    );
    if hypervisor_emu::AVAILABLE {
        let r = chassis(
            &["create", "-n", "d.cfg", "cpu_backend=emu"],
            &t.0,
            Some(&fw),
        );
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        assert!(r.stdout.contains("cpu_backend = \"emu\"\n"));
        assert!(r.stdout.contains("deterministic = 1\n"));
    }
}

#[test]
fn missing_firmware_is_explained() {
    let (t, _) = setup("firmware");
    t.file("f.cfg", "name = \"f\"\ntype = \"hvm\"\n");
    let missing = t.0.join("no-such-firmware");
    let r = chassis(&["create", "f.cfg"], &t.0, Some(&missing));
    assert_eq!(r.code, Some(1));
    assert_eq!(
        r.stderr,
        format!(
            "chassis: error: guest firmware '{}' (from CHASSIS_FIRMWARE) is not a readable file\n",
            missing.display()
        )
    );
}

#[test]
fn missing_config_file() {
    let (t, fw) = setup("noconfig");
    let r = chassis(&["create", "nope.cfg"], &t.0, Some(&fw));
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr
            .starts_with("chassis: error: cannot read config file 'nope.cfg': No such file"),
        "{}",
        r.stderr
    );
}

#[test]
fn help_version_and_usage_errors() {
    let (t, _) = setup("usage");
    let r = chassis(&["--help"], &t.0, None);
    assert_eq!(r.code, Some(0));
    assert!(r.stdout.contains("chassis create [OPTIONS] <file.cfg>"));
    let r = chassis(&["create", "--help"], &t.0, None);
    assert_eq!(r.code, Some(0));
    assert!(r.stdout.contains("--debugcon FILE"));

    let r = chassis(&["--version"], &t.0, None);
    assert_eq!(r.code, Some(0));
    assert_eq!(r.stdout, format!("chassis {}\n", env!("CARGO_PKG_VERSION")));

    let r = chassis(&[], &t.0, None);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("chassis: error: no command given"));

    let r = chassis(&["destroy", "x"], &t.0, None);
    assert_eq!(r.code, Some(1));
    assert_eq!(
        r.stderr,
        "chassis: error: unknown command 'destroy' (try 'chassis --help')\n"
    );

    let r = chassis(&["create"], &t.0, None);
    assert_eq!(r.code, Some(1));
    assert_eq!(
        r.stderr,
        "chassis: error: create needs a config file: chassis create <file.cfg>\n"
    );

    let r = chassis(&["create", "--bogus", "x.cfg"], &t.0, None);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("unknown option '--bogus'"));
}

#[test]
fn hostile_config_bytes_fail_cleanly() {
    let (t, fw) = setup("hostile");
    let deep = format!("name = {}", "[".repeat(100_000));
    t.file("deep.cfg", &deep);
    let r = chassis(&["create", "deep.cfg"], &t.0, Some(&fw));
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("lists nested more than"), "{}", r.stderr);

    fs::write(t.0.join("bin.cfg"), b"\x7fELF\x02\x01\x01\0\0\0").unwrap();
    let r = chassis(&["create", "bin.cfg"], &t.0, Some(&fw));
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr
            .starts_with("chassis: error: bin.cfg:1:1: unexpected"),
        "{}",
        r.stderr
    );

    fs::write(t.0.join("big.cfg"), vec![b'#'; 2 << 20]).unwrap();
    let r = chassis(&["create", "big.cfg"], &t.0, Some(&fw));
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("is larger than"), "{}", r.stderr);
}
