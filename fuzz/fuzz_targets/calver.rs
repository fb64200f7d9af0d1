//! CalVer formats (first line) and tags parsed with them (the other lines).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dewy::fuzzing::calver(data));
