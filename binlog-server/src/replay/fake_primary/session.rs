//! One replica connection: server-side packet framing ([`Wire`]), the HandshakeV10
//! greeting, the `mysql_native_password` login against the listener's one account, and
//! the command loop that answers queries ([`super::query`]) or hands over to a dump
//! ([`super::dump`]).

use crate::util::lock;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::BufReader;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::archive::{archive_facts, ArchiveFacts};
use super::compat::Compat;
use super::dump::{announced_checksum, dump, start_point, DumpOptions};
use super::query::answer_query;
use super::wire::Wire;
use super::{Shared, ER_MASTER_FATAL_ERROR_READING_BINLOG};
use binlog::ChecksumAlg;

use mysql_wire::server;

/// ER_ACCESS_DENIED_ERROR.
const ER_ACCESS_DENIED: u16 = 1045;
/// ER_UNKNOWN_COM_ERROR.
const ER_UNKNOWN_COM: u16 = 1047;
/// Time a client has from the greeting to a complete login (MariaDB's connect_timeout
/// is 10 s too).
pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Heartbeat period when the replica asks for none (MariaDB's default is
/// slave_net_timeout / 2 = 30 s).
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);

/// Serves one replica connection: greeting, login, then commands until it quits, a dump
/// ends, or the login fails.
///
/// # Errors
///
/// I/O and protocol errors, and a refused login (after the ERR packet is sent).
pub(super) async fn session(
    shared: Arc<Shared>,
    sock: TcpStream,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let facts = {
        let a = shared.archive.clone();
        tokio::task::spawn_blocking(move || archive_facts(&a)).await??
    };
    let (r, w) = sock.into_split();
    let mut wire = Wire {
        r: BufReader::with_capacity(64 * 1024, r),
        w,
        seq: 0,
    };
    // A client that does not finish the handshake in time holds no session.
    tokio::time::timeout(HANDSHAKE_TIMEOUT, login(&mut wire, &shared, &facts))
        .await
        .map_err(|_| anyhow::anyhow!("no login within {HANDSHAKE_TIMEOUT:?}; closed"))??;
    shared.stats.connections.fetch_add(1, Ordering::Relaxed);

    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let pkt = wire.read().await?;
        let Some((&cmd, body)) = pkt.split_first() else {
            anyhow::bail!("empty command packet");
        };
        match cmd {
            0x01 => return Ok(()),
            0x03 => {
                let sql = String::from_utf8_lossy(body).into_owned();
                answer_query(&mut wire, &sql, &mut vars, &facts, &shared.archive).await?;
            }
            0x02 | 0x0e | 0x15 => wire.ok().await?,
            0x12 | 0x1e => {
                return start_dump(shared, wire, facts, (cmd, body), &vars, cancel).await;
            }
            _ => wire.err(ER_UNKNOWN_COM, "Unknown command").await?,
        }
    }
}

/// HandshakeV10 (the archive's version, MariaDB as `5.5.5-<version>`), the
/// HandshakeResponse41 (an AuthSwitchRequest to `mysql_native_password` when the client
/// starts with another plugin), and the check against the listener's account: OK, or
/// ERR 1045 and an error.
async fn login(wire: &mut Wire, shared: &Shared, facts: &ArchiveFacts) -> anyhow::Result<()> {
    let conn_id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let nonce = server::scramble();
    // HandshakeV10.
    let version = if facts.mariadb && !facts.version.starts_with("5.5.5-") {
        format!("5.5.5-{}", facts.version)
    } else {
        facts.version.clone()
    };
    wire.seq = 0;
    wire.write(&server::handshake_v10(
        &version,
        conn_id,
        &nonce,
        server::SERVER_CAPABILITIES,
    ))
    .await?;

    // HandshakeResponse41.
    let resp = wire.read().await?;
    let server::HandshakeResponse {
        user,
        auth: mut token,
        plugin: client_plugin,
    } = server::HandshakeResponse::parse(&resp)?;
    if client_plugin
        .as_deref()
        .is_some_and(|p| p != server::NATIVE_PASSWORD)
    {
        wire.write(&server::auth_switch_request(
            server::NATIVE_PASSWORD,
            &nonce,
        ))
        .await?;
        token = wire.read().await?;
    }
    if user != shared.creds.user
        || !server::native_password_matches(&nonce, &shared.creds.password, &token)
    {
        wire.err(
            ER_ACCESS_DENIED,
            &format!(
                "Access denied for user '{user}' (binlog-server fake primary of {})",
                shared.archive.source
            ),
        )
        .await?;
        anyhow::bail!("access denied for {user:?}");
    }
    wire.ok().await
}

/// COM_BINLOG_DUMP (0x12) or COM_BINLOG_DUMP_GTID (0x1E) with its body: finds the start
/// point, refuses a replica that cannot take the archive's checksums (both with ERROR
/// 1236), and runs the dump with the heartbeat period the replica asked for.
async fn start_dump(
    shared: Arc<Shared>,
    mut wire: Wire,
    facts: ArchiveFacts,
    (cmd, body): (u8, &[u8]),
    vars: &BTreeMap<String, String>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let start = match start_point(cmd, body, vars, &facts, &shared.archive).await {
        Ok(s) => s,
        Err(msg) => {
            *lock(&shared.stats.last_error) = Some(msg.clone());
            wire.err(ER_MASTER_FATAL_ERROR_READING_BINLOG, &msg).await?;
            return Ok(());
        }
    };
    let crc_aware =
        vars.contains_key("master_binlog_checksum") || vars.contains_key("source_binlog_checksum");
    if facts.alg == ChecksumAlg::Crc32 && !crc_aware {
        let msg = "Slave can not handle replication events with the checksum that master is configured to log (set @master_binlog_checksum first)";
        wire.err(ER_MASTER_FATAL_ERROR_READING_BINLOG, msg).await?;
        return Ok(());
    }
    let hb = vars
        .get("master_heartbeat_period")
        .or_else(|| vars.get("source_heartbeat_period"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|ns| *ns >= 1e6)
        .map(|ns| Duration::from_nanos(ns as u64))
        .unwrap_or(DEFAULT_HEARTBEAT);
    let opts = DumpOptions {
        heartbeat: hb,
        checksum: announced_checksum(vars),
        capability: Compat::capability_of(
            vars.get("mariadb_slave_capability").map(String::as_str),
            facts.mariadb,
        ),
    };
    dump(shared, wire, facts, start, opts, cancel).await
}
