#![no_main]
//! Fuzz target `config_text`: see `binlog_server::fuzzing::config_text`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| binlog_server::fuzzing::config_text(data));
