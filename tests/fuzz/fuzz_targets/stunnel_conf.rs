//! Fuzz target: sst_tunnel::fuzzing::stunnel_conf over arbitrary bytes (no panic, no hang).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sst_tunnel::fuzzing::stunnel_conf(data));
