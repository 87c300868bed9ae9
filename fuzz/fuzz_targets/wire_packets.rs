#![no_main]
//! Fuzz target `wire_packets`: see `binlog_server::fuzzing::wire_packets`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| binlog_server::fuzzing::wire_packets(data));
