//! Objects at rest, for base backups and the binlog archive alike.
//!
//! | module | its one job |
//! |---|---|
//! | [`store`] | the object store (`file://` directory or `s3://bucket/prefix`): put without overwrite, bounded-memory multipart upload, reads checked against the recorded size and SHA-256 |
//! | [`codec`] | how an object's bytes are encoded: zstd, then AES-256-GCM (STREAM, a key per object), and the descriptors recorded beside objects |
//! | [`lock`] | S3 Object Lock: the bucket's default retention rule, an object's retain-until date, a version's permanent delete (refused while locked) |
//! | [`keyring`] | the key file: the key that seals new objects, and every key that opens old ones |

pub mod codec;
pub mod keyring;
pub mod lock;
pub mod store;

#[cfg(test)]
mod tests;
