//! The harness's modules, one job each (see the module map in the crate docs). They are
//! private to the crate; their public items are re-exported at the crate root, and the
//! helpers they share with each other are `pub(crate)`.

pub(crate) mod archive;
pub(crate) mod config;
pub(crate) mod fleet;
pub(crate) mod load;
pub(crate) mod mariadb;
pub(crate) mod postgres;
pub(crate) mod s3;
pub(crate) mod sandbox;
pub(crate) mod server;
pub(crate) mod shared;
pub(crate) mod tools;
pub(crate) mod wait;
