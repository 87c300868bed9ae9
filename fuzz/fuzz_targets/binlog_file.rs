#![no_main]
//! Fuzz target `binlog_file`: see `binlog_server::fuzzing::binlog_file`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| binlog_server::fuzzing::binlog_file(data));
