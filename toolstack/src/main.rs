//! `chassis`: the xl-style command line.
//!
//! ```text
//! chassis create [-q] [-n] [-F] [-c] [--debugcon FILE] [--stop-on-output STRING]
//!                [--stats] [-f] <file.cfg> [KEY=VALUE ...]
//! ```
//!
//! Exit status: 0 when the guest powered off (ACPI S5, `on_poweroff = "destroy"`) or
//! printed the `--stop-on-output` string, 1 on any error (usage, config, images, KVM), 2
//! when the guest crashed or reset.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chassis::config::Config;
use chassis::domain_config::{self, Diagnostics, Options};
use hypervisor_core::DomainExit;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Config files larger than this are refused (xl.cfg files are a few hundred bytes).
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Where `cargo build --profile firmware -p chassis-firmware --target x86_64-unknown-none`
/// puts the firmware, relative to `target/` (the parent of `target/<profile>/chassis`'s
/// directory).
const FIRMWARE_FROM_TARGET_DIR: &str = "x86_64-unknown-none/firmware/chassis-firmware";
/// Where `cargo build --profile stubdom -p chassis-stubdom --target x86_64-unknown-none`
/// puts the stub-domain unikernel, relative to `target/`.
const STUBDOM_FROM_TARGET_DIR: &str = "x86_64-unknown-none/stubdom/chassis-stubdom";

const HELP: &str = "\
chassis - run Xen-style HVM guests on an emulated PC (xl-compatible configs)

Usage:
  chassis create [OPTIONS] <file.cfg> [KEY=VALUE ...]
  chassis help | --help | -h
  chassis version | --version | -V

chassis create runs the guest described by an xl.cfg(5) file in the foreground.
COM1 goes to standard output (or to serial = \"file:PATH\"); messages go to stderr.
KEY=VALUE arguments are xl.cfg statements applied after the file (as with xl).

Options of create:
  -q, --quiet          no start/stop messages (warnings and errors still print)
  -n, --dry-run        check everything, print the resolved config, run nothing
  --debugcon FILE      write the guest's port 0xe9 debug console to FILE
  --stop-on-output S   stop the domain (exit 0) as soon as COM1 or the debug console
                       has printed the string S (boot tests; with deterministic = 1
                       the stop is at the same instruction every run)
  --stats              print run statistics on stderr when the domain ends
                       (instructions retired on emu, port/MMIO accesses, run time)
  -f FILE              the config file (xl spelling; a plain argument works too)
  -F, -c               accepted for xl muscle memory: chassis always runs in the
                       foreground with the console attached

Exit status:
  0  the guest powered off (ACPI S5), printed the --stop-on-output string, or a dry
     run passed
  1  an error: usage, config, images, KVM
  2  the guest crashed or reset

Environment:
  CHASSIS_FIRMWARE     the guest-firmware ELF image; default
                       <dir of chassis>/../x86_64-unknown-none/firmware/chassis-firmware
                       (built by `make build`)
  CHASSIS_STUBDOM      the stub-domain unikernel (device_model_stubdomain_override = 1);
                       default <dir of chassis>/../x86_64-unknown-none/stubdom/chassis-stubdom
";

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match run(args) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("chassis: error: {msg}");
            ExitCode::from(1)
        }
    }
}

fn run(args: Vec<OsString>) -> Result<ExitCode, String> {
    let Some(cmd) = args.first() else {
        eprint!("{HELP}");
        return Err("no command given (try 'chassis create <file.cfg>')".into());
    };
    match cmd.to_str() {
        Some("-h" | "--help" | "help") => {
            print!("{HELP}");
            Ok(ExitCode::SUCCESS)
        }
        Some("-V" | "--version" | "version") => {
            println!("chassis {VERSION}");
            Ok(ExitCode::SUCCESS)
        }
        Some("create") => create(CreateArgs::parse(&args[1..])?),
        _ => Err(format!(
            "unknown command '{}' (try 'chassis --help')",
            cmd.to_string_lossy()
        )),
    }
}

#[derive(Debug, Default)]
struct CreateArgs {
    quiet: bool,
    dry_run: bool,
    help: bool,
    debugcon: Option<PathBuf>,
    stop_on_output: Option<String>,
    stats: bool,
    config: Option<PathBuf>,
    overrides: Vec<OsString>,
}

impl CreateArgs {
    fn parse(args: &[OsString]) -> Result<CreateArgs, String> {
        let mut a = CreateArgs::default();
        let mut it = args.iter();
        let mut options_done = false;
        while let Some(arg) = it.next() {
            let s = arg.to_string_lossy();
            if options_done || !s.starts_with('-') || s == "-" {
                if a.config.is_none() {
                    a.config = Some(PathBuf::from(arg));
                } else {
                    a.overrides.push(arg.clone());
                }
                continue;
            }
            let mut value = |name: &str| -> Result<OsString, String> {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("option '{name}' needs a value"))
            };
            match &*s {
                "--" => options_done = true,
                "-h" | "--help" => a.help = true,
                "-q" | "--quiet" => a.quiet = true,
                "-n" | "--dry-run" => a.dry_run = true,
                "-F" | "-c" => {}
                "-f" => {
                    let v = value("-f")?;
                    if a.config.replace(PathBuf::from(v)).is_some() {
                        return Err("more than one config file given".into());
                    }
                }
                "--debugcon" => a.debugcon = Some(PathBuf::from(value("--debugcon")?)),
                "--stop-on-output" => {
                    let v = value("--stop-on-output")?;
                    a.stop_on_output = Some(
                        v.into_string()
                            .map_err(|_| "--stop-on-output needs UTF-8 text".to_string())?,
                    );
                }
                "--stats" => a.stats = true,
                "-p" => {
                    return Err(
                        "'-p' (create paused) is not supported: chassis has no unpause yet".into(),
                    );
                }
                _ => {
                    if let Some(v) = s.strip_prefix("--debugcon=") {
                        a.debugcon = Some(PathBuf::from(v));
                    } else if let Some(v) = s.strip_prefix("--stop-on-output=") {
                        a.stop_on_output = Some(v.to_string());
                    } else if let Some(v) = s.strip_prefix("-f").filter(|v| !v.is_empty()) {
                        let v = v.strip_prefix('=').unwrap_or(v);
                        if a.config.replace(PathBuf::from(v)).is_some() {
                            return Err("more than one config file given".into());
                        }
                    } else {
                        return Err(format!(
                            "unknown option '{s}' for create (try 'chassis --help')"
                        ));
                    }
                }
            }
        }
        if a.debugcon
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err("--debugcon needs a file name".into());
        }
        if a.stop_on_output.as_ref().is_some_and(|s| s.is_empty()) {
            return Err("--stop-on-output needs a non-empty string".into());
        }
        Ok(a)
    }
}

/// The firmware image: `$CHASSIS_FIRMWARE`, else next to the chassis executable.
fn find_firmware() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("CHASSIS_FIRMWARE").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            return Err(format!(
                "guest firmware '{}' (from CHASSIS_FIRMWARE) is not a readable file",
                p.display()
            ));
        }
        return Ok(p);
    }
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find the chassis executable to locate the firmware: {e}"))?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    let p = match dir.parent() {
        Some(target) => target.join(FIRMWARE_FROM_TARGET_DIR),
        None => dir.join("..").join(FIRMWARE_FROM_TARGET_DIR),
    };
    if p.is_file() {
        return Ok(p);
    }
    Err(format!(
        "guest firmware not found at '{}'; build it with `make build` (or `cargo build \
         --profile firmware -p chassis-firmware --target x86_64-unknown-none`), or set \
         CHASSIS_FIRMWARE to the chassis-firmware ELF image",
        p.display()
    ))
}

/// The stub-domain image: `$CHASSIS_STUBDOM`, else next to the chassis executable. Only
/// looked at in stubdom mode (the config check reports a missing file then).
fn find_stubdom() -> PathBuf {
    if let Some(p) = std::env::var_os("CHASSIS_STUBDOM").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().unwrap_or(Path::new("."));
    match dir.parent() {
        Some(target) => target.join(STUBDOM_FROM_TARGET_DIR),
        None => dir.join("..").join(STUBDOM_FROM_TARGET_DIR),
    }
}

fn read_config(path: &Path) -> Result<Vec<u8>, String> {
    let f = std::fs::File::open(path)
        .map_err(|e| format!("cannot read config file '{}': {e}", path.display()))?;
    let mut buf = Vec::new();
    f.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read config file '{}': {e}", path.display()))?;
    if buf.len() as u64 > MAX_CONFIG_BYTES {
        return Err(format!(
            "config file '{}' is larger than {} KiB; is it really an xl.cfg file?",
            path.display(),
            MAX_CONFIG_BYTES / 1024
        ));
    }
    Ok(buf)
}

/// `KEY=word` on the command line means the string "word": the shell has already eaten
/// any quotes (`cpu_backend="emu"` arrives as `cpu_backend=emu`). Values that are
/// numbers, quoted or lists are left to the config parser.
fn quote_bare_word(setting: &str) -> String {
    let Some((key, value)) = setting.split_once('=') else {
        return setting.to_string();
    };
    let v = value.trim();
    let bare = !v.is_empty()
        && v.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '/' || c == '.')
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:+,@".contains(c))
        && !key.trim_end().ends_with('+');
    if bare {
        format!("{key}=\"{v}\"")
    } else {
        setting.to_string()
    }
}

fn create(a: CreateArgs) -> Result<ExitCode, String> {
    if a.help {
        print!("{HELP}");
        return Ok(ExitCode::SUCCESS);
    }
    let Some(path) = a.config else {
        return Err("create needs a config file: chassis create <file.cfg>".into());
    };
    let source = path.display().to_string();
    let text = read_config(&path)?;
    let mut cfg = Config::parse(&source, &text).map_err(|e| e.to_string())?;
    for o in &a.overrides {
        let s = o.to_string_lossy();
        if !s.contains('=') {
            return Err(format!(
                "unexpected argument '{s}': after the config file only KEY=VALUE settings \
                 are accepted"
            ));
        }
        cfg.parse_into("<command line>", quote_bare_word(&s).as_bytes())
            .map_err(|e| e.to_string())?;
    }

    // The firmware is looked up after the config is checked, so config mistakes are
    // reported first, but its absence is an error before anything runs.
    let firmware = find_firmware();
    let opts = Options {
        source: source.clone(),
        base_dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        firmware: firmware.clone().unwrap_or_default(),
        debugcon: a.debugcon.clone(),
        stop_on_output: a.stop_on_output.clone(),
        stubdom_image: find_stubdom(),
    };
    let mut diags = Diagnostics::default();
    let checked = domain_config::build(&cfg, &opts, &mut diags);
    for w in &diags.warnings {
        eprintln!("chassis: warning: {w}");
    }
    let mut errors: Vec<String> = diags.errors.iter().map(ToString::to_string).collect();
    if let Some(c) = &checked {
        errors.extend(domain_config::preflight(c).iter().map(ToString::to_string));
    }
    if let Err(e) = &firmware {
        errors.push(e.clone());
    }
    let (Some(checked), true) = (checked, errors.is_empty()) else {
        for e in &errors {
            eprintln!("chassis: error: {e}");
        }
        return Ok(ExitCode::from(1));
    };
    let dom = checked.domain;

    if a.dry_run {
        print!("{}", domain_config::render(&dom));
        return Ok(ExitCode::SUCCESS);
    }

    if !a.quiet {
        eprintln!(
            "chassis: starting domain '{}' ({})",
            dom.name,
            domain_config::summary(&dom)
        );
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        hypervisor_core::run_domain_with_stats(&dom)
    }));
    let result = match result {
        Ok(Ok((exit, stats))) => {
            if a.stats {
                eprintln!(
                    "chassis: stats: instructions {} pio {} mmio {} other {} elapsed {:.3} s",
                    stats.instructions,
                    stats.exits.pio,
                    stats.exits.mmio,
                    stats.exits.other,
                    stats.elapsed.as_secs_f64()
                );
                if dom.stubdom.is_some() {
                    eprintln!(
                        "chassis: stats: stub domain: instructions {} requests {} buffered {} \
                         RAM {} KiB ({} KiB touched)",
                        stats.stub_instructions,
                        stats.stub_requests,
                        stats.stub_buffered,
                        stats.stub_ram_bytes / 1024,
                        stats.stub_ram_pages_touched * 4
                    );
                }
            }
            Ok(Ok(exit))
        }
        Ok(Err(e)) => Ok(Err(e)),
        Err(p) => Err(p),
    };
    match result {
        Ok(Ok(DomainExit::OutputMatched)) => {
            if !a.quiet {
                eprintln!(
                    "chassis: domain '{}' printed the --stop-on-output string; stopped",
                    dom.name
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Ok(Ok(DomainExit::PowerOff)) => {
            if !a.quiet {
                eprintln!("chassis: domain '{}' powered off", dom.name);
            }
            Ok(ExitCode::SUCCESS)
        }
        Ok(Ok(DomainExit::Reset)) => {
            eprintln!(
                "chassis: domain '{}' reset (reboot); restarting is not supported yet, so it \
                 was destroyed",
                dom.name
            );
            Ok(ExitCode::from(2))
        }
        Ok(Ok(DomainExit::Crashed(why))) => {
            eprintln!("chassis: domain '{}' crashed: {why}", dom.name);
            Ok(ExitCode::from(2))
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "internal error: the hypervisor panicked while running domain '{}' (message above)",
            dom.name
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn bare_words_on_the_command_line_are_strings() {
        assert_eq!(quote_bare_word("cpu_backend=emu"), "cpu_backend=\"emu\"");
        assert_eq!(
            quote_bare_word("serial=file:/tmp/x.log"),
            "serial=\"file:/tmp/x.log\""
        );
        assert_eq!(quote_bare_word("memory=128"), "memory=128");
        assert_eq!(quote_bare_word("name=\"a b\""), "name=\"a b\"");
        assert_eq!(quote_bare_word("disk=[]"), "disk=[]");
        assert_eq!(quote_bare_word("name=a b"), "name=a b");
        assert_eq!(quote_bare_word("deterministic=1"), "deterministic=1");
    }

    #[test]
    fn create_args() {
        let a = CreateArgs::parse(&args(&["-q", "-F", "x.cfg", "memory=1024", "vcpus=2"])).unwrap();
        assert!(a.quiet && !a.dry_run);
        assert_eq!(a.config, Some(PathBuf::from("x.cfg")));
        assert_eq!(a.overrides, args(&["memory=1024", "vcpus=2"]));

        let a = CreateArgs::parse(&args(&["--debugcon", "e9.log", "-f", "y.cfg", "-n"])).unwrap();
        assert_eq!(a.debugcon, Some(PathBuf::from("e9.log")));
        assert_eq!(a.config, Some(PathBuf::from("y.cfg")));
        assert!(a.dry_run);

        let a = CreateArgs::parse(&args(&["--debugcon=e9", "-f=z.cfg"])).unwrap();
        assert_eq!(a.debugcon, Some(PathBuf::from("e9")));
        assert_eq!(a.config, Some(PathBuf::from("z.cfg")));

        let a = CreateArgs::parse(&args(&["--", "-odd.cfg"])).unwrap();
        assert_eq!(a.config, Some(PathBuf::from("-odd.cfg")));

        assert_eq!(
            CreateArgs::parse(&args(&["--debugcon"])).unwrap_err(),
            "option '--debugcon' needs a value"
        );
        assert_eq!(
            CreateArgs::parse(&args(&["-x"])).unwrap_err(),
            "unknown option '-x' for create (try 'chassis --help')"
        );
        assert!(CreateArgs::parse(&args(&["-p", "a.cfg"])).is_err());

        let a = CreateArgs::parse(&args(&["--stats", "--stop-on-output", "Booting from", "a"]))
            .unwrap();
        assert!(a.stats);
        assert_eq!(a.stop_on_output.as_deref(), Some("Booting from"));
        let a = CreateArgs::parse(&args(&["--stop-on-output=x y", "a"])).unwrap();
        assert_eq!(a.stop_on_output.as_deref(), Some("x y"));
        assert!(CreateArgs::parse(&args(&["--stop-on-output=", "a"])).is_err());
        assert!(CreateArgs::parse(&args(&["--stop-on-output"])).is_err());
        assert!(CreateArgs::parse(&args(&["-f", "a", "-f", "b"])).is_err());
    }
}
