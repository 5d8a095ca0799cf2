#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| handoff_init_fuzz::cli(data));
