//! mysql_async's binlog stream (`Conn::get_binlog_stream`, the Rust client the design
//! names) run to its end against a server, and the events of binlog files read straight
//! from disk with mysql_common, for the clients suites to compare.
//!
//! mysql_async connects with `mysql_native_password`, reads
//! `SELECT @@max_allowed_packet,@@wait_timeout`, sets `@master_binlog_checksum='ALL'`,
//! sends COM_REGISTER_SLAVE and then COM_BINLOG_DUMP (a file and position) or
//! COM_BINLOG_DUMP_GTID (a MySQL GTID set), here always with BINLOG_DUMP_NON_BLOCK so the
//! stream ends at the end of the server's binlogs. It never sets
//! `@mariadb_slave_capability`, so a MariaDB primary rewrites its own events for it.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use mysql_async::binlog::events::{Event, EventData};
use mysql_async::binlog::BinlogVersion;
use mysql_async::{BinlogStreamRequest, OptsBuilder, Sid};
use mysql_common::binlog::EventStreamReader;

/// One event as a client got it: type code, log_pos (0 for the events a server makes
/// up), and its bytes (header, body, CRC32 as it came).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Streamed {
    pub type_code: u8,
    pub log_pos: u32,
    pub bytes: Vec<u8>,
}

/// Where a mysql_async stream starts.
pub enum Request<'a> {
    /// COM_BINLOG_DUMP at `pos` of `file`.
    Position { file: &'a str, pos: u64 },
    /// COM_BINLOG_DUMP_GTID after a MySQL GTID set ("uuid:1-5"; one UUID).
    MysqlGtid(&'a str),
}

/// The event's bytes: mysql_async keeps the header, body and CRC32 apart; they are put
/// back together with the CRC32 the server sent (not one computed here).
fn event_bytes(ev: &Event) -> Result<Vec<u8>> {
    let mut b = Vec::new();
    ev.write(BinlogVersion::Version4, &mut b)
        .context("re-serializing an event")?;
    if let Some(c) = ev.checksum() {
        let n = b.len();
        if n >= 4 && n > 19 + ev.data().len() {
            b[n - 4..].copy_from_slice(&c);
        }
    }
    Ok(b)
}

/// Reads a binlog stream from 127.0.0.1:`port` as `user`/`password` with mysql_async,
/// non-blocking, until the server ends it; an error when it fails or does not end within
/// `timeout`.
pub fn read(
    port: u16,
    (user, password): (&str, &str),
    server_id: u32,
    req: Request<'_>,
    timeout: Duration,
) -> Result<Vec<Streamed>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let opts = OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(port)
            .user(Some(user))
            .pass(Some(password))
            .prefer_socket(false);
        let work = async {
            let conn = mysql_async::Conn::new(opts)
                .await
                .context("mysql_async connect")?;
            let sids: Vec<Sid<'static>>;
            let r = BinlogStreamRequest::new(server_id).with_non_blocking();
            let r = match req {
                Request::Position { file, pos } => r.with_filename(file.as_bytes()).with_pos(pos),
                Request::MysqlGtid(set) => {
                    sids = vec![set
                        .parse::<Sid<'static>>()
                        .map_err(|e| anyhow::anyhow!("GTID set {set:?}: {e:?}"))?];
                    r.with_gtid().with_gtid_set(sids.iter().cloned())
                }
            };
            let mut stream = conn
                .get_binlog_stream(r)
                .await
                .context("get_binlog_stream")?;
            let mut got = Vec::new();
            while let Some(ev) = stream.next().await {
                let ev = ev.context("mysql_async binlog stream")?;
                let h = ev.header();
                got.push(Streamed {
                    type_code: h.event_type_raw(),
                    log_pos: h.log_pos(),
                    bytes: event_bytes(&ev)?,
                });
            }
            anyhow::Ok(got)
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => bail!("mysql_async's non-blocking binlog stream on port {port} did not end within {timeout:?}"),
        }
    })
}

/// One event of a binlog file, read from disk with mysql_common.
#[derive(Debug, Clone)]
pub struct FileEvent {
    /// Offset in its file, bytes.
    pub offset: u64,
    pub type_code: u8,
    pub log_pos: u32,
    /// The bytes as stored.
    pub bytes: Vec<u8>,
    /// Rows of a rows event, as mysql_common decodes them with the table map before it.
    pub rows: Option<usize>,
    /// A QUERY event's statement.
    pub query: Option<String>,
    /// An XID event's transaction id.
    pub xid: Option<u64>,
    /// A MySQL GTID event's (server UUID, transaction number).
    pub gtid: Option<([u8; 16], u64)>,
}

/// The events of the binlog file at `path`, in order.
pub fn file_events(path: &Path) -> Result<Vec<FileEvent>> {
    let raw = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    if raw.get(..4) != Some(&b"\xfebin"[..]) {
        bail!("{} is not a binlog", path.display());
    }
    let mut esr = EventStreamReader::new(BinlogVersion::Version4);
    let mut out = Vec::new();
    let mut off = 4usize;
    while off < raw.len() {
        let size = raw
            .get(off + 9..off + 13)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .context("short event header")?;
        let bytes = raw
            .get(off..off + size)
            .with_context(|| format!("{}: short event at {off}", path.display()))?
            .to_vec();
        let ev = esr
            .read(&bytes[..])
            .with_context(|| format!("{}: event at {off}", path.display()))?
            .context("no event")?;
        let h = ev.header();
        let mut fe = FileEvent {
            offset: off as u64,
            type_code: h.event_type_raw(),
            log_pos: h.log_pos(),
            bytes: Vec::new(),
            rows: None,
            query: None,
            xid: None,
            gtid: None,
        };
        match ev.read_data() {
            Ok(Some(EventData::RowsEvent(re))) => {
                let tme = esr
                    .get_tme(re.table_id())
                    .context("rows event without its table map")?;
                fe.rows = Some(re.rows(tme).count());
            }
            Ok(Some(EventData::QueryEvent(q))) => fe.query = Some(q.query().into_owned()),
            Ok(Some(EventData::XidEvent(x))) => fe.xid = Some(x.xid),
            Ok(Some(EventData::GtidEvent(g))) => fe.gtid = Some((g.sid(), g.gno())),
            _ => {}
        }
        fe.bytes = bytes;
        out.push(fe);
        off += size;
    }
    Ok(out)
}

/// `ev` as a server sends a stored FORMAT_DESCRIPTION: LOG_EVENT_BINLOG_IN_USE_F
/// cleared and the CRC32 (when `crc`) computed again; other events unchanged.
pub fn as_sent(ev: &FileEvent, crc: bool) -> Vec<u8> {
    let mut b = ev.bytes.clone();
    if ev.type_code == 15 && b.len() > 23 {
        b[17] &= !0x01;
        if crc {
            let n = b.len();
            let c = binlog::crc32(&b[..n - 4]);
            b[n - 4..].copy_from_slice(&c.to_le_bytes());
        }
    }
    b
}
