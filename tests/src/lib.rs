//! Test harness for binlog-server's end-to-end tests.
//!
//! It provides what the integration tests in `tests/tests/*.rs` need to exercise the
//! real components, never mocks of them:
//!
//! - [`MariaDb`]: a throw-away MariaDB 10.11 primary (`mariadb-install-db` + `mariadbd`)
//!   in a temporary directory on a free loopback port, with binary logging, GTID strict
//!   mode and a replication user `repl`/`replpass`; SQL through the `mariadb` CLI;
//!   stop / `kill -9` / restart by PID.
//! - [`WriteLoad`]: a background write load (INSERT / UPDATE / DELETE transactions) fed
//!   to a long-running `mariadb` CLI child.
//! - [`ServerProcess`]: the binlog-server daemon as a real child process, with small
//!   HTTP helpers for its API.
//! - [`Sandbox`]: a primary, a binlog-server config for it and the running server, in
//!   one builder; [`SharedFixture`] shares one across the scenario tests of a binary.
//! - Helpers: [`require_tool`], [`free_port`], [`sha256_file`], [`corpus_dir`],
//!   [`wait_for`], [`write_config`].
//!
//! Every process the harness starts is stopped by its PID (SIGTERM, a bounded wait, then
//! SIGKILL), also from `Drop`; nothing is ever killed by name. All network traffic stays
//! on 127.0.0.1.
//!
//! Running the tests needs MariaDB 10.11 (`mariadbd`, `mariadb`, `mariadb-install-db`,
//! `mariadb-binlog`, `mariadb-backup`, `mydumper`), installed by `bash scripts/setup.sh`.
//! Tests never skip: a missing tool is a panic naming that command. Run them with
//!
//! ```text
//! bash scripts/setup.sh
//! cargo test -p binlog-tests
//! ```
//!
//! # Module map
//!
//! Everything lives in `harness/`, one job per file; every public item is re-exported
//! here at the crate root under its old name (`binlog_tests::MariaDb`, `use binlog_tests::*`).
//!
//! - `harness/tools.rs`: small free-standing helpers: external tools, free ports, file
//!   hashes and tails, the corpus directory, TOML quoting, stopping children by PID.
//! - `harness/wait.rs`: waiting on conditions: [`wait_for`] and the shared waits built
//!   on it ([`wait_caught_up`], [`wait_all_succ`]).
//! - `harness/mariadb.rs`: the throw-away MariaDB primary ([`MariaDb`],
//!   [`MariaDbOptions`]), its accounts and timeouts, and SQL over a bare Unix socket.
//! - `harness/load.rs`: the background write load ([`WriteLoad`], [`WriteLoadOptions`]).
//! - `harness/server.rs`: the commands under test as child processes
//!   ([`ServerProcess`], [`run_snapshotter`]).
//! - `harness/config.rs`: binlog-server config files ([`write_config`],
//!   [`write_config_sources`], [`SourceSpec`]) and [`grep_file`] for logs.
//! - `harness/s3.rs`: moto's S3-compatible server ([`Moto`]).
//! - `harness/postgres.rs`: a throw-away PostgreSQL server ([`Postgres`]), the fleet's
//!   catalog, run as the unprivileged `postgres` user when the tests run as root.
//! - `harness/fleet.rs`: a fleet of nodes on one PostgreSQL catalog and one bucket
//!   ([`Services`], [`FleetNode`]) and the waits and API calls its tests share.
//! - `harness/archive.rs`: comparing the archive with the primary's binlogs
//!   ([`assert_archive_identical`]).
//! - `harness/sandbox.rs`: the usual whole set-up in one builder ([`Sandbox`],
//!   [`SandboxBuilder`]): a primary, a config written for it, the running server, bases
//!   through the API; and [`PitrJobs`], which deletes a test's PITR jobs.
//! - `harness/shared.rs`: [`SharedFixture`], one expensive fixture (e.g. a [`Sandbox`]
//!   with data and a base) set up once per test binary, handed to its scenario tests one
//!   at a time and stopped at process exit.

#![warn(missing_docs)]

mod harness;

pub use harness::archive::{assert_archive_identical, IN_USE_FLAG_OFFSET};
pub use harness::config::{grep_file, write_config, write_config_sources, SourceSpec};
pub use harness::fleet::{
    assert_catalog_and_store_identical, assert_timeline_identical, fleet_with_bases,
    nodes_with_bases, restore_at, take_base, wait_catalog_and_store_identical,
    wait_streaming_owner, FleetNode, Services, FLEET_CAPTURE,
};
pub use harness::load::{WriteLoad, WriteLoadOptions};
pub use harness::mariadb::{
    checksums_socket, sql_socket, MariaDb, MariaDbOptions, ADMIN_PASSWORD, ADMIN_USER,
    MARIADB_START_TIMEOUT, MARIADB_STOP_TIMEOUT, REPL_PASSWORD, REPL_USER,
};
pub use harness::postgres::{require_pg_tool, Postgres, PG_USER};
pub use harness::s3::{Moto, S3_TEST_ENV};
pub use harness::sandbox::{
    add_api_token, tls_self_signed, BaseJob, PitrJobs, Sandbox, SandboxBuilder, SandboxPrimary,
    SourceBackup, BASE_TIMEOUT, CAUGHT_UP_TIMEOUT,
};
pub use harness::server::{
    agent_trusting, run_snapshotter, ApiAccess, ServerProcess, SERVER_START_TIMEOUT,
    SERVER_STOP_TIMEOUT,
};
pub use harness::shared::{FixtureGuard, SharedFixture};
pub use harness::tools::{
    corpus_dir, file_tail, find_tool, free_port, mariadb_binlog_raw, proc_status_field,
    require_tool, run_bounded, server_binary, sha256_file, spawn_mariadb_binlog_follow,
    toml_string, KillOnDrop, SETUP_HINT,
};
pub use harness::wait::{wait_all_succ, wait_caught_up, wait_for};
