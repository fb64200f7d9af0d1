//! Fuzz target: arbitrary bytes extracted as a zip archive through dewy's extraction entry point.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dewy::fuzzing::archives::zip(data));
