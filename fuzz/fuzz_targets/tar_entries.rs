#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| u7s_bundle::fuzzing::tar_entries(data));
