#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| keyward_server::fuzz_targets::markdown(data));
