//! Fuzz target: sst_tunnel::fuzzing::records over arbitrary bytes: the post-handshake record
//! checks (no panic, and nothing accepted that rustls cannot parse).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sst_tunnel::fuzzing::records(data));
