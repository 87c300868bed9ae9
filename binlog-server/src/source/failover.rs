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
//! On a fleet node the switch is the owner's like any capture write (fenced by its
//! epoch); a takeover, a rebuild and a following node read `tl<N>/` files like the
//! others (`archive::local::list_binlogs`).
//!
//! Not done yet (issue 22): the MySQL dialect (COM_BINLOG_DUMP_GTID, GTID sets) stops
//! with a message instead of switching; an undecided fork is not
//! restored after a restart; divergence is judged on the archive's last GTID only (one
//! domain).

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
    record_timelines_in_store(ctx);
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
                        .then(|| header_server_id(&store.path(name)))
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
    Ok(())
}

/// The server_id in the first event header of the binlog file at `path` (its
/// FORMAT_DESCRIPTION: the server that wrote the file); `None` when unreadable.
fn header_server_id(path: &std::path::Path) -> Option<u32> {
    use std::io::Read;
    let mut head = [0u8; 4 + binlog::HEADER_LEN];
    std::fs::File::open(path).ok()?.read_exact(&mut head).ok()?;
    let h = binlog::EventHeader::parse(head.get(4..)?).ok()?;
    (h.server_id != 0).then_some(h.server_id)
}

/// Writes the timeline records the archive store lacks (`archive::timelines`), in the
/// background, from the catalog's rows: after capture starts and after each switch or
/// divergence recorded. A failure is logged; the next call writes what is missing.
pub(crate) fn record_timelines_in_store(ctx: &SourceCtx) {
    let Some(store) = ctx.shared.archive_store.clone() else {
        return;
    };
    let (catalog, source) = (ctx.shared.catalog.clone(), ctx.source.name.clone());
    tokio::spawn(async move {
        let rows = match catalog.list_timelines(&source).await {
            Ok(rows) => rows,
            Err(e) => {
                warn!(source = %source, error = %e, "reading the timelines to record in the archive store failed; retried at the next start or switch");
                return;
            }
        };
        match archive::timelines::put_missing(&store, &source, &rows).await {
            Ok(0) => {}
            Ok(n) => {
                info!(source = %source, records = n, "timeline records written to the archive store")
            }
            Err(e) => {
                warn!(source = %source, error = %e, "writing the timeline records to the archive store failed; retried at the next start or switch")
            }
        }
    });
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
            record_timelines_in_store(ctx);
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
    let switch_gtid = archive_last?;
    let state: Vec<Gtid> = start_state
        .split(',')
        .filter_map(|g| g.trim().parse().ok())
        .collect();
    if state.contains(&switch_gtid) {
        return None;
    }
    let domain = |g: &Gtid| match g {
        Gtid::MariaDb { domain, .. } => Some(*domain),
        Gtid::MySql { .. } => None,
    };
    let last_shared = state
        .into_iter()
        .find(|g| domain(g).is_some() && domain(g) == domain(&switch_gtid));
    Some(Fork {
        switch_gtid,
        last_shared,
    })
}

/// A GTID event of a new timeline's stream, while its divergence is undecided: a GTID
/// the archive has is shared history; the first it lacks decides (module doc,
/// "Divergence"). Cheap when decided (one lock).
pub(crate) async fn observe_gtid(ctx: &SourceCtx, gtid: &Gtid) {
    let fork = lock(&ctx.upstream).fork.clone();
    let Some(mut fork) = fork else { return };
    let name = &ctx.source.name;
    let have = matches!(ctx.shared.index.find_gtid(name, gtid), Ok(Some(_)));
    if have {
        let decided = *gtid == fork.switch_gtid;
        fork.last_shared = Some(gtid.clone());
        lock(&ctx.upstream).fork = (!decided).then_some(fork);
        return;
    }
    let timeline = {
        let mut up = lock(&ctx.upstream);
        up.fork = None;
        up.timeline
    };
    let text = divergent_text(ctx, &fork);
    let msg = format!(
        "timeline {timeline}'s server lacks the previous timeline's transactions {text}: they are divergent (kept on timeline {}, not in the new timeline)",
        timeline - 1
    );
    warn!(source = %name, "{msg}");
    ctx.status.note(msg);
    match ctx
        .shared
        .catalog
        .set_divergent(name, i64::from(timeline), &text)
        .await
    {
        Ok(()) => record_timelines_in_store(ctx),
        Err(e) => {
            warn!(source = %name, error = %e, "recording the divergent transactions failed")
        }
    }
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
            })
        );
        // The server's first binlog (empty state): nothing known shared yet.
        assert_eq!(
            fork_at_start("", Some(g("0-1-7"))),
            Some(Fork {
                switch_gtid: g("0-1-7"),
                last_shared: None,
            })
        );
        // An archive without GTIDs has nothing to diverge from.
        assert_eq!(fork_at_start("0-1-1", None), None);
    }
}
