//! Scrub of the archive store, and repair of damaged objects.
//!
//! # Checks
//!
//! A scrub reads back every whole-file object of a source the catalog records (or only
//! the files named, after a read found one damaged) and checks, without the key:
//!
//! - the object is there, with the recorded size and the recorded SHA-256 of its stored
//!   bytes (`archive_objects.stored_sha256`, also in the manifest);
//! - its manifest is there, parses, and names the same stored bytes.
//!
//! Chunks are not scrubbed: they live only until their file's whole object is stored.
//!
//! A scrub reads at most `[archive] scrub_bytes_per_second`, averaged from its start
//! ([`Pace`]): each read is egress on S3, and bandwidth capture shares.
//!
//! # Repair
//!
//! A damaged file is replaced from a good copy while one exists:
//!
//! 1. **The local copy** (the file in `<data_dir>/<source>/`, or a cached copy read back
//!    earlier, copied there first) when its SHA-256 is the catalog's: the shipper ships
//!    it again.
//! 2. Else **the primary** while `SHOW BINARY LOGS` lists the file: the file becomes FAIL
//!    with the reason, the checker pulls it again (`binlog_server::source::repull`), checks it
//!    (SUCC), and the shipper ships it.
//! 3. Else nothing is touched: the report says the file cannot be repaired.
//!
//! Objects are never overwritten, so a repair (1, 2) first marks the object's row
//! deleted in the catalog (fenced by the shipper's tenure: a stale owner is refused and
//! deletes nothing), then keeps the damaged object aside as `<key>.damaged-<unix
//! seconds>` (for inspection; delete it by hand), deletes the object and its manifest,
//! and forgets the row. The shipper then ships the file again; its new row replaces a
//! row marked deleted. A crash after the mark and before the delete leaves the damaged
//! object at its key: the re-ship then finds other bytes there and fails loudly
//! (`TierError::OtherBytes`) until the object is removed by hand.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use catalog::{ArchiveKind, ArchiveObjectRow, Catalog, FileState};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::cache::Evicted;
use super::fetch::{self, FetchError};
use super::tier::ArchiveTier;
use super::tier::TierError;
use node::status::{Damage, PrimaryView, ScrubReport};

/// What a scrub works with (the shipper's parts).
pub struct ScrubCtx<'a> {
    /// Source name.
    pub source: &'a str,
    /// `<data_dir>/<source>`.
    pub dir: &'a Path,
    /// Catalog.
    pub catalog: &'a Catalog,
    /// Archive store and settings.
    pub tier: &'a Arc<ArchiveTier>,
    /// Files only in the store.
    pub evicted: &'a Evicted,
    /// The primary's binlog list (the poller's).
    pub primary: &'a Arc<Mutex<PrimaryView>>,
}

/// Checks the whole-file objects of the source (only `only`, when given) and repairs the
/// damaged ones (module doc).
///
/// # Errors
///
/// [`TierError`] when the catalog or the store fails (not for damage, which is the
/// report's): the pass is retried by the caller.
pub async fn scrub(
    ctx: &ScrubCtx<'_>,
    only: Option<&[String]>,
    trigger: &str,
) -> Result<ScrubReport, TierError> {
    let mut report = ScrubReport {
        trigger: trigger.to_string(),
        started_at: catalog::unix_now(),
        ..Default::default()
    };
    let rows: Vec<ArchiveObjectRow> = ctx
        .catalog
        .list_archive_objects(ctx.source)
        .await?
        .into_iter()
        .filter(|o| o.kind == ArchiveKind::File)
        .filter(|o| only.is_none_or(|f| f.contains(&o.file)))
        .collect();
    let mut pace = Pace::new(ctx.tier.settings.scrub_bytes_per_second);
    for row in rows {
        let (problem, read) = check(ctx, &row, &mut pace).await?;
        report.objects += 1;
        report.bytes += read;
        if let Some(problem) = problem {
            warn!(source = ctx.source, file = %row.file, key = %row.object_key, problem, "damaged object in the archive store");
            report.damaged.push(repair(ctx, &row, problem).await?);
        }
    }
    report.finished_at = catalog::unix_now();
    info!(
        source = ctx.source,
        objects = report.objects,
        bytes = report.bytes,
        damaged = report.damaged.len(),
        trigger,
        "archive store scrubbed"
    );
    Ok(report)
}

/// What is wrong with `row`'s object and manifest (`None`: nothing), and the bytes read.
async fn check(
    ctx: &ScrubCtx<'_>,
    row: &ArchiveObjectRow,
    pace: &mut Pace,
) -> Result<(Option<String>, u64), TierError> {
    let store = &ctx.tier.store;
    let mut s = match store.get_stream(&row.object_key).await {
        Ok(s) => Box::pin(s),
        Err(e) if e.is_not_found() => return Ok((Some("the object is missing".into()), 0)),
        Err(e) => return Err(e.into()),
    };
    let (mut h, mut len) = (Sha256::new(), 0u64);
    while let Some(piece) = s.next().await {
        let piece = piece?;
        h.update(&piece);
        len += piece.len() as u64;
        pace.read(piece.len() as u64).await;
    }
    let sha = hex::encode(h.finalize());
    if sha != row.stored_sha256 || len != row.stored_bytes {
        return Ok((
            Some(format!(
                "read {len} bytes with sha256 {sha}; recorded {} bytes, {}",
                row.stored_bytes, row.stored_sha256
            )),
            len,
        ));
    }
    let problem = match fetch::manifest(store, ctx.source, &row.file, row.epoch).await {
        Ok(m) if m.stored_sha256 == row.stored_sha256 && m.sha256 == row.sha256 => None,
        Ok(m) => Some(format!(
            "its manifest names other bytes (stored sha256 {}, plaintext {})",
            m.stored_sha256, m.sha256
        )),
        Err(FetchError::Store(e)) if e.is_not_found() => Some("its manifest is missing".into()),
        Err(FetchError::Store(e)) => return Err(e.into()),
        Err(e) => Some(format!("its manifest is unreadable: {e}")),
    };
    Ok((problem, len))
}

/// A read rate bound averaged from the start: after `n` bytes in all, the reader waits
/// until `n / rate` seconds have gone by since the first read.
struct Pace {
    /// Bytes a second; 0: no bound.
    rate: u64,
    start: tokio::time::Instant,
    read: u64,
}

impl Pace {
    fn new(rate: u64) -> Pace {
        Pace {
            rate,
            start: tokio::time::Instant::now(),
            read: 0,
        }
    }

    /// Counts `n` bytes read, then waits while the reads are ahead of the rate.
    async fn read(&mut self, n: u64) {
        self.read = self.read.saturating_add(n);
        if self.rate == 0 {
            return;
        }
        let due = std::time::Duration::from_secs_f64(self.read as f64 / self.rate as f64);
        tokio::time::sleep_until(self.start + due).await;
    }
}

/// SHA-256 (hex) of the file at `path`; `None` when it cannot be read.
async fn sha256_of(path: PathBuf) -> Option<String> {
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut f = std::fs::File::open(&path).ok()?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).ok()?;
            if n == 0 {
                break;
            }
            h.update(buf.get(..n)?);
        }
        Some(hex::encode(h.finalize()))
    })
    .await
    .ok()
    .flatten()
}

/// Replaces the damaged object of `row` from a good copy (module doc).
async fn repair(
    ctx: &ScrubCtx<'_>,
    row: &ArchiveObjectRow,
    problem: String,
) -> Result<Damage, TierError> {
    let (source, file) = (ctx.source, row.file.as_str());
    let mut d = Damage {
        file: file.to_string(),
        key: row.object_key.clone(),
        problem,
        repair: "none".into(),
        kept_as: None,
    };
    let file_row = ctx.catalog.get_file(source, file).await?;
    let size = file_row.as_ref().map_or(row.end_offset, |f| f.size);
    let want = file_row
        .and_then(|f| f.sha256)
        .unwrap_or_else(|| row.sha256.clone());
    let local = ctx.dir.join(file);
    let cached = ctx.tier.settings.cache_dir.join(source).join(file);
    let from_local = if sha256_of(local.clone()).await.as_deref() == Some(&want) {
        true
    } else if sha256_of(cached.clone()).await.as_deref() == Some(&want) {
        copy_in(&cached, &local).await?;
        true
    } else {
        false
    };
    let on_primary = node::util::lock(ctx.primary)
        .binlogs
        .iter()
        .any(|(n, _)| n == file);
    if !from_local && !on_primary {
        warn!(source, file, "damaged object cannot be repaired: no good local copy, and the primary no longer has the file");
        return Ok(d);
    }
    // Record first, under the shipper's tenure (a stale owner is refused here and
    // deletes nothing); then keep the damaged bytes aside, remove the object and its
    // manifest, and forget the row.
    ctx.catalog.mark_file_object_deleted(source, file).await?;
    let aside = format!("{}.damaged-{}", row.object_key, catalog::unix_now());
    match ctx.tier.store.copy_to(&row.object_key, &aside).await {
        Ok(()) => d.kept_as = Some(aside),
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    ctx.tier.store.delete(&row.object_key).await?;
    ctx.tier
        .store
        .delete(&super::objects::manifest_key(source, file, row.epoch))
        .await?;
    if !from_local {
        ctx.catalog
            .set_checked(
                source,
                file,
                FileState::Fail,
                &format!(
                    "the archive store's object {} was damaged ({}); pulled again from the primary",
                    row.object_key, d.problem
                ),
                Some(&want),
                size,
            )
            .await?;
    }
    ctx.catalog.forget_file_object(source, file).await?;
    ctx.evicted.retain(|n| n != file);
    d.repair = if from_local { "local copy" } else { "primary" }.into();
    info!(source, file, repair = %d.repair, "damaged object removed; the file ships again from a good copy");
    Ok(d)
}

/// Copies the checked cached copy `src` into the source directory as `dst` (fsynced).
async fn copy_in(src: &Path, dst: &Path) -> Result<(), TierError> {
    let (src, dst) = (src.to_path_buf(), dst.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let part = PathBuf::from(format!("{}.tmp", dst.display()));
        // A timeline's file (`tl<N>/<name>`) whose directory this node does not hold yet.
        let dir = dst.parent().map(Path::to_path_buf);
        let r = dir
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::copy(&src, &part))
            .and_then(|_| std::fs::File::open(&part)?.sync_all())
            .and_then(|()| std::fs::rename(&part, &dst))
            .and_then(|()| match dst.parent() {
                Some(d) => super::local::fsync_dir(d),
                None => Ok(()),
            });
        r.map_err(|source| TierError::Read { path: dst, source })
    })
    .await
    .map_err(|source| TierError::Task {
        what: "copy",
        source,
    })?
}

#[cfg(test)]
mod tests {
    use super::Pace;

    #[tokio::test]
    async fn a_paced_reader_waits_until_its_bytes_fit_the_rate() {
        let t = std::time::Instant::now();
        let mut pace = Pace::new(1_000_000);
        for _ in 0..10 {
            pace.read(10_000).await;
        }
        // 100,000 bytes at 1,000,000 bytes a second: at least 0.1 s.
        assert!(
            t.elapsed() >= std::time::Duration::from_millis(95),
            "{:?}",
            t.elapsed()
        );
        let mut free = Pace::new(0);
        free.read(u64::MAX).await;
        free.read(1).await;
        assert_eq!(free.read, u64::MAX, "the count saturates");
    }
}
