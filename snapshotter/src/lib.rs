//! Base backups (physical, incremental, logical, clone) into object storage.
//!
//! Not built yet: this crate is an empty placeholder so the workspace has its final
//! shape. Nothing here pretends to take a backup; see issue "Snapshotter".
