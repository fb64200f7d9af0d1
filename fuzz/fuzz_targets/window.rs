//! `[[window]]` tables and an instant: accepted windows are in range, show back the same, and
//! their state at the instant is consistent.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dewy::fuzzing::config_keys::window(data));
