//! node: what every service crate of one binlog-server node stands on. No task runs
//! here; these are the shared types and helpers the services are built from.
//!
//! | module | its one job |
//! |---|---|
//! | [`config`] | the TOML file, validated into [`config::Settings`] |
//! | [`status`] | live per-source state (capture, the primary's binlog list, the archive tier) and the Prometheus metrics |
//! | [`tokens`] | the API's bearer tokens file: roles, parsing, the constant-time check |
//! | [`cli`] | what the binaries' command lines share: tracing, config loading, the runtime, the HTTP call to the service |
//! | [`random`] | the one source of random values (OS entropy through `getrandom`) |
//! | [`util`] | small shared helpers ([`util::lock`]) |

pub mod cli;
pub mod config;
pub mod random;
pub mod status;
pub mod tokens;
pub mod util;
