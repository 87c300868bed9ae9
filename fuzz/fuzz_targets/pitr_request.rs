#![no_main]
//! Fuzz target `pitr_request`: see `binlog_server::fuzzing::pitr_request`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| binlog_server::fuzzing::pitr_request(data));
