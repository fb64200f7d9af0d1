//! SemVer tags as registries list them and D-Bus callers nominate them.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dewy::fuzzing::version(data));
