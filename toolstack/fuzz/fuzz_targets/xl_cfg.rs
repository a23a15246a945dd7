//! Arbitrary bytes through the xl.cfg parser and the key validation, the way
//! `chassis create FILE KEY=VALUE...` uses them (no file is opened: `build` only checks
//! values; `preflight`, which stats files, is not called).
//!
//! Input: the config file text, optionally followed by a 0xff byte and one
//! command-line override (`KEY=VALUE`) parsed on top of it.
#![no_main]

use std::path::PathBuf;

use chassis::config::Config;
use chassis::domain_config::{self, Diagnostics, Options};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (file, over) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let mut cfg = match Config::parse("fuzz.cfg", file) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    if let Some(o) = over {
        if let Err(e) = cfg.parse_into("<command line>", o) {
            let _ = e.to_string();
            return;
        }
    }
    for s in cfg.settings() {
        let _ = s.value.value.describe();
        assert!(
            cfg.get(&s.key).is_some(),
            "setting '{}' not found by get",
            s.key
        );
    }
    let opts = Options {
        source: "fuzz.cfg".into(),
        base_dir: PathBuf::from("/nonexistent"),
        firmware: PathBuf::from("/nonexistent/chassis-firmware"),
        debugcon: None,
    };
    let mut diags = Diagnostics::default();
    let checked = domain_config::build(&cfg, &opts, &mut diags);
    for d in diags.errors.iter().chain(&diags.warnings) {
        let _ = d.to_string();
    }
    match checked {
        Some(c) => {
            assert!(
                diags.errors.is_empty(),
                "build returned a config despite errors"
            );
            let _ = domain_config::summary(&c.domain);
            // The dry-run rendering must itself be a valid config that checks clean.
            let text = domain_config::render(&c.domain);
            let again = Config::parse("rendered.cfg", text.as_bytes())
                .unwrap_or_else(|e| panic!("rendered config does not parse: {e}\n{text}"));
            let mut d2 = Diagnostics::default();
            if domain_config::build(&again, &opts, &mut d2).is_none() {
                panic!("rendered config does not check: {:?}\n{text}", d2.errors);
            }
        }
        None => assert!(
            !diags.errors.is_empty(),
            "build refused a config without an error"
        ),
    }
});
