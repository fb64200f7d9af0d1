//! `fleet-lock` URLs (FleetLock and etcd forms) with `fleet-group` and `fleet-id`: accepted
//! settings are well-formed and read back the same, and passwords stay out of what is shown.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dewy::fuzzing::config_keys::fleet_lock(data));
