//! Fuzz target: arbitrary bytes extracted as a compressed tar through dewy's extraction
//! entry point; the first byte picks gzip, xz, zstd or bzip2 framing.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dewy::fuzzing::archives::compressed(data));
