//! Fuzz target: sst_tunnel::fuzzing::resume_frames over arbitrary bytes: a resumable
//! stream's opening and frames from the peer (no panic, no hang, bounded memory).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sst_tunnel::fuzzing::resume_frames(data));
