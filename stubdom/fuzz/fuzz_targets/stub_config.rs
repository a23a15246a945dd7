//! What the stub domain decodes from pages the hypervisor wrote: the start-info page
//! and the machine config. Both must return Ok or Err on any bytes, never panic; what
//! they accept must be consistent (the start info validates, re-encodes to the same
//! fields; the machine config re-encodes to bytes that decode to the same value and
//! builds a machine).
//!
//! Input: byte 0 bit 0 picks the decoder; the rest is its input.
#![no_main]

use chassis_devices::machine::{Machine, MachineConfig};
use hypervisor_abi::stubdom::StubStartInfo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    if sel & 1 == 0 {
        if let Ok(si) = StubStartInfo::from_bytes(rest) {
            if si.validate().is_ok() {
                let again = StubStartInfo::from_bytes(&si.to_bytes()).expect("re-decodes");
                assert_eq!(again.to_bytes(), si.to_bytes());
            }
        }
    } else if let Ok(cfg) = MachineConfig::decode(rest) {
        let bytes = cfg.encode().expect("an accepted config encodes");
        let again = MachineConfig::decode(&bytes).expect("re-decodes");
        assert_eq!(again.encode().expect("encodes"), bytes);
        // Bounded by decode's own limits (RAM sizes are numbers, nothing is allocated
        // for guest RAM by the machine itself).
        let _ = Machine::new(&cfg);
    }
});
