//! A closed file's transaction index as an object beside its whole object, so that a
//! node that never held the file (a node following the store, a new owner re-indexing
//! at its takeover) indexes it from a few kilobytes instead of reading the file back.
//!
//! # Layout
//!
//! The key is [`super::objects::index_key`]: `<source>/binlogs/<file>.index/e<epoch>.<codec>`,
//! encoded with the archive's codec like every object. The plaintext, little-endian:
//!
//! ```text
//! magic     8 bytes  "BLSEG1\n\0"
//! size      u64      the file's size, bytes (a segment of another size is refused)
//! count     u64      transactions
//! count x   u32 commit timestamp (unix seconds), u64 start, u64 end,
//!           u16 GTID text length, GTID text ("0-1-42", "uuid:23"; empty: none)
//! sha256    32 bytes of everything before it
//! ```
//!
//! # What is durable when
//!
//! The shipper writes the segment after the whole object and before its manifest, as a
//! create-only PUT. It is derived data: a missing or damaged segment (refused by
//! [`decode`]) only means the reader falls back to reading the file itself, so it is
//! never the only copy of anything and the scrub does not check it.

use sha2::{Digest, Sha256};

use super::objects;
use super::tier::ArchiveTier;
use binlog::{Gtid, TxnRecord};

const MAGIC: &[u8; 8] = b"BLSEG1\n\0";
/// Fixed bytes per entry before its GTID text.
const ENTRY: usize = 4 + 8 + 8 + 2;
const DIGEST: usize = 32;

/// Why a segment was refused (the caller reads the file instead).
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// The store failed reading it (after its client's retries).
    #[error("{0}")]
    Store(#[from] objstore::store::StoreError),
    /// It does not decode with its codec (a wrong key, a damaged object).
    #[error("{0}")]
    Codec(#[from] objstore::codec::CodecError),
    /// Too short, a wrong magic, a count or length past the end, or a digest mismatch.
    #[error("damaged transaction index segment: {0}")]
    Damaged(&'static str),
    /// It describes a file of another size.
    #[error("transaction index segment of a {got}-byte file, the file has {want}")]
    OtherSize {
        /// Size in the segment, bytes.
        got: u64,
        /// The file's size, bytes.
        want: u64,
    },
    /// An entry outside the file, out of order, or with a GTID that does not parse.
    #[error("transaction index segment entry {n}: {what}")]
    BadEntry {
        /// Entry number, from 0.
        n: u64,
        /// What is wrong.
        what: &'static str,
    },
}

/// The segment of a `size`-byte file holding `records` (in binlog order).
pub fn encode(records: &[TxnRecord], size: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + records.len() * (ENTRY + 16) + DIGEST);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&(records.len() as u64).to_le_bytes());
    for r in records {
        let g = r.gtid.as_ref().map(|g| g.to_string()).unwrap_or_default();
        let g = if g.len() > usize::from(u16::MAX) {
            ""
        } else {
            &g
        };
        out.extend_from_slice(&r.commit_timestamp.to_le_bytes());
        out.extend_from_slice(&r.start.to_le_bytes());
        out.extend_from_slice(&r.end.to_le_bytes());
        out.extend_from_slice(&(g.len() as u16).to_le_bytes());
        out.extend_from_slice(g.as_bytes());
    }
    let d = Sha256::digest(&out);
    out.extend_from_slice(&d);
    out
}

/// The records of a segment of a `size`-byte file, checked: digest, size, every entry
/// inside `[4, size]`, in order, not overlapping.
///
/// # Errors
///
/// [`SegmentError`]: the segment is refused as a whole.
pub fn decode(bytes: &[u8], size: u64) -> Result<Vec<TxnRecord>, SegmentError> {
    let body_len = bytes
        .len()
        .checked_sub(DIGEST)
        .filter(|&n| n >= 24)
        .ok_or(SegmentError::Damaged("too short"))?;
    let (body, digest) = bytes.split_at(body_len);
    if Sha256::digest(body).as_slice() != digest {
        return Err(SegmentError::Damaged("digest mismatch"));
    }
    if &body[..8] != MAGIC {
        return Err(SegmentError::Damaged("not a segment"));
    }
    let mut r = Cursor { b: body, at: 8 };
    let got = r.u64()?;
    if got != size {
        return Err(SegmentError::OtherSize { got, want: size });
    }
    let count = r.u64()?;
    if count > (body.len() / ENTRY) as u64 {
        return Err(SegmentError::Damaged("count past the end"));
    }
    let mut out = Vec::with_capacity(count as usize);
    let mut prev_end = 4u64;
    for n in 0..count {
        let commit_timestamp = r.u32()?;
        let (start, end) = (r.u64()?, r.u64()?);
        let glen = usize::from(r.u16()?);
        let text = r.take(glen)?;
        let bad = |what| SegmentError::BadEntry { n, what };
        if start < prev_end || end <= start || end > size {
            return Err(bad("outside the file or out of order"));
        }
        let gtid = match glen {
            0 => None,
            _ => Some(
                std::str::from_utf8(text)
                    .ok()
                    .and_then(|t| t.parse::<Gtid>().ok())
                    .ok_or_else(|| bad("GTID does not parse"))?,
            ),
        };
        prev_end = end;
        out.push(TxnRecord {
            gtid,
            start,
            end,
            commit_timestamp,
        });
    }
    if r.at != body.len() {
        return Err(SegmentError::Damaged("bytes after the last entry"));
    }
    Ok(out)
}

/// The transactions of the `size`-byte `file` of `source` from its segment written in
/// `epoch` with `codec`; `None` when the store holds no such segment. The read is
/// bounded by twice the file's size (a segment is far smaller).
///
/// # Errors
///
/// [`SegmentError`]: the store, the codec, or the segment refused.
pub async fn load(
    tier: &ArchiveTier,
    source: &str,
    file: &str,
    size: u64,
    (epoch, codec): (i64, &str),
) -> Result<Option<Vec<TxnRecord>>, SegmentError> {
    let key = objects::index_key(source, file, epoch, codec);
    let max = usize::try_from(size)
        .unwrap_or(usize::MAX / 4)
        .saturating_mul(2)
        .max(1 << 20);
    let stored = match tier.store.get_bytes(&key, max).await {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let plain = objstore::codec::decode(&stored, codec, tier.settings.keyring.clone())?;
    decode(&plain, size).map(Some)
}

/// [`load`], a failure logged: the caller reads the file itself (`None`).
pub(crate) async fn load_or_warn(
    tier: &ArchiveTier,
    source: &str,
    file: &str,
    size: u64,
    obj: (i64, &str),
) -> Option<Vec<TxnRecord>> {
    match load(tier, source, file, size, obj).await {
        Ok(r) => r,
        Err(error) => {
            tracing::warn!(source, file, %error, "refused the transaction index segment; reading the file instead");
            None
        }
    }
}

/// Reads little-endian fields off a checked slice.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], SegmentError> {
        let s = self
            .at
            .checked_add(n)
            .and_then(|end| self.b.get(self.at..end))
            .ok_or(SegmentError::Damaged("entry past the end"))?;
        self.at += n;
        Ok(s)
    }

    fn u64(&mut self) -> Result<u64, SegmentError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    fn u32(&mut self) -> Result<u32, SegmentError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }

    fn u16(&mut self) -> Result<u16, SegmentError> {
        let mut a = [0u8; 2];
        a.copy_from_slice(self.take(2)?);
        Ok(u16::from_le_bytes(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, start: u64, end: u64) -> TxnRecord {
        TxnRecord {
            gtid: (seq > 0).then_some(Gtid::MariaDb {
                domain: 0,
                server_id: 1,
                seq,
            }),
            start,
            end,
            commit_timestamp: 1_790_000_000 + seq as u32,
        }
    }

    #[test]
    fn segments_round_trip_and_refuse_damage_and_other_files() {
        let records = vec![rec(7, 256, 900), rec(0, 900, 1500), rec(9, 1500, 4000)];
        let seg = encode(&records, 4000);
        assert_eq!(decode(&seg, 4000).expect("decode"), records);
        assert!(matches!(
            decode(&seg, 4001),
            Err(SegmentError::OtherSize { got: 4000, .. })
        ));
        for i in [0, 9, 20, 30, seg.len() - 1] {
            let mut bad = seg.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad, 4000).is_err(), "flipped byte {i}");
        }
        for n in [0, 10, 40, seg.len() - 1] {
            assert!(decode(&seg[..n], 4000).is_err(), "cut at {n}");
        }
        // Well formed but describing overlapping transactions: refused.
        let overlapping = encode(&[rec(1, 256, 900), rec(2, 800, 1000)], 4000);
        assert!(matches!(
            decode(&overlapping, 4000),
            Err(SegmentError::BadEntry { n: 1, .. })
        ));
        assert_eq!(decode(&encode(&[], 4), 4).expect("empty"), vec![]);
    }
}
