//! The `[app-properties]` table: accepted limits are converted exactly and show back the same.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dewy::fuzzing::config_keys::app_properties(data));
