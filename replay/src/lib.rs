//! Serving the archive to replicas: the fake primary that streams stored binlogs over the
//! replication protocol ([`fake_primary`]), PITR planning, jobs and runner ([`pitr`]), and
//! the scratch MariaDB instances a restore runs in ([`instance`]).

pub mod fake_primary;
pub mod instance;
pub mod pitr;
