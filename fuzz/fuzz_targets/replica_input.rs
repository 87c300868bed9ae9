#![no_main]
//! Fuzz target `replica_input`: see `binlog_server::fuzzing::replica_input`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| binlog_server::fuzzing::replica_input(data));
