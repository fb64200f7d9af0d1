//! Fuzz target: arbitrary bytes extracted as a tar archive through dewy's extraction entry point.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dewy::fuzzing::archives::tar(data));
