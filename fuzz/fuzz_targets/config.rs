//! Fuzz target `config`: arbitrary TOML text through the config loader and validation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dewy::fuzzing::config(data));
