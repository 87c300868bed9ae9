//! Scheduled restore verification (base -> scratch instance -> replay -> checks).
//!
//! Not built yet: this crate is an empty placeholder so the workspace has its final
//! shape. Nothing here pretends to verify anything; see issue "Verifier".
