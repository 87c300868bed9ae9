//! Failover follow: which of a source's servers capture talks to, the timeline it
//! writes, when to look for another server, and where on the new one capture resumes.
//!
//! # Timelines
//!
//! A source's history is timeline 1 until capture first switches servers; each switch
//! starts the next timeline, whose files are stored apart (`tl<N>/<name>`,
//! `archive::local` "Timelines") and stay byte-identical to that server's. The catalog
//! keeps one row per timeline (`catalog::timelines`): the server (server_id, URL), when
//! and why capture switched, the archive's last GTID then, and the new timeline's first
//! file.
//!
//! # When capture switches
//!
//! - With several servers (`urls`): the current server answers read-only (a
//!   switchover demoted it), or no attempt reached it for `failover_timeout`.
//! - With any number: a server whose server_id differs from the timeline's answers at
//!   the address (a virtual IP moved to the promoted replica). Capture never appends
//!   another server's bytes to a timeline.
//!
//! # Where capture resumes (MariaDB)
//!
//! The candidates are the writable servers, in config order from the one after the
//! current. On each, `BINLOG_GTID_POS(file, 4)` gives the GTID state at the start of
//! every binlog it has (MariaDB KB "BINLOG_GTID_POS"); the newest file whose start
//! state the archive holds whole (each GTID of it is in the index) is the file holding
//! the first transaction the archive lacks. The new timeline starts at its position 4,
//! so the stored copy is the server's whole file. The transactions it repeats are
//! indexed once (`archive::index`, timelines >= 2).
//!
//! # Divergence
//!
//! While the new timeline's first transactions stream in, each GTID is looked up in the
//! index: the shared ones are the history both servers have. The first GTID the archive
//! lacks shows where the histories part; if the archive's last GTID at the switch was
//! not among the shared ones, the old timeline's transactions after the last shared
//! one are **divergent** (a lossy failover, or acks given by a primary that died before
//! its replica got them): logged, noted in the status and recorded in the timeline's
//! row. They stay on the old timeline, never mixed into the new one.
//!
//! # Crash safety
//!
//! The timeline row is written before the new timeline's first byte; at start-up the
//! newest timeline is the newer of the catalog's newest row and the local store's
//! newest file, so a crash between the two resumes the switch where it was.
//!
//! A divergence is recorded before the transaction that showed it is written. A restart
//! before the decision (the catalog records no divergence and the index holds none of
//! the timeline's own transactions) replays it over the timeline's stored files: the
//! first file's GTID_LIST event is its start state, then each GTID steps it; what they
//! leave undecided goes on in the stream (a GTID_LIST there when nothing was stored).
//! The timeline rows go to the archive store too (`archive::timelines`), for a rebuild.
//!
//! On a fleet node the switch is the owner's like any capture write (fenced by its
//! epoch); a takeover, a rebuild and a following node read `tl<N>/` files like the
//! others (`archive::local::list_binlogs`).
//!
//! Not done yet (issue 22): the MySQL dialect (COM_BINLOG_DUMP_GTID, GTID sets) stops
//! with a message instead of switching; divergence is judged on the archive's last GTID
//! only (one domain).

use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::{info, warn};

use super::context::{Fork, SourceCtx};
use super::error::StreamEnd;
use super::session::{self, Dialect, Session};
use archive::local::LocalFiles;
use binlog::Gtid;
use mysql_wire::SourceUrl;
use node::config::Source;
use node::util::lock;

/// The current server's URL of `ctx`'s source.
pub(crate) fn current_url(ctx: &SourceCtx) -> SourceUrl {
    lock(&ctx.upstream).url()
}

/// At start-up: the newest timeline from the catalog and the store (see the module
/// doc, "Crash safety"), and its server among the configured ones (by URL; the first
/// when none matches).
pub(crate) async fn restore(ctx: &SourceCtx, store: &LocalFiles) -> anyhow::Result<()> {
    let rows = ctx.shared.catalog.list_timelines(&ctx.source.name).await?;
    let newest = store.list()?.pop();
    let local = newest
        .as_ref()
        .map_or(1, |(n, _)| binlog::split_timeline(n).0);
    // Only a source that followed a failover has records to keep (a rebuild needs none
    // for timeline 1): no store listing at the start of every other source.
    if rows.len() > 1 {
        record_timelines_in_store(ctx);
    }
    {
        let mut up = lock(&ctx.upstream);
        up.timeline = local;
        if let Some(row) = rows.last() {
            let t = u32::try_from(row.timeline).unwrap_or(1);
            if t >= local {
                up.timeline = t;
                // server_id 0: a row rebuilt without its record (`archive::timelines`); the
                // newest file of that timeline names its server in every event header.
                up.server_id = u32::try_from(row.server_id)
                    .ok()
                    .filter(|id| *id != 0)
                    .or_else(|| {
                        let (name, _) = newest.as_ref()?;
                        (binlog::split_timeline(name).0 == t)
                            .then(|| archive::local::writer_server_id(&store.path(name)))
                            .flatten()
                    });
                up.first_file = row.first_file.clone();
                if let Some(i) = up
                    .servers
                    .iter()
                    .position(|u| u.redacted() == row.server_url)
                {
                    up.current = i;
                    ctx.source.current_server.store(i, Ordering::Relaxed);
                }
            }
        }
    }
    if let Some(row) = rows.last().filter(|r| i64::from(local) <= r.timeline) {
        resume_fork(ctx, store, row).await?;
    }
    Ok(())
}

/// At start-up on a new timeline whose divergence the catalog does not record, while
/// the index holds none of the timeline's own transactions: the decision may not have
/// been made before the restart, so it is replayed over the timeline's stored files
/// ([`replay_fork`]) and goes on in the stream when they do not decide it.
async fn resume_fork(
    ctx: &SourceCtx,
    store: &LocalFiles,
    row: &catalog::TimelineRow,
) -> anyhow::Result<()> {
    let t = u32::try_from(row.timeline).unwrap_or(1);
    let switch = row
        .switch_gtid
        .as_deref()
        .and_then(|g| g.parse::<Gtid>().ok());
    let (Some(switch), None, true) = (switch, &row.divergent, t >= 2) else {
        return Ok(());
    };
    let (index, name) = (ctx.shared.index.clone(), ctx.source.name.clone());
    let own = index
        .last(&name)?
        .is_some_and(|e| binlog::split_timeline(&e.file).0 >= t);
    if own {
        return Ok(());
    }
    let files: Vec<(std::path::PathBuf, u64)> = store
        .list()?
        .into_iter()
        .filter(|(n, _)| binlog::split_timeline(n).0 == t)
        .map(|(n, len)| (store.path(&n), len))
        .collect();
    let step = tokio::task::spawn_blocking(move || {
        let shared = |g: &Gtid| Ok(shared_before(&index, &name, g, t)?);
        replay_fork(&shared, switch, &files)
    })
    .await??;
    match step {
        ForkStep::Undecided(f) => lock(&ctx.upstream).fork = Some(f),
        ForkStep::Shared => {}
        ForkStep::Divergent(f) => record_divergence(ctx, &f).await?,
    }
    Ok(())
}

/// A new timeline's fork replayed over its stored files (`files`: paths and stored
/// lengths, bytes, in binlog order): the first file's GTID_LIST event gives the start
/// state ([`fork_from_state`]), then each MariaDB GTID steps it ([`fork_step`]) until it
/// is decided; `shared` says whether the archive holds a GTID on an earlier timeline
/// ([`shared_before`]). Undecided at their end, or before any GTID_LIST was stored, it
/// waits for the stream (`start_pending`). Blocking: reads at most the timeline's
/// repeated prefix.
fn replay_fork(
    shared: &dyn Fn(&Gtid) -> anyhow::Result<bool>,
    switch: Gtid,
    files: &[(std::path::PathBuf, u64)],
) -> anyhow::Result<ForkStep> {
    use binlog::event_type as t;
    use std::io::Read;
    let mut fork: Option<Fork> = None;
    for (path, len) in files {
        let f = std::fs::File::open(path)?;
        let r = std::io::BufReader::with_capacity(1 << 20, f.take(*len));
        let Ok(mut rd) = binlog::EventReader::new_at_start(r) else {
            break;
        };
        let mut alg = binlog::ChecksumAlg::Off;
        while let Some(Ok((_, h, ev))) = rd.next_event() {
            match h.type_code {
                t::FORMAT_DESCRIPTION => {
                    if let Ok(fde) = binlog::FormatDescription::parse(ev) {
                        alg = fde.checksum_alg;
                    }
                }
                t::MARIADB_GTID_LIST if fork.is_none() => {
                    // An unreadable list counts as an empty state: at worst a false
                    // divergence, which replay refuses to cross, never a silent mix.
                    let state = binlog::parse_gtid_list(&h, ev, alg).unwrap_or_default();
                    match fork_from_state(state, switch.clone()) {
                        Some(f) => fork = Some(f),
                        None => return Ok(ForkStep::Shared),
                    }
                }
                t::MARIADB_GTID => {
                    let (Some(f), Ok(Some(info))) = (fork.take(), binlog::parse_gtid(&h, ev, alg))
                    else {
                        continue;
                    };
                    let have = shared(&info.gtid)?;
                    match fork_step(f, &info.gtid, have) {
                        ForkStep::Undecided(f) => fork = Some(f),
                        decided => return Ok(decided),
                    }
                }
                _ => {}
            }
        }
    }
    Ok(ForkStep::Undecided(fork.unwrap_or(Fork {
        switch_gtid: switch,
        last_shared: None,
        start_pending: true,
    })))
}

/// Writes the timeline records the archive store lacks (`archive::timelines`), in the
/// background, from the catalog's rows: after capture starts (once a switch was
/// followed) and after each switch or divergence recorded. A failure is logged and noted in [`super::context::Upstream`];
/// the poller calls [`retry_timeline_records`], which tries again a minute later.
pub(crate) fn record_timelines_in_store(ctx: &SourceCtx) {
    let Some(store) = ctx.shared.archive_store.clone() else {
        return;
    };
    let (catalog, source) = (ctx.shared.catalog.clone(), ctx.source.name.clone());
    let upstream = ctx.upstream.clone();
    tokio::spawn(async move {
        let written = match catalog.list_timelines(&source).await {
            Ok(rows) => archive::timelines::put_missing(&store, &source, &rows)
                .await
                .map_err(anyhow::Error::new),
            Err(e) => Err(anyhow::Error::new(e)),
        };
        match written {
            Ok(0) => {}
            Ok(n) => {
                info!(source = %source, records = n, "timeline records written to the archive store")
            }
            Err(e) => {
                warn!(source = %source, error = %e, "writing the timeline records to the archive store failed; retried in a minute");
                lock(&upstream).records_failed_at = Some(std::time::Instant::now());
            }
        }
    });
}

/// From the poller: writes the timeline records again when the last attempt failed
/// at least a minute ago.
pub(crate) fn retry_timeline_records(ctx: &SourceCtx) {
    const RETRY_AFTER: Duration = Duration::from_secs(60);
    let due = {
        let mut up = lock(&ctx.upstream);
        let due = up
            .records_failed_at
            .is_some_and(|t| t.elapsed() >= RETRY_AFTER);
        if due {
            up.records_failed_at = None;
        }
        due
    };
    if due {
        record_timelines_in_store(ctx);
    }
}

/// After connecting: whether the server (its `@@read_only` and server_id, from the
/// [`Session`]) may feed the timeline. Records timeline 1's
/// server the first time one is reached.
///
/// # Errors
///
/// [`StreamEnd::NotPrimary`] when the server is read-only while the source lists
/// several servers, or is not the timeline's server: the reconnect loop looks for the
/// primary ([`follow`]).
pub(crate) async fn admit(
    ctx: &SourceCtx,
    read_only: bool,
    server_id: u32,
) -> Result<(), StreamEnd> {
    let (follows, known, timeline, url) = {
        let up = lock(&ctx.upstream);
        (up.follows(), up.server_id, up.timeline, up.url())
    };
    if follows && read_only {
        return Err(StreamEnd::NotPrimary(format!(
            "{} is read-only: it is no longer (or not yet) the primary",
            url.redacted()
        )));
    }
    match known {
        Some(id) if id == server_id => Ok(()),
        Some(id) => Err(StreamEnd::NotPrimary(format!(
            "{} answers with server_id {}, but timeline {timeline} is server_id {id}'s: \
             another server took the address",
            url.redacted(),
            server_id
        ))),
        None => {
            let row = catalog::NewTimeline {
                timeline: i64::from(timeline),
                server_id: i64::from(server_id),
                server_url: &url.redacted(),
                ..Default::default()
            };
            ctx.shared
                .catalog
                .add_timeline(&ctx.source.name, &row)
                .await
                .map_err(|e| StreamEnd::Transient(format!("record timeline {timeline}: {e}")))?;
            lock(&ctx.upstream).server_id = Some(server_id);
            Ok(())
        }
    }
}

/// A server capture may switch to.
struct Candidate {
    index: usize,
    url: SourceUrl,
    server_id: u32,
    /// The server's file to start the new timeline at (position 4).
    start: String,
    /// The GTID state at its start (`BINLOG_GTID_POS(start, 4)`), which the archive holds.
    start_state: String,
}

/// Looks for the writable server among the source's and switches to it (see the module
/// doc). Returns true when capture switched (the next attempt streams from the new
/// server), false when no server qualified yet (the caller backs off and asks again).
///
/// # Errors
///
/// [`StreamEnd::Definite`] when the switch is impossible whatever the wait: the new
/// primary speaks the MySQL dialect (not supported yet). On a fleet node the switch's
/// catalog writes are fenced by the tenure's epoch like every capture write: a node
/// that lost the lease stops there.
/// A server that no longer has the file the archive would continue with is skipped,
/// and the next call looks again (its reason is in the status).
pub(crate) async fn follow(ctx: &SourceCtx, why: &str) -> Result<bool, StreamEnd> {
    let (servers, current, known) = {
        let up = lock(&ctx.upstream);
        (up.servers.clone(), up.current, up.server_id)
    };
    // The archive's last transaction: the index's, the writer drained first by the caller.
    let archive_last = ctx
        .shared
        .index
        .last(&ctx.source.name)
        .ok()
        .flatten()
        .and_then(|e| e.gtid)
        .and_then(|g| g.parse::<Gtid>().ok());
    let mut refused = Vec::new();
    let order = (1..=servers.len()).map(|k| (current + k) % servers.len());
    for i in order {
        let url = &servers[i];
        let mut s = match session::connect(&ctx.source, url, &ctx.shared.capture).await {
            Ok(s) => s,
            Err(e) => {
                refused.push(format!("{}: {e}", url.redacted()));
                continue;
            }
        };
        if s.read_only {
            refused.push(format!("{}: read-only", url.redacted()));
            continue;
        }
        if known == Some(s.primary_server_id) {
            // The timeline's own server is writable again (it came back, or another
            // address reaches it): no switch of timeline.
            {
                let mut up = lock(&ctx.upstream);
                up.current = i;
                up.generation += 1;
            }
            ctx.source.current_server.store(i, Ordering::Relaxed);
            ctx.status.lock().url = url.redacted();
            info!(source = %ctx.source.name, server = %url.redacted(), "the timeline's primary is reachable again");
            return Ok(true);
        }
        if let Dialect::MySql { .. } = s.dialect {
            return Err(StreamEnd::Definite(format!(
                "{} is a MySQL primary: following a MySQL failover by GTID is not supported yet",
                url.redacted()
            )));
        }
        match locate(ctx, &mut s).await {
            Ok(Some((start, start_state))) => {
                let c = Candidate {
                    index: i,
                    url: url.clone(),
                    server_id: s.primary_server_id,
                    start,
                    start_state,
                };
                switch(ctx, c, archive_last, why).await?;
                return Ok(true);
            }
            Ok(None) => refused.push(format!(
                "{}: none of its binlogs starts at a GTID state the archive holds (purged there, or another history)",
                url.redacted()
            )),
            Err(e) => refused.push(format!("{}: {e}", url.redacted())),
        }
    }
    let msg = format!("no server to follow ({why}): {}", refused.join("; "));
    warn!(source = %ctx.source.name, "{msg}");
    ctx.status.lock().last_error = Some(msg);
    Ok(false)
}

/// The newest of the server's binlogs whose start GTID state the archive holds whole
/// (module doc, "Where capture resumes"), with that state; None when there is none.
async fn locate(ctx: &SourceCtx, s: &mut Session) -> Result<Option<(String, String)>, StreamEnd> {
    let logs = session::show_binary_logs(&mut s.conn)
        .await
        .map_err(|e| StreamEnd::from(session::classify(e, "SHOW BINARY LOGS")))?;
    for (file, _) in logs.iter().rev() {
        // Names are quoted into SQL: only the characters binlog names use.
        if !file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            continue;
        }
        let state = s
            .conn
            .query_value(&format!("SELECT BINLOG_GTID_POS('{file}', 4)"))
            .await
            .map_err(|e| StreamEnd::from(session::classify(e, "BINLOG_GTID_POS")))?;
        // NULL: the server cannot read the file (purged meanwhile): never a start.
        let Some(state) = state else { continue };
        if holds_state(ctx, &state)? {
            return Ok(Some((file.clone(), state)));
        }
    }
    Ok(None)
}

/// True when every GTID of the MariaDB GTID state `state` ("0-1-100,1-2-7"; empty: the
/// start of history) is in the archive's index.
fn holds_state(ctx: &SourceCtx, state: &str) -> Result<bool, StreamEnd> {
    for g in state.split(',').map(str::trim).filter(|g| !g.is_empty()) {
        let Ok(gtid) = g.parse::<Gtid>() else {
            return Ok(false);
        };
        let found = ctx
            .shared
            .index
            .find_gtid(&ctx.source.name, &gtid)
            .map_err(|e| StreamEnd::Transient(format!("index lookup of {gtid}: {e}")))?;
        if found.is_none() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Starts the next timeline on `c`: the catalog row first, then the live state.
async fn switch(
    ctx: &SourceCtx,
    c: Candidate,
    archive_last: Option<Gtid>,
    why: &str,
) -> Result<(), StreamEnd> {
    let next = lock(&ctx.upstream).timeline + 1;
    let first_file = binlog::timeline_name(next, &c.start);
    let switch_gtid = archive_last.as_ref().map(|g| g.to_string());
    let row = catalog::NewTimeline {
        timeline: i64::from(next),
        server_id: i64::from(c.server_id),
        server_uuid: None,
        server_url: &c.url.redacted(),
        switch_gtid: switch_gtid.as_deref(),
        first_file: Some(&first_file),
        reason: Some(why),
    };
    ctx.shared
        .catalog
        .add_timeline(&ctx.source.name, &row)
        .await
        .map_err(|e| StreamEnd::Transient(format!("record timeline {next}: {e}")))?;
    record_timelines_in_store(ctx);
    {
        let mut up = lock(&ctx.upstream);
        up.current = c.index;
        ctx.source.current_server.store(c.index, Ordering::Relaxed);
        up.generation += 1;
        up.timeline = next;
        up.server_id = Some(c.server_id);
        up.first_file = Some(first_file.clone());
        up.fork = fork_at_start(&c.start_state, archive_last);
    }
    let msg = format!(
        "failover followed: timeline {next} on {} (server_id {}) from {} position 4; the archive's last GTID was {}; why: {why}",
        c.url.redacted(),
        c.server_id,
        c.start,
        switch_gtid.as_deref().unwrap_or("none")
    );
    warn!(source = %ctx.source.name, "{msg}");
    ctx.status.note(msg);
    {
        let mut st = ctx.status.lock();
        st.last_error = None;
        st.url = c.url.redacted();
    }
    Ok(())
}

/// What the new timeline's first transactions are compared with: nothing when the start
/// state already holds the archive's last GTID (no divergence possible); else the
/// archive's last GTID, with the start state's GTID of its domain as the last shared one
/// (everything before the start file is the new server's history and the archive's).
fn fork_at_start(start_state: &str, archive_last: Option<Gtid>) -> Option<Fork> {
    let state: Vec<Gtid> = start_state
        .split(',')
        .filter_map(|g| g.trim().parse().ok())
        .collect();
    fork_from_state(state, archive_last?)
}

/// [`fork_at_start`] from the start state's GTIDs (BINLOG_GTID_POS, or the file's
/// GTID_LIST event).
fn fork_from_state(state: Vec<Gtid>, switch_gtid: Gtid) -> Option<Fork> {
    if state.contains(&switch_gtid) {
        return None;
    }
    let domain = |g: &Gtid| match g {
        Gtid::MariaDb { domain, .. } => Some(*domain),
        Gtid::MySql { .. } => None,
    };
    // A GTID_LIST has one entry per (domain, server_id): the domain's newest is the
    // one of highest sequence number (gtid_strict_mode).
    let seq = |g: &Gtid| match g {
        Gtid::MariaDb { seq, .. } => *seq,
        Gtid::MySql { .. } => 0,
    };
    let last_shared = state
        .into_iter()
        .filter(|g| domain(g).is_some() && domain(g) == domain(&switch_gtid))
        .max_by_key(seq);
    Some(Fork {
        switch_gtid,
        last_shared,
        start_pending: false,
    })
}

/// What one GTID of the new timeline's stream does to an undecided fork (module doc,
/// "Divergence"): `have` is whether the archive holds it.
#[derive(Debug, PartialEq, Eq)]
enum ForkStep {
    /// Shared history, the switch GTID not reached yet.
    Undecided(Fork),
    /// The switch GTID itself: every earlier transaction is shared, no divergence.
    Shared,
    /// The first GTID the archive lacks before the switch GTID: the archive's
    /// transactions after `last_shared` are divergent.
    Divergent(Fork),
}

fn fork_step(mut fork: Fork, gtid: &Gtid, have: bool) -> ForkStep {
    match have {
        true if *gtid == fork.switch_gtid => ForkStep::Shared,
        true => {
            fork.last_shared = Some(gtid.clone());
            ForkStep::Undecided(fork)
        }
        false => ForkStep::Divergent(fork),
    }
}

/// A GTID event of a new timeline's stream, while its divergence is undecided: a GTID
/// the archive has is shared history; the first it lacks decides (module doc,
/// "Divergence"). Cheap when decided (one lock).
///
/// # Errors
///
/// [`StreamEnd::Transient`] when the index cannot be read or the divergence cannot be
/// recorded: the fork stays undecided and the event is not written (the attempt ends;
/// the next one sees the GTID again), so no transaction of the new timeline is ever
/// stored before its divergence is in the catalog.
pub(crate) async fn observe_gtid(ctx: &SourceCtx, gtid: &Gtid) -> Result<(), StreamEnd> {
    let (fork, timeline) = {
        let up = lock(&ctx.upstream);
        (up.fork.clone(), up.timeline)
    };
    let Some(fork) = fork.filter(|f| !f.start_pending) else {
        return Ok(());
    };
    let name = &ctx.source.name;
    let have = shared_before(&ctx.shared.index, name, gtid, timeline)
        .map_err(|e| StreamEnd::Transient(format!("look {gtid} up in the index: {e}")))?;
    match fork_step(fork, gtid, have) {
        ForkStep::Undecided(f) => lock(&ctx.upstream).fork = Some(f),
        ForkStep::Shared => lock(&ctx.upstream).fork = None,
        ForkStep::Divergent(f) => {
            record_divergence(ctx, &f).await.map_err(|e| {
                StreamEnd::Transient(format!("record the divergent transactions: {e}"))
            })?;
            lock(&ctx.upstream).fork = None;
        }
    }
    Ok(())
}

/// Whether the archive holds `gtid` on a timeline before `timeline` (shared history of
/// the switch into `timeline`; its own transactions do not count).
fn shared_before(
    index: &archive::index::Index,
    source: &str,
    gtid: &Gtid,
    timeline: u32,
) -> Result<bool, archive::index::IndexError> {
    Ok(index
        .find_gtid(source, gtid)?
        .is_some_and(|e| binlog::split_timeline(&e.file).0 < timeline))
}

/// The GTID_LIST event at the start of a new timeline's first file, when the fork waits
/// for its start state (a restart before any of the file was stored): decides it as
/// [`fork_at_start`] does at the switch.
pub(crate) fn observe_gtid_list(ctx: &SourceCtx, state: Vec<Gtid>) {
    let mut up = lock(&ctx.upstream);
    if let Some(f) = up.fork.take() {
        up.fork = match f.start_pending {
            true => fork_from_state(state, f.switch_gtid),
            false => Some(f),
        };
    }
}

/// Notes and records (in the catalog, then the store) that the new timeline lacks the
/// archive's transactions after `fork.last_shared`.
async fn record_divergence(ctx: &SourceCtx, fork: &Fork) -> Result<(), catalog::CatalogError> {
    let name = &ctx.source.name;
    let timeline = lock(&ctx.upstream).timeline;
    let text = divergent_text(ctx, fork);
    let msg = format!(
        "timeline {timeline}'s server lacks the previous timeline's transactions {text}: they are divergent (kept on timeline {}, not in the new timeline)",
        timeline - 1
    );
    warn!(source = %name, "{msg}");
    ctx.shared
        .catalog
        .set_divergent(name, i64::from(timeline), &text)
        .await?;
    ctx.status.note(msg);
    record_timelines_in_store(ctx);
    Ok(())
}

/// "<first>..<last> (<n> transactions)" of the archive's transactions after
/// `fork.last_shared` up to `fork.switch_gtid`, from the index's binlog order.
fn divergent_text(ctx: &SourceCtx, fork: &Fork) -> String {
    let (index, name) = (&ctx.shared.index, &ctx.source.name);
    let ordinal = |g: &Gtid| index.find_gtid(name, g).ok().flatten().map(|e| e.ordinal);
    let last = ordinal(&fork.switch_gtid);
    let first = match &fork.last_shared {
        Some(g) => ordinal(g).map(|o| o + 1),
        None => Some(0),
    };
    match (first, last) {
        (Some(a), Some(b)) if a <= b => {
            let first_gtid = index
                .by_ordinal(name, a)
                .ok()
                .flatten()
                .and_then(|e| e.gtid)
                .unwrap_or_else(|| "?".into());
            format!(
                "{first_gtid}..{} ({} transactions)",
                fork.switch_gtid,
                b - a + 1
            )
        }
        _ => format!("up to {}", fork.switch_gtid),
    }
}

/// How long after the first failed attempt a source with several servers looks for
/// another (`failover_timeout`), and the reason to give.
pub(crate) fn overdue(source: &Source, down_for: Duration) -> Option<String> {
    (source.servers.len() > 1 && down_for >= source.failover_timeout).then(|| {
        format!(
            "the primary was unreachable for {}s (failover_timeout {}s)",
            down_for.as_secs(),
            source.failover_timeout.as_secs()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(s: &str) -> Gtid {
        s.parse().unwrap()
    }

    #[test]
    fn the_fork_starts_from_the_start_state_or_is_decided_by_it() {
        // The start file begins after the archive's last transaction: no divergence.
        assert_eq!(fork_at_start("0-1-400,1-5-9", Some(g("0-1-400"))), None);
        // It begins before: the state's GTID of that domain is shared history.
        assert_eq!(
            fork_at_start("1-5-9,0-1-380", Some(g("0-1-400"))),
            Some(Fork {
                switch_gtid: g("0-1-400"),
                last_shared: Some(g("0-1-380")),
                start_pending: false,
            })
        );
        // A GTID_LIST's several servers of one domain: the newest is the shared one.
        assert_eq!(
            fork_at_start("0-1-100,0-2-5000,1-5-9", Some(g("0-2-5100"))),
            Some(Fork {
                switch_gtid: g("0-2-5100"),
                last_shared: Some(g("0-2-5000")),
                start_pending: false,
            })
        );
        // The server's first binlog (empty state): nothing known shared yet.
        assert_eq!(
            fork_at_start("", Some(g("0-1-7"))),
            Some(Fork {
                switch_gtid: g("0-1-7"),
                last_shared: None,
                start_pending: false,
            })
        );
        // An archive without GTIDs has nothing to diverge from.
        assert_eq!(fork_at_start("0-1-1", None), None);
    }

    fn fork(switch: &str, last_shared: Option<&str>) -> Fork {
        Fork {
            switch_gtid: g(switch),
            last_shared: last_shared.map(g),
            start_pending: false,
        }
    }

    #[test]
    fn each_gtid_steps_the_fork_until_the_switch_gtid_or_the_first_missing_one() {
        let f = fork("0-1-9", Some("0-1-5"));
        assert_eq!(
            fork_step(f.clone(), &g("0-1-6"), true),
            ForkStep::Undecided(fork("0-1-9", Some("0-1-6")))
        );
        assert_eq!(fork_step(f.clone(), &g("0-1-9"), true), ForkStep::Shared);
        assert_eq!(
            fork_step(f.clone(), &g("0-2-6"), false),
            ForkStep::Divergent(f)
        );
    }

    /// A real MariaDB 11.8 file of the fixtures (`../shared/fixtures/binlogs`).
    fn fixture(name: &str) -> std::path::PathBuf {
        let dir = std::env::var_os("BINLOG_CORPUS_DIR").map_or_else(
            || {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../shared/fixtures/binlogs")
            },
            std::path::PathBuf::from,
        );
        dir.join("mariadb-operator__mariadb-poc/domain_id_0")
            .join(name)
    }

    fn len(p: &std::path::Path) -> u64 {
        std::fs::metadata(p).unwrap().len()
    }

    /// The transactions of a fixture file: (GTID, end offset), in order.
    fn transactions(p: &std::path::Path) -> Vec<(Gtid, u64)> {
        let bytes = std::fs::read(p).expect("fixture (set BINLOG_CORPUS_DIR)");
        let mut rd = binlog::EventReader::new_at_start(&bytes[..]).unwrap();
        let (mut fde, mut tracker, mut out) = (None, binlog::TxnTracker::new(), Vec::new());
        while let Some(Ok((offset, h, ev))) = rd.next_event() {
            if h.type_code == binlog::event_type::FORMAT_DESCRIPTION {
                fde = binlog::FormatDescription::parse(ev).ok();
            }
            let Some(f) = fde.as_ref() else { continue };
            if let Ok(Some(r)) = tracker.observe(offset, &h, ev, f) {
                out.extend(r.gtid.map(|g| (g, r.end)));
            }
        }
        out
    }

    /// After a restart, the fork is replayed over the new timeline's stored file: the
    /// archive holds the file's first ten transactions on an earlier timeline, the
    /// switch GTID (the tenth) among them. The whole file decides it shared; a prefix
    /// that stops before the switch GTID leaves it undecided at the last shared one; a
    /// file whose first transaction the archive lacks decides it divergent; nothing
    /// stored leaves it waiting for the stream's GTID_LIST.
    #[test]
    fn a_restart_replays_the_fork_over_the_stored_files() {
        let f5 = fixture("mariadb-repl-bin.000005");
        let txns = transactions(&f5);
        assert!(txns.len() > 10, "{} transactions", txns.len());
        let archive: std::collections::HashSet<Gtid> =
            txns.iter().take(10).map(|(g, _)| g.clone()).collect();
        let shared = |g: &Gtid| Ok(archive.contains(g));
        let tenth = txns[9].0.clone();
        let (fifth, fifth_end) = txns[4].clone();
        let whole = [(f5.clone(), len(&f5))];
        assert_eq!(
            replay_fork(&shared, tenth.clone(), &whole).unwrap(),
            ForkStep::Shared
        );
        let prefix = [(f5.clone(), fifth_end)];
        match replay_fork(&shared, tenth.clone(), &prefix).unwrap() {
            ForkStep::Undecided(f) => {
                assert_eq!(f.last_shared, Some(fifth));
                assert!(!f.start_pending);
            }
            other => panic!("{other:?}"),
        }
        let f7 = fixture("mariadb-repl-bin.000007");
        let other = [(f7.clone(), len(&f7))];
        assert!(matches!(
            replay_fork(&shared, tenth.clone(), &other).unwrap(),
            ForkStep::Divergent(_)
        ));
        match replay_fork(&shared, tenth, &[]).unwrap() {
            ForkStep::Undecided(f) => assert!(f.start_pending && f.last_shared.is_none()),
            other => panic!("{other:?}"),
        }
    }
}
