//! A node of a fleet: several binlog-server processes on one shared catalog
//! (PostgreSQL) and one bucket, each source owned by at most one node at a time.
//!
//! - [`lease`]: the lease keeper: which sources this node owns, under which epoch, and
//!   when it must stop writing for each (`[node]` in the configuration).
//! - [`capture`]: each source captured and shipped only during the node's tenures of
//!   its lease, each tenure taken over from the archive store (`archive::takeover`).
//! - [`forward`]: a manual request for an owner's job, asked of another node, forwarded
//!   to the owner with the fleet's node credential.
//!
//! The catalog side of leases (the tables, the compare-and-set statements, the fence)
//! is `catalog::leases`.

pub mod capture;
pub mod forward;
pub mod lease;
