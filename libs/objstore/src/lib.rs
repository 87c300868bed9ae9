//! Objects at rest, for base backups and the binlog archive alike.
//!
//! | module | its one job |
//! |---|---|
//! | [`store`] | the object store (`file://` directory or `s3://bucket/prefix`): put without overwrite, bounded-memory multipart upload, reads checked against the recorded size and SHA-256 |
//! | [`codec`] | how an object's bytes are encoded: zstd, then AES-256-GCM (STREAM, a key per object), and the descriptors recorded beside objects |
//! | [`keyring`] | the key file: the key that seals new objects, and every key that opens old ones |

pub mod codec;
pub mod keyring;
pub mod store;

#[cfg(test)]
mod tests;
