//! A gRPC registry's `Current` answer off the wire (first byte: the selector): an accepted answer
//! names a usable release and an artifact URL dewy downloads from, accepted again as it is kept.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dewy::fuzzing::grpc_answer(data));
