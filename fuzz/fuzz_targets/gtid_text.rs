#![no_main]
//! Fuzz target `gtid_text`: see `binlog_server::fuzzing::gtid_text`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| binlog_server::fuzzing::gtid_text(data));
