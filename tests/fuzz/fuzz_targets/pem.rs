//! Fuzz target: sst_tunnel::fuzzing::pem over arbitrary bytes (no panic, no hang).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sst_tunnel::fuzzing::pem(data));
