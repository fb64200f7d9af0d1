//! Whole client connections through a running proxy to an in-process backend. The input is a
//! little-endian u16 length, that many bytes the backend answers to every request, then what the
//! client sends. The harness checks that every head reaching the backend is well formed and
//! carries the proxy's headers, that the client only ever gets HTTP/1.1 responses, and that the
//! connection ends once both peers are done.
#![no_main]

use dewy::fuzzing::http_connection;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let split = usize::from(u16::from_le_bytes(*len)).min(rest.len());
    let (reply, client) = rest.split_at(split);
    http_connection(client, reply);
});
